//! The HTTPS client of the API transports (`api`, `mailgun`, `ses`):
//! HTTP/1.1 over rustls with the relay's own TLS configuration — the one
//! `smtp::conn::tls_parameters` builds for SMTP (system roots plus
//! `ca_file`, client certificate, `tls_pin`) — so an HTTPS relay is
//! verified exactly like an SMTP one. Just what the APIs need: one POST per
//! connection, the body streamed from a reader with its length known up
//! front (`Content-Length`, never chunked), answers by `Content-Length`,
//! chunked or to the end of the connection, bounded (16 KiB of header, 64
//! KiB of body kept); no redirect is followed (a 3xx is an answer like any
//! other), no proxy, no compression.
//!
//! Our own rather than a crate: ureq 2 (same rustls and ring) was tried
//! and measured here (and by the OAuth2 work): with `url`, `idna`'s
//! Unicode tables and `webpki-roots` it grew the binary by 0.6 MB and the
//! peak RSS of `sendmail -t` by about 0.45 MB, though submission runs none
//! of it — the submission path's pages are spread over a larger binary.
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
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Most bytes of a response body kept (for the message id or the error).
pub const MAX_RESPONSE: u64 = 64 * 1024;
/// Longest answer header (and header line).
pub const MAX_HEAD: usize = 16 * 1024;

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

/// A relay's HTTPS client: HTTP/1.1 over rustls with the relay's TLS
/// configuration, one connection per request (`Connection: close`: no
/// idle connection to go stale between messages).
pub struct Client {
    tls: Arc<ClientConfig>,
    connect_timeout: Duration,
    write_timeout: Duration,
    read_timeout: Duration,
}

impl Client {
    /// A client with the relay's TLS configuration and the `[smtp]`
    /// timeouts: connect within `connect_timeout`, each write within
    /// `command_timeout`, each read of the answer within `data_timeout`.
    pub fn new(cfg: &Config, tls: &TlsParameters) -> Client {
        Client {
            tls: tls.client_config(),
            connect_timeout: cfg.smtp.connect_timeout,
            write_timeout: cfg.smtp.command_timeout,
            read_timeout: cfg.smtp.data_timeout,
        }
    }

    /// A client with `tls` (e.g. an OAuth2 token endpoint's anchors):
    /// connect within `connect_timeout`, each write and read within
    /// `io_timeout`.
    pub fn with_tls(
        tls: Arc<ClientConfig>,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> Client {
        Client {
            tls,
            connect_timeout,
            write_timeout: io_timeout,
            read_timeout: io_timeout,
        }
    }

    /// POST `body` (exactly `len` bytes) to `url` with `headers` (a `Host`
    /// among them replaces the URL's). Ok: any HTTP answer, whatever its
    /// status. Err: no answer (name, connect, TLS, timeout, a broken
    /// connection), in one line.
    pub fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        mut body: impl Read,
        len: u64,
    ) -> Result<Response, String> {
        let (authority, path) = split_url(url)?;
        let (host, port) = host_port(authority)?;
        let tcp = connect(&host, port, self.connect_timeout).map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        tcp.set_write_timeout(Some(self.write_timeout))
            .and_then(|()| tcp.set_read_timeout(Some(self.read_timeout)))
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(host.clone())
            .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
        let conn = ClientConnection::new(Arc::clone(&self.tls), name)
            .map_err(|e| format!("TLS setup: {e}"))?;
        let mut s = StreamOwned::new(conn, tcp);
        let mut head = format!("POST {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("Host: {authority}\r\n"));
        }
        for (n, v) in headers {
            if v.contains(['\r', '\n']) {
                return Err(format!("header {n} holds a line break"));
            }
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str(&format!(
            "User-Agent: postern/{}\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        ));
        let sending = |e: io::Error| format!("sending the request: {}", io_text(&e));
        s.write_all(head.as_bytes()).map_err(sending)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        loop {
            let n = body
                .read(&mut buf)
                .map_err(|e| format!("reading the message: {e}"))?;
            if n == 0 {
                break;
            }
            sent += n as u64;
            if sent > len {
                return Err("the request body is longer than announced".into());
            }
            s.write_all(&buf[..n]).map_err(sending)?;
        }
        if sent != len {
            return Err("the request body is shorter than announced".into());
        }
        s.flush().map_err(sending)?;
        read_response(&mut io::BufReader::new(s))
            .map_err(|e| format!("reading the answer: {}", io_text(&e)))
    }
}

/// Why a connection could not be made.
#[derive(Debug)]
pub enum ConnectFailure {
    /// Name resolution failed.
    Dns(String),
    /// No address accepted the connection (refused, timed out).
    Unreachable(String),
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectFailure::Dns(s) | ConnectFailure::Unreachable(s) => f.write_str(s),
        }
    }
}

/// A TCP connection to `host` (no brackets) on `port`: each address in
/// turn, each within `timeout`.
pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ConnectFailure> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| ConnectFailure::Dns(format!("name resolution failed for {host}: {e}")))?
        .collect();
    let mut last = format!("{host}: no address");
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(t) => return Ok(t),
            Err(e) => last = format!("connection to {a} failed: {}", io_text(&e)),
        }
    }
    Err(ConnectFailure::Unreachable(last))
}

/// An I/O error in one line (rustls's errors come wrapped).
fn io_text(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string().replace(['\r', '\n'], " "),
    }
}

/// `https://AUTHORITY/PATH` → (authority, path).
fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("{url}: not an https URL"))?;
    Ok(match rest.find('/') {
        Some(p) => (&rest[..p], &rest[p..]),
        None => (rest, "/"),
    })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` → (host without brackets, port).
fn host_port(authority: &str) -> Result<(String, u16), String> {
    let bad = || format!("{authority}: bad host or port");
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 443,
        Some(p) => p.parse().map_err(|_| bad())?,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// The status line, the header and (at most [`MAX_RESPONSE`] bytes of)
/// the body: by `Content-Length`, chunked, or up to the end of the
/// connection. Public for the `http_response` fuzz target only.
#[doc(hidden)]
pub fn read_response(r: &mut impl BufRead) -> io::Result<Response> {
    let bad = |w: &str| io::Error::new(io::ErrorKind::InvalidData, w.to_string());
    let status_line =
        read_line(r)?.ok_or_else(|| bad("the connection closed without an answer"))?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .filter(|c| (100..1000).contains(c))
        .ok_or_else(|| bad("not an HTTP status line"))?;
    if !version.starts_with("HTTP/1.") {
        return Err(bad("not an HTTP/1.x answer"));
    }
    let mut headers = Vec::new();
    let mut head_bytes = status_line.len();
    loop {
        let line = read_line(r)?.ok_or_else(|| bad("the answer's header is cut short"))?;
        if line.is_empty() {
            break;
        }
        head_bytes += line.len();
        if head_bytes > MAX_HEAD || headers.len() >= 200 {
            return Err(bad("the answer's header is too long"));
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut raw = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            let size = read_line(r)?.ok_or_else(|| bad("chunked body cut short"))?;
            let n = u64::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if n == 0 {
                break;
            }
            let keep = (MAX_RESPONSE.saturating_sub(raw.len() as u64)).min(n);
            r.take(keep).read_to_end(&mut raw)?;
            io::copy(&mut r.take(n - keep), &mut io::sink())?;
            let _ = read_line(r)?;
            if raw.len() as u64 >= MAX_RESPONSE {
                break;
            }
        }
    } else if let Some(cl) = get("content-length") {
        let n: u64 = cl.parse().map_err(|_| bad("bad Content-Length"))?;
        r.take(n.min(MAX_RESPONSE)).read_to_end(&mut raw)?;
    } else if status != 204 && status != 304 && status >= 200 {
        // Up to the end of the connection; a missing close_notify at the
        // end is not an error here (the length is not known anyway).
        match r.take(MAX_RESPONSE).read_to_end(&mut raw) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Response {
        status,
        retry_after: get("retry-after"),
        body: String::from_utf8_lossy(&raw).into_owned(),
        headers,
    })
}

/// One header line without its CRLF (at most [`MAX_HEAD`] bytes); None at
/// the end of the connection.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = r.take(MAX_HEAD as u64).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
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

/// `Sun, 06 Nov 1994 08:49:37 GMT` (IMF-fixdate) as a time: a year of
/// four digits, a time of day within 00:00:00..23:59:60 (so the result
/// is bounded, and no arithmetic on a hostile value can overflow).
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
    let year = it.next()?;
    if year.len() != 4 || !year.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i64 = year.parse().ok()?;
    let hms: Vec<u64> = it
        .next()?
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if it.next()? != "GMT" || hms.len() != 3 || !(1..=31).contains(&day) {
        return None;
    }
    if hms[0] > 23 || hms[1] > 59 || hms[2] > 60 {
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
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
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
    /// Header lines put before the message's first (part of the message:
    /// encoded with it), taken at the first refill.
    prefix: Option<Vec<u8>>,
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
            prefix: None,
            chunks: wire::stream(file, start, len, plan),
            enc,
            carry: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            mime_done: false,
            tail: io::Cursor::new(tail),
        }
    }

    /// The same body with `prefix` (header lines, e.g. Graph's added
    /// `Bcc:`) put before the message's first byte, encoded with the
    /// message; count it in the `mime_len` given to [`MimeBody::length`].
    pub fn with_prefix(mut self, prefix: &[u8]) -> MimeBody<'a> {
        self.prefix = (!prefix.is_empty()).then(|| prefix.to_vec());
        self
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
            let piece = match self.prefix.take() {
                Some(p) => p,
                None => match self.chunks.next() {
                    Some(c) => c?,
                    None => {
                        self.mime_done = true;
                        // The line break SMTP's end-of-data puts back.
                        b"\r\n".to_vec()
                    }
                },
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
    fn a_prefix_is_encoded_with_the_message() {
        let mut f = tempfile::tempfile().unwrap();
        let msg = b"Subject: x\n\nbody\n";
        f.write_all(msg).unwrap();
        let len = msg.len() as u64;
        let plan = wire::plan(&f, 0, len, wire::WireOptions { eight_bit_ok: true }).unwrap();
        // 16 bytes of prefix: not a multiple of 3, so the encoder carries.
        let prefix = b"Bcc: a@x.test\r\n";
        let want_len = MimeBody::length(&[], mime_len(&plan) + 16, Encoding::Base64, &[]);
        let mut b =
            MimeBody::new(&f, 0, len, &plan, Encoding::Base64, vec![], vec![]).with_prefix(prefix);
        let mut out = Vec::new();
        b.read_to_end(&mut out).unwrap();
        assert_eq!(out.len() as u64, want_len);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&out)
            .unwrap();
        assert_eq!(decoded, b"Bcc: a@x.test\r\nSubject: x\r\n\r\nbody\r\n");
    }

    #[test]
    fn answers_by_length_chunked_and_to_the_end() {
        let parse = |raw: &[u8]| read_response(&mut io::BufReader::new(raw));
        let r =
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nRetry-After: 7\r\n\r\nhello trailing")
                .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "hello"));
        assert_eq!(r.retry_after.as_deref(), Some("7"));
        let r = parse(b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (400, "abcde"));
        let r =
            parse(b"HTTP/1.0 503 Busy\r\nX-Amzn-ErrorType: Throttling\r\n\r\nto the end").unwrap();
        assert_eq!(r.body, "to the end");
        assert_eq!(r.header("x-amzn-errortype"), Some("Throttling"));
        assert!(parse(b"SMTP 220 hello\r\n\r\n").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n").is_err());
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        big.extend_from_slice(&b"X: y\r\n".repeat(5000));
        assert!(parse(&big).is_err());
    }

    #[test]
    fn urls_split() {
        assert_eq!(split_url("https://h:1/a/b").unwrap(), ("h:1", "/a/b"));
        assert_eq!(split_url("https://h").unwrap(), ("h", "/"));
        assert!(split_url("http://h/").is_err());
        assert_eq!(host_port("[::1]:8443").unwrap(), ("::1".to_string(), 8443));
        assert_eq!(
            host_port("api.mailgun.net").unwrap(),
            ("api.mailgun.net".to_string(), 443)
        );
        assert!(host_port("h:x").is_err());
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
        // Hostile dates are refused, not overflowed (a huge year used to
        // overflow the day count, or SystemTime + Duration).
        for v in [
            "Sun, 06 Nov 9223372036854775807 08:49:37 GMT",
            "Sun, 06 Nov 1994 18446744073709551615:00:00 GMT",
            "Sun, 06 Nov 99999 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
        ] {
            assert_eq!(retry_after(Some(v), now), None, "{v}");
        }
        assert!(retry_after(Some("Fri, 31 Dec 9999 23:59:60 GMT"), now).is_some());
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
