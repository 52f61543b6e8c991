//! `postern queue show ID [--json] [--body]`: one message in detail.
//!
//! It reads `state/ID` (world-readable: the same facts `mailq` shows) and,
//! where the caller may read it (root, the spool owner), `queue/ID` for the
//! envelope details and the header section; `--body` is for root (and the
//! owner of an unprivileged development spool). JSON, one object:
//! ```text
//! {"queue_id": str, "queue_name": "active"|"deferred"|"hold"|"incoming",
//!  "arrival_time": int, "arrival": str (RFC 3339 UTC), "message_size": int,
//!  "sender": str, "uid": int, "user": str|null, "tries": int,
//!  "next_attempt": int|null (null: due now), "held": bool, "hold_reason": str|null, "storm": str|null, "last_attempt": int|null,
//!  "relay": str|null, "message_id": str|null, "is_bounce": bool|null,
//!  "dsn": {"notify": str|null, "ret": str|null, "envid": str|null}|null,
//!  "recipients": [{"address": str, "orig_address": str,
//!     "status": "pending"|"deferred"|"sent"|"bounced",
//!     "last_reply": str|null, "changed": int}],
//!  "headers": str|null, "body": str|null,
//!  "relays": {"hosts": [str], "reason": str}}
//! ```
//! `relays` is present only when some `[[relay]]` has `senders`: the relays
//! that serve this message's sender, in order (empty: none does; the
//! message stays deferred), and why — the text form prints it as `Relays:`.
//! `user`, `message_id`, `is_bounce`, `dsn` and `headers` are null when the
//! caller may not read `queue/ID`; `body` is null without `--body`; message
//! bytes that are not UTF-8 are shown as U+FFFD. An id still in maildrop
//! (not yet picked up) shows only `queue_id`, `queue_name: "incoming"` and
//! `arrival_time`, the rest null or empty.

use super::apply::{io_kind, no_such, now};
use super::caller::{Caller, may_read_body};
use crate::clock;
use crate::config::Config;
use crate::deliver::sender_relays;
use crate::error::{Error, Kind, Result};
use crate::escape;
use crate::mailq;
use crate::spool::Spool;
use crate::spool::queue::{self, Queued};
use crate::spool::state::{RcptStatus, State};
use std::fmt::Write as _;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// The header section of a queued message (up to 1 MiB).
fn header_section(q: &Queued) -> io::Result<String> {
    let max = q.len.min(crate::submit::MAX_HEADER_BYTES as u64 + 4);
    let mut buf = vec![0u8; max as usize];
    q.file.read_exact_at(&mut buf, q.start)?;
    let end = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| i + 1)
        .or_else(|| buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 2))
        .unwrap_or(buf.len());
    Ok(lossless(&buf[..end]))
}

fn body_of(q: &Queued) -> io::Result<String> {
    let mut buf = Vec::new();
    let mut f = &q.file;
    use std::io::Seek;
    f.seek(io::SeekFrom::Start(q.start))?;
    f.take(q.len).read_to_end(&mut buf)?;
    Ok(lossless(&buf))
}

/// Message bytes as text for both renderers: an invalid UTF-8 byte becomes
/// a visible `\xNN` (controls are the text renderer's to escape; JSON
/// escapes them itself).
fn lossless(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        out.push_str(chunk.valid());
        for x in chunk.invalid() {
            out.push_str(&format!("\\x{x:02x}"));
        }
    }
    out
}

fn status_word(s: RcptStatus) -> &'static str {
    match s {
        RcptStatus::Pending => "pending",
        RcptStatus::Deferred => "deferred",
        RcptStatus::Sent => "sent",
        RcptStatus::Bounced => "bounced",
    }
}

/// The relays serving the sender of the message in `st` (per-sender relays
/// only; None when no relay has `senders`).
fn relays_of(cfg: &Config, st: &State) -> Option<mailq::RelaysJson> {
    if !sender_relays::per_sender(&cfg.relays) {
        return None;
    }
    let wire = crate::address::rewrite::sender_on_wire(cfg, &st.sender);
    let bounce_to = st
        .rcpts
        .first()
        .map(|r| crate::address::rewrite::sender_on_wire(cfg, &r.original));
    let g = sender_relays::group(&cfg.relays, &wire, bounce_to.as_deref());
    let reason = if g.relays.is_empty() {
        sender_relays::no_relay_reason(&wire)
    } else {
        g.reason()
    };
    Some(mailq::RelaysJson {
        hosts: g.relays.iter().map(|&i| cfg.relays[i].label()).collect(),
        reason,
    })
}

pub fn show(
    p: &mut Caller,
    cfg: &Config,
    spool: &Spool,
    id: &str,
    json: bool,
    body: bool,
) -> Result<u8> {
    if body && !may_read_body(p, spool) {
        return Err(Error::new(Kind::NoPerm, "--body is for root only"));
    }
    let opened = queue::open(spool, id, false);
    let q = match opened {
        Ok(Some(q)) => Some(q),
        Ok(None) => None,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            if body {
                return Err(Error::io(Kind::NoPerm, format!("{id}: cannot read"), &e));
            }
            None
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(io_kind(&e), format!("{id}: cannot read"), &e)),
    };
    let st = match (queue::load_state(spool, id), &q) {
        (Some(st), _) => st,
        (None, Some(q)) => queue::initial_state(&q.env, q.len, q.owner),
        (None, None) => {
            let incoming = p.incoming(spool);
            if incoming.iter().any(|n| n == id) {
                return show_incoming(id, json);
            }
            return Err(no_such(id));
        }
    };
    let headers = match &q {
        Some(q) => {
            Some(header_section(q).map_err(|e| Error::io(Kind::IoErr, format!("{id}: read"), &e))?)
        }
        None => None,
    };
    let body_text = match (&q, body) {
        (Some(q), true) => {
            Some(body_of(q).map_err(|e| Error::io(Kind::IoErr, format!("{id}: read"), &e))?)
        }
        _ => None,
    };
    let relays = relays_of(cfg, &st);
    if json {
        let detail = show_json(
            &st,
            q.as_ref(),
            headers.as_deref(),
            body_text.as_deref(),
            relays,
        );
        crate::stdout::line(format_args!("{detail}"));
    } else {
        let mut text = show_text(&st, q.as_ref(), headers.as_deref(), body_text.as_deref());
        if let Some(r) = relays {
            let hosts = if r.hosts.is_empty() {
                "none".to_string()
            } else {
                r.hosts.join(", then ")
            };
            let line = format!("Relays:        {hosts} ({})\n", r.reason);
            let at = text.find("Recipients:").unwrap_or(text.len());
            text.insert_str(at, &escape::text(&line));
        }
        crate::stdout::text(format_args!("{text}"));
    }
    Ok(0)
}

fn show_incoming(id: &str, json: bool) -> Result<u8> {
    if json {
        let head = mailq::QueueHead::incoming(id);
        crate::stdout::line(format_args!(
            "{}",
            mailq::to_json(&mailq::QueueDetail::empty(head))
        ));
    } else {
        crate::stdout::line(format_args!(
            "{id}: waiting for pickup (not yet in the queue)"
        ));
    }
    Ok(0)
}

fn show_json(
    st: &State,
    q: Option<&Queued>,
    headers: Option<&str>,
    body: Option<&str>,
    relays: Option<mailq::RelaysJson>,
) -> String {
    let env = q.map(|q| &q.env);
    let user = match env {
        Some(e) => e.user.clone(),
        None => crate::submit::User::lookup(st.uid).name,
    };
    fn opt(s: &str) -> Option<&str> {
        (!s.is_empty()).then_some(s)
    }
    mailq::to_json(&mailq::QueueDetail {
        message_size: Some(st.size),
        sender: Some(&st.sender),
        uid: Some(st.uid),
        user: Some(&user),
        tries: st.tries,
        next_attempt: (st.next > 0.0).then_some(st.next as u64), // None: due now
        held: st.held,
        hold_reason: opt(&st.hold_reason),
        storm: opt(&st.storm),
        last_attempt: (st.last_attempt > 0.0).then_some(st.last_attempt as u64),
        relay: opt(&st.relay),
        message_id: env.and_then(|e| e.message_id.as_deref()),
        is_bounce: env.map(|e| e.is_bounce),
        dsn: env.map(|e| mailq::DsnJson {
            notify: e.dsn_notify.as_deref(),
            ret: e.dsn_ret.as_deref(),
            envid: e.envid.as_deref(),
        }),
        recipients: st
            .rcpts
            .iter()
            .map(|r| mailq::DetailRcptJson {
                address: &r.address,
                orig_address: &r.original,
                status: r.status,
                last_reply: opt(&r.reply),
                changed: r.changed as u64,
            })
            .collect(),
        headers,
        body,
        relays,
        ..mailq::QueueDetail::empty(mailq::QueueHead::queued(st))
    })
}

fn show_text(st: &State, q: Option<&Queued>, headers: Option<&str>, body: Option<&str>) -> String {
    let now = now();
    let human = |s: f64| clock::human_duration(clock::secs(s));
    let mut o = String::new();
    let _ = writeln!(o, "Queue ID:      {}", st.id);
    let state = if st.held && !st.hold_reason.is_empty() {
        format!(
            "on hold: {} (postern queue release ID to deliver it)",
            st.hold_reason
        )
    } else if st.held {
        "on hold (postern queue release ID to deliver it)".to_string()
    } else if st.tries == 0 && st.next == 0.0 {
        "active (not tried yet)".to_string()
    } else if st.next <= now {
        format!("deferred, {} attempt(s), next attempt due now", st.tries)
    } else {
        format!(
            "deferred, {} attempt(s), next attempt {} (in {})",
            st.tries,
            clock::rfc5322(clock::from_unix_f64(st.next)),
            human(st.next - now)
        )
    };
    let _ = writeln!(o, "Status:        {state}");
    let _ = writeln!(o, "Sender:        <{}>", escape::field(&st.sender));
    let user = q
        .map(|q| q.env.user.clone())
        .unwrap_or_else(|| crate::submit::User::lookup(st.uid).name);
    let _ = writeln!(o, "Submitted by:  {user} (uid {})", st.uid);
    let _ = writeln!(
        o,
        "Arrival:       {} ({} ago)",
        clock::rfc5322(clock::from_unix_f64(st.arrival)),
        human(now - st.arrival)
    );
    let _ = writeln!(o, "Size:          {} bytes", st.size);
    if let Some(q) = q {
        if let Some(m) = &q.env.message_id {
            let _ = writeln!(o, "Message-ID:    {}", escape::field(m));
        }
        if q.env.dsn_notify.is_some() || q.env.dsn_ret.is_some() || q.env.envid.is_some() {
            let _ = writeln!(
                o,
                "DSN:           notify={} ret={} envid={}",
                q.env.dsn_notify.as_deref().unwrap_or("-"),
                q.env.dsn_ret.as_deref().unwrap_or("-"),
                q.env.envid.as_deref().unwrap_or("-")
            );
        }
        if q.env.is_bounce {
            let _ = writeln!(o, "Kind:          delivery status notification (bounce)");
        }
    }
    if st.last_attempt > 0.0 {
        let _ = writeln!(
            o,
            "Last attempt:  {} ({} ago){}",
            clock::rfc5322(clock::from_unix_f64(st.last_attempt)),
            human(now - st.last_attempt),
            if st.relay.is_empty() {
                String::new()
            } else {
                format!(" via {}", st.relay)
            }
        );
    }
    let _ = writeln!(o, "Recipients:");
    for r in &st.rcpts {
        let orig = if r.original != r.address {
            format!(" (for {})", r.original)
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "  {:<9}{}{}",
            status_word(r.status),
            escape::field(&r.address),
            escape::field(&orig)
        );
        if !r.reply.is_empty() {
            let _ = writeln!(o, "           {}", escape::field(&r.reply));
        }
    }
    match headers {
        Some(h) => {
            let _ = writeln!(o, "Headers:");
            for l in h.lines() {
                let _ = writeln!(o, "  {}", escape::field(l.trim_end_matches('\r')));
            }
        }
        None => {
            let _ = writeln!(
                o,
                "Headers:       (readable by root and the postern user only)"
            );
        }
    }
    if let Some(b) = body {
        let _ = writeln!(o, "Message:");
        o.push_str(b);
        if !b.ends_with('\n') {
            o.push('\n');
        }
    }
    // Whatever else came from outside: no raw control reaches a terminal.
    escape::text(&o).into_owned()
}
