//! The token cache file: `<spool>/oauth2/<host>_<user>.json`, mode 0600 in
//! a 0700 directory, owned by the spool's owner (the daemon's user; a root
//! `postern check` hands what it writes over to that user). Written
//! atomically (a new file in the same directory, renamed over the old).
//!
//! It holds the current access token and its expiry, so that a restart
//! does not fetch a new one, and — when the token endpoint rotated the
//! refresh token — the new refresh token together with the SHA-256 of the
//! `refresh_token_file` content it replaces: while that file is unchanged
//! the rotated token is used; once an administrator writes a new one
//! (`postern oauth2 login`), the file wins again. The entry also records
//! the endpoint, client, scope and user it was issued for; an entry for
//! other settings is ignored.

use serde::{Deserialize, Serialize};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Largest cache file read.
const MAX_LEN: u64 = 64 * 1024;

/// One cache entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// Token endpoint, client id, scope and SASL user the token is for.
    pub token_url: String,
    pub client_id: String,
    pub scope: String,
    pub user: String,
    /// The access token.
    pub access_token: String,
    /// Unix time it expires.
    pub expires_at: u64,
    /// A rotated refresh token, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Hex SHA-256 of the `refresh_token_file` token it replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_from: Option<String>,
}

/// The cache directory.
pub fn dir(spool_dir: &Path) -> PathBuf {
    spool_dir.join("oauth2")
}

/// The file name for `host` and `user`: unusual bytes become `_`.
pub fn path(spool_dir: &Path, host: &str, user: &str) -> PathBuf {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '@' | '+') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    dir(spool_dir).join(format!("{}_{}.json", clean(host), clean(user)))
}

/// Read an entry: absent, unreadable, too big or malformed is None.
pub fn read(path: &Path) -> Option<Entry> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let md = f.metadata().ok()?;
    if !md.is_file() || md.len() > MAX_LEN || md.mode() & 0o077 != 0 {
        return None;
    }
    let mut buf = Vec::new();
    f.take(MAX_LEN).read_to_end(&mut buf).ok()?;
    decode(&buf)
}

/// The entry a cache file's bytes hold (None: malformed).
pub fn decode(bytes: &[u8]) -> Option<Entry> {
    serde_json::from_slice(bytes).ok()
}

/// A cache file's bytes.
pub fn encode(entry: &Entry) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec(entry).map_err(std::io::Error::other)
}

/// Write `entry` atomically, mode 0600, owned by the spool's owner.
pub fn write(spool_dir: &Path, path: &Path, entry: &Entry) -> std::io::Result<()> {
    let d = dir(spool_dir);
    let owner = std::fs::metadata(spool_dir).map(|m| (m.uid(), m.gid()))?;
    if !d.is_dir() {
        std::fs::DirBuilder::new().mode(0o700).create(&d)?;
        give(&d, owner)?;
    }
    let bytes = encode(entry)?;
    crate::spool::durable::write_atomic(&d, path, &bytes, 0o600, true)?;
    give(path, owner)
}

/// Hand `p` to the spool's owner when we are root (e.g. `postern check`).
fn give(p: &Path, (uid, gid): (u32, u32)) -> std::io::Result<()> {
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// Hex SHA-256 of `s`.
pub fn digest(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_mode_and_names() {
        let t = tempfile::tempdir().unwrap();
        let p = path(t.path(), "smtp.office365.com", "a b@x/y");
        assert!(p.ends_with("oauth2/smtp.office365.com_a_b@x_y.json"));
        let e = Entry {
            access_token: "AT".into(),
            expires_at: 9,
            refresh_token: Some("R".into()),
            rotated_from: Some(digest("old")),
            ..Default::default()
        };
        write(t.path(), &p, &e).unwrap();
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!(md.mode() & 0o777, 0o600);
        assert_eq!(read(&p), Some(e));
    }
}
