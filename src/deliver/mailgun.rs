//! The Mailgun transport (`kind = "mailgun"`): `POST
//! {url}/v3/{domain}/messages.mime` as `multipart/form-data` with one `to`
//! field per envelope recipient and the `message` part holding the MIME
//! message — the bytes SMTP `DATA` would carry, streamed from the spool.
//! The API key (`password_file` or `password_command`) goes by HTTP Basic
//! auth with the user `api` (or `username`). The base is
//! `https://api.mailgun.net`, `https://api.eu.mailgun.net` for `region =
//! "eu"`, or `url`. Mailgun takes the sender from the message's `From`
//! header (the API has no envelope sender for raw MIME). Limits: 25 MB per
//! message (refused here as a permanent failure), 1,000 recipients per
//! request (more are sent in several requests). The answer's `id` is the
//! message id; its `message` the error text. Everything else (answers to
//! verdicts, the session) is `api`'s.

use super::api::Api;
use super::http::{Client, Encoding, MimeBody, Response};
use super::smtp::wire::WirePlan;
use super::transport::{Transaction, TxRcpt};
use crate::config::HttpApi;
use base64::Engine as _;

/// Mailgun's documented message size limit.
pub const MAX_SIZE: u64 = 25 * 1024 * 1024;

/// Mailgun's API for one sending domain.
pub struct Mailgun {
    url: String,
    user: String,
}

impl Mailgun {
    /// The API at `api.base` for `api.domain`, Basic auth user `user`.
    pub fn new(api: &HttpApi, user: &str) -> Mailgun {
        Mailgun {
            url: format!("{}/v3/{}/messages.mime", api.base, api.domain),
            user: user.to_string(),
        }
    }
}

impl Mailgun {
    /// The `Authorization` value for `secret`.
    fn basic(&self, secret: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        format!("Basic {}", b64.encode(format!("{}:{secret}", self.user)))
    }
}

/// A multipart boundary that cannot occur in the message by chance.
fn boundary() -> String {
    let mut b = [0u8; 16];
    let rng = ring::rand::SystemRandom::new();
    if ring::rand::SecureRandom::fill(&rng, &mut b).is_err() {
        // Practically unreachable; a boundary from the clock still works
        // for any message that does not contain it.
        b[..8].copy_from_slice(&crate::clock::unix_micros(crate::clock::now()).to_le_bytes());
    }
    format!("postern-{}", super::sigv4::hex(&b))
}

/// The body's pieces around the message: the `to` fields and the
/// `message` part's header; then the closing delimiter.
pub fn form(boundary: &str, rcpts: &[TxRcpt]) -> (Vec<u8>, Vec<u8>) {
    let mut head = String::new();
    for r in rcpts {
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\n{}\r\n",
            r.address
        ));
    }
    head.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"message\"; filename=\"message.mime\"\r\nContent-Type: message/rfc822\r\n\r\n"
    ));
    let tail = format!("\r\n--{boundary}--\r\n");
    (head.into_bytes(), tail.into_bytes())
}

impl Api for Mailgun {
    fn provider(&self) -> &'static str {
        "Mailgun"
    }

    fn max_size(&self, mime_len: u64) -> (u64, u64) {
        (mime_len, MAX_SIZE)
    }

    fn max_mime(&self) -> u64 {
        MAX_SIZE
    }

    fn max_rcpts(&self) -> usize {
        1000
    }

    fn send(
        &self,
        client: &Client,
        secret: &str,
        tx: &Transaction<'_>,
        rcpts: &[TxRcpt],
        plan: &WirePlan,
        prefix: &[u8],
    ) -> Result<Response, String> {
        let b = boundary();
        let (head, tail) = form(&b, rcpts);
        let mime_len = super::http::mime_len(plan) + prefix.len() as u64;
        let len = MimeBody::length(&head, mime_len, Encoding::Raw, &tail);
        let body = MimeBody::new(tx.file, tx.start, tx.len, plan, Encoding::Raw, head, tail)
            .with_prefix(prefix);
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}", self.user));
        let headers = [
            ("Authorization", format!("Basic {auth}")),
            ("Content-Type", format!("multipart/form-data; boundary={b}")),
            ("Accept", "application/json".to_string()),
        ];
        client.post(&self.url, &headers, body, len)
    }

    fn probe(&self, client: &Client, secret: &str) -> Result<Response, String> {
        let b = boundary();
        let body = format!("--{b}--\r\n");
        let headers = [
            ("Authorization", self.basic(secret)),
            ("Content-Type", format!("multipart/form-data; boundary={b}")),
            ("Accept", "application/json".to_string()),
        ];
        client.post(&self.url, &headers, body.as_bytes(), body.len() as u64)
    }

    fn message_id(&self, resp: &Response) -> Option<String> {
        json_field(&resp.body, "id")
    }

    fn error_text(&self, resp: &Response) -> String {
        json_field(&resp.body, "message").unwrap_or_else(|| resp.body.clone())
    }
}

/// The string field `name` of a JSON object in `body`.
pub fn json_field(body: &str, name: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get(name)?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_and_closing_delimiter() {
        let rcpts = [
            TxRcpt {
                address: "a@example.com".into(),
                original: "a@example.com".into(),
            },
            TxRcpt {
                address: "b@example.org".into(),
                original: "b".into(),
            },
        ];
        let (head, tail) = form("B", &rcpts);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "--B\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\na@example.com\r\n\
             --B\r\nContent-Disposition: form-data; name=\"to\"\r\n\r\nb@example.org\r\n\
             --B\r\nContent-Disposition: form-data; name=\"message\"; filename=\"message.mime\"\r\nContent-Type: message/rfc822\r\n\r\n"
        );
        assert_eq!(tail, b"\r\n--B--\r\n");
        let b1 = boundary();
        assert!(b1.starts_with("postern-") && b1.len() == 40, "{b1}");
        assert_ne!(b1, boundary());
    }

    #[test]
    fn answer_fields() {
        let body = r#"{"id":"<20261206.1@mg.example.com>","message":"Queued. Thank you."}"#;
        assert_eq!(
            json_field(body, "id").as_deref(),
            Some("<20261206.1@mg.example.com>")
        );
        assert_eq!(json_field("not json", "id"), None);
    }
}
