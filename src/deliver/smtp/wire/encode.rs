//! Body encoders: hard wrapping, quoted-printable re-encoding, re-wrapping of
//! long base64 and quoted-printable lines, the UTF-8 check that picks a
//! charset, and the probe that decides whether a part must be re-encoded.

use super::*;

#[derive(Debug)]
pub(super) struct Wrap {
    pub(super) col: usize,
    pub(super) width: usize,
}

impl Wrap {
    pub(super) fn new(width: usize) -> Self {
        Wrap { col: 0, width }
    }

    pub(super) fn data(&mut self, mut d: &[u8], o: &mut impl Out) {
        while !d.is_empty() {
            if self.col >= self.width {
                o.newline();
                self.col = 0;
            }
            let n = (self.width - self.col).min(d.len());
            let (a, rest) = d.split_at(n);
            o.data(a);
            self.col += n;
            d = rest;
        }
    }

    pub(super) fn eol(&mut self, o: &mut impl Out) {
        o.newline();
        self.col = 0;
    }

    pub(super) fn eof(&mut self) {
        self.col = 0;
    }
}

pub(super) fn hex_escape(b: u8) -> [u8; 3] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    [b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]]
}

/// Printable ASCII that quoted-printable writes as itself (not `=`, not
/// whitespace, which is handled separately).
pub(super) fn qp_literal(b: u8) -> bool {
    (33..=126).contains(&b) && b != b'='
}

/// Streaming quoted-printable encoder (RFC 2045 §6.7), one hard line at a
/// time. Whitespace is held back one byte so that trailing whitespace can be
/// encoded; a `-` starting an output line is encoded so that no output line
/// can match a boundary delimiter.
#[derive(Debug, Default)]
pub(super) struct QpEnc {
    pub(super) col: usize,
    pub(super) ws: Option<u8>,
}

impl QpEnc {
    pub(super) fn put(&mut self, tok: &[u8], o: &mut impl Out) {
        if self.col + tok.len() > QP_LINE - 1 {
            o.data(b"=");
            o.newline();
            self.col = 0;
        }
        o.data(tok);
        self.col += tok.len();
    }

    pub(super) fn data(&mut self, mut d: &[u8], o: &mut impl Out) {
        while let Some((&b, rest)) = d.split_first() {
            if let Some(w) = self.ws.take() {
                self.put(&[w], o);
            }
            if is_ws(b) {
                self.ws = Some(b);
                d = rest;
                continue;
            }
            if !qp_literal(b) {
                self.put(&hex_escape(b), o);
                d = rest;
                continue;
            }
            let run = d.iter().take_while(|&&c| qp_literal(c)).count();
            let (mut lit, after) = d.split_at(run);
            while let Some((&first, lit_rest)) = lit.split_first() {
                if self.col >= QP_LINE - 1 {
                    o.data(b"=");
                    o.newline();
                    self.col = 0;
                }
                if self.col == 0 && first == b'-' {
                    self.put(&hex_escape(first), o);
                    lit = lit_rest;
                    continue;
                }
                let n = (QP_LINE - 1 - self.col).min(lit.len());
                let (a, r) = lit.split_at(n);
                o.data(a);
                self.col += n;
                lit = r;
            }
            d = after;
        }
    }

    /// Output length of one whole line (with its line break) encoded from
    /// a line start, computed instead of encoded when the line is plain: only
    /// bytes written as themselves (printable ASCII but `=`, space, tab),
    /// no whitespace at its end, and no `-` where an output line would
    /// start. Such a line is cut into 75-character pieces joined by soft
    /// breaks, exactly as `data` + `eol` would write it. `None` otherwise.
    pub(super) fn plain_line_len(line: &[u8]) -> Option<u64> {
        const PIECE: usize = QP_LINE - 1;
        let plain = line.iter().fold(true, |ok, &b| {
            ok & (((32..127).contains(&b) && b != b'=') | (b == b'\t'))
        });
        if !plain
            || line.last().is_some_and(|&b| is_ws(b))
            || line.iter().step_by(PIECE).any(|&b| b == b'-')
        {
            return None;
        }
        let n = line.len();
        let breaks = n.saturating_sub(1) / PIECE;
        Some((n + 3 * breaks + 2) as u64)
    }

    pub(super) fn flush_ws(&mut self, o: &mut impl Out) {
        if let Some(w) = self.ws.take() {
            self.put(&hex_escape(w), o);
        }
    }

    pub(super) fn eol(&mut self, o: &mut impl Out) {
        self.flush_ws(o);
        o.newline();
        self.col = 0;
    }

    pub(super) fn eof(&mut self, o: &mut impl Out) {
        self.flush_ws(o);
        self.col = 0;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GateKind {
    Base64,
    QuotedPrintable,
}

/// Already-encoded bodies: lines of at most 998 octets pass unchanged, longer
/// ones are split (base64: at 76 characters; quoted-printable: with soft
/// line breaks between escapes).
#[derive(Debug)]
pub(super) struct Gate {
    pub(super) kind: GateKind,
    pub(super) head: Vec<u8>,
    pub(super) long: bool,
    pub(super) col: usize,
    /// Quoted-printable: bytes left of the current `=XX` escape.
    pub(super) esc: u8,
    /// Quoted-printable: a soft line break was inserted in this line.
    pub(super) broke: bool,
    /// Base64: last byte written.
    pub(super) last: u8,
}

impl Gate {
    pub(super) fn new(kind: GateKind) -> Self {
        Gate {
            kind,
            head: Vec::new(),
            long: false,
            col: 0,
            esc: 0,
            broke: false,
            last: 0,
        }
    }

    pub(super) fn data(&mut self, d: &[u8], s: &mut Sink) {
        if self.long {
            self.long_data(d, s);
            return;
        }
        let room = (MAX_LINE + 1).saturating_sub(self.head.len());
        let (a, rest) = d.split_at(room.min(d.len()));
        self.head.extend_from_slice(a);
        if self.head.len() > MAX_LINE {
            self.long = true;
            let head = std::mem::take(&mut self.head);
            self.long_data(&head, s);
            self.head = head;
            self.head.clear();
            self.long_data(rest, s);
        }
    }

    pub(super) fn long_data(&mut self, d: &[u8], s: &mut Sink) {
        match self.kind {
            GateKind::Base64 => self.long_b64(d, s),
            GateKind::QuotedPrintable => self.long_qp(d, s),
        }
    }

    /// Base64 decoders ignore line breaks. A new line never starts with `-`
    /// nor follows whitespace, so no piece can look like a boundary.
    pub(super) fn long_b64(&mut self, mut d: &[u8], s: &mut Sink) {
        while let Some(&b) = d.first() {
            if self.col >= MAX_LINE || (self.col >= B64_LINE && b != b'-' && !is_ws(self.last)) {
                s.newline(Chan::Main);
                self.col = 0;
            }
            let n = if self.col < B64_LINE {
                (B64_LINE - self.col).min(d.len())
            } else {
                1
            };
            let (a, r) = d.split_at(n);
            s.data(Chan::Main, a);
            self.col += n;
            self.last = a.last().copied().unwrap_or(b);
            d = r;
        }
    }

    /// Soft line breaks keep lines at 76 characters; an `=` and the two bytes
    /// after it are never separated. A `-` starting a continuation line is
    /// written as `=2D` (same decoded byte) so no line can look like a
    /// boundary.
    pub(super) fn long_qp(&mut self, d: &[u8], s: &mut Sink) {
        for &b in d {
            if self.esc > 0 {
                s.data(Chan::Main, &[b]);
                self.esc -= 1;
                self.col += 1;
                continue;
            }
            let tok_len = if b == b'=' { 3 } else { 1 };
            if self.col + tok_len > QP_LINE - 1 {
                s.data(Chan::Main, b"=");
                s.newline(Chan::Main);
                self.col = 0;
                self.broke = true;
            }
            if self.col == 0 && self.broke && b == b'-' {
                s.data(Chan::Main, &hex_escape(b));
                self.col += 3;
                continue;
            }
            s.data(Chan::Main, &[b]);
            self.col += 1;
            if b == b'=' {
                self.esc = 2;
            }
        }
    }

    pub(super) fn end_line(&mut self, s: &mut Sink) {
        if !self.long {
            s.data(Chan::Main, &self.head);
        }
        self.head.clear();
        self.long = false;
        self.col = 0;
        self.esc = 0;
        self.broke = false;
        self.last = 0;
    }

    pub(super) fn eol(&mut self, s: &mut Sink) {
        self.end_line(s);
        s.newline(Chan::Main);
    }

    pub(super) fn eof(&mut self, s: &mut Sink) {
        self.end_line(s);
    }
}

/// Streaming UTF-8 validity check.
#[derive(Debug, Default)]
pub(super) struct Utf8Check {
    pub(super) bad: bool,
    pub(super) carry: [u8; 4],
    pub(super) carried: usize,
}

impl Utf8Check {
    pub(super) fn feed(&mut self, mut d: &[u8]) {
        if self.bad {
            return;
        }
        while self.carried > 0 {
            let Some((&b, rest)) = d.split_first() else {
                return;
            };
            d = rest;
            let Some(slot) = self.carry.get_mut(self.carried) else {
                self.bad = true;
                return;
            };
            *slot = b;
            self.carried += 1;
            let seq = self.carry.get(..self.carried).unwrap_or_default();
            match std::str::from_utf8(seq) {
                Ok(_) => self.carried = 0,
                Err(e) if e.error_len().is_some() => {
                    self.bad = true;
                    return;
                }
                Err(_) => {}
            }
        }
        if let Err(e) = std::str::from_utf8(d) {
            if e.error_len().is_some() {
                self.bad = true;
                return;
            }
            let tail = d.get(e.valid_up_to()..).unwrap_or_default();
            for (slot, &b) in self.carry.iter_mut().zip(tail) {
                *slot = b;
            }
            self.carried = tail.len().min(4);
        }
    }

    pub(super) fn valid(&self) -> bool {
        !self.bad && self.carried == 0
    }
}

/// Plan pass, identity-encoded leaf: counts both possible outputs (as is,
/// and quoted-printable) while collecting what decides between them.
#[derive(Debug)]
pub(super) struct Probe {
    pub(super) entity: u32,
    pub(super) is_message: bool,
    pub(super) has_ct: bool,
    pub(super) has_mv: bool,
    /// The header ended at a non-header line instead of an empty line.
    pub(super) case_c: bool,
    pub(super) keep: Wrap,
    pub(super) qp: QpEnc,
    pub(super) cur_line: u64,
    pub(super) long: bool,
    pub(super) nul: bool,
    pub(super) eight: bool,
    pub(super) utf8: Utf8Check,
}

impl Probe {
    pub(super) fn data(&mut self, d: &[u8], s: &mut Sink) {
        self.cur_line += d.len() as u64;
        if self.cur_line > MAX_LINE as u64 {
            self.long = true;
        }
        self.scan(d);
        if let Sink::Plan(t) = s {
            self.keep.data(d, &mut t.keep);
            self.qp.data(d, &mut t.qp);
        }
    }

    /// The checks that decide re-encoding, over content or whole lines
    /// (line breaks are ASCII, so a run of lines may be scanned at once).
    pub(super) fn scan(&mut self, d: &[u8]) {
        if !self.nul && memchr::memchr(0, d).is_some() {
            self.nul = true;
        }
        if !self.eight && !d.is_ascii() {
            self.eight = true;
        }
        self.utf8.feed(d);
    }

    pub(super) fn eol(&mut self, s: &mut Sink) {
        self.cur_line = 0;
        self.utf8.feed(b"\n");
        if let Sink::Plan(t) = s {
            self.keep.eol(&mut t.keep);
            self.qp.eol(&mut t.qp);
        }
    }

    pub(super) fn eof(&mut self, s: &mut Sink) {
        self.keep.eof();
        if let Sink::Plan(t) = s {
            self.qp.eof(&mut t.qp);
        }
    }
}

#[derive(Debug)]
pub(super) enum Body {
    Pass(Wrap),
    Qp(QpEnc),
    Gate(Gate),
    Probe(Box<Probe>),
}

impl Body {
    pub(super) fn pass() -> Body {
        Body::Pass(Wrap::new(MAX_LINE))
    }

    pub(super) fn data(&mut self, d: &[u8], s: &mut Sink) {
        match self {
            Body::Pass(w) => w.data(d, &mut To(s, Chan::Main)),
            Body::Qp(q) => q.data(d, &mut To(s, Chan::Main)),
            Body::Gate(g) => g.data(d, s),
            Body::Probe(p) => p.data(d, s),
        }
    }

    pub(super) fn eol(&mut self, s: &mut Sink) {
        match self {
            Body::Pass(w) => w.eol(&mut To(s, Chan::Main)),
            Body::Qp(q) => q.eol(&mut To(s, Chan::Main)),
            Body::Gate(g) => g.eol(s),
            Body::Probe(p) => p.eol(s),
        }
    }

    pub(super) fn eof(&mut self, s: &mut Sink) {
        match self {
            Body::Pass(w) => w.eof(),
            Body::Qp(q) => q.eof(&mut To(s, Chan::Main)),
            Body::Gate(g) => g.eof(s),
            Body::Probe(p) => p.eof(s),
        }
    }
}
