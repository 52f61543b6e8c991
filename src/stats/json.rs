//! `postern stats --json`: the summary as one JSON object (schema in the
//! [`super`] docs). The structs are the schema; serde_json writes them.
//! Floats keep the fixed-point text they always had: seconds with 3
//! decimals, ratios with 4 ([`Fixed`]).

use super::summary::{QueueStats, RelayStats, Summary, Window};
use serde::Serialize;

/// A float written with exactly `P` decimals (`0.200`, `100.000`), as a
/// JSON number; a value that is not finite is `null`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fixed<const P: usize>(pub f64);

impl<const P: usize> Serialize for Fixed<P> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.0.is_finite() {
            return s.serialize_none();
        }
        let raw = serde_json::value::RawValue::from_string(format!("{:.P$}", self.0))
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

/// Seconds as reported: 3 decimals.
pub type Secs = Fixed<3>;

fn secs3(v: Option<f64>) -> Option<Secs> {
    v.map(Fixed)
}

/// The top-level object.
#[derive(Serialize)]
struct SummaryJson<'a> {
    now: u64,
    since: Option<u64>,
    daemon_running: bool,
    ignored_lines: u64,
    windows: WindowsJson<'a>,
    queue: QueueJson,
    relays: Vec<RelayJson<'a>>,
    users: Vec<UserJson<'a>>,
}

/// One submitter: accepted, and held by the outbound guard.
#[derive(Serialize)]
struct UserJson<'a> {
    uid: u32,
    user: Option<&'a str>,
    accepted: u64,
    held: u64,
}

/// The windows as an object keyed by name, in their order.
struct WindowsJson<'a>(&'a [Window]);

impl Serialize for WindowsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for w in self.0 {
            m.serialize_entry(w.name, &WindowJson::from(w))?;
        }
        m.end()
    }
}

/// One window.
#[derive(Serialize)]
struct WindowJson {
    seconds: Option<u64>,
    accepted: u64,
    held: u64,
    sent: u64,
    deferred: u64,
    bounced: u64,
    removed: u64,
    delay_seconds: DelayJson,
}

/// Delivery delay statistics of one window.
#[derive(Serialize)]
struct DelayJson {
    count: u64,
    sum: Secs,
    p50: Option<Secs>,
    p95: Option<Secs>,
    max: Option<Secs>,
}

impl From<&Window> for WindowJson {
    fn from(w: &Window) -> WindowJson {
        WindowJson {
            seconds: w.seconds,
            accepted: w.accepted,
            held: w.held,
            sent: w.sent,
            deferred: w.deferred,
            bounced: w.bounced,
            removed: w.removed,
            delay_seconds: DelayJson {
                count: w.delay.count,
                sum: Fixed(w.delay.sum),
                p50: secs3(w.delay.p50),
                p95: secs3(w.delay.p95),
                max: secs3(w.delay.max),
            },
        }
    }
}

/// The queue now (also `postern status --json`'s `queue`).
#[derive(Serialize)]
pub struct QueueJson {
    messages: u64,
    active: u64,
    deferred: u64,
    hold: u64,
    incoming: u64,
    bytes: u64,
    oldest_age_seconds: Option<Secs>,
}

impl From<&QueueStats> for QueueJson {
    fn from(q: &QueueStats) -> QueueJson {
        QueueJson {
            messages: q.messages,
            active: q.active,
            deferred: q.deferred,
            hold: q.hold,
            incoming: q.incoming,
            bytes: q.bytes,
            oldest_age_seconds: secs3(q.oldest_age),
        }
    }
}

/// A relay's last failure (also used by `postern status --json`).
#[derive(Serialize)]
pub struct LastErrorJson<'a> {
    time: u64,
    error: &'a str,
}

impl LastErrorJson<'_> {
    /// From a `(time, text)` pair.
    pub fn from_pair(e: &Option<(f64, String)>) -> Option<LastErrorJson<'_>> {
        e.as_ref().map(|(t, e)| LastErrorJson {
            time: *t as u64,
            error: e,
        })
    }
}

/// One relay's record.
#[derive(Serialize)]
struct RelayJson<'a> {
    relay: &'a str,
    sent: u64,
    deferred: u64,
    bounced: u64,
    connect_failures: u64,
    success_ratio: Option<Fixed<4>>,
    last_success: Option<u64>,
    last_error: Option<LastErrorJson<'a>>,
}

impl<'a> From<&'a RelayStats> for RelayJson<'a> {
    fn from(r: &'a RelayStats) -> RelayJson<'a> {
        RelayJson {
            relay: &r.relay,
            sent: r.sent,
            deferred: r.deferred,
            bounced: r.bounced,
            connect_failures: r.connect_failures,
            success_ratio: r.success_ratio().map(Fixed),
            last_success: r.last_success.map(|t| t as u64),
            last_error: LastErrorJson::from_pair(&r.last_error),
        }
    }
}

/// The JSON object (schema in the module docs).
pub fn json(s: &Summary) -> String {
    crate::mailq::to_json(&SummaryJson {
        now: s.now as u64,
        since: s.since.map(|t| t as u64),
        daemon_running: s.daemon_running,
        ignored_lines: s.ignored_lines,
        windows: WindowsJson(&s.windows),
        queue: QueueJson::from(&s.queue),
        relays: s.relays.iter().map(RelayJson::from).collect(),
        users: s
            .users
            .iter()
            .map(|u| UserJson {
                uid: u.uid,
                user: u.name.as_deref(),
                accepted: u.accepted,
                held: u.held,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_text() {
        use crate::mailq::to_json;
        assert_eq!(to_json(&Fixed::<3>(0.1 + 0.2)), "0.300");
        assert_eq!(to_json(&Fixed::<4>(2.0 / 3.0)), "0.6667");
        assert_eq!(to_json(&Fixed::<3>(100.0)), "100.000");
        assert_eq!(to_json(&Fixed::<3>(f64::NAN)), "null");
    }
}
