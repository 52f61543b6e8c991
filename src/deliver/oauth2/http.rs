//! The one HTTP request OAuth2 needs: an HTTPS/1.1 POST of an
//! `application/x-www-form-urlencoded` body to a token (or device
//! authorization) endpoint, answered with JSON.
//!
//! A minimal client over our own rustls rather than a crate: `ureq` 2
//! (same rustls 0.23 and ring) was tried and measured, and linking it (with
//! `url`, `idna`'s Unicode tables and `webpki-roots`) grew the binary by
//! 0.7 MB and the peak RSS of `sendmail -t` by about 0.45 MB (12 %): the
//! submission path's code is spread over more pages. This file adds a few
//! kilobytes. It speaks just what a token endpoint needs: one request per
//! connection (`Connection: close`), `Content-Length` or chunked answers,
//! no redirects, no proxy, no compression; bounded in time (10 s connect,
//! 30 s for the whole exchange) and size (16 KiB of header, 64 KiB of body).
//!
//! TLS trusts the system roots plus the relay's `ca_file` (the anchors
//! delivery trusts: a private token endpoint or a test CA goes in
//! `ca_file`), TLS 1.2/1.3 on ring, SNI and name check against the URL's
//! host. The relay's `tls_pin` is *not* applied: it pins the SMTP relay's
//! key, not the identity provider's.

use crate::config::Relay;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest answer body read.
const MAX_BODY: usize = 64 * 1024;
/// Largest answer header read.
const MAX_HEAD: usize = 16 * 1024;
/// TCP connect timeout, per address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The whole exchange.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An endpoint's answer: the HTTP status and the body.
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The body bytes (de-chunked).
    pub body: Vec<u8>,
}

/// The TLS client configuration for the endpoints of `relay`: the system
/// roots and the relay's `ca_file`. Err: why, in one line.
pub fn tls_config(relay: &Relay) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(ca) = &relay.ca_file {
        let pem =
            std::fs::read(ca).map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        }
    }
    if roots.is_empty() {
        return Err("no trust anchor for the token endpoint (no system roots, no ca_file)".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The parts of an `https://` URL.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// Host as written, IPv6 without brackets.
    host: String,
    port: u16,
    /// The `Host` header value (brackets and a non-default port kept).
    authority: String,
    /// Path and query (`/` when empty); the fragment dropped.
    path: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let bad = || format!("{} is not an https:// URL", crate::escape::field(url));
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let rest = rest.split('#').next().unwrap_or("");
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    if authority.contains('@') || authority.is_empty() {
        return Err(bad());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => 443,
            None => return Err(bad()),
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
            None => (authority.to_string(), 443),
        }
    };
    if host.is_empty() || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad());
    }
    Ok(Target {
        host,
        port,
        authority: authority.to_string(),
        path,
    })
}

/// POST `body` (form-encoded) to `url`. Ok for any HTTP answer (the caller
/// reads the status); Err when there was none (DNS, connect, TLS, timeout,
/// a broken answer), in one line that never holds the request body.
pub fn post_form(tls: Arc<rustls::ClientConfig>, url: &str, body: &str) -> Result<Answer, String> {
    let t = parse_url(url)?;
    let shown = crate::escape::field(url).into_owned();
    let start = Instant::now();
    let addrs: Vec<_> = (t.host.as_str(), t.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", crate::escape::field(&t.host)))?
        .collect();
    let mut last = format!("{} has no address", crate::escape::field(&t.host));
    let mut tcp = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = format!("connect to {a}: {e}"),
        }
    }
    let tcp = tcp.ok_or_else(|| format!("cannot reach {shown}: {last}"))?;
    let name =
        ServerName::try_from(t.host.clone()).map_err(|e| format!("{shown}: bad host name: {e}"))?;
    let conn =
        rustls::ClientConnection::new(tls, name).map_err(|e| format!("TLS with {shown}: {e}"))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let fail = |what: &str, e: std::io::Error| format!("{what} {shown}: {e}");
    let timeout = |s: &rustls::StreamOwned<rustls::ClientConnection, TcpStream>| {
        let left = REQUEST_TIMEOUT
            .checked_sub(start.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("{shown} did not answer within 30s"))?;
        s.sock
            .set_read_timeout(Some(left))
            .and_then(|_| s.sock.set_write_timeout(Some(left)))
            .map_err(|e| format!("{shown}: {e}"))
    };
    timeout(&s)?;
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: postern/{}\r\nAccept: application/json\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        t.path,
        t.authority,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    s.write_all(request.as_bytes())
        .and_then(|_| s.write_all(body.as_bytes()))
        .and_then(|_| s.flush())
        .map_err(|e| fail("sending to", e))?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        timeout(&s)?;
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            // A server that closes without close_notify: what came is
            // checked for completeness below.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(fail("reading the answer of", e)),
        }
        if raw.len() > MAX_HEAD + MAX_BODY + 8 * 1024 {
            return Err(format!("{shown}: the answer is too long"));
        }
        if complete(&raw) {
            break;
        }
    }
    parse_answer(&raw).map_err(|why| format!("{shown}: {why}"))
}

/// Has `raw` a whole answer (so we need not wait for the close)?
fn complete(raw: &[u8]) -> bool {
    parse_answer(raw).is_ok() && {
        // Only when the length is known; else wait for the end of stream.
        let head_end = find(raw, b"\r\n\r\n").unwrap_or(0);
        let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
        head.contains("\r\ncontent-length:") || head.contains("chunked")
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Status and body of a whole answer (1xx interim answers skipped).
/// Err: incomplete or malformed.
fn parse_answer(mut raw: &[u8]) -> Result<Answer, String> {
    loop {
        let head_end = find(raw, b"\r\n\r\n").ok_or("the answer's header is incomplete")?;
        if head_end > MAX_HEAD {
            return Err("the answer's header is too long".into());
        }
        let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
        let rest = &raw[head_end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .strip_prefix("HTTP/1.")
            .and_then(|s| s.get(2..5))
            .and_then(|c| c.parse().ok())
            .filter(|c| (100..600).contains(c))
            .ok_or_else(|| {
                format!(
                    "not an HTTP answer: {}",
                    crate::escape::field(&status_line.chars().take(80).collect::<String>())
                )
            })?;
        if (100..200).contains(&status) {
            raw = rest;
            continue;
        }
        let mut length = None;
        let mut chunked = false;
        for l in lines {
            let Some((n, v)) = l.split_once(':') else {
                continue;
            };
            let (n, v) = (n.trim().to_ascii_lowercase(), v.trim());
            if n == "content-length" {
                length = Some(v.parse::<usize>().map_err(|_| "bad Content-Length")?);
            } else if n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
        let body = if chunked {
            dechunk(rest)?
        } else if let Some(n) = length {
            if n > MAX_BODY {
                return Err("the answer is too long".into());
            }
            rest.get(..n)
                .ok_or("the answer's body is incomplete")?
                .to_vec()
        } else {
            rest.iter().copied().take(MAX_BODY).collect()
        };
        return Ok(Answer { status, body });
    }
}

/// Undo `Transfer-Encoding: chunked` (RFC 9112 §7.1); Err when incomplete.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let eol = find(rest, b"\r\n").ok_or("the chunked body is incomplete")?;
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if out.len() + size > MAX_BODY {
            return Err("the answer is too long".into());
        }
        let data = rest.get(..size).ok_or("the chunked body is incomplete")?;
        out.extend_from_slice(data);
        rest = rest
            .get(size..)
            .and_then(|r| r.strip_prefix(b"\r\n"))
            .ok_or("the chunked body is incomplete")?;
    }
    Err("too many chunks".into())
}

/// `pairs` as `application/x-www-form-urlencoded`: letters, digits and
/// `-._*` kept, space as `+`, every other byte `%XX` (the WHATWG rule).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str, out: &mut String) {
        for b in s.bytes() {
            match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        enc(k, &mut out);
        out.push('=');
        enc(v, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_is_the_whatwg_rule() {
        assert_eq!(
            form_encode(&[
                (
                    "scope",
                    "https://outlook.office365.com/.default offline_access"
                ),
                ("a", "x+y=z&~")
            ]),
            "scope=https%3A%2F%2Foutlook.office365.com%2F.default+offline_access&a=x%2By%3Dz%26%7E"
        );
    }

    #[test]
    fn urls_are_split_for_the_request() {
        let t = parse_url("https://login.microsoftonline.com/t/oauth2/v2.0/token").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("login.microsoftonline.com", 443, "/t/oauth2/v2.0/token")
        );
        let t = parse_url("https://[::1]:8443?x=1#f").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.path.as_str()
            ),
            ("::1", 8443, "[::1]:8443", "/?x=1")
        );
        for bad in [
            "http://x/",
            "https://",
            "https://u@x/",
            "https://x:99999/",
            "https://x/a b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_with_length_chunks_or_interim_status_are_read() {
        let a = parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"{}"[..]));
        let a = parse_answer(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad\r\ntransfer-encoding: chunked\r\n\r\n3;x\r\n{\"a\r\n2\r\n\"}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((a.status, a.body.as_slice()), (400, &b"{\"a\"}"[..]));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}").is_err());
        assert!(
            parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab").is_err()
        );
        assert!(parse_answer(b"SSH-2.0\r\n\r\n").is_err());
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\n\r\n{}"));
    }
}
