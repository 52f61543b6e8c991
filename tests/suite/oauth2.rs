//! OAuth2 built in (issue 13 §1), through the real binary: a local HTTPS
//! token endpoint (the test CA, trusted through the relay's `ca_file`)
//! records every request and answers scripted JSON; the SMTP relay checks
//! the bearer token given by XOAUTH2 or OAUTHBEARER. Proves the exact form
//! bodies, the token cache (memory and the 0600 file across processes),
//! one refresh and retry after a 535, the saving of a rotated refresh
//! token, a named `invalid_grant` (log, check, status; the message stays
//! queued) and `postern oauth2 login` with the device code flow.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::smtp_server::{AuthConfig, ServerConfig, SmtpServer, TlsMode};
use support::token_server::{Request, TokenServer};
use support::{TestEnv, base_config};

const USER: &str = "app@example.com";
const FORM: &str = "application/x-www-form-urlencoded";
const MS_SCOPE: &str = "https%3A%2F%2Foutlook.office365.com%2F.default";

fn cert_dir(env: &TestEnv) -> PathBuf {
    let d = env.root.join("certs");
    support::smtp_server::ensure_cert_dir(&d).expect("certs");
    d
}

fn secret(env: &TestEnv, name: &str, value: &str) -> PathBuf {
    let p = env.root.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A STARTTLS relay with the test CA that accepts `token` for USER.
fn relay(certs: &Path, mechanisms: &[&str], token: &str) -> SmtpServer {
    SmtpServer::start(ServerConfig {
        tls: TlsMode::StartTls,
        cert_dir: Some(certs.to_path_buf()),
        auth: Some(AuthConfig {
            mechanisms: mechanisms.iter().map(|m| m.to_string()).collect(),
            username: USER.into(),
            secret: token.into(),
        }),
        ..Default::default()
    })
}

fn config(env: &TestEnv, smtp_port: u16, certs: &Path, oauth2: &str) -> String {
    format!(
        "{}[[relay]]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"starttls\"\nca_file = \"{}\"\nusername = \"{USER}\"\n[relay.oauth2]\n{oauth2}",
        base_config(&env.root),
        certs.join("ca.pem").display()
    )
}

fn script(
    f: impl Fn(&Request, usize) -> (u16, String) + Send + Sync + 'static,
) -> support::token_server::Script {
    Arc::new(f)
}

fn token_json(access: &str, refresh: Option<&str>) -> String {
    match refresh {
        Some(r) => format!(
            r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"{access}","refresh_token":"{r}"}}"#
        ),
        None => format!(r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"{access}"}}"#),
    }
}

fn send(env: &TestEnv, subject: &str) {
    let o = env.sendmail(
        &["-f", "web@example.com", "to@example.org"],
        format!("Subject: {subject}\n\nbody\n").as_bytes(),
    );
    assert_eq!(o.code, 0, "{o:?}");
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn cache_file(env: &TestEnv) -> PathBuf {
    env.spool
        .join("oauth2")
        .join("127.0.0.1_app@example.com.json")
}

#[test]
fn client_credentials_deliver_with_xoauth2_and_the_token_is_cached_across_restarts() {
    let env = TestEnv::new();
    let certs = cert_dir(&env);
    let tokens = TokenServer::start(&certs, script(|_, _| (200, token_json("AT-app-1", None))));
    let smtp = relay(&certs, &["XOAUTH2"], "AT-app-1");
    let cs = secret(&env, "client.secret", "s3cret~value");
    env.write_config(&config(
        &env,
        smtp.port(),
        &certs,
        &format!(
            "flow = \"client_credentials\"\ntoken_url = \"{}\"\nclient_id = \"cid-123\"\nclient_secret_file = \"{}\"\nscope = \"https://outlook.office365.com/.default\"\n",
            tokens.url("/tenant/oauth2/v2.0/token"),
            cs.display()
        ),
    ));
    send(&env, "one");
    let o = env.queue_run();
    assert_eq!(o.code, 0, "{o:?}");
    let got = smtp.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "log: {}", env.log());
    assert_eq!(got[0].auth_user.as_deref(), Some(USER));
    let reqs = tokens.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, "/tenant/oauth2/v2.0/token");
    assert_eq!(reqs[0].header("content-type"), Some(FORM));
    assert_eq!(
        reqs[0].body,
        format!(
            "grant_type=client_credentials&client_id=cid-123&client_secret=s3cret%7Evalue&scope={MS_SCOPE}"
        )
    );
    assert!(
        smtp.sessions()
            .iter()
            .any(|s| s.commands.iter().any(|c| c.starts_with("AUTH XOAUTH2 ")))
    );
    // The cache file: 0600, and a new process (a restart) uses it.
    let md = std::fs::metadata(cache_file(&env)).expect("cache file");
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    send(&env, "two");
    assert_eq!(env.queue_run().code, 0);
    assert_eq!(smtp.wait_for(2, Duration::from_secs(10)).len(), 2);
    assert_eq!(tokens.requests().len(), 1, "no new token request");
    let log = env.log();
    assert!(
        !log.contains("AT-app-1") && !log.contains("s3cret"),
        "{log}"
    );
    assert!(
        log.contains("new access token for app@example.com"),
        "{log}"
    );
}

#[test]
fn refresh_token_flow_uses_oauthbearer_and_saves_a_rotated_refresh_token() {
    let env = TestEnv::new();
    let certs = cert_dir(&env);
    let tokens = TokenServer::start(
        &certs,
        script(|r, _| {
            if r.body.contains("refresh_token=RT-1&") {
                (200, token_json("AT-user-1", Some("RT-2")))
            } else {
                (200, token_json("AT-user-2", Some("RT-2")))
            }
        }),
    );
    let smtp = relay(&certs, &["XOAUTH2", "OAUTHBEARER"], "AT-user-1");
    let rt = secret(&env, "refresh.token", "RT-1");
    let oauth = format!(
        "flow = \"refresh_token\"\ntoken_url = \"{}\"\nclient_id = \"cid\"\nrefresh_token_file = \"{}\"\nscope = \"https://outlook.office.com/SMTP.Send offline_access\"\n",
        tokens.url("/token"),
        rt.display()
    );
    env.write_config(&config(&env, smtp.port(), &certs, &oauth));
    send(&env, "one");
    assert_eq!(env.queue_run().code, 0);
    assert_eq!(
        smtp.wait_for(1, Duration::from_secs(10)).len(),
        1,
        "{}",
        env.log()
    );
    let sessions = smtp.sessions();
    let auth: Vec<&String> = sessions
        .iter()
        .flat_map(|s| s.commands.iter())
        .filter(|c| c.starts_with("AUTH"))
        .collect();
    assert_eq!(auth.len(), 1, "{auth:?}");
    assert!(auth[0].starts_with("AUTH OAUTHBEARER "), "{auth:?}");
    let reqs = tokens.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].body,
        "grant_type=refresh_token&client_id=cid&refresh_token=RT-1&scope=https%3A%2F%2Foutlook.office.com%2FSMTP.Send+offline_access"
    );
    // The rotated token is in the 0600 cache file; the administrator's
    // file is untouched.
    let cache = std::fs::read_to_string(cache_file(&env)).unwrap();
    assert!(cache.contains("\"refresh_token\":\"RT-2\""), "{cache}");
    assert_eq!(std::fs::read_to_string(&rt).unwrap(), "RT-1\n");
    assert!(
        env.log().contains("rotated the refresh token"),
        "{}",
        env.log()
    );
    // Two hours later the access token has expired: the next refresh uses
    // the rotated token, and the relay now wants the new access token.
    drop(smtp);
    let smtp = relay(&certs, &["OAUTHBEARER"], "AT-user-2");
    env.write_config(&config(&env, smtp.port(), &certs, &oauth));
    send(&env, "two");
    assert_eq!(env.queue_run_at((now() + 7200) as f64).code, 0);
    assert_eq!(
        smtp.wait_for(1, Duration::from_secs(10)).len(),
        1,
        "{}",
        env.log()
    );
    let reqs = tokens.requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs[1].body.contains("&refresh_token=RT-2&"),
        "{}",
        reqs[1].body
    );
}

#[test]
fn a_cached_token_refused_with_535_is_refreshed_once_and_the_retry_delivers() {
    let env = TestEnv::new();
    let certs = cert_dir(&env);
    let tokens = TokenServer::start(
        &certs,
        script(|_, i| (200, token_json(&format!("AT-{}", i + 1), None))),
    );
    let cs = secret(&env, "client.secret", "s");
    let oauth = format!(
        "flow = \"client_credentials\"\ntoken_url = \"{}\"\nclient_id = \"cid\"\nclient_secret_file = \"{}\"\nscope = \"x\"\n",
        tokens.url("/token"),
        cs.display()
    );
    let smtp = relay(&certs, &["XOAUTH2"], "AT-1");
    env.write_config(&config(&env, smtp.port(), &certs, &oauth));
    send(&env, "one");
    assert_eq!(env.queue_run().code, 0);
    assert_eq!(smtp.wait_for(1, Duration::from_secs(10)).len(), 1);
    assert_eq!(tokens.requests().len(), 1);
    // The relay revokes AT-1 (still cached, not expired): it wants AT-2.
    drop(smtp);
    let smtp = relay(&certs, &["XOAUTH2"], "AT-2");
    env.write_config(&config(&env, smtp.port(), &certs, &oauth));
    send(&env, "two");
    assert_eq!(env.queue_run().code, 0);
    assert_eq!(
        smtp.wait_for(1, Duration::from_secs(10)).len(),
        1,
        "{}",
        env.log()
    );
    assert_eq!(tokens.requests().len(), 2, "exactly one refresh");
    let replies: Vec<String> = smtp
        .sessions()
        .iter()
        .flat_map(|s| s.replies.clone())
        .filter(|r| r.starts_with("535") || r.starts_with("235"))
        .collect();
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert!(replies[0].starts_with("535") && replies[1].starts_with("235"));
    assert!(
        env.log().contains("refused the cached OAuth2 token"),
        "{}",
        env.log()
    );
    assert!(env.entries().is_empty(), "the message left the queue");
}

#[test]
fn invalid_grant_is_named_in_the_log_check_and_status_and_the_message_stays_queued() {
    let env = TestEnv::new();
    let certs = cert_dir(&env);
    let tokens = TokenServer::start(
        &certs,
        script(|_, _| {
            (
                400,
                r#"{"error":"invalid_grant","error_description":"AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.\r\nTrace ID: 0000\r\nTimestamp: 2026-12-06","error_codes":[70008]}"#.into(),
            )
        }),
    );
    let smtp = relay(&certs, &["XOAUTH2"], "never");
    let rt = secret(&env, "refresh.token", "RT-SECRET-VALUE");
    env.write_config(&config(
        &env,
        smtp.port(),
        &certs,
        &format!(
            "flow = \"refresh_token\"\ntoken_url = \"{}\"\nclient_id = \"cid\"\nrefresh_token_file = \"{}\"\nscope = \"s\"\n",
            tokens.url("/token"),
            rt.display()
        ),
    ));
    send(&env, "one");
    let o = env.queue_run();
    assert_eq!(o.code, 0, "{o:?}");
    assert!(smtp.messages().is_empty());
    assert_eq!(env.entries().len(), 1, "still queued (deferred)");
    let log = env.log();
    assert!(log.contains("invalid_grant: AADSTS70008"), "{log}");
    assert!(!log.contains("Trace ID"), "{log}");
    let check = env.run("postern", &["check"], b"");
    assert_ne!(check.code, 0, "{check:?}");
    assert!(
        check.stdout.contains("invalid_grant: AADSTS70008"),
        "{check:?}"
    );
    let status = env.run("postern", &["status"], b"");
    assert!(status.stdout.contains("invalid_grant"), "{status:?}");
    for text in [&log, &check.stdout, &check.stderr, &status.stdout] {
        assert!(!text.contains("RT-SECRET-VALUE"), "{text}");
    }
}

#[test]
fn oauth2_login_with_the_device_code_flow_stores_the_refresh_token() {
    let env = TestEnv::new();
    let certs = cert_dir(&env);
    let tokens = TokenServer::start(
        &certs,
        script(|r, i| {
            if r.path == "/devicecode" {
                return (
                    200,
                    r#"{"device_code":"DC-1","user_code":"ABCD-EFGH","verification_uri":"https://microsoft.com/devicelogin","expires_in":60,"interval":1}"#.into(),
                );
            }
            if i == 1 {
                return (400, r#"{"error":"authorization_pending"}"#.into());
            }
            (200, token_json("AT-L", Some("RT-FROM-LOGIN")))
        }),
    );
    let rt = env.root.join("refresh.token");
    env.write_config(&config(
        &env,
        25,
        &certs,
        &format!(
            "flow = \"refresh_token\"\ntoken_url = \"{}\"\ndevice_url = \"{}\"\nclient_id = \"cid\"\nrefresh_token_file = \"{}\"\nscope = \"https://outlook.office.com/SMTP.Send offline_access\"\n",
            tokens.url("/token"),
            tokens.url("/devicecode"),
            rt.display()
        ),
    ));
    let o = env.run("postern", &["oauth2", "login", "127.0.0.1"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("ABCD-EFGH") && o.stdout.contains("https://microsoft.com/devicelogin"),
        "{o:?}"
    );
    assert!(!o.stdout.contains("RT-FROM-LOGIN"), "{o:?}");
    assert_eq!(std::fs::read_to_string(&rt).unwrap(), "RT-FROM-LOGIN\n");
    let md = std::fs::metadata(&rt).unwrap();
    let root_with_group = nix_is_root() && group_exists("postern");
    let want = if root_with_group { 0o640 } else { 0o600 };
    assert_eq!(md.permissions().mode() & 0o777, want);
    let reqs = tokens.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!(
        reqs[0].body,
        "client_id=cid&scope=https%3A%2F%2Foutlook.office.com%2FSMTP.Send+offline_access"
    );
    for r in &reqs[1..] {
        assert_eq!(r.path, "/token");
        assert_eq!(
            r.body,
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&client_id=cid&device_code=DC-1"
        );
    }
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        })
        .unwrap_or(false)
}

fn group_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(':').next() == Some(name))
}

#[test]
fn oauth2_login_with_a_browser_uses_pkce_and_the_loopback_redirect() {
    use std::io::{BufRead, Read, Write};
    let env = TestEnv::new();
    let certs = cert_dir(&env);
    let tokens = TokenServer::start(
        &certs,
        script(|_, _| (200, token_json("AT-G", Some("RT-GOOGLE")))),
    );
    let cs = secret(&env, "client.secret", "GOCSPX-x");
    let rt = env.root.join("refresh.token");
    env.write_config(&config(
        &env,
        25,
        &certs,
        &format!(
            "flow = \"refresh_token\"\ntoken_url = \"{}\"\nauth_url = \"{}\"\nclient_id = \"cid.apps\"\nclient_secret_file = \"{}\"\nrefresh_token_file = \"{}\"\nscope = \"https://mail.google.com/\"\n",
            tokens.url("/token"),
            tokens.url("/auth"),
            cs.display(),
            rt.display()
        ),
    ));
    let mut child = env
        .cmd("postern")
        .args(["oauth2", "login", "1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let prefix = tokens.url("/auth?");
    let mut url = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        if let Some(u) = line.trim().strip_prefix(&prefix) {
            url = Some(u.to_string());
            break;
        }
    }
    let Some(query) = url else {
        let _ = child.kill();
        panic!("no sign-in address printed");
    };
    let param = |k: &str| -> String {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in {query}"))
            .to_string()
    };
    assert_eq!(param("response_type"), "code");
    assert_eq!(param("client_id"), "cid.apps");
    assert_eq!(param("code_challenge_method"), "S256");
    assert_eq!(param("scope"), "https%3A%2F%2Fmail.google.com%2F");
    let redirect = param("redirect_uri");
    let port: u16 = redirect
        .strip_prefix("http%3A%2F%2F127.0.0.1%3A")
        .and_then(|r| r.strip_suffix("%2F"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("loopback redirect: {redirect}"));
    let (state, challenge) = (param("state"), param("code_challenge"));
    // A local user who found the port slips in a code of their own (no
    // state), then an error: neither is the answer, the wait goes on.
    for bad in ["/?code=EVIL-CODE", "/?error=access_denied&state=other"] {
        let mut evil = std::net::TcpStream::connect(("127.0.0.1", port)).expect("loopback");
        evil.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(evil, "GET {bad} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = evil.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 404"), "{bad}: {answer}");
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the login ended on a forged answer"
    );
    // The browser comes back with the code.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("loopback");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /?state={state}&code=4%2F0AUTH-CODE&scope=x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("login did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(status.success(), "{err}");
    assert_eq!(std::fs::read_to_string(&rt).unwrap(), "RT-GOOGLE\n");
    let reqs = tokens.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let body = &reqs[0].body;
    let verifier = body
        .split('&')
        .find_map(|p| p.strip_prefix("code_verifier="))
        .expect("code_verifier")
        .to_string();
    assert_eq!(
        *body,
        format!(
            "grant_type=authorization_code&code=4%2F0AUTH-CODE&redirect_uri={redirect}&client_id=cid.apps&code_verifier={verifier}&client_secret=GOCSPX-x"
        )
    );
    // PKCE S256: the challenge is base64url(SHA-256(verifier)), no padding.
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    let b64 = support::smtp_server::base64_encode(digest.as_ref())
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_string();
    assert_eq!(challenge, b64);
}

#[test]
fn oauth2_configuration_errors_name_the_key() {
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}[[relay]]\nhost = \"smtp.office365.com\"\nusername = \"{USER}\"\n[relay.oauth2]\nflow = \"client_credentials\"\nprovider = \"microsoft365\"\nclient_id = \"c\"\nclient_secret_file = \"/nonexistent\"\n",
        base_config(&env.root)
    ));
    let o = env.run("postern", &["check"], b"");
    assert_eq!(o.code, 78, "{o:?}");
    assert!(o.stderr.contains("relay[0].oauth2.tenant"), "{o:?}");
    env.write_config(&format!(
        "{}[[relay]]\nhost = \"smtp.gmail.com\"\nusername = \"{USER}\"\npassword_file = \"/x\"\n[relay.oauth2]\nflow = \"refresh_token\"\nprovider = \"google\"\nclient_id = \"c\"\nrefresh_token_file = \"/r\"\n",
        base_config(&env.root)
    ));
    let o = env.run("postern", &["check"], b"");
    assert_eq!(o.code, 78, "{o:?}");
    assert!(o.stderr.contains("relay[0].oauth2"), "{o:?}");
    assert!(o.stderr.contains("remove password_file"), "{o:?}");
}
