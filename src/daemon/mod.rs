//! The queue runner as a service (`postern daemon`) and as a one-shot run
//! (`postern queue run`, `sendmail -q`, the detached run after a
//! submission when no daemon answers, `-odi`).
//!
//! The daemon holds `run.lock` for its lifetime (so a second daemon, or a
//! detached run, knows it is there), reads the trigger FIFO (a byte from a
//! submitter: `W` new mail, `F` flush everything now — root's or the spool
//! owner's flush —, `f` a flush by any other user: at most one a minute,
//! delivering what is due without resetting retry times or relay failures,
//! `R` rescan after an admin change), keeps the retry schedule in memory, ordered by due time (built from
//! `state/` at start and after a reload, merged with it in slices every few
//! minutes: `service/timers.rs`), and hands due messages to the
//! worker pool. No busy polling: it sleeps in poll(2) until a poke, a signal,
//! a worker finishing, or the next retry time. SIGTERM/SIGINT stop it after
//! the transactions in flight end, or after `[queue] shutdown_timeout`
//! (their messages stay queued for the next start); SIGHUP reloads the
//! configuration.
//!
//! The service loop, one named step at a time, is [`service`]; pickup from
//! maildrop (messages into the queue, request entries to the handler the
//! front end gave) is [`pickup`]; delivery is [`runner`]; backoff is
//! [`schedule`]; what a submitter does after its commit is [`handoff`].

pub mod handoff;
pub mod pickup;
pub use pickup::RequestHandler;
pub mod runner;
pub mod schedule;
pub mod service;

use crate::config::{Config, ConfigSource};
use crate::error::{Error, Kind, Result};
use crate::spool::{Spool, queue};
use runner::{Ctx, Done, Pool};
use std::fs::File;
use std::time::Duration;

/// How often the full state directory is rescanned.
const RESCAN: Duration = Duration::from_secs(300);
/// Longest sleep between wake-ups.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// At most one flush by a user other than root and the spool owner (`f`)
/// is honoured in this interval.
pub const USER_FLUSH_EVERY: Duration = Duration::from_secs(60);

/// The poke byte of a flush (`postern flush`, `sendmail -q`) by `uid`
/// (`privileged`: through the installed set-group-id binary): `F` (flush
/// everything now and forget relay failures) for root and the spool owner
/// (user `postern`), `f` (rate-limited; delivers what is due, keeps every
/// retry time and the relays' failures) for everyone else. The FIFO carries
/// no credentials, but only the set-group-id binary (or the spool owner)
/// can write it, and it writes this byte.
pub fn flush_byte(privileged: bool, uid: u32, spool: &Spool) -> u8 {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(spool.root()).map(|m| m.uid()).ok();
    if uid == 0 || owner == Some(uid) || (!privileged && owner.is_none()) {
        b'F'
    } else {
        b'f'
    }
}

/// Which messages a one-shot run takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Those whose next attempt is due.
    Due,
    /// Every queued message, now (flush).
    All,
    /// These ids.
    Ids(Vec<String>),
}

/// When started as root, continue as the owner of the spool (user
/// `postern` in an installed system), so every file the runner writes has
/// the right owner. A root-owned spool (tests, development) keeps root.
pub fn become_spool_owner(spool: &Spool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let md = match std::fs::metadata(spool.root()) {
        Ok(m) => m,
        // A development spool that does not exist yet: it is created as us.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::io(
                Kind::TempFail,
                format!("spool {}", spool.root().display()),
                &e,
            ));
        }
    };
    if md.uid() == 0 {
        return Ok(());
    }
    become_user(md.uid(), md.gid()).map_err(|e| {
        Error::new(
            Kind::OsErr,
            format!("cannot switch to the spool owner: {e}"),
        )
    })
}

/// May this caller run the queue itself (and so use the relay secret)?
/// An unprivileged (development) process may; of the installed setgid
/// binary's callers only root and the spool owner (user `postern`) may.
pub fn may_run_queue(privileged: bool, uid: u32, spool: &Spool) -> bool {
    use std::os::unix::fs::MetadataExt;
    !privileged || uid == 0 || std::fs::metadata(spool.root()).is_ok_and(|m| m.uid() == uid)
}

fn open_lock(spool: &Spool) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(spool.run_lock())
        .map_err(|e| {
            Error::io(
                Kind::TempFail,
                format!("cannot open {}", spool.run_lock().display()),
                &e,
            )
        })
}

fn prepare(cfg: &Config) -> Result<Spool> {
    let spool = Spool::new(&cfg.spool_dir);
    become_spool_owner(&spool)?;
    spool.ensure_layout().map_err(|e| {
        Error::io(
            Kind::TempFail,
            format!("cannot prepare the spool {}", spool.root().display()),
            &e,
        )
    })?;
    if cfg.stats.enabled {
        crate::spool::event_log::init(spool.events(), cfg.stats.max_log_bytes);
    }
    Ok(spool)
}

/// Deliver once in this process and return what happened to each message.
pub fn run_once(
    cfg: Config,
    sel: Selection,
    requests: RequestHandler,
) -> Result<Vec<(String, Done)>> {
    run_once_as(cfg, sel, false, requests)
}

/// `-odi` in this process: the caller reports failures itself.
pub fn run_interactive(
    cfg: Config,
    ids: Vec<String>,
    requests: RequestHandler,
) -> Result<Vec<(String, Done)>> {
    run_once_as(cfg, Selection::Ids(ids), true, requests)
}

fn run_once_as(
    cfg: Config,
    sel: Selection,
    caller_is_runner: bool,
    requests: RequestHandler,
) -> Result<Vec<(String, Done)>> {
    let spool = prepare(&cfg)?;
    let parallel = cfg.queue.parallel;
    let mut ctx = Ctx::new(cfg, 1);
    ctx.caller_is_runner = caller_is_runner;
    let taken = pickup::take_in(&ctx, 0, requests);
    let mut ids = match &sel {
        Selection::Due => runner::due(&ctx, false),
        Selection::All => runner::due(&ctx, true),
        // Named ids are forced, but never past a hold (a -odi caller's
        // message held by the outbound guard stays held).
        Selection::Ids(v) => v
            .iter()
            .filter(|id| !queue::load_state(&ctx.spool, id).is_some_and(|s| s.held))
            .cloned()
            .collect(),
    };
    // The outbound guard's notices leave in the same run.
    for id in taken {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        queue::remove_orphan_states(&spool);
        return Ok(Vec::new());
    }
    let force = !matches!(sel, Selection::Due);
    let pool = Pool::new(ctx, parallel.min(ids.len()), true);
    for id in &ids {
        pool.push(id, force && matches!(sel, Selection::Ids(_)));
    }
    pool.wait_idle();
    // Bounces queued during the run leave in the same run.
    for _ in 0..3 {
        let new = pool.ctx().take_new_ids();
        if new.is_empty() {
            break;
        }
        for id in &new {
            pool.push(id, false);
        }
        pool.wait_idle();
    }
    let results = pool.take_results();
    pool.shutdown();
    // A runner killed between removing a finished message and its state
    // left an orphan state file (mailq would list it): tidy up.
    queue::remove_orphan_states(&spool);
    Ok(results)
}

/// The detached run a submitter starts when no daemon answers: runs while
/// new mail keeps arriving, and steps aside when someone else holds the run
/// lock (that holder re-checks maildrop after releasing it).
pub fn run_auto(cfg: Config, requests: RequestHandler) -> Result<()> {
    let _ = nix::unistd::setsid();
    let spool = prepare(&cfg)?;
    let lock = open_lock(&spool)?;
    loop {
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(()),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(Kind::TempFail, "run lock", &e));
            }
        }
        run_once(cfg.clone(), Selection::Due, requests)?;
        let _ = lock.unlock();
        // Mail committed while we held the lock was left to us: look again.
        let pending = queue::list_ids(&spool.maildrop())
            .map(|v| !v.is_empty())
            .unwrap_or(false);
        if !pending {
            return Ok(());
        }
    }
}

/// `postern daemon`: check the secrets, bind the SMTP listener's sockets
/// (before leaving root; `inherited`: those systemd passed), take the run
/// lock, clean the spool, start the listener, then run the service loop
/// (`service.rs`) until SIGTERM, and stop the listener.
pub fn daemon(
    cfg: Config,
    source: ConfigSource,
    requests: RequestHandler,
    inherited: Vec<std::os::fd::OwnedFd>,
) -> Result<u8> {
    for r in &cfg.relays {
        crate::deliver::credentials::check_secret_file(r)?;
    }
    let listeners = crate::listen::bind(&cfg.listen, inherited)?;
    let spool = prepare(&cfg)?;
    let lock = open_lock(&spool)?;
    service::take_run_lock(&lock, &spool)?;
    queue::clean(&spool);
    let (wake, done_w) = service::Wakeups::open(&spool)?;
    let listening = if listeners.is_empty() {
        None
    } else {
        Some(listeners.start(cfg.clone(), source.clone())?)
    };
    let shutdown_timeout = cfg.queue.shutdown_timeout;
    crate::guard::keep_seen_keys_in_memory();
    service::Service::start(cfg, source, requests, wake, done_w).run();
    crate::guard::flush_seen(&spool);
    if let Some(l) = listening {
        let left = l.stop(shutdown_timeout);
        if left > 0 {
            log::warn!(
                "{left} SMTP session(s) still open at exit: their messages were not acknowledged"
            );
        }
    }
    drop(lock);
    log::info!("daemon stopped");
    Ok(0)
}

/// Poke a running daemon through the trigger FIFO (`byte`: W, F, f or R).
/// Returns false when no daemon is reading it. (The trigger is part of the
/// spool's layout; this is `spool::poke`.)
pub use crate::spool::poke;

/// Become `uid`/`gid` for good (a runner started as root continuing as the
/// spool owner). Supplementary groups are reduced to `gid`.
fn become_user(uid: u32, gid: u32) -> std::result::Result<(), String> {
    use nix::unistd::{Gid, Uid};
    let g = Gid::from_raw(gid);
    let u = Uid::from_raw(uid);
    nix::unistd::setgroups(&[g]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setresgid(g, g, g).map_err(|e| format!("setresgid: {e}"))?;
    nix::unistd::setresuid(u, u, u).map_err(|e| format!("setresuid: {e}"))?;
    let r = nix::unistd::getresuid().map_err(|e| format!("getresuid: {e}"))?;
    if r.real != u || r.effective != u || r.saved != u {
        return Err("the user id did not change".into());
    }
    Ok(())
}
