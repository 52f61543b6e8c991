//! Compatibility, round 3 (issue 12, items 2, 5, 6 and 7): the relay's SIZE as
//! the default limit, mailq showing waiting messages to who may read them,
//! `postern check` naming the host name in use, AUTH in plain text to a
//! loopback relay only when the config says so. Each test goes through the
//! real binary against the test SMTP server.

use crate::support;

use std::time::Duration;
use support::smtp_server::{AuthConfig, ServerConfig, SmtpServer};
use support::{Out, TestEnv, base_config};

const MSG: &[u8] = b"Subject: compat3\n\nhello\n";

fn ok(o: &Out) {
    assert_eq!(o.code, 0, "expected exit 0: {o:?}");
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn secret_file(env: &TestEnv, secret: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = env.root.join("relay.secret");
    std::fs::write(&p, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    p
}

// ---- item 7: AUTH in plain text to a loopback relay ---------------------------

fn plain_auth_server() -> SmtpServer {
    SmtpServer::start(ServerConfig {
        auth: Some(AuthConfig {
            mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
            username: "sidecar".into(),
            secret: "s3cret".into(),
        }),
        require_tls_for_auth: false,
        require_auth: true,
        ..Default::default()
    })
}

fn plain_auth_config(env: &TestEnv, host: &str, port: u16, extra: &str) -> String {
    let pw = secret_file(env, "s3cret");
    format!(
        "{}[[relay]]\nhost = \"{host}\"\nport = {port}\ntls = \"none\"\nusername = \"sidecar\"\npassword_file = \"{}\"\n{extra}",
        base_config(&env.root),
        pw.display()
    )
}

#[test]
fn plaintext_auth_to_loopback_is_refused_by_default() {
    let server = plain_auth_server();
    let env = TestEnv::new();
    env.write_config(&plain_auth_config(&env, "127.0.0.1", server.port(), ""));
    ok(&env.sendmail(&["a@x.test"], MSG));
    env.queue_run_at(now());
    assert!(server.messages().is_empty());
    assert!(
        env.log().contains("refusing to send credentials"),
        "{}",
        env.log()
    );
    for s in server.sessions() {
        assert!(
            !s.commands.iter().any(|c| c.starts_with("AUTH")),
            "no AUTH in clear: {:?}",
            s.commands
        );
    }
}

#[test]
fn plaintext_auth_to_loopback_with_allow_plaintext_delivers_and_is_logged() {
    let server = plain_auth_server();
    let env = TestEnv::new();
    env.write_config(&plain_auth_config(
        &env,
        "127.0.0.1",
        server.port(),
        "allow_plaintext = true\n",
    ));
    ok(&env.sendmail(&["a@x.test"], MSG));
    env.queue_run_at(now());
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{}", env.log());
    assert_eq!(got[0].auth_user.as_deref(), Some("sidecar"));
    assert!(!got[0].tls);
    assert!(
        env.log()
            .contains("over a plain-text connection (allow_plaintext = true on a loopback relay)"),
        "{}",
        env.log()
    );
    // postern check says so too, and the delivery path logs in.
    let o = env.run("postern", &["check"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains("AUTH in plain text: allowed by allow_plaintext"),
        "{}",
        o.stdout
    );
}

#[test]
fn plaintext_auth_to_a_network_host_is_a_config_error() {
    let env = TestEnv::new();
    env.write_config(&plain_auth_config(
        &env,
        "smtp.example.com",
        2525,
        "allow_plaintext = true\n",
    ));
    let o = env.sendmail(&["a@x.test"], MSG);
    assert_eq!(o.code, 78, "{o:?}");
    assert!(
        o.stderr.contains("allow_plaintext")
            && o.stderr.contains("only to a loopback relay")
            && o.stderr.contains("smtp.example.com"),
        "{}",
        o.stderr
    );
    assert!(env.entries().is_empty());
}

// ---- item 6: postern check names the host name and domain in use -------------

const CLOUD_HOSTS: &str = "\
# Your system has configured 'manage_etc_hosts' as True.
# As a result, if you wish for changes to this file to persist
# then you will need to either
# a.) make changes to the master file in /etc/cloud/templates/hosts.debian.tmpl
#

127.0.1.1 web1.example.com web1
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
";

#[test]
fn check_names_the_hostname_and_domain_and_their_origin() {
    let server = SmtpServer::start(ServerConfig::default());
    // Set in the configuration.
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    let o = env.run("postern", &["check"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains("hostname web1.example.com (from configuration file)"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("domain example.com (from configuration file)"),
        "{}",
        o.stdout
    );

    // Not set: the node name qualified by a commented hosts file; the domain
    // follows the host name.
    let cfg: String = env
        .relay_config(server.port(), "")
        .lines()
        .filter(|l| !l.starts_with("hostname") && !l.starts_with("domain"))
        .map(|l| format!("{l}\n"))
        .collect();
    env.write_config(&cfg);
    let hosts = env.root.join("hosts");
    std::fs::write(&hosts, CLOUD_HOSTS).unwrap();
    let mut c = env.cmd("postern");
    c.env("POSTERN_HOSTS_FILE", &hosts)
        .env("POSTERN_MAILNAME_FILE", env.root.join("no-mailname"))
        .env("POSTERN_NODENAME", "web1");
    let o = env.run_cmd(c, &["check"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains(&format!(
            "hostname web1.example.com (from host name (gethostname) qualified by {})",
            hosts.display()
        )),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("domain web1.example.com (from same as hostname)"),
        "{}",
        o.stdout
    );

    // A mail name file wins over the hosts file.
    let mailname = env.root.join("mailname");
    std::fs::write(&mailname, "mail.example.org\n").unwrap();
    let mut c = env.cmd("postern");
    c.env("POSTERN_HOSTS_FILE", &hosts)
        .env("POSTERN_MAILNAME_FILE", &mailname)
        .env("POSTERN_NODENAME", "web1");
    let o = env.run_cmd(c, &["check"], b"");
    assert!(
        o.stdout.contains(&format!(
            "hostname mail.example.org (from {})",
            mailname.display()
        )),
        "{}",
        o.stdout
    );
}

// ---- item 2: the relay's SIZE is the default limit ----------------------------

/// The fallback limit while no relay's SIZE is known (50 MiB).
const FALLBACK: u64 = 50 * 1024 * 1024;

/// A `-bs` dialogue (pipelined): EHLO, then MAIL with `SIZE=size`. Returns
/// (the SIZE keyword's line of the EHLO reply, the reply to MAIL).
fn bs_size(env: &TestEnv, size: u64) -> (String, String) {
    let o = env.sendmail(
        &["-bs"],
        format!("EHLO client.example\r\nMAIL FROM:<s@example.com> SIZE={size}\r\nQUIT\r\n")
            .as_bytes(),
    );
    let lines: Vec<&str> = o.stdout.split("\r\n").collect();
    let ehlo = lines
        .iter()
        .find(|l| l.len() > 4 && l[4..].starts_with("SIZE"))
        .map(|l| l[4..].to_string())
        .unwrap_or_default();
    let mail = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("250 2.1.0") || l.starts_with("552") || l.starts_with("501"))
        .map(|l| l.to_string())
        .unwrap_or_else(|| o.stdout.clone());
    (ehlo, mail)
}

/// A message with a `mib` MiB attachment in base64 (76-character lines).
fn with_attachment(mib: usize) -> Vec<u8> {
    let mut m = b"From: s@example.com\nSubject: report\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nsee attached\n--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n".to_vec();
    let line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\n";
    let lines = (mib * 1024 * 1024).div_ceil(57);
    m.reserve(lines * line.len() + 16);
    for _ in 0..lines {
        m.extend_from_slice(line.as_bytes());
    }
    m.extend_from_slice(b"--b--\n");
    m
}

#[test]
fn relay_size_is_learned_and_becomes_the_submission_limit() {
    let server = SmtpServer::start(ServerConfig {
        size_limit: Some(30_000_000),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    let relay = format!("127.0.0.1:{}", server.port());

    // Before any contact: the documented fallback.
    let (ehlo, mail) = bs_size(&env, FALLBACK);
    assert_eq!(ehlo, format!("SIZE {FALLBACK}"));
    assert!(mail.starts_with("250 "), "{mail}");
    let (_, mail) = bs_size(&env, FALLBACK + 1);
    assert!(
        mail.starts_with("552 5.3.4") && mail.contains("not known yet"),
        "{mail}"
    );

    // A delivery teaches Postern the relay's SIZE.
    ok(&env.sendmail(&["a@x.test"], MSG));
    env.queue_run();
    assert_eq!(server.wait_for(1, Duration::from_secs(10)).len(), 1);
    let limits = std::fs::read_to_string(env.spool.join("relay-limits")).unwrap();
    assert!(limits.contains(&format!("30000000 {relay}")), "{limits}");
    let (ehlo, mail) = bs_size(&env, 30_000_001);
    assert_eq!(ehlo, "SIZE 30000000");
    assert!(
        mail.starts_with("552 5.3.4") && mail.contains(&format!("relay {relay}")),
        "{mail}"
    );

    // A 20 MiB attachment (about 28 MB in base64) is accepted and delivered.
    let big = with_attachment(20);
    assert!(big.len() > 27_000_000 && big.len() < 29_500_000);
    ok(&env.sendmail(&["a@x.test"], &big));
    env.queue_run();
    let got = server.wait_for(2, Duration::from_secs(60));
    assert_eq!(got.len(), 2, "{}", env.log());
    assert!(got[1].data.len() > 27_000_000);

    // Over the relay's SIZE: refused at submission, naming the relay and its limit.
    let over = with_attachment(22);
    let o = env.sendmail(&["a@x.test"], &over);
    assert_eq!(o.code, 65, "{o:?}");
    assert!(
        o.stderr
            .contains("message too big: more than 30000000 bytes")
            && o.stderr.contains(&format!("relay {relay}")),
        "{}",
        o.stderr
    );
    assert!(env.entries().is_empty());

    // An explicit max_message_size wins, above or below the relay's.
    env.write_config(&format!(
        "max_message_size = \"40M\"\n{}",
        env.relay_config(server.port(), "")
    ));
    let (ehlo, mail) = bs_size(&env, 35_000_000);
    assert_eq!(ehlo, format!("SIZE {}", 40 * 1024 * 1024));
    assert!(mail.starts_with("250 "), "{mail}");
    env.write_config(&format!(
        "max_message_size = 1000\n{}",
        env.relay_config(server.port(), "")
    ));
    let o = env.sendmail(&["a@x.test"], &[b'x'; 2000]);
    assert_eq!(o.code, 65, "{o:?}");
    assert!(
        o.stderr.contains("1000 bytes (max_message_size)"),
        "{}",
        o.stderr
    );
}

#[test]
fn postern_check_learns_the_size_and_no_limit_lifts_it() {
    let limited = SmtpServer::start(ServerConfig {
        size_limit: Some(2_000_000),
        ..Default::default()
    });
    let env = TestEnv::new();
    env.write_config(&env.relay_config(limited.port(), ""));
    let o = env.run("postern", &["check"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("submission now refuses larger messages"),
        "{}",
        o.stdout
    );
    let (ehlo, mail) = bs_size(&env, 2_000_001);
    assert_eq!(ehlo, "SIZE 2000000");
    assert!(
        mail.contains(&format!("relay 127.0.0.1:{}", limited.port())),
        "{mail}"
    );
    assert!(limited.messages().is_empty(), "check sends no mail");

    // Two relays: the smaller limit of those seen; a relay announcing SIZE
    // without a number sets none.
    let unlimited = SmtpServer::start(ServerConfig::default());
    env.write_config(&format!(
        "{}[[relay]]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        env.relay_config(unlimited.port(), ""),
        limited.port()
    ));
    // The first relay is not seen yet: the fallback bounds the limit.
    let (ehlo, _) = bs_size(&env, 1);
    assert_eq!(ehlo, "SIZE 2000000");
    assert_eq!(env.run("postern", &["check"], b"").code, 0);
    let (ehlo, _) = bs_size(&env, 1);
    assert_eq!(ehlo, "SIZE 2000000");
    // Only the unlimited relay: no limit at all.
    env.write_config(&env.relay_config(unlimited.port(), ""));
    let (ehlo, mail) = bs_size(&env, 10 * FALLBACK);
    assert_eq!(ehlo, "SIZE 0");
    assert!(mail.starts_with("250 "), "{mail}");
}

// ---- item 5: mailq shows waiting messages to who may read them ---------------

const NOBODY: u32 = 65534;

/// Write a ready maildrop entry by hand with this sender and recipient.
fn forge_entry(env: &TestEnv, sender: &str, rcpt: &str) -> String {
    use postern::spool::format;
    use std::os::unix::fs::PermissionsExt;
    let id = postern::spool::new_id(1_795_955_581_000_000, 7, 0);
    let msg = b"Subject: forged\n\nx\n";
    let env_text = format::encode_envelope(&format::Envelope {
        id: id.clone(),
        sender: sender.into(),
        recipients: vec![rcpt.into()],
        uid: 0,
        user: "root".into(),
        arrival: 1_795_955_581.0,
        ..Default::default()
    })
    .unwrap();
    let mut bytes = format::header(msg.len() as u64).into_bytes();
    bytes.extend_from_slice(msg);
    bytes.extend_from_slice(env_text.as_bytes());
    let path = env.spool.join("maildrop").join(&id);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o704)).unwrap();
    id
}

fn as_nobody(env: &TestEnv, argv0: &str, args: &[&str], stdin: &[u8]) -> Out {
    use std::os::unix::process::CommandExt;
    let mut c = env.cmd(argv0);
    c.current_dir("/").uid(NOBODY).gid(NOBODY);
    env.run_cmd(c, args, stdin)
}

#[test]
#[ignore = "needs root: runs mailq as another user"]
fn mailq_shows_waiting_messages_to_who_may_read_them() {
    let env = TestEnv::new();
    // No daemon, no queue run: the entries wait in maildrop.
    ok(&env.sendmail(
        &[
            "-f",
            "ops@example.com",
            "bob@example.org",
            "carol@example.net",
        ],
        MSG,
    ));
    let id = env.single_entry().get("id").unwrap();
    // A forged entry whose envelope carries terminal escapes (submission
    // refuses them; a hostile writer of maildrop would not).
    let forged = forge_entry(
        &env,
        "evil\u{1b}[2J\u{202e}@example.com",
        "x\u{7}@example.org",
    );

    // The owner (here: the developer who owns the unprivileged spool).
    let o = env.run("mailq", &[], b"");
    ok(&o);
    assert!(o.stdout.contains("(waiting for pickup)"), "{}", o.stdout);
    assert!(o.stdout.contains("ops@example.com"), "{}", o.stdout);
    assert!(o.stdout.contains("bob@example.org"), "{}", o.stdout);
    assert!(o.stdout.contains("carol@example.net"), "{}", o.stdout);
    let line = o.stdout.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(!line.contains(" - "), "the size is shown: {line}");
    assert!(o.stdout.contains(&forged), "{}", o.stdout);
    assert!(
        o.stdout.contains("evil\\x1b[2J\\u{202e}@example.com")
            && o.stdout.contains("x\\x07@example.org"),
        "{}",
        o.stdout
    );
    assert!(
        !o.stdout.contains('\u{1b}')
            && !o.stdout.contains('\u{7}')
            && !o.stdout.contains('\u{202e}'),
        "escaped for the terminal"
    );
    std::fs::remove_file(env.spool.join("maildrop").join(&forged)).unwrap();

    let o = env.run("postern", &["queue", "list", "--json"], b"");
    ok(&o);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).expect("json");
    assert_eq!(v["queue_id"], id.as_str());
    assert_eq!(v["queue_name"], "incoming");
    assert_eq!(v["sender"], "ops@example.com");
    assert!(v["message_size"].as_u64().unwrap() > 0);
    let rcpts: Vec<&str> = v["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert_eq!(rcpts, vec!["bob@example.org", "carol@example.net"]);
    assert_eq!(v["recipients"][0]["status"], "pending");

    support::require_root();
    // Another user sees the id only, even though the entry's mode would let
    // it read the file here; its own entry it sees in full.
    env.open_to_nobody();
    let o = as_nobody(&env, "sendmail", &["dave@example.org"], MSG);
    ok(&o);
    let o = as_nobody(&env, "mailq", &[], b"");
    ok(&o);
    assert!(o.stdout.contains(&id), "{}", o.stdout);
    assert!(!o.stdout.contains("bob@example.org"), "{}", o.stdout);
    assert!(!o.stdout.contains("ops"), "{}", o.stdout);
    assert!(o.stdout.contains("dave@example.org"), "{}", o.stdout);
    let o = as_nobody(&env, "mailq", &["--json"], b"");
    ok(&o);
    for line in o.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        if v["queue_id"] == id.as_str() {
            assert!(v["sender"].is_null(), "{line}");
            assert_eq!(v["recipients"].as_array().unwrap().len(), 0, "{line}");
        } else {
            assert_eq!(v["recipients"][0]["address"], "dave@example.org");
        }
    }
    // Root sees both in full.
    let o = env.run("mailq", &[], b"");
    assert!(
        o.stdout.contains("bob@example.org") && o.stdout.contains("dave@example.org"),
        "{}",
        o.stdout
    );
}
