//! Relay choice: which configured relay a message goes through, and the
//! sessions kept open to it.
//!
//! [`Relays`] is built once per configuration generation and shared by every
//! worker. It holds one transport per `[[relay]]` (built by [`transport`],
//! the one place that maps a relay's `kind` to an implementation), tries
//! the relays that serve the message's sender (`sender_relays`: the group
//! of a `senders` pattern, or the default group) in config order (failover
//! on a failed connect, inside that group only), skips a relay that
//! failed within `RELAY_DOWN_FOR`, and spaces messages to a relay with a
//! `rate_limit` (a token bucket).
//!
//! [`SessionCache`] is one worker's open session: reused across messages
//! while it is healthy, of the current generation, under
//! `smtp.max_messages_per_session` and to a relay of the next message's
//! group; closed after `SESSION_IDLE` without use.

use super::sender_relays::{self, Group};
use super::transport::{ConnectError, Session, Transaction, Transport, TxResult};
use super::{Reply, Verdict};
use crate::config::{Config, Relay, RelayKind};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a relay that could not be reached is skipped.
const RELAY_DOWN_FOR: Duration = Duration::from_secs(30);
/// A worker closes an idle session after this long.
const SESSION_IDLE: Duration = Duration::from_secs(5);

/// The transport for the relay at `idx`: the one match on `kind`.
pub fn transport(idx: usize, relay: &Relay) -> Result<Box<dyn Transport>, ConnectError> {
    match relay.kind {
        RelayKind::Smtp => Ok(Box::new(super::smtp::SmtpTransport::new(idx, relay)?)),
        RelayKind::Mailgun | RelayKind::Ses | RelayKind::Graph => {
            let Some(provider) = api_provider(relay) else {
                return Err(ConnectError::Local("no API endpoint configured".into()));
            };
            Ok(Box::new(super::api::ApiTransport::new(relay, provider)?))
        }
    }
}

/// The provider behind an HTTPS `kind` (None for SMTP): the other match on
/// `kind`, here beside [`transport`] so that the API providers and the
/// shared API transport (`api.rs`) need not name each other both ways.
pub fn api_provider(relay: &Relay) -> Option<std::sync::Arc<dyn super::api::Api>> {
    let api = relay.api.as_ref()?;
    let user = relay.username.as_deref().unwrap_or("api");
    Some(match relay.kind {
        RelayKind::Mailgun => std::sync::Arc::new(super::mailgun::Mailgun::new(api, user)),
        RelayKind::Ses => std::sync::Arc::new(super::ses::Ses::new(api, user)),
        RelayKind::Graph => std::sync::Arc::new(super::graph::Graph::new(api, user)),
        RelayKind::Smtp => return None,
    })
}

/// A token bucket: `per_minute` messages, burst of the same size.
struct RateLimit {
    per_minute: u32,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new(per_minute: u32) -> RateLimit {
        RateLimit {
            per_minute,
            tokens: f64::from(per_minute),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> Duration {
        let now = Instant::now();
        let rate = f64::from(self.per_minute) / 60.0;
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate)
            .min(f64::from(self.per_minute));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Duration::ZERO
        } else {
            let wait = (1.0 - self.tokens) / rate;
            self.tokens -= 1.0;
            Duration::from_secs_f64(wait)
        }
    }
}

/// The configured relays of one generation: transports, down-list and
/// rate limits.
pub struct Relays {
    generation: u64,
    max_messages_per_session: usize,
    relays: Vec<Relay>,
    transports: Vec<Result<Box<dyn Transport>, ConnectError>>,
    rate: Vec<Option<Mutex<RateLimit>>>,
    down: Mutex<HashMap<usize, (Instant, ConnectError)>>,
}

impl Relays {
    /// The relays of `cfg`, for configuration generation `generation`.
    pub fn new(cfg: &Config, generation: u64) -> Relays {
        Relays {
            generation,
            max_messages_per_session: cfg.smtp.max_messages_per_session,
            relays: cfg.relays.clone(),
            transports: cfg
                .relays
                .iter()
                .enumerate()
                .map(|(i, r)| transport(i, r))
                .collect(),
            rate: cfg
                .relays
                .iter()
                .map(|r| (r.rate_limit > 0).then(|| Mutex::new(RateLimit::new(r.rate_limit))))
                .collect(),
            down: Mutex::new(HashMap::new()),
        }
    }

    /// Forget which relays failed recently (an explicit flush means "the
    /// relay is back, try now").
    pub fn forget_failures(&self) {
        if let Ok(mut d) = self.down.lock() {
            d.clear();
        }
    }

    /// The down-list entry of relay `idx`, if it failed recently.
    fn recently_down(&self, idx: usize) -> Option<ConnectError> {
        let down = self.down.lock().ok()?;
        let (t, e) = down.get(&idx)?;
        (t.elapsed() < RELAY_DOWN_FOR).then(|| e.clone())
    }

    fn mark(&self, idx: usize, failure: Option<&ConnectError>) {
        if let Ok(mut down) = self.down.lock() {
            match failure {
                Some(e) => down.insert(idx, (Instant::now(), e.clone())),
                None => down.remove(&idx),
            };
        }
    }

    /// The group of relays serving `tx`'s sender (see `sender_relays`).
    pub fn group_for(&self, cfg: &Config, tx: &Transaction<'_>) -> Group {
        let bounce_to = if tx.sender.is_empty() {
            tx.rcpts
                .first()
                .map(|r| crate::address::rewrite::sender_on_wire(cfg, &r.original))
        } else {
            None
        };
        sender_relays::group(&self.relays, tx.sender, bounce_to.as_deref())
    }

    /// A new session with the first relay of `group`, in order, that is
    /// not down and accepts one. Returns the relay's index with it.
    fn open(
        &self,
        cfg: &Config,
        group: &Group,
        sender: &str,
    ) -> Result<(usize, Box<dyn Session>), ConnectError> {
        let mut last_err = if self.relays.is_empty() {
            ConnectError::Unreachable("no relay is configured ([[relay]] in postern.toml)".into())
        } else {
            ConnectError::Local(sender_relays::no_relay_reason(sender))
        };
        for &idx in &group.relays {
            let Some(relay) = self.relays.get(idx) else {
                continue;
            };
            if let Some(e) = self.recently_down(idx) {
                last_err = e;
                continue;
            }
            let transport = match &self.transports[idx] {
                Ok(t) => t,
                Err(e) => {
                    last_err = e.clone();
                    log::warn!("relay {}: {e}", relay.label());
                    continue;
                }
            };
            match transport.open(cfg) {
                Ok(s) => {
                    self.mark(idx, None);
                    crate::spool::event_log::record_relay(&relay.label(), None);
                    return Ok((idx, s));
                }
                Err(e) => {
                    log::warn!("relay {}: {e}", relay.label());
                    crate::spool::event_log::record_relay(&relay.label(), Some(&e.to_string()));
                    self.mark(idx, Some(&e));
                    last_err = e;
                }
            }
        }
        Err(last_err)
    }

    /// Wait as the rate limit of relay `idx` asks before its next message.
    fn throttle(&self, idx: usize, id: &str) {
        if let Some(Some(rl)) = self.rate.get(idx) {
            let wait = rl.lock().map(|mut r| r.take()).unwrap_or_default();
            if !wait.is_zero() {
                log::debug!("{id}: rate limit: waiting {:.1}s", wait.as_secs_f64());
                std::thread::sleep(wait);
            }
        }
    }
}

struct Cached {
    generation: u64,
    relay: usize,
    session: Box<dyn Session>,
    last_used: Instant,
}

/// One worker's session, kept open across messages.
#[derive(Default)]
pub struct SessionCache {
    current: Option<Cached>,
}

impl SessionCache {
    /// No session yet.
    pub fn new() -> SessionCache {
        SessionCache { current: None }
    }

    /// Close the session politely (QUIT), if one is open.
    pub fn close(&mut self) {
        if let Some(c) = self.current.take() {
            c.session.quit();
        }
    }

    /// Close the session if it has been idle too long.
    pub fn idle_check(&mut self) {
        if let Some(c) = &self.current
            && c.last_used.elapsed() > SESSION_IDLE
        {
            self.close();
        }
    }

    fn reusable(&self, relays: &Relays, group: &Group) -> bool {
        self.current.as_ref().is_some_and(|c| {
            c.generation == relays.generation
                && group.relays.contains(&c.relay)
                && c.session.is_healthy()
                && c.session.messages() < relays.max_messages_per_session
        })
    }

    /// A session with a relay of `group`, reusing the open one when it is
    /// healthy and to a relay of the group.
    fn session(
        &mut self,
        relays: &Relays,
        cfg: &Config,
        group: &Group,
        sender: &str,
    ) -> Result<&mut Cached, ConnectError> {
        if !self.reusable(relays, group) {
            self.close();
            let (relay, session) = relays.open(cfg, group, sender)?;
            self.current = Some(Cached {
                generation: relays.generation,
                relay,
                session,
                last_used: Instant::now(),
            });
        }
        match self.current.as_mut() {
            Some(c) => {
                c.last_used = Instant::now();
                Ok(c)
            }
            None => Err(ConnectError::Unreachable("no session".into())),
        }
    }

    /// Send `tx` (message `id`) through a relay: a reused or new session,
    /// the relay's rate limit, one reconnect when the reused session turns
    /// out closed. Returns the relay's label ("" when none could be
    /// reached) and one verdict per recipient.
    pub fn send(
        &mut self,
        relays: &Relays,
        cfg: &Config,
        id: &str,
        tx: &Transaction<'_>,
    ) -> (String, TxResult) {
        let n = tx.rcpts.len();
        let group = relays.group_for(cfg, tx);
        if sender_relays::per_sender(&relays.relays) {
            log::debug!(
                "{id}: relays {} ({})",
                group.labels(&relays.relays),
                crate::escape::field(&group.reason())
            );
        }
        let cached = match self.session(relays, cfg, &group, tx.sender) {
            Ok(c) => c,
            Err(e) => {
                let res =
                    TxResult::all(n, Verdict::Deferred, Reply::local(e.to_string()), "", true);
                return (String::new(), res);
            }
        };
        relays.throttle(cached.relay, id);
        let mut res = cached.session.send(tx);
        let mut label = cached.session.label().to_string();
        if res.stale_session() {
            // The relay closed the idle connection: reconnect once.
            log::debug!("{id}: {label}: the reused session was closed; reconnecting");
            self.current.take();
            match self.session(relays, cfg, &group, tx.sender) {
                Ok(fresh) => {
                    res = fresh.session.send(tx);
                    label = fresh.session.label().to_string();
                }
                Err(e) => {
                    res.verdicts = vec![(Verdict::Deferred, Reply::local(e.to_string()), ""); n];
                }
            }
        }
        if !res.reusable {
            self.current = None; // broken: dropped without QUIT
        }
        (label, res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_a_burst_then_spaces_messages() {
        let mut r = RateLimit::new(6);
        for _ in 0..6 {
            assert_eq!(r.take(), Duration::ZERO);
        }
        let wait = r.take();
        assert!(
            wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        let wait2 = r.take();
        assert!(
            wait2 > Duration::from_secs(19) && wait2 <= Duration::from_secs(20),
            "{wait2:?}"
        );
    }
}
