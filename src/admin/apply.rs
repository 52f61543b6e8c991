//! Applying one queue change to one message — the step shared by the
//! direct commands (`verbs`) and the daemon's handling of request entries
//! (`requests`): take the per-message lock (waiting while a delivery holds
//! it), load or recreate the state, change it (delete, hold, release,
//! retry, or return to sender through the queue runner), log who did it,
//! and record a removal in the event log.

use crate::clock;
use crate::daemon::runner;
use crate::error::{Error, Kind};
use crate::spool::Spool;
use crate::spool::queue::{self, Queued};
use crate::spool::request::{Op, Target};
use std::io;
use std::time::{Duration, Instant};

/// How long a direct change waits for a delivery to release the message.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(15);
/// The reason recorded for every recipient of `postern queue bounce`.
pub const BOUNCE_REASON: &str = "returned to sender by the administrator";

/// Open `queue/<id>` with its lock, waiting up to `wait` while a delivery
/// holds it. `Ok(None)`: still busy.
pub(crate) fn lock(spool: &Spool, id: &str, wait: Duration) -> io::Result<Option<Queued>> {
    let start = Instant::now();
    loop {
        if let Some(q) = queue::open(spool, id, true)? {
            return Ok(Some(q));
        }
        if start.elapsed() >= wait {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a change did to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done; the text says what.
    Done(String),
    /// Nothing to do (already so); the text says why.
    Unchanged(String),
}

pub(crate) fn now() -> f64 {
    clock::unix_f64(clock::now())
}

/// Apply `op` to the locked message `q` on behalf of `uid`; `how` names
/// the command or request for the log. Bounce needs `ctx`.
pub(crate) fn apply(
    spool: &Spool,
    ctx: Option<&runner::Ctx>,
    op: Op,
    q: &Queued,
    uid: u32,
    how: &str,
) -> io::Result<Outcome> {
    let id = q.env.id.as_str();
    let mut st = queue::load_state(spool, id)
        .unwrap_or_else(|| queue::initial_state(&q.env, q.len, q.owner));
    match op {
        Op::Delete => {
            queue::remove(spool, id)?;
            log::info!("{id}: removed by uid {uid} ({how})");
            crate::spool::event_log::record_removed(id, now() - q.env.arrival);
            Ok(Outcome::Done("deleted".into()))
        }
        Op::Hold => {
            if st.held {
                return Ok(Outcome::Unchanged("already on hold".into()));
            }
            st.held = true;
            queue::save_state(spool, &st, true)?;
            log::info!("{id}: held by uid {uid} ({how})");
            Ok(Outcome::Done("put on hold".into()))
        }
        Op::Release => {
            if !st.held {
                return Ok(Outcome::Unchanged("not on hold".into()));
            }
            st.held = false;
            st.hold_reason.clear();
            st.next = 0.0;
            queue::save_state(spool, &st, true)?;
            log::info!("{id}: released by uid {uid} ({how})");
            Ok(Outcome::Done("released".into()))
        }
        Op::Retry => {
            if st.held {
                return Ok(Outcome::Unchanged(
                    "on hold: release it first (postern queue release)".into(),
                ));
            }
            st.next = 0.0;
            queue::save_state(spool, &st, true)?;
            log::info!("{id}: retry requested by uid {uid} ({how})");
            Ok(Outcome::Done("due now".into()))
        }
        Op::Bounce => {
            let Some(ctx) = ctx else {
                return Err(io::Error::other("bounce needs the configuration"));
            };
            if st.is_done() {
                return Ok(Outcome::Unchanged("every recipient is already done".into()));
            }
            log::info!("{id}: returned to sender by uid {uid} ({how})");
            match runner::return_to_sender(ctx, q, st, BOUNCE_REASON) {
                runner::Done::Finished { .. } => Ok(Outcome::Done(
                    if q.env.sender.is_empty() || q.env.is_bounce {
                        "removed (a bounce is never bounced)".into()
                    } else {
                        format!("returned to <{}>", q.env.sender)
                    },
                )),
                runner::Done::Deferred(why) => Err(io::Error::other(why)),
                other => Err(io::Error::other(format!("{other:?}"))),
            }
        }
    }
}

/// The ids a target names, from the queue's state.
pub(crate) fn target_ids(spool: &Spool, t: &Target) -> Vec<String> {
    match t {
        Target::Id(id) => vec![id.clone()],
        Target::All => queue::list_ids(&spool.queue()).unwrap_or_default(),
        Target::Deferred => queue::list_ids(&spool.queue())
            .unwrap_or_default()
            .into_iter()
            .filter(|id| {
                queue::load_state(spool, id)
                    .is_some_and(|st| !st.held && st.last_deferral().is_some())
            })
            .collect(),
        Target::User(u) => {
            let Some(want) = crate::guard::resolve_user(u) else {
                return Vec::new();
            };
            held_where(spool, |st| st.uid == want)
        }
        Target::Storm(sid) => held_where(spool, |st| st.storm == *sid),
    }
}

/// Held messages whose state satisfies `f`.
fn held_where(spool: &Spool, f: impl Fn(&crate::spool::state::State) -> bool) -> Vec<String> {
    queue::list_ids(&spool.queue())
        .unwrap_or_default()
        .into_iter()
        .filter(|id| queue::load_state(spool, id).is_some_and(|st| st.held && f(&st)))
        .collect()
}

pub(crate) fn io_kind(e: &io::Error) -> Kind {
    match e.kind() {
        io::ErrorKind::PermissionDenied => Kind::NoPerm,
        io::ErrorKind::NotFound => Kind::NoInput,
        io::ErrorKind::InvalidData => Kind::DataErr,
        _ => Kind::TempFail,
    }
}

pub(crate) fn no_such(id: &str) -> Error {
    Error::new(Kind::NoInput, format!("{id}: no such message in the queue"))
}
