//! Pickup: taking what submitters committed in `maildrop/` into the queue.
//!
//! For every name in maildrop the spool says what it found
//! (`spool::maildrop::claim`: busy, abandoned, vanished, corrupt, or a
//! committed entry holding a message, a request or something undecodable);
//! this module decides what happens: a message is admitted into `queue/`
//! (`spool::queue::admit`, by rename) and logged, a request entry is handed
//! with the uid of the file's owner to the [`RequestHandler`] the front end
//! gave the daemon (the admin service's `admin::requests::handle`: the
//! daemon never names admin), anything undecodable is moved to `corrupt/`.
//!
//! An abandoned entry (not ready, its writer's lock gone) is removed at the
//! first look, so dead entries do not pile up. Entries still being written
//! are remembered with what `fstatat` said of them: a later pickup (every
//! poke starts one) skips such an entry with one `fstatat` as long as it has
//! not changed and was judged less than [`RECHECK`] ago, instead of opening
//! and locking it again; a writer that commits or fails changes the entry's
//! mode before it lets go of the lock (ready, or abandoned: 0404, see
//! `maildrop::abandon`), and such an entry is never remembered; one whose
//! writer was killed is seen at the first look after [`RECHECK`].
//!
//! The outbound guard runs here, in the daemon, never in the submission
//! process: every admitted message is counted for its submitter (the
//! entry's owner) and its storm key (`guard::Pickup`); one over a limit or
//! in a storm is queued held, with the reason in its state and the log.

use super::runner::Ctx;
use crate::config::Config;
use crate::spool::Spool;
use crate::spool::maildrop::{self, Claim, Content};
use crate::spool::queue::{self, Admitted};
use crate::spool::request::Entry;
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a maildrop entry judged busy is skipped while unchanged.
pub const RECHECK: Duration = Duration::from_secs(2);

/// What `fstatat` says of an entry: enough to notice any change a writer
/// makes (content, mode, a new file under the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    mode: u32,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn stamp(dir: &std::fs::File, name: &str) -> Option<Stamp> {
    let st = nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    Some(Stamp {
        ino: st.st_ino,
        mode: st.st_mode,
        size: st.st_size,
        mtime: (st.st_mtime, st.st_mtime_nsec),
        ctime: (st.st_ctime, st.st_ctime_nsec),
    })
}

/// Busy entries of one maildrop directory: name → (stamp, judged until).
type Memo = HashMap<String, (Stamp, Instant)>;

/// The remembered busy entries, per maildrop directory.
static BUSY: Mutex<Option<(PathBuf, Memo)>> = Mutex::new(None);

/// What becomes of a user's request entry (`spool::request`): authorised
/// against `uid`, the owner of the entry file, and applied. Arguments: the
/// spool, the queue runner's context (a bounce request needs it), the
/// decoded entry (or why it is malformed), `uid`, the entry's name. Returns
/// false when the entry must stay in maildrop for a later pickup.
pub type RequestHandler = fn(&Spool, Option<&Ctx>, Result<Entry, String>, u32, &str) -> bool;

/// Request entries held open during one pickup while the outbound guard's
/// lock is taken (each is an open file).
const MAX_DEFERRED: usize = 256;

/// One message taken over from maildrop.
#[derive(Debug, Clone)]
pub struct Picked {
    /// Queue id.
    pub id: String,
    /// Message size.
    pub size: u64,
    /// Envelope recipients.
    pub nrcpt: usize,
    /// The submitter (owner of the entry).
    pub uid: u32,
    /// Held by the outbound guard (the reason), not to be attempted.
    pub held: Option<String>,
}

/// What a pickup took in: the messages, and the notices the outbound
/// guard queued (alerts, storm summaries) to deliver now.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Messages taken in.
    pub picked: Vec<Picked>,
    /// The guard's notices (queue ids).
    pub notices: Vec<String>,
}

/// Move every committed maildrop entry into the queue and apply the
/// requests found there (`runner`: the queue runner's context, which a
/// bounce request needs). Returns what was picked up. The state file (what
/// `mailq` shows) is written at once only for a batch larger than
/// `attempt_now`: up to that many messages are about to be attempted by
/// idle workers, which write it if they do not finish them — saving two
/// file-system operations per message in the common case, which the
/// submitters' fsyncs would otherwise pay for.
pub fn pickup(
    cfg: &Config,
    spool: &Spool,
    runner: Option<&Ctx>,
    attempt_now: usize,
    requests: RequestHandler,
) -> io::Result<Batch> {
    let stale_after = cfg.queue.maildrop_stale_after;
    let dir_path = spool.maildrop();
    let dir = maildrop::open_dir(&dir_path)?;
    let mut picked = Vec::new();
    let names = queue::list_ids(&dir_path)?;
    let lazy = names.len() <= attempt_now;
    let mut memo_guard = BUSY.lock().unwrap_or_else(|p| p.into_inner());
    if memo_guard.as_ref().is_none_or(|(p, _)| *p != dir_path) {
        *memo_guard = Some((dir_path.clone(), HashMap::new()));
    }
    let old = std::mem::take(&mut memo_guard.as_mut().expect("set above").1);
    let mut busy = Memo::new();
    let now = Instant::now();
    let has_messages = names.iter().any(|n| crate::spool::is_valid_id(n));
    let mut deferred = Vec::new();
    let mut guard = if has_messages {
        crate::guard::Pickup::begin(cfg, spool)
    } else {
        None
    };
    for name in names {
        if let Some(&(seen, until)) = old.get(&name)
            && until > now
            && stamp(&dir, &name) == Some(seen)
        {
            busy.insert(name, (seen, until));
            continue;
        }
        match maildrop::claim(&dir, &name, stale_after) {
            // The entry stays open and locked until it has been dealt with.
            Ok(Claim::Ready {
                file: locked,
                uid,
                content,
            }) => match content {
                Content::Request(entry) => {
                    // An admin request from a user (e.g. delete my message):
                    // the owner of the file is who asks. While the guard's
                    // lock is held it is applied after the messages (a
                    // bounce request counts against the DSN cap, under that
                    // lock), its entry open and locked until then; past
                    // MAX_DEFERRED it waits in maildrop for the next pickup.
                    if guard.is_none() {
                        if requests(spool, runner, entry, uid, &name) {
                            let _ = std::fs::remove_file(dir_path.join(&name));
                        }
                    } else if deferred.len() < MAX_DEFERRED {
                        deferred.push((locked, entry, uid, name));
                    }
                }
                Content::Corrupt(why) => queue::quarantine(spool, &dir_path, &name, &why),
                Content::Message { env, len } => {
                    let hold = guard.as_mut().and_then(|g| {
                        g.check(&env, uid, &locked, crate::spool::format::HEADER_LEN, len)
                    });
                    // A held message's state is written (durably) before it
                    // enters queue/: a crash in between never leaves it
                    // queued without its hold. The guard's lock serialises
                    // pickups, so no other runner admits it meanwhile.
                    if let Some(h) = &hold {
                        let mut st = queue::initial_state(&env, len, uid);
                        st.held = true;
                        st.hold_reason = h.reason.clone();
                        st.storm = h.storm.clone();
                        if let Err(e) = queue::save_state(spool, &st, true) {
                            // Leave it in maildrop for the next pickup
                            // rather than queue it unheld.
                            log::error!("{name}: cannot write the held state, left for later: {e}");
                            continue;
                        }
                    }
                    // An -odi caller watches the state file: always write it.
                    let write_state = (!lazy || env.interactive) && hold.is_none();
                    match queue::admit(spool, &name, &env, len, uid, write_state)? {
                        Admitted::Queued => {}
                        Admitted::AlreadyQueued | Admitted::Gone => continue,
                    }
                    log::info!(
                        "{name}: from=<{}>, size={len}, nrcpt={}, uid={uid} ({})",
                        env.sender,
                        env.recipients.len(),
                        match &hold {
                            Some(h) => format!("held: {}", crate::escape::field(&h.reason)),
                            None => "queue active".to_string(),
                        }
                    );
                    picked.push(Picked {
                        id: name,
                        size: len,
                        nrcpt: env.recipients.len(),
                        uid,
                        held: hold.map(|h| h.reason),
                    });
                }
            },
            Ok(Claim::Busy) => {
                // Remember only an entry whose next step changes its inode:
                // one being written (commit and failure both change its
                // mode) or unreadable (judged by age). A ready or abandoned
                // entry that is still locked is between its last change and
                // the unlock that follows at once: look again next time.
                if let Some(st) = stamp(&dir, &name)
                    && st.mode & maildrop::READY_BIT == 0
                    && st.mode & 0o777 != maildrop::MODE_ABANDONED
                {
                    busy.insert(name, (st, now + RECHECK));
                }
            }
            Ok(Claim::Vanished) => {}
            Ok(Claim::Abandoned) => log::info!("{name}: removed an abandoned submission"),
            Ok(Claim::Corrupt(why)) => queue::quarantine(spool, &dir_path, &name, &why),
            Err(e) => log::warn!("{name}: cannot examine maildrop entry: {e}"),
        }
    }
    if let Some((_, memo)) = memo_guard.as_mut() {
        *memo = busy;
    }
    drop(memo_guard);
    let notices = guard.map(|g| g.finish()).unwrap_or_default();
    for (_locked, entry, uid, name) in deferred {
        if requests(spool, runner, entry, uid, &name) {
            let _ = std::fs::remove_file(dir_path.join(&name));
        }
    }
    Ok(Batch { picked, notices })
}

/// Record a batch in the event log (accepted, and held with the reason);
/// returns the ids to attempt now: the messages not held, and the guard's
/// notices.
pub fn record(batch: Batch) -> Vec<String> {
    let mut ids = Vec::new();
    for p in batch.picked {
        crate::spool::event_log::record_accepted(&p.id, p.size, p.nrcpt, p.uid);
        match &p.held {
            Some(reason) => crate::spool::event_log::record_held(&p.id, p.uid, reason),
            None => ids.push(p.id),
        }
    }
    ids.extend(batch.notices);
    ids
}

/// The queue runner's pickup: new mail (recorded as accepted in the event
/// log) and requests; `attempt_now`: how many new messages idle workers
/// will attempt at once (their state file is then written only if needed).
pub fn take_in(ctx: &Ctx, attempt_now: usize, requests: RequestHandler) -> Vec<String> {
    match pickup(&ctx.cfg, &ctx.spool, Some(ctx), attempt_now, requests) {
        Ok(batch) => record(batch),
        Err(e) => {
            log::error!(
                "cannot pick up new mail from {}: {e}",
                ctx.spool.maildrop().display()
            );
            Vec::new()
        }
    }
}
