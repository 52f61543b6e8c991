//! The outbound guard's persisted counters: `<spool>/guard`, one small
//! text file replaced whole (`durable::write_atomic`) under the lock
//! `<spool>/guard.lock`, so the daemon, a queue run and an admin command
//! never lose each other's updates and the counters survive a restart.
//! It holds only what a window needs: per-submitter counts of the current
//! hour, the storms being collapsed, the suppressed recipients and the
//! bounce counts per address. Entries whose window is over are dropped
//! when the file is written, so it stays small.
//!
//! ```text
//! postern-guard 1
//! user 33 1795956000.000 201 230 1 12 over%20200%20messages/hour
//!      uid, window start, messages, recipients, alert sent, held, reason
//! storm 1K1D6V0JC6N9J9M 9f2c…(32 hex) 1795956000.0 1795956900.0 17 12 label
//!      id, key, first seen, last seen, count, held, label
//! suppress bob@example.org 1796560000.0 550%205.1.1%20no%20such%20user
//!      address, until, reason
//! dsn alice@example.com 1795956000.0 31 1
//!      address, window start, bounces sent, bounces dropped
//! end
//! ```
//! Everything is percent-encoded like `state` files. The module is the
//! format and the locked read-modify-write; what the numbers mean is the
//! guard service's (`crate::guard`).

use super::Spool;
use super::durable;
use super::state::{dec, enc};
use std::fmt::Write as _;
use std::io;

/// One submitter's counts in the current window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserWindow {
    /// The submitting uid.
    pub uid: u32,
    /// When the window started (unix seconds).
    pub start: f64,
    /// Messages accepted in it.
    pub messages: u64,
    /// Recipients accepted in it.
    pub recipients: u64,
    /// The alert for this window was queued.
    pub alerted: bool,
    /// Messages held in it.
    pub held: u64,
    /// Why the last one was held ("" = none held).
    pub reason: String,
}

/// One storm: identical messages counted within a window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Storm {
    /// Storm id (the queue id of the first message of the storm).
    pub id: String,
    /// Digest of sender, recipients, Subject and body (hex).
    pub key: String,
    /// First seen.
    pub first: f64,
    /// Last seen.
    pub last: f64,
    /// Identical messages seen.
    pub count: u64,
    /// Of those, held.
    pub held: u64,
    /// What it is ("from <cron@x> to <root>: Subject").
    pub label: String,
}

/// A suppressed recipient.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Suppressed {
    /// The address (as delivered to, lower-case).
    pub address: String,
    /// Suppressed until (unix seconds).
    pub until: f64,
    /// The relay's permanent failure.
    pub reason: String,
}

/// Bounces to one address in the current hour.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DsnWindow {
    /// The address bounces go to.
    pub address: String,
    /// When the window started.
    pub start: f64,
    /// Bounces queued in it.
    pub sent: u64,
    /// Bounces dropped by the cap in it.
    pub dropped: u64,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GuardState {
    /// Per-submitter windows.
    pub users: Vec<UserWindow>,
    /// Storms.
    pub storms: Vec<Storm>,
    /// Suppressed recipients.
    pub suppressed: Vec<Suppressed>,
    /// Bounce counts.
    pub dsn: Vec<DsnWindow>,
}

fn num(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().filter(|f| f.is_finite())
}

impl GuardState {
    /// Serialise.
    pub fn encode(&self) -> String {
        let mut s = String::from("postern-guard 1\n");
        for u in &self.users {
            let _ = writeln!(
                s,
                "user {} {:.3} {} {} {} {} {}",
                u.uid,
                u.start,
                u.messages,
                u.recipients,
                u8::from(u.alerted),
                u.held,
                enc(&u.reason)
            );
        }
        for t in &self.storms {
            let _ = writeln!(
                s,
                "storm {} {} {:.3} {:.3} {} {} {}",
                t.id,
                t.key,
                t.first,
                t.last,
                t.count,
                t.held,
                enc(&t.label)
            );
        }
        for x in &self.suppressed {
            let _ = writeln!(
                s,
                "suppress {} {:.3} {}",
                enc(&x.address),
                x.until,
                enc(&x.reason)
            );
        }
        for d in &self.dsn {
            let _ = writeln!(
                s,
                "dsn {} {:.3} {} {}",
                enc(&d.address),
                d.start,
                d.sent,
                d.dropped
            );
        }
        s.push_str("end\n");
        s
    }

    /// Parse; None when the file is not whole and valid.
    pub fn decode(text: &str) -> Option<GuardState> {
        let body = text
            .strip_prefix("postern-guard 1\n")?
            .strip_suffix("end\n")?;
        // `end` is a line of its own: a torn file whose last field happens
        // to end in "end" is not whole.
        if !body.is_empty() && !body.ends_with('\n') {
            return None;
        }
        let mut g = GuardState::default();
        for line in body.lines() {
            let mut f = line.split(' ');
            match f.next()? {
                "user" => g.users.push(UserWindow {
                    uid: f.next()?.parse().ok()?,
                    start: num(f.next()?)?,
                    messages: f.next()?.parse().ok()?,
                    recipients: f.next()?.parse().ok()?,
                    alerted: f.next()? == "1",
                    held: f.next()?.parse().ok()?,
                    reason: dec(f.next().unwrap_or(""))?,
                }),
                "storm" => g.storms.push(Storm {
                    id: f.next()?.to_string(),
                    key: f.next()?.to_string(),
                    first: num(f.next()?)?,
                    last: num(f.next()?)?,
                    count: f.next()?.parse().ok()?,
                    held: f.next()?.parse().ok()?,
                    label: dec(f.next().unwrap_or(""))?,
                }),
                "suppress" => g.suppressed.push(Suppressed {
                    address: dec(f.next()?)?,
                    until: num(f.next()?)?,
                    reason: dec(f.next().unwrap_or(""))?,
                }),
                "dsn" => g.dsn.push(DsnWindow {
                    address: dec(f.next()?)?,
                    start: num(f.next()?)?,
                    sent: f.next()?.parse().ok()?,
                    dropped: f.next()?.parse().ok()?,
                }),
                _ => return None,
            }
        }
        Some(g)
    }
}

/// The guard state, read again only when the file changed: a delivery
/// consults the suppression list, and re-reading and parsing the whole
/// file for each message made that cost grow with the guard's size.
#[derive(Debug, Default)]
pub struct CachedState(std::sync::Mutex<Option<(SeenStamp, std::sync::Arc<GuardState>)>>);

impl CachedState {
    /// The state as [`load`] reads it; one `stat` when unchanged.
    pub fn get(&self, spool: &Spool) -> std::sync::Arc<GuardState> {
        use std::os::unix::fs::MetadataExt;
        let Ok(md) = std::fs::metadata(spool.root().join("guard")) else {
            return std::sync::Arc::new(GuardState::default());
        };
        let stamp = (md.ino(), md.size(), md.mtime(), md.mtime_nsec());
        let Ok(mut cache) = self.0.lock() else {
            return std::sync::Arc::new(load(spool));
        };
        if let Some((s, g)) = cache.as_ref()
            && *s == stamp
        {
            return g.clone();
        }
        // Replaced between the stat and the read: the next call sees
        // another stamp and reads it again.
        let g = std::sync::Arc::new(load(spool));
        *cache = Some((stamp, g.clone()));
        g
    }
}

/// Read the guard state (empty when there is none or it is unreadable; a
/// torn or corrupt file is logged and starts afresh: counters are a
/// safeguard, never a reason to stop mail).
pub fn load(spool: &Spool) -> GuardState {
    match std::fs::read_to_string(spool.root().join("guard")) {
        Ok(t) => GuardState::decode(&t).unwrap_or_else(|| {
            log::warn!("guard state file is damaged: starting with empty counters");
            GuardState::default()
        }),
        Err(_) => GuardState::default(),
    }
}

/// The guard state, read under its lock: change `state`, then
/// [`Locked::commit`] (dropping it without committing leaves the file as
/// it was).
pub struct Locked {
    lock: std::fs::File,
    root: std::path::PathBuf,
    tmp: std::path::PathBuf,
    before: GuardState,
    /// The state to change.
    pub state: GuardState,
}

/// Take the guard lock (waiting for another holder) and read the state.
pub fn lock(spool: &Spool) -> io::Result<Locked> {
    use std::os::unix::fs::OpenOptionsExt;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(spool.root().join("guard.lock"))?;
    lock.lock()?;
    let state = load(spool);
    Ok(Locked {
        lock,
        root: spool.root().to_path_buf(),
        tmp: spool.tmp(),
        before: state.clone(),
        state,
    })
}

impl Locked {
    /// Write the state if it changed, and let go of the lock.
    pub fn commit(self) -> io::Result<()> {
        let r = if self.state != self.before {
            durable::write_atomic(
                &self.tmp,
                &self.root.join("guard"),
                self.state.encode().as_bytes(),
                0o644,
                false,
            )
        } else {
            Ok(())
        };
        let _ = self.lock.unlock();
        r
    }
}

/// Read, change and write the guard state under its lock; returns what
/// `f` returns. The file is written only when `f` changed the state.
pub fn update<T>(spool: &Spool, f: impl FnOnce(&mut GuardState) -> T) -> io::Result<T> {
    let mut l = lock(spool)?;
    let out = f(&mut l.state);
    l.commit()?;
    Ok(out)
}

/// Message keys seen once within the storm window: `<spool>/guard-seen`,
/// kept apart from `guard` because it is the bulk (every distinct message
/// adds a key) and changes with every message, while `guard` holds the
/// few counters that matter. The daemon keeps it in memory and writes it
/// every few seconds; a one-shot queue run writes it at once.
///
/// ```text
/// postern-guard-seen 1
/// 9f2c…(32 hex) 1K1D6V0JC6N9J9M 1795956000.0
///      key, queue id, first seen
/// end
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Seen {
    /// Key → (queue id of the message, first seen).
    pub keys: std::collections::HashMap<String, (String, f64)>,
}

impl Seen {
    /// The file's text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 * self.keys.len() + 32);
        out.push_str("postern-guard-seen 1\n");
        for (k, (id, first)) in &self.keys {
            let _ = writeln!(out, "{} {} {first:.1}", enc(k), enc(id));
        }
        out.push_str("end\n");
        out
    }

    /// Parse the file's text (None: torn or not this format). The `end`
    /// line counts only with its line feed: a file torn just after the
    /// `end` that starts a key's line is not taken for a whole one.
    pub fn decode(text: &str) -> Option<Seen> {
        let mut lines = text.split_inclusive('\n').map(|raw| {
            let line = raw.strip_suffix('\n').unwrap_or(raw);
            (line.strip_suffix('\r').unwrap_or(line), raw.ends_with('\n'))
        });
        if lines.next()?.0 != "postern-guard-seen 1" {
            return None;
        }
        let mut seen = Seen::default();
        for (line, whole) in lines {
            if line == "end" {
                return whole.then_some(seen);
            }
            let mut f = line.split(' ');
            let (Some(k), Some(id), Some(first), None) = (f.next(), f.next(), f.next(), f.next())
            else {
                return None;
            };
            seen.keys.insert(dec(k)?, (dec(id)?, num(first)?));
        }
        None
    }
}

/// What `stat` says of `guard-seen`: enough to know whether another
/// process wrote it since this one read or wrote it.
pub type SeenStamp = (u64, u64, i64, i64);

/// The stamp of `guard-seen` (None: it does not exist).
pub fn seen_stamp(spool: &Spool) -> Option<SeenStamp> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(spool.root().join("guard-seen")).ok()?;
    Some((md.ino(), md.size(), md.mtime(), md.mtime_nsec()))
}

/// Read `guard-seen` (empty when missing; a damaged one is logged and
/// starts afresh, like `guard`). Call with the guard lock held.
pub fn load_seen(spool: &Spool) -> Seen {
    match std::fs::read_to_string(spool.root().join("guard-seen")) {
        Ok(t) => Seen::decode(&t).unwrap_or_else(|| {
            log::warn!("guard-seen file is damaged: starting with no message keys");
            Seen::default()
        }),
        Err(_) => Seen::default(),
    }
}

/// Replace `guard-seen` (atomically; not fsynced: derived data). Call with
/// the guard lock held. Returns the new stamp.
pub fn write_seen(spool: &Spool, seen: &Seen) -> io::Result<Option<SeenStamp>> {
    durable::write_atomic(
        &spool.tmp(),
        &spool.root().join("guard-seen"),
        seen.encode().as_bytes(),
        0o644,
        false,
    )?;
    Ok(seen_stamp(spool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_round_trip_and_torn() {
        let mut s = Seen::default();
        s.keys
            .insert("ab".repeat(16), ("1K1D6V0JC6N9J9M".into(), 1795956000.0));
        s.keys
            .insert("cd".repeat(16), ("1K1D6V0JC6N9J9N".into(), 1795956001.5));
        let text = s.encode();
        assert_eq!(Seen::decode(&text), Some(s));
        assert_eq!(Seen::decode(&text[..text.len() - 4]), None);
        assert_eq!(Seen::decode("postern-guard 1\nend\n"), None);
        // A key that starts with "end", torn right after those letters
        // (found by the guard_seen fuzz target).
        let mut s = Seen::default();
        s.keys
            .insert("endx".into(), ("1K1D6V0JC6N9J9M".into(), 1.0));
        let text = s.encode();
        let torn = &text[..text.find("endx").unwrap() + 3];
        assert_eq!(Seen::decode(torn), None);
        assert_eq!(Seen::decode(&text), Some(s));
        assert!(Seen::decode("postern-guard-seen 1\r\nend\r\n").is_some());
    }

    #[test]
    fn round_trip_and_torn() {
        let g = GuardState {
            users: vec![UserWindow {
                uid: 33,
                start: 10.0,
                messages: 3,
                recipients: 4,
                alerted: true,
                held: 1,
                reason: "www-data over 2 messages/hour".into(),
            }],
            storms: vec![Storm {
                id: "1K1D6V0JC6N9J9M".into(),
                key: "00ff".into(),
                first: 1.0,
                last: 2.0,
                count: 9,
                held: 4,
                label: "from <a b>".into(),
            }],
            suppressed: vec![Suppressed {
                address: "x@y".into(),
                until: 5.0,
                reason: "550 5.1.1 no".into(),
            }],
            dsn: vec![DsnWindow {
                address: "s@t".into(),
                start: 1.0,
                sent: 2,
                dropped: 3,
            }],
        };
        let t = g.encode();
        assert_eq!(GuardState::decode(&t).unwrap(), g);
        for cut in 0..t.len() - 1 {
            assert!(GuardState::decode(&t[..cut]).is_none(), "{cut}");
        }
    }
}
