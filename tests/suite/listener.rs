//! The daemon's SMTP listener (issue 14 §1): real clients (Python's
//! smtplib, lettre, a raw pipelining client) through `postern daemon` to a
//! test relay, asserting envelope and bytes; STARTTLS command injection;
//! AUTH and the non-loopback rule (in a network namespace); limits and
//! timeouts; a daemon killed during DATA; systemd socket activation; the
//! unix socket's peer uid.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::TestEnv;
use support::smtp_server::{ServerConfig, SmtpServer};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.0.id() as i32)
    }
}

/// A test installation whose daemon relays to `relay` and listens on a
/// free loopback port with `extra` lines in `[listen]`.
struct Setup {
    env: TestEnv,
    port: u16,
}

fn config(env: &TestEnv, relay_port: u16, port: u16, extra: &str) -> String {
    format!(
        "{}\n[listen]\naddresses = [\"127.0.0.1:{port}\"]\n{extra}\n",
        env.relay_config(relay_port, "")
    )
}

fn setup(relay_port: u16, extra: &str) -> Setup {
    let env = TestEnv::new();
    let port = support::free_port();
    env.write_config(&config(&env, relay_port, port, extra));
    Setup { env, port }
}

fn start(env: &TestEnv, port: u16) -> Daemon {
    let mut c = env.cmd("postern");
    c.arg("daemon")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let before = env.log().matches("daemon started").count();
    let d = Daemon(c.spawn().expect("daemon"));
    assert!(
        env.wait_log(10, |l| l.matches("daemon started").count() > before),
        "daemon did not start: {}",
        env.log()
    );
    wait_port(port);
    d
}

fn wait_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw SMTP client: send lines, read whole replies.
struct Client {
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> (Client, String) {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut c = Client {
            r: BufReader::new(s),
        };
        let greeting = c.reply();
        (c, greeting)
    }

    fn send(&mut self, bytes: &str) {
        self.r.get_mut().write_all(bytes.as_bytes()).expect("write");
    }

    /// One whole reply (all its lines), "" at EOF.
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            match self.r.read_line(&mut line) {
                Ok(0) | Err(_) => return all,
                Ok(_) => {}
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n"));
        self.reply()
    }

    /// True when the server closed the connection.
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.get_mut().read(&mut b), Ok(0) | Err(_))
    }
}

fn python(script: &str, args: &[&str]) -> support::Out {
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    support::Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

const MESSAGE: &str = "From: App <app@example.net>\r\nTo: alice@example.org\r\nBcc: hidden@example.org\r\nSubject: via the listener\r\n\r\nline one\r\n.leading dot\r\nline three\r\n";

/// Python's smtplib (EHLO, pipelined-capable client, sendmail with two
/// recipients) through the listener: the relay gets the envelope, the Bcc
/// is gone, the body is byte-exact, and Received names the client.
#[test]
fn smtplib_through_the_listener_arrives_byte_exact() {
    let relay = SmtpServer::start(ServerConfig::default());
    let s = setup(relay.port(), "");
    let _d = start(&s.env, s.port);
    let o = python(
        "import smtplib,sys\n\
         m=sys.argv[2].encode()\n\
         with smtplib.SMTP('127.0.0.1', int(sys.argv[1]), local_hostname='app.example.net') as c:\n\
         \x20   r=c.sendmail('app@example.net', ['alice@example.org','hidden@example.org'], m)\n\
         \x20   assert r == {}, r\n",
        &[&s.port.to_string(), MESSAGE],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let got = relay.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{}", s.env.log());
    let m = &got[0];
    assert_eq!(m.mail_from, "app@example.net");
    assert_eq!(m.rcpts, vec!["alice@example.org", "hidden@example.org"]);
    let text = String::from_utf8_lossy(&m.data).into_owned();
    let first = text.lines().next().unwrap_or("");
    assert!(
        first.starts_with("Received: from app.example.net ([127.0.0.1]:"),
        "{text}"
    );
    assert!(
        text.contains("by web1.example.com (Postern) with ESMTP id "),
        "{text}"
    );
    assert!(!text.contains("Bcc:"), "{text}");
    assert!(
        m.data.ends_with(
            b"Subject: via the listener\r\n\r\nline one\r\n.leading dot\r\nline three\r\n"
        ) || text.contains("\r\n\r\nline one\r\n.leading dot\r\nline three\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with("line one\r\n.leading dot\r\nline three\r\n"),
        "{text:?}"
    );
    let log = s.env.log();
    assert!(
        log.contains("client=[127.0.0.1]:") && log.contains("proto=ESMTP"),
        "{log}"
    );
}

/// lettre's SMTP client (plain, on loopback) sends a message built with
/// its builder; it arrives with the envelope lettre chose.
#[test]
fn lettre_client_through_the_listener() {
    use lettre::Transport;
    let relay = SmtpServer::start(ServerConfig::default());
    let s = setup(relay.port(), "");
    let _d = start(&s.env, s.port);
    let email = lettre::Message::builder()
        .from("Grafana <grafana@example.net>".parse().expect("from"))
        .to("ops@example.org".parse().expect("to"))
        .subject("alert firing")
        .body("CPU high\n".to_string())
        .expect("message");
    let mailer = lettre::SmtpTransport::builder_dangerous("127.0.0.1")
        .port(s.port)
        .timeout(Some(Duration::from_secs(20)))
        .build();
    mailer.send(&email).expect("lettre send");
    let got = relay.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{}", s.env.log());
    assert_eq!(got[0].mail_from, "grafana@example.net");
    assert_eq!(got[0].rcpts, vec!["ops@example.org"]);
    let text = String::from_utf8_lossy(&got[0].data).into_owned();
    assert!(text.contains("Subject: alert firing\r\n"), "{text}");
    assert!(text.contains("CPU high"), "{text}");
}

/// A pipelining client sends a whole transaction in one write (RFC 2920):
/// one reply per command, in order, and the message is queued.
#[test]
fn pipelined_transaction_in_one_write() {
    let relay = SmtpServer::start(ServerConfig::default());
    let s = setup(relay.port(), "");
    let _d = start(&s.env, s.port);
    let (mut c, greeting) = Client::connect(s.port);
    assert!(greeting.starts_with("220 "), "{greeting}");
    let ehlo = c.cmd("EHLO pipe.example");
    assert!(ehlo.contains("250-PIPELINING"), "{ehlo}");
    assert!(
        !ehlo.contains("STARTTLS"),
        "no certificate, no STARTTLS: {ehlo}"
    );
    c.send(
        "MAIL FROM:<p@example.net>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n",
    );
    for want in ["250 ", "250 ", "250 ", "354 "] {
        let r = c.reply();
        assert!(r.starts_with(want), "wanted {want}: {r}");
    }
    c.send("Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    let r = c.reply();
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    assert!(c.reply().starts_with("221 "));
    let got = relay.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{}", s.env.log());
    assert_eq!(got[0].rcpts, vec!["a@example.org", "b@example.org"]);
}

/// Plaintext pipelined after STARTTLS (CVE-2011-0411) is refused and the
/// connection closed; a proper STARTTLS then works (lettre, trusting the
/// test CA) and delivers.
#[test]
fn starttls_injection_is_refused_and_real_starttls_works() {
    let relay = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    let certs = env.root.join("certs");
    support::smtp_server::ensure_cert_dir(&certs).expect("certs");
    let port = support::free_port();
    env.write_config(&config(
        &env,
        relay.port(),
        port,
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            certs.join("cert.pem").display(),
            certs.join("key.pem").display()
        ),
    ));
    let _d = start(&env, port);
    let (mut c, _) = Client::connect(port);
    let ehlo = c.cmd("EHLO inject.example");
    assert!(ehlo.contains("250-STARTTLS"), "{ehlo}");
    let r = c.cmd("STARTTLS\r\nMAIL FROM:<evil@example.net>");
    assert!(r.starts_with("554 "), "{r}");
    assert!(c.closed(), "the connection stays open after an injection");
    assert!(
        env.wait_log(5, |l| l.contains("commands pipelined after STARTTLS")),
        "{}",
        env.log()
    );

    use lettre::Transport;
    let ca = std::fs::read(certs.join("ca.pem")).expect("ca");
    let tls = lettre::transport::smtp::client::TlsParameters::builder("localhost".into())
        .add_root_certificate(
            lettre::transport::smtp::client::Certificate::from_pem(&ca).expect("ca"),
        )
        .build_rustls()
        .expect("tls");
    let mailer = lettre::SmtpTransport::builder_dangerous("127.0.0.1")
        .port(port)
        .tls(lettre::transport::smtp::client::Tls::Required(tls))
        .timeout(Some(Duration::from_secs(20)))
        .build();
    let email = lettre::Message::builder()
        .from("a@example.net".parse().expect("from"))
        .to("tls@example.org".parse().expect("to"))
        .subject("over tls")
        .body("secret\n".to_string())
        .expect("message");
    mailer.send(&email).expect("send over STARTTLS");
    let got = relay.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{}", env.log());
    assert_eq!(got[0].mail_from, "a@example.net");
    let text = String::from_utf8_lossy(&got[0].data).into_owned();
    assert!(text.contains("with ESMTPS id"), "{text}");
}

/// Limits: connections per client, recipients per message, refused
/// commands, the command line length and the idle timeout each get a
/// clear reply, never a crash.
#[test]
fn limits_and_timeouts_get_clear_replies() {
    let relay = SmtpServer::start(ServerConfig::default());
    let s = setup(
        relay.port(),
        "max_sessions_per_client = 2\nmax_recipients = 2\nmax_errors = 3\nidle_timeout = \"2s\"\n",
    );
    let _d = start(&s.env, s.port);
    // start()'s probe of the port is a session too: wait until it is over
    // (its end — "disconnected", or "session ended" when the probe was gone
    // before the greeting — is logged after its slot is given back).
    assert!(
        s.env.wait_log(10, |l| l.contains("disconnected after")
            || l.contains("session ended")),
        "{}",
        s.env.log()
    );
    // Per client: the third connection is refused.
    let (mut a, greeting) = Client::connect(s.port);
    assert!(greeting.starts_with("220 "), "{greeting}");
    let (mut b, greeting) = Client::connect(s.port);
    assert!(greeting.starts_with("220 "), "{greeting}");
    let (mut third, greeting) = Client::connect(s.port);
    assert!(greeting.starts_with("421 4.7.0"), "{greeting}");
    assert!(third.closed());
    // Recipients per message.
    assert!(a.cmd("EHLO a.example").starts_with("250"));
    assert!(a.cmd("MAIL FROM:<a@example.net>").starts_with("250"));
    assert!(a.cmd("RCPT TO:<1@example.org>").starts_with("250"));
    assert!(a.cmd("RCPT TO:<2@example.org>").starts_with("250"));
    let r = a.cmd("RCPT TO:<3@example.org>");
    assert!(r.starts_with("452 4.5.3"), "{r}");
    // A line too long.
    let r = a.cmd(&format!("NOOP {}", "x".repeat(600)));
    assert!(r.starts_with("500 5.5.2"), "{r}");
    // The third error closes the session.
    let r = a.cmd("BOGUS");
    assert!(r.starts_with("500 5.5.2"), "{r}");
    let r = a.reply();
    assert!(
        r.starts_with("421 4.7.0") && r.contains("too many errors"),
        "{r}"
    );
    assert!(a.closed());
    // Idle: b said nothing for more than 2 s.
    std::thread::sleep(Duration::from_millis(2500));
    let r = b.reply();
    assert!(r.starts_with("421 4.4.2"), "{r:?}\n{}", s.env.log());
    assert!(b.closed());
    // Slots are given back: a new connection is served.
    let (mut d, greeting) = Client::connect(s.port);
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(d.cmd("QUIT").starts_with("221"));
    assert!(relay.messages().is_empty());
}

/// A message acknowledged with 250 survives a SIGKILL of the daemon; one
/// whose DATA was cut by the kill is not delivered and leaves nothing
/// behind.
#[test]
fn killed_daemon_loses_nothing_it_acknowledged() {
    let mut down = support::ClosedPort::new();
    let s = setup(down.port, "");
    let d = start(&s.env, s.port);
    let (mut c, _) = Client::connect(s.port);
    assert!(c.cmd("EHLO k.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<k@example.net>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<acked@example.org>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let r = c.cmd("Subject: acked\r\n\r\nkeep me\r\n.");
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    assert!(c.cmd("MAIL FROM:<k@example.net>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<cut@example.org>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(&format!(
        "Subject: cut\r\n\r\n{}",
        "half a message\r\n".repeat(2000)
    ));
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGKILL).expect("kill");
    drop(d);
    drop(c);
    // The relay comes back; a new daemon delivers what was acknowledged.
    let relay = support::start_on_port(ServerConfig::default(), down.release());
    let _d2 = start(&s.env, s.port);
    // It was deferred while the relay was down: ask for the retry now.
    assert_eq!(s.env.sendmail(&["-q"], b"").code, 0);
    let got = relay.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "{}", s.env.log());
    assert_eq!(got[0].rcpts, vec!["acked@example.org"]);
    assert!(String::from_utf8_lossy(&got[0].data).contains("keep me"));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(relay.messages().len(), 1, "the cut message was delivered");
    // Nothing half-written is left: maildrop is empty once the dead
    // writer's entry was judged, and the queue holds nothing.
    let start = Instant::now();
    while !s.env.files("maildrop").is_empty() || !s.env.files("queue").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "left behind: maildrop {:?} queue {:?}",
            s.env.files("maildrop"),
            s.env.files("queue")
        );
        std::thread::sleep(Duration::from_millis(200));
        let _ = Client::connect(s.port).0.cmd("QUIT");
    }
}

/// SIGTERM: an idle session is told 421 "shutting down" within a couple of
/// seconds and the daemon exits 0.
#[test]
fn sigterm_ends_idle_sessions_with_421() {
    let relay = SmtpServer::start(ServerConfig::default());
    let s = setup(relay.port(), "");
    let mut d = start(&s.env, s.port);
    let (mut c, _) = Client::connect(s.port);
    assert!(c.cmd("EHLO idle.example").starts_with("250"));
    let t = Instant::now();
    nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGTERM).expect("term");
    let r = c.reply();
    assert!(r.starts_with("421 4.3.2"), "{r}");
    let status = loop {
        if let Some(st) = d.0.try_wait().expect("wait") {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "daemon did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

/// A non-loopback address without networks, AUTH and a certificate is a
/// configuration error (78) that names what is missing.
#[test]
fn non_loopback_address_needs_networks_auth_and_tls() {
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}\n[listen]\naddresses = [\"0.0.0.0:2525\"]\n",
        support::base_config(&env.root)
    ));
    let o = env.run("postern", &["daemon"], b"");
    assert_eq!(o.code, 78, "{o:?}");
    assert!(
        o.stderr.contains("not a loopback address")
            && o.stderr.contains("networks")
            && o.stderr.contains("users_file")
            && o.stderr.contains("tls_cert"),
        "{o:?}"
    );
    assert_eq!(o.stderr.trim().lines().count(), 1, "{o:?}");
}

/// The unix socket: the client's uid (SO_PEERCRED) is in Received and the
/// log; the socket has the configured mode.
#[test]
fn unix_socket_records_the_peer_uid() {
    use std::os::unix::fs::PermissionsExt;
    let relay = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    let sock = env.root.join("smtp.sock");
    env.write_config(&format!(
        "{}\n[listen]\nsocket = \"{}\"\nsocket_mode = \"0660\"\n",
        env.relay_config(relay.port(), ""),
        sock.display()
    ));
    let mut c = env.cmd("postern");
    c.arg("daemon")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _d = Daemon(c.spawn().expect("daemon"));
    assert!(
        env.wait_log(10, |l| l.contains("daemon started")),
        "{}",
        env.log()
    );
    let mode = std::fs::metadata(&sock)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    let o = python(
        "import smtplib,sys,socket\n\
         class U(smtplib.SMTP):\n\
         \x20   def _get_socket(self, host, port, timeout):\n\
         \x20       s=socket.socket(socket.AF_UNIX); s.settimeout(20); s.connect(host); return s\n\
         c=U(); c.connect(sys.argv[1]); c.ehlo('local.app')\n\
         c.sendmail('', ['u@example.org'], b'Subject: unix\\r\\n\\r\\nvia the socket\\r\\n'); c.quit()\n",
        &[sock.to_str().expect("path")],
    );
    assert_eq!(o.code, 0, "{o:?}");
    let got = relay.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{}", env.log());
    let uid = nix::unistd::getuid().as_raw();
    let text = String::from_utf8_lossy(&got[0].data).into_owned();
    assert!(
        text.starts_with(&format!(
            "Received: from local.app (unix socket, uid {uid} ("
        )),
        "{text}"
    );
    assert_eq!(got[0].mail_from, "", "the null sender is kept");
}

/// systemd socket activation: a listening socket passed as fd 3 with
/// LISTEN_PID/LISTEN_FDS is served (no address in the config).
#[test]
fn systemd_socket_activation() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let relay = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(&env.relay_config(relay.port(), ""));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let fd = listener.as_raw_fd();
    let mut c = Command::new("sh");
    c.args([
        "-c",
        "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=smtp exec \"$0\" daemon",
    ])
    .arg(env.bindir.join("postern"))
    .env("POSTERN_CONFIG", &env.config)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    // SAFETY: dup2 and fcntl are async-signal-safe; they make the
    // listener fd 3 without close-on-exec (dup2 onto itself would keep the
    // flag, so when it already is fd 3 only the flag is cleared).
    unsafe {
        c.pre_exec(move || {
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let _d = Daemon(c.spawn().expect("daemon"));
    drop(listener);
    assert!(
        env.wait_log(10, |l| l.contains("daemon started")),
        "{}",
        env.log()
    );
    assert!(
        env.log()
            .contains(&format!("listening for SMTP on 127.0.0.1:{port}")),
        "{}",
        env.log()
    );
    let (mut cl, greeting) = Client::connect(port);
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(cl.cmd("EHLO act.example").starts_with("250"));
    assert!(cl.cmd("MAIL FROM:<s@example.net>").starts_with("250"));
    assert!(cl.cmd("RCPT TO:<act@example.org>").starts_with("250"));
    assert!(cl.cmd("DATA").starts_with("354"));
    assert!(
        cl.cmd("Subject: activated\r\n\r\nx\r\n.")
            .starts_with("250")
    );
    let got = relay.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "{}", env.log());
}

/// A non-loopback address in a network namespace (root): a client outside
/// `networks` is refused; one inside must STARTTLS, then AUTH (a wrong
/// password gets 535, MAIL before AUTH 530, AUTH before TLS 538), then its
/// message is queued with ESMTPSA and the user in Received.
#[test]
#[ignore = "needs root: creates a network namespace with a non-loopback address"]
fn public_address_requires_networks_tls_and_auth() {
    support::require_root();
    let env = TestEnv::new();
    let certs = env.root.join("certs");
    support::smtp_server::ensure_cert_dir(&certs).expect("certs");
    let users = env.root.join("listen-users");
    std::fs::write(&users, "app:correct horse\n").expect("users");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    }
    let tls = format!(
        "users_file = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        users.display(),
        certs.join("cert.pem").display(),
        certs.join("key.pem").display()
    );
    let client = format!(
        "import smtplib,ssl,sys\n\
         ctx=ssl.create_default_context(cafile='{ca}'); ctx.check_hostname=False\n\
         def fresh():\n\
         \x20   c=smtplib.SMTP('10.77.0.1', 2525, local_hostname='app.example', timeout=20); c.ehlo(); return c\n\
         c=fresh()\n\
         assert 'auth' not in c.esmtp_features, c.esmtp_features\n\
         code,_=c.docmd('AUTH','PLAIN AGFwcABjb3JyZWN0IGhvcnNl'); assert code==538, code\n\
         code,_=c.mail('x@example.net'); assert code==530, code\n\
         c.starttls(context=ctx); c.ehlo()\n\
         assert 'auth' in c.esmtp_features, c.esmtp_features\n\
         code,_=c.mail('x@example.net'); assert code==530, code\n\
         try:\n\
         \x20   c.login('app','wrong'); sys.exit('wrong password accepted')\n\
         except smtplib.SMTPAuthenticationError as e:\n\
         \x20   assert e.smtp_code==535, e\n\
         c.login('app','correct horse')\n\
         c.sendmail('x@example.net',['net@example.org'],b'Subject: public\\r\\n\\r\\nhello\\r\\n'); c.quit()\n\
         print('CLIENT-OK')\n",
        ca = certs.join("ca.pem").display()
    );
    let script_file = env.root.join("client.py");
    std::fs::write(&script_file, client).expect("script");
    let run_in_ns = |networks: &str| -> support::Out {
        env.write_config(&format!(
            "{}\n[listen]\naddresses = [\"10.77.0.1:2525\"]\nnetworks = [\"{networks}\"]\n{tls}",
            support::base_config(&env.root)
        ));
        let sh = format!(
            "set -e; ip link set lo up; ip addr add 10.77.0.1/32 dev lo;\n\
             POSTERN_CONFIG='{cfg}' '{bin}' daemon & d=$!\n\
             for i in $(seq 100); do python3 -c \"import socket; socket.create_connection(('10.77.0.1',2525),1)\" 2>/dev/null && break; sleep 0.1; done\n\
             set +e; python3 '{script}'; rc=$?; kill $d; wait $d; exit $rc",
            cfg = env.config.display(),
            bin = env.bindir.join("postern").display(),
            script = script_file.display()
        );
        let o = Command::new("unshare")
            .args(["-n", "sh", "-c", &sh])
            .output()
            .expect("unshare");
        support::Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    };
    if Command::new("ip").arg("-V").output().is_err() {
        support::unavailable("needs iproute2 (ip)");
    }
    // Outside networks: refused at connect.
    let o = run_in_ns("10.99.0.0/24");
    assert_ne!(o.code, 0, "a client outside networks was served: {o:?}");
    assert!(
        env.log().contains("not in listen.networks"),
        "{o:?} {}",
        env.log()
    );
    // Inside: TLS, AUTH, then the message is queued.
    let o = run_in_ns("10.77.0.0/24");
    assert_eq!(o.code, 0, "{o:?}\n{}", env.log());
    assert!(o.stdout.contains("CLIENT-OK"), "{o:?}");
    let queued: Vec<_> = env
        .files("queue")
        .into_iter()
        .chain(env.files("maildrop"))
        .filter_map(|p| support::Entry::read(&p))
        .collect();
    assert_eq!(queued.len(), 1, "{}", env.log());
    let text = queued[0].text();
    assert!(
        text.starts_with("Received: from app.example ([10.77.0.1]:")
            && text.contains(", authenticated as app)")
            && text.contains("with ESMTPSA id"),
        "{text}"
    );
    assert_eq!(queued[0].rcpts(), vec!["net@example.org"]);
}

/// SIGHUP reloads the file for new sessions too (here: max_recipients).
#[test]
fn sighup_applies_to_new_sessions() {
    let relay = SmtpServer::start(ServerConfig::default());
    let s = setup(relay.port(), "max_recipients = 1\n");
    let d = start(&s.env, s.port);
    let (mut c, _) = Client::connect(s.port);
    assert!(c.cmd("EHLO a.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@example.net>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<1@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<2@example.org>").starts_with("452"));
    s.env.write_config(&config(
        &s.env,
        relay.port(),
        s.port,
        "max_recipients = 3\n",
    ));
    nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGHUP).expect("hup");
    assert!(
        s.env.wait_log(10, |l| l.contains("configuration reloaded")),
        "{}",
        s.env.log()
    );
    let (mut c, _) = Client::connect(s.port);
    assert!(c.cmd("EHLO a.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@example.net>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<1@example.org>").starts_with("250"));
    let r = c.cmd("RCPT TO:<2@example.org>");
    assert!(
        r.starts_with("250"),
        "the new max_recipients is not used: {r}"
    );
}

/// A `socket` path held by something that is not a socket is never
/// replaced: the daemon refuses to start (78) and says why.
#[test]
fn socket_path_that_is_a_file_is_left_alone() {
    let env = TestEnv::new();
    let path = env.root.join("smtp.sock");
    std::fs::write(&path, "precious").expect("file");
    env.write_config(&format!(
        "{}\n[listen]\nsocket = \"{}\"\n",
        support::base_config(&env.root),
        path.display()
    ));
    let o = env.run("postern", &["daemon"], b"");
    assert_eq!(o.code, 78, "{o:?}");
    assert!(o.stderr.contains("is not a socket"), "{o:?}");
    assert_eq!(std::fs::read_to_string(&path).expect("file"), "precious");
}
