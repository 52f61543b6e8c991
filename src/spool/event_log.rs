//! Writing the event log: `events.log` in the spool, one compact line per
//! event (accepted, sent/deferred/bounced per recipient, removed, relay up
//! or down), appended by the queue runner and read by the reports
//! (`stats`, whose module docs give the line format). It is a spool file,
//! so writing it is the spool's job: the delivery layer records relay
//! events here without naming a report.
//!
//! Bounded: past `stats.max_log_size` the file is rotated to `events.log.1`
//! (one generation kept). Writing never fails a delivery: errors are
//! ignored. Nothing here runs until [`init`] (the daemon and queue runs call
//! it; submission never does).

use super::state::{RcptState, RcptStatus, enc};
use std::path::PathBuf;
use std::sync::Mutex;

struct Log {
    file: crate::appender::Appender,
    max: u64,
}

static LOG: Mutex<Option<Log>> = Mutex::new(None);

/// Start recording into `path`, rotating past `max` bytes.
pub fn init(path: PathBuf, max: u64) {
    if let Ok(mut l) = LOG.lock() {
        *l = Some(Log {
            // Explicit 0640: the service runs with UMask=0077, and group
            // postern (admins) reads this file with `postern stats`.
            file: crate::appender::Appender::new(path, Some(0o640)),
            max,
        });
    }
}

fn append(line: &str) {
    let Ok(mut guard) = LOG.lock() else { return };
    let Some(log) = guard.as_mut() else { return };
    let _ = log.file.write_rotating(line.as_bytes(), Some(log.max));
}

/// Now, as unix seconds.
pub(crate) fn now() -> f64 {
    crate::clock::unix_f64(crate::clock::now())
}

/// A message entered the queue (submitted by `uid`).
pub fn record_accepted(id: &str, size: u64, nrcpt: usize, uid: u32) {
    append(&format!(
        "{:.3} accepted {id} size={size} nrcpt={nrcpt} uid={uid}\n",
        now()
    ));
}

/// The outbound guard held a message of `uid` (`reason`).
pub fn record_held(id: &str, uid: u32, reason: &str) {
    append(&format!(
        "{:.3} held {id} uid={uid} reason={}\n",
        now(),
        enc(reason)
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
