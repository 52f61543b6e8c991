//! Delivery through the smart host: per-recipient outcomes, failures after
//! DATA, broken connections, silent servers, TLS and AUTH failures, relay
//! failover, the retry schedule (test clock), bounces parsed back as
//! RFC 3464, session reuse, DSN/SIZE/8BITMIME/SMTPUTF8 parameters, and the
//! daemon's wake-up, reload and stop.

use crate::support;

use std::sync::Arc;
use std::time::Duration;
use support::smtp_server::{
    Action, AuthConfig, CertKind, Event, ServerConfig, SmtpServer, TlsMode,
};
use support::{TestEnv, base_config};

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn script(
    f: impl Fn(&Event) -> Action + Send + Sync + 'static,
) -> Arc<dyn Fn(&Event) -> Action + Send + Sync> {
    Arc::new(f)
}

fn state_of(env: &TestEnv) -> postern::spool::state::State {
    let files = env.files("state");
    assert_eq!(files.len(), 1, "expected one state file: {files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    postern::spool::state::State::decode(&text).expect("state decodes")
}

fn rcpt_status(st: &postern::spool::state::State, addr: &str) -> String {
    let r = st
        .rcpts
        .iter()
        .find(|r| r.address == addr)
        .unwrap_or_else(|| panic!("{addr} not in state {st:?}"));
    format!("{:?}", r.status)
}

#[test]
fn per_recipient_outcomes_deliver_the_rest() {
    let t0 = now();
    let server = SmtpServer::start(ServerConfig {
        script: script(|e| match e {
            Event::Rcpt { to, .. } if to.starts_with("defer") => {
                Action::Reply(450, "4.2.1 mailbox busy".into())
            }
            Event::Rcpt { to, .. } if to.starts_with("bad") => {
                Action::Reply(550, "5.1.1 no such user".into())
            }
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    let o = env.sendmail(
        &[
            "-f",
            "sender@example.com",
            "ok1@x.test",
            "bad@x.test",
            "defer@x.test",
            "ok2@x.test",
        ],
        b"Subject: partial\n\nbody\n",
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.queue_run_at(t0).code, 0);
    // The message went to ok1 and ok2 only; the bounce for bad@ went to the sender.
    let msgs = server.wait_for(2, Duration::from_secs(10));
    let main: Vec<_> = msgs
        .iter()
        .filter(|m| m.mail_from == "sender@example.com")
        .collect();
    assert_eq!(main.len(), 1);
    assert_eq!(main[0].rcpts, vec!["ok1@x.test", "ok2@x.test"]);
    let bounce: Vec<_> = msgs.iter().filter(|m| m.mail_from.is_empty()).collect();
    assert_eq!(bounce.len(), 1, "one DSN for the bad recipient");
    assert_eq!(bounce[0].rcpts, vec!["sender@example.com"]);
    let dsn = String::from_utf8_lossy(&bounce[0].data);
    assert!(dsn.contains("Final-Recipient: rfc822;bad@x.test"), "{dsn}");
    assert!(
        !dsn.contains("defer@x.test"),
        "a deferred recipient is not reported as failed"
    );
    // defer@ stays queued with its reason.
    let st = state_of(&env);
    assert_eq!(rcpt_status(&st, "ok1@x.test"), "Sent");
    assert_eq!(rcpt_status(&st, "bad@x.test"), "Bounced");
    assert_eq!(rcpt_status(&st, "defer@x.test"), "Deferred");
    assert!(
        st.rcpts
            .iter()
            .any(|r| r.reply.contains("450 4.2.1 mailbox busy"))
    );
    let log = env.log();
    assert!(
        log.contains("to=<bad@x.test>") && log.contains("status=bounced (host 127.0.0.1"),
        "{log}"
    );
    assert!(log.contains("(in reply to RCPT TO command)"), "{log}");
    // Next attempt (after the backoff): only defer@ is tried again, and not
    // the recipients already done.
    let o = env.queue_run_at(t0 + 30.0);
    assert_eq!(o.code, 0);
    assert_eq!(server.messages().len(), 2, "not due yet: nothing sent");
    env.queue_run_at(t0 + 80.0);
    let st = state_of(&env);
    assert_eq!(st.tries, 2);
    let sessions = server.sessions();
    let last = sessions.last().unwrap();
    let rcpts: Vec<_> = last
        .commands
        .iter()
        .filter(|c| c.starts_with("RCPT"))
        .collect();
    assert_eq!(
        rcpts.len(),
        1,
        "only the deferred recipient is retried: {rcpts:?}"
    );
    assert!(rcpts[0].contains("defer@x.test"));
}

#[test]
fn reply_after_data_applies_to_every_recipient() {
    let t0 = now();
    for (code, expect_bounce) in [(554u16, true), (451u16, false)] {
        let server = SmtpServer::start(ServerConfig {
            script: script(move |e| match e {
                Event::DataEnd { from, .. } if !from.is_empty() => {
                    Action::Reply(code, format!("{}.7.1 content rejected", code / 100))
                }
                _ => Action::Default,
            }),
            ..Default::default()
        });
        let env = TestEnv::new();
        env.write_config(&env.relay_config(server.port(), ""));
        assert_eq!(
            env.sendmail(
                &["-f", "s@example.com", "a@x.test", "b@x.test"],
                b"Subject: x\n\nx\n"
            )
            .code,
            0
        );
        env.queue_run_at(t0);
        let log = env.log();
        let status = if expect_bounce { "bounced" } else { "deferred" };
        assert_eq!(log.matches(&format!("status={status}")).count(), 2, "{log}");
        assert!(log.contains("(in reply to end of DATA command)"), "{log}");
        if expect_bounce {
            let b = server.wait_for(1, Duration::from_secs(10));
            assert_eq!(b.len(), 1, "one DSN covering both recipients");
            let dsn = String::from_utf8_lossy(&b[0].data);
            assert!(dsn.contains("rfc822;a@x.test") && dsn.contains("rfc822;b@x.test"));
            assert!(env.files("queue").is_empty());
        } else {
            assert_eq!(env.files("queue").len(), 1);
        }
    }
}

#[test]
fn connection_dropped_mid_data_defers_then_delivers_once() {
    let t0 = now();
    let first = SmtpServer::start(ServerConfig {
        script: script(|e| match e {
            Event::DataStart { .. } => Action::DropAfterBytes(100),
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&env.relay_config(first.port(), ""));
    let body = "line of text\n".repeat(500);
    assert_eq!(
        env.sendmail(&["a@x.test"], format!("Subject: big\n\n{body}").as_bytes())
            .code,
        0
    );
    env.queue_run_at(t0);
    assert!(
        first.messages().is_empty(),
        "a dropped transaction is not a delivery"
    );
    assert!(env.log().contains("status=deferred"), "{}", env.log());
    let port = first.port();
    first.stop();
    let second = support::start_on_port(ServerConfig::default(), port);
    env.queue_run_at(t0 + 3600.0);
    let got = second.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0].data).ends_with(&body.replace('\n', "\r\n")));
    assert!(env.files("queue").is_empty());
}

#[test]
fn server_that_never_answers_times_out_and_defers() {
    let t0 = now();
    let server = SmtpServer::start(ServerConfig {
        silent: true,
        ..Default::default()
    });
    let env = TestEnv::with_config_fn(|root| {
        base_config(root).replace(
            "connect_timeout = \"5s\"\ncommand_timeout = \"10s\"",
            "connect_timeout = \"1s\"\ncommand_timeout = \"1s\"",
        )
    });
    let mut cfg = std::fs::read_to_string(&env.config).unwrap();
    cfg.push_str(&format!(
        "[[relay]]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        server.port()
    ));
    env.write_config(&cfg);
    assert_eq!(env.sendmail(&["a@x.test"], b"Subject: x\n\nx\n").code, 0);
    let o = env.queue_run_at(t0);
    assert_eq!(o.code, 0);
    let log = env.log();
    assert!(
        log.contains("status=deferred") && log.contains("timed out"),
        "{log}"
    );
    assert_eq!(env.files("queue").len(), 1);
}

fn tls_relay(
    port: u16,
    ca: &std::path::Path,
    user: Option<(&str, &std::path::Path)>,
    tls: &str,
) -> String {
    let mut s = format!(
        "[[relay]]\nhost = \"localhost\"\nport = {port}\ntls = \"{tls}\"\nca_file = \"{}\"\n",
        ca.display()
    );
    if let Some((u, p)) = user {
        s.push_str(&format!(
            "username = \"{u}\"\npassword_file = \"{}\"\n",
            p.display()
        ));
    }
    s
}

fn secret_file(env: &TestEnv, secret: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = env.root.join("relay.secret");
    std::fs::write(&p, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    p
}

fn auth(user: &str, secret: &str) -> Option<AuthConfig> {
    Some(AuthConfig {
        mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
        username: user.into(),
        secret: secret.into(),
    })
}

#[test]
fn starttls_and_auth_then_failover_on_bad_cert_and_bad_password() {
    let t0 = now();
    let untrusted = SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        cert: CertKind::Untrusted,
        ..Default::default()
    });
    let wrongpw = SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        auth: auth("apikey", "other"),
        ..Default::default()
    });
    let good = SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        auth: auth("apikey", "s3cret"),
        require_auth: true,
        ..Default::default()
    });
    let env = TestEnv::new();
    let ca = env.root.join("ca.pem");
    good.write_ca_file(&ca);
    let pw = secret_file(&env, "s3cret");
    let cfg = format!(
        "{}{}{}{}",
        base_config(&env.root),
        tls_relay(untrusted.port(), &ca, Some(("apikey", &pw)), "starttls"),
        tls_relay(wrongpw.port(), &ca, Some(("apikey", &pw)), "starttls"),
        tls_relay(good.port(), &ca, Some(("apikey", &pw)), "starttls"),
    );
    env.write_config(&cfg);
    assert_eq!(env.sendmail(&["a@x.test"], b"Subject: tls\n\nx\n").code, 0);
    assert_eq!(env.queue_run_at(t0).code, 0);
    let got = good.wait_for(1, Duration::from_secs(10));
    assert_eq!(
        got.len(),
        1,
        "delivered through the third relay; log: {}",
        env.log()
    );
    assert!(got[0].tls);
    assert_eq!(got[0].auth_user.as_deref(), Some("apikey"));
    assert!(untrusted.messages().is_empty() && wrongpw.messages().is_empty());
    let log = env.log();
    assert!(
        log.to_lowercase().contains("certificate"),
        "the TLS failure is explained: {log}"
    );
    assert!(
        log.contains("authentication as apikey") && log.contains("535"),
        "{log}"
    );
    assert!(
        !log.contains("s3cret"),
        "the secret never appears in the log"
    );
}

#[test]
fn implicit_tls_with_auth() {
    let t0 = now();
    let server = SmtpServer::start(ServerConfig {
        tls: TlsMode::Implicit,
        auth: auth("u", "pw"),
        ..Default::default()
    });
    let env = TestEnv::new();
    let ca = env.root.join("ca.pem");
    server.write_ca_file(&ca);
    let pw = secret_file(&env, "pw");
    env.write_config(&format!(
        "{}{}",
        base_config(&env.root),
        tls_relay(server.port(), &ca, Some(("u", &pw)), "tls")
    ));
    assert_eq!(env.sendmail(&["a@x.test"], b"Subject: 465\n\nx\n").code, 0);
    env.queue_run_at(t0);
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{}", env.log());
    assert!(got[0].tls);
    assert_eq!(got[0].auth_user.as_deref(), Some("u"));
}

#[test]
fn starttls_is_required_and_credentials_never_go_in_clear() {
    let t0 = now();
    // A server without STARTTLS: tls = "starttls" must not fall back to plain.
    let plain = SmtpServer::start(ServerConfig {
        auth: auth("u", "pw"),
        require_tls_for_auth: false,
        ..Default::default()
    });
    let env = TestEnv::new();
    let ca = env.root.join("ca.pem");
    plain.write_ca_file(&ca);
    let pw = secret_file(&env, "pw");
    env.write_config(&format!(
        "{}{}",
        base_config(&env.root),
        tls_relay(plain.port(), &ca, Some(("u", &pw)), "starttls")
    ));
    assert_eq!(env.sendmail(&["a@x.test"], b"Subject: x\n\nx\n").code, 0);
    env.queue_run_at(t0);
    assert!(plain.messages().is_empty());
    assert!(
        env.log().contains("does not offer STARTTLS"),
        "{}",
        env.log()
    );
    // tls = "none" to loopback with a username: AUTH is refused locally.
    env.write_config(&format!(
        "{}[[relay]]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nusername = \"u\"\npassword_file = \"{}\"\n",
        base_config(&env.root),
        plain.port(),
        pw.display()
    ));
    env.queue_run_at(t0 + 3600.0);
    assert!(plain.messages().is_empty());
    assert!(
        env.log().contains("refusing to send credentials"),
        "{}",
        env.log()
    );
    for s in plain.sessions() {
        assert!(
            !s.commands.iter().any(|c| c.starts_with("AUTH")),
            "no AUTH in clear: {:?}",
            s.commands
        );
    }
}

#[test]
fn unreachable_relay_fails_over_to_the_next() {
    let t0 = now();
    let good = SmtpServer::start(ServerConfig::default());
    let closed = support::closed_port();
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}[[relay]]\nhost = \"127.0.0.1\"\nport = {closed}\ntls = \"none\"\n[[relay]]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        base_config(&env.root),
        good.port()
    ));
    assert_eq!(env.sendmail(&["a@x.test"], b"Subject: x\n\nx\n").code, 0);
    env.queue_run_at(t0);
    assert_eq!(good.wait_for(1, Duration::from_secs(10)).len(), 1);
    assert!(env.log().contains("connection refused"), "{}", env.log());
}

#[test]
fn retry_schedule_follows_backoff_and_lifetime_bounces() {
    let t0 = now();
    let closed = support::closed_port();
    let env = TestEnv::new();
    env.write_config(&env.relay_config(closed, ""));
    let o = env.run_at(
        t0,
        "sendmail",
        &["-f", "me@example.com", "a@x.test"],
        b"Subject: retry\n\nx\n",
    );
    assert_eq!(o.code, 0);
    let mut now = t0;
    env.queue_run_at(now);
    let mut expected = 60.0;
    for attempt in 1..=7u32 {
        let st = state_of(&env);
        assert_eq!(st.tries, attempt);
        let wait = st.next - now;
        assert!(
            wait >= expected * 0.9 - 1.0 && wait <= expected * 1.1 + 1.0,
            "attempt {attempt}: waited {wait}, expected ~{expected}"
        );
        // Just before it is due: nothing happens.
        env.queue_run_at(st.next - 20.0);
        assert_eq!(state_of(&env).tries, attempt, "not retried early");
        now = st.next + 1.0;
        env.queue_run_at(now);
        expected = (expected * 2.0).min(3600.0);
    }
    // Past max_lifetime (5 days): the recipient bounces; the DSN waits for a relay.
    let late = t0 + 5.0 * 86400.0 + 10.0;
    env.queue_run_at(late);
    let log = env.log();
    assert!(log.contains("delivery time expired"), "{log}");
    assert!(log.contains("sender non-delivery notification"), "{log}");
    let server = SmtpServer::start(ServerConfig::default());
    env.write_config(&env.relay_config(server.port(), ""));
    // The bounce was tried once right away (relay still down); it is due again after its backoff.
    env.queue_run_at(late + 120.0);
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, "", "a bounce has the null sender");
    assert_eq!(got[0].rcpts, vec!["me@example.com"]);
    assert!(env.files("queue").is_empty(), "queue emptied");
}

#[test]
fn bounce_parses_as_rfc3464() {
    let t0 = now();
    use mail_parser::{MessageParser, MimeHeaders};
    let server = SmtpServer::start(ServerConfig {
        script: script(|e| match e {
            Event::Rcpt { to, .. } if to.starts_with("nosuch") => Action::Reply(
                550,
                "5.1.1 <nosuch@x.test>: Recipient address rejected".into(),
            ),
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    assert_eq!(
        env.sendmail(
            &["-f", "alice@example.com", "-V", "env-42", "nosuch@x.test"],
            b"Subject: Quarterly report\nMessage-ID: <orig-1@example.com>\n\nsecret body\n"
        )
        .code,
        0
    );
    env.queue_run_at(t0);
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    let m = MessageParser::new()
        .parse(&got[0].data)
        .expect("DSN parses");
    let ct = m.content_type().expect("content type");
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    let raw = String::from_utf8_lossy(&got[0].data).replace("\r\n", "\n");
    let ds_start = raw
        .find("Content-Type: message/delivery-status")
        .expect("delivery-status part");
    let ds = &raw[ds_start..];
    assert!(ds.contains("Reporting-MTA: dns; web1.example.com"), "{ds}");
    assert!(ds.contains("Original-Envelope-Id: env-42"), "{ds}");
    assert!(ds.contains("Final-Recipient: rfc822;nosuch@x.test"), "{ds}");
    assert!(ds.contains("Action: failed"), "{ds}");
    assert!(ds.contains("Status: 5.1.1"), "{ds}");
    assert!(ds.contains("Diagnostic-Code: smtp; 550 5.1.1"), "{ds}");
    assert!(
        raw.contains("text/rfc822-headers"),
        "headers only by default"
    );
    assert!(raw.contains("Subject: Quarterly report") && raw.contains("<orig-1@example.com>"));
    assert!(
        !raw.contains("secret body"),
        "RET=HDRS: the body is not returned"
    );
    assert!(raw.contains("Auto-Submitted: auto-replied"));
}

#[test]
fn one_session_is_reused_with_rset_and_sessions_run_in_parallel() {
    let t0 = now();
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    let cfg = env
        .relay_config(server.port(), "")
        .replace("[queue]\n", "[queue]\nparallel = 1\n");
    env.write_config(&cfg);
    for i in 0..5 {
        assert_eq!(
            env.sendmail(
                &[&format!("r{i}@x.test")],
                format!("Subject: {i}\n\n{i}\n").as_bytes()
            )
            .code,
            0
        );
    }
    env.queue_run_at(t0);
    assert_eq!(server.wait_for(5, Duration::from_secs(10)).len(), 5);
    assert_eq!(
        server.connection_count(),
        1,
        "one session for five messages"
    );
    let cmds = &server.sessions()[0].commands;
    // Each message's final reply ends its transaction: no RSET between.
    assert_eq!(
        cmds.iter().filter(|c| c.as_str() == "RSET").count(),
        0,
        "{cmds:?}"
    );
    assert_eq!(
        cmds.iter().filter(|c| c.starts_with("MAIL FROM:")).count(),
        5,
        "{cmds:?}"
    );
    assert!(server.sessions()[0].quit, "the session ends with QUIT");

    let server2 = SmtpServer::start(ServerConfig::default());
    let env2 = TestEnv::new();
    env2.write_config(
        &env2
            .relay_config(server2.port(), "")
            .replace("[queue]\n", "[queue]\nparallel = 3\n"),
    );
    for i in 0..30 {
        env2.sendmail(
            &[&format!("r{i}@x.test")],
            format!("Subject: {i}\n\n{i}\n").as_bytes(),
        );
    }
    env2.queue_run_at(t0);
    assert_eq!(server2.wait_for(30, Duration::from_secs(20)).len(), 30);
    let n = server2.connection_count();
    assert!((1..=3).contains(&n), "at most 3 sessions, got {n}");
}

#[test]
fn dsn_size_and_8bit_parameters_are_passed_when_offered() {
    let t0 = now();
    let server = SmtpServer::start(ServerConfig {
        size_limit: Some(10_000_000),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    let body = "Grüße aus Köln\n";
    assert_eq!(
        env.sendmail(
            &[
                "-N",
                "failure,delay",
                "-R",
                "hdrs",
                "-V",
                "id+1=x",
                "a@x.test"
            ],
            format!("Subject: 8bit\n\n{body}").as_bytes()
        )
        .code,
        0
    );
    env.queue_run_at(t0);
    let got = server.wait_for(1, Duration::from_secs(10));
    let m = &got[0];
    assert!(m.mail_params.contains("SIZE="), "{}", m.mail_params);
    assert!(m.mail_params.contains("BODY=8BITMIME"), "{}", m.mail_params);
    assert!(m.mail_params.contains("RET=HDRS"), "{}", m.mail_params);
    assert!(
        m.mail_params.contains("ENVID=id+2B1+3Dx"),
        "xtext: {}",
        m.mail_params
    );
    assert!(
        m.rcpt_params[0].contains("NOTIFY=FAILURE,DELAY"),
        "{:?}",
        m.rcpt_params
    );
    assert!(
        m.rcpt_params[0].contains("ORCPT=rfc822;a@x.test"),
        "{:?}",
        m.rcpt_params
    );
    let size: usize = m
        .mail_params
        .split("SIZE=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        size,
        m.data.len(),
        "SIZE is the exact byte count of what was sent"
    );

    // Without DSN on the server: no DSN parameters.
    let plain = SmtpServer::start(ServerConfig {
        dsn: false,
        ..Default::default()
    });
    let env2 = TestEnv::new();
    env2.write_config(&env2.relay_config(plain.port(), ""));
    env2.sendmail(
        &["-N", "never", "-V", "x", "a@x.test"],
        b"Subject: x\n\nx\n",
    );
    env2.queue_run_at(t0);
    let got = plain.wait_for(1, Duration::from_secs(10));
    assert!(!got[0].mail_params.contains("ENVID") && !got[0].rcpt_params[0].contains("NOTIFY"));
}

#[test]
fn smtputf8_recipients() {
    let t0 = now();
    let with = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(&env.relay_config(with.port(), ""));
    assert_eq!(
        env.sendmail(
            &["-f", "s@example.com", "jörg@exämple.de", "plain@x.test"],
            b"Subject: u\n\nx\n"
        )
        .code,
        0
    );
    env.queue_run_at(t0);
    let got = with.wait_for(1, Duration::from_secs(10));
    assert!(got[0].mail_params.contains("SMTPUTF8"));
    assert_eq!(got[0].rcpts.len(), 2);

    let without = SmtpServer::start(ServerConfig {
        smtputf8: false,
        ..Default::default()
    });
    let env2 = TestEnv::new();
    env2.write_config(&env2.relay_config(without.port(), ""));
    env2.sendmail(
        &["-f", "s@example.com", "jörg@exämple.de", "plain@x.test"],
        b"Subject: u\n\nx\n",
    );
    env2.queue_run_at(t0);
    let got = without.wait_for(2, Duration::from_secs(10));
    let normal: Vec<_> = got.iter().filter(|m| !m.mail_from.is_empty()).collect();
    assert_eq!(
        normal[0].rcpts,
        vec!["plain@x.test"],
        "the ASCII recipient is delivered"
    );
    assert!(
        env2.log().contains("does not support SMTPUTF8"),
        "{}",
        env2.log()
    );
    assert!(
        got.iter().any(|m| m.mail_from.is_empty()),
        "a bounce for the non-ASCII recipient"
    );
}

#[test]
fn message_larger_than_the_relay_limit_bounces() {
    let t0 = now();
    let server = SmtpServer::start(ServerConfig {
        size_limit: Some(2000),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    let big = "x".repeat(70).repeat(100);
    env.sendmail(
        &["-f", "s@example.com", "a@x.test"],
        format!("Subject: big\n\n{big}\n").as_bytes(),
    );
    env.queue_run_at(t0);
    let log = env.log();
    assert!(
        log.contains("status=bounced") && log.contains("exceeds the limit"),
        "{log}"
    );
}

#[test]
fn password_command_and_xoauth2() {
    let t0 = now();
    let server = SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        auth: Some(AuthConfig {
            mechanisms: vec!["XOAUTH2".into()],
            username: "me@example.com".into(),
            secret: "tok-123".into(),
        }),
        ..Default::default()
    });
    let env = TestEnv::new();
    let ca = env.root.join("ca.pem");
    server.write_ca_file(&ca);
    env.write_config(&format!(
        "{}[[relay]]\nhost = \"localhost\"\nport = {}\ntls = \"starttls\"\nca_file = \"{}\"\nusername = \"me@example.com\"\npassword_command = \"echo tok-123\"\nauth = [\"XOAUTH2\"]\n",
        base_config(&env.root),
        server.port(),
        ca.display()
    ));
    env.sendmail(&["a@x.test"], b"Subject: oauth\n\nx\n");
    env.queue_run_at(t0);
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{}", env.log());
    assert_eq!(got[0].auth_user.as_deref(), Some("me@example.com"));
}

#[test]
fn verbose_odi_shows_the_dialogue_without_the_secret() {
    let server = SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        auth: auth("apikey", "TOPSECRET"),
        ..Default::default()
    });
    let env = TestEnv::new();
    let ca = env.root.join("ca.pem");
    server.write_ca_file(&ca);
    let pw = secret_file(&env, "TOPSECRET");
    env.write_config(&format!(
        "{}{}",
        base_config(&env.root),
        tls_relay(server.port(), &ca, Some(("apikey", &pw)), "starttls")
    ));
    let o = env.sendmail(&["-v", "-odi", "a@x.test"], b"Subject: v\n\nx\n");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("C: STARTTLS"), "{}", o.stderr);
    assert!(
        o.stderr.contains("C: AUTH PLAIN <credentials redacted>")
            || o.stderr.contains("C: AUTH LOGIN <credentials redacted>"),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("C: RCPT TO:<a@x.test>"), "{}", o.stderr);
    assert!(!o.stderr.contains("TOPSECRET"));
    let b64 = support::smtp_server::base64_encode(b"\0apikey\0TOPSECRET");
    assert!(!o.stderr.contains(&b64));
    assert_eq!(server.messages().len(), 1);
}

#[test]
fn secret_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let pw = secret_file(&env, "pw");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.write_config(&format!(
        "{}[[relay]]\nhost = \"smtp.example.com\"\nusername = \"u\"\npassword_file = \"{}\"\n",
        base_config(&env.root),
        pw.display()
    ));
    let o = env.run("postern", &["daemon"], b"");
    assert_eq!(o.code, 78, "{o:?}");
    assert!(o.stderr.contains("readable by every user"), "{}", o.stderr);
    assert_eq!(
        o.stderr.trim().lines().count(),
        1,
        "one clear line: {}",
        o.stderr
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
    let before = env.log().matches("daemon started").count();
    let d = Daemon(c.spawn().expect("daemon"));
    assert!(
        env.wait_log(10, |l| l.matches("daemon started").count() > before),
        "daemon did not start: {}",
        env.log()
    );
    d
}

#[test]
fn daemon_picks_up_new_mail_reloads_on_hup_and_stops_on_term() {
    let a = SmtpServer::start(ServerConfig::default());
    let b = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(&env.relay_config(a.port(), ""));
    let mut d = start_daemon(&env);
    assert_eq!(env.sendmail(&["one@x.test"], b"Subject: 1\n\n1\n").code, 0);
    assert_eq!(
        a.wait_for(1, Duration::from_secs(10)).len(),
        1,
        "picked up after the poke: {}",
        env.log()
    );
    // Reload: the next message goes to the new relay.
    env.write_config(&env.relay_config(b.port(), ""));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.0.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    assert!(env.wait_log(10, |l| l.contains("configuration reloaded")));
    assert_eq!(env.sendmail(&["two@x.test"], b"Subject: 2\n\n2\n").code, 0);
    assert_eq!(
        b.wait_for(1, Duration::from_secs(10)).len(),
        1,
        "{}",
        env.log()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = {
        let start = std::time::Instant::now();
        loop {
            if let Some(s) = d.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "daemon did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert!(status.success());
    assert!(env.log().contains("daemon stopped"));
    // A second daemon on the same spool is refused while one runs.
    let _d2 = start_daemon(&env);
    let o = env.run("postern", &["daemon"], b"");
    assert_eq!(o.code, 75, "{o:?}");
    assert!(o.stderr.contains("already running"));
}

/// The frozen test clock moved under a running daemon (`POSTERN_NOW=@file`):
/// the clock stands still (no retry while it does, log lines carry the
/// test instant), and the deferred message is retried as soon as the test
/// moves the clock past its retry time, without waiting for it in real time.
#[test]
fn daemon_retries_when_the_test_moves_the_frozen_clock() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let defer = Arc::new(AtomicBool::new(true));
    let d2 = Arc::clone(&defer);
    let server = SmtpServer::start(ServerConfig {
        script: script(move |e| match e {
            Event::Rcpt { .. } if d2.load(Ordering::SeqCst) => {
                Action::Reply(450, "4.2.1 try later".into())
            }
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    let t0 = 1_900_000_000.0_f64; // 2030-03-17T17:46:40Z
    let clock = support::TestClock::new(&env.root, t0);
    let mut c = env.cmd("postern");
    c.env("POSTERN_NOW", clock.env_value())
        .arg("daemon")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _d = Daemon(c.spawn().expect("daemon"));
    assert!(
        env.wait_log(10, |l| l.contains("daemon started")),
        "daemon did not start: {}",
        env.log()
    );
    assert_eq!(
        env.sendmail(&["later@x.test"], b"Subject: c\n\nx\n").code,
        0
    );
    // The first attempt is deferred; wait for its saved state.
    let start = std::time::Instant::now();
    let st = loop {
        if let Some(st) = env
            .files("state")
            .first()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| postern::spool::state::State::decode(&t))
            && st.tries >= 1
        {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "first attempt not recorded: {}",
            env.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(st.tries, 1);
    assert!(env.log().contains("status=deferred"), "{}", env.log());
    assert_eq!(
        st.last_attempt, t0,
        "the attempt happened at the test instant"
    );
    assert!(st.next > t0 + 50.0, "retry in about a minute: {st:?}");
    assert!(
        env.log().contains("2030-03-17T17:46:40"),
        "log lines carry the frozen time: {}",
        env.log()
    );
    // The clock stands still: however long we wait, nothing is due.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        state_of(&env).tries,
        1,
        "retried while the clock stood still"
    );
    // Move it past the retry time: the daemon notices without a poke.
    defer.store(false, Ordering::SeqCst);
    clock.set(st.next + 1.0);
    assert_eq!(
        server.wait_for(1, Duration::from_secs(10)).len(),
        1,
        "not retried after the clock moved: {}",
        env.log()
    );
    assert!(
        env.wait_log(10, |l| l.contains("status=sent")),
        "{}",
        env.log()
    );
}

#[test]
fn submission_without_daemon_starts_a_detached_run() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(
        &env.relay_config(server.port(), "")
            .replace("run_on_submit = false", "run_on_submit = true"),
    );
    let o = env.sendmail(&["a@x.test"], b"Subject: auto\n\nx\n");
    assert_eq!(o.code, 0);
    assert_eq!(
        server.wait_for(1, Duration::from_secs(20)).len(),
        1,
        "{}",
        env.log()
    );
    assert!(env.wait_log(10, |l| l.contains(": removed")));
}

#[test]
fn delay_warning_after_the_configured_time() {
    let t0 = now();
    let server = SmtpServer::start(ServerConfig {
        script: script(|e| match e {
            Event::Mail { from, .. } if !from.is_empty() => {
                Action::Reply(451, "4.3.0 try again later".into())
            }
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = TestEnv::new();
    let cfg = env
        .relay_config(server.port(), "")
        .replace("[queue]\n", "[queue]\ndelay_warning = \"1h\"\n");
    env.write_config(&cfg);
    assert_eq!(
        env.run_at(
            t0,
            "sendmail",
            &["-f", "me@example.com", "slow@x.test"],
            b"Subject: slow\n\nx\n"
        )
        .code,
        0
    );
    assert_eq!(
        env.run_at(
            t0,
            "sendmail",
            &["-f", "me@example.com", "-N", "failure", "quiet@x.test"],
            b"Subject: quiet\n\nx\n"
        )
        .code,
        0
    );
    env.queue_run_at(t0);
    assert!(server.messages().is_empty());
    env.queue_run_at(t0 + 3700.0);
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(
        got.len(),
        1,
        "exactly one delay warning (NOTIFY=FAILURE asked for none): {}",
        env.log()
    );
    assert_eq!(got[0].mail_from, "");
    assert_eq!(got[0].rcpts, vec!["me@example.com"]);
    let dsn = String::from_utf8_lossy(&got[0].data);
    assert!(
        dsn.contains("Action: delayed") && dsn.contains("rfc822;slow@x.test"),
        "{dsn}"
    );
    assert!(dsn.contains("Will-Retry-Until:"), "{dsn}");
    // Only once.
    env.queue_run_at(t0 + 7300.0);
    assert_eq!(server.messages().len(), 1);
}

#[test]
fn a_failed_bounce_is_logged_and_dropped_never_bounced() {
    let server = SmtpServer::start(ServerConfig {
        script: script(|e| match e {
            Event::Rcpt { .. } => Action::Reply(550, "5.1.1 gone".into()),
            _ => Action::Default,
        }),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    assert_eq!(
        env.sendmail(&["-f", "<>", "gone@x.test"], b"Subject: a bounce\n\nx\n")
            .code,
        0
    );
    env.queue_run();
    assert!(
        env.wait_log(10, |l| l.contains("a bounce is never bounced")),
        "{}",
        env.log()
    );
    assert!(server.messages().is_empty());
    assert!(env.files("queue").is_empty(), "dropped, not kept");
}

#[test]
fn client_certificate_is_presented_when_configured() {
    // The relay config accepts client_cert/client_key; a bad pair is a clear
    // local error that defers (never a panic), naming the file.
    let server = SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        ..Default::default()
    });
    let env = TestEnv::new();
    let ca = env.root.join("ca.pem");
    server.write_ca_file(&ca);
    let bogus = env.root.join("client.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    env.write_config(&format!(
        "{}[[relay]]\nhost = \"localhost\"\nport = {}\ntls = \"starttls\"\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        base_config(&env.root),
        server.port(),
        ca.display(),
        bogus.display(),
        bogus.display()
    ));
    assert_eq!(env.sendmail(&["a@x.test"], b"Subject: x\n\nx\n").code, 0);
    assert_eq!(env.queue_run().code, 0);
    let log = env.log();
    assert!(
        log.contains("client certificate") && log.contains("status=deferred"),
        "{log}"
    );
    assert_eq!(env.files("queue").len(), 1);
}

#[test]
fn flush_after_an_outage_delivers_now() {
    // The relay is down while mail arrives; the daemon defers it (and
    // remembers the relay as down). When it is back, `postern flush`
    // (sendmail -q) must deliver at once, not at the next retry time.
    let mut down = support::ClosedPort::new();
    let port = down.port;
    let env = TestEnv::new();
    env.write_config(&env.relay_config(port, ""));
    let _d = start_daemon(&env);
    for i in 0..5 {
        assert_eq!(
            env.sendmail(&[&format!("r{i}@x.test")], b"Subject: outage\n\nx\n")
                .code,
            0
        );
    }
    assert!(
        env.wait_log(10, |l| l.matches("status=deferred").count() >= 5),
        "{}",
        env.log()
    );
    down.release();
    let server = support::start_on_port(ServerConfig::default(), port);
    let o = env.run("sendmail", &["-q"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(
        server.wait_for(5, Duration::from_secs(15)).len(),
        5,
        "{}",
        env.log()
    );
}

#[test]
fn files_keep_their_modes_under_a_strict_umask() {
    // postern.service runs with UMask=0077; mailq (state/) and `postern
    // stats` (events.log, group postern) must still be able to read.
    use std::os::unix::fs::PermissionsExt;
    let closed = support::closed_port();
    let env = TestEnv::new();
    env.write_config(&env.relay_config(closed, ""));
    assert_eq!(env.sendmail(&["a@x.test"], b"Subject: x\n\nx\n").code, 0);
    let mut c = std::process::Command::new("/bin/sh");
    c.env("POSTERN_CONFIG", &env.config).arg("-c").arg(format!(
        "umask 077; exec {} queue run",
        env.bindir.join("postern").display()
    ));
    let o = env.run_cmd(c, &[], b"");
    assert_eq!(o.code, 0, "{o:?}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let st = env.files("state");
    assert_eq!(st.len(), 1);
    assert_eq!(mode(&st[0]), 0o644, "state files are what mailq shows");
    assert_eq!(mode(&env.spool.join("events.log")), 0o640);
}

/// A daemon with one session to `server` that has delivered one message
/// (and removed it), so the next message reuses that session.
fn one_message_on_one_session(server: &SmtpServer) -> (TestEnv, Daemon) {
    let env = TestEnv::new();
    env.write_config(
        &env.relay_config(server.port(), "")
            .replace("[queue]\n", "[queue]\nparallel = 1\n"),
    );
    let d = start_daemon(&env);
    assert_eq!(env.sendmail(&["one@x.test"], b"Subject: 1\n\n1\n").code, 0);
    assert_eq!(server.wait_for(1, Duration::from_secs(10)).len(), 1);
    assert!(
        env.wait_log(10, |l| l.contains(": removed")),
        "{}",
        env.log()
    );
    (env, d)
}

#[test]
fn a_reused_session_timed_out_with_421_is_reopened_not_deferred() {
    // The relay answers the second MAIL of a session with 421 (its idle
    // timeout): the message goes out on a fresh session at once.
    for pipelining in [true, false] {
        let mails = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let m = mails.clone();
        let server = SmtpServer::start(ServerConfig {
            pipelining,
            script: Arc::new(move |e| match e {
                Event::Mail { .. } if m.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 => {
                    Action::Reply(421, "4.4.2 idle for too long, closing".into())
                }
                _ => Action::Default,
            }),
            ..Default::default()
        });
        let (env, _d) = one_message_on_one_session(&server);
        assert_eq!(env.sendmail(&["two@x.test"], b"Subject: 2\n\n2\n").code, 0);
        let got = server.wait_for(2, Duration::from_secs(10));
        assert_eq!(got.len(), 2, "pipelining={pipelining}: {}", env.log());
        assert_eq!(got[1].rcpts, ["two@x.test"]);
        assert_eq!(server.connection_count(), 2, "pipelining={pipelining}");
        assert!(
            !env.log().contains("status=deferred"),
            "pipelining={pipelining}: {}",
            env.log()
        );
    }
}

#[test]
fn a_session_closed_by_the_relay_is_reopened_not_deferred() {
    // With and without PIPELINING: no RSET probes a reused session any
    // more, so its first MAIL finds it closed.
    for pipelining in [true, false] {
        let cfg = || ServerConfig {
            pipelining,
            ..Default::default()
        };
        let first = SmtpServer::start(cfg());
        let port = first.port();
        let (env, _d) = one_message_on_one_session(&first);
        // The relay goes away and comes back while the worker keeps its session.
        first.stop();
        let second = support::start_on_port(cfg(), port);
        assert_eq!(env.sendmail(&["two@x.test"], b"Subject: 2\n\n2\n").code, 0);
        let got = second.wait_for(1, Duration::from_secs(10));
        assert_eq!(got.len(), 1, "pipelining={pipelining}: {}", env.log());
        assert_eq!(got[0].rcpts, ["two@x.test"]);
        assert!(
            !env.log().contains("status=deferred"),
            "pipelining={pipelining}: {}",
            env.log()
        );
    }
}
