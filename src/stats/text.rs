//! `postern stats`: the one-screen text report of a [`Summary`].

use super::summary::Summary;
use std::fmt::Write as _;

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
    push_queue(&mut o, s);
    push_users(&mut o, s);
    push_relays(&mut o, s);
    push_log(&mut o, s);
    o
}

/// Per submitter: accepted and held by the outbound guard.
fn push_users(o: &mut String, s: &Summary) {
    if s.users.is_empty() {
        return;
    }
    let _ = writeln!(o, "per user (all logged):  accepted      held");
    for u in &s.users {
        let who = match &u.name {
            Some(n) => format!("{} ({})", crate::escape::field(n), u.uid),
            None => format!("uid {}", u.uid),
        };
        let _ = writeln!(o, "  {who:<22}{:>8}{:>10}", u.accepted, u.held);
    }
}

/// The queue and daemon lines.
fn push_queue(o: &mut String, s: &Summary) {
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
}

/// One line per relay, with its last error.
fn push_relays(o: &mut String, s: &Summary) {
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
}

/// How far back the event log goes, and what it could not read.
fn push_log(o: &mut String, s: &Summary) {
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
}
