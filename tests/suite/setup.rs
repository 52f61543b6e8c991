//! `postern setup` through the real binary, against the test SMTP server on
//! 127.0.0.1 (STARTTLS with the test CA through --ca-file, AUTH): run by
//! flags twice (the config keeps its comments and has one relay block, the
//! secret file its mode and content, the test message arrives with its
//! envelope and bytes), and interactively through a pseudo-terminal
//! (answers to the prompts, the secret never echoed).

use crate::support;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::smtp_server::{AuthConfig, ServerConfig, SmtpServer, TlsMode};
use support::{TestEnv, base_config};

const USER: &str = "relayuser";
const SECRET: &str = "s3cret-Setup-Value";
const MARKER: &str = "# Written by `postern setup`";

fn server() -> SmtpServer {
    SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        auth: Some(AuthConfig {
            mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
            username: USER.into(),
            secret: SECRET.into(),
        }),
        ..Default::default()
    })
}

/// A config of the user's own, with comments setup must keep.
fn env() -> TestEnv {
    TestEnv::with_config_fn(|root| {
        format!(
            "# keep me: the top of the file\n{}\n# keep me: statistics\n[stats]\nenabled = true # keep me: inline\n",
            base_config(root)
        )
    })
}

/// The mode a secret file gets: root:postern 0640 when run as root and the
/// group exists, else 0600.
fn expected_secret_mode() -> u32 {
    let group = std::fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("postern:"));
    if nix::unistd::geteuid().is_root() && group {
        0o640
    } else {
        0o600
    }
}

fn assert_config(env: &TestEnv, port: u16) {
    let text = std::fs::read_to_string(&env.config).unwrap();
    for keep in [
        "# keep me: the top of the file\n",
        "# keep me: statistics\n",
        "enabled = true # keep me: inline\n",
        "run_on_submit = false\n",
    ] {
        assert!(text.contains(keep), "lost {keep:?}:\n{text}");
    }
    assert_eq!(text.matches("[[relay]]").count(), 1, "{text}");
    assert_eq!(text.matches(MARKER).count(), 1, "{text}");
    assert!(text.contains(&format!("port = {port}\n")), "{text}");
    assert!(text.contains(&format!("username = \"{USER}\"\n")), "{text}");
    assert!(text.contains("sender = \"sender@example.com\"\n"), "{text}");
    assert!(!text.contains(SECRET), "the secret is in the config");
    assert!(!text.contains("allow_plaintext"), "{text}");
    let secret = env.root.join("relay.secret");
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        format!("{SECRET}\n")
    );
    assert_eq!(
        std::fs::metadata(&secret).unwrap().mode() & 0o777,
        expected_secret_mode()
    );
}

fn queue_id(stdout: &str) -> String {
    let at = stdout.find("queued as ").expect("a queue id") + "queued as ".len();
    stdout[at..]
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap()
        .to_string()
}

fn assert_delivered(env: &TestEnv, server: &SmtpServer, id: &str) {
    let show = env.run("postern", &["queue", "show", id], b"");
    assert_eq!(show.code, 0, "{show:?}");
    env.queue_run();
    let got = server.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{}", env.log());
    let m = &got[0];
    assert_eq!(m.mail_from, "sender@example.com");
    assert_eq!(m.rcpts, vec!["rcpt@example.net".to_string()]);
    assert!(m.tls);
    assert_eq!(m.auth_user.as_deref(), Some(USER));
    let data = String::from_utf8_lossy(&m.data);
    assert!(
        data.contains("Subject: Postern test message from web1.example.com\r\n"),
        "{data}"
    );
    assert!(data.contains("To: rcpt@example.net\r\n"), "{data}");
    assert!(data.contains("\r\n\r\nThis is a test message sent by `postern setup`"));
}

#[test]
fn by_flags_twice_one_relay_comments_kept_secret_0600_and_the_test_message_arrives() {
    let server = server();
    let env = env();
    let ca = env.root.join("ca.pem");
    server.write_ca_file(&ca);
    let port = server.port().to_string();
    let given = env.root.join("given-secret");
    std::fs::write(&given, format!("{SECRET}\nignored second line\n")).unwrap();
    let common = [
        "setup",
        "--provider",
        "generic",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--tls",
        "starttls",
        "--ca-file",
        ca.to_str().unwrap(),
        "--user",
        USER,
        "--from",
        "sender@example.com",
        "--yes",
    ];
    let mut first: Vec<&str> = common.to_vec();
    first.extend(["--secret-file", given.to_str().unwrap()]);
    let o = env.run("postern", &first, b"");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!o.stdout.contains(SECRET) && !o.stderr.contains(SECRET));
    assert!(
        o.stdout.contains("USABLE") || o.stdout.contains("usable"),
        "{o:?}"
    );
    assert_config(&env, server.port());
    // No mail yet: the probe sends none.
    assert!(server.messages().is_empty());

    // Again, the secret on stdin this time, with a test message.
    let mut second: Vec<&str> = common.to_vec();
    second.extend(["--secret-stdin", "--test-to", "rcpt@example.net"]);
    let o = env.run("postern", &second, format!("{SECRET}\n").as_bytes());
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!o.stdout.contains(SECRET) && !o.stderr.contains(SECRET));
    assert!(o.stdout.contains("Replaced the relay"), "{o:?}");
    let id = queue_id(&o.stdout);
    assert!(
        o.stdout.contains(&format!("postern queue show {id}")),
        "{o:?}"
    );
    assert_config(&env, server.port());
    assert_delivered(&env, &server, &id);
}

#[test]
fn refuses_a_secret_on_the_command_line_and_missing_answers_without_a_terminal() {
    let env = env();
    let before = std::fs::read_to_string(&env.config).unwrap();
    let o = env.run(
        "postern",
        &["setup", "--provider", "sendgrid", "--secret", SECRET],
        b"",
    );
    assert_eq!(o.code, 64, "{o:?}");
    assert!(
        o.stderr.contains("never taken from the command line"),
        "{o:?}"
    );
    let o = env.run(
        "postern",
        &["setup", "--provider", "sendgrid", "--yes"],
        b"",
    );
    assert_eq!(o.code, 64, "{o:?}");
    assert!(o.stderr.contains("--secret-file"), "{o:?}");
    let o = env.run("postern", &["setup", "--provider", "nosuch", "--yes"], b"");
    assert_eq!(o.code, 64, "{o:?}");
    assert_eq!(std::fs::read_to_string(&env.config).unwrap(), before);
    assert!(!env.root.join("relay.secret").exists());
}

/// The terminal's output so far, read by a thread from the pty master.
struct Pty {
    out: Arc<Mutex<Vec<u8>>>,
    master: std::fs::File,
    seen: usize,
}

impl Pty {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Wait for `prompt` after what was already matched, then answer.
    fn answer(&mut self, prompt: &str, answer: &str) {
        let start = Instant::now();
        loop {
            let t = self.text();
            if let Some(at) = t[self.seen..].find(prompt) {
                self.seen += at + prompt.len();
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no prompt {prompt:?} in:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.master
            .write_all(format!("{answer}\n").as_bytes())
            .unwrap();
    }
}

#[test]
fn interactive_through_a_pseudo_terminal_never_echoes_the_secret() {
    let server = server();
    let env = env();
    let ca = env.root.join("ca.pem");
    server.write_ca_file(&ca);
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = std::fs::File::from(pty.slave);
    let master = std::fs::File::from(pty.master);
    let mut cmd = env.cmd("postern");
    cmd.args(["setup", "--ca-file", ca.to_str().unwrap()])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().expect("spawn");
    drop(cmd);
    let out = Arc::new(Mutex::new(Vec::new()));
    {
        let out = out.clone();
        let mut r = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the last slave is closed (the child exited).
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
    }
    let mut t = Pty {
        out,
        master,
        seen: 0,
    };
    t.answer("Provider [sendgrid]: ", "7");
    t.answer("Relay host name: ", "127.0.0.1");
    t.answer("[587]: ", &server.port().to_string());
    t.answer("TLS (starttls, tls or none) [starttls]: ", "");
    t.answer("User name (", USER);
    // A typo corrected with Backspace: the secret is what remains.
    t.answer("the password (not shown): ", &format!("{SECRET}x\x7f"));
    t.answer("Sender address", "sender@example.com");
    t.answer("Write this configuration? [Y/n]: ", "");
    t.answer("Send a test message to (empty: skip): ", "rcpt@example.net");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "setup did not finish:\n{}",
            t.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(200));
    let transcript = t.text();
    assert!(status.success(), "{status:?}\n{transcript}");
    assert!(
        !transcript.contains(SECRET),
        "the secret was echoed:\n{transcript}"
    );
    // The answers that are not secret were echoed: the terminal was
    // restored after the secret.
    assert!(transcript.contains("sender@example.com"), "{transcript}");
    assert_config(&env, server.port());
    assert_delivered(&env, &server, &queue_id(&transcript));
    assert!(Path::new(&env.config).exists());
}

struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_running_daemon_is_reloaded_and_delivers_the_test_message() {
    let server = server();
    let env = env();
    let ca = env.root.join("ca.pem");
    server.write_ca_file(&ca);
    let mut c = env.cmd("postern");
    c.arg("daemon")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let d = Daemon(c.spawn().expect("daemon"));
    assert!(
        env.wait_log(10, |l| l.contains("daemon started")),
        "{}",
        env.log()
    );
    let port = server.port().to_string();
    let o = env.run(
        "postern",
        &[
            "setup",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--ca-file",
            ca.to_str().unwrap(),
            "--user",
            USER,
            "--secret-stdin",
            "--from",
            "sender@example.com",
            "--test-to",
            "rcpt@example.net",
        ],
        format!("{SECRET}\n").as_bytes(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains(&format!("Asked the daemon (pid {}) to reload", d.0.id())),
        "{o:?}"
    );
    assert!(
        env.wait_log(10, |l| l.contains("configuration reloaded")),
        "{}",
        env.log()
    );
    // The daemon delivered it while setup watched; no queue run here.
    let got = server.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{o:?}\n{}", env.log());
    assert_eq!(got[0].rcpts, vec!["rcpt@example.net".to_string()]);
    assert!(o.stdout.contains("It has left the queue"), "{o:?}");
    assert!(o.stdout.contains("The log ("), "{o:?}");
    assert_config(&env, server.port());
}

#[test]
fn postmark_token_as_user_name_is_never_printed() {
    const TOKEN: &str = "pm-server-token-0123456789";
    let server = SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        auth: Some(AuthConfig {
            mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
            username: TOKEN.into(),
            secret: TOKEN.into(),
        }),
        ..Default::default()
    });
    let env = env();
    let ca = env.root.join("ca.pem");
    server.write_ca_file(&ca);
    let port = server.port().to_string();
    let o = env.run(
        "postern",
        &[
            "setup",
            "--provider",
            "postmark",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--ca-file",
            ca.to_str().unwrap(),
            "--secret-stdin",
        ],
        format!("{TOKEN}\n").as_bytes(),
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        !o.stdout.contains(TOKEN) && !o.stderr.contains(TOKEN),
        "{o:?}"
    );
    assert!(o.stdout.contains("<server token>"), "{o:?}");
    assert!(o.stdout.contains("USABLE"), "{o:?}");
    assert!(o.stdout.contains("Note: Postmark"), "{o:?}");
}
