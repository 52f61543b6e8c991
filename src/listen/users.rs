//! The listener's AUTH users: `[listen] users_file`, `user:password` lines,
//! held under the same ownership rule as a relay's `password_file` (never
//! readable by every user), checked in constant time per candidate.

use crate::error::{Error, Kind, Result};
use crate::submit::smtpd::Authenticator;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The users who may authenticate to the listener.
pub struct Users {
    entries: Vec<(String, Vec<u8>)>,
}

impl Users {
    /// Read `path`: one `user:password` per line (the password is the rest
    /// of the line after the first colon), `#` comments and blank lines
    /// ignored. Refused when readable by every user, not a regular file,
    /// or without a single user.
    pub fn load(path: &Path) -> Result<Users> {
        let shown = path.display();
        let md = std::fs::metadata(path)
            .map_err(|e| Error::io(Kind::Config, format!("listen.users_file {shown}"), &e))?;
        if !md.is_file() {
            return Err(Error::new(
                Kind::Config,
                format!("listen.users_file {shown} is not a regular file"),
            ));
        }
        if md.mode() & 0o004 != 0 {
            return Err(Error::new(
                Kind::Config,
                format!(
                    "listen.users_file {shown} is readable by every user; run: chown root:postern {shown} && chmod 640 {shown}"
                ),
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(Kind::Config, format!("listen.users_file {shown}"), &e))?;
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((u, p)) if !u.trim().is_empty() && !p.is_empty() => {
                    entries.push((u.trim().to_string(), p.as_bytes().to_vec()));
                }
                _ => {
                    return Err(Error::new(
                        Kind::Config,
                        format!(
                            "listen.users_file {shown}:{}: expected user:password",
                            n + 1
                        ),
                    ));
                }
            }
        }
        if entries.is_empty() {
            return Err(Error::new(
                Kind::Config,
                format!("listen.users_file {shown} names no user"),
            ));
        }
        Ok(Users { entries })
    }
}

impl std::fmt::Debug for Users {
    // Never the passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Users({} entries)", self.entries.len())
    }
}

/// Equal in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator for Users {
    fn check(&self, user: &str, password: &[u8]) -> bool {
        let mut ok = false;
        for (u, p) in &self.entries {
            // Every entry is compared, so the time does not say which
            // user exists.
            let hit = same(u.as_bytes(), user.as_bytes()) & same(p, password);
            ok |= hit;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn lines_mode_and_check() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users");
        std::fs::write(&p, "# apps\nalice:s3cr:et\n\nbob:pw\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            Users::load(&p)
                .unwrap_err()
                .message()
                .contains("readable by every user")
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let u = Users::load(&p).unwrap();
        assert!(u.check("alice", b"s3cr:et"));
        assert!(u.check("bob", b"pw"));
        assert!(!u.check("bob", b"pw "));
        assert!(!u.check("carol", b"pw"));
        std::fs::write(&p, "nopassword\n").unwrap();
        assert!(Users::load(&p).unwrap_err().message().contains(":1:"));
        std::fs::write(&p, "# none\n").unwrap();
        assert!(Users::load(&p).unwrap_err().message().contains("no user"));
    }
}
