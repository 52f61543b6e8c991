//! Request entries, both ends: how a caller who cannot write the queue asks
//! the daemon for a change, and how the daemon authorises and applies it.
//!
//! Caller side (`request`). The installed set-group-id binary pre-opens a
//! maildrop entry for every queue change (the `Intent` of the command), and
//! the command commits `POSTERN-REQUEST 1\n<verb> <target>\nend\n` into it
//! exactly like a message (`maildrop::commit_request`; the format is
//! `spool::request`), pokes the daemon and waits up to 10 seconds for it to
//! be applied. A non-root caller whose pre-opened entry ends up unused (the
//! change was refused up front, or made directly) cannot unlink it: it
//! commits `POSTERN-REQUEST 1\nvoid\nend\n` (`discard_entry`), which the
//! runner drops at the next pickup.
//!
//! Daemon side ([`handle`]). The daemon's pickup hands such entries here
//! with the uid of the file's owner (`st_uid`, which the caller cannot
//! forge); it grants
//! - `delete <ID>` when the message's owner (`st_uid` of `queue/<ID>`) is
//!   that uid — a user may delete their own queued mail;
//! - `delete|hold|release|retry|bounce` of anything to root, the spool
//!   owner and members of group `postern`.
//!
//! Everything else is refused and logged. A `bounce` request is applied only
//! by a queue runner (the daemon, or a `postern queue run`), which has the
//! configuration the DSN needs; any other pickup leaves it in maildrop for
//! one. Authority is checked before anything else (for an owner's deletion
//! on `st_uid` of `queue/<ID>`, without opening the message); each uid
//! other than root and the spool owner has a budget of
//! [`REQUESTS_PER_MINUTE`] requests (the excess is dropped and logged); the
//! per-message lock is tried once, never waited for — the pickup runs on
//! the daemon's main loop and must not stall — and a request for a message
//! being delivered stays in maildrop for a later pickup (at most a minute).
//! After a change other than a deletion the daemon's own FIFO gets `R`
//! (rescan).

use super::apply::{Outcome, apply, lock, no_such, now, target_ids};
use super::caller::{Caller, caller_in_group, uid_in_group};
use crate::daemon::runner;
use crate::error::{Error, Kind, Result, spool_write_kind};
use crate::spool::request::{self, Entry, Op, Target, VOID_REQUEST};
use crate::spool::{self, Spool, maildrop, queue};
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a caller waits for the daemon to apply its request.
const REQUEST_WAIT: Duration = Duration::from_secs(10);

/// Dispose of the maildrop entry the set-group-id start-up opened for a
/// request when no request is made: root unlinks it; anyone else commits
/// it as a void request and pokes the daemon, so it does not linger as an
/// "incoming" entry in mailq.
pub(crate) fn discard_entry(p: &mut Caller) {
    let Some(Ok((id, file))) = p.entry.take() else {
        return;
    };
    let Some(Ok(dir)) = &p.maildrop_dir else {
        return;
    };
    if nix::unistd::unlinkat(dir, id.as_str(), nix::unistd::UnlinkatFlags::NoRemoveDir).is_ok() {
        return;
    }
    if maildrop::commit_request(&id, &file, dir, VOID_REQUEST).is_ok()
        && let Some(Ok(t)) = p.trigger.take()
    {
        spool::poke(&t, b'W');
    }
}

/// Write a request entry, poke the daemon and wait (bounded) for it.
pub(crate) fn request(p: &mut Caller, spool: &Spool, op: Op, t: Target) -> Result<u8> {
    let uid = p.uid;
    // What the world-readable state says first: a clear answer without
    // bothering the daemon (which checks again, on the file owner).
    if let Target::Id(id) = &t {
        match queue::load_state(spool, id) {
            Some(st) if op == Op::Delete && st.uid != uid && !caller_in_group(p) => {
                return Err(Error::new(
                    Kind::NoPerm,
                    format!(
                        "{id}: not your message (submitted by uid {}); only root and group postern may delete it",
                        st.uid
                    ),
                ));
            }
            Some(_) => {}
            None => {
                // Perhaps not picked up yet: the daemon takes the message
                // in before the (younger) request.
                let waiting = match &p.maildrop_dir {
                    Some(Ok(d)) => d
                        .try_clone()
                        .map(crate::spool::maildrop::names)
                        .unwrap_or_default(),
                    _ => queue::list_ids(&spool.maildrop()).unwrap_or_default(),
                };
                if !waiting.iter().any(|n| n == id) {
                    return Err(no_such(id));
                }
            }
        }
    }
    let (req_id, file, dir) = if p.privileged {
        let dir = match p.maildrop_dir.take() {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                return Err(Error::io(
                    spool_write_kind(&e),
                    format!("cannot open {}", spool.maildrop().display()),
                    &e,
                ));
            }
            None => return Err(Error::new(Kind::Software, "maildrop not prepared")),
        };
        match p.entry.take() {
            Some(Ok((id, f))) => (id, f, dir),
            Some(Err(e)) => {
                return Err(Error::io(
                    spool_write_kind(&e),
                    "cannot create a request entry",
                    &e,
                ));
            }
            None => return Err(Error::new(Kind::Software, "request entry not prepared")),
        }
    } else {
        let no_perm = |e: io::Error| {
            let kind = if e.kind() == io::ErrorKind::PermissionDenied {
                Kind::NoPerm
            } else {
                spool_write_kind(&e)
            };
            Error::io(
                kind,
                format!("cannot write a request into {}", spool.maildrop().display()),
                &e,
            )
        };
        let dir = maildrop::open_dir(&spool.maildrop()).map_err(no_perm)?;
        let (id, f) = maildrop::create(&dir).map_err(no_perm)?;
        (id, f, dir)
    };
    let asked = now();
    let text = request::encode(op, &t);
    maildrop::commit_request(&req_id, &file, &dir, text.as_bytes())
        .map_err(|e| Error::io(spool_write_kind(&e), "cannot commit the request", &e))?;
    log::info!(
        "{req_id}: request \"{} {}\" by uid {uid} queued for the daemon",
        op.verb(),
        t.word()
    );
    let poked = p.take_trigger(spool).is_some_and(|f| spool::poke(&f, b'W'));
    if !poked || !spool.daemon_running() {
        crate::stdout::line(format_args!(
            "request queued; the daemon will apply it when it runs"
        ));
        return Ok(0);
    }
    let start = Instant::now();
    loop {
        // The daemon unlinks the request once it has applied it.
        if file.metadata().map(|m| m.nlink() == 0).unwrap_or(true) {
            break;
        }
        if start.elapsed() >= REQUEST_WAIT {
            crate::stdout::line(format_args!(
                "request queued; the daemon has not applied it yet (see the mail log)"
            ));
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Target::Id(id) = &t else {
        crate::stdout::line(format_args!(
            "request applied by the daemon (see the mail log for each message)"
        ));
        return Ok(0);
    };
    let st = queue::load_state(spool, id);
    let applied = match op {
        Op::Delete => st.is_none(),
        Op::Hold => st.as_ref().is_some_and(|s| s.held),
        Op::Release => st.as_ref().is_some_and(|s| !s.held),
        Op::Retry => st
            .as_ref()
            .is_none_or(|s| s.next <= now() || s.last_attempt >= asked),
        Op::Bounce => st.is_none(),
    };
    if applied {
        crate::stdout::line(format_args!(
            "{id}: {}",
            match op {
                Op::Delete => "deleted",
                Op::Hold => "put on hold",
                Op::Release => "released",
                _ => "due now",
            }
        ));
        Ok(0)
    } else {
        Err(Error::new(
            Kind::NoPerm,
            format!(
                "{id}: the daemon did not {} it (not permitted, or it was being delivered; see the mail log)",
                op.verb()
            ),
        ))
    }
}

/// How many requests one uid (other than root and the spool owner) may
/// have handled per minute; the excess is dropped and logged.
pub const REQUESTS_PER_MINUTE: u32 = 30;
/// How long a request for a message being delivered is kept for a later
/// pickup before it is dropped.
const BUSY_KEEP: Duration = Duration::from_secs(60);

/// Per-uid request budgets and the entries already counted (kept for a
/// later pickup because their message was busy).
struct Budgets {
    window: Instant,
    used: HashMap<u32, u32>,
    counted: HashSet<String>,
}

/// What [`charge`] decided.
#[derive(PartialEq)]
enum Charge {
    Ok,
    /// Over budget: the first drop of this uid in this minute (logged).
    FirstDrop,
    /// Over budget again (not logged: the log must not be a flood either).
    Drop,
}

static BUDGETS: Mutex<Option<Budgets>> = Mutex::new(None);

/// Charge one request of `uid` (entry `name`) to its budget. An entry kept
/// for a later pickup is charged once.
fn charge(uid: u32, name: &str) -> Charge {
    let mut g = match BUDGETS.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let b = g.get_or_insert_with(|| Budgets {
        window: Instant::now(),
        used: HashMap::new(),
        counted: HashSet::new(),
    });
    if b.window.elapsed() >= Duration::from_secs(60) {
        b.window = Instant::now();
        b.used.clear();
    }
    if b.counted.contains(name) {
        return Charge::Ok;
    }
    let n = b.used.entry(uid).or_insert(0);
    *n = n.saturating_add(1);
    if *n == REQUESTS_PER_MINUTE + 1 {
        Charge::FirstDrop
    } else if *n > REQUESTS_PER_MINUTE {
        Charge::Drop
    } else {
        Charge::Ok
    }
}

/// Remember (`keep`) or forget an entry kept for a later pickup.
fn mark_kept(name: &str, keep: bool) {
    let mut g = match BUDGETS.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some(b) = g.as_mut() {
        if keep {
            b.counted.insert(name.to_string());
        } else {
            b.counted.remove(name);
        }
    }
}

/// The owner of `queue/<id>` (its `st_uid`: the submitter), read without
/// opening or locking the message. None when there is no such message.
fn queued_owner(spool: &Spool, id: &str) -> Option<u32> {
    if !spool::is_valid_id(id) {
        return None;
    }
    std::fs::symlink_metadata(spool.queue().join(id))
        .ok()
        .map(|m| m.uid())
}

/// Handle the request entry `name` written by user `uid` (the file's
/// owner), as decoded by the spool (`entry`: a change, void, or why it is
/// malformed), from the queue runner's pickup. Never fails and never
/// blocks: every outcome is logged. Returns false when the entry must stay
/// in maildrop (a bounce that only a queue runner, `ctx`, can apply, or a
/// request for a message being delivered right now).
///
/// Order, so that no request can stall the pickup (it runs on the daemon's
/// main loop): who asks is checked first (root, the spool owner, group
/// `postern`; or the owner of the message — `st_uid` of `queue/<ID>` —
/// for a deletion), then the caller's budget ([`REQUESTS_PER_MINUTE`] per
/// uid other than root and the spool owner; the excess is dropped and
/// logged), and only then the message's lock, taken **without waiting**: a
/// message being delivered keeps the request in maildrop for a later pickup
/// (the end of the delivery wakes the daemon), for at most a minute.
pub fn handle(
    spool: &Spool,
    ctx: Option<&runner::Ctx>,
    entry: std::result::Result<Entry, String>,
    uid: u32,
    name: &str,
) -> bool {
    let req = match entry {
        Ok(Entry::Void) => {
            log::debug!("{name}: unused request entry of uid {uid} dropped");
            return true;
        }
        Ok(Entry::Change(r)) => r,
        Err(why) => {
            log::warn!("{name}: malformed request from uid {uid} ignored: {why}");
            return true;
        }
    };
    let me = nix::unistd::geteuid().as_raw();
    let admin = uid == 0 || uid == me || uid_in_group(uid);
    let what = format!("{} {}", req.op.verb(), req.target.word());
    let owner_delete = req.op == Op::Delete && matches!(req.target, Target::Id(_));
    if !admin && !owner_delete {
        log::warn!(
            "{name}: request \"{what}\" from uid {uid} refused: only root and group postern may do that"
        );
        return true;
    }
    if !admin && let Target::Id(id) = &req.target {
        match queued_owner(spool, id) {
            Some(owner) if owner == uid => {}
            Some(owner) => {
                log::warn!(
                    "{name}: request \"{what}\" from uid {uid} refused: {id} belongs to uid {owner}"
                );
                return true;
            }
            None => {
                log::warn!("{name}: request \"{what}\" from uid {uid}: no such message");
                return true;
            }
        }
    }
    if req.op == Op::Bounce && ctx.is_none() {
        // Only a queue runner has what a bounce needs: leave it for one.
        return false;
    }
    if uid != 0 && uid != me {
        let c = charge(uid, name);
        if c == Charge::FirstDrop {
            log::warn!(
                "{name}: request \"{what}\" from uid {uid} dropped: more than {REQUESTS_PER_MINUTE} requests a minute (further ones this minute are dropped silently)"
            );
        }
        if c != Charge::Ok {
            mark_kept(name, false);
            return true;
        }
    }
    let how = format!("request {name}");
    let mut changed = false;
    let mut busy = false;
    for id in target_ids(spool, &req.target) {
        let q = match lock(spool, &id, Duration::ZERO) {
            Ok(Some(q)) => q,
            Ok(None) => {
                busy = true;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if matches!(req.target, Target::Id(_)) {
                    log::warn!("{name}: request \"{what}\" from uid {uid}: no such message");
                }
                continue;
            }
            Err(e) => {
                log::warn!("{name}: request \"{what}\" from uid {uid}: {id}: {e}");
                continue;
            }
        };
        if !admin && q.owner != uid {
            log::warn!(
                "{name}: request \"{what}\" from uid {uid} refused: {id} belongs to uid {}",
                q.owner
            );
            continue;
        }
        match apply(spool, ctx, req.op, &q, uid, &how) {
            Ok(Outcome::Done(_)) => changed = true,
            Ok(Outcome::Unchanged(why)) => {
                log::info!("{name}: request \"{what}\" from uid {uid}: {id} unchanged: {why}")
            }
            Err(e) => log::warn!("{name}: request \"{what}\" from uid {uid}: {id}: {e}"),
        }
    }
    if changed && req.op != Op::Delete {
        // A running daemon must rescan the state it scheduled from; this
        // is its own FIFO (nobody reads it during a one-shot run: ignored).
        if let Ok(f) = spool.open_trigger() {
            spool::poke(&f, b'R');
        }
    }
    if busy {
        let age = spool::id_micros(name)
            .map(|m| clock_micros().saturating_sub(m))
            .map(Duration::from_micros)
            .unwrap_or(BUSY_KEEP);
        if matches!(req.target, Target::Id(_)) && age < BUSY_KEEP {
            // Being delivered: try again at a later pickup.
            mark_kept(name, true);
            return false;
        }
        log::warn!(
            "{name}: request \"{what}\" from uid {uid}: a message was being delivered; not applied to it"
        );
    }
    mark_kept(name, false);
    true
}

fn clock_micros() -> u64 {
    crate::clock::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
