//! The event log: one compact line per event, appended by the queue runner,
//! read by `postern stats` and `postern status`.
//!
//! `events.log` in the spool, bounded: past `stats.max_log_size` it is
//! rotated to `events.log.1` (one generation kept). Lines:
//! `<unix-time> <event> <queue-id> <fields…>` with events `accepted`,
//! `sent`, `deferred`, `bounced`, `removed`; fields are `key=value`, values
//! percent-encoded. Writing never fails a delivery: errors are ignored.

use crate::spool::state::{RcptState, RcptStatus, enc};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

struct Log {
    path: PathBuf,
    max: u64,
}

static LOG: Mutex<Option<Log>> = Mutex::new(None);

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
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(&log.path)
    {
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

/// Write the Prometheus textfile named in `stats.prometheus_textfile`, if
/// any (placeholder).
pub fn write_textfile(_cfg: &crate::config::Config, _spool: &crate::spool::Spool) {}
