//! Compatibility, round 2 (issue 12): what real callers and the peers' own
//! test cases caught. Each test goes through the real binary.

use crate::support;

use std::time::Duration;
use support::smtp_server::{ServerConfig, SmtpServer};
use support::{Out, TestEnv, base_config};

const MSG: &[u8] = b"Subject: compat\n\nhello\n";

fn ok(o: &Out) {
    assert_eq!(o.code, 0, "expected exit 0: {o:?}");
}

/// A test installation relaying to `server`, with `addresses` in [addresses].
fn relayed(server: &SmtpServer, addresses: &str) -> TestEnv {
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}[addresses]\naliases_file = \"{}\"\n{addresses}\n[[relay]]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        base_config(&env.root),
        env.root.join("aliases").display(),
        server.port()
    ));
    env
}

fn sorted_rcpts(got: &[support::smtp_server::Received]) -> Vec<String> {
    let mut r: Vec<String> = got.iter().flat_map(|m| m.rcpts.clone()).collect();
    r.sort();
    r
}

// ---- item 1: unqualified / local recipients ----------------------------------

#[test]
fn unknown_local_names_are_qualified_and_relayed_by_default() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = relayed(&server, "");
    // The issue's own command line: `sendmail -f alice bob carol@localhost`.
    let o = env.sendmail(
        &[
            "-f",
            "alice",
            "bob",
            "carol@localhost",
            "dave@web1.example.com",
        ],
        MSG,
    );
    ok(&o);
    assert_eq!(env.single_entry().sender(), "alice@example.com");
    env.queue_run();
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].mail_from, "alice@example.com");
    assert_eq!(
        sorted_rcpts(&got),
        vec!["bob@example.com", "carol@example.com", "dave@example.com"]
    );
}

#[test]
fn local_recipient_catches_every_local_name_account_or_not() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = relayed(&server, "local_recipient = \"ops+%u@example.net\"");
    std::fs::write(env.root.join("aliases"), "team: lead@example.org\n").unwrap();
    // webmaster: no account, no alias; root: always there; team: an alias.
    let o = env.sendmail(&["webmaster", "root@localhost", "team"], MSG);
    ok(&o);
    env.queue_run();
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(
        sorted_rcpts(&got),
        vec![
            "lead@example.org",
            "ops+root@example.net",
            "ops+webmaster@example.net"
        ]
    );
}

#[test]
fn bv_shows_the_local_rule_and_reject_is_an_option() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = relayed(&server, "");
    let o = env.sendmail(&["-bv", "webmaster", "ops@localhost"], b"");
    ok(&o);
    let port = server.port();
    assert!(
        o.stdout.contains(&format!(
            "webmaster... deliverable: mailer esmtp, host 127.0.0.1:{port}, user webmaster@example.com"
        )),
        "{o:?}"
    );
    assert!(
        o.stdout.contains("ops@localhost... deliverable:")
            && o.stdout.contains("user ops@example.com"),
        "{o:?}"
    );
    // unknown_local = "reject": sendmail's refusal, in -bv, argv and -bs.
    let env = relayed(&server, "unknown_local = \"reject\"");
    let o = env.sendmail(&["-bv", "webmaster-xyz", "root"], b"");
    assert_eq!(o.code, 67, "{o:?}");
    assert!(
        o.stdout
            .contains("webmaster-xyz... undeliverable: unknown local user"),
        "{o:?}"
    );
    assert!(o.stdout.contains("root... deliverable:"), "{o:?}");
    let o = env.sendmail(&["webmaster-xyz"], MSG);
    assert_eq!(o.code, 67, "{o:?}");
    assert!(env.entries().is_empty());
    let o = env.sendmail(
        &["-bs"],
        b"EHLO c.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<webmaster-xyz>\r\nQUIT\r\n",
    );
    assert!(o.stdout.contains("\r\n550 5.1.1 "), "{o:?}");
}

#[test]
fn bs_accepts_unqualified_rcpt_by_default() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = relayed(&server, "");
    let o = env.sendmail(
        &["-bs"],
        b"EHLO c.example\r\nMAIL FROM:<www-data>\r\nRCPT TO:<webmaster>\r\nDATA\r\nSubject: x\r\n\r\nx\r\n.\r\nQUIT\r\n",
    );
    ok(&o);
    assert!(o.stdout.contains("queued as"), "{o:?}");
    env.queue_run();
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got[0].mail_from, "www-data@example.com");
    assert_eq!(got[0].rcpts, vec!["webmaster@example.com"]);
}

// ---- item 4: obsolete header syntax goes out in the normal form ---------------

#[test]
fn obsolete_field_names_are_sent_in_the_normal_form() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = relayed(&server, "");
    let msg = b"Foo : bar\nSubject\t: obs subject\nX-Folded :first\n  second : part\nTo : rcpt@x.example\n\nbody : stays\n";
    ok(&env.sendmail(&["-t", "-f", "s@x.example"], msg));
    env.queue_run();
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].rcpts, vec!["rcpt@x.example"]);
    let data = String::from_utf8_lossy(&got[0].data).into_owned();
    let (head, body) = data.split_once("\r\n\r\n").expect("header/body");
    for line in [
        "Foo: bar",
        "Subject: obs subject",
        "X-Folded:first\r\n  second : part",
        "To: rcpt@x.example",
    ] {
        assert!(
            head.contains(&format!("\r\n{line}\r\n")),
            "{line:?} not in {head:?}"
        );
    }
    for l in head.lines() {
        if !l.starts_with([' ', '\t']) {
            let name = l.split(':').next().unwrap();
            assert!(!name.ends_with([' ', '\t']), "obsolete form sent: {l:?}");
        }
    }
    assert_eq!(body, "body : stays\r\n");
}

// ---- item 6: the host name from a commented hosts file -----------------------

/// A cloud-init hosts file: comments and blank lines first.
const CLOUD_HOSTS: &str = "\
# Your system has configured 'manage_etc_hosts' as True.
# As a result, if you wish for changes to this file to persist
# then you will need to either
# a.) make changes to the master file in /etc/cloud/templates/hosts.debian.tmpl
# b.) change or remove the value of 'manage_etc_hosts' in
#     /etc/cloud/cloud.cfg or cloud-config from user-data
#

127.0.1.1 web1.example.com web1
127.0.0.1 localhost

# The following lines are desirable for IPv6 capable hosts
::1 localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
";

/// An installation with no hostname/domain in its config, whose system
/// name sources are test files: node name `web1`, no mail name file.
fn unnamed(server: &SmtpServer, hosts: &str) -> (TestEnv, Vec<(String, String)>) {
    let env = TestEnv::new();
    let cfg = base_config(&env.root);
    let cfg: String = cfg
        .lines()
        .filter(|l| !l.starts_with("hostname") && !l.starts_with("domain"))
        .map(|l| format!("{l}\n"))
        .collect();
    env.write_config(&format!(
        "{cfg}\n[[relay]]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        server.port()
    ));
    let hosts_file = env.root.join("hosts");
    std::fs::write(&hosts_file, hosts).unwrap();
    let vars = vec![
        (
            "POSTERN_HOSTS_FILE".to_string(),
            hosts_file.display().to_string(),
        ),
        (
            "POSTERN_MAILNAME_FILE".to_string(),
            env.root.join("no-mailname").display().to_string(),
        ),
        ("POSTERN_NODENAME".to_string(), "web1".to_string()),
    ];
    (env, vars)
}

fn run_with(
    env: &TestEnv,
    vars: &[(String, String)],
    argv0: &str,
    args: &[&str],
    stdin: &[u8],
) -> Out {
    let mut c = env.cmd(argv0);
    for (k, v) in vars {
        c.env(k, v);
    }
    env.run_cmd(c, args, stdin)
}

#[test]
fn short_host_name_is_qualified_by_a_commented_hosts_file() {
    let server = SmtpServer::start(ServerConfig::default());
    let (env, vars) = unnamed(&server, CLOUD_HOSTS);
    let o = run_with(&env, &vars, "sendmail", &["-bv", "root"], b"");
    ok(&o);
    assert!(o.stdout.contains("user root@web1.example.com"), "{o:?}");
    ok(&run_with(&env, &vars, "sendmail", &["ops@x.example"], MSG));
    let e = env.single_entry();
    assert!(
        e.headers().contains("Received: by web1.example.com "),
        "{}",
        e.headers()
    );
    assert!(
        e.headers().contains("@web1.example.com>"),
        "Message-ID: {}",
        e.headers()
    );
    run_with(&env, &vars, "postern", &["queue", "run"], b"");
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].mail_from.ends_with("@web1.example.com"),
        "{}",
        got[0].mail_from
    );
    let ehlo: Vec<Option<String>> = server.sessions().into_iter().map(|s| s.ehlo).collect();
    assert!(
        ehlo.iter()
            .all(|h| h.as_deref() == Some("web1.example.com")),
        "{ehlo:?}"
    );
}

#[test]
fn mail_name_file_wins_and_an_unlisted_short_name_stays_short() {
    let server = SmtpServer::start(ServerConfig::default());
    // Not in the hosts file: the short name as it is.
    let (env, vars) = unnamed(&server, "# empty but for comments\n\n127.0.0.1 localhost\n");
    let o = run_with(&env, &vars, "sendmail", &["-bv", "root"], b"");
    assert!(o.stdout.contains("user root@web1\n"), "{o:?}");
    // /etc/mailname (here a test file) comes first.
    let (env, mut vars) = unnamed(&server, CLOUD_HOSTS);
    let mailname = env.root.join("mailname");
    std::fs::write(&mailname, "mail.example.org\n").unwrap();
    vars[1].1 = mailname.display().to_string();
    let o = run_with(&env, &vars, "sendmail", &["-bv", "root"], b"");
    assert!(o.stdout.contains("user root@mail.example.org\n"), "{o:?}");
}

// ---- item 3: the -bs grammar (RFC 5321 4.1), as dialogues --------------------

/// Run a whole `-bs` dialogue; the replies, one string per reply (the
/// last line of a multi-line reply), after the 220 greeting.
fn dialogue(env: &TestEnv, commands: &[&str]) -> Vec<String> {
    let mut input = String::new();
    for c in commands {
        input.push_str(c);
        input.push_str("\r\n");
    }
    let o = env.sendmail(&["-bs"], input.as_bytes());
    ok(&o);
    let replies: Vec<String> = o
        .stdout
        .split("\r\n")
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .map(str::to_string)
        .collect();
    assert!(replies[0].starts_with("220 "), "{o:?}");
    replies[1..].to_vec()
}

fn expect(replies: &[String], commands: &[&str], codes: &[&str]) {
    assert_eq!(replies.len(), codes.len(), "{replies:#?}");
    for ((r, c), code) in replies.iter().zip(commands).zip(codes) {
        assert!(
            r.starts_with(&format!("{code} ")),
            "{c:?} got {r:?}, want {code}"
        );
    }
}

#[test]
fn bs_helo_and_ehlo_need_a_domain() {
    let env = TestEnv::new();
    let cmds = [
        "HELO",
        "EHLO",
        "EHLO ",
        "helo   ",
        "MAIL FROM:<a@x.example>",
        "EHLO client.example",
        "HELO [192.0.2.1]",
        "QUIT",
    ];
    let r = dialogue(&env, &cmds);
    expect(
        &r,
        &cmds,
        &["501", "501", "501", "501", "250", "250", "250", "221"],
    );
    assert_eq!(r[0], "501 5.5.4 Syntax: HELO hostname");
    assert_eq!(r[1], "501 5.5.4 Syntax: EHLO hostname");
}

#[test]
fn bs_mail_and_rcpt_argument_syntax() {
    let env = TestEnv::new();
    let long_local = "l".repeat(600);
    let long_rcpt = format!("RCPT TO:<{long_local}@x.example>");
    let cmds = [
        "EHLO c.example",
        "MAIL FROM:",                            // no path
        "MAIL FROM:<a@x.example",                // unterminated
        "MAIL FROM:<a@x.example>SIZE=10",        // glued parameter
        "MAIL FROM:<a@x.example> SIZE=",         // empty value
        "MAIL FROM:<a@x.example> -BAD=1",        // not an esmtp-keyword
        "MAIL FROM:<a@x.example> SIZE=1 SIZE=2", // repeated
        "MAIL FROM:<a@x.example> SMTPUTF8=yes",
        "MAIL FROM:<a@x.example> X-UNKNOWN=1", // well-formed, unsupported
        "MAIL FROM:<a@x.example> FOO",
        "MAIL FROM <a@x.example>",                         // no colon
        "MAIL FROM: <a@x.example> SIZE=100 BODY=8BITMIME", // blank after colon: tolerated
        "RCPT TO:",
        "RCPT TO:<>",
        "RCPT TO:<b@y.example> NOTIFY=NEVER,SUCCESS",
        "RCPT TO:<b@y.example> ORCPT=rfc822",
        "RCPT TO:<b@y.example> ORCPT=rfc822;b@y.example NOTIFY=FAILURE,DELAY",
        "RCPT TO:<@relay.example:c@y.example>", // source route dropped
        "RCPT TO:<d@y.example> XYZ=1",
        &long_rcpt, // within 512 + 500
        "DATA now",
        "DATA",
        "Subject: grammar\r\n\r\nbody\r\n.",
        "QUIT",
    ];
    let r = dialogue(&env, &cmds);
    expect(
        &r,
        &cmds,
        &[
            "250", "501", "501", "501", "501", "501", "501", "501", "555", "555", "501", "250",
            "501", "501", "501", "501", "250", "250", "555", "250", "501", "354", "250", "221",
        ],
    );
    let e = env.single_entry();
    assert_eq!(e.sender(), "a@x.example");
    assert_eq!(
        e.rcpts(),
        vec![
            "b@y.example".to_string(),
            "c@y.example".to_string(),
            format!("{long_local}@x.example")
        ]
    );
}

#[test]
fn bs_command_line_length_and_argument_rules() {
    let env = TestEnv::new();
    // 512 octets with CRLF is the limit for a command without extensions.
    let noop_ok = format!("NOOP {}", "x".repeat(510 - 5));
    let noop_long = format!("NOOP {}", "x".repeat(511 - 5));
    // MAIL may be longer by what SIZE, BODY, RET, ENVID and SMTPUTF8 add
    // (674 with CRLF), RCPT by NOTIFY and ORCPT (1012).
    let mail_ok = format!("MAIL FROM:<{}@x.example> SIZE=1", "m".repeat(600));
    let mail_long = format!("MAIL FROM:<{}@x.example>", "m".repeat(700));
    let rcpt_long = format!("RCPT TO:<{}@x.example>", "r".repeat(1000));
    let cmds = [
        "EHLO c.example",
        &noop_ok,
        &noop_long,
        &mail_long,
        &mail_ok,
        &rcpt_long,
        "VRFY",
        "VRFY root",
        "RSET now",
        "QUIT now",
        "HELP MAIL",
        "RSET",
        "QUIT",
    ];
    assert_eq!(noop_ok.len() + 2, 512);
    let r = dialogue(&env, &cmds);
    expect(
        &r,
        &cmds,
        &[
            "250", "250", "500", "500", "250", "500", "501", "252", "501", "501", "214", "250",
            "221",
        ],
    );
    assert_eq!(r[2], "500 5.5.2 Error: line too long");
    assert!(env.entries().is_empty());
}
