//! `postern status [--json]`: one screen saying whether mail flows, for
//! people and for monitoring checks.
//!
//! Reads only what is already on disk: the run lock (is a daemon there),
//! `state/` (world-readable), the maildrop names and the event log (root
//! and group postern; without it the relay and last-delivery lines say
//! "unknown"). It never connects to a relay: `postern check` does that.
//!
//! Mail is **stuck** — exit status 1 — when any of these holds (messages on
//! hold are the administrator's choice and never count):
//! 1. a message with a deferred recipient arrived more than 1 hour ago;
//! 2. a message has been queued for more than half of `queue.max_lifetime`;
//! 3. no daemon is running and a message has waited more than 5 minutes
//!    (mail that nobody will deliver);
//! 4. the outbound guard holds mail: a submitter is over a limit in the
//!    current window and mail it held is still queued, or a storm of
//!    identical messages is being held
//!    (`over_limits`, `storms`; from `<spool>/guard`).
//!
//! Otherwise the exit status is 0. Errors (configuration, unreadable spool)
//! exit with their sysexits code as everywhere else.
//!
//! JSON, one object:
//! ```text
//! {"now": int, "healthy": bool, "problems": [str], "daemon_running": bool,
//!  "event_log_readable": bool, "last_delivery": int|null,
//!  "queue": {"messages": int, "active": int, "deferred": int, "hold": int,
//!            "incoming": int, "bytes": int, "oldest_age_seconds": float|null},
//!  "oldest_deferred": {"queue_id": str, "arrival_time": int,
//!       "age_seconds": float, "tries": int, "next_attempt": int|null,
//!       "recipient": str, "reason": str} | null,
//!  "relays": [{"relay": str, "state": "ok"|"failing"|"unknown",
//!              "last_success": int|null,
//!              "last_error": {"time": int, "error": str}|null}],
//!  "over_limits": [{"uid": int, "user": str|null, "held": int, "reason": str}],
//!  "storms": [{"id": str, "label": str, "count": int, "held": int, "since": int}],
//!  "bounces_capped": [{"address": str, "sent": int, "dropped": int}]}
//! ```
//! A relay is `ok` when its last success (a recipient sent or a session set
//! up) is newer than its last failed session, `failing` when a failed
//! session (connect, TLS, AUTH) is the newer, `unknown` with neither.

use crate::config::Config;
use crate::error::Result;
use crate::mailq::{self, Item};
use crate::spool::Spool;
use crate::spool::state::State;
use crate::stats::json::{Fixed, LastErrorJson, QueueJson, Secs};
use crate::stats::{self, QueueStats, RelayStats};
use serde::Serialize;
use std::fmt::Write as _;

/// Age after which a message with a deferred recipient counts as stuck.
pub const STUCK_DEFERRED_SECS: f64 = 3600.0;
/// How long queued mail may wait with no daemon running.
pub const NO_DAEMON_GRACE_SECS: f64 = 300.0;

/// What one relay looks like from the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayHealth {
    /// `host:port`.
    pub relay: String,
    /// `ok`, `failing` or `unknown`.
    pub state: &'static str,
    /// Last success.
    pub last_success: Option<f64>,
    /// Last failed session.
    pub last_error: Option<(f64, String)>,
}

/// The oldest message with a deferred recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct Deferred {
    /// Its state.
    pub state: State,
    /// The deferred recipient with the latest reply.
    pub recipient: String,
    /// That reply.
    pub reason: String,
}

/// The status report.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Time of the report.
    pub now: f64,
    /// A daemon holds the run lock.
    pub daemon_running: bool,
    /// The event log could be read.
    pub event_log_readable: bool,
    /// Last recipient sent.
    pub last_delivery: Option<f64>,
    /// The queue.
    pub queue: QueueStats,
    /// Oldest deferred message (not on hold).
    pub oldest_deferred: Option<Deferred>,
    /// Configured relays, in order.
    pub relays: Vec<RelayHealth>,
    /// Why mail is stuck (empty: healthy).
    pub problems: Vec<String>,
    /// Submitters over their limits in the current window.
    pub over_limits: Vec<UserOver>,
    /// Storms whose messages are being held.
    pub storms: Vec<StormView>,
    /// Addresses whose bounces the DSN cap dropped this hour (not a
    /// problem: the cap did its job).
    pub bounces_capped: Vec<BouncesCapped>,
}

/// Bounces to one address dropped by the DSN cap in the current hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BouncesCapped {
    /// The address bounces went to.
    pub address: String,
    /// Sent this hour.
    pub sent: u64,
    /// Dropped this hour.
    pub dropped: u64,
}

/// A submitter the outbound guard holds mail of.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserOver {
    /// The uid.
    pub uid: u32,
    /// The login name.
    pub user: Option<String>,
    /// Messages held in this window.
    pub held: u64,
    /// Why.
    pub reason: String,
}

/// A storm being collapsed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StormView {
    /// Storm id (`postern queue release --storm ID`).
    pub id: String,
    /// What is repeated.
    pub label: String,
    /// Identical messages seen.
    pub count: u64,
    /// Of those, held.
    pub held: u64,
    /// First seen (unix seconds).
    pub since: u64,
}

/// Add what the outbound guard holds to `s`: users over their limits and
/// active storms, each a problem (exit 1: someone must look).
pub fn add_guard(
    s: &mut Status,
    cfg: &Config,
    items: &[Item],
    g: &crate::spool::guard::GuardState,
) {
    for u in crate::guard::users_over(g, s.now) {
        // Released or deleted meanwhile: nothing waits for anyone.
        let queued = items.iter().any(|it| {
            matches!(it, Item::Queued(st) if st.held && st.uid == u.uid && !st.hold_reason.is_empty())
        });
        if !queued {
            continue;
        }
        let name = crate::guard::user_name(u.uid);
        s.problems.push(format!(
            "{} message(s) held: {}; postern queue list --held --user {}",
            u.held, u.reason, u.uid
        ));
        s.over_limits.push(UserOver {
            uid: u.uid,
            user: name,
            held: u.held,
            reason: u.reason.clone(),
        });
    }
    for d in g
        .dsn
        .iter()
        .filter(|d| d.dropped > 0 && s.now < d.start + crate::guard::USER_WINDOW)
    {
        s.bounces_capped.push(BouncesCapped {
            address: d.address.clone(),
            sent: d.sent,
            dropped: d.dropped,
        });
    }
    for t in crate::guard::active_storms(g, cfg, s.now) {
        s.problems.push(format!(
            "storm {}: {} identical messages {}, {} held; postern queue release --storm {}",
            t.id, t.count, t.label, t.held, t.id
        ));
        s.storms.push(StormView {
            id: t.id.clone(),
            label: t.label.clone(),
            count: t.count,
            held: t.held,
            since: t.first as u64,
        });
    }
}

fn relay_health(key: String, r: Option<&RelayStats>) -> RelayHealth {
    let last_success = r.and_then(|r| r.last_success);
    let last_error = r.and_then(|r| r.last_connect_error.clone());
    let state = match (last_success, &last_error) {
        (Some(s), Some((e, _))) if *e > s => "failing",
        (None, Some(_)) => "failing",
        (Some(_), _) => "ok",
        (None, None) => "unknown",
    };
    RelayHealth {
        relay: key,
        state,
        last_success,
        last_error,
    }
}

fn human(secs: f64) -> String {
    crate::clock::human_duration(crate::clock::secs(secs))
}

/// What one pass over the queue finds (messages on hold left out).
struct QueueScan {
    /// The oldest message with a deferred recipient.
    oldest: Option<Deferred>,
    /// Messages queued for more than half of `max_lifetime`.
    problems: Vec<String>,
    /// Arrival of the oldest waiting message, incoming included.
    oldest_waiting: Option<f64>,
}

fn scan_queue(cfg: &Config, items: &[Item], now: f64) -> QueueScan {
    let mut oldest: Option<Deferred> = None;
    let mut problems = Vec::new();
    let mut oldest_waiting: Option<f64> = None;
    let half_life = cfg.queue.max_lifetime.as_secs_f64() / 2.0;
    for it in items {
        let (arrival, st) = match it {
            Item::Queued(st) => (st.arrival, Some(st)),
            Item::Incoming(id) => (
                crate::spool::id_micros(id)
                    .map(|m| m as f64 / 1e6)
                    .unwrap_or(now),
                None,
            ),
        };
        if st.is_some_and(|s| s.held) {
            continue;
        }
        oldest_waiting = Some(oldest_waiting.map_or(arrival, |o: f64| o.min(arrival)));
        let Some(st) = st else { continue };
        if let Some(r) = st.last_deferral()
            && oldest.as_ref().is_none_or(|o| st.arrival < o.state.arrival)
        {
            oldest = Some(Deferred {
                state: st.clone(),
                recipient: r.address.clone(),
                reason: r.reply.clone(),
            });
        }
        let age = now - st.arrival;
        if half_life > 0.0 && age > half_life {
            problems.push(format!(
                "{} has been queued for {}, more than half of max_lifetime ({}): it bounces when that is reached",
                st.id,
                human(age),
                human(cfg.queue.max_lifetime.as_secs_f64())
            ));
        }
    }
    QueueScan {
        oldest,
        problems,
        oldest_waiting,
    }
}

/// Build the report.
pub fn assess(
    cfg: &Config,
    items: &[Item],
    events: Option<&stats::Events>,
    daemon_running: bool,
    now: f64,
) -> Status {
    let empty = stats::Events::default();
    let summary = stats::summarize(events.unwrap_or(&empty), items, now, daemon_running);
    let relays = cfg
        .relays
        .iter()
        .map(|r| {
            let key = r.label();
            let found = summary.relays.iter().find(|s| s.relay == key);
            relay_health(key, found)
        })
        .collect();
    let QueueScan {
        oldest,
        mut problems,
        oldest_waiting,
    } = scan_queue(cfg, items, now);
    if let Some(d) = &oldest {
        let age = now - d.state.arrival;
        if age > STUCK_DEFERRED_SECS {
            problems.insert(
                0,
                format!(
                    "{} has been deferred for {} ({}: {})",
                    d.state.id,
                    human(age),
                    d.recipient,
                    d.reason
                ),
            );
        }
    }
    if !daemon_running
        && let Some(a) = oldest_waiting
        && now - a > NO_DAEMON_GRACE_SECS
    {
        problems.push(format!(
            "no postern daemon is running and mail has waited {} (start postern.service, or run postern queue run)",
            human(now - a)
        ));
    }
    Status {
        now,
        daemon_running,
        event_log_readable: events.is_some(),
        last_delivery: summary.last_sent,
        queue: summary.queue,
        oldest_deferred: oldest,
        relays,
        problems,
        over_limits: Vec::new(),
        storms: Vec::new(),
        bounces_capped: Vec::new(),
    }
}

/// The JSON object (schema in the module docs).
#[derive(Serialize)]
struct StatusJson<'a> {
    now: u64,
    healthy: bool,
    problems: &'a [String],
    daemon_running: bool,
    event_log_readable: bool,
    last_delivery: Option<u64>,
    queue: QueueJson,
    oldest_deferred: Option<DeferredJson<'a>>,
    relays: Vec<RelayHealthJson<'a>>,
    over_limits: &'a [UserOver],
    storms: &'a [StormView],
    bounces_capped: &'a [BouncesCapped],
}

/// `oldest_deferred`.
#[derive(Serialize)]
struct DeferredJson<'a> {
    queue_id: &'a str,
    arrival_time: u64,
    age_seconds: Secs,
    tries: u32,
    next_attempt: Option<u64>,
    recipient: &'a str,
    reason: &'a str,
}

/// One configured relay.
#[derive(Serialize)]
struct RelayHealthJson<'a> {
    relay: &'a str,
    state: &'static str,
    last_success: Option<u64>,
    last_error: Option<LastErrorJson<'a>>,
}

/// The JSON object (schema in the module docs).
pub fn json(s: &Status) -> String {
    mailq::to_json(&StatusJson {
        now: s.now as u64,
        healthy: s.problems.is_empty(),
        problems: &s.problems,
        daemon_running: s.daemon_running,
        event_log_readable: s.event_log_readable,
        last_delivery: s.last_delivery.map(|t| t as u64),
        queue: QueueJson::from(&s.queue),
        oldest_deferred: s.oldest_deferred.as_ref().map(|d| DeferredJson {
            queue_id: &d.state.id,
            arrival_time: d.state.arrival as u64,
            age_seconds: Fixed((s.now - d.state.arrival).max(0.0)),
            tries: d.state.tries,
            next_attempt: (d.state.tries != 0).then_some(d.state.next as u64),
            recipient: &d.recipient,
            reason: &d.reason,
        }),
        relays: s
            .relays
            .iter()
            .map(|r| RelayHealthJson {
                relay: &r.relay,
                state: r.state,
                last_success: r.last_success.map(|t| t as u64),
                last_error: LastErrorJson::from_pair(&r.last_error),
            })
            .collect(),
        over_limits: &s.over_limits,
        storms: &s.storms,
        bounces_capped: &s.bounces_capped,
    })
}

fn when(now: f64, t: f64) -> String {
    format!(
        "{} ({} ago)",
        crate::clock::iso8601(crate::clock::from_unix_f64(t)),
        human(now - t)
    )
}

/// The one-screen text.
pub fn text(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "postern status: {}",
        if s.problems.is_empty() {
            "OK"
        } else {
            "MAIL IS STUCK"
        }
    );
    let _ = writeln!(
        o,
        "daemon:          {}",
        if s.daemon_running {
            "running"
        } else {
            "not running"
        }
    );
    let _ = writeln!(
        o,
        "last delivery:   {}",
        match (s.last_delivery, s.event_log_readable) {
            (Some(t), _) => when(s.now, t),
            (None, true) => "none in the event log".into(),
            (None, false) => "unknown (the event log is readable by root and group postern)".into(),
        }
    );
    let q = &s.queue;
    let _ = writeln!(
        o,
        "queue:           {} message(s): {} active, {} deferred, {} on hold, {} incoming{}",
        q.messages,
        q.active,
        q.deferred,
        q.hold,
        q.incoming,
        q.oldest_age
            .map(|a| format!("; oldest {} old", human(a)))
            .unwrap_or_default()
    );
    push_oldest_deferred(&mut o, s);
    push_relays(&mut o, s);
    for u in &s.over_limits {
        let who = u.user.clone().unwrap_or_else(|| format!("uid {}", u.uid));
        let _ = writeln!(
            o,
            "over limits:     {who} (uid {}): {} held ({})",
            u.uid, u.held, u.reason
        );
    }
    for d in &s.bounces_capped {
        let _ = writeln!(
            o,
            "bounce cap:      {}: {} sent, {} dropped this hour",
            d.address, d.sent, d.dropped
        );
    }
    for t in &s.storms {
        let _ = writeln!(
            o,
            "storm:           {}: {} identical, {} held, {}",
            t.id, t.count, t.held, t.label
        );
    }
    for p in &s.problems {
        let _ = writeln!(o, "problem:         {p}");
    }
    // Relay replies, recipients and reasons come from outside: no raw
    // control reaches a terminal.
    crate::escape::text(&o).into_owned()
}

/// The oldest deferred message and its latest reason.
fn push_oldest_deferred(o: &mut String, s: &Status) {
    match &s.oldest_deferred {
        Some(d) => {
            let next = if d.state.next > s.now {
                format!("next attempt in {}", human(d.state.next - s.now))
            } else {
                "next attempt due now".to_string()
            };
            let _ = writeln!(
                o,
                "oldest deferred: {}, {} old, {} tr{}, {next}",
                d.state.id,
                human(s.now - d.state.arrival),
                d.state.tries,
                if d.state.tries == 1 { "y" } else { "ies" }
            );
            let _ = writeln!(
                o,
                "                 {}: {}",
                crate::escape::field(&d.recipient),
                crate::escape::field(&d.reason)
            );
        }
        None => {
            let _ = writeln!(o, "oldest deferred: none");
        }
    }
}

/// One line per configured relay.
fn push_relays(o: &mut String, s: &Status) {
    if s.relays.is_empty() {
        let _ = writeln!(
            o,
            "relays:          none configured ([[relay]] in postern.toml)"
        );
    }
    for (i, r) in s.relays.iter().enumerate() {
        let head = if i == 0 { "relays:" } else { "" };
        let detail = match r.state {
            "ok" => format!(
                "ok, last success {} ago",
                human(s.now - r.last_success.unwrap_or(s.now))
            ),
            "failing" => match &r.last_error {
                Some((t, e)) => format!(
                    "FAILING {} ago: {}",
                    human(s.now - t),
                    crate::escape::field(e)
                ),
                None => "FAILING".into(),
            },
            _ if !s.event_log_readable => "unknown (event log not readable)".into(),
            _ => "unknown (nothing logged yet; postern check tests it)".into(),
        };
        let _ = writeln!(o, "{head:<17}{}  {detail}", r.relay);
    }
}

/// `postern status [--json]`: prints the report; 0 healthy, 1 stuck.
pub fn command(cfg: &Config, spool: &Spool, incoming: Vec<String>, json_out: bool) -> Result<u8> {
    let items = mailq::collect(spool, incoming);
    let events = match stats::read_events(spool) {
        Ok(e) => Some(e),
        Err(e) => {
            log::debug!("cannot read {}: {e}", spool.events().display());
            None
        }
    };
    let now = crate::clock::unix_f64(crate::clock::now());
    let mut s = assess(cfg, &items, events.as_ref(), spool.daemon_running(), now);
    add_guard(&mut s, cfg, &items, &crate::spool::guard::load(spool));
    if json_out {
        crate::stdout::line(format_args!("{}", json(&s)));
    } else {
        crate::stdout::text(format_args!("{}", text(&s)));
    }
    Ok(if s.problems.is_empty() { 0 } else { 1 })
}
