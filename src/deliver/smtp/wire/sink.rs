//! Where the walk's output goes: counted (for the plan's size and 8-bit
//! flag) or written into the stream's output chunk, and the per-part tally.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chan {
    Main,
    Hdr { cte: bool },
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counter {
    pub(super) bytes: u64,
    pub(super) eight: bool,
    pub(super) touched: bool,
    /// The last thing counted was a line break.
    pub(super) last_nl: bool,
}

impl Counter {
    pub(super) fn data(&mut self, d: &[u8]) {
        if d.is_empty() {
            return;
        }
        self.bytes += d.len() as u64;
        if !self.eight && !d.is_ascii() {
            self.eight = true;
        }
        self.touched = true;
        self.last_nl = false;
    }

    pub(super) fn newline(&mut self) {
        self.bytes += 2;
        self.touched = true;
        self.last_nl = true;
    }

    /// A tally of whole lines, each ended by its line break.
    pub(super) fn lines(bytes: u64, eight: bool) -> Counter {
        Counter {
            bytes,
            eight,
            touched: true,
            last_nl: true,
        }
    }

    pub(super) fn merge(&mut self, o: &Counter) {
        self.bytes += o.bytes;
        self.eight |= o.eight;
        if o.touched {
            self.touched = true;
            self.last_nl = o.last_nl;
        }
    }
}

/// Where an encoder writes: a plain counter (the plan pass's per-part
/// tallies, monomorphised so counting costs no dispatch per token) or a
/// channel of the sink.
pub(super) trait Out {
    fn data(&mut self, d: &[u8]);
    fn newline(&mut self);
}

impl Out for Counter {
    fn data(&mut self, d: &[u8]) {
        Counter::data(self, d);
    }

    fn newline(&mut self) {
        Counter::newline(self);
    }
}

/// One channel of a sink, as an [`Out`].
pub(super) struct To<'a>(pub(super) &'a mut Sink, pub(super) Chan);

impl Out for To<'_> {
    fn data(&mut self, d: &[u8]) {
        self.0.data(self.1, d);
    }

    fn newline(&mut self) {
        self.0.newline(self.1);
    }
}

#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) main: Counter,
    pub(super) hdr_all: Counter,
    pub(super) hdr_other: Counter,
    pub(super) keep: Counter,
    pub(super) qp: Counter,
}

impl Tally {
    pub(super) fn reset_part(&mut self) {
        self.hdr_all = Counter::default();
        self.hdr_other = Counter::default();
        self.keep = Counter::default();
        self.qp = Counter::default();
    }
}

/// Output of the stream pass. A line break is held back until more output
/// follows, which drops exactly one trailing CRLF.
#[derive(Debug, Default)]
pub(super) struct Writer {
    pub(super) buf: Vec<u8>,
    pub(super) pending_nl: bool,
}

#[derive(Debug)]
pub(super) enum Sink {
    Plan(Box<Tally>),
    Stream(Writer),
}

impl Sink {
    pub(super) fn data(&mut self, ch: Chan, d: &[u8]) {
        if d.is_empty() {
            return;
        }
        match self {
            Sink::Stream(w) => {
                if w.pending_nl {
                    w.buf.extend_from_slice(b"\r\n");
                    w.pending_nl = false;
                }
                w.buf.extend_from_slice(d);
            }
            Sink::Plan(t) => match ch {
                Chan::Main => t.main.data(d),
                Chan::Hdr { cte } => {
                    t.hdr_all.data(d);
                    if !cte {
                        t.hdr_other.data(d);
                    }
                }
            },
        }
    }

    pub(super) fn newline(&mut self, ch: Chan) {
        match self {
            Sink::Stream(w) => {
                if w.pending_nl {
                    w.buf.extend_from_slice(b"\r\n");
                }
                w.pending_nl = true;
            }
            Sink::Plan(t) => match ch {
                Chan::Main => t.main.newline(),
                Chan::Hdr { cte } => {
                    t.hdr_all.newline();
                    if !cte {
                        t.hdr_other.newline();
                    }
                }
            },
        }
    }

    pub(super) fn is_stream(&self) -> bool {
        matches!(self, Sink::Stream(_))
    }
}
