//! The event log and the metrics computed from it: `postern stats`
//! (text, `--json`, `--prometheus`) and the daemon's Prometheus textfile.
//!
//! Owns `events.log` in the spool. The queue runner appends one compact
//! line per event; nothing else writes it and nobody scrapes syslog. It is
//! bounded: past `stats.max_log_size` it is rotated to `events.log.1` (one
//! generation kept), and readers read `events.log.1` then `events.log`.
//! Writing never fails a delivery: errors are ignored.
//!
//! ```text
//! <unix-time> <event> <queue-id|-> <key=value>…      values percent-encoded
//! 1795956513.780 accepted 1K1D6V0JC6N9J9M size=2048 nrcpt=2
//! 1795956514.101 sent 1K1D6V0JC6N9J9M to=bob@example.org relay=smtp.example.com[192.0.2.1]:587 delay=0.321 reply=250%202.0.0%20ok
//! 1795956514.101 deferred … / bounced … (same fields)
//! 1795956514.200 removed 1K1D6V0JC6N9J9M age=0.420
//! 1795956514.000 relay-ok - relay=smtp.example.com:587
//! 1795956514.000 relay-error - relay=smtp.example.com:587 error=connect%20to%20…
//! ```
//! Reading trusts nothing: a line that does not parse (garbage, a torn
//! write, a line longer than 64 KiB, a final line without its newline) is
//! skipped and counted, never fatal.
//!
//! What the numbers mean: `accepted` counts messages, `sent`, `deferred`
//! and `bounced` count recipient attempts (one line per recipient per
//! attempt), `removed` counts messages leaving the queue. Windows are the
//! last hour, day and week before "now", plus `all` (everything still in
//! the retained log; the Prometheus counters use it, so a rotation shows up
//! as a counter reset, which Prometheus' `rate()` handles). Delivery delay
//! is the `delay` of `sent` events: seconds from arrival to the relay's
//! acceptance; percentiles use the nearest-rank method. Per relay (keyed
//! `host:port`, the `[ip]` part of a session label dropped) the success
//! ratio is sent / (sent + deferred + bounced + connection failures), over
//! the retained log.
//!
//! JSON (`postern stats --json`), one object:
//! ```text
//! {"now": int, "since": int|null, "daemon_running": bool, "ignored_lines": int,
//!  "windows": {"1h"|"24h"|"7d"|"all": {"seconds": int|null, "accepted": int,
//!     "sent": int, "deferred": int, "bounced": int, "removed": int,
//!     "delay_seconds": {"count": int, "sum": float, "p50": float|null,
//!                       "p95": float|null, "max": float|null}}},
//!  "queue": {"messages": int, "active": int, "deferred": int, "hold": int,
//!            "incoming": int, "bytes": int, "oldest_age_seconds": float|null},
//!  "relays": [{"relay": str, "sent": int, "deferred": int, "bounced": int,
//!              "connect_failures": int, "success_ratio": float|null,
//!              "last_success": int|null,
//!              "last_error": {"time": int, "error": str}|null}]}
//! ```
//! Prometheus (text exposition format 0.0.4): see [`prometheus`].

use crate::error::{Error, Kind, Result};
use crate::mailq::{self, Item, json_str};
use crate::spool::Spool;
use crate::spool::state::{RcptState, RcptStatus, dec, enc};
use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

struct Log {
    path: PathBuf,
    max: u64,
}

static LOG: Mutex<Option<Log>> = Mutex::new(None);

/// Longest line a reader accepts.
const MAX_EVENT_LINE: usize = 64 * 1024;
/// Most bytes read from one log file (a bound even if rotation failed).
const MAX_READ: u64 = 256 * 1024 * 1024;

/// Start recording into `path`, rotating past `max` bytes.
pub fn init(path: PathBuf, max: u64) {
    if let Ok(mut l) = LOG.lock() {
        *l = Some(Log { path, max });
    }
}

fn append(line: &str) {
    let Ok(guard) = LOG.lock() else { return };
    let Some(log) = guard.as_ref() else { return };
    if let Ok(md) = std::fs::metadata(&log.path)
        && md.len() > log.max
    {
        let mut old = log.path.clone().into_os_string();
        old.push(".1");
        let _ = std::fs::rename(&log.path, old);
    }
    use std::os::unix::fs::OpenOptionsExt;
    let f = match std::fs::OpenOptions::new().append(true).open(&log.path) {
        Ok(f) => Ok(f),
        Err(_) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&log.path)
            .inspect(|f| {
                // Explicit: the service runs with UMask=0077, and group
                // postern (admins) reads this file with `postern stats`.
                use std::os::unix::fs::PermissionsExt;
                let _ = f.set_permissions(std::fs::Permissions::from_mode(0o640));
            }),
    };
    if let Ok(mut f) = f {
        let _ = f.write_all(line.as_bytes());
    }
}

fn now() -> f64 {
    crate::clock::unix_f64(crate::clock::now())
}

/// A message entered the queue.
pub fn record_accepted(id: &str, size: u64, nrcpt: usize) {
    append(&format!(
        "{:.3} accepted {id} size={size} nrcpt={nrcpt}\n",
        now()
    ));
}

/// One recipient's attempt ended.
pub fn record_delivery(id: &str, r: &RcptState, relay: &str, delay: f64) {
    let ev = match r.status {
        RcptStatus::Sent => "sent",
        RcptStatus::Deferred => "deferred",
        RcptStatus::Bounced => "bounced",
        RcptStatus::Pending => return,
    };
    append(&format!(
        "{:.3} {ev} {id} to={} relay={} delay={:.3} reply={}\n",
        now(),
        enc(&r.address),
        enc(if relay.is_empty() { "none" } else { relay }),
        delay.max(0.0),
        enc(&r.reply)
    ));
}

/// A message left the queue.
pub fn record_removed(id: &str, age: f64) {
    append(&format!(
        "{:.3} removed {id} age={:.3}\n",
        now(),
        age.max(0.0)
    ));
}

/// A session with `relay` (`host:port`) was set up (`error` None) or could
/// not be (`error` says why).
pub fn record_relay(relay: &str, error: Option<&str>) {
    match error {
        None => append(&format!("{:.3} relay-ok - relay={}\n", now(), enc(relay))),
        Some(e) => append(&format!(
            "{:.3} relay-error - relay={} error={}\n",
            now(),
            enc(relay),
            enc(e)
        )),
    }
}

// ---- reading ---------------------------------------------------------------

/// What an event line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A message entered the queue.
    Accepted,
    /// A recipient was accepted by the relay.
    Sent,
    /// A recipient failed temporarily.
    Deferred,
    /// A recipient failed permanently.
    Bounced,
    /// A message left the queue.
    Removed,
    /// A session with a relay was set up.
    RelayOk,
    /// A session with a relay could not be set up.
    RelayError,
}

impl EventKind {
    fn parse(s: &str) -> Option<EventKind> {
        Some(match s {
            "accepted" => EventKind::Accepted,
            "sent" => EventKind::Sent,
            "deferred" => EventKind::Deferred,
            "bounced" => EventKind::Bounced,
            "removed" => EventKind::Removed,
            "relay-ok" => EventKind::RelayOk,
            "relay-error" => EventKind::RelayError,
            _ => return None,
        })
    }
}

/// One parsed event line.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unix time.
    pub time: f64,
    /// What happened.
    pub kind: EventKind,
    /// Queue id, or `-` for relay events.
    pub id: String,
    /// Decoded `key=value` fields.
    pub fields: Vec<(String, String)>,
}

impl Event {
    /// The value of field `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn num(&self, key: &str) -> Option<f64> {
        self.get(key)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    }
}

/// Parse one line (without its newline); None for anything malformed.
pub fn parse_line(line: &str) -> Option<Event> {
    let mut words = line.split(' ');
    let time: f64 = words.next()?.parse().ok()?;
    if !time.is_finite() || time < 0.0 {
        return None;
    }
    let kind = EventKind::parse(words.next()?)?;
    let id = words.next()?;
    let relay_event = matches!(kind, EventKind::RelayOk | EventKind::RelayError);
    if relay_event {
        if id != "-" {
            return None;
        }
    } else if !crate::spool::is_valid_id(id) {
        return None;
    }
    let mut fields = Vec::new();
    for w in words {
        let (k, v) = w.split_once('=')?;
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_lowercase()) {
            return None;
        }
        fields.push((k.to_string(), dec(v)?));
    }
    let ev = Event {
        time,
        kind,
        id: id.to_string(),
        fields,
    };
    // The fields each kind needs, with sane values.
    let ok = match kind {
        EventKind::Accepted => ev.num("size").is_some(),
        EventKind::Sent | EventKind::Deferred | EventKind::Bounced => {
            ev.get("to").is_some() && ev.get("relay").is_some() && ev.num("delay").is_some()
        }
        EventKind::Removed => ev.num("age").is_some(),
        EventKind::RelayOk => ev.get("relay").is_some(),
        EventKind::RelayError => ev.get("relay").is_some() && ev.get("error").is_some(),
    };
    ok.then_some(ev)
}

/// Events read from the log, and how many lines were skipped.
#[derive(Debug, Clone, Default)]
pub struct Events {
    /// Parsed events, oldest first (file order).
    pub events: Vec<Event>,
    /// Lines that did not parse.
    pub ignored: u64,
}

fn read_file(path: &Path, out: &mut Events) -> std::io::Result<()> {
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut r = std::io::BufReader::new(std::io::Read::take(f, MAX_READ));
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        // Read one line, but never keep more than MAX_EVENT_LINE bytes of it.
        let mut too_long = false;
        let mut ended = false;
        loop {
            let avail = r.fill_buf()?;
            if avail.is_empty() {
                break;
            }
            let (chunk, done) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (&avail[..i], i + 1),
                None => (avail, avail.len()),
            };
            if buf.len() + chunk.len() > MAX_EVENT_LINE {
                too_long = true;
            } else {
                buf.extend_from_slice(chunk);
            }
            let nl = done > chunk.len();
            r.consume(done);
            if nl {
                ended = true;
                break;
            }
        }
        if !ended {
            // End of file: a final line without its newline is still being
            // written or was torn; either way it is not an event yet.
            if !buf.is_empty() || too_long {
                out.ignored += 1;
            }
            return Ok(());
        }
        if too_long {
            out.ignored += 1;
            continue;
        }
        match std::str::from_utf8(&buf).ok().and_then(parse_line) {
            Some(ev) => out.events.push(ev),
            None => {
                if !buf.is_empty() {
                    out.ignored += 1;
                }
            }
        }
    }
}

/// Read `events.log.1` then `events.log`. A missing file is empty; an
/// unreadable one is an error (EACCES for a caller outside group postern).
pub fn read_events(spool: &Spool) -> std::io::Result<Events> {
    let mut out = Events::default();
    let current = spool.events();
    let mut old = current.clone().into_os_string();
    old.push(".1");
    read_file(Path::new(&old), &mut out)?;
    read_file(&current, &mut out)?;
    Ok(out)
}

// ---- summarising -----------------------------------------------------------

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
}

/// The relay key of a session label: `host[ip]:port` → `host:port`.
pub fn relay_key(label: &str) -> String {
    match (label.find('['), label.rfind(']')) {
        (Some(a), Some(b)) if a < b => format!("{}{}", &label[..a], &label[b + 1..]),
        _ => label.to_string(),
    }
}

/// Compute the summary of `events` at `now` for a queue listing `items`.
pub fn summarize(events: &Events, items: &[Item], now: f64, daemon_running: bool) -> Summary {
    let specs: [(&'static str, Option<u64>); 4] = [
        ("1h", Some(3600)),
        ("24h", Some(86_400)),
        ("7d", Some(7 * 86_400)),
        ("all", None),
    ];
    let mut windows: Vec<Window> = specs
        .iter()
        .map(|(name, seconds)| Window {
            name,
            seconds: *seconds,
            ..Default::default()
        })
        .collect();
    let mut delays: Vec<Vec<f64>> = vec![Vec::new(); specs.len()];
    let mut relays: std::collections::BTreeMap<String, RelayStats> = Default::default();
    let mut last_sent: Option<f64> = None;
    for ev in &events.events {
        for (i, w) in windows.iter_mut().enumerate() {
            if let Some(s) = w.seconds
                && (ev.time < now - s as f64 || ev.time > now)
            {
                continue;
            }
            match ev.kind {
                EventKind::Accepted => w.accepted += 1,
                EventKind::Sent => {
                    w.sent += 1;
                    if let Some(d) = ev.num("delay") {
                        delays[i].push(d);
                    }
                }
                EventKind::Deferred => w.deferred += 1,
                EventKind::Bounced => w.bounced += 1,
                EventKind::Removed => w.removed += 1,
                EventKind::RelayOk | EventKind::RelayError => {}
            }
        }
        let relay = match ev.get("relay") {
            Some(r) if r != "none" && !r.is_empty() => relay_key(r),
            _ => continue,
        };
        let r = relays.entry(relay.clone()).or_insert_with(|| RelayStats {
            relay,
            ..Default::default()
        });
        let reply = || ev.get("reply").unwrap_or("").to_string();
        let newer = |t: Option<f64>| t.is_none_or(|t| ev.time >= t);
        match ev.kind {
            EventKind::Sent => {
                r.sent += 1;
                if newer(r.last_success) {
                    r.last_success = Some(ev.time);
                }
                if newer(last_sent) {
                    last_sent = Some(ev.time);
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
                    r.last_error = Some((ev.time, reply()));
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
            EventKind::Accepted | EventKind::Removed => {}
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
    }
}

// ---- output ----------------------------------------------------------------

fn opt_f(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{v:.3}"),
        None => "null".into(),
    }
}

fn opt_i(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{}", v as u64),
        None => "null".into(),
    }
}

/// The JSON object (schema in the module docs).
pub fn json(s: &Summary) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "{{\"now\":{},\"since\":{},\"daemon_running\":{},\"ignored_lines\":{},\"windows\":{{",
        s.now as u64,
        opt_i(s.since),
        s.daemon_running,
        s.ignored_lines
    );
    for (i, w) in s.windows.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let _ = write!(
            o,
            "\"{}\":{{\"seconds\":{},\"accepted\":{},\"sent\":{},\"deferred\":{},\"bounced\":{},\"removed\":{},\"delay_seconds\":{{\"count\":{},\"sum\":{:.3},\"p50\":{},\"p95\":{},\"max\":{}}}}}",
            w.name,
            w.seconds.map_or("null".to_string(), |s| s.to_string()),
            w.accepted,
            w.sent,
            w.deferred,
            w.bounced,
            w.removed,
            w.delay.count,
            w.delay.sum,
            opt_f(w.delay.p50),
            opt_f(w.delay.p95),
            opt_f(w.delay.max)
        );
    }
    let q = &s.queue;
    let _ = write!(
        o,
        "}},\"queue\":{{\"messages\":{},\"active\":{},\"deferred\":{},\"hold\":{},\"incoming\":{},\"bytes\":{},\"oldest_age_seconds\":{}}},\"relays\":[",
        q.messages,
        q.active,
        q.deferred,
        q.hold,
        q.incoming,
        q.bytes,
        opt_f(q.oldest_age)
    );
    for (i, r) in s.relays.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let last_error = match &r.last_error {
            Some((t, e)) => format!("{{\"time\":{},\"error\":{}}}", *t as u64, json_str(e)),
            None => "null".into(),
        };
        let _ = write!(
            o,
            "{{\"relay\":{},\"sent\":{},\"deferred\":{},\"bounced\":{},\"connect_failures\":{},\"success_ratio\":{},\"last_success\":{},\"last_error\":{last_error}}}",
            json_str(&r.relay),
            r.sent,
            r.deferred,
            r.bounced,
            r.connect_failures,
            match r.success_ratio() {
                Some(v) => format!("{v:.4}"),
                None => "null".into(),
            },
            opt_i(r.last_success)
        );
    }
    o.push_str("]}");
    o
}

fn ago(now: f64, t: f64) -> String {
    crate::clock::human_duration(crate::clock::secs(now - t))
}

fn secs(v: Option<f64>) -> String {
    match v {
        Some(v) if v < 10.0 => format!("{v:.2}s"),
        Some(v) if v < 120.0 => format!("{v:.1}s"),
        Some(v) => crate::clock::human_duration(crate::clock::secs(v)),
        None => "-".into(),
    }
}

/// The one-screen text report.
pub fn text(s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<12}{:>10}{:>10}{:>10}{:>10}{:>10}   delay p50 / p95 / max",
        "", "accepted", "sent", "deferred", "bounced", "removed"
    );
    for w in &s.windows {
        let label = match w.name {
            "1h" => "last hour",
            "24h" => "last day",
            "7d" => "last week",
            _ => "all logged",
        };
        let _ = writeln!(
            o,
            "{label:<12}{:>10}{:>10}{:>10}{:>10}{:>10}   {} / {} / {}",
            w.accepted,
            w.sent,
            w.deferred,
            w.bounced,
            w.removed,
            secs(w.delay.p50),
            secs(w.delay.p95),
            secs(w.delay.max)
        );
    }
    let _ = writeln!(
        o,
        "(sent, deferred and bounced count recipients; accepted and removed count messages)"
    );
    let q = &s.queue;
    let _ = writeln!(
        o,
        "\nqueue: {} message(s) ({} active, {} deferred, {} on hold, {} incoming), {} bytes; oldest {}",
        q.messages,
        q.active,
        q.deferred,
        q.hold,
        q.incoming,
        q.bytes,
        match q.oldest_age {
            Some(a) => format!("{} old", secs(Some(a))),
            None => "-".into(),
        }
    );
    let _ = writeln!(
        o,
        "daemon: {}",
        if s.daemon_running {
            "running"
        } else {
            "not running"
        }
    );
    if s.relays.is_empty() {
        let _ = writeln!(o, "\nrelays: no deliveries logged yet");
    } else {
        let _ = writeln!(o, "\nrelays:");
        for r in &s.relays {
            let _ = writeln!(
                o,
                "  {}: {} sent, {} deferred, {} bounced, {} connection failure(s); success {}; last success {}",
                r.relay,
                r.sent,
                r.deferred,
                r.bounced,
                r.connect_failures,
                match r.success_ratio() {
                    Some(v) => format!("{:.1}%", v * 100.0),
                    None => "-".into(),
                },
                match r.last_success {
                    Some(t) => format!("{} ago", ago(s.now, t)),
                    None => "never".into(),
                }
            );
            if let Some((t, e)) = &r.last_error {
                let _ = writeln!(o, "    last error {} ago: {e}", ago(s.now, *t));
            }
        }
    }
    match s.since {
        Some(t) => {
            let _ = writeln!(
                o,
                "\nevent log since {} ({} ago)",
                crate::clock::iso8601(crate::clock::from_unix_f64(t)),
                ago(s.now, t)
            );
        }
        None => {
            let _ = writeln!(o, "\nevent log is empty");
        }
    }
    if s.ignored_lines > 0 {
        let _ = writeln!(o, "{} malformed line(s) ignored", s.ignored_lines);
    }
    o
}

/// Escape a Prometheus label value: `\` `"` and newline.
pub fn label_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

fn prom_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "NaN".into()
    }
}

/// The Prometheus text exposition (format 0.0.4).
///
/// ```text
/// postern_accepted_total / _sent_total / _deferred_total / _bounced_total /
///   _removed_total                       counter  (retained log)
/// postern_events{event,window}           gauge    (counts over 1h, 24h, 7d)
/// postern_queue_messages{state}          gauge    active|deferred|hold|incoming
/// postern_queue_bytes                    gauge
/// postern_queue_oldest_message_age_seconds gauge  (0 when empty)
/// postern_delivery_delay_seconds         summary  quantile 0.5, 0.95; _sum, _count
/// postern_delivery_delay_max_seconds     gauge
/// postern_relay_recipients_total{relay,result}  counter  sent|deferred|bounced
/// postern_relay_connect_failures_total{relay}   counter
/// postern_relay_success_ratio{relay}     gauge
/// postern_relay_last_success_timestamp_seconds{relay}  gauge
/// postern_relay_last_error_timestamp_seconds{relay}    gauge
/// postern_relay_last_error_info{relay,error}           gauge (1)
/// postern_daemon_up                      gauge 0|1
/// postern_event_log_ignored_lines        gauge
/// ```
pub fn prometheus(s: &Summary) -> String {
    let mut o = String::new();
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} {kind}");
    };
    let all = s.windows.iter().find(|w| w.name == "all").cloned();
    let all = all.unwrap_or_default();
    for (name, help, v) in [
        (
            "postern_accepted_total",
            "Messages accepted into the queue (retained event log).",
            all.accepted,
        ),
        (
            "postern_sent_total",
            "Recipients accepted by a relay (retained event log).",
            all.sent,
        ),
        (
            "postern_deferred_total",
            "Recipient delivery attempts that failed temporarily (retained event log).",
            all.deferred,
        ),
        (
            "postern_bounced_total",
            "Recipients that failed permanently (retained event log).",
            all.bounced,
        ),
        (
            "postern_removed_total",
            "Messages that left the queue (retained event log).",
            all.removed,
        ),
    ] {
        family(&mut o, name, "counter", help);
        let _ = writeln!(o, "{name} {v}");
    }
    family(
        &mut o,
        "postern_events",
        "gauge",
        "Events in a sliding window before now (accepted/removed: messages; sent/deferred/bounced: recipients).",
    );
    for w in s.windows.iter().filter(|w| w.seconds.is_some()) {
        for (ev, v) in [
            ("accepted", w.accepted),
            ("sent", w.sent),
            ("deferred", w.deferred),
            ("bounced", w.bounced),
            ("removed", w.removed),
        ] {
            let _ = writeln!(
                o,
                "postern_events{{event=\"{ev}\",window=\"{}\"}} {v}",
                w.name
            );
        }
    }
    let q = &s.queue;
    family(
        &mut o,
        "postern_queue_messages",
        "gauge",
        "Messages in the queue by state.",
    );
    for (state, v) in [
        ("active", q.active),
        ("deferred", q.deferred),
        ("hold", q.hold),
        ("incoming", q.incoming),
    ] {
        let _ = writeln!(o, "postern_queue_messages{{state=\"{state}\"}} {v}");
    }
    family(
        &mut o,
        "postern_queue_bytes",
        "gauge",
        "Bytes of the queued messages.",
    );
    let _ = writeln!(o, "postern_queue_bytes {}", q.bytes);
    family(
        &mut o,
        "postern_queue_oldest_message_age_seconds",
        "gauge",
        "Age of the oldest queued message (0 when the queue is empty).",
    );
    let _ = writeln!(
        o,
        "postern_queue_oldest_message_age_seconds {}",
        prom_num(q.oldest_age.unwrap_or(0.0))
    );
    family(
        &mut o,
        "postern_delivery_delay_seconds",
        "summary",
        "Seconds from arrival to acceptance by the relay, per sent recipient (retained event log).",
    );
    for (quantile, v) in [("0.5", all.delay.p50), ("0.95", all.delay.p95)] {
        let _ = writeln!(
            o,
            "postern_delivery_delay_seconds{{quantile=\"{quantile}\"}} {}",
            v.map_or("NaN".to_string(), prom_num)
        );
    }
    let _ = writeln!(
        o,
        "postern_delivery_delay_seconds_sum {}",
        prom_num(all.delay.sum)
    );
    let _ = writeln!(
        o,
        "postern_delivery_delay_seconds_count {}",
        all.delay.count
    );
    family(
        &mut o,
        "postern_delivery_delay_max_seconds",
        "gauge",
        "Largest delivery delay in the retained event log (0 when nothing was sent).",
    );
    let _ = writeln!(
        o,
        "postern_delivery_delay_max_seconds {}",
        prom_num(all.delay.max.unwrap_or(0.0))
    );
    if !s.relays.is_empty() {
        family(
            &mut o,
            "postern_relay_recipients_total",
            "counter",
            "Recipient outcomes per relay (retained event log).",
        );
        for r in &s.relays {
            let l = label_escape(&r.relay);
            for (result, v) in [
                ("sent", r.sent),
                ("deferred", r.deferred),
                ("bounced", r.bounced),
            ] {
                let _ = writeln!(
                    o,
                    "postern_relay_recipients_total{{relay=\"{l}\",result=\"{result}\"}} {v}"
                );
            }
        }
        family(
            &mut o,
            "postern_relay_connect_failures_total",
            "counter",
            "Sessions with the relay that could not be set up (retained event log).",
        );
        for r in &s.relays {
            let _ = writeln!(
                o,
                "postern_relay_connect_failures_total{{relay=\"{}\"}} {}",
                label_escape(&r.relay),
                r.connect_failures
            );
        }
        family(
            &mut o,
            "postern_relay_success_ratio",
            "gauge",
            "sent / (sent + deferred + bounced + connection failures) per relay.",
        );
        for r in &s.relays {
            if let Some(v) = r.success_ratio() {
                let _ = writeln!(
                    o,
                    "postern_relay_success_ratio{{relay=\"{}\"}} {}",
                    label_escape(&r.relay),
                    prom_num(v)
                );
            }
        }
        family(
            &mut o,
            "postern_relay_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the relay's last success.",
        );
        for r in &s.relays {
            if let Some(t) = r.last_success {
                let _ = writeln!(
                    o,
                    "postern_relay_last_success_timestamp_seconds{{relay=\"{}\"}} {}",
                    label_escape(&r.relay),
                    prom_num(t)
                );
            }
        }
        family(
            &mut o,
            "postern_relay_last_error_timestamp_seconds",
            "gauge",
            "Unix time of the relay's last failure.",
        );
        for r in &s.relays {
            if let Some((t, _)) = &r.last_error {
                let _ = writeln!(
                    o,
                    "postern_relay_last_error_timestamp_seconds{{relay=\"{}\"}} {}",
                    label_escape(&r.relay),
                    prom_num(*t)
                );
            }
        }
        family(
            &mut o,
            "postern_relay_last_error_info",
            "gauge",
            "The relay's last failure as a label (value always 1).",
        );
        for r in &s.relays {
            if let Some((_, e)) = &r.last_error {
                let e: String = e.chars().take(300).collect();
                let _ = writeln!(
                    o,
                    "postern_relay_last_error_info{{relay=\"{}\",error=\"{}\"}} 1",
                    label_escape(&r.relay),
                    label_escape(&e)
                );
            }
        }
    }
    family(
        &mut o,
        "postern_daemon_up",
        "gauge",
        "1 when a postern daemon holds the spool's run lock.",
    );
    let _ = writeln!(o, "postern_daemon_up {}", u8::from(s.daemon_running));
    family(
        &mut o,
        "postern_event_log_ignored_lines",
        "gauge",
        "Lines of the event log that did not parse.",
    );
    let _ = writeln!(o, "postern_event_log_ignored_lines {}", s.ignored_lines);
    o
}

/// The summary of `spool` now, with `incoming` maildrop names.
pub fn collect(spool: &Spool, incoming: Vec<String>) -> std::io::Result<Summary> {
    let events = read_events(spool)?;
    let items = mailq::collect(spool, incoming);
    let now = now();
    Ok(summarize(&events, &items, now, spool.daemon_running()))
}

/// `postern stats [--json|--prometheus]`.
pub fn command(
    spool: &Spool,
    incoming: Vec<String>,
    prometheus_out: bool,
    json_out: bool,
) -> Result<u8> {
    if prometheus_out && json_out {
        return Err(Error::new(
            Kind::Usage,
            "--prometheus and --json cannot be combined",
        ));
    }
    let s = collect(spool, incoming).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::PermissionDenied {
            Kind::NoPerm
        } else {
            Kind::IoErr
        };
        let mut err = Error::io(
            kind,
            format!("cannot read {}", spool.events().display()),
            &e,
        );
        if kind == Kind::NoPerm {
            err = err.context("the event log is readable by root and group postern only");
        }
        err
    })?;
    let out = if prometheus_out {
        prometheus(&s)
    } else if json_out {
        format!("{}\n", json(&s))
    } else {
        text(&s)
    };
    print!("{out}");
    Ok(0)
}

/// Write the Prometheus textfile named in `stats.prometheus_textfile`, if
/// any: a temporary file in the same directory, then rename, so the
/// node_exporter textfile collector never reads half a file. Failures are
/// logged, never fatal.
pub fn write_textfile(cfg: &crate::config::Config, spool: &Spool) {
    let Some(path) = &cfg.stats.prometheus_textfile else {
        return;
    };
    let incoming = crate::spool::queue::list_ids(&spool.maildrop()).unwrap_or_default();
    let text = match collect(spool, incoming) {
        Ok(s) => prometheus(&s),
        Err(e) => {
            log::warn!("metrics: cannot read {}: {e}", spool.events().display());
            return;
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "postern.prom".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        log::warn!("metrics: cannot write {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_reject() {
        let e = parse_line(
            "1795956514.101 sent 1K1D6V0JC6N9J9M to=bob@example.org relay=h[1.2.3.4]:587 delay=0.321 reply=250%20ok",
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::Sent);
        assert_eq!(e.get("reply"), Some("250 ok"));
        assert_eq!(relay_key(e.get("relay").unwrap()), "h:587");
        for bad in [
            "",
            "garbage",
            "1.0 sent 1K1D6V0JC6N9J9M to=x relay=y",
            "1.0 sent ../../etc/passw to=x relay=y delay=1",
            "nan accepted 1K1D6V0JC6N9J9M size=1",
            "1.0 accepted 1K1D6V0JC6N9J9M size=-1",
            "1.0 accepted 1K1D6V0JC6N9J9M size=1 bad=%ZZ",
            "1.0 relay-ok 1K1D6V0JC6N9J9M relay=x",
        ] {
            assert!(parse_line(bad).is_none(), "{bad:?}");
        }
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.95), Some(4.0));
        assert_eq!(label_escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
