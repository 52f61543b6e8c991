//! Concurrency faults (issue 5): many submitters at once, and two queue
//! runners at once.
//!
//! - 200 `sendmail` processes started together (one thread each). When the
//!   test runs as root, every other one runs as `nobody` (uid/gid 65534,
//!   through `CommandExt::uid/gid`), so at least two users submit into the
//!   same spool. The binary is not setgid in tests, so the development
//!   spool must let `nobody` create entries: the test pre-creates the
//!   layout and makes `maildrop/` mode 1777 (sticky, world-writable) and
//!   the config and log readable/writable — the installed layout instead
//!   gives that right to the `postern-drop` group only (tests/privilege.rs
//!   covers it). Asserts 200 committed entries with unique ids, each owned
//!   by its submitter, then one queue run delivers each exactly once
//!   (matched by a unique token in each body).
//! - A running `postern daemon` plus two `postern queue run` and a
//!   `sendmail -q` at the same time, over several rounds: every message
//!   exactly once.

use crate::support;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::TestEnv;
use support::smtp_server::{Action, Event, Received, ServerConfig, SmtpServer};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn token_of(m: &Received) -> String {
    String::from_utf8_lossy(&m.data)
        .lines()
        .find_map(|l| l.strip_prefix("X-Token: ").map(|t| t.trim().to_string()))
        .unwrap_or_default()
}

#[test]
fn two_hundred_concurrent_submissions_from_several_users_each_delivered_once() {
    const N: usize = 200;
    let server = SmtpServer::start(ServerConfig::default());
    let env = Arc::new(TestEnv::new());
    env.write_config(&env.relay_config(server.port(), ""));
    let two_users = is_root();
    if two_users {
        env.open_to_nobody();
    } else {
        eprintln!("concurrency: not root, so all 200 submissions come from one user");
    }
    let me = nix::unistd::getuid().as_raw();
    let start = Arc::new(std::sync::Barrier::new(N));
    let mut handles = Vec::new();
    for i in 0..N {
        let env = Arc::clone(&env);
        let start = Arc::clone(&start);
        handles.push(std::thread::spawn(move || {
            let token = format!("tok{i:03}x{}", std::process::id());
            let mut c = env.cmd("sendmail");
            c.current_dir("/");
            let uid = if two_users && i % 2 == 1 {
                c.uid(NOBODY).gid(NOBODY);
                NOBODY
            } else {
                nix::unistd::getuid().as_raw()
            };
            let body = format!(
                "From: user{i}@example.com\nSubject: load {i}\nX-Token: {token}\n\nbody {token}\n"
            );
            start.wait();
            let o = env.run_cmd(c, &["-i", &format!("rcpt{i}@example.org")], body.as_bytes());
            (token, uid, o)
        }));
    }
    let mut expected: Vec<(String, u32)> = Vec::new();
    for h in handles {
        let (token, uid, o) = h.join().expect("thread");
        assert_eq!(o.code, 0, "{token} (uid {uid}): {o:?}");
        expected.push((token, uid));
    }
    // 200 committed entries, unique ids, each owned by its submitter.
    let entries = env.entries();
    assert_eq!(entries.len(), N, "committed entries");
    let mut ids: Vec<String> = entries.iter().map(|e| e.get("id").expect("id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "queue ids are not unique");
    for e in &entries {
        let name = e.path.file_name().and_then(|n| n.to_str()).expect("name");
        assert_eq!(e.get("id").as_deref(), Some(name));
        let token = String::from_utf8_lossy(&e.message)
            .lines()
            .find_map(|l| l.strip_prefix("X-Token: ").map(str::to_string))
            .expect("token");
        let (_, uid) = expected
            .iter()
            .find(|(t, _)| *t == token)
            .expect("known token");
        let owner = std::fs::metadata(&e.path).expect("md").uid();
        assert_eq!(owner, *uid, "{token}: entry owner");
        assert_eq!(e.get("uid"), Some(uid.to_string()));
    }
    let users: std::collections::HashSet<u32> = expected.iter().map(|(_, u)| *u).collect();
    if two_users {
        assert!(users.len() >= 2 && users.contains(&me) && users.contains(&NOBODY));
    }
    // One queue run delivers each exactly once.
    let o = env.queue_run();
    assert_eq!(o.code, 0, "{o:?}");
    let got = server.wait_for(N, Duration::from_secs(90));
    let mut tokens: Vec<String> = got.iter().map(token_of).collect();
    tokens.sort();
    let mut want: Vec<String> = expected.iter().map(|(t, _)| t.clone()).collect();
    want.sort();
    assert_eq!(tokens, want, "each message exactly once");
    for m in &got {
        let t = token_of(m);
        let i: usize = t[3..6].parse().expect("index");
        assert_eq!(m.rcpts, vec![format!("rcpt{i}@example.org")]);
    }
    assert!(env.files("queue").is_empty());
    assert!(env.files("maildrop").is_empty());
    println!(
        "concurrency: {N} concurrent submissions from {} user(s): {N} unique ids, {N} delivered once, 0 lost, 0 duplicates",
        users.len()
    );
}

fn spawn(env: &TestEnv, argv0: &str, args: &[&str]) -> Child {
    let mut c = env.cmd(argv0);
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().expect("spawn")
}

fn wait_exit(mut c: Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(st)) = c.try_wait() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = c.kill();
    let _ = c.wait();
    None
}

#[test]
fn daemon_and_concurrent_queue_runs_never_deliver_a_message_twice() {
    const ROUNDS: usize = 3;
    const N: usize = 30;
    // A small delay after the data widens the windows in which two runners
    // could both think a message is theirs.
    let server = SmtpServer::start(ServerConfig {
        script: Arc::new(|e: &Event| match e {
            Event::DataEnd { .. } => {
                Action::Delay(Duration::from_millis(3), Box::new(Action::Default))
            }
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    let mut all_tokens = Vec::new();
    for round in 0..ROUNDS {
        for i in 0..N {
            let token = format!("r{round}m{i:02}");
            let o = env.sendmail(
                &["-i", "one@example.org", "two@example.org"],
                format!("Subject: {token}\nX-Token: {token}\n\n{token}\n").as_bytes(),
            );
            assert_eq!(o.code, 0, "{o:?}");
            all_tokens.push(token);
        }
        // Everything starts at once: the daemon (which picks up and
        // delivers at start), two one-shot runs and a flush request.
        let mut daemon = spawn(&env, "postern", &["daemon"]);
        let q1 = spawn(&env, "postern", &["queue", "run"]);
        let q2 = spawn(&env, "postern", &["queue", "run"]);
        let q3 = spawn(&env, "sendmail", &["-q"]);
        for q in [q1, q2, q3] {
            assert_eq!(
                wait_exit(q, Duration::from_secs(60)),
                Some(0),
                "a runner failed"
            );
        }
        let want = (round + 1) * N;
        let got = server.wait_for(want, Duration::from_secs(60));
        assert!(
            got.len() >= want,
            "round {round}: {} of {want} delivered",
            got.len()
        );
        // Let the daemon finish what it has in flight, then stop it.
        let start = Instant::now();
        while !env.files("queue").is_empty() && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(daemon.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = daemon.try_wait() {
                assert_eq!(st.code(), Some(0), "daemon exit");
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = daemon.kill();
                panic!("daemon did not stop");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            env.files("queue").is_empty(),
            "round {round}: queue not empty"
        );
    }
    let msgs = server.messages();
    let mut tokens: Vec<String> = msgs.iter().map(token_of).collect();
    tokens.sort();
    let mut dups = tokens.clone();
    dups.dedup();
    let duplicates = tokens.len() - dups.len();
    all_tokens.sort();
    assert_eq!(duplicates, 0, "{duplicates} message(s) delivered twice");
    assert_eq!(tokens, all_tokens);
    for m in &msgs {
        assert_eq!(m.rcpts, vec!["one@example.org", "two@example.org"]);
    }
    println!(
        "concurrency: {} messages, daemon + 2 queue runs + sendmail -q at once ({ROUNDS} rounds): 0 lost, {duplicates} duplicates",
        ROUNDS * N
    );
}
