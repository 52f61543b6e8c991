//! The delivery seam: what every transport (SMTP today) offers the queue
//! runner, and the transaction types that cross it.
//!
//! A [`Transport`] is built once per configured relay and configuration
//! generation (see `relays::transport`, the one place that maps a relay's
//! `kind` to an implementation). It opens [`Session`]s; a session sends one
//! [`Transaction`] at a time — envelope sender, recipients, and the message
//! read from its spool file — and answers with one verdict per recipient.
//! A session says whether it may be reused and is closed politely with
//! `quit`. Transports never fail a transaction as a whole: every recipient
//! gets a verdict, and anything that is not a definite answer is deferred.

use super::{Reply, Verdict};
use crate::config::Config;
use std::fmt;
use std::fs::File;

/// Why a session could not be set up. Every variant means: try the next
/// relay, and defer if none works.
#[derive(Debug, Clone)]
pub enum ConnectError {
    /// Name resolution failed.
    Dns(String),
    /// TCP connect failed (refused, timeout, unreachable).
    Unreachable(String),
    /// The server refused the session (banner or EHLO 4xx/5xx) or broke it.
    Refused(String),
    /// STARTTLS missing, handshake or certificate failure.
    Tls(String),
    /// Authentication failed or impossible.
    Auth(String),
    /// Our side: bad ca_file, client cert, secret.
    Local(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Dns(s)
            | ConnectError::Unreachable(s)
            | ConnectError::Refused(s)
            | ConnectError::Tls(s)
            | ConnectError::Auth(s)
            | ConnectError::Local(s) => f.write_str(s),
        }
    }
}

/// One recipient of a transaction.
#[derive(Debug, Clone)]
pub struct TxRcpt {
    /// Address for RCPT TO.
    pub address: String,
    /// Original recipient for ORCPT (when DSN is offered).
    pub original: String,
}

/// One transaction.
pub struct Transaction<'a> {
    /// Envelope sender ("" = null sender).
    pub sender: &'a str,
    /// Recipients.
    pub rcpts: &'a [TxRcpt],
    /// DSN NOTIFY.
    pub notify: Option<&'a str>,
    /// DSN RET.
    pub ret: Option<&'a str>,
    /// DSN ENVID.
    pub envid: Option<&'a str>,
    /// The spool file and the message's place in it.
    pub file: &'a File,
    /// Offset of the message in the file.
    pub start: u64,
    /// Length of the message.
    pub len: u64,
}

/// One recipient's outcome: verdict, the reply that decided it, and the
/// protocol stage it answered ("" when none, e.g. a local reason).
pub type RcptVerdict = (Verdict, Reply, &'static str);

/// Outcome of a transaction: one verdict per recipient, in order.
#[derive(Debug, Clone)]
pub struct TxResult {
    /// Verdicts, index-aligned with `Transaction::rcpts`.
    pub verdicts: Vec<RcptVerdict>,
    /// The session can be reused.
    pub reusable: bool,
    /// The relay asked not to be tried again before this long (an HTTP
    /// API's `Retry-After`): the runner schedules a deferred message's next
    /// attempt no earlier. None: the usual backoff.
    pub retry_after: Option<std::time::Duration>,
}

/// The stage of a transaction whose first command (RSET, or MAIL when no
/// RSET was due) found its reused session closed by the relay: nothing was
/// accepted (see [`TxResult::stale_session`]). Never logged: the
/// transaction is tried again on a fresh session, whose outcome is.
pub const STALE_SESSION: &str = "first command on a reused session";

impl TxResult {
    /// Every recipient gets the same outcome.
    pub fn all(n: usize, v: Verdict, r: Reply, stage: &'static str, reusable: bool) -> TxResult {
        TxResult {
            verdicts: vec![(v, r, stage); n],
            reusable,
            retry_after: None,
        }
    }

    /// The reused session turned out dead before the transaction began
    /// (its RSET, or its first MAIL, found the connection closed): nothing
    /// was accepted, so a fresh session may try again.
    pub fn stale_session(&self) -> bool {
        !self.reusable && self.verdicts.iter().all(|v| v.2 == STALE_SESSION)
    }
}

/// A way to deliver through one configured relay.
pub trait Transport: Send + Sync {
    /// Open a session (connect, secure, authenticate as configured).
    fn open(&self, cfg: &Config) -> Result<Box<dyn Session>, ConnectError>;
}

/// An open session with a relay.
pub trait Session: Send {
    /// Where the session goes, for logs (`host[ip]:port`).
    fn label(&self) -> &str;
    /// Run one transaction. Never fails as a whole: every recipient gets a
    /// verdict.
    fn send(&mut self, tx: &Transaction<'_>) -> TxResult;
    /// Messages sent over this session so far.
    fn messages(&self) -> usize;
    /// False when the connection is known to be unusable.
    fn is_healthy(&self) -> bool;
    /// Close politely.
    fn quit(self: Box<Self>);
}
