//! Interop with a real third-party SMTP server, Python's aiosmtpd, started
//! by the test: STARTTLS + AUTH on one port, implicit TLS + AUTH on
//! another. Asserts on the exact envelope and bytes that arrived.
//! Skips (with a message) when python3 or aiosmtpd is missing; `.ci/run`
//! installs both.

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{TestEnv, base_config};

struct Server {
    child: Child,
    starttls: u16,
    implicit: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn aiosmtpd_available() -> bool {
    Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn start(certs: &Path, out: &Path) -> Server {
    support::smtp_server::ensure_cert_dir(certs).expect("certificates");
    let mut child = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/aiosmtpd_server.py"
        ))
        .arg(certs.join("cert.pem"))
        .arg(certs.join("key.pem"))
        .arg(out)
        .args(["apikey", "interop-secret"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("aiosmtpd did not start");
    let mut parts = line.split_whitespace().skip(1);
    let starttls = parts.next().and_then(|p| p.parse().ok()).expect("port");
    let implicit = parts.next().and_then(|p| p.parse().ok()).expect("port");
    Server {
        child,
        starttls,
        implicit,
    }
}

fn wait_files(dir: &Path, n: usize) -> Vec<(serde_json_lite::Value, Vec<u8>)> {
    let start = Instant::now();
    loop {
        let mut found = Vec::new();
        for i in 1..=n {
            let j = dir.join(format!("{i}.json"));
            let e = dir.join(format!("{i}.eml"));
            if let (Ok(j), Ok(e)) = (std::fs::read_to_string(&j), std::fs::read(&e)) {
                found.push((serde_json_lite::parse(&j), e));
            }
        }
        if found.len() >= n || start.elapsed() > Duration::from_secs(20) {
            return found;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Just enough JSON for the server's metadata file (no serde_json dependency).
mod serde_json_lite {
    #[derive(Debug)]
    pub struct Value(pub String);
    pub fn parse(s: &str) -> Value {
        Value(s.to_string())
    }
    impl Value {
        pub fn has(&self, needle: &str) -> bool {
            self.0.contains(needle)
        }
    }
}

fn config(env: &TestEnv, port: u16, tls: &str, certs: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let secret = env.root.join("relay.secret");
    std::fs::write(&secret, "interop-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!(
        "{}[[relay]]\nhost = \"localhost\"\nport = {port}\ntls = \"{tls}\"\nusername = \"apikey\"\npassword_file = \"{}\"\nca_file = \"{}\"\n",
        base_config(&env.root),
        secret.display(),
        certs.join("ca.pem").display()
    )
}

#[test]
#[ignore = "needs python3 aiosmtpd (.ci/run installs it)"]
fn aiosmtpd_starttls_and_implicit_tls_with_auth() {
    if !aiosmtpd_available() {
        support::unavailable("python3 with aiosmtpd is not installed (pip install aiosmtpd)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let server = start(&certs, &out);

    let message = b"From: Alice <alice@example.com>\nTo: bob@example.org\nSubject: interop\n\nfirst line\n.leading dot\n\nlast line\n";
    for (i, (port, tls)) in [(server.starttls, "starttls"), (server.implicit, "tls")]
        .into_iter()
        .enumerate()
    {
        let env = TestEnv::new();
        env.write_config(&config(&env, port, tls, &certs));
        let o = env.sendmail(
            &[
                "-f",
                "alice@example.com",
                "-i",
                "bob@example.org",
                "carol@example.net",
            ],
            message,
        );
        assert_eq!(o.code, 0, "{o:?}");
        let o = env.queue_run();
        assert_eq!(o.code, 0, "{o:?}");
        let got = wait_files(&out, i + 1);
        assert_eq!(got.len(), i + 1, "{tls}: not delivered; log: {}", env.log());
        let (meta, data) = &got[i];
        assert!(meta.has("\"mail_from\": \"alice@example.com\""), "{meta:?}");
        assert!(
            meta.has("\"rcpt_tos\": [\"bob@example.org\", \"carol@example.net\"]"),
            "{meta:?}"
        );
        assert!(meta.has("\"tls\": true"), "{meta:?}");
        assert!(meta.has("\"auth\": true"), "{meta:?}");
        let text = String::from_utf8_lossy(data);
        // Exact bytes: our Received line first, the caller's headers, the
        // generated Date/Message-ID, then the body byte for byte in CRLF form.
        assert!(
            text.starts_with("Received: by web1.example.com (Postern, from userid "),
            "{text}"
        );
        assert!(
            text.contains(
                "\r\nFrom: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: interop\r\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("\r\n\r\nfirst line\r\n.leading dot\r\n\r\nlast line\r\n"),
            "{text:?}"
        );
        assert!(
            !text.replace("\r\n", "").contains('\n'),
            "no bare LF on the wire"
        );
        assert!(env.files("queue").is_empty());
    }
}
