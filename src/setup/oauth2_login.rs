//! `postern oauth2 login RELAY`: obtain the first refresh token of a
//! `[relay.oauth2]` relay with `flow = "refresh_token"`, interactively, and
//! store it in its `refresh_token_file` (atomically; root:postern 0640 when
//! run as root and the group exists, else 0600 owned by the caller — the
//! rule of `setup::secret`, which writes it).
//!
//! The device authorization grant (RFC 8628) when the relay has a device
//! endpoint (`device_url`; the `microsoft365` preset does): print the URL
//! and the code, poll the token endpoint at the interval the provider asks.
//! Otherwise the authorization code grant with PKCE (RFC 7636, S256) and a
//! loopback redirect `http://127.0.0.1:PORT/` (RFC 8252 §7.3; Google's
//! mail scope is not offered to devices): print the URL to open; the code
//! comes back to the loopback listener, or is pasted (the code, or the
//! whole address the browser ended on). Every wait is bounded. The refresh
//! token is never printed.

use crate::config::{Config, Flow, OAuth2, Relay};
use crate::deliver::oauth2::endpoint;
use crate::error::{Error, Kind, Result};
use base64::Engine as _;
use std::io::{BufRead, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// The grant type of a device code (RFC 8628 §3.4).
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Longest wait for the user, whatever the provider says.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// The relay named `name`: its host, `host:port`, or its 1-based position.
fn find<'c>(cfg: &'c Config, name: &str) -> Result<&'c Relay> {
    let by_pos = name
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| cfg.relays.get(i));
    let matching: Vec<&Relay> = cfg
        .relays
        .iter()
        .filter(|r| r.host == name || r.label() == name)
        .collect();
    let relay = match (by_pos, matching.as_slice()) {
        (Some(r), _) => r,
        (None, [r]) => r,
        (None, []) => {
            return Err(Error::new(
                Kind::Usage,
                format!(
                    "no relay {} (name it by host, host:port, or position 1..{})",
                    crate::escape::field(name),
                    cfg.relays.len()
                ),
            ));
        }
        (None, _) => {
            return Err(Error::new(
                Kind::Usage,
                format!(
                    "several relays are {}: name one by host:port or position",
                    crate::escape::field(name)
                ),
            ));
        }
    };
    Ok(relay)
}

/// Run the login for relay `name`, talking on `out`, reading a pasted
/// code from standard input when the loopback redirect is used.
pub fn command(cfg: &Config, name: &str, out: &mut impl Write) -> Result<u8> {
    let relay = find(cfg, name)?;
    let Some(o) = &relay.oauth2 else {
        return Err(Error::new(
            Kind::Config,
            format!("relay {} has no [relay.oauth2]", relay.host),
        ));
    };
    if o.flow == Flow::ClientCredentials {
        return Err(Error::new(
            Kind::Usage,
            format!(
                "relay {} uses flow = \"client_credentials\": it needs no login (the client secret is enough)",
                relay.host
            ),
        ));
    }
    let Some(path) = &o.refresh_token_file else {
        return Err(Error::new(Kind::Config, "no refresh_token_file"));
    };
    let secret = match &o.client_secret_file {
        Some(p) => Some(
            crate::deliver::credentials::read_secret_file(relay, "client_secret_file", p)?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let granted = if let Some(device_url) = &o.device_url {
        device_flow(relay, o, device_url, secret.as_deref(), out)?
    } else if let Some(auth_url) = &o.auth_url {
        code_flow(relay, o, auth_url, secret.as_deref(), out)?
    } else {
        return Err(Error::new(
            Kind::Config,
            format!(
                "relay {}: [relay.oauth2] has neither device_url nor auth_url: set one (or provider)",
                relay.host
            ),
        ));
    };
    let Some(refresh) = granted.refresh_token else {
        return Err(Error::new(
            Kind::TempFail,
            "the token endpoint issued no refresh token (the scope must include offline_access for Microsoft; Google issues one with access_type=offline)",
        ));
    };
    let access = crate::setup::secret::write(path, &refresh).map_err(|e| {
        Error::io(
            Kind::CantCreat,
            format!("cannot write refresh_token_file {}", path.display()),
            &e,
        )
    })?;
    let how = match access {
        crate::setup::secret::Access::RootPostern => "root:postern, mode 0640",
        crate::setup::secret::Access::CallerOnly => "mode 0600",
    };
    let _ = writeln!(
        out,
        "postern: refresh token for {} saved in {} ({how}); the daemon uses it from the next delivery",
        relay.username.as_deref().unwrap_or(""),
        path.display()
    );
    Ok(0)
}

fn refused(e: endpoint::EndpointError) -> Error {
    Error::new(Kind::TempFail, format!("the endpoint refused: {}", e.text))
}

/// A device endpoint's answer (RFC 8628 §3.2), bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// What the token endpoint is polled with.
    pub device_code: String,
    /// What the user types.
    pub user_code: String,
    /// Where the user types it (may be empty).
    pub uri: String,
    /// The same with the code filled in, when offered.
    pub complete: Option<String>,
    /// How long the code is valid: `expires_in`, at most [`MAX_WAIT`].
    pub wait: Duration,
    /// Seconds between polls: `interval`, 1 to 60.
    pub interval: u64,
}

impl Device {
    /// What the user is told: every byte from the provider escaped.
    pub fn prompt(&self, who: &str) -> String {
        let mut s = format!(
            "To let Postern send as {}, open {} and enter the code {} (within {} minutes).\n",
            crate::escape::field(who),
            crate::escape::field(&self.uri),
            crate::escape::field(&self.user_code),
            self.wait.as_secs().div_ceil(60)
        );
        if let Some(c) = &self.complete {
            s.push_str(&format!("(or open {})\n", crate::escape::field(c)));
        }
        s
    }
}

/// Read a device endpoint's JSON answer; an error says what is missing.
pub fn device_answer(
    d: &serde_json::Map<String, serde_json::Value>,
) -> std::result::Result<Device, String> {
    let text = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let num = |k: &str| d.get(k).and_then(|v| v.as_u64());
    let (Some(device_code), Some(user_code)) = (text("device_code"), text("user_code")) else {
        return Err("the device endpoint's answer has no device_code / user_code".into());
    };
    Ok(Device {
        device_code,
        user_code,
        uri: text("verification_uri")
            .or_else(|| text("verification_url"))
            .unwrap_or_default(),
        complete: text("verification_uri_complete"),
        wait: Duration::from_secs(num("expires_in").unwrap_or(900)).min(MAX_WAIT),
        interval: num("interval").unwrap_or(5).clamp(1, 60),
    })
}

/// RFC 8628: ask for a device code, show it, poll until granted.
fn device_flow(
    relay: &Relay,
    o: &OAuth2,
    device_url: &str,
    secret: Option<&str>,
    out: &mut impl Write,
) -> Result<endpoint::Granted> {
    let mut form = vec![("client_id", o.client_id.as_str())];
    if let Some(s) = secret {
        form.push(("client_secret", s));
    }
    form.push(("scope", o.scope.as_str()));
    let d = endpoint::post(relay, device_url, &form).map_err(refused)?;
    let d = device_answer(&d).map_err(|e| Error::new(Kind::TempFail, e))?;
    let who = relay.username.as_deref().unwrap_or("the mailbox");
    let _ = write!(out, "{}", d.prompt(who));
    let _ = writeln!(out, "Waiting for the sign-in…");
    let _ = out.flush();
    let (wait, mut interval) = (d.wait, d.interval);
    let start = Instant::now();
    let mut poll = vec![
        ("grant_type", DEVICE_GRANT),
        ("client_id", o.client_id.as_str()),
    ];
    if let Some(s) = secret {
        poll.push(("client_secret", s));
    }
    poll.push(("device_code", d.device_code.as_str()));
    // Bounded: at most MAX_WAIT / 1 s polls, and the deadline.
    for _ in 0..MAX_WAIT.as_secs() {
        std::thread::sleep(Duration::from_secs(interval));
        if start.elapsed() > wait {
            break;
        }
        match endpoint::post(relay, &o.token_url, &poll) {
            Ok(obj) => return endpoint::granted(&obj).map_err(refused),
            Err(e) => match e.code.as_deref() {
                Some("authorization_pending") => {}
                Some("slow_down") => interval = (interval + 5).min(60),
                _ => return Err(refused(e)),
            },
        }
    }
    Err(Error::new(
        Kind::TempFail,
        "the device code expired before the sign-in finished: run postern oauth2 login again",
    ))
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn random(n: usize) -> Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut v)
        .map_err(|_| Error::new(Kind::OsErr, "no random numbers"))?;
    Ok(v)
}

/// RFC 6749 §4.1 with PKCE and a loopback redirect (or a pasted code).
fn code_flow(
    relay: &Relay,
    o: &OAuth2,
    auth_url: &str,
    secret: Option<&str>,
    out: &mut impl Write,
) -> Result<endpoint::Granted> {
    let verifier = b64url(&random(32)?);
    let challenge =
        b64url(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
    let state = b64url(&random(16)?);
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io(Kind::OsErr, "loopback listener", &e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io(Kind::OsErr, "loopback listener", &e))?
        .port();
    let redirect = format!("http://127.0.0.1:{port}/");
    let mut q = vec![
        ("response_type", "code"),
        ("client_id", o.client_id.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("scope", o.scope.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("state", state.as_str()),
        // Google issues a refresh token only with these two.
        ("access_type", "offline"),
        ("prompt", "consent"),
    ];
    if let Some(u) = &relay.username {
        q.push(("login_hint", u.as_str()));
    }
    let sep = if auth_url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{auth_url}{sep}{}",
        crate::deliver::oauth2::http::form_encode(&q)
    );
    let _ = writeln!(
        out,
        "To let Postern send as {}, open this address in a browser on this machine:\n\n  {url}\n\nAfter the sign-in the browser returns to {redirect}. On another machine, paste the code (or the whole address it ended on) here:",
        relay.username.as_deref().unwrap_or("the mailbox")
    );
    let _ = out.flush();
    let code = wait_for_code(listener, &state)?;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("client_id", o.client_id.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    if let Some(s) = secret {
        form.push(("client_secret", s));
    }
    let obj = endpoint::post(relay, &o.token_url, &form).map_err(refused)?;
    endpoint::granted(&obj).map_err(refused)
}

/// What the query of a redirect address says: `code`, `state`, `error`
/// (percent-decoded; the fragment and anything after a space ignored).
#[derive(Debug, Default)]
struct Query {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

impl Query {
    /// The code, or the named `error`.
    fn outcome(self) -> std::result::Result<Option<String>, String> {
        match self.error {
            Some(e) => Err(format!("the sign-in failed: {}", crate::escape::field(&e))),
            None => Ok(self.code),
        }
    }
}

fn query(q: &str) -> Query {
    let q = q.split(['#', ' ']).next().unwrap_or("");
    let mut out = Query::default();
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(&v.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        match k {
            "code" => out.code = Some(v),
            "state" => out.state = Some(v),
            "error" => out.error = Some(v),
            _ => {}
        }
    }
    out
}

/// The code in what the user pasted: the code itself, or the address the
/// browser ended on (then a `state` there must be this sign-in's; an
/// `error` there is named).
pub fn code_of(text: &str, state: &str) -> std::result::Result<Option<String>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let q = match t.split_once('?') {
        Some((_, q)) => query(q),
        None if t.contains("code=") || t.contains("error=") => query(t),
        // A bare pasted code.
        None => return Ok(Some(t.to_string())),
    };
    if q.state.as_ref().is_some_and(|s| s != state) {
        return Err("the answer is for another sign-in (state does not match)".into());
    }
    q.outcome()
}

/// The code of a loopback redirect's request head (`GET /?code=…&state=…`).
/// Anyone on this host can connect to the loopback port, so only a request
/// that carries this sign-in's `state` counts (RFC 6749 §10.12): one
/// without it, or with another, is not the answer (a local user cannot
/// slip in a code for an account of theirs, nor end the wait with an
/// `error`), and neither is a target without a query (/favicon.ico).
pub fn redirect_answer(head: &[u8], state: &str) -> std::result::Result<Option<String>, String> {
    let head = String::from_utf8_lossy(head);
    let target = head
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("");
    let Some((_, q)) = target.split_once('?') else {
        return Ok(None);
    };
    let q = query(q);
    if q.state.as_deref() != Some(state) {
        return Ok(None);
    }
    q.outcome()
}

/// The code from the loopback redirect or a pasted line, whichever comes
/// first, within [`MAX_WAIT`].
fn wait_for_code(listener: TcpListener, state: &str) -> Result<String> {
    let (tx, rx) = std::sync::mpsc::channel::<std::result::Result<String, String>>();
    let tx2 = tx.clone();
    let state2 = state.to_string();
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io(Kind::OsErr, "loopback listener", &e))?;
    std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < MAX_WAIT {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 2048];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let result = redirect_answer(&buf, &state2);
            let (status, page) = match &result {
                Ok(Some(_)) => (
                    "200 OK",
                    "Postern has the sign-in; you may close this window.",
                ),
                Ok(None) => ("404 Not Found", "Not the sign-in answer."),
                Err(_) => ("400 Bad Request", "The sign-in failed; see the terminal."),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            match result {
                Ok(Some(c)) => {
                    let _ = tx.send(Ok(c));
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
                Ok(None) => {}
            }
        }
    });
    let state3 = state.to_string();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines().take(100) {
            let Ok(line) = line else { return };
            match code_of(&line, &state3) {
                Ok(Some(c)) => {
                    let _ = tx2.send(Ok(c));
                    return;
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = tx2.send(Err(e));
                    return;
                }
            }
        }
    });
    match rx.recv_timeout(MAX_WAIT) {
        Ok(Ok(code)) => Ok(code),
        Ok(Err(e)) => Err(Error::new(Kind::TempFail, e)),
        Err(_) => Err(Error::new(
            Kind::TempFail,
            "no sign-in answer within 15 minutes: run postern oauth2 login again",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_come_from_addresses_queries_or_bare_text() {
        assert_eq!(
            code_of("/?code=4%2F0Ab&state=S&scope=x", "S"),
            Ok(Some("4/0Ab".into()))
        );
        assert_eq!(
            code_of("http://127.0.0.1:5/?state=S&code=C", "S"),
            Ok(Some("C".into()))
        );
        assert_eq!(code_of("  C0DE  ", "S"), Ok(Some("C0DE".into())));
        assert!(code_of("/?code=C&state=other", "S").is_err());
        assert!(code_of("/?error=access_denied&state=S", "S").is_err());
    }

    #[test]
    fn a_device_answer_is_bounded_and_its_prompt_escaped() {
        let obj = |t: &str| match serde_json::from_str::<serde_json::Value>(t) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => panic!("not an object: {t}"),
        };
        let d = device_answer(&obj(
            r#"{"device_code":"d","user_code":"U\u001b]2;x\u0007","verification_uri_complete":"https://x/\u202e","interval":0,"expires_in":99999999}"#,
        ))
        .expect("a device answer");
        assert_eq!((d.interval, d.wait), (1, MAX_WAIT));
        let p = d.prompt("ops@example.com");
        assert_eq!(p.lines().count(), 2, "{p:?}");
        assert!(
            !p.contains('\u{1b}') && !p.contains('\u{7}') && !p.contains('\u{202e}'),
            "{p:?}"
        );
        assert!(p.contains("(within 15 minutes)"), "{p:?}");
        assert!(device_answer(&obj(r#"{"device_code":"d"}"#)).is_err());
        let d = device_answer(&obj(
            r#"{"device_code":"d","user_code":"u","interval":900}"#,
        ))
        .expect("a device answer");
        assert_eq!(
            (d.interval, d.wait.as_secs(), d.uri.as_str()),
            (60, 900, "")
        );
    }

    #[test]
    fn a_redirect_without_a_query_has_no_code() {
        let head = b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(redirect_answer(head, "S"), Ok(None));
        let head = b"GET /?code=C&state=S HTTP/1.1\r\n\r\n";
        assert_eq!(redirect_answer(head, "S"), Ok(Some("C".into())));
        // Another sign-in's answer, or none (a local user's injected code),
        // is not the answer: the wait goes on.
        assert_eq!(
            redirect_answer(b"GET /?code=C&state=T HTTP/1.1\r\n", "S"),
            Ok(None)
        );
        assert_eq!(
            redirect_answer(b"GET /?code=EVIL HTTP/1.1\r\n", "S"),
            Ok(None)
        );
        assert_eq!(
            redirect_answer(b"GET /?error=x HTTP/1.1\r\n", "S"),
            Ok(None)
        );
        assert_eq!(
            redirect_answer(b"GET /?code=C#state=S HTTP/1.1\r\n", "S"),
            Ok(None)
        );
        assert!(redirect_answer(b"GET /?error=denied&state=S HTTP/1.1\r\n", "S").is_err());
    }
}
