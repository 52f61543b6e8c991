//! Operability: `postern queue show|hold|release|retry|delete|bounce`,
//! request entries, `postern stats` (text, JSON, Prometheus), `postern
//! status` and the daemon's Prometheus textfile — driven by real
//! deliveries and failures through the test SMTP server on 127.0.0.1.
//!
//! The Prometheus output is parsed with Python's `prometheus_client`
//! (`pip install prometheus_client`); tests that need it say so and skip
//! when it is missing, except under CI=true, where they fail. Tests that
//! need root are `#[ignore = "needs root ..."]` (run with --include-ignored).

use crate::support;

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::smtp_server::{Action, Event, ServerConfig, SmtpServer};
use support::{Out, TestEnv};

// ---- helpers -----------------------------------------------------------------

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A server that answers RCPT for `slow@…` with 450 and `bad@…` with 550.
fn picky_server() -> SmtpServer {
    SmtpServer::start(ServerConfig {
        script: Arc::new(|ev: &Event| match ev {
            Event::Rcpt { to, .. } if to.starts_with("slow@") => {
                Action::Reply(450, "4.2.0 mailbox busy, try later".into())
            }
            Event::Rcpt { to, .. } if to.starts_with("bad@") => {
                Action::Reply(550, "5.1.1 no such user".into())
            }
            _ => Action::Default,
        }),
        ..Default::default()
    })
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    support::closed_port()
}

fn env_with_relay(port: u16, extra: &str) -> TestEnv {
    let env = TestEnv::new();
    env.write_config(&env.relay_config(port, extra));
    env
}

fn postern(env: &TestEnv, args: &[&str]) -> Out {
    env.run("postern", args, b"")
}

fn postern_at(env: &TestEnv, t: f64, args: &[&str]) -> Out {
    env.run_at(t, "postern", args, b"")
}

fn submit(env: &TestEnv, args: &[&str], msg: &str) {
    let mut a = vec!["-i"];
    a.extend_from_slice(args);
    let o = env.sendmail(&a, msg.as_bytes());
    assert_eq!(o.code, 0, "sendmail failed: {o:?}");
}

fn submit_at(env: &TestEnv, t: f64, args: &[&str], msg: &str) {
    let mut a = vec!["-i"];
    a.extend_from_slice(args);
    let o = env.run_at(t, "sendmail", &a, msg.as_bytes());
    assert_eq!(o.code, 0, "sendmail failed: {o:?}");
}

/// Ids in queue/ (picked-up messages), sorted.
fn queued(env: &TestEnv) -> Vec<String> {
    env.files("queue")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn run_ok(env: &TestEnv) {
    let o = env.queue_run();
    assert_eq!(o.code, 0, "queue run failed: {o:?}");
}

fn json(o: &Out) -> Value {
    serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {o:?}"))
}

fn json_lines(o: &Out) -> Vec<Value> {
    o.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line ({e}): {l}")))
        .collect()
}

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

fn have_prometheus_client() -> bool {
    Command::new("python3")
        .args(["-c", "import prometheus_client.parser"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

const PROM_NEEDED: &str = "python3 with prometheus_client is needed to parse the Prometheus output (pip install prometheus_client)";

/// Parse Prometheus text with the real parser: a list of families
/// `{"name", "type", "samples": [[name, labels, value|null]]}`.
fn parse_prometheus(text: &str) -> Vec<Value> {
    let py = r#"
import sys, json, math
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type,
                "samples": [[s.name, s.labels, None if math.isnan(s.value) else s.value] for s in f.samples]})
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", py])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    {
        use std::io::Write;
        let mut si = child.stdin.take().unwrap();
        si.write_all(text.as_bytes()).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "prometheus_client could not parse the output: {}\n---\n{text}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The value of sample `name` whose labels include `labels`.
fn sample(fams: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for f in fams {
        for s in f["samples"].as_array().unwrap() {
            if s[0] != name {
                continue;
            }
            if labels.iter().all(|(k, v)| s[1][*k] == *v) {
                return s[2].as_f64();
            }
        }
    }
    None
}

fn family_type(fams: &[Value], sample_name: &str) -> Option<String> {
    fams.iter()
        .find(|f| {
            f["samples"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s[0] == sample_name)
        })
        .map(|f| f["type"].as_str().unwrap().to_string())
}

/// A `postern daemon` child, killed by PID when dropped.
struct Daemon(Child);

impl Daemon {
    fn start(env: &TestEnv) -> Daemon {
        let mut c = env.cmd("postern");
        c.arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let d = Daemon(c.spawn().expect("start the daemon"));
        assert!(
            wait_until(20, || {
                let o = postern(env, &["status", "--json"]);
                serde_json::from_str::<Value>(o.stdout.trim())
                    .map(|v| v["daemon_running"] == true)
                    .unwrap_or(false)
            }),
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

// ---- queue list / show -----------------------------------------------------------

#[test]
fn list_and_show_reflect_a_deferral() {
    let server = picky_server();
    let env = env_with_relay(server.port(), "");
    submit(
        &env,
        &[
            "-f",
            "alice@example.com",
            "ok@example.org",
            "slow@example.org",
        ],
        "Subject: quarterly report\nMessage-ID: <r1@example.com>\n\nthe body line\n",
    );
    run_ok(&env);
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got[0].rcpts, vec!["ok@example.org"]);
    let ids = queued(&env);
    assert_eq!(ids.len(), 1, "the deferred message stays");
    let id = &ids[0];

    // mailq-style list, text and JSON.
    let o = postern(&env, &["queue", "list"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains(id.as_str()), "{}", o.stdout);
    assert!(
        o.stdout.contains("(450 4.2.0 mailbox busy, try later)"),
        "{}",
        o.stdout
    );
    let l = json_lines(&postern(&env, &["queue", "list", "--json"]));
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["queue_id"], id.as_str());
    assert_eq!(l[0]["queue_name"], "deferred");
    let slow = l[0]["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "slow@example.org")
        .unwrap()
        .clone();
    assert_eq!(slow["status"], "deferred");
    assert_eq!(slow["delay_reason"], "450 4.2.0 mailbox busy, try later");

    // show, text.
    let o = postern(&env, &["queue", "show", id]);
    assert_eq!(o.code, 0, "{o:?}");
    for want in [
        format!("Queue ID:      {id}"),
        "deferred, 1 attempt(s)".to_string(),
        "Sender:        <alice@example.com>".to_string(),
        "sent     ok@example.org".to_string(),
        "deferred slow@example.org".to_string(),
        "450 4.2.0 mailbox busy, try later".to_string(),
        "Subject: quarterly report".to_string(),
        "Message-ID:    <r1@example.com>".to_string(),
    ] {
        assert!(
            o.stdout.contains(&want),
            "missing {want:?} in:\n{}",
            o.stdout
        );
    }
    assert!(
        !o.stdout.contains("the body line"),
        "no body without --body"
    );

    // show, JSON.
    let v = json(&postern(&env, &["queue", "show", id, "--json"]));
    assert_eq!(v["queue_id"], id.as_str());
    assert_eq!(v["queue_name"], "deferred");
    assert_eq!(v["sender"], "alice@example.com");
    assert_eq!(v["tries"], 1);
    assert_eq!(v["held"], false);
    assert_eq!(v["uid"], nix::unistd::getuid().as_raw());
    assert!(v["next_attempt"].as_u64().unwrap() as f64 > now());
    assert!(
        v["relay"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{}", server.port()))
    );
    assert_eq!(v["message_id"], "<r1@example.com>");
    assert_eq!(v["is_bounce"], false);
    let rc = v["recipients"].as_array().unwrap();
    assert_eq!(rc.len(), 2);
    let by = |a: &str| rc.iter().find(|r| r["address"] == a).unwrap().clone();
    assert_eq!(by("ok@example.org")["status"], "sent");
    assert!(
        by("ok@example.org")["last_reply"]
            .as_str()
            .unwrap()
            .starts_with("250")
    );
    assert_eq!(by("slow@example.org")["status"], "deferred");
    assert_eq!(
        by("slow@example.org")["last_reply"],
        "450 4.2.0 mailbox busy, try later"
    );
    assert!(
        v["headers"]
            .as_str()
            .unwrap()
            .contains("Subject: quarterly report")
    );
    assert_eq!(v["body"], Value::Null);
    let v = json(&postern(&env, &["queue", "show", id, "--json", "--body"]));
    assert!(v["body"].as_str().unwrap().ends_with("\n\nthe body line\n"));

    // An unknown id: EX_NOINPUT.
    let o = postern(&env, &["queue", "show", "0000000000000ZZ"]);
    assert_eq!(o.code, 66, "{o:?}");
    assert!(o.stderr.contains("no such message"), "{o:?}");
}

// ---- hold / release / retry --------------------------------------------------------

#[test]
fn hold_keeps_a_message_from_queue_run_and_release_lets_it_go() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = env_with_relay(server.port(), "");
    submit(&env, &["carol@example.org"], "Subject: held\n\nx\n");
    // Pick it up without delivering: hold acts on what is in maildrop too.
    let o = postern(&env, &["queue", "list", "--json"]);
    let id = json_lines(&o)[0]["queue_id"].as_str().unwrap().to_string();
    let o = postern(&env, &["queue", "hold", &id]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains(&format!("{id}: put on hold")), "{o:?}");
    assert!(env.log().contains(&format!(
        "{id}: held by uid {} (postern queue hold)",
        nix::unistd::getuid()
    )));

    run_ok(&env);
    assert!(server.messages().is_empty(), "a held message was delivered");
    let v = json(&postern(&env, &["queue", "show", &id, "--json"]));
    assert_eq!(v["held"], true);
    assert_eq!(v["queue_name"], "hold");
    let o = postern(&env, &["queue", "list"]);
    assert!(o.stdout.contains(&format!("{id}!")), "{}", o.stdout);
    // retry does not override a hold
    let o = postern(&env, &["queue", "retry", &id]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("on hold: release it first"), "{o:?}");
    assert!(server.messages().is_empty());
    // hold twice: nothing changes
    let o = postern(&env, &["queue", "hold", &id]);
    assert!(o.stdout.contains("already on hold"), "{o:?}");

    let o = postern(&env, &["queue", "release", &id]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains(&format!("{id}: released")), "{o:?}");
    run_ok(&env);
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpts, vec!["carol@example.org"]);
    assert!(queued(&env).is_empty());
    assert!(env.log().contains(&format!("{id}: released by uid")));
}

#[test]
fn retry_delivers_a_deferred_message_now() {
    // The first RCPT is deferred, later ones are accepted.
    let tries = Arc::new(AtomicUsize::new(0));
    let t = tries.clone();
    let server = SmtpServer::start(ServerConfig {
        script: Arc::new(move |ev: &Event| match ev {
            Event::Rcpt { .. } if t.fetch_add(1, Ordering::SeqCst) == 0 => {
                Action::Reply(451, "4.3.0 temporary trouble".into())
            }
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = env_with_relay(server.port(), "");
    submit(&env, &["dave@example.org"], "Subject: retry me\n\nx\n");
    run_ok(&env);
    assert!(server.messages().is_empty());
    let id = queued(&env).pop().expect("deferred");
    // Not due yet: a plain queue run leaves it alone.
    run_ok(&env);
    assert_eq!(tries.load(Ordering::SeqCst), 1, "tried before its time");
    // retry: no daemon runs and we may deliver: delivered in this process.
    let o = postern(&env, &["queue", "retry", &id]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains(&format!("{id}: due now")), "{o:?}");
    assert!(
        o.stdout
            .contains(&format!("{id}: delivery finished: 1 sent")),
        "{o:?}"
    );
    assert_eq!(server.messages().len(), 1);
    assert!(queued(&env).is_empty());
    assert!(env.log().contains(&format!("{id}: retry requested by uid")));
    // An unknown id.
    let o = postern(&env, &["queue", "retry", "0000000000000ZZ"]);
    assert_eq!(o.code, 66, "{o:?}");
}

// ---- delete --------------------------------------------------------------------------

#[test]
fn delete_one_deferred_and_all() {
    let env = env_with_relay(closed_port(), "");
    for n in 0..3 {
        submit(&env, &[&format!("u{n}@example.org")], "Subject: d\n\nx\n");
    }
    run_ok(&env); // connection refused: all three deferred
    assert_eq!(queued(&env).len(), 3);
    submit(&env, &["fresh@example.org"], "Subject: new\n\nx\n");
    let o = postern(&env, &["queue", "list", "--json"]);
    let fresh = json_lines(&o)
        .into_iter()
        .find(|m| m["queue_name"] == "incoming" || m["tries"] == 0)
        .unwrap()["queue_id"]
        .as_str()
        .unwrap()
        .to_string();

    let o = postern(&env, &["queue", "delete", "--deferred"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("3 message(s) deleted"), "{o:?}");
    assert_eq!(
        queued(&env),
        vec![fresh.clone()],
        "only the untried one remains"
    );
    let log = env.log();
    assert_eq!(
        log.matches("removed by uid").count(),
        3,
        "one log line per message:\n{log}"
    );
    assert!(log.contains("(postern queue delete)"));
    let events = std::fs::read_to_string(env.spool.join("events.log")).unwrap();
    assert_eq!(events.matches(" removed ").count(), 3, "{events}");

    let o = postern(&env, &["queue", "delete", &fresh]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains(&format!("{fresh}: deleted")));
    assert!(queued(&env).is_empty());
    assert!(!env.spool.join("state").join(&fresh).exists());
    let o = postern(&env, &["queue", "delete", &fresh]);
    assert_eq!(o.code, 66, "deleting twice: {o:?}");

    for n in 0..2 {
        submit(&env, &[&format!("v{n}@example.org")], "Subject: d\n\nx\n");
    }
    let o = postern(&env, &["queue", "delete", "ALL"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("2 message(s) deleted"), "{o:?}");
    assert!(queued(&env).is_empty());
    let o = postern(&env, &["queue", "list"]);
    assert!(o.stdout.contains("Mail queue is empty"), "{o:?}");
}

// ---- bounce --------------------------------------------------------------------------

#[test]
fn bounce_returns_the_message_to_its_sender() {
    let server = picky_server();
    let env = env_with_relay(server.port(), "");
    submit(
        &env,
        &["-f", "alice@example.com", "slow@example.org"],
        "Subject: will come back\n\noriginal text\n",
    );
    run_ok(&env);
    let id = queued(&env).pop().expect("deferred");
    assert!(server.messages().is_empty());
    let o = postern(&env, &["queue", "bounce", &id]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains(&format!("{id}: returned to <alice@example.com>")),
        "{o:?}"
    );
    // The DSN left in the same command (no daemon, and we may deliver).
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{o:?}\n{}", env.log());
    let dsn = &got[0];
    assert_eq!(dsn.mail_from, "", "a DSN comes from the null sender");
    assert_eq!(dsn.rcpts, vec!["alice@example.com"]);
    let text = String::from_utf8_lossy(&dsn.data);
    assert!(text.contains("multipart/report"), "{text}");
    assert!(
        text.contains("returned to sender by the administrator"),
        "{text}"
    );
    assert!(text.contains("slow@example.org"), "{text}");
    assert!(queued(&env).is_empty(), "the original left the queue");
    let log = env.log();
    assert!(
        log.contains(&format!("{id}: returned to sender by uid")),
        "{log}"
    );
    assert!(
        log.contains("status=bounced (returned to sender by the administrator)"),
        "{log}"
    );
    // Unknown id.
    assert_eq!(
        postern(&env, &["queue", "bounce", "0000000000000ZZ"]).code,
        66
    );
}

// ---- request entries ------------------------------------------------------------------

/// Commit a request entry into maildrop the way `postern queue delete` does
/// for a user who cannot write the queue, owned by `uid`.
fn write_request(env: &TestEnv, text: &str, uid: u32) -> String {
    use std::os::unix::fs::PermissionsExt;
    let name = postern::spool::new_id((now() * 1e6) as u64, std::process::id(), uid);
    let path = env.spool.join("maildrop").join(&name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o744)).unwrap();
    std::os::unix::fs::chown(&path, Some(uid), Some(uid)).unwrap();
    name
}

#[test]
#[ignore = "needs root: gives request files another owner"]
fn request_entries_are_checked_and_applied_by_the_runner() {
    support::require_root();
    let server = picky_server();
    let env = env_with_relay(server.port(), "");
    submit(&env, &["slow@example.org"], "Subject: a\n\nx\n");
    submit(&env, &["slow@example.org"], "Subject: b\n\nx\n");
    run_ok(&env);
    let ids = queued(&env);
    assert_eq!(ids.len(), 2);
    let (mine, theirs) = (&ids[0], &ids[1]);
    // `mine` belongs to uid 4242, `theirs` to root: as if submitted by them.
    std::os::unix::fs::chown(env.spool.join("queue").join(mine), Some(4242), None).unwrap();

    // uid 4242 asks to delete both and to hold its own: only the delete of
    // its own message is granted.
    let r1 = write_request(
        &env,
        &format!("POSTERN-REQUEST 1\ndelete {mine}\nend\n"),
        4242,
    );
    let r2 = write_request(
        &env,
        &format!("POSTERN-REQUEST 1\ndelete {theirs}\nend\n"),
        4242,
    );
    let r3 = write_request(
        &env,
        &format!("POSTERN-REQUEST 1\nhold {theirs}\nend\n"),
        4242,
    );
    let r4 = write_request(&env, "POSTERN-REQUEST 1\ndelete ALL; rm -rf /\nend\n", 4242);
    let r_void = write_request(&env, "POSTERN-REQUEST 1\nvoid\nend\n", 4242);
    run_ok(&env);
    assert_eq!(queued(&env), vec![theirs.clone()]);
    let log = env.log();
    assert!(
        log.contains(&format!("{mine}: removed by uid 4242 (request {r1})")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "{r2}: request \"delete {theirs}\" from uid 4242 refused: {theirs} belongs to uid 0"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "{r3}: request \"hold {theirs}\" from uid 4242 refused"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("{r4}: malformed request from uid 4242 ignored")),
        "{log}"
    );
    assert!(
        !log.contains(&r_void),
        "a void request is dropped quietly: {log}"
    );
    assert!(env.files("maildrop").is_empty(), "requests are consumed");
    assert!(!env.files("corrupt").iter().any(|p| p.ends_with(&r4)));

    // Root (an administrator) may hold anything by request.
    let r5 = write_request(&env, &format!("POSTERN-REQUEST 1\nhold {theirs}\nend\n"), 0);
    run_ok(&env);
    let v = json(&postern(&env, &["queue", "show", theirs, "--json"]));
    assert_eq!(v["held"], true, "{}", env.log());
    assert!(
        env.log()
            .contains(&format!("{theirs}: held by uid 0 (request {r5})"))
    );

    // An administrator may also return a message to its sender by request:
    // the runner that takes the request builds and sends the bounce.
    let r6 = write_request(
        &env,
        &format!("POSTERN-REQUEST 1\nbounce {theirs}\nend\n"),
        0,
    );
    run_ok(&env);
    assert!(
        env.log().contains(&format!(
            "{theirs}: returned to sender by uid 0 (request {r6})"
        )),
        "{}",
        env.log()
    );
    assert!(queued(&env).is_empty(), "{:?}", queued(&env));
    let bounces: Vec<_> = server
        .messages()
        .into_iter()
        .filter(|m| m.mail_from.is_empty())
        .collect();
    assert_eq!(bounces.len(), 1, "the DSN was delivered: {}", env.log());
}

/// `postern queue delete` by a user who does not own the spool: a request
/// through maildrop, applied by the running daemon, and refused for mail
/// that is not theirs.
#[test]
#[ignore = "needs root: runs commands as another user"]
fn a_user_deletes_their_own_mail_through_the_daemon() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    support::require_root();
    let server = picky_server();
    let env = env_with_relay(server.port(), "");
    // Let user nobody (65534) read the config and use this development
    // spool the way the installed setgid binary would let it: create
    // maildrop entries and poke the daemon.
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(&env.root, 0o755);
    std::fs::write(&env.log, "").unwrap();
    mode(&env.log, 0o666);
    submit(&env, &["slow@example.org"], "Subject: root's\n\nx\n");
    mode(&env.spool.join("maildrop"), 0o1777);
    mode(&env.spool.join("public"), 0o711);
    mode(&env.spool.join("public").join("trigger"), 0o622);
    let _daemon = Daemon::start(&env);
    let as_nobody = |argv0: &str, args: &[&str], stdin: &[u8]| {
        let mut c = env.cmd(argv0);
        c.uid(65534).gid(65534);
        env.run_cmd(c, args, stdin)
    };
    let o = as_nobody(
        "sendmail",
        &["-i", "slow@example.org"],
        b"Subject: nobody's\n\nx\n",
    );
    assert_eq!(o.code, 0, "{o:?}");
    // Both get picked up and deferred by the daemon.
    assert!(
        wait_until(20, || {
            let l = json_lines(&postern(&env, &["queue", "list", "--json"]));
            l.len() == 2 && l.iter().all(|m| m["tries"] == 1)
        }),
        "{}",
        env.log()
    );
    let l = json_lines(&postern(&env, &["queue", "list", "--json"]));
    let id_of = |uid: u32| {
        l.iter()
            .map(|m| m["queue_id"].as_str().unwrap().to_string())
            .find(|id| json(&postern(&env, &["queue", "show", id, "--json"]))["uid"] == uid)
            .unwrap()
    };
    let (roots, nobodys) = (id_of(0), id_of(65534));

    // Not theirs: refused before anything is written.
    let o = as_nobody("postern", &["queue", "delete", &roots], b"");
    assert_eq!(o.code, 77, "{o:?}");
    assert!(o.stderr.contains("not your message"), "{o:?}");
    // Other changes are for administrators.
    let o = as_nobody("postern", &["queue", "hold", &nobodys], b"");
    assert_eq!(o.code, 77, "{o:?}");
    // Their own: the daemon applies the request and the command reports it.
    let o = as_nobody("postern", &["queue", "delete", &nobodys], b"");
    assert_eq!(o.code, 0, "{o:?}\n{}", env.log());
    assert!(o.stdout.contains(&format!("{nobodys}: deleted")), "{o:?}");
    assert_eq!(queued(&env), vec![roots.clone()]);
    assert!(
        env.log()
            .contains(&format!("{nobodys}: removed by uid 65534 (request "))
    );

    // A forged request for root's message, owned by nobody, is refused by
    // the daemon itself.
    let r = write_request(
        &env,
        &format!("POSTERN-REQUEST 1\ndelete {roots}\nend\n"),
        65534,
    );
    let f = postern::privilege::open_trigger_unprivileged(&postern::spool::Spool::new(&env.spool))
        .unwrap();
    assert!(postern::daemon::poke(&f, b'W'));
    assert!(
        wait_until(20, || env.log().contains(&format!("{r}: request"))),
        "{}",
        env.log()
    );
    assert!(env.log().contains(&format!("{roots} belongs to uid 0")));
    assert_eq!(queued(&env), vec![roots]);
}

// ---- stats -------------------------------------------------------------------------------

#[test]
fn stats_count_and_time_real_deliveries() {
    let server = picky_server();
    let env = env_with_relay(server.port(), "");
    let t0 = now();
    // Four messages that waited 60, 120, 180 and 600 seconds before the run.
    for (n, age) in [60.0, 120.0, 180.0, 600.0].iter().enumerate() {
        submit_at(
            &env,
            t0 - age,
            &[&format!("ok{n}@example.org")],
            "Subject: s\n\nx\n",
        );
    }
    submit(&env, &["-f", "<>", "bad@example.org"], "Subject: b\n\nx\n");
    submit(&env, &["slow@example.org"], "Subject: w\n\nx\n");
    run_ok(&env);
    assert_eq!(server.messages().len(), 4);

    let v = json(&postern(&env, &["stats", "--json"]));
    let h = &v["windows"]["1h"];
    assert_eq!(h["accepted"], 6, "{v}");
    assert_eq!(h["sent"], 4, "{v}");
    assert_eq!(h["deferred"], 1, "{v}");
    assert_eq!(h["bounced"], 1, "{v}");
    assert_eq!(h["removed"], 5, "{v}");
    let d = &h["delay_seconds"];
    assert_eq!(d["count"], 4);
    let near = |x: &Value, want: f64| {
        let x = x.as_f64().unwrap();
        assert!((x - want).abs() < 30.0, "{x} is not about {want}: {v}");
    };
    // Nearest rank over [60, 120, 180, 600] (plus the run's own seconds).
    near(&d["p50"], 120.0);
    near(&d["p95"], 600.0);
    near(&d["max"], 600.0);
    assert_eq!(v["windows"]["24h"]["sent"], 4);
    assert_eq!(v["windows"]["all"]["accepted"], 6);
    assert_eq!(v["queue"]["messages"], 1);
    assert_eq!(v["queue"]["deferred"], 1);
    assert!(v["queue"]["oldest_age_seconds"].as_f64().unwrap() < 120.0);
    assert_eq!(v["daemon_running"], false);
    let relays = v["relays"].as_array().unwrap();
    assert_eq!(relays.len(), 1, "{v}");
    let r = &relays[0];
    assert_eq!(r["relay"], format!("127.0.0.1:{}", server.port()).as_str());
    assert_eq!(r["sent"], 4);
    assert_eq!(r["deferred"], 1);
    assert_eq!(r["bounced"], 1);
    assert_eq!(r["connect_failures"], 0);
    assert!((r["success_ratio"].as_f64().unwrap() - 4.0 / 6.0).abs() < 0.001);
    let err = r["last_error"]["error"].as_str().unwrap();
    assert!(err.starts_with("450 ") || err.starts_with("550 "), "{err}");

    let o = postern(&env, &["stats"]);
    assert_eq!(o.code, 0, "{o:?}");
    let hour = o
        .stdout
        .lines()
        .find(|l| l.starts_with("last hour"))
        .unwrap();
    let nums: Vec<&str> = hour.split_whitespace().skip(2).take(5).collect();
    assert_eq!(nums, vec!["6", "4", "1", "1", "5"], "{}", o.stdout);
    assert!(o.stdout.contains(&format!(
        "127.0.0.1:{}: 4 sent, 1 deferred, 1 bounced",
        server.port()
    )));
    assert!(o.stdout.contains("success 66.7%"), "{}", o.stdout);

    // Torn and garbage lines are skipped, rotated history is still read.
    let events = env.spool.join("events.log");
    std::fs::rename(&events, env.spool.join("events.log.1")).unwrap();
    std::fs::write(
        &events,
        "garbage line\n1.0 sent ../../x to=a relay=b delay=1\n17",
    )
    .unwrap();
    let v = json(&postern(&env, &["stats", "--json"]));
    assert_eq!(v["ignored_lines"], 3, "{v}");
    assert_eq!(v["windows"]["1h"]["sent"], 4, "{v}");
    // The window moves: a week later nothing is in the last hour.
    let v = json(&postern_at(&env, t0 + 8.0 * 86400.0, &["stats", "--json"]));
    assert_eq!(v["windows"]["1h"]["sent"], 0);
    assert_eq!(v["windows"]["7d"]["sent"], 0);
    assert_eq!(v["windows"]["all"]["sent"], 4);
}

#[test]
#[ignore = "needs python3 prometheus_client (.ci/run installs it)"]
fn prometheus_output_parses_with_the_real_parser() {
    if !have_prometheus_client() {
        support::unavailable(PROM_NEEDED);
    }
    let server = picky_server();
    let env = env_with_relay(server.port(), "");
    let t0 = now();
    for (n, age) in [10.0, 20.0, 30.0].iter().enumerate() {
        submit_at(
            &env,
            t0 - age,
            &[&format!("ok{n}@example.org")],
            "Subject: p\n\nx\n",
        );
    }
    submit(&env, &["slow@example.org"], "Subject: w\n\nx\n");
    submit(&env, &["-f", "<>", "bad@example.org"], "Subject: b\n\nx\n");
    run_ok(&env);
    // A relay name that needs escaping in a label, and a quote in an error.
    let line = format!(
        "{:.3} relay-error - relay=we\"ird\\host:25 error=said%20\"no\"%0Aagain\n",
        now()
    );
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(env.spool.join("events.log"))
        .unwrap()
        .write_all(line.as_bytes())
        .unwrap();

    let o = postern(&env, &["stats", "--prometheus"]);
    assert_eq!(o.code, 0, "{o:?}");
    let fams = parse_prometheus(&o.stdout);
    assert_eq!(sample(&fams, "postern_sent_total", &[]), Some(3.0));
    assert_eq!(
        family_type(&fams, "postern_sent_total").as_deref(),
        Some("counter")
    );
    assert_eq!(sample(&fams, "postern_accepted_total", &[]), Some(5.0));
    assert_eq!(sample(&fams, "postern_deferred_total", &[]), Some(1.0));
    assert_eq!(sample(&fams, "postern_bounced_total", &[]), Some(1.0));
    assert_eq!(
        sample(
            &fams,
            "postern_events",
            &[("event", "sent"), ("window", "1h")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&fams, "postern_queue_messages", &[("state", "deferred")]),
        Some(1.0)
    );
    assert_eq!(
        family_type(&fams, "postern_delivery_delay_seconds_count").as_deref(),
        Some("summary")
    );
    assert_eq!(
        sample(&fams, "postern_delivery_delay_seconds_count", &[]),
        Some(3.0)
    );
    let p50 = sample(
        &fams,
        "postern_delivery_delay_seconds",
        &[("quantile", "0.5")],
    )
    .unwrap();
    assert!((p50 - 20.0).abs() < 15.0, "p50 {p50}");
    let max = sample(&fams, "postern_delivery_delay_max_seconds", &[]).unwrap();
    assert!(max >= p50);
    let relay = format!("127.0.0.1:{}", server.port());
    assert_eq!(
        sample(
            &fams,
            "postern_relay_recipients_total",
            &[("relay", &relay), ("result", "sent")]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &fams,
            "postern_relay_connect_failures_total",
            &[("relay", "we\"ird\\host:25")]
        ),
        Some(1.0),
        "{}",
        o.stdout
    );
    assert_eq!(
        sample(
            &fams,
            "postern_relay_last_error_info",
            &[
                ("relay", "we\"ird\\host:25"),
                ("error", "said \"no\"\nagain")
            ]
        ),
        Some(1.0),
        "{}",
        o.stdout
    );
    assert_eq!(sample(&fams, "postern_daemon_up", &[]), Some(0.0));
}

// ---- status --------------------------------------------------------------------------------

#[test]
fn status_exit_code_follows_stuck_mail() {
    let env = env_with_relay(closed_port(), "");
    // Empty queue, no daemon: healthy.
    let o = postern(&env, &["status"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.starts_with("postern status: OK"), "{o:?}");
    assert!(o.stdout.contains("daemon:          not running"));

    submit(
        &env,
        &["-f", "alice@example.com", "ops@example.org"],
        "Subject: s\n\nx\n",
    );
    run_ok(&env); // relay down: deferred
    let id = queued(&env).pop().unwrap();
    let t0 = now();
    // Young: still healthy.
    let o = postern(&env, &["status"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains(&format!("oldest deferred: {id}")),
        "{o:?}"
    );
    assert!(o.stdout.contains("connection refused"), "{o:?}");
    assert!(o.stdout.contains("FAILING"), "the relay is failing: {o:?}");

    // Two hours later: stuck.
    let o = postern_at(&env, t0 + 7200.0, &["status"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.starts_with("postern status: MAIL IS STUCK"),
        "{o:?}"
    );
    assert!(
        o.stdout.contains(&format!("{id} has been deferred for 2h")),
        "{o:?}"
    );
    let v = json(&postern_at(&env, t0 + 7200.0, &["status", "--json"]));
    assert_eq!(v["healthy"], false);
    assert_eq!(v["daemon_running"], false);
    assert_eq!(v["oldest_deferred"]["queue_id"], id.as_str());
    assert_eq!(v["oldest_deferred"]["recipient"], "ops@example.org");
    assert!(
        v["oldest_deferred"]["reason"]
            .as_str()
            .unwrap()
            .contains("connection refused")
    );
    assert!(v["oldest_deferred"]["age_seconds"].as_f64().unwrap() >= 7200.0);
    assert_eq!(v["relays"][0]["state"], "failing");
    assert!(v["problems"].as_array().unwrap().len() >= 2, "{v}"); // deferred + no daemon
    assert!(v["last_delivery"].is_null());

    // Three days: also past half of max_lifetime (5d).
    let v = json(&postern_at(&env, t0 + 3.0 * 86400.0, &["status", "--json"]));
    assert!(
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains("max_lifetime")),
        "{v}"
    );

    // On hold it is the administrator's business: healthy again.
    assert_eq!(postern(&env, &["queue", "hold", &id]).code, 0);
    let o = postern_at(&env, t0 + 7200.0, &["status"]);
    assert_eq!(o.code, 0, "{o:?}");

    // Fresh mail and no daemon for ten minutes: stuck.
    submit(&env, &["ops@example.org"], "Subject: t\n\nx\n");
    let o = postern_at(&env, t0 + 600.0, &["status"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("no postern daemon is running"), "{o:?}");
}

// ---- the daemon's textfile ------------------------------------------------------------------

#[test]
#[ignore = "needs python3 prometheus_client (.ci/run installs it)"]
fn daemon_writes_the_prometheus_textfile_and_status_sees_it() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    let metrics = env.root.join("metrics");
    std::fs::create_dir_all(&metrics).unwrap();
    let prom = metrics.join("postern.prom");
    env.write_config(&env.relay_config(
        server.port(),
        &format!("[stats]\nprometheus_textfile = \"{}\"\n", prom.display()),
    ));
    let _daemon = Daemon::start(&env);
    submit(&env, &["erin@example.org"], "Subject: d\n\nx\n");
    let got = server.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{}", env.log());

    // Written every 10 s: wait for one that counts the delivery.
    assert!(
        wait_until(40, || std::fs::read_to_string(&prom)
            .map(|t| t.contains("postern_sent_total 1\n"))
            .unwrap_or(false)),
        "textfile: {:?}\nlog: {}",
        std::fs::read_to_string(&prom),
        env.log()
    );
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(text.contains("postern_daemon_up 1\n"), "{text}");
    // Only the final file: temporary files are renamed away.
    let names: Vec<String> = std::fs::read_dir(&metrics)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["postern.prom"]);
    if have_prometheus_client() {
        let fams = parse_prometheus(&text);
        assert_eq!(sample(&fams, "postern_sent_total", &[]), Some(1.0));
        assert_eq!(sample(&fams, "postern_daemon_up", &[]), Some(1.0));
    } else {
        support::unavailable(&format!("{PROM_NEEDED} (textfile parse part)"));
    }

    let o = postern(&env, &["status"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("daemon:          running"), "{o:?}");
    assert!(
        o.stdout
            .contains(&format!("127.0.0.1:{}  ok", server.port())),
        "{o:?}"
    );
    let v = json(&postern(&env, &["status", "--json"]));
    assert_eq!(v["healthy"], true);
    assert!(v["last_delivery"].as_f64().is_some());
    assert_eq!(v["relays"][0]["state"], "ok");
}
