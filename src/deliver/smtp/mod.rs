//! The SMTP transport: submission to a smart host. `conn` is our own
//! client connection (TCP, rustls, the read buffer, STARTTLS that refuses
//! bytes injected after its `220`, DATA transparency, AUTH) and the one TLS
//! configuration builder (shared with `postern check`); `session` drives
//! one connection (TLS, AUTH, MAIL / RCPT / DATA with per-recipient
//! replies); `reply` reads replies and EHLO offers (shared with `postern
//! check`); `wire` turns the spooled bytes into what `DATA` may carry. [`SmtpTransport`] is what `relays` builds for
//! a `[[relay]]` of `kind = "smtp"`.

pub mod conn;
pub mod reply;
pub mod session;
pub mod wire;

use crate::config::{Config, Relay};
use crate::deliver::transport::{ConnectError, Session, Transport};
use conn::TlsParameters;
pub use session::SmtpSession;

/// One `[[relay]]` reached over SMTP, with its TLS parameters built once
/// (trust store, `ca_file`, client certificate).
pub struct SmtpTransport {
    idx: usize,
    relay: Relay,
    tls: TlsParameters,
}

impl SmtpTransport {
    /// The transport for `relay` (index `idx` in the config). Fails when
    /// the TLS parameters cannot be built (unreadable `ca_file`, bad client
    /// certificate).
    pub fn new(idx: usize, relay: &Relay) -> Result<SmtpTransport, ConnectError> {
        Ok(SmtpTransport {
            idx,
            relay: relay.clone(),
            tls: session::tls_parameters(relay)?,
        })
    }
}

impl Transport for SmtpTransport {
    fn open(&self, cfg: &Config) -> Result<Box<dyn Session>, ConnectError> {
        let s = SmtpSession::connect(cfg, self.idx, &self.relay, Some(&self.tls))?;
        Ok(Box::new(s))
    }
}
