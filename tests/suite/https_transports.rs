//! The HTTPS API transports (issue 13 §3), through the real binary against
//! the scripted HTTPS server of `support::https_server` (127.0.0.1, a
//! certificate from an rcgen CA that the relay trusts by `ca_file`): the
//! exact request of `kind = "mailgun"` (multipart `messages.mime`, Basic
//! auth) and `kind = "ses"` (SES v2 raw JSON, SigV4 checked here by an
//! independent verifier as AWS would), the MIME part byte for byte what
//! SMTP sends, and each answer class: 2xx sent with the provider's id in
//! the log, 429 with Retry-After not retried before, 5xx deferred, 401
//! deferred with a credentials alert in `postern status`, 400 bounced with
//! the API's text in the DSN; a server whose CA is not trusted is refused.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use support::https_server::{Answer, HttpsServer, Request};
use support::smtp_server::{ServerConfig, SmtpServer};
use support::{TestEnv, base_config};

const KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const WAIT: Duration = Duration::from_secs(10);

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .floor()
}

/// A secret file only its owner can read.
fn secret_file(env: &TestEnv, name: &str, secret: &str) -> String {
    let p = env.root.join(name);
    std::fs::write(&p, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.display().to_string()
}

fn certs(env: &TestEnv) -> std::path::PathBuf {
    env.root.join("certs")
}

fn mailgun_relay(env: &TestEnv, srv: &HttpsServer, ca_dir: &Path) -> String {
    format!(
        "[[relay]]\nkind = \"mailgun\"\nurl = \"{}\"\ndomain = \"mg.example.com\"\npassword_file = \"{}\"\nca_file = \"{}\"\n",
        srv.url(),
        secret_file(env, "mailgun.key", KEY),
        ca_dir.join("ca.pem").display()
    )
}

fn ses_relay(env: &TestEnv, srv: &HttpsServer) -> String {
    format!(
        "[[relay]]\nkind = \"ses\"\nurl = \"{}\"\nregion = \"eu-west-1\"\nusername = \"{AKID}\"\npassword_file = \"{}\"\nca_file = \"{}\"\n",
        srv.url(),
        secret_file(env, "ses.secret", SECRET),
        certs(env).join("ca.pem").display()
    )
}

fn configure(env: &TestEnv, relay: &str) {
    env.write_config(&format!("{}{relay}", base_config(&env.root)));
}

fn queued(env: &TestEnv) -> usize {
    env.files("queue").len()
}

fn b64(data: &[u8]) -> String {
    support::smtp_server::base64_encode(data)
}

/// The parts of a `multipart/form-data` body: (Content-Disposition name,
/// part bytes), parsed independently of Postern.
fn form_parts(req: &Request) -> Vec<(String, Vec<u8>)> {
    let ct = req.header("content-type").expect("content-type");
    let boundary = ct
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap_or_else(|| panic!("{ct}"));
    let delim = format!("--{boundary}");
    let body = &req.body;
    let end = format!("\r\n{delim}--\r\n");
    assert!(body.ends_with(end.as_bytes()), "no closing delimiter");
    let mut parts = Vec::new();
    let inner = &body[..body.len() - end.len()];
    let sep = format!("\r\n{delim}\r\n");
    let first = format!("{delim}\r\n");
    assert!(inner.starts_with(first.as_bytes()));
    let rest = &inner[first.len()..];
    let mut pieces: Vec<&[u8]> = Vec::new();
    let mut from = 0;
    while let Some(p) = find(&rest[from..], sep.as_bytes()) {
        pieces.push(&rest[from..from + p]);
        from += p + sep.len();
    }
    pieces.push(&rest[from..]);
    for piece in pieces {
        let h_end = find(piece, b"\r\n\r\n").expect("part header");
        let head = String::from_utf8_lossy(&piece[..h_end]).into_owned();
        let name = head
            .split("name=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("")
            .to_string();
        parts.push((name, piece[h_end + 4..].to_vec()));
    }
    parts
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The MIME message of a Mailgun request.
fn mailgun_mime(req: &Request) -> Vec<u8> {
    form_parts(req)
        .into_iter()
        .find(|(n, _)| n == "message")
        .expect("message part")
        .1
}

/// Independent SigV4 check (what AWS does on arrival): rebuild the
/// canonical request from what was received and compare the signature.
fn verify_sigv4(req: &Request, secret: &str, region: &str) {
    use ring::{digest, hmac};
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let auth = req.header("authorization").expect("authorization");
    let date = req.header("x-amz-date").expect("x-amz-date");
    let day = &date[..8];
    let signed = auth
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .expect("SignedHeaders");
    assert_eq!(signed, "content-type;host;x-amz-date");
    let mut creq = format!("{}\n{}\n\n", req.method, req.path);
    for h in signed.split(';') {
        creq.push_str(&format!("{h}:{}\n", req.header(h).expect(h).trim()));
    }
    creq.push_str(&format!(
        "\n{signed}\n{}",
        hex(digest::digest(&digest::SHA256, &req.body).as_ref())
    ));
    let scope = format!("{day}/{region}/ses/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, creq.as_bytes()).as_ref())
    );
    let mut k = format!("AWS4{secret}").into_bytes();
    for p in [day, region, "ses", "aws4_request"] {
        k = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &k), p.as_bytes())
            .as_ref()
            .to_vec();
    }
    let sig = hex(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &k), sts.as_bytes()).as_ref());
    assert_eq!(
        auth,
        format!(
            "AWS4-HMAC-SHA256 Credential={AKID}/{scope}, SignedHeaders={signed}, Signature={sig}"
        )
    );
}

/// A message that the wire normaliser has to work on: bare LF, a line over
/// 998 octets (re-encoded), 8-bit text, a line starting with a dot.
fn tricky_message() -> Vec<u8> {
    let mut m =
        b"From: Sender <sender@example.com>\nTo: b@x.test\nSubject: wire form\n\n.leading dot\n"
            .to_vec();
    m.extend_from_slice(&b"x".repeat(1500));
    m.extend_from_slice("\ncaf\u{e9} \u{2603}\n".as_bytes());
    m
}

#[test]
fn the_mime_part_is_what_smtp_sends() {
    let t0 = now();
    let env = TestEnv::new();
    let mg = HttpsServer::start(
        &certs(&env),
        vec![Answer::json(503, r#"{"message":"busy"}"#)],
    );
    configure(&env, &mailgun_relay(&env, &mg, &certs(&env)));
    let o = env.sendmail(&["-f", "sender@example.com", "b@x.test"], &tricky_message());
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.queue_run_at(t0).code, 0);
    let reqs = mg.wait_for(1, WAIT);
    assert_eq!(reqs.len(), 1);
    let via_mailgun = mailgun_mime(&reqs[0]);
    // 5xx: deferred, still queued.
    assert_eq!(queued(&env), 1);
    assert!(
        env.log().contains("status=deferred") && env.log().contains("Mailgun answered HTTP 503"),
        "{}",
        env.log()
    );

    let ses = HttpsServer::start(&certs(&env), vec![Answer::json(500, "{}")]);
    configure(&env, &ses_relay(&env, &ses));
    env.queue_run_at(t0 + 4000.0);
    let reqs = ses.wait_for(1, WAIT);
    assert_eq!(reqs.len(), 1, "{}", env.log());
    let v: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
    let data = v["Content"]["Raw"]["Data"].as_str().unwrap();
    let via_ses = support::smtp_server::base64_decode(data).expect("base64");
    assert_eq!(queued(&env), 1);

    let smtp = SmtpServer::start(ServerConfig::default());
    env.write_config(&env.relay_config(smtp.port(), ""));
    env.queue_run_at(t0 + 8000.0);
    let got = smtp.wait_for(1, WAIT);
    assert_eq!(got.len(), 1, "{}", env.log());
    assert_eq!(queued(&env), 0);
    let via_smtp = &got[0].data;
    assert!(via_smtp.ends_with(b"\r\n"));
    assert_eq!(
        String::from_utf8_lossy(&via_mailgun),
        String::from_utf8_lossy(via_smtp)
    );
    assert_eq!(&via_mailgun, via_smtp);
    assert_eq!(&via_ses, via_smtp);
    // The normaliser did work: CRLF only, the long line re-encoded.
    assert!(!via_smtp.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    assert!(find(via_smtp, b"quoted-printable").is_some());
}

#[test]
fn mailgun_request_is_exact_and_the_id_is_logged() {
    let env = TestEnv::new();
    let srv = HttpsServer::start(
        &certs(&env),
        vec![Answer::json(
            200,
            r#"{"id":"<20261206073000.1.ABC@mg.example.com>","message":"Queued. Thank you."}"#,
        )],
    );
    configure(&env, &mailgun_relay(&env, &srv, &certs(&env)));
    let o = env.sendmail(
        &["-f", "sender@example.com", "b@x.test", "c@y.test"],
        b"Subject: hello\n\nbody\n",
    );
    assert_eq!(o.code, 0, "{o:?}");
    env.queue_run();
    let reqs = srv.wait_for(1, WAIT);
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v3/mg.example.com/messages.mime");
    assert_eq!(
        r.header("authorization").unwrap(),
        format!("Basic {}", b64(format!("api:{KEY}").as_bytes()))
    );
    assert_eq!(
        r.header("host").unwrap(),
        format!("127.0.0.1:{}", srv.port())
    );
    assert_eq!(
        r.header("content-length").unwrap(),
        r.body.len().to_string()
    );
    assert!(r.header("transfer-encoding").is_none());
    let ct = r.header("content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
    assert!(
        boundary.starts_with("postern-") && boundary.len() == 40,
        "{boundary}"
    );
    let mime = mailgun_mime(r);
    // The whole body, byte for byte.
    let mut want = Vec::new();
    for to in ["b@x.test", "c@y.test"] {
        want.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\n{to}\r\n")
                .as_bytes(),
        );
    }
    want.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"message\"; filename=\"message.mime\"\r\nContent-Type: message/rfc822\r\n\r\n").as_bytes());
    want.extend_from_slice(&mime);
    want.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert_eq!(r.body, want);
    assert!(
        mime.ends_with(b"Subject: hello\r\n\r\nbody\r\n")
            || find(&mime, b"Subject: hello\r\n").is_some()
    );
    assert!(
        mime.ends_with(b"\r\n\r\nbody\r\n"),
        "{}",
        String::from_utf8_lossy(&mime)
    );
    assert_eq!(queued(&env), 0);
    let log = env.log();
    assert!(
        log.lines().any(|l| l.contains("to=<b@x.test>")
            && l.contains("status=sent")
            && l.contains("<20261206073000.1.ABC@mg.example.com>")),
        "{log}"
    );
}

#[test]
fn ses_request_is_signed_raw_json() {
    let t0 = 1_796_542_200.0; // 2026-12-06T07:30:00Z
    let env = TestEnv::new();
    let srv = HttpsServer::start(
        &certs(&env),
        vec![Answer::json(200, r#"{"MessageId":"0102019e-ses-id-1"}"#)],
    );
    configure(&env, &ses_relay(&env, &srv));
    let o = env.run_at(
        t0,
        "sendmail",
        &["-f", "sender@example.com", "b@x.test", "c@y.test"],
        b"Subject: ses\n\nbody\n",
    );
    assert_eq!(o.code, 0, "{o:?}");
    env.queue_run_at(t0 + 5.0);
    let reqs = srv.wait_for(1, WAIT);
    assert_eq!(reqs.len(), 1, "{}", env.log());
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v2/email/outbound-emails");
    assert_eq!(r.header("content-type").unwrap(), "application/json");
    assert_eq!(r.header("x-amz-date").unwrap(), "20261206T073005Z");
    assert_eq!(
        r.header("host").unwrap(),
        format!("127.0.0.1:{}", srv.port())
    );
    assert_eq!(
        r.header("content-length").unwrap(),
        r.body.len().to_string()
    );
    verify_sigv4(r, SECRET, "eu-west-1");
    // The JSON, exactly: three keys, the envelope, the raw message.
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let data = v["Content"]["Raw"]["Data"].as_str().unwrap().to_string();
    assert_eq!(
        v,
        serde_json::json!({
            "Content": {"Raw": {"Data": data}},
            "Destination": {"ToAddresses": ["b@x.test", "c@y.test"]},
            "FromEmailAddress": "sender@example.com",
        })
    );
    let mime = support::smtp_server::base64_decode(&data).unwrap();
    assert!(
        mime.ends_with(b"\r\n\r\nbody\r\n"),
        "{}",
        String::from_utf8_lossy(&mime)
    );
    assert_eq!(queued(&env), 0);
    assert!(
        env.log().contains("id 0102019e-ses-id-1") && env.log().contains("status=sent"),
        "{}",
        env.log()
    );
    // A wrong secret is what the signature check catches.
    let bad = std::panic::catch_unwind(|| verify_sigv4(r, "not-the-secret", "eu-west-1"));
    assert!(bad.is_err());
}

#[test]
fn retry_after_is_honoured() {
    let t0 = now();
    let env = TestEnv::new();
    let srv = HttpsServer::start(
        &certs(&env),
        vec![
            Answer::json(429, r#"{"message":"rate limited"}"#).header("Retry-After", "3600"),
            Answer::json(200, r#"{"id":"<later@mg.example.com>"}"#),
        ],
    );
    configure(&env, &mailgun_relay(&env, &srv, &certs(&env)));
    env.run_at(
        t0,
        "sendmail",
        &["-f", "sender@example.com", "b@x.test"],
        b"Subject: x\n\ny\n",
    );
    env.queue_run_at(t0);
    assert_eq!(srv.wait_for(1, WAIT).len(), 1);
    assert_eq!(queued(&env), 1);
    let log = env.log();
    assert!(log.contains("retry after 3600s"), "{log}");
    // The usual backoff (retry_min = 1m) would retry long before.
    for dt in [120.0, 1800.0, 3500.0] {
        env.queue_run_at(t0 + dt);
    }
    assert_eq!(srv.requests().len(), 1, "retried before Retry-After");
    assert_eq!(queued(&env), 1);
    env.queue_run_at(t0 + 3601.0);
    assert_eq!(srv.wait_for(2, WAIT).len(), 2);
    assert_eq!(queued(&env), 0, "{}", env.log());
}

#[test]
fn unauthorized_defers_and_status_alerts() {
    let env = TestEnv::new();
    let srv = HttpsServer::start(
        &certs(&env),
        vec![Answer::json(401, r#"{"message":"Invalid private key"}"#)],
    );
    configure(&env, &mailgun_relay(&env, &srv, &certs(&env)));
    env.sendmail(
        &["-f", "sender@example.com", "b@x.test"],
        b"Subject: x\n\ny\n",
    );
    env.queue_run();
    assert_eq!(srv.wait_for(1, WAIT).len(), 1);
    assert_eq!(queued(&env), 1, "{}", env.log());
    assert!(env.log().contains("status=deferred"), "{}", env.log());
    let o = env.run("postern", &["status"], b"");
    let line = o
        .stdout
        .lines()
        .find(|l| l.contains(&format!("127.0.0.1:{}", srv.port())))
        .unwrap_or_else(|| panic!("{}", o.stdout));
    assert!(
        line.contains("FAILING")
            && line.contains("Mailgun refused the credentials (HTTP 401): Invalid private key"),
        "{line}"
    );
    assert!(!o.stdout.contains(KEY));
    assert!(!env.log().contains(KEY));
}

#[test]
fn bad_request_bounces_with_the_api_text() {
    let env = TestEnv::new();
    let srv = HttpsServer::start(
        &certs(&env),
        vec![
            Answer::json(
                400,
                "{\"message\":\"'to' parameter is not a valid address\\r\\nX-Injected: yes\"}",
            ),
            // The DSN to the sender.
            Answer::json(200, r#"{"id":"<dsn@mg.example.com>"}"#),
        ],
    );
    configure(&env, &mailgun_relay(&env, &srv, &certs(&env)));
    env.sendmail(
        &["-f", "sender@example.com", "bad@x.test"],
        b"Subject: x\n\ny\n",
    );
    env.queue_run();
    let reqs = srv.wait_for(2, WAIT);
    assert_eq!(reqs.len(), 2, "{}", env.log());
    assert!(env.log().contains("status=bounced"), "{}", env.log());
    let parts = form_parts(&reqs[1]);
    let to: Vec<_> = parts.iter().filter(|(n, _)| n == "to").collect();
    assert_eq!(to.len(), 1);
    assert_eq!(to[0].1, b"sender@example.com");
    let dsn = String::from_utf8_lossy(&mailgun_mime(&reqs[1])).into_owned();
    let unfolded = dsn.replace("\r\n ", " ").replace("\r\n\t", " ");
    assert!(
        unfolded.contains(
            "Mailgun refused the message (HTTP 400): 'to' parameter is not a valid address"
        ),
        "{dsn}"
    );
    // The API's CR LF was escaped, not passed into the DSN as a header.
    assert!(!dsn.contains("\r\nX-Injected: yes"), "{dsn}");
    assert_eq!(queued(&env), 0);
}

#[test]
fn a_server_with_an_untrusted_ca_is_refused() {
    let env = TestEnv::new();
    let srv = HttpsServer::start(&certs(&env), vec![Answer::json(200, "{}")]);
    // ca_file is another CA's.
    let other = env.root.join("other-ca");
    support::smtp_server::ensure_cert_dir(&other).unwrap();
    configure(&env, &mailgun_relay(&env, &srv, &other));
    env.sendmail(
        &["-f", "sender@example.com", "b@x.test"],
        b"Subject: x\n\ny\n",
    );
    env.queue_run();
    assert!(
        srv.requests().is_empty(),
        "a request was sent over untrusted TLS"
    );
    assert_eq!(queued(&env), 1);
    let log = env.log();
    assert!(
        log.contains("status=deferred") && log.to_lowercase().contains("certificate"),
        "{log}"
    );
}

#[test]
fn config_refuses_smtp_keys_and_missing_api_keys() {
    let env = TestEnv::new();
    for (relay, want) in [
        (
            "[[relay]]\nkind = \"mailgun\"\npassword_file = \"/k\"\n",
            "relay[0].domain",
        ),
        (
            "[[relay]]\nkind = \"mailgun\"\ndomain = \"mg.example.com\"\npassword_file = \"/k\"\nport = 587\n",
            "relay[0].port",
        ),
        (
            "[[relay]]\nkind = \"mailgun\"\ndomain = \"mg.example.com\"\npassword_file = \"/k\"\nregion = \"ap\"\n",
            "relay[0].region",
        ),
        (
            "[[relay]]\nkind = \"ses\"\nusername = \"AKID\"\npassword_file = \"/k\"\n",
            "relay[0].region",
        ),
        (
            "[[relay]]\nkind = \"ses\"\nregion = \"us-east-1\"\nusername = \"AKID\"\npassword_file = \"/k\"\nurl = \"http://127.0.0.1:8080\"\n",
            "relay[0].url",
        ),
        (
            "[[relay]]\nhost = \"smtp.example.com\"\ndomain = \"mg.example.com\"\n",
            "relay[0].domain",
        ),
    ] {
        configure(&env, relay);
        let o = env.run("postern", &["check"], b"");
        assert_eq!(o.code, 78, "{relay}: {o:?}");
        assert!(o.stderr.contains(want), "{relay}: {}", o.stderr);
    }
}

#[test]
fn a_message_over_the_api_limit_bounces_and_submission_learns_the_limit() {
    let env = TestEnv::new();
    let srv = HttpsServer::start(
        &certs(&env),
        vec![Answer::json(200, r#"{"id":"<dsn@mg.example.com>"}"#)],
    );
    configure(&env, &mailgun_relay(&env, &srv, &certs(&env)));
    // 25 MiB of body lines: over Mailgun's 25 MB once headers are added.
    let mut big = b"Subject: big\n\n".to_vec();
    let line = [b'a'; 99];
    while big.len() < 25 * 1024 * 1024 + 10 {
        big.extend_from_slice(&line);
        big.push(b'\n');
    }
    let o = env.sendmail(&["-f", "sender@example.com", "b@x.test"], &big);
    assert_eq!(o.code, 0, "{o:?}");
    env.queue_run();
    let reqs = srv.wait_for(1, WAIT);
    // The one request is the bounce to the sender, not the message.
    assert_eq!(reqs.len(), 1, "{}", env.log());
    assert_eq!(form_parts(&reqs[0])[0].1, b"sender@example.com");
    let dsn = String::from_utf8_lossy(&mailgun_mime(&reqs[0])).into_owned();
    assert!(
        dsn.replace("\r\n ", " ")
            .contains("exceeds the limit of the Mailgun API (26214400 bytes)"),
        "{}",
        &dsn[..dsn.len().min(4000)]
    );
    assert_eq!(queued(&env), 0);
    // Now submission knows the limit, as an SMTP relay's SIZE.
    let o = env.sendmail(&["-f", "sender@example.com", "b@x.test"], &big);
    assert_eq!(o.code, 65, "{o:?}");
}

#[test]
fn check_probes_tls_and_the_credentials_without_sending() {
    let env = TestEnv::new();
    let srv = HttpsServer::start(
        &certs(&env),
        vec![
            Answer::json(400, r#"{"message":"'to' parameter is missing"}"#),
            Answer::json(401, r#"{"message":"Invalid private key"}"#),
        ],
    );
    configure(&env, &mailgun_relay(&env, &srv, &certs(&env)));
    let o = env.run("postern", &["check"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    for want in [
        "(tls = mailgun, user api)",
        "  certificate  ok     verified for 127.0.0.1",
        "  pin          --     sha256//",
        "  api          ok     Mailgun accepted the credentials (HTTP 400 to an empty request: 'to' parameter is missing; nothing sent)",
        "USABLE",
    ] {
        assert!(o.stdout.contains(want), "{want}\n{}", o.stdout);
    }
    let reqs = srv.wait_for(1, WAIT);
    assert_eq!(reqs[0].path, "/v3/mg.example.com/messages.mime");
    assert_eq!(
        reqs[0].header("authorization").unwrap(),
        format!("Basic {}", b64(format!("api:{KEY}").as_bytes()))
    );
    // Nothing to send: the empty form, only its closing delimiter.
    let boundary = reqs[0]
        .header("content-type")
        .unwrap()
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap()
        .to_string();
    assert_eq!(reqs[0].body, format!("--{boundary}--\r\n").as_bytes());
    let o = env.run("postern", &["check"], b"");
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.contains(
            "  api          FAILED Mailgun refused the credentials (HTTP 401): Invalid private key"
        ),
        "{}",
        o.stdout
    );
    assert!(!o.stdout.contains(KEY));
}

#[test]
fn an_unreachable_api_fails_over_to_the_next_relay() {
    let env = TestEnv::new();
    let port = support::closed_port();
    let smtp = SmtpServer::start(ServerConfig::default());
    // The API's port refuses connections; the SMTP relay after it works.
    let relay = format!(
        "[[relay]]\nkind = \"mailgun\"\nurl = \"https://127.0.0.1:{port}\"\ndomain = \"mg.example.com\"\npassword_file = \"{}\"\n[[relay]]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        secret_file(&env, "mailgun.key", KEY),
        smtp.port()
    );
    configure(&env, &relay);
    env.sendmail(
        &["-f", "sender@example.com", "b@x.test"],
        b"Subject: x\n\ny\n",
    );
    env.queue_run();
    let got = smtp.wait_for(1, WAIT);
    assert_eq!(got.len(), 1, "{}", env.log());
    assert_eq!(queued(&env), 0);
    let log = env.log();
    assert!(
        log.contains(&format!(
            "relay 127.0.0.1:{port}: connection to 127.0.0.1:{port} failed"
        )),
        "{log}"
    );
}
