//! What OAuth2 needs around its HTTP requests: the TLS trust for token
//! (and device authorization) endpoints, and the form encoding of the
//! body. The request itself — an HTTPS/1.1 POST, one per connection,
//! bounded in time and size — goes through [`crate::deliver::http`], the
//! client the HTTPS API transports use (our own over rustls: `ureq` 2 was
//! tried and grew the peak RSS of `sendmail -t` by about 0.45 MB).
//!
//! TLS trusts the system roots plus the relay's `ca_file` (the anchors
//! delivery trusts: a private token endpoint or a test CA goes in
//! `ca_file`), TLS 1.2/1.3 on ring, SNI and name check against the URL's
//! host. The relay's `tls_pin` is *not* applied: it pins the SMTP relay's
//! key, not the identity provider's.

use crate::config::Relay;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;
use std::time::Duration;

/// TCP connect timeout, per address.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Each write and each read of the exchange.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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
