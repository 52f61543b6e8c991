//! `<spool>/relay-ports`: for each relay with `port = "auto"`, the port that
//! worked last (587, 465 or 2525), so a restart does not probe again and a
//! blocked port is not waited for at every session.
//!
//! The SMTP transport records a port when a session on it was set up after
//! another port (or none) was remembered, and probes again when the
//! remembered port stops answering. The file is world-readable (0644) in the
//! spool root, replaced whole ([`durable::write_atomic`](super::durable::write_atomic))
//! and only when a value changes. Like `relay-limits` it is derived data: a
//! lost update costs one probe, so the replacement is atomic but not fsynced.
//!
//! Format (text, at most [`MAX_LEN`] bytes):
//! ```text
//! postern-relay-ports 1
//! <port> <host>
//! ```
//! The reader is strict: one bounded read, no symbolic links; a file that
//! is too big, not a regular file or has a bad first line counts as empty,
//! a malformed line is skipped.

use super::Spool;
use std::path::PathBuf;

/// The first line of the file.
const MAGIC: &str = "postern-relay-ports 1";
/// The largest file the reader accepts.
pub const MAX_LEN: usize = 16 * 1024;
/// The most hosts recorded (the oldest entries beyond it are dropped).
const MAX_ENTRIES: usize = 64;

/// The remembered ports, by host (lower case), in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayPorts {
    entries: Vec<(String, u16)>,
}

impl RelayPorts {
    /// The port remembered for `host`.
    pub fn get(&self, host: &str) -> Option<u16> {
        let host = host.to_ascii_lowercase();
        self.entries
            .iter()
            .find(|(h, _)| *h == host)
            .map(|&(_, p)| p)
    }

    /// Decode the file's bytes (strict; see the module doc).
    pub fn decode(bytes: &[u8]) -> RelayPorts {
        let mut out = RelayPorts::default();
        if bytes.len() > MAX_LEN {
            return out;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            return out;
        };
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return out;
        }
        for line in lines {
            let Some((p, host)) = line.split_once(' ') else {
                continue;
            };
            let Ok(p) = p.parse::<u16>() else { continue };
            // Hosts are kept in lower case, as `set` and `get` use them.
            let host = host.to_ascii_lowercase();
            if p == 0 || !valid_host(&host) || out.entries.iter().any(|(h, _)| *h == host) {
                continue;
            }
            out.entries.push((host, p));
            if out.entries.len() == MAX_ENTRIES {
                break;
            }
        }
        out
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::from(MAGIC);
        s.push('\n');
        for (host, p) in &self.entries {
            s.push_str(&format!("{p} {host}\n"));
        }
        s.into_bytes()
    }

    /// Set `host`'s port; true when it changed.
    fn set(&mut self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        match self.entries.iter_mut().find(|(h, _)| *h == host) {
            Some((_, old)) if *old == port => false,
            Some((_, old)) => {
                *old = port;
                true
            }
            None => {
                self.entries.push((host, port));
                if self.entries.len() > MAX_ENTRIES {
                    self.entries.remove(0);
                }
                true
            }
        }
    }
}

/// A host is one printable ASCII word of at most 255 bytes.
fn valid_host(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// The file's path.
pub fn path(spool: &Spool) -> PathBuf {
    spool.root().join("relay-ports")
}

/// Read the record. Absent, unreadable or malformed: empty.
pub fn read(spool: &Spool) -> RelayPorts {
    super::durable::read_small(&path(spool), MAX_LEN)
        .map(|buf| RelayPorts::decode(&buf))
        .unwrap_or_default()
}

/// Remember `port` for `host`, replacing the file only when it changes.
pub fn record(spool: &Spool, host: &str, port: u16) -> std::io::Result<()> {
    if !valid_host(host) || port == 0 {
        return Ok(());
    }
    let mut ports = read(spool);
    if !ports.set(host, port) {
        return Ok(());
    }
    let write =
        || super::durable::write_atomic(&spool.tmp(), &path(spool), &ports.encode(), 0o644, false);
    match write() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            spool.ensure_layout()?;
            write()
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_strict_decoding_and_changes_only() {
        let mut p = RelayPorts::default();
        assert!(p.set("Smtp.Example.com", 2525));
        assert!(!p.set("smtp.example.com", 2525));
        assert!(p.set("smtp.example.com", 465));
        let back = RelayPorts::decode(&p.encode());
        assert_eq!(back, p);
        assert_eq!(back.get("SMTP.example.com"), Some(465));
        assert_eq!(back.get("other"), None);
        assert_eq!(RelayPorts::decode(b"587 a\n"), RelayPorts::default());
        let d = RelayPorts::decode(b"postern-relay-ports 1\nx a\n0 b\n70000 c\n5 d\x1b\n587 e\n");
        assert_eq!(d.entries, vec![("e".to_string(), 587)]);
        // A host written in capitals (by hand) is found, and only once.
        let d = RelayPorts::decode(b"postern-relay-ports 1\n465 Smtp.X\n587 smtp.x\n");
        assert_eq!(d.entries, vec![("smtp.x".to_string(), 465)]);
        assert_eq!(d.get("SMTP.x"), Some(465));
        assert_eq!(
            RelayPorts::decode(&vec![b'a'; MAX_LEN + 1]),
            RelayPorts::default()
        );

        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        std::fs::create_dir_all(spool.tmp()).unwrap();
        record(&spool, "r.example", 2525).unwrap();
        use std::os::unix::fs::MetadataExt;
        let m1 = std::fs::metadata(path(&spool)).unwrap();
        assert_eq!(m1.mode() & 0o777, 0o644);
        record(&spool, "r.example", 2525).unwrap();
        assert_eq!(m1.ino(), std::fs::metadata(path(&spool)).unwrap().ino());
        assert_eq!(read(&spool).get("r.example"), Some(2525));
    }
}
