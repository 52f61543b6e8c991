//! Containers and unprivileged operation (issue 14 §2): `postern daemon` as
//! any user owning its spool, `log = "stderr"`, `postern status --json` as
//! a health check, SIGTERM bounded by `[queue] shutdown_timeout`, the
//! configuration from `POSTERN_*` variables, and the container recipe in
//! packaging/container/ run as the non-root process it describes.
//!
//! The configuration from the environment is used only when no file is
//! given and none exists at the default path: these tests point the
//! default path at a file that does not exist (`POSTERN_DEFAULT_CONFIG`,
//! honoured only without privilege like `POSTERN_MAILNAME_FILE`), so they
//! do not depend on whether the host has /etc/postern/postern.toml.

use crate::support;
use crate::support::smtp_server::{
    Action, AuthConfig, Event, Received, ServerConfig, SmtpServer, TlsMode,
};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::TestEnv;

const NOBODY: u32 = 65534;

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

/// A running process whose stderr is collected line by line; killed on drop.
struct Proc {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    fn spawn(mut c: Command) -> Proc {
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        Proc {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Wait until stderr satisfies `pred` (at most `secs`).
    fn wait_stderr(&self, secs: u64, pred: impl Fn(&str) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            if pred(&self.stderr()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig)
            .expect("kill");
    }

    /// SIGTERM, then the exit code and how long the exit took (at most
    /// `secs`, else the test fails).
    fn terminate(&mut self, secs: u64) -> (i32, Duration) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                let took = start.elapsed();
                // The reader thread takes the last lines: it ends at the
                // pipe's EOF (bounded: a child another test thread forked
                // may hold a copy of the pipe until its exec).
                let end = Instant::now() + Duration::from_secs(10);
                while self.reader.as_ref().is_some_and(|r| !r.is_finished()) && Instant::now() < end
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return (s.code().unwrap_or(-1), took);
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "the daemon did not exit within {secs} s of SIGTERM: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(mut c: Command, stdin: &[u8]) -> support::Out {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    {
        use std::io::Write;
        let mut si = child.stdin.take().expect("stdin");
        let data = stdin.to_vec();
        std::thread::spawn(move || {
            let _ = si.write_all(&data);
        });
    }
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("command did not finish within 60 s: {c:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = child.wait_with_output().expect("output");
    support::Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn json(o: &support::Out) -> serde_json::Value {
    serde_json::from_str(o.stdout.trim()).unwrap_or_else(|e| panic!("bad JSON ({e}): {o:?}"))
}

fn one_message(server: &SmtpServer) -> Received {
    let got = server.wait_for(1, Duration::from_secs(15));
    assert_eq!(got.len(), 1, "one message at the relay");
    got.into_iter().next().expect("message")
}

/// Every stderr line of a daemon with `log = "stderr"`: `postern: ` and
/// the text, one record per line, no syslog `<pri>` prefix, no control
/// byte.
fn assert_stderr_log_lines(stderr: &str) {
    assert!(!stderr.is_empty());
    for line in stderr.lines() {
        assert!(line.starts_with("postern: "), "line {line:?} in {stderr}");
        assert!(!line.starts_with('<'), "syslog prefix in {line:?}");
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\t'),
            "control character in {line:?}"
        );
    }
}

// ---- the daemon as any user -----------------------------------------------------------------

/// `postern daemon` started as `nobody` (no root, no set-group-id binary)
/// with a spool `nobody` owns; `sendmail` as the same user submits into it
/// and the daemon delivers; `postern status --json` as that user is healthy
/// and SIGTERM ends it with 0. Its log lines go to stderr.
#[test]
#[ignore = "needs root: runs the daemon and sendmail as user nobody (setpriv)"]
fn daemon_runs_as_any_user_owning_its_spool() {
    support::require_root();
    if !Command::new("setpriv")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        support::unavailable("setpriv (util-linux)");
    }
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    chmod(&env.root, 0o755);
    // A copy of the binary nobody can run wherever the build tree is.
    let bin = env.root.join("postern-bin");
    std::fs::create_dir(&bin).unwrap();
    support::copy_binary(&bin.join("postern"));
    chmod(&bin.join("postern"), 0o755);
    std::os::unix::fs::symlink("postern", bin.join("sendmail")).unwrap();
    chmod(&bin, 0o755);
    let spool = env.root.join("spool");
    std::fs::create_dir(&spool).unwrap();
    chown(&spool, NOBODY, NOBODY);
    let config = format!(
        "hostname = \"box.example.com\"\ndomain = \"example.com\"\nspool_dir = \"{}\"\nlog = \"stderr\"\n\
         [queue]\nrun_on_submit = false\nshutdown_timeout = \"10s\"\n\
         [[relay]]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        spool.display(),
        server.port()
    );
    env.write_config(&config);
    chmod(&env.config, 0o644);
    let as_nobody = |argv0: &str| {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(bin.join(argv0))
        .env("POSTERN_CONFIG", &env.config)
        .env_remove("POSTERN_NOW")
        .current_dir("/");
        c
    };
    let mut c = as_nobody("postern");
    c.arg("daemon");
    let mut d = Proc::spawn(c);
    assert!(
        d.wait_stderr(10, |s| s.contains("daemon started")),
        "{}",
        d.stderr()
    );

    let mut c = as_nobody("sendmail");
    c.args(["-f", "app@example.com", "ops@example.org"]);
    let o = run(c, b"Subject: from nobody\n\nhello\n");
    assert_eq!(o.code, 0, "{o:?}");
    let m = one_message(&server);
    assert_eq!(m.mail_from, "app@example.com");
    assert_eq!(m.rcpts, ["ops@example.org"]);
    let text = String::from_utf8_lossy(&m.data);
    assert!(text.contains("Subject: from nobody"), "{text}");
    assert!(text.ends_with("hello\r\n"), "{text:?}");
    assert!(
        d.wait_stderr(10, |s| s.contains("status=sent")),
        "{}",
        d.stderr()
    );

    // Everything the daemon made is nobody's.
    for sub in ["queue", "state", "maildrop", "public"] {
        let md = std::fs::metadata(spool.join(sub)).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&md),
            NOBODY,
            "{sub} owner"
        );
    }
    let mut c = as_nobody("postern");
    c.args(["status", "--json"]);
    let o = run(c, b"");
    assert_eq!(o.code, 0, "{o:?}");
    let v = json(&o);
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(v["daemon_running"], true, "{v}");
    assert_eq!(v["queue"]["messages"], 0, "{v}");

    let (code, _) = d.terminate(20);
    assert_eq!(code, 0, "{}", d.stderr());
    let err = d.stderr();
    assert!(err.contains("daemon stopped"), "{err}");
    assert_stderr_log_lines(&err);
}

/// `log = "stderr"`: the daemon's records reach its standard error as
/// `postern: <text>` lines, one per record, with no syslog prefix, even a
/// record holding a relay's reply with control bytes.
#[test]
fn log_stderr_writes_one_plain_line_per_record() {
    let server = SmtpServer::start(ServerConfig {
        script: Arc::new(|e| match e {
            Event::DataEnd { .. } => {
                Action::Reply(250, "2.0.0 queued \x1b]2;pwned\x07 as X1".into())
            }
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = TestEnv::new();
    let cfg = env.relay_config(server.port(), "").replace(
        &format!("log = \"{}\"", env.log.display()),
        "log = \"stderr\"",
    );
    assert!(cfg.contains("log = \"stderr\""));
    env.write_config(&cfg);
    let mut c = env.cmd("postern");
    c.arg("daemon");
    let mut d = Proc::spawn(c);
    assert!(
        d.wait_stderr(10, |s| s.contains("daemon started")),
        "{}",
        d.stderr()
    );
    assert_eq!(
        env.sendmail(
            &["-f", "a@example.com", "b@example.org"],
            b"Subject: s\n\nx\n"
        )
        .code,
        0
    );
    one_message(&server);
    assert!(
        d.wait_stderr(10, |s| s.contains("status=sent")),
        "{}",
        d.stderr()
    );
    let (code, _) = d.terminate(20);
    assert_eq!(code, 0);
    let err = d.stderr();
    assert_stderr_log_lines(&err);
    let sent: Vec<&str> = err.lines().filter(|l| l.contains("status=sent")).collect();
    assert_eq!(sent.len(), 1, "{err}");
    assert!(sent[0].contains("to=<b@example.org>"), "{err}");
    assert!(
        sent[0].contains("queued \\x1b]2;pwned\\x07 as X1"),
        "escaped: {err}"
    );
    assert!(err.contains("postern: daemon stopped"), "{err}");
    // Nothing went to a log file.
    assert!(!env.log.exists());
}

// ---- health check ---------------------------------------------------------------------------

/// `postern status --json` as a container health check: exit 0 while mail
/// flows (daemon up), 1 once mail is stuck (also with --json, which still
/// prints the object), 78 when the configuration is broken.
#[test]
fn status_json_exit_code_is_a_health_check() {
    let env = TestEnv::new();
    let dead = support::closed_port();
    env.write_config(&env.relay_config(dead, ""));
    let mut c = env.cmd("postern");
    c.arg("daemon");
    let mut d = Proc::spawn(c);
    assert!(env.wait_log(10, |l| l.contains("daemon started")));
    let o = env.run("postern", &["status", "--json"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    let v = json(&o);
    assert_eq!(
        (v["healthy"].clone(), v["daemon_running"].clone()),
        (true.into(), true.into())
    );

    // The relay is down: deferred; two hours later the check fails.
    assert_eq!(
        env.sendmail(&["ops@example.org"], b"Subject: s\n\nx\n")
            .code,
        0
    );
    assert!(
        env.wait_log(15, |l| l.contains("status=deferred")),
        "{}",
        env.log()
    );
    let (code, _) = d.terminate(20);
    assert_eq!(code, 0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let o = env.run_at(now + 7200.0, "postern", &["status", "--json"], b"");
    assert_eq!(o.code, 1, "{o:?}");
    let v = json(&o);
    assert_eq!(v["healthy"], false, "{v}");
    assert!(!v["problems"].as_array().unwrap().is_empty(), "{v}");

    // A broken configuration fails the check too (78, one line).
    env.write_config("[queue]\nparallel = 0\n");
    let o = env.run("postern", &["status", "--json"], b"");
    assert_eq!(o.code, 78, "{o:?}");
    assert!(o.stdout.is_empty(), "{o:?}");
    assert_eq!(o.stderr.trim().lines().count(), 1, "{o:?}");
}

// ---- SIGTERM within shutdown_timeout --------------------------------------------------------

/// A relay that takes the whole message and never answers the final dot:
/// SIGTERM ends the daemon (exit 0) once `[queue] shutdown_timeout` is
/// over, long before the data timeout, logging what it left; the message
/// is still queued, and the next start delivers it through a good relay.
#[test]
fn sigterm_leaves_a_stalled_transaction_queued_within_shutdown_timeout() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let got_dot = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&got_dot);
    let stalled = SmtpServer::start(ServerConfig {
        script: Arc::new(move |e| match e {
            Event::DataEnd { .. } => {
                flag.store(true, Ordering::SeqCst);
                Action::Hang
            }
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = TestEnv::new();
    // data_timeout is 20 s in the base config; the bound is 2 s.
    env.write_config(
        &env.relay_config(stalled.port(), "")
            .replace("[queue]\n", "[queue]\nshutdown_timeout = \"2s\"\n"),
    );
    let mut c = env.cmd("postern");
    c.arg("daemon");
    let mut d = Proc::spawn(c);
    assert!(env.wait_log(10, |l| l.contains("daemon started")));
    let o = env.sendmail(
        &["-f", "app@example.com", "ops@example.org"],
        b"Subject: stalled\n\nbody\n",
    );
    assert_eq!(o.code, 0, "{o:?}");
    let start = Instant::now();
    while !got_dot.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the relay never got the message: {}",
            env.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, took) = d.terminate(15);
    assert_eq!(code, 0, "{}", env.log());
    // It waited for the transaction (the relay never answers), then gave up
    // at the bound, not at the 20 s data timeout.
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    let log = env.log();
    assert!(
        log.contains("daemon stopping with 1 transaction(s) still in flight after 2 s"),
        "{log}"
    );
    assert!(log.contains("daemon stopped"), "{log}");
    assert!(stalled.messages().is_empty());
    let queued = env.entries();
    assert_eq!(queued.len(), 1, "the message is still queued: {log}");
    assert_eq!(queued[0].rcpts(), ["ops@example.org"]);
    drop(stalled);

    // The next start, with a relay that answers, delivers it.
    let good = SmtpServer::start(ServerConfig::default());
    env.write_config(&env.relay_config(good.port(), ""));
    let mut c = env.cmd("postern");
    c.arg("daemon");
    let mut d = Proc::spawn(c);
    let m = one_message(&good);
    assert_eq!(m.mail_from, "app@example.com");
    assert_eq!(m.rcpts, ["ops@example.org"]);
    assert!(String::from_utf8_lossy(&m.data).contains("Subject: stalled"));
    let start = Instant::now();
    while !env.entries().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", env.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, _) = d.terminate(20);
    assert_eq!(code, 0);
}

// ---- configuration from the environment -----------------------------------------------------

/// A scratch directory for an environment-configured run: a spool
/// directory, a default config path that does not exist, a relay secret.
struct EnvRun {
    dir: tempfile::TempDir,
}

impl EnvRun {
    fn new() -> EnvRun {
        let dir = tempfile::Builder::new()
            .prefix("postern-envcfg")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        for n in ["postern", "sendmail"] {
            std::os::unix::fs::symlink(support::bin(), dir.path().join("bin").join(n)).unwrap();
        }
        EnvRun { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `argv0` with no config file anywhere and only `vars` (plus the
    /// test's default-path override) from the POSTERN_ family.
    fn cmd(&self, argv0: &str, vars: &[(&str, String)]) -> Command {
        let mut c = Command::new(self.path("bin").join(argv0));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("POSTERN_") {
                c.env_remove(k);
            }
        }
        c.env("POSTERN_DEFAULT_CONFIG", self.path("absent/postern.toml"));
        for (k, v) in vars {
            c.env(k, v);
        }
        c
    }
}

/// Only `POSTERN_*` variables (no -C, no POSTERN_CONFIG, nothing at the
/// default path): the daemon and sendmail deliver through a relay with
/// STARTTLS and AUTH (secret from POSTERN_RELAY_PASSWORD_FILE; the relay's
/// CA through SSL_CERT_FILE), and log on stderr by default.
#[test]
fn environment_alone_configures_delivery_through_an_authenticated_relay() {
    let server = SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        auth: Some(AuthConfig {
            mechanisms: vec!["PLAIN".into()],
            username: "apikey".into(),
            secret: "s3cret \"quoted\" pw".into(),
        }),
        require_auth: true,
        ..Default::default()
    });
    let r = EnvRun::new();
    server.write_ca_file(&r.path("ca.pem"));
    let secret = r.path("relay.secret");
    std::fs::write(&secret, "s3cret \"quoted\" pw\n").unwrap();
    chmod(&secret, 0o600);
    let vars = vec![
        ("POSTERN_RELAY_HOST", "127.0.0.1".to_string()),
        ("POSTERN_RELAY_PORT", server.port().to_string()),
        ("POSTERN_RELAY_TLS", "starttls".to_string()),
        ("POSTERN_RELAY_USER", "apikey".to_string()),
        ("POSTERN_RELAY_PASSWORD_FILE", secret.display().to_string()),
        ("POSTERN_HOSTNAME", "relay.example.com".to_string()),
        ("POSTERN_DOMAIN", "example.com".to_string()),
        ("POSTERN_SPOOL", r.path("spool").display().to_string()),
        ("SSL_CERT_FILE", r.path("ca.pem").display().to_string()),
    ];
    let mut c = r.cmd("postern", &vars);
    c.arg("daemon");
    let mut d = Proc::spawn(c);
    assert!(
        d.wait_stderr(10, |s| s.contains("daemon started")),
        "{}",
        d.stderr()
    );
    assert!(
        d.stderr()
            .contains(&format!("spool {}", r.path("spool").display()))
    );

    let o = run(
        {
            let mut c = r.cmd("sendmail", &vars);
            c.args(["-t"]);
            c
        },
        b"From: App <app@example.com>\nTo: ops@example.org\nSubject: env only\n\nhi\n",
    );
    assert_eq!(o.code, 0, "{o:?}");
    let m = one_message(&server);
    assert!(m.tls, "STARTTLS");
    assert_eq!(m.auth_user.as_deref(), Some("apikey"));
    assert_eq!(m.rcpts, ["ops@example.org"]);
    let text = String::from_utf8_lossy(&m.data);
    assert!(text.contains("Subject: env only"), "{text}");
    // The host name from POSTERN_HOSTNAME in the Received/Message-ID.
    assert!(text.contains("relay.example.com"), "{text}");

    let o = run(
        {
            let mut c = r.cmd("postern", &vars);
            c.args(["status", "--json"]);
            c
        },
        b"",
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(json(&o)["daemon_running"], true);

    let (code, _) = d.terminate(20);
    assert_eq!(code, 0);
    let err = d.stderr();
    assert!(err.contains("status=sent"), "{err}");
    assert_stderr_log_lines(&err);
    assert!(!err.contains("s3cret"), "{err}");
}

/// A bad value is the usual configuration error (exit 78, one line) naming
/// the variable; a config file, given or at the default path, wins over
/// the variables (they are then not even read).
#[test]
fn environment_errors_name_the_variable_and_a_file_wins() {
    let r = EnvRun::new();
    let spool = ("POSTERN_SPOOL", r.path("spool").display().to_string());
    for (vars, want) in [
        (
            vec![
                ("POSTERN_RELAY_HOST", "smtp.example.com".to_string()),
                ("POSTERN_RELAY_TLS", "sometimes".to_string()),
            ],
            "POSTERN_RELAY_TLS (relay.tls)",
        ),
        (
            vec![
                ("POSTERN_RELAY_HOST", "smtp.example.com".to_string()),
                ("POSTERN_RELAY_PORT", "submission".to_string()),
            ],
            "POSTERN_RELAY_PORT (relay.port)",
        ),
        (
            vec![("POSTERN_RELAY_PASSWORD_FILE", "/run/secrets/x".to_string())],
            "POSTERN_RELAY_PASSWORD_FILE is set but POSTERN_RELAY_HOST is not",
        ),
        (
            vec![("POSTERN_LOG", "journald".to_string())],
            "POSTERN_LOG (log)",
        ),
    ] {
        let mut vars = vars;
        vars.push(spool.clone());
        let mut c = r.cmd("postern", &vars);
        c.arg("daemon");
        let o = run(c, b"");
        assert_eq!(o.code, 78, "{vars:?}: {o:?}");
        assert_eq!(o.stderr.trim().lines().count(), 1, "{o:?}");
        assert!(
            o.stderr.starts_with(&format!(
                "postern: configuration from the environment: {want}"
            )),
            "{o:?}"
        );
    }

    // A file at the default path: the variables are ignored.
    let bad = vec![
        ("POSTERN_RELAY_HOST", "smtp.example.com".to_string()),
        ("POSTERN_RELAY_TLS", "sometimes".to_string()),
    ];
    let file = r.path("postern.toml");
    std::fs::write(
        &file,
        format!(
            "spool_dir = \"{}\"\nlog = \"stderr\"\n",
            r.path("spool").display()
        ),
    )
    .unwrap();
    let mut vars = bad.clone();
    vars.push(("POSTERN_DEFAULT_CONFIG", file.display().to_string()));
    let mut c = r.cmd("postern", &vars);
    c.args(["status", "--json"]);
    let o = run(c, b"");
    assert_eq!(o.code, 0, "the default file wins: {o:?}");
    // So does POSTERN_CONFIG.
    let mut vars = bad;
    vars.push(("POSTERN_CONFIG", file.display().to_string()));
    let mut c = r.cmd("postern", &vars);
    c.args(["status", "--json"]);
    let o = run(c, b"");
    assert_eq!(o.code, 0, "POSTERN_CONFIG wins: {o:?}");
}

// ---- packaging/container/ -------------------------------------------------------------------

/// The runtime stage of packaging/container/Containerfile, as the engine
/// would read it.
#[derive(Debug, Default)]
struct Recipe {
    env: Vec<(String, String)>,
    user: String,
    volumes: Vec<String>,
    expose: Vec<String>,
    healthcheck: Vec<String>,
    entrypoint: Vec<String>,
}

fn repo_file(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn json_argv(s: &str) -> Vec<String> {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not an exec-form array ({e}): {s}"))
}

/// Parse the instructions the test relies on (continuation lines joined,
/// comments dropped); every instruction of the last stage is understood
/// or the test fails.
fn recipe() -> Recipe {
    let text = repo_file("packaging/container/Containerfile");
    let mut logical = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(t);
            logical.push(std::mem::take(&mut cur));
        }
    }
    let mut r = Recipe::default();
    for l in logical {
        let (op, rest) = l.split_once(' ').unwrap_or((&l, ""));
        let rest = rest.trim();
        match op {
            "FROM" => r = Recipe::default(), // a new stage: keep only the last
            "ENV" => {
                let (k, v) = rest
                    .split_once('=')
                    .unwrap_or_else(|| panic!("ENV KEY=VALUE expected: {l}"));
                assert!(
                    !v.contains([' ', '"', '\'', '$']),
                    "one unquoted value per ENV line: {l}"
                );
                r.env.push((k.to_string(), v.to_string()));
            }
            "USER" => r.user = rest.to_string(),
            "VOLUME" => r.volumes.push(rest.to_string()),
            "EXPOSE" => r.expose.extend(rest.split_whitespace().map(String::from)),
            "HEALTHCHECK" => {
                let (_, cmd) = rest
                    .split_once("CMD ")
                    .unwrap_or_else(|| panic!("HEALTHCHECK ... CMD [...] expected: {l}"));
                r.healthcheck = json_argv(cmd);
            }
            "ENTRYPOINT" => r.entrypoint = json_argv(rest),
            "ARG" | "RUN" | "COPY" | "WORKDIR" | "STOPSIGNAL" | "LABEL" => {}
            other => panic!("instruction {other} not understood by this test: {l}"),
        }
    }
    r
}

/// The listener's variables: the image listens on 0.0.0.0:2525 (a
/// non-loopback address: networks, AUTH and TLS required, which
/// tests/suite/listener.rs proves in a network namespace); on the test host
/// the entry-point test listens on a free loopback port instead, with the
/// same users file and certificate variables.
const LISTENER_VARS: &[&str] = &[
    "POSTERN_LISTEN",
    "POSTERN_LISTEN_NETWORKS",
    "POSTERN_LISTEN_USERS_FILE",
    "POSTERN_LISTEN_TLS_CERT",
    "POSTERN_LISTEN_TLS_KEY",
];

/// The recipe is what the issue asks for, and names only variables Postern
/// reads (a typo in a variable would otherwise be silently ignored).
#[test]
fn containerfile_describes_a_non_root_relay_with_a_spool_volume() {
    let r = recipe();
    let env = |k: &str| {
        r.env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no ENV {k}"))
    };
    let uid = r.user.split(':').next().unwrap_or("");
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u != 0),
        "USER is a numeric non-root uid: {:?}",
        r.user
    );
    assert_eq!(r.entrypoint, ["/usr/sbin/postern", "daemon"]);
    assert_eq!(r.healthcheck, ["/usr/sbin/postern", "status", "--json"]);
    assert_eq!(r.volumes, [env("POSTERN_SPOOL")]);
    assert_eq!(env("POSTERN_LOG"), "stderr");
    assert_eq!(env("POSTERN_LISTEN"), "0.0.0.0:2525");
    assert_eq!(r.expose, ["2525"]);
    for v in LISTENER_VARS {
        env(v);
    }
    let known: Vec<&str> = postern::config::env::VARS.iter().map(|(v, _)| *v).collect();
    for (k, _) in &r.env {
        assert!(known.contains(&k.as_str()), "Containerfile: unknown {k}");
    }
    let compose = repo_file("packaging/container/compose.yaml");
    let mut seen = 0;
    for word in compose.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("POSTERN_") && word.len() > "POSTERN_".len() {
            seen += 1;
            assert!(known.contains(&word), "compose.yaml: unknown {word}");
        }
    }
    assert!(
        seen >= 5,
        "compose.yaml configures Postern by its variables"
    );
}

/// The Containerfile's entry point, run the way the engine runs it: its
/// ENV (the spool path standing for the volume), the variables a compose
/// file adds (the relay), as a non-root user owning the spool (`nobody`
/// when the test runs as root), no configuration file anywhere. sendmail
/// in the container submits, the daemon delivers to the relay, the
/// HEALTHCHECK command reports healthy, and `docker stop` (SIGTERM) ends
/// it with 0 within the image's POSTERN_SHUTDOWN_TIMEOUT.
#[test]
fn containerfile_entry_point_runs_as_a_non_root_process() {
    let r = recipe();
    let server = SmtpServer::start(ServerConfig::default());
    let run_dir = EnvRun::new();
    chmod(run_dir.dir.path(), 0o755);
    // The image's /usr/sbin: a copy of the binary anyone can run.
    let sbin = run_dir.path("usr-sbin");
    std::fs::create_dir(&sbin).unwrap();
    support::copy_binary(&sbin.join("postern"));
    chmod(&sbin.join("postern"), 0o755);
    std::os::unix::fs::symlink("postern", sbin.join("sendmail")).unwrap();
    chmod(&sbin, 0o755);
    let image_path = |p: &str| -> PathBuf {
        let name = p
            .strip_prefix("/usr/sbin/")
            .unwrap_or_else(|| panic!("{p} is not in /usr/sbin"));
        sbin.join(name)
    };
    // The volume.
    let spool = run_dir.path("spool-volume");
    std::fs::create_dir(&spool).unwrap();
    let root = nix::unistd::geteuid().is_root();
    if root {
        chown(&spool, NOBODY, NOBODY);
    }
    // The secrets and the certificate the image expects, readable by the
    // daemon's user only.
    let certs = run_dir.path("tls");
    support::smtp_server::ensure_cert_dir(&certs).unwrap();
    let users = run_dir.path("listen-users");
    std::fs::write(&users, "app:app-secret\n").unwrap();
    for f in [users.clone(), certs.join("key.pem"), certs.join("cert.pem")] {
        chmod(&f, 0o640);
        if root {
            chown(&f, NOBODY, NOBODY);
        }
    }
    chmod(&certs, 0o755);
    let listen_port = support::free_port();
    let mut vars: Vec<(&str, String)> = r
        .env
        .iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                "POSTERN_SPOOL" => spool.display().to_string(),
                "POSTERN_LISTEN" => format!("127.0.0.1:{listen_port}"),
                "POSTERN_LISTEN_USERS_FILE" => users.display().to_string(),
                "POSTERN_LISTEN_TLS_CERT" => certs.join("cert.pem").display().to_string(),
                "POSTERN_LISTEN_TLS_KEY" => certs.join("key.pem").display().to_string(),
                _ => v.clone(),
            };
            (k.as_str(), v)
        })
        .collect();
    // What compose.yaml adds (a loopback test relay instead of a smart host).
    vars.extend([
        ("POSTERN_RELAY_HOST", "127.0.0.1".to_string()),
        ("POSTERN_RELAY_PORT", server.port().to_string()),
        ("POSTERN_RELAY_TLS", "none".to_string()),
        ("POSTERN_HOSTNAME", "mail.example.com".to_string()),
        ("POSTERN_DOMAIN", "example.com".to_string()),
    ]);
    let container_cmd = |argv: &[String]| -> Command {
        let (prog, args) = argv.split_first().expect("argv");
        let mut c = if root {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
            ])
            .arg(image_path(prog));
            c
        } else {
            Command::new(image_path(prog))
        };
        c.args(args).current_dir("/");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("POSTERN_") {
                c.env_remove(k);
            }
        }
        c.env(
            "POSTERN_DEFAULT_CONFIG",
            run_dir.path("absent/postern.toml"),
        );
        for (k, v) in &vars {
            c.env(k, v);
        }
        c
    };

    let mut d = Proc::spawn(container_cmd(&r.entrypoint));
    assert!(
        d.wait_stderr(10, |s| s.contains("daemon started")),
        "{}",
        d.stderr()
    );
    let sendmail: Vec<String> = [
        "/usr/sbin/sendmail",
        "-f",
        "app@example.com",
        "ops@example.org",
    ]
    .map(String::from)
    .to_vec();
    let o = run(
        container_cmd(&sendmail),
        b"Subject: from the container\n\nhello\n",
    );
    assert_eq!(o.code, 0, "{o:?}");
    let m = one_message(&server);
    assert_eq!(m.mail_from, "app@example.com");
    assert_eq!(m.rcpts, ["ops@example.org"]);
    assert!(String::from_utf8_lossy(&m.data).contains("Subject: from the container"));
    // Delivered and gone from the spool before the health check looks.
    assert!(
        d.wait_stderr(10, |s| s.contains(": removed")),
        "{}",
        d.stderr()
    );

    // An application container speaking SMTP to the listener: STARTTLS
    // and AUTH are offered, and the message is relayed.
    {
        use std::io::Write;
        let s = std::net::TcpStream::connect(("127.0.0.1", listen_port)).expect("listener");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut rd = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let mut reply = || {
            let mut all = String::new();
            loop {
                let mut l = String::new();
                if rd.read_line(&mut l).unwrap_or(0) == 0 {
                    return all;
                }
                all.push_str(&l);
                if l.as_bytes().get(3) != Some(&b'-') {
                    return all;
                }
            }
        };
        assert!(reply().starts_with("220 "));
        w.write_all(b"EHLO grafana.example\r\n").unwrap();
        let ehlo = reply();
        assert!(
            ehlo.contains("STARTTLS") && ehlo.contains("AUTH PLAIN"),
            "{ehlo}"
        );
        // AUTH PLAIN \0app\0app-secret
        w.write_all(b"AUTH PLAIN AGFwcABhcHAtc2VjcmV0\r\n").unwrap();
        assert!(reply().starts_with("235 "));
        w.write_all(b"MAIL FROM:<grafana@example.com>\r\nRCPT TO:<oncall@example.org>\r\nDATA\r\n")
            .unwrap();
        for want in ["250", "250", "354"] {
            let r = reply();
            assert!(r.starts_with(want), "{r}");
        }
        w.write_all(b"Subject: alert\r\n\r\nfiring\r\n.\r\nQUIT\r\n")
            .unwrap();
        assert!(reply().starts_with("250 2.0.0 Ok: queued as "));
    }
    let got = server.wait_for(2, Duration::from_secs(15));
    assert_eq!(got.len(), 2, "the listener's message at the relay");
    let m = &got[1];
    assert_eq!(m.rcpts, ["oncall@example.org"]);
    assert!(String::from_utf8_lossy(&m.data).contains("with ESMTPA id"));

    let o = run(container_cmd(&r.healthcheck), b"");
    assert_eq!(o.code, 0, "HEALTHCHECK: {o:?}");
    let v = json(&o);
    assert_eq!(v["healthy"], true, "{v}");
    assert_eq!(v["daemon_running"], true, "{v}");

    let limit = postern::config::parse_duration(
        &vars
            .iter()
            .find(|(k, _)| *k == "POSTERN_SHUTDOWN_TIMEOUT")
            .expect("the image sets POSTERN_SHUTDOWN_TIMEOUT")
            .1,
    )
    .expect("duration");
    let (code, _) = d.terminate(limit.as_secs() + 10);
    assert_eq!(code, 0, "{}", d.stderr());
    let err = d.stderr();
    assert_stderr_log_lines(&err);
    assert!(err.contains("status=sent"), "{err}");
    assert!(err.contains("daemon stopped"), "{err}");
    if root {
        let md = std::fs::metadata(spool.join("queue")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), NOBODY);
    }
}
