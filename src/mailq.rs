//! `mailq` / `sendmail -bp` / `postern queue list`: the queue as a Postfix
//! user expects to see it, and as JSON lines for scripts.
//!
//! Reads `state/` (world-readable: it holds what mailq shows and nothing
//! more) and the names in `maildrop/` (entries not yet picked up, listed
//! through a directory handle opened before the privilege drop when the
//! binary is installed setgid). An entry waiting for pickup shows its size,
//! sender and recipients to whoever may read it — root and the entry's
//! owner, when the caller can open it (an unprivileged development spool; as
//! root) — and its id alone to everybody else ([`Waiting`]). The entry is
//! opened without following links, must be a ready regular file with one
//! link, and its envelope is decoded by the spool's strict decoder; nothing
//! in it is trusted beyond display, and the text is escaped for the
//! terminal. The message itself is never read.
//!
//! JSON schema, one object per line:
//! `{"queue_id": str, "queue_name": "incoming"|"active"|"deferred"|"hold",
//!   "arrival_time": int, "message_size": int|null, "sender": str,
//!   "tries": int, "next_attempt": int|null,
//!   "recipients": [{"address": str, "orig_address": str, "status":
//!   "pending"|"deferred"|"sent"|"bounced", "delay_reason": str|null}]}`
//!
//! The JSON objects of the queue are serde structs written by serde_json:
//! [`QueueHead`] (`queue_id`, `queue_name`, `arrival_time`) starts both a
//! `mailq --json` line and the `postern queue show --json` object
//! ([`QueueDetail`], schema in the admin module docs); [`to_json`] writes
//! one object on one line for every `--json` report.

use crate::clock;
use crate::escape;
use crate::spool::format::Envelope;
use crate::spool::state::{RcptStatus, State};
use crate::spool::{Spool, id_micros, queue};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;

/// The envelopes of the waiting (maildrop) entries the caller may see, by id.
#[derive(Debug, Default)]
pub struct Waiting {
    shown: HashMap<String, (Envelope, u64)>,
}

impl Waiting {
    /// Nothing shown (ids only).
    pub fn none() -> Waiting {
        Waiting::default()
    }

    /// Read the envelope of every incoming item in `items` that `viewer`
    /// (a real uid) may read: root, or the entry's owner, provided the
    /// process can open it at all.
    ///
    /// `opened`: entries the set-gid step opened for the caller before it
    /// dropped the group (`spool::maildrop::open_own_ready`: the caller's
    /// own, which it could not reach afterwards); each is decoded the same
    /// strict way.
    pub fn read(
        spool: &Spool,
        items: &[Item],
        viewer: u32,
        opened: Vec<(String, std::fs::File)>,
    ) -> Waiting {
        let mut opened: HashMap<String, std::fs::File> = opened.into_iter().collect();
        let mut shown = HashMap::new();
        for it in items {
            if let Item::Incoming(id) = it {
                let found = match opened.remove(id) {
                    Some(file) => decode_waiting(&file, id),
                    None => peek(spool, id, viewer),
                };
                if let Some(e) = found {
                    shown.insert(id.clone(), e);
                }
            }
        }
        Waiting { shown }
    }

    fn get(&self, id: &str) -> Option<&(Envelope, u64)> {
        self.shown.get(id)
    }
}

/// The envelope and message length of `maildrop/<id>`, if `viewer` may
/// read it and it is a whole, ready entry that decodes strictly.
fn peek(spool: &Spool, id: &str, viewer: u32) -> Option<(Envelope, u64)> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    if !crate::spool::is_valid_id(id) {
        return None;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(spool.maildrop().join(id))
        .ok()?;
    let md = file.metadata().ok()?;
    let may_read = viewer == 0 || viewer == md.uid();
    let ready = md.mode() & crate::spool::maildrop::READY_BIT != 0;
    if !may_read || !md.file_type().is_file() || md.nlink() != 1 || !ready {
        return None;
    }
    decode_waiting(&file, id)
}

/// The envelope and message length of the open entry `id`, decoded
/// strictly; None unless whole and named as the file is.
fn decode_waiting(file: &std::fs::File, id: &str) -> Option<(Envelope, u64)> {
    let (env, _, len) = queue::read_entry(file).ok()?;
    (env.id == id).then_some((env, len))
}

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

/// The `postern queue list --held [--user UID]` filter: only held
/// messages (`held`), only those of `uid`; not-yet-picked-up entries match
/// neither.
pub fn matches(it: &Item, held: bool, uid: Option<u32>) -> bool {
    match it {
        Item::Incoming(_) => false,
        Item::Queued(st) => (!held || st.held) && uid.is_none_or(|u| st.uid == u),
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

/// Postfix-style text (`waiting`: the maildrop entries shown in full).
pub fn text(items: &[Item], waiting: &Waiting) -> String {
    if items.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut out =
        String::from("-Queue ID-      --Size-- ----Arrival Time---- -Sender/Recipient-------\n");
    let mut total: u64 = 0;
    for it in items {
        match it {
            Item::Incoming(id) if waiting.get(id).is_some() => {
                let Some((env, len)) = waiting.get(id) else {
                    continue;
                };
                total += len;
                let sender = if env.sender.is_empty() {
                    "MAILER-DAEMON".to_string()
                } else {
                    escape::field(&env.sender).into_owned()
                };
                let _ = writeln!(
                    out,
                    "{id:<15}  {len:>8} {:<20}  {sender}",
                    clock::mailq_date(clock::from_unix_f64(env.arrival))
                );
                let _ = writeln!(out, "{:<48}(waiting for pickup)", "");
                for r in &env.recipients {
                    let _ = writeln!(out, "{:<48}{}", "", escape::field(r));
                }
                out.push('\n');
            }
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
                    "MAILER-DAEMON".into()
                } else {
                    escape::field(&st.sender)
                };
                let _ = writeln!(
                    out,
                    "{:<15}{flag} {:>8} {:<20}  {sender}",
                    st.id,
                    st.size,
                    clock::mailq_date(clock::from_unix_f64(st.arrival))
                );
                if st.held && !st.hold_reason.is_empty() {
                    let _ = writeln!(out, "{:<48}(held: {})", "", escape::field(&st.hold_reason));
                }
                let mut last_reason: Option<&str> = None;
                for r in st.rcpts.iter().filter(|r| !r.status.is_final()) {
                    if r.status == RcptStatus::Deferred
                        && !r.reply.is_empty()
                        && last_reason != Some(r.reply.as_str())
                    {
                        let _ = writeln!(out, "{:<48}({})", "", escape::field(&r.reply));
                        last_reason = Some(&r.reply);
                    }
                    let _ = writeln!(out, "{:<48}{}", "", escape::field(&r.address));
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
    // Whatever else came from outside: no raw control reaches a terminal.
    escape::text(&out).into_owned()
}

/// The fields every JSON queue object starts with: `mailq --json` lines and
/// `postern queue show --json` both flatten it first.
#[derive(Debug, Clone, Serialize)]
pub struct QueueHead<'a> {
    /// Queue id.
    pub queue_id: &'a str,
    /// `incoming`, `active`, `deferred` or `hold`.
    pub queue_name: &'static str,
    /// Arrival, whole unix seconds.
    pub arrival_time: u64,
}

impl<'a> QueueHead<'a> {
    /// The head of a picked-up message.
    pub fn queued(st: &'a State) -> QueueHead<'a> {
        QueueHead {
            queue_id: &st.id,
            queue_name: queue_name(st),
            arrival_time: st.arrival as u64,
        }
    }

    /// The head of a maildrop entry not yet picked up (arrival from its id).
    pub fn incoming(id: &'a str) -> QueueHead<'a> {
        QueueHead {
            queue_id: id,
            queue_name: "incoming",
            arrival_time: id_micros(id).map(|m| m / 1_000_000).unwrap_or(0),
        }
    }
}

/// One `mailq --json` line.
#[derive(Serialize)]
struct ListJson<'a> {
    #[serde(flatten)]
    head: QueueHead<'a>,
    message_size: Option<u64>,
    sender: Option<&'a str>,
    tries: u32,
    /// None: never tried.
    next_attempt: Option<u64>,
    /// Submitting uid (None: not picked up yet).
    uid: Option<u32>,
    /// Why the outbound guard holds it.
    hold_reason: Option<&'a str>,
    /// The storm it was held in.
    storm: Option<&'a str>,
    recipients: Vec<ListRcptJson<'a>>,
}

/// One recipient of a `mailq --json` line.
#[derive(Serialize)]
struct ListRcptJson<'a> {
    address: &'a str,
    orig_address: &'a str,
    status: RcptStatus,
    delay_reason: Option<&'a str>,
}

/// `postern queue show --json`: the head, then what `state/ID` and, where
/// the caller may read it, `queue/ID` say (schema in the admin module docs).
#[derive(Debug, Clone, Serialize)]
pub struct QueueDetail<'a> {
    /// Id, queue and arrival time.
    #[serde(flatten)]
    pub head: QueueHead<'a>,
    /// Arrival as RFC 3339 UTC.
    pub arrival: String,
    /// Size in bytes (None: not picked up yet).
    pub message_size: Option<u64>,
    /// Envelope sender.
    pub sender: Option<&'a str>,
    /// Submitting uid.
    pub uid: Option<u32>,
    /// Submitting user's name.
    pub user: Option<&'a str>,
    /// Delivery attempts so far.
    pub tries: u32,
    /// Next attempt (None: due now).
    pub next_attempt: Option<u64>,
    /// On hold.
    pub held: bool,
    /// Why the outbound guard holds it.
    pub hold_reason: Option<&'a str>,
    /// The storm it was held in.
    pub storm: Option<&'a str>,
    /// Last attempt (None: never).
    pub last_attempt: Option<u64>,
    /// Relay of the last attempt.
    pub relay: Option<&'a str>,
    /// Message-ID (from `queue/ID`).
    pub message_id: Option<&'a str>,
    /// The message is a bounce (from `queue/ID`).
    pub is_bounce: Option<bool>,
    /// DSN parameters (from `queue/ID`).
    pub dsn: Option<DsnJson<'a>>,
    /// Recipients.
    pub recipients: Vec<DetailRcptJson<'a>>,
    /// The header section (from `queue/ID`).
    pub headers: Option<&'a str>,
    /// The body (`--body`).
    pub body: Option<&'a str>,
    /// `queue show` with per-sender relays: the relays serving the
    /// message's sender, in order, and why (None: no `senders` configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relays: Option<RelaysJson>,
}

/// The relays a message's sender maps to (per-sender relays).
#[derive(Debug, Clone, Serialize)]
pub struct RelaysJson {
    /// `host:port` of each relay, in order of preference (empty: none
    /// serves the sender; the message stays deferred).
    pub hosts: Vec<String>,
    /// Why: the pattern that matched, or the default relays.
    pub reason: String,
}

impl<'a> QueueDetail<'a> {
    /// Only the head (and the arrival it implies); the rest null or empty.
    pub fn empty(head: QueueHead<'a>) -> QueueDetail<'a> {
        QueueDetail {
            arrival: clock::iso8601(clock::from_unix_f64(head.arrival_time as f64)),
            head,
            message_size: None,
            sender: None,
            uid: None,
            user: None,
            tries: 0,
            next_attempt: None,
            held: false,
            hold_reason: None,
            storm: None,
            last_attempt: None,
            relay: None,
            message_id: None,
            is_bounce: None,
            dsn: None,
            recipients: Vec::new(),
            headers: None,
            body: None,
            relays: None,
        }
    }
}

/// The DSN parameters of a queued message.
#[derive(Debug, Clone, Serialize)]
pub struct DsnJson<'a> {
    /// NOTIFY.
    pub notify: Option<&'a str>,
    /// RET.
    pub ret: Option<&'a str>,
    /// ENVID.
    pub envid: Option<&'a str>,
}

/// One recipient of [`QueueDetail`].
#[derive(Debug, Clone, Serialize)]
pub struct DetailRcptJson<'a> {
    /// Final address.
    pub address: &'a str,
    /// Envelope recipient it came from.
    pub orig_address: &'a str,
    /// Status.
    pub status: RcptStatus,
    /// The relay's last reply or our reason.
    pub last_reply: Option<&'a str>,
    /// Time of the last change (unix seconds).
    pub changed: u64,
}

/// One JSON object for an item (`waiting`: the maildrop entries shown in
/// full; their recipients are `pending`).
pub fn json(it: &Item, waiting: &Waiting) -> String {
    let obj = match it {
        Item::Incoming(id) if waiting.get(id).is_some() => {
            let Some((env, len)) = waiting.get(id) else {
                return "null".into();
            };
            ListJson {
                head: QueueHead::incoming(id),
                message_size: Some(*len),
                sender: Some(&env.sender),
                tries: 0,
                next_attempt: None,
                uid: None,
                hold_reason: None,
                storm: None,
                recipients: env
                    .recipients
                    .iter()
                    .map(|r| ListRcptJson {
                        address: r,
                        orig_address: r,
                        status: RcptStatus::Pending,
                        delay_reason: None,
                    })
                    .collect(),
            }
        }
        Item::Incoming(id) => ListJson {
            head: QueueHead::incoming(id),
            message_size: None,
            sender: None,
            tries: 0,
            next_attempt: None,
            uid: None,
            hold_reason: None,
            storm: None,
            recipients: Vec::new(),
        },
        Item::Queued(st) => ListJson {
            head: QueueHead::queued(st),
            message_size: Some(st.size),
            sender: Some(&st.sender),
            tries: st.tries,
            next_attempt: (st.tries != 0).then_some(st.next as u64),
            uid: Some(st.uid),
            hold_reason: (!st.hold_reason.is_empty()).then_some(st.hold_reason.as_str()),
            storm: (!st.storm.is_empty()).then_some(st.storm.as_str()),
            recipients: st
                .rcpts
                .iter()
                .map(|r| ListRcptJson {
                    address: &r.address,
                    orig_address: &r.original,
                    status: r.status,
                    delay_reason: (!r.reply.is_empty()).then_some(r.reply.as_str()),
                })
                .collect(),
        },
    };
    to_json(&obj)
}

/// One JSON object on one line. serde_json fails only on maps whose keys
/// are not strings, and the report structs have none; `null` stands in all
/// the same rather than a panic.
pub fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}
