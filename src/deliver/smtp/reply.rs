//! Reading what an SMTP server says: one reply (code and text lines) from a
//! byte stream, and the extensions an EHLO reply offers. Used by the
//! session's connection (`conn`) and by `postern check`, so there is one
//! parser of each.

use std::io::{self, Read};

/// Longest reply line kept (the rest of a longer line is dropped).
const MAX_LINE: usize = 4096;
/// Most lines of one multi-line reply.
const MAX_LINES: usize = 200;

/// A reply as the server sent it: code and text lines (without the code).
#[derive(Debug, Clone)]
pub struct RawReply {
    /// Reply code (200..=599).
    pub code: u16,
    /// Text of each line, after `NNN-` / `NNN `.
    pub lines: Vec<String>,
}

impl RawReply {
    /// The reply on one line: `code line1 / line2 …`.
    pub fn one_line(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" / "))
            .trim()
            .to_string()
    }
}

/// Why a reply could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The connection ended before a whole reply.
    Closed,
    /// A read failed (a timeout shows as `WouldBlock` or `TimedOut`).
    Io(io::Error),
    /// A line that is not an SMTP reply (the text, shortened).
    NotSmtp(String),
}

/// Read one (possibly multi-line) reply from `r`, byte by byte so nothing
/// after the reply is consumed (a TLS handshake may follow).
pub fn read_reply(r: &mut impl Read) -> Result<RawReply, ReadError> {
    let mut lines = Vec::new();
    loop {
        let text = read_line(r)?;
        let code: u16 = text
            .get(..3)
            .and_then(|c| c.parse().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| ReadError::NotSmtp(shorten(&text, 80)))?;
        let sep = text.as_bytes().get(3).copied().unwrap_or(b' ');
        lines.push(text.get(4..).unwrap_or("").to_string());
        if sep != b'-' || lines.len() >= MAX_LINES {
            return Ok(RawReply { code, lines });
        }
    }
}

fn read_line(r: &mut impl Read) -> Result<String, ReadError> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match r.read(&mut b) {
            Ok(0) => return Err(ReadError::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ReadError::Io(e)),
        }
        if b[0] == b'\n' {
            break;
        }
        if line.len() < MAX_LINE {
            line.push(b[0]);
        }
    }
    Ok(String::from_utf8_lossy(&line)
        .trim_end_matches('\r')
        .to_string())
}

/// `s` cut to `n` characters (with `…` when cut).
pub fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

/// What the server offers (from the raw EHLO reply).
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// SIZE and its limit (0 = none given).
    pub size: Option<u64>,
    /// DSN (RFC 3461).
    pub dsn: bool,
    /// 8BITMIME.
    pub eight_bit: bool,
    /// SMTPUTF8.
    pub smtputf8: bool,
    /// PIPELINING.
    pub pipelining: bool,
    /// STARTTLS.
    pub starttls: bool,
    /// AUTH mechanisms offered.
    pub auth: Vec<String>,
    /// Every extension line as offered (trimmed), for reports.
    pub keywords: Vec<String>,
}

impl Features {
    /// Parse the lines of an EHLO reply (the first is the server's name).
    pub fn parse<'a>(lines: impl Iterator<Item = &'a str>) -> Features {
        let mut f = Features::default();
        for line in lines.skip(1) {
            let mut words = line.split_whitespace();
            let kw = words.next().unwrap_or("").to_ascii_uppercase();
            match kw.as_str() {
                "SIZE" => f.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "DSN" => f.dsn = true,
                "8BITMIME" => f.eight_bit = true,
                "SMTPUTF8" => f.smtputf8 = true,
                "PIPELINING" => f.pipelining = true,
                "STARTTLS" => f.starttls = true,
                "AUTH" => f.auth = words.map(|w| w.to_ascii_uppercase()).collect(),
                _ => {}
            }
            if !kw.is_empty() {
                f.keywords.push(line.trim().to_string());
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_reply_and_features() {
        let mut input: &[u8] =
            b"250-sink.test\r\n250-STARTTLS\r\n250-SIZE 1000\r\n250 AUTH plain\r\nrest";
        let r = read_reply(&mut input).unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines.len(), 4);
        assert_eq!(input, b"rest");
        let f = Features::parse(r.lines.iter().map(|s| s.as_str()));
        assert!(f.starttls);
        assert_eq!(f.size, Some(1000));
        assert_eq!(f.auth, vec!["PLAIN"]);
        assert_eq!(f.keywords, vec!["STARTTLS", "SIZE 1000", "AUTH plain"]);
        let mut bad: &[u8] = b"hello\r\n";
        assert!(matches!(read_reply(&mut bad), Err(ReadError::NotSmtp(_))));
        let mut short: &[u8] = b"220-a\r\n";
        assert!(matches!(read_reply(&mut short), Err(ReadError::Closed)));
    }
}
