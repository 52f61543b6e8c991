//! The daemon's side of the spool: admitting a maildrop entry into the
//! queue, opening queued messages, their state files, removal, quarantine
//! and start-up cleaning.
//!
//! [`admit`] moves a committed maildrop entry into `queue/` by rename (the
//! daemon owns both directories; the bytes are never copied) after it has
//! been checked and decoded strictly (see `maildrop::claim`; the pickup that
//! drives this is the daemon's, `daemon::pickup`); the uid recorded is the
//! file's owner, never what the file says. `queue/<id>` is then
//! immutable; `state/<id>` carries what changes. Crash states all mean
//! something: an entry in both maildrop/ and queue/ is an interrupted
//! pickup (the maildrop copy is dropped); queue/<id> without state/<id> is
//! a new message (its state is recreated); state/<id> without queue/<id>
//! is an orphan (removed); anything in tmp/ older than an hour is garbage.

use super::format::{self, Envelope};
use super::state::{RcptState, RcptStatus, State};
use super::{Spool, durable};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

/// A queued message, opened for reading.
#[derive(Debug)]
pub struct Queued {
    /// The open file (locked by whoever opened it for delivery).
    pub file: File,
    /// The envelope.
    pub env: Envelope,
    /// Offset of the message in the file.
    pub start: u64,
    /// Length of the message.
    pub len: u64,
    /// Owner of the file (the submitting user).
    pub owner: u32,
}

/// Read and check the envelope of an open entry file.
pub fn read_entry(file: &File) -> Result<(Envelope, u64, u64), String> {
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    read_entry_sized(file, size)
}

/// [`read_entry`] of a file whose size the caller has just read (from a
/// `stat` taken after the entry could no longer change: committed, or
/// locked by this process).
pub fn read_entry_sized(file: &File, size: u64) -> Result<(Envelope, u64, u64), String> {
    let mut header = [0u8; format::HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0)
        .map_err(|_| "file shorter than its header (torn)".to_string())?;
    let len = format::parse_header(&header).map_err(|e| e.0)?;
    let env_start = format::HEADER_LEN
        .checked_add(len)
        .filter(|&s| s <= size)
        .ok_or_else(|| "message shorter than its header says (torn)".to_string())?;
    let env_len = size - env_start;
    if env_len as usize > format::MAX_ENVELOPE {
        return Err("envelope too large".into());
    }
    let mut env = vec![0u8; env_len as usize];
    file.read_exact_at(&mut env, env_start)
        .map_err(|e| e.to_string())?;
    let e = format::decode_envelope(&env).map_err(|e| e.0)?;
    Ok((e, format::HEADER_LEN, len))
}

/// Open `queue/<id>`; `lock` takes the per-message lock without waiting
/// (None when another runner holds it).
pub fn open(spool: &Spool, id: &str, lock: bool) -> io::Result<Option<Queued>> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(spool.queue().join(id))?;
    if lock {
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
    let md = file.metadata()?;
    if lock && md.nlink() == 0 {
        // Opened just before another runner finished the message, removed
        // it and let go of the lock: it is done, not new (its state file is
        // gone too, so delivering it would send it again).
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the message was removed by another runner",
        ));
    }
    let owner = md.uid();
    let (env, start, len) = read_entry_sized(&file, md.len())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if env.id != id {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "queue id inside the file does not match its name",
        ));
    }
    Ok(Some(Queued {
        file,
        env,
        start,
        len,
        owner,
    }))
}

/// The initial state of a message.
pub fn initial_state(env: &Envelope, size: u64, uid: u32) -> State {
    State {
        id: env.id.clone(),
        sender: env.sender.clone(),
        size,
        arrival: env.arrival,
        uid,
        tries: 0,
        next: 0.0,
        held: false,
        warned: false,
        last_attempt: 0.0,
        relay: String::new(),
        ack_deadline: 0.0,
        hold_reason: String::new(),
        storm: String::new(),
        rcpts: env
            .recipients
            .iter()
            .map(|r| RcptState {
                status: RcptStatus::Pending,
                address: r.clone(),
                original: r.clone(),
                changed: env.arrival,
                reply: String::new(),
            })
            .collect(),
    }
}

/// Read `state/<id>`.
pub fn load_state(spool: &Spool, id: &str) -> Option<State> {
    let text = std::fs::read_to_string(spool.state().join(id)).ok()?;
    State::decode(&text).filter(|s| s.id == id)
}

/// Replace `state/<id>`; `durable` when it records delivered recipients.
pub fn save_state(spool: &Spool, st: &State, durable: bool) -> io::Result<()> {
    durable::write_atomic(
        &spool.tmp(),
        &spool.state().join(&st.id),
        st.encode().as_bytes(),
        0o644,
        durable,
    )
}

/// Remove a message and its state.
pub fn remove(spool: &Spool, id: &str) -> io::Result<()> {
    match std::fs::remove_file(spool.queue().join(id)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match std::fs::remove_file(spool.state().join(id)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Move `dir/name` to `corrupt/` (with a unique suffix if needed).
pub fn quarantine(spool: &Spool, dir: &Path, name: &str, why: &str) {
    let mut target = spool.corrupt().join(name);
    if target.exists() {
        target = spool.corrupt().join(format!(
            "{name}.{}",
            crate::clock::unix_micros(std::time::SystemTime::now())
        ));
    }
    match std::fs::rename(dir.join(name), &target) {
        Ok(()) => log::warn!("{name}: moved to {}: {why}", target.display()),
        Err(e) => log::error!("{name}: cannot quarantine ({why}): {e}"),
    }
    let _ = std::fs::remove_file(spool.state().join(name));
}

/// Names in a directory that look like queue ids, sorted (= by arrival).
pub fn list_ids(dir: &Path) -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(n) = e.file_name().to_str()
            && !n.starts_with('.')
        {
            v.push(n.to_string());
        }
    }
    v.sort();
    Ok(v)
}

/// What [`admit`] did with a maildrop entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// Moved into `queue/`.
    Queued,
    /// Already in `queue/` (an interrupted earlier pickup; the queue copy
    /// wins): the maildrop copy was dropped.
    AlreadyQueued,
    /// Gone meanwhile (another runner took it).
    Gone,
}

/// Move the committed maildrop entry `name` (decoded: envelope `env`,
/// message length `len`, owner `uid`) into `queue/` by rename. The state
/// file is written at once only when `write_state` (else the first delivery
/// attempt writes it if it does not finish the message).
pub fn admit(
    spool: &Spool,
    name: &str,
    env: &Envelope,
    len: u64,
    uid: u32,
    write_state: bool,
) -> io::Result<Admitted> {
    let dir_path = spool.maildrop();
    let target = spool.queue().join(name);
    if target.exists() {
        // Interrupted earlier pickup: the queue copy wins.
        let _ = std::fs::remove_file(dir_path.join(name));
        return Ok(Admitted::AlreadyQueued);
    }
    match std::fs::rename(dir_path.join(name), &target) {
        Ok(()) => {}
        // Another runner picked it up first.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Admitted::Gone),
        Err(e) => return Err(e),
    }
    if write_state {
        let st = initial_state(env, len, uid);
        if let Err(e) = save_state(spool, &st, false) {
            log::warn!("{name}: cannot write state: {e}");
        }
    }
    Ok(Admitted::Queued)
}

/// Start-up cleaning: purge tmp/, drop orphan state files.
pub fn clean(spool: &Spool) {
    // Only old leftovers: a one-shot runner may be writing a state file
    // through tmp/ right now.
    let old = |e: &std::fs::DirEntry| {
        e.metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600))
    };
    if let Ok(rd) = std::fs::read_dir(spool.tmp()) {
        for e in rd.flatten().filter(old) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    remove_orphan_states(spool);
}

/// Remove `state/<id>` files whose `queue/<id>` is gone: a runner killed
/// between removing a finished message and its state (the message is done;
/// only `mailq` would still list it). Safe beside other runners: every
/// writer creates `queue/<id>` before `state/<id>`, and a state file
/// removed under a live message is recreated from its envelope.
pub fn remove_orphan_states(spool: &Spool) {
    if let Ok(ids) = list_ids(&spool.state()) {
        for id in ids {
            if !spool.queue().join(&id).exists() {
                let _ = std::fs::remove_file(spool.state().join(&id));
            }
        }
    }
}

/// State of every queued message (recreating missing state files).
pub fn states(spool: &Spool) -> Vec<State> {
    let mut out = Vec::new();
    let Ok(ids) = list_ids(&spool.queue()) else {
        return out;
    };
    out.extend(ids.iter().filter_map(|id| state_or_recreate(spool, id)));
    out
}

/// State of the queued message `id`, its state file recreated if missing;
/// None when the message is not queued.
pub fn state_or_recreate(spool: &Spool, id: &str) -> Option<State> {
    if let Some(st) = load_state(spool, id) {
        return Some(st);
    }
    let q = open(spool, id, false).ok()??;
    let st = initial_state(&q.env, q.len, q.owner);
    let _ = save_state(spool, &st, false);
    Some(st)
}
