//! `<spool>/relay-limits`: the message size limit each relay advertised
//! (RFC 1870 SIZE) at its last EHLO, for the submission path.
//!
//! The SMTP session and `postern check` record what they learn; submission
//! reads it to size its limit when `max_message_size` is not set. The file
//! is world-readable (0644) in the spool root (0755), so the unprivileged
//! submitter can read it after dropping the group; it is replaced whole
//! ([`durable::write_atomic`](super::durable::write_atomic)), and only when a
//! value changes. It is derived data: a lost update is corrected at the next
//! EHLO, so the replacement is atomic but not fsynced.
//!
//! Format (text, at most [`MAX_LEN`] bytes):
//! ```text
//! postern-relay-limits 1
//! <bytes> <host:port>        (0 = SIZE without a limit)
//! ```
//! The reader is strict and cheap: one bounded read, no following of
//! symbolic links; a file that is too big, not a regular file or has a bad
//! first line counts as absent, a malformed line is skipped.

use super::Spool;
use std::path::PathBuf;

/// The first line of the file.
const MAGIC: &str = "postern-relay-limits 1";
/// The largest file the reader accepts.
pub const MAX_LEN: usize = 16 * 1024;
/// The most relays recorded (the oldest entries beyond it are dropped).
const MAX_ENTRIES: usize = 64;

/// What one relay advertised at EHLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advertised {
    /// `SIZE n` with n > 0: messages up to n bytes.
    Limit(u64),
    /// `SIZE 0` or `SIZE` alone, or no SIZE at all: no limit from this relay.
    NoLimit,
}

impl Advertised {
    /// From the EHLO's SIZE value (None: no SIZE keyword).
    pub fn from_ehlo(size: Option<u64>) -> Advertised {
        match size {
            Some(n) if n > 0 => Advertised::Limit(n),
            _ => Advertised::NoLimit,
        }
    }
    fn bytes(self) -> u64 {
        match self {
            Advertised::Limit(n) => n,
            Advertised::NoLimit => 0,
        }
    }
}

/// The recorded limits, by relay label (`host:port`), in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayLimits {
    entries: Vec<(String, Advertised)>,
}

impl RelayLimits {
    /// What `label` advertised, if it has been seen.
    pub fn get(&self, label: &str) -> Option<Advertised> {
        self.entries
            .iter()
            .find(|(l, _)| l == label)
            .map(|&(_, a)| a)
    }

    /// Decode the file's bytes (strict; see the module doc).
    pub fn decode(bytes: &[u8]) -> RelayLimits {
        let mut out = RelayLimits::default();
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
            let Some((n, label)) = line.split_once(' ') else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            if !valid_label(label) || out.entries.iter().any(|(l, _)| l == label) {
                continue;
            }
            out.entries
                .push((label.to_string(), Advertised::from_ehlo(Some(n))));
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
        for (label, a) in &self.entries {
            s.push_str(&format!("{} {label}\n", a.bytes()));
        }
        s.into_bytes()
    }

    /// Set `label`'s value; true when it changed.
    fn set(&mut self, label: &str, a: Advertised) -> bool {
        match self.entries.iter_mut().find(|(l, _)| l == label) {
            Some((_, old)) if *old == a => false,
            Some((_, old)) => {
                *old = a;
                true
            }
            None => {
                self.entries.push((label.to_string(), a));
                if self.entries.len() > MAX_ENTRIES {
                    self.entries.remove(0);
                }
                // Long labels: keep the file readable (decode refuses more
                // than MAX_LEN bytes), dropping the oldest entries.
                while self.entries.len() > 1 && self.encode().len() > MAX_LEN {
                    self.entries.remove(0);
                }
                true
            }
        }
    }
}

/// A label is one printable ASCII word (it names a relay in an error message).
fn valid_label(s: &str) -> bool {
    !s.is_empty() && s.len() <= 300 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// The file's path.
pub fn path(spool: &Spool) -> PathBuf {
    spool.root().join("relay-limits")
}

/// Read the record: one bounded read of a small regular file. Absent,
/// unreadable or malformed: empty.
pub fn read(spool: &Spool) -> RelayLimits {
    super::durable::read_small(&path(spool), MAX_LEN)
        .map(|buf| RelayLimits::decode(&buf))
        .unwrap_or_default()
}

/// Record what `label` advertised, replacing the file only when the value
/// changes. Errors (e.g. a `postern check` by a user who may not write the
/// spool) are the caller's to ignore.
pub fn record(spool: &Spool, label: &str, a: Advertised) -> std::io::Result<()> {
    if !valid_label(label) {
        return Ok(());
    }
    let mut limits = read(spool);
    if !limits.set(label, a) {
        return Ok(());
    }
    let write =
        || super::durable::write_atomic(&spool.tmp(), &path(spool), &limits.encode(), 0o644, false);
    match write() {
        // A development spool that nothing has used yet (`postern check` first).
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
    fn round_trip_and_strict_decoding() {
        let mut l = RelayLimits::default();
        assert!(l.set("smtp.example.com:587", Advertised::Limit(30_000_000)));
        assert!(l.set("[::1]:25", Advertised::NoLimit));
        assert!(!l.set("[::1]:25", Advertised::NoLimit));
        let back = RelayLimits::decode(&l.encode());
        assert_eq!(back, l);
        assert_eq!(
            back.get("smtp.example.com:587"),
            Some(Advertised::Limit(30_000_000))
        );
        assert_eq!(back.get("[::1]:25"), Some(Advertised::NoLimit));
        assert_eq!(back.get("other:587"), None);
        // Bad magic, bad lines, control characters, oversize.
        assert_eq!(RelayLimits::decode(b"1000 a:1\n"), RelayLimits::default());
        let d = RelayLimits::decode(b"postern-relay-limits 1\nx a:1\n5 b\x1b[2J:1\n7 c:1\n");
        assert_eq!(d.get("c:1"), Some(Advertised::Limit(7)));
        assert_eq!(d.entries.len(), 1);
        let mut many = RelayLimits::default();
        for i in 0..MAX_ENTRIES {
            many.set(&format!("{i:0>294}:65535"), Advertised::Limit(u64::MAX));
        }
        assert!(many.encode().len() <= MAX_LEN);
        assert_eq!(RelayLimits::decode(&many.encode()), many);
        let big = vec![b'a'; MAX_LEN + 1];
        assert_eq!(RelayLimits::decode(&big), RelayLimits::default());
    }

    #[test]
    fn record_writes_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        std::fs::create_dir_all(spool.tmp()).unwrap();
        assert_eq!(read(&spool), RelayLimits::default());
        record(&spool, "r:587", Advertised::Limit(1000)).unwrap();
        let m1 = std::fs::metadata(path(&spool)).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(m1.mode() & 0o777, 0o644);
        record(&spool, "r:587", Advertised::Limit(1000)).unwrap();
        let m2 = std::fs::metadata(path(&spool)).unwrap();
        assert_eq!(m1.ino(), m2.ino(), "unchanged value: not rewritten");
        record(&spool, "s:465", Advertised::NoLimit).unwrap();
        let l = read(&spool);
        assert_eq!(l.get("r:587"), Some(Advertised::Limit(1000)));
        assert_eq!(l.get("s:465"), Some(Advertised::NoLimit));
    }
}
