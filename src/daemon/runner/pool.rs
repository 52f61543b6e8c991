//! The worker pool: threads that take message ids from a shared job list
//! and deliver them one at a time, each through its own `Worker` (and so
//! its own relay session); the context is swapped as a whole on reload.
//!
//! Panic isolation: each delivery runs under `catch_unwind`. A panic (a bug)
//! releases the message's lock as it unwinds; the worker then logs it once
//! (`ID: internal error: the delivery panicked (…)`), defers the message
//! with the reason `internal error: …` and the usual backoff (mailq shows
//! it), and goes on with fresh relay sessions — the message is never left
//! marked in flight.
//!
//! Test-only fault injection: `POSTERN_TEST_PANIC=<text>` makes the
//! delivery of a message whose queue id or envelope sender is `<text>`
//! panic. It exists for the test suite only. Like `POSTERN_NOW` it cannot
//! reach an installed system through a user: the set-group-id start-up
//! clears the whole environment (`privilege::enter`), so only a process
//! whose environment its starter already controls (root's, the daemon's
//! unit, an unprivileged development run) can honour it.

use super::{Ctx, Done, Worker};
use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

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
        self.stop_taking();
        for h in self.handles {
            let _ = h.join();
        }
    }

    /// Stop within `limit`: no new job starts; the messages in flight get
    /// until `limit` to finish, then the workers are joined. Returns how
    /// many were still in flight at the limit (0: every worker joined).
    /// Those workers are left running, detached: the caller is about to
    /// exit, which ends them; their messages stay in the queue (nothing is
    /// removed before the relay's final reply) and the next start retries
    /// them.
    pub fn shutdown_within(self, limit: Duration) -> usize {
        self.stop_taking();
        let deadline = std::time::Instant::now() + limit;
        let (m, cv) = &*self.shared;
        let left = {
            let Ok(mut j) = m.lock() else { return 0 };
            loop {
                let now = std::time::Instant::now();
                if j.in_flight == 0 || now >= deadline {
                    break j.in_flight;
                }
                j = match cv.wait_timeout(j, deadline - now) {
                    Ok((j, _)) => j,
                    Err(_) => return 0,
                };
            }
        };
        if left == 0 {
            for h in self.handles {
                let _ = h.join();
            }
        }
        left
    }

    fn stop_taking(&self) {
        let (m, cv) = &*self.shared;
        if let Ok(mut j) = m.lock() {
            j.shutdown = true;
            j.pending.clear();
        }
        cv.notify_all();
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
        // Panic isolation: a panic in one delivery defers that message
        // (retried after the usual backoff) and this worker lives on with
        // fresh sessions (the old ones may be mid-transaction).
        let done = match std::panic::catch_unwind(AssertUnwindSafe(|| w.deliver(&c, &job.0, job.1)))
        {
            Ok(done) => done,
            Err(payload) => {
                let what = panic_message(payload.as_ref());
                log::error!(
                    "{}: internal error: the delivery panicked ({what}); deferred, the worker continues",
                    job.0
                );
                w = Worker::new();
                let c2 = Arc::clone(&c);
                std::panic::catch_unwind(AssertUnwindSafe(|| {
                    super::defer_after_panic(&c2, &job.0, &what)
                }))
                .unwrap_or_else(|_| Done::Deferred(format!("internal error: {what}")))
            }
        };
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

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// Test-only fault injection (see the module documentation): panic when
/// `POSTERN_TEST_PANIC` names this message's id or envelope sender.
pub(super) fn injected_panic(id: &str, sender: &str) {
    static ON: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let on = ON.get_or_init(|| {
        std::env::var("POSTERN_TEST_PANIC")
            .ok()
            .filter(|v| !v.is_empty())
    });
    if let Some(v) = on
        && (v == id || v == sender)
    {
        panic!("injected test fault (POSTERN_TEST_PANIC) for {id}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn panic_messages_are_read() {
        let p = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(super::panic_message(p.as_ref()), "boom 1");
        let p = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(super::panic_message(p.as_ref()), "static");
    }
}
