//! The service loop of `postern daemon`, as named steps.
//!
//! One [`Service`] owns the worker pool, what wakes the loop ([`Wakeups`]:
//! the trigger FIFO, signals, the workers' "done" notes) and the schedule
//! (queue id → when it is next due, a [`timers::Timers`]: no step costs
//! work proportional to the queue per finished delivery). Each turn of the
//! loop:
//! 1. [`Service::reload_if_asked`]: SIGHUP loads the configuration again
//!    (a broken one is logged and the old one kept);
//! 2. [`Service::take_in`]: pickup from maildrop (and the messages this
//!    runner queued itself: bounces, delay warnings), due at once;
//! 3. [`Service::rescan_if_stale`]: at start, after a reload and when
//!    asked (`R`, a user's flush) the schedule is rebuilt from the state
//!    files; every `RESCAN` it is merged with them, [`SWEEP_SLICE`] files
//!    per turn (a big queue never stalls the loop);
//! 4. [`Service::settle`]: finished attempts leave the schedule, deferred
//!    ones are due at their next retry, busy ones in 5 s;
//! 5. [`Service::write_metrics`]: the Prometheus textfile every 10 s;
//! 6. [`Service::dispatch`]: what is due (everything after a flush) goes to
//!    the workers; returns how long the loop may sleep;
//! 7. [`Wakeups::wait`] then [`Service::read_pokes`]: the FIFO's bytes —
//!    `F` root's flush (everything now, relay failures forgotten), `f` a
//!    user's flush (at most one a minute, only what is due), `R` rescan,
//!    `A<id>` an `-odi` caller acknowledged a permanent failure, `W` wake.
//!
//! SIGTERM/SIGINT end the loop; the pool finishes the transactions in flight
//! within `[queue] shutdown_timeout`, then the daemon exits (0) leaving any
//! unfinished message queued for the next start.

mod timers;

use super::pickup::{self, RequestHandler};
use super::runner::{self, Ctx, Done, Pool};
use super::{MAX_SLEEP, RESCAN, USER_FLUSH_EVERY};
use crate::clock;
use crate::config::{Config, ConfigSource};
use crate::error::{Error, Kind, Result};
use crate::spool::{Spool, queue};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use timers::Timers;

/// How often the Prometheus textfile is written.
const METRICS_EVERY: Duration = Duration::from_secs(10);

/// State files read per turn of the loop by the periodic merge-rescan.
pub const SWEEP_SLICE: usize = 512;

/// What wakes the loop: the trigger FIFO, the signal pipe, the workers'
/// notes, and the flags the signal handlers set.
pub struct Wakeups {
    fifo: File,
    sig_r: UnixStream,
    done_r: UnixStream,
    term: Arc<AtomicBool>,
    hup: Arc<AtomicBool>,
    buf: [u8; 512],
}

impl Wakeups {
    /// Open the trigger FIFO, install the signal handlers; returns the
    /// write end the workers poke when an attempt is done.
    pub fn open(spool: &Spool) -> Result<(Wakeups, UnixStream)> {
        let fifo = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(spool.trigger())
                .map_err(|e| {
                    Error::io(
                        Kind::TempFail,
                        format!("cannot open {}", spool.trigger().display()),
                        &e,
                    )
                })?
        };
        let term = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        let (sig_r, sig_w) =
            UnixStream::pair().map_err(|e| Error::io(Kind::OsErr, "socketpair", &e))?;
        sig_r.set_nonblocking(true).ok();
        for (sig, flag) in [
            (signal_hook::consts::SIGTERM, &term),
            (signal_hook::consts::SIGINT, &term),
            (signal_hook::consts::SIGHUP, &hup),
        ] {
            signal_hook::flag::register(sig, Arc::clone(flag))
                .map_err(|e| Error::io(Kind::OsErr, "signal handler", &e))?;
            let w = sig_w
                .try_clone()
                .map_err(|e| Error::io(Kind::OsErr, "signal pipe", &e))?;
            signal_hook::low_level::pipe::register(sig, w)
                .map_err(|e| Error::io(Kind::OsErr, "signal handler", &e))?;
        }
        let (done_r, done_w) =
            UnixStream::pair().map_err(|e| Error::io(Kind::OsErr, "socketpair", &e))?;
        done_r.set_nonblocking(true).ok();
        done_w.set_nonblocking(true).ok();
        let w = Wakeups {
            fifo,
            sig_r,
            done_r,
            term,
            hup,
            buf: [0u8; 512],
        };
        Ok((w, done_w))
    }

    /// SIGTERM or SIGINT arrived.
    pub fn stopping(&self) -> bool {
        self.term.load(Ordering::Relaxed)
    }

    /// SIGHUP arrived since the last call.
    fn reload_asked(&self) -> bool {
        self.hup.swap(false, Ordering::Relaxed)
    }

    /// Sleep until a wake-up source is readable or `timeout` passed.
    pub fn wait(&self, timeout: Duration) {
        let mut fds = [
            nix::poll::PollFd::new(self.fifo.as_fd(), nix::poll::PollFlags::POLLIN),
            nix::poll::PollFd::new(self.sig_r.as_fd(), nix::poll::PollFlags::POLLIN),
            nix::poll::PollFd::new(self.done_r.as_fd(), nix::poll::PollFlags::POLLIN),
        ];
        let t = nix::poll::PollTimeout::try_from(timeout).unwrap_or(nix::poll::PollTimeout::MAX);
        match nix::poll::poll(&mut fds, t) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                log::error!("poll: {e}");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }

    /// Read what the FIFO holds onto `carry`; empty the other two sources.
    fn drain(&mut self, carry: &mut Vec<u8>) {
        loop {
            match (&self.fifo).read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => carry.extend_from_slice(&self.buf[..n]),
                Err(_) => break,
            }
        }
        while matches!(self.sig_r.read(&mut self.buf), Ok(n) if n > 0) {}
        while matches!(self.done_r.read(&mut self.buf), Ok(n) if n > 0) {}
    }
}

/// The running daemon: pool, schedule and the loop's bookkeeping.
pub struct Service {
    source: ConfigSource,
    requests: RequestHandler,
    pool: Pool,
    generation: u64,
    wake: Wakeups,
    /// Queue id → when it is next due (unix seconds; 0 = now).
    schedule: Timers,
    /// Rebuild the schedule from the state files at the next turn.
    full_rescan: bool,
    /// The periodic merge-rescan in progress: the queue ids listed at its
    /// start, and how many of them were merged.
    sweep: Option<(Vec<String>, usize)>,
    last_scan: Instant,
    flush: bool,
    /// FIFO bytes read but not yet understood (a split `A<id>`).
    carry: Vec<u8>,
    last_metrics: Instant,
    last_user_flush: Option<Instant>,
    user_flush_refusal_logged: bool,
}

impl Service {
    /// Start the worker pool for `cfg`.
    pub fn start(
        cfg: Config,
        source: ConfigSource,
        requests: RequestHandler,
        wake: Wakeups,
        done_w: UnixStream,
    ) -> Service {
        let parallel = cfg.queue.parallel;
        let generation = 1;
        let root = cfg.spool_dir.clone();
        let pool = Pool::new(Ctx::new(cfg, generation), parallel, true);
        pool.set_notify(done_w);
        log::info!(
            "daemon started (spool {}, {} relay(s), {parallel} session(s))",
            root.display(),
            pool.ctx().cfg.relays.len()
        );
        Service {
            source,
            requests,
            pool,
            generation,
            wake,
            schedule: Timers::new(),
            full_rescan: true,
            sweep: None,
            last_scan: Instant::now(),
            flush: false,
            carry: Vec::new(),
            last_metrics: Instant::now() - Duration::from_secs(3600),
            last_user_flush: None,
            user_flush_refusal_logged: false,
        }
    }

    /// Run until SIGTERM/SIGINT, then let the transactions in flight finish.
    pub fn run(mut self) {
        while !self.wake.stopping() {
            self.reload_if_asked();
            let ctx = self.pool.ctx();
            self.take_in(&ctx);
            self.rescan_if_stale(&ctx);
            self.settle(&ctx);
            self.write_metrics(&ctx);
            let timeout = self.dispatch(&ctx);
            self.wake.wait(timeout);
            self.read_pokes();
        }
        let limit = self.pool.ctx().cfg.queue.shutdown_timeout;
        log::info!(
            "daemon stopping: finishing the transactions in flight (at most {} s)",
            limit.as_secs()
        );
        let left = self.pool.shutdown_within(limit);
        if left > 0 {
            log::warn!(
                "daemon stopping with {left} transaction(s) still in flight after {} s (queue.shutdown_timeout): their messages stay queued and are retried at the next start; a relay that had already taken one may deliver it twice",
                limit.as_secs()
            );
        }
    }

    fn reload_if_asked(&mut self) {
        if !self.wake.reload_asked() {
            return;
        }
        match Config::load(&self.source) {
            Ok(c) => {
                self.generation += 1;
                self.pool.replace_ctx(Ctx::new(c, self.generation));
                log::info!("configuration reloaded");
                self.ask_rescan();
            }
            Err(e) => log::error!("configuration not reloaded, keeping the old one: {e}"),
        }
    }

    fn ask_rescan(&mut self) {
        self.full_rescan = true;
    }

    fn take_in(&mut self, ctx: &Ctx) {
        let new = pickup::take_in(ctx, self.pool.idle_workers(), self.requests);
        for id in new.into_iter().chain(ctx.take_new_ids()) {
            self.schedule.set(id, 0.0);
        }
    }

    fn rescan_if_stale(&mut self, ctx: &Ctx) {
        if self.full_rescan {
            self.full_rescan = false;
            self.sweep = None;
            self.schedule.replace_all(
                queue::states(&ctx.spool)
                    .into_iter()
                    .filter(|s| !s.held)
                    .map(|s| (s.id, s.next)),
            );
            self.last_scan = Instant::now();
            return;
        }
        if self.sweep.is_none() && self.last_scan.elapsed() >= RESCAN {
            // One readdir now; the state files are read a slice per turn.
            self.sweep = Some((queue::list_ids(&ctx.spool.queue()).unwrap_or_default(), 0));
        }
        let Some((ids, pos)) = &mut self.sweep else {
            return;
        };
        let end = (*pos + SWEEP_SLICE).min(ids.len());
        for id in &ids[*pos..end] {
            if self.pool.knows(id) {
                continue; // its result sets its time
            }
            match queue::state_or_recreate(&ctx.spool, id) {
                Some(st) if !st.held => self.schedule.set(st.id, st.next),
                _ => self.schedule.remove(id),
            }
        }
        *pos = end;
        if end >= ids.len() {
            self.sweep = None;
            self.last_scan = Instant::now();
        }
    }

    fn settle(&mut self, ctx: &Ctx) {
        for (id, d) in self.pool.take_results() {
            match d {
                Done::Deferred(_) => match queue::load_state(&ctx.spool, &id) {
                    Some(st) => self.schedule.set(id, st.next),
                    // No state to read: it keeps the time it had.
                    None => self.schedule.rearm(&id),
                },
                Done::Busy => {
                    self.schedule.set(id, clock::unix_f64(clock::now()) + 5.0);
                }
                Done::Finished { .. } | Done::Skipped => {
                    self.schedule.remove(&id);
                }
            }
        }
    }

    fn write_metrics(&mut self, ctx: &Ctx) {
        if self.last_metrics.elapsed() >= METRICS_EVERY {
            crate::stats::write_textfile(&ctx.cfg, &ctx.spool);
            self.last_metrics = Instant::now();
        }
    }

    /// Hand what is due to the pool; how long the loop may sleep.
    fn dispatch(&mut self, ctx: &Ctx) -> Duration {
        let now = clock::unix_f64(clock::now());
        let mut due = Vec::new();
        if self.flush {
            self.schedule.take_all(&mut due);
        } else {
            self.schedule.take_due(now, &mut due);
        }
        for id in &due {
            // One in delivery already comes back through `settle`.
            if !self.pool.knows(id) {
                self.pool.push(id, false);
            }
        }
        self.flush = false;
        let mut next_wake = MAX_SLEEP.as_secs_f64();
        if let Some(at) = self.schedule.next_at() {
            next_wake = next_wake.min(at - now);
        }
        if self.sweep.is_some() {
            next_wake = 0.0; // the merge-rescan goes on at the next turn
        }
        if ctx.cfg.stats.prometheus_textfile.is_some() {
            // Wake for the next metrics write even when the queue is idle.
            let due = METRICS_EVERY.saturating_sub(self.last_metrics.elapsed());
            next_wake = next_wake.min(due.as_secs_f64());
        }
        let timeout = Duration::from_secs_f64(next_wake.clamp(0.01, MAX_SLEEP.as_secs_f64()));
        clock::wait_limit(timeout) // a test may move POSTERN_NOW=@file
    }

    /// Act on the bytes the FIFO brought.
    fn read_pokes(&mut self) {
        let mut carry = std::mem::take(&mut self.carry);
        self.wake.drain(&mut carry);
        let mut i = 0;
        while i < carry.len() {
            match carry[i] {
                b'F' => {
                    self.flush = true;
                    self.pool.ctx().forget_relay_failures();
                }
                b'R' => self.ask_rescan(),
                b'f' => self.user_flush(),
                b'A' => {
                    let end = i + 1 + crate::spool::ID_LEN;
                    if end > carry.len() {
                        break; // the rest arrives with the next read
                    }
                    if let Ok(id) = std::str::from_utf8(&carry[i + 1..end])
                        && crate::spool::is_valid_id(id)
                    {
                        runner::acknowledge(&self.pool.ctx(), id);
                        self.schedule.remove(id);
                    }
                    i = end;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        carry.drain(..i.min(carry.len()));
        self.carry = carry;
    }

    /// A user's flush is no weapon: at most one a minute, and it forces
    /// nothing — no retry time is reset, no relay failure forgotten (other
    /// users' mail keeps its backoff); it only delivers what is due now.
    fn user_flush(&mut self) {
        if self
            .last_user_flush
            .is_none_or(|t| t.elapsed() >= USER_FLUSH_EVERY)
        {
            self.last_user_flush = Some(Instant::now());
            self.user_flush_refusal_logged = false;
            self.ask_rescan();
            log::info!(
                "flush asked by a user: delivering what is due (retry times and relay failures kept)"
            );
        } else if !self.user_flush_refusal_logged {
            self.user_flush_refusal_logged = true;
            log::warn!(
                "flush asked by a user ignored: at most one every {} s",
                USER_FLUSH_EVERY.as_secs()
            );
        }
    }
}

/// Take the spool's run lock without waiting: one daemon per spool.
pub fn take_run_lock(lock: &File, spool: &Spool) -> Result<()> {
    match lock.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
            Kind::TempFail,
            format!(
                "another postern daemon is already running for {}",
                spool.root().display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(Kind::TempFail, "run lock", &e)),
    }
}
