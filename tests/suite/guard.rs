//! The outbound guard (issue 15) through the real binary: per-submitter
//! limits (a burst is held after its limit, one alert per window, release
//! delivers exactly once, the window moves with the daemon's clock), a
//! limited uid next to a flowing one (root only: runs as nobody), storm
//! collapse (the first N plus one summary, `release --storm`), suppression
//! of 5.1.x recipients (bounced without contacting the relay; listed and
//! cleared), and the DSN cap.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::Duration;
use support::smtp_server::{Action, Event, Received, ServerConfig, SmtpServer};
use support::{Out, TestEnv};

const NOBODY: u32 = 65534;

fn me() -> u32 {
    nix::unistd::getuid().as_raw()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn relay() -> SmtpServer {
    SmtpServer::start(ServerConfig::default())
}

fn env_with(server: &SmtpServer, limits: &str) -> TestEnv {
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), limits));
    env
}

fn send(env: &TestEnv, from: &str, to: &str, subject: &str, body: &str) {
    let o = env.sendmail(
        &["-f", from, to],
        format!("Subject: {subject}\n\n{body}\n").as_bytes(),
    );
    assert_eq!(o.code, 0, "{o:?}");
}

fn run(env: &TestEnv) {
    let o = env.queue_run();
    assert_eq!(o.code, 0, "{o:?}");
}

fn postern(env: &TestEnv, args: &[&str]) -> Out {
    env.run("postern", args, b"")
}

/// Wait briefly for the relay to settle, then everything it got.
fn settled(server: &SmtpServer, n: usize) -> Vec<Received> {
    server.wait_for(n, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    server.messages()
}

fn alerts(msgs: &[Received]) -> Vec<&Received> {
    msgs.iter()
        .filter(|m| m.rcpts.iter().any(|r| r == "admin@example.net"))
        .collect()
}

#[test]
fn burst_is_held_alert_once_release_delivers_once() {
    let server = relay();
    let uid = me();
    let env = env_with(
        &server,
        &format!(
            "[limits]\nexempt = []\nalert_to = \"admin@example.net\"\n\
             [limits.user.\"{uid}\"]\nmessages_per_hour = 3\n"
        ),
    );
    for i in 0..6 {
        send(
            &env,
            "app@example.com",
            "bob@example.org",
            &format!("order {i}"),
            "x",
        );
    }
    run(&env);
    let msgs = settled(&server, 4);
    let to_bob = msgs
        .iter()
        .filter(|m| m.mail_from == "app@example.com")
        .count();
    assert_eq!(to_bob, 3, "the first 3 flow: {msgs:?}");
    let a = alerts(&msgs);
    assert_eq!(a.len(), 1, "one alert: {msgs:?}");
    let text = String::from_utf8_lossy(&a[0].data);
    assert!(text.contains("over 3 messages/hour"), "{text}");
    assert!(text.contains("postern queue release --user"), "{text}");

    // Held: listed with the reason, by user; the log says why.
    let l = postern(
        &env,
        &["queue", "list", "--held", "--user", &uid.to_string()],
    );
    assert_eq!(l.code, 0, "{l:?}");
    assert_eq!(
        l.stdout.matches("over 3 messages/hour").count(),
        3,
        "{}",
        l.stdout
    );
    let j = postern(&env, &["queue", "list", "--json", "--held"]);
    assert_eq!(j.stdout.lines().count(), 3, "{}", j.stdout);
    assert!(j.stdout.contains("\"hold_reason\""), "{}", j.stdout);
    assert!(env.log().contains("held: "), "{}", env.log());
    // status: exit 1, the user over the limit.
    let s = postern(&env, &["status"]);
    assert_eq!(s.code, 1, "{s:?}");
    assert!(s.stdout.contains("over 3 messages/hour"), "{}", s.stdout);
    // stats: accepted and held per user.
    let p = postern(&env, &["stats", "--prometheus"]);
    assert!(
        p.stdout
            .contains(&format!("postern_user_held_total{{uid=\"{uid}\"")),
        "{}",
        p.stdout
    );
    let line = p
        .stdout
        .lines()
        .find(|l| l.starts_with("postern_user_accepted_total"))
        .unwrap_or_default()
        .to_string();
    assert!(line.ends_with(" 6"), "{}", p.stdout);

    // More in the same window: held, no second alert.
    send(&env, "app@example.com", "bob@example.org", "order 6", "x");
    run(&env);
    let msgs = settled(&server, 4);
    assert_eq!(msgs.len(), 4, "{msgs:?}");

    // Release by user: each held message delivered exactly once.
    let r = postern(&env, &["queue", "release", "--user", &uid.to_string()]);
    assert_eq!(r.code, 0, "{r:?}");
    run(&env);
    run(&env);
    let msgs = settled(&server, 8);
    let mut subjects: Vec<String> = msgs
        .iter()
        .filter(|m| m.mail_from == "app@example.com")
        .map(|m| {
            String::from_utf8_lossy(&m.data)
                .lines()
                .find(|l| l.starts_with("Subject:"))
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    subjects.sort();
    let before = subjects.len();
    subjects.dedup();
    assert_eq!(before, 7, "7 messages to bob: {msgs:?}");
    assert_eq!(subjects.len(), 7, "each once: {subjects:?}");
    assert_eq!(alerts(&msgs).len(), 1);
    assert!(env.files("queue").is_empty());
    assert_eq!(postern(&env, &["status"]).code, 0);

    // The window is the daemon's clock: an hour later the counts start over.
    let later = now() + 2.0 * 3600.0;
    for i in 0..2 {
        let o = env.run_at(
            later,
            "sendmail",
            &["-f", "app@example.com", "bob@example.org"],
            format!("Subject: later {i}\n\nx\n").as_bytes(),
        );
        assert_eq!(o.code, 0, "{o:?}");
    }
    assert_eq!(env.queue_run_at(later).code, 0);
    let msgs = settled(&server, 10);
    assert_eq!(msgs.len(), 10, "{msgs:?}");
}

#[test]
fn recipients_per_message_and_delete_by_user() {
    let server = relay();
    let uid = me();
    let env = env_with(
        &server,
        "[limits]\nexempt = []\nalert_to = \"admin@example.net\"\nrecipients_per_message = 2\n",
    );
    let o = env.sendmail(
        &["-f", "app@example.com", "a@x.test", "b@x.test", "c@x.test"],
        b"Subject: many\n\nx\n",
    );
    assert_eq!(o.code, 0, "{o:?}");
    run(&env);
    let msgs = settled(&server, 1);
    assert_eq!(msgs.len(), 1, "only the alert: {msgs:?}");
    assert_eq!(alerts(&msgs).len(), 1);
    let l = postern(&env, &["queue", "list"]);
    assert!(
        l.stdout.contains("over 2 recipients/message"),
        "{}",
        l.stdout
    );
    let d = postern(&env, &["queue", "delete", "--user", &uid.to_string()]);
    assert_eq!(d.code, 0, "{d:?}");
    assert!(d.stdout.contains("1 message(s) deleted"), "{}", d.stdout);
    assert!(env.files("queue").is_empty());
}

#[test]
fn counters_survive_a_restart_of_the_runner() {
    // Each queue run is a new process: the window's counts come from the
    // spool, not from memory.
    let server = relay();
    let uid = me();
    let env = env_with(
        &server,
        &format!(
            "[limits]\nexempt = []\nalert_to = \"admin@example.net\"\n\
             [limits.user.\"{uid}\"]\nmessages_per_hour = 2\n"
        ),
    );
    for i in 0..3 {
        send(
            &env,
            "app@example.com",
            "bob@example.org",
            &format!("n{i}"),
            "x",
        );
        run(&env);
    }
    let msgs = settled(&server, 3);
    assert_eq!(
        msgs.iter()
            .filter(|m| m.mail_from == "app@example.com")
            .count(),
        2,
        "{msgs:?}"
    );
    assert_eq!(alerts(&msgs).len(), 1);
    assert!(env.spool.join("guard").exists());
}

#[test]
fn storm_collapses_to_first_n_plus_one_summary() {
    let server = relay();
    let env = env_with(
        &server,
        "[limits]\nalert_to = \"admin@example.net\"\n[limits.storm]\nthreshold = 3\nwindow = \"1h\"\n",
    );
    for _ in 0..8 {
        send(
            &env,
            "cron@example.com",
            "root@example.com",
            "Cron <root@web1> /usr/local/bin/backup",
            "backup failed: disk full",
        );
    }
    run(&env);
    let msgs = settled(&server, 4);
    let cron = msgs
        .iter()
        .filter(|m| m.mail_from == "cron@example.com")
        .count();
    assert_eq!(cron, 3, "the first 3: {msgs:?}");
    let a = alerts(&msgs);
    assert_eq!(a.len(), 1, "one summary: {msgs:?}");
    let text = String::from_utf8_lossy(&a[0].data).to_string();
    assert!(text.contains("postern queue release --storm"), "{text}");
    // The storm id, from the held messages.
    let j = postern(&env, &["queue", "list", "--json", "--held"]);
    assert_eq!(j.stdout.lines().count(), 5, "{}", j.stdout);
    let v: serde_json::Value = serde_json::from_str(j.stdout.lines().next().unwrap()).unwrap();
    let storm = v["storm"].as_str().expect("storm id").to_string();
    assert!(text.contains(&storm), "{text}");
    let s = postern(&env, &["status"]);
    assert_eq!(s.code, 1, "{s:?}");
    assert!(
        s.stdout.contains(&format!("storm:           {storm}")),
        "{}",
        s.stdout
    );
    // A different message from the same sender still flows.
    send(
        &env,
        "cron@example.com",
        "root@example.com",
        "other",
        "fine",
    );
    run(&env);
    settled(&server, 5);
    // Release the storm: the 5 held go, once.
    let r = postern(&env, &["queue", "release", "--storm", &storm]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("5 message(s) changed"), "{}", r.stdout);
    run(&env);
    run(&env);
    let msgs = settled(&server, 10);
    assert_eq!(
        msgs.iter()
            .filter(|m| m.mail_from == "cron@example.com")
            .count(),
        9,
        "{msgs:?}"
    );
    assert_eq!(alerts(&msgs).len(), 1);
}

#[test]
fn suppressed_recipient_is_bounced_without_the_relay() {
    let server = SmtpServer::start(ServerConfig {
        script: Arc::new(|e: &Event| match e {
            Event::Rcpt { to, .. } if to.starts_with("gone") => {
                Action::Reply(550, "5.1.1 no such user".into())
            }
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = env_with(&server, "[limits]\nsuppress_for = \"2d\"\n");
    let rcpt_cmds = |s: &SmtpServer| {
        s.sessions()
            .iter()
            .flat_map(|x| x.commands.clone())
            .filter(|c| c.to_ascii_uppercase().starts_with("RCPT TO:<GONE@"))
            .count()
    };
    send(&env, "app@example.com", "gone@example.org", "one", "x");
    run(&env);
    settled(&server, 1); // the DSN to app@
    assert_eq!(rcpt_cmds(&server), 1);
    let l = postern(&env, &["queue", "suppressed"]);
    assert!(l.stdout.contains("gone@example.org"), "{l:?}");
    assert!(l.stdout.contains("5.1.1"), "{l:?}");
    // Again: bounced here, the relay never asked.
    send(&env, "app@example.com", "gone@example.org", "two", "x");
    run(&env);
    let msgs = settled(&server, 2);
    assert_eq!(rcpt_cmds(&server), 1, "the relay was not asked again");
    let dsns: Vec<_> = msgs.iter().filter(|m| m.mail_from.is_empty()).collect();
    assert_eq!(dsns.len(), 2, "{msgs:?}");
    assert!(String::from_utf8_lossy(&dsns[1].data).contains("suppressed"));
    assert!(env.log().contains("suppressed by postern"));
    // Cleared: the relay is asked again.
    let c = postern(&env, &["queue", "unsuppress", "gone@example.org"]);
    assert_eq!(c.code, 0, "{c:?}");
    let l = postern(&env, &["queue", "suppressed"]);
    assert!(l.stdout.contains("no suppressed recipients"), "{l:?}");
    send(&env, "app@example.com", "gone@example.org", "three", "x");
    run(&env);
    settled(&server, 3);
    assert_eq!(rcpt_cmds(&server), 2);
}

#[test]
fn bounces_to_one_address_are_capped() {
    let server = SmtpServer::start(ServerConfig {
        script: Arc::new(|e: &Event| match e {
            Event::Rcpt { to, .. } if to.starts_with("spam") => {
                Action::Reply(550, "5.7.1 rejected".into())
            }
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = env_with(&server, "[limits]\nmax_bounces_per_hour = 2\n");
    for i in 0..5 {
        send(
            &env,
            "victim@example.com",
            &format!("spam{i}@example.org"),
            "s",
            "x",
        );
    }
    run(&env);
    let msgs = settled(&server, 2);
    let dsns = msgs
        .iter()
        .filter(|m| m.mail_from.is_empty() && m.rcpts == ["victim@example.com"])
        .count();
    assert_eq!(dsns, 2, "{msgs:?}");
    assert_eq!(
        env.log().matches("not sent: over 2 bounces/hour").count(),
        3,
        "{}",
        env.log()
    );
    assert!(env.files("queue").is_empty(), "no loop, nothing left");
    let s = postern(&env, &["status"]);
    assert!(
        s.stdout
            .contains("bounce cap:      victim@example.com: 2 sent, 3 dropped this hour"),
        "{}",
        s.stdout
    );
}

#[test]
#[ignore = "needs root: submits as nobody"]
fn one_uid_is_held_while_another_flows() {
    support::require_root();
    let server = relay();
    let env = env_with(
        &server,
        "[limits]\nalert_to = \"admin@example.net\"\n[limits.user.nobody]\nmessages_per_hour = 1\n",
    );
    // Lay the spool out, then open it to nobody.
    run(&env);
    env.open_to_nobody();
    for i in 0..3 {
        let mut c = env.cmd("sendmail");
        c.uid(NOBODY).gid(NOBODY);
        let o = env.run_cmd(
            c,
            &["-f", "www@example.com", "bob@example.org"],
            format!("Subject: from nobody {i}\n\nx\n").as_bytes(),
        );
        assert_eq!(o.code, 0, "{o:?}");
        // root: exempt by default.
        send(
            &env,
            "root@example.com",
            "bob@example.org",
            &format!("root {i}"),
            "x",
        );
    }
    run(&env);
    let msgs = settled(&server, 5);
    let by = |f: &str| msgs.iter().filter(|m| m.mail_from == f).count();
    assert_eq!(by("www@example.com"), 1, "{msgs:?}");
    assert_eq!(by("root@example.com"), 3, "{msgs:?}");
    assert_eq!(alerts(&msgs).len(), 1);
    let l = postern(&env, &["queue", "list", "--held", "--user", "nobody"]);
    assert_eq!(
        l.stdout.matches("over 1 messages/hour").count(),
        2,
        "{}",
        l.stdout
    );
    assert!(
        l.stdout.contains("nobody over 1 messages/hour"),
        "{}",
        l.stdout
    );
    // nobody cannot release its own held mail.
    let mut c = env.cmd("postern");
    c.uid(NOBODY).gid(NOBODY);
    let o = env.run_cmd(c, &["queue", "release", "--user", "nobody"], b"");
    assert_ne!(o.code, 0, "{o:?}");
    let r = postern(&env, &["queue", "release", "--user", "nobody"]);
    assert_eq!(r.code, 0, "{r:?}");
    run(&env);
    let msgs = settled(&server, 7);
    assert_eq!(
        msgs.iter()
            .filter(|m| m.mail_from == "www@example.com")
            .count(),
        3
    );
}

struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_daemon(env: &TestEnv) -> Daemon {
    let mut c = env.cmd("postern");
    c.arg("daemon")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let d = Daemon(c.spawn().expect("daemon"));
    assert!(
        env.wait_log(10, |l| l.contains("daemon started")),
        "daemon did not start: {}",
        env.log()
    );
    d
}

#[test]
fn daemon_holds_alerts_and_delivers_on_release_once() {
    let server = relay();
    let uid = me();
    let env = env_with(
        &server,
        &format!(
            "[limits]\nexempt = []\nalert_to = \"admin@example.net\"\n\
             [limits.user.\"{uid}\"]\nmessages_per_hour = 2\n"
        ),
    );
    let _d = start_daemon(&env);
    for i in 0..4 {
        send(
            &env,
            "app@example.com",
            "bob@example.org",
            &format!("d{i}"),
            "x",
        );
    }
    let msgs = settled(&server, 3);
    assert_eq!(msgs.len(), 3, "2 + the alert: {msgs:?}");
    assert_eq!(alerts(&msgs).len(), 1);
    // -odi: the caller does not wait for a held message, and it stays held.
    let o = env.sendmail(
        &["-odi", "-f", "app@example.com", "bob@example.org"],
        b"Subject: odi\n\nx\n",
    );
    assert_eq!(o.code, 0, "{o:?}");
    let l = postern(&env, &["queue", "list", "--held"]);
    assert_eq!(l.stdout.matches("(held: ").count(), 3, "{}", l.stdout);
    // Release: the daemon delivers each held message once.
    let r = postern(&env, &["queue", "release", "--user", &uid.to_string()]);
    assert_eq!(r.code, 0, "{r:?}");
    let msgs = settled(&server, 6);
    std::thread::sleep(Duration::from_secs(1));
    let msgs2 = server.messages();
    assert_eq!(msgs2.len(), 6, "{msgs:?}");
    assert!(env.files("queue").is_empty(), "{:?}", env.files("queue"));
}

#[test]
fn a_bounce_request_picked_up_with_new_mail_does_not_stall() {
    // The request's DSN counts against the bounce cap under the guard's
    // lock, which the pickup of the new message holds: applied after it.
    let server = SmtpServer::start(ServerConfig {
        script: Arc::new(|e: &Event| match e {
            Event::Rcpt { to, .. } if to.starts_with("slow") => {
                Action::Reply(450, "4.2.1 busy".into())
            }
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = env_with(&server, "");
    send(&env, "app@example.com", "slow@example.org", "m", "x");
    run(&env);
    let ids: Vec<String> = env
        .files("queue")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids.len(), 1);
    send(&env, "app@example.com", "bob@example.org", "new", "x");
    let name = postern::spool::new_id((now() * 1e6) as u64, std::process::id(), 7);
    let path = env.spool.join("maildrop").join(&name);
    std::fs::write(
        &path,
        format!("POSTERN-REQUEST 1\nbounce {}\nend\n", ids[0]),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o744)).unwrap();
    run(&env);
    let msgs = settled(&server, 2);
    assert!(
        msgs.iter()
            .any(|m| m.mail_from.is_empty() && m.rcpts == ["app@example.com"]),
        "the DSN of the bounce request: {msgs:?} {}",
        env.log()
    );
    assert!(msgs.iter().any(|m| m.rcpts == ["bob@example.org"]));
}

/// Message keys seen once live in `guard-seen`, not in `guard` (which a
/// busy host would otherwise rewrite whole, a few hundred KB, for every
/// message): 50 distinct messages leave `guard` small; a storm is still
/// noticed one message at a time across one-shot queue runs and across a
/// daemon that stops (it writes its keys at exit).
#[test]
fn seen_keys_are_kept_apart_and_survive_one_shot_runs_and_a_daemon_stop() {
    let server = relay();
    let env = env_with(
        &server,
        "[limits]\nalert_to = \"admin@example.net\"\n[limits.storm]\nthreshold = 2\nwindow = \"1h\"\n",
    );
    for i in 0..50 {
        send(
            &env,
            "app@example.com",
            "u@example.org",
            &format!("distinct {i}"),
            "x",
        );
    }
    run(&env);
    settled(&server, 50);
    let guard = std::fs::read_to_string(env.spool.join("guard")).unwrap_or_default();
    assert!(!guard.contains("storm "), "{guard}");
    let seen = std::fs::read_to_string(env.spool.join("guard-seen")).expect("guard-seen");
    assert_eq!(seen.lines().count(), 50 + 2, "{seen}");

    // The same message, once per daemon life: the daemon writes its keys
    // when it stops, and the next process counts on from them.
    let cron = || {
        send(
            &env,
            "cron@example.com",
            "root@example.com",
            "Cron <root@web1> /usr/local/bin/check",
            "check failed",
        )
    };
    let mut d = start_daemon(&env);
    // A first pickup makes the daemon write guard-seen; the next keys
    // within guard::SEEN_WRITE_EVERY wait in memory until it stops.
    send(&env, "app@example.com", "u@example.org", "warm-up", "x");
    settled(&server, 51);
    cron();
    settled(&server, 52);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("term");
    let _ = d.0.wait();
    // Second and third: one-shot runs (no daemon).
    cron();
    run(&env);
    cron();
    run(&env);
    let msgs = settled(&server, 54);
    let delivered = msgs
        .iter()
        .filter(|m| m.mail_from == "cron@example.com")
        .count();
    let senders: Vec<&str> = msgs.iter().map(|m| m.mail_from.as_str()).collect();
    assert_eq!(delivered, 2, "the first 2, the third held: {senders:?}");
    assert_eq!(alerts(&msgs).len(), 1, "one storm notice: {senders:?}");
}
