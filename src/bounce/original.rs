//! Part 3, the returned original: choosing what is returned (RET=FULL or
//! the header section), reading the header section with a cap, and
//! streaming the whole message with CRLF turned into LF.

use super::DsnInput;
use std::io::{self, BufRead, Read, Write};

/// Cap on the header section copied for RET=HDRS.
pub(super) const HEADER_SECTION_CAP: usize = 1 << 20;
/// Chunk size for streaming the original.
pub(super) const COPY_CHUNK: usize = 64 * 1024;

/// What the third part holds and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Returned {
    /// The whole message (RET=FULL).
    Full,
    /// The header section, as requested (RET=HDRS).
    Headers,
    /// The header section because RET=FULL was too large.
    HeadersTooLarge,
}

impl Returned {
    /// What `input` asks for, given the original's length.
    pub(super) fn choose(input: &DsnInput<'_>, original_len: u64) -> Returned {
        if !input.return_full {
            Returned::Headers
        } else if original_len > input.max_full_size {
            Returned::HeadersTooLarge
        } else {
            Returned::Full
        }
    }
}

/// The header section of the original, LF-normalised.
pub(super) struct HeaderSection {
    pub(super) data: Vec<u8>,
    pub(super) truncated: bool,
}

/// Counts the bytes written through it.
pub(super) struct CountingWriter<W> {
    pub(super) inner: W,
    pub(super) count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads the header section (up to and excluding the first empty line, or
/// everything when there is none), converting CRLF to LF. Past `cap` bytes
/// it stops at the last complete line and reports `truncated`.
pub(super) fn read_header_section<R: BufRead>(
    reader: &mut R,
    cap: usize,
) -> io::Result<HeaderSection> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let room = cap.saturating_sub(data.len());
        // A line that fits (with its LF, or CRLF) is read whole; a longer one
        // is cut by the limit and then dropped below.
        let limit = u64::try_from(room).unwrap_or(u64::MAX).saturating_add(2);
        let n = reader.by_ref().take(limit).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(HeaderSection {
                data,
                truncated: false,
            });
        }
        let complete = line.ends_with(b"\n");
        if complete {
            line.pop();
            if line.ends_with(b"\r") {
                line.pop();
            }
            if line.is_empty() {
                return Ok(HeaderSection {
                    data,
                    truncated: false,
                });
            }
        }
        if line.len() + 1 > room {
            return Ok(HeaderSection {
                data,
                truncated: true,
            });
        }
        data.extend_from_slice(&line);
        data.push(b'\n');
        if !complete {
            // Last line of an original without a final newline.
            return Ok(HeaderSection {
                data,
                truncated: false,
            });
        }
    }
}

/// Copies `reader` to `out` in chunks, turning CRLF into LF. Returns whether
/// the copied data was empty or ended with LF.
pub(super) fn copy_normalized<R: BufRead, W: Write>(
    reader: &mut R,
    out: &mut W,
) -> io::Result<bool> {
    let mut buf = Vec::with_capacity(COPY_CHUNK + 1);
    let mut pending_cr = false;
    let mut last = None;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        buf.clear();
        for &b in chunk {
            if pending_cr && b != b'\n' {
                buf.push(b'\r');
            }
            pending_cr = b == b'\r';
            if !pending_cr {
                buf.push(b);
            }
        }
        let len = chunk.len();
        reader.consume(len);
        if let Some(&b) = buf.last() {
            last = Some(b);
        }
        out.write_all(&buf)?;
    }
    if pending_cr {
        out.write_all(b"\r")?;
        last = Some(b'\r');
    }
    Ok(last.is_none_or(|b| b == b'\n'))
}
