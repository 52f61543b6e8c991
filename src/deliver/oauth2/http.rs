//! The one HTTP request OAuth2 needs: an HTTPS POST of an
//! `application/x-www-form-urlencoded` body to a token (or device
//! authorization) endpoint, answered with JSON.
//!
//! Built on `ureq` 2 (blocking, no async runtime), with our own rustls
//! client configuration: the system roots plus the relay's `ca_file` (the
//! same anchors delivery trusts; a private token endpoint or a test CA goes
//! in `ca_file`), TLS 1.2/1.3 on ring. The relay's `tls_pin` is *not*
//! applied: it pins the SMTP relay's key, not the identity provider's. No
//! redirects, no proxy from the environment, bounded time and size.

use crate::config::Relay;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// Largest answer read.
const MAX_BODY: u64 = 64 * 1024;
/// TCP connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Whole-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An endpoint's answer: the HTTP status and the body (at most 64 KiB).
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The body bytes.
    pub body: Vec<u8>,
}

/// The TLS client configuration for the endpoints of `relay`: the system
/// roots and the relay's `ca_file`. Err: why, in one line.
pub fn tls_config(relay: &Relay) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(ca) = &relay.ca_file {
        let pem =
            std::fs::read(ca).map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        }
    }
    if roots.is_empty() {
        return Err("no trust anchor for the token endpoint (no system roots, no ca_file)".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// POST `body` (form-encoded) to `url`. Ok for any HTTP answer (the caller
/// reads the status); Err when there was none (DNS, connect, TLS, timeout),
/// in one line that never holds the body.
pub fn post_form(tls: Arc<rustls::ClientConfig>, url: &str, body: &str) -> Result<Answer, String> {
    let agent = ureq::AgentBuilder::new()
        .tls_config(tls)
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirects(0)
        .user_agent(concat!("postern/", env!("CARGO_PKG_VERSION")))
        .build();
    let result = agent
        .post(url)
        .set("Content-Type", "application/x-www-form-urlencoded")
        .set("Accept", "application/json")
        .send_string(body);
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => {
            return Err(format!(
                "cannot reach {}: {}",
                crate::escape::field(url),
                crate::escape::field(&t.to_string())
            ));
        }
    };
    let status = response.status();
    let mut body = Vec::new();
    response
        .into_reader()
        .take(MAX_BODY)
        .read_to_end(&mut body)
        .map_err(|e| format!("reading the answer of {}: {e}", crate::escape::field(url)))?;
    Ok(Answer { status, body })
}

/// `pairs` as `application/x-www-form-urlencoded`: letters, digits and
/// `-._*` kept, space as `+`, every other byte `%XX` (the WHATWG rule).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    fn enc(s: &str, out: &mut String) {
        for b in s.bytes() {
            match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        enc(k, &mut out);
        out.push('=');
        enc(v, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_is_the_whatwg_rule() {
        assert_eq!(
            form_encode(&[
                (
                    "scope",
                    "https://outlook.office365.com/.default offline_access"
                ),
                ("a", "x+y=z&~")
            ]),
            "scope=https%3A%2F%2Foutlook.office365.com%2F.default+offline_access&a=x%2By%3Dz%26%7E"
        );
    }
}
