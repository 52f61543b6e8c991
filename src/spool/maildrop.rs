//! Maildrop entries: how a submitter commits one, and how the queue runner
//! takes it over.
//!
//! Writer side (runs as the caller, after the privilege drop). An entry is
//! created `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0604, and locked (`flock`) by
//! whoever creates it — `privilege.rs` before the drop in an installed setup,
//! [`create`] directly in an unprivileged one. [`MessageWriter`] streams the
//! message into it, appends the envelope and trailer, patches the length
//! into the header, checks the file size, then commits: mode 0744 (the
//! owner-execute bit means "ready"), fsync the file, fsync the directory,
//! unlock. Only after that may the caller exit 0. On any failure the entry
//! is emptied and left not-ready (it is also unlinked when the caller has
//! the right to), so nothing deliverable remains.
//!
//! Reader side: [`claim`] says what one name holds ([`Claim`], and for a
//! committed entry its [`Content`]: a message, a request, or something
//! undecodable); the daemon's pickup decides what to do with it. The runner
//! trusts nothing in maildrop: it opens with `O_NOFOLLOW|O_NONBLOCK`,
//! requires a regular file with one link and the ready bit, takes the uid
//! from `st_uid` and decodes strictly (the pickup moves anything undecodable
//! to `corrupt/`). A not-ready entry that nobody holds locked and that is
//! older than the stale limit is an abandoned submission and is removed.

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
            Mode::from_bits_truncate(MODE_WRITING),
        ) {
            Ok(fd) => {
                let file = File::from(fd);
                file.lock()?;
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
    out: BufWriter<File>,
    dir: File,
    len: u64,
    committed: bool,
}

impl MessageWriter {
    /// Start writing into the freshly created entry `file` named `id` in `dir`.
    pub fn new(id: String, file: File, dir: File) -> io::Result<MessageWriter> {
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        out.write_all(format::header(0).as_bytes())?;
        Ok(MessageWriter {
            id,
            out,
            dir,
            len: 0,
            committed: false,
        })
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
        self.out.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Write the envelope, prove the file whole, mark it ready and make it
    /// durable. `Ok` means the message is safe.
    pub fn commit(mut self, env: &Envelope) -> io::Result<()> {
        let envelope = format::encode_envelope(env)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.0))?;
        self.out.write_all(envelope.as_bytes())?;
        self.out.flush()?;
        let file = self.out.get_ref();
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
        if self.committed {
            return;
        }
        // Leave nothing deliverable: empty the file, keep it not-ready, and
        // unlink it where we may (an installed submitter may not; the runner
        // removes abandoned entries).
        let file = self.out.get_ref();
        let _ = file.set_len(0);
        let _ = fchmod(file, Mode::from_bits_truncate(MODE_WRITING));
        let _ = nix::unistd::unlinkat(
            &self.dir,
            self.id.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
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
        let _ = file.set_len(0);
        let _ = fchmod(file, Mode::from_bits_truncate(MODE_WRITING));
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
    /// Still being written (locked, or not ready and recent).
    Busy,
    /// Abandoned (not ready, unlocked, older than the stale limit): removed.
    Abandoned,
    /// Not something a submitter could have written correctly.
    Corrupt(String),
    /// Gone meanwhile.
    Vanished,
}

/// Examine `maildrop/<name>` for pickup.
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
            // Not readable yet: mode 0600 while being written by another user.
            return Ok(stale_or_busy(dir, name, stale_after));
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
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(Claim::Busy),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    if md.mode() & READY_BIT == 0 {
        let _ = file.unlock();
        return Ok(stale_or_busy(dir, name, stale_after));
    }
    let content = content(&file, name);
    Ok(Claim::Ready {
        file,
        uid: md.uid(),
        content,
    })
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

/// Decode the committed entry `file` named `name`.
fn content(file: &File, name: &str) -> Content {
    if request::is_request(file) {
        return Content::Request(request::read(file));
    }
    match super::queue::read_entry(file) {
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

fn stale_or_busy(dir: &File, name: &str, stale_after: std::time::Duration) -> Claim {
    let st = match nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(_) => return Claim::Vanished,
    };
    let now = crate::clock::unix_secs(std::time::SystemTime::now()) as i64;
    let age = now - st.st_mtime.max(st.st_ctime);
    if age >= stale_after.as_secs() as i64 {
        // An unlocked, not-ready entry is a submission that died. If a
        // submitter still held it, its lock would have made us return Busy
        // before we got here, except for an unreadable (0600, other user)
        // entry: that one is only removed when it is also stale.
        if nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir).is_ok() {
            return Claim::Abandoned;
        }
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
