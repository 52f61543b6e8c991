//! Who is asking: the caller's credentials and what the front end opened
//! for it before the privilege drop ([`Caller`]), and what that caller may
//! do to the queue (`Authority`): write it directly, or ask the daemon
//! through a request entry.

use crate::spool::{Spool, queue};
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;

/// The caller of an admin command, as the front end prepared it.
#[derive(Debug)]
pub struct Caller {
    /// True when the process started with more privilege than its caller
    /// (the installed set-group-id binary).
    pub privileged: bool,
    /// The caller's uid.
    pub uid: u32,
    /// The caller's gid.
    pub gid: u32,
    /// A maildrop entry opened before the drop (for a request).
    pub entry: Option<io::Result<(String, File)>>,
    /// The maildrop directory opened before the drop.
    pub maildrop_dir: Option<io::Result<File>>,
    /// The trigger FIFO opened before the drop, if a daemon is reading it.
    pub trigger: Option<io::Result<File>>,
}

impl Caller {
    /// The daemon's trigger FIFO: the one opened before the drop, or (an
    /// unprivileged process) opened now. None when no daemon reads it.
    pub fn take_trigger(&mut self, spool: &Spool) -> Option<File> {
        match self.trigger.take() {
            Some(r) => r.ok(),
            None if !self.privileged => spool.open_trigger().ok(),
            None => None,
        }
    }

    /// The names waiting in maildrop (through the directory opened before
    /// the drop when there is one).
    pub fn incoming(&mut self, spool: &Spool) -> Vec<String> {
        match self.maildrop_dir.take() {
            Some(Ok(dir)) => crate::spool::maildrop::names(dir),
            _ => queue::list_ids(&spool.maildrop()).unwrap_or_default(),
        }
    }
}

/// How a caller's change is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Authority {
    /// Writes the queue itself.
    Direct,
    /// May do anything, through the daemon.
    GroupRequest,
    /// May delete their own messages, through the daemon.
    Owner,
}

pub(crate) fn spool_owner(spool: &Spool) -> Option<u32> {
    std::fs::metadata(spool.root()).ok().map(|m| m.uid())
}

fn postern_gid() -> Option<u32> {
    nix::unistd::Group::from_name("postern")
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// Is this process's caller in group `postern` (primary or supplementary)?
pub(crate) fn caller_in_group(p: &Caller) -> bool {
    let Some(g) = postern_gid() else {
        return false;
    };
    p.gid == g
        || nix::unistd::getgroups()
            .map(|v| v.iter().any(|x| x.as_raw() == g))
            .unwrap_or(false)
}

/// Is `uid` (a requester) in group `postern`, per the group database?
pub(crate) fn uid_in_group(uid: u32) -> bool {
    let Some(g) = postern_gid() else {
        return false;
    };
    let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) else {
        return false;
    };
    if u.gid.as_raw() == g {
        return true;
    }
    let Ok(name) = std::ffi::CString::new(u.name) else {
        return false;
    };
    nix::unistd::getgrouplist(&name, u.gid)
        .map(|v| v.iter().any(|x| x.as_raw() == g))
        .unwrap_or(false)
}

pub(crate) fn authority(p: &Caller, spool: &Spool) -> Authority {
    if p.uid == 0 || spool_owner(spool) == Some(p.uid) {
        return Authority::Direct;
    }
    if caller_in_group(p) {
        return if p.privileged {
            Authority::GroupRequest
        } else {
            Authority::Direct
        };
    }
    Authority::Owner
}

pub(crate) fn may_deliver(p: &Caller) -> bool {
    !p.privileged || p.uid == 0
}

pub(crate) fn may_read_body(p: &Caller, spool: &Spool) -> bool {
    p.uid == 0 || (!p.privileged && spool_owner(spool) == Some(p.uid))
}
