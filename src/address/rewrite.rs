//! Sender identity: the envelope sender used on the wire.
//!
//! `addresses.sender` replaces the envelope sender of every message
//! (`sender_scope = "all"`) or only of local senders (`"local"`: a bare
//! user name, or a domain of this host). The null sender `<>` is never
//! replaced (it marks bounces). Applied at delivery, so a config change
//! applies to queued mail.

use super::route;
use crate::config::{Config, SenderScope};
use crate::spool::format::Envelope;

/// The envelope sender to send `env` with.
pub fn envelope_sender(cfg: &Config, env: &Envelope) -> String {
    if env.sender.is_empty() {
        return String::new();
    }
    if let Some(s) = &cfg.addresses.sender {
        let local = route::is_local(cfg, &env.sender);
        if cfg.addresses.sender_scope == SenderScope::All || local {
            return s.clone();
        }
    }
    env.sender.clone()
}
