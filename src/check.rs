//! `postern check`: probe every configured relay the way delivery will use
//! it, without sending mail, and explain each failure in one line.
//!
//! For each `[[relay]]`, in order, named steps of a [`Probe`]: the secret
//! file; resolve the name; connect (within `smtp.connect_timeout`); read the
//! banner; EHLO; TLS — STARTTLS or implicit TLS — with our own rustls
//! handshake so the report can name the protocol version, the cipher suite
//! and the certificate verdict (verified against the system roots plus
//! `ca_file`, or the precise failure: unknown issuer, expired, not yet
//! valid, wrong name) and the relay's pin (`sha256//…` of its key, for
//! `tls_pin`; a key that matches no pin is reported with the key seen); the
//! second EHLO's SIZE and AUTH offer; QUIT. The
//! probe talks over the delivery code's connection (`deliver::smtp::conn`:
//! the same TLS configuration, the same STARTTLS rule — a byte after the
//! `220` is reported as possible response injection and fails the relay)
//! and reads replies and EHLO offers with its parsers
//! (`deliver::smtp::reply`). Then it opens a session through
//! `deliver::smtp::SmtpSession::connect` — the production path, with TLS and
//! AUTH exactly as the queue runner does them — and closes it after AUTH.
//! Nothing is ever sent: no MAIL command. The secret is never printed
//! (the session code redacts it too).
//!
//! An HTTPS API relay (`kind = "mailgun"`, `"ses"`, `"graph"`) gets the same secret,
//! name, connect and TLS steps (the handshake with the delivery's TLS
//! configuration), then `deliver::api::check`: one authenticated request to
//! the send endpoint with an empty body, which sends nothing.
//!
//! Each reply waits at most `smtp.command_timeout`, capped at 30 seconds
//! here so an interactive check does not hang for minutes.
//!
//! Exit status: 0 when every relay is usable; 1 when at least one is not,
//! or when no relay is configured (the report says which and why). A
//! configuration error exits 78 as everywhere else.

use crate::config::{Config, Relay, TlsMode};
use crate::deliver::smtp::conn::{self, Conn, TlsInfo, TlsParameters};
use crate::deliver::smtp::reply::{Features, RawReply, shorten};
use crate::deliver::smtp::session::{self, SmtpSession};
use crate::deliver::transport::ConnectError;
use crate::error::Result;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Longest wait for one reply during the probe.
const MAX_REPLY_WAIT: Duration = Duration::from_secs(30);

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

fn conn_step(e: conn::Error) -> StepError {
    match e {
        conn::Error::Closed => StepError::Closed,
        conn::Error::Io(e) | conn::Error::Connect(e) | conn::Error::Handshake(e) => io_step(e),
        conn::Error::NotSmtp(text) => StepError::Other(format!("not an SMTP reply: {text:?}")),
        other => StepError::Other(other.describe()),
    }
}

/// Read one reply with the delivery code's reader.
fn read_reply(c: &mut Conn) -> std::result::Result<RawReply, StepError> {
    c.read_reply().map_err(conn_step)
}

fn smtp(c: &mut Conn, line: &str) -> std::result::Result<RawReply, StepError> {
    c.exchange(line).map_err(conn_step)
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
        // The detail quotes the relay (replies, certificate names): no raw
        // control reaches the terminal.
        let detail = crate::escape::text(detail);
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

/// One line for a failed handshake: the certificate verdict when that is
/// what failed.
fn explain_tls(e: &io::Error, host: &str, anchors: &str) -> (bool, String) {
    use rustls::CertificateError as C;
    if let Some(p) = conn::pin_mismatch(e) {
        return (
            true,
            format!(
                "{p} (a new key at the relay? check it, then update tls_pin; list the old and new pins while it rolls over)"
            ),
        );
    }
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
    if let Some(o) = &relay.oauth2 {
        if msg.contains("OAuth2 token for") {
            return "the token endpoint refused: see the cause named above".into();
        }
        if o.provider.as_deref() == Some("google")
            || host.contains("gmail")
            || host.contains("google")
        {
            return format!(
                "Google refused the token: the grant must include the scope https://mail.google.com/ and be for {user:?}"
            );
        }
        return match o.flow {
            crate::config::Flow::ClientCredentials => format!(
                "the relay refused the app-only token: in Exchange Online, register the application's service principal (New-ServicePrincipal) and give it FullAccess to {user:?} (Add-MailboxPermission); the app needs SMTP.SendAsApp with admin consent"
            ),
            crate::config::Flow::RefreshToken => format!(
                "the relay refused the token: the grant must include SMTP.Send for {user:?}, and SMTP AUTH must be enabled for the mailbox"
            ),
        };
    }
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

/// The trust configuration of a TLS relay (with a description of its
/// anchors): the one delivery uses.
type TlsSetup = TlsParameters;

/// One relay's probe: what its steps share. Each step reports its line(s);
/// a step that returns `None` (or `false`) has reported why the probe stops.
struct Probe<'a, 'o> {
    cfg: &'a Config,
    idx: usize,
    relay: &'a Relay,
    host: String,
    timeout: Duration,
    r: &'a mut Report<'o>,
}

fn probe(cfg: &Config, idx: usize, relay: &Relay, r: &mut Report) {
    let mut p = Probe {
        cfg,
        idx,
        relay,
        host: relay.host.trim_matches(['[', ']']).to_string(),
        timeout: cfg.smtp.command_timeout.min(MAX_REPLY_WAIT),
        r,
    };
    p.secret_file();
    p.oauth2_token();
    let Some(addrs) = p.dns() else { return };
    let Some(tcp) = p.connect(&addrs) else { return };
    let Some(tls) = p.tls_setup() else { return };
    let Some(mut conn) = p.implicit_tls(tcp, tls.as_ref()) else {
        return;
    };
    if relay.kind.is_https() {
        // An HTTPS API: the handshake above is the delivery's; then one
        // authenticated request that sends nothing.
        drop(conn);
        let (verdict, detail) =
            crate::deliver::api::check(cfg, relay, crate::deliver::relays::api_provider(relay));
        p.r.step("api", verdict, &detail);
        return;
    }
    if !p.banner(&mut conn) {
        return;
    }
    let Some(offer) = p.ehlo(&mut conn) else {
        return;
    };
    p.r.step(
        "ehlo",
        Some(true),
        &shorten(&offer.keywords.join(", "), 160),
    );
    let Some((mut conn, offer)) = p.starttls(conn, offer, tls.as_ref()) else {
        return;
    };
    p.size(&offer);
    if !offer.auth.is_empty() {
        p.r.step("auth offer", None, &offer.auth.join(" "));
    }
    let _ = smtp(&mut conn, "QUIT");
    drop(conn);
    p.delivery_session();
}

impl Probe<'_, '_> {
    /// The secret file (before anything else: a readable secret is refused).
    fn secret_file(&mut self) {
        if let Err(e) = crate::deliver::credentials::check_secret_file(self.relay) {
            self.r.step("secret", Some(false), e.message());
        }
    }

    /// `[relay.oauth2]`: an access token from the cache or the token
    /// endpoint (the delivery session then uses it); a refusal is named
    /// (`invalid_grant`, `AADSTS…`), the token never shown.
    fn oauth2_token(&mut self) {
        let Some(o) = &self.relay.oauth2 else { return };
        match crate::deliver::oauth2::token(&self.cfg.spool_dir, self.relay, false) {
            Ok(t) => self.r.step(
                "oauth2",
                Some(true),
                &format!(
                    "{} grant: access token {}",
                    o.flow.name(),
                    if t.cached {
                        "cached and not about to expire"
                    } else {
                        "obtained from the token endpoint"
                    }
                ),
            ),
            Err(e) => self.r.step("oauth2", Some(false), &e),
        }
    }

    fn dns(&mut self) -> Option<Vec<SocketAddr>> {
        let addrs = match session::resolve(self.relay) {
            Ok(a) => a,
            Err(e) => {
                self.r.step(
                    "dns",
                    Some(false),
                    &format!("{e}: check the host name and this machine's DNS (/etc/resolv.conf)"),
                );
                return None;
            }
        };
        let ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
        self.r.step("dns", Some(true), &ips.join(", "));
        Some(addrs)
    }

    fn connect(&mut self, addrs: &[SocketAddr]) -> Option<Conn> {
        let (tcp, addr, took) =
            match connect_explained(addrs, self.cfg.smtp.connect_timeout, self.relay.port) {
                Ok(x) => x,
                Err(why) => {
                    self.r.step("connect", Some(false), &why);
                    return None;
                }
            };
        self.r.step(
            "connect",
            Some(true),
            &format!("{addr} in {} ms", took.as_millis()),
        );
        let _ = tcp.set_nodelay(true);
        let conn = Conn::new(tcp);
        conn.set_timeout(self.timeout);
        Some(conn)
    }

    /// The TLS configuration (`Some(None)` for a relay without TLS).
    fn tls_setup(&mut self) -> Option<Option<TlsSetup>> {
        match self.relay.tls {
            TlsMode::None => Some(None),
            _ => match conn::tls_parameters(self.relay) {
                Ok(t) => Some(Some(t)),
                Err(e) => {
                    self.r.step("tls", Some(false), &e);
                    None
                }
            },
        }
    }

    /// A handshake that worked, reported as `how`; then the relay's pin.
    fn tls_ok(&mut self, info: &TlsInfo, tls: &TlsSetup, how: &str) {
        self.r.step(
            "tls",
            Some(true),
            &format!("{}, {} ({how})", info.version, info.cipher),
        );
        let cert = if self.relay.tls_verify {
            format!("verified for {} against {}", self.host, tls.anchors)
        } else {
            "not verified against an authority (tls_verify = false): pin-only".to_string()
        };
        self.r.step("certificate", Some(true), &cert);
        self.pin(tls, true);
    }

    /// The pin of the key the relay presented (`tls_pin` syntax), and
    /// whether it is one of the configured pins.
    fn pin(&mut self, tls: &TlsSetup, accepted: bool) {
        let Some(pin) = tls.last_pin() else {
            return;
        };
        let note = if self.relay.tls_pins.is_empty() {
            "(not pinned; tls_pin = [\"PIN\"] pins it)"
        } else if accepted {
            "(matches tls_pin)"
        } else {
            "(seen; not accepted)"
        };
        let verdict = if accepted && !self.relay.tls_pins.is_empty() {
            Some(true)
        } else {
            None
        };
        self.r.step("pin", verdict, &format!("{pin} {note}"));
    }

    /// Why TLS could not start: the certificate verdict, the handshake
    /// failure, or bytes injected after the STARTTLS reply.
    fn tls_failed(&mut self, e: conn::Error, tls: &TlsSetup, starttls: bool) {
        let plaintext = starttls && e.is_plaintext_in_handshake();
        match e {
            conn::Error::Handshake(io) => {
                let (cert, mut why) = explain_tls(&io, &self.host, &tls.anchors);
                if plaintext {
                    why.push_str(": not TLS after the STARTTLS reply: possible STARTTLS response injection, or a relay that does not start TLS");
                }
                let name = if cert { "certificate" } else { "tls" };
                self.r.step(name, Some(false), &why);
                if cert {
                    self.pin(tls, false);
                }
            }
            conn::Error::Injection(_) => {
                let why = format!(
                    "{}: an attack on the connection (or a broken relay); delivery defers mail rather than read them as TLS replies",
                    e.describe()
                );
                self.r.step("tls", Some(false), &why);
            }
            conn::Error::Reply(r) => {
                let why = format!("STARTTLS refused: {}", r.one_line());
                self.r.step("tls", Some(false), &why);
            }
            conn::Error::Client(why) => self.r.step("tls", Some(false), &why),
            _ => self.r.step("tls", Some(false), "no reply to STARTTLS"),
        }
    }

    /// The connection to talk SMTP on: TLS first when `tls = "tls"`.
    fn implicit_tls(&mut self, mut conn: Conn, tls: Option<&TlsSetup>) -> Option<Conn> {
        if self.relay.tls != TlsMode::Tls {
            return Some(conn);
        }
        let tls = tls?;
        match conn.handshake(tls) {
            Ok(info) => {
                self.tls_ok(&info, tls, "implicit TLS");
                Some(conn)
            }
            Err(e) => {
                self.tls_failed(e, tls, false);
                None
            }
        }
    }

    /// The greeting: true when it is a 220.
    fn banner(&mut self, conn: &mut Conn) -> bool {
        let why = match read_reply(conn) {
            Ok(b) if b.code == 220 => {
                self.r
                    .step("banner", Some(true), &shorten(&b.one_line(), 120));
                return true;
            }
            Ok(b) => format!("the server refused the session: {}", b.one_line()),
            Err(StepError::Timeout) => {
                let hint = if self.relay.tls == TlsMode::Starttls || self.relay.tls == TlsMode::None
                {
                    " (if this port expects implicit TLS, as 465 does, set tls = \"tls\")"
                } else {
                    ""
                };
                format!(
                    "timeout: no greeting within {}s: the server accepted the connection but never answered{hint}",
                    self.timeout.as_secs()
                )
            }
            Err(StepError::Closed) => "the server closed the connection without a greeting".into(),
            Err(StepError::Other(e)) => e,
        };
        self.r.step("banner", Some(false), &why);
        false
    }

    /// EHLO and what it offers (parsed by the delivery code's parser).
    fn ehlo(&mut self, conn: &mut Conn) -> Option<Features> {
        let why = match smtp(conn, &format!("EHLO {}", self.cfg.helo_name())) {
            Ok(rep) if rep.code == 250 => {
                return Some(Features::parse(rep.lines.iter().map(|l| l.as_str())));
            }
            Ok(rep) => format!("the server refused EHLO: {}", rep.one_line()),
            Err(StepError::Timeout) => "timeout: no reply to EHLO".into(),
            Err(StepError::Closed) => "the server closed the connection after EHLO".into(),
            Err(StepError::Other(e)) => e,
        };
        self.r.step("ehlo", Some(false), &why);
        None
    }

    /// STARTTLS when `tls = "starttls"` (and the second EHLO); the plain
    /// text note when `tls = "none"`.
    fn starttls(
        &mut self,
        mut conn: Conn,
        offer: Features,
        tls: Option<&TlsSetup>,
    ) -> Option<(Conn, Features)> {
        match self.relay.tls {
            TlsMode::Starttls => {
                let tls = tls?;
                if !offer.starttls {
                    self.r.step(
                        "tls",
                        Some(false),
                        "the server does not offer STARTTLS (tls = \"starttls\" requires it; for implicit TLS on port 465 set tls = \"tls\")",
                    );
                    let _ = smtp(&mut conn, "QUIT");
                    return None;
                }
                match conn.starttls(tls) {
                    Ok(info) => self.tls_ok(&info, tls, "STARTTLS"),
                    Err(e) => {
                        self.tls_failed(e, tls, true);
                        return None;
                    }
                }
                let offer = self.ehlo(&mut conn)?;
                Some((conn, offer))
            }
            TlsMode::None => {
                let why = if crate::config::is_loopback_host(&self.relay.host) {
                    "the host is loopback"
                } else {
                    "allow_plaintext = true"
                };
                self.r.step(
                    "tls",
                    None,
                    &format!("none: plain text, allowed because {why}"),
                );
                if self.relay.username.is_some() {
                    let auth = if self.relay.allow_plaintext {
                        "AUTH in plain text: allowed by allow_plaintext = true (loopback relay)"
                    } else {
                        "AUTH in plain text is refused: set allow_plaintext = true for a loopback relay that wants AUTH"
                    };
                    self.r.step("", None, auth);
                }
                Some((conn, offer))
            }
            TlsMode::Tls => Some((conn, offer)),
        }
    }

    /// The relay's size limit against ours; recorded for submission.
    fn size(&mut self, offer: &Features) {
        session::learn_size(self.cfg, self.relay, offer.size);
        match offer.size {
            Some(n) if n > 0 => {
                self.r.step(
                    "size",
                    Some(true),
                    &format!("the relay accepts messages up to {}", size_text(n)),
                );
                match self.cfg.max_message_size {
                    Some(max) if max > n => self.r.step(
                        "",
                        None,
                        &format!(
                            "note: max_message_size is {}: messages larger than the relay's limit will bounce",
                            size_text(max)
                        ),
                    ),
                    Some(_) => {}
                    None => self.r.step(
                        "",
                        None,
                        "submission now refuses larger messages (max_message_size is not set)",
                    ),
                }
            }
            Some(_) => self
                .r
                .step("size", Some(true), "SIZE offered without a limit"),
            None => self
                .r
                .step("size", None, "the relay announces no size limit (no SIZE)"),
        }
    }

    /// The production path: the same session code the queue runner uses,
    /// closed after AUTH (nothing is sent).
    fn delivery_session(&mut self) {
        let relay = self.relay;
        let params = match relay.tls {
            TlsMode::None => None,
            _ => match session::tls_parameters(relay) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.r.step("session", Some(false), &e.to_string());
                    return;
                }
            },
        };
        match SmtpSession::connect(self.cfg, self.idx, relay, params.as_ref()) {
            Ok(s) => {
                match &relay.username {
                    Some(u) => self.r.step(
                        "auth",
                        Some(true),
                        &format!(
                            "logged in as {u} through the delivery path ({}; nothing sent)",
                            if s.encrypted { "encrypted" } else { "plain" }
                        ),
                    ),
                    None => self.r.step(
                        "auth",
                        None,
                        "not configured (no username); the delivery path connected fine",
                    ),
                }
                s.quit();
            }
            Err(ConnectError::Auth(m)) => {
                let hint = auth_hint(relay, &m);
                self.r.step("auth", Some(false), &format!("{m} — {hint}"));
            }
            Err(ConnectError::Local(m)) => self.r.step("auth", Some(false), &m),
            Err(e) => self.r.step(
                "session",
                Some(false),
                &format!("the delivery path failed: {e}"),
            ),
        }
    }
}

/// The host name and domain in use and where each came from (issue 12 §6:
/// a short name in EHLO or in `root@web1` is what relays refuse).
fn names(cfg: &Config, out: &mut impl Write) {
    let _ = writeln!(
        out,
        "hostname {} (from {})",
        cfg.hostname, cfg.hostname_origin
    );
    if cfg.helo_name() != cfg.hostname {
        let _ = writeln!(out, "helo_name {} (from [smtp] helo_name)", cfg.helo_name());
    }
    let _ = writeln!(out, "domain {} (from {})", cfg.domain, cfg.domain_origin);
    if !cfg.hostname.contains('.') {
        let _ = writeln!(
            out,
            "  warning: {} is not a fully qualified name; relays often refuse it in EHLO and in sender addresses (set hostname in the configuration or /etc/mailname)",
            cfg.hostname
        );
    }
}

/// What a provider offers instead of SMTP when every SMTP port is blocked,
/// by the relay's host name.
fn https_alternative(host: &str) -> Option<&'static str> {
    let h = host.to_ascii_lowercase();
    let h = h.trim_end_matches('.');
    let is = |suffix: &str| h == suffix || h.ends_with(&format!(".{suffix}"));
    Some(if is("mailgun.org") {
        "Mailgun offers its HTTPS API (POST /v3/DOMAIN/messages.mime, kind = \"mailgun\")"
    } else if is("amazonaws.com") && h.contains("email") {
        "Amazon SES offers its HTTPS API (SES v2 SendEmail with raw content, kind = \"ses\")"
    } else if is("office365.com") || is("outlook.com") {
        "Microsoft 365 offers Microsoft Graph sendMail over HTTPS (kind = \"graph\", with [relay.oauth2])"
    } else if is("sendgrid.net") {
        "SendGrid offers its HTTPS Web API v3 (mail/send)"
    } else if is("postmarkapp.com") {
        "Postmark offers its HTTPS API (/email)"
    } else if is("gmail.com") || is("googlemail.com") {
        "Google offers the Gmail API over HTTPS (users.messages.send)"
    } else {
        return None;
    })
}

/// `port = "auto"`: try 587, 465 and 2525 as delivery does, telling a
/// refused port (the host answers, nothing listens) from a blocked one
/// (no answer at all: a firewall drops the connection), and say which one
/// delivery remembers. The relay on the first open port (the remembered
/// one when it is open), or None when none is.
fn auto_ports(cfg: &Config, relay: &Relay, r: &mut Report) -> Option<Relay> {
    use crate::deliver::smtp::{AUTO_CONNECT_TIMEOUT, AUTO_PORTS, auto_order, relay_on};
    let spool = crate::spool::Spool::new(&cfg.spool_dir);
    let remembered = crate::spool::relay_ports::read(&spool).get(&relay.host);
    let timeout = cfg.smtp.connect_timeout.min(AUTO_CONNECT_TIMEOUT);
    let addrs = match session::resolve(&relay_on(relay, 587)) {
        Ok(a) => a,
        Err(e) => {
            r.step("dns", Some(false), &e.to_string());
            return None;
        }
    };
    let (mut open, mut blocked, mut refused) = (Vec::new(), 0, 0);
    for &(port, tls) in &AUTO_PORTS {
        let how = if tls == TlsMode::Tls {
            "TLS"
        } else {
            "STARTTLS"
        };
        let mut verdict = String::new();
        for a in &addrs {
            let addr = SocketAddr::new(a.ip(), port);
            let start = Instant::now();
            verdict = match TcpStream::connect_timeout(&addr, timeout) {
                Ok(_) => {
                    open.push(port);
                    format!("open ({how}; {addr} in {} ms)", start.elapsed().as_millis())
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::ConnectionRefused => {
                        format!("refused ({addr}: the host answers, nothing listens on {port})")
                    }
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!(
                        "blocked ({addr}: no answer within {}s: a firewall drops it)",
                        timeout.as_secs_f64()
                    ),
                    _ => format!("{addr}: {}", crate::error::describe_io(&e)),
                },
            };
            if open.last() == Some(&port) {
                break;
            }
        }
        if open.last() != Some(&port) {
            if verdict.starts_with("blocked") {
                blocked += 1;
            } else if verdict.starts_with("refused") {
                refused += 1;
            }
        }
        let mark = if remembered == Some(port) {
            " (remembered: delivery tries it first)"
        } else {
            ""
        };
        r.step(&format!("port {port}"), None, &format!("{verdict}{mark}"));
    }
    let Some(&port) = auto_order(remembered).iter().find(|p| open.contains(p)) else {
        let why = if blocked == AUTO_PORTS.len() {
            let alt = match https_alternative(&relay.host) {
                Some(a) if a.contains("kind = ") => format!(
                    "; {a}: add a [[relay]] of that kind after this one (postern.toml(5), HTTPS API RELAYS)"
                ),
                Some(a) => format!(
                    "; {a}, which Postern does not speak: ask the hosting provider to open outgoing SMTP, or relay through a host that can"
                ),
                None => "; ask the hosting provider to open outgoing SMTP (many clouds block it on new accounts), or relay through a host that can".to_string(),
            };
            format!(
                "every SMTP port is blocked (587, 465, 2525 time out): this network drops outgoing SMTP{alt}"
            )
        } else if refused == AUTO_PORTS.len() {
            format!(
                "every SMTP port is refused: {} answers but runs no mail submission service (check the host name)",
                relay.host
            )
        } else {
            "no SMTP port is open (587, 465, 2525)".to_string()
        };
        r.step("ports", Some(false), &why);
        return None;
    };
    r.step("ports", Some(true), &format!("using port {port}"));
    Some(relay_on(relay, port))
}

/// With per-sender relays: which relays each `senders` pattern maps to,
/// who gets the relays without `senders`, and where bounces go (`sendmail
/// -bv -f SENDER ADDRESS` answers for one sender).
fn routing(cfg: &Config, out: &mut impl Write) {
    use crate::deliver::sender_relays;
    if !sender_relays::per_sender(&cfg.relays) {
        return;
    }
    let name = |i: usize| format!("relay {} ({})", i + 1, cfg.relays[i].label());
    let names = |idx: &[usize]| {
        idx.iter()
            .map(|&i| name(i))
            .collect::<Vec<_>>()
            .join(", then ")
    };
    let _ = writeln!(out, "relays by envelope sender (senders):");
    let mut seen: Vec<&str> = Vec::new();
    for r in &cfg.relays {
        for p in &r.senders {
            if seen.contains(&p.as_str()) {
                continue;
            }
            seen.push(p);
            let idx: Vec<usize> = (0..cfg.relays.len())
                .filter(|&i| cfg.relays[i].senders.contains(p))
                .collect();
            let _ = writeln!(out, "  {:<28} {}", crate::escape::text(p), names(&idx));
        }
    }
    let default = sender_relays::default_group(&cfg.relays);
    if default.is_empty() {
        let _ = writeln!(
            out,
            "  {:<28} none: their mail stays queued (deferred: no relay serves the sender); add a [[relay]] without senders to serve them",
            "every other sender"
        );
    } else {
        let _ = writeln!(out, "  {:<28} {}", "every other sender", names(&default));
    }
    if !seen.contains(&"<>") {
        let _ = writeln!(
            out,
            "  {:<28} the relays of the original sender's pattern, else {}",
            "bounces (null sender <>)",
            if default.is_empty() {
                "none (deferred)".to_string()
            } else {
                names(&default)
            }
        );
    }
}

/// `postern check`: print the report; 0 when every relay is usable.
pub fn command(cfg: &Config) -> Result<u8> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    names(cfg, &mut out);
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
        let senders = if relay.senders.is_empty() {
            String::new()
        } else {
            format!(", senders {}", relay.senders.join(" "))
        };
        let _ = writeln!(
            out,
            "relay {} of {n}: {} (tls = {}, {}{})",
            idx + 1,
            relay.label(),
            match relay.tls {
                _ if relay.kind.is_https() => relay.kind.name(),
                _ if relay.port_auto => "per port",
                TlsMode::Starttls => "starttls",
                TlsMode::Tls => "tls",
                TlsMode::None => "none",
            },
            match &relay.username {
                Some(u) => format!("user {u}"),
                None => "no AUTH".into(),
            },
            crate::escape::text(&senders)
        );
        let mut r = Report {
            out: &mut out,
            usable: true,
        };
        if relay.port_auto {
            if let Some(chosen) = auto_ports(cfg, relay, &mut r) {
                probe(cfg, idx, &chosen, &mut r);
            }
        } else {
            probe(cfg, idx, relay, &mut r);
        }
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
    routing(cfg, &mut out);
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
            senders: vec![],
            tls_pins: vec![],
            tls_verify: true,
            port_auto: false,
            api: None,
            oauth2: None,
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
