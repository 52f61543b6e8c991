//! The spool: its directory layout, queue ids, and the modules that read and
//! write it.
//!
//! ```text
//! <spool>/maildrop/   new entries, written by submitters      1770 postern:postern-drop
//! <spool>/queue/      picked-up messages (immutable)          0700 postern
//! <spool>/state/      per-message delivery state (what mailq shows)  0755 postern
//! <spool>/tmp/        temporary files for atomic replacement  0700 postern
//! <spool>/corrupt/    quarantined entries                     0700 postern
//! <spool>/public/trigger  FIFO: a byte wakes the daemon       0620 postern:postern-drop
//! <spool>/run.lock    held by a running daemon
//! <spool>/events.log  compact event log for `postern stats`
//! <spool>/guard       the outbound guard's counters (spool::guard)  0644 postern
//! <spool>/guard-seen  message keys seen once in the storm window (spool::guard)  0644 postern
//! <spool>/relay-limits  each relay's advertised SIZE, for submission  0644 postern
//! <spool>/relay-ports   the port that worked for each port = "auto" relay  0644 postern
//! ```
//! The spool is the lowest layer but one: it names nothing above it (only
//! `clock`, `config` and `error`), and its users — submission, the daemon,
//! the admin commands, the reports — reach down to it. Request entries (how callers
//! ask the daemon for a queue change) are part of its format
//! ([`request`]); who may ask for what is the admin service's business.
//!
//! A queue id is 15 characters of Crockford base32: 11 for the arrival time in
//! microseconds (so ids sort by time) and 4 mixing the process id and a retry
//! counter. Entries are created with O_EXCL, so a clash simply retries.

pub mod durable;
pub mod enqueue;
pub mod event_log;
pub mod format;
pub mod guard;
pub mod maildrop;
pub mod queue;
pub mod relay_limits;
pub mod relay_ports;
pub mod request;
pub mod state;

use std::fs::File;
use std::path::{Path, PathBuf};

/// The compiled-in spool directory (the only one the installed set-group-id
/// binary uses). Defined in the base layer, where the configuration's
/// default needs it too (`config` may not name the spool above it).
pub use crate::config::DEFAULT_SPOOL;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Length of a queue id.
pub const ID_LEN: usize = 15;

/// Paths of one spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    /// The spool rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Spool {
        Spool { root: root.into() }
    }
    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `maildrop/`.
    pub fn maildrop(&self) -> PathBuf {
        self.root.join("maildrop")
    }
    /// `queue/`.
    pub fn queue(&self) -> PathBuf {
        self.root.join("queue")
    }
    /// `state/`.
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }
    /// `tmp/`.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }
    /// `corrupt/`.
    pub fn corrupt(&self) -> PathBuf {
        self.root.join("corrupt")
    }
    /// `public/`.
    pub fn public(&self) -> PathBuf {
        self.root.join("public")
    }
    /// `public/trigger`.
    pub fn trigger(&self) -> PathBuf {
        self.root.join("public").join("trigger")
    }
    /// `run.lock`.
    pub fn run_lock(&self) -> PathBuf {
        self.root.join("run.lock")
    }
    /// `events.log`.
    pub fn events(&self) -> PathBuf {
        self.root.join("events.log")
    }

    /// Is a daemon running for this spool (holding the run lock)?
    pub fn daemon_running(&self) -> bool {
        match File::open(self.run_lock()) {
            Ok(f) => matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)),
            Err(_) => false,
        }
    }

    /// Open the daemon's trigger FIFO for writing without blocking
    /// (O_NONBLOCK|O_NOFOLLOW). ENXIO means no daemon reads it.
    pub fn open_trigger(&self) -> std::io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(self.trigger())
    }

    /// Create any missing directory and the trigger FIFO with the modes an
    /// unprivileged (development) spool needs. The packages create the
    /// installed spool with its real owners; this never changes an existing
    /// directory.
    pub fn ensure_layout(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        for (dir, mode) in [
            (self.root.clone(), 0o755),
            (self.maildrop(), 0o1770),
            (self.queue(), 0o700),
            (self.state(), 0o755),
            (self.tmp(), 0o700),
            (self.corrupt(), 0o700),
            (self.public(), 0o710),
        ] {
            if !dir.is_dir() {
                b.mode(mode).create(&dir).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("{}: {}", dir.display(), crate::error::describe_io(&e)),
                    )
                })?;
            }
        }
        let trigger = self.trigger();
        if std::fs::symlink_metadata(&trigger).is_err() {
            match nix::unistd::mkfifo(&trigger, nix::sys::stat::Mode::from_bits_truncate(0o620)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(std::io::Error::from(e)),
            }
        }
        Ok(())
    }
}

/// Poke a running daemon through the trigger FIFO `fifo` (`byte`: `W` new
/// mail, `F` flush, `R` rescan). Returns false when no daemon is reading it.
pub fn poke(fifo: &File, byte: u8) -> bool {
    use std::io::Write;
    let mut f = fifo;
    match f.write_all(&[byte]) {
        Ok(()) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    }
}

/// A new queue id for time `micros` and process `pid`, `attempt` counting
/// retries after a clash.
pub fn new_id(micros: u64, pid: u32, attempt: u32) -> String {
    let mut out = [0u8; ID_LEN];
    let mut t = micros;
    for i in (0..11).rev() {
        out[i] = ALPHABET[(t & 31) as usize];
        t >>= 5;
    }
    let mut s = (pid.wrapping_mul(2_654_435_761) ^ attempt.wrapping_mul(40_503)) & 0xFFFFF;
    for i in (11..ID_LEN).rev() {
        out[i] = ALPHABET[(s & 31) as usize];
        s >>= 5;
    }
    out.iter().map(|&b| b as char).collect()
}

/// True if `s` looks like a queue id (safe as a file name).
pub fn is_valid_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| ALPHABET.contains(&b))
}

/// The arrival time encoded in an id, in microseconds since the epoch.
pub fn id_micros(id: &str) -> Option<u64> {
    if !is_valid_id(id) {
        return None;
    }
    let mut t: u64 = 0;
    for b in id.bytes().take(11) {
        let v = ALPHABET.iter().position(|&a| a == b)? as u64;
        t = (t << 5) | v;
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_round_trip() {
        let a = new_id(1_795_955_581_000_000, 42, 0);
        let b = new_id(1_795_955_581_000_001, 7, 0);
        assert!(is_valid_id(&a) && is_valid_id(&b));
        assert!(a < b);
        assert_eq!(id_micros(&a), Some(1_795_955_581_000_000));
        assert_ne!(new_id(5, 42, 0), new_id(5, 42, 1));
        assert!(!is_valid_id("../etc/passwd00"));
        assert!(!is_valid_id("0123"));
    }
}
