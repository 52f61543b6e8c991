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

use super::runner::Ctx;
use crate::spool::Spool;
use crate::spool::maildrop::{self, Claim, Content};
use crate::spool::queue::{self, Admitted};
use crate::spool::request::Entry;
use std::io;
use std::time::Duration;

/// What becomes of a user's request entry (`spool::request`): authorised
/// against `uid`, the owner of the entry file, and applied. Arguments: the
/// spool, the queue runner's context (a bounce request needs it), the
/// decoded entry (or why it is malformed), `uid`, the entry's name. Returns
/// false when the entry must stay in maildrop for a later pickup.
pub type RequestHandler = fn(&Spool, Option<&Ctx>, Result<Entry, String>, u32, &str) -> bool;

/// One message taken over from maildrop.
#[derive(Debug, Clone)]
pub struct Picked {
    /// Queue id.
    pub id: String,
    /// Message size.
    pub size: u64,
    /// Envelope recipients.
    pub nrcpt: usize,
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
    spool: &Spool,
    runner: Option<&Ctx>,
    stale_after: Duration,
    attempt_now: usize,
    requests: RequestHandler,
) -> io::Result<Vec<Picked>> {
    let dir_path = spool.maildrop();
    let dir = maildrop::open_dir(&dir_path)?;
    let mut picked = Vec::new();
    let names = queue::list_ids(&dir_path)?;
    let lazy = names.len() <= attempt_now;
    for name in names {
        match maildrop::claim(&dir, &name, stale_after) {
            // The entry stays open and locked until it has been dealt with.
            Ok(Claim::Ready {
                file: _locked,
                uid,
                content,
            }) => match content {
                Content::Request(entry) => {
                    // An admin request from a user (e.g. delete my message):
                    // the owner of the file is who asks.
                    if requests(spool, runner, entry, uid, &name) {
                        let _ = std::fs::remove_file(dir_path.join(&name));
                    }
                }
                Content::Corrupt(why) => queue::quarantine(spool, &dir_path, &name, &why),
                Content::Message { env, len } => {
                    // An -odi caller watches the state file: always write it.
                    let write_state = !lazy || env.interactive;
                    match queue::admit(spool, &name, &env, len, uid, write_state)? {
                        Admitted::Queued => {}
                        Admitted::AlreadyQueued | Admitted::Gone => continue,
                    }
                    log::info!(
                        "{name}: from=<{}>, size={len}, nrcpt={} (queue active)",
                        env.sender,
                        env.recipients.len()
                    );
                    picked.push(Picked {
                        id: name,
                        size: len,
                        nrcpt: env.recipients.len(),
                    });
                }
            },
            Ok(Claim::Busy) | Ok(Claim::Vanished) => {}
            Ok(Claim::Abandoned) => log::info!("{name}: removed an abandoned submission"),
            Ok(Claim::Corrupt(why)) => queue::quarantine(spool, &dir_path, &name, &why),
            Err(e) => log::warn!("{name}: cannot examine maildrop entry: {e}"),
        }
    }
    Ok(picked)
}

/// The queue runner's pickup: new mail (recorded as accepted in the event
/// log) and requests; `attempt_now`: how many new messages idle workers
/// will attempt at once (their state file is then written only if needed).
pub fn take_in(ctx: &Ctx, attempt_now: usize, requests: RequestHandler) -> Vec<String> {
    match pickup(
        &ctx.spool,
        Some(ctx),
        ctx.cfg.queue.maildrop_stale_after,
        attempt_now,
        requests,
    ) {
        Ok(picked) => picked
            .into_iter()
            .map(|p| {
                crate::spool::event_log::record_accepted(&p.id, p.size, p.nrcpt);
                p.id
            })
            .collect(),
        Err(e) => {
            log::error!(
                "cannot pick up new mail from {}: {e}",
                ctx.spool.maildrop().display()
            );
            Vec::new()
        }
    }
}
