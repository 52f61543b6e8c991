//! Wire form of a spooled message: the exact bytes handed to SMTP `DATA`.
//!
//! A local program gives `sendmail` arbitrary bytes: LF, CRLF or lone-CR line
//! endings, lines of any length, 8-bit bytes, NUL bytes. SMTP wants CRLF line
//! breaks only, lines of at most 998 octets, and 8-bit bytes only when the
//! server announced `8BITMIME`. This module owns that conversion and nothing
//! else. It works in two passes over `file[start .. start+len]`, both reading
//! with [`FileExt::read_at`] (the file cursor is never used or moved):
//!
//! * [`plan`] walks the message once and decides every edit: which MIME leaf
//!   parts must be re-encoded as quoted-printable. It also computes the exact
//!   output size (for `SIZE=`) and whether the output contains any byte
//!   `>= 0x80` (for `BODY=8BITMIME`).
//! * [`stream`] walks it again and yields the output in chunks of at most
//!   64 KiB, applying exactly the edits of the plan. If the file no longer
//!   matches the plan (the output length differs from `plan.size`), the stream
//!   ends with an `InvalidData` error instead of silently sending other bytes.
//!
//! What the output looks like:
//!
//! * Every line break is CRLF (bare LF, lone CR and CRLF all become CRLF). One
//!   trailing CRLF is dropped, because lettre's `message_iter` appends
//!   `\r\n.\r\n` itself.
//! * A leaf part (or a non-MIME body) with identity encoding (absent, `7bit`,
//!   `8bit`, `binary`) whose body has a line over 998 octets or a NUL byte (or
//!   any byte `>= 0x80` when `eight_bit_ok` is false) is re-encoded as
//!   quoted-printable (RFC 2045 §6.7, lines of at most 76 characters, hard line
//!   breaks kept). Its `Content-Transfer-Encoding` fields are removed and
//!   `Content-Transfer-Encoding: quoted-printable` is added at the end of its
//!   header. A message entity (the top level, or one embedded in
//!   `message/rfc822`) also gets `MIME-Version: 1.0` if it lacks one, and
//!   `Content-Type: text/plain` (with `charset=utf-8` or `charset=unknown-8bit`
//!   when the body has 8-bit bytes) if it lacks one. The encoder writes a `-`
//!   that starts an output line as `=2D`, so no encoded line can look like a
//!   MIME boundary.
//! * `base64` lines over 998 octets are re-wrapped at 76 characters;
//!   `quoted-printable` lines over 998 octets get soft line breaks (`=` CRLF),
//!   never inside an `=XX` escape. Decoded content is unchanged.
//! * Header lines over 998 octets are folded before the last whitespace within
//!   the limit (that whitespace starts the continuation line).
//! * `multipart/*` (with a `boundary` parameter, quoted, plain or RFC 2231) and
//!   `message/rfc822` / `message/global` are walked into, up to a nesting
//!   depth of 50 and 10,000 entities.
//!
//! What it never does: dot-stuffing (lettre stuffs a `.` at every line start
//! after CRLF, and this module makes sure every line start *is* after CRLF);
//! touching 8-bit bytes in header fields (they are passed through and reported
//! in `eight_bit`); re-encoding parts whose body is not identity-encoded. Note
//! that re-encoding changes body bytes, which breaks DKIM signatures made over
//! the original body.
//!
//! Memory: the plan holds one small record per re-encoded part (at most
//! 10,000), never anything proportional to the message size. Both passes keep
//! at most one physical line head (999 octets) per buffer, one captured
//! `Content-Type`/`Content-Transfer-Encoding` value (capped at 8 KiB), a stack
//! of at most 50 boundaries, and one output chunk.
//!
//! Lossy cases (bytes a reader sees change, beyond CRLF normalisation):
//!
//! * A header line over 998 octets with no usable whitespace is split by
//!   inserting CRLF + SPACE at the limit, so unfolding yields one extra space.
//! * Content this module does not decode gets hard-wrapped (CRLF inserted after
//!   every 998 octets of a longer line): multipart preamble and epilogue (not
//!   shown to readers), bodies with an unknown transfer encoding, composite
//!   types that cannot be walked into (`multipart/*` without a usable
//!   boundary: absent, empty or over 70 characters; `message/partial`, `message/external-body`, anything nested
//!   deeper than 50 levels), and everything after the 10,000th entity, which is
//!   treated as one opaque part. Such opaque content is passed through
//!   otherwise unchanged, including NUL and 8-bit bytes (reported in
//!   `eight_bit`).
//! * Boundary delimiter lines padded with whitespace beyond 998 octets are not
//!   recognised as delimiters.
//!
//! Header parsing follows what an MTA does: the header ends at the first empty
//! line, or at the first line that is neither a field (`name:`) nor a
//! continuation. In that case an empty line is inserted after the header if
//! the part is re-encoded (after the added fields) or is a `message/rfc822`
//! being walked into, so that added fields cannot merge into the wrong block.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Longest line allowed on the wire, excluding CRLF (RFC 5321 §4.5.3.1.6).
const MAX_LINE: usize = 998;
/// Longest quoted-printable line we write (RFC 2045 §6.7), including the `=`.
const QP_LINE: usize = 76;
/// Width of re-wrapped base64 lines.
const B64_LINE: usize = 76;
/// Deepest entity that is still walked into.
const MAX_DEPTH: u32 = 50;
/// Number of entities (header blocks) parsed before the rest is opaque.
const MAX_PARTS: u32 = 10_000;
/// Largest chunk yielded by [`WireStream`].
const CHUNK: usize = 64 * 1024;
/// Read size of the plan pass.
const PLAN_READ: usize = 64 * 1024;
/// Read size of the stream pass; small enough that one read's output
/// (quoted-printable at most triples it) stays around one chunk.
const STREAM_READ: usize = 16 * 1024;
/// Cap on a captured `Content-Type` / `Content-Transfer-Encoding` value.
const MAX_FIELD_VALUE: usize = 8 * 1024;
/// Longest boundary accepted (RFC 2046 §5.1.1).
const MAX_BOUNDARY: usize = 70;

/// How the message may be sent.
#[derive(Debug, Clone, Copy)]
pub struct WireOptions {
    /// The server announced `8BITMIME`: identity-encoded 8-bit bodies may be
    /// sent as they are.
    pub eight_bit_ok: bool,
}

/// Charset announced for a re-encoded message entity lacking `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charset {
    Ascii,
    Utf8,
    Unknown8bit,
}

/// One re-encoded part: the entity (header block) number in walk order and
/// the fields to add besides `Content-Transfer-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Edit {
    entity: u32,
    add_mime_version: bool,
    add_content_type: Option<Charset>,
}

/// Result of [`plan`]: every edit, the exact output size and its 8-bit-ness.
#[derive(Debug, Clone)]
pub struct WirePlan {
    edits: Vec<Edit>,
    start: u64,
    len: u64,
    /// Exact number of bytes [`stream`] yields (for `SIZE=`).
    pub size: u64,
    /// The output contains a byte `>= 0x80` (send `BODY=8BITMIME`).
    pub eight_bit: bool,
    /// Number of parts re-encoded as quoted-printable.
    pub reencoded_parts: usize,
    /// Number of header lines that had to be folded.
    pub folded_header_lines: usize,
}

/// First pass: read the message at `file[start .. start+len]` and decide every
/// edit. Memory is O(parts), never O(message). Fails only on I/O errors, or
/// with `UnexpectedEof` if the file is shorter than `start + len`.
pub fn plan(file: &File, start: u64, len: u64, opts: WireOptions) -> io::Result<WirePlan> {
    let end = start
        .checked_add(len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "message range overflows"))?;
    let mut engine = Engine::new(opts, Sink::Plan(Box::default()), &[]);
    let mut lexer = Lexer::default();
    let mut buf = vec![0u8; PLAN_READ];
    let mut pos = start;
    while pos < end {
        let n = usize::try_from(end - pos).map_or(PLAN_READ, |r| r.min(PLAN_READ));
        let piece = buf.get_mut(..n).unwrap_or_default();
        read_full_at(file, piece, pos)?;
        lexer.feed(piece, &mut engine);
        pos += n as u64;
    }
    lexer.finish(&mut engine);
    let Engine {
        sink,
        edits_out,
        folded,
        ..
    } = engine;
    let (size, eight_bit) = match sink {
        Sink::Plan(t) => {
            let drop = if t.main.last_nl { 2 } else { 0 };
            (t.main.bytes.saturating_sub(drop), t.main.eight)
        }
        Sink::Stream(_) => (0, false),
    };
    Ok(WirePlan {
        reencoded_parts: edits_out.len(),
        edits: edits_out,
        start,
        len,
        size,
        eight_bit,
        folded_header_lines: folded,
    })
}

/// Second pass: the wire bytes, in chunks of at most 64 KiB, whose
/// concatenation has exactly `plan.size` bytes. On an error yields
/// `Some(Err(e))` once, then `None`.
pub struct WireStream<'a> {
    file: &'a File,
    plan: &'a WirePlan,
    pos: u64,
    end: u64,
    lexer: Lexer,
    engine: Engine<'a>,
    buf: Vec<u8>,
    input_done: bool,
    finished: bool,
    yielded: u64,
    error: Option<io::Error>,
}

/// Start the second pass over the same range that was planned.
pub fn stream<'a>(file: &'a File, start: u64, len: u64, plan: &'a WirePlan) -> WireStream<'a> {
    let error = if start != plan.start || len != plan.len {
        Some(io::Error::new(
            io::ErrorKind::InvalidInput,
            "stream range differs from the planned range",
        ))
    } else {
        None
    };
    let opts = WireOptions { eight_bit_ok: true };
    WireStream {
        file,
        plan,
        pos: start,
        end: start.saturating_add(len),
        lexer: Lexer::default(),
        engine: Engine::new(opts, Sink::Stream(Writer::default()), &plan.edits),
        buf: Vec::new(),
        input_done: false,
        finished: false,
        yielded: 0,
        error,
    }
}

impl WireStream<'_> {
    fn fail(&mut self, e: io::Error) -> Option<io::Result<Vec<u8>>> {
        self.finished = true;
        Some(Err(e))
    }
}

fn mismatch() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "spooled message changed between plan and stream",
    )
}

impl Iterator for WireStream<'_> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        if let Some(e) = self.error.take() {
            return self.fail(e);
        }
        loop {
            let Some(out) = self.engine.out() else {
                return self.fail(mismatch());
            };
            if out.len() >= CHUNK || (self.input_done && !out.is_empty()) {
                let chunk = if out.len() > CHUNK {
                    let rest = out.split_off(CHUNK);
                    std::mem::replace(out, rest)
                } else {
                    std::mem::take(out)
                };
                self.yielded += chunk.len() as u64;
                if self.yielded > self.plan.size {
                    return self.fail(mismatch());
                }
                return Some(Ok(chunk));
            }
            if self.input_done {
                self.finished = true;
                if self.yielded != self.plan.size {
                    return Some(Err(mismatch()));
                }
                return None;
            }
            if self.pos >= self.end {
                self.lexer.finish(&mut self.engine);
                self.input_done = true;
                continue;
            }
            let n =
                usize::try_from(self.end - self.pos).map_or(STREAM_READ, |r| r.min(STREAM_READ));
            self.buf.resize(n, 0);
            if let Err(e) = read_full_at(self.file, &mut self.buf, self.pos) {
                return self.fail(e);
            }
            self.pos += n as u64;
            self.lexer.feed(&self.buf, &mut self.engine);
        }
    }
}

/// Fill `buf` from `file` at `offset`, or fail with `UnexpectedEof`.
fn read_full_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, offset) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "spool file shorter than the message range",
                ));
            }
            Ok(n) => {
                buf = buf.get_mut(n..).unwrap_or_default();
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

// ---------------------------------------------------------------------------
// Lexer: bytes -> line content fragments and line ends.

/// Splits input into line content (never containing CR or LF) and line ends;
/// CRLF, bare LF and lone CR each end one line.
#[derive(Default)]
struct Lexer {
    pending_cr: bool,
}

impl Lexer {
    fn feed(&mut self, input: &[u8], e: &mut Engine<'_>) {
        let mut rest = input;
        if self.pending_cr {
            self.pending_cr = false;
            e.eol();
            if let Some((b'\n', tail)) = rest.split_first() {
                rest = tail;
            }
        }
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
                None => {
                    e.data(rest);
                    break;
                }
                Some(i) => {
                    let (line, tail) = rest.split_at(i);
                    e.data(line);
                    match tail.split_first() {
                        Some((b'\r', after)) => match after.split_first() {
                            None => {
                                self.pending_cr = true;
                                rest = after;
                            }
                            Some((b'\n', after_lf)) => {
                                e.eol();
                                rest = after_lf;
                            }
                            Some(_) => {
                                e.eol();
                                rest = after;
                            }
                        },
                        Some((_, after)) => {
                            e.eol();
                            rest = after;
                        }
                        None => break,
                    }
                }
            }
        }
    }

    fn finish(&mut self, e: &mut Engine<'_>) {
        if self.pending_cr {
            self.pending_cr = false;
            e.eol();
        }
        e.eof();
    }
}

// ---------------------------------------------------------------------------
// Sinks: counting (plan) or writing (stream).

/// Output channel. The stream pass writes every channel to the output; the
/// plan pass counts them separately so that a part's header and its two
/// candidate bodies can be settled once the part's end is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chan {
    Main,
    Hdr { cte: bool },
    Keep,
    Qp,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    bytes: u64,
    eight: bool,
    touched: bool,
    /// The last thing counted was a line break.
    last_nl: bool,
}

impl Counter {
    fn data(&mut self, d: &[u8]) {
        if d.is_empty() {
            return;
        }
        self.bytes += d.len() as u64;
        if !self.eight && d.iter().any(|&b| b >= 0x80) {
            self.eight = true;
        }
        self.touched = true;
        self.last_nl = false;
    }

    fn newline(&mut self) {
        self.bytes += 2;
        self.touched = true;
        self.last_nl = true;
    }

    fn merge(&mut self, o: &Counter) {
        self.bytes += o.bytes;
        self.eight |= o.eight;
        if o.touched {
            self.touched = true;
            self.last_nl = o.last_nl;
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    main: Counter,
    hdr_all: Counter,
    hdr_other: Counter,
    keep: Counter,
    qp: Counter,
}

impl Tally {
    fn reset_part(&mut self) {
        self.hdr_all = Counter::default();
        self.hdr_other = Counter::default();
        self.keep = Counter::default();
        self.qp = Counter::default();
    }
}

/// Output of the stream pass. A line break is held back until more output
/// follows, which drops exactly one trailing CRLF.
#[derive(Debug, Default)]
struct Writer {
    buf: Vec<u8>,
    pending_nl: bool,
}

#[derive(Debug)]
enum Sink {
    Plan(Box<Tally>),
    Stream(Writer),
}

impl Sink {
    fn data(&mut self, ch: Chan, d: &[u8]) {
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
                Chan::Keep => t.keep.data(d),
                Chan::Qp => t.qp.data(d),
            },
        }
    }

    fn newline(&mut self, ch: Chan) {
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
                Chan::Keep => t.keep.newline(),
                Chan::Qp => t.qp.newline(),
            },
        }
    }

    fn is_stream(&self) -> bool {
        matches!(self, Sink::Stream(_))
    }
}

// ---------------------------------------------------------------------------
// Body encoders. Each sees line content fragments, line ends and the end of
// its body, and is back in its initial state after every line end.

/// Pass-through with a hard wrap: a line longer than `width` gets a CRLF
/// after every `width` octets.
#[derive(Debug)]
struct Wrap {
    col: usize,
    width: usize,
}

impl Wrap {
    fn new(width: usize) -> Self {
        Wrap { col: 0, width }
    }

    fn data(&mut self, mut d: &[u8], s: &mut Sink, ch: Chan) {
        while !d.is_empty() {
            if self.col >= self.width {
                s.newline(ch);
                self.col = 0;
            }
            let n = (self.width - self.col).min(d.len());
            let (a, rest) = d.split_at(n);
            s.data(ch, a);
            self.col += n;
            d = rest;
        }
    }

    fn eol(&mut self, s: &mut Sink, ch: Chan) {
        s.newline(ch);
        self.col = 0;
    }

    fn eof(&mut self) {
        self.col = 0;
    }
}

fn hex_escape(b: u8) -> [u8; 3] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    [b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0x0f)]]
}

/// Printable ASCII that quoted-printable writes as itself (not `=`, not
/// whitespace, which is handled separately).
fn qp_literal(b: u8) -> bool {
    (33..=126).contains(&b) && b != b'='
}

/// Streaming quoted-printable encoder (RFC 2045 §6.7), one hard line at a
/// time. Whitespace is held back one byte so that trailing whitespace can be
/// encoded; a `-` starting an output line is encoded so that no output line
/// can match a boundary delimiter.
#[derive(Debug, Default)]
struct QpEnc {
    col: usize,
    ws: Option<u8>,
}

impl QpEnc {
    fn put(&mut self, tok: &[u8], s: &mut Sink, ch: Chan) {
        if self.col + tok.len() > QP_LINE - 1 {
            s.data(ch, b"=");
            s.newline(ch);
            self.col = 0;
        }
        s.data(ch, tok);
        self.col += tok.len();
    }

    fn data(&mut self, mut d: &[u8], s: &mut Sink, ch: Chan) {
        while let Some((&b, rest)) = d.split_first() {
            if let Some(w) = self.ws.take() {
                self.put(&[w], s, ch);
            }
            if is_ws(b) {
                self.ws = Some(b);
                d = rest;
                continue;
            }
            if !qp_literal(b) {
                self.put(&hex_escape(b), s, ch);
                d = rest;
                continue;
            }
            let run = d.iter().take_while(|&&c| qp_literal(c)).count();
            let (mut lit, after) = d.split_at(run);
            while let Some((&first, lit_rest)) = lit.split_first() {
                if self.col >= QP_LINE - 1 {
                    s.data(ch, b"=");
                    s.newline(ch);
                    self.col = 0;
                }
                if self.col == 0 && first == b'-' {
                    self.put(&hex_escape(first), s, ch);
                    lit = lit_rest;
                    continue;
                }
                let n = (QP_LINE - 1 - self.col).min(lit.len());
                let (a, r) = lit.split_at(n);
                s.data(ch, a);
                self.col += n;
                lit = r;
            }
            d = after;
        }
    }

    fn flush_ws(&mut self, s: &mut Sink, ch: Chan) {
        if let Some(w) = self.ws.take() {
            self.put(&hex_escape(w), s, ch);
        }
    }

    fn eol(&mut self, s: &mut Sink, ch: Chan) {
        self.flush_ws(s, ch);
        s.newline(ch);
        self.col = 0;
    }

    fn eof(&mut self, s: &mut Sink, ch: Chan) {
        self.flush_ws(s, ch);
        self.col = 0;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateKind {
    Base64,
    QuotedPrintable,
}

/// Already-encoded bodies: lines of at most 998 octets pass unchanged, longer
/// ones are split (base64: at 76 characters; quoted-printable: with soft
/// line breaks between escapes).
#[derive(Debug)]
struct Gate {
    kind: GateKind,
    head: Vec<u8>,
    long: bool,
    col: usize,
    /// Quoted-printable: bytes left of the current `=XX` escape.
    esc: u8,
    /// Quoted-printable: a soft line break was inserted in this line.
    broke: bool,
    /// Base64: last byte written.
    last: u8,
}

impl Gate {
    fn new(kind: GateKind) -> Self {
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

    fn data(&mut self, d: &[u8], s: &mut Sink) {
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

    fn long_data(&mut self, d: &[u8], s: &mut Sink) {
        match self.kind {
            GateKind::Base64 => self.long_b64(d, s),
            GateKind::QuotedPrintable => self.long_qp(d, s),
        }
    }

    /// Base64 decoders ignore line breaks. A new line never starts with `-`
    /// nor follows whitespace, so no piece can look like a boundary.
    fn long_b64(&mut self, mut d: &[u8], s: &mut Sink) {
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
    fn long_qp(&mut self, d: &[u8], s: &mut Sink) {
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

    fn end_line(&mut self, s: &mut Sink) {
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

    fn eol(&mut self, s: &mut Sink) {
        self.end_line(s);
        s.newline(Chan::Main);
    }

    fn eof(&mut self, s: &mut Sink) {
        self.end_line(s);
    }
}

/// Streaming UTF-8 validity check.
#[derive(Debug, Default)]
struct Utf8Check {
    bad: bool,
    carry: [u8; 4],
    carried: usize,
}

impl Utf8Check {
    fn feed(&mut self, mut d: &[u8]) {
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

    fn valid(&self) -> bool {
        !self.bad && self.carried == 0
    }
}

/// Plan pass, identity-encoded leaf: counts both possible outputs (as is,
/// and quoted-printable) while collecting what decides between them.
#[derive(Debug)]
struct Probe {
    entity: u32,
    is_message: bool,
    has_ct: bool,
    has_mv: bool,
    /// The header ended at a non-header line instead of an empty line.
    case_c: bool,
    keep: Wrap,
    qp: QpEnc,
    cur_line: u64,
    long: bool,
    nul: bool,
    eight: bool,
    utf8: Utf8Check,
}

impl Probe {
    fn data(&mut self, d: &[u8], s: &mut Sink) {
        self.cur_line += d.len() as u64;
        if self.cur_line > MAX_LINE as u64 {
            self.long = true;
        }
        if !self.nul && d.contains(&0) {
            self.nul = true;
        }
        if !self.eight && d.iter().any(|&b| b >= 0x80) {
            self.eight = true;
        }
        self.utf8.feed(d);
        self.keep.data(d, s, Chan::Keep);
        self.qp.data(d, s, Chan::Qp);
    }

    fn eol(&mut self, s: &mut Sink) {
        self.cur_line = 0;
        self.utf8.feed(b"\n");
        self.keep.eol(s, Chan::Keep);
        self.qp.eol(s, Chan::Qp);
    }

    fn eof(&mut self, s: &mut Sink) {
        self.keep.eof();
        self.qp.eof(s, Chan::Qp);
    }
}

#[derive(Debug)]
enum Body {
    Pass(Wrap),
    Qp(QpEnc),
    Gate(Gate),
    Probe(Box<Probe>),
}

impl Body {
    fn pass() -> Body {
        Body::Pass(Wrap::new(MAX_LINE))
    }

    fn data(&mut self, d: &[u8], s: &mut Sink) {
        match self {
            Body::Pass(w) => w.data(d, s, Chan::Main),
            Body::Qp(q) => q.data(d, s, Chan::Main),
            Body::Gate(g) => g.data(d, s),
            Body::Probe(p) => p.data(d, s),
        }
    }

    fn eol(&mut self, s: &mut Sink) {
        match self {
            Body::Pass(w) => w.eol(s, Chan::Main),
            Body::Qp(q) => q.eol(s, Chan::Main),
            Body::Gate(g) => g.eol(s),
            Body::Probe(p) => p.eol(s),
        }
    }

    fn eof(&mut self, s: &mut Sink) {
        match self {
            Body::Pass(w) => w.eof(),
            Body::Qp(q) => q.eof(s, Chan::Main),
            Body::Gate(g) => g.eof(s),
            Body::Probe(p) => p.eof(s),
        }
    }
}

// ---------------------------------------------------------------------------
// Header blocks.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldKind {
    None,
    ContentType,
    Cte,
    MimeVersion,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    NeedMore,
    Blank,
    Continuation,
    Field { kind: FieldKind, colon: usize },
    NotHeader,
}

/// Classify a header-block line from its first bytes. `complete`: the whole
/// line is in `seg`.
fn classify(seg: &[u8], complete: bool) -> Class {
    match seg.first() {
        None => {
            if complete {
                Class::Blank
            } else {
                Class::NeedMore
            }
        }
        Some(&b) if is_ws(b) => Class::Continuation,
        Some(_) => {
            let name_len = seg
                .iter()
                .take_while(|&&c| (33..=126).contains(&c) && c != b':')
                .count();
            let (name, after) = seg.split_at(name_len);
            let ws = after.iter().take_while(|&&c| is_ws(c)).count();
            match after.get(ws) {
                Some(b':') if name_len > 0 => Class::Field {
                    kind: field_kind(name),
                    colon: name_len + ws,
                },
                Some(_) => Class::NotHeader,
                None if complete || seg.len() > MAX_LINE => Class::NotHeader,
                None => Class::NeedMore,
            }
        }
    }
}

fn field_kind(name: &[u8]) -> FieldKind {
    if name.eq_ignore_ascii_case(b"content-type") {
        FieldKind::ContentType
    } else if name.eq_ignore_ascii_case(b"content-transfer-encoding") {
        FieldKind::Cte
    } else if name.eq_ignore_ascii_case(b"mime-version") {
        FieldKind::MimeVersion
    } else {
        FieldKind::Other
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    Unclassified,
    /// Classified; `cte`: the line belongs to a Content-Transfer-Encoding field.
    Known {
        cte: bool,
    },
}

#[derive(Debug)]
enum HdrEol {
    Continue,
    Blank,
    NotHeader(Vec<u8>),
}

/// One header block being read (and folded where needed).
#[derive(Debug)]
struct Header {
    entity: u32,
    depth: u32,
    is_message: bool,
    digest_child: bool,
    /// Stream pass: this entity is re-encoded (drop its CTE fields, add the
    /// new fields at the end of the block).
    edit: Option<Edit>,
    /// Current physical line (unsent part), at most 998 octets between calls.
    seg: Vec<u8>,
    line: LineState,
    line_folded: bool,
    /// A fold must leave at least this many octets on the line.
    min_fold: usize,
    field: FieldKind,
    capture: bool,
    value: Vec<u8>,
    content_type: Option<Vec<u8>>,
    cte: Option<Vec<u8>>,
    has_mv: bool,
}

impl Header {
    fn new(
        entity: u32,
        depth: u32,
        is_message: bool,
        digest_child: bool,
        edit: Option<Edit>,
    ) -> Self {
        Header {
            entity,
            depth,
            is_message,
            digest_child,
            edit,
            seg: Vec::new(),
            line: LineState::Unclassified,
            line_folded: false,
            min_fold: 1,
            field: FieldKind::None,
            capture: false,
            value: Vec::new(),
            content_type: None,
            cte: None,
            has_mv: false,
        }
    }

    fn keep_value(&mut self, d: &[u8]) {
        if self.capture {
            let room = MAX_FIELD_VALUE.saturating_sub(self.value.len());
            self.value
                .extend_from_slice(d.get(..room.min(d.len())).unwrap_or_default());
        }
    }

    fn finish_field(&mut self) {
        if self.capture {
            let v = std::mem::take(&mut self.value);
            match self.field {
                FieldKind::ContentType => self.content_type = Some(v),
                FieldKind::Cte => self.cte = Some(v),
                _ => {}
            }
        }
        self.capture = false;
    }

    fn start_line(&mut self, class: Class) {
        match class {
            Class::Field { kind, colon } => {
                self.finish_field();
                self.field = kind;
                self.capture = match kind {
                    FieldKind::ContentType => self.content_type.is_none(),
                    FieldKind::Cte => self.cte.is_none(),
                    _ => false,
                };
                if kind == FieldKind::MimeVersion {
                    self.has_mv = true;
                }
                self.value.clear();
                let seg = std::mem::take(&mut self.seg);
                self.keep_value(seg.get(colon + 1..).unwrap_or_default());
                self.seg = seg;
                self.line = LineState::Known {
                    cte: kind == FieldKind::Cte,
                };
                self.min_fold = colon + 1;
            }
            _ => {
                let seg = std::mem::take(&mut self.seg);
                self.keep_value(&seg);
                self.seg = seg;
                self.line = LineState::Known {
                    cte: self.field == FieldKind::Cte,
                };
                self.min_fold = 1;
            }
        }
    }

    fn chan(&self) -> (Chan, bool) {
        let cte = matches!(self.line, LineState::Known { cte: true });
        (Chan::Hdr { cte }, cte && self.edit.is_some())
    }

    /// Emit folded pieces while the line is longer than the limit.
    fn fold(&mut self, s: &mut Sink) {
        let (ch, drop) = self.chan();
        while self.seg.len() > MAX_LINE {
            let first_text = self
                .seg
                .iter()
                .position(|&b| !is_ws(b))
                .unwrap_or(self.seg.len());
            let lo = self.min_fold.max(first_text + 1);
            let at_ws = (lo..=MAX_LINE)
                .rev()
                .find(|&i| self.seg.get(i).is_some_and(|&b| is_ws(b)));
            let cut = at_ws.unwrap_or(MAX_LINE).min(self.seg.len());
            if !drop {
                s.data(ch, self.seg.get(..cut).unwrap_or_default());
                s.newline(ch);
            }
            self.seg.drain(..cut);
            if at_ws.is_none() {
                self.seg.insert(0, b' ');
            }
            self.min_fold = 1;
            self.line_folded = true;
        }
    }

    fn feed_known(&mut self, mut d: &[u8], s: &mut Sink) {
        while !d.is_empty() {
            let room = (MAX_LINE + 1).saturating_sub(self.seg.len()).max(1);
            let (a, rest) = d.split_at(room.min(d.len()));
            self.seg.extend_from_slice(a);
            self.keep_value(a);
            self.fold(s);
            d = rest;
        }
    }

    /// Line content. Returns the bytes of the line when it turns out not to
    /// be a header line (the block ends and they belong to the body).
    fn data(&mut self, d: &[u8], s: &mut Sink) -> Option<Vec<u8>> {
        let mut d = d;
        if self.line == LineState::Unclassified {
            let room = (MAX_LINE + 1).saturating_sub(self.seg.len());
            let (a, rest) = d.split_at(room.min(d.len()));
            self.seg.extend_from_slice(a);
            match classify(&self.seg, false) {
                Class::NeedMore | Class::Blank => {
                    if rest.is_empty() {
                        return None;
                    }
                    // Cannot happen (a full head always classifies); treat
                    // the line as not a header rather than lose bytes.
                    let mut v = std::mem::take(&mut self.seg);
                    v.extend_from_slice(rest);
                    return Some(v);
                }
                Class::NotHeader => {
                    let mut v = std::mem::take(&mut self.seg);
                    v.extend_from_slice(rest);
                    return Some(v);
                }
                class => {
                    self.start_line(class);
                    self.fold(s);
                }
            }
            d = rest;
        }
        self.feed_known(d, s);
        None
    }

    fn end_line(&mut self, s: &mut Sink, folded: &mut usize, newline: bool) -> HdrEol {
        if self.line == LineState::Unclassified {
            match classify(&self.seg, true) {
                Class::Blank | Class::NeedMore => return HdrEol::Blank,
                Class::NotHeader => return HdrEol::NotHeader(std::mem::take(&mut self.seg)),
                class => {
                    self.start_line(class);
                    self.fold(s);
                }
            }
        }
        let (ch, drop) = self.chan();
        if !drop {
            s.data(ch, &self.seg);
            if newline {
                s.newline(ch);
            }
        }
        if self.line_folded {
            *folded += 1;
        }
        self.seg.clear();
        self.line = LineState::Unclassified;
        self.line_folded = false;
        self.min_fold = 1;
        HdrEol::Continue
    }
}

// ---------------------------------------------------------------------------
// Content-Type / Content-Transfer-Encoding parsing.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enc {
    Identity,
    Base64,
    QuotedPrintable,
    Unknown,
}

/// Remove RFC 5322 comments (outside quoted strings), keeping quoted strings.
fn strip_comments(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for &b in v {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(b);
            }
            continue;
        }
        match b {
            b'\\' if quoted || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    out.push(b);
                }
            }
            b'"' if depth == 0 => {
                quoted = !quoted;
                out.push(b);
            }
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(b),
        }
    }
    out
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| !is_ws(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|&b| !is_ws(b)).map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or_default()
}

fn parse_cte(v: Option<&[u8]>) -> Enc {
    let Some(v) = v else {
        return Enc::Identity;
    };
    let clean = strip_comments(v);
    let t = trim(&clean).to_ascii_lowercase();
    match t.as_slice() {
        b"" | b"7bit" | b"8bit" | b"binary" => Enc::Identity,
        b"base64" => Enc::Base64,
        b"quoted-printable" => Enc::QuotedPrintable,
        _ => Enc::Unknown,
    }
}

/// Split on `sep` outside quoted strings.
fn split_unquoted(v: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, &b) in v.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(v.get(start..i).unwrap_or_default());
            start = i + 1;
        }
    }
    parts.push(v.get(start..).unwrap_or_default());
    parts
}

fn unquote(v: &[u8]) -> Vec<u8> {
    let v = trim(v);
    let Some(inner) = v.strip_prefix(b"\"") else {
        return v.to_vec();
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &b in inner {
        if escaped {
            out.push(b);
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            break;
        } else {
            out.push(b);
        }
    }
    out
}

fn percent_decode(v: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while let Some(&b) = v.get(i) {
        if b == b'%'
            && let (Some(h), Some(l)) = (
                v.get(i + 1).copied().and_then(hex),
                v.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

/// RFC 2231 extended value: drop `charset'language'`, percent-decode.
fn decode_extended(v: &[u8], first: bool) -> Vec<u8> {
    let v = trim(v);
    if first {
        let mut it = v.splitn(3, |&b| b == b'\'');
        if let (Some(_), Some(_), Some(rest)) = (it.next(), it.next(), it.next()) {
            return percent_decode(rest);
        }
    }
    percent_decode(v)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// `multipart/*`; `delim` is `--boundary` (None: no usable boundary).
    Multipart {
        delim: Option<Vec<u8>>,
        digest: bool,
    },
    /// `message/rfc822` or `message/global`.
    Message,
    /// Other composite types, never re-encoded.
    OtherComposite,
    Discrete,
}

fn parse_content_type(v: Option<&[u8]>, digest_child: bool) -> Kind {
    let default = if digest_child {
        Kind::Message
    } else {
        Kind::Discrete
    };
    let Some(v) = v else {
        return default;
    };
    let clean = strip_comments(v);
    let pieces = split_unquoted(&clean, b';');
    let mut it = pieces.iter();
    let Some(mime) = it.next() else {
        return default;
    };
    let mime = trim(mime).to_ascii_lowercase();
    let mut ts = mime.splitn(2, |&b| b == b'/');
    let (Some(ty), Some(sub)) = (ts.next(), ts.next()) else {
        return default;
    };
    let (ty, sub) = (trim(ty), trim(sub));
    if ty.is_empty() || sub.is_empty() {
        return default;
    }
    match ty {
        b"multipart" => {
            let delim = boundary_param(it.copied()).map(|b| {
                let mut d = b"--".to_vec();
                d.extend_from_slice(&b);
                d
            });
            Kind::Multipart {
                delim,
                digest: sub == b"digest",
            }
        }
        b"message" => match sub {
            b"rfc822" | b"global" => Kind::Message,
            b"partial" | b"external-body" => Kind::OtherComposite,
            _ => Kind::Discrete,
        },
        _ => Kind::Discrete,
    }
}

/// The `boundary` parameter: plain, quoted, or RFC 2231 (`boundary*`,
/// `boundary*0`, `boundary*1*`, ...). None if absent or unusable.
fn boundary_param<'a>(params: impl Iterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut plain = None;
    let mut extended = None;
    let mut sections: Vec<(u32, bool, Vec<u8>)> = Vec::new();
    for p in params {
        let mut kv = p.splitn(2, |&b| b == b'=');
        let (Some(name), Some(value)) = (kv.next(), kv.next()) else {
            continue;
        };
        let name = trim(name).to_ascii_lowercase();
        if name == b"boundary" {
            if plain.is_none() {
                plain = Some(unquote(value));
            }
        } else if let Some(rest) = name.strip_prefix(b"boundary*") {
            if rest.is_empty() {
                if extended.is_none() {
                    extended = Some(decode_extended(&unquote(value), true));
                }
            } else {
                let (num, ext) = match rest.strip_suffix(b"*") {
                    Some(n) => (n, true),
                    None => (rest, false),
                };
                let n = std::str::from_utf8(num)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok());
                if let Some(n) = n
                    && num.iter().all(u8::is_ascii_digit)
                    && sections.len() < 64
                {
                    sections.push((n, ext, unquote(value)));
                }
            }
        }
    }
    let joined = if sections.is_empty() {
        None
    } else {
        sections.sort_by_key(|s| s.0);
        let mut out = Vec::new();
        for (i, (n, ext, v)) in sections.iter().enumerate() {
            if usize::try_from(*n).ok() != Some(i) {
                break;
            }
            if *ext {
                out.extend(decode_extended(v, i == 0));
            } else {
                out.extend_from_slice(v);
            }
        }
        Some(out)
    };
    let b = plain.or(extended).or(joined)?;
    (!b.is_empty() && b.len() <= MAX_BOUNDARY && !b.iter().any(|&c| c == b'\r' || c == b'\n'))
        .then_some(b)
}

fn added_lines(e: &Edit) -> Vec<&'static [u8]> {
    let mut v: Vec<&'static [u8]> = Vec::with_capacity(3);
    if e.add_mime_version {
        v.push(b"MIME-Version: 1.0");
    }
    match e.add_content_type {
        None => {}
        Some(Charset::Ascii) => v.push(b"Content-Type: text/plain"),
        Some(Charset::Utf8) => v.push(b"Content-Type: text/plain; charset=utf-8"),
        Some(Charset::Unknown8bit) => v.push(b"Content-Type: text/plain; charset=unknown-8bit"),
    }
    v.push(b"Content-Transfer-Encoding: quoted-printable");
    v
}

// ---------------------------------------------------------------------------
// The walk itself, shared by both passes.

#[derive(Debug)]
struct Bound {
    /// `--boundary`
    delim: Vec<u8>,
    /// Depth of the multipart entity.
    depth: u32,
    digest: bool,
}

#[derive(Debug)]
enum State {
    Header(Box<Header>),
    Body(Body),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderEnd {
    /// Empty line.
    Blank,
    /// A line that is not a header line (it starts the body).
    NotHeader,
    /// End of input or a boundary line: the entity has no body.
    Cut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    /// At a line start (nothing of the line seen yet).
    LineStart,
    /// Buffering a line that may be a boundary delimiter.
    Buffering,
    /// The current line is not a delimiter; its bytes go straight through.
    Released,
}

struct Engine<'p> {
    opts: WireOptions,
    sink: Sink,
    /// Stream pass: the plan's edits, sorted by entity.
    edits_in: &'p [Edit],
    edit_pos: usize,
    /// Plan pass: edits decided so far.
    edits_out: Vec<Edit>,
    state: State,
    bounds: Vec<Bound>,
    head: Vec<u8>,
    filter: Filter,
    entities: u32,
    folded: usize,
}

fn could_be_delimiter(line: &[u8], bounds: &[Bound]) -> bool {
    if line.len() > MAX_LINE {
        return false;
    }
    bounds.iter().any(|b| {
        if line.len() <= b.delim.len() {
            b.delim.starts_with(line)
        } else {
            line.strip_prefix(b.delim.as_slice()).is_some_and(|t| {
                t == b"-" || t.strip_prefix(b"--").unwrap_or(t).iter().all(|&c| is_ws(c))
            })
        }
    })
}

/// `Some((index, close))` if `line` is a delimiter of `bounds[index]`
/// (innermost match wins).
fn match_delimiter(line: &[u8], bounds: &[Bound]) -> Option<(usize, bool)> {
    if line.len() > MAX_LINE {
        return None;
    }
    bounds.iter().enumerate().rev().find_map(|(i, b)| {
        let t = line.strip_prefix(b.delim.as_slice())?;
        if let Some(t2) = t.strip_prefix(b"--")
            && t2.iter().all(|&c| is_ws(c))
        {
            return Some((i, true));
        }
        t.iter().all(|&c| is_ws(c)).then_some((i, false))
    })
}

impl<'p> Engine<'p> {
    fn new(opts: WireOptions, sink: Sink, edits_in: &'p [Edit]) -> Self {
        let mut e = Engine {
            opts,
            sink,
            edits_in,
            edit_pos: 0,
            edits_out: Vec::new(),
            state: State::Body(Body::pass()),
            bounds: Vec::new(),
            head: Vec::new(),
            filter: Filter::LineStart,
            entities: 0,
            folded: 0,
        };
        e.state = e.new_entity(0, true, false);
        e
    }

    /// Stream pass output buffer.
    fn out(&mut self) -> Option<&mut Vec<u8>> {
        match &mut self.sink {
            Sink::Stream(w) => Some(&mut w.buf),
            Sink::Plan(_) => None,
        }
    }

    fn new_entity(&mut self, depth: u32, is_message: bool, digest_child: bool) -> State {
        if self.entities >= MAX_PARTS {
            // Everything from here on is one opaque part.
            self.bounds.clear();
            return State::Body(Body::pass());
        }
        let entity = self.entities;
        self.entities += 1;
        let mut edit = None;
        while let Some(e) = self.edits_in.get(self.edit_pos) {
            if e.entity < entity {
                self.edit_pos += 1;
                continue;
            }
            if e.entity == entity {
                edit = Some(*e);
                self.edit_pos += 1;
            }
            break;
        }
        State::Header(Box::new(Header::new(
            entity,
            depth,
            is_message,
            digest_child,
            edit,
        )))
    }

    // --- line filter: recognises boundary delimiter lines -----------------

    fn data(&mut self, d: &[u8]) {
        if d.is_empty() {
            return;
        }
        if self.filter == Filter::Released || self.bounds.is_empty() {
            self.filter = Filter::Released;
            self.state_data(d);
            return;
        }
        let room = (MAX_LINE + 1).saturating_sub(self.head.len());
        let (a, rest) = d.split_at(room.min(d.len()));
        self.head.extend_from_slice(a);
        self.filter = Filter::Buffering;
        if !could_be_delimiter(&self.head, &self.bounds) {
            self.filter = Filter::Released;
            let head = std::mem::take(&mut self.head);
            self.state_data(&head);
            self.reuse_head(head);
            self.data(rest);
        }
    }

    /// Give the head buffer's allocation back unless a nested call is
    /// buffering a line in it.
    fn reuse_head(&mut self, mut head: Vec<u8>) {
        if self.head.is_empty() {
            head.clear();
            self.head = head;
        }
    }

    fn eol(&mut self) {
        self.end_of_line(true);
    }

    fn eof(&mut self) {
        self.end_of_line(false);
        if let Sink::Stream(w) = &mut self.sink {
            // Drop exactly one trailing CRLF.
            w.pending_nl = false;
        }
    }

    /// A line ends (`eol`) or the input ends without a final line break.
    fn end_of_line(&mut self, eol: bool) {
        if self.filter == Filter::Buffering {
            let head = std::mem::take(&mut self.head);
            self.filter = Filter::LineStart;
            if let Some((k, close)) = match_delimiter(&head, &self.bounds) {
                self.on_delimiter(k, close, &head, eol);
                self.reuse_head(head);
                if !eol {
                    self.state_eof();
                }
                self.filter = Filter::LineStart;
                return;
            }
            self.filter = Filter::Released;
            self.state_data(&head);
            self.reuse_head(head);
            // The line may have been handed to a new entity and be buffered
            // again; finish it through the filter.
            self.end_of_line(eol);
            return;
        }
        if eol {
            self.state_eol();
        } else {
            self.state_eof();
        }
        self.filter = Filter::LineStart;
    }

    /// A header block ended at a line that is not a header line: that line
    /// starts the body, so it goes through the delimiter filter again (the
    /// entity may just have opened a multipart).
    fn refilter(&mut self, line: &[u8]) {
        self.filter = Filter::LineStart;
        self.data(line);
    }

    fn on_delimiter(&mut self, k: usize, close: bool, line: &[u8], eol: bool) {
        // The current entity ends here (we are at a line start).
        match std::mem::replace(&mut self.state, State::Body(Body::pass())) {
            State::Header(h) => self.end_header(*h, HeaderEnd::Cut),
            State::Body(Body::Probe(p)) => self.finish_probe(*p),
            State::Body(_) => {}
        }
        let (depth, digest) = self
            .bounds
            .get(k)
            .map_or((0, false), |b| (b.depth, b.digest));
        self.bounds.truncate(if close { k } else { k + 1 });
        self.sink.data(Chan::Main, line);
        if eol {
            self.sink.newline(Chan::Main);
        }
        self.state = if close {
            State::Body(Body::pass())
        } else {
            self.new_entity(depth + 1, false, digest)
        };
    }

    // --- state machine -----------------------------------------------------

    fn take_header(&mut self) -> Option<Box<Header>> {
        match std::mem::replace(&mut self.state, State::Body(Body::pass())) {
            State::Header(h) => Some(h),
            other => {
                self.state = other;
                None
            }
        }
    }

    fn state_data(&mut self, d: &[u8]) {
        if d.is_empty() {
            return;
        }
        match &mut self.state {
            State::Header(h) => {
                if let Some(left) = h.data(d, &mut self.sink)
                    && let Some(h) = self.take_header()
                {
                    self.end_header(*h, HeaderEnd::NotHeader);
                    self.refilter(&left);
                }
            }
            State::Body(b) => b.data(d, &mut self.sink),
        }
    }

    fn state_eol(&mut self) {
        match &mut self.state {
            State::Header(h) => match h.end_line(&mut self.sink, &mut self.folded, true) {
                HdrEol::Continue => {}
                HdrEol::Blank => {
                    if let Some(h) = self.take_header() {
                        self.end_header(*h, HeaderEnd::Blank);
                    }
                }
                HdrEol::NotHeader(left) => {
                    if let Some(h) = self.take_header() {
                        self.end_header(*h, HeaderEnd::NotHeader);
                        self.refilter(&left);
                        self.end_of_line(true);
                    }
                }
            },
            State::Body(b) => b.eol(&mut self.sink),
        }
    }

    fn state_eof(&mut self) {
        match &mut self.state {
            State::Header(h) => {
                let res = if h.seg.is_empty() && h.line == LineState::Unclassified {
                    HdrEol::Blank
                } else {
                    h.end_line(&mut self.sink, &mut self.folded, false)
                };
                if let Some(h) = self.take_header() {
                    match res {
                        HdrEol::NotHeader(left) => {
                            self.end_header(*h, HeaderEnd::NotHeader);
                            self.refilter(&left);
                            self.end_of_line(false);
                        }
                        _ => self.end_header(*h, HeaderEnd::Cut),
                    }
                }
            }
            State::Body(Body::Probe(p)) => {
                p.eof(&mut self.sink);
                if let State::Body(Body::Probe(p)) =
                    std::mem::replace(&mut self.state, State::Body(Body::pass()))
                {
                    self.finish_probe(*p);
                }
            }
            State::Body(b) => b.eof(&mut self.sink),
        }
    }

    /// Plan pass: the header block is settled as is.
    fn commit_header(&mut self) {
        if let Sink::Plan(t) = &mut self.sink {
            let all = t.hdr_all;
            t.main.merge(&all);
            t.reset_part();
        }
    }

    fn end_header(&mut self, mut h: Header, how: HeaderEnd) {
        h.finish_field();
        let stream = self.sink.is_stream();
        if stream
            && how != HeaderEnd::Cut
            && let Some(e) = &h.edit
        {
            for line in added_lines(e) {
                self.sink.data(Chan::Hdr { cte: false }, line);
                self.sink.newline(Chan::Hdr { cte: false });
            }
            if how == HeaderEnd::NotHeader {
                self.sink.newline(Chan::Hdr { cte: false });
            }
        }
        if how == HeaderEnd::Blank {
            self.sink.newline(Chan::Hdr { cte: false });
        }
        if how == HeaderEnd::Cut {
            self.commit_header();
            self.state = State::Body(Body::pass());
            return;
        }
        let enc = parse_cte(h.cte.as_deref());
        let kind = parse_content_type(h.content_type.as_deref(), h.digest_child);
        let deep = h.depth >= MAX_DEPTH;
        let body = match (kind, enc) {
            (
                Kind::Multipart {
                    delim: Some(delim),
                    digest,
                },
                Enc::Identity,
            ) if !deep => {
                self.commit_header();
                self.bounds.push(Bound {
                    delim,
                    depth: h.depth,
                    digest,
                });
                Body::pass()
            }
            (Kind::Message, Enc::Identity) if !deep => {
                if how == HeaderEnd::NotHeader {
                    // Keep fields that may be added to the embedded message
                    // out of this header block.
                    self.sink.newline(Chan::Hdr { cte: false });
                }
                self.commit_header();
                self.state = self.new_entity(h.depth + 1, true, false);
                return;
            }
            (_, Enc::Base64) => {
                self.commit_header();
                Body::Gate(Gate::new(GateKind::Base64))
            }
            (_, Enc::QuotedPrintable) => {
                self.commit_header();
                Body::Gate(Gate::new(GateKind::QuotedPrintable))
            }
            (Kind::Discrete, Enc::Identity) => {
                if stream {
                    if h.edit.is_some() {
                        Body::Qp(QpEnc::default())
                    } else {
                        Body::pass()
                    }
                } else {
                    Body::Probe(Box::new(Probe {
                        entity: h.entity,
                        is_message: h.is_message,
                        has_ct: h.content_type.is_some(),
                        has_mv: h.has_mv,
                        case_c: how == HeaderEnd::NotHeader,
                        keep: Wrap::new(MAX_LINE),
                        qp: QpEnc::default(),
                        cur_line: 0,
                        long: false,
                        nul: false,
                        eight: false,
                        utf8: Utf8Check::default(),
                    }))
                }
            }
            _ => {
                self.commit_header();
                Body::pass()
            }
        };
        self.state = State::Body(body);
    }

    /// Plan pass: an identity-encoded leaf ended; decide and settle counts.
    fn finish_probe(&mut self, p: Probe) {
        let Sink::Plan(t) = &mut self.sink else {
            return;
        };
        let reencode = p.long || p.nul || (!self.opts.eight_bit_ok && p.eight);
        if reencode {
            let charset = if !p.eight {
                Charset::Ascii
            } else if p.utf8.valid() {
                Charset::Utf8
            } else {
                Charset::Unknown8bit
            };
            let edit = Edit {
                entity: p.entity,
                add_mime_version: p.is_message && !p.has_mv,
                add_content_type: (p.is_message && !p.has_ct).then_some(charset),
            };
            let mut added = Counter::default();
            for line in added_lines(&edit) {
                added.data(line);
                added.newline();
            }
            if p.case_c {
                added.newline();
            }
            let (other, qp) = (t.hdr_other, t.qp);
            t.main.merge(&other);
            t.main.merge(&added);
            t.main.merge(&qp);
            self.edits_out.push(edit);
        } else {
            let (all, keep) = (t.hdr_all, t.keep);
            t.main.merge(&all);
            t.main.merge(&keep);
        }
        t.reset_part();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    // --- harness -------------------------------------------------------------

    fn opts(eight_bit_ok: bool) -> WireOptions {
        WireOptions { eight_bit_ok }
    }

    /// Spool `msg` behind some junk (so `start` matters), move the cursor
    /// elsewhere, plan, stream, and check every invariant.
    fn run(msg: &[u8], eight_bit_ok: bool) -> (WirePlan, Vec<u8>) {
        let mut f = tempfile::tempfile().expect("tempfile");
        let prefix = b"JUNK-BEFORE\n\r\n";
        f.write_all(prefix).expect("write");
        f.write_all(msg).expect("write");
        f.write_all(b"\nJUNK-AFTER\n").expect("write");
        f.seek(SeekFrom::Start(3)).expect("seek");
        let start = prefix.len() as u64;
        let len = msg.len() as u64;
        let plan = plan(&f, start, len, opts(eight_bit_ok)).expect("plan");
        let mut out = Vec::new();
        for chunk in stream(&f, start, len, &plan) {
            let chunk = chunk.expect("stream");
            assert!(!chunk.is_empty() && chunk.len() <= CHUNK);
            out.extend_from_slice(&chunk);
        }
        assert_eq!(plan.size, out.len() as u64, "plan.size != streamed bytes");
        assert_eq!(
            plan.eight_bit,
            out.iter().any(|&b| b >= 0x80),
            "eight_bit flag"
        );
        assert_eq!(plan.reencoded_parts, plan.edits.len());
        check_wire(&out);
        (plan, out)
    }

    /// Copy of lettre 0.11's `ClientCodec::encode` (transparency).
    fn lettre_stuff(frame: &[u8]) -> Vec<u8> {
        #[derive(Clone, Copy)]
        enum St {
            Middle,
            Starting,
            Start,
        }
        let mut st = St::Start;
        let mut buf = Vec::with_capacity(frame.len() + 8);
        for &b in frame {
            buf.push(b);
            match (b, st) {
                (b'\r', _) => st = St::Starting,
                (b'\n', St::Starting) => st = St::Start,
                (_, St::Starting) => st = St::Middle,
                (b'.', St::Start) => {
                    st = St::Middle;
                    buf.push(b'.');
                }
                (_, St::Start) => st = St::Middle,
                _ => {}
            }
        }
        buf.extend_from_slice(b"\r\n.\r\n");
        buf
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    /// CRLF only, no line over 998, no smuggling pattern
    /// once lettre has stuffed it and appended the terminator.
    fn check_wire(out: &[u8]) {
        let mut line = 0usize;
        for (i, &b) in out.iter().enumerate() {
            match b {
                b'\r' => assert_eq!(out.get(i + 1), Some(&b'\n'), "lone CR at {i}"),
                b'\n' => {
                    assert!(i > 0 && out[i - 1] == b'\r', "bare LF at {i}");
                    line = 0;
                }
                _ => {
                    line += 1;
                    assert!(line <= MAX_LINE, "line over 998 octets ending near {i}");
                }
            }
        }
        let wire = lettre_stuff(out);
        let body = &wire[..wire.len() - 5];
        assert_eq!(
            find(&wire, b"\r\n.\r\n"),
            Some(wire.len() - 5),
            "early end of data"
        );
        assert_eq!(find(body, b"\n.\r\n"), None);
        assert_eq!(find(&wire, b"\n.\n"), None);
        assert_eq!(find(&wire, b"\r.\r"), None);
    }

    /// CRLF / CR / LF -> CRLF, then drop one trailing CRLF (what SMTP
    /// delivers for the input).
    fn normalize(msg: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(msg.len() + msg.len() / 8);
        let mut i = 0;
        while let Some(&b) = msg.get(i) {
            match b {
                b'\r' => {
                    out.extend_from_slice(b"\r\n");
                    if msg.get(i + 1) == Some(&b'\n') {
                        i += 1;
                    }
                }
                b'\n' => out.extend_from_slice(b"\r\n"),
                _ => out.push(b),
            }
            i += 1;
        }
        if out.ends_with(b"\r\n") {
            out.truncate(out.len() - 2);
        }
        out
    }

    // --- test-side MIME walker and decoders ------------------------------------

    fn qp_decode(body: &[u8]) -> Vec<u8> {
        fn hex(b: u8) -> Option<u8> {
            (b as char).to_digit(16).map(|d| d as u8)
        }
        let mut out = Vec::new();
        let lines: Vec<&[u8]> = split_crlf(body);
        for (n, line) in lines.iter().enumerate() {
            let mut l = *line;
            while let Some((&last, rest)) = l.split_last() {
                if last == b' ' || last == b'\t' {
                    l = rest;
                } else {
                    break;
                }
            }
            let soft = l.ends_with(b"=");
            if soft {
                l = &l[..l.len() - 1];
            }
            let mut i = 0;
            while i < l.len() {
                if l[i] == b'='
                    && i + 2 < l.len()
                    && let (Some(h), Some(lo)) = (hex(l[i + 1]), hex(l[i + 2]))
                {
                    out.push(h << 4 | lo);
                    i += 3;
                    continue;
                }
                out.push(l[i]);
                i += 1;
            }
            if !soft && n + 1 < lines.len() {
                out.extend_from_slice(b"\r\n");
            }
        }
        out
    }

    fn b64_decode(body: &[u8]) -> Vec<u8> {
        fn val(c: u8) -> Option<u32> {
            Some(match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            } as u32)
        }
        let vals: Vec<u32> = body.iter().filter_map(|&c| val(c)).collect();
        let mut out = Vec::new();
        for q in vals.chunks(4) {
            let mut acc = 0u32;
            for (i, v) in q.iter().enumerate() {
                acc |= v << (18 - 6 * i);
            }
            let bytes = acc.to_be_bytes();
            out.extend_from_slice(&bytes[1..q.len()]);
        }
        out
    }

    fn b64_encode(data: &[u8]) -> Vec<u8> {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        for c in data.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize]);
                } else {
                    out.push(b'=');
                }
            }
        }
        out
    }

    fn split_crlf(b: &[u8]) -> Vec<&[u8]> {
        let mut v = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i + 1 < b.len() {
            if b[i] == b'\r' && b[i + 1] == b'\n' {
                v.push(&b[start..i]);
                i += 2;
                start = i;
            } else {
                i += 1;
            }
        }
        v.push(&b[start..]);
        v
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Leaf {
        ctype: String,
        cte: String,
        raw: Vec<u8>,
        decoded: Vec<u8>,
    }

    fn header_fields(h: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut fields: Vec<(String, Vec<u8>)> = Vec::new();
        for line in split_crlf(h) {
            if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                if let Some(f) = fields.last_mut() {
                    f.1.extend_from_slice(line);
                }
            } else if let Some(c) = line.iter().position(|&b| b == b':') {
                let name = String::from_utf8_lossy(&line[..c])
                    .trim()
                    .to_ascii_lowercase();
                fields.push((name, line[c + 1..].to_vec()));
            }
        }
        fields
    }

    fn field(fields: &[(String, Vec<u8>)], name: &str) -> Option<String> {
        fields
            .iter()
            .find(|f| f.0 == name)
            .map(|f| String::from_utf8_lossy(&f.1).trim().to_string())
    }

    fn test_boundary(ct: &str) -> Option<String> {
        let lower = ct.to_ascii_lowercase();
        let i = lower.find("boundary=")? + "boundary=".len();
        let rest = &ct[i..];
        if let Some(q) = rest.strip_prefix('"') {
            Some(q[..q.find('"')?].to_string())
        } else {
            Some(rest.split([';', ' ', '\t']).next()?.to_string())
        }
    }

    /// Transfer encoding without comments, lower case.
    fn test_cte(v: &str) -> String {
        let mut out = String::new();
        let mut depth = 0;
        for c in v.chars() {
            match c {
                '(' => depth += 1,
                ')' if depth > 0 => depth -= 1,
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out.trim_matches([' ', '\t']).to_ascii_lowercase()
    }

    /// Leaves of a CRLF message, in order (simple walker, enough for the
    /// messages these tests build).
    fn leaves(msg: &[u8]) -> Vec<Leaf> {
        let mut out = Vec::new();
        walk(msg, false, &mut out);
        out
    }

    fn walk(data: &[u8], digest: bool, out: &mut Vec<Leaf>) {
        // Header ends at an empty line or at a line that is neither a field
        // nor a continuation (that line starts the body).
        let mut pos = 0;
        let mut body_at = data.len();
        while pos < data.len() {
            let end = find(&data[pos..], b"\r\n").map_or(data.len(), |i| pos + i);
            let line = &data[pos..end];
            let next = (end + 2).min(data.len());
            if line.is_empty() {
                body_at = next;
                break;
            }
            let is_cont = line[0] == b' ' || line[0] == b'\t';
            let name = line
                .iter()
                .take_while(|&&c| (33..=126).contains(&c) && c != b':')
                .count();
            let rest = &line[name..];
            let ws = rest
                .iter()
                .take_while(|&&c| c == b' ' || c == b'\t')
                .count();
            let is_field = name > 0 && rest.get(ws) == Some(&b':');
            if !is_cont && !is_field {
                body_at = pos;
                break;
            }
            pos = next;
        }
        let h = &data[..body_at.min(pos)];
        let body = &data[body_at..];
        let fields = header_fields(h);
        let ct = field(&fields, "content-type").unwrap_or_else(|| {
            if digest {
                "message/rfc822"
            } else {
                "text/plain"
            }
            .to_string()
        });
        let cte = test_cte(&field(&fields, "content-transfer-encoding").unwrap_or_default());
        let lct = ct.to_ascii_lowercase();
        let identity = matches!(cte.as_str(), "" | "7bit" | "8bit" | "binary");
        if identity
            && lct.starts_with("multipart/")
            && let Some(b) = test_boundary(&ct)
        {
            let delim = format!("--{b}").into_bytes();
            let close = format!("--{b}--").into_bytes();
            let mut part: Option<Vec<&[u8]>> = None;
            for line in split_crlf(body) {
                let t = trim(line);
                if t == close.as_slice() || t == delim.as_slice() {
                    if let Some(p) = part.take() {
                        walk(
                            &p.join(&b"\r\n"[..]),
                            lct.starts_with("multipart/digest"),
                            out,
                        );
                    }
                    if t == close.as_slice() {
                        return;
                    }
                    part = Some(Vec::new());
                } else if let Some(p) = part.as_mut() {
                    p.push(line);
                }
            }
            if let Some(p) = part.take() {
                walk(&p.join(&b"\r\n"[..]), false, out);
            }
        } else if identity && lct.starts_with("message/rfc822") {
            walk(body, false, out);
        } else {
            let decoded = match cte.as_str() {
                "quoted-printable" => qp_decode(body),
                "base64" => b64_decode(body),
                _ => body.to_vec(),
            };
            out.push(Leaf {
                ctype: ct,
                cte,
                raw: body.to_vec(),
                decoded,
            });
        }
    }

    fn assert_same_content(input: &[u8], out: &[u8]) {
        let a = leaves(&normalize(input));
        let b = leaves(out);
        assert_eq!(a.len(), b.len(), "leaf count");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                x.decoded == y.decoded,
                "leaf {i} content differs:\n in: {:?}\nout: {:?}",
                String::from_utf8_lossy(&x.decoded),
                String::from_utf8_lossy(&y.decoded)
            );
        }
    }

    fn lines(out: &[u8]) -> Vec<&[u8]> {
        split_crlf(out)
    }

    // --- line endings, final CRLF, dots ----------------------------------------

    #[test]
    fn line_endings_normalised() {
        let (p, out) = run(b"Subject: x\n\nline1\rline2\r\nline3\n", true);
        assert_eq!(out, b"Subject: x\r\n\r\nline1\r\nline2\r\nline3");
        assert_eq!(p.reencoded_parts, 0);
        let (_, out) = run(b"A: 1\r\rB\r\n\n\rC", true);
        assert_eq!(out, b"A: 1\r\n\r\nB\r\n\r\n\r\nC");
        // CR at a read boundary (16 KiB / 64 KiB) is still one CRLF.
        let mut m = b"Subject: x\n\n".to_vec();
        for boundary in [STREAM_READ, PLAN_READ, PLAN_READ + STREAM_READ + 1] {
            while m.len() + 200 < boundary - 1 {
                m.extend_from_slice(&[b'a'; 99]);
                m.push(b'\n');
            }
            m.resize(boundary - 1, b'b');
            m.extend_from_slice(b"\r\nc\r");
        }
        m.extend_from_slice(b"\rd");
        let (_, out) = run(&m, true);
        assert_eq!(out, normalize(&m));
    }

    #[test]
    fn trailing_crlf_dropped_once() {
        for (input, want) in [
            (&b"a\n"[..], &b"a"[..]),
            (b"a\n\n", b"a\r\n"),
            (b"a", b"a"),
            (b"", b""),
            (b"a\r\n", b"a"),
            (b"a\r", b"a"),
            (b"a\r\n\r\n", b"a\r\n"),
            (b"\n", b""),
            (b"\n\n", b"\r\n"),
            (b"S: x\n\nbody\n", b"S: x\r\n\r\nbody"),
        ] {
            let (p, out) = run(input, true);
            assert_eq!(out, want, "input {input:?}");
            assert_eq!(p.size, want.len() as u64);
        }
    }

    #[test]
    fn dot_after_bare_lf_is_a_crlf_line_start() {
        let input = b"Subject: x\n\nfoo\n.\nbar\n.\r.x\n..\n.";
        let (_, out) = run(input, true);
        assert_eq!(
            out,
            b"Subject: x\r\n\r\nfoo\r\n.\r\nbar\r\n.\r\n.x\r\n..\r\n."
        );
        let wire = lettre_stuff(&out);
        assert_eq!(
            wire,
            b"Subject: x\r\n\r\nfoo\r\n..\r\nbar\r\n..\r\n..x\r\n...\r\n..\r\n.\r\n"
        );
        // Smuggling attempts: every variant ends up stuffed.
        for evil in [
            &b"S: x\n\na\n.\nMAIL FROM:<x>\n"[..],
            b"S: x\n\na\r.\rMAIL FROM:<x>\n",
            b"S: x\n\na\r\n.\nMAIL FROM:<x>\n",
            b"S: x\n\na\n.\r\nMAIL FROM:<x>\n",
            b"S: x\n\na\r\n.\r\nMAIL FROM:<x>\n",
            b".\n",
            b"\n.\n",
        ] {
            for ok in [true, false] {
                let (_, out) = run(evil, ok);
                check_wire(&out);
            }
        }
    }

    // --- re-encoding -------------------------------------------------------

    #[test]
    fn long_line_plain_text_becomes_qp() {
        let long: String = (0..1500).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        let body = format!("short line\n{long}\nlast line = with equals \n");
        let input = format!("From: a@example.org\nSubject: long\n\n{body}");
        let (p, out) = run(input.as_bytes(), true);
        assert_eq!(p.reencoded_parts, 1);
        assert!(!p.eight_bit);
        let s = String::from_utf8(out.clone()).expect("ascii");
        assert!(s.contains("\r\nMIME-Version: 1.0\r\n"));
        assert!(s.contains("\r\nContent-Type: text/plain\r\n"));
        assert!(s.contains("\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"));
        assert!(s.contains("\r\nlast line =3D with equals=20"));
        for l in lines(&out) {
            assert!(l.len() <= 76 || l.starts_with(b"From") || l.starts_with(b"Subject"));
        }
        assert_same_content(input.as_bytes(), &out);
        // Independent check with mail-parser.
        let msg = mail_parser::MessageParser::default()
            .parse(&out)
            .expect("parse");
        let text = msg.body_text(0).expect("text");
        assert_eq!(text.replace("\r\n", "\n"), body.trim_end_matches('\n'));
    }

    #[test]
    fn qp_trailing_ws_and_leading_dash() {
        let long = "x".repeat(1200);
        let input = format!("S: y\n\n{long}\n-- \n--b\ntab\t\n \n");
        let (_, out) = run(input.as_bytes(), true);
        let s = String::from_utf8(out.clone()).expect("ascii");
        assert!(s.contains("\r\n=2D-=20\r\n=2D-b\r\ntab=09\r\n=20"), "{s}");
        assert_same_content(input.as_bytes(), &out);
        // A soft break must never make a boundary line appear.
        let part = format!("{}--frontier  ", "y".repeat(75 - 2)) + &"z".repeat(1000);
        let input = format!(
            "Content-Type: multipart/mixed; boundary=frontier\n\n--frontier\n\n{part}\n--frontier--\n"
        );
        let (p, out) = run(input.as_bytes(), true);
        assert_eq!(p.reencoded_parts, 1);
        let delims = lines(&out)
            .iter()
            .filter(|l| l.starts_with(b"--frontier"))
            .count();
        assert_eq!(delims, 2);
        assert_same_content(input.as_bytes(), &out);
    }

    #[test]
    fn eight_bit_utf8_body() {
        let input = "From: a@example.org\nSubject: hi\n\nGrüße, 日本語\nzweite Zeile\n";
        let (p, out) = run(input.as_bytes(), true);
        assert!(p.eight_bit);
        assert_eq!(p.reencoded_parts, 0);
        assert_eq!(out, normalize(input.as_bytes()));

        let (p, out) = run(input.as_bytes(), false);
        assert!(!p.eight_bit);
        assert_eq!(p.reencoded_parts, 1);
        let s = String::from_utf8(out.clone()).expect("ascii");
        assert!(s.contains("Content-Type: text/plain; charset=utf-8\r\n"));
        assert!(s.contains("Gr=C3=BC=C3=9Fe"));
        assert_same_content(input.as_bytes(), &out);
        let msg = mail_parser::MessageParser::default()
            .parse(&out)
            .expect("parse");
        assert_eq!(
            msg.body_text(0).expect("text").replace("\r\n", "\n"),
            "Grüße, 日本語\nzweite Zeile"
        );
    }

    #[test]
    fn eight_bit_charset_choice_and_existing_headers() {
        // Not UTF-8 -> unknown-8bit.
        let (_, out) = run(b"S: x\n\nlatin1 \xe9t\xe9\n", false);
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("Content-Type: text/plain; charset=unknown-8bit\r\n"));
        assert!(s.contains("latin1 =E9t=E9"));
        // UTF-8 sequence split by a line break is not UTF-8.
        let (_, out) = run(b"S: x\n\n\xc3\n\xa9\n", false);
        assert!(String::from_utf8_lossy(&out).contains("charset=unknown-8bit"));
        // MIME message with its own Content-Type and CTE: CTE replaced, nothing added.
        let input = b"MIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8BIT (raw)\nX-After: 1\n\ncaf\xe9\n";
        let (p, out) = run(input, false);
        assert_eq!(p.reencoded_parts, 1);
        assert_eq!(
            out,
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\nX-After: 1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9"
        );
        // Folded CTE field is removed whole.
        let input =
            b"Content-Type: text/plain\nContent-Transfer-Encoding:\n  8bit\nX: y\n\nnul\0\n";
        let (_, out) = run(input, true);
        assert_eq!(
            out,
            b"Content-Type: text/plain\r\nX: y\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nnul=00"
        );
        // Pure 8-bit-free message with eight_bit_ok=false is untouched.
        let (p, out) = run(b"S: x\n\nhello\n", false);
        assert_eq!(
            (p.reencoded_parts, out.as_slice()),
            (0, &b"S: x\r\n\r\nhello"[..])
        );
    }

    #[test]
    fn nul_in_body_becomes_qp() {
        let input = b"Subject: nul\n\nbefore\0after\n";
        let (p, out) = run(input, true);
        assert_eq!(p.reencoded_parts, 1);
        assert!(find(&out, b"before=00after").is_some());
        assert!(!out.contains(&0));
        assert_same_content(input, &out);
    }

    #[test]
    fn multipart_long_text_and_base64_attachment() {
        let attach: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
        let b64 = b64_encode(&attach);
        let b64_lines: Vec<&[u8]> = b64.chunks(76).collect();
        let b64_text = b64_lines.join(&b"\n"[..]);
        let long = "word ".repeat(400);
        let mut input = format!(
            "From: a@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed;\n boundary=\"=_outer (x)\"\n\npreamble\n--=_outer (x)\nContent-Type: text/plain; charset=us-ascii\n\n{long}\nend\n--=_outer (x)\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
        )
        .into_bytes();
        input.extend_from_slice(&b64_text);
        input.extend_from_slice(b"\n--=_outer (x)--\nepilogue\n");
        let (p, out) = run(&input, true);
        assert_eq!(p.reencoded_parts, 1);
        let mut crlf_b64 = b64_lines.join(&b"\r\n"[..]);
        crlf_b64.extend_from_slice(b"\r\n--=_outer (x)--");
        assert!(find(&out, &crlf_b64).is_some(), "attachment changed");
        assert_same_content(&input, &out);
        let ls = leaves(&out);
        assert_eq!(ls.len(), 2);
        assert_eq!(ls[0].cte, "quoted-printable");
        assert_eq!(ls[1].decoded, attach);
        let msg = mail_parser::MessageParser::default()
            .parse(&out)
            .expect("parse");
        assert_eq!(
            msg.attachment(0).expect("attachment").contents(),
            attach.as_slice()
        );
        assert_eq!(
            msg.body_text(0).expect("text").replace("\r\n", "\n"),
            format!("{long}\nend")
        );
    }

    #[test]
    fn base64_single_long_line_rewrapped() {
        let data: Vec<u8> = (0..3750u32).map(|i| (i * 31 % 251) as u8).collect();
        let b64 = b64_encode(&data);
        assert_eq!(b64.len(), 5000);
        let mut input =
            b"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n".to_vec();
        input.extend_from_slice(&b64);
        input.push(b'\n');
        let (p, out) = run(&input, true);
        assert_eq!(p.reencoded_parts, 0);
        let ls = lines(&out);
        let body: Vec<&&[u8]> = ls.iter().skip(3).collect();
        assert!(body.iter().all(|l| l.len() <= B64_LINE));
        assert_eq!(body.len(), 5000usize.div_ceil(76));
        assert_eq!(leaves(&out)[0].decoded, data);
        assert_same_content(&input, &out);
    }

    #[test]
    fn long_qp_lines_get_soft_breaks() {
        let mut raw = Vec::new();
        for i in 0..1200u32 {
            match i % 5 {
                0 => raw.extend_from_slice(b"=3D"),
                1 => raw.extend_from_slice(b"=C3=A9"),
                2 => raw.push(b' '),
                _ => raw.push(b'a' + (i % 26) as u8),
            }
        }
        let mut input = b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n".to_vec();
        input.extend_from_slice(&raw);
        input.extend_from_slice(b"\nshort=\nline\n");
        let (p, out) = run(&input, true);
        assert_eq!(p.reencoded_parts, 0);
        for l in lines(&out).iter().skip(3) {
            assert!(l.len() <= QP_LINE);
            // No escape cut: every '=' has two hex digits or is a soft break.
            for (i, &b) in l.iter().enumerate() {
                if b == b'=' && i + 1 != l.len() {
                    assert!(l.len() >= i + 3, "escape cut in {l:?}");
                }
            }
        }
        assert_same_content(&input, &out);
    }

    #[test]
    fn long_header_folded() {
        let words: String = (0..400).map(|i| format!("w{i:03} ")).collect();
        let value = &words[..2000 - "Subject: ".len()];
        let input = format!("Subject: {value}\nTo: b@example.org\n\nbody\n");
        let (p, out) = run(input.as_bytes(), true);
        assert_eq!(p.folded_header_lines, 1);
        assert_eq!(p.reencoded_parts, 0);
        let s = String::from_utf8(out).expect("ascii");
        let (head, body) = s.split_once("\r\n\r\n").expect("blank line");
        assert_eq!(body, "body");
        assert_eq!(
            head.replace("\r\n", ""),
            format!("Subject: {value}To: b@example.org")
        );
        let first = head.split("\r\n").next().expect("line");
        assert!(first.len() <= MAX_LINE && first.len() > MAX_LINE - 10);

        // No whitespace at all: CRLF + SPACE inserted at the limit.
        let blob = "x".repeat(2500);
        let input = format!("X-Blob:{blob}\n\nb");
        let (p, out) = run(input.as_bytes(), true);
        assert_eq!(p.folded_header_lines, 1);
        let s = String::from_utf8(out).expect("ascii");
        let head = s.split("\r\n\r\n").next().expect("head");
        let ls: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(ls.len(), 3);
        assert_eq!(ls[0].len(), MAX_LINE);
        assert!(ls[1].starts_with(' ') && ls[2].starts_with(' '));
        assert_eq!(head.replace("\r\n ", ""), format!("X-Blob:{blob}"));

        // Long continuation line, and a colon-less long line ending the header.
        let input = format!("A: b\n {blob}\n{blob}\n");
        let (_, out) = run(input.as_bytes(), true);
        assert!(String::from_utf8_lossy(&out).contains("A: b\r\n x"));
    }

    #[test]
    fn non_header_line_ends_header() {
        let input = b"Subject: x\nthis is the body\0 with a NUL\n";
        let (p, out) = run(input, true);
        assert_eq!(p.reencoded_parts, 1);
        assert_eq!(
            out,
            b"Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nthis is the body=00 with a NUL"
        );
        // Headers only, no body.
        let (p, out) = run(b"Subject: x\nX: y", true);
        assert_eq!(
            (p.reencoded_parts, out.as_slice()),
            (0, &b"Subject: x\r\nX: y"[..])
        );
    }

    // --- structure ---------------------------------------------------------

    #[test]
    fn boundary_forms() {
        for ct in [
            "multipart/mixed; boundary=simple",
            "multipart/mixed; boundary=\"simple\"",
            "Multipart/Mixed (c); (x) BOUNDARY = \"simple\" (y)",
            "multipart/mixed; boundary*=us-ascii'en'simple",
            "multipart/mixed; boundary*0=sim; boundary*1=\"ple\"",
            "multipart/mixed; charset=\"a;b\"; boundary=simple",
        ] {
            let long = "q".repeat(1100);
            let input = format!(
                "Content-Type: {ct}\n\n--simple\n\n{long}\n--simple  \nContent-Type: text/plain\n\nshort\n--simple--\n"
            );
            let (p, out) = run(input.as_bytes(), true);
            assert_eq!(p.reencoded_parts, 1, "{ct}");
            let s = String::from_utf8(out).expect("ascii");
            let (_, qp) = s
                .split_once("--simple\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
                .expect("re-encoded part");
            let (qp, rest) = qp.split_once("\r\n--simple  \r\n").expect("delimiter");
            assert_eq!(qp_decode(qp.as_bytes()), long.as_bytes());
            assert_eq!(rest, "Content-Type: text/plain\r\n\r\nshort\r\n--simple--");
        }
    }

    #[test]
    fn message_rfc822_and_digest() {
        let long = "r".repeat(1100);
        let input = format!(
            "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: inner\n\n{long}\n--d\nContent-Type: message/rfc822\n\nSubject: inner2\nContent-Type: text/plain\n\nnul\0\n--d--\n"
        );
        let (p, out) = run(input.as_bytes(), true);
        assert_eq!(p.reencoded_parts, 2);
        let s = String::from_utf8(out.clone()).expect("ascii");
        // Embedded messages get MIME-Version (and Content-Type if missing).
        assert!(s.contains("Subject: inner\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nrrr"));
        assert!(s.contains("Subject: inner2\r\nContent-Type: text/plain\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nnul=00\r\n--d--"));
        assert_same_content(input.as_bytes(), &out);
    }

    #[test]
    fn nested_multipart_and_encoded_composites() {
        let long = "n".repeat(1100);
        let input = format!(
            "Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/alternative; boundary=i\n\n--i\n\n{long}\n--o\nContent-Type: text/plain\n\n{long}\n--o\nContent-Type: multipart/mixed; boundary=z\nContent-Transfer-Encoding: base64\n\n{long}\n--o--\n"
        );
        let (p, out) = run(input.as_bytes(), true);
        // Inner part (unterminated inner multipart, closed by outer boundary)
        // and the second part are re-encoded; the base64 "multipart" is
        // rewrapped as base64.
        assert_eq!(p.reencoded_parts, 2);
        assert_same_content(input.as_bytes(), &out);
    }

    #[test]
    fn unknown_encoding_and_preamble_hard_wrapped() {
        let long = "u".repeat(2100);
        let input = format!(
            "Content-Type: multipart/mixed; boundary=b\n\n{long}\n--b\nContent-Transfer-Encoding: x-uuencode\n\n{long}\n--b--\n{long}\n"
        );
        let (p, out) = run(input.as_bytes(), true);
        assert_eq!(p.reencoded_parts, 0);
        let ls = lines(&out);
        assert_eq!(ls.iter().filter(|l| l.len() == MAX_LINE).count(), 6);
    }

    #[test]
    fn depth_limit() {
        let depth = 60;
        let mut input = String::new();
        for d in 0..depth {
            input.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=lvl{d}\n\n--lvl{d}\n"
            ));
        }
        input.push_str(&format!("\n{}\n", "d".repeat(1500)));
        for d in (0..depth).rev() {
            input.push_str(&format!("--lvl{d}--\n"));
        }
        for ok in [true, false] {
            let (p, out) = run(input.as_bytes(), ok);
            // Past depth 50 the rest is opaque: hard-wrapped, not re-encoded.
            assert_eq!(p.reencoded_parts, 0);
            assert!(lines(&out).iter().any(|l| l.len() == MAX_LINE));
        }
        // At depth 49 it is still re-encoded.
        let mut input = String::new();
        for d in 0..49 {
            input.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=lvl{d}\n\n--lvl{d}\n"
            ));
        }
        input.push_str(&format!("\n{}\n", "d".repeat(1500)));
        let (p, out) = run(input.as_bytes(), true);
        assert_eq!(p.reencoded_parts, 1);
        assert_same_content(input.as_bytes(), &out);
    }

    #[test]
    fn part_count_limit() {
        let mut input = String::from("Content-Type: multipart/mixed; boundary=p\n\n");
        for _ in 0..10_050 {
            input.push_str("--p\n\nnul\0\n");
        }
        input.push_str("--p--\n");
        let (p, _) = run(input.as_bytes(), true);
        // Entity 0 is the message itself; 9,999 parts fit under the limit.
        assert_eq!(p.reencoded_parts, MAX_PARTS as usize - 1);
        assert!(p.edits.len() < MAX_PARTS as usize);
    }

    // --- errors ---------------------------------------------------------------

    #[test]
    fn short_file_is_unexpected_eof() {
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(b"Subject: x\n\nbody\n").expect("write");
        let e = plan(&f, 0, 100, opts(true)).expect_err("short");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e = plan(&f, u64::MAX, 2, opts(true)).expect_err("overflow");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // Plan fine, file truncated before streaming.
        let p = plan(&f, 0, 17, opts(true)).expect("plan");
        f.set_len(5).expect("truncate");
        let mut s = stream(&f, 0, 17, &p);
        let e = s.next().expect("item").expect_err("eof");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(s.next().is_none());
    }

    #[test]
    fn changed_file_is_detected() {
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(b"Subject: x\n\nbody\n").expect("write");
        let p = plan(&f, 0, 17, opts(true)).expect("plan");
        f.write_all_at(b"Subject: x\n\nbo\0\n", 0).expect("rewrite");
        let items: Vec<io::Result<Vec<u8>>> = stream(&f, 0, 17, &p).collect();
        let last = items.last().expect("item");
        assert_eq!(
            last.as_ref().expect_err("mismatch").kind(),
            io::ErrorKind::InvalidData
        );
        let mut s = stream(&f, 1, 16, &p);
        assert_eq!(
            s.next().expect("item").expect_err("range").kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(s.next().is_none());
    }

    // --- size / memory --------------------------------------------------------

    #[test]
    fn twenty_megabytes_bounded() {
        let mut f = tempfile::tempfile().expect("tempfile");
        let mut w = io::BufWriter::new(&mut f);
        w.write_all(b"From: a@example.org\nContent-Type: multipart/mixed; boundary=big\n\n--big\nContent-Type: text/plain\n\n").expect("w");
        let line = b"The quick brown fox jumps over the lazy dog. 0123456789\n";
        let mut total = 0usize;
        while total < 10_000_000 {
            w.write_all(line).expect("w");
            total += line.len();
        }
        w.write_all(b"--big\nContent-Type: text/plain\n\n")
            .expect("w");
        // One 9 MB line: forces quoted-printable of a huge line.
        let chunk = [b'z'; 4096];
        for _ in 0..(9_000_000 / 4096) {
            w.write_all(&chunk).expect("w");
        }
        w.write_all(b"\n--big\nContent-Transfer-Encoding: base64\n\n")
            .expect("w");
        for _ in 0..(1_500_000 / 4096) {
            w.write_all(&[b'Q'; 4096]).expect("w");
        }
        w.write_all(b"\n--big--\n").expect("w");
        w.flush().expect("flush");
        drop(w);
        let len = f.metadata().expect("meta").len();
        assert!(len > 20_000_000);
        for ok in [true, false] {
            let p = plan(&f, 0, len, opts(ok)).expect("plan");
            assert_eq!(p.edits.len(), 1);
            assert!(p.edits.capacity() < 16);
            let mut n = 0u64;
            let mut col = 0usize;
            let mut prev = 0u8;
            let mut max_chunk = 0;
            for c in stream(&f, 0, len, &p) {
                let c = c.expect("chunk");
                max_chunk = max_chunk.max(c.len());
                assert!(c.len() <= CHUNK);
                for &b in &c {
                    match b {
                        b'\n' => {
                            assert_eq!(prev, b'\r');
                            col = 0;
                        }
                        b'\r' => {}
                        _ => {
                            assert_ne!(prev, b'\r');
                            col += 1;
                            assert!(col <= MAX_LINE);
                        }
                    }
                    prev = b;
                }
                n += c.len() as u64;
            }
            assert_eq!(n, p.size);
            assert_eq!(max_chunk, CHUNK);
        }
    }

    // --- property test ---------------------------------------------------------

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn chance(&mut self, pct: u64) -> bool {
            self.below(100) < pct
        }
    }

    fn gen_len(r: &mut Rng) -> usize {
        match r.below(10) {
            0..=6 => r.below(80) as usize,
            7 | 8 => r.below(1000) as usize,
            _ => r.below(3000) as usize,
        }
    }

    fn gen_line(r: &mut Rng, len: usize, eight: bool) -> Vec<u8> {
        (0..len)
            .map(|_| match r.below(100) {
                0..=69 => 33 + r.below(94) as u8,
                70..=77 => [b' ', b'\t'][r.below(2) as usize],
                78..=85 if eight => 0x80 + r.below(128) as u8,
                86 | 87 if eight => 0,
                88..=91 => b'.',
                92..=95 => b'-',
                _ => b'=',
            })
            .collect()
    }

    fn ending(r: &mut Rng) -> &'static [u8] {
        match r.below(20) {
            0..=11 => b"\n",
            12..=16 => b"\r\n",
            _ => b"\r",
        }
    }

    fn gen_lines(r: &mut Rng, out: &mut Vec<u8>, n: u64, eight: bool) {
        for _ in 0..n {
            let len = gen_len(r);
            out.extend(gen_line(r, len, eight));
            out.extend_from_slice(ending(r));
        }
    }

    fn gen_headers(r: &mut Rng, out: &mut Vec<u8>) {
        for i in 0..r.below(4) {
            out.extend_from_slice(format!("X-H{i}:").as_bytes());
            let len = if r.chance(15) {
                900 + r.below(2000) as usize
            } else {
                r.below(60) as usize
            };
            let mut v = gen_line(r, len, true);
            if r.chance(50) {
                v.retain(|&b| b != b' ' && b != b'\t');
            }
            out.push(b' ');
            out.extend(v);
            out.extend_from_slice(ending(r));
        }
    }

    fn gen_entity(r: &mut Rng, out: &mut Vec<u8>, depth: u32, top: bool, counter: &mut u32) {
        gen_headers(r, out);
        let kind = if depth >= 4 { r.below(5) } else { r.below(7) };
        match kind {
            0 | 1 => {
                // Identity text, maybe non-MIME at the top.
                if !(top && r.chance(50)) {
                    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8");
                    out.extend_from_slice(ending(r));
                    let cte = ["", "7bit", "8bit", "binary", "8BIT (x)"][r.below(5) as usize];
                    if !cte.is_empty() {
                        out.extend_from_slice(
                            format!("Content-Transfer-Encoding: {cte}").as_bytes(),
                        );
                        out.extend_from_slice(ending(r));
                    }
                }
                out.extend_from_slice(ending(r));
                let n = r.below(8);
                gen_lines(r, out, n, true);
            }
            2 => {
                out.extend_from_slice(
                    b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64",
                );
                out.extend_from_slice(ending(r));
                out.extend_from_slice(ending(r));
                let n = r.below(6000) as usize;
                let data = gen_line(r, n, true);
                let b64 = b64_encode(&data);
                let mut rest = &b64[..];
                while !rest.is_empty() {
                    let w = if r.chance(30) {
                        1 + r.below(3000) as usize
                    } else {
                        76
                    };
                    let (a, b) = rest.split_at(w.min(rest.len()));
                    out.extend_from_slice(a);
                    out.extend_from_slice(ending(r));
                    rest = b;
                }
            }
            3 => {
                out.extend_from_slice(
                    b"Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable",
                );
                out.extend_from_slice(ending(r));
                out.extend_from_slice(ending(r));
                for _ in 0..r.below(6) {
                    let len = gen_len(r);
                    let raw = gen_line(r, len, true);
                    let mut enc = Vec::new();
                    for (i, &b) in raw.iter().enumerate() {
                        if (33..=126).contains(&b) && b != b'='
                            || ((b == b' ' || b == b'\t') && i + 1 < raw.len())
                        {
                            enc.push(b);
                        } else {
                            enc.extend_from_slice(&hex_escape(b));
                        }
                        if r.chance(1) {
                            enc.extend_from_slice(b"=\n");
                        }
                    }
                    out.extend(enc);
                    out.extend_from_slice(ending(r));
                }
            }
            4 => {
                // Leaf with NUL / 8-bit in an unusual type.
                out.extend_from_slice(b"Content-Type: application/x-thing");
                out.extend_from_slice(ending(r));
                out.extend_from_slice(ending(r));
                let n = r.below(4);
                gen_lines(r, out, n, true);
            }
            5 => {
                *counter += 1;
                let b = format!("=_b{}x{}", *counter, r.below(1_000_000));
                let quoted = r.chance(50);
                let pad = if r.chance(10) {
                    format!("; x-pad={}", "p".repeat(1200))
                } else {
                    String::new()
                };
                if quoted {
                    out.extend_from_slice(
                        format!("Content-Type: multipart/mixed; boundary=\"{b}\"{pad}").as_bytes(),
                    );
                } else {
                    out.extend_from_slice(b"Content-Type: multipart/mixed;");
                    out.extend_from_slice(ending(r));
                    out.extend_from_slice(format!("\tboundary=\"{b}\"{pad}").as_bytes());
                }
                out.extend_from_slice(ending(r));
                out.extend_from_slice(ending(r));
                let n = r.below(3);
                gen_lines(r, out, n, true);
                for _ in 0..1 + r.below(3) {
                    out.extend_from_slice(format!("--{b}").as_bytes());
                    if r.chance(20) {
                        out.extend_from_slice(b"  \t");
                    }
                    out.extend_from_slice(ending(r));
                    gen_entity(r, out, depth + 1, false, counter);
                    // The entity's last line needs an ending before the delimiter.
                    if !out.ends_with(b"\n") && !out.ends_with(b"\r") {
                        out.extend_from_slice(ending(r));
                    }
                }
                out.extend_from_slice(format!("--{b}--").as_bytes());
                out.extend_from_slice(ending(r));
                let n = r.below(3);
                gen_lines(r, out, n, true);
            }
            _ => {
                out.extend_from_slice(b"Content-Type: message/rfc822");
                out.extend_from_slice(ending(r));
                out.extend_from_slice(ending(r));
                gen_entity(r, out, depth + 1, true, counter);
            }
        }
    }

    #[test]
    fn property_random_messages() {
        let seed = std::env::var("WIRE_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        let mut r = Rng(seed);
        let mut reencoded = 0;
        let cases: u32 = std::env::var("WIRE_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(400);
        for case in 0..cases {
            let mut msg = Vec::new();
            if r.chance(70) {
                msg.extend_from_slice(b"MIME-Version: 1.0\n");
            }
            let mut counter = 0;
            gen_entity(&mut r, &mut msg, 0, true, &mut counter);
            for ok in [true, false] {
                let (p, out) = run(&msg, ok);
                reencoded += p.reencoded_parts;
                let a = leaves(&normalize(&msg));
                let b = leaves(&out);
                assert_eq!(a.len(), b.len(), "case {case}: leaf count");
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    let known = matches!(
                        x.cte.as_str(),
                        "" | "7bit" | "8bit" | "binary" | "base64" | "quoted-printable"
                    );
                    if !known && split_crlf(&x.raw).iter().any(|l| l.len() > MAX_LINE) {
                        // Unknown encoding with long lines: hard-wrapped (documented).
                        continue;
                    }
                    assert!(
                        x.decoded == y.decoded,
                        "case {case} ok={ok}: leaf {i} differs ({} -> {})",
                        x.cte,
                        y.cte
                    );
                    if !ok && known {
                        assert!(
                            y.raw.iter().all(|&c| c < 0x80),
                            "case {case}: 8-bit body left"
                        );
                    }
                    if y.cte != x.cte {
                        assert_eq!(y.cte, "quoted-printable");
                    }
                }
            }
        }
        assert!(reencoded > 100, "generator too tame: {reencoded}");
    }

    #[test]
    fn internal_parsers() {
        assert_eq!(parse_cte(Some(b" Quoted-Printable ")), Enc::QuotedPrintable);
        assert_eq!(parse_cte(Some(b"(c) base64")), Enc::Base64);
        assert_eq!(parse_cte(Some(b"x-uue")), Enc::Unknown);
        assert_eq!(parse_cte(None), Enc::Identity);
        assert_eq!(
            parse_content_type(Some(b" text/plain"), true),
            Kind::Discrete
        );
        assert_eq!(parse_content_type(None, true), Kind::Message);
        assert_eq!(parse_content_type(Some(b"garbage"), false), Kind::Discrete);
        assert_eq!(
            parse_content_type(Some(b"message/partial; id=1"), false),
            Kind::OtherComposite
        );
        assert_eq!(
            parse_content_type(Some(b"multipart/mixed; boundary=\"a\\\"b\""), false),
            Kind::Multipart {
                delim: Some(b"--a\"b".to_vec()),
                digest: false
            }
        );
        assert_eq!(
            parse_content_type(
                Some(b"multipart/mixed; boundary*0*=utf-8''a%20; boundary*1=b"),
                false
            ),
            Kind::Multipart {
                delim: Some(b"--a b".to_vec()),
                digest: false
            }
        );
        let too_long = format!("multipart/mixed; boundary={}", "b".repeat(71));
        assert_eq!(
            parse_content_type(Some(too_long.as_bytes()), false),
            Kind::Multipart {
                delim: None,
                digest: false
            }
        );
        let mut u = Utf8Check::default();
        for b in "aé日本😀".as_bytes() {
            u.feed(&[*b]);
        }
        assert!(u.valid());
        u.feed(b"\xf0\x9f");
        assert!(!u.valid());
        u.feed(b"\x98\x80");
        assert!(u.valid());
        u.feed(b"\xff");
        assert!(!u.valid());
    }
}
