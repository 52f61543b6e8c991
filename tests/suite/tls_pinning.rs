//! Certificate pinning (issue 13 §5): `tls_pin = ["sha256//…"]` (the
//! SHA-256 of the relay's SubjectPublicKeyInfo, as curl's --pinnedpubkey)
//! on top of normal verification, or instead of it with `tls_verify =
//! false`; a key that matches no pin is a TLS failure (deferred, logged with
//! the key seen); `postern check` prints the relay's pin. The expected pin
//! is computed by openssl from the server's certificate, independently of
//! Postern.

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::smtp_server::{ServerConfig, SmtpServer, TlsMode};
use support::{TestEnv, base_config};

/// A pin that is no relay's key (32 zero bytes).
const WRONG_PIN: &str = "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// The server's pin, computed as curl's documentation says, with openssl.
fn openssl_pin(cert: &Path) -> String {
    let script = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl enc -base64",
        cert.display()
    );
    let o = Command::new("sh")
        .args(["-c", &script])
        .stderr(Stdio::inherit())
        .output()
        .expect("sh");
    assert!(o.status.success(), "openssl failed");
    let b64 = String::from_utf8(o.stdout).unwrap().trim().to_string();
    assert_eq!(b64.len(), 44, "{b64}");
    format!("sha256//{b64}")
}

fn need_openssl() {
    let ok = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        support::unavailable("openssl is not installed");
    }
}

/// A STARTTLS (or implicit TLS) server whose certificate lives in
/// `env.root/certs` (cert.pem, ca.pem).
fn server(env: &TestEnv, tls: TlsMode) -> SmtpServer {
    SmtpServer::start(ServerConfig {
        tls,
        cert_dir: Some(env.root.join("certs")),
        ..Default::default()
    })
}

fn relay(port: u16, tls: &str, extra: &str) -> String {
    format!("[[relay]]\nhost = \"localhost\"\nport = {port}\ntls = \"{tls}\"\n{extra}")
}

fn queued(env: &TestEnv) -> usize {
    env.files("queue").len()
}

#[test]
#[ignore = "needs openssl"]
fn the_right_pin_delivers_and_check_prints_it() {
    need_openssl();
    let env = TestEnv::new();
    let srv = server(&env, TlsMode::StartTls);
    let certs = env.root.join("certs");
    let pin = openssl_pin(&certs.join("cert.pem"));
    let ca = certs.join("ca.pem");
    // Verified chain and pin; a second (rollover) pin that matches nothing.
    env.write_config(&format!(
        "{}{}",
        base_config(&env.root),
        relay(
            srv.port(),
            "starttls",
            &format!(
                "ca_file = \"{}\"\ntls_pin = [\"{WRONG_PIN}\", \"{pin}\"]\n",
                ca.display()
            )
        )
    ));
    let o = env.run("postern", &["check"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains(&format!("  pin          ok     {pin} (matches tls_pin)")),
        "{}",
        o.stdout
    );
    assert_eq!(
        env.sendmail(&["a@x.test"], b"Subject: pinned\n\nx\n").code,
        0
    );
    env.queue_run();
    let got = srv.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{}", env.log());
    assert!(got[0].tls);
    assert_eq!(queued(&env), 0);

    // Without pins, check still prints the key's pin.
    env.write_config(&format!(
        "{}{}",
        base_config(&env.root),
        relay(
            srv.port(),
            "starttls",
            &format!("ca_file = \"{}\"\n", ca.display())
        )
    ));
    let o = env.run("postern", &["check"], b"");
    assert!(
        o.stdout
            .contains(&format!("  pin          --     {pin} (not pinned;")),
        "{}",
        o.stdout
    );

    // Pin-only: no ca_file (the test CA is not trusted), tls_verify = false.
    let tls = server(&env, TlsMode::Implicit);
    env.write_config(&format!(
        "{}{}",
        base_config(&env.root),
        relay(
            tls.port(),
            "tls",
            &format!("tls_verify = false\ntls_pin = [\"{pin}\"]\n")
        )
    ));
    let o = env.run("postern", &["check"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("pin-only"), "{}", o.stdout);
    assert_eq!(
        env.sendmail(&["b@x.test"], b"Subject: pin-only\n\nx\n")
            .code,
        0
    );
    env.queue_run();
    assert_eq!(
        tls.wait_for(1, Duration::from_secs(10)).len(),
        1,
        "{}",
        env.log()
    );

    // The same relay without tls_verify = false: the chain does not verify.
    env.write_config(&format!(
        "{}{}",
        base_config(&env.root),
        relay(tls.port(), "tls", &format!("tls_pin = [\"{pin}\"]\n"))
    ));
    assert_eq!(
        env.sendmail(&["c@x.test"], b"Subject: chain\n\nx\n").code,
        0
    );
    env.queue_run();
    assert_eq!(
        queued(&env),
        1,
        "unknown issuer: deferred, pins do not replace verification"
    );
    assert_eq!(tls.messages().len(), 1);
}

#[test]
fn a_wrong_pin_is_refused_and_the_message_stays_queued() {
    let env = TestEnv::new();
    let srv = server(&env, TlsMode::StartTls);
    let ca = env.root.join("certs").join("ca.pem");
    env.write_config(&format!(
        "{}{}",
        base_config(&env.root),
        relay(
            srv.port(),
            "starttls",
            &format!(
                "ca_file = \"{}\"\ntls_pin = [\"{WRONG_PIN}\"]\n",
                ca.display()
            )
        )
    ));
    assert_eq!(
        env.sendmail(&["a@x.test"], b"Subject: wrong pin\n\nx\n")
            .code,
        0
    );
    env.queue_run();
    assert!(srv.messages().is_empty());
    assert_eq!(queued(&env), 1, "deferred, not bounced");
    let log = env.log();
    let seen = log
        .split("certificate pin mismatch: the relay's key is ")
        .nth(1)
        .unwrap_or_else(|| panic!("the mismatch is logged: {log}"));
    let seen = &seen[..seen.find(',').expect("pin, then the allowed ones")];
    assert!(seen.starts_with("sha256//") && seen.len() == 52, "{seen}");
    assert_ne!(seen, WRONG_PIN);
    assert!(
        log.contains(&format!("tls_pin allows {WRONG_PIN}")),
        "{log}"
    );
    // check fails the relay and prints the key it saw: the same pin.
    let o = env.run("postern", &["check"], b"");
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout
            .contains("certificate  FAILED certificate pin mismatch"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains(&format!(
            "  pin          --     {seen} (seen; not accepted)"
        )),
        "{}",
        o.stdout
    );
    // Pin-only with a wrong pin: refused as well.
    env.write_config(&format!(
        "{}{}",
        base_config(&env.root),
        relay(
            srv.port(),
            "starttls",
            &format!("tls_verify = false\ntls_pin = [\"{WRONG_PIN}\"]\n")
        )
    ));
    let before = env.log().matches("certificate pin mismatch").count();
    env.run("postern", &["queue", "retry", "ALL"], b"");
    env.queue_run();
    assert!(srv.messages().is_empty());
    assert_eq!(queued(&env), 1);
    assert!(
        env.log().matches("certificate pin mismatch").count() > before,
        "tried again and refused: {}",
        env.log()
    );
}

#[test]
fn pin_keys_are_checked() {
    let env = TestEnv::new();
    for (extra, why) in [
        ("tls_verify = false\n", "tls_verify"),
        ("tls_pin = [\"sha1//AAAA\"]\n", "tls_pin"),
        ("tls_pin = []\n", "tls_pin"),
        ("tls_pin = [\"sha256//AAAA\"]\n", "tls_pin"),
    ] {
        env.write_config(&format!(
            "{}{}",
            base_config(&env.root),
            relay(587, "starttls", extra)
        ));
        let o = env.sendmail(&["-bv", "a@x.test"], b"");
        assert_eq!(o.code, 78, "{extra}: {o:?}");
        assert!(o.stderr.contains(&format!("relay[0].{why}")), "{o:?}");
    }
}
