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
    done: bool,
    /// Total bytes consumed from the input.
    pub consumed: u64,
    /// For SmtpData: the input ended before the terminating dot.
    pub truncated: bool,
}

impl<R: BufRead> LineReader<R> {
    /// A reader over `inner` with terminator rule `term`.
    pub fn new(inner: R, term: Terminator) -> LineReader<R> {
        LineReader {
            inner,
            term,
            buf: Vec::with_capacity(1024),
            at_line_start: true,
            done: false,
            consumed: 0,
            truncated: false,
        }
    }

    /// Give back the inner reader (for an SMTP session to continue).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Read the next piece into `self.buf`.
    pub fn next_piece(&mut self) -> io::Result<Piece> {
        self.buf.clear();
        if self.done {
            return Ok(Piece::End);
        }
        let start = self.at_line_start;
        let mut newline = false;
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
                    let n = scan.len();
                    self.buf.extend_from_slice(scan);
                    self.inner.consume(n);
                    self.consumed += n as u64;
                    if self.buf.len() >= MAX_PIECE {
                        break;
                    }
                }
            }
        }
        let eof = !newline && self.buf.len() < MAX_PIECE;
        if eof && self.buf.is_empty() {
            self.done = true;
            if self.term == Terminator::SmtpData {
                self.truncated = true;
            }
            return Ok(Piece::End);
        }
        // A CR that belonged to CRLF is not data. A piece that was cut at
        // MAX_PIECE might end in the CR of a CRLF split across pieces; that CR
        // is kept (the wire normaliser turns a lone CR into a line break).
        if newline && self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let complete = newline || eof;
        if start && complete && self.term != Terminator::Eof && self.buf == b"." {
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
    fn smtp_truncation_is_noticed() {
        let mut r = LineReader::new(&b"abc\r\n"[..], Terminator::SmtpData);
        while let Piece::Data { .. } = r.next_piece().unwrap() {}
        assert!(r.truncated);
    }
}
