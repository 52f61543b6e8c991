//! The SMTP transport: submission to a smart host. `conn` is our own
//! client connection (TCP, rustls, the read buffer, STARTTLS that refuses
//! bytes injected after its `220`, DATA transparency, AUTH) and the one TLS
//! configuration builder (shared with `postern check`); `session` drives
//! one connection (TLS, AUTH, MAIL / RCPT / DATA with per-recipient
//! replies); `reply` reads replies and EHLO offers (shared with `postern
//! check`); `wire` turns the spooled bytes into what `DATA` may carry. [`SmtpTransport`] is what `relays` builds for
//! a `[[relay]]` of `kind = "smtp"`.
//!
//! Port fallback (`port = "auto"`) lives here too: the transport tries
//! [`AUTO_PORTS`] in order — 587 with STARTTLS, 465 with implicit TLS, 2525
//! with STARTTLS — each connect bounded by [`AUTO_CONNECT_TIMEOUT`] (or
//! `smtp.connect_timeout` when shorter), starting with the port that worked
//! last (`spool::relay_ports`, which survives restarts). Only a port that
//! cannot be reached (connection refused, timed out) moves on to the next
//! one; any other failure (a refused session, TLS, AUTH) is the relay's
//! answer and ends the attempt. When the remembered port stops answering,
//! the others are probed again and the one that works is remembered.

pub mod conn;
pub mod reply;
pub mod session;
pub mod wire;

use crate::config::{Config, Relay, TlsMode};
use crate::deliver::transport::{ConnectError, Session, Transport};
use conn::TlsParameters;
pub use session::SmtpSession;
use std::time::Duration;

/// The ports `port = "auto"` tries, in order, with their TLS mode.
pub const AUTO_PORTS: [(u16, TlsMode); 3] = [
    (587, TlsMode::Starttls),
    (465, TlsMode::Tls),
    (2525, TlsMode::Starttls),
];

/// The connect timeout for each port `port = "auto"` tries (a blocked port
/// drops the SYN silently: this is how long it costs).
pub const AUTO_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `relay` on `port`, with that port's TLS mode (for `port = "auto"`).
pub fn relay_on(relay: &Relay, port: u16) -> Relay {
    let tls = AUTO_PORTS
        .iter()
        .find(|(p, _)| *p == port)
        .map(|&(_, t)| t)
        .unwrap_or(TlsMode::Starttls);
    Relay {
        port,
        tls,
        port_auto: false,
        ..relay.clone()
    }
}

/// The ports to try for an auto relay, the remembered one first.
pub fn auto_order(remembered: Option<u16>) -> Vec<u16> {
    let mut order: Vec<u16> = AUTO_PORTS.iter().map(|&(p, _)| p).collect();
    if let Some(r) = remembered
        && let Some(i) = order.iter().position(|&p| p == r)
    {
        order.remove(i);
        order.insert(0, r);
    }
    order
}

/// One `[[relay]]` reached over SMTP, with its TLS parameters built once
/// (trust store, `ca_file`, client certificate, pins).
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

    /// `port = "auto"`: the remembered port first, then the others; the
    /// first session set up wins and its port is remembered.
    fn open_auto(&self, cfg: &Config) -> Result<SmtpSession, ConnectError> {
        let spool = crate::spool::Spool::new(&cfg.spool_dir);
        let host = self.relay.host.as_str();
        let remembered = crate::spool::relay_ports::read(&spool).get(host);
        let mut short = cfg.clone();
        short.smtp.connect_timeout = cfg.smtp.connect_timeout.min(AUTO_CONNECT_TIMEOUT);
        let mut tried: Vec<String> = Vec::new();
        let mut last = None;
        for port in auto_order(remembered) {
            let relay = relay_on(&self.relay, port);
            match SmtpSession::connect(&short, self.idx, &relay, Some(&self.tls)) {
                Ok(s) => {
                    if remembered != Some(port) {
                        let before = if tried.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", tried.join("; "))
                        };
                        log::info!(
                            "relay {}: port {port} works{before}; remembered",
                            self.relay.label()
                        );
                        if let Err(e) = crate::spool::relay_ports::record(&spool, host, port) {
                            log::debug!("cannot record the port of {host}: {e}");
                        }
                    }
                    // Submission looks the relay's SIZE up by its label.
                    session::learn_size(cfg, &self.relay, s.features.size);
                    return Ok(s);
                }
                Err(ConnectError::Unreachable(e)) => {
                    log::debug!("relay {}: port {port}: {e}", self.relay.label());
                    tried.push(format!("{port}: {}", short_reason(&e)));
                    last = Some(ConnectError::Unreachable(e));
                }
                Err(e) => return Err(e),
            }
        }
        Err(match last {
            Some(_) => ConnectError::Unreachable(format!(
                "no SMTP port of {host} answers ({}): port = \"auto\" tried 587, 465 and 2525",
                tried.join("; ")
            )),
            None => ConnectError::Unreachable(format!("{host}: no port to try")),
        })
    }
}

/// "connection refused" / "timed out" from a connect error's text.
fn short_reason(e: &str) -> &str {
    if e.contains("refused") {
        "connection refused"
    } else if e.contains("timed out") {
        "timed out"
    } else {
        e.rsplit(": ").next().unwrap_or(e)
    }
}

impl Transport for SmtpTransport {
    fn open(&self, cfg: &Config) -> Result<Box<dyn Session>, ConnectError> {
        let s = if self.relay.port_auto {
            self.open_auto(cfg)?
        } else {
            SmtpSession::connect(cfg, self.idx, &self.relay, Some(&self.tls))?
        };
        Ok(Box::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_order_starts_with_the_remembered_port() {
        assert_eq!(auto_order(None), vec![587, 465, 2525]);
        assert_eq!(auto_order(Some(2525)), vec![2525, 587, 465]);
        assert_eq!(auto_order(Some(465)), vec![465, 587, 2525]);
        assert_eq!(auto_order(Some(25)), vec![587, 465, 2525]);
    }
}
