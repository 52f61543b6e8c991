//! Compatibility, round 3 (issue 12, items 2, 5, 6 and 7): the relay's SIZE as
//! the default limit, mailq showing waiting messages to who may read them,
//! `postern check` naming the host name in use, AUTH in plain text to a
//! loopback relay only when the config says so. Each test goes through the
//! real binary against the test SMTP server.

mod support;

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
