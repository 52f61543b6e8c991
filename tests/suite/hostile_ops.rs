//! Hostile operations (issue 11, items 3, 4, 5 and 7): what a local user
//! or a relay can do to the daemon and to an admin's terminal through the
//! operational commands — request spam, terminal escapes, flush spam — and
//! a delivery that panics. Every test talks to the test SMTP server on
//! 127.0.0.1 and is bounded in time and count.
//!
//! Tests that act as another user (`nobody`) need root; without it they
//! print why and pass without running. They open the test installation to
//! that user the way an installed spool is open to the set-group-id binary:
//! the maildrop directory (1777), `public/` (0711) and the trigger FIFO
//! (0622) — what the
//! daemon sees (an entry owned by the caller's uid, a byte in its FIFO) is
//! the same.

use crate::support;

use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::smtp_server::{Action, Event, ServerConfig, SmtpServer};
use support::{Out, TestEnv};

const NOBODY: u32 = 65534;

// ---- helpers -----------------------------------------------------------------

fn wait_until(secs: u64, mut pred: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    pred()
}

fn postern(env: &TestEnv, args: &[&str]) -> Out {
    env.run("postern", args, b"")
}

fn submit(env: &TestEnv, args: &[&str], msg: &str) {
    let mut a = vec!["-i"];
    a.extend_from_slice(args);
    let o = env.sendmail(&a, msg.as_bytes());
    assert_eq!(o.code, 0, "sendmail failed: {o:?}");
}

/// Ids in queue/, sorted.
fn queued(env: &TestEnv) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(env.spool.join("queue"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

struct Daemon(Child);

impl Daemon {
    fn start(env: &TestEnv, vars: &[(&str, &str)]) -> Daemon {
        let mut c = env.cmd("postern");
        c.arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in vars {
            c.env(k, v);
        }
        let d = Daemon(c.spawn().expect("start the daemon"));
        assert!(
            wait_until(20, || env.log().contains("daemon started")),
            "the daemon did not start: {}",
            env.log()
        );
        d
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `config` with `opts` added to its [queue] section.
fn queue_opts(config: &str, opts: &str) -> String {
    config.replacen("[queue]\n", &format!("[queue]\n{opts}\n"), 1)
}

/// `argv0 args` run as `nobody`.
fn as_nobody(env: &TestEnv, argv0: &str, args: &[&str], stdin: &[u8]) -> Out {
    let mut c = env.cmd(argv0);
    c.uid(NOBODY).gid(NOBODY);
    env.run_cmd(c, args, stdin)
}

/// Spawn `argv0 args` as `nobody` without waiting.
fn spawn_as_nobody(env: &TestEnv, argv0: &str, args: &[&str]) -> Child {
    let mut c = env.cmd(argv0);
    c.uid(NOBODY)
        .gid(NOBODY)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().expect("spawn as nobody")
}

/// Is there any raw control byte (C0 but TAB and LF, DEL, or a C1
/// character) in `text`?
fn raw_control(text: &str) -> Option<char> {
    text.chars()
        .find(|&c| (c.is_control() && c != '\t' && c != '\n') || ('\u{80}'..='\u{9f}').contains(&c))
}

// ---- item 7: a panicking delivery ----------------------------------------------

#[test]
fn a_panicking_delivery_is_deferred_and_the_worker_lives_on() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(&queue_opts(
        &env.relay_config(server.port(), ""),
        "parallel = 1",
    ));
    let _d = Daemon::start(&env, &[("POSTERN_TEST_PANIC", "panic@example.com")]);
    submit(
        &env,
        &["-f", "panic@example.com", "erin@example.org"],
        "Subject: boom\n\nx\n",
    );
    assert!(
        wait_until(20, || env.log().contains("internal error")),
        "no panic logged: {}",
        env.log()
    );
    let ids = queued(&env);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let id = ids[0].clone();
    // Deferred with a clear reason, not left in flight.
    assert!(
        wait_until(10, || {
            let o = postern(&env, &["queue", "show", &id]);
            o.stdout.contains("internal error")
        }),
        "{:?}",
        postern(&env, &["queue", "show", &id])
    );
    let o = env.run("mailq", &[], b"");
    assert!(o.stdout.contains("internal error"), "{o:?}");
    // The single worker lives on: the next message leaves.
    submit(&env, &["frank@example.org"], "Subject: fine\n\nx\n");
    let got = server.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{}", env.log());
    assert_eq!(got[0].rcpts, vec!["frank@example.org".to_string()]);
    // The panic is logged once, and the panicking message is still queued.
    let log = env.log();
    assert_eq!(log.matches("the delivery panicked").count(), 1, "{log}");
    assert!(
        wait_until(10, || queued(&env) == vec![id.clone()]),
        "{:?} {}",
        queued(&env),
        env.log()
    );
}

// ---- item 4: terminal escapes -------------------------------------------------

#[test]
fn relay_replies_senders_and_headers_reach_no_terminal_raw() {
    // A relay that answers RCPT with a title-setting, screen-clearing
    // reply carrying BEL, NUL and a bare CR.
    let server = SmtpServer::start(ServerConfig {
        script: Arc::new(|ev: &Event| match ev {
            Event::Rcpt { .. } => Action::Reply(
                450,
                "4.2.0 \x1b]2;TITLE\x07\x1b[2J busy\x00 now\rX \u{9b}31m".into(),
            ),
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    submit(
        &env,
        &["-f", "evil\u{9b}2J\u{85}@example.com", "erin@example.org"],
        "Subject: hi \x1b[2J\x07 there\nX-Evil: \u{9b}31m red\n\nbody\n",
    );
    let o = env.queue_run();
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        server.connection_count() >= 1,
        "the relay was not asked: {}",
        env.log()
    );
    let ids = queued(&env);
    assert_eq!(ids.len(), 1, "{ids:?} {}", env.log());
    let id = &ids[0];

    let mailq = env.run("mailq", &[], b"");
    let show = postern(&env, &["queue", "show", id]);
    let status = postern(&env, &["status"]);
    let log = env.log();
    // The outside text is there, escaped.
    assert!(mailq.stdout.contains("\\x1b]2;TITLE\\x07"), "{mailq:?}");
    assert!(mailq.stdout.contains("evil\\u{9b}2J"), "{mailq:?}");
    assert!(show.stdout.contains("\\x1b[2J"), "{show:?}");
    assert!(show.stdout.contains("\\u{9b}31m red"), "{show:?}");
    assert!(status.stdout.contains("\\x1b]2;TITLE"), "{status:?}");
    assert!(log.contains("\\x1b]2;TITLE\\x07"), "{log}");
    for (what, text) in [
        ("mailq", &mailq.stdout),
        ("queue show", &show.stdout),
        ("status", &status.stdout),
        ("log", &log),
    ] {
        assert_eq!(raw_control(text), None, "raw control in {what}: {text:?}");
    }
}

// ---- item 3: request spam does not stall the daemon ------------------------------

#[test]
#[ignore = "needs root: runs commands as nobody"]
fn request_spam_against_a_message_in_delivery_does_not_stall_other_mail() {
    support::require_root();
    let server = SmtpServer::start(ServerConfig {
        script: Arc::new(|ev: &Event| match ev {
            Event::Rcpt { to, .. } if to.starts_with("slow@") => {
                Action::Reply(450, "4.2.0 mailbox busy, try later".into())
            }
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    let _d = Daemon::start(&env, &[]);
    env.open_to_nobody();
    // nobody's message, deferred once (so its state says whose it is).
    let o = as_nobody(
        &env,
        "sendmail",
        &["-i", "slow@example.org"],
        b"Subject: m\n\nx\n",
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        wait_until(20, || env.log().contains("status=deferred")),
        "{}",
        env.log()
    );
    let ids = queued(&env);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let m = ids[0].clone();

    // M is being delivered: its lock is held (as a delivery holds it).
    let f = std::fs::File::open(env.spool.join("queue").join(&m)).expect("open M");
    f.lock().expect("lock M");

    // 40 parallel deletions of M by its owner, nobody.
    let spam: Vec<Child> = (0..40)
        .map(|_| spawn_as_nobody(&env, "postern", &["queue", "delete", &m]))
        .collect();
    assert!(
        wait_until(20, || env.log().matches("queued for the daemon").count()
            >= 40),
        "the requests were not all made: {}",
        env.log()
    );
    // An unrelated message from root arrives within a small bound.
    let start = Instant::now();
    submit(&env, &["ok@example.org"], "Subject: unrelated\n\nx\n");
    let got = server.wait_for(1, Duration::from_secs(40));
    let took = start.elapsed();
    assert_eq!(got.len(), 1, "{}", env.log());
    assert_eq!(got[0].rcpts, vec!["ok@example.org".to_string()]);
    assert!(
        took < Duration::from_secs(5),
        "the unrelated message waited {took:?}: {}",
        env.log()
    );
    // The budget: at most 30 requests a minute from one uid.
    assert!(
        wait_until(10, || env.log().contains("more than 30 requests a minute")),
        "{}",
        env.log()
    );
    // ... logged once, not once per dropped request.
    assert_eq!(
        env.log().matches("more than 30 requests a minute").count(),
        1,
        "{}",
        env.log()
    );
    // The delivery ends: a kept request is applied at the next pickup.
    drop(f);
    submit(&env, &["ok2@example.org"], "Subject: wake\n\nx\n");
    assert!(
        wait_until(10, || !queued(&env).contains(&m)),
        "M was not deleted after its delivery ended: {}",
        env.log()
    );
    for mut c in spam {
        let _ = c.kill();
        let _ = c.wait();
    }
    eprintln!("unrelated message delivered {took:?} after submission under request spam");
}

// ---- item 5: flush as a weapon --------------------------------------------------

#[test]
#[ignore = "needs root: runs commands as nobody"]
fn flushes_by_a_user_make_a_bounded_number_of_connections() {
    support::require_root();
    // A relay that hangs up at MAIL (say, a provider enforcing a rate
    // limit): every attempt is a new connection.
    let server = SmtpServer::start(ServerConfig {
        script: Arc::new(|ev: &Event| match ev {
            Event::Mail { .. } => Action::Drop,
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    let _d = Daemon::start(&env, &[]);
    env.open_to_nobody();
    for i in 0..3 {
        submit(&env, &[&format!("r{i}@example.org")], "Subject: d\n\nx\n");
    }
    assert!(
        wait_until(20, || env.log().matches("status=deferred").count() >= 3),
        "{}",
        env.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let before = server.connection_count();

    // 10 flushes by nobody in 3 s.
    for _ in 0..10 {
        let o = as_nobody(&env, "postern", &["flush"], b"");
        assert_eq!(o.code, 0, "{o:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(2));
    let by_nobody = server.connection_count() - before;
    let attempts = env.log().matches("status=deferred").count() - 3;
    eprintln!(
        "10 flushes by nobody made {by_nobody} connection(s), {attempts} attempt(s) for 3 deferred messages"
    );
    // Nothing is due (retry_min is a minute): a user's flush forces nothing.
    assert!(by_nobody <= 1, "{by_nobody} connections: {}", env.log());
    assert!(
        env.log().contains("flush asked by a user ignored"),
        "{}",
        env.log()
    );
    assert_eq!(attempts, 0, "{}", env.log());

    // Root's flush is unchanged: everything now.
    let o = postern(&env, &["flush"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        wait_until(20, || env.log().matches("status=deferred").count() >= 6),
        "root's flush did not deliver: {}",
        env.log()
    );
}
