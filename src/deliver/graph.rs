//! The Microsoft Graph transport (`kind = "graph"`): `POST
//! {url}/v1.0/users/{username}/sendMail` with the MIME message — the bytes
//! SMTP `DATA` would carry — base64-encoded (standard alphabet, padded, no
//! line breaks) while it is streamed from the spool, as `Content-Type:
//! text/plain`, sent as the mailbox named by `username` (percent-encoded
//! as a path segment). The token is the relay's `[relay.oauth2]` access
//! token (`Authorization: Bearer`; client credentials with `Mail.Send` as
//! an application permission); `api` refreshes it once when Graph refuses
//! a cached one with 401. The base is `https://graph.microsoft.com`, or
//! `url`.
//!
//! Graph takes the recipients of a MIME message from its header, not from
//! an envelope, so each transaction is checked first ([`Api::prepare`]):
//! an address in To, Cc or Bcc that is not an envelope recipient would
//! receive the message, so every recipient is refused permanently (route
//! such a sender to an SMTP relay); more than 500 recipients (Graph's
//! limit) likewise; envelope recipients the header does not name are
//! added in one `Bcc:` field before the first header line (Exchange
//! removes Bcc from the delivered copies). Hence one request per
//! transaction, never split.
//!
//! Limits: 4 MB per request (the base64 body; the MIME message, added
//! `Bcc:` included, at most 3 MiB), refused here as a permanent failure.
//! Graph answers 202 with no message id: the answer's `request-id` header
//! goes into the reply (and the log). 404 (no such mailbox) is a setting
//! to fix, not a bad message: deferred with the credentials alert, as
//! 401 and 403. Error text: the JSON `error.code: error.message`. Answers
//! to verdicts and the session are `api`'s.

use super::api::Api;
use super::http::{self, Client, Encoding, MimeBody, Response};
use super::smtp::wire::{self, WirePlan};
use super::transport::{Transaction, TxRcpt};
use super::{Reply, Verdict};
use crate::config::HttpApi;

/// Graph's documented limit for a `sendMail` request (the base64 body).
pub const MAX_REQUEST: u64 = 4 * 1024 * 1024;
/// The largest MIME message whose base64 form fits [`MAX_REQUEST`].
pub const MAX_MIME: u64 = MAX_REQUEST / 4 * 3;
/// Graph's limit of recipients per message.
pub const MAX_RCPTS: usize = 500;
/// Longest header block read to check the recipients.
const MAX_HEADER: usize = 1024 * 1024;
/// Where the added `Bcc:` field is folded.
const FOLD_AT: usize = 78;
/// What a refusal asks the administrator to do.
const ROUTE: &str = "route this sender to an SMTP relay (senders = [...])";

/// Graph's `sendMail` for one mailbox.
pub struct Graph {
    url: String,
    user: String,
}

impl Graph {
    /// The API at `api.base`, sending as `user`.
    pub fn new(api: &HttpApi, user: &str) -> Graph {
        Graph {
            url: format!("{}/v1.0/users/{}/sendMail", api.base, path_segment(user)),
            user: user.to_string(),
        }
    }

    /// The request's headers for `token`.
    fn headers(token: &str) -> [(&'static str, String); 3] {
        [
            ("Authorization", format!("Bearer {token}")),
            ("Content-Type", "text/plain".to_string()),
            ("Accept", "application/json".to_string()),
        ]
    }
}

/// `s` as one URL path segment: letters, digits, `-._~` and `@` kept,
/// every other byte `%XX`.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One `Bcc:` field naming `addrs`, folded before an address that would
/// take a line past [`FOLD_AT`] characters, with its CRLF.
pub fn bcc_field(addrs: &[&str]) -> Vec<u8> {
    let mut out = String::from("Bcc:");
    let mut line = out.len();
    for (i, a) in addrs.iter().enumerate() {
        let piece = if i + 1 < addrs.len() {
            format!("{a},")
        } else {
            a.to_string()
        };
        if i > 0 && line + 1 + piece.len() > FOLD_AT {
            out.push_str("\r\n");
            line = 0;
        }
        out.push(' ');
        out.push_str(&piece);
        line += 1 + piece.len();
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The message's header block in its wire form (CRLF), up to the empty
/// line; the whole message when it has none. Err: an I/O error, or a
/// block over [`MAX_HEADER`] (Some: the reply).
fn header_block(tx: &Transaction<'_>, plan: &WirePlan) -> Result<Vec<u8>, (Verdict, Reply)> {
    let mut head = Vec::new();
    for chunk in wire::stream(tx.file, tx.start, tx.len, plan) {
        let chunk = chunk.map_err(|e| {
            (
                Verdict::Deferred,
                Reply::local(format!("cannot read the queue file: {e}")),
            )
        })?;
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk);
        if head.starts_with(b"\r\n") {
            head.truncate(0);
            return Ok(head);
        }
        if let Some(p) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(from + p + 2);
            return Ok(head);
        }
        if head.len() > MAX_HEADER {
            return Err((
                Verdict::Bounced,
                Reply {
                    code: 554,
                    text: format!(
                        "5.6.0 the message's header is over {MAX_HEADER} bytes: its recipients cannot be checked for Microsoft Graph; {ROUTE}"
                    ),
                },
            ));
        }
    }
    Ok(head)
}

/// The (lower-case name, value with its folds) of each field in `head`,
/// which ends, as for an MTA, at the first line that is neither a field
/// (`name:`) nor a continuation.
fn fields(head: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for line in head.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if let Some((_, v)) = out.last_mut() {
                v.extend_from_slice(line);
            }
            continue;
        }
        let Some(c) = line.iter().position(|b| *b == b':') else {
            break;
        };
        let name = line[..c].trim_ascii_end();
        if name.is_empty() || !name.iter().all(|b| (33..=126).contains(b)) {
            break;
        }
        out.push((
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            line[c + 1..].to_vec(),
        ));
    }
    for (_, v) in &mut out {
        while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            v.pop();
        }
    }
    out
}

/// The check of [`Api::prepare`] on a header block: the `Bcc:` field to
/// add (empty: none), or why every recipient is refused.
pub fn recipients_check(head: &[u8], rcpts: &[TxRcpt]) -> Result<Vec<u8>, Reply> {
    let refuse = |enhanced: &str, why: String| Reply {
        code: 554,
        text: format!("{enhanced} {why}; {ROUTE}"),
    };
    if rcpts.len() > MAX_RCPTS {
        return Err(refuse(
            "5.5.3",
            format!(
                "Microsoft Graph takes at most {MAX_RCPTS} recipients per message, this one has {}",
                rcpts.len()
            ),
        ));
    }
    let envelope: Vec<String> = rcpts.iter().map(|r| r.address.to_lowercase()).collect();
    let mut named: Vec<String> = Vec::new();
    for (name, value) in fields(head) {
        if !matches!(name.as_str(), "to" | "cc" | "bcc") {
            continue;
        }
        let shown = if name == "bcc" {
            "Bcc"
        } else if name == "cc" {
            "Cc"
        } else {
            "To"
        };
        let text = String::from_utf8_lossy(&value);
        let list = crate::address::parse::parse_address_list(text.as_bytes()).map_err(|e| {
            refuse(
                "5.6.0",
                format!(
                    "Microsoft Graph sends to every To/Cc address, and the {shown} header cannot be read ({})",
                    crate::escape::field(&e.to_string())
                ),
            )
        })?;
        for m in list {
            let a = m.addr.to_lowercase();
            if !envelope.contains(&a) {
                return Err(refuse(
                    "5.7.0",
                    format!(
                        "Microsoft Graph sends to every To/Cc address, and {} in the {shown} header is not a recipient of this message",
                        crate::escape::field(&m.addr)
                    ),
                ));
            }
            named.push(a);
        }
    }
    let mut extra: Vec<&str> = Vec::new();
    for (r, low) in rcpts.iter().zip(&envelope) {
        if !named.contains(low) && !extra.iter().any(|e| e.eq_ignore_ascii_case(&r.address)) {
            extra.push(&r.address);
        }
    }
    if extra.is_empty() {
        return Ok(Vec::new());
    }
    Ok(bcc_field(&extra))
}

/// The Graph error object's `code: message` (or the body).
fn graph_error(body: &str) -> String {
    let v: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let e = v.as_ref().and_then(|v| v.get("error"));
    let code = e.and_then(|e| e.get("code")).and_then(|c| c.as_str());
    let msg = e.and_then(|e| e.get("message")).and_then(|c| c.as_str());
    match (code, msg) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) => body.to_string(),
    }
}

impl Api for Graph {
    fn provider(&self) -> &'static str {
        "Graph"
    }

    fn max_size(&self, mime_len: u64) -> (u64, u64) {
        (http::encoded_len(mime_len, Encoding::Base64), MAX_REQUEST)
    }

    fn max_mime(&self) -> u64 {
        MAX_MIME
    }

    fn max_rcpts(&self) -> usize {
        MAX_RCPTS
    }

    fn prepare(&self, tx: &Transaction<'_>, plan: &WirePlan) -> Result<Vec<u8>, (Verdict, Reply)> {
        let head = header_block(tx, plan)?;
        recipients_check(&head, tx.rcpts).map_err(|r| (Verdict::Bounced, r))
    }

    fn send(
        &self,
        client: &Client,
        secret: &str,
        tx: &Transaction<'_>,
        _rcpts: &[TxRcpt],
        plan: &WirePlan,
        prefix: &[u8],
    ) -> Result<Response, String> {
        let mime_len = http::mime_len(plan) + prefix.len() as u64;
        let len = MimeBody::length(&[], mime_len, Encoding::Base64, &[]);
        let body = MimeBody::new(
            tx.file,
            tx.start,
            tx.len,
            plan,
            Encoding::Base64,
            Vec::new(),
            Vec::new(),
        )
        .with_prefix(prefix);
        client.post(&self.url, &Graph::headers(secret), body, len)
    }

    fn probe(&self, client: &Client, secret: &str) -> Result<Response, String> {
        client.post(&self.url, &Graph::headers(secret), &b""[..], 0)
    }

    fn message_id(&self, resp: &Response) -> Option<String> {
        resp.header("request-id").map(str::to_string)
    }

    fn error_text(&self, resp: &Response) -> String {
        graph_error(&resp.body)
    }

    fn id_label(&self) -> &'static str {
        "request-id"
    }

    fn refuses_credentials(&self, status: u16) -> bool {
        matches!(status, 401 | 403 | 404)
    }

    fn credentials_hint(&self) -> &'static str {
        "check the app's Mail.Send application permission (admin consent), the Exchange application access policy, and username (the mailbox)"
    }

    fn check_answer(&self, status: u16, text: &str) -> Option<(Option<bool>, String)> {
        let user = crate::escape::field(&self.user);
        Some(match status {
            400 => (
                Some(true),
                format!(
                    "token accepted; sending as {user} (HTTP 400 to an empty request: {text}; nothing sent)"
                ),
            ),
            401 => (
                Some(false),
                format!(
                    "Graph refused the token (HTTP 401): {text}; check the tenant, client_id and scope (https://graph.microsoft.com/.default)"
                ),
            ),
            403 => (
                Some(false),
                format!(
                    "Graph refused to send as {user} (HTTP 403): {text}; grant the app Mail.Send as an application permission with admin consent, and check the application access policy"
                ),
            ),
            404 => (
                Some(false),
                format!("Graph knows no mailbox {user} (HTTP 404): {text}; check username"),
            ),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpts(list: &[&str]) -> Vec<TxRcpt> {
        list.iter()
            .map(|a| TxRcpt {
                address: a.to_string(),
                original: a.to_string(),
            })
            .collect()
    }

    #[test]
    fn the_base64_length_is_known_before_encoding() {
        for n in [0u64, 1, 2, 3, 4, 5, 6, 3 * 1024 * 1024, 3 * 1024 * 1024 + 1] {
            let data = vec![b'x'; n as usize];
            let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &data);
            assert_eq!(
                http::encoded_len(n, Encoding::Base64),
                b64.len() as u64,
                "{n}"
            );
        }
        // 3 MiB of MIME is exactly Graph's 4 MiB request; one more byte is over.
        let g = Graph::new(
            &HttpApi {
                base: "https://graph.microsoft.com".into(),
                domain: String::new(),
                region: String::new(),
            },
            "o'brien+x@example.com",
        );
        assert_eq!(g.max_size(MAX_MIME), (MAX_REQUEST, MAX_REQUEST));
        assert!(g.max_size(MAX_MIME + 1).0 > MAX_REQUEST);
        assert_eq!(
            g.url,
            "https://graph.microsoft.com/v1.0/users/o%27brien%2Bx@example.com/sendMail"
        );
    }

    #[test]
    fn the_bcc_field_folds_at_78() {
        assert_eq!(bcc_field(&["a@x.test"]), b"Bcc: a@x.test\r\n");
        let many: Vec<String> = (0..12).map(|i| format!("user{i:02}@example.com")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let f = String::from_utf8(bcc_field(&refs)).unwrap();
        assert!(f.ends_with("\r\n"));
        let lines: Vec<&str> = f.trim_end().split("\r\n").collect();
        assert!(lines.len() > 1, "{f}");
        for (i, l) in lines.iter().enumerate() {
            assert!(l.len() <= FOLD_AT, "{l}");
            assert_eq!(i > 0, l.starts_with(' '), "{l}");
        }
        // Unfolded, it is the plain list.
        assert_eq!(
            f.replace("\r\n ", " ").trim_end(),
            format!("Bcc: {}", refs.join(", "))
        );
        // An address longer than a line still gets a line of its own.
        let long = "l".repeat(90) + "@x.test";
        let f = String::from_utf8(bcc_field(&["a@x.test", &long])).unwrap();
        assert_eq!(f, format!("Bcc: a@x.test,\r\n {long}\r\n"));
    }

    #[test]
    fn header_recipients_must_be_envelope_recipients() {
        let head = b"From: s@example.com\r\nTo: A <a@x.test>,\r\n b@x.test\r\nCc: c@Y.test\r\nSubject: hi\r\n";
        // All named: nothing to add.
        assert_eq!(
            recipients_check(head, &rcpts(&["a@x.test", "B@x.test", "c@y.test"])).unwrap(),
            b""
        );
        // An envelope-only recipient goes into Bcc.
        assert_eq!(
            recipients_check(
                head,
                &rcpts(&["a@x.test", "b@x.test", "c@y.test", "d@z.test"])
            )
            .unwrap(),
            b"Bcc: d@z.test\r\n"
        );
        // A header address outside the envelope refuses the message.
        let e = recipients_check(head, &rcpts(&["a@x.test", "c@y.test"])).unwrap_err();
        assert_eq!(e.code, 554);
        assert!(e.text.starts_with("5.7.0 "), "{e}");
        assert!(e.text.contains("b@x.test in the To header"), "{e}");
        assert!(e.text.contains("senders = [...]"), "{e}");
        // The header ends at a line that is not a field: "Cc:" after it is body.
        let head = b"To: a@x.test\r\nnot a field\r\nCc: z@x.test\r\n";
        assert_eq!(recipients_check(head, &rcpts(&["a@x.test"])).unwrap(), b"");
        let many: Vec<String> = (0..501).map(|i| format!("u{i}@x.test")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let e = recipients_check(b"Subject: x\r\n", &rcpts(&refs)).unwrap_err();
        assert!(e.text.contains("at most 500 recipients"), "{e}");
        assert_eq!(
            graph_error(r#"{"error":{"code":"ErrorInvalidRecipients","message":"bad"}}"#),
            "ErrorInvalidRecipients: bad"
        );
    }
}
