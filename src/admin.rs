//! Admin commands on queued messages — `postern queue show|delete|hold|
//! release|retry|bounce` — the request entries through which callers who
//! cannot write the queue ask the daemon for a change, and the dispatch of
//! `postern stats`, `status` and `check`.
//!
//! Who may change what. The queue (`queue/`, `state/`, `tmp/`) belongs to
//! the spool owner (user `postern`), so a change is made **directly** by
//! root (who first becomes the spool owner, like a queue run) or by the
//! spool owner itself — in an unprivileged development setup that is the
//! developer, and members of group `postern` act directly too, the file
//! modes deciding. Everyone else goes through a **request**: the installed
//! set-group-id binary pre-opens a maildrop entry for every queue change
//! (`privilege::intent`), and the command commits
//! `POSTERN-REQUEST 1\n<verb> <target>\nend\n` into it exactly like a
//! message (`maildrop::commit_request`), pokes the daemon and waits up to
//! 10 seconds for it to be applied. The daemon's pickup hands such entries
//! to [`handle_request`] with the uid of the file's owner (`st_uid`, which
//! the caller cannot forge); it grants
//! - `delete <ID>` when the message's owner (`st_uid` of `queue/<ID>`) is
//!   that uid — a user may delete their own queued mail;
//! - `delete|hold|release|retry|bounce` of anything to root, the spool
//!   owner and members of group `postern`.
//!
//! Everything else is refused and logged. A non-root caller whose
//! pre-opened entry ends up unused (the change was refused up front, or
//! made directly) cannot unlink it: it commits
//! `POSTERN-REQUEST 1\nvoid\nend\n`, which the runner drops at the next
//! pickup. A `bounce` request is applied only by a queue runner (the daemon,
//! or a `postern queue run`), which has the configuration the DSN needs;
//! any other pickup leaves it in maildrop for one.
//!
//! Every change takes the per-message lock (`spool::queue::open(.., true)`,
//! waiting up to 15 seconds while a delivery holds it), so it never races a
//! delivery; state is written with `spool::queue::save_state`; each action
//! is logged (`ID: removed by uid N (postern queue delete)`, `ID: held by
//! uid N (…)`, …) and a removal is recorded in the event log. After a
//! change a running daemon is poked (`R`: rescan the state; `F` for `retry
//! ALL`). `retry` with no daemon and a caller allowed to deliver (root, or
//! an unprivileged development setup) delivers at once in this process, as
//! does the DSN of `bounce`.
//!
//! Exit status: 0 done; 64 usage; 66 no such message (EX_NOINPUT); 75 the
//! message stayed locked by a delivery (try again); 77 not permitted.
//! Bulk targets (`ALL`, `--deferred`) report and skip busy messages and
//! exit 0.
//!
//! `postern queue show ID [--json] [--body]` reads `state/ID`
//! (world-readable: the same facts `mailq` shows) and, where the caller may
//! read it (root, the spool owner), `queue/ID` for the envelope details and
//! the header section; `--body` is for root (and the owner of an
//! unprivileged development spool). JSON, one object:
//! ```text
//! {"queue_id": str, "queue_name": "active"|"deferred"|"hold"|"incoming",
//!  "arrival_time": int, "arrival": str (RFC 3339 UTC), "message_size": int,
//!  "sender": str, "uid": int, "user": str|null, "tries": int,
//!  "next_attempt": int|null (null: due now), "held": bool, "last_attempt": int|null,
//!  "relay": str|null, "message_id": str|null, "is_bounce": bool|null,
//!  "dsn": {"notify": str|null, "ret": str|null, "envid": str|null}|null,
//!  "recipients": [{"address": str, "orig_address": str,
//!     "status": "pending"|"deferred"|"sent"|"bounced",
//!     "last_reply": str|null, "changed": int}],
//!  "headers": str|null, "body": str|null}
//! ```
//! `user`, `message_id`, `is_bounce`, `dsn` and `headers` are null when the
//! caller may not read `queue/ID`; `body` is null without `--body`; message
//! bytes that are not UTF-8 are shown as U+FFFD. An id still in maildrop
//! (not yet picked up) shows only `queue_id`, `queue_name: "incoming"` and
//! `arrival_time`, the rest null or empty.

use crate::cli::postern::{Command, Target};
use crate::clock;
use crate::config::Config;
use crate::daemon::{self, Selection, runner};
use crate::error::{Error, Kind, Result, spool_write_kind};
use crate::mailq;
use crate::privilege::Prepared;
use crate::spool::queue::{self, Queued};
use crate::spool::state::{RcptStatus, State};
use crate::spool::{Spool, maildrop};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::{Duration, Instant};

/// First bytes of a request entry in maildrop.
pub const REQUEST_MAGIC: &[u8; 16] = b"POSTERN-REQUEST ";

/// Longest request file.
const MAX_REQUEST: u64 = 1024;
/// How long a direct change waits for a delivery to release the message.
const LOCK_WAIT: Duration = Duration::from_secs(15);
/// How long the daemon's pickup waits for the lock (it must not stall).
const REQUEST_LOCK_WAIT: Duration = Duration::from_secs(2);
/// How long a caller waits for the daemon to apply its request.
const REQUEST_WAIT: Duration = Duration::from_secs(10);
/// The reason recorded for every recipient of `postern queue bounce`.
pub const BOUNCE_REASON: &str = "returned to sender by the administrator";

/// A queue change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Remove without notice.
    Delete,
    /// Keep from delivery.
    Hold,
    /// Undo hold.
    Release,
    /// Next attempt now.
    Retry,
    /// Return to sender now.
    Bounce,
}

impl Op {
    /// The verb in commands, requests and logs.
    pub fn verb(self) -> &'static str {
        match self {
            Op::Delete => "delete",
            Op::Hold => "hold",
            Op::Release => "release",
            Op::Retry => "retry",
            Op::Bounce => "bounce",
        }
    }
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "delete" => Op::Delete,
            "hold" => Op::Hold,
            "release" => Op::Release,
            "retry" => Op::Retry,
            "bounce" => Op::Bounce,
            _ => return None,
        })
    }
    fn allows(self, t: &Target) -> bool {
        match t {
            Target::Id(_) => true,
            Target::All => matches!(self, Op::Delete | Op::Retry),
            Target::Deferred => self == Op::Delete,
        }
    }
}

fn target_word(t: &Target) -> String {
    match t {
        Target::Id(id) => id.clone(),
        Target::All => "ALL".into(),
        Target::Deferred => "DEFERRED".into(),
    }
}

/// Run an admin command.
pub fn run(cfg: &Config, p: &mut Prepared, cmd: Command) -> Result<u8> {
    let spool = Spool::new(&cfg.spool_dir);
    match cmd {
        Command::QueueShow { id, json, body } => show(p, &spool, &id, json, body),
        Command::Stats { prometheus, json } => {
            let incoming = incoming(p, &spool);
            crate::stats::command(&spool, incoming, prometheus, json)
        }
        Command::Status { json } => {
            let incoming = incoming(p, &spool);
            crate::status::command(cfg, &spool, incoming, json)
        }
        Command::Check => crate::check::command(cfg),
        Command::QueueDelete(t) => change(cfg, p, &spool, Op::Delete, t),
        Command::QueueHold(id) => change(cfg, p, &spool, Op::Hold, Target::Id(id)),
        Command::QueueRelease(id) => change(cfg, p, &spool, Op::Release, Target::Id(id)),
        Command::QueueRetry(t) => change(cfg, p, &spool, Op::Retry, t),
        Command::QueueBounce(id) => change(cfg, p, &spool, Op::Bounce, Target::Id(id)),
        other => Err(Error::new(
            Kind::Software,
            format!("{other:?} is not an admin command"),
        )),
    }
}

fn incoming(p: &mut Prepared, spool: &Spool) -> Vec<String> {
    match p.maildrop_dir.take() {
        Some(Ok(dir)) => mailq::maildrop_names(dir),
        _ => queue::list_ids(&spool.maildrop()).unwrap_or_default(),
    }
}

// ---- who may do what -------------------------------------------------------

/// How a caller's change is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Authority {
    /// Writes the queue itself.
    Direct,
    /// May do anything, through the daemon.
    GroupRequest,
    /// May delete their own messages, through the daemon.
    Owner,
}

fn spool_owner(spool: &Spool) -> Option<u32> {
    std::fs::metadata(spool.root()).ok().map(|m| m.uid())
}

fn postern_gid() -> Option<u32> {
    nix::unistd::Group::from_name("postern")
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// Is this process's caller in group `postern` (primary or supplementary)?
fn caller_in_group(p: &Prepared) -> bool {
    let Some(g) = postern_gid() else {
        return false;
    };
    p.gid == g
        || nix::unistd::getgroups()
            .map(|v| v.iter().any(|x| x.as_raw() == g))
            .unwrap_or(false)
}

/// Is `uid` (a requester) in group `postern`, per the group database?
fn uid_in_group(uid: u32) -> bool {
    let Some(g) = postern_gid() else {
        return false;
    };
    let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return false;
    };
    if u.gid.as_raw() == g {
        return true;
    }
    let Ok(name) = std::ffi::CString::new(u.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, u.gid)
        .map(|v| v.iter().any(|x| x.as_raw() == g))
        .unwrap_or(false)
}

fn authority(p: &Prepared, spool: &Spool) -> Authority {
    if p.uid == 0 || spool_owner(spool) == Some(p.uid) {
        return Authority::Direct;
    }
    if caller_in_group(p) {
        return if p.privileged {
            Authority::GroupRequest
        } else {
            Authority::Direct
        };
    }
    Authority::Owner
}

fn may_deliver(p: &Prepared) -> bool {
    !p.privileged || p.uid == 0
}

fn may_read_body(p: &Prepared, spool: &Spool) -> bool {
    p.uid == 0 || (!p.privileged && spool_owner(spool) == Some(p.uid))
}

/// Content of a request that asks for nothing: how a caller who cannot
/// unlink its unused pre-opened entry gets rid of it (the runner drops it
/// at the next pickup instead of after `maildrop_stale_after`).
pub const VOID_REQUEST: &[u8] = b"POSTERN-REQUEST 1\nvoid\nend\n";

/// Dispose of the maildrop entry the set-group-id start-up opened for a
/// request when no request is made: root unlinks it; anyone else commits
/// it as a void request and pokes the daemon, so it does not linger as an
/// "incoming" entry in mailq.
fn discard_entry(p: &mut Prepared) {
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
        daemon::poke(&t, b'W');
    }
}

// ---- applying a change -----------------------------------------------------

/// Open `queue/<id>` with its lock, waiting up to `wait` while a delivery
/// holds it. `Ok(None)`: still busy.
fn lock(spool: &Spool, id: &str, wait: Duration) -> io::Result<Option<Queued>> {
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
enum Outcome {
    /// Done; the text says what.
    Done(String),
    /// Nothing to do (already so); the text says why.
    Unchanged(String),
}

fn now() -> f64 {
    clock::unix_f64(clock::now())
}

/// Apply `op` to the locked message `q` on behalf of `uid`; `how` names
/// the command or request for the log. Bounce needs `ctx`.
fn apply(
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
            crate::stats::record_removed(id, now() - q.env.arrival);
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
fn target_ids(spool: &Spool, t: &Target) -> Vec<String> {
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
    }
}

fn change(cfg: &Config, p: &mut Prepared, spool: &Spool, op: Op, t: Target) -> Result<u8> {
    let result = change_as(cfg, p, spool, op, t);
    discard_entry(p); // when it was not used for a request
    result
}

fn change_as(cfg: &Config, p: &mut Prepared, spool: &Spool, op: Op, t: Target) -> Result<u8> {
    if !op.allows(&t) {
        return Err(Error::new(
            Kind::Usage,
            format!("queue {} takes a queue id", op.verb()),
        ));
    }
    match authority(p, spool) {
        Authority::Direct => change_direct(cfg, p, spool, op, t),
        Authority::GroupRequest => request(p, spool, op, t),
        Authority::Owner if op == Op::Delete && matches!(t, Target::Id(_)) => {
            request(p, spool, op, t)
        }
        Authority::Owner => Err(Error::new(
            Kind::NoPerm,
            format!(
                "only root and members of group postern may {} queued mail; a user may delete their own messages",
                op.verb()
            ),
        )),
    }
}

fn change_direct(cfg: &Config, p: &mut Prepared, spool: &Spool, op: Op, t: Target) -> Result<u8> {
    discard_entry(p);
    if !spool.queue().is_dir() {
        return match t {
            Target::Id(id) => Err(no_such(&id)),
            _ => {
                println!("the queue is empty");
                Ok(0)
            }
        };
    }
    daemon::become_spool_owner(spool)?;
    if cfg.stats.enabled {
        crate::stats::init(spool.events(), cfg.stats.max_log_bytes);
    }
    // Take in what waits in maildrop, so ALL and a just-submitted id count.
    if let Ok(picked) = queue::pickup(spool, None, cfg.queue.maildrop_stale_after, 0) {
        for p in picked {
            crate::stats::record_accepted(&p.id, p.size, p.nrcpt);
        }
    }
    let ctx = (op == Op::Bounce).then(|| runner::Ctx::new(cfg.clone(), 1));
    let how = format!("postern queue {}", op.verb());
    let single = matches!(t, Target::Id(_));
    let ids = target_ids(spool, &t);
    let mut changed: Vec<String> = Vec::new();
    let mut busy = 0;
    for id in &ids {
        let q = match lock(spool, id, if single { LOCK_WAIT } else { LOCK_WAIT / 3 }) {
            Ok(Some(q)) => q,
            Ok(None) => {
                if single {
                    return Err(Error::new(
                        Kind::TempFail,
                        format!("{id}: being delivered right now; try again in a moment"),
                    ));
                }
                println!("{id}: skipped: being delivered right now");
                busy += 1;
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if single {
                    return Err(no_such(id));
                }
                continue; // delivered meanwhile
            }
            Err(e) => {
                let err = Error::io(io_kind(&e), format!("{id}: cannot open"), &e);
                if single {
                    return Err(err);
                }
                println!("{err}");
                continue;
            }
        };
        match apply(spool, ctx.as_ref(), op, &q, p.uid, &how) {
            Ok(Outcome::Done(what)) => {
                println!("{id}: {what}");
                changed.push(id.clone());
            }
            Ok(Outcome::Unchanged(why)) => println!("{id}: unchanged: {why}"),
            Err(e) => {
                let err = Error::io(io_kind(&e), format!("{id}: cannot {}", op.verb()), &e);
                if single {
                    return Err(err);
                }
                println!("{err}");
            }
        }
    }
    if !single {
        println!(
            "{} message(s) {}{}",
            changed.len(),
            match op {
                Op::Delete => "deleted",
                Op::Retry => "due now",
                _ => "changed",
            },
            if busy > 0 {
                format!(", {busy} skipped (busy)")
            } else {
                String::new()
            }
        );
    }
    // Let a running daemon see the change; deliver now where that is ours to do.
    let mut deliver: Vec<String> = Vec::new();
    match op {
        Op::Retry => deliver = changed.clone(),
        Op::Bounce => {
            if let Some(c) = &ctx {
                deliver = c.take_new_ids();
            }
        }
        _ => {}
    }
    let byte = if op == Op::Retry && t == Target::All {
        b'F'
    } else {
        b'R'
    };
    let poked = !changed.is_empty()
        && daemon::daemon_running(spool)
        && p.take_trigger(spool)
            .is_some_and(|f| daemon::poke(&f, byte));
    if poked {
        if !deliver.is_empty() {
            println!(
                "asked the daemon to deliver {} message(s) now",
                deliver.len()
            );
        }
    } else if !deliver.is_empty() {
        if may_deliver(p) {
            report_run(daemon::run_once(cfg.clone(), Selection::Ids(deliver))?);
        } else {
            println!("no postern daemon is running: the mail leaves when it starts");
        }
    } else if op == Op::Release && !changed.is_empty() && !daemon::daemon_running(spool) {
        println!("no postern daemon is running: postern queue run delivers it now");
    }
    Ok(0)
}

fn report_run(results: Vec<(String, runner::Done)>) {
    for (id, d) in results {
        match d {
            runner::Done::Finished { sent, bounced, .. } => {
                println!("{id}: delivery finished: {sent} sent, {bounced} bounced")
            }
            runner::Done::Deferred(why) => println!("{id}: deferred: {why}"),
            runner::Done::Busy => println!("{id}: being delivered by another runner"),
            runner::Done::Skipped => println!("{id}: skipped"),
        }
    }
}

fn io_kind(e: &io::Error) -> Kind {
    match e.kind() {
        io::ErrorKind::PermissionDenied => Kind::NoPerm,
        io::ErrorKind::NotFound => Kind::NoInput,
        io::ErrorKind::InvalidData => Kind::DataErr,
        _ => Kind::TempFail,
    }
}

fn no_such(id: &str) -> Error {
    Error::new(Kind::NoInput, format!("{id}: no such message in the queue"))
}

// ---- requests --------------------------------------------------------------

/// Write a request entry, poke the daemon and wait (bounded) for it.
fn request(p: &mut Prepared, spool: &Spool, op: Op, t: Target) -> Result<u8> {
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
                    Some(Ok(d)) => d.try_clone().map(mailq::maildrop_names).unwrap_or_default(),
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
    let text = format!(
        "POSTERN-REQUEST 1\n{} {}\nend\n",
        op.verb(),
        target_word(&t)
    );
    maildrop::commit_request(&req_id, &file, &dir, text.as_bytes())
        .map_err(|e| Error::io(spool_write_kind(&e), "cannot commit the request", &e))?;
    log::info!(
        "{req_id}: request \"{} {}\" by uid {uid} queued for the daemon",
        op.verb(),
        target_word(&t)
    );
    let poked = p
        .take_trigger(spool)
        .is_some_and(|f| daemon::poke(&f, b'W'));
    if !poked || !daemon::daemon_running(spool) {
        println!("request queued; the daemon will apply it when it runs");
        return Ok(0);
    }
    let start = Instant::now();
    loop {
        // The daemon unlinks the request once it has applied it.
        if file.metadata().map(|m| m.nlink() == 0).unwrap_or(true) {
            break;
        }
        if start.elapsed() >= REQUEST_WAIT {
            println!("request queued; the daemon has not applied it yet (see the mail log)");
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Target::Id(id) = &t else {
        println!("request applied by the daemon (see the mail log for each message)");
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
        println!(
            "{id}: {}",
            match op {
                Op::Delete => "deleted",
                Op::Hold => "put on hold",
                Op::Release => "released",
                _ => "due now",
            }
        );
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

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What to do.
    pub op: Op,
    /// To which messages.
    pub target: Target,
}

/// Parse a request file strictly: exactly
/// `POSTERN-REQUEST 1\n<verb> <target>\nend\n`.
pub fn parse_request(bytes: &[u8]) -> std::result::Result<Request, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let body = text
        .strip_prefix("POSTERN-REQUEST 1\n")
        .ok_or("bad first line")?
        .strip_suffix("\nend\n")
        .ok_or("no end line")?;
    if body.contains('\n') || body.contains('\r') {
        return Err("more than one command".into());
    }
    let (verb, arg) = body.split_once(' ').ok_or("no target")?;
    let op = Op::parse(verb).ok_or_else(|| format!("unknown request {verb:?}"))?;
    let target = match arg {
        "ALL" => Target::All,
        "DEFERRED" => Target::Deferred,
        id if crate::spool::is_valid_id(id) => Target::Id(id.to_string()),
        _ => return Err("bad target".into()),
    };
    if !op.allows(&target) {
        return Err(format!("{verb} takes a queue id"));
    }
    Ok(Request { op, target })
}

fn read_request(file: &File) -> std::result::Result<Request, String> {
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    if size > MAX_REQUEST {
        return Err(format!("{size} bytes is too large for a request"));
    }
    let mut buf = vec![0u8; size as usize];
    file.read_exact_at(&mut buf, 0).map_err(|e| e.to_string())?;
    // Nothing may follow what the size said.
    let mut extra = [0u8; 1];
    if matches!(file.read_at(&mut extra, size), Ok(n) if n > 0) {
        return Err("file grew while being read".into());
    }
    parse_request(&buf)
}

/// Handle a request entry `name` written by user `uid` (the file's owner),
/// from the queue runner's pickup. Never fails: every outcome is logged.
pub fn handle_request(
    spool: &Spool,
    ctx: Option<&runner::Ctx>,
    file: &File,
    uid: u32,
    name: &str,
) -> bool {
    let mut void = [0u8; VOID_REQUEST.len() + 1];
    if matches!(file.read_at(&mut void, 0), Ok(n) if &void[..n] == VOID_REQUEST) {
        log::debug!("{name}: unused request entry of uid {uid} dropped");
        return true;
    }
    let req = match read_request(file) {
        Ok(r) => r,
        Err(why) => {
            log::warn!("{name}: malformed request from uid {uid} ignored: {why}");
            return true;
        }
    };
    let admin = uid == 0 || uid == nix::unistd::geteuid().as_raw() || uid_in_group(uid);
    let what = format!("{} {}", req.op.verb(), target_word(&req.target));
    let owner_delete = req.op == Op::Delete && matches!(req.target, Target::Id(_));
    if !admin && !owner_delete {
        log::warn!(
            "{name}: request \"{what}\" from uid {uid} refused: only root and group postern may do that"
        );
        return true;
    }
    if req.op == Op::Bounce && ctx.is_none() {
        // Only a queue runner has what a bounce needs: leave it for one.
        return false;
    }
    let how = format!("request {name}");
    let mut changed = false;
    for id in target_ids(spool, &req.target) {
        let q = match lock(spool, &id, REQUEST_LOCK_WAIT) {
            Ok(Some(q)) => q,
            Ok(None) => {
                log::warn!(
                    "{name}: request \"{what}\" from uid {uid}: {id} is being delivered; not applied"
                );
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
        if let Ok(f) = crate::privilege::open_trigger_unprivileged(spool) {
            daemon::poke(&f, b'R');
        }
    }
    true
}

// ---- queue show --------------------------------------------------------------

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
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

fn body_of(q: &Queued) -> io::Result<String> {
    let mut buf = Vec::new();
    let mut f = &q.file;
    use std::io::Seek;
    f.seek(io::SeekFrom::Start(q.start))?;
    f.take(q.len).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn status_word(s: RcptStatus) -> &'static str {
    match s {
        RcptStatus::Pending => "pending",
        RcptStatus::Deferred => "deferred",
        RcptStatus::Sent => "sent",
        RcptStatus::Bounced => "bounced",
    }
}

fn show(p: &mut Prepared, spool: &Spool, id: &str, json: bool, body: bool) -> Result<u8> {
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
            let incoming = incoming(p, spool);
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
    if json {
        println!(
            "{}",
            show_json(&st, q.as_ref(), headers.as_deref(), body_text.as_deref())
        );
    } else {
        print!(
            "{}",
            show_text(&st, q.as_ref(), headers.as_deref(), body_text.as_deref())
        );
    }
    Ok(0)
}

fn show_incoming(id: &str, json: bool) -> Result<u8> {
    if json {
        let head = mailq::QueueHead::incoming(id);
        println!("{}", mailq::to_json(&mailq::QueueDetail::empty(head)));
    } else {
        println!("{id}: waiting for pickup (not yet in the queue)");
    }
    Ok(0)
}

fn show_json(st: &State, q: Option<&Queued>, headers: Option<&str>, body: Option<&str>) -> String {
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
        ..mailq::QueueDetail::empty(mailq::QueueHead::queued(st))
    })
}

fn show_text(st: &State, q: Option<&Queued>, headers: Option<&str>, body: Option<&str>) -> String {
    let now = now();
    let human = |s: f64| clock::human_duration(clock::secs(s));
    let mut o = String::new();
    let _ = writeln!(o, "Queue ID:      {}", st.id);
    let state = if st.held {
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
    let _ = writeln!(o, "Sender:        <{}>", st.sender);
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
            let _ = writeln!(o, "Message-ID:    {m}");
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
        let _ = writeln!(o, "  {:<9}{}{orig}", status_word(r.status), r.address);
        if !r.reply.is_empty() {
            let _ = writeln!(o, "           {}", r.reply);
        }
    }
    match headers {
        Some(h) => {
            let _ = writeln!(o, "Headers:");
            for l in h.lines() {
                let _ = writeln!(o, "  {}", l.trim_end_matches('\r'));
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
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_strictly() {
        let ok = parse_request(b"POSTERN-REQUEST 1\ndelete 1K1D6V0JC6N9J9M\nend\n").unwrap();
        assert_eq!(ok.op, Op::Delete);
        assert_eq!(ok.target, Target::Id("1K1D6V0JC6N9J9M".into()));
        let b = parse_request(b"POSTERN-REQUEST 1\nbounce 1K1D6V0JC6N9J9M\nend\n").unwrap();
        assert_eq!(b.op, Op::Bounce);
        assert_eq!(
            parse_request(b"POSTERN-REQUEST 1\ndelete DEFERRED\nend\n")
                .unwrap()
                .target,
            Target::Deferred
        );
        for bad in [
            &b"POSTERN-REQUEST 1\ndelete 1K1D6V0JC6N9J9M\nend"[..],
            b"POSTERN-REQUEST 2\ndelete 1K1D6V0JC6N9J9M\nend\n",
            b"POSTERN-REQUEST 1\ndelete ../../etc/passwd\nend\n",
            b"POSTERN-REQUEST 1\nbounce ALL\nend\n",
            b"POSTERN-REQUEST 1\nfrobnicate 1K1D6V0JC6N9J9M\nend\n",
            b"POSTERN-REQUEST 1\nhold ALL\nend\n",
            b"POSTERN-REQUEST 1\ndelete 1K1D6V0JC6N9J9M\ndelete ALL\nend\n",
            b"POSTERN-REQUEST 1\ndelete  1K1D6V0JC6N9J9M\nend\n",
            b"POSTERN-REQUEST 1\r\ndelete 1K1D6V0JC6N9J9M\r\nend\r\n",
            b"POSTERN-REQUEST 1\ndelete\nend\n",
        ] {
            assert!(
                parse_request(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
