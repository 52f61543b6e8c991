//! The HTTPS client of the API transports (`api`, `mailgun`, `ses`): one
//! ureq agent per relay over the relay's own rustls configuration — the
//! one `smtp::conn::tls_parameters` builds for SMTP (system roots plus
//! `ca_file`, client certificate, `tls_pin`) — so an HTTPS relay is
//! verified exactly like an SMTP one. No redirect is followed (a 3xx is an
//! answer like any other), no proxy is read from the environment, and a
//! request body is streamed from a reader with its length known up front
//! (`Content-Length`, never chunked).
//!
//! Also here: [`MimeBody`], the request body built from fixed pieces and the
//! spooled message in its wire form (the bytes SMTP `DATA` carries, with
//! its final CRLF), optionally base64-encoded on the fly, read chunk by
//! chunk from the spool (flat memory); and [`retry_after`], the
//! `Retry-After` header's delay.
//!
//! Only the daemon side reaches this module: the submission path never
//! builds an agent.

use super::smtp::conn::TlsParameters;
use super::smtp::wire::{self, WirePlan};
use crate::config::Config;
use base64::Engine as _;
use std::fs::File;
use std::io::{self, Read};
use std::time::{Duration, SystemTime};

/// Most bytes of a response body kept (for the message id or the error).
const MAX_RESPONSE: u64 = 64 * 1024;

/// A relay's HTTPS client.
pub struct Client {
    agent: ureq::Agent,
}

/// An answer from the API.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After`, when given.
    pub retry_after: Option<String>,
    /// The body (at most [`MAX_RESPONSE`] bytes, invalid UTF-8 replaced).
    pub body: String,
    /// Every header (name lower-cased, value), for providers that put
    /// their answer there.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    /// A client with the relay's TLS configuration and the `[smtp]`
    /// timeouts: connect within `connect_timeout`, each write within
    /// `command_timeout`, the answer within `data_timeout`.
    pub fn new(cfg: &Config, tls: &TlsParameters) -> Client {
        let agent = ureq::AgentBuilder::new()
            .tls_config(tls.client_config())
            .timeout_connect(cfg.smtp.connect_timeout)
            .timeout_write(cfg.smtp.command_timeout)
            .timeout_read(cfg.smtp.data_timeout)
            .redirects(0)
            .try_proxy_from_env(false)
            .max_idle_connections_per_host(1)
            .user_agent(concat!("postern/", env!("CARGO_PKG_VERSION")))
            .build();
        Client { agent }
    }

    /// POST `body` (exactly `len` bytes) to `url` with `headers`. Ok: any
    /// HTTP answer, whatever its status. Err: no answer (connect, TLS,
    /// timeout, a broken connection), in one line.
    pub fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: impl Read,
        len: u64,
    ) -> Result<Response, String> {
        let mut req = self.agent.post(url);
        for (n, v) in headers {
            req = req.set(n, v);
        }
        req = req.set("Content-Length", &len.to_string());
        let resp = match req.send(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(transport_error(&t)),
        };
        let status = resp.status();
        let retry_after = resp.header("retry-after").map(str::to_string);
        let headers = resp
            .headers_names()
            .into_iter()
            .filter_map(|n| {
                let v = resp.header(&n)?.to_string();
                Some((n.to_ascii_lowercase(), v))
            })
            .collect();
        let mut raw = Vec::new();
        if let Err(e) = resp.into_reader().take(MAX_RESPONSE).read_to_end(&mut raw) {
            return Err(format!("reading the answer (HTTP {status}): {e}"));
        }
        Ok(Response {
            status,
            retry_after,
            body: String::from_utf8_lossy(&raw).into_owned(),
            headers,
        })
    }
}

/// One line for a request that got no answer.
fn transport_error(t: &ureq::Transport) -> String {
    let mut text = t.to_string();
    // ureq prefixes the URL and repeats the kind; keep it on one line.
    text = text.replace(['\r', '\n'], " ");
    match t.kind() {
        ureq::ErrorKind::Dns => format!("name resolution failed: {text}"),
        ureq::ErrorKind::ConnectionFailed => format!("connection failed: {text}"),
        _ => text,
    }
}

/// The delay `Retry-After` asks for (RFC 9110 §10.2.3): delta-seconds or
/// an IMF-fixdate, measured from `now`. None when absent or unreadable.
pub fn retry_after(value: Option<&str>, now: SystemTime) -> Option<Duration> {
    let v = value?.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = http_date(v)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (IMF-fixdate) as a time.
fn http_date(v: &str) -> Option<SystemTime> {
    let mut it = v.split_whitespace();
    let _wday = it.next()?.strip_suffix(',')?;
    let day: u32 = it.next()?.parse().ok()?;
    let name = it.next()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == name)? as u32
        + 1;
    let year: i64 = it.next()?.parse().ok()?;
    let hms: Vec<u64> = it
        .next()?
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if it.next()? != "GMT" || hms.len() != 3 || !(1..=31).contains(&day) {
        return None;
    }
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * i64::from(m) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + (hms[0] * 3600 + hms[1] * 60 + hms[2]) as i64;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// How the message appears in a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The MIME bytes as they are.
    Raw,
    /// Base64 (standard alphabet, padded, no line breaks).
    Base64,
}

/// The size of the MIME message (the wire form with its final CRLF)
/// planned by `plan`.
pub fn mime_len(plan: &WirePlan) -> u64 {
    plan.size + 2
}

/// The size of `n` bytes in `enc`.
pub fn encoded_len(n: u64, enc: Encoding) -> u64 {
    match enc {
        Encoding::Raw => n,
        Encoding::Base64 => n.div_ceil(3) * 4,
    }
}

/// A request body: `head`, the message (in `enc`), `tail`; read from the
/// spool chunk by chunk.
pub struct MimeBody<'a> {
    head: io::Cursor<Vec<u8>>,
    chunks: wire::WireStream<'a>,
    enc: Encoding,
    /// Bytes of the message not yet encoded (base64 keeps 0-2 over).
    carry: Vec<u8>,
    /// Encoded bytes ready to be read.
    out: Vec<u8>,
    out_pos: usize,
    mime_done: bool,
    tail: io::Cursor<Vec<u8>>,
}

impl<'a> MimeBody<'a> {
    /// The body `head` + message + `tail` for the message planned by
    /// `plan` at `file[start .. start+len]`.
    pub fn new(
        file: &'a File,
        start: u64,
        len: u64,
        plan: &'a WirePlan,
        enc: Encoding,
        head: Vec<u8>,
        tail: Vec<u8>,
    ) -> MimeBody<'a> {
        MimeBody {
            head: io::Cursor::new(head),
            chunks: wire::stream(file, start, len, plan),
            enc,
            carry: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            mime_done: false,
            tail: io::Cursor::new(tail),
        }
    }

    /// The length of the body with a message of `mime_len` bytes.
    pub fn length(head: &[u8], mime_len: u64, enc: Encoding, tail: &[u8]) -> u64 {
        head.len() as u64 + encoded_len(mime_len, enc) + tail.len() as u64
    }

    /// Refill `out` with the next encoded piece of the message; false
    /// when the message is done.
    fn refill(&mut self) -> io::Result<bool> {
        self.out.clear();
        self.out_pos = 0;
        while self.out.is_empty() {
            if self.mime_done {
                return Ok(false);
            }
            let piece = match self.chunks.next() {
                Some(c) => c?,
                None => {
                    self.mime_done = true;
                    // The line break SMTP's end-of-data puts back.
                    b"\r\n".to_vec()
                }
            };
            match self.enc {
                Encoding::Raw => self.out = piece,
                Encoding::Base64 => {
                    self.carry.extend_from_slice(&piece);
                    let whole = if self.mime_done {
                        self.carry.len()
                    } else {
                        self.carry.len() / 3 * 3
                    };
                    let b64 = base64::engine::general_purpose::STANDARD;
                    let text = b64.encode(&self.carry[..whole]);
                    self.out = text.into_bytes();
                    self.carry.drain(..whole);
                }
            }
        }
        Ok(true)
    }
}

impl Read for MimeBody<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        loop {
            if self.out_pos < self.out.len() {
                let n = (self.out.len() - self.out_pos).min(buf.len());
                buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return Ok(n);
            }
            if !self.refill()? {
                break;
            }
        }
        self.tail.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn body_of(msg: &[u8], enc: Encoding) -> (Vec<u8>, u64) {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"XX").unwrap();
        f.write_all(msg).unwrap();
        let len = msg.len() as u64;
        let plan = wire::plan(&f, 2, len, wire::WireOptions { eight_bit_ok: true }).unwrap();
        let mut b = MimeBody::new(&f, 2, len, &plan, enc, b"<".to_vec(), b">".to_vec());
        let mut out = Vec::new();
        // Small reads, to cross every boundary.
        let mut buf = [0u8; 7];
        loop {
            let n = b.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        (out, MimeBody::length(b"<", mime_len(&plan), enc, b">"))
    }

    #[test]
    fn raw_body_is_the_wire_form_with_its_final_crlf() {
        let (out, n) = body_of(b"Subject: x\n\nline 1\nline 2\n", Encoding::Raw);
        assert_eq!(out, b"<Subject: x\r\n\r\nline 1\r\nline 2\r\n>");
        assert_eq!(n, out.len() as u64);
    }

    #[test]
    fn base64_body_streams_across_chunks() {
        let mut msg = b"Subject: big\n\n".to_vec();
        for i in 0..40_000 {
            msg.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        let (out, n) = body_of(&msg, Encoding::Base64);
        assert_eq!(n, out.len() as u64);
        let inner = &out[1..out.len() - 1];
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(inner)
            .unwrap();
        let want: Vec<u8> = String::from_utf8(msg).unwrap().replace('\n', "\r\n").into();
        assert_eq!(decoded, want);
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_700);
        assert_eq!(
            retry_after(Some("120"), now),
            Some(Duration::from_secs(120))
        );
        // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            retry_after(Some("Sun, 06 Nov 1994 08:49:37 GMT"), now),
            Some(Duration::from_secs(77))
        );
        assert_eq!(retry_after(Some("soon"), now), None);
        assert_eq!(retry_after(None, now), None);
        assert_eq!(
            retry_after(
                Some("Sun, 06 Nov 1994 08:49:37 GMT"),
                now + Duration::from_secs(999)
            ),
            Some(Duration::ZERO)
        );
    }
}
