//! `mailq` / `sendmail -bp` / `postern queue list`: the queue as a Postfix
//! user expects to see it, and as JSON lines for scripts.
//!
//! Reads only `state/` (world-readable: it holds what mailq shows and
//! nothing more) and the names in `maildrop/` (entries not yet picked up,
//! listed through a directory handle opened before the privilege drop when
//! the binary is installed setgid). Never reads a message.
//!
//! JSON schema, one object per line:
//! `{"queue_id": str, "queue_name": "incoming"|"active"|"deferred"|"hold",
//!   "arrival_time": int, "message_size": int|null, "sender": str,
//!   "tries": int, "next_attempt": int|null,
//!   "recipients": [{"address": str, "orig_address": str, "status":
//!   "pending"|"deferred"|"sent"|"bounced", "delay_reason": str|null}]}`

use crate::clock;
use crate::spool::state::{RcptStatus, State};
use crate::spool::{Spool, id_micros, queue};
use std::fmt::Write as _;

/// One line of the listing.
#[derive(Debug, Clone)]
pub enum Item {
    /// A picked-up message.
    Queued(State),
    /// A maildrop entry not yet picked up (id only).
    Incoming(String),
}

impl Item {
    fn id(&self) -> &str {
        match self {
            Item::Queued(s) => &s.id,
            Item::Incoming(i) => i,
        }
    }
}

/// Collect the queue: `incoming` names plus every state file.
pub fn collect(spool: &Spool, incoming: Vec<String>) -> Vec<Item> {
    let mut items: Vec<Item> = Vec::new();
    if let Ok(ids) = queue::list_ids(&spool.state()) {
        for id in ids {
            if let Some(st) = queue::load_state(spool, &id) {
                items.push(Item::Queued(st));
            }
        }
    }
    for id in incoming {
        if !items.iter().any(|i| i.id() == id) {
            items.push(Item::Incoming(id));
        }
    }
    items.sort_by(|a, b| a.id().cmp(b.id()));
    items
}

/// The Postfix queue a message is in: `hold`, `active` (never tried) or
/// `deferred`.
pub fn queue_name(st: &State) -> &'static str {
    if st.held {
        "hold"
    } else if st.tries == 0 {
        "active"
    } else {
        "deferred"
    }
}

/// Postfix-style text.
pub fn text(items: &[Item]) -> String {
    if items.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut out =
        String::from("-Queue ID-      --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
    let mut total: u64 = 0;
    for it in items {
        match it {
            Item::Incoming(id) => {
                let t = id_micros(id)
                    .map(|m| clock::from_unix_f64(m as f64 / 1e6))
                    .unwrap_or(std::time::UNIX_EPOCH);
                let _ = writeln!(
                    out,
                    "{id:<15}  {:>8} {:<20}  (waiting for pickup)\n",
                    "-",
                    clock::mailq_date(t)
                );
            }
            Item::Queued(st) => {
                total += st.size;
                let flag = if st.held {
                    '!'
                } else if st.tries == 0 {
                    '*'
                } else {
                    ' '
                };
                let sender = if st.sender.is_empty() {
                    "MAILER-DAEMON"
                } else {
                    &st.sender
                };
                let _ = writeln!(
                    out,
                    "{:<15}{flag} {:>8} {:<20}  {sender}",
                    st.id,
                    st.size,
                    clock::mailq_date(clock::from_unix_f64(st.arrival))
                );
                let mut last_reason: Option<&str> = None;
                for r in st.rcpts.iter().filter(|r| !r.status.is_final()) {
                    if r.status == RcptStatus::Deferred
                        && !r.reply.is_empty()
                        && last_reason != Some(r.reply.as_str())
                    {
                        let _ = writeln!(out, "{:<48}({})", "", r.reply);
                        last_reason = Some(&r.reply);
                    }
                    let _ = writeln!(out, "{:<48}{}", "", r.address);
                }
                out.push('\n');
            }
        }
    }
    let n = items.len();
    let _ = writeln!(
        out,
        "-- {} Kbytes in {n} Request{}.",
        total.div_ceil(1024),
        if n == 1 { "" } else { "s" }
    );
    out
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// One JSON object for an item.
pub fn json(it: &Item) -> String {
    match it {
        Item::Incoming(id) => {
            let t = id_micros(id).map(|m| m / 1_000_000).unwrap_or(0);
            format!(
                "{{\"queue_id\":{},\"queue_name\":\"incoming\",\"arrival_time\":{t},\"message_size\":null,\"sender\":null,\"tries\":0,\"next_attempt\":null,\"recipients\":[]}}",
                json_str(id)
            )
        }
        Item::Queued(st) => {
            let rcpts: Vec<String> = st
                .rcpts
                .iter()
                .map(|r| {
                    let status = match r.status {
                        RcptStatus::Pending => "pending",
                        RcptStatus::Deferred => "deferred",
                        RcptStatus::Sent => "sent",
                        RcptStatus::Bounced => "bounced",
                    };
                    format!(
                        "{{\"address\":{},\"orig_address\":{},\"status\":\"{status}\",\"delay_reason\":{}}}",
                        json_str(&r.address),
                        json_str(&r.original),
                        if r.reply.is_empty() { "null".to_string() } else { json_str(&r.reply) }
                    )
                })
                .collect();
            format!(
                "{{\"queue_id\":{},\"queue_name\":\"{}\",\"arrival_time\":{},\"message_size\":{},\"sender\":{},\"tries\":{},\"next_attempt\":{},\"recipients\":[{}]}}",
                json_str(&st.id),
                queue_name(st),
                st.arrival as u64,
                st.size,
                json_str(&st.sender),
                st.tries,
                if st.tries == 0 {
                    "null".to_string()
                } else {
                    (st.next as u64).to_string()
                },
                rcpts.join(",")
            )
        }
    }
}
