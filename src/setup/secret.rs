//! Writing the relay secret for `postern setup`: atomically (a new file in
//! the same directory, fsync, rename, fsync the directory), never readable
//! by others, owned root:postern mode 0640 when run as root and the group
//! exists (the daemon, user postern, reads it), else 0600 owned by the
//! caller.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Who may read the written secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// root:postern 0640.
    RootPostern,
    /// The caller only, 0600 (not root, or no group postern).
    CallerOnly,
}

/// The group the daemon runs in.
pub const GROUP: &str = "postern";

/// Write `secret` (one line) to `path`, replacing it atomically.
pub fn write(path: &Path, secret: &str) -> std::io::Result<Access> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the secret file has no name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let group = if nix::unistd::geteuid().is_root() {
        nix::unistd::Group::from_name(GROUP).ok().flatten()
    } else {
        None
    };
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        let access = match &group {
            Some(g) => {
                std::os::unix::fs::fchown(&f, Some(0), Some(g.gid.as_raw()))?;
                f.set_permissions(std::fs::Permissions::from_mode(0o640))?;
                Access::RootPostern
            }
            None => {
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                Access::CallerOnly
            }
        };
        f.write_all(secret.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(access)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Is `s` usable as a secret (one line, not empty)?
pub fn check(s: &str) -> std::result::Result<(), &'static str> {
    if s.is_empty() {
        return Err("the secret is empty");
    }
    if s.contains(['\n', '\r', '\0']) {
        return Err("the secret must be one line");
    }
    Ok(())
}

/// The secret from the first line of `text` (a file or standard input).
pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim_end_matches('\r')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn written_atomically_and_not_readable_by_others() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("relay.secret");
        std::fs::write(&p, "old\n").unwrap();
        let a = write(&p, "s3cret").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "s3cret\n");
        let md = std::fs::metadata(&p).unwrap();
        match a {
            Access::RootPostern => assert_eq!(md.mode() & 0o777, 0o640),
            Access::CallerOnly => assert_eq!(md.mode() & 0o777, 0o600),
        }
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert!(check("a\nb").is_err() && check("").is_err() && check("k").is_ok());
        assert_eq!(first_line("key\r\nmore"), "key");
    }
}
