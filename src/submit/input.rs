//! Reading a message from the caller, line by line, in bounded memory.
//!
//! [`LineReader`] returns one line at a time without its line ending (`\n`
//! or `\r\n`; a lone `\r` inside a line is kept). A line longer than
//! [`MAX_PIECE`] comes back in several pieces, so memory never grows with the
//! message. Two terminator rules exist:
//! - `-bm` without `-i`: a line holding just `.` ends the message;
//!   with `-i` only end-of-file does.
//! - `-bs` DATA: a line holding just `.` ends the message, and one leading
//!   dot of every other line is removed (SMTP transparency, RFC 5321 4.5.2).
//!   Only `<CR><LF>.<CR><LF>` ends it: a bare LF is taken as a line end
//!   inside the message, but a `.` line next to one is content (Postfix's
//!   `smtpd_forbid_bare_newline = normalize`), so `A\n.\nMAIL FROM…` cannot
//!   end DATA early and smuggle the rest in as commands.

use std::io::{self, BufRead};

/// Largest piece of a line returned at once.
pub const MAX_PIECE: usize = 64 * 1024;

/// How the end of the message is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminator {
    /// Only end of input.
    Eof,
    /// A lone `.` line, or end of input (`sendmail` without `-i`).
    DotOrEof,
    /// SMTP DATA: a lone `.` line; leading dots are un-stuffed.
    SmtpData,
}

/// One piece of input.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// A piece of a line. `complete` is true when the line ended here (a
    /// line break followed, or the input ended after an unterminated line
    /// with `newline` false). `start` is true for the first piece of a line.
    Data {
        /// The line had a line break after this piece.
        newline: bool,
        /// The line ends with this piece.
        complete: bool,
        /// This piece starts a line.
        start: bool,
    },
    /// The message ended.
    End,
}

/// Splits input into lines.
pub struct LineReader<R: BufRead> {
    inner: R,
    term: Terminator,
    /// The bytes of the current piece (valid after `next` returned Data).
    pub buf: Vec<u8>,
    at_line_start: bool,
    /// The last complete line ended with CRLF (or none was read yet).
    prev_crlf: bool,
    done: bool,
    /// Total bytes consumed from the input.
    pub consumed: u64,
    /// For SmtpData: the input ended before the terminating dot.
    pub truncated: bool,
    /// The run `peek_run` returned last: its length and whether its last
    /// line ended with CRLF.
    run: (usize, bool),
}

impl<R: BufRead> LineReader<R> {
    /// A reader over `inner` with terminator rule `term`.
    pub fn new(inner: R, term: Terminator) -> LineReader<R> {
        LineReader {
            inner,
            term,
            buf: Vec::with_capacity(1024),
            at_line_start: true,
            prev_crlf: true,
            done: false,
            consumed: 0,
            truncated: false,
            run: (0, false),
        }
    }

    /// Give back the inner reader (for an SMTP session to continue).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// At a line start: the longest run of whole lines at the head of the
    /// buffered input that `next_piece` would return unchanged but for
    /// their line breaks: every CR is that of a CRLF (a lone CR is data and
    /// takes the general path), and no line starts with `.` when a dot
    /// line ends the message or a leading dot is removed. The run is
    /// returned as it is in the input; written with each CRLF as LF
    /// (`without_cr`), it is exactly those lines, each followed by `\n`.
    /// The flag says whether it holds a CR at all. Empty when there is
    /// none; `consume_run` then takes it. This lets a body go to the spool
    /// in whole buffers instead of line by line.
    pub fn peek_run(&mut self) -> io::Result<(&[u8], bool)> {
        self.run = (0, false);
        if self.done || !self.at_line_start {
            return Ok((&[], false));
        }
        let dots = self.term != Terminator::Eof;
        loop {
            match self.inner.fill_buf() {
                Ok([]) => return Ok((&[], false)),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Data is buffered: this call does no I/O.
        let avail = self.inner.fill_buf()?;
        let mut end = avail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let whole = avail.get(..end).unwrap_or_default();
        // std's memchr: most input has no CR at all. (The run may lose its
        // CRs when cut below; the flag then only costs a copy.)
        let has_cr = whole.contains(&b'\r');
        if has_cr && let Some(cr) = lone_cr(whole) {
            let before = avail.get(..cr).unwrap_or_default();
            end = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
        }
        if dots && let Some(i) = line_start_dot(avail.get(..end).unwrap_or_default()) {
            end = i;
        }
        let run = avail.get(..end).unwrap_or_default();
        self.run = (end, run.ends_with(b"\r\n"));
        Ok((run, has_cr))
    }

    /// Take the run `peek_run` returned.
    pub fn consume_run(&mut self) {
        let (n, crlf) = std::mem::take(&mut self.run);
        if n == 0 {
            return;
        }
        self.inner.consume(n);
        self.consumed += n as u64;
        self.prev_crlf = crlf;
    }

    /// Read the next piece into `self.buf`.
    pub fn next_piece(&mut self) -> io::Result<Piece> {
        self.buf.clear();
        if self.done {
            return Ok(Piece::End);
        }
        let start = self.at_line_start;
        let mut newline = false;
        // The piece was cut at MAX_PIECE (the line goes on in the next one).
        let mut cut = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                break; // EOF
            }
            let room = MAX_PIECE - self.buf.len();
            let scan = &avail[..avail.len().min(room)];
            match scan.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.buf.extend_from_slice(&scan[..i]);
                    self.inner.consume(i + 1);
                    self.consumed += i as u64 + 1;
                    newline = true;
                    break;
                }
                None => {
                    let mut n = scan.len();
                    cut = self.buf.len() + n >= MAX_PIECE;
                    // A full piece never ends with a CR: it may be the CR of
                    // a CRLF whose LF comes next, and must then not be data.
                    // The piece is non-empty (at least MAX_PIECE - 1 bytes).
                    if cut && scan[n - 1] == b'\r' {
                        n -= 1;
                    }
                    self.buf.extend_from_slice(&scan[..n]);
                    self.inner.consume(n);
                    self.consumed += n as u64;
                    if cut {
                        break;
                    }
                }
            }
        }
        let eof = !newline && !cut;
        if eof && self.buf.is_empty() {
            self.done = true;
            if self.term == Terminator::SmtpData {
                self.truncated = true;
            }
            return Ok(Piece::End);
        }
        // A CR that belonged to CRLF is not data (a CR at the end of a cut
        // piece was held back above, so a CRLF split across pieces is seen
        // here whole).
        let crlf = newline && self.buf.last() == Some(&b'\r');
        if crlf {
            self.buf.pop();
        }
        let complete = newline || eof;
        let prev_crlf = std::mem::replace(&mut self.prev_crlf, crlf || !complete);
        let ends = match self.term {
            Terminator::Eof => false,
            Terminator::DotOrEof => true,
            // <CR><LF>.<CR><LF> only (or the input ends after the dot).
            Terminator::SmtpData => prev_crlf && (crlf || eof),
        };
        if ends && start && complete && self.buf == b"." {
            self.done = true;
            return Ok(Piece::End);
        }
        if start && self.term == Terminator::SmtpData && self.buf.first() == Some(&b'.') {
            self.buf.remove(0);
        }
        if eof {
            self.done = true;
            if self.term == Terminator::SmtpData {
                self.truncated = true;
            }
        }
        self.at_line_start = complete;
        Ok(Piece::Data {
            newline,
            complete,
            start,
        })
    }
}

/// A run from `peek_run` as the lines it holds: each CRLF written as LF.
/// (Every CR of a run is followed by its LF.)
pub fn without_cr(run: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(run.iter().copied().filter(|&b| b != b'\r'));
}

/// The first CR of `whole` (which ends with LF) that is not followed by
/// LF.
fn lone_cr(whole: &[u8]) -> Option<usize> {
    first_pair(whole, |x, y| (x == b'\r') & (y != b'\n'))
}

/// The first `.` that starts a line of `whole` (which starts at a line
/// start).
fn line_start_dot(whole: &[u8]) -> Option<usize> {
    if whole.first() == Some(&b'.') {
        return Some(0);
    }
    first_pair(whole, |x, y| (x == b'\n') & (y == b'.')).map(|i| i + 1)
}

/// The first index `i` where `hit(whole[i], whole[i + 1])`. Blocks of 64
/// pairs are tested without an early exit, which the compiler vectorises,
/// and only a block with a hit is searched.
#[inline(always)]
fn first_pair(whole: &[u8], hit: impl Fn(u8, u8) -> bool) -> Option<usize> {
    let pairs = whole.len().saturating_sub(1);
    let (first, rest) = (whole.get(..pairs)?, whole.get(1..)?);
    let mut at = 0;
    for (a, b) in first.chunks(64).zip(rest.chunks(64)) {
        if a.iter().zip(b).fold(false, |h, (&x, &y)| h | hit(x, y)) {
            let k = a.iter().zip(b).position(|(&x, &y)| hit(x, y))?;
            return Some(at + k);
        }
        at += a.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(input: &[u8], term: Terminator) -> Vec<(Vec<u8>, bool)> {
        let mut r = LineReader::new(input, term);
        let mut out = Vec::new();
        while let Piece::Data { newline, .. } = r.next_piece().unwrap() {
            out.push((r.buf.clone(), newline));
        }
        out
    }

    #[test]
    fn dot_rules() {
        let input = b"a\r\n.\r\nafter\n";
        assert_eq!(pieces(input, Terminator::DotOrEof).len(), 1);
        assert_eq!(pieces(input, Terminator::Eof).len(), 3);
        let smtp = pieces(b"..x\r\ny\r\n.\r\nnext", Terminator::SmtpData);
        assert_eq!(smtp, vec![(b".x".to_vec(), true), (b"y".to_vec(), true)]);
        // ". " is not the terminator
        assert_eq!(pieces(b". \nb\n", Terminator::DotOrEof).len(), 2);
    }

    #[test]
    fn only_crlf_dot_crlf_ends_smtp_data() {
        // A dot line next to a bare LF is content (un-stuffed like any
        // other line starting with a dot), and the data goes on.
        let smtp = pieces(
            b"A\n.\nMAIL FROM:<x@y>\r\n.\r\nQUIT\r\n",
            Terminator::SmtpData,
        );
        assert_eq!(
            smtp,
            vec![
                (b"A".to_vec(), true),
                (b"".to_vec(), true),
                (b"MAIL FROM:<x@y>".to_vec(), true)
            ]
        );
        // CRLF before, bare LF after: not the end either.
        assert_eq!(pieces(b"A\r\n.\nB\r\n.\r\n", Terminator::SmtpData).len(), 3);
        // Bare LF lines inside the message are still line ends.
        assert_eq!(pieces(b"A\nB\n\r\n.\r\n", Terminator::SmtpData).len(), 3);
        // sendmail -bm keeps the classic rule: any lone dot line ends it.
        assert_eq!(pieces(b"A\n.\nB\n", Terminator::DotOrEof).len(), 1);
    }

    #[test]
    fn unterminated_last_line_and_empty() {
        assert_eq!(
            pieces(b"a\nb", Terminator::Eof),
            vec![(b"a".to_vec(), true), (b"b".to_vec(), false)]
        );
        assert!(pieces(b"", Terminator::Eof).is_empty());
        assert_eq!(pieces(b"\n", Terminator::Eof), vec![(vec![], true)]);
    }

    #[test]
    fn long_lines_come_in_pieces() {
        let mut input = vec![b'x'; MAX_PIECE * 2 + 10];
        input.push(b'\n');
        let p = pieces(&input, Terminator::Eof);
        assert_eq!(p.len(), 3);
        assert_eq!(
            p.iter().map(|(b, _)| b.len()).sum::<usize>(),
            MAX_PIECE * 2 + 10
        );
        assert!(p[2].1);
    }

    #[test]
    fn crlf_split_at_the_piece_boundary_is_a_line_break() {
        for len in [MAX_PIECE - 2, MAX_PIECE - 1, MAX_PIECE, MAX_PIECE + 1] {
            let mut input = vec![b'x'; len];
            input.extend_from_slice(b"\r\nnext\r\n");
            for term in [Terminator::Eof, Terminator::SmtpData] {
                let p = pieces(&input, term);
                let joined: Vec<u8> = p.iter().flat_map(|(b, _)| b.clone()).collect();
                assert!(!joined.contains(&b'\r'), "len {len} {term:?}");
                assert_eq!(joined.len(), len + 4, "len {len}");
                assert_eq!(p.last().unwrap(), &(b"next".to_vec(), true));
            }
        }
        // a lone CR at the boundary stays data
        let mut input = vec![b'x'; MAX_PIECE - 1];
        input.extend_from_slice(b"\rmore\n");
        let joined: Vec<u8> = pieces(&input, Terminator::Eof)
            .iter()
            .flat_map(|(b, _)| b.clone())
            .collect();
        assert_eq!(joined.len(), MAX_PIECE + 4);
        assert_eq!(joined[MAX_PIECE - 1], b'\r');
    }

    /// A reader that hands out at most `step` bytes per fill_buf.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.data.len().min(self.step).min(out.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    impl BufRead for Trickle<'_> {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            let n = self.data.len().min(self.step);
            Ok(&self.data[..n])
        }
        fn consume(&mut self, n: usize) {
            self.data = &self.data[n..];
        }
    }

    #[test]
    fn crlf_at_the_boundary_with_small_reads() {
        let mut input = vec![b'y'; MAX_PIECE - 1];
        input.extend_from_slice(b"\r\nz\r\n");
        for step in [1, 7, 4096, MAX_PIECE - 1] {
            let mut r = LineReader::new(Trickle { data: &input, step }, Terminator::Eof);
            let mut joined = Vec::new();
            let mut lines = 0;
            while let Piece::Data { newline, .. } = r.next_piece().unwrap() {
                joined.extend_from_slice(&r.buf);
                lines += usize::from(newline);
            }
            assert!(!joined.contains(&b'\r'), "step {step}");
            assert_eq!(joined.len(), MAX_PIECE, "step {step}");
            assert_eq!(lines, 2, "step {step}");
        }
    }

    /// The body as `copy_body` writes it: each piece, then `\n` after a
    /// line break; with `runs`, whole runs from `peek_run` in between.
    fn copied(r: &mut LineReader<impl BufRead>, runs: Option<&mut usize>) -> (Vec<u8>, u64, bool) {
        let mut out = Vec::new();
        let mut taken = 0;
        loop {
            if runs.is_some() {
                let (run, _) = r.peek_run().unwrap();
                if !run.is_empty() {
                    taken += 1;
                    let mut plain = Vec::new();
                    without_cr(run, &mut plain);
                    out.extend_from_slice(&plain);
                    r.consume_run();
                    continue;
                }
            }
            match r.next_piece().unwrap() {
                Piece::End => break,
                Piece::Data { newline, .. } => {
                    out.extend_from_slice(&r.buf);
                    if newline {
                        out.push(b'\n');
                    }
                }
            }
        }
        if let Some(t) = runs {
            *t += taken;
        }
        (out, r.consumed, r.truncated)
    }

    /// Runs change nothing: random inputs rich in dots, CRs and line
    /// breaks, every terminator rule, reads of 1 byte up to everything,
    /// give the same bytes, the same count consumed and the same
    /// truncation as line-by-line reading.
    #[test]
    fn runs_read_the_same_as_lines() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let alphabet = b"..\r\n\n\nab x";
        let mut with_runs = 0;
        for case in 0..3000 {
            let len = next(300) as usize;
            let input: Vec<u8> = if case % 2 == 0 {
                (0..len)
                    .map(|_| alphabet[next(alphabet.len() as u64) as usize])
                    .collect()
            } else {
                // Mostly CRLF lines (SMTP, Windows), some bare LF, lone CR
                // and dot lines, a last line maybe unterminated.
                let mut v = Vec::new();
                for _ in 0..next(40) {
                    let line = [&b""[..], b".", b"..x", b"abc", b"a\rb", b"hello world"];
                    v.extend_from_slice(line[next(line.len() as u64) as usize]);
                    let ends = [&b"\r\n"[..], b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b""];
                    v.extend_from_slice(ends[next(ends.len() as u64) as usize]);
                }
                v
            };
            for term in [Terminator::Eof, Terminator::DotOrEof, Terminator::SmtpData] {
                for step in [1, 3, 64, 1 << 20] {
                    let lines = copied(
                        &mut LineReader::new(Trickle { data: &input, step }, term),
                        None,
                    );
                    let mut r = LineReader::new(Trickle { data: &input, step }, term);
                    let runs = copied(&mut r, Some(&mut with_runs));
                    assert_eq!(lines, runs, "case {case} {term:?} step {step}: {input:?}");
                }
            }
        }
        assert!(with_runs > 10_000, "runs taken: {with_runs}");
    }

    /// Hands out `data` in one piece after one EINTR, then fails.
    struct Failing<'a> {
        data: &'a [u8],
        interrupted: bool,
    }

    impl io::Read for Failing<'_> {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            unreachable!("read through BufRead")
        }
    }

    impl BufRead for Failing<'_> {
        fn fill_buf(&mut self) -> io::Result<&[u8]> {
            if !self.interrupted {
                self.interrupted = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            if self.data.is_empty() {
                return Err(io::Error::other("disk on fire"));
            }
            Ok(self.data)
        }
        fn consume(&mut self, n: usize) {
            self.data = &self.data[n..];
        }
    }

    /// An interrupted read is retried; a read error after a run reaches the
    /// caller (never an early, silent end of the message), and the run
    /// already taken is counted.
    #[test]
    fn runs_retry_eintr_and_pass_read_errors_on() {
        let mut r = LineReader::new(
            Failing {
                data: b"a\r\nb\n",
                interrupted: false,
            },
            Terminator::SmtpData,
        );
        let (run, has_cr) = r.peek_run().expect("EINTR is retried");
        assert_eq!((run, has_cr), (&b"a\r\nb\n"[..], true));
        r.consume_run();
        assert_eq!(r.consumed, 5);
        let e = r.peek_run().expect_err("the read error");
        assert_eq!(e.to_string(), "disk on fire");
        assert!(r.next_piece().is_err());
    }

    #[test]
    fn smtp_truncation_is_noticed() {
        let mut r = LineReader::new(&b"abc\r\n"[..], Terminator::SmtpData);
        while let Piece::Data { .. } = r.next_piece().unwrap() {}
        assert!(r.truncated);
    }
}
