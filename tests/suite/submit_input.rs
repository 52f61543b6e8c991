//! What submission does with the bytes it is given: line endings, 8-bit
//! data, odd or missing header sections, the header fix-ups (Received, From,
//! Date, Message-ID, dropped fields, masquerading, From rewriting), big
//! messages, and the shape of the committed spool entry. Every assertion is
//! on the exact bytes stored in the entry (or, for delivery-side promises,
//! the bytes an SMTP server on 127.0.0.1 received after `postern queue run`).

use crate::support;

use std::time::Duration;
use support::smtp_server::{ServerConfig, SmtpServer};
use support::{Entry, Out, TestEnv, base_config};

fn me() -> postern::submit::User {
    postern::submit::User::lookup(nix::unistd::getuid().as_raw())
}

fn ok(o: &Out) {
    assert_eq!(o.code, 0, "expected exit 0: {o:?}");
}

/// The header lines Postern generates for a message without From, Date and
/// Message-ID, in the order they are stored, for the entry `e`.
fn generated_tail(e: &Entry) -> String {
    let u = me();
    let id = e.get("id").unwrap();
    let h = e.headers();
    let date = h
        .lines()
        .find_map(|l| l.strip_prefix("Date: "))
        .expect("Date generated")
        .to_string();
    let mid = h
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: "))
        .expect("Message-ID generated")
        .to_string();
    assert!(
        mid.starts_with(&format!("<{id}.")) && mid.ends_with("@web1.example.com>"),
        "{mid}"
    );
    assert_eq!(e.get("message-id").as_deref(), Some(mid.as_str()));
    let from = match &u.gecos {
        Some(g) => format!("From: {g} <{}@example.com>", u.name),
        None => format!("From: {}@example.com", u.name),
    };
    format!("{from}\nDate: {date}\nMessage-ID: {mid}\n")
}

/// The Received line for `e` (two lines, folded).
fn received(e: &Entry) -> String {
    let id = e.get("id").unwrap();
    let first = e.text().lines().nth(1).expect("second line").to_string();
    assert!(first.starts_with(&format!("\tid {id}; ")), "{first}");
    format!(
        "Received: by web1.example.com (Postern, from userid {})\n{first}\n",
        me().uid
    )
}

fn body_of(text: &str) -> &str {
    &text[text.find("\n\n").map(|i| i + 2).unwrap_or(text.len())..]
}

// ---- line endings and bytes ---------------------------------------------------

#[test]
fn lf_and_crlf_input_store_the_same_message() {
    let mut stored = Vec::new();
    for input in [
        &b"To: a@x.example\nSubject: eol\n\nline 1\nline 2 with\rlone CR\n\nlast\n"[..],
        &b"To: a@x.example\r\nSubject: eol\r\n\r\nline 1\r\nline 2 with\rlone CR\r\n\r\nlast\r\n"[..],
    ] {
        let env = TestEnv::new();
        ok(&env.sendmail(&["-i", "a@x.example"], input));
        let e = env.single_entry();
        let want = format!(
            "{}To: a@x.example\nSubject: eol\n{}\nline 1\nline 2 with\rlone CR\n\nlast\n",
            received(&e),
            generated_tail(&e)
        );
        assert_eq!(e.text(), want);
        assert_eq!(e.get("body").as_deref(), Some("7BIT"));
        stored.push(body_of(&e.text()).to_string());
    }
    assert_eq!(stored[0], stored[1]);
}

#[test]
fn crlf_input_with_lines_at_the_64k_buffer_boundary() {
    // The reader works in 64 KiB pieces: a CRLF split across two pieces is
    // still one line break (regression: the CR used to be stored).
    let env = TestEnv::new();
    let mut input = b"Subject: boundary\r\n\r\n".to_vec();
    let mut want = Vec::new();
    for len in [65535usize, 65536, 65534, 131071] {
        let line = vec![b'q'; len];
        input.extend_from_slice(&line);
        input.extend_from_slice(b"\r\n");
        want.extend_from_slice(&line);
        want.push(b'\n');
    }
    ok(&env.sendmail(&["-i", "a@x.example"], &input));
    let body = env.single_entry().body();
    assert!(!body.contains(&b'\r'), "a CR was stored");
    assert!(body == want);
}

#[test]
fn unterminated_last_line_is_kept() {
    let env = TestEnv::new();
    ok(&env.sendmail(
        &["-i", "a@x.example"],
        b"Subject: s\n\nno newline at the end",
    ));
    assert_eq!(env.single_entry().body(), b"no newline at the end");
}

#[test]
fn eight_bit_bytes_mark_the_body_8bitmime() {
    let env = TestEnv::new();
    let input = "Subject: Grüße\nContent-Type: text/plain; charset=utf-8\n\nÄrger über Öl — 日本語\n\u{00ff}\n";
    ok(&env.sendmail(&["-i", "a@x.example"], input.as_bytes()));
    let e = env.single_entry();
    assert_eq!(e.get("body").as_deref(), Some("8BITMIME"));
    assert!(e.text().contains("\nSubject: Grüße\n"));
    assert_eq!(e.body(), "Ärger über Öl — 日本語\n\u{00ff}\n".as_bytes());
    // raw Latin-1 (not UTF-8) is stored byte for byte as well
    let env = TestEnv::new();
    ok(&env.sendmail(&["-i", "a@x.example"], b"Subject: l1\n\ncaf\xe9\n"));
    let e = env.single_entry();
    assert_eq!(e.get("body").as_deref(), Some("8BITMIME"));
    assert_eq!(e.body(), b"caf\xe9\n");
}

#[test]
fn empty_stdin_gives_a_valid_message() {
    let env = TestEnv::new();
    ok(&env.sendmail(&["a@x.example"], b""));
    let e = env.single_entry();
    assert_eq!(e.text(), format!("{}{}", received(&e), generated_tail(&e)));
    assert_eq!(e.rcpts(), vec!["a@x.example"]);
}

#[test]
fn message_without_headers() {
    let env = TestEnv::new();
    ok(&env.sendmail(&["a@x.example"], b"hello world\nsecond line\n"));
    let e = env.single_entry();
    assert_eq!(
        e.text(),
        format!(
            "{}{}\nhello world\nsecond line\n",
            received(&e),
            generated_tail(&e)
        )
    );
}

#[test]
fn first_line_that_is_not_a_header_starts_the_body() {
    for first in [
        "Dear user,",
        "Hello there: friend",
        "  indented first line",
        ":colon first",
    ] {
        let env = TestEnv::new();
        let input = format!("{first}\nSubject: not a header any more\n\nrest\n");
        ok(&env.sendmail(&["a@x.example"], input.as_bytes()));
        let e = env.single_entry();
        assert_eq!(
            e.text(),
            format!("{}{}\n{input}", received(&e), generated_tail(&e)),
            "{first:?}"
        );
    }
}

#[test]
fn leading_mbox_from_line_is_removed() {
    let env = TestEnv::new();
    ok(&env.sendmail(
        &["a@x.example"],
        b"From someone@x.example Mon Jan  1 00:00:00 2026\nSubject: mbox\n\nFrom the body, kept\n",
    ));
    let e = env.single_entry();
    assert_eq!(
        e.text(),
        format!(
            "{}Subject: mbox\n{}\nFrom the body, kept\n",
            received(&e),
            generated_tail(&e)
        )
    );
}

#[test]
fn header_then_non_header_line_inserts_the_separator() {
    let env = TestEnv::new();
    ok(&env.sendmail(
        &["a@x.example"],
        b"Subject: s\nX-Folded: a\n  b\nthis line is body\nSecond: looks like a header\n",
    ));
    let e = env.single_entry();
    assert_eq!(
        e.text(),
        format!(
            "{}Subject: s\nX-Folded: a\n  b\n{}\nthis line is body\nSecond: looks like a header\n",
            received(&e),
            generated_tail(&e)
        )
    );
}

#[test]
fn nul_in_the_body_is_accepted() {
    let env = TestEnv::new();
    ok(&env.sendmail(
        &["-i", "a@x.example"],
        b"Subject: nul\n\nbefore\0after\n\0\n",
    ));
    assert_eq!(env.single_entry().body(), b"before\0after\n\0\n");
}

#[test]
fn nul_in_the_body_arrives_intact() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    ok(&env.sendmail(
        &["-i", "a@x.example"],
        b"Subject: nul\nContent-Type: text/plain\n\nbefore\0after\n",
    ));
    ok(&env.queue_run());
    let got = server.wait_for(1, Duration::from_secs(10));
    let data = &got[0].data;
    assert!(!data.contains(&0), "a NUL went on the wire");
    let text = String::from_utf8_lossy(data);
    assert!(
        text.to_ascii_lowercase()
            .contains("content-transfer-encoding: quoted-printable"),
        "{text}"
    );
    assert!(text.contains("before=00after"), "{text}");
}

#[test]
fn long_line_is_stored_as_is() {
    let env = TestEnv::new();
    let line: String = (0..2000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    ok(&env.sendmail(
        &["-i", "a@x.example"],
        format!("Subject: long\n\n{line}\nshort\n").as_bytes(),
    ));
    assert_eq!(
        env.single_entry().body(),
        format!("{line}\nshort\n").as_bytes()
    );
}

#[test]
fn long_line_arrives_legal_and_decodes_to_the_same_text() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    let line: String = (0..2000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    ok(&env.sendmail(
        &["-i", "a@x.example"],
        format!("Subject: long\n\n{line}\n").as_bytes(),
    ));
    ok(&env.queue_run());
    let got = server.wait_for(1, Duration::from_secs(10));
    let raw = &got[0].raw_data;
    for l in raw.split(|&b| b == b'\n') {
        assert!(
            l.len() <= 999,
            "a line of {} octets went on the wire",
            l.len()
        );
    }
    // quoted-printable soft breaks removed = the original line
    let text = String::from_utf8_lossy(&got[0].data).replace("=\r\n", "");
    assert!(text.contains(&line), "{text}");
}

#[test]
fn twenty_megabytes_through_a_pipe_are_stored_byte_exact() {
    let env = TestEnv::new();
    let mut body = Vec::with_capacity(21 * 1024 * 1024);
    let mut i: u64 = 0;
    while body.len() < 20 * 1024 * 1024 {
        // varying line lengths, a few leading dots, a long line now and then
        let len = (i * 7919 % 997) as usize + if i.is_multiple_of(1000) { 70_000 } else { 0 };
        if i.is_multiple_of(13) {
            body.push(b'.');
        }
        body.extend((0..len).map(|k| b'!' + ((k as u64 + i) % 90) as u8));
        body.push(b'\n');
        i += 1;
    }
    let mut input = b"Subject: big\n\n".to_vec();
    input.extend_from_slice(&body);
    ok(&env.sendmail(&["-i", "a@x.example"], &input));
    let e = env.single_entry();
    assert!(e.body() == body, "the stored body differs from the input");
    assert_eq!(e.get("body").as_deref(), Some("7BIT"));
}

// ---- header fix-ups ---------------------------------------------------------

#[test]
fn received_first_then_the_callers_fields() {
    let env = TestEnv::new();
    ok(&env.sendmail(
        &["a@x.example"],
        b"Received: from elsewhere by x; Mon, 1 Jan 2026 00:00:00 +0000\nSubject: s\n\nb\n",
    ));
    let e = env.single_entry();
    let t = e.text();
    let id = e.get("id").unwrap();
    assert!(
        t.starts_with(&format!(
            "Received: by web1.example.com (Postern, from userid {})\n\tid {id}; ",
            me().uid
        )),
        "{t}"
    );
    assert!(t.contains("\nReceived: from elsewhere by x;"), "{t}");
    assert_eq!(t.lines().next().unwrap().matches("Received").count(), 1);
}

#[test]
fn existing_from_date_message_id_are_kept() {
    let env = TestEnv::new();
    let input = b"From: Someone <someone@x.example>\nDate: Mon, 1 Jan 2026 00:00:00 +0000\n\
Message-ID: <abc@x.example>\nSubject: s\n\nb\n";
    ok(&env.sendmail(&["a@x.example"], input));
    let e = env.single_entry();
    assert_eq!(
        e.text(),
        format!("{}{}", received(&e), std::str::from_utf8(input).unwrap())
    );
    assert_eq!(e.get("message-id").as_deref(), Some("<abc@x.example>"));
}

#[test]
fn only_the_missing_ones_are_added() {
    let env = TestEnv::new();
    ok(&env.sendmail(
        &["a@x.example"],
        b"date: Mon, 1 Jan 2026 00:00:00 +0000\nSubject: s\n\nb\n",
    ));
    let h = env.single_entry().headers();
    assert_eq!(h.to_ascii_lowercase().matches("\ndate:").count(), 1, "{h}");
    assert_eq!(h.matches("\nFrom:").count(), 1, "{h}");
    assert_eq!(h.matches("\nMessage-ID:").count(), 1, "{h}");
}

#[test]
fn return_path_content_length_bcc_are_dropped() {
    let env = TestEnv::new();
    ok(&env.sendmail(
        &["a@x.example"],
        b"Return-Path: <x@y.example>\nContent-Length: 12345\nBCC: b@x.example\nresent-bcc: c@x.example\n\
Subject: s\nX-Content-Length: kept\n\nContent-Length: in the body stays\n",
    ));
    let e = env.single_entry();
    assert_eq!(
        e.text(),
        format!(
            "{}Subject: s\nX-Content-Length: kept\n{}\nContent-Length: in the body stays\n",
            received(&e),
            generated_tail(&e)
        )
    );
}

#[test]
fn masquerading_qualifies_local_addresses() {
    let env = TestEnv::new();
    ok(&env.sendmail(
        &["a@x.example"],
        b"From: www-data\nTo: root, \"Ops\" <ops>, b@y.example\nCc: Team: postmaster;\nSubject: root\n\nroot\n",
    ));
    let e = env.single_entry();
    let h = e.headers();
    assert!(h.contains("\nFrom: www-data@example.com\n"), "{h}");
    assert!(
        h.contains("\nTo: root@example.com, \"Ops\" <ops@example.com>, b@y.example\n"),
        "{h}"
    );
    assert!(h.contains("\nCc: Team: postmaster@example.com;\n"), "{h}");
    assert!(h.contains("\nSubject: root\n"), "{h}");
    assert_eq!(e.body(), b"root\n");
}

#[test]
fn masquerade_false_keeps_headers() {
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}[addresses]\nmasquerade = false\n",
        base_config(&env.root)
    ));
    ok(&env.sendmail(
        &["-t"],
        b"To: root\nCc: \"PM\" <postmaster>\nSubject: s\n\nb\n",
    ));
    let e = env.single_entry();
    let h = e.headers();
    assert!(h.contains("\nTo: root\nCc: \"PM\" <postmaster>\n"), "{h}");
    assert_eq!(e.rcpts(), vec!["root", "postmaster"]);
}

fn from_rewrite_env(mode: &str) -> TestEnv {
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}[addresses]\nsender = \"noreply@example.com\"\nfrom_header = \"{mode}\"\n",
        base_config(&env.root)
    ));
    env
}

#[test]
fn from_header_local_rewrites_local_senders() {
    let env = from_rewrite_env("local");
    ok(&env.sendmail(
        &["a@x.example"],
        b"From: \"Web App\" <www-data@web1.example.com>\nSubject: s\n\nb\n",
    ));
    let h = env.single_entry().headers();
    assert!(h.contains("\nFrom: Web App <noreply@example.com>\n"), "{h}");
    assert!(
        h.contains("\nReply-To: <www-data@web1.example.com>\n"),
        "{h}"
    );
    assert_eq!(h.matches("From:").count(), 1, "{h}");
}

#[test]
fn from_header_local_rewrites_a_generated_from() {
    let env = from_rewrite_env("local");
    ok(&env.sendmail(&["-F", "Cron Daemon", "a@x.example"], b"Subject: s\n\nb\n"));
    let h = env.single_entry().headers();
    assert!(
        h.contains("\nFrom: Cron Daemon <noreply@example.com>\n"),
        "{h}"
    );
    assert!(
        h.contains(&format!("\nReply-To: <{}@example.com>\n", me().name)),
        "{h}"
    );
}

#[test]
fn from_header_local_leaves_remote_senders() {
    let env = from_rewrite_env("local");
    let input = b"From: Alice <alice@other.example>\nSubject: s\n\nb\n";
    ok(&env.sendmail(&["a@x.example"], input));
    let h = env.single_entry().headers();
    assert!(h.contains("\nFrom: Alice <alice@other.example>\n"), "{h}");
    assert!(!h.contains("Reply-To"), "{h}");
}

#[test]
fn from_header_always_keeps_an_existing_reply_to() {
    let env = from_rewrite_env("always");
    ok(&env.sendmail(
        &["a@x.example"],
        b"From: Alice <alice@other.example>\nReply-To: list@other.example\nSubject: s\n\nb\n",
    ));
    let h = env.single_entry().headers();
    assert!(h.contains("\nFrom: Alice <noreply@example.com>\n"), "{h}");
    assert!(h.contains("\nReply-To: list@other.example\n"), "{h}");
    assert_eq!(h.matches("Reply-To").count(), 1, "{h}");
    // without Reply-To, the original address goes there
    let env = from_rewrite_env("always");
    ok(&env.sendmail(
        &["a@x.example"],
        b"From: alice@other.example\nSubject: s\n\nb\n",
    ));
    let h = env.single_entry().headers();
    assert!(h.contains("\nFrom: noreply@example.com\n"), "{h}");
    assert!(h.contains("\nReply-To: <alice@other.example>\n"), "{h}");
}

// ---- the spool entry ---------------------------------------------------------

#[test]
fn committed_entry_shape() {
    let env = TestEnv::new();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    ok(&env.sendmail(&["a@x.example"], b"Subject: 1\n\nb\n"));
    ok(&env.sendmail(&["b@x.example"], b"Subject: 2\n\nb\n"));
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let entries = env.entries();
    assert_eq!(entries.len(), 2);
    let names: Vec<String> = entries
        .iter()
        .map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for (e, name) in entries.iter().zip(&names) {
        assert_eq!(e.mode, 0o704, "{name}");
        assert_eq!(name.len(), 15);
        assert!(postern::spool::is_valid_id(name), "{name}");
        assert_eq!(e.get("id").as_deref(), Some(name.as_str()));
        assert_eq!(e.get("uid"), Some(me().uid.to_string()));
        assert_eq!(e.get("user"), Some(me().name));
        let arrival: f64 = e.get("arrival").unwrap().parse().unwrap();
        assert!(
            arrival >= before - 1.0 && arrival <= after + 1.0,
            "{arrival}"
        );
        assert!(e.envelope.last().is_some());
    }
    // ids sort by submission time: the first message has the smaller id
    assert!(names[0] < names[1]);
    assert!(entries[0].text().contains("Subject: 1"));
    assert!(entries[1].text().contains("Subject: 2"));
    // the file ends with the trailer
    let raw = std::fs::read(&entries[0].path).unwrap();
    assert!(raw.ends_with(b"\nend\n"));
    // nothing else lies around in maildrop
    assert_eq!(env.files("maildrop").len(), 2);
}

#[test]
fn nothing_is_delivered_at_submission_by_default_in_tests() {
    // the test config has run_on_submit = false: a committed entry stays put
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    ok(&env.sendmail(&["a@x.example"], b"Subject: s\n\nb\n"));
    assert_eq!(env.entries().len(), 1);
    ok(&env.queue_run());
    assert_eq!(server.wait_for(1, Duration::from_secs(10)).len(), 1);
    assert!(env.entries().is_empty());
}
