//! Fault suite, delivery side: `kill -9` of the queue runner before, during
//! and after DATA, and a relay that drops the connection mid-DATA (issue 5).
//!
//! Each case submits a message with several recipients, starts
//! `postern queue run` against an `SmtpServer` whose script stops at one
//! point of the transaction (it signals the test and delays its reply),
//! SIGKILLs the runner there, stops that server, and runs the queue again
//! against a normal server. Every recipient must arrive; a message may
//! arrive twice only when the kill fell between the server's acceptance and
//! the runner's state save (the one window at-least-once delivery leaves
//! open), and the counts of such duplicates are printed.

use crate::support;

use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::TestEnv;
use support::smtp_server::{Action, Event, Received, ServerConfig, SmtpServer};

const RCPTS: [&str; 3] = ["one@example.org", "two@example.org", "three@example.net"];

fn env_parallel(parallel: usize) -> TestEnv {
    TestEnv::with_config_fn(move |root| {
        support::base_config(root)
            .replace("[queue]\n", &format!("[queue]\nparallel = {parallel}\n"))
    })
}

fn relay(env: &TestEnv, port: u16) {
    // The current config without its relay (keeps this env's [queue] tweaks).
    let old = std::fs::read_to_string(&env.config).expect("config");
    let base = old.split("[[relay]]").next().unwrap_or(&old).to_string();
    env.write_config(&format!(
        "{base}[[relay]]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n"
    ));
}

fn submit(env: &TestEnv, token: &str) {
    let body = format!(
        "From: sender@example.com\nSubject: {token}\nX-Token: {token}\n\nbody of {token}\n{}\nEND-{token}\n",
        "x".repeat(5000)
    );
    let mut args = vec!["-i"];
    args.extend(RCPTS);
    let o = env.sendmail(&args, body.as_bytes());
    assert_eq!(o.code, 0, "{o:?}");
}

fn token_of(m: &Received) -> String {
    String::from_utf8_lossy(&m.data)
        .lines()
        .find_map(|l| l.strip_prefix("X-Token: ").map(|t| t.trim().to_string()))
        .unwrap_or_default()
}

fn spawn_queue_run(env: &TestEnv) -> Child {
    let mut c = env.cmd("postern");
    c.args(["queue", "run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().expect("spawn postern queue run")
}

fn wait_flag(flag: &AtomicBool, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// (token, recipient) pairs delivered, over all servers.
fn deliveries(msgs: &[Received]) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for m in msgs {
        let t = token_of(m);
        let text = String::from_utf8_lossy(&m.data).into_owned();
        assert!(
            text.ends_with(&format!("\r\nEND-{t}\r\n")),
            "{t}: a partial message was accepted"
        );
        for r in &m.rcpts {
            v.push((t.clone(), r.clone()));
        }
    }
    v.sort();
    v
}

/// Checks: every recipient of every token delivered; returns the number of
/// duplicate (token, recipient) deliveries.
fn check_all_delivered(tokens: &[&str], got: &[(String, String)]) -> usize {
    let mut dups = 0;
    for t in tokens {
        for r in RCPTS {
            let n = got.iter().filter(|(gt, gr)| gt == t && gr == r).count();
            assert!(n >= 1, "{t} to {r} was lost");
            dups += n - 1;
        }
    }
    assert_eq!(
        got.len(),
        tokens.len() * RCPTS.len() + dups,
        "unexpected deliveries: {got:?}"
    );
    dups
}

/// Kill the runner while the server holds the transaction at `at`; then
/// deliver with a normal server. Returns (first server's messages, second's).
fn kill_at(at: fn(&Event) -> bool, token: &str) -> (Vec<Received>, Vec<Received>, TestEnv) {
    let reached = Arc::new(AtomicBool::new(false));
    let r2 = Arc::clone(&reached);
    let s1 = SmtpServer::start(ServerConfig {
        script: Arc::new(move |e: &Event| {
            if at(e) {
                r2.store(true, Ordering::SeqCst);
                Action::Delay(Duration::from_secs(60), Box::new(Action::Default))
            } else {
                Action::Default
            }
        }),
        ..Default::default()
    });
    let env = TestEnv::new();
    relay(&env, s1.port());
    submit(&env, token);
    let mut runner = spawn_queue_run(&env);
    assert!(
        wait_flag(&reached, Duration::from_secs(30)),
        "the runner never reached the kill point"
    );
    runner.kill().expect("kill -9 the runner");
    runner.wait().expect("wait");
    // The message is still queued (nothing lost) and the server has no
    // complete transaction.
    assert_eq!(env.files("queue").len(), 1, "message gone after the kill");
    let first = s1.messages();
    drop(s1);

    let s2 = SmtpServer::start(ServerConfig::default());
    relay(&env, s2.port());
    let o = env.run("postern", &["flush"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    let second = s2.wait_for(1, Duration::from_secs(20));
    assert!(env.files("queue").is_empty(), "queue not empty");
    (first, second, env)
}

#[test]
fn kill_9_before_data_at_mail_delivers_every_recipient_once() {
    let (first, second, _env) = kill_at(|e| matches!(e, Event::Mail { .. }), "at-mail");
    assert!(first.is_empty());
    let dups = check_all_delivered(&["at-mail"], &deliveries(&second));
    assert_eq!(dups, 0);
}

#[test]
fn kill_9_during_data_before_354_delivers_every_recipient_once() {
    let (first, second, _env) = kill_at(|e| matches!(e, Event::DataStart { .. }), "at-data");
    assert!(first.is_empty());
    let dups = check_all_delivered(&["at-data"], &deliveries(&second));
    assert_eq!(dups, 0);
}

#[test]
fn kill_9_after_the_data_before_the_servers_250_delivers_exactly_once() {
    // The server has every byte but never replied 250: its transaction is
    // incomplete, so the message must arrive exactly once overall.
    let (first, second, _env) = kill_at(|e| matches!(e, Event::DataEnd { .. }), "at-dataend");
    assert!(
        first.is_empty(),
        "the first server recorded a transaction it never acknowledged"
    );
    let mut all = first.clone();
    all.extend(second);
    let dups = check_all_delivered(&["at-dataend"], &deliveries(&all));
    assert_eq!(dups, 0);
}

#[test]
fn kill_9_in_the_acceptance_window_duplicates_at_most_once() {
    // SIGKILL from the server's acceptance hook: the server has accepted
    // (it will reply 250), the runner has not saved the state. This is the
    // at-least-once window: one duplicate at most.
    let runner_pid = Arc::new(AtomicI32::new(0));
    let hits = Arc::new(AtomicUsize::new(0));
    let (p2, h2) = (Arc::clone(&runner_pid), Arc::clone(&hits));
    let s1 = SmtpServer::start(ServerConfig {
        on_message: Some(Arc::new(move |_m: &Received| {
            h2.fetch_add(1, Ordering::SeqCst);
            let start = Instant::now();
            while p2.load(Ordering::SeqCst) == 0 && start.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let pid = p2.load(Ordering::SeqCst);
            if pid > 0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        })),
        ..Default::default()
    });
    let env = TestEnv::new();
    relay(&env, s1.port());
    submit(&env, "window");
    let mut runner = spawn_queue_run(&env);
    runner_pid.store(runner.id() as i32, Ordering::SeqCst);
    let status = runner.wait().expect("wait");
    assert!(!status.success(), "the runner was not killed");
    let first = s1.messages();
    drop(s1);
    let s2 = SmtpServer::start(ServerConfig::default());
    relay(&env, s2.port());
    let o = env.run("postern", &["flush"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        env.files("queue").is_empty(),
        "queue not empty after the second run"
    );
    let mut all = first.clone();
    all.extend(s2.messages());
    let dups = check_all_delivered(&["window"], &deliveries(&all));
    assert!(dups <= RCPTS.len(), "more than one duplicate transaction");
    println!(
        "fault_runner: acceptance-window kill: {} duplicate transaction(s)",
        dups / RCPTS.len()
    );
}

#[test]
fn kill_9_after_data_and_state_save_does_not_resend() {
    // parallel = 1 and one session: the second MAIL of the session comes
    // only after the first message's 250 and its state save. Kill there:
    // the first message must not be sent again, the second must arrive once.
    let mails = Arc::new(AtomicUsize::new(0));
    let reached = Arc::new(AtomicBool::new(false));
    let (m2, r2) = (Arc::clone(&mails), Arc::clone(&reached));
    let s1 = SmtpServer::start(ServerConfig {
        script: Arc::new(move |e: &Event| {
            if matches!(e, Event::Mail { .. }) && m2.fetch_add(1, Ordering::SeqCst) == 1 {
                r2.store(true, Ordering::SeqCst);
                return Action::Delay(Duration::from_secs(60), Box::new(Action::Default));
            }
            Action::Default
        }),
        ..Default::default()
    });
    let env = env_parallel(1);
    relay(&env, s1.port());
    submit(&env, "after-a");
    submit(&env, "after-b");
    let mut runner = spawn_queue_run(&env);
    assert!(
        wait_flag(&reached, Duration::from_secs(30)),
        "no second MAIL"
    );
    runner.kill().expect("kill");
    runner.wait().expect("wait");
    let first = s1.messages();
    assert_eq!(first.len(), 1, "{first:?}");
    drop(s1);
    assert_eq!(
        env.files("queue").len(),
        1,
        "the delivered message is still queued"
    );
    let s2 = SmtpServer::start(ServerConfig::default());
    relay(&env, s2.port());
    let o = env.run("postern", &["flush"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    let mut all = first;
    all.extend(s2.wait_for(1, Duration::from_secs(20)));
    let dups = check_all_delivered(&["after-a", "after-b"], &deliveries(&all));
    assert_eq!(dups, 0);
    assert!(env.files("queue").is_empty());
}

#[test]
fn connection_dropped_mid_data_is_deferred_then_delivered_once() {
    let sessions = Arc::new(Mutex::new(0usize));
    let s2 = Arc::clone(&sessions);
    let server = SmtpServer::start(ServerConfig {
        script: Arc::new(move |e: &Event| match e {
            Event::DataStart { session } => {
                let mut first = s2.lock().expect("lock");
                if *first == 0 && *session == 0 {
                    *first += 1;
                    return Action::DropAfterBytes(700);
                }
                Action::Default
            }
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = TestEnv::new();
    relay(&env, server.port());
    submit(&env, "dropped");
    let o = env.queue_run();
    assert_eq!(o.code, 0, "{o:?}");
    assert!(server.messages().is_empty(), "a torn DATA was accepted");
    assert_eq!(env.files("queue").len(), 1, "deferred message not kept");
    let id = env.files("queue")[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("id")
        .to_string();
    let st = std::fs::read_to_string(env.spool.join("state").join(&id)).expect("state");
    let st = postern::spool::state::State::decode(&st).expect("state decodes");
    assert_eq!(st.tries, 1);
    assert!(
        st.rcpts
            .iter()
            .all(|r| r.status == postern::spool::state::RcptStatus::Deferred)
    );
    assert!(env.log().contains("status=deferred"));
    let o = env.run("postern", &["flush"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    let got = server.wait_for(1, Duration::from_secs(20));
    let dups = check_all_delivered(&["dropped"], &deliveries(&got));
    assert_eq!(dups, 0);
    assert!(env.files("queue").is_empty());
}

fn state_of(env: &TestEnv, id: &str) -> postern::spool::state::State {
    let text = std::fs::read_to_string(env.spool.join("state").join(id)).expect("state file");
    postern::spool::state::State::decode(&text).expect("state decodes")
}

#[test]
fn smart_host_down_for_a_simulated_week_retries_on_schedule_then_bounces() {
    // A port nobody listens on.
    let closed = support::closed_port();
    let env = TestEnv::new();
    env.write_config(&env.relay_config(closed, ""));
    let t0 = 1_900_000_000.0_f64;
    let o = env.run_at(
        t0,
        "sendmail",
        &["-i", "far@example.org"],
        b"Subject: week\nX-Token: week\n\nhello\n",
    );
    assert_eq!(o.code, 0, "{o:?}");
    let o = env.queue_run_at(t0);
    assert_eq!(o.code, 0, "{o:?}");
    let id = env.files("queue")[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("id")
        .to_string();
    let (min, max) = (60.0_f64, 3600.0_f64);
    let expected = |tries: u32| (min * 2f64.powi(tries as i32 - 1)).min(max);
    let check_delay = |st: &postern::spool::state::State| {
        let d = st.next - st.last_attempt;
        let e = expected(st.tries);
        assert!(
            d >= e * 0.9 - 0.01 && d <= e * 1.1 + 0.01,
            "after try {}: retry in {d:.1}s, expected {e}s ±10%",
            st.tries
        );
    };
    let mut st = state_of(&env, &id);
    assert_eq!(st.tries, 1);
    check_delay(&st);
    let mut attempts = 1;
    // Follow the schedule through the doubling up to the cap: before each
    // retry is due nothing happens; once due, exactly one attempt.
    while st.tries < 9 {
        let before = st.clone();
        // 1 s early (POSTERN_NOW stands still: no margin for start-up time).
        let o = env.queue_run_at(before.next - 1.0);
        assert_eq!(o.code, 0, "{o:?}");
        let same = state_of(&env, &id);
        assert_eq!(
            (same.tries, same.last_attempt),
            (before.tries, before.last_attempt),
            "retried early"
        );
        let o = env.queue_run_at(before.next + 1.0);
        assert_eq!(o.code, 0, "{o:?}");
        st = state_of(&env, &id);
        assert_eq!(st.tries, before.tries + 1, "not retried when due");
        attempts += 1;
        check_delay(&st);
        assert!(
            st.rcpts
                .iter()
                .all(|r| r.status == postern::spool::state::RcptStatus::Deferred)
        );
    }
    // Then a day at a time (each run: one due retry, next one an hour out).
    for day in 1..5 {
        let o = env.queue_run_at(t0 + f64::from(day) * 86400.0);
        assert_eq!(o.code, 0, "{o:?}");
        let now = state_of(&env, &id);
        assert_eq!(now.tries, st.tries + 1);
        attempts += 1;
        check_delay(&now);
        st = now;
    }
    // Past max_lifetime (5 days): bounced, a DSN queued to the sender.
    let t_end = t0 + 5.0 * 86400.0 + 60.0;
    let o = env.queue_run_at(t_end);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(env.log().contains("status=bounced"), "{}", env.log());
    let left = env.entries();
    assert_eq!(left.len(), 1, "expected only the DSN in the queue");
    let dsn = &left[0];
    assert_eq!(dsn.sender(), "");
    let sender =
        postern::submit::User::lookup(nix::unistd::getuid().as_raw()).name + "@example.com";
    assert_eq!(dsn.rcpts(), vec![sender.clone()]);
    // The relay comes back: the bounce is delivered from <>, the queue empties.
    let server = SmtpServer::start(ServerConfig::default());
    env.write_config(&env.relay_config(server.port(), ""));
    // (The runner may already have tried the DSN once against the dead
    // relay right after queueing it: an hour later it is due in any case.)
    let o = env.queue_run_at(t_end + 3600.0);
    assert_eq!(o.code, 0, "{o:?}");
    let got = server.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "DSN not delivered: {o:?}\n{}", env.log());
    assert_eq!(got[0].mail_from, "");
    assert_eq!(got[0].rcpts, vec![sender]);
    let text = String::from_utf8_lossy(&got[0].data);
    assert!(text.contains("multipart/report"), "{text}");
    assert!(text.contains("far@example.org"), "{text}");
    let o = env.queue_run_at(t0 + 7.0 * 86400.0);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(env.files("queue").is_empty(), "{:?}", env.files("queue"));
    assert!(env.files("state").is_empty(), "{:?}", env.files("state"));
    println!(
        "fault_runner: relay down a simulated week: {attempts} attempts on schedule, bounced after 5 days, DSN delivered, queue empty"
    );
}
