//! The queue verbs: `postern queue delete|hold|release|retry|bounce`.
//!
//! A caller who may write the queue (root, who first becomes the spool
//! owner like a queue run; the spool owner; in an unprivileged development
//! setup also members of group `postern`) changes it directly: maildrop is
//! picked up first (so `ALL` and a just-submitted id count), then each
//! message is locked and changed (`apply`), a running daemon is poked (`R`,
//! `F` for `retry ALL`), and `retry` (and the DSN of `bounce`) is delivered
//! at once in this process when no daemon runs and the caller may deliver.
//! Everyone else goes through a request entry (`requests`). The
//! pre-opened maildrop entry that ends up unused is disposed of.
//!
//! Exit status: 0 done; 64 usage; 66 no such message (EX_NOINPUT); 75 the
//! message stayed locked by a delivery (try again); 77 not permitted.
//! Bulk targets (`ALL`, `--deferred`) report and skip busy messages and
//! exit 0.

use super::apply::{LOCK_WAIT, Outcome, apply, io_kind, lock, no_such, target_ids};
use super::caller::{Authority, Caller, authority, may_deliver};
use super::requests;
use crate::config::Config;
use crate::daemon::{self, Selection, pickup, runner};
use crate::error::{Error, Kind, Result};
use crate::spool::Spool;
use crate::spool::request::{Op, Target};
use std::io;

pub fn change(cfg: &Config, p: &mut Caller, spool: &Spool, op: Op, t: Target) -> Result<u8> {
    let result = change_as(cfg, p, spool, op, t);
    requests::discard_entry(p); // when it was not used for a request
    result
}

fn change_as(cfg: &Config, p: &mut Caller, spool: &Spool, op: Op, t: Target) -> Result<u8> {
    if !op.allows(&t) {
        return Err(Error::new(
            Kind::Usage,
            format!("queue {} takes a queue id", op.verb()),
        ));
    }
    if let Target::User(u) = &t
        && crate::guard::resolve_user(u).is_none()
    {
        return Err(Error::new(
            Kind::NoUser,
            format!("{}: no such user", crate::escape::field(u)),
        ));
    }
    match authority(p, spool) {
        Authority::Direct => change_direct(cfg, p, spool, op, t),
        Authority::GroupRequest => requests::request(p, spool, op, t),
        Authority::Owner if op == Op::Delete && matches!(t, Target::Id(_)) => {
            requests::request(p, spool, op, t)
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

fn change_direct(cfg: &Config, p: &mut Caller, spool: &Spool, op: Op, t: Target) -> Result<u8> {
    requests::discard_entry(p);
    if !spool.queue().is_dir() {
        return match t {
            Target::Id(id) => Err(no_such(&id)),
            _ => {
                crate::stdout::line(format_args!("the queue is empty"));
                Ok(0)
            }
        };
    }
    daemon::become_spool_owner(spool)?;
    if cfg.stats.enabled {
        crate::spool::event_log::init(spool.events(), cfg.stats.max_log_bytes);
    }
    // Take in what waits in maildrop, so ALL and a just-submitted id count.
    if let Ok(batch) = pickup::pickup(cfg, spool, None, 0, super::requests::handle) {
        // Not delivered here: a running daemon (poked below) or the next
        // queue run delivers them.
        let _ = pickup::record(batch);
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
                crate::stdout::line(format_args!("{id}: skipped: being delivered right now"));
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
                crate::stdout::line(format_args!("{err}"));
                continue;
            }
        };
        match apply(spool, ctx.as_ref(), op, &q, p.uid, &how) {
            Ok(Outcome::Done(what)) => {
                crate::stdout::line(format_args!("{id}: {what}"));
                changed.push(id.clone());
            }
            Ok(Outcome::Unchanged(why)) => crate::stdout::line(format_args!(
                "{id}: unchanged: {}",
                crate::escape::field(&why)
            )),
            Err(e) => {
                let err = Error::io(io_kind(&e), format!("{id}: cannot {}", op.verb()), &e);
                if single {
                    return Err(err);
                }
                crate::stdout::line(format_args!("{err}"));
            }
        }
    }
    if !single {
        crate::stdout::line(format_args!(
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
        ));
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
        && spool.daemon_running()
        && p.take_trigger(spool)
            .is_some_and(|f| daemon::poke(&f, byte));
    if poked {
        if !deliver.is_empty() {
            crate::stdout::line(format_args!(
                "asked the daemon to deliver {} message(s) now",
                deliver.len()
            ));
        }
    } else if !deliver.is_empty() {
        if may_deliver(p) {
            report_run(daemon::run_once(
                cfg.clone(),
                Selection::Ids(deliver),
                super::requests::handle,
            )?);
        } else {
            crate::stdout::line(format_args!(
                "no postern daemon is running: the mail leaves when it starts"
            ));
        }
    } else if op == Op::Release && !changed.is_empty() && !spool.daemon_running() {
        crate::stdout::line(format_args!(
            "no postern daemon is running: postern queue run delivers it now"
        ));
    }
    Ok(0)
}

fn report_run(results: Vec<(String, runner::Done)>) {
    for (id, d) in results {
        match d {
            runner::Done::Finished { sent, bounced, .. } => crate::stdout::line(format_args!(
                "{id}: delivery finished: {sent} sent, {bounced} bounced"
            )),
            runner::Done::Deferred(why) => crate::stdout::line(format_args!(
                "{id}: deferred: {}",
                crate::escape::field(&why)
            )),
            runner::Done::Busy => {
                crate::stdout::line(format_args!("{id}: being delivered by another runner"))
            }
            runner::Done::Skipped => crate::stdout::line(format_args!("{id}: skipped")),
        }
    }
}
