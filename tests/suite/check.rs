//! `postern check` against real SMTP servers on 127.0.0.1: a good relay
//! (STARTTLS or implicit TLS with a certificate trusted through ca_file,
//! AUTH), and every way one can be unusable — untrusted, expired or
//! wrongly named certificates, a wrong password, a closed port, a server
//! that never greets, a port that swallows connection attempts.

use crate::support;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use support::smtp_server::{AuthConfig, CertKind, ServerConfig, SmtpServer, TlsMode};
use support::{Out, TestEnv, base_config};

const USER: &str = "apikey";
const SECRET: &str = "SG.s3cret-value";

fn auth() -> Option<AuthConfig> {
    Some(AuthConfig {
        mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
        username: USER.into(),
        secret: SECRET.into(),
    })
}

/// A relay section for `port`.
fn relay(
    env: &TestEnv,
    port: u16,
    tls: &str,
    password: Option<&str>,
    ca: Option<&SmtpServer>,
) -> String {
    let mut s = format!("\n[[relay]]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\n");
    if let Some(pw) = password {
        let file = env.root.join(format!("secret-{port}"));
        std::fs::write(&file, format!("{pw}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        s.push_str(&format!(
            "username = \"{USER}\"\npassword_file = \"{}\"\n",
            file.display()
        ));
    }
    if let Some(server) = ca {
        let ca_file = env.root.join(format!("ca-{port}.pem"));
        server.write_ca_file(&ca_file);
        s.push_str(&format!("ca_file = \"{}\"\n", ca_file.display()));
    }
    s
}

/// Base config with short timeouts (the base config's are 5 s / 10 s).
fn config(env: &TestEnv, relays: &str) -> String {
    let base = base_config(&env.root)
        .replace("connect_timeout = \"5s\"", "connect_timeout = \"2s\"")
        .replace("command_timeout = \"10s\"", "command_timeout = \"2s\"");
    format!("{base}{relays}")
}

fn check(env: &TestEnv) -> Out {
    env.run("postern", &["check"], b"")
}

fn assert_has(o: &Out, want: &str) {
    assert!(
        o.stdout.contains(want),
        "missing {want:?} in:\n{}\nstderr: {}",
        o.stdout,
        o.stderr
    );
}

fn no_secret_and_no_mail(o: &Out, server: &SmtpServer) {
    assert!(!o.stdout.contains(SECRET) && !o.stderr.contains(SECRET));
    for s in server.sessions() {
        for c in &s.commands {
            let up = c.to_ascii_uppercase();
            assert!(
                !up.starts_with("MAIL") && !up.starts_with("RCPT") && !up.starts_with("DATA"),
                "check sent {c:?}"
            );
        }
    }
    assert!(server.messages().is_empty());
}

#[test]
fn starttls_with_a_trusted_certificate_and_auth_is_usable() {
    let server = SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        auth: auth(),
        size_limit: Some(10_485_760),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&config(
        &env,
        &relay(&env, server.port(), "starttls", Some(SECRET), Some(&server)),
    ));
    let o = check(&env);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("TLS 1.3") || o.stdout.contains("TLS 1.2"),
        "{o:?}"
    );
    assert_has(&o, "(STARTTLS)");
    assert_has(&o, "certificate  ok     verified for 127.0.0.1 against");
    assert_has(&o, "and ca_file");
    assert_has(&o, "10.0 MiB (10485760 bytes)");
    assert_has(&o, "auth         ok     logged in as apikey");
    assert_has(&o, "result       USABLE");
    assert_has(&o, "the relay is usable");
    no_secret_and_no_mail(&o, &server);
    // The production path authenticated for real.
    assert!(
        server
            .sessions()
            .iter()
            .any(|s| s.tls && s.auth_user.as_deref() == Some(USER))
    );
}

#[test]
fn implicit_tls_is_usable() {
    let server = SmtpServer::start(ServerConfig {
        tls: TlsMode::Implicit,
        auth: auth(),
        size_limit: Some(2048),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&config(
        &env,
        &relay(&env, server.port(), "tls", Some(SECRET), Some(&server)),
    ));
    let o = check(&env);
    assert_eq!(o.code, 0, "{o:?}");
    assert_has(&o, "(implicit TLS)");
    assert_has(&o, "2.0 KiB (2048 bytes)");
    // max_message_size is not set: submission takes the relay's limit.
    assert_has(&o, "submission now refuses larger messages");
    no_secret_and_no_mail(&o, &server);
}

fn bad_cert(kind: CertKind, want: &str) {
    let server = SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        cert: kind,
        auth: auth(),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&config(
        &env,
        &relay(&env, server.port(), "starttls", Some(SECRET), Some(&server)),
    ));
    let o = check(&env);
    assert_eq!(o.code, 1, "{o:?}");
    assert_has(&o, "certificate  FAILED ");
    assert_has(&o, want);
    assert_has(&o, "result       NOT USABLE");
    assert!(!o.stdout.contains("logged in"), "{o:?}");
    no_secret_and_no_mail(&o, &server);
}

#[test]
fn an_untrusted_certificate_is_an_unknown_issuer() {
    bad_cert(CertKind::Untrusted, "unknown issuer");
}

#[test]
fn an_expired_certificate_is_reported() {
    bad_cert(CertKind::Expired, "expired");
}

#[test]
fn a_certificate_for_another_name_is_reported() {
    bad_cert(
        CertKind::WrongHost,
        "wrong name: the certificate is not valid for 127.0.0.1",
    );
}

#[test]
fn a_wrong_password_fails_auth_with_the_servers_reply() {
    let server = SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        auth: auth(),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&config(
        &env,
        &relay(
            &env,
            server.port(),
            "starttls",
            Some("wrong-password"),
            Some(&server),
        ),
    ));
    let o = check(&env);
    assert_eq!(o.code, 1, "{o:?}");
    assert_has(&o, "certificate  ok");
    assert_has(&o, "auth         FAILED authentication as apikey");
    assert_has(&o, "535");
    assert_has(&o, "check username and password_file");
    assert!(!o.stdout.contains("wrong-password"), "{o:?}");
    no_secret_and_no_mail(&o, &server);
}

#[test]
fn a_closed_port_is_refused() {
    let port = support::closed_port();
    let env = TestEnv::new();
    env.write_config(&config(&env, &relay(&env, port, "starttls", None, None)));
    let o = check(&env);
    assert_eq!(o.code, 1, "{o:?}");
    assert_has(&o, "dns          ok     127.0.0.1");
    assert_has(&o, "connect      FAILED connection refused by 127.0.0.1:");
}

#[test]
fn a_server_that_never_greets_times_out() {
    let server = SmtpServer::start(ServerConfig {
        silent: true,
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&config(
        &env,
        &relay(&env, server.port(), "starttls", None, None),
    ));
    let o = check(&env);
    assert_eq!(o.code, 1, "{o:?}");
    assert_has(&o, "connect      ok");
    assert_has(&o, "banner       FAILED timeout: no greeting within 2s");
    assert_has(&o, "set tls = \"tls\"");
}

/// A listening socket whose accept queue is full: the kernel drops further
/// SYNs, so a connection attempt times out exactly like a filtered port.
fn swallowing_port() -> (std::net::TcpListener, Vec<TcpStream>, u16) {
    use nix::sys::socket::{Backlog, listen};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // Linux lets listen(2) shrink the backlog of a listening socket.
    listen(&l, Backlog::new(0).unwrap()).unwrap();
    let port = l.local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut held = Vec::new();
    // Fill the queue until an attempt is no longer answered (the first one
    // always is: the queue starts empty).
    for i in 0..8 {
        let wait = Duration::from_millis(if i == 0 { 5000 } else { 500 });
        match TcpStream::connect_timeout(&addr, wait) {
            Ok(s) => held.push(s),
            Err(_) if !held.is_empty() => return (l, held, port),
            Err(e) => panic!("cannot connect to the listening port {port}: {e}"),
        }
    }
    panic!("could not fill the accept queue of port {port}");
}

#[test]
fn a_port_that_swallows_connections_looks_blocked() {
    let (_fd, _held, port) = swallowing_port();
    let env = TestEnv::new();
    env.write_config(&config(&env, &relay(&env, port, "starttls", None, None)));
    let o = check(&env);
    assert_eq!(o.code, 1, "{o:?}");
    assert_has(
        &o,
        &format!("outbound port {port} looks blocked, try 587, 465 or 2525"),
    );
}

#[test]
fn one_unusable_relay_of_two_fails_the_check() {
    let good = SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        auth: auth(),
        ..Default::default()
    });
    let port = support::closed_port();
    let env = TestEnv::new();
    let relays = format!(
        "{}{}",
        relay(&env, good.port(), "starttls", Some(SECRET), Some(&good)),
        relay(&env, port, "starttls", None, None)
    );
    env.write_config(&config(&env, &relays));
    let o = check(&env);
    assert_eq!(o.code, 1, "{o:?}");
    assert_has(&o, "relay 1 of 2");
    assert_has(&o, "relay 2 of 2");
    assert_has(&o, "result       USABLE");
    assert_has(&o, "result       NOT USABLE");
    assert_has(&o, "1 of 2 relay(s) NOT usable");
}

#[test]
fn no_relay_configured_fails_the_check() {
    let env = TestEnv::new();
    let o = check(&env);
    assert_eq!(o.code, 1, "{o:?}");
    assert_has(&o, "no relay is configured");
}
