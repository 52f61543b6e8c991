//! Talking to an OAuth2 endpoint: one form POST and the reading of its JSON
//! answer — a granted token (RFC 6749 §5.1), a device authorization (RFC
//! 8628 §3.2), or an error (RFC 6749 §5.2) named by its cause: the `error`
//! code (`invalid_grant`, `invalid_scope`, `unauthorized_client`, …) and
//! the start of `error_description`, where Microsoft puts its `AADSTS…`
//! code. Everything from the endpoint is escaped; no secret or token is
//! ever part of a message.

use super::http;
use crate::config::Relay;
use serde_json::Value;
use std::sync::Arc;

/// Most characters of `error_description` kept in a message.
const SHOW_DESCRIPTION: usize = 300;

/// A refusal or failure of the endpoint.
#[derive(Debug, Clone)]
pub struct EndpointError {
    /// The OAuth2 `error` code, when the endpoint sent one.
    pub code: Option<String>,
    /// One line, for the log, `postern check` and `postern status`.
    pub text: String,
}

/// A granted token (RFC 6749 §5.1).
#[derive(Debug, Clone)]
pub struct Granted {
    /// The access token.
    pub access_token: String,
    /// Lifetime in seconds (3600 when the endpoint does not say).
    pub expires_in: u64,
    /// A new refresh token, when the endpoint rotated it.
    pub refresh_token: Option<String>,
}

/// POST `form` to `url` with the trust anchors of `relay`; Ok: the JSON
/// object of a 2xx answer.
pub fn post(
    relay: &Relay,
    url: &str,
    form: &[(&str, &str)],
) -> Result<serde_json::Map<String, Value>, EndpointError> {
    let local = |text: String| EndpointError { code: None, text };
    let tls: Arc<rustls::ClientConfig> = http::tls_config(relay).map_err(local)?;
    let client =
        crate::deliver::http::Client::with_tls(tls, http::CONNECT_TIMEOUT, http::REQUEST_TIMEOUT);
    let body = http::form_encode(form);
    let resp = client
        .post(
            url,
            &[
                ("Accept", "application/json".to_string()),
                (
                    "Content-Type",
                    "application/x-www-form-urlencoded".to_string(),
                ),
            ],
            body.as_bytes(),
            body.len() as u64,
        )
        .map_err(|e| local(format!("{}: {e}", crate::escape::field(url))))?;
    answer(url, resp.status, &resp.body)
}

/// The endpoint's answer (HTTP `status`, `body`) read: Ok, the JSON object
/// of a 2xx answer; Err, the named error of an RFC 6749 §5.2 object, or
/// a line quoting the start of the body — unless the body names a token
/// (a cut or malformed grant): then it is withheld, since it may hold one.
pub fn answer(
    url: &str,
    status: u16,
    body: &str,
) -> Result<serde_json::Map<String, Value>, EndpointError> {
    let json: Option<serde_json::Map<String, Value>> = serde_json::from_str(body).ok();
    match json {
        Some(obj) if (200..300).contains(&status) => Ok(obj),
        Some(obj) if obj.get("error").and_then(Value::as_str).is_some() => Err(named(&obj)),
        _ => {
            let start = if names_a_token(body) {
                "(withheld: it names a token)".to_string()
            } else {
                crate::escape::field(&body.chars().take(120).collect::<String>()).into_owned()
            };
            Err(EndpointError {
                code: None,
                text: format!(
                    "{} answered HTTP {status} without an OAuth2 answer: {start}",
                    crate::escape::field(url),
                ),
            })
        }
    }
}

/// Does `body` name a token field (`access_token`, `refresh_token`,
/// `id_token`, `device_code`), in any case?
fn names_a_token(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    ["access_token", "refresh_token", "id_token", "device_code"]
        .iter()
        .any(|k| lower.contains(k))
}

/// An RFC 6749 §5.2 error object, named: `invalid_grant: AADSTS70008: …`.
fn named(obj: &serde_json::Map<String, Value>) -> EndpointError {
    let code = obj
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("error")
        .to_string();
    let mut text = crate::escape::field(&code).into_owned();
    if let Some(d) = obj.get("error_description").and_then(Value::as_str) {
        // Microsoft's descriptions run over several lines (trace id, time).
        let first = d.lines().next().unwrap_or("").trim();
        let cut: String = first.chars().take(SHOW_DESCRIPTION).collect();
        if !cut.is_empty() {
            text.push_str(": ");
            text.push_str(&crate::escape::field(&cut));
        }
    }
    if code == "invalid_grant" {
        text.push_str(" (the refresh token is expired, revoked or for another client: run postern oauth2 login RELAY)");
    } else if code == "invalid_scope" {
        text.push_str(" (the scope is missing or not granted to this application)");
    } else if code == "invalid_client" || code == "unauthorized_client" {
        text.push_str(" (check client_id and the client secret)");
    }
    EndpointError {
        code: Some(code),
        text,
    }
}

/// Read a granted token from a 2xx answer.
pub fn granted(obj: &serde_json::Map<String, Value>) -> Result<Granted, EndpointError> {
    let bad = |why: &str| EndpointError {
        code: None,
        text: format!("the token endpoint's answer {why}"),
    };
    let access_token = obj
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| (0x21..0x7f).contains(&b)))
        .ok_or_else(|| bad("has no usable access_token"))?
        .to_string();
    if let Some(t) = obj.get("token_type").and_then(Value::as_str)
        && !t.eq_ignore_ascii_case("bearer")
    {
        return Err(bad(&format!(
            "has token_type {:?}, not Bearer",
            crate::escape::field(t)
        )));
    }
    // Microsoft sends numbers; some servers send strings.
    let expires_in = match obj.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(3600),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(3600),
        _ => 3600,
    };
    let refresh_token = obj
        .get("refresh_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| (0x21..0x7f).contains(&b)))
        .map(str::to_string);
    Ok(Granted {
        access_token,
        expires_in,
        refresh_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(s: &str) -> serde_json::Map<String, Value> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn errors_name_the_code_and_the_aadsts_number_only() {
        let e = named(&obj(
            r#"{"error":"invalid_grant","error_description":"AADSTS70008: The provided authorization code or refresh token has expired.\r\nTrace ID: x","error_codes":[70008]}"#,
        ));
        assert_eq!(e.code.as_deref(), Some("invalid_grant"));
        assert!(
            e.text
                .starts_with("invalid_grant: AADSTS70008: The provided")
        );
        assert!(!e.text.contains("Trace ID"));
        let e = named(&obj(r#"{"error":"bad\u001b[31m"}"#));
        assert!(!e.text.contains('\u{1b}'));
    }

    #[test]
    fn an_answer_that_names_a_token_is_never_quoted() {
        // A 5xx (or a cut 2xx) carrying a token: the start of the body
        // used to be quoted into the log line.
        for (status, body) in [
            (500, r#"{"access_token":"SECRET-AT","expires_in":3600}"#),
            (200, r#"{"access_token":"SECRET-AT","refresh_tok"#),
            (400, r#"{"refresh_token":"SECRET-RT"}"#),
        ] {
            let e = answer("https://login.example/token", status, body).unwrap_err();
            assert!(!e.text.contains("SECRET"), "{}", e.text);
            assert!(e.text.contains("withheld"), "{}", e.text);
        }
        let e = answer("https://x/t", 502, "<html>Bad\x1b gateway</html>").unwrap_err();
        assert!(
            e.text.ends_with("<html>Bad\\x1b gateway</html>"),
            "{}",
            e.text
        );
        assert!(answer("https://x/t", 200, r#"{"access_token":"A"}"#).is_ok());
    }

    #[test]
    fn granted_tokens_are_read_and_checked() {
        let g = granted(&obj(
            r#"{"access_token":"AT","token_type":"Bearer","expires_in":"3599","refresh_token":"RT2"}"#,
        ))
        .unwrap();
        assert_eq!((g.access_token.as_str(), g.expires_in), ("AT", 3599));
        assert_eq!(g.refresh_token.as_deref(), Some("RT2"));
        assert!(granted(&obj(r#"{"access_token":"A T"}"#)).is_err());
        assert!(granted(&obj(r#"{"access_token":"A","token_type":"mac"}"#)).is_err());
    }
}
