//! Self-tests of the SMTP test server in `tests/suite/support/smtp_server.rs`,
//! driven by a raw `TcpStream` client (and a rustls client for TLS), so the
//! harness the integration tests rely on is itself tested.

use crate::support::smtp_server;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use smtp_server::*;

const T: Duration = Duration::from_secs(5);

enum CStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for CStream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            CStream::Plain(s) => s.read(b),
            CStream::Tls(s) => s.read(b),
        }
    }
}

impl Write for CStream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            CStream::Plain(s) => s.write(b),
            CStream::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            CStream::Plain(s) => s.flush(),
            CStream::Tls(s) => s.flush(),
        }
    }
}

/// A minimal line-oriented SMTP client.
struct Client {
    s: CStream,
    buf: Vec<u8>,
}

fn tls_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Runs a client TLS handshake over `tcp`.
fn tls_connect(
    mut tcp: TcpStream,
    ca_pem: &str,
    name: &str,
) -> io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(tls_config(ca_pem), name).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    Ok(rustls::StreamOwned::new(conn, tcp))
}

fn tcp(srv: &SmtpServer) -> TcpStream {
    let s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

impl Client {
    fn connect(srv: &SmtpServer) -> Client {
        Client {
            s: CStream::Plain(tcp(srv)),
            buf: Vec::new(),
        }
    }

    fn connect_tls(srv: &SmtpServer) -> Client {
        let s = tls_connect(tcp(srv), &srv.ca_pem(), "127.0.0.1").unwrap();
        Client {
            s: CStream::Tls(Box::new(s)),
            buf: Vec::new(),
        }
    }

    fn starttls(self, ca_pem: &str) -> Client {
        let CStream::Plain(tcp) = self.s else {
            panic!("already TLS")
        };
        assert!(self.buf.is_empty());
        let s = tls_connect(tcp, ca_pem, "localhost").unwrap();
        Client {
            s: CStream::Tls(Box::new(s)),
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
        self.s.flush().unwrap();
    }

    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=i).collect();
                assert!(l.ends_with(b"\r\n"), "reply line without CRLF: {l:?}");
                return Some(String::from_utf8(l[..l.len() - 2].to_vec()).unwrap());
            }
            let mut b = [0u8; 4096];
            match self.s.read(&mut b) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
            }
        }
    }

    /// Reads one (possibly multi-line) reply: (code, full text).
    fn reply(&mut self) -> (u16, String) {
        let mut text = Vec::new();
        loop {
            let l = self
                .line()
                .expect("connection closed while waiting for a reply");
            let code: u16 = l[..3].parse().unwrap();
            let last = l.as_bytes().get(3) != Some(&b'-');
            text.push(l);
            if last {
                return (code, text.join("\n"));
            }
        }
    }

    fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    fn expect(&mut self, line: &str, code: u16) -> String {
        let (c, t) = self.cmd(line);
        assert_eq!(c, code, "{line} -> {t}");
        t
    }

    /// True if the server closed the connection (EOF/reset) within `T`.
    fn closed(&mut self) -> bool {
        self.line().is_none()
    }
}

fn b64(s: &str) -> String {
    base64_encode(s.as_bytes())
}

#[test]
fn multi_recipient_transaction_with_per_rcpt_replies() {
    let srv = SmtpServer::start(ServerConfig {
        script: Arc::new(|ev| match ev {
            Event::Rcpt { to, .. } if to.starts_with("bad") => {
                Action::Reply(550, "5.1.1 no such user".into())
            }
            Event::Rcpt { to, .. } if to.starts_with("later") => {
                Action::Reply(450, "4.2.0 try later".into())
            }
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let mut c = Client::connect(&srv);
    let (code, banner) = c.reply();
    assert_eq!((code, banner.as_str()), (220, "220 sink.test ESMTP"));
    c.expect("MAIL FROM:<a@x>", 503); // before EHLO
    let ehlo = c.expect("EHLO client.test", 250);
    for ext in [
        "PIPELINING",
        "SIZE",
        "8BITMIME",
        "SMTPUTF8",
        "DSN",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(ehlo.contains(ext), "{ehlo}");
    }
    assert!(
        !ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    c.expect("RCPT TO:<x@y>", 503);
    c.expect("DATA", 503);
    c.expect("XYZZY", 500);
    c.expect("VRFY someone", 252);
    c.expect("NOOP", 250);
    c.expect("MAIL FROM:<alice@example.org> BODY=8BITMIME SIZE=20", 250);
    c.expect("MAIL FROM:<alice@example.org>", 503); // nested
    c.expect("RCPT TO:<good1@example.net>", 250);
    assert!(
        c.expect("RCPT TO:<bad@example.net>", 550)
            .contains("5.1.1 no such user")
    );
    c.expect("RCPT TO:<later@example.net>", 450);
    c.expect("RCPT TO:<good2@example.net> NOTIFY=SUCCESS,FAILURE", 250);
    c.expect("DATA", 354);
    c.send(b"Subject: hi\r\n\r\nbody\r\n.\r\n");
    assert_eq!(c.reply().0, 250);
    // Second transaction in the same session, null sender; one aborted by RSET.
    c.expect("MAIL FROM:<x@y>", 250);
    c.expect("RSET", 250);
    c.expect("MAIL FROM:<> RET=HDRS ENVID=e1", 250);
    c.expect("RCPT TO:<bad@example.net>", 550);
    c.expect("DATA", 554); // no valid recipients
    c.expect("RCPT TO:<good3@example.net>", 250);
    c.expect("DATA", 354);
    c.send(b"x\r\n.\r\n");
    assert_eq!(c.reply().0, 250);
    c.expect("QUIT", 221);
    assert!(c.closed());

    let m = srv.wait_for(2, T);
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].mail_from, "alice@example.org");
    assert_eq!(m[0].mail_params, "BODY=8BITMIME SIZE=20");
    assert_eq!(m[0].rcpts, ["good1@example.net", "good2@example.net"]);
    assert_eq!(m[0].rcpt_params, ["", "NOTIFY=SUCCESS,FAILURE"]);
    assert_eq!(m[0].data, b"Subject: hi\r\n\r\nbody\r\n");
    assert!(!m[0].tls && m[0].auth_user.is_none());
    assert_eq!(m[1].mail_from, "");
    assert_eq!(m[1].mail_params, "RET=HDRS ENVID=e1");
    assert_eq!(m[1].rcpts, ["good3@example.net"]);
    let s = &srv.sessions()[0];
    assert_eq!(s.ehlo.as_deref(), Some("client.test"));
    assert!(s.quit);
    assert!(s.commands.iter().any(|l| l == "RCPT TO:<bad@example.net>"));
    assert!(s.replies.iter().any(|r| r == "550 5.1.1 no such user"));
    assert_eq!(srv.connection_count(), 1);
}

#[test]
fn pipelined_commands_and_protocol_errors() {
    let srv = SmtpServer::start(ServerConfig {
        size_limit: Some(100),
        eightbitmime: false,
        ..Default::default()
    });
    let mut c = Client::connect(&srv);
    c.reply();
    let ehlo = c.expect("EHLO c", 250);
    assert!(
        ehlo.contains("250-SIZE 100") && !ehlo.contains("8BITMIME"),
        "{ehlo}"
    );
    // Everything up to DATA in one write, then data + QUIT in another.
    c.send(b"MAIL FROM:<a@x> SIZE=50\r\nRCPT TO:<b@x>\r\nRCPT TO:<c@x>\r\nDATA\r\n");
    let codes: Vec<u16> = (0..4).map(|_| c.reply().0).collect();
    assert_eq!(codes, [250, 250, 250, 354]);
    c.send(b"hello\r\n.\r\nMAIL FROM:<a@x> SIZE=500\r\nMAIL FROM:<a@x> BODY=8BITMIME\r\nNOOP\r\n");
    let codes: Vec<u16> = (0..4).map(|_| c.reply().0).collect();
    assert_eq!(codes, [250, 552, 555, 250]);
    // DATA over the limit is rejected at the end.
    c.expect("MAIL FROM:<a@x>", 250);
    c.expect("RCPT TO:<b@x>", 250);
    c.expect("DATA", 354);
    c.send(format!("{}\r\n.\r\n", "x".repeat(200)).as_bytes());
    assert_eq!(c.reply().0, 552);
    // Long lines and non-ASCII addresses without SMTPUTF8.
    c.expect(&format!("NOOP {}", "y".repeat(1200)), 500);
    c.expect("NOOP", 250);
    c.expect("MAIL FROM:<jörg@x>", 553);
    c.expect("MAIL FROM:<jörg@x> SMTPUTF8", 250);
    c.expect("RCPT TO:<まり@x>", 250);
    c.send(b"QUIT\r\n");
    assert_eq!(c.reply().0, 221);
    let m = srv.wait_for(1, T);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].rcpts, ["b@x", "c@x"]);
    assert_eq!(m[0].data, b"hello\r\n");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(srv.messages().len(), 1);
}

#[test]
fn dot_unstuffing_bare_lf_and_chunked_data() {
    let srv = SmtpServer::start(ServerConfig::default());
    let mut c = Client::connect(&srv);
    c.reply();
    c.expect("EHLO c", 250);
    let wire: &[u8] = b"a\r\n..b\r\n.c\r\nbare\nlf\n.x\r\n...\r\nend\r\n.\r\n";
    c.expect("MAIL FROM:<a@x>", 250);
    c.expect("RCPT TO:<b@x>", 250);
    c.expect("DATA", 354);
    for b in wire {
        c.send(std::slice::from_ref(b));
    }
    assert_eq!(c.reply().0, 250);
    // Empty message: "." as the very first line.
    c.expect("MAIL FROM:<a@x>", 250);
    c.expect("RCPT TO:<b@x>", 250);
    c.expect("DATA", 354);
    c.send(b".\r\n");
    assert_eq!(c.reply().0, 250);
    // A message whose first line is empty.
    c.expect("MAIL FROM:<a@x>", 250);
    c.expect("RCPT TO:<b@x>", 250);
    c.expect("DATA", 354);
    c.send(b"\r\n.\r\nQUIT\r\n");
    assert_eq!(c.reply().0, 250);
    assert_eq!(c.reply().0, 221);
    let m = srv.wait_for(3, T);
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].data, b"a\r\n.b\r\nc\r\nbare\nlf\n.x\r\n..\r\nend\r\n");
    assert_eq!(m[0].raw_data, wire);
    assert_eq!(m[1].data, b"");
    assert_eq!(m[1].raw_data, b".\r\n");
    assert_eq!(m[2].data, b"\r\n");
    assert_eq!(unstuff(b"a\r\n..b\r\n"), b"a\r\n.b\r\n");
}

#[test]
fn starttls_then_auth_plain() {
    let srv = SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        auth: Some(AuthConfig {
            mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
            username: "user".into(),
            secret: "pw".into(),
        }),
        require_auth: true,
        ..Default::default()
    });
    let mut c = Client::connect(&srv);
    c.reply();
    let ehlo = c.expect("EHLO c", 250);
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "{ehlo}"
    );
    c.expect(&format!("AUTH PLAIN {}", b64("\0user\0pw")), 538);
    c.expect("MAIL FROM:<a@x>", 530);
    c.expect("STARTTLS", 220);
    let mut c = c.starttls(&srv.ca_pem());
    c.expect("MAIL FROM:<a@x>", 503); // must EHLO again
    let ehlo = c.expect("EHLO c2", 250);
    assert!(
        !ehlo.contains("STARTTLS") && ehlo.contains("AUTH PLAIN LOGIN"),
        "{ehlo}"
    );
    c.expect("STARTTLS", 503);
    c.expect(&format!("AUTH PLAIN {}", b64("\0user\0pw")), 235);
    c.expect("MAIL FROM:<a@x>", 250);
    c.expect("RCPT TO:<b@x>", 250);
    c.expect("DATA", 354);
    c.send(b"secret\r\n.\r\n");
    assert_eq!(c.reply().0, 250);
    c.expect("QUIT", 221);
    let m = srv.wait_for(1, T);
    assert!(m[0].tls);
    assert_eq!(m[0].auth_user.as_deref(), Some("user"));
    let s = &srv.sessions()[0];
    assert!(s.tls && s.quit);
    assert_eq!(s.ehlo.as_deref(), Some("c2"));
}

#[test]
fn implicit_tls() {
    let srv = SmtpServer::start(ServerConfig {
        tls: TlsMode::Implicit,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    srv.write_ca_file(&dir.path().join("ca.pem"));
    let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    let mut c = Client::connect_tls(&srv);
    assert_eq!(c.reply().0, 220);
    let ehlo = c.expect("EHLO c", 250);
    assert!(!ehlo.contains("STARTTLS"));
    c.expect("STARTTLS", 502);
    c.expect("MAIL FROM:<a@x>", 250);
    c.expect("RCPT TO:<b@x>", 250);
    c.expect("DATA", 354);
    c.send(b"hi\r\n.\r\nQUIT\r\n");
    assert_eq!(c.reply().0, 250);
    assert_eq!(c.reply().0, 221);
    let m = srv.wait_for(1, T);
    assert!(m[0].tls);
    assert_eq!(m[0].data, b"hi\r\n");
}

#[test]
fn bad_certificates_are_rejected_by_a_verifying_client() {
    let cases = [
        (CertKind::Untrusted, "UnknownIssuer"),
        (CertKind::Expired, "Expired"),
        (CertKind::WrongHost, "NotValidForName"),
    ];
    for (kind, why) in cases {
        let srv = SmtpServer::start(ServerConfig {
            tls: TlsMode::Implicit,
            cert: kind,
            ..Default::default()
        });
        let err = tls_connect(tcp(&srv), &srv.ca_pem(), "localhost").err();
        let err = format!("{err:?}");
        assert!(err.contains(why), "{kind:?}: {err}");
        // The server logs the client's alert.
        let deadline = Instant::now() + T;
        while srv.sessions()[0].tls_error.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let s = &srv.sessions()[0];
        assert!(s.tls_error.is_some() && !s.tls, "{kind:?}: {s:?}");
    }
}

#[test]
fn auth_mechanisms() {
    let srv = SmtpServer::start(ServerConfig {
        auth: Some(AuthConfig {
            mechanisms: vec!["PLAIN".into(), "LOGIN".into(), "XOAUTH2".into()],
            username: "user@x".into(),
            secret: "s3cret".into(),
        }),
        require_tls_for_auth: false,
        ..Default::default()
    });
    let session = |f: &dyn Fn(&mut Client)| {
        let mut c = Client::connect(&srv);
        c.reply();
        let ehlo = c.expect("EHLO c", 250);
        assert!(ehlo.contains("AUTH PLAIN LOGIN XOAUTH2"), "{ehlo}");
        f(&mut c);
        c.expect("QUIT", 221);
    };
    // PLAIN with an initial response, wrong then right.
    session(&|c| {
        c.expect(&format!("AUTH PLAIN {}", b64("\0user@x\0wrong")), 535);
        c.expect("AUTH CRAM-MD5", 504);
        c.expect(&format!("AUTH PLAIN {}", b64("\0user@x\0s3cret")), 235);
        c.expect("AUTH PLAIN", 503); // already authenticated
    });
    // PLAIN via a continuation.
    session(&|c| {
        assert_eq!(c.cmd("AUTH PLAIN"), (334, "334 ".to_string()));
        c.expect(&b64("\0user@x\0s3cret"), 235);
    });
    // LOGIN with its two prompts; then a cancelled exchange.
    session(&|c| {
        assert_eq!(c.cmd("AUTH LOGIN").1, "334 VXNlcm5hbWU6");
        assert_eq!(c.cmd(&b64("user@x")).1, "334 UGFzc3dvcmQ6");
        c.expect(&b64("s3cret"), 235);
    });
    session(&|c| {
        c.expect("AUTH LOGIN", 334);
        c.expect("*", 501);
    });
    // XOAUTH2.
    session(&|c| {
        let tok = b64("user=user@x\x01auth=Bearer s3cret\x01\x01");
        c.expect(&format!("AUTH XOAUTH2 {tok}"), 235);
    });
    let s = srv.sessions();
    assert_eq!(s.len(), 5);
    assert_eq!(s[0].auth_user.as_deref(), Some("user@x"));
    assert!(s[1].commands.contains(&b64("\0user@x\0s3cret")));
    assert!(s[2].commands.contains(&b64("s3cret")));
    assert_eq!(s[3].auth_user, None);
    assert_eq!(s[4].auth_user.as_deref(), Some("user@x"));
}

#[test]
fn client_dropped_mid_data_leaves_no_message() {
    let srv = SmtpServer::start(ServerConfig::default());
    let mut c = Client::connect(&srv);
    c.reply();
    c.expect("EHLO c", 250);
    c.expect("MAIL FROM:<a@x>", 250);
    c.expect("RCPT TO:<b@x>", 250);
    c.expect("DATA", 354);
    c.send(b"Subject: partial\r\n\r\nhalf a mess");
    drop(c);
    let deadline = Instant::now() + T;
    while !srv.sessions()[0].closed && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(srv.sessions()[0].closed);
    assert!(srv.messages().is_empty());
    // The server still works afterwards.
    let mut c = Client::connect(&srv);
    c.reply();
    c.expect("HELO c", 250);
    c.expect("MAIL FROM:<a@x>", 250);
    c.expect("RCPT TO:<b@x>", 250);
    c.expect("DATA", 354);
    c.send(b"ok\r\n.\r\n");
    assert_eq!(c.reply().0, 250);
    assert_eq!(srv.wait_for(1, T).len(), 1);
}

#[test]
fn scripted_faults() {
    let srv = SmtpServer::start(ServerConfig {
        script: Arc::new(|ev| match ev {
            Event::DataStart { session: 0 } => Action::DropAfterBytes(10),
            Event::Mail { from: "drop@x", .. } => Action::Drop,
            Event::Mail { from: "hang@x", .. } => Action::Hang,
            Event::Rcpt { .. } => Action::Delay(
                Duration::from_millis(100),
                Box::new(Action::Reply(251, "2.1.5 delayed ok".into())),
            ),
            Event::DataEnd { data, .. } if data.starts_with(b"reject") => {
                Action::Reply(554, "5.7.1 spam".into())
            }
            _ => Action::Default,
        }),
        ..Default::default()
    });
    // Session 0: dropped after 10 DATA bytes.
    let mut c = Client::connect(&srv);
    c.reply();
    c.expect("EHLO c", 250);
    c.expect("MAIL FROM:<a@x>", 250);
    let t0 = Instant::now();
    c.expect("RCPT TO:<b@x>", 251);
    assert!(t0.elapsed() >= Duration::from_millis(100));
    c.expect("DATA", 354);
    c.send(b"0123456789abcdef\r\n");
    assert!(c.closed());
    // Session 1: rejected at end of data, then dropped at MAIL.
    let mut c = Client::connect(&srv);
    c.reply();
    c.expect("EHLO c", 250);
    c.expect("MAIL FROM:<a@x>", 250);
    c.expect("RCPT TO:<b@x>", 251);
    c.expect("DATA", 354);
    c.send(b"reject me\r\n.\r\n");
    assert_eq!(c.reply().0, 554);
    c.send(b"MAIL FROM:<drop@x>\r\n");
    assert!(c.closed());
    // Session 2: hangs at MAIL until the server stops.
    let mut c = Client::connect(&srv);
    c.reply();
    c.expect("EHLO c", 250);
    c.send(b"MAIL FROM:<hang@x>\r\n");
    let t0 = Instant::now();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        assert!(srv.messages().is_empty());
        assert_eq!(srv.connection_count(), 3);
        srv.stop();
    });
    assert!(c.closed());
    assert!(t0.elapsed() >= Duration::from_millis(250));
    stopper.join().unwrap();
}

#[test]
fn silent_server_and_banner_script() {
    let srv = SmtpServer::start(ServerConfig {
        silent: true,
        ..Default::default()
    });
    let mut s = tcp(&srv);
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 16];
    let e = s.read(&mut b).unwrap_err();
    assert!(matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ));
    assert_eq!(srv.wait_for_connections(1, T), 1);
    let t0 = Instant::now();
    srv.stop();
    assert!(t0.elapsed() < Duration::from_secs(2));

    let srv = SmtpServer::start(ServerConfig {
        banner_delay: Some(Duration::from_millis(100)),
        script: Arc::new(|ev| match ev {
            Event::Connect { .. } => Action::Reply(554, "5.3.2 go away".into()),
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let mut c = Client::connect(&srv);
    let t0 = Instant::now();
    assert_eq!(c.reply(), (554, "554 5.3.2 go away".into()));
    assert!(t0.elapsed() >= Duration::from_millis(90));
    c.expect("EHLO c", 503);
    c.expect("QUIT", 221);
}

#[test]
fn restart_on_the_same_port() {
    let srv = SmtpServer::start(ServerConfig::default());
    let addr = srv.addr().to_string();
    let mut c = Client::connect(&srv);
    c.reply();
    srv.stop();
    assert!(c.closed());
    // The other tests of the binary run meanwhile: while the port is free
    // one of their sockets may hold it for a moment, so retry a while.
    let port = addr.parse::<std::net::SocketAddr>().unwrap().port();
    let srv = crate::support::start_on_port(ServerConfig::default(), port);
    assert_eq!(srv.addr().to_string(), addr);
    let mut c = Client::connect(&srv);
    assert_eq!(c.reply().0, 220);
    c.expect("QUIT", 221);
}
