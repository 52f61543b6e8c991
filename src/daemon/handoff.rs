//! What happens after a message is safe in the spool: wake the daemon, or
//! start a detached queue run when none answers, or (`-odi`) deliver now
//! and report the result through the exit status.
//!
//! Who may deliver in this process: a caller that may use the relay
//! credentials — root (the run continues as the spool owner) or an
//! unprivileged development setup. Everyone else only pokes the daemon;
//! with `-odi` they wait (bounded) for the daemon's first attempt by
//! watching the world-readable state file, and acknowledge a permanent
//! failure so the daemon sends no bounce (the caller was told).

use crate::config::Config;
use crate::daemon;
use crate::daemon::runner::Done;
use crate::error::{Kind, Result};
use crate::spool::Spool;
use crate::spool::state::RcptStatus;
use crate::submit::Committed;
use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// When delivery happens (`-od…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Queue and let the background runner deliver (default).
    Background,
    /// Deliver before returning; the exit status reflects the result.
    Interactive,
    /// Only queue.
    Queue,
}

/// How long `-odi` waits for the daemon's first attempt.
const ODI_WAIT: Duration = Duration::from_secs(120);

/// Everything the hand-off needs to know about this process.
pub struct Handoff<'a> {
    /// Configuration.
    pub cfg: &'a Config,
    /// What a queue run in this process does with request entries.
    pub requests: daemon::RequestHandler,
    /// Installed setgid binary.
    pub privileged: bool,
    /// Caller's uid.
    pub uid: u32,
    /// The daemon's trigger FIFO, when a daemon reads it
    /// (`Prepared::take_trigger`).
    pub trigger: Option<File>,
    /// `-C` file to pass on to a spawned runner (unprivileged only).
    pub config_path: Option<PathBuf>,
    /// A handle on maildrop/ (privileged), to see whether an entry was picked up.
    pub maildrop: Option<File>,
}

impl Handoff<'_> {
    fn may_deliver(&self) -> bool {
        daemon::may_run_queue(self.privileged, self.uid, &Spool::new(&self.cfg.spool_dir))
    }

    fn trigger(&mut self) -> Option<File> {
        self.trigger.take()
    }

    /// Act on `committed` according to `mode`; returns the exit code.
    pub fn run(mut self, committed: &[Committed], mode: DeliveryMode) -> Result<u8> {
        if committed.is_empty() {
            return Ok(0);
        }
        match mode {
            DeliveryMode::Queue => {
                log::debug!("queued only (-odq); the next queue run delivers");
                Ok(0)
            }
            DeliveryMode::Interactive if self.may_deliver() => self.deliver_now(committed),
            DeliveryMode::Interactive => {
                let Some(fifo) = self.trigger() else {
                    log::warn!(
                        "no postern daemon is running: the message is queued and will be delivered when it starts"
                    );
                    return Ok(0);
                };
                if !daemon::poke(&fifo, b'W') {
                    log::warn!(
                        "no postern daemon is running: the message is queued and will be delivered when it starts"
                    );
                    return Ok(0);
                }
                self.wait_for_daemon(&committed[0].id, &fifo)
            }
            DeliveryMode::Background => {
                let answered = self.trigger().is_some_and(|f| daemon::poke(&f, b'W'));
                if answered {
                    return Ok(0);
                }
                if self.may_deliver() && self.cfg.queue.run_on_submit {
                    self.spawn_runner();
                } else if !self.may_deliver() {
                    log::warn!(
                        "{}: no postern daemon is running; the message waits in the queue until postern.service starts",
                        committed[0].id
                    );
                }
                Ok(0)
            }
        }
    }

    fn spawn_runner(&self) {
        use std::process::{Command, Stdio};
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                log::warn!("cannot start a queue run: {e}");
                return;
            }
        };
        let mut cmd = Command::new(exe);
        std::os::unix::process::CommandExt::arg0(&mut cmd, "postern");
        if let Some(p) = &self.config_path {
            cmd.arg("-C").arg(p);
        }
        cmd.args(["queue", "run", "--auto"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match cmd.spawn() {
            Ok(_child) => log::debug!("started a detached queue run"),
            Err(e) => log::warn!("cannot start a queue run: {e}"),
        }
    }

    fn deliver_now(&self, committed: &[Committed]) -> Result<u8> {
        let ids: Vec<String> = committed.iter().map(|c| c.id.clone()).collect();
        let results = daemon::run_interactive(self.cfg.clone(), ids, self.requests)?;
        let mut code = 0;
        for (id, done) in results {
            match done {
                Done::Finished {
                    sent: 0,
                    bounced,
                    last_bounce: Some(reply),
                } if bounced > 0 => {
                    eprintln!("sendmail: {id}: refused: {}", crate::escape::field(&reply));
                    code = if reply.contains(" 5.1.") {
                        Kind::NoUser.exit_code()
                    } else {
                        Kind::Unavailable.exit_code()
                    };
                }
                Done::Deferred(why) => {
                    log::debug!("{id}: deferred ({why}); it stays queued");
                }
                _ => {}
            }
        }
        Ok(code)
    }

    fn wait_for_daemon(&mut self, id: &str, fifo: &File) -> Result<u8> {
        let spool = Spool::new(&self.cfg.spool_dir);
        let start = Instant::now();
        let mut seen = false;
        while start.elapsed() < ODI_WAIT {
            match crate::spool::queue::load_state(&spool, id) {
                Some(st) if st.held => {
                    log::warn!(
                        "{id}: queued but held: {}",
                        crate::escape::field(&st.hold_reason)
                    );
                    return Ok(0);
                }
                Some(st) if st.tries > 0 || st.is_done() => {
                    if st.is_done() && st.rcpts.iter().all(|r| r.status == RcptStatus::Bounced) {
                        let reply = st.rcpts.last().map(|r| r.reply.clone()).unwrap_or_default();
                        eprintln!("sendmail: {id}: refused: {}", crate::escape::field(&reply));
                        let mut ack = vec![b'A'];
                        ack.extend_from_slice(id.as_bytes());
                        let mut f = fifo;
                        let _ = std::io::Write::write_all(&mut f, &ack);
                        return Ok(if reply.contains(" 5.1.") {
                            Kind::NoUser.exit_code()
                        } else {
                            Kind::Unavailable.exit_code()
                        });
                    }
                    return Ok(0);
                }
                Some(_) => seen = true,
                None => {
                    let waiting = match &self.maildrop {
                        Some(d) => d
                            .try_clone()
                            .map(|d| crate::spool::maildrop::names(d).iter().any(|n| n == id))
                            .unwrap_or(false),
                        None => spool.maildrop().join(id).exists(),
                    };
                    if !waiting && (seen || start.elapsed() > Duration::from_millis(200)) {
                        return Ok(0); // picked up and finished
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        log::warn!(
            "{id}: no delivery result within {}s; the message stays queued",
            ODI_WAIT.as_secs()
        );
        Ok(0)
    }
}
