//! What every HTTPS API transport shares (`mailgun`, `ses`, `graph`): the
//! [`Transport`] and [`Session`] over an [`Api`] (one provider's request
//! and answer format), the size limit, and the mapping of HTTP answers to
//! recipient verdicts.
//!
//! Opening a session checks that the API's port answers (a TCP connect:
//! otherwise the next relay is tried, as for SMTP) and reads the relay's
//! secret once (a missing or
//! unreadable secret defers, like a failed SMTP AUTH); with
//! `[relay.oauth2]` (Graph) the secret is the access token of
//! `deliver::oauth2`, taken again before each request (the cache hands
//! back the same one until it nears expiry; a failed fetch defers, naming
//! the cause), and a cached token refused with 401 is replaced by a fresh
//! one and the request sent once more. Each request is one
//! HTTPS connection (`http`). Each transaction plans the message's
//! wire form (the bytes SMTP would send, 8-bit allowed: the APIs take MIME
//! as it is), lets the provider check it and add header lines before it
//! ([`Api::prepare`]; Graph's recipient rules), refuses a message over the
//! provider's documented limit as a
//! permanent failure, then sends one request per group of at most
//! `Api::max_rcpts` recipients. The answer decides every recipient of the
//! request alike:
//!
//! * 2xx: sent; the provider's message id goes into the reply (and so into
//!   the log line).
//! * 429 and 5xx: deferred; `Retry-After` becomes [`TxResult::retry_after`]
//!   (the runner schedules the next attempt no earlier).
//! * 401 and 403 (Graph: and 404, no such mailbox): deferred, and the
//!   relay is recorded as failing with a credentials error in the event
//!   log, which `postern status` shows.
//! * any other 4xx: bounced, with the API's error text (escaped, shortened)
//!   in the reply and so in the DSN — except 408 (request timeout), which
//!   is deferred.
//! * anything else (1xx, 3xx: these APIs never send them; a redirect means
//!   a wrong `url`, not a bad message) and no answer at all (connect, TLS,
//!   timeout): deferred.
//!
//! Opening a session also records the provider's limit as the relay's
//! size (`spool::relay_limits`), so that submission refuses a message the
//! API would refuse, as it does with an SMTP relay's `SIZE`.
//!
//! Replies are dressed as SMTP replies (250, 451, 454, 554 with an enhanced
//! code) so that the runner, the log and the DSN treat them as they treat a
//! relay's; the text names the provider and the HTTP status.

use super::http::{self, Client, Response};
use super::smtp::conn::TlsParameters;
use super::smtp::wire::{self, WirePlan};
use super::transport::{ConnectError, Session, Transaction, Transport, TxRcpt, TxResult};
use super::{Reply, Verdict};
use crate::config::{Config, Relay};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest API error text kept in a reply.
const MAX_ERROR_TEXT: usize = 300;

/// One provider's request and answer format.
pub trait Api: Send + Sync {
    /// The provider's name for messages (`Mailgun`).
    fn provider(&self) -> &'static str;
    /// The documented size limit in bytes, and how it is counted (the
    /// size of the MIME message, or of what the request carries).
    fn max_size(&self, mime_len: u64) -> (u64, u64);
    /// The largest MIME message the limit allows (what the submission
    /// path's size check uses, as an SMTP relay's SIZE).
    fn max_mime(&self) -> u64;
    /// Most recipients in one request.
    fn max_rcpts(&self) -> usize;
    /// Before `tx` is sent: header lines to put before the message's first
    /// (part of the MIME message, counted in its size; Graph's `Bcc:`), or
    /// a verdict with its reply for every recipient (nothing is sent).
    /// Mailgun and SES add nothing.
    fn prepare(
        &self,
        _tx: &Transaction<'_>,
        _plan: &WirePlan,
    ) -> Result<Vec<u8>, (Verdict, Reply)> {
        Ok(Vec::new())
    }
    /// Send `tx`'s message (after `prefix`, from [`Api::prepare`]) to
    /// `rcpts` with `secret`: one request.
    fn send(
        &self,
        client: &Client,
        secret: &str,
        tx: &Transaction<'_>,
        rcpts: &[TxRcpt],
        plan: &WirePlan,
        prefix: &[u8],
    ) -> Result<Response, String>;
    /// `postern check`: one authenticated request that sends nothing (the
    /// send endpoint with an empty body: the API checks the credentials,
    /// then refuses the empty request).
    fn probe(&self, client: &Client, secret: &str) -> Result<Response, String>;
    /// The provider's message id in a 2xx answer.
    fn message_id(&self, resp: &Response) -> Option<String>;
    /// The provider's error text in an error answer.
    fn error_text(&self, resp: &Response) -> String;
    /// What the reply calls [`Api::message_id`] (`id`; Graph's is the
    /// `request-id` of the answer: Graph returns no message id).
    fn id_label(&self) -> &'static str {
        "id"
    }
    /// Statuses that mean the relay's credentials or settings are wrong,
    /// not the message: deferred with an alert in `postern status`.
    fn refuses_credentials(&self, status: u16) -> bool {
        matches!(status, 401 | 403)
    }
    /// What to check when [`Api::refuses_credentials`].
    fn credentials_hint(&self) -> &'static str {
        "check username and password_file"
    }
    /// `postern check`: the provider's own verdict and line for the probe's
    /// answer (`status`, escaped `text`), when it differs from the common
    /// one.
    fn check_answer(&self, _status: u16, _text: &str) -> Option<(Option<bool>, String)> {
        None
    }
}

/// The secret an API request carries: the relay's `[relay.oauth2]` access
/// token (a cached one unless `fresh`; true with it when it came from a
/// cache), else the `password_file` / `password_command` secret. Err: why,
/// in one line (an OAuth2 error names its cause, `invalid_client`,
/// `AADSTS…`).
pub fn secret(spool_dir: &Path, relay: &Relay, fresh: bool) -> Result<(String, bool), String> {
    if relay.oauth2.is_some() {
        let t = super::oauth2::token(spool_dir, relay, fresh)?;
        return Ok((t.access_token, t.cached));
    }
    match super::credentials::secret(relay) {
        Ok(Some(s)) => Ok((s, false)),
        Ok(None) => Err("no secret configured".into()),
        Err(e) => Err(e.message().to_string()),
    }
}

/// `postern check` of an HTTPS relay, after its TLS handshake was
/// reported: the secret, then the provider's [`Api::probe`] (`api`: from
/// `relays::api_provider`; None: not an HTTPS relay). The verdict (None: a
/// warning) and one line.
pub fn check(
    cfg: &Config,
    relay: &Relay,
    api: Option<std::sync::Arc<dyn Api>>,
) -> (Option<bool>, String) {
    let Some(api) = api else {
        return (Some(false), "not an HTTPS relay".into());
    };
    let tls = match super::smtp::session::tls_parameters(relay) {
        Ok(t) => t,
        Err(e) => return (Some(false), e.to_string()),
    };
    let (secret, _) = match secret(&cfg.spool_dir, relay, false) {
        Ok(s) => s,
        Err(e) => return (Some(false), e),
    };
    let p = api.provider();
    let resp = match api.probe(&Client::new(cfg, &tls), &secret) {
        Ok(r) => r,
        Err(e) => return (Some(false), format!("no answer from the {p} API: {e}")),
    };
    let s = resp.status;
    let text = shorten(&crate::escape::field(api.error_text(&resp).trim()), 200);
    if let Some(own) = api.check_answer(s, &text) {
        return own;
    }
    match s {
        401 | 403 => (
            Some(false),
            format!(
                "{p} refused the credentials (HTTP {s}): {text}; {}",
                api.credentials_hint()
            ),
        ),
        404 => (
            Some(false),
            format!("HTTP 404 from {p}: {text}; check domain, region and url"),
        ),
        429 | 500..=599 => (None, format!("{p} is busy (HTTP {s}): {text}")),
        200..=299 | 400..=499 => (
            Some(true),
            format!(
                "{p} accepted the credentials (HTTP {s} to an empty request: {text}; nothing sent)"
            ),
        ),
        _ => (Some(false), format!("unexpected HTTP {s} from {p}: {text}")),
    }
}

/// An HTTPS API relay: its TLS parameters (built once) and its provider.
pub struct ApiTransport {
    relay: Relay,
    tls: TlsParameters,
    api: std::sync::Arc<dyn Api>,
}

impl ApiTransport {
    /// The transport for `relay` through `api`. Fails when the TLS
    /// parameters cannot be built (unreadable `ca_file`, bad client
    /// certificate).
    pub fn new(relay: &Relay, api: std::sync::Arc<dyn Api>) -> Result<ApiTransport, ConnectError> {
        Ok(ApiTransport {
            relay: relay.clone(),
            tls: super::smtp::session::tls_parameters(relay)?,
            api,
        })
    }
}

impl Transport for ApiTransport {
    fn open(&self, cfg: &Config) -> Result<Box<dyn Session>, ConnectError> {
        // The API's port must answer, or the next relay is tried (and this
        // one skipped for a while), as for an SMTP relay that cannot be
        // reached: a TCP connect, closed at once.
        let host = self.relay.host.trim_matches(['[', ']']);
        match http::connect(host, self.relay.port, cfg.smtp.connect_timeout) {
            Ok(tcp) => drop(tcp),
            Err(http::ConnectFailure::Dns(e)) => return Err(ConnectError::Dns(e)),
            Err(http::ConnectFailure::Unreachable(e)) => {
                return Err(ConnectError::Unreachable(e));
            }
        }
        // A token the endpoint refuses is a failed authentication, as for
        // SMTP; an unreadable secret file is our side.
        let (secret, cached) = match secret(&cfg.spool_dir, &self.relay, false) {
            Ok(s) => s,
            Err(e) if self.relay.oauth2.is_some() => return Err(ConnectError::Auth(e)),
            Err(e) => return Err(ConnectError::Local(e)),
        };
        // Submission refuses what the API would refuse, as with SIZE.
        super::smtp::session::learn_size(cfg, &self.relay, Some(self.api.max_mime()));
        Ok(Box::new(ApiSession {
            label: self.relay.label(),
            client: Client::new(cfg, &self.tls),
            api: std::sync::Arc::clone(&self.api),
            secret,
            cached,
            oauth2: self
                .relay
                .oauth2
                .is_some()
                .then(|| (cfg.spool_dir.clone(), self.relay.clone())),
            messages: 0,
            healthy: true,
        }))
    }
}

/// A session with an HTTPS API: the client (a connection per request)
/// and the secret.
pub struct ApiSession {
    label: String,
    client: Client,
    api: std::sync::Arc<dyn Api>,
    secret: String,
    /// The secret is an OAuth2 token from a cache (worth one refresh when
    /// refused with 401).
    cached: bool,
    /// `[relay.oauth2]`: where each request takes its token from (the
    /// cache hands back the same token until it is about to expire).
    oauth2: Option<(PathBuf, Relay)>,
    messages: usize,
    healthy: bool,
}

/// What one answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Sent(Reply),
    /// 408, 429, 5xx, 1xx, 3xx; the delay the API asked for.
    Deferred(Reply, Option<Duration>),
    /// 401, 403 (and what [`Api::refuses_credentials`] adds): deferred,
    /// and the relay's credentials are refused.
    Credentials(Reply),
    /// Any other 4xx.
    Bounced(Reply),
}

/// Map an answer of `provider` to an outcome.
pub fn classify(api: &dyn Api, resp: &Response) -> Outcome {
    let p = api.provider();
    let s = resp.status;
    let text = || {
        let t = api.error_text(resp);
        let t = crate::escape::field(t.trim()).into_owned();
        if t.is_empty() {
            "(no error text)".to_string()
        } else {
            shorten(&t, MAX_ERROR_TEXT)
        }
    };
    match s {
        200..=299 => {
            let id = api
                .message_id(resp)
                .map(|i| shorten(&crate::escape::field(&i), 200))
                .unwrap_or_else(|| "(none given)".into());
            Outcome::Sent(Reply {
                code: 250,
                text: format!(
                    "2.0.0 {p} accepted the message (HTTP {s}), {} {id}",
                    api.id_label()
                ),
            })
        }
        _ if api.refuses_credentials(s) => Outcome::Credentials(Reply {
            code: 454,
            text: format!(
                "4.7.8 {p} refused the credentials (HTTP {s}): {}; {}",
                text(),
                api.credentials_hint()
            ),
        }),
        400..=499 if s != 408 && s != 429 => Outcome::Bounced(Reply {
            code: 554,
            text: format!("5.0.0 {p} refused the message (HTTP {s}): {}", text()),
        }),
        _ => {
            let wait = http::retry_after(resp.retry_after.as_deref(), crate::clock::now());
            let asked = match wait {
                Some(d) => format!(", retry after {}s", d.as_secs()),
                None => String::new(),
            };
            Outcome::Deferred(
                Reply {
                    code: 451,
                    text: format!("4.3.0 {p} answered HTTP {s}{asked}: {}", text()),
                },
                wait,
            )
        }
    }
}

/// `s` cut to at most `max` bytes (at a character boundary), with `...`.
fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

impl ApiSession {
    /// With `[relay.oauth2]`: the current token (a fresh one when `fresh`)
    /// as the secret. Err: the reply deferring the request; the relay is
    /// recorded as failing with the cause.
    fn token(&mut self, fresh: bool) -> Result<(), Reply> {
        let Some((spool_dir, relay)) = &self.oauth2 else {
            return Ok(());
        };
        match secret(spool_dir, relay, fresh) {
            Ok((s, cached)) => {
                (self.secret, self.cached) = (s, cached);
                Ok(())
            }
            Err(e) => {
                let r = Reply {
                    code: 454,
                    text: format!("4.7.8 {e}"),
                };
                log::warn!("relay {}: {r}", self.label);
                crate::spool::event_log::record_relay(&self.label, Some(&r.to_string()));
                self.healthy = false;
                Err(r)
            }
        }
    }

    /// Send to one group of recipients; the verdict for all of them.
    fn send_group(
        &mut self,
        tx: &Transaction<'_>,
        rcpts: &[TxRcpt],
        plan: &WirePlan,
        prefix: &[u8],
    ) -> (Verdict, Reply, Option<Duration>) {
        let p = self.api.provider();
        if let Err(r) = self.token(false) {
            return (Verdict::Deferred, r, None);
        }
        let mut resp = self
            .api
            .send(&self.client, &self.secret, tx, rcpts, plan, prefix);
        // A cached OAuth2 token refused: one fresh token, one more request
        // (as SMTP does after a 535).
        if self.cached && resp.as_ref().is_ok_and(|r| r.status == 401) {
            log::info!(
                "{p} API at {} refused the cached OAuth2 token (HTTP 401): fetching a new one",
                self.label
            );
            if let Err(r) = self.token(true) {
                return (Verdict::Deferred, r, None);
            }
            resp = self
                .api
                .send(&self.client, &self.secret, tx, rcpts, plan, prefix);
        }
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                self.healthy = false;
                let reply = Reply::local(format!("{p} API at {}: {e}", self.label));
                return (Verdict::Deferred, reply, None);
            }
        };
        match classify(self.api.as_ref(), &resp) {
            Outcome::Sent(r) => {
                self.messages += 1;
                (Verdict::Sent, r, None)
            }
            Outcome::Deferred(r, wait) => (Verdict::Deferred, r, wait),
            Outcome::Credentials(r) => {
                log::warn!("relay {}: {r}", self.label);
                crate::spool::event_log::record_relay(&self.label, Some(&r.to_string()));
                self.healthy = false;
                (Verdict::Deferred, r, None)
            }
            Outcome::Bounced(r) => (Verdict::Bounced, r, None),
        }
    }
}

impl Session for ApiSession {
    fn label(&self) -> &str {
        &self.label
    }

    fn send(&mut self, tx: &Transaction<'_>) -> TxResult {
        let n = tx.rcpts.len();
        let opts = wire::WireOptions { eight_bit_ok: true };
        let plan = match wire::plan(tx.file, tx.start, tx.len, opts) {
            Ok(p) => p,
            Err(e) => {
                let reply = Reply::local(format!("cannot read the queue file: {e}"));
                return TxResult::all(n, Verdict::Deferred, reply, "", true);
            }
        };
        let prefix = match self.api.prepare(tx, &plan) {
            Ok(p) => p,
            Err((v, reply)) => return TxResult::all(n, v, reply, "", true),
        };
        let (size, limit) = self
            .api
            .max_size(http::mime_len(&plan) + prefix.len() as u64);
        if size > limit {
            let reply = Reply {
                code: 552,
                text: format!(
                    "5.3.4 message size {size} exceeds the limit of the {} API ({limit} bytes)",
                    self.api.provider()
                ),
            };
            return TxResult::all(n, Verdict::Bounced, reply, "", true);
        }
        let mut res = TxResult {
            verdicts: Vec::with_capacity(n),
            reusable: true,
            retry_after: None,
        };
        for group in tx.rcpts.chunks(self.api.max_rcpts().max(1)) {
            let (v, reply, wait) = self.send_group(tx, group, &plan, &prefix);
            res.retry_after = res.retry_after.max(wait);
            res.verdicts
                .extend(std::iter::repeat_n((v, reply, ""), group.len()));
        }
        res.reusable = self.healthy;
        res
    }

    fn messages(&self) -> usize {
        self.messages
    }

    fn is_healthy(&self) -> bool {
        self.healthy
    }

    fn quit(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl Api for Fake {
        fn provider(&self) -> &'static str {
            "Fake"
        }
        fn max_size(&self, m: u64) -> (u64, u64) {
            (m, 10)
        }
        fn max_mime(&self) -> u64 {
            10
        }
        fn max_rcpts(&self) -> usize {
            2
        }
        fn send(
            &self,
            _: &Client,
            _: &str,
            _: &Transaction<'_>,
            _: &[TxRcpt],
            _: &WirePlan,
            _: &[u8],
        ) -> Result<Response, String> {
            Err("unused".into())
        }
        fn probe(&self, _: &Client, _: &str) -> Result<Response, String> {
            Err("unused".into())
        }
        fn message_id(&self, r: &Response) -> Option<String> {
            Some(r.body.clone())
        }
        fn error_text(&self, r: &Response) -> String {
            r.body.clone()
        }
    }

    fn resp(status: u16, body: &str, retry: Option<&str>) -> Response {
        Response {
            status,
            retry_after: retry.map(str::to_string),
            body: body.into(),
            headers: vec![],
        }
    }

    #[test]
    fn answers_map_to_verdicts() {
        let Outcome::Sent(r) = classify(&Fake, &resp(200, "<id@x>", None)) else {
            panic!()
        };
        assert!(r.text.contains("id <id@x>"), "{r}");
        let Outcome::Deferred(r, w) = classify(&Fake, &resp(429, "slow", Some("30"))) else {
            panic!()
        };
        assert_eq!(w, Some(Duration::from_secs(30)));
        assert_eq!(Verdict::from_code(r.code), Verdict::Deferred);
        assert!(matches!(
            classify(&Fake, &resp(503, "", None)),
            Outcome::Deferred(_, None)
        ));
        assert!(matches!(
            classify(&Fake, &resp(401, "no", None)),
            Outcome::Credentials(_)
        ));
        assert!(matches!(
            classify(&Fake, &resp(403, "no", None)),
            Outcome::Credentials(_)
        ));
        let Outcome::Bounced(r) = classify(&Fake, &resp(400, "bad\r\nthing", None)) else {
            panic!()
        };
        assert_eq!(r.enhanced(), "5.0.0");
        assert!(!r.text.contains('\n'), "{r}");
        assert!(matches!(
            classify(&Fake, &resp(302, "", None)),
            Outcome::Deferred(..)
        ));
        assert!(matches!(
            classify(&Fake, &resp(408, "", None)),
            Outcome::Deferred(..)
        ));
        let long = "x".repeat(1000);
        let Outcome::Bounced(r) = classify(&Fake, &resp(422, &long, None)) else {
            panic!()
        };
        assert!(r.text.len() < 400);
    }
}
