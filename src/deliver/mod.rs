//! Delivery through the smart host: reply types, per-recipient verdicts,
//! and the classification of every failure as temporary or permanent.
//!
//! The pieces: `transport` is the seam every transport implements (open a
//! session, send one transaction with per-recipient results, reuse, quit);
//! `smtp` is the SMTP transport (session + wire form); `relays` chooses the
//! relay (failover, down-list, rate limits) and keeps sessions open, among
//! the relays `sender_relays` says serve the message's sender;
//! `credentials` reads relay secrets; `oauth2` obtains and caches the
//! access tokens of `[relay.oauth2]` relays. The HTTPS API transports, for
//! hosts where SMTP is blocked: `api` (what they share: answers to
//! verdicts, size limits, the session), `http` (the client over the
//! relay's TLS configuration, the streamed MIME body), `mailgun`, `ses`
//! (with `sigv4`), `graph` (Microsoft Graph `sendMail`, OAuth2).
//!
//! Delivery is at-least-once: a crash between the relay's `250` and the
//! state save can send a message twice; nothing can lose it. A 5xx reply is
//! permanent for the recipients it applies to (RCPT: that recipient; MAIL
//! or after DATA: every recipient of the transaction); a 4xx reply, and
//! every network, TLS, timeout or local error, is temporary.

pub mod api;
pub mod credentials;
pub mod graph;
pub mod http;
pub mod mailgun;
pub mod oauth2;
pub mod relays;
pub mod sender_relays;
pub mod ses;
pub mod sigv4;
pub mod smtp;
pub mod transport;

use std::fmt;

/// An SMTP reply, or a local reason dressed as one (code 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Reply code; 0 for a local reason.
    pub code: u16,
    /// Text (enhanced status code first when the server gave one).
    pub text: String,
}

impl Reply {
    /// A local reason (no SMTP code).
    pub fn local(text: String) -> Reply {
        Reply { code: 0, text }
    }

    /// The enhanced status code (`5.1.1`), from the text or derived from
    /// the reply code.
    pub fn enhanced(&self) -> String {
        let first = self.text.split_whitespace().next().unwrap_or("");
        let parts: Vec<&str> = first.split('.').collect();
        if parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        {
            return first.to_string();
        }
        match self.code / 100 {
            2 => "2.0.0".into(),
            5 => "5.0.0".into(),
            _ => "4.0.0".into(),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.code == 0 {
            f.write_str(&self.text)
        } else if self.text.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} {}", self.code, self.text)
        }
    }
}

/// What happened to one recipient in one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted.
    Sent,
    /// Try again later.
    Deferred,
    /// Permanent failure.
    Bounced,
}

impl Verdict {
    /// From a reply code: 2xx/3xx sent, 5xx bounced, everything else deferred.
    pub fn from_code(code: u16) -> Verdict {
        match code / 100 {
            2 | 3 => Verdict::Sent,
            5 => Verdict::Bounced,
            _ => Verdict::Deferred,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(Verdict::from_code(250), Verdict::Sent);
        assert_eq!(Verdict::from_code(450), Verdict::Deferred);
        assert_eq!(Verdict::from_code(550), Verdict::Bounced);
        assert_eq!(Verdict::from_code(0), Verdict::Deferred);
        let r = Reply {
            code: 550,
            text: "5.1.1 no such user".into(),
        };
        assert_eq!(r.enhanced(), "5.1.1");
        assert_eq!(r.to_string(), "550 5.1.1 no such user");
        assert_eq!(
            Reply {
                code: 451,
                text: "try later".into()
            }
            .enhanced(),
            "4.0.0"
        );
    }
}
