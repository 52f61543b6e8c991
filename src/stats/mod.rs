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
//! 1795956513.780 accepted 1K1D6V0JC6N9J9M size=2048 nrcpt=2 uid=33
//! 1795956513.780 held 1K1D6V0JC6N9J9M uid=33 reason=www-data%20over%20200%20messages/hour
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
//! What the numbers mean: `accepted` counts messages (`uid`: the
//! submitter; older lines have none), `held` the messages the outbound
//! guard held (`crate::guard`), `sent`, `deferred`
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
//!     "held": int, "sent": int, "deferred": int, "bounced": int, "removed": int,
//!     "delay_seconds": {"count": int, "sum": float, "p50": float|null,
//!                       "p95": float|null, "max": float|null}}},
//!  "queue": {"messages": int, "active": int, "deferred": int, "hold": int,
//!            "incoming": int, "bytes": int, "oldest_age_seconds": float|null},
//!  "relays": [{"relay": str, "sent": int, "deferred": int, "bounced": int,
//!              "connect_failures": int, "success_ratio": float|null,
//!              "last_success": int|null,
//!              "last_error": {"time": int, "error": str}|null}],
//!  "users": [{"uid": int, "user": str|null, "accepted": int, "held": int}]}
//! ```
//! `users` counts per submitter over the retained log.
//!
//! Prometheus (text exposition format 0.0.4): see [`prometheus`].
//!
//! One job per file: the spool writes the event log
//! (`spool::event_log`), [`events`] reads it,
//! [`summary`] aggregates, and [`text`], [`json`] and [`prometheus`] render;
//! this file collects a summary from the spool and runs the command.

pub mod events;
pub mod json;
pub mod prometheus;
pub mod summary;
pub mod text;

pub use events::{Event, EventKind, Events, parse_line, read_events};
pub use json::json;
pub use prometheus::{label_escape, prometheus};
pub use summary::{Delay, QueueStats, RelayStats, Summary, Window, relay_key, summarize};
pub use text::text;

use crate::error::{Error, Kind, Result};
use crate::mailq;
use crate::spool::Spool;
use std::io::Write;
use std::path::Path;

/// The summary of `spool` now, with `incoming` maildrop names.
pub fn collect(spool: &Spool, incoming: Vec<String>) -> std::io::Result<Summary> {
    let events = read_events(spool)?;
    let items = mailq::collect(spool, incoming);
    let now = crate::spool::event_log::now();
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
    crate::stdout::text(format_args!("{out}"));
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
