//! The queue runner: a pool of delivery workers, each keeping one relay
//! session open across messages, and the per-message delivery procedure.
//!
//! One message, one worker, one lock: a worker opens `queue/<id>` and takes
//! its `flock` without waiting; if another runner (the daemon, or a
//! `postern queue run`) holds it, the message is skipped. Per-recipient
//! state is saved after each transaction — durably whenever a recipient
//! became final — so a crash or kill -9 re-sends only what was not
//! acknowledged. A message leaves the queue only when every recipient is
//! sent or bounced (a bounce is queued durably before the original goes).
//!
//! Relay choice and sessions are `deliver::relays`'s; the worker threads
//! are in `runner/pool.rs`; delay warnings and bounces to the sender in
//! `runner/notify.rs`. This file is the per-message procedure, in steps:
//! open, route, expire, transmit, record, then finish or reschedule.

mod notify;
mod pool;

pub use pool::Pool;

use super::schedule;
use crate::address::route;
use crate::clock;
use crate::config::Config;
use crate::deliver::relays::{Relays, SessionCache};
use crate::deliver::transport::{RcptVerdict, Transaction, TxRcpt};
use crate::deliver::{Reply, Verdict};
use crate::spool::Spool;
use crate::spool::queue::{self, Queued};
use crate::spool::state::{RcptState, RcptStatus, State};
use std::io;
use std::sync::Mutex;
use std::time::Duration;

/// The longest `Retry-After` honoured (a relay asking for more is retried
/// after this).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Everything a worker needs, replaced as a whole on SIGHUP.
pub struct Ctx {
    /// Configuration.
    pub cfg: Config,
    /// The spool.
    pub spool: Spool,
    /// Generation, bumped on reload (sessions of an older one are closed).
    pub generation: u64,
    /// The process delivering is the `-odi` caller itself: it reports a
    /// permanent failure on stderr, so no bounce is needed.
    pub caller_is_runner: bool,
    relays: Relays,
    new_ids: Mutex<Vec<String>>,
    /// The guard state, for the suppression list.
    guard: crate::spool::guard::CachedState,
}

impl Ctx {
    /// Build the context for `cfg`.
    pub fn new(cfg: Config, generation: u64) -> Ctx {
        let spool = Spool::new(&cfg.spool_dir);
        let relays = Relays::new(&cfg, generation);
        Ctx {
            cfg,
            spool,
            generation,
            caller_is_runner: false,
            relays,
            new_ids: Mutex::new(Vec::new()),
            guard: Default::default(),
        }
    }

    /// Forget which relays failed recently (an explicit flush means "the
    /// relay is back, try now").
    pub fn forget_relay_failures(&self) {
        self.relays.forget_failures();
    }

    /// Messages this runner queued itself (bounces, delay warnings) since
    /// the last call.
    pub fn take_new_ids(&self) -> Vec<String> {
        self.new_ids
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// What became of one message in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Every recipient sent or bounced: removed from the queue.
    Finished {
        /// Recipients sent.
        sent: usize,
        /// Recipients bounced.
        bounced: usize,
        /// The last permanent reply (for `-odi`).
        last_bounce: Option<String>,
    },
    /// Some recipients remain; retried later.
    Deferred(String),
    /// Another runner holds the message.
    Busy,
    /// Held, or not present any more.
    Skipped,
}

struct Worker {
    sessions: SessionCache,
}

#[allow(clippy::too_many_arguments)]
fn log_line(
    id: &str,
    r: &RcptState,
    relay: &str,
    arrival: f64,
    now: f64,
    tries: u32,
    stage: &str,
    reply: &Reply,
) {
    let status = match r.status {
        RcptStatus::Sent => "sent",
        RcptStatus::Bounced => "bounced",
        RcptStatus::Deferred => "deferred",
        RcptStatus::Pending => "pending",
    };
    let orig = if r.original != r.address {
        format!(", orig_to=<{}>", r.original)
    } else {
        String::new()
    };
    let detail = if reply.code == 0 || r.status == RcptStatus::Sent {
        reply.to_string()
    } else if stage.is_empty() {
        format!("host {relay} said: {reply}")
    } else {
        format!("host {relay} said: {reply} (in reply to {stage} command)")
    };
    let line = format!(
        "{id}: to=<{}>{orig}, relay={}, delay={:.2}, tries={tries}, dsn={}, status={status} ({detail})",
        r.address,
        if relay.is_empty() { "none" } else { relay },
        (now - arrival).max(0.0),
        if reply.code == 0 && r.status == RcptStatus::Deferred {
            "4.4.1".to_string()
        } else {
            reply.enhanced()
        },
    );
    match r.status {
        RcptStatus::Sent => log::info!("{line}"),
        _ => log::warn!("{line}"),
    }
    crate::spool::event_log::record_delivery(id, r, relay, now - arrival);
}

impl Worker {
    fn new() -> Worker {
        Worker {
            sessions: SessionCache::new(),
        }
    }

    /// Deliver one message (one attempt).
    pub fn deliver(&mut self, ctx: &Ctx, id: &str, force: bool) -> Done {
        let (q, mut st) = match open_message(ctx, id, force) {
            Ok(x) => x,
            Err(done) => return done,
        };
        pool::injected_panic(id, &q.env.sender);
        let mut a = Attempt {
            now: clock::unix_f64(clock::now()),
            newly: Vec::new(),
            changed_final: false,
            retry_after: None,
        };
        route_recipients(ctx, &q, &mut st, &mut a);
        if schedule::expired(q.env.arrival, a.now, ctx.cfg.queue.max_lifetime) {
            expire_open(ctx, &q, &mut st, &mut a);
            return settle(ctx, &q, st, &a.newly, a.now);
        }
        bounce_suppressed(ctx, &q, &mut st, &mut a);
        let open: Vec<usize> = (0..st.rcpts.len())
            .filter(|&i| !st.rcpts[i].status.is_final())
            .collect();
        if open.is_empty() {
            return settle(ctx, &q, st, &a.newly, a.now);
        }
        let (label, verdicts, retry_after) = self.transmit(ctx, &q, &st, &open);
        a.retry_after = retry_after;
        record_verdicts(&q, &mut st, &open, &label, &verdicts, &mut a);
        remember_unknown(ctx, &st, &open);
        notify::report_new(ctx, &q, &mut st, &a.newly, a.now);
        if st.is_done() {
            return finish(ctx, &q, st, a.now);
        }
        reschedule(ctx, &q, st, &a)
    }

    /// Send the open recipients `open` of `q` through a relay: the relay's
    /// label ("" when none answered) and one verdict per open recipient.
    fn transmit(
        &mut self,
        ctx: &Ctx,
        q: &Queued,
        st: &State,
        open: &[usize],
    ) -> (String, Vec<RcptVerdict>, Option<Duration>) {
        let sender = crate::address::rewrite::envelope_sender(&ctx.cfg, &q.env);
        let tx_rcpts: Vec<TxRcpt> = open
            .iter()
            .map(|&i| TxRcpt {
                address: st.rcpts[i].address.clone(),
                original: st.rcpts[i].original.clone(),
            })
            .collect();
        let tx = Transaction {
            sender: &sender,
            rcpts: &tx_rcpts,
            notify: q.env.dsn_notify.as_deref(),
            ret: q.env.dsn_ret.as_deref(),
            envid: q.env.envid.as_deref(),
            file: &q.file,
            start: q.start,
            len: q.len,
        };
        let (label, res) = self.sessions.send(&ctx.relays, &ctx.cfg, &q.env.id, &tx);
        (label, res.verdicts, res.retry_after)
    }
}

/// What one attempt has decided so far.
struct Attempt {
    /// When the attempt started (unix seconds).
    now: f64,
    /// Indices of recipients that bounced in this attempt.
    newly: Vec<usize>,
    /// A recipient became final (the state is then saved durably).
    changed_final: bool,
    /// The relay asked not to be tried before this long (`Retry-After`).
    retry_after: Option<Duration>,
}

/// Open and lock `queue/<id>` and load its state; `Err` says why the
/// message is not delivered now.
fn open_message(ctx: &Ctx, id: &str, force: bool) -> Result<(Queued, State), Done> {
    let spool = &ctx.spool;
    let q = match queue::open(spool, id, true) {
        Ok(Some(q)) => q,
        Ok(None) => return Err(Done::Busy),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Done::Skipped),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            queue::quarantine(spool, &spool.queue(), id, &e.to_string());
            return Err(Done::Skipped);
        }
        Err(e) => {
            log::warn!("{id}: cannot open: {e}");
            return Err(Done::Skipped);
        }
    };
    let st = queue::load_state(spool, id)
        .unwrap_or_else(|| queue::initial_state(&q.env, q.len, q.owner));
    if st.held && !force {
        return Err(Done::Skipped);
    }
    Ok((q, st))
}

/// Route every envelope recipient (aliases and config apply now): the
/// recipients that are final stay; routing failures bounce; the rest are
/// open, keeping what an earlier attempt learnt about them.
fn route_recipients(ctx: &Ctx, q: &Queued, st: &mut State, a: &mut Attempt) {
    let mut targets: Vec<(String, String)> = Vec::new();
    let mut routed_failures: Vec<(String, String, String)> = Vec::new();
    for orig in &q.env.recipients {
        let (ok, failed) = route::resolve(&ctx.cfg, orig);
        for t in ok {
            if !targets.iter().any(|(x, _)| x == &t) {
                targets.push((t, orig.clone()));
            }
        }
        for (t, e) in failed {
            routed_failures.push((t, orig.clone(), e.0));
        }
    }
    let mut rcpts: Vec<RcptState> = st
        .rcpts
        .iter()
        .filter(|r| r.status.is_final())
        .cloned()
        .collect();
    for (target, orig, why) in routed_failures {
        if !rcpts
            .iter()
            .any(|r| r.address == target && r.status.is_final())
        {
            let r = RcptState {
                status: RcptStatus::Bounced,
                address: target,
                original: orig,
                changed: a.now,
                reply: format!("550 5.1.1 {why}"),
            };
            let reply = Reply::local(r.reply.clone());
            log_line(
                &q.env.id,
                &r,
                "",
                q.env.arrival,
                a.now,
                st.tries,
                "",
                &reply,
            );
            a.newly.push(rcpts.len());
            rcpts.push(r);
            a.changed_final = true;
        }
    }
    for (addr, orig) in &targets {
        if rcpts
            .iter()
            .any(|r| &r.address == addr && r.status.is_final())
        {
            continue;
        }
        let prev = st
            .rcpts
            .iter()
            .find(|r| &r.address == addr && !r.status.is_final());
        rcpts.push(match prev {
            Some(p) => RcptState {
                original: orig.clone(),
                ..p.clone()
            },
            None => RcptState {
                status: RcptStatus::Pending,
                address: addr.clone(),
                original: orig.clone(),
                changed: a.now,
                reply: String::new(),
            },
        });
    }
    st.rcpts = rcpts;
}

/// The outbound guard's suppression: an open recipient that got a
/// permanent 5.1.x failure recently is bounced here, without contacting
/// the relay (providers count repeated sends to bounced addresses against
/// the account).
fn bounce_suppressed(ctx: &Ctx, q: &Queued, st: &mut State, a: &mut Attempt) {
    if ctx.cfg.limits.suppress_for.is_zero() {
        return;
    }
    let g = ctx.guard.get(&ctx.spool);
    if g.suppressed.is_empty() {
        return;
    }
    let tries = st.tries;
    for (i, r) in st.rcpts.iter_mut().enumerate() {
        if r.status.is_final() {
            continue;
        }
        let Some(s) = crate::guard::suppressed(&g, &r.address, a.now) else {
            continue;
        };
        r.status = RcptStatus::Bounced;
        r.changed = a.now;
        r.reply = format!(
            "550 5.1.1 <{}>: suppressed by postern until {}: an earlier message got a permanent failure ({})",
            r.address,
            clock::iso8601(clock::from_unix_f64(s.until)),
            s.reason
        );
        a.newly.push(i);
        a.changed_final = true;
        let reply = Reply::local(r.reply.clone());
        log_line(&q.env.id, r, "", q.env.arrival, a.now, tries, "", &reply);
    }
}

/// Remember the recipients among `open` the relay refused with 5.1.x
/// (bad mailbox, bad address) for the suppression list.
fn remember_unknown(ctx: &Ctx, st: &State, open: &[usize]) {
    if ctx.cfg.limits.suppress_for.is_zero() {
        return;
    }
    let failed: Vec<(String, String)> = open
        .iter()
        .filter_map(|&i| st.rcpts.get(i))
        .filter(|r| {
            r.status == RcptStatus::Bounced
                && r.reply.starts_with('5')
                && r.reply
                    .split(' ')
                    .nth(1)
                    .is_some_and(|c| c.starts_with("5.1."))
        })
        .map(|r| (r.address.clone(), r.reply.clone()))
        .collect();
    crate::guard::remember_failures(&ctx.cfg, &ctx.spool, &failed);
}

/// Out of time: every open recipient bounces.
fn expire_open(ctx: &Ctx, q: &Queued, st: &mut State, a: &mut Attempt) {
    let life = clock::human_duration(ctx.cfg.queue.max_lifetime);
    let tries = st.tries;
    for (i, r) in st.rcpts.iter_mut().enumerate() {
        if r.status.is_final() {
            continue;
        }
        a.newly.push(i);
        let last = if r.reply.is_empty() {
            "no attempt succeeded".to_string()
        } else {
            r.reply.clone()
        };
        r.status = RcptStatus::Bounced;
        r.changed = a.now;
        r.reply = format!(
            "delivery time expired (maximum queue lifetime {life} exceeded); last error: {last}"
        );
        let reply = Reply::local(r.reply.clone());
        log_line(&q.env.id, r, "", q.env.arrival, a.now, tries, "", &reply);
    }
}

/// Apply the transport's verdicts to the open recipients `open`.
fn record_verdicts(
    q: &Queued,
    st: &mut State,
    open: &[usize],
    label: &str,
    verdicts: &[RcptVerdict],
    a: &mut Attempt,
) {
    st.tries += 1;
    st.last_attempt = a.now;
    st.relay = label.to_string();
    let tries = st.tries;
    for (k, &i) in open.iter().enumerate() {
        let Some((v, reply, stage)) = verdicts.get(k) else {
            continue;
        };
        let r = &mut st.rcpts[i];
        r.status = match v {
            Verdict::Sent => RcptStatus::Sent,
            Verdict::Deferred => RcptStatus::Deferred,
            Verdict::Bounced => RcptStatus::Bounced,
        };
        if r.status.is_final() {
            a.changed_final = true;
        }
        if r.status == RcptStatus::Bounced {
            a.newly.push(i);
        }
        r.changed = a.now;
        r.reply = reply.to_string();
        log_line(
            &q.env.id,
            r,
            label,
            q.env.arrival,
            a.now,
            tries,
            stage,
            reply,
        );
    }
}

/// Some recipients remain: set the next attempt (backoff), warn the sender
/// when the delay warning is due, save the state.
fn reschedule(ctx: &Ctx, q: &Queued, mut st: State, a: &Attempt) -> Done {
    let id = &q.env.id;
    let mut delay = schedule::backoff(
        st.tries,
        ctx.cfg.queue.retry_min,
        ctx.cfg.queue.retry_max,
        id,
    );
    if let Some(asked) = a.retry_after {
        // Not earlier than the relay asked, capped so that a hostile
        // answer cannot park the message until it expires.
        let asked = asked.min(MAX_RETRY_AFTER);
        if asked > delay {
            log::info!(
                "{id}: the relay asked to retry after {}s: next attempt then",
                asked.as_secs()
            );
            delay = asked;
        }
    }
    st.next = a.now + delay.as_secs_f64();
    notify::maybe_warn(ctx, q, &mut st, a.now);
    if let Err(e) = queue::save_state(&ctx.spool, &st, a.changed_final) {
        log::error!("{id}: cannot save delivery state: {e}");
    }
    let reason = st
        .last_deferral()
        .map(|r| r.reply.clone())
        .unwrap_or_default();
    Done::Deferred(reason)
}

/// Report what bounced in this attempt; then the message is finished,
/// or (when the bounce could not be queued) kept for another try.
fn settle(ctx: &Ctx, q: &Queued, mut st: State, newly: &[usize], now: f64) -> Done {
    notify::report_new(ctx, q, &mut st, newly, now);
    if st.is_done() {
        return finish(ctx, q, st, now);
    }
    if let Err(e) = queue::save_state(&ctx.spool, &st, true) {
        log::error!("{}: cannot save delivery state: {e}", q.env.id);
    }
    Done::Deferred("bounce not yet queued".into())
}

fn finish(ctx: &Ctx, q: &Queued, mut st: State, now: f64) -> Done {
    let id = &q.env.id;
    let sent = st
        .rcpts
        .iter()
        .filter(|r| r.status == RcptStatus::Sent)
        .count();
    let nbounced = st
        .rcpts
        .iter()
        .filter(|r| r.status == RcptStatus::Bounced)
        .count();
    let last_bounce = st
        .rcpts
        .iter()
        .rfind(|r| r.status == RcptStatus::Bounced)
        .map(|r| r.reply.clone());
    if q.env.interactive && sent == 0 && nbounced > 0 {
        if ctx.caller_is_runner {
            log::info!(
                "{id}: the submitting program was told of the failure (-odi); no bounce sent"
            );
        } else if st.ack_deadline == 0.0 || now < st.ack_deadline {
            // An -odi caller is waiting for this result: give it a
            // minute to acknowledge before falling back to a bounce.
            if st.ack_deadline == 0.0 {
                st.ack_deadline = now + 60.0;
            }
            st.next = st.ack_deadline;
            if let Err(e) = queue::save_state(&ctx.spool, &st, true) {
                log::error!("{id}: cannot save delivery state: {e}");
            }
            return Done::Deferred("refused; waiting for the -odi caller".into());
        } else {
            let bounced: Vec<&RcptState> = st
                .rcpts
                .iter()
                .filter(|r| r.status == RcptStatus::Bounced)
                .collect();
            if let Err(e) = notify::report(ctx, q, &st, &bounced, now) {
                log::error!("{id}: cannot queue the bounce, keeping the message: {e}");
                return Done::Deferred(format!("cannot queue bounce: {e}"));
            }
        }
    }
    if let Err(e) = queue::remove(&ctx.spool, id) {
        log::error!("{id}: cannot remove: {e}");
    } else {
        log::info!("{id}: removed");
    }
    crate::spool::event_log::record_removed(id, now - q.env.arrival);
    Done::Finished {
        sent,
        bounced: nbounced,
        last_bounce,
    }
}

/// `postern queue bounce`: every open recipient of `q` bounces now with
/// `reason`, the sender is told by a DSN (under the usual rules) and the
/// message leaves the queue, exactly as at the end of an attempt. The
/// caller holds the message's lock.
pub(crate) fn return_to_sender(ctx: &Ctx, q: &Queued, mut st: State, reason: &str) -> Done {
    let now = clock::unix_f64(clock::now());
    let mut newly = Vec::new();
    for (i, r) in st.rcpts.iter_mut().enumerate() {
        if r.status.is_final() {
            continue;
        }
        r.status = RcptStatus::Bounced;
        r.changed = now;
        r.reply = reason.to_string();
        let reply = Reply::local(r.reply.clone());
        log_line(&q.env.id, r, "", q.env.arrival, now, st.tries, "", &reply);
        newly.push(i);
    }
    // No -odi caller waits for this outcome: no acknowledgement wait.
    if st.ack_deadline == 0.0 || st.ack_deadline > now {
        st.ack_deadline = now;
    }
    notify::report_new(ctx, q, &mut st, &newly, now);
    if st.is_done() {
        return finish(ctx, q, st, now);
    }
    let _ = queue::save_state(&ctx.spool, &st, true);
    Done::Deferred("the bounce could not be queued; will retry".into())
}

/// A delivery of `id` panicked (`what`: the panic's message): the worker
/// caught it; defer the message with the reason `internal error: …` so it
/// is retried after the usual backoff instead of staying in flight.
pub(crate) fn defer_after_panic(ctx: &Ctx, id: &str, what: &str) -> Done {
    let reason = format!("internal error: {what}");
    let q = match queue::open(&ctx.spool, id, true) {
        Ok(Some(q)) => q,
        Ok(None) => return Done::Busy,
        Err(_) => return Done::Skipped,
    };
    let mut st = queue::load_state(&ctx.spool, id)
        .unwrap_or_else(|| queue::initial_state(&q.env, q.len, q.owner));
    let now = clock::unix_f64(clock::now());
    for r in st.rcpts.iter_mut().filter(|r| !r.status.is_final()) {
        r.status = RcptStatus::Deferred;
        r.changed = now;
        r.reply = reason.clone();
    }
    st.tries += 1;
    let delay = schedule::backoff(
        st.tries,
        ctx.cfg.queue.retry_min,
        ctx.cfg.queue.retry_max,
        id,
    );
    st.next = now + delay.as_secs_f64();
    if let Err(e) = queue::save_state(&ctx.spool, &st, true) {
        log::error!("{id}: cannot save delivery state: {e}");
    }
    Done::Deferred(reason)
}

/// Ids that are due now: not held, not done, next attempt reached.
pub fn due(ctx: &Ctx, all: bool) -> Vec<String> {
    let now = clock::unix_f64(clock::now());
    queue::states(&ctx.spool)
        .into_iter()
        .filter(|s| !s.held && (all || s.next <= now))
        .map(|s| s.id)
        .collect()
}

/// The earliest next attempt among queued messages (unix seconds).
pub fn next_due(ctx: &Ctx) -> Option<f64> {
    queue::states(&ctx.spool)
        .into_iter()
        .filter(|s| !s.held)
        .map(|s| s.next)
        .min_by(|a, b| a.total_cmp(b))
}

/// The `-odi` caller acknowledged a refusal it reported: remove the message
/// without a bounce.
pub fn acknowledge(ctx: &Ctx, id: &str) {
    let Ok(Some(_q)) = queue::open(&ctx.spool, id, true) else {
        return;
    };
    let Some(st) = queue::load_state(&ctx.spool, id) else {
        return;
    };
    if st.ack_deadline > 0.0 && st.is_done() && queue::remove(&ctx.spool, id).is_ok() {
        log::info!("{id}: the submitting program was told of the failure (-odi); no bounce sent");
        log::info!("{id}: removed");
        crate::spool::event_log::record_removed(id, clock::unix_f64(clock::now()) - st.arrival);
    }
}
