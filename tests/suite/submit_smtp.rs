//! `sendmail -bs`: the SMTP dialogue on stdin/stdout that Symfony Mailer and
//! other libraries speak to a local MTA. The real binary is driven both in
//! lock-step (one command, one reply) and pipelined (everything in one
//! write); every accepted message must be committed to its own spool entry
//! before its `250 … queued as ID`.

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;
use support::{Out, TestEnv, base_config};

const WAIT: Duration = Duration::from_secs(20);

/// A `sendmail -bs` child driven one command at a time.
struct Dialogue {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Dialogue {
    fn start(env: &TestEnv) -> Dialogue {
        let mut c = env.cmd("sendmail");
        c.arg("-bs")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = c.spawn().expect("spawn sendmail -bs");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            // read_until keeps the line ending (lines() would hide a bare LF)
            let mut r = BufReader::new(stdout);
            loop {
                let mut l = Vec::new();
                match r.read_until(b'\n', &mut l) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let l = String::from_utf8_lossy(&l).into_owned();
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let stdin = child.stdin.take();
        Dialogue {
            child,
            stdin,
            lines: rx,
        }
    }

    fn send(&mut self, text: &str) {
        let s = self.stdin.as_mut().expect("stdin open");
        s.write_all(text.as_bytes()).expect("write");
        s.flush().expect("flush");
    }

    /// One whole reply (all its lines, joined by "\n", CR removed).
    fn reply(&mut self) -> String {
        let mut out = Vec::new();
        loop {
            let l = self
                .lines
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no reply within {WAIT:?}; so far {out:?}"));
            let l = l
                .strip_suffix("\r\n")
                .unwrap_or_else(|| panic!("reply line without CRLF: {l:?}"))
                .to_string();
            let last = l.as_bytes().get(3) != Some(&b'-');
            out.push(l);
            if last {
                return out.join("\n");
            }
        }
    }

    /// Send a command line and return its reply.
    fn cmd(&mut self, line: &str) -> String {
        self.send(&format!("{line}\r\n"));
        self.reply()
    }

    /// Close stdin and wait for the exit code (bounded).
    fn finish(mut self) -> i32 {
        drop(self.stdin.take());
        let start = std::time::Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st.code().unwrap_or(-1);
            }
            if start.elapsed() > WAIT {
                let _ = self.child.kill();
                panic!("sendmail -bs did not exit");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Dialogue {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn queued_id(reply: &str) -> String {
    let id = reply
        .strip_prefix("250 2.0.0 Ok: queued as ")
        .unwrap_or_else(|| panic!("not a queued reply: {reply:?}"));
    assert!(postern::spool::is_valid_id(id), "{id}");
    id.to_string()
}

fn codes(out: &Out) -> Vec<String> {
    // the last line of each reply: code + text
    out.stdout
        .split("\r\n")
        .filter(|l| !l.is_empty() && l.as_bytes().get(3) != Some(&b'-'))
        .map(str::to_string)
        .collect()
}

#[test]
fn lock_step_session_with_two_messages() {
    let env = TestEnv::new();
    let mut d = Dialogue::start(&env);
    assert_eq!(d.reply(), "220 web1.example.com ESMTP Postern");
    let ehlo = d.cmd("EHLO client.example");
    let lines: Vec<&str> = ehlo.lines().collect();
    assert_eq!(lines[0], "250-web1.example.com");
    for ext in ["PIPELINING", "8BITMIME", "SIZE 52428800", "DSN"] {
        assert!(
            lines.iter().any(|l| &l[4..] == ext),
            "{ext} missing: {ehlo}"
        );
    }
    assert!(lines.last().unwrap().starts_with("250 "));
    assert!(d.cmd("HELO client.example").starts_with("250 "));
    assert!(d.cmd("NOOP").starts_with("250 "));
    assert!(d.cmd("VRFY root").starts_with("252 "));
    assert!(d.cmd("MAIL FROM:<app@x.example>").starts_with("250 "));
    assert!(d.cmd("RCPT TO:<a@y.example>").starts_with("250 "));
    assert!(d.cmd("RCPT TO:<b@y.example>").starts_with("250 "));
    assert!(d.cmd("DATA").starts_with("354 "));
    d.send("Subject: first\r\nBcc: hidden@y.example\r\n\r\n..leading dot\r\n...two\r\n.\r\n");
    let id1 = queued_id(&d.reply());
    // the entry is committed before the 250
    let e1 = support::Entry::read(&env.spool.join("maildrop").join(&id1)).expect("committed");
    assert_eq!(e1.mode, 0o704);
    // second message after RSET, with the null sender
    assert!(d.cmd("RSET").starts_with("250 "));
    assert!(d.cmd("MAIL FROM:<>").starts_with("250 "));
    assert!(d.cmd("RCPT TO:<c@y.example>").starts_with("250 "));
    assert!(d.cmd("DATA").starts_with("354 "));
    d.send("Subject: second\r\n\r\nbody two\r\n.\r\n");
    let id2 = queued_id(&d.reply());
    assert_ne!(id1, id2);
    assert_eq!(d.cmd("QUIT"), "221 2.0.0 Bye");
    assert_eq!(d.finish(), 0);

    let entries = env.entries();
    assert_eq!(entries.len(), 2);
    let e1 = entries
        .iter()
        .find(|e| e.get("id").as_deref() == Some(&id1))
        .unwrap();
    let e2 = entries
        .iter()
        .find(|e| e.get("id").as_deref() == Some(&id2))
        .unwrap();
    assert!(e1.path.ends_with(&id1) && e2.path.ends_with(&id2));
    assert_eq!(e1.sender(), "app@x.example");
    assert_eq!(e1.rcpts(), vec!["a@y.example", "b@y.example"]);
    assert_eq!(e1.body(), b".leading dot\n..two\n");
    assert!(
        e1.text()
            .starts_with("Received: by web1.example.com (Postern, from userid")
    );
    assert!(
        !e1.text().contains("hidden@y.example"),
        "Bcc kept: {}",
        e1.text()
    );
    assert!(e1.headers().contains("\nSubject: first\n"));
    assert_eq!(e2.sender(), "");
    assert_eq!(e2.rcpts(), vec!["c@y.example"]);
    assert_eq!(e2.body(), b"body two\n");
}

#[test]
fn pipelined_in_one_write() {
    let env = TestEnv::new();
    let input = "EHLO c.example\r\n\
MAIL FROM:<p@x.example> SIZE=200 BODY=8BITMIME\r\n\
RCPT TO:<a@y.example>\r\n\
RCPT TO:<b@y.example>\r\n\
DATA\r\n\
Subject: one\r\n\r\nGrüße\r\n.\r\n\
MAIL FROM:<p@x.example>\r\n\
RCPT TO:<c@y.example>\r\n\
NOOP\r\n\
DATA\r\n\
Subject: two\r\n\r\n.\r\n\
RSET\r\n\
QUIT\r\n";
    let out = env.sendmail(&["-bs"], input.as_bytes());
    assert_eq!(out.code, 0, "{out:?}");
    let c = codes(&out);
    let want_prefix = [
        "220 ",
        "250 ",
        "250 2.1.0",
        "250 2.1.5",
        "250 2.1.5",
        "354 ",
        "250 2.0.0 Ok: queued as ",
        "250 2.1.0",
        "250 2.1.5",
        "250 ",
        "354 ",
        "250 2.0.0 Ok: queued as ",
        "250 ",
        "221 ",
    ];
    assert_eq!(c.len(), want_prefix.len(), "{c:#?}");
    for (got, want) in c.iter().zip(want_prefix) {
        assert!(got.starts_with(want), "{got:?} vs {want:?}: {c:#?}");
    }
    let id1 = queued_id(&c[6]);
    let id2 = queued_id(&c[11]);
    let entries = env.entries();
    assert_eq!(entries.len(), 2);
    let e1 = entries.iter().find(|e| e.path.ends_with(&id1)).unwrap();
    let e2 = entries.iter().find(|e| e.path.ends_with(&id2)).unwrap();
    assert_eq!(e1.rcpts(), vec!["a@y.example", "b@y.example"]);
    assert_eq!(e1.get("body").as_deref(), Some("8BITMIME"));
    assert_eq!(e1.body(), "Grüße\n".as_bytes());
    assert_eq!(e2.rcpts(), vec!["c@y.example"]);
    assert_eq!(e2.get("body").as_deref(), Some("7BIT"));
    assert!(e2.headers().contains("\nSubject: two\n"));
}

#[test]
fn size_over_the_limit_is_552() {
    let env = TestEnv::new();
    env.write_config(&format!(
        "max_message_size = 2000\n{}",
        base_config(&env.root)
    ));
    let big = "x".repeat(100);
    let mut data = String::from("Subject: big\r\n\r\n");
    for _ in 0..40 {
        data.push_str(&big);
        data.push_str("\r\n");
    }
    let input = format!(
        "EHLO c\r\nMAIL FROM:<a@x.example> SIZE=5000\r\n\
MAIL FROM:<a@x.example> SIZE=1000\r\nRCPT TO:<b@y.example>\r\nDATA\r\n{data}.\r\n\
MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\nSubject: small\r\n\r\nok\r\n.\r\nQUIT\r\n"
    );
    let out = env.sendmail(&["-bs"], input.as_bytes());
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("250-SIZE 2000\r\n"), "{}", out.stdout);
    let c = codes(&out);
    assert!(c[2].starts_with("552 "), "{c:#?}");
    assert!(c[3].starts_with("250 "), "{c:#?}");
    assert!(c[6].starts_with("552 "), "DATA over the limit: {c:#?}");
    assert!(c[9].starts_with("354 "), "{c:#?}");
    queued_id(&c[10]);
    assert!(c[11].starts_with("221 "), "{c:#?}");
    // only the small one is queued; nothing of the big one is left
    let e = env.single_entry();
    assert!(e.headers().contains("Subject: small"));
    assert_eq!(env.files("maildrop").len(), 1);
}

#[test]
fn client_gone_mid_data_leaves_nothing() {
    let env = TestEnv::new();
    let input = "EHLO c\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\nSubject: cut\r\n\r\nhalf a message\r\nand no dot";
    let out = env.sendmail(&["-bs"], input.as_bytes());
    assert!(out.stdout.contains("354 "), "{out:?}");
    assert!(!out.stdout.contains("queued as"), "{out:?}");
    assert!(env.entries().is_empty());
    assert!(
        env.files("maildrop").is_empty(),
        "{:?}",
        env.files("maildrop")
    );
    // the same, lock-step: the client closes its end after some data
    let mut d = Dialogue::start(&env);
    d.reply();
    d.cmd("EHLO c");
    d.cmd("MAIL FROM:<a@x.example>");
    d.cmd("RCPT TO:<b@y.example>");
    assert!(d.cmd("DATA").starts_with("354"));
    d.send("Subject: cut\r\n\r\nsome data\r\n");
    d.finish();
    assert!(
        env.files("maildrop").is_empty(),
        "{:?}",
        env.files("maildrop")
    );
}

#[test]
fn dsn_parameters_are_stored() {
    let env = TestEnv::new();
    let input = "EHLO c\r\nMAIL FROM:<a@x.example> RET=HDRS ENVID=abc+2Bdef\r\n\
RCPT TO:<b@y.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b@y.example\r\nDATA\r\n\r\nx\r\n.\r\nQUIT\r\n";
    let out = env.sendmail(&["-bs"], input.as_bytes());
    assert_eq!(out.code, 0, "{out:?}");
    let e = env.single_entry();
    assert_eq!(e.get("ret").as_deref(), Some("HDRS"));
    assert_eq!(e.get("envid").as_deref(), Some("abc+def"));
    assert_eq!(e.get("notify").as_deref(), Some("SUCCESS,DELAY"));
}

#[test]
fn protocol_errors() {
    let env = TestEnv::new();
    let mut d = Dialogue::start(&env);
    d.reply();
    // Like Postfix (smtpd_helo_required = no), MAIL before EHLO is allowed.
    assert!(
        d.cmd("MAIL FROM:<a@x.example>").starts_with("250 "),
        "MAIL before EHLO"
    );
    assert!(
        d.cmd("EHLO c").starts_with("250"),
        "EHLO resets the transaction"
    );
    assert!(d.cmd("RCPT TO:<b@y.example>").starts_with("503 "));
    assert!(d.cmd("DATA").starts_with("503 "));
    assert!(d.cmd("BOGUS").starts_with("500 "));
    assert!(d.cmd("MAIL TO:<a@x.example>").starts_with("501 "));
    assert!(d.cmd("MAIL FROM:<a@@x.example>").starts_with("553 "));
    assert!(
        d.cmd("MAIL FROM:<a@x.example> BODY=9BIT")
            .starts_with("501 ")
    );
    assert!(d.cmd("MAIL FROM:<a@x.example> FOO=1").starts_with("555 "));
    assert!(d.cmd("MAIL FROM:<a@x.example>").starts_with("250 "));
    assert!(
        d.cmd("MAIL FROM:<a@x.example>").starts_with("503 "),
        "nested MAIL"
    );
    assert!(d.cmd("RCPT TO:<b@@y.example>").starts_with("553 "));
    assert!(d.cmd("DATA").starts_with("554 "), "no valid recipients");
    assert!(
        d.cmd(&format!("NOOP {}", "x".repeat(3000)))
            .starts_with("500 ")
    );
    assert!(d.cmd("RSET").starts_with("250 "));
    assert!(
        d.cmd("DATA").starts_with("503 "),
        "RSET ended the transaction"
    );
    assert!(d.cmd("STARTTLS").starts_with("502 "));
    assert_eq!(d.cmd("QUIT"), "221 2.0.0 Bye");
    assert_eq!(d.finish(), 0);
    assert!(env.entries().is_empty());
}

#[test]
fn unknown_local_recipient_is_refused_at_rcpt() {
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}[addresses]\nunknown_local = \"reject\"\n",
        base_config(&env.root)
    ));
    let mut d = Dialogue::start(&env);
    d.reply();
    d.cmd("EHLO c");
    d.cmd("MAIL FROM:<a@x.example>");
    let r = d.cmd("RCPT TO:<nosuchuser-xyz>");
    assert!(r.starts_with("550 5.1.1 "), "{r}");
    assert!(r.contains("nosuchuser-xyz"), "{r}");
    let r = d.cmd("RCPT TO:<nosuchuser-xyz@localhost>");
    assert!(r.starts_with("550 5.1.1 "), "{r}");
    assert!(d.cmd("RCPT TO:<root>").starts_with("250 "));
    assert!(d.cmd("DATA").starts_with("354 "));
    d.send("Subject: s\r\n\r\nb\r\n.\r\n");
    queued_id(&d.reply());
    d.cmd("QUIT");
    assert_eq!(d.finish(), 0);
    assert_eq!(env.single_entry().rcpts(), vec!["root"]);
}

#[test]
fn many_messages_in_one_session() {
    let env = TestEnv::new();
    let mut input = String::from("HELO c\r\n");
    for i in 0..25 {
        input.push_str(&format!(
            "MAIL FROM:<s{i}@x.example>\r\nRCPT TO:<r{i}@y.example>\r\nDATA\r\nSubject: {i}\r\n\r\n.{i}\r\n.\r\n"
        ));
    }
    input.push_str("QUIT\r\n");
    let out = env.sendmail(&["-bs"], input.as_bytes());
    assert_eq!(out.code, 0, "{out:?}");
    let ids: Vec<String> = codes(&out)
        .iter()
        .filter(|l| l.contains("queued as"))
        .map(|l| queued_id(l))
        .collect();
    assert_eq!(ids.len(), 25);
    let entries = env.entries();
    assert_eq!(entries.len(), 25);
    for (i, id) in ids.iter().enumerate() {
        let e = entries.iter().find(|e| e.path.ends_with(id)).unwrap();
        assert_eq!(e.sender(), format!("s{i}@x.example"));
        assert_eq!(e.rcpts(), vec![format!("r{i}@y.example")]);
        assert_eq!(e.body(), format!("{i}\n").as_bytes());
    }
}

#[test]
fn bad_data_is_refused_and_the_session_goes_on() {
    let env = TestEnv::new();
    let input = "EHLO c\r\n\
MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\nSubject: a\0b\r\n\r\nbody\r\n.\r\n\
MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\nSubject: fine\r\n\r\nbody\r\n.\r\n\
QUIT\r\n";
    let out = env.sendmail(&["-bs"], input.as_bytes());
    assert_eq!(out.code, 0, "{out:?}");
    let c = codes(&out);
    assert!(
        c[5].starts_with("554 5.6.0 ") && c[5].contains("NUL"),
        "{c:#?}"
    );
    queued_id(&c[9]);
    assert!(c[10].starts_with("221 "), "{c:#?}");
    let e = env.single_entry();
    assert!(e.headers().contains("Subject: fine"));
}

#[test]
fn quit_alone_and_eof_alone() {
    let env = TestEnv::new();
    let out = env.sendmail(&["-bs"], b"QUIT\r\n");
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(codes(&out).len(), 2, "{out:?}");
    let out = env.sendmail(&["-bs"], b"");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("220 "), "{out:?}");
    assert!(env.entries().is_empty());
}
