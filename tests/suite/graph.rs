//! `kind = "graph"` (Microsoft Graph `sendMail`, issue 13 §3), through the
//! real binary against the scripted HTTPS server of `support::https_server`
//! as Graph and the local token endpoint of `support::token_server` (both
//! on 127.0.0.1 with the rcgen test CA, trusted through `ca_file`). Proves
//! the exact request (method, path with the percent-encoded mailbox,
//! `Authorization: Bearer` with the token the endpoint issued for the
//! Graph scope, `Content-Type`, `Content-Length`, the base64 body decoding
//! to the bytes SMTP sends), the recipient rules (an envelope-only
//! recipient added as `Bcc:`, a To address outside the envelope bounced
//! with nothing sent), each answer class (202 with the request-id logged,
//! 429 + Retry-After, 500, 401 refreshed once, 403 alerting in `postern
//! status`, 400 bounced with Graph's `code: message`), the 3 MiB limit,
//! the configuration errors, a wrong TLS pin and `postern check`.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use support::https_server::{Answer, HttpsServer, Request};
use support::smtp_server::{ServerConfig, SmtpServer};
use support::token_server::TokenServer;
use support::{TestEnv, base_config};

/// The mailbox Graph sends as (needs percent-encoding in the path).
const USER: &str = "o'brien+relay@example.com";
const USER_IN_PATH: &str = "o%27brien%2Brelay@example.com";
const WAIT: Duration = Duration::from_secs(10);

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        .floor()
}

fn certs(env: &TestEnv) -> PathBuf {
    let d = env.root.join("certs");
    support::smtp_server::ensure_cert_dir(&d).expect("certs");
    d
}

/// A token endpoint issuing `AT-1`, then `AT-2`, … (one per request).
fn tokens(env: &TestEnv) -> TokenServer {
    TokenServer::start(
        &certs(env),
        Arc::new(|_, i| {
            (
                200,
                format!(
                    r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"AT-{}"}}"#,
                    i + 1
                ),
            )
        }),
    )
}

fn secret_file(env: &TestEnv) -> String {
    let p = env.root.join("client.secret");
    std::fs::write(&p, "graph-s3cret\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.display().to_string()
}

/// The graph relay at `srv` with its `[relay.oauth2]` at `tok`; `extra`
/// goes into `[[relay]]`.
fn graph_relay(env: &TestEnv, srv: &HttpsServer, tok: &TokenServer, extra: &str) -> String {
    format!(
        "[[relay]]\nkind = \"graph\"\nurl = \"{}\"\nusername = \"{USER}\"\nca_file = \"{}\"\n{extra}[relay.oauth2]\nflow = \"client_credentials\"\nprovider = \"microsoft365\"\ntenant = \"contoso.onmicrosoft.com\"\ntoken_url = \"{}\"\nclient_id = \"cid-graph\"\nclient_secret_file = \"{}\"\n",
        srv.url(),
        certs(env).join("ca.pem").display(),
        tok.url("/contoso/oauth2/v2.0/token"),
        secret_file(env)
    )
}

fn configure(env: &TestEnv, relay: &str) {
    env.write_config(&format!("{}{relay}", base_config(&env.root)));
}

/// Graph, its token endpoint, and the configuration using them.
fn setup(env: &TestEnv, script: Vec<Answer>) -> (HttpsServer, TokenServer) {
    let srv = HttpsServer::start(&certs(env), script);
    let tok = tokens(env);
    configure(env, &graph_relay(env, &srv, &tok, ""));
    (srv, tok)
}

fn accepted(id: &str) -> Answer {
    Answer::json(202, "").header("request-id", id)
}

fn graph_error(status: u16, code: &str, message: &str) -> Answer {
    Answer::json(
        status,
        &format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#),
    )
}

fn queued(env: &TestEnv) -> usize {
    env.files("queue").len()
}

fn submit(env: &TestEnv, rcpts: &[&str], msg: &[u8]) {
    let mut args = vec!["-f", "sender@example.com"];
    args.extend_from_slice(rcpts);
    let o = env.sendmail(&args, msg);
    assert_eq!(o.code, 0, "{o:?}");
}

/// The MIME message of a request (its body, base64-decoded), after
/// checking what every sendMail request carries.
fn mime_of(r: &Request, token: &str) -> Vec<u8> {
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/v1.0/users/{USER_IN_PATH}/sendMail"));
    assert_eq!(
        r.header("authorization").unwrap(),
        format!("Bearer {token}")
    );
    assert_eq!(r.header("content-type").unwrap(), "text/plain");
    assert_eq!(
        r.header("content-length").unwrap(),
        r.body.len().to_string()
    );
    assert!(r.header("transfer-encoding").is_none());
    // Standard base64 with padding, one line.
    assert!(
        r.body
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b)),
        "not one line of base64"
    );
    assert_eq!(r.body.len() % 4, 0);
    support::smtp_server::base64_decode(std::str::from_utf8(&r.body).unwrap()).expect("base64")
}

fn unfold(s: &str) -> String {
    s.replace("\r\n ", " ").replace("\r\n\t", " ")
}

#[test]
fn sent_request_is_exact_and_the_request_id_is_logged() {
    let env = TestEnv::new();
    let (srv, tok) = setup(&env, vec![accepted("5b2c7c1e-graph-req-1")]);
    submit(
        &env,
        &["b@x.test", "C@y.test"],
        b"From: sender@example.com\nTo: b@x.test\nCc: c@y.test\nSubject: hello\n\nbody\n",
    );
    env.queue_run();
    let reqs = srv.wait_for(1, WAIT);
    assert_eq!(reqs.len(), 1, "{}", env.log());
    assert_eq!(
        reqs[0].header("host").unwrap(),
        format!("127.0.0.1:{}", srv.port())
    );
    let mime = mime_of(&reqs[0], "AT-1");
    let text = String::from_utf8_lossy(&mime).into_owned();
    // Every recipient is in To/Cc: nothing added.
    assert!(!text.contains("Bcc:"), "{text}");
    assert!(text.ends_with("\r\n\r\nbody\r\n"), "{text}");
    assert!(
        text.contains("\r\nTo: b@x.test\r\nCc: c@y.test\r\n"),
        "{text}"
    );
    // The token was asked for the Graph scope (the microsoft365 preset of
    // kind = "graph"), as client credentials.
    let t = tok.requests();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].path, "/contoso/oauth2/v2.0/token");
    assert_eq!(
        t[0].body,
        "grant_type=client_credentials&client_id=cid-graph&client_secret=graph-s3cret&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
    );
    assert_eq!(queued(&env), 0);
    let log = env.log();
    assert!(
        log.lines().any(|l| l.contains("to=<b@x.test>")
            && l.contains("status=sent")
            && l.contains(
                "Graph accepted the message (HTTP 202), request-id 5b2c7c1e-graph-req-1"
            )),
        "{log}"
    );
    assert!(
        !log.contains("AT-1") && !log.contains("graph-s3cret"),
        "{log}"
    );
}

#[test]
fn an_envelope_only_recipient_is_added_as_bcc_and_the_rest_is_what_smtp_sends() {
    let t0 = now();
    let env = TestEnv::new();
    let (srv, _tok) = setup(&env, vec![graph_error(500, "UnknownError", "try later")]);
    // Bare LF, a long line (re-encoded) and 8-bit text: the normaliser works.
    let mut msg = b"From: sender@example.com\nTo: b@x.test\nSubject: wire\n\n.dot\n".to_vec();
    msg.extend_from_slice(&b"x".repeat(1500));
    msg.extend_from_slice("\ncaf\u{e9}\n".as_bytes());
    submit(&env, &["b@x.test", "hidden@y.test"], &msg);
    env.queue_run_at(t0);
    let reqs = srv.wait_for(1, WAIT);
    assert_eq!(reqs.len(), 1, "{}", env.log());
    let via_graph = mime_of(&reqs[0], "AT-1");
    // 500: deferred, still queued.
    assert_eq!(queued(&env), 1);
    let log = env.log();
    assert!(
        log.contains("status=deferred")
            && log.contains("Graph answered HTTP 500: UnknownError: try later"),
        "{log}"
    );
    // The same queued message through SMTP.
    let smtp = SmtpServer::start(ServerConfig::default());
    env.write_config(&env.relay_config(smtp.port(), ""));
    env.queue_run_at(t0 + 4000.0);
    let got = smtp.wait_for(1, WAIT);
    assert_eq!(got.len(), 1, "{}", env.log());
    let via_smtp = &got[0].data;
    let mut want = b"Bcc: hidden@y.test\r\n".to_vec();
    want.extend_from_slice(via_smtp);
    assert_eq!(
        String::from_utf8_lossy(&via_graph),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(via_graph, want);
    assert!(via_smtp.windows(17).any(|w| w == b"quoted-printable\r"));
}

#[test]
fn a_to_address_outside_the_envelope_bounces_and_nothing_is_sent() {
    let env = TestEnv::new();
    // The one answer is for the DSN to the sender.
    let (srv, _tok) = setup(&env, vec![accepted("dsn-req")]);
    submit(
        &env,
        &["b@x.test"],
        b"From: sender@example.com\nTo: b@x.test, Other <other@x.test>\nSubject: x\n\ny\n",
    );
    env.queue_run();
    let reqs = srv.wait_for(1, WAIT);
    assert_eq!(reqs.len(), 1, "{}", env.log());
    let dsn = String::from_utf8_lossy(&mime_of(&reqs[0], "AT-1")).into_owned();
    // The request is the bounce, to the sender; the message was not sent.
    assert!(
        dsn.contains("\r\nTo: sender@example.com\r\n")
            || dsn.contains("\r\nTo: <sender@example.com>\r\n"),
        "{dsn}"
    );
    let u = unfold(&dsn);
    assert!(
        u.contains("Microsoft Graph sends to every To/Cc address, and other@x.test in the To header is not a recipient of this message; route this sender to an SMTP relay (senders = [...])"),
        "{dsn}"
    );
    let log = env.log();
    assert!(
        log.contains("to=<b@x.test>") && log.contains("status=bounced"),
        "{log}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(srv.requests().len(), 1);
    assert_eq!(queued(&env), 0);
}

#[test]
fn retry_after_of_a_429_is_honoured() {
    let t0 = now();
    let env = TestEnv::new();
    let (srv, _tok) = setup(
        &env,
        vec![
            graph_error(429, "ApplicationThrottled", "too many requests")
                .header("Retry-After", "3600"),
            accepted("later"),
        ],
    );
    env.run_at(
        t0,
        "sendmail",
        &["-f", "sender@example.com", "b@x.test"],
        b"To: b@x.test\nSubject: x\n\ny\n",
    );
    env.queue_run_at(t0);
    assert_eq!(srv.wait_for(1, WAIT).len(), 1);
    assert_eq!(queued(&env), 1);
    assert!(env.log().contains("retry after 3600s"), "{}", env.log());
    for dt in [120.0, 1800.0, 3500.0] {
        env.queue_run_at(t0 + dt);
    }
    assert_eq!(srv.requests().len(), 1, "retried before Retry-After");
    env.queue_run_at(t0 + 3601.0);
    assert_eq!(srv.wait_for(2, WAIT).len(), 2);
    assert_eq!(queued(&env), 0, "{}", env.log());
}

#[test]
fn a_cached_token_refused_with_401_is_refreshed_once_and_the_retry_delivers() {
    let env = TestEnv::new();
    let (srv, tok) = setup(
        &env,
        vec![
            accepted("one"),
            graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired.",
            ),
            accepted("two"),
        ],
    );
    submit(&env, &["b@x.test"], b"To: b@x.test\nSubject: one\n\nbody\n");
    env.queue_run();
    assert_eq!(srv.wait_for(1, WAIT).len(), 1, "{}", env.log());
    assert_eq!(queued(&env), 0);
    // A new process: the token comes from the cache file, Graph refuses it.
    submit(&env, &["b@x.test"], b"To: b@x.test\nSubject: two\n\nbody\n");
    env.queue_run();
    let reqs = srv.wait_for(3, WAIT);
    assert_eq!(reqs.len(), 3, "{}", env.log());
    mime_of(&reqs[1], "AT-1");
    let mime = mime_of(&reqs[2], "AT-2");
    assert_eq!(mime, mime_of(&reqs[1], "AT-1"));
    assert_eq!(tok.requests().len(), 2);
    assert_eq!(queued(&env), 0, "{}", env.log());
    let log = env.log();
    assert!(
        log.contains("refused the cached OAuth2 token (HTTP 401)"),
        "{log}"
    );
    assert!(log.contains("request-id two"), "{log}");
}

#[test]
fn forbidden_defers_and_status_shows_the_credentials_alert() {
    let env = TestEnv::new();
    let (srv, tok) = setup(
        &env,
        vec![graph_error(
            403,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        )],
    );
    submit(&env, &["b@x.test"], b"To: b@x.test\nSubject: x\n\ny\n");
    env.queue_run();
    assert_eq!(srv.wait_for(1, WAIT).len(), 1);
    assert_eq!(queued(&env), 1, "{}", env.log());
    assert!(env.log().contains("status=deferred"), "{}", env.log());
    // A fresh token is not fetched for a 403 (nor for a 401 of a new one).
    assert_eq!(tok.requests().len(), 1);
    let o = env.run("postern", &["status"], b"");
    let line = o
        .stdout
        .lines()
        .find(|l| l.contains(&format!("127.0.0.1:{}", srv.port())))
        .unwrap_or_else(|| panic!("{}", o.stdout));
    assert!(
        line.contains("FAILING")
            && line.contains(
                "Graph refused the credentials (HTTP 403): ErrorAccessDenied: Access is denied."
            ),
        "{line}"
    );
    assert!(!o.stdout.contains("AT-1"));
}

#[test]
fn a_missing_mailbox_is_a_setting_to_fix_not_a_bounce() {
    let env = TestEnv::new();
    let (srv, _tok) = setup(
        &env,
        vec![graph_error(
            404,
            "ErrorInvalidUser",
            "The requested user 'x' is invalid.",
        )],
    );
    submit(&env, &["b@x.test"], b"To: b@x.test\nSubject: x\n\ny\n");
    env.queue_run();
    assert_eq!(srv.wait_for(1, WAIT).len(), 1);
    assert_eq!(queued(&env), 1, "{}", env.log());
    let log = env.log();
    assert!(
        log.contains("status=deferred")
            && log.contains("Graph refused the credentials (HTTP 404): ErrorInvalidUser"),
        "{log}"
    );
}

#[test]
fn bad_request_bounces_with_graphs_code_and_message() {
    let env = TestEnv::new();
    let (srv, _tok) = setup(
        &env,
        vec![
            graph_error(
                400,
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.\\r\\nX-Injected: yes",
            ),
            accepted("dsn"),
        ],
    );
    submit(&env, &["b@x.test"], b"To: b@x.test\nSubject: x\n\ny\n");
    env.queue_run();
    let reqs = srv.wait_for(2, WAIT);
    assert_eq!(reqs.len(), 2, "{}", env.log());
    assert!(env.log().contains("status=bounced"), "{}", env.log());
    let dsn = String::from_utf8_lossy(&mime_of(&reqs[1], "AT-1")).into_owned();
    assert!(
        unfold(&dsn).contains("Graph refused the message (HTTP 400): ErrorMimeContentInvalidBase64String: Invalid base64 string for MIME content."),
        "{dsn}"
    );
    assert!(!dsn.contains("\r\nX-Injected: yes"), "{dsn}");
    assert_eq!(queued(&env), 0);
}

#[test]
fn a_message_over_3_mib_bounces_and_submission_learns_the_limit() {
    let env = TestEnv::new();
    let (srv, _tok) = setup(&env, vec![accepted("dsn")]);
    let mut big = b"To: b@x.test\nSubject: big\n\n".to_vec();
    while big.len() < 3 * 1024 * 1024 + 10 {
        big.extend_from_slice(&[b'a'; 99]);
        big.push(b'\n');
    }
    submit(&env, &["b@x.test"], &big);
    env.queue_run();
    let reqs = srv.wait_for(1, WAIT);
    // The one request is the bounce to the sender.
    assert_eq!(reqs.len(), 1, "{}", env.log());
    let dsn = String::from_utf8_lossy(&mime_of(&reqs[0], "AT-1")).into_owned();
    assert!(
        unfold(&dsn).contains("exceeds the limit of the Graph API (4194304 bytes)"),
        "{}",
        &dsn[..dsn.len().min(4000)]
    );
    assert_eq!(queued(&env), 0);
    let o = env.sendmail(&["-f", "sender@example.com", "b@x.test"], &big);
    assert_eq!(o.code, 65, "{o:?}");
}

#[test]
fn a_wrong_tls_pin_is_refused_before_anything_is_sent() {
    let env = TestEnv::new();
    let srv = HttpsServer::start(&certs(&env), vec![accepted("never")]);
    let tok = tokens(&env);
    let pin = "tls_pin = [\"sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"]\n";
    configure(&env, &graph_relay(&env, &srv, &tok, pin));
    submit(&env, &["b@x.test"], b"To: b@x.test\nSubject: x\n\ny\n");
    env.queue_run();
    assert!(
        srv.requests().is_empty(),
        "a request went to an unpinned key"
    );
    assert_eq!(queued(&env), 1);
    let log = env.log();
    assert!(
        log.contains("status=deferred") && log.contains("PinMismatch"),
        "{log}"
    );
}

#[test]
fn check_fetches_a_token_and_probes_graph_without_sending() {
    let env = TestEnv::new();
    let (srv, _tok) = setup(
        &env,
        vec![
            graph_error(400, "ErrorMimeContentInvalid", "The MIME content is empty."),
            graph_error(403, "ErrorAccessDenied", "Access is denied."),
        ],
    );
    let o = env.run("postern", &["check"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    for want in [
        "obtained from the token endpoint",
        &format!(
            "token accepted; sending as {USER} (HTTP 400 to an empty request: ErrorMimeContentInvalid: The MIME content is empty.; nothing sent)"
        ),
        "USABLE",
    ] {
        assert!(o.stdout.contains(want), "{want}\n{}", o.stdout);
    }
    let reqs = srv.wait_for(1, WAIT);
    assert_eq!(reqs[0].path, format!("/v1.0/users/{USER_IN_PATH}/sendMail"));
    assert_eq!(reqs[0].header("authorization").unwrap(), "Bearer AT-1");
    assert!(reqs[0].body.is_empty());
    let o = env.run("postern", &["check"], b"");
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.contains(&format!(
            "Graph refused to send as {USER} (HTTP 403): ErrorAccessDenied"
        )),
        "{}",
        o.stdout
    );
    assert!(!o.stdout.contains("AT-1"));
}

#[test]
fn config_requires_oauth2_and_refuses_a_password() {
    let env = TestEnv::new();
    for (relay, want) in [
        (
            "[[relay]]\nkind = \"graph\"\nusername = \"a@example.com\"\n".to_string(),
            "relay[0].oauth2",
        ),
        (
            "[[relay]]\nkind = \"graph\"\nusername = \"a@example.com\"\npassword_file = \"/k\"\n[relay.oauth2]\nflow = \"client_credentials\"\nprovider = \"microsoft365\"\ntenant = \"t.example\"\nclient_id = \"c\"\nclient_secret_file = \"/s\"\n".to_string(),
            "graph authenticates with [relay.oauth2]",
        ),
        (
            "[[relay]]\nkind = \"graph\"\n[relay.oauth2]\nflow = \"client_credentials\"\nprovider = \"microsoft365\"\ntenant = \"t.example\"\nclient_id = \"c\"\nclient_secret_file = \"/s\"\n".to_string(),
            "relay[0].username",
        ),
    ] {
        configure(&env, &relay);
        let o = env.run("postern", &["check"], b"");
        assert_eq!(o.code, 78, "{relay}: {o:?}");
        assert!(o.stderr.contains(want), "{relay}: {}", o.stderr);
    }
}

#[test]
fn a_refused_token_request_defers_naming_the_cause_and_nothing_is_sent() {
    let env = TestEnv::new();
    let srv = HttpsServer::start(&certs(&env), vec![accepted("never")]);
    let tok = TokenServer::start(
        &certs(&env),
        Arc::new(|_, _| {
            (
                401,
                r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1"}"#.into(),
            )
        }),
    );
    configure(&env, &graph_relay(&env, &srv, &tok, ""));
    submit(&env, &["b@x.test"], b"To: b@x.test\nSubject: x\n\ny\n");
    env.queue_run();
    assert_eq!(tok.requests().len(), 1);
    assert!(srv.requests().is_empty(), "sent without a token");
    assert_eq!(queued(&env), 1);
    let log = env.log();
    assert!(
        log.contains("status=deferred")
            && log.contains("invalid_client: AADSTS7000215: Invalid client secret provided."),
        "{log}"
    );
    let o = env.run("postern", &["status"], b"");
    assert!(o.stdout.contains("AADSTS7000215"), "{}", o.stdout);
    assert!(!o.stdout.contains("graph-s3cret") && !log.contains("graph-s3cret"));
}
