//! The Prometheus text exposition (format 0.0.4) of a [`Summary`], for
//! `postern stats --prometheus` and the daemon's textfile.

use super::summary::{RelayStats, Summary, Window};
use std::fmt::Write as _;

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
/// postern_held_total                     counter  messages held by the outbound guard
/// postern_user_accepted_total{uid,user}  counter  per submitter
/// postern_user_held_total{uid,user}      counter  per submitter
/// postern_daemon_up                      gauge 0|1
/// postern_event_log_ignored_lines        gauge
/// ```
pub fn prometheus(s: &Summary) -> String {
    let mut o = String::new();
    let all = s.windows.iter().find(|w| w.name == "all").cloned();
    let all = all.unwrap_or_default();
    counters(&mut o, &all);
    windows(&mut o, s);
    queue(&mut o, s);
    delay(&mut o, &all);
    if !s.relays.is_empty() {
        relay_counters(&mut o, &s.relays);
        relay_gauges(&mut o, &s.relays);
    }
    users(&mut o, s);
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

/// Per-submitter counters (the retained log).
fn users(o: &mut String, s: &Summary) {
    if s.users.is_empty() {
        return;
    }
    for (name, help, held) in [
        (
            "postern_user_accepted_total",
            "Messages accepted per submitting user (retained event log).",
            false,
        ),
        (
            "postern_user_held_total",
            "Messages held by the outbound guard per submitting user (retained event log).",
            true,
        ),
    ] {
        family(o, name, "counter", help);
        for u in &s.users {
            let _ = writeln!(
                o,
                "{name}{{uid=\"{}\",user=\"{}\"}} {}",
                u.uid,
                label_escape(u.name.as_deref().unwrap_or("")),
                if held { u.held } else { u.accepted }
            );
        }
    }
}

/// `# HELP` and `# TYPE` of one metric family.
fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

/// The `postern_*_total` counters over the retained log (window `all`).
fn counters(o: &mut String, all: &Window) {
    for (name, help, v) in [
        (
            "postern_accepted_total",
            "Messages accepted into the queue (retained event log).",
            all.accepted,
        ),
        (
            "postern_held_total",
            "Messages held by the outbound guard (retained event log).",
            all.held,
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
        family(o, name, "counter", help);
        let _ = writeln!(o, "{name} {v}");
    }
}

/// `postern_events{event,window}` over the sliding windows.
fn windows(o: &mut String, s: &Summary) {
    family(
        o,
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
}

/// The queue gauges.
fn queue(o: &mut String, s: &Summary) {
    let q = &s.queue;
    family(
        o,
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
        o,
        "postern_queue_bytes",
        "gauge",
        "Bytes of the queued messages.",
    );
    let _ = writeln!(o, "postern_queue_bytes {}", q.bytes);
    family(
        o,
        "postern_queue_oldest_message_age_seconds",
        "gauge",
        "Age of the oldest queued message (0 when the queue is empty).",
    );
    let _ = writeln!(
        o,
        "postern_queue_oldest_message_age_seconds {}",
        prom_num(q.oldest_age.unwrap_or(0.0))
    );
}

/// The delivery delay summary and maximum over the retained log.
fn delay(o: &mut String, all: &Window) {
    family(
        o,
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
        o,
        "postern_delivery_delay_max_seconds",
        "gauge",
        "Largest delivery delay in the retained event log (0 when nothing was sent).",
    );
    let _ = writeln!(
        o,
        "postern_delivery_delay_max_seconds {}",
        prom_num(all.delay.max.unwrap_or(0.0))
    );
}

/// Per relay: recipient outcomes and connection failures.
fn relay_counters(o: &mut String, relays: &[RelayStats]) {
    family(
        o,
        "postern_relay_recipients_total",
        "counter",
        "Recipient outcomes per relay (retained event log).",
    );
    for r in relays {
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
        o,
        "postern_relay_connect_failures_total",
        "counter",
        "Sessions with the relay that could not be set up (retained event log).",
    );
    for r in relays {
        let _ = writeln!(
            o,
            "postern_relay_connect_failures_total{{relay=\"{}\"}} {}",
            label_escape(&r.relay),
            r.connect_failures
        );
    }
}

/// Per relay: success ratio and the times and text of the last success
/// and failure.
fn relay_gauges(o: &mut String, relays: &[RelayStats]) {
    family(
        o,
        "postern_relay_success_ratio",
        "gauge",
        "sent / (sent + deferred + bounced + connection failures) per relay.",
    );
    for r in relays {
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
        o,
        "postern_relay_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the relay's last success.",
    );
    for r in relays {
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
        o,
        "postern_relay_last_error_timestamp_seconds",
        "gauge",
        "Unix time of the relay's last failure.",
    );
    for r in relays {
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
        o,
        "postern_relay_last_error_info",
        "gauge",
        "The relay's last failure as a label (value always 1).",
    );
    for r in relays {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label_escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
