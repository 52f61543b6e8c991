//! Fault suite, submission side: `kill -9` of `sendmail` at many points of a
//! submission (issue 5).
//!
//! Technique: a slow stdin. The test writes the message into the pipe in
//! steps, waits until the process is blocked reading stdin again (it has
//! then consumed everything written so far: `/proc/<pid>/syscall` shows
//! `read(0, …)`), and sends SIGKILL. Kill points: before any byte, after k
//! bytes for many k (inside the header section, right after it, around the
//! 64 KiB write buffer, deep in the body), just before EOF, and right after
//! EOF (a race with the commit: either outcome is allowed, a torn one is
//! not). After each kill the spool must hold either no committed entry or
//! a whole one (`spool::format::decode`), never a ready file that is torn.
//! Finally a queue run against a real SMTP server must deliver exactly the
//! committed messages, whole and once each, and remove every abandoned
//! entry (`[queue] maildrop_stale_after = "1s"`: `maildrop::claim` removes
//! a not-ready, unlocked entry whose mtime/ctime is at least that old; a
//! test cannot age ctime, so it waits just over one second once).

use crate::support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::smtp_server::{ServerConfig, SmtpServer};
use support::{TestEnv, base_config};

/// True once `pid` is blocked in read(2) on fd 0 (waits at most `limit`).
fn wait_reading_stdin(pid: u32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) {
            let mut f = s.split_whitespace();
            if f.next() == Some("0") && f.next() == Some("0x0") {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

fn env_with_stale(stale: &str) -> TestEnv {
    let stale = stale.to_string();
    TestEnv::with_config_fn(move |root| {
        base_config(root).replace(
            "[queue]\n",
            &format!("[queue]\nmaildrop_stale_after = \"{stale}\"\n"),
        )
    })
}

/// A message of about 200 KB whose every line names `token`, ending in a
/// line that proves it whole.
fn message(token: &str) -> (Vec<u8>, usize) {
    let mut m = format!(
        "From: Fault Test <fault@example.com>\nTo: dest@example.org\nSubject: kill test {token}\nX-Token: {token}\n\n"
    )
    .into_bytes();
    let header_end = m.len();
    let mut i = 0;
    while m.len() < 200_000 {
        m.extend_from_slice(
            format!("line {i:06} of {token} ............................\n").as_bytes(),
        );
        i += 1;
    }
    m.extend_from_slice(format!("END-OF-{token}\n").as_bytes());
    (m, header_end)
}

fn spawn_sendmail(env: &TestEnv) -> Child {
    let mut c = env.cmd("sendmail");
    c.args(["-i", "dest@example.org"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.spawn().expect("spawn sendmail")
}

/// Ready entries in maildrop: each must decode (a torn ready file is the
/// one outcome that must never happen). Returns (ready tokens, not-ready count).
fn inspect_maildrop(env: &TestEnv) -> (Vec<String>, usize) {
    let mut ready = Vec::new();
    let mut partial = 0;
    for p in env.files("maildrop") {
        let mode = std::fs::symlink_metadata(&p)
            .expect("maildrop entry")
            .permissions()
            .mode();
        if mode & 0o100 == 0 {
            partial += 1;
            continue;
        }
        let bytes = std::fs::read(&p).expect("read entry");
        let (env_, range) = postern::spool::format::decode(&bytes)
            .unwrap_or_else(|e| panic!("ready entry {} is torn: {e}", p.display()));
        assert_eq!(env_.recipients, vec!["dest@example.org".to_string()]);
        let text = String::from_utf8_lossy(&bytes[range]).into_owned();
        let token = text
            .lines()
            .find_map(|l| l.strip_prefix("X-Token: "))
            .expect("token header")
            .to_string();
        assert!(
            text.ends_with(&format!("\nEND-OF-{token}\n")),
            "ready entry {} is not the whole message",
            p.display()
        );
        ready.push(token);
    }
    (ready, partial)
}

#[test]
fn kill_9_of_sendmail_at_many_points_loses_nothing_and_commits_nothing_partial() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = env_with_stale("1s");
    env.write_config(&format!(
        "{}[[relay]]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        std::fs::read_to_string(&env.config).expect("config"),
        server.port()
    ));

    // Every token has 3 characters, so every message has the same length.
    let (probe, header_end) = message("k99");
    let len = probe.len();
    // Kill points, in bytes written before the SIGKILL.
    let mut points: Vec<usize> = vec![
        0,
        1,
        7,
        30,
        header_end - 1,
        header_end,
        header_end + 1,
        1000,
        4096,
        65_535,
        65_536,
        65_537,
        100_000,
        131_072,
        150_001,
        len - 1,
        len, // everything but EOF
    ];
    // and a sweep through the whole message
    points.extend((1..40).map(|i| i * 4_999));
    points.sort_unstable();
    points.dedup();

    let mut committed: Vec<String> = Vec::new();
    let mut killed = 0usize;
    let mut last_kill = Instant::now();
    for (n, &k) in points.iter().enumerate() {
        let token = format!("k{n:02}");
        let (msg, _) = message(&token);
        assert_eq!(msg.len(), len);
        let mut child = spawn_sendmail(&env);
        let pid = child.id();
        let mut stdin = child.stdin.take().expect("stdin");
        // Write in steps, as a slow producer would.
        let mut off = 0;
        while off < k {
            let step = (k - off).min(16_384);
            stdin
                .write_all(&msg[off..off + step])
                .expect("write to sendmail");
            off += step;
        }
        assert!(
            wait_reading_stdin(pid, Duration::from_secs(20)),
            "sendmail did not get back to reading stdin after {k} bytes"
        );
        child.kill().expect("kill -9");
        let status = child.wait().expect("wait");
        assert!(!status.success());
        drop(stdin);
        killed += 1;
        last_kill = Instant::now();
        let (ready, _) = inspect_maildrop(&env);
        // EOF never came: nothing may be committed.
        assert_eq!(ready, committed, "kill after {k} bytes committed something");
    }

    // Kills racing the commit: EOF is sent, then SIGKILL at once. Either
    // outcome is fine; a torn ready entry is not (inspect_maildrop panics).
    for n in 0..6 {
        let token = format!("e{n:02}");
        let (msg, _) = message(&token);
        let mut child = spawn_sendmail(&env);
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(&msg).expect("write");
        drop(stdin);
        if n % 2 == 1 {
            std::thread::sleep(Duration::from_millis(n as u64));
        }
        let _ = child.kill();
        let status = child.wait().expect("wait");
        killed += 1;
        last_kill = Instant::now();
        let (ready, _) = inspect_maildrop(&env);
        if ready.contains(&token) {
            committed.push(token.clone());
        } else {
            assert!(!status.success(), "{token}: exit 0 but no committed entry");
        }
        assert_eq!(ready, committed);
    }

    // Two clean submissions among the debris.
    for n in 0..2 {
        let token = format!("c{n:02}");
        let (msg, _) = message(&token);
        let o = env.sendmail(&["-i", "dest@example.org"], &msg);
        assert_eq!(o.code, 0, "{o:?}");
        committed.push(token);
    }
    let (ready, partial) = inspect_maildrop(&env);
    assert_eq!(ready, committed);

    // Age the abandoned entries past maildrop_stale_after, then deliver.
    let age = last_kill.elapsed();
    if age < Duration::from_millis(1100) {
        std::thread::sleep(Duration::from_millis(1100) - age);
    }
    let o = env.queue_run();
    assert_eq!(o.code, 0, "{o:?}");
    let got = server.wait_for(committed.len(), Duration::from_secs(30));
    assert_eq!(
        got.len(),
        committed.len(),
        "delivered {} of {} committed messages",
        got.len(),
        committed.len()
    );
    let mut seen: Vec<String> = Vec::new();
    for m in &got {
        let text = String::from_utf8_lossy(&m.data).into_owned();
        let token = text
            .lines()
            .find_map(|l| l.strip_prefix("X-Token: "))
            .expect("token")
            .trim()
            .to_string();
        assert!(
            text.ends_with(&format!("\r\nEND-OF-{token}\r\n")),
            "{token} delivered partially"
        );
        seen.push(token);
    }
    seen.sort();
    let mut want = committed.clone();
    want.sort();
    assert_eq!(seen, want, "delivered set differs from the committed set");
    assert!(
        env.files("maildrop").is_empty(),
        "abandoned entries left: {:?}",
        env.files("maildrop")
    );
    assert!(env.files("queue").is_empty());
    assert!(
        env.files("corrupt").is_empty(),
        "{:?}",
        env.files("corrupt")
    );
    let removed = env.log().matches("removed an abandoned submission").count();
    assert_eq!(
        removed, partial,
        "abandoned entries removed vs left by the kills"
    );
    println!(
        "fault_submit: {killed} kill -9 injected, {} committed, {partial} abandoned entries cleaned, 0 lost, 0 partial, 0 duplicates",
        committed.len()
    );
}
