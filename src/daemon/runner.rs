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

use super::schedule;
use crate::address::route;
use crate::clock;
use crate::config::Config;
use crate::deliver::relays::{Relays, SessionCache};
use crate::deliver::transport::{Transaction, TxRcpt};
use crate::deliver::{Reply, Verdict};
use crate::spool::queue::{self, Queued};
use crate::spool::state::{RcptState, RcptStatus, State};
use crate::spool::{Spool, format, maildrop};
use std::collections::{HashSet, VecDeque};
use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

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
    crate::stats::record_delivery(id, r, relay, now - arrival);
}

impl Worker {
    fn new() -> Worker {
        Worker {
            sessions: SessionCache::new(),
        }
    }

    /// Deliver one message (one attempt).
    pub fn deliver(&mut self, ctx: &Ctx, id: &str, force: bool) -> Done {
        let spool = &ctx.spool;
        let q = match queue::open(spool, id, true) {
            Ok(Some(q)) => q,
            Ok(None) => return Done::Busy,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Done::Skipped,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                queue::quarantine(spool, &spool.queue(), id, &e.to_string());
                return Done::Skipped;
            }
            Err(e) => {
                log::warn!("{id}: cannot open: {e}");
                return Done::Skipped;
            }
        };
        let mut st = queue::load_state(spool, id)
            .unwrap_or_else(|| queue::initial_state(&q.env, q.len, q.owner));
        if st.held && !force {
            return Done::Skipped;
        }
        let now = clock::unix_f64(clock::now());
        let mut changed_final = false;

        // Route every envelope recipient (aliases and config apply now).
        let mut targets: Vec<(String, String)> = Vec::new();
        let mut routed_failures: Vec<(String, String, String)> = Vec::new();
        for orig in &q.env.recipients {
            let (ok, failed) = route::resolve(&ctx.cfg, orig);
            for a in ok {
                if !targets.iter().any(|(t, _)| t == &a) {
                    targets.push((a, orig.clone()));
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
        let mut newly: Vec<usize> = Vec::new();
        for (target, orig, why) in routed_failures {
            if !rcpts
                .iter()
                .any(|r| r.address == target && r.status.is_final())
            {
                let r = RcptState {
                    status: RcptStatus::Bounced,
                    address: target,
                    original: orig,
                    changed: now,
                    reply: format!("550 5.1.1 {why}"),
                };
                log_line(
                    id,
                    &r,
                    "",
                    q.env.arrival,
                    now,
                    st.tries,
                    "",
                    &Reply::local(r.reply.clone()),
                );
                newly.push(rcpts.len());
                rcpts.push(r);
                changed_final = true;
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
                    changed: now,
                    reply: String::new(),
                },
            });
        }
        st.rcpts = rcpts;

        // Out of time: what is left bounces.
        if schedule::expired(q.env.arrival, now, ctx.cfg.queue.max_lifetime) {
            let life = clock::human_duration(ctx.cfg.queue.max_lifetime);
            for (i, r) in st.rcpts.iter_mut().enumerate() {
                if r.status.is_final() {
                    continue;
                }
                newly.push(i);
                let last = if r.reply.is_empty() {
                    "no attempt succeeded".to_string()
                } else {
                    r.reply.clone()
                };
                r.status = RcptStatus::Bounced;
                r.changed = now;
                r.reply = format!(
                    "delivery time expired (maximum queue lifetime {life} exceeded); last error: {last}"
                );
                log_line(
                    id,
                    r,
                    "",
                    q.env.arrival,
                    now,
                    st.tries,
                    "",
                    &Reply::local(r.reply.clone()),
                );
            }
            return self.settle(ctx, &q, st, &newly, now);
        }

        let open: Vec<usize> = (0..st.rcpts.len())
            .filter(|&i| !st.rcpts[i].status.is_final())
            .collect();
        if open.is_empty() {
            return self.settle(ctx, &q, st, &newly, now);
        }
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
        let (label, res) = self.sessions.send(&ctx.relays, &ctx.cfg, id, &tx);
        let verdicts = res.verdicts;
        st.tries += 1;
        st.last_attempt = now;
        st.relay = label.clone();
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
                changed_final = true;
            }
            if r.status == RcptStatus::Bounced {
                newly.push(i);
            }
            r.changed = now;
            r.reply = reply.to_string();
            log_line(id, r, &label, q.env.arrival, now, st.tries, stage, reply);
        }
        self.report_new(ctx, &q, &mut st, &newly, now);
        if st.is_done() {
            return self.finish(ctx, &q, st, now);
        }
        let delay = schedule::backoff(
            st.tries,
            ctx.cfg.queue.retry_min,
            ctx.cfg.queue.retry_max,
            id,
        );
        st.next = now + delay.as_secs_f64();
        self.maybe_warn(ctx, &q, &mut st, now);
        if let Err(e) = queue::save_state(spool, &st, changed_final) {
            log::error!("{id}: cannot save delivery state: {e}");
        }
        let reason = st
            .last_deferral()
            .map(|r| r.reply.clone())
            .unwrap_or_default();
        Done::Deferred(reason)
    }

    fn maybe_warn(&mut self, ctx: &Ctx, q: &Queued, st: &mut State, now: f64) {
        let Some(after) = ctx.cfg.queue.delay_warning else {
            return;
        };
        if st.warned || q.env.sender.is_empty() || q.env.is_bounce {
            return;
        }
        if let Some(n) = &q.env.dsn_notify
            && !n.contains("DELAY")
        {
            return;
        }
        if now - q.env.arrival < after.as_secs_f64() {
            return;
        }
        let delayed: Vec<&RcptState> = st
            .rcpts
            .iter()
            .filter(|r| r.status == RcptStatus::Deferred)
            .collect();
        if delayed.is_empty() {
            return;
        }
        match queue_dsn(ctx, q, st, &delayed, crate::bounce::Action::Delayed, now) {
            Ok(new) => {
                log::info!("{}: sender delay notification: {new}", q.env.id);
                st.warned = true;
            }
            Err(e) => log::error!("{}: cannot queue a delay notification: {e}", q.env.id),
        }
    }

    /// Tell the sender about `bounced` (a DSN), unless the rules say not
    /// to: a message from `<>` or a bounce is never bounced; NOTIFY without
    /// FAILURE asks for silence.
    fn report(
        &self,
        ctx: &Ctx,
        q: &Queued,
        st: &State,
        bounced: &[&RcptState],
        now: f64,
    ) -> Result<(), String> {
        let id = &q.env.id;
        if bounced.is_empty() {
            return Ok(());
        }
        let wants = q
            .env
            .dsn_notify
            .as_deref()
            .is_none_or(|n| n.contains("FAILURE"));
        if q.env.sender.is_empty() || q.env.is_bounce {
            log::warn!(
                "{id}: undeliverable notification from <> dropped (a bounce is never bounced)"
            );
            Ok(())
        } else if !wants {
            log::info!(
                "{id}: no bounce: NOTIFY={}",
                q.env.dsn_notify.as_deref().unwrap_or("")
            );
            Ok(())
        } else {
            match queue_dsn(ctx, q, st, bounced, crate::bounce::Action::Failed, now) {
                Ok(new) => {
                    log::info!("{id}: sender non-delivery notification: {new}");
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        }
    }

    /// Report recipients that bounced in this attempt (indices `newly`).
    /// When the DSN cannot be queued they go back to deferred: losing the
    /// bounce would lose the news, so they are tried (and reported) again.
    fn report_new(&self, ctx: &Ctx, q: &Queued, st: &mut State, newly: &[usize], now: f64) {
        if newly.is_empty() {
            return;
        }
        let all_refused = st.rcpts.iter().all(|r| r.status == RcptStatus::Bounced);
        if q.env.interactive && all_refused {
            return; // finish() decides: the -odi caller is told instead
        }
        let bounced: Vec<&RcptState> = newly.iter().filter_map(|&i| st.rcpts.get(i)).collect();
        if let Err(e) = self.report(ctx, q, st, &bounced, now) {
            log::error!("{}: cannot queue the bounce, will retry: {e}", q.env.id);
            for &i in newly {
                if let Some(r) = st.rcpts.get_mut(i) {
                    r.status = RcptStatus::Deferred;
                }
            }
        }
    }

    /// Report what bounced in this attempt; then the message is finished,
    /// or (when the bounce could not be queued) kept for another try.
    fn settle(&mut self, ctx: &Ctx, q: &Queued, mut st: State, newly: &[usize], now: f64) -> Done {
        self.report_new(ctx, q, &mut st, newly, now);
        if st.is_done() {
            return self.finish(ctx, q, st, now);
        }
        if let Err(e) = queue::save_state(&ctx.spool, &st, true) {
            log::error!("{}: cannot save delivery state: {e}", q.env.id);
        }
        Done::Deferred("bounce not yet queued".into())
    }

    fn finish(&mut self, ctx: &Ctx, q: &Queued, mut st: State, now: f64) -> Done {
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
                if let Err(e) = self.report(ctx, q, &st, &bounced, now) {
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
        crate::stats::record_removed(id, now - q.env.arrival);
        Done::Finished {
            sent,
            bounced: nbounced,
            last_bounce,
        }
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
    let mut w = Worker::new();
    w.report_new(ctx, q, &mut st, &newly, now);
    if st.is_done() {
        return w.finish(ctx, q, st, now);
    }
    let _ = queue::save_state(&ctx.spool, &st, true);
    Done::Deferred("the bounce could not be queued; will retry".into())
}

/// A reader over the message part of a queued file.
struct MessageReader<'a> {
    file: &'a std::fs::File,
    pos: u64,
    end: u64,
}

impl io::Read for MessageReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if self.pos >= self.end {
            return Ok(0);
        }
        let want = buf.len().min((self.end - self.pos) as usize);
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Queue a DSN about `rcpts` of `q` to its sender. Returns the new id.
fn queue_dsn(
    ctx: &Ctx,
    q: &Queued,
    st: &State,
    rcpts: &[&RcptState],
    action: crate::bounce::Action,
    now: f64,
) -> io::Result<String> {
    use crate::bounce::{DsnInput, RecipientReport, write_dsn};
    let cfg = &ctx.cfg;
    let reports: Vec<RecipientReport> = rcpts
        .iter()
        .map(|r| {
            let reply = parse_reply(&r.reply);
            RecipientReport {
                final_recipient: r.address.clone(),
                original_recipient: (r.original != r.address).then(|| r.original.clone()),
                action,
                status: match (&reply, action) {
                    (Some(rep), _) => rep.enhanced(),
                    (None, crate::bounce::Action::Delayed) => "4.4.1".into(),
                    (None, crate::bounce::Action::Failed) => {
                        if r.reply.contains("expired") {
                            "4.4.7".into()
                        } else {
                            "5.0.0".into()
                        }
                    }
                },
                remote_mta: (!st.relay.is_empty() && reply.is_some())
                    .then(|| format!("dns; {}", st.relay.split('[').next().unwrap_or(""))),
                diagnostic: reply.as_ref().map(|r| r.to_string()),
                reason: r.reply.clone(),
                last_attempt: (st.last_attempt > 0.0)
                    .then(|| clock::from_unix_f64(st.last_attempt)),
                will_retry_until: (action == crate::bounce::Action::Delayed)
                    .then(|| clock::from_unix_f64(q.env.arrival) + cfg.queue.max_lifetime),
            }
        })
        .collect();
    let postmaster = format!("MAILER-DAEMON@{}", cfg.hostname);
    let input = DsnInput {
        reporting_mta: &cfg.hostname,
        queue_id: &q.env.id,
        original_sender: &q.env.sender,
        envid: q.env.envid.as_deref(),
        arrival: clock::from_unix_f64(q.env.arrival),
        now: clock::from_unix_f64(now),
        recipients: &reports,
        return_full: q.env.dsn_ret.as_deref() == Some("FULL"),
        postmaster: &postmaster,
        message_id_domain: &cfg.hostname,
        max_full_size: 10 * 1024 * 1024,
    };
    let spool = &ctx.spool;
    let dir = maildrop::open_dir(&spool.queue())?;
    // A new id, unique in queue/.
    let (new_id, file) = maildrop::create(&dir)?;
    let path = spool.queue().join(&new_id);
    let result = (|| -> io::Result<()> {
        let mut w = io::BufWriter::with_capacity(64 * 1024, &file);
        w.write_all(format::header(0).as_bytes())?;
        let reader = MessageReader {
            file: &q.file,
            pos: q.start,
            end: q.start + q.len,
        };
        let len = write_dsn(&input, reader, q.len, &mut w)?;
        let env = format::Envelope {
            id: new_id.clone(),
            sender: String::new(),
            recipients: vec![q.env.sender.clone()],
            uid: nix::unistd::getuid().as_raw(),
            user: "MAILER-DAEMON".into(),
            arrival: now,
            eight_bit: q.env.eight_bit && q.env.dsn_ret.as_deref() == Some("FULL"),
            message_id: None,
            is_bounce: true,
            ..Default::default()
        };
        let text = format::encode_envelope(&env).map_err(|e| io::Error::other(e.0))?;
        w.write_all(text.as_bytes())?;
        w.flush()?;
        drop(w);
        use std::os::unix::fs::FileExt;
        file.write_all_at(format::header(len).as_bytes(), 0)?;
        nix::sys::stat::fchmod(
            &file,
            nix::sys::stat::Mode::from_bits_truncate(maildrop::MODE_READY),
        )
        .map_err(io::Error::from)?;
        file.sync_all()?;
        dir.sync_all()?;
        let st = queue::initial_state(&env, len, env.uid);
        queue::save_state(spool, &st, false)?;
        Ok(())
    })();
    let _ = file.unlock();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    if let Ok(mut v) = ctx.new_ids.lock() {
        v.push(new_id.clone());
    }
    Ok(new_id)
}

fn parse_reply(s: &str) -> Option<Reply> {
    let (code, text) = s.split_once(' ').unwrap_or((s, ""));
    let code: u16 = code.parse().ok().filter(|c| (200..600).contains(c))?;
    Some(Reply {
        code,
        text: text.to_string(),
    })
}

struct Jobs {
    notify: Option<std::os::unix::net::UnixStream>,
    pending: VecDeque<(String, bool)>,
    known: HashSet<String>,
    in_flight: usize,
    shutdown: bool,
    results: Vec<(String, Done)>,
    keep_results: bool,
}

/// A pool of delivery workers.
pub struct Pool {
    shared: Arc<(Mutex<Jobs>, Condvar)>,
    ctx: Arc<RwLock<Arc<Ctx>>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    /// Start `n` workers.
    pub fn new(ctx: Ctx, n: usize, keep_results: bool) -> Pool {
        let shared = Arc::new((
            Mutex::new(Jobs {
                pending: VecDeque::new(),
                known: HashSet::new(),
                in_flight: 0,
                shutdown: false,
                notify: None,
                results: Vec::new(),
                keep_results,
            }),
            Condvar::new(),
        ));
        let ctx = Arc::new(RwLock::new(Arc::new(ctx)));
        let mut handles = Vec::new();
        for i in 0..n.max(1) {
            let shared = Arc::clone(&shared);
            let ctx = Arc::clone(&ctx);
            let h = std::thread::Builder::new()
                .name(format!("worker{i}"))
                .spawn(move || worker_loop(shared, ctx));
            match h {
                Ok(h) => handles.push(h),
                Err(e) => log::error!("cannot start a delivery worker: {e}"),
            }
        }
        Pool {
            shared,
            ctx,
            handles,
        }
    }

    /// The current context.
    pub fn ctx(&self) -> Arc<Ctx> {
        match self.ctx.read() {
            Ok(c) => Arc::clone(&c),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Replace the context (SIGHUP).
    pub fn replace_ctx(&self, ctx: Ctx) {
        if let Ok(mut c) = self.ctx.write() {
            *c = Arc::new(ctx);
        }
    }

    /// Write a byte to `s` whenever a job finishes (wakes the daemon loop).
    pub fn set_notify(&self, s: std::os::unix::net::UnixStream) {
        let (m, _) = &*self.shared;
        if let Ok(mut j) = m.lock() {
            j.notify = Some(s);
        }
    }

    /// Queue `id` unless it is already queued or being delivered.
    pub fn push(&self, id: &str, force: bool) {
        let (m, cv) = &*self.shared;
        if let Ok(mut j) = m.lock()
            && j.known.insert(id.to_string())
        {
            j.pending.push_back((id.to_string(), force));
            cv.notify_one();
        }
    }

    /// Workers with nothing to do right now.
    pub fn idle_workers(&self) -> usize {
        let (m, _) = &*self.shared;
        m.lock()
            .map(|j| {
                if j.pending.is_empty() {
                    self.handles.len().saturating_sub(j.in_flight)
                } else {
                    0
                }
            })
            .unwrap_or(0)
    }

    /// True when `id` is queued or in delivery.
    pub fn knows(&self, id: &str) -> bool {
        let (m, _) = &*self.shared;
        m.lock().map(|j| j.known.contains(id)).unwrap_or(false)
    }

    /// Block until nothing is pending or in flight.
    pub fn wait_idle(&self) {
        let (m, cv) = &*self.shared;
        let Ok(mut j) = m.lock() else { return };
        while !j.pending.is_empty() || j.in_flight > 0 {
            j = match cv.wait(j) {
                Ok(j) => j,
                Err(_) => return,
            };
        }
    }

    /// Results collected so far (when keep_results).
    pub fn take_results(&self) -> Vec<(String, Done)> {
        let (m, _) = &*self.shared;
        m.lock()
            .map(|mut j| std::mem::take(&mut j.results))
            .unwrap_or_default()
    }

    /// Stop: finish the messages in flight, close sessions, join workers.
    pub fn shutdown(self) {
        {
            let (m, cv) = &*self.shared;
            if let Ok(mut j) = m.lock() {
                j.shutdown = true;
                j.pending.clear();
            }
            cv.notify_all();
        }
        for h in self.handles {
            let _ = h.join();
        }
    }
}

fn worker_loop(shared: Arc<(Mutex<Jobs>, Condvar)>, ctx: Arc<RwLock<Arc<Ctx>>>) {
    let mut w = Worker::new();
    let (m, cv) = &*shared;
    loop {
        let job = {
            let Ok(mut j) = m.lock() else { return };
            loop {
                if j.shutdown {
                    drop(j);
                    w.sessions.close();
                    return;
                }
                if let Some(job) = j.pending.pop_front() {
                    j.in_flight += 1;
                    break job;
                }
                let (g, _) = match cv.wait_timeout(j, Duration::from_secs(1)) {
                    Ok(x) => x,
                    Err(_) => return,
                };
                j = g;
                w.sessions.idle_check();
            }
        };
        let c = match ctx.read() {
            Ok(c) => Arc::clone(&c),
            Err(p) => Arc::clone(&p.into_inner()),
        };
        let done = w.deliver(&c, &job.0, job.1);
        if let Ok(mut j) = m.lock() {
            j.in_flight -= 1;
            j.known.remove(&job.0);
            if j.keep_results {
                j.results.push((job.0, done));
            }
            if let Some(n) = j.notify.as_mut() {
                let _ = n.write(b"d");
            }
        }
        cv.notify_all();
    }
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
        crate::stats::record_removed(id, clock::unix_f64(clock::now()) - st.arrival);
    }
}
