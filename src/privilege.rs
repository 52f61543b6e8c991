//! The only set-gid-aware code in Postern, and the only module allowed
//! `unsafe` (besides the `no_mangle` that makes `main` the C entry point).
//!
//! The installed binary is `root:postern-drop` mode 2755. The group can do
//! one thing: create entries in `maildrop/` and poke the daemon's FIFO.
//! [`enter`] runs first in `main`, before the config, the environment or
//! stdin is looked at, and:
//! 1. makes sure fds 0-2 are open (so no spool file can become "stdout")
//!    and SIGPIPE is ignored (std's start-up, which `main` skips, did that),
//! 2. when privileged: umask 077, no core dumps, not dumpable, an empty
//!    environment (PATH reset),
//! 3. reads argv and hands it to the caller's pure parser (`main` passes
//!    the command-line parser and its `Invocation::intent`), which says
//!    what the command needs ([`Intent`]),
//! 4. when privileged, opens what that intent needs with the compiled-in
//!    spool path (`spool::DEFAULT_SPOOL`): a new maildrop entry (O_CREAT|O_EXCL|O_NOFOLLOW, locked),
//!    the maildrop directory (for fsync and for mailq's list of entries not
//!    yet picked up), the trigger FIFO (O_NONBLOCK: ENXIO means no daemon);
//!    for `-bs`, which may submit any number of messages, it forks a tiny
//!    helper that keeps the group and does nothing but create entries on
//!    request and pass their fds back over a socketpair — at most
//!    [`MAX_OUTSTANDING`] not yet committed at a time: before each new one
//!    (and when the session ends) it removes those it handed out whose
//!    writer let go of the lock without committing (a failed DATA),
//! 5. drops the group (and a set-uid, should someone install it so) for good
//!    with setresgid/setresuid and verifies the drop with getresgid.
//!
//! Everything after that runs with the caller's own credentials. An
//! unprivileged process (not installed setgid: tests, development) skips 2,
//! 4 and 5 and opens the spool from its config later.
//!
//! This module knows neither the command line grammar nor the
//! configuration: it is told the intent, and it knows the spool.

#![allow(unsafe_code)]

use crate::spool::{DEFAULT_SPOOL, Spool, maildrop};
use nix::unistd::{Gid, Uid};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// What the privileged part must prepare (the command-line parser says it:
/// `Invocation::intent` names an intent for every command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// One message from stdin (or one request entry for a queue change).
    SubmitOne,
    /// An SMTP session (`-bs`): any number of messages.
    SubmitMany,
    /// A queue listing.
    ListQueue,
    /// Wake the daemon (flush).
    Poke,
    /// Nothing.
    Nothing,
}

/// Most entries a `-bs` session's helper hands out that are neither
/// committed nor abandoned (an honest session has one at a time).
pub const MAX_OUTSTANDING: usize = 4;

/// Creates maildrop entries on request through a helper that kept the group.
#[derive(Debug)]
pub struct Opener {
    sock: OwnedFd,
}

impl maildrop::OpenEntry for Opener {
    /// A new entry: (queue id, open locked file).
    fn open_entry(&self) -> io::Result<(String, File)> {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        use std::io::IoSliceMut;
        nix::unistd::write(&self.sock, b"N").map_err(io::Error::from)?;
        let mut buf = [0u8; 64];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let n = msg.bytes;
        let mut fd = None;
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for f in fds {
                    // SAFETY: the kernel just installed this descriptor for us.
                    let owned = unsafe { OwnedFd::from_raw_fd(f) };
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
            }
        }
        match (fd, n) {
            (Some(fd), n) if n > 0 && buf[0] != b'E' => {
                let id = String::from_utf8_lossy(&buf[..n]).into_owned();
                if !crate::spool::is_valid_id(&id) {
                    return Err(io::Error::other("entry helper returned a bad id"));
                }
                Ok((id, File::from(fd)))
            }
            (_, 1) if buf[0] == b'L' => Err(io::Error::other(format!(
                "too many unfinished messages in this session (at most {MAX_OUTSTANDING})"
            ))),
            (_, n) if n >= 5 && buf[0] == b'E' => {
                let errno = i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]);
                Err(io::Error::from_raw_os_error(errno))
            }
            _ => Err(io::Error::other("the entry helper went away")),
        }
    }
}

/// What `enter` prepared.
#[derive(Debug)]
pub struct Prepared {
    /// True when the process started with more privilege than its caller.
    pub privileged: bool,
    /// The caller's uid.
    pub uid: u32,
    /// The caller's gid.
    pub gid: u32,
    /// A maildrop entry (privileged SubmitOne).
    pub entry: Option<io::Result<(String, File)>>,
    /// The entry helper (privileged SubmitMany).
    pub opener: Option<io::Result<Opener>>,
    /// The maildrop directory (privileged submit and list).
    pub maildrop_dir: Option<io::Result<File>>,
    /// The trigger FIFO, if a daemon is reading it (privileged).
    pub trigger: Option<io::Result<File>>,
    /// The caller's own ready maildrop entries, opened before the drop for
    /// a queue listing (privileged ListQueue): after the drop the caller
    /// can no longer search maildrop, yet may see their own mail waiting.
    pub own_waiting: Vec<(String, File)>,
}

/// A peer that closes a pipe or socket must be an EPIPE error that the code
/// handles, not a silent death. std's start-up used to do this; `main`
/// skips that start-up (see main.rs). Children get SIG_DFL back from
/// `std::process::Command`, as before.
fn ignore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_IGN installs no handler code, and no thread exists yet.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
}

fn ensure_std_fds() {
    for fd in 0..3 {
        if nix::fcntl::fcntl(
            // SAFETY: only probing whether the descriptor number is open.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_GETFD,
        )
        .is_err()
        {
            // Opening /dev/null takes the lowest free number, i.e. this one.
            let _ = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map(std::mem::ManuallyDrop::new);
        }
    }
}

/// Listening sockets passed by systemd socket activation (sd_listen_fds(3)):
/// descriptors 3 … 3+`LISTEN_FDS`-1 when `LISTEN_PID` is this process,
/// marked close-on-exec. The variables are removed so that no child takes
/// the sockets too. Only `postern daemon` asks, before it starts a thread.
pub fn systemd_sockets() -> Vec<OwnedFd> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let n = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: the daemon calls this before it starts any thread.
        unsafe { std::env::remove_var(k) };
    }
    if !pid_ok || !(1..=64).contains(&n) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for fd in 3..3 + n {
        // SAFETY: only probing and flagging a descriptor number systemd
        // says it passed; it is owned below only when it is open.
        let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if nix::fcntl::fcntl(b, nix::fcntl::FcntlArg::F_GETFD).is_err() {
            continue;
        }
        let _ = nix::fcntl::fcntl(
            b,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
        // SAFETY: open (checked above), passed to this process by systemd,
        // and owned by nothing else in it.
        out.push(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    out
}

fn harden() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    let _ = nix::sys::prctl::set_dumpable(false);
    let keys: Vec<std::ffi::OsString> = std::env::vars_os().map(|(k, _)| k).collect();
    for k in keys {
        // SAFETY: single-threaded; nothing else reads the environment yet.
        unsafe { std::env::remove_var(k) };
    }
    // SAFETY: as above.
    unsafe { std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin") };
}

fn argv() -> (Vec<String>, bool) {
    let mut bad = false;
    let v = std::env::args_os()
        .map(|a| match a.into_string() {
            Ok(s) => s,
            Err(os) => {
                bad = true;
                os.to_string_lossy().into_owned()
            }
        })
        .collect();
    (v, bad)
}

fn open_trigger(spool: &Spool) -> io::Result<File> {
    spool.open_trigger()
}

/// Fork the entry helper for `dir` (see the module docs); `pub` for tests.
pub fn spawn_opener(dir: &File) -> io::Result<Opener> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    use nix::unistd::{ForkResult, fork};
    let (parent, child) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    // SAFETY: single-threaded at this point; the child only calls
    // async-signal-safe-enough code (open, flock, sendmsg) and _exit.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Child => {
            drop(parent);
            opener_child(child, dir);
            // SAFETY: terminate the helper without running the parent's atexit/destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { .. } => {
            drop(child);
            Ok(Opener { sock: parent })
        }
    }
}

fn opener_child(sock: OwnedFd, dir: &File) {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::io::IoSlice;
    // Detach from the caller's stdio so the SMTP client sees EOF when the
    // session ends, whatever this helper is doing.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors of this helper.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let mut req = [0u8; 1];
    // Entries handed out and not yet seen committed or abandoned.
    let mut handed: Vec<String> = Vec::new();
    loop {
        match nix::unistd::read(&sock, &mut req) {
            Ok(1) => {}
            _ => {
                // The session is over: nothing it left unfinished may stay.
                prune(dir, &mut handed);
                return;
            }
        }
        prune(dir, &mut handed);
        if handed.len() >= MAX_OUTSTANDING {
            if sendmsg::<()>(
                sock.as_raw_fd(),
                &[IoSlice::new(b"L")],
                &[],
                MsgFlags::empty(),
                None,
            )
            .is_err()
            {
                prune(dir, &mut handed);
                return;
            }
            continue;
        }
        let sent = match maildrop::create(dir) {
            Ok((id, file)) => {
                handed.push(id.clone());
                let fds = [file.as_raw_fd()];
                sendmsg::<()>(
                    sock.as_raw_fd(),
                    &[IoSlice::new(id.as_bytes())],
                    &[ControlMessage::ScmRights(&fds)],
                    MsgFlags::empty(),
                    None,
                )
            }
            Err(e) => {
                let mut b = [b'E', 0, 0, 0, 0];
                b[1..].copy_from_slice(&e.raw_os_error().unwrap_or(libc::EIO).to_le_bytes());
                sendmsg::<()>(
                    sock.as_raw_fd(),
                    &[IoSlice::new(&b)],
                    &[],
                    MsgFlags::empty(),
                    None,
                )
            }
        };
        if sent.is_err() {
            prune(dir, &mut handed);
            return;
        }
    }
}

/// Forget the entries in `handed` that are gone or committed, and remove
/// those nobody holds locked any more (the writer failed or went away; a
/// writer holds the lock from creation to commit). The helper runs as the
/// caller, who owns the entries, and keeps the group, which may unlink in
/// maildrop.
fn prune(dir: &File, handed: &mut Vec<String>) {
    use nix::fcntl::{OFlag, openat};
    use std::os::unix::fs::MetadataExt;
    handed.retain(|id| {
        let fd = match openat(
            dir,
            id.as_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return false,
            // Not ours to judge any more (the mode was changed): counted.
            Err(_) => return true,
        };
        let file = File::from(fd);
        match file.metadata() {
            Ok(md) if md.mode() & maildrop::READY_BIT != 0 => return false,
            Ok(_) => {}
            Err(_) => return true,
        }
        match file.try_lock() {
            Ok(()) => {
                let _ = nix::unistd::unlinkat(
                    dir,
                    id.as_str(),
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                );
                false
            }
            Err(_) => true,
        }
    });
}

fn drop_privilege(ruid: Uid, rgid: Gid) -> Result<(), String> {
    nix::unistd::setresgid(rgid, rgid, rgid).map_err(|e| format!("setresgid: {e}"))?;
    let g = nix::unistd::getresgid().map_err(|e| format!("getresgid: {e}"))?;
    if g.real != rgid || g.effective != rgid || g.saved != rgid {
        return Err("the group was not dropped".into());
    }
    let u = nix::unistd::getresuid().map_err(|e| format!("getresuid: {e}"))?;
    if u.effective != ruid || u.saved != ruid {
        nix::unistd::setresuid(ruid, ruid, ruid).map_err(|e| format!("setresuid: {e}"))?;
        let u = nix::unistd::getresuid().map_err(|e| format!("getresuid: {e}"))?;
        if u.real != ruid || u.effective != ruid || u.saved != ruid {
            return Err("the user id was not dropped".into());
        }
    }
    Ok(())
}

/// Run the privileged start-up (see the module docs). `learn` is handed the
/// arguments (argv\[0\] first; not valid UTF-8 ones converted lossily, with
/// the flag saying so) before anything is opened and returns what the caller
/// keeps (its parsed command line) and the [`Intent`]. Exits the process
/// with EX_OSERR (71) if the privilege cannot be dropped.
pub fn enter<T>(learn: impl FnOnce(&[String], bool) -> (T, Intent)) -> (Prepared, T) {
    ensure_std_fds();
    ignore_sigpipe();
    let (uids, gids) = match (nix::unistd::getresuid(), nix::unistd::getresgid()) {
        (Ok(u), Ok(g)) => (u, g),
        _ => {
            eprintln!("postern: cannot read the process credentials");
            std::process::exit(71);
        }
    };
    let privileged = gids.effective != gids.real || uids.effective != uids.real;
    if privileged {
        if std::env::var_os("POSTERN_CONFIG").is_some() {
            // Like -C (run.rs), say so rather than ignore it silently.
            eprintln!(
                "postern: warning: POSTERN_CONFIG is ignored by the installed set-group-id binary"
            );
        }
        harden();
    }
    let (args, bad_utf8) = argv();
    let (learned, want) = learn(&args, bad_utf8);
    let mut p = Prepared {
        privileged,
        uid: uids.real.as_raw(),
        gid: gids.real.as_raw(),
        entry: None,
        opener: None,
        maildrop_dir: None,
        trigger: None,
        own_waiting: Vec::new(),
    };
    if privileged {
        let spool = Spool::new(DEFAULT_SPOOL);
        if matches!(
            want,
            Intent::SubmitOne | Intent::SubmitMany | Intent::ListQueue
        ) {
            p.maildrop_dir = Some(maildrop::open_dir(&spool.maildrop()));
        }
        if matches!(want, Intent::SubmitOne | Intent::SubmitMany | Intent::Poke) {
            p.trigger = Some(open_trigger(&spool));
        }
        if let Some(Ok(dir)) = &p.maildrop_dir {
            match want {
                Intent::SubmitOne => p.entry = Some(maildrop::create(dir)),
                Intent::SubmitMany => p.opener = Some(spawn_opener(dir)),
                Intent::ListQueue => {
                    p.own_waiting = maildrop::open_own_ready(dir, uids.real.as_raw())
                }
                _ => {}
            }
        }
        if let Err(e) = drop_privilege(uids.real, gids.real) {
            eprintln!("postern: cannot drop privileges: {e}");
            std::process::exit(71);
        }
    }
    (p, learned)
}

/// Open the daemon's trigger FIFO for writing without blocking, without
/// privilege (the daemon's own side). ENXIO means no daemon reads it.
pub fn open_trigger_unprivileged(spool: &Spool) -> io::Result<File> {
    open_trigger(spool)
}

impl Prepared {
    /// The daemon's trigger FIFO: the one opened before the drop, or (an
    /// unprivileged process) opened now. None when no daemon reads it.
    pub fn take_trigger(&mut self, spool: &Spool) -> Option<File> {
        match self.trigger.take() {
            Some(r) => r.ok(),
            None if !self.privileged => open_trigger(spool).ok(),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::maildrop::OpenEntry;

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn helper_bounds_unfinished_entries_and_removes_abandoned_ones() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = maildrop::open_dir(tmp.path()).expect("dir");
        let opener = spawn_opener(&dir).expect("helper");
        let mut held = Vec::new();
        for _ in 0..MAX_OUTSTANDING {
            held.push(opener.open_entry().expect("entry"));
        }
        let e = opener.open_entry().expect_err("past the bound");
        assert!(e.to_string().contains("too many unfinished"), "{e}");
        assert_eq!(names(tmp.path()).len(), MAX_OUTSTANDING);
        // A writer that fails lets go of its entry: the next request
        // removes it and is served.
        let (gone, file) = held.pop().expect("one");
        drop(file);
        let (_new, _f) = opener.open_entry().expect("entry after one was abandoned");
        assert!(
            !names(tmp.path()).contains(&gone),
            "abandoned entry still there"
        );
        assert_eq!(names(tmp.path()).len(), MAX_OUTSTANDING);
        // Many failed messages in a row never pile up.
        drop(_f);
        for _ in 0..50 {
            let (_, f) = opener.open_entry().expect("entry");
            drop(f);
        }
        assert_eq!(names(tmp.path()).len(), MAX_OUTSTANDING);
        // The session ends: what it left unfinished (and unlocked) goes.
        drop(held);
        drop(opener);
        let start = std::time::Instant::now();
        while !names(tmp.path()).is_empty() && start.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(names(tmp.path()).is_empty(), "{:?}", names(tmp.path()));
    }
}
