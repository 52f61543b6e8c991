//! `postern check`: probe every configured relay the way delivery will use
//! it, without sending mail, and explain each failure in one line.
//!
//! For each `[[relay]]`, in order: resolve the name; connect (within
//! `smtp.connect_timeout`); read the banner; EHLO; TLS — STARTTLS or
//! implicit TLS — with our own rustls handshake so the report can name the
//! protocol version, the cipher suite and the certificate verdict (verified
//! against the system roots plus `ca_file`, or the precise failure: unknown
//! issuer, expired, not yet valid, wrong name); the second EHLO's SIZE and
//! AUTH offer; QUIT. Then it opens a session through
//! `deliver::smtp::SmtpSession::connect` — the production path, with TLS and
//! AUTH exactly as the queue runner does them — and closes it after AUTH.
//! Nothing is ever sent: no MAIL command. The secret is never printed
//! (the session code redacts it too).
//!
//! Each reply waits at most `smtp.command_timeout`, capped at 30 seconds
//! here so an interactive check does not hang for minutes.
//!
//! Exit status: 0 when every relay is usable; 1 when at least one is not,
//! or when no relay is configured (the report says which and why). A
//! configuration error exits 78 as everywhere else.

use crate::config::{Config, Relay, TlsMode};
use crate::deliver::smtp::session::{self, SmtpSession};
use crate::deliver::transport::ConnectError;
use crate::error::Result;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for one reply during the probe.
const MAX_REPLY_WAIT: Duration = Duration::from_secs(30);

enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// An SMTP reply: code and text lines.
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn one_line(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" / "))
            .trim()
            .to_string()
    }
}

/// Why a probe step failed.
enum StepError {
    Timeout,
    Closed,
    Other(String),
}

fn io_step(e: io::Error) -> StepError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => StepError::Timeout,
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => StepError::Closed,
        _ => StepError::Other(crate::error::describe_io(&e)),
    }
}

fn read_reply(c: &mut Conn) -> std::result::Result<Reply, StepError> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        loop {
            match c.read(&mut b) {
                Ok(0) => return Err(StepError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_step(e)),
            }
            if b[0] == b'\n' {
                break;
            }
            if line.len() < 4096 {
                line.push(b[0]);
            }
        }
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches('\r')
            .to_string();
        let code: u16 = text
            .get(..3)
            .and_then(|c| c.parse().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| {
                StepError::Other(format!("not an SMTP reply: {:?}", truncate(&text, 80)))
            })?;
        let sep = text.as_bytes().get(3).copied().unwrap_or(b' ');
        lines.push(text.get(4..).unwrap_or("").to_string());
        if sep != b'-' || lines.len() > 200 {
            return Ok(Reply { code, lines });
        }
    }
}

fn smtp(c: &mut Conn, line: &str) -> std::result::Result<Reply, StepError> {
    c.write_all(format!("{line}\r\n").as_bytes())
        .and_then(|_| c.flush())
        .map_err(io_step)?;
    read_reply(c)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

/// What the EHLO reply offers.
#[derive(Default)]
struct Offer {
    starttls: bool,
    size: Option<u64>,
    auth: Vec<String>,
    keywords: Vec<String>,
}

fn parse_ehlo(r: &Reply) -> Offer {
    let mut o = Offer::default();
    for l in r.lines.iter().skip(1) {
        let mut w = l.split_whitespace();
        let kw = w.next().unwrap_or("").to_ascii_uppercase();
        match kw.as_str() {
            "STARTTLS" => o.starttls = true,
            "SIZE" => o.size = Some(w.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
            "AUTH" => o.auth = w.map(|m| m.to_ascii_uppercase()).collect(),
            _ => {}
        }
        if !kw.is_empty() {
            o.keywords.push(l.trim().to_string());
        }
    }
    o
}

/// The report being written (to stdout as it goes: probes take time).
struct Report<'a> {
    out: &'a mut dyn Write,
    usable: bool,
}

impl Report<'_> {
    fn step(&mut self, name: &str, verdict: Option<bool>, detail: &str) {
        let v = match verdict {
            Some(true) => "ok",
            Some(false) => {
                self.usable = false;
                "FAILED"
            }
            None => "--",
        };
        let _ = writeln!(self.out, "  {name:<12} {v:<7}{detail}");
        let _ = self.out.flush();
    }
}

fn size_text(n: u64) -> String {
    if n >= 1024 * 1024 {
        format!("{:.1} MiB ({n} bytes)", n as f64 / 1024.0 / 1024.0)
    } else if n >= 1024 {
        format!("{:.1} KiB ({n} bytes)", n as f64 / 1024.0)
    } else {
        format!("{n} bytes")
    }
}

/// A TLS client configuration for the probe: TLS 1.2 minimum, the system
/// roots plus `ca_file`, the client certificate if configured. Returns a
/// description of the trust anchors for the report.
fn tls_config(relay: &Relay) -> std::result::Result<(Arc<rustls::ClientConfig>, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (n, _) = roots.add_parsable_certificates(native.certs);
    let mut anchors = if n > 0 {
        format!("the system roots ({n})")
    } else {
        "no system roots (none found)".to_string()
    };
    if let Some(ca) = &relay.ca_file {
        let mut added = 0;
        let iter = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
        for cert in iter {
            let cert = cert.map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("ca_file {} holds no certificate", ca.display()));
        }
        anchors.push_str(&format!(" and ca_file {}", ca.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots);
    let config = match (&relay.client_cert, &relay.client_key) {
        (Some(c), Some(k)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(c)
                .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| format!("client_cert {}: {e}", c.display()))?;
            let key = PrivateKeyDer::from_pem_file(k)
                .map_err(|e| format!("client_key {}: {e}", k.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok((Arc::new(config), anchors))
}

/// One line for a failed handshake: the certificate verdict when that is
/// what failed.
fn explain_tls(e: &io::Error, host: &str, anchors: &str) -> (bool, String) {
    use rustls::CertificateError as C;
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(c)) => {
            let why = match c {
                C::UnknownIssuer => format!(
                    "unknown issuer: the certificate is not signed by an authority in {anchors} (for a private relay, set ca_file to its CA)"
                ),
                C::Expired | C::ExpiredContext { .. } => {
                    "expired: the server's certificate is past its end date (the relay must renew it)".to_string()
                }
                C::NotValidYet | C::NotValidYetContext { .. } => {
                    "not valid yet: check this machine's clock".to_string()
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                    "wrong name: the certificate is not valid for {host} (use the host name the certificate names)"
                ),
                C::Revoked => "revoked".to_string(),
                C::BadSignature => "bad signature".to_string(),
                other => format!("{other:?}"),
            };
            (true, why)
        }
        Some(rustls::Error::AlertReceived(a)) => (
            false,
            format!("the server aborted the handshake (alert {a:?})"),
        ),
        Some(rustls::Error::PeerIncompatible(p)) => (
            false,
            format!("no common TLS version or cipher (Postern requires TLS 1.2 or later): {p:?}"),
        ),
        Some(other) => (false, other.to_string()),
        None => match io_step(io::Error::new(e.kind(), e.to_string())) {
            StepError::Timeout => (false, "timed out during the TLS handshake".into()),
            StepError::Closed => (
                false,
                "the server closed the connection during the TLS handshake".into(),
            ),
            StepError::Other(s) => (false, s),
        },
    }
}

struct TlsInfo {
    version: String,
    cipher: String,
}

fn handshake(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    host: &str,
) -> std::result::Result<(Conn, TlsInfo), io::Error> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::other(format!("{host} is not a valid TLS server name: {e}")))?;
    let mut conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut tcp = tcp;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "unknown version".to_string(),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_else(|| "unknown cipher".into());
    Ok((
        Conn::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))),
        TlsInfo { version, cipher },
    ))
}

fn connect_explained(
    addrs: &[SocketAddr],
    timeout: Duration,
    port: u16,
) -> std::result::Result<(TcpStream, SocketAddr, Duration), String> {
    let mut last = String::from("no address");
    for a in addrs {
        let start = Instant::now();
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => return Ok((s, *a, start.elapsed())),
            Err(e) => {
                last = match e.kind() {
                    io::ErrorKind::ConnectionRefused => format!(
                        "connection refused by {a}: nothing listens on port {port} there (wrong port?) or a firewall rejects it"
                    ),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!(
                        "timeout: no answer from {a} within {}s: outbound port {port} looks blocked, try 587, 465 or 2525",
                        timeout.as_secs()
                    ),
                    io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => format!(
                        "{a} is unreachable ({}): no route from this machine",
                        crate::error::describe_io(&e)
                    ),
                    _ => format!("connect to {a}: {}", crate::error::describe_io(&e)),
                };
            }
        }
    }
    Err(last)
}

/// A hint for a failed AUTH at well-known providers.
fn auth_hint(relay: &Relay, msg: &str) -> String {
    let host = relay.host.to_ascii_lowercase();
    let user = relay.username.as_deref().unwrap_or("");
    if host.contains("sendgrid") {
        if user != "apikey" {
            return format!(
                "SendGrid expects username apikey (not {user:?}) and an API key as the password"
            );
        }
        return "SendGrid expects username apikey and an API key with Mail Send permission as the password".into();
    }
    if host.contains("mailgun") {
        return "Mailgun expects the domain's SMTP login (postmaster@your-domain) and its SMTP password, not the API key".into();
    }
    if host.contains("amazonaws") {
        return "Amazon SES expects SMTP credentials from the SES console (not an AWS access key) for this region".into();
    }
    if host.contains("gmail") || host.contains("google") {
        return "Google expects an app password (or XOAUTH2 with password_command)".into();
    }
    if msg.contains("offers AUTH") {
        return "the mechanisms in auth = [...] and the server's offer do not overlap".into();
    }
    if msg.contains("unencrypted") {
        return "credentials are sent only over TLS".into();
    }
    "the server rejected the user name or the secret: check username and password_file / password_command".into()
}

fn probe(cfg: &Config, idx: usize, relay: &Relay, r: &mut Report) {
    let timeout = cfg.smtp.command_timeout.min(MAX_REPLY_WAIT);
    let host = relay.host.trim_matches(['[', ']']).to_string();

    // Secret file (before anything else: a readable secret is refused).
    if let Err(e) = crate::deliver::credentials::check_secret_file(relay) {
        r.step("secret", Some(false), e.message());
    }

    // DNS.
    let addrs = match session::resolve(relay) {
        Ok(a) => a,
        Err(e) => {
            r.step(
                "dns",
                Some(false),
                &format!("{e}: check the host name and this machine's DNS (/etc/resolv.conf)"),
            );
            return;
        }
    };
    r.step(
        "dns",
        Some(true),
        &addrs
            .iter()
            .map(|a| a.ip().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    );

    // TCP.
    let (tcp, addr, took) = match connect_explained(&addrs, cfg.smtp.connect_timeout, relay.port) {
        Ok(x) => x,
        Err(why) => {
            r.step("connect", Some(false), &why);
            return;
        }
    };
    r.step(
        "connect",
        Some(true),
        &format!("{addr} in {} ms", took.as_millis()),
    );
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));

    let tls = match relay.tls {
        TlsMode::None => None,
        _ => match tls_config(relay) {
            Ok(t) => Some(t),
            Err(e) => {
                r.step("tls", Some(false), &e);
                return;
            }
        },
    };
    let report_tls = |r: &mut Report, info: &TlsInfo, how: &str, anchors: &str| {
        r.step(
            "tls",
            Some(true),
            &format!("{}, {} ({how})", info.version, info.cipher),
        );
        r.step(
            "certificate",
            Some(true),
            &format!("verified for {host} against {anchors}"),
        );
    };
    let tls_failed = |r: &mut Report, e: &io::Error, anchors: &str| {
        let (cert, why) = explain_tls(e, &host, anchors);
        if cert {
            r.step("certificate", Some(false), &why);
        } else {
            r.step("tls", Some(false), &why);
        }
    };

    let mut conn = Conn::Plain(tcp);
    if relay.tls == TlsMode::Tls {
        let Some((config, anchors)) = tls.clone() else {
            return;
        };
        let Conn::Plain(tcp) = conn else { return };
        match handshake(tcp, config, &host) {
            Ok((c, info)) => {
                conn = c;
                report_tls(r, &info, "implicit TLS", &anchors);
            }
            Err(e) => {
                tls_failed(r, &e, &anchors);
                return;
            }
        }
    }

    // Banner.
    match read_reply(&mut conn) {
        Ok(b) if b.code == 220 => r.step("banner", Some(true), &truncate(&b.one_line(), 120)),
        Ok(b) => {
            r.step(
                "banner",
                Some(false),
                &format!("the server refused the session: {}", b.one_line()),
            );
            return;
        }
        Err(StepError::Timeout) => {
            let hint = if relay.tls == TlsMode::Starttls || relay.tls == TlsMode::None {
                " (if this port expects implicit TLS, as 465 does, set tls = \"tls\")"
            } else {
                ""
            };
            r.step(
                "banner",
                Some(false),
                &format!(
                    "timeout: no greeting within {}s: the server accepted the connection but never answered{hint}",
                    timeout.as_secs()
                ),
            );
            return;
        }
        Err(StepError::Closed) => {
            r.step(
                "banner",
                Some(false),
                "the server closed the connection without a greeting",
            );
            return;
        }
        Err(StepError::Other(e)) => {
            r.step("banner", Some(false), &e);
            return;
        }
    }

    let ehlo_line = format!("EHLO {}", cfg.helo_name());
    let ehlo = |conn: &mut Conn, r: &mut Report| -> Option<Offer> {
        match smtp(conn, &ehlo_line) {
            Ok(rep) if rep.code == 250 => Some(parse_ehlo(&rep)),
            Ok(rep) => {
                r.step(
                    "ehlo",
                    Some(false),
                    &format!("the server refused EHLO: {}", rep.one_line()),
                );
                None
            }
            Err(StepError::Timeout) => {
                r.step("ehlo", Some(false), "timeout: no reply to EHLO");
                None
            }
            Err(StepError::Closed) => {
                r.step(
                    "ehlo",
                    Some(false),
                    "the server closed the connection after EHLO",
                );
                None
            }
            Err(StepError::Other(e)) => {
                r.step("ehlo", Some(false), &e);
                None
            }
        }
    };
    let Some(mut offer) = ehlo(&mut conn, r) else {
        return;
    };
    r.step(
        "ehlo",
        Some(true),
        &truncate(&offer.keywords.join(", "), 160),
    );

    match relay.tls {
        TlsMode::Starttls => {
            let Some((config, anchors)) = tls.clone() else {
                return;
            };
            if !offer.starttls {
                r.step(
                    "tls",
                    Some(false),
                    "the server does not offer STARTTLS (tls = \"starttls\" requires it; for implicit TLS on port 465 set tls = \"tls\")",
                );
                let _ = smtp(&mut conn, "QUIT");
                return;
            }
            match smtp(&mut conn, "STARTTLS") {
                Ok(rep) if rep.code == 220 => {}
                Ok(rep) => {
                    r.step(
                        "tls",
                        Some(false),
                        &format!("STARTTLS refused: {}", rep.one_line()),
                    );
                    return;
                }
                Err(_) => {
                    r.step("tls", Some(false), "no reply to STARTTLS");
                    return;
                }
            }
            let Conn::Plain(tcp) = conn else { return };
            match handshake(tcp, config, &host) {
                Ok((c, info)) => {
                    conn = c;
                    report_tls(r, &info, "STARTTLS", &anchors);
                }
                Err(e) => {
                    tls_failed(r, &e, &anchors);
                    return;
                }
            }
            match ehlo(&mut conn, r) {
                Some(o) => offer = o,
                None => return,
            }
        }
        TlsMode::None => {
            let why = if crate::config::is_loopback_host(&relay.host) {
                "the host is loopback"
            } else {
                "allow_plaintext = true"
            };
            r.step(
                "tls",
                None,
                &format!("none: plain text, allowed because {why}"),
            );
        }
        TlsMode::Tls => {}
    }

    match offer.size {
        Some(n) if n > 0 => {
            r.step(
                "size",
                Some(true),
                &format!("the relay accepts messages up to {}", size_text(n)),
            );
            if cfg.max_message_size > n {
                r.step(
                    "",
                    None,
                    &format!(
                        "note: max_message_size is {}: messages larger than the relay's limit will bounce",
                        size_text(cfg.max_message_size)
                    ),
                );
            }
        }
        Some(_) => r.step("size", Some(true), "SIZE offered without a limit"),
        None => r.step("size", None, "the relay announces no size limit (no SIZE)"),
    }
    if !offer.auth.is_empty() {
        r.step("auth offer", None, &offer.auth.join(" "));
    }
    let _ = smtp(&mut conn, "QUIT");
    drop(conn);

    // The production path: the same session code the queue runner uses.
    let params = match relay.tls {
        TlsMode::None => None,
        _ => match session::tls_parameters(relay) {
            Ok(p) => Some(p),
            Err(e) => {
                r.step("session", Some(false), &e.to_string());
                return;
            }
        },
    };
    match SmtpSession::connect(cfg, idx, relay, params.as_ref()) {
        Ok(s) => {
            match &relay.username {
                Some(u) => r.step(
                    "auth",
                    Some(true),
                    &format!(
                        "logged in as {u} through the delivery path ({}; nothing sent)",
                        if s.encrypted { "encrypted" } else { "plain" }
                    ),
                ),
                None => r.step(
                    "auth",
                    None,
                    "not configured (no username); the delivery path connected fine",
                ),
            }
            s.quit();
        }
        Err(ConnectError::Auth(m)) => {
            let hint = auth_hint(relay, &m);
            r.step("auth", Some(false), &format!("{m} — {hint}"));
        }
        Err(ConnectError::Local(m)) => r.step("auth", Some(false), &m),
        Err(e) => r.step(
            "session",
            Some(false),
            &format!("the delivery path failed: {e}"),
        ),
    }
}

/// `postern check`: print the report; 0 when every relay is usable.
pub fn command(cfg: &Config) -> Result<u8> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if cfg.relays.is_empty() {
        let _ = writeln!(
            out,
            "no relay is configured: add a [[relay]] section to {} (mail is only queued)",
            cfg.path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| crate::config::DEFAULT_CONFIG.to_string())
        );
        return Ok(1);
    }
    let n = cfg.relays.len();
    let mut bad = 0;
    for (idx, relay) in cfg.relays.iter().enumerate() {
        let _ = writeln!(
            out,
            "relay {} of {n}: {} (tls = {}, {})",
            idx + 1,
            relay.label(),
            match relay.tls {
                TlsMode::Starttls => "starttls",
                TlsMode::Tls => "tls",
                TlsMode::None => "none",
            },
            match &relay.username {
                Some(u) => format!("user {u}"),
                None => "no AUTH".into(),
            }
        );
        let mut r = Report {
            out: &mut out,
            usable: true,
        };
        probe(cfg, idx, relay, &mut r);
        let usable = r.usable;
        let _ = writeln!(
            out,
            "  {:<12} {}",
            "result",
            if usable { "USABLE" } else { "NOT USABLE" }
        );
        if !usable {
            bad += 1;
        }
    }
    let _ = if bad == 0 {
        writeln!(
            out,
            "{}",
            if n == 1 {
                "the relay is usable".to_string()
            } else {
                format!("all {n} relays are usable")
            }
        )
    } else {
        writeln!(out, "{bad} of {n} relay(s) NOT usable")
    };
    let _ = out.flush();
    Ok(if bad == 0 { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(host: &str, user: &str) -> Relay {
        Relay {
            kind: crate::config::RelayKind::Smtp,
            host: host.into(),
            port: 587,
            tls: TlsMode::Starttls,
            allow_plaintext: false,
            username: Some(user.into()),
            password_file: None,
            password_command: None,
            auth_mechanisms: vec!["PLAIN".into()],
            ca_file: None,
            client_cert: None,
            client_key: None,
            rate_limit: 0,
        }
    }

    #[test]
    fn auth_hints_name_the_provider_rule() {
        let h = auth_hint(&relay("smtp.sendgrid.net", "me@example.com"), "535");
        assert!(h.contains("SendGrid expects username apikey"), "{h}");
        let h = auth_hint(&relay("smtp.eu.mailgun.org", "x"), "535");
        assert!(h.contains("postmaster@"), "{h}");
        let h = auth_hint(&relay("email-smtp.eu-west-1.amazonaws.com", "x"), "535");
        assert!(h.contains("SES"), "{h}");
        let h = auth_hint(&relay("relay.example.com", "x"), "535");
        assert!(h.contains("password_file"), "{h}");
    }
}
