//! Maildrop entries: how a submitter commits one, and how the queue runner
//! takes it over.
//!
//! Writer side (runs as the caller, after the privilege drop). An entry is
//! created `O_CREAT|O_EXCL|O_NOFOLLOW` with mode 0000, locked (`flock`) and
//! only then given mode 0604 with `fchmod` (so the caller's umask cannot
//! change it, and an entry the runner can read is always one whose writer
//! took the lock) — by whoever creates it: `privilege.rs` before the drop
//! in an installed setup, [`create`] directly in an unprivileged one.
//! [`MessageWriter`] streams the message into it (checking the spool's free
//! space against a reserve before the first byte and every
//! [`RESERVE_CHECK_EVERY`] bytes), appends the envelope and trailer, patches
//! the length into the header, checks the file size, then commits: mode 0704
//! (the owner-execute bit means "ready"), fsync the file, fsync the
//! directory, unlock. Only after that may the caller exit 0. On any failure
//! the entry is emptied, given mode 0404 ([`abandon`]) and closed (which
//! releases the lock); it is also unlinked when the caller has the right
//! to, so nothing deliverable remains.
//!
//! Reader side: [`claim`] says what one name holds ([`Claim`], and for a
//! committed entry its [`Content`]: a message, a request, or something
//! undecodable); the daemon's pickup decides what to do with it. The runner
//! trusts nothing in maildrop: it opens with `O_NOFOLLOW|O_NONBLOCK`,
//! requires a regular file with one link and the ready bit, takes the uid
//! from `st_uid` and decodes strictly (the pickup moves anything undecodable
//! to `corrupt/`).
//!
//! An entry that is not ready is abandoned — and removed at once — when
//! nobody holds its lock any more (its writer failed, exited or was killed:
//! the lock goes with the last descriptor). Only its owner can change its
//! mode, so an entry the runner cannot read (mode 0000 between `O_CREAT`
//! and the `fchmod`, or a mode its owner set by hand) is removed once it
//! has not changed for [`UNREADABLE_GRACE`]; an entry still locked but not
//! ready after `maildrop_stale_after` (a writer that stalled) is removed
//! too, and that writer's commit then fails.

use crate::spool::format::{self, Envelope};
use crate::spool::request;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fchmod};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, MetadataExt};

/// Mode of an entry being written: readable by the runner (others cannot
/// traverse maildrop/) so it can see the writer's lock.
pub const MODE_WRITING: u32 = 0o604;
/// Mode a failed writer gives its entry before letting go of it: not
/// ready, still readable by the runner, and — unlike a lock that goes
/// away — a change the pickup's `fstatat` sees.
pub const MODE_ABANDONED: u32 = 0o404;
/// Mode of an entry between `O_CREAT` and its lock (microseconds).
pub const MODE_CREATING: u32 = 0o000;
/// How long an unreadable, not-ready entry may stay unchanged before the
/// runner removes it (a writer that died between `O_CREAT` and `fchmod`,
/// or an owner that made its entry unreadable).
pub const UNREADABLE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// The spool's free space is checked against the reserve before the first
/// byte and again after every this many bytes written.
pub const RESERVE_CHECK_EVERY: u64 = 1024 * 1024;
/// Start of the message of a refusal for want of free space (the SMTP
/// server answers it with 452 4.3.1).
pub const RESERVE_REFUSAL: &str = "not enough free space in the spool";
/// Mode of a committed ("ready") entry: the ready bit added to
/// [`MODE_WRITING`]. No group bit: the group (postern-drop) only ever
/// creates entries, it never needs to read one.
pub const MODE_READY: u32 = 0o704;
/// The ready bit.
pub const READY_BIT: u32 = 0o100;

/// Create a new entry in the directory `dir`: returns its id and the open,
/// locked file.
pub fn create(dir: &File) -> io::Result<(String, File)> {
    let pid = std::process::id();
    for attempt in 0..1000u32 {
        let micros = crate::clock::unix_micros(std::time::SystemTime::now());
        let id = crate::spool::new_id(micros, pid, attempt);
        match openat(
            dir,
            id.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(MODE_CREATING),
        ) {
            Ok(fd) => {
                let file = File::from(fd);
                let locked = file.lock().and_then(|()| {
                    fchmod(&file, Mode::from_bits_truncate(MODE_WRITING)).map_err(io::Error::from)
                });
                if let Err(e) = locked {
                    let _ = nix::unistd::unlinkat(
                        dir,
                        id.as_str(),
                        nix::unistd::UnlinkatFlags::NoRemoveDir,
                    );
                    return Err(e);
                }
                return Ok((id, file));
            }
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
    Err(io::Error::other("could not find a free queue id"))
}

/// Open a directory for use as `dir` in [`create`] and for fsync.
pub fn open_dir(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Streams one message into a maildrop entry and commits it.
pub struct MessageWriter {
    id: String,
    /// None only while being dropped.
    out: Option<BufWriter<File>>,
    dir: File,
    len: u64,
    /// Free bytes the spool's file system must keep (0: no reserve).
    reserve: u64,
    /// Bytes written since the free space was last checked.
    unchecked: u64,
    committed: bool,
}

impl MessageWriter {
    /// Start writing into the freshly created entry `file` named `id` in `dir`.
    pub fn new(id: String, file: File, dir: File) -> io::Result<MessageWriter> {
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        out.write_all(format::header(0).as_bytes())?;
        Ok(MessageWriter {
            id,
            out: Some(out),
            dir,
            len: 0,
            reserve: 0,
            unchecked: 0,
            committed: false,
        })
    }

    /// Keep `min_free` bytes free on the spool's file system: refuse now
    /// when it has less (one `fstatvfs`), and again whenever that happens
    /// while the message is written (checked every [`RESERVE_CHECK_EVERY`]
    /// bytes). 0 disables the check.
    pub fn keep_free(&mut self, min_free: u64) -> io::Result<()> {
        self.reserve = min_free;
        self.check_free()
    }

    fn file(&self) -> &File {
        self.out.as_ref().expect("writer in use").get_ref()
    }

    fn check_free(&mut self) -> io::Result<()> {
        self.unchecked = 0;
        keeps_free(self.file(), self.reserve)
    }

    /// The queue id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Bytes of message written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append message bytes.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.as_mut().expect("writer in use").write_all(bytes)?;
        self.len += bytes.len() as u64;
        self.unchecked += bytes.len() as u64;
        if self.reserve > 0 && self.unchecked >= RESERVE_CHECK_EVERY {
            self.check_free()?;
        }
        Ok(())
    }

    /// Write the envelope, prove the file whole, mark it ready and make it
    /// durable. `Ok` means the message is safe.
    pub fn commit(mut self, env: &Envelope) -> io::Result<()> {
        let envelope = format::encode_envelope(env)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.0))?;
        let out = self.out.as_mut().expect("writer in use");
        out.write_all(envelope.as_bytes())?;
        out.flush()?;
        let file = out.get_ref();
        file.write_all_at(format::header(self.len).as_bytes(), 0)?;
        let expect = format::HEADER_LEN + self.len + envelope.len() as u64;
        let got = file.metadata()?.len();
        if got != expect {
            return Err(io::Error::other(format!(
                "queue file is {got} bytes, expected {expect}"
            )));
        }
        fchmod(file, Mode::from_bits_truncate(MODE_READY)).map_err(io::Error::from)?;
        file.sync_all()?;
        self.dir.sync_all()?;
        if file.metadata()?.nlink() != 1 {
            // The runner took this entry for abandoned (a submission that
            // stalled for longer than maildrop_stale_after): say so, do not
            // pretend the mail is safe.
            return Err(io::Error::other(
                "the queue file was removed while it was being written",
            ));
        }
        // From here on the mail is safe.
        self.committed = true;
        let _ = file.unlock();
        Ok(())
    }
}

impl Drop for MessageWriter {
    fn drop(&mut self) {
        let Some(out) = self.out.take() else {
            return;
        };
        // Never flush what is buffered: take the file without writing.
        let (file, _unwritten) = out.into_parts();
        if self.committed {
            return;
        }
        // Leave nothing deliverable: empty the file, keep it not-ready, and
        // unlink it where we may (an installed submitter may not). Closing
        // it releases the lock, which tells the runner it is abandoned.
        abandon(&file);
        let _ = nix::unistd::unlinkat(
            &self.dir,
            self.id.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        drop(file);
    }
}

/// Refuse (`StorageFull`, a message starting with [`RESERVE_REFUSAL`] and
/// naming the free space and the reserve) when the file system holding
/// `fd` has less than `reserve` bytes free for unprivileged users; one
/// `fstatvfs`. A `reserve` of 0 checks nothing.
pub fn keeps_free(fd: &impl std::os::fd::AsFd, reserve: u64) -> io::Result<()> {
    if reserve == 0 {
        return Ok(());
    }
    let st = nix::sys::statvfs::fstatvfs(fd).map_err(io::Error::from)?;
    let free = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
    if free < reserve {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "{RESERVE_REFUSAL}: {} free, the reserve is {} (queue.min_free)",
                human_size(free),
                human_size(reserve)
            ),
        ));
    }
    Ok(())
}

/// Mark the entry `file` abandoned before its writer lets go of it: empty,
/// mode [`MODE_ABANDONED`]. The runner removes it at its next look.
pub fn abandon(file: &File) {
    let _ = file.set_len(0);
    let _ = fchmod(file, Mode::from_bits_truncate(MODE_ABANDONED));
}

/// `n` bytes for a person: "512 KiB", "95.4 MiB".
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Commit a request entry (an admin request such as `delete ID`, see
/// [`super::request`]): the same protocol as a message — whole
/// content, ready bit, fsync file and directory, unlock — with `text` as
/// the entire file. `file` is a fresh entry from [`create`] named `id` in
/// `dir`. On failure the entry is emptied, left not-ready and unlinked
/// where permitted, like a failed message.
pub fn commit_request(id: &str, file: &File, dir: &File, text: &[u8]) -> io::Result<()> {
    let result = (|| -> io::Result<()> {
        file.write_all_at(text, 0)?;
        if file.metadata()?.len() != text.len() as u64 {
            return Err(io::Error::other("request file has the wrong size"));
        }
        fchmod(file, Mode::from_bits_truncate(MODE_READY)).map_err(io::Error::from)?;
        file.sync_all()?;
        dir.sync_all()?;
        if file.metadata()?.nlink() != 1 {
            return Err(io::Error::other(
                "the request file was removed while it was being written",
            ));
        }
        Ok(())
    })();
    if result.is_err() {
        abandon(file);
        let _ = nix::unistd::unlinkat(dir, id, nix::unistd::UnlinkatFlags::NoRemoveDir);
    }
    let _ = file.unlock();
    result
}

/// What the runner found when it looked at one maildrop name.
#[derive(Debug)]
pub enum Claim {
    /// A committed entry, opened read-only and locked, with the owner's uid
    /// and what it holds.
    Ready {
        /// The open file.
        file: File,
        /// Owner of the file (the submitting user).
        uid: u32,
        /// What the file holds.
        content: Content,
    },
    /// Still being written (locked and not ready, or unreadable and changed
    /// within [`UNREADABLE_GRACE`]).
    Busy,
    /// Abandoned (not ready and nobody holds its lock, unreadable and
    /// unchanged for [`UNREADABLE_GRACE`], or locked but not ready for longer
    /// than the stale limit): removed.
    Abandoned,
    /// Not something a submitter could have written correctly.
    Corrupt(String),
    /// Gone meanwhile.
    Vanished,
}

/// Examine `maildrop/<name>` for pickup. `stale_after`: how long a writer
/// may hold an entry locked without committing it.
pub fn claim(dir: &File, name: &str, stale_after: std::time::Duration) -> io::Result<Claim> {
    if !crate::spool::is_valid_id(name) {
        return Ok(Claim::Corrupt("file name is not a queue id".into()));
    }
    let fd = match openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(Claim::Vanished),
        Err(nix::errno::Errno::ELOOP) => return Ok(Claim::Corrupt("a symbolic link".into())),
        Err(nix::errno::Errno::EACCES) => {
            // Its owner made it unreadable (mode 0000 between O_CREAT and
            // the lock, or by hand): the lock cannot be seen.
            return Ok(unreadable(dir, name));
        }
        Err(e) => return Err(io::Error::from(e)),
    };
    let file = File::from(fd);
    let md = file.metadata()?;
    if !md.file_type().is_file() {
        return Ok(Claim::Corrupt("not a regular file".into()));
    }
    if md.nlink() != 1 {
        return Ok(Claim::Corrupt(format!("{} hard links", md.nlink())));
    }
    if md.mode() & 0o777 == MODE_CREATING {
        // Being created (a root runner could open it before its writer
        // locked it): judge it like an unreadable one.
        return Ok(unreadable(dir, name));
    }
    let ready = md.mode() & READY_BIT != 0;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            if !ready && age(&md) >= stale_after.as_secs() as i64 && remove(dir, name) {
                return Ok(Claim::Abandoned);
            }
            return Ok(Claim::Busy);
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    if !ready {
        // Not ready and nobody holds the lock: its writer failed or died
        // (a live writer locks the entry before it becomes readable).
        return Ok(if remove(dir, name) {
            Claim::Abandoned
        } else {
            Claim::Busy
        });
    }
    // Ready: its writer finished before setting the bit, so `md` has its
    // final size.
    let content = content(&file, name, md.len());
    Ok(Claim::Ready {
        file,
        uid: md.uid(),
        content,
    })
}

/// Seconds since `md` last changed (content or inode).
fn age(md: &std::fs::Metadata) -> i64 {
    let now = crate::clock::unix_secs(std::time::SystemTime::now()) as i64;
    now - md.mtime().max(md.ctime())
}

fn remove(dir: &File, name: &str) -> bool {
    nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir).is_ok()
}

/// What a committed maildrop entry holds.
#[derive(Debug)]
pub enum Content {
    /// A message: its envelope (the id matches the file name) and the
    /// length of the message.
    Message {
        /// The envelope.
        env: Box<Envelope>,
        /// Length of the message.
        len: u64,
    },
    /// A request entry (see [`request`]): a change, void, or why it is
    /// malformed.
    Request(Result<request::Entry, String>),
    /// Neither a request nor a decodable message: why.
    Corrupt(String),
}

/// Decode the committed entry `file` named `name`, `size` bytes long.
fn content(file: &File, name: &str, size: u64) -> Content {
    if request::is_request(file) {
        return Content::Request(request::read(file));
    }
    match super::queue::read_entry_sized(file, size) {
        Ok((env, _, _)) if env.id != name => {
            Content::Corrupt("queue id does not match the file name".into())
        }
        Ok((env, _, len)) => Content::Message {
            env: Box::new(env),
            len,
        },
        Err(why) => Content::Corrupt(why),
    }
}

/// An entry the runner may not read: removed once it has not changed for
/// [`UNREADABLE_GRACE`] (a live writer locks and `fchmod`s a new entry to
/// 0604 within microseconds; a ready entry is 0704).
fn unreadable(dir: &File, name: &str) -> Claim {
    let st = match nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(_) => return Claim::Vanished,
    };
    let now = crate::clock::unix_secs(std::time::SystemTime::now()) as i64;
    let age = now - st.st_mtime.max(st.st_ctime);
    if age >= UNREADABLE_GRACE.as_secs() as i64 && remove(dir, name) {
        return Claim::Abandoned;
    }
    Claim::Busy
}

/// A source of new maildrop entries other than this process's own access
/// to the directory: the installed `sendmail -bs` asks a helper that kept
/// the group (`privilege::Opener`).
pub trait OpenEntry {
    /// A new entry: (queue id, open locked file).
    fn open_entry(&self) -> io::Result<(String, File)>;
}

/// True when the binary file carries a set-gid bit but the process did not
/// get it (NoNewPrivileges, a nosuid mount): used to explain why maildrop
/// refused an entry.
pub fn setgid_bit_ignored() -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata("/proc/self/exe")
        .map(|m| m.permissions().mode() & 0o2000 != 0)
        .unwrap_or(false)
}

/// Names in maildrop, through an open directory handle.
pub fn names(dir: File) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(mut d) = nix::dir::Dir::from_fd(dir.into()) {
        for e in d.iter().flatten() {
            if let Ok(n) = e.file_name().to_str()
                && super::is_valid_id(n)
            {
                out.push(n.to_string());
            }
        }
    }
    out
}

/// Most entries [`open_own_ready`] keeps open for one listing.
pub const MAX_OWN_OPEN: usize = 200;

/// The caller's own committed entries, opened through `dir` while the
/// process can still search maildrop (the set-gid step of a queue listing),
/// so that after the group is dropped `mailq` can show the caller the
/// envelopes of their own mail waiting for pickup. An entry is looked at
/// with `fstatat` first and opened only when it is a regular file with one
/// link, owned by `uid` and ready (and checked again once open): another
/// user's entry is never opened. At most [`MAX_OWN_OPEN`].
pub fn open_own_ready(dir: &File, uid: u32) -> Vec<(String, File)> {
    let Ok(listing) = dir.try_clone() else {
        return Vec::new();
    };
    let own = |mode: u32, nlink: u64, owner: u32| {
        mode & libc::S_IFMT == libc::S_IFREG && nlink == 1 && owner == uid && mode & READY_BIT != 0
    };
    let mut out = Vec::new();
    for name in names(listing) {
        if out.len() >= MAX_OWN_OPEN {
            break;
        }
        let Ok(st) =
            nix::sys::stat::fstatat(dir, name.as_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        else {
            continue;
        };
        if !own(st.st_mode, st.st_nlink, st.st_uid) {
            continue;
        }
        let Ok(fd) = openat(
            dir,
            name.as_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let file = File::from(fd);
        if file
            .metadata()
            .is_ok_and(|md| own(md.mode(), md.nlink(), md.uid()))
        {
            out.push((name, file));
        }
    }
    out
}
