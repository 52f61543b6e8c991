//! Our own SMTP client connection: a TCP stream, optionally wrapped in
//! rustls, under a read buffer we own.
//!
//! It replaces lettre's `SmtpConnection`, whose `starttls` upgrades the
//! stream but keeps whatever its read buffer already holds: bytes a relay —
//! or anyone on the path — sent in the same plaintext segment as the `220`
//! to `STARTTLS` were then read as the first replies *inside* TLS (RFC 3207
//! §6, the "STARTTLS response injection" class), which could bounce a
//! message with a forged reply or forge the EHLO offer. Here [`Conn::starttls`]
//! refuses to upgrade when a single byte is buffered after the `220`: that is
//! [`Error::Injection`], a TLS failure (the message is deferred, never
//! bounced). Bytes that arrive later are read by rustls as TLS records and
//! fail the handshake, which is also a TLS failure.
//!
//! Also here: the one TLS client configuration ([`tls_parameters`]: system
//! roots plus `ca_file`, client certificate, TLS 1.2 and 1.3 on ring) used
//! by delivery and by `postern check`; command / reply exchange with the
//! reply reader of [`super::reply`]; DATA transparency (dot-stuffing after
//! every CRLF, byte for byte what lettre's `ClientCodec` did); AUTH PLAIN,
//! LOGIN, XOAUTH2 and OAUTHBEARER (RFC 7628). Nothing here logs a secret.
//!
//! Certificate pinning (`tls_pin`, `tls_verify`) is part of the one TLS
//! configuration: [`PinningVerifier`] runs the normal verification (unless
//! the relay is pin-only) and then compares the SHA-256 of the leaf's
//! SubjectPublicKeyInfo ([`spki_pin`]) with the pins; a mismatch is a
//! certificate failure ([`PinMismatch`], naming the key seen).

use super::reply::{self, RawReply, ReadError};
use crate::config::Relay;
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// What a refused upgrade is called in the log and in `postern check`.
pub const INJECTION: &str = "bytes after the STARTTLS reply: possible STARTTLS response injection";

/// Most injected bytes shown (escaped) in a log line.
const SHOW_INJECTED: usize = 200;

/// The TLS side of one relay, built once: the client configuration and the
/// name the certificate must carry (also sent as SNI).
#[derive(Clone)]
pub struct TlsParameters {
    config: Arc<ClientConfig>,
    host: String,
    /// The trust anchors, for reports: "the system roots (N) and ca_file …".
    pub anchors: String,
    /// The pin of the last key a handshake with these parameters saw.
    seen_pin: Arc<std::sync::Mutex<Option<String>>>,
}

impl TlsParameters {
    /// The pin (`sha256//…`) of the key the relay presented in the last
    /// handshake with these parameters, whether or not it was accepted
    /// (None before a handshake, or when no certificate came).
    pub fn last_pin(&self) -> Option<String> {
        self.seen_pin.lock().ok().and_then(|p| p.clone())
    }

    /// The rustls client configuration (for the HTTPS transports, which
    /// verify exactly as SMTP does).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.config)
    }
}

/// Build the TLS client configuration of `relay`, exactly as delivery
/// verifies: the system roots (rustls-native-certs) plus every certificate
/// in `ca_file`, the client certificate when `client_cert`/`client_key` are
/// set, TLS 1.2 and 1.3 (rustls's safe defaults) on ring; the certificate
/// must be valid for the relay's host (brackets removed), which is also the
/// SNI. Err: why, in one line.
pub fn tls_parameters(relay: &Relay) -> Result<TlsParameters, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (n, _) = roots.add_parsable_certificates(native.certs);
    let mut anchors = if n > 0 {
        format!("the system roots ({n})")
    } else {
        "no system roots (none found)".to_string()
    };
    if let Some(ca) = &relay.ca_file {
        let pem =
            std::fs::read(ca).map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
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
    let seen_pin = Arc::new(std::sync::Mutex::new(None));
    let inner = if !relay.tls_verify {
        anchors = format!(
            "no authority (tls_verify = false: pin-only, the key must match tls_pin; {anchors} not used)"
        );
        None
    } else if roots.is_empty() {
        None
    } else {
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots.clone()),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| format!("TLS setup: {e}"))?;
        Some(v)
    };
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = if inner.is_none() && relay.tls_verify {
        // No trust anchor at all: every certificate is refused (unknown
        // issuer), as before pinning existed.
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinningVerifier {
                inner,
                pins: relay.tls_pins.clone(),
                algs: provider.signature_verification_algorithms,
                seen: Arc::clone(&seen_pin),
            }))
    };
    if !relay.tls_pins.is_empty() && relay.tls_verify {
        anchors.push_str(" and tls_pin");
    }
    let config = match (&relay.client_cert, &relay.client_key) {
        (Some(c), Some(k)) => {
            let pem = std::fs::read(c)
                .map_err(|e| format!("cannot read client_cert {}: {e}", c.display()))?;
            let chain = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client certificate {}: {e}", c.display()))?;
            if chain.is_empty() {
                return Err(format!(
                    "client certificate {} holds no certificate",
                    c.display()
                ));
            }
            let key = std::fs::read(k)
                .map_err(|e| format!("cannot read client_key {}: {e}", k.display()))?;
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| format!("client certificate key {}: {e}", k.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(TlsParameters {
        config: Arc::new(config),
        host: relay.host.trim_matches(['[', ']']).to_string(),
        anchors,
        seen_pin,
    })
}

/// `sha256//BASE64` of the SubjectPublicKeyInfo of the DER certificate
/// `cert` — the pin curl's `--pinnedpubkey` and `tls_pin` take. Err: the
/// certificate does not parse.
pub fn spki_pin(cert: &CertificateDer<'_>) -> Result<String, String> {
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| format!("cannot read the relay's certificate: {e}"))?;
    let spki = ee.subject_public_key_info();
    let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
    Ok(format!(
        "sha256//{}",
        base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
    ))
}

/// A key that matches no `tls_pin`: a certificate failure whose text names
/// the key seen and the pins allowed.
#[derive(Debug)]
pub struct PinMismatch {
    /// The pin of the key the relay presented.
    pub seen: String,
    /// The configured pins.
    pub pins: Vec<String>,
}

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "certificate pin mismatch: the relay's key is {}, tls_pin allows {}",
            self.seen,
            self.pins.join(", ")
        )
    }
}

impl std::error::Error for PinMismatch {}

/// The pin mismatch inside a handshake error, if that is what failed.
pub fn pin_mismatch(e: &io::Error) -> Option<&PinMismatch> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => {
            o.0.downcast_ref::<PinMismatch>()
        }
        _ => None,
    }
}

/// The certificate check of every relay: the normal verification (chain to
/// the trust anchors, validity, name) unless `tls_verify = false`, then the
/// leaf's key against `tls_pin` when pins are set. It remembers the pin of
/// the last key it saw, for `postern check`. The handshake signatures are
/// always verified (with ring's algorithms): a pin-only relay must still
/// prove it holds the pinned key.
#[derive(Debug)]
struct PinningVerifier {
    /// None: pin-only (`tls_verify = false`).
    inner: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    pins: Vec<String>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
    seen: Arc<std::sync::Mutex<Option<String>>>,
}

impl rustls::client::danger::ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let pin = spki_pin(end_entity);
        if let (Ok(p), Ok(mut seen)) = (&pin, self.seen.lock()) {
            *seen = Some(p.clone());
        }
        if let Some(inner) = &self.inner {
            inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        if self.pins.is_empty() {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        let pin = pin.map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if self.pins.contains(&pin) {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch {
                    seen: pin,
                    pins: self.pins.clone(),
                }))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// What a finished handshake agreed on.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// "TLS 1.3" / "TLS 1.2".
    pub version: String,
    /// The cipher suite.
    pub cipher: String,
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum Error {
    /// The TCP connect failed.
    Connect(io::Error),
    /// A read or write failed (a timeout shows as `WouldBlock`/`TimedOut`).
    Io(io::Error),
    /// The server closed the connection before a whole reply.
    Closed,
    /// A line that is not an SMTP reply.
    NotSmtp(String),
    /// A 4xx/5xx reply.
    Reply(RawReply),
    /// The TLS handshake failed (certificate, alert, corrupt records, …).
    Handshake(io::Error),
    /// Bytes were already buffered after the `220` to STARTTLS.
    Injection(Vec<u8>),
    /// Our side: a bad server name, an unexpected AUTH challenge.
    Client(String),
}

impl Error {
    /// True when the error is a read or write timeout.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Connect(e) | Error::Io(e) | Error::Handshake(e) => matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }

    /// True for a handshake that failed on records that are not TLS —
    /// after STARTTLS, plain text sent after the `220` (an injection that
    /// came in its own segment) or a server that does not start TLS.
    pub fn is_plaintext_in_handshake(&self) -> bool {
        let Error::Handshake(e) = self else {
            return false;
        };
        matches!(
            e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
            Some(rustls::Error::InvalidMessage(_))
        )
    }

    /// The reply, when the error is a 4xx/5xx reply.
    pub fn reply(&self) -> Option<crate::deliver::Reply> {
        match self {
            Error::Reply(r) => Some(crate::deliver::Reply {
                code: r.code,
                text: negative_text(r),
            }),
            _ => None,
        }
    }

    /// One line, worded as lettre worded its errors (the log keeps them).
    pub fn describe(&self) -> String {
        if self.is_timeout() {
            return "timed out waiting for the server".into();
        }
        match self {
            Error::Connect(e) => format!("Connection error: {e}"),
            Error::Handshake(e) if pin_mismatch(e).is_some() => {
                pin_mismatch(e).map(|p| p.to_string()).unwrap_or_default()
            }
            Error::Io(e) | Error::Handshake(e) => format!("network error: {e}"),
            Error::Closed => "response error: incomplete response".into(),
            Error::NotSmtp(t) => format!("response error: not an SMTP reply: {t:?}"),
            Error::Reply(r) => format!(
                "{} error ({}): {}",
                if r.code >= 500 {
                    "permanent"
                } else {
                    "transient"
                },
                r.code,
                negative_text(r)
            ),
            Error::Injection(b) => format!("{INJECTION} ({})", escape_bytes(b)),
            Error::Client(s) => format!("internal client error: {s}"),
        }
    }
}

/// A SASL name in a GS2 header (RFC 5801 §4): `,` and `=` escaped.
fn gs2_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// `bytes` as printable ASCII (`\r`, `\n`, `\x1b`, …), cut to a few hundred,
/// with their count.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(SHOW_INJECTED) {
        s.extend(std::ascii::escape_default(b).map(char::from));
    }
    if bytes.len() > SHOW_INJECTED {
        s.push('…');
    }
    format!("{} bytes: \"{s}\"", bytes.len())
}

/// The text of a positive reply: its lines joined by spaces.
pub fn positive_text(r: &RawReply) -> String {
    r.lines.join(" ")
}

/// The text of a negative reply: its lines joined by spaces, an enhanced
/// status code that every line repeats kept once (as lettre joined them).
pub fn negative_text(r: &RawReply) -> String {
    let Some((first, rest)) = r.lines.split_first() else {
        return String::new();
    };
    let class = (r.code / 100).to_string();
    let word = first.split(' ').next().unwrap_or("");
    let enhanced = {
        let parts: Vec<&str> = word.split('.').collect();
        parts.len() == 3
            && parts[0] == class
            && parts[1..]
                .iter()
                .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut joined = first.clone();
    for line in rest {
        joined.push(' ');
        let stripped = enhanced
            .then(|| line.strip_prefix(word))
            .flatten()
            .filter(|r| r.starts_with(' '))
            .map(str::trim_start);
        joined.push_str(stripped.unwrap_or(line));
    }
    joined
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// Only while the stream is being upgraded (or after a failed upgrade).
    Gone,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Gone => Ok(()),
        }
    }
}

impl Stream {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(s) => Some(s.get_ref()),
            Stream::Gone => None,
        }
    }
}

/// One SMTP client connection.
pub struct Conn {
    io: BufReader<Stream>,
    broken: bool,
}

impl Conn {
    /// Connect to `addr` within `timeout` (TCP_NODELAY: every write is a
    /// whole command or a whole chunk of DATA).
    pub fn connect(addr: &SocketAddr, timeout: Duration) -> Result<Conn, Error> {
        let tcp = TcpStream::connect_timeout(addr, timeout).map_err(Error::Connect)?;
        let _ = tcp.set_nodelay(true);
        Ok(Conn::new(tcp))
    }

    /// A plain-text connection on `tcp`.
    pub fn new(tcp: TcpStream) -> Conn {
        Conn {
            io: BufReader::new(Stream::Plain(tcp)),
            broken: false,
        }
    }

    /// Read and write timeout for what follows.
    pub fn set_timeout(&self, t: Duration) {
        if let Some(tcp) = self.io.get_ref().tcp() {
            let _ = tcp.set_read_timeout(Some(t));
            let _ = tcp.set_write_timeout(Some(t));
        }
    }

    /// True once TLS is up.
    pub fn is_encrypted(&self) -> bool {
        matches!(self.io.get_ref(), Stream::Tls(_))
    }

    /// True when the connection failed or was aborted.
    pub fn has_broken(&self) -> bool {
        self.broken
    }

    fn fail(&mut self, e: Error) -> Error {
        if !matches!(e, Error::Reply(_)) {
            self.broken = true;
        }
        e
    }

    /// Write `bytes` and flush.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let s = self.io.get_mut();
        match s.write_all(bytes).and_then(|_| s.flush()) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(Error::Io(e))),
        }
    }

    /// Read one reply, whatever its code.
    pub fn read_reply(&mut self) -> Result<RawReply, Error> {
        reply::read_reply(&mut self.io).map_err(|e| {
            self.fail(match e {
                ReadError::Closed => Error::Closed,
                ReadError::Io(e) => Error::Io(e),
                ReadError::NotSmtp(t) => Error::NotSmtp(t),
            })
        })
    }

    /// Send `line` (CRLF added) and read the reply, whatever its code.
    pub fn exchange(&mut self, line: &str) -> Result<RawReply, Error> {
        self.send(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
    }

    /// Read a reply; a 4xx/5xx is `Err(Error::Reply)`.
    pub fn response(&mut self) -> Result<RawReply, Error> {
        let r = self.read_reply()?;
        if r.code >= 400 {
            Err(Error::Reply(r))
        } else {
            Ok(r)
        }
    }

    /// Send `line` (CRLF added); a 4xx/5xx reply is `Err(Error::Reply)`.
    pub fn command(&mut self, line: &str) -> Result<RawReply, Error> {
        self.send(format!("{line}\r\n").as_bytes())?;
        self.response()
    }

    /// TLS from here on (implicit TLS, or after a `220` to STARTTLS). The
    /// read buffer must be empty: a byte in it came in plain text and would
    /// otherwise be read as if the server had sent it over TLS.
    pub fn handshake(&mut self, tls: &TlsParameters) -> Result<TlsInfo, Error> {
        let early = self.io.buffer();
        if !early.is_empty() {
            let bytes = early.to_vec();
            return Err(self.fail(Error::Injection(bytes)));
        }
        let name = match ServerName::try_from(tls.host.clone()) {
            Ok(n) => n,
            Err(e) => {
                return Err(self.fail(Error::Client(format!(
                    "{} is not a valid TLS server name: {e}",
                    tls.host
                ))));
            }
        };
        let old = std::mem::replace(&mut self.io, BufReader::new(Stream::Gone));
        let Stream::Plain(mut tcp) = old.into_inner() else {
            return Err(self.fail(Error::Client("TLS is already active".into())));
        };
        let mut conn = ClientConnection::new(Arc::clone(&tls.config), name)
            .map_err(|e| self.fail(Error::Client(format!("TLS setup: {e}"))))?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                let _ = tcp.shutdown(Shutdown::Both);
                return Err(self.fail(Error::Handshake(e)));
            }
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
        self.io = BufReader::new(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))));
        Ok(TlsInfo { version, cipher })
    }

    /// STARTTLS (RFC 3207): the command, a `220`, then the handshake — only
    /// when nothing follows the `220` (else [`Error::Injection`]). A refusal
    /// is `Err(Error::Reply)`; any non-220 positive reply is refused too.
    pub fn starttls(&mut self, tls: &TlsParameters) -> Result<TlsInfo, Error> {
        let r = self.command("STARTTLS")?;
        if r.code != 220 {
            return Err(Error::Reply(r));
        }
        self.handshake(tls)
    }

    /// AUTH with `mechanism` (PLAIN, LOGIN, XOAUTH2 or OAUTHBEARER, whose
    /// `secret` is the access token): the final reply, or
    /// `Err(Error::Reply)` when the server refuses.
    pub fn auth(&mut self, mechanism: &str, user: &str, secret: &str) -> Result<RawReply, Error> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        match mechanism {
            "PLAIN" => self.command(&format!(
                "AUTH PLAIN {}",
                b64(&format!("\0{user}\0{secret}"))
            )),
            "XOAUTH2" | "OAUTHBEARER" => {
                let initial = if mechanism == "XOAUTH2" {
                    format!("user={user}\x01auth=Bearer {secret}\x01\x01")
                } else {
                    // RFC 7628 §3.1: GS2 header with the authorization
                    // identity, then the key/value pairs.
                    format!("n,a={},\x01auth=Bearer {secret}\x01\x01", gs2_name(user))
                };
                let r = self.command(&format!("AUTH {mechanism} {}", b64(&initial)))?;
                if r.code == 334 {
                    // The error details come as a challenge (JSON: status,
                    // scope): answer empty (XOAUTH2) or %x01 (OAUTHBEARER,
                    // RFC 7628 §3.2.3) to get the final reply, and keep the
                    // details (escaped) for the log.
                    let detail = r
                        .lines
                        .first()
                        .and_then(|l| {
                            base64::engine::general_purpose::STANDARD
                                .decode(l.trim())
                                .ok()
                        })
                        .map(|b| {
                            crate::escape::field(&String::from_utf8_lossy(&b[..b.len().min(300)]))
                                .into_owned()
                        });
                    let answer = if mechanism == "XOAUTH2" { "" } else { "AQ==" };
                    return match self.command(answer) {
                        Err(Error::Reply(mut fin)) => {
                            if let Some(d) = detail.filter(|d| !d.is_empty()) {
                                fin.lines.push(format!("(relay's error details: {d})"));
                            }
                            Err(Error::Reply(fin))
                        }
                        other => other,
                    };
                }
                Ok(r)
            }
            "LOGIN" => {
                let mut r = self.command("AUTH LOGIN")?;
                let mut challenges = 10;
                while r.code == 334 {
                    challenges -= 1;
                    if challenges == 0 {
                        return Err(Error::Client("unexpected number of challenges".into()));
                    }
                    let word = r.lines.first().map(|l| l.trim()).unwrap_or("");
                    let asked = base64::engine::general_purpose::STANDARD
                        .decode(word)
                        .map(|b| String::from_utf8_lossy(&b).to_ascii_lowercase())
                        .unwrap_or_default();
                    let answer = if asked.contains("user") {
                        user
                    } else if asked.contains("password") {
                        secret
                    } else {
                        let _ = self.command("*");
                        return Err(Error::Client("unrecognized AUTH LOGIN challenge".into()));
                    };
                    r = self.command(&b64(answer))?;
                }
                Ok(r)
            }
            other => Err(Error::Client(format!("unsupported mechanism {other}"))),
        }
    }

    /// The DATA payload: `chunks` dot-stuffed (a `.` doubled after every
    /// CRLF and at the start, across chunk boundaries), then CRLF.CRLF,
    /// then the reply (`Err(Error::Reply)` for a 4xx/5xx). A chunk that is
    /// `Err` (the spool could not be read) stops the transfer without the
    /// final dot — the caller drops the connection so the server discards
    /// the partial message — and is returned as `Ok(Err(reason))`.
    pub fn message<I>(&mut self, chunks: I) -> Result<Result<RawReply, Error>, String>
    where
        I: Iterator<Item = io::Result<Vec<u8>>>,
    {
        let mut stuffer = Stuffer::default();
        let mut out = Vec::new();
        for chunk in chunks {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    self.broken = true;
                    return Err(e.to_string());
                }
            };
            out.clear();
            stuffer.encode(&chunk, &mut out);
            if let Err(e) = self.send(&out) {
                return Ok(Err(e));
            }
        }
        if let Err(e) = self.send(b"\r\n.\r\n") {
            return Ok(Err(e));
        }
        Ok(self.response())
    }

    /// QUIT unless broken, then shut the socket down.
    pub fn abort(&mut self) {
        if !self.broken {
            self.broken = true;
            let _ = self.command("QUIT");
        }
        if let Some(tcp) = self.io.get_ref().tcp() {
            let _ = tcp.shutdown(Shutdown::Both);
        }
    }

    /// True when bytes are waiting in our read buffer (for tests).
    #[cfg(test)]
    fn buffered(&mut self) -> usize {
        use std::io::BufRead;
        self.io.fill_buf().map(|b| b.len()).unwrap_or(0)
    }
}

/// SMTP transparency (RFC 5321 4.5.2) exactly as lettre 0.11's
/// `ClientCodec`: a `.` that starts a line after CRLF (or the payload) is
/// doubled; a bare LF does not start a line. The state carries across
/// chunks. Only the `.` bytes are visited (memchr): the rest of a chunk is
/// copied in runs, so a 50 MB attachment costs a copy, not a loop over
/// every byte.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
struct Stuffer {
    state: StuffState,
}

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
enum StuffState {
    Middle,
    Cr,
    #[default]
    LineStart,
}

impl Stuffer {
    fn encode(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        let Some(&last) = frame.last() else {
            return;
        };
        out.reserve(frame.len() + frame.len() / 64 + 2);
        let before = self.state;
        // The byte before `i` is a CR (within the frame, or carried in).
        let cr_before = |i: usize| match i {
            0 => before == StuffState::Cr,
            _ => frame[i - 1] == b'\r',
        };
        // Position `i` starts a line: after CRLF, or at the payload start.
        let line_start = |i: usize| match i {
            0 => before == StuffState::LineStart,
            _ => frame[i - 1] == b'\n' && cr_before(i - 1),
        };
        let mut copied = 0;
        for dot in memchr::memchr_iter(b'.', frame) {
            if line_start(dot) {
                out.extend_from_slice(&frame[copied..=dot]);
                out.push(b'.');
                copied = dot + 1;
            }
        }
        out.extend_from_slice(&frame[copied..]);
        let end = frame.len() - 1;
        self.state = match last {
            b'\r' => StuffState::Cr,
            b'\n' if cr_before(end) => StuffState::LineStart,
            _ => StuffState::Middle,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn stuffing_matches_lettre_across_chunks() {
        let mut s = Stuffer::default();
        let mut out = Vec::new();
        s.encode(b".a\r\n.b\nc\r", &mut out);
        s.encode(b"\n.d\r\r\n..e", &mut out);
        assert_eq!(out, b"..a\r\n..b\nc\r\n..d\r\r\n...e");
    }

    /// lettre 0.11's byte-at-a-time state machine, the reference.
    fn stuff_bytewise(state: &mut StuffState, frame: &[u8], out: &mut Vec<u8>) {
        for &b in frame {
            out.push(b);
            *state = match (b, *state) {
                (b'\r', _) => StuffState::Cr,
                (b'\n', StuffState::Cr) => StuffState::LineStart,
                (b'.', StuffState::LineStart) => {
                    out.push(b'.');
                    StuffState::Middle
                }
                _ => StuffState::Middle,
            };
        }
    }

    /// Random payloads over the bytes that matter (`.`, CR, LF, `x`), cut
    /// into random chunks (empty ones too): the same bytes and the same
    /// state as the reference after every chunk.
    #[test]
    fn stuffing_equals_the_bytewise_reference_on_random_chunks() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let payload: Vec<u8> = (0..len)
                .map(|_| [b'.', b'\r', b'\n', b'x'][(next() % 4) as usize])
                .collect();
            let (mut fast, mut slow) = (Stuffer::default(), StuffState::default());
            let (mut out_fast, mut out_slow) = (Vec::new(), Vec::new());
            let mut rest = &payload[..];
            while !rest.is_empty() || next() % 4 == 0 {
                let cut = (next() as usize) % (rest.len() + 1);
                let (chunk, tail) = rest.split_at(cut);
                fast.encode(chunk, &mut out_fast);
                stuff_bytewise(&mut slow, chunk, &mut out_slow);
                assert_eq!(out_fast, out_slow, "{payload:?}");
                assert_eq!(fast.state, slow, "{payload:?}");
                rest = tail;
                if rest.is_empty() {
                    break;
                }
            }
        }
    }

    #[test]
    fn negative_replies_keep_a_repeated_code_once() {
        let r = RawReply {
            code: 550,
            lines: vec!["5.7.25 first".into(), "5.7.25 second".into()],
        };
        assert_eq!(negative_text(&r), "5.7.25 first second");
        let r = RawReply {
            code: 451,
            lines: vec!["try".into(), "later".into()],
        };
        assert_eq!(negative_text(&r), "try later");
    }

    #[test]
    fn escaped_bytes_are_printable() {
        assert_eq!(
            escape_bytes(b"550 x\r\n\x1b]2;T\x07"),
            "13 bytes: \"550 x\\r\\n\\x1b]2;T\\x07\""
        );
    }

    /// A 220 followed by anything in the same segment is never upgraded.
    #[test]
    fn bytes_after_the_starttls_reply_refuse_the_upgrade() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
            s.write_all(b"220 go ahead\r\n550 5.1.1 INJECTED\r\n")
                .unwrap();
            let _ = s.read(&mut buf);
        });
        let mut c = Conn::connect(&addr, Duration::from_secs(5)).unwrap();
        c.set_timeout(Duration::from_secs(5));
        let relay = crate::config::Relay {
            kind: crate::config::RelayKind::Smtp,
            host: "localhost".into(),
            port: addr.port(),
            tls: crate::config::TlsMode::Starttls,
            allow_plaintext: false,
            username: None,
            password_file: None,
            password_command: None,
            auth_mechanisms: vec![],
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
        };
        let tls = tls_parameters(&relay).unwrap();
        match c.starttls(&tls) {
            Err(Error::Injection(b)) => assert_eq!(b, b"550 5.1.1 INJECTED\r\n"),
            other => panic!("{other:?}"),
        }
        assert!(c.has_broken() && !c.is_encrypted());
        assert_eq!(c.buffered(), 20);
        drop(c);
        t.join().unwrap();
    }

    /// A server that answers each line from `script` and records what it got.
    fn scripted(script: &'static [&'static str]) -> (Conn, std::thread::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut got = Vec::new();
            for reply in script {
                let mut line = String::new();
                if std::io::BufRead::read_line(&mut r, &mut line).unwrap_or(0) == 0 {
                    break;
                }
                got.push(line.trim_end().to_string());
                w.write_all(reply.as_bytes()).unwrap();
            }
            got
        });
        let c = Conn::connect(&addr, Duration::from_secs(5)).unwrap();
        c.set_timeout(Duration::from_secs(5));
        (c, t)
    }

    #[test]
    fn oauthbearer_sends_the_gs2_header_and_answers_an_error_challenge() {
        let (mut c, t) = scripted(&[
            "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==\r\n",
            "535 5.7.8 Username and Password not accepted\r\n",
        ]);
        let e = c.auth("OAUTHBEARER", "a=b,c@x", "T0K").unwrap_err();
        let r = e.reply().expect("a reply");
        assert_eq!(r.code, 535);
        assert!(
            r.text.contains("invalid_token") && r.text.contains("mail.google.com"),
            "{}",
            r.text
        );
        assert_eq!(
            t.join().unwrap(),
            [
                "AUTH OAUTHBEARER bixhPWE9M0RiPTJDY0B4LAFhdXRoPUJlYXJlciBUMEsBAQ==",
                "AQ=="
            ]
        );
    }

    #[test]
    fn auth_login_answers_the_challenges() {
        let (mut c, t) = scripted(&[
            "334 VXNlcm5hbWU6\r\n",
            "334 UGFzc3dvcmQ6\r\n",
            "235 2.7.0 ok\r\n",
        ]);
        let r = c.auth("LOGIN", "user", "pw").unwrap();
        assert_eq!(r.code, 235);
        assert_eq!(t.join().unwrap(), ["AUTH LOGIN", "dXNlcg==", "cHc="]);
    }

    #[test]
    fn auth_plain_refused_is_a_reply_error() {
        let (mut c, t) = scripted(&["535-5.7.8 bad\r\n535 5.7.8 credentials\r\n"]);
        let e = c.auth("PLAIN", "u", "p").unwrap_err();
        assert_eq!(e.reply().unwrap().text, "5.7.8 bad credentials");
        assert!(!c.has_broken());
        assert_eq!(t.join().unwrap(), ["AUTH PLAIN AHUAcA=="]);
    }
}
