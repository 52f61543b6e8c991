//! The Amazon SES transport (`kind = "ses"`): SES v2 `SendEmail`, `POST
//! {url}/v2/email/outbound-emails` with the JSON body
//! `{"Content":{"Raw":{"Data":BASE64}},"Destination":{"ToAddresses":[...]},
//! "FromEmailAddress":SENDER}` — the MIME message (the bytes SMTP `DATA`
//! would carry) base64-encoded while it is streamed from the spool, the
//! envelope recipients as the destination (SES sends to those, whatever
//! the headers say) and the envelope sender (left out for the null
//! sender). The request is signed with AWS Signature Version 4 (`sigv4`;
//! service `ses`, `region`, the access key id as `username`, the secret
//! access key from `password_file` or `password_command`); the payload
//! hash needs the body, so the message is read twice, never held. The base
//! is `https://email.{region}.amazonaws.com`, or `url`. Limits: 40 MB per
//! request body as sent (base64), refused here as a permanent failure; 50
//! recipients per request (more go in several requests). The answer's
//! `MessageId` is the message id; its `message` (and `x-amzn-ErrorType`)
//! the error text. Answers to verdicts and the session are `api`'s.

use super::api::Api;
use super::http::{self, Client, Encoding, MimeBody, Response};
use super::mailgun::json_field;
use super::sigv4::{self, Signer};
use super::smtp::wire::WirePlan;
use super::transport::{Transaction, TxRcpt};
use crate::config::HttpApi;
use std::io::Read;

/// SES v2's documented size limit for a raw message (as sent, base64).
pub const MAX_SIZE: u64 = 40 * 1024 * 1024;

/// The SendEmail operation's path.
const PATH: &str = "/v2/email/outbound-emails";

/// SES v2 in one region.
pub struct Ses {
    url: String,
    host: String,
    path: String,
    region: String,
    access_key: String,
}

impl Ses {
    /// The API at `api.base` in `api.region`, signing as `access_key`.
    pub fn new(api: &HttpApi, access_key: &str) -> Ses {
        let rest = api.base.strip_prefix("https://").unwrap_or(&api.base);
        let (host, prefix) = match rest.find('/') {
            Some(p) => (&rest[..p], &rest[p..]),
            None => (rest, ""),
        };
        // Host as sent (and signed): the port only when not 443.
        let host = host.strip_suffix(":443").unwrap_or(host).to_string();
        Ses {
            url: format!("{}{PATH}", api.base),
            host,
            path: format!("{prefix}{PATH}"),
            region: api.region.clone(),
            access_key: access_key.to_string(),
        }
    }
}

/// The JSON around the base64 message: before it, and after it (the
/// destination and the sender).
pub fn envelope_json(sender: &str, rcpts: &[TxRcpt]) -> (Vec<u8>, Vec<u8>) {
    let head = br#"{"Content":{"Raw":{"Data":""#.to_vec();
    let to: Vec<&str> = rcpts.iter().map(|r| r.address.as_str()).collect();
    let mut tail = format!(
        r#""}}}},"Destination":{{"ToAddresses":{}}}"#,
        serde_json::to_string(&to).unwrap_or_else(|_| "[]".into())
    );
    if !sender.is_empty() {
        tail.push_str(&format!(
            r#","FromEmailAddress":{}"#,
            serde_json::to_string(sender).unwrap_or_else(|_| "\"\"".into())
        ));
    }
    tail.push('}');
    (head, tail.into_bytes())
}

/// `20150830T123600Z` for `t`.
pub fn amz_date(t: std::time::SystemTime) -> String {
    crate::clock::iso8601(t).replace(['-', ':'], "")
}

impl Api for Ses {
    fn provider(&self) -> &'static str {
        "SES"
    }

    fn max_size(&self, mime_len: u64) -> (u64, u64) {
        (http::encoded_len(mime_len, Encoding::Base64), MAX_SIZE)
    }

    fn max_mime(&self) -> u64 {
        MAX_SIZE / 4 * 3
    }

    fn max_rcpts(&self) -> usize {
        50
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
        let (head, tail) = envelope_json(tx.sender, rcpts);
        let mime_len = http::mime_len(plan) + prefix.len() as u64;
        let len = MimeBody::length(&head, mime_len, Encoding::Base64, &tail);
        // First pass: the payload hash.
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        let mut body = MimeBody::new(
            tx.file,
            tx.start,
            tx.len,
            plan,
            Encoding::Base64,
            head.clone(),
            tail.clone(),
        )
        .with_prefix(prefix);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = body
                .read(&mut buf)
                .map_err(|e| format!("cannot read the queue file: {e}"))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
        }
        let payload_hash = sigv4::hex(hash.finish().as_ref());
        let headers = self.signed_headers(secret, &payload_hash);
        // Second pass: the request itself.
        let body = MimeBody::new(
            tx.file,
            tx.start,
            tx.len,
            plan,
            Encoding::Base64,
            head,
            tail,
        )
        .with_prefix(prefix);
        client.post(&self.url, &headers, body, len)
    }

    fn probe(&self, client: &Client, secret: &str) -> Result<Response, String> {
        let body = b"{}";
        let headers = self.signed_headers(secret, &sigv4::sha256_hex(body));
        client.post(&self.url, &headers, &body[..], body.len() as u64)
    }

    fn message_id(&self, resp: &Response) -> Option<String> {
        json_field(&resp.body, "MessageId")
    }

    fn error_text(&self, resp: &Response) -> String {
        let text = json_field(&resp.body, "message")
            .or_else(|| json_field(&resp.body, "Message"))
            .unwrap_or_else(|| resp.body.clone());
        match resp.header("x-amzn-errortype") {
            Some(t) => format!("{}: {text}", t.split(':').next().unwrap_or(t)),
            None => text,
        }
    }
}

impl Ses {
    /// The request's headers, signed now for a body hashing to
    /// `payload_hash`.
    fn signed_headers(&self, secret: &str, payload_hash: &str) -> [(&'static str, String); 5] {
        let date = amz_date(crate::clock::now());
        let signer = Signer {
            access_key: &self.access_key,
            secret,
            region: &self.region,
            service: "ses",
        };
        let signed = signer.sign(
            "POST",
            &self.path,
            &[
                ("content-type", "application/json"),
                ("host", &self.host),
                ("x-amz-date", &date),
            ],
            payload_hash,
            &date,
        );
        [
            ("Content-Type", "application/json".to_string()),
            ("Host", self.host.clone()),
            ("X-Amz-Date", date),
            ("Authorization", signed.authorization),
            ("Accept", "application/json".to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_and_endpoint() {
        let rcpts = [TxRcpt {
            address: "a\"b@example.com".into(),
            original: "x".into(),
        }];
        let (head, tail) = envelope_json("s@example.org", &rcpts);
        let mut whole = head.clone();
        whole.extend_from_slice(b"QUJD");
        whole.extend_from_slice(&tail);
        let v: serde_json::Value = serde_json::from_slice(&whole).unwrap();
        assert_eq!(v["Content"]["Raw"]["Data"], "QUJD");
        assert_eq!(v["Destination"]["ToAddresses"][0], "a\"b@example.com");
        assert_eq!(v["FromEmailAddress"], "s@example.org");
        let (_, tail) = envelope_json("", &rcpts);
        assert!(
            !String::from_utf8(tail)
                .unwrap()
                .contains("FromEmailAddress")
        );
        let api = HttpApi {
            base: "https://127.0.0.1:8443/prefix".into(),
            domain: String::new(),
            region: "eu-west-1".into(),
        };
        let s = Ses::new(&api, "AKID");
        assert_eq!(s.host, "127.0.0.1:8443");
        assert_eq!(s.path, "/prefix/v2/email/outbound-emails");
        assert_eq!(
            s.url,
            "https://127.0.0.1:8443/prefix/v2/email/outbound-emails"
        );
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        assert_eq!(amz_date(t), "20150830T123600Z");
    }
}
