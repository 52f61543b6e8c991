//! Sender identity: the envelope sender used on the wire.
//!
//! `addresses.sender` replaces the envelope sender of every message
//! (`sender_scope = "all"`) or only of local senders (`"local"`: a bare
//! user name, a domain of this host, or `domain` — what local users'
//! addresses are qualified with). The null sender `<>` is never
//! replaced (it marks bounces). Applied at delivery, so a config change
//! applies to queued mail.

use super::route;
use crate::config::{Config, SenderScope};
use crate::spool::format::Envelope;

/// The envelope sender to send `env` with.
pub fn envelope_sender(cfg: &Config, env: &Envelope) -> String {
    sender_on_wire(cfg, &env.sender)
}

/// The envelope sender `sender` goes out as ("" stays "").
pub fn sender_on_wire(cfg: &Config, sender: &str) -> String {
    if sender.is_empty() {
        return String::new();
    }
    if let Some(s) = &cfg.addresses.sender {
        let local = is_local_sender(cfg, sender);
        if cfg.addresses.sender_scope == SenderScope::All || local {
            return s.clone();
        }
    }
    sender.to_string()
}

/// True for a sender from this host: unqualified, a local domain, or the
/// configured `domain` local users are qualified with.
pub fn is_local_sender(cfg: &Config, addr: &str) -> bool {
    route::is_local(cfg, addr)
        || route::split(addr)
            .1
            .is_some_and(|d| d.eq_ignore_ascii_case(&cfg.domain))
}
