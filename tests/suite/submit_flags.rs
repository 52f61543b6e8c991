//! Every sendmail flag of the submission front end, run through the real
//! binary against a throwaway spool (and, where a flag is about delivery, a
//! real SMTP server on 127.0.0.1). Assertions are on the committed spool
//! entry (envelope and exact stored bytes) or on what the server received.

use crate::support;

use std::time::Duration;
use support::smtp_server::{Action, Event, ServerConfig, SmtpServer};
use support::{Out, TestEnv, base_config};

fn me() -> String {
    postern::submit::User::lookup(nix::unistd::getuid().as_raw()).name
}

fn ok(o: &Out) {
    assert_eq!(o.code, 0, "expected exit 0: {o:?}");
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    support::closed_port()
}

const MSG: &[u8] = b"Subject: test\n\nhello\n";

// ---- recipients -------------------------------------------------------------

#[test]
fn recipients_from_argv() {
    let env = TestEnv::new();
    let o = env.sendmail(&["a@x.example", "b@y.example", "a@x.example"], MSG);
    ok(&o);
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{o:?}");
    let e = env.single_entry();
    assert_eq!(e.rcpts(), vec!["a@x.example", "b@y.example"]);
    assert_eq!(e.sender(), format!("{}@example.com", me()));
    assert!(e.path.starts_with(env.spool.join("maildrop")));
}

#[test]
fn double_dash_ends_options() {
    let env = TestEnv::new();
    ok(&env.sendmail(&["-i", "--", "a@x.example", "-b@y.example"], MSG));
    assert_eq!(
        env.single_entry().rcpts(),
        vec!["a@x.example", "-b@y.example"]
    );
}

#[test]
fn extract_to_cc_bcc_union_with_argv() {
    let env = TestEnv::new();
    let msg = "From: Alice <alice@x.example>\n\
To: \"Doe, John\" <john@x.example>, Team: m1@x.example, m2@x.example;\n\
Cc: bob@y.example (Bob's (nested) comment),\n =?UTF-8?B?SsO2cmc=?= <joerg@z.example>\n\
Bcc: hidden@w.example\n\
cc: \"quoted local\"@x.example, Undisclosed:;\n\
Subject: t\n\nbody\n";
    ok(&env.sendmail(&["-t", "argv@q.example", "bob@y.example"], msg.as_bytes()));
    let e = env.single_entry();
    assert_eq!(
        e.rcpts(),
        vec![
            "argv@q.example",
            "bob@y.example",
            "john@x.example",
            "m1@x.example",
            "m2@x.example",
            "joerg@z.example",
            "hidden@w.example",
            "\"quoted local\"@x.example",
        ]
    );
    let h = e.headers();
    assert!(
        !h.contains("Bcc:") && !h.contains("hidden@w.example"),
        "{h}"
    );
    assert!(
        h.contains("To: \"Doe, John\" <john@x.example>, Team: m1@x.example, m2@x.example;\n"),
        "{h}"
    );
    assert!(h.contains("=?UTF-8?B?SsO2cmc=?= <joerg@z.example>"), "{h}");
}

#[test]
fn extract_unqualified_names() {
    let env = TestEnv::new();
    ok(&env.sendmail(&["-t"], b"To: root, postmaster\nSubject: cron\n\nx\n"));
    let e = env.single_entry();
    assert_eq!(e.rcpts(), vec!["root", "postmaster"]);
    // masquerading qualifies them in the stored header
    assert!(
        e.headers()
            .contains("\nTo: root@example.com, postmaster@example.com\n"),
        "{}",
        e.headers()
    );
}

#[test]
fn extract_prefers_resent_headers() {
    let env = TestEnv::new();
    let msg = b"To: orig@x.example\nCc: origcc@x.example\nBcc: origbcc@x.example\n\
Resent-From: fwd@x.example\nResent-To: r1@y.example\nResent-Cc: r2@y.example\n\
Resent-Bcc: r3@y.example\nSubject: fwd\n\nbody\n";
    ok(&env.sendmail(&["-t"], msg));
    let e = env.single_entry();
    assert_eq!(
        e.rcpts(),
        vec!["r1@y.example", "r2@y.example", "r3@y.example"]
    );
    let h = e.headers();
    assert!(
        !h.contains("Resent-Bcc") && !h.contains("r3@y.example"),
        "{h}"
    );
    assert!(!h.contains("\nBcc:") && !h.contains("origbcc"), "{h}");
    assert!(
        h.contains("\nTo: orig@x.example\n") && h.contains("\nResent-To: r1@y.example\n"),
        "{h}"
    );
}

#[test]
fn bcc_removed_without_extract_too() {
    let env = TestEnv::new();
    ok(&env.sendmail(
        &["a@x.example"],
        b"To: a@x.example\nBcc: secret@x.example\nResent-Bcc: s2@x.example\nSubject: s\n\nb\n",
    ));
    let e = env.single_entry();
    assert_eq!(e.rcpts(), vec!["a@x.example"]);
    assert!(
        !e.text().contains("secret@x.example") && !e.text().contains("s2@x.example"),
        "{}",
        e.text()
    );
}

#[test]
fn no_recipient_is_64_with_nothing_queued() {
    let env = TestEnv::new();
    let o = env.sendmail(&[], MSG);
    assert_eq!(o.code, 64, "{o:?}");
    assert!(o.stderr.contains("no recipients"), "{o:?}");
    let o = env.sendmail(&["-t"], b"Subject: nobody\n\nx\n");
    assert_eq!(o.code, 64, "{o:?}");
    assert!(o.stderr.contains("no recipients"), "{o:?}");
    assert!(env.entries().is_empty());
    assert!(env.files("maildrop").is_empty());
}

// ---- dots -------------------------------------------------------------------

#[test]
fn lone_dot_ends_message_without_i() {
    for (input, eol) in [
        (&b"Subject: d\n\none\n.\ntwo\n"[..], "LF"),
        (&b"Subject: d\r\n\r\none\r\n.\r\ntwo\r\n"[..], "CRLF"),
    ] {
        let env = TestEnv::new();
        ok(&env.sendmail(&["a@x.example"], input));
        assert_eq!(env.single_entry().body(), b"one\n", "{eol}");
    }
}

#[test]
fn dash_i_and_oi_keep_lone_dot() {
    for flag in ["-i", "-oi", "-OIgnoreDots=true"] {
        for (input, eol) in [
            (&b"Subject: d\n\none\n.\n..two\n. \n"[..], "LF"),
            (
                &b"Subject: d\r\n\r\none\r\n.\r\n..two\r\n. \r\n"[..],
                "CRLF",
            ),
        ] {
            let env = TestEnv::new();
            ok(&env.sendmail(&[flag, "a@x.example"], input));
            assert_eq!(
                env.single_entry().body(),
                b"one\n.\n..two\n. \n",
                "{flag} {eol}"
            );
        }
    }
}

#[test]
fn without_i_double_dot_is_not_unstuffed() {
    let env = TestEnv::new();
    ok(&env.sendmail(&["a@x.example"], b"Subject: d\n\n..x\n. \n.y\n"));
    assert_eq!(env.single_entry().body(), b"..x\n. \n.y\n");
}

// ---- sender -----------------------------------------------------------------

#[test]
fn f_and_r_set_envelope_sender() {
    let cases: &[(&[&str], &str)] = &[
        (&["-f", "list@x.example"], "list@x.example"),
        (&["-flist@x.example"], "list@x.example"),
        (&["-r", "bounce@x.example"], "bounce@x.example"),
        (&["-f", "<angle@x.example>"], "angle@x.example"),
        (&["-f", "<>"], ""),
        (&["-f", ""], ""),
        (&["-f", "www-data"], "www-data@example.com"),
    ];
    for (args, want) in cases {
        let env = TestEnv::new();
        let mut a = args.to_vec();
        a.push("a@x.example");
        ok(&env.sendmail(&a, MSG));
        let e = env.single_entry();
        assert_eq!(e.sender(), *want, "{args:?}");
        assert_eq!(
            e.get("sender").as_deref(),
            Some(format!("<{want}>").as_str())
        );
    }
}

#[test]
fn generated_from_uses_f_address() {
    let env = TestEnv::new();
    ok(&env.sendmail(&["-f", "list@x.example", "a@x.example"], MSG));
    assert!(
        env.single_entry()
            .headers()
            .contains("\nFrom: list@x.example\n")
    );
}

#[test]
fn full_name_in_generated_from() {
    let cases: &[(&[&str], String)] = &[
        (
            &["-F", "Cron Daemon"],
            format!("From: Cron Daemon <{}@example.com>", me()),
        ),
        (
            &["-FCronDaemon"],
            format!("From: CronDaemon <{}@example.com>", me()),
        ),
        (
            &["-F", "Doe, John"],
            format!("From: \"Doe, John\" <{}@example.com>", me()),
        ),
        (
            &["-F", "Jörg"],
            format!("From: =?UTF-8?B?SsO2cmc=?= <{}@example.com>", me()),
        ),
    ];
    for (args, want) in cases {
        let env = TestEnv::new();
        let mut a = args.to_vec();
        a.push("a@x.example");
        ok(&env.sendmail(&a, MSG));
        let e = env.single_entry();
        assert!(
            e.headers().contains(&format!("\n{want}\n")),
            "{args:?}: {}",
            e.headers()
        );
        assert!(e.get("fullname").is_some(), "{args:?}");
    }
}

#[test]
fn gecos_name_without_f() {
    let u = postern::submit::User::lookup(nix::unistd::getuid().as_raw());
    let env = TestEnv::new();
    ok(&env.sendmail(&["a@x.example"], MSG));
    let h = env.single_entry().headers();
    let want = match &u.gecos {
        Some(g) => format!("\nFrom: {g} <{}@example.com>\n", u.name),
        None => format!("\nFrom: {}@example.com\n", u.name),
    };
    assert!(h.contains(&want), "{h}");
    if u.name == "root" {
        // root's GECOS on the test machine is "root"
        assert!(h.contains("\nFrom: root <root@example.com>\n"), "{h}");
    }
}

#[test]
fn existing_from_is_kept_despite_f_and_big_f() {
    let env = TestEnv::new();
    ok(&env.sendmail(
        &["-F", "Other", "-f", "env@x.example", "a@x.example"],
        b"From: Real Person <real@y.example>\nSubject: s\n\nb\n",
    ));
    let e = env.single_entry();
    let h = e.headers();
    assert!(h.contains("\nFrom: Real Person <real@y.example>\n"), "{h}");
    assert_eq!(h.matches("From:").count(), 1, "{h}");
    assert_eq!(e.sender(), "env@x.example");
}

#[test]
fn newlines_in_f_or_big_f_are_64() {
    let env = TestEnv::new();
    for args in [
        &["-f", "a@x.example\nBcc: evil@x.example", "a@x.example"][..],
        &["-F", "Name\r\nBcc: evil@x.example", "a@x.example"][..],
        &["-r", "a@x.example\n", "a@x.example"][..],
    ] {
        let o = env.sendmail(args, MSG);
        assert_eq!(o.code, 64, "{args:?}: {o:?}");
        assert!(o.stderr.contains("line break"), "{o:?}");
        assert_eq!(o.stderr.lines().count(), 1, "{o:?}");
    }
    assert!(env.entries().is_empty());
}

// ---- modes ------------------------------------------------------------------

#[test]
fn bm_is_the_default_mode() {
    let env = TestEnv::new();
    ok(&env.sendmail(&["-bm", "a@x.example"], MSG));
    ok(&env.sendmail(&["-b", "m", "b@x.example"], MSG));
    let mut r: Vec<String> = env.entries().iter().flat_map(|e| e.rcpts()).collect();
    r.sort();
    assert_eq!(r, vec!["a@x.example", "b@x.example"]);
}

#[test]
fn bp_lists_the_queue_like_mailq() {
    let env = TestEnv::new();
    for (argv0, args) in [("sendmail", &["-bp"][..]), ("mailq", &[][..])] {
        let o = env.run(argv0, args, b"");
        ok(&o);
        assert_eq!(o.stdout, "Mail queue is empty\n", "{argv0}");
    }
    // one message that the (unreachable) relay deferred
    env.write_config(&env.relay_config(closed_port(), ""));
    ok(&env.sendmail(&["-f", "sender@x.example", "rcpt@y.example"], MSG));
    let id = env.single_entry().get("id").expect("id");
    let size = env.single_entry().message.len();
    ok(&env.queue_run());
    let a = env.run("sendmail", &["-bp"], b"");
    let b = env.run("mailq", &[], b"");
    ok(&a);
    ok(&b);
    assert_eq!(a.stdout, b.stdout);
    let lines: Vec<&str> = a.stdout.lines().collect();
    assert!(lines[0].starts_with("-Queue ID-"), "{}", a.stdout);
    assert!(lines[1].starts_with(&id), "{}", a.stdout);
    assert!(lines[1].contains(&size.to_string()), "{}", a.stdout);
    assert!(lines[1].ends_with("sender@x.example"), "{}", a.stdout);
    assert!(
        lines.iter().any(|l| l.trim_start().starts_with('(')),
        "deferral reason: {}",
        a.stdout
    );
    assert!(
        lines.iter().any(|l| l.trim() == "rcpt@y.example"),
        "{}",
        a.stdout
    );
    // the JSON form for scripts
    let j = env.run("postern", &["queue", "list", "--json"], b"");
    ok(&j);
    assert!(
        j.stdout.contains(&format!("\"queue_id\":\"{id}\"")),
        "{}",
        j.stdout
    );
}

#[test]
fn bp_shows_an_entry_waiting_for_pickup() {
    let env = TestEnv::new();
    ok(&env.sendmail(&["-odq", "a@x.example"], MSG));
    let id = env.single_entry().get("id").expect("id");
    let o = env.sendmail(&["-bp"], b"");
    ok(&o);
    assert!(o.stdout.contains(&id), "{}", o.stdout);
}

#[test]
fn bi_checks_aliases_like_newaliases() {
    let env = TestEnv::new();
    let aliases = env.root.join("aliases");
    std::fs::write(
        &aliases,
        "# comment\npostmaster: root\nroot: ops@x.example,\n  dev@x.example\nweb: |/usr/bin/cmd\n",
    )
    .unwrap();
    env.write_config(&format!(
        "{}[addresses]\naliases_file = \"{}\"\n",
        base_config(&env.root),
        aliases.display()
    ));
    for (argv0, args) in [("sendmail", &["-bi"][..]), ("newaliases", &[][..])] {
        let o = env.run(argv0, args, b"");
        ok(&o);
        assert!(o.stdout.contains("3 aliases, 0 errors"), "{argv0}: {o:?}");
        assert!(o.stdout.contains("1 pipe/file targets"), "{argv0}: {o:?}");
    }
    assert!(env.entries().is_empty());
}

#[test]
fn bv_shows_routing_and_delivers_nothing() {
    let env = TestEnv::new();
    let o = env.sendmail(&["-bv", "a@x.example", "root"], b"");
    ok(&o);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{o:?}");
    assert!(lines[0].starts_with("a@x.example... deliverable:"), "{o:?}");
    assert!(lines[0].ends_with("user a@x.example"), "{o:?}");
    assert!(
        lines[1].starts_with("root... deliverable:") && lines[1].ends_with("user root@example.com"),
        "{o:?}"
    );
    env.write_config(&format!(
        "{}[addresses]\nunknown_local = \"reject\"\n",
        base_config(&env.root)
    ));
    let o = env.sendmail(&["-bv", "nosuchuser-xyz", "a@x.example"], b"");
    assert_eq!(o.code, 67, "{o:?}");
    assert!(
        o.stdout.contains("nosuchuser-xyz... undeliverable:"),
        "{o:?}"
    );
    assert!(o.stdout.contains("a@x.example... deliverable:"), "{o:?}");
    assert!(env.entries().is_empty());
    assert!(env.files("maildrop").is_empty());
}

#[test]
fn q_flushes_the_queue() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    ok(&env.sendmail(&["-odq", "a@x.example"], MSG));
    ok(&env.sendmail(&["-odq", "b@x.example"], MSG));
    assert!(server.messages().is_empty());
    ok(&env.sendmail(&["-q"], b""));
    let got = server.wait_for(2, Duration::from_secs(10));
    let mut r: Vec<String> = got.iter().flat_map(|m| m.rcpts.clone()).collect();
    r.sort();
    assert_eq!(r, vec!["a@x.example", "b@x.example"]);
    assert!(env.entries().is_empty());
}

#[test]
fn q_with_interval_is_accepted() {
    let env = TestEnv::new();
    ok(&env.sendmail(&["-q30m"], b""));
    ok(&env.sendmail(&["-q1h"], b""));
    let o = env.sendmail(&["-qbogus"], b"");
    assert_eq!(o.code, 64, "{o:?}");
}

// ---- delivery modes ----------------------------------------------------------

#[test]
fn odq_only_queues() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    // run_on_submit on: without -odq a runner would be started
    env.write_config(
        &env.relay_config(server.port(), "")
            .replace("run_on_submit = false", "run_on_submit = true"),
    );
    let o = env.sendmail(&["-v", "-odq", "a@x.example"], MSG);
    ok(&o);
    assert!(o.stderr.contains("queued only"), "{o:?}");
    let e = env.single_entry();
    assert!(e.path.starts_with(env.spool.join("maildrop")));
    assert!(server.messages().is_empty());
    // the default mode (-odb) with run_on_submit starts a detached runner
    // that delivers both
    ok(&env.sendmail(&["-odb", "b@x.example"], MSG));
    let got = server.wait_for(2, Duration::from_secs(20));
    assert_eq!(got.len(), 2, "{got:?}");
}

#[test]
fn odi_delivers_before_returning() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    for flag in [&["-odi"][..], &["-ODeliveryMode=i"][..], &["-o", "di"][..]] {
        let mut args = flag.to_vec();
        args.push("a@x.example");
        let o = env.sendmail(&args, MSG);
        ok(&o);
        // delivered by the time the command returned
        assert!(env.entries().is_empty(), "{flag:?}");
    }
    let got = server.messages();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|m| m.rcpts == vec!["a@x.example"]));
}

fn refusing_server(reply: &'static str) -> SmtpServer {
    SmtpServer::start(ServerConfig {
        script: std::sync::Arc::new(move |ev: &Event| match ev {
            Event::Rcpt { .. } => {
                let (code, text) = reply.split_once(' ').unwrap();
                Action::Reply(code.parse().unwrap(), text.to_string())
            }
            _ => Action::Default,
        }),
        ..Default::default()
    })
}

#[test]
fn odi_refused_unknown_user_is_67_without_bounce() {
    let server = refusing_server("550 5.1.1 <a@x.example>: user unknown");
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    let o = env.sendmail(&["-odi", "a@x.example", "b@x.example"], MSG);
    assert_eq!(o.code, 67, "{o:?}");
    assert!(o.stderr.contains("550 5.1.1"), "{o:?}");
    assert!(o.stderr.contains("user unknown"), "{o:?}");
    // nothing left, and no bounce queued or sent
    assert!(env.entries().is_empty(), "{:?}", env.entries());
    assert!(env.files("queue").is_empty());
    assert!(server.messages().is_empty());
    ok(&env.queue_run());
    assert!(server.messages().is_empty());
}

#[test]
fn odi_partly_refused_is_0_and_the_sender_gets_a_bounce() {
    let server = refusing_server_for("b@x.example", "550 5.1.1 <b@x.example>: user unknown");
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    let o = env.sendmail(
        &["-odi", "-f", "s@y.example", "a@x.example", "b@x.example"],
        MSG,
    );
    ok(&o);
    // a@ got it; b@ is reported to the sender by a DSN, since the exit
    // status cannot say "half delivered"
    ok(&env.queue_run());
    let got = server.wait_for(2, Duration::from_secs(10));
    assert_eq!(got.len(), 2, "{got:?}");
    let orig = got
        .iter()
        .find(|m| m.mail_from == "s@y.example")
        .expect("original");
    assert_eq!(orig.rcpts, vec!["a@x.example"]);
    let bounce = got.iter().find(|m| m.mail_from.is_empty()).expect("bounce");
    assert_eq!(bounce.rcpts, vec!["s@y.example"]);
    let dsn = String::from_utf8_lossy(&bounce.data);
    assert!(
        dsn.contains("b@x.example") && dsn.contains("5.1.1"),
        "{dsn}"
    );
    assert!(env.entries().is_empty());
}

fn refusing_server_for(rcpt: &'static str, reply: &'static str) -> SmtpServer {
    SmtpServer::start(ServerConfig {
        script: std::sync::Arc::new(move |ev: &Event| match ev {
            Event::Rcpt { to, .. } if *to == rcpt => {
                let (code, text) = reply.split_once(' ').unwrap();
                Action::Reply(code.parse().unwrap(), text.to_string())
            }
            _ => Action::Default,
        }),
        ..Default::default()
    })
}

#[test]
fn odi_refused_policy_is_69() {
    let server = refusing_server("550 5.7.1 relaying denied");
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    let o = env.sendmail(&["-odi", "a@x.example"], MSG);
    assert_eq!(o.code, 69, "{o:?}");
    assert!(o.stderr.contains("550 5.7.1 relaying denied"), "{o:?}");
    assert!(env.entries().is_empty());
    assert!(server.messages().is_empty());
}

#[test]
fn odi_with_server_down_exits_0_and_keeps_the_message() {
    let env = TestEnv::new();
    env.write_config(&env.relay_config(closed_port(), ""));
    let o = env.sendmail(&["-odi", "a@x.example"], MSG);
    ok(&o);
    let e = env.single_entry();
    assert_eq!(e.rcpts(), vec!["a@x.example"]);
}

#[test]
fn error_modes_are_accepted() {
    let env = TestEnv::new();
    for f in ["-oem", "-oep", "-oeq", "-oew", "-OErrorMode=m"] {
        ok(&env.sendmail(&[f, "a@x.example"], MSG));
    }
    assert_eq!(env.entries().len(), 5);
    // -oeq: quiet, the exit status alone reports the error
    let o = env.sendmail(&["-oeq"], MSG);
    assert_eq!(o.code, 64);
    assert!(o.stderr.is_empty(), "{o:?}");
}

#[test]
fn verbose_shows_routing_and_dialogue() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    let o = env.sendmail(&["-v", "-odi", "a@x.example"], MSG);
    ok(&o);
    assert_eq!(server.messages().len(), 1);
    assert!(o.stderr.contains("a@x.example"), "{o:?}");
    assert!(
        o.stderr.to_ascii_uppercase().contains("MAIL FROM"),
        "SMTP dialogue: {o:?}"
    );
    // -v alone with queueing only
    let o = env.sendmail(&["-v", "-odq", "b@x.example"], MSG);
    ok(&o);
    assert_eq!(env.single_entry().rcpts(), vec!["b@x.example"]);
}

// ---- DSN --------------------------------------------------------------------

#[test]
fn dsn_options_are_stored_and_passed_on() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    ok(&env.sendmail(
        &[
            "-N",
            "success,failure",
            "-R",
            "hdrs",
            "-V",
            "env-42",
            "a@x.example",
        ],
        MSG,
    ));
    let e = env.single_entry();
    assert_eq!(e.get("notify").as_deref(), Some("SUCCESS,FAILURE"));
    assert_eq!(e.get("ret").as_deref(), Some("HDRS"));
    assert_eq!(e.get("envid").as_deref(), Some("env-42"));
    ok(&env.queue_run());
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    let m = &got[0];
    let mp = m.mail_params.to_ascii_uppercase();
    assert!(mp.contains("RET=HDRS"), "{m:?}");
    assert!(mp.contains("ENVID=ENV-42"), "{m:?}");
    assert_eq!(m.rcpt_params.len(), 1);
    assert!(
        m.rcpt_params[0]
            .to_ascii_uppercase()
            .contains("NOTIFY=SUCCESS,FAILURE"),
        "{m:?}"
    );
}

#[test]
fn dsn_never_and_full() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    ok(&env.sendmail(&["-Nnever", "-Rfull", "a@x.example"], MSG));
    let e = env.single_entry();
    assert_eq!(e.get("notify").as_deref(), Some("NEVER"));
    assert_eq!(e.get("ret").as_deref(), Some("FULL"));
    assert_eq!(e.get("envid"), None);
    ok(&env.queue_run());
    let got = server.wait_for(1, Duration::from_secs(10));
    assert!(
        got[0].mail_params.to_ascii_uppercase().contains("RET=FULL"),
        "{:?}",
        got[0]
    );
    assert!(
        got[0].rcpt_params[0]
            .to_ascii_uppercase()
            .contains("NOTIFY=NEVER"),
        "{:?}",
        got[0]
    );
    // bad values are usage errors
    for args in [
        &["-N", "sometimes", "a@x.example"][..],
        &["-R", "body", "a@x.example"][..],
    ] {
        assert_eq!(env.sendmail(args, MSG).code, 64, "{args:?}");
    }
}

#[test]
fn without_dsn_options_nothing_is_sent() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    ok(&env.sendmail(&["a@x.example"], MSG));
    let e = env.single_entry();
    assert_eq!(e.get("notify"), None);
    assert_eq!(e.get("ret"), None);
    ok(&env.queue_run());
    let got = server.wait_for(1, Duration::from_secs(10));
    let mp = got[0].mail_params.to_ascii_uppercase();
    assert!(
        !mp.contains("RET=") && !mp.contains("ENVID="),
        "{:?}",
        got[0]
    );
    assert!(
        !got[0].rcpt_params[0]
            .to_ascii_uppercase()
            .contains("NOTIFY"),
        "{:?}",
        got[0]
    );
}

// ---- configuration ----------------------------------------------------------

#[test]
fn dash_c_and_postern_config_are_honoured() {
    let env = TestEnv::new();
    let other = env.root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let cfg = other.join("alt.toml");
    std::fs::write(
        &cfg,
        base_config(&other).replace("example.com\"\nspool", "alt.example\"\nspool"),
    )
    .unwrap();
    // -C FILE beats POSTERN_CONFIG
    let mut c = env.cmd("sendmail");
    c.arg("-C").arg(&cfg);
    ok(&env.run_cmd(c, &["a@x.example"], MSG));
    assert!(env.entries().is_empty());
    let alt = support::Entry::read(
        &std::fs::read_dir(other.join("spool/maildrop"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    assert_eq!(alt.sender(), format!("{}@alt.example", me()));
    // POSTERN_CONFIG alone
    let mut c = env.cmd("sendmail");
    c.env("POSTERN_CONFIG", &cfg);
    ok(&env.run_cmd(c, &["b@x.example"], MSG));
    assert_eq!(
        std::fs::read_dir(other.join("spool/maildrop"))
            .unwrap()
            .count(),
        2
    );
    assert!(env.entries().is_empty());
    // the default one
    ok(&env.sendmail(&["c@x.example"], MSG));
    assert_eq!(env.single_entry().sender(), format!("{}@example.com", me()));
}
