//! The outbound guard: protecting the relay account from a compromised
//! script or a cron storm (issue 15). Everything here runs in the daemon
//! (or a queue run) — at pickup and in the queue runner — never in the
//! set-group-id submission process, which stays exactly as cheap as before.
//!
//! - **Per-submitter limits** ([`Pickup::check`]): the submitter is the
//!   owner of the maildrop entry (`st_uid`), never what the file says.
//!   Messages and recipients per hour and recipients per message are
//!   counted in a window of an hour started by the user's first message
//!   (the daemon's clock, `clock::now`). Over a limit the message is still
//!   queued durably but held with its reason ("www-data over 200
//!   messages/hour"), and one alert per user and window goes to
//!   `limits.alert_to` — the daemon's own message, so it is delivered
//!   while the user is held. Users in `limits.exempt` (root by default)
//!   and the daemon's own mail (DSNs, alerts: they never pass pickup) are
//!   not limited.
//! - **Storm collapse**: messages identical apart from Date/Message-ID/
//!   Received (same sender, recipients, Subject and body digest) beyond
//!   `limits.storm.threshold` within `limits.storm.window` are held under
//!   a storm id, and one summary goes to `limits.alert_to`.
//! - **Suppression** ([`suppressed`], [`remember_failures`]): a recipient
//!   refused with 5.1.x is remembered for `limits.suppress_for`; the runner
//!   bounces new mail to it locally.
//! - **DSN cap** ([`allow_bounce`]): at most `limits.max_bounces_per_hour`
//!   bounces per hour to one address; the rest are logged and counted.
//!
//! The counters live in `spool::guard` (a small file in the spool, under
//! a lock), so a restart does not reset a window.

use crate::clock;
use crate::config::{Config, Limits};
use crate::spool::Spool;
use crate::spool::format::Envelope;
use crate::spool::guard::{self, DsnWindow, Locked, Storm, Suppressed, UserWindow};
use crate::spool::{enqueue, format};
use std::collections::HashMap;
use std::fs::File;
use std::io;

/// A user's limits window.
pub const USER_WINDOW: f64 = 3600.0;

/// Most message keys the storm table remembers (a few hundred KiB at most;
/// the oldest keys seen only once make room).
pub const MAX_STORM_KEYS: usize = 2000;

/// The login name of `uid` (None when it has none).
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// The uid a name or number given on the command line means.
pub fn resolve_user(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    nix::unistd::User::from_name(s)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

/// How a user is shown: the name, or `uid N`.
pub fn user_label(uid: u32, name: Option<&str>) -> String {
    match name {
        Some(n) => n.to_string(),
        None => format!("uid {uid}"),
    }
}

/// Why a message is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The reason shown and logged.
    pub reason: String,
    /// The storm it belongs to ("" = none).
    pub storm: String,
}

/// A notice the daemon sends to `limits.alert_to`.
struct Notice {
    subject: String,
    body: String,
}

/// The message keys seen once (`<spool>/guard-seen`), cached in this
/// process: a long-lived daemon reads the file only when another process
/// wrote it, and writes it at most every [`SEEN_WRITE_EVERY`] (and when it
/// stops), so a busy daemon does not rewrite a table of a few thousand
/// keys for every message. A crash loses at most those seconds of keys: a
/// storm is then noticed a message or two later.
struct SeenCache {
    root: std::path::PathBuf,
    stamp: Option<guard::SeenStamp>,
    seen: guard::Seen,
    /// Changed since the file was last written.
    dirty: bool,
    written: Option<std::time::Instant>,
}

static SEEN: std::sync::Mutex<Option<SeenCache>> = std::sync::Mutex::new(None);
static LONG_LIVED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How often a long-lived daemon writes `guard-seen` while it changes.
pub const SEEN_WRITE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Called by the daemon: keep the seen keys in memory between pickups
/// (a one-shot queue run writes them at the end of its pickup).
pub fn keep_seen_keys_in_memory() {
    LONG_LIVED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Write the seen keys not yet written (the daemon, when it stops).
pub fn flush_seen(spool: &Spool) {
    let Ok(lock) = guard::lock(spool) else {
        return;
    };
    let mut cache = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cache.as_mut().filter(|c| c.dirty && c.root == spool.root()) {
        write_seen(spool, c);
    }
    drop(cache);
    drop(lock);
}

fn write_seen(spool: &Spool, c: &mut SeenCache) {
    match guard::write_seen(spool, &c.seen) {
        Ok(stamp) => {
            c.stamp = stamp;
            c.dirty = false;
            c.written = Some(std::time::Instant::now());
        }
        Err(e) => log::error!("outbound guard: cannot write guard-seen: {e}"),
    }
}

/// The cache, up to date with `guard-seen` (the guard lock is held): read
/// again when another process wrote the file, keeping this process's
/// unwritten keys.
fn seen_for(spool: &Spool) -> std::sync::MutexGuard<'static, Option<SeenCache>> {
    let mut cache = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let stamp = guard::seen_stamp(spool);
    let mine = cache.as_ref().filter(|c| c.root == spool.root());
    if mine.is_some_and(|c| c.stamp == stamp) {
        return cache;
    }
    let mut seen = guard::load_seen(spool);
    let (dirty, written) = match mine {
        Some(c) if c.dirty => {
            for (k, v) in &c.seen.keys {
                seen.keys.entry(k.clone()).or_insert_with(|| v.clone());
            }
            (true, c.written)
        }
        Some(c) => (false, c.written),
        None => (false, None),
    };
    *cache = Some(SeenCache {
        root: spool.root().to_path_buf(),
        stamp,
        seen,
        dirty,
        written,
    });
    cache
}

/// The guard's view of one pickup batch: the counters, locked for the
/// batch, and the notices to send once it is written.
pub struct Pickup<'a> {
    cfg: &'a Config,
    spool: &'a Spool,
    locked: Locked,
    seen: std::sync::MutexGuard<'static, Option<SeenCache>>,
    now: f64,
    names: HashMap<u32, Option<String>>,
    notices: Vec<Notice>,
}

impl<'a> Pickup<'a> {
    /// Start a batch (None: the counters cannot be read; mail then flows
    /// unguarded rather than stopping).
    pub fn begin(cfg: &'a Config, spool: &'a Spool) -> Option<Pickup<'a>> {
        let l = &cfg.limits;
        if !l.enabled && l.storm_threshold == 0 {
            return None;
        }
        match guard::lock(spool) {
            Ok(locked) => {
                let mut p = Pickup {
                    cfg,
                    spool,
                    locked,
                    seen: seen_for(spool),
                    now: clock::unix_f64(clock::now()),
                    names: HashMap::new(),
                    notices: Vec::new(),
                };
                p.expire();
                Some(p)
            }
            Err(e) => {
                log::error!("outbound guard: cannot lock its counters, mail is not limited: {e}");
                None
            }
        }
    }

    fn expire(&mut self) {
        let now = self.now;
        let w = self.cfg.limits.storm_window.as_secs_f64();
        let s = &mut self.locked.state;
        s.users.retain(|u| now < u.start + USER_WINDOW);
        s.storms.retain(|t| now < t.last + w);
        if let Some(c) = self.seen.as_mut() {
            c.seen.keys.retain(|_, (_, first)| now < *first + w);
        }
    }

    fn name(&mut self, uid: u32) -> Option<String> {
        self.names
            .entry(uid)
            .or_insert_with(|| user_name(uid))
            .clone()
    }

    /// Count a new message (`env`, owned by `uid`, its bytes in `file`
    /// from `start` for `len`) and say whether it must be held.
    pub fn check(
        &mut self,
        env: &Envelope,
        uid: u32,
        file: &File,
        start: u64,
        len: u64,
    ) -> Option<Hold> {
        let limit = self.check_limits(env, uid);
        let storm = self.check_storm(env, file, start, len);
        match (limit, storm) {
            (Some(reason), s) => Some(Hold {
                reason,
                storm: s.map(|h| h.storm).unwrap_or_default(),
            }),
            (None, s) => s,
        }
    }

    fn check_limits(&mut self, env: &Envelope, uid: u32) -> Option<String> {
        let limits: &Limits = &self.cfg.limits;
        if !limits.enabled {
            return None;
        }
        let name = self.name(uid);
        if limits.is_exempt(uid, name.as_deref()) {
            return None;
        }
        let lim = limits.for_user(uid, name.as_deref());
        let now = self.now;
        let users = &mut self.locked.state.users;
        let i = match users.iter().position(|u| u.uid == uid) {
            Some(i) => i,
            None => {
                users.push(UserWindow {
                    uid,
                    start: now,
                    ..Default::default()
                });
                users.len() - 1
            }
        };
        let u = &mut users[i];
        let n = env.recipients.len() as u64;
        u.messages += 1;
        u.recipients += n;
        let who = user_label(uid, name.as_deref());
        let reason = if lim.recipients_per_message > 0 && n > lim.recipients_per_message {
            format!(
                "{who} over {} recipients/message",
                lim.recipients_per_message
            )
        } else if lim.messages_per_hour > 0 && u.messages > lim.messages_per_hour {
            format!("{who} over {} messages/hour", lim.messages_per_hour)
        } else if lim.recipients_per_hour > 0 && u.recipients > lim.recipients_per_hour {
            format!("{who} over {} recipients/hour", lim.recipients_per_hour)
        } else {
            return None;
        };
        u.held += 1;
        u.reason = reason.clone();
        if !u.alerted {
            u.alerted = true;
            let until = clock::rfc5322(clock::from_unix_f64(u.start + USER_WINDOW));
            // The name where there is one: what an admin types.
            let arg = name.clone().unwrap_or_else(|| uid.to_string());
            self.notices.push(Notice {
                subject: format!("postern: mail from {who} held: {reason}"),
                body: format!(
                    "Postern is holding mail submitted by {who} (uid {uid}):\n\
                     \x20 {reason}\n\
                     \n\
                     Nothing is lost: the messages are queued and held. If this is a\n\
                     compromised script or a runaway job, stop it first. Then:\n\
                     \n\
                     \x20 postern queue list --held --user {arg}    what is held\n\
                     \x20 postern queue release --user {arg}        deliver it (once)\n\
                     \x20 postern queue delete --user {arg}         drop it\n\
                     \n\
                     Further mail from {who} over the limit is held without another\n\
                     alert until {until}.\n\
                     The limits are in the [limits] section of postern.toml\n\
                     (see postern.toml(5)).\n"
                ),
            });
        }
        Some(reason)
    }

    fn check_storm(&mut self, env: &Envelope, file: &File, start: u64, len: u64) -> Option<Hold> {
        let threshold = self.cfg.limits.storm_threshold;
        // `is_bounce` is not trusted here: a submitter writes its own
        // envelope, and the daemon's bounces never pass pickup.
        if threshold == 0 {
            return None;
        }
        let (key, subject) = match digest(env, file, start, len) {
            Ok(k) => k,
            Err(e) => {
                log::warn!("{}: storm check skipped: {e}", env.id);
                return None;
            }
        };
        let now = self.now;
        let storms = &mut self.locked.state.storms;
        let i = match storms.iter().position(|t| t.key == key) {
            Some(i) => {
                storms[i].count += 1;
                i
            }
            None => {
                // Seen once before? Then it is a repeat: it joins the
                // storm table (`guard`) with its first sighting.
                let c = self.seen.as_mut()?;
                let Some((id, first)) = c.seen.keys.remove(&key) else {
                    if c.seen.keys.len() >= MAX_STORM_KEYS {
                        // A busy host sends many distinct messages: forget
                        // the oldest (a storm is what repeats).
                        if let Some(old) = c
                            .seen
                            .keys
                            .iter()
                            .min_by(|a, b| a.1.1.total_cmp(&b.1.1))
                            .map(|(k, _)| k.clone())
                        {
                            c.seen.keys.remove(&old);
                        }
                    }
                    c.seen.keys.insert(key, (env.id.clone(), now));
                    c.dirty = true;
                    return None;
                };
                c.dirty = true;
                if storms.len() >= MAX_STORM_KEYS {
                    // Keys counted once by an older version of this file.
                    let i = storms
                        .iter()
                        .enumerate()
                        .filter(|(_, t)| t.count == 1)
                        .min_by(|a, b| a.1.last.total_cmp(&b.1.last))
                        .map(|(i, _)| i)?;
                    storms.remove(i);
                }
                storms.push(Storm {
                    id,
                    key,
                    first,
                    last: now,
                    count: 2,
                    held: 0,
                    label: String::new(),
                });
                storms.len() - 1
            }
        };
        let t = &mut storms[i];
        t.last = now;
        if t.label.is_empty() {
            // Identical messages: this one describes them all.
            t.label = storm_label(env, &subject);
        }
        if t.count <= threshold {
            return None;
        }
        t.held += 1;
        let since = clock::rfc5322(clock::from_unix_f64(t.first));
        let reason = format!(
            "storm {}: more than {threshold} identical messages {} since {since}",
            t.id, t.label
        );
        if t.held == 1 {
            let id = t.id.clone();
            let label = t.label.clone();
            self.notices.push(Notice {
                subject: format!("postern: identical messages held (storm {id})"),
                body: format!(
                    "Identical messages keep coming:\n\
                     \x20 {label}\n\
                     \n\
                     The first {threshold} since {since} were let through; the rest\n\
                     are held, not sent, while they keep coming (postern status shows\n\
                     how many). This is the only notice for this storm.\n\
                     \n\
                     \x20 postern queue list --held                what is held\n\
                     \x20 postern queue release --storm {id}   deliver them (once)\n\
                     \x20 postern queue delete --storm {id}    drop them\n"
                ),
            });
        }
        Some(Hold {
            reason,
            storm: t.id.clone(),
        })
    }

    /// Write the counters and queue the notices; returns the ids of the
    /// notices queued (for the runner to deliver now).
    pub fn finish(self) -> Vec<String> {
        let Pickup {
            cfg,
            spool,
            locked,
            mut seen,
            notices,
            ..
        } = self;
        if let Some(c) = seen.as_mut().filter(|c| c.dirty) {
            let due = !LONG_LIVED.load(std::sync::atomic::Ordering::Relaxed)
                || c.written.is_none_or(|t| t.elapsed() >= SEEN_WRITE_EVERY);
            if due {
                write_seen(spool, c);
            }
        }
        drop(seen);
        if let Err(e) = locked.commit() {
            log::error!("outbound guard: cannot write its counters: {e}");
        }
        let mut ids = Vec::new();
        for n in notices {
            match send_notice(cfg, spool, &n) {
                Ok(id) => {
                    log::info!(
                        "{id}: outbound guard notice to <{}>: {}",
                        cfg.limits.alert_to,
                        crate::escape::field(&n.subject)
                    );
                    ids.push(id);
                }
                Err(e) => log::error!("outbound guard: cannot queue a notice: {e}"),
            }
        }
        ids
    }
}

/// "from <sender> to <rcpt, …> (Subject: …)", shortened.
fn storm_label(env: &Envelope, subject: &str) -> String {
    let mut rc = env.recipients.join(", ");
    if rc.len() > 80 {
        rc = format!("{}…", rc.chars().take(77).collect::<String>());
    }
    let subj: String = subject
        .chars()
        .filter(|c| !c.is_control())
        .take(60)
        .collect();
    format!("from <{}> to <{rc}> (Subject: {subj})", env.sender)
}

/// FNV-1a, 64 bits, from `seed`.
fn fnv(seed: u64, data: &[u8]) -> u64 {
    let mut h = seed;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The storm key of a message and its Subject: sender, recipients (as a
/// set), Subject and the body (at most its first MiB, plus its length).
fn digest(env: &Envelope, file: &File, start: u64, len: u64) -> io::Result<(String, String)> {
    use std::os::unix::fs::FileExt;
    const MAX: u64 = 1024 * 1024;
    let n = len.min(MAX) as usize;
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, start)?;
    let (head, body) = match find(&buf, b"\r\n\r\n") {
        Some(i) => (&buf[..i], &buf[i + 4..]),
        None => match find(&buf, b"\n\n") {
            Some(i) => (&buf[..i], &buf[i + 2..]),
            None => (&buf[..], &[][..]),
        },
    };
    let subject = header(head, "subject").unwrap_or_default();
    let mut rcpts: Vec<String> = env.recipients.iter().map(|r| r.to_lowercase()).collect();
    rcpts.sort();
    rcpts.dedup();
    let mut material = Vec::new();
    material.extend_from_slice(env.sender.to_lowercase().as_bytes());
    material.push(0);
    for r in &rcpts {
        material.extend_from_slice(r.as_bytes());
        material.push(0);
    }
    material.extend_from_slice(subject.as_bytes());
    material.push(0);
    material.extend_from_slice(&len.saturating_sub(head.len() as u64).to_le_bytes());
    let a = fnv(fnv(0xcbf2_9ce4_8422_2325, &material), body);
    let b = fnv(fnv(0x84222325_cbf29ce4, body), &material);
    Ok((format!("{a:016x}{b:016x}"), subject))
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// The unfolded value of the first header `name` (lower-case).
fn header(head: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let mut out: Option<String> = None;
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        match &mut out {
            Some(v) if line.starts_with([' ', '\t']) => {
                v.push(' ');
                v.push_str(line.trim());
            }
            Some(_) => break,
            None => {
                if let Some((k, v)) = line.split_once(':')
                    && k.trim().eq_ignore_ascii_case(name)
                {
                    out = Some(v.trim().to_string());
                }
            }
        }
    }
    out
}

/// Queue a notice from the daemon to `limits.alert_to`.
fn send_notice(cfg: &Config, spool: &Spool, n: &Notice) -> io::Result<String> {
    let now = clock::now();
    let env = format::Envelope {
        id: String::new(),
        sender: String::new(),
        recipients: vec![cfg.limits.alert_to.clone()],
        uid: nix::unistd::getuid().as_raw(),
        user: "MAILER-DAEMON".into(),
        arrival: clock::unix_f64(now),
        ..Default::default()
    };
    let subject: String = n.subject.chars().filter(|c| !c.is_control()).collect();
    enqueue::enqueue(spool, env, |w| {
        let text = format!(
            "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n\
             To: {to}\r\n\
             Subject: {subject}\r\n\
             Date: {date}\r\n\
             Message-ID: <{micros}.guard@{host}>\r\n\
             Auto-Submitted: auto-generated\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\
             \r\n\
             {body}",
            host = cfg.hostname,
            to = cfg.limits.alert_to,
            date = clock::rfc5322(now),
            micros = clock::unix_micros(now),
            body = n.body.replace('\n', "\r\n"),
        );
        w.write_all(text.as_bytes())?;
        Ok(text.len() as u64)
    })
}

/// Users over their limits in the current window: (uid, held, reason).
pub fn users_over(g: &guard::GuardState, now: f64) -> Vec<&UserWindow> {
    g.users
        .iter()
        .filter(|u| u.held > 0 && now < u.start + USER_WINDOW)
        .collect()
}

/// Storms still going on (a message within the window) that hold mail.
pub fn active_storms<'g>(g: &'g guard::GuardState, cfg: &Config, now: f64) -> Vec<&'g Storm> {
    let w = cfg.limits.storm_window.as_secs_f64();
    g.storms
        .iter()
        .filter(|t| t.held > 0 && now < t.last + w)
        .collect()
}

/// The suppression entry for `address`, if it is suppressed now.
pub fn suppressed<'g>(g: &'g guard::GuardState, address: &str, now: f64) -> Option<&'g Suppressed> {
    let a = address.to_lowercase();
    g.suppressed
        .iter()
        .find(|s| s.address == a && now < s.until)
}

/// Remember recipients refused permanently with 5.1.x (`(address,
/// reply)`), for `limits.suppress_for`.
pub fn remember_failures(cfg: &Config, spool: &Spool, failed: &[(String, String)]) {
    let keep = cfg.limits.suppress_for.as_secs_f64();
    if keep <= 0.0 || failed.is_empty() {
        return;
    }
    let now = clock::unix_f64(clock::now());
    let r = guard::update(spool, |g| {
        g.suppressed.retain(|s| now < s.until);
        for (addr, reply) in failed {
            let a = addr.to_lowercase();
            g.suppressed.retain(|s| s.address != a);
            g.suppressed.push(Suppressed {
                address: a,
                until: now + keep,
                reason: reply.clone(),
            });
        }
    });
    if let Err(e) = r {
        log::warn!("outbound guard: cannot record suppressed recipients: {e}");
    }
}

/// May a bounce go to `address` now? Counts it (sent or dropped) in the
/// address's hour.
pub fn allow_bounce(cfg: &Config, spool: &Spool, address: &str) -> bool {
    let cap = cfg.limits.max_bounces_per_hour;
    if cap == 0 {
        return true;
    }
    let a = address.to_lowercase();
    guard::update(spool, |g| {
        // Read under the lock: a time taken before waiting for it could
        // predate the window another thread just opened.
        let now = clock::unix_f64(clock::now());
        g.dsn.retain(|d| now < d.start + USER_WINDOW);
        let i = match g.dsn.iter().position(|d| d.address == a) {
            Some(i) => i,
            None => {
                g.dsn.push(DsnWindow {
                    address: a.clone(),
                    start: now,
                    sent: 0,
                    dropped: 0,
                });
                g.dsn.len() - 1
            }
        };
        let d = &mut g.dsn[i];
        if d.sent < cap {
            d.sent += 1;
            true
        } else {
            d.dropped += 1;
            false
        }
    })
    .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_unfold() {
        let h = b"From: a\r\nSubject: Cron <root@x>\r\n  run-parts\r\nTo: b";
        assert_eq!(
            header(h, "subject").as_deref(),
            Some("Cron <root@x> run-parts")
        );
        assert_eq!(header(h, "x-none"), None);
    }
}
