//! STARTTLS response injection (RFC 3207 §6, issue 11 item 1): a relay —
//! or anyone on the path — that sends more bytes right after the `220` to
//! `STARTTLS`, in the same plaintext segment, must not have them read as
//! replies inside TLS. Delivery ends the session as a TLS failure (the
//! message is deferred, never bounced, no DSN), logs it as an attack on the
//! connection with the bytes escaped, and `postern check` reports it as the
//! reason the relay is not usable.

use crate::support;

use postern::spool::state::{RcptStatus, State};
use support::smtp_server::{AuthConfig, ServerConfig, SmtpServer, TlsMode};
use support::{TestEnv, base_config};

/// Forged replies for the delivery client's next reads inside TLS: on the
/// old client, the EHLO after TLS, then the session's second EHLO, then
/// MAIL FROM, which bounced every recipient with the injected text.
const FORGED_BOUNCE: &[u8] = b"250 forged\r\n250 forged\r\n550 5.1.1 INJECTED\r\n";
/// A forged EHLO offer (a tiny SIZE that bounced everything, and an AUTH
/// list), with terminal escapes that must reach the log escaped.
const FORGED_EHLO: &[u8] =
    b"250 forged\r\n250-forged\r\n250-SIZE 10\r\n250 AUTH PLAIN \x1b]2;pwned\x07\r\n";

fn injecting_server(inject: &[u8]) -> SmtpServer {
    SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        starttls_inject: Some(inject.to_vec()),
        auth: Some(AuthConfig {
            mechanisms: vec!["PLAIN".into()],
            username: "apikey".into(),
            secret: "s3cret".into(),
        }),
        ..Default::default()
    })
}

fn env_for(server: &SmtpServer) -> TestEnv {
    let env = TestEnv::with_config_fn(|root| {
        base_config(root)
            .replace("connect_timeout = \"5s\"", "connect_timeout = \"2s\"")
            .replace("command_timeout = \"10s\"", "command_timeout = \"2s\"")
    });
    let ca = env.root.join("ca.pem");
    server.write_ca_file(&ca);
    let cfg = std::fs::read_to_string(&env.config).unwrap();
    env.write_config(&format!(
        "{cfg}[[relay]]\nhost = \"localhost\"\nport = {}\ntls = \"starttls\"\nca_file = \"{}\"\n",
        server.port(),
        ca.display()
    ));
    env
}

fn state_of(env: &TestEnv) -> State {
    let files = env.files("state");
    assert_eq!(files.len(), 1, "expected one state file: {files:?}");
    State::decode(&std::fs::read_to_string(&files[0]).unwrap()).expect("state decodes")
}

fn assert_deferred_as_injection(inject: &[u8], shown: &str) {
    let server = injecting_server(inject);
    let env = env_for(&server);
    assert_eq!(
        env.sendmail(
            &["-f", "sender@example.com", "a@x.test", "b@x.test"],
            b"Subject: x\n\nx\n"
        )
        .code,
        0
    );
    assert_eq!(env.queue_run().code, 0);
    let log = env.log();
    assert!(
        log.contains("possible STARTTLS response injection"),
        "the log names the injection: {log}"
    );
    assert!(
        log.contains("possible attack on the connection"),
        "logged as an attack: {log}"
    );
    assert!(log.contains(shown), "the bytes, escaped: {log}");
    assert!(
        !log.contains('\x1b') && !log.contains('\x07') && !log.contains("INJECTED\r"),
        "no raw injected byte in the log: {log:?}"
    );
    assert!(log.contains("status=deferred"), "{log}");
    assert!(!log.contains("status=bounced"), "never bounced: {log}");
    // One queue entry: the message, and no DSN queued for it.
    assert_eq!(env.files("queue").len(), 1, "{log}");
    let st = state_of(&env);
    for r in &st.rcpts {
        assert_eq!(r.status, RcptStatus::Deferred, "{st:?}");
    }
    // Nothing after STARTTLS reached the server: no MAIL, no AUTH.
    for s in server.sessions() {
        for c in &s.commands {
            let up = c.to_ascii_uppercase();
            assert!(
                !up.starts_with("MAIL") && !up.starts_with("AUTH"),
                "sent {c:?} after an injected STARTTLS reply"
            );
        }
    }
    assert!(server.messages().is_empty());
}

#[test]
fn injected_replies_after_starttls_defer_and_never_bounce() {
    assert_deferred_as_injection(
        FORGED_BOUNCE,
        r#"44 bytes: "250 forged\r\n250 forged\r\n550 5.1.1 INJECTED\r\n""#,
    );
}

#[test]
fn a_forged_ehlo_offer_after_starttls_is_refused_too() {
    assert_deferred_as_injection(FORGED_EHLO, r"250 AUTH PLAIN \x1b]2;pwned\x07\r\n");
}

#[test]
fn the_same_relay_without_injection_delivers() {
    // Control: the only difference is the injected bytes.
    let server = SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        ..Default::default()
    });
    let env = env_for(&server);
    assert_eq!(env.sendmail(&["a@x.test"], b"Subject: x\n\nx\n").code, 0);
    assert_eq!(env.queue_run().code, 0);
    let got = server.messages();
    assert_eq!(got.len(), 1, "{}", env.log());
    assert!(got[0].tls);
    assert!(env.log().contains("status=sent"));
}

#[test]
fn check_reports_the_injection_and_fails() {
    let server = injecting_server(FORGED_BOUNCE);
    let env = env_for(&server);
    let o = env.run("postern", &["check"], b"");
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.contains("possible STARTTLS response injection")
            && o.stdout.contains("550 5.1.1 INJECTED\\r\\n")
            && o.stdout.contains("NOT USABLE"),
        "{}",
        o.stdout
    );
    for s in server.sessions() {
        assert!(
            !s.commands
                .iter()
                .any(|c| c.to_ascii_uppercase().starts_with("AUTH")),
            "{s:?}"
        );
    }
}

/// Bytes that arrive after the `220` (not in its segment) are read by the
/// TLS layer as records and fail the handshake: a TLS failure, deferred.
#[test]
fn late_injected_bytes_fail_the_handshake_and_defer() {
    let server = SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        starttls_inject_late: Some(FORGED_BOUNCE.to_vec()),
        ..Default::default()
    });
    let env = env_for(&server);
    assert_eq!(
        env.sendmail(
            &["-f", "sender@example.com", "a@x.test"],
            b"Subject: x\n\nx\n"
        )
        .code,
        0
    );
    assert_eq!(env.queue_run().code, 0);
    let log = env.log();
    assert!(
        log.contains("STARTTLS with localhost") && log.contains("not TLS after the STARTTLS reply"),
        "{log}"
    );
    assert!(log.contains("status=deferred"), "{log}");
    assert!(!log.contains("status=bounced"), "{log}");
    assert_eq!(env.files("queue").len(), 1, "no DSN: {log}");
    assert_eq!(state_of(&env).rcpts[0].status, RcptStatus::Deferred);
    assert!(server.messages().is_empty());

    let o = env.run("postern", &["check"], b"");
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.contains("NOT USABLE")
            && o.stdout.contains("possible STARTTLS response injection"),
        "{}",
        o.stdout
    );
}
