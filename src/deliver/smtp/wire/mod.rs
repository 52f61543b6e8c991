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
//!   trailing CRLF is dropped, because the connection's DATA writer
//!   (`smtp::conn`, byte for byte what lettre's `message_iter` did) appends
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
//! What it never does: dot-stuffing (`smtp::conn` stuffs a `.` at every line start
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
//! Speed: body lines of at most 998 octets in a base64, quoted-printable or
//! pass-through body, and in the plan's probe of an identity-encoded leaf,
//! are taken in bulk, whole runs of lines per read (`Engine::bulk`), and a
//! plain text line's quoted-printable length is computed rather than
//! encoded (`QpEnc::plain_line_len`). Everything else (header blocks,
//! possible boundary lines, long lines, the re-encoding itself) takes the
//! general walk, a call per fragment. The tests run every message through
//! both and through reads too small for bulk, and require the same bytes.
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
//!
//! This file holds the interface (options, plan, stream) and the two passes'
//! drivers; the work is in `lexer` (bytes to lines), `engine` (the walk over
//! entities and boundaries), `header` (header blocks and folding), `mime`
//! (field value parsing), `encode` (body encoders) and `sink` (counting or
//! writing the output). `tests` checks the whole against independent
//! decoders.

mod encode;
mod engine;
mod header;
mod lexer;
mod mime;
mod sink;
#[cfg(test)]
mod tests;

use encode::*;
use engine::*;
use header::*;
use lexer::*;
use mime::*;
use sink::*;
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
    plan_in(file, start, len, opts, Pace::default())
}

/// How a pass reads: its read size, and whether the walk may take whole
/// lines in bulk. Only the tests change it, to check that pieces too small
/// for the bulk path (or no bulk path at all) give the same bytes.
#[derive(Debug, Clone, Copy)]
struct Pace {
    read: Option<usize>,
    bulk: bool,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            read: None,
            bulk: true,
        }
    }
}

fn plan_in(
    file: &File,
    start: u64,
    len: u64,
    opts: WireOptions,
    pace: Pace,
) -> io::Result<WirePlan> {
    let end = start
        .checked_add(len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "message range overflows"))?;
    let mut engine = Engine::new(opts, Sink::Plan(Box::default()), &[]);
    engine.bulk_ok = pace.bulk;
    let mut lexer = Lexer::default();
    let read = pace.read.unwrap_or(PLAN_READ).max(1);
    let mut buf = vec![0u8; read];
    let mut pos = start;
    while pos < end {
        let n = usize::try_from(end - pos).map_or(read, |r| r.min(read));
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
    read: usize,
    input_done: bool,
    finished: bool,
    yielded: u64,
    error: Option<io::Error>,
}

/// Start the second pass over the same range that was planned.
pub fn stream<'a>(file: &'a File, start: u64, len: u64, plan: &'a WirePlan) -> WireStream<'a> {
    stream_in(file, start, len, plan, Pace::default())
}

fn stream_in<'a>(
    file: &'a File,
    start: u64,
    len: u64,
    plan: &'a WirePlan,
    pace: Pace,
) -> WireStream<'a> {
    let error = if start != plan.start || len != plan.len {
        Some(io::Error::new(
            io::ErrorKind::InvalidInput,
            "stream range differs from the planned range",
        ))
    } else {
        None
    };
    let opts = WireOptions { eight_bit_ok: true };
    let mut engine = Engine::new(opts, Sink::Stream(Writer::default()), &plan.edits);
    engine.bulk_ok = pace.bulk;
    WireStream {
        file,
        plan,
        pos: start,
        end: start.saturating_add(len),
        lexer: Lexer::default(),
        engine,
        buf: Vec::new(),
        read: pace.read.unwrap_or(STREAM_READ).max(1),
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
            let n = usize::try_from(self.end - self.pos).map_or(self.read, |r| r.min(self.read));
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
