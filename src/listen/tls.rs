//! The listener's STARTTLS certificate: `[listen] tls_cert` (PEM chain) and
//! `tls_key` (PEM key) as a rustls server configuration (TLS 1.2 and 1.3,
//! rustls's safe defaults, on ring — the same stack as the relay client).

use crate::error::{Error, Kind, Result};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// The server configuration for `cert` and `key`; a configuration error
/// naming the file when either cannot be used.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let bad = |what: String| Error::new(Kind::Config, what);
    let pem = std::fs::read(cert).map_err(|e| {
        Error::io(
            Kind::Config,
            format!("listen.tls_cert {}", cert.display()),
            &e,
        )
    })?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("listen.tls_cert {}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(bad(format!(
            "listen.tls_cert {} holds no certificate",
            cert.display()
        )));
    }
    let pem = std::fs::read(key).map_err(|e| {
        Error::io(
            Kind::Config,
            format!("listen.tls_key {}", key.display()),
            &e,
        )
    })?;
    let key_der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| bad(format!("listen.tls_key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            bad(format!(
                "listen.tls_cert {} and tls_key {}: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    Ok(Arc::new(config))
}
