//! Aggregation: counts per window (1h, 24h, 7d, all), delivery delay
//! percentiles, per-relay records and the queue now, from parsed events and
//! a queue listing. Pure: no I/O.

use super::events::{Event, EventKind, Events};
use crate::mailq::{self, Item};
use std::collections::BTreeMap;

/// Delivery delay statistics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delay {
    /// Number of `sent` events.
    pub count: u64,
    /// Sum of delays (seconds).
    pub sum: f64,
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl Delay {
    fn from(mut v: Vec<f64>) -> Delay {
        v.sort_by(f64::total_cmp);
        Delay {
            count: v.len() as u64,
            sum: v.iter().sum::<f64>() + 0.0, // never -0
            p50: percentile(&v, 0.5),
            p95: percentile(&v, 0.95),
            max: v.last().copied(),
        }
    }
}

/// Counts over one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// `1h`, `24h`, `7d` or `all`.
    pub name: &'static str,
    /// Length in seconds (None: the whole retained log).
    pub seconds: Option<u64>,
    /// Messages accepted.
    pub accepted: u64,
    /// Messages held by the outbound guard.
    pub held: u64,
    /// Recipients sent.
    pub sent: u64,
    /// Recipient deferrals.
    pub deferred: u64,
    /// Recipients bounced.
    pub bounced: u64,
    /// Messages removed from the queue.
    pub removed: u64,
    /// Delays of the sent recipients.
    pub delay: Delay,
}

/// One relay's record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RelayStats {
    /// `host:port`.
    pub relay: String,
    /// Recipients sent.
    pub sent: u64,
    /// Recipient deferrals.
    pub deferred: u64,
    /// Recipients bounced.
    pub bounced: u64,
    /// Sessions that could not be set up.
    pub connect_failures: u64,
    /// Time of the last success (a sent recipient or a session set up).
    pub last_success: Option<f64>,
    /// Time and text of the last failure (deferral, bounce or connect).
    pub last_error: Option<(f64, String)>,
    /// Time and text of the last session that could not be set up (the
    /// relay unreachable, TLS or AUTH failing), as opposed to a refused
    /// recipient.
    pub last_connect_error: Option<(f64, String)>,
}

impl RelayStats {
    /// sent / (sent + deferred + bounced + connection failures).
    pub fn success_ratio(&self) -> Option<f64> {
        let n = self.sent + self.deferred + self.bounced + self.connect_failures;
        (n > 0).then(|| self.sent as f64 / n as f64)
    }
}

/// What is in the queue now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStats {
    /// Every message (incoming included).
    pub messages: u64,
    /// Not tried yet.
    pub active: u64,
    /// Tried and waiting for a retry.
    pub deferred: u64,
    /// On hold.
    pub hold: u64,
    /// In maildrop, not yet picked up.
    pub incoming: u64,
    /// Bytes of the picked-up messages.
    pub bytes: u64,
    /// Age of the oldest message (seconds).
    pub oldest_age: Option<f64>,
}

impl QueueStats {
    /// From a queue listing.
    pub fn from_items(items: &[Item], now: f64) -> QueueStats {
        let mut q = QueueStats::default();
        for it in items {
            q.messages += 1;
            let arrival = match it {
                Item::Incoming(id) => {
                    q.incoming += 1;
                    crate::spool::id_micros(id).map(|m| m as f64 / 1e6)
                }
                Item::Queued(st) => {
                    q.bytes += st.size;
                    match mailq::queue_name(st) {
                        "hold" => q.hold += 1,
                        "active" => q.active += 1,
                        _ => q.deferred += 1,
                    }
                    Some(st.arrival)
                }
            };
            if let Some(a) = arrival {
                let age = (now - a).max(0.0);
                q.oldest_age = Some(q.oldest_age.map_or(age, |o: f64| o.max(age)));
            }
        }
        q
    }
}

/// Everything `postern stats` reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The time the numbers refer to.
    pub now: f64,
    /// The oldest retained event.
    pub since: Option<f64>,
    /// 1h, 24h, 7d, all.
    pub windows: Vec<Window>,
    /// Per relay, sorted by name.
    pub relays: Vec<RelayStats>,
    /// The queue now.
    pub queue: QueueStats,
    /// A daemon holds the run lock.
    pub daemon_running: bool,
    /// Lines of the log that did not parse.
    pub ignored_lines: u64,
    /// Time of the last sent recipient.
    pub last_sent: Option<f64>,
    /// Per submitter (retained log), by uid.
    pub users: Vec<UserStats>,
}

/// One submitter's record in the retained log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserStats {
    /// The submitting uid.
    pub uid: u32,
    /// Its login name, when it has one.
    pub name: Option<String>,
    /// Messages accepted.
    pub accepted: u64,
    /// Messages held by the outbound guard.
    pub held: u64,
}

/// The relay key of a session label: `host[ip]:port` → `host:port`.
pub fn relay_key(label: &str) -> String {
    match (label.find('['), label.rfind(']')) {
        (Some(a), Some(b)) if a < b => format!("{}{}", &label[..a], &label[b + 1..]),
        _ => label.to_string(),
    }
}

/// The windows reported, shortest first (None: the whole retained log).
const WINDOWS: [(&str, Option<u64>); 4] = [
    ("1h", Some(3600)),
    ("24h", Some(86_400)),
    ("7d", Some(7 * 86_400)),
    ("all", None),
];

/// Compute the summary of `events` at `now` for a queue listing `items`.
pub fn summarize(events: &Events, items: &[Item], now: f64, daemon_running: bool) -> Summary {
    let mut windows: Vec<Window> = WINDOWS
        .iter()
        .map(|(name, seconds)| Window {
            name,
            seconds: *seconds,
            ..Default::default()
        })
        .collect();
    let mut delays: Vec<Vec<f64>> = vec![Vec::new(); WINDOWS.len()];
    let mut relays: BTreeMap<String, RelayStats> = BTreeMap::new();
    let mut last_sent: Option<f64> = None;
    let mut users: BTreeMap<u32, UserStats> = BTreeMap::new();
    for ev in &events.events {
        if matches!(ev.kind, EventKind::Accepted | EventKind::Held)
            && let Some(uid) = ev.get("uid").and_then(|u| u.parse::<u32>().ok())
        {
            let u = users.entry(uid).or_insert_with(|| UserStats {
                uid,
                ..Default::default()
            });
            if ev.kind == EventKind::Held {
                u.held += 1;
            } else {
                u.accepted += 1;
            }
        }
        count_in_windows(ev, now, &mut windows, &mut delays);
        if let Some(r) = relay_of(ev, &mut relays) {
            record_relay_event(ev, r, &mut last_sent);
        }
    }
    for (w, d) in windows.iter_mut().zip(delays) {
        w.delay = Delay::from(d);
    }
    Summary {
        now,
        since: events.events.iter().map(|e| e.time).min_by(f64::total_cmp),
        windows,
        relays: relays.into_values().collect(),
        queue: QueueStats::from_items(items, now),
        daemon_running,
        ignored_lines: events.ignored,
        last_sent,
        users: users
            .into_values()
            .map(|mut u| {
                u.name = crate::guard::user_name(u.uid);
                u
            })
            .collect(),
    }
}

/// Count `ev` in every window it falls in (`delays[i]` collects the sent
/// delays of `windows[i]`).
fn count_in_windows(ev: &Event, now: f64, windows: &mut [Window], delays: &mut [Vec<f64>]) {
    for (w, d) in windows.iter_mut().zip(delays.iter_mut()) {
        if let Some(s) = w.seconds
            && (ev.time < now - s as f64 || ev.time > now)
        {
            continue;
        }
        match ev.kind {
            EventKind::Accepted => w.accepted += 1,
            EventKind::Held => w.held += 1,
            EventKind::Sent => {
                w.sent += 1;
                if let Some(v) = ev.num("delay") {
                    d.push(v);
                }
            }
            EventKind::Deferred => w.deferred += 1,
            EventKind::Bounced => w.bounced += 1,
            EventKind::Removed => w.removed += 1,
            EventKind::RelayOk | EventKind::RelayError => {}
        }
    }
}

/// The record of the relay `ev` names (created on first sight); None when
/// it names none.
fn relay_of<'a>(
    ev: &Event,
    relays: &'a mut BTreeMap<String, RelayStats>,
) -> Option<&'a mut RelayStats> {
    let relay = match ev.get("relay") {
        Some(r) if r != "none" && !r.is_empty() => relay_key(r),
        _ => return None,
    };
    Some(relays.entry(relay.clone()).or_insert_with(|| RelayStats {
        relay,
        ..Default::default()
    }))
}

/// Update relay `r` (and the time of the last sent recipient) with `ev`;
/// the newest event wins each "last" field.
fn record_relay_event(ev: &Event, r: &mut RelayStats, last_sent: &mut Option<f64>) {
    let newer = |t: Option<f64>| t.is_none_or(|t| ev.time >= t);
    match ev.kind {
        EventKind::Sent => {
            r.sent += 1;
            if newer(r.last_success) {
                r.last_success = Some(ev.time);
            }
            if newer(*last_sent) {
                *last_sent = Some(ev.time);
            }
        }
        EventKind::RelayOk => {
            if newer(r.last_success) {
                r.last_success = Some(ev.time);
            }
        }
        EventKind::Deferred | EventKind::Bounced => {
            if ev.kind == EventKind::Deferred {
                r.deferred += 1;
            } else {
                r.bounced += 1;
            }
            if newer(r.last_error.as_ref().map(|e| e.0)) {
                r.last_error = Some((ev.time, ev.get("reply").unwrap_or("").to_string()));
            }
        }
        EventKind::RelayError => {
            r.connect_failures += 1;
            let e = ev.get("error").unwrap_or("").to_string();
            if newer(r.last_error.as_ref().map(|e| e.0)) {
                r.last_error = Some((ev.time, e.clone()));
            }
            if newer(r.last_connect_error.as_ref().map(|e| e.0)) {
                r.last_connect_error = Some((ev.time, e));
            }
        }
        EventKind::Accepted | EventKind::Held | EventKind::Removed => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.95), Some(4.0));
    }
}
