//! Issue 4 at delivery: aliases and local users resolved when the message
//! leaves (so config and aliases changes apply to queued mail), unsupported
//! alias targets bounced with a clear reason, envelope sender rewriting,
//! `-bv`, and content that arrives intact (long lines, 8-bit bodies with and
//! without 8BITMIME, UTF-8 Subject, a 20 MB attachment, dots everywhere).

use crate::support;

use mail_parser::MessageParser;
use std::time::Duration;
use support::smtp_server::{ServerConfig, SmtpServer};
use support::{TestEnv, base_config};

fn env_with(server: &SmtpServer, extra_top: &str, addresses: &str) -> TestEnv {
    let env = TestEnv::new();
    let aliases = env.root.join("aliases");
    env.write_config(&format!(
        "{extra_top}{}[addresses]\naliases_file = \"{}\"\n{addresses}\n[[relay]]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        base_config(&env.root),
        aliases.display(),
        server.port()
    ));
    env
}

fn aliases(env: &TestEnv, text: &str) {
    std::fs::write(env.root.join("aliases"), text).unwrap();
}

#[test]
fn aliases_nested_include_and_local_users_resolve_at_delivery() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = env_with(&server, "", "local_recipient = \"%u@ops.example.net\"");
    let list = env.root.join("team.list");
    std::fs::write(&list, "# the team\nann@example.org, ben@example.org\n").unwrap();
    aliases(
        &env,
        &format!(
            "# system aliases\npostmaster: root\nroot: admin@example.org,\n   ops\nops: oncall@example.org\nteam: :include:{}\nloopa: loopb\nloopb: loopa\nweb: \"|/usr/bin/procmail\", /var/log/web.mail, webmaster@example.org\n",
            list.display()
        ),
    );
    for r in ["postmaster", "team", "web", "loopa", "nobody"] {
        // `nobody` exists on every Debian system: a local user without an alias.
        let o = env.sendmail(
            &["-f", "s@example.com", r],
            format!("Subject: to {r}\n\nx\n").as_bytes(),
        );
        assert_eq!(o.code, if r == "loopa" { 67 } else { 0 }, "{r}: {o:?}");
    }
    env.queue_run();
    let got = server.wait_for(5, Duration::from_secs(10));
    let mut rcpts: Vec<String> = got
        .iter()
        .filter(|m| !m.mail_from.is_empty())
        .flat_map(|m| m.rcpts.clone())
        .collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        vec![
            "admin@example.org",
            "ann@example.org",
            "ben@example.org",
            "nobody@ops.example.net",
            "oncall@example.org",
            "webmaster@example.org"
        ]
    );
    let log = env.log();
    assert!(
        log.contains("to=<|/usr/bin/procmail>, orig_to=<web>")
            && log.contains("pipe targets are not supported"),
        "{log}"
    );
    assert!(log.contains("file targets are not supported"), "{log}");
    // The unsupported targets bounce back to the sender (never silent loss).
    let bounce = got
        .iter()
        .find(|m| m.mail_from.is_empty())
        .expect("a bounce for the pipe/file targets");
    assert_eq!(bounce.rcpts, vec!["s@example.com"]);
    assert!(String::from_utf8_lossy(&bounce.data).contains("procmail"));
}

#[test]
fn resolution_happens_at_delivery_time() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = env_with(&server, "", "");
    aliases(&env, "root: first@example.org\n");
    assert_eq!(env.sendmail(&["root"], b"Subject: x\n\nx\n").code, 0);
    // The alias changes while the message waits in the queue.
    std::thread::sleep(Duration::from_millis(1100)); // a new mtime second for the cache
    aliases(&env, "root: second@example.org\n");
    env.queue_run();
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got[0].rcpts, vec!["second@example.org"]);
}

#[test]
fn root_postmaster_and_mailer_daemon_work_without_an_aliases_file() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = env_with(&server, "", "local_recipient = \"ops@example.net\"");
    for r in [
        "root",
        "postmaster",
        "MAILER-DAEMON",
        "root@localhost",
        "root@web1.example.com",
    ] {
        assert_eq!(env.sendmail(&[r], b"Subject: x\n\nx\n").code, 0, "{r}");
    }
    env.queue_run();
    let got = server.wait_for(5, Duration::from_secs(10));
    assert_eq!(got.len(), 5);
    assert!(
        got.iter().all(|m| m.rcpts == vec!["ops@example.net"]),
        "{got:?}"
    );
}

#[test]
fn bv_shows_routing_without_delivering() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = env_with(
        &server,
        "",
        "local_recipient = \"%u@ops.example.net\"\nunknown_local = \"reject\"",
    );
    aliases(
        &env,
        "root: admin@example.org, ops\nops: oncall@example.org\nweb: \"|/bin/cat\"\n",
    );
    let o = env.sendmail(
        &["-bv", "root", "bob@example.org", "web", "no-such-user-xyz"],
        b"",
    );
    assert_eq!(o.code, 67, "{o:?}");
    let port = server.port();
    assert!(
        o.stdout.contains(&format!(
            "root... deliverable: mailer esmtp, host 127.0.0.1:{port}, user admin@example.org"
        )),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("root... deliverable: mailer esmtp")
            && o.stdout.contains("user oncall@example.org")
    );
    assert!(
        o.stdout.contains("bob@example.org... deliverable"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("web... undeliverable: |/bin/cat: pipe targets are not supported"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("no-such-user-xyz... undeliverable: unknown local user"),
        "{}",
        o.stdout
    );
    assert!(env.files("maildrop").is_empty() && env.files("queue").is_empty());
    assert_eq!(server.connection_count(), 0);
}

#[test]
fn envelope_sender_rewriting_all_or_local() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = env_with(
        &server,
        "",
        "sender = \"noreply@verified.example\"\nsender_scope = \"local\"",
    );
    assert_eq!(
        env.sendmail(&["a@x.test"], b"Subject: local\n\nx\n").code,
        0
    );
    assert_eq!(
        env.sendmail(
            &["-f", "partner@elsewhere.test", "a@x.test"],
            b"Subject: remote\n\nx\n"
        )
        .code,
        0
    );
    assert_eq!(
        env.sendmail(&["-f", "<>", "a@x.test"], b"Subject: null\n\nx\n")
            .code,
        0
    );
    env.queue_run();
    let got = server.wait_for(3, Duration::from_secs(10));
    let from_of = |subj: &str| {
        got.iter()
            .find(|m| String::from_utf8_lossy(&m.data).contains(&format!("Subject: {subj}")))
            .map(|m| m.mail_from.clone())
            .unwrap()
    };
    assert_eq!(from_of("local"), "noreply@verified.example");
    assert_eq!(from_of("remote"), "partner@elsewhere.test");
    assert_eq!(from_of("null"), "", "the null sender is never replaced");

    let server2 = SmtpServer::start(ServerConfig::default());
    let env2 = env_with(&server2, "", "sender = \"noreply@verified.example\"");
    env2.sendmail(
        &["-f", "partner@elsewhere.test", "a@x.test"],
        b"Subject: all\n\nx\n",
    );
    env2.queue_run();
    assert_eq!(
        server2.wait_for(1, Duration::from_secs(10))[0].mail_from,
        "noreply@verified.example"
    );
}

#[test]
fn from_header_rewritten_for_the_sender_identity() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = env_with(
        &server,
        "",
        "sender = \"alerts@verified.example\"\nfrom_header = \"local\"",
    );
    env.sendmail(
        &["-t"],
        b"From: Cron Daemon <root>\nTo: ops@example.org\nSubject: cron\n\nout\n",
    );
    env.sendmail(
        &["-t"],
        b"From: partner@elsewhere.test\nTo: ops@example.org\nSubject: foreign\n\nout\n",
    );
    env.queue_run();
    let got = server.wait_for(2, Duration::from_secs(10));
    let data = |subj: &str| {
        got.iter()
            .map(|m| String::from_utf8_lossy(&m.data).into_owned())
            .find(|d| d.contains(&format!("Subject: {subj}")))
            .unwrap()
    };
    let cron = data("cron");
    assert!(
        cron.contains("\r\nFrom: Cron Daemon <alerts@verified.example>\r\n"),
        "{cron}"
    );
    assert!(
        cron.contains("\r\nReply-To: <root@example.com>\r\n"),
        "{cron}"
    );
    let foreign = data("foreign");
    assert!(
        foreign.contains("\r\nFrom: partner@elsewhere.test\r\n"),
        "local only: {foreign}"
    );
}

fn decoded_parts(data: &[u8]) -> Vec<Vec<u8>> {
    let m = MessageParser::new().parse(data).expect("parses");
    m.parts
        .iter()
        .filter(|p| !matches!(p.body, mail_parser::PartType::Multipart(_)))
        .map(|p| p.contents().to_vec())
        .collect()
}

fn round_trip(eightbitmime: bool) {
    let server = SmtpServer::start(ServerConfig {
        eightbitmime,
        size_limit: Some(64 * 1024 * 1024),
        ..Default::default()
    });
    let env = env_with(&server, "max_message_size = \"40M\"\n", "");
    let long_line: String = (0..1500).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let utf8 = "Grüße aus Köln — ünïcødé ✓\n".repeat(3);
    let attachment: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let b64 = support::smtp_server::base64_encode(&attachment);
    let mut b64_wrapped = String::new();
    for chunk in b64.as_bytes().chunks(76) {
        b64_wrapped.push_str(std::str::from_utf8(chunk).unwrap());
        b64_wrapped.push('\n');
    }
    let msg = format!(
        "From: s@example.com\nTo: r@x.test\nSubject: Grüße — UTF-8 subject\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BOUND\"\n\npreamble\n--BOUND\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{long_line}\n.dot first\n{utf8}.\n..\n--BOUND\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n{b64_wrapped}--BOUND--\n"
    );
    let o = env.sendmail(&["-i", "-f", "s@example.com", "r@x.test"], msg.as_bytes());
    assert_eq!(o.code, 0, "{o:?}");
    let o = env.queue_run();
    assert_eq!(o.code, 0, "{o:?}");
    let got = server.wait_for(1, Duration::from_secs(60));
    assert_eq!(got.len(), 1, "{}", env.log());
    let m = &got[0];
    // Legal on the wire: no line over 998 octets, no bare LF or CR.
    for line in m.raw_data.split(|&b| b == b'\n') {
        assert!(
            line.len() <= 999,
            "a line of {} octets on the wire",
            line.len()
        );
    }
    assert!(
        !m.raw_data
            .windows(2)
            .any(|w| w[1] == b'\n' && w[0] != b'\r'),
        "bare LF on the wire"
    );
    if eightbitmime {
        assert!(m.mail_params.contains("BODY=8BITMIME"), "{}", m.mail_params);
    } else {
        assert!(!m.mail_params.contains("BODY=8BITMIME"));
        let body_start = m.data.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        assert!(
            m.data[body_start..].iter().all(|&b| b < 0x80),
            "the body was made 7-bit"
        );
    }
    let parts = decoded_parts(&m.data);
    let text = String::from_utf8(
        parts
            .iter()
            .find(|p| p.starts_with(b"abc"))
            .expect("text part")
            .clone(),
    )
    .unwrap();
    let expect = format!("{long_line}\n.dot first\n{utf8}.\n..\n");
    assert_eq!(
        text.replace("\r\n", "\n").trim_end_matches('\n'),
        expect.trim_end_matches('\n'),
        "the text part decodes to the original"
    );
    let att = parts
        .iter()
        .find(|p| p.len() == attachment.len())
        .expect("attachment part");
    assert!(att == &attachment, "the 20 MB attachment is byte-identical");
    let parsed = MessageParser::new().parse(&m.data).unwrap();
    assert_eq!(parsed.subject(), Some("Grüße — UTF-8 subject"));
}

#[test]
fn content_round_trip_with_8bitmime() {
    round_trip(true);
}

#[test]
fn content_round_trip_without_8bitmime() {
    round_trip(false);
}

#[test]
fn dots_in_every_position_arrive_intact() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = env_with(&server, "", "");
    let body = b".first\n\n.after blank\n.\n..\nmiddle . line\n.last";
    let mut msg = b"Subject: dots\n\n".to_vec();
    msg.extend_from_slice(body);
    assert_eq!(env.sendmail(&["-i", "r@x.test"], &msg).code, 0);
    env.queue_run();
    let got = server.wait_for(1, Duration::from_secs(10));
    let data = String::from_utf8_lossy(&got[0].data);
    assert!(
        data.ends_with(
            "\r\n\r\n.first\r\n\r\n.after blank\r\n.\r\n..\r\nmiddle . line\r\n.last\r\n"
        ),
        "{data:?}"
    );
    let raw = String::from_utf8_lossy(&got[0].raw_data);
    assert!(
        raw.contains("\r\n..first\r\n")
            && raw.contains("\r\n..\r\n...\r\n")
            && raw.contains("\r\n..last\r\n.\r\n"),
        "{raw:?}"
    );
}
