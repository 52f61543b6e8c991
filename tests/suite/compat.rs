//! Compatibility with what callers expect of `/usr/sbin/sendmail`: the name
//! the binary is called by (argv[0]), the help texts, the legacy flags real
//! callers pass (accepted and ignored), unknown and unsupported flags (64),
//! and one sysexits code per error class.

use crate::support;

use std::os::unix::process::CommandExt;
use support::smtp_server::{Action, Event, ServerConfig, SmtpServer};
use support::{Out, TestEnv, base_config};

const MSG: &[u8] = b"Subject: compat\n\nhello\n";

fn ok(o: &Out) {
    assert_eq!(o.code, 0, "expected exit 0: {o:?}");
}

// ---- argv[0] -----------------------------------------------------------------

#[test]
fn sendmail_and_send_mail_submit() {
    let env = TestEnv::new();
    ok(&env.run("sendmail", &["a@x.example"], MSG));
    ok(&env.run("send-mail", &["b@x.example"], MSG));
    let mut r: Vec<String> = env.entries().iter().flat_map(|e| e.rcpts()).collect();
    r.sort();
    assert_eq!(r, vec!["a@x.example", "b@x.example"]);
}

#[test]
fn full_paths_and_unknown_names_behave_as_sendmail() {
    let env = TestEnv::new();
    for argv0 in ["/usr/lib/sendmail", "/usr/sbin/sendmail", "mail-relay"] {
        let mut c = std::process::Command::new(support::bin());
        c.arg0(argv0).env("POSTERN_CONFIG", &env.config);
        ok(&env.run_cmd(c, &["-oi", "a@x.example"], MSG));
    }
    assert_eq!(env.entries().len(), 3);
    // the program name in messages is the last path component
    let mut c = std::process::Command::new(support::bin());
    c.arg0("/usr/lib/sendmail")
        .env("POSTERN_CONFIG", &env.config);
    let o = env.run_cmd(c, &["-k"], MSG);
    assert_eq!(o.code, 64);
    assert!(o.stderr.starts_with("sendmail: unknown option -k"), "{o:?}");
}

#[test]
fn mailq_lists_and_newaliases_checks() {
    let env = TestEnv::new();
    let o = env.run("mailq", &[], b"");
    ok(&o);
    assert_eq!(o.stdout, "Mail queue is empty\n");
    ok(&env.sendmail(&["-odq", "a@x.example"], MSG));
    let id = env.single_entry().get("id").unwrap();
    let o = env.run("mailq", &[], b"");
    ok(&o);
    assert!(o.stdout.contains(&id), "{o:?}");
    let o = env.run("newaliases", &[], b"");
    ok(&o);
    assert!(o.stdout.contains("does not exist"), "{o:?}");
    // neither reads stdin nor queues anything
    assert_eq!(env.entries().len(), 1);
}

/// `mailq | head -1`: the reader goes away while the listing is written.
/// The command ends quietly with its own exit code: not killed by SIGPIPE,
/// no panic about a failed print. Output lost to another error (`mailq >
/// /dev/full`) is said on stderr and is not a success (74, EX_IOERR).
#[test]
fn a_listing_whose_reader_went_away_ends_quietly() {
    use std::process::Stdio;
    let env = TestEnv::new();
    for i in 0..60 {
        ok(&env.sendmail(&["-odq", &format!("user{i}@x.example")], MSG));
    }
    for (argv0, args) in [
        ("mailq", &[][..]),
        ("mailq", &["--json"][..]),
        ("sendmail", &["-bp"][..]),
        ("postern", &["queue", "list"][..]),
        ("postern", &["status"][..]),
        ("postern", &["--help"][..]),
    ] {
        let mut c = env.cmd(argv0);
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        drop(child.stdout.take()); // the reader is gone before the first line
        let o = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{argv0} {args:?}: {:?} {stderr}",
            o.status
        );
        assert!(!stderr.contains("panicked"), "{argv0} {args:?}: {stderr}");
    }
    if std::path::Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let o = env
            .cmd("mailq")
            .stdin(Stdio::null())
            .stdout(full)
            .stderr(Stdio::piped())
            .output()
            .expect("mailq > /dev/full");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(74), "{:?} {stderr}", o.status);
        assert!(
            stderr.starts_with("postern: cannot write to standard output: "),
            "{stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
}

#[test]
fn postern_admin_and_its_sendmail_subcommand() {
    let env = TestEnv::new();
    let o = env.run("postern", &["--version"], b"");
    ok(&o);
    assert_eq!(o.stdout, format!("postern {}\n", env!("CARGO_PKG_VERSION")));
    ok(&env.run("postern", &["sendmail", "-i", "a@x.example"], MSG));
    assert_eq!(env.single_entry().rcpts(), vec!["a@x.example"]);
    let o = env.run("postern", &["frobnicate"], b"");
    assert_eq!(o.code, 64, "{o:?}");
}

// ---- help ----------------------------------------------------------------------

#[test]
fn help_texts() {
    let env = TestEnv::new();
    let o = env.sendmail(&["--help"], b"");
    ok(&o);
    for needle in [
        "usage: sendmail",
        "-t",
        "-i, -oi",
        "-bs",
        "-bp",
        "-bv",
        "-odi",
        "-odq",
        "-N never",
        "Exit status",
    ] {
        assert!(
            o.stdout.contains(needle),
            "{needle:?} missing from sendmail --help"
        );
    }
    for args in [&["--help"][..], &["help"][..], &[][..]] {
        let o = env.run("postern", args, b"");
        ok(&o);
        for needle in [
            "usage: postern",
            "daemon",
            "queue list",
            "queue run",
            "sendmail ARGS",
        ] {
            assert!(
                o.stdout.contains(needle),
                "{needle:?} missing from postern {args:?}"
            );
        }
    }
    // help never queues anything, even with recipients and a message
    ok(&env.sendmail(&["--help", "a@x.example"], MSG));
    assert!(env.entries().is_empty());
}

// ---- legacy flags --------------------------------------------------------------

#[test]
fn legacy_flags_are_accepted_and_ignored() {
    let env = TestEnv::new();
    let sets: &[&[&str]] = &[
        &["-B", "8BITMIME"],
        &["-B7BIT"],
        &["-L", "tag"],
        &["-Ltag"],
        &["-h", "5"],
        &["-h5"],
        &["-n"],
        &["-m"],
        &["-U"],
        &["-X", "/tmp/traffic.log"],
        &["-A", "c"],
        &["-Am"],
        &["-oQ/var/spool/mqueue"],
        &["-oA/etc/aliases"],
        &["-oee"],
        &["-ODeliveryMode=b"],
        &["-O", "DeliveryMode=background"],
        &["-OQueueDirectory=/x"],
        &["-G"],
        &["-c"],
        &["-x"],
        &["-nm", "-U"],
    ];
    for s in sets {
        let mut args = s.to_vec();
        args.push("a@x.example");
        let o = env.sendmail(&args, MSG);
        ok(&o);
        assert!(o.stderr.is_empty(), "{s:?}: {o:?}");
    }
    assert_eq!(env.entries().len(), sets.len());
    for e in env.entries() {
        assert_eq!(e.rcpts(), vec!["a@x.example"]);
        assert_eq!(e.body(), b"hello\n");
    }
}

#[test]
fn ignored_flags_are_logged_at_debug() {
    let env = TestEnv::new();
    let o = env.sendmail(
        &["-v", "-B8BITMIME", "-L", "tag", "-odq", "a@x.example"],
        MSG,
    );
    ok(&o);
    assert!(o.stderr.contains("-B8BITMIME"), "{o:?}");
    assert!(o.stderr.contains("-Ltag"), "{o:?}");
}

#[test]
fn what_real_callers_run() {
    let msg_t = b"To: root\nFrom: app@x.example\nSubject: s\n\nbody\n.\nmore\n";
    // (who, argv, stdin, expected recipients)
    type Case<'a> = (&'a str, &'a [&'a str], &'a [u8], &'a [&'a str]);
    let cases: &[Case] = &[
        // PHP mail(): sendmail_path = "/usr/sbin/sendmail -t -i"
        ("php", &["-t", "-i"], msg_t, &["root"]),
        // PHP with -f from the additional parameters
        ("php -f", &["-t", "-i", "-fapp@x.example"], msg_t, &["root"]),
        // cron (Debian)
        (
            "cron",
            &["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
            MSG,
            &["root"],
        ),
        // cronie
        (
            "cronie",
            &[
                "-FCronDaemon",
                "-i",
                "-odi",
                "-oem",
                "-oi",
                "-t",
                "-f",
                "root",
            ],
            msg_t,
            &["root"],
        ),
        // mailx / s-nail
        ("mailx", &["-i", "--", "a@x.example"], MSG, &["a@x.example"]),
        // git send-email
        (
            "git",
            &["-i", "-f", "dev@x.example", "a@x.example", "b@x.example"],
            MSG,
            &["a@x.example", "b@x.example"],
        ),
        // logwatch / mdadm / smartd
        (
            "logwatch",
            &["-t"],
            b"To: root\nSubject: report\n\nx\n",
            &["root"],
        ),
        // Exim-style callers
        (
            "exim-style",
            &["-oi", "-oem", "-odb", "--", "a@x.example"],
            MSG,
            &["a@x.example"],
        ),
    ];
    for (who, args, input, want) in cases {
        let env = TestEnv::new();
        let o = env.sendmail(args, input);
        // cronie passes -odi: with no relay configured it stays queued (exit 0)
        ok(&o);
        let e = env.single_entry();
        assert_eq!(e.rcpts(), want.to_vec(), "{who}");
    }
}

// ---- unknown and unsupported flags --------------------------------------------

#[test]
fn unknown_and_unsupported_flags_are_64() {
    let env = TestEnv::new();
    let cases: &[(&[&str], &str)] = &[
        (&["-k", "a@x.example"], "unknown option -k"),
        (&["-Z"], "unknown option -Z"),
        (&["--bogus"], "unknown option --bogus"),
        (&["-bz"], "-bz is not supported"),
        (&["-bd"], "not supported"),
        (&["-bD"], "not supported"),
        (&["-bt"], "-bv"),
        (&["-odx", "a@x.example"], "unknown delivery mode"),
        (&["-oez", "a@x.example"], "unknown error mode"),
    ];
    for (args, msg) in cases {
        let o = env.sendmail(args, MSG);
        assert_eq!(o.code, 64, "{args:?}: {o:?}");
        assert_eq!(o.stderr.lines().count(), 1, "{args:?}: {o:?}");
        assert!(o.stderr.starts_with("sendmail: "), "{args:?}: {o:?}");
        assert!(o.stderr.contains(msg), "{args:?}: {o:?}");
    }
    assert!(env.entries().is_empty());
}

// ---- sysexits, one per class -------------------------------------------------

#[test]
fn one_exit_code_per_error_class() {
    // 64 usage
    let env = TestEnv::new();
    assert_eq!(env.sendmail(&["-k"], MSG).code, 64);
    // 65 data
    assert_eq!(env.sendmail(&["a@@x"], MSG).code, 65);
    assert_eq!(env.sendmail(&["a@x.example"], b"Subject: \0\n\n").code, 65);
    // 67 no such user (with the sendmail-style refusal)
    let reject = TestEnv::new();
    reject.write_config(&format!(
        "{}[addresses]\nunknown_local = \"reject\"\n",
        base_config(&reject.root)
    ));
    assert_eq!(reject.sendmail(&["nosuchuser-xyz"], MSG).code, 67);
    // 73/75 cannot create the queue file
    let broken = TestEnv::new();
    std::fs::write(&broken.spool, "file").unwrap();
    let c = broken.sendmail(&["a@x.example"], MSG).code;
    assert!(c == 73 || c == 75, "{c}");
    // 78 configuration
    let bad = TestEnv::new();
    bad.write_config(&format!(
        "log = \"nowhere\"\n{}",
        base_config(&bad.root).replacen(&format!("log = \"{}\"\n", bad.log.display()), "", 1)
    ));
    assert_eq!(bad.sendmail(&["a@x.example"], MSG).code, 78);
    // 69 refused (-odi), 67 for an unknown user at the relay
    for (reply, code) in [("550 5.7.1 no", 69), ("550 5.1.1 unknown", 67)] {
        let server = SmtpServer::start(ServerConfig {
            script: std::sync::Arc::new(move |ev: &Event| match ev {
                Event::Rcpt { .. } => {
                    let (c, t) = reply.split_once(' ').unwrap();
                    Action::Reply(c.parse().unwrap(), t.to_string())
                }
                _ => Action::Default,
            }),
            ..Default::default()
        });
        let env = TestEnv::new();
        env.write_config(&env.relay_config(server.port(), ""));
        assert_eq!(
            env.sendmail(&["-odi", "a@x.example"], MSG).code,
            code,
            "{reply}"
        );
    }
    // nothing was left behind by any of them
    assert!(env.entries().is_empty());
}

#[test]
fn newaliases_reports_syntax_errors_with_65() {
    let env = TestEnv::new();
    let aliases = env.root.join("aliases");
    std::fs::write(&aliases, "good: a@x.example\nbad line without colon\n").unwrap();
    env.write_config(&format!(
        "{}[addresses]\naliases_file = \"{}\"\n",
        base_config(&env.root),
        aliases.display()
    ));
    for (argv0, args) in [("newaliases", &[][..]), ("sendmail", &["-bi"][..])] {
        let o = env.run(argv0, args, b"");
        assert_eq!(o.code, 65, "{o:?}");
        assert!(o.stdout.contains("1 aliases, 1 errors"), "{o:?}");
        assert!(
            o.stderr.contains(&format!("{}:2:", aliases.display())),
            "{o:?}"
        );
    }
}
