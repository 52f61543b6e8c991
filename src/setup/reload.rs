//! Telling the running daemon to read the new configuration: `systemctl
//! reload postern` when systemd runs it, else SIGHUP to the process that
//! holds the spool's run lock (found in /proc/locks), else what to do.

use crate::spool::Spool;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

fn systemd_runs_postern() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
        && Command::new("systemctl")
            .args(["is-active", "--quiet", "postern"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// The pid holding the flock on `spool`'s run lock, from /proc/locks
/// (`1: FLOCK  ADVISORY  WRITE 1234 08:01:131090 0 EOF`).
pub fn lock_holder(spool: &Spool) -> Option<i32> {
    let md = std::fs::metadata(spool.run_lock()).ok()?;
    let (maj, min) = (
        nix::sys::stat::major(md.dev()),
        nix::sys::stat::minor(md.dev()),
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(&locks, maj, min, md.ino())
}

fn holder_in(locks: &str, maj: u64, min: u64, ino: u64) -> Option<i32> {
    for line in locks.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] == "->" || f[1] != "FLOCK" {
            continue;
        }
        let mut dev = f[5].split(':');
        let (Some(a), Some(b), Some(i)) = (dev.next(), dev.next(), dev.next()) else {
            continue;
        };
        if u64::from_str_radix(a, 16).ok() == Some(maj)
            && u64::from_str_radix(b, 16).ok() == Some(min)
            && i.parse::<u64>().ok() == Some(ino)
        {
            return f[4].parse().ok();
        }
    }
    None
}

/// Reload the daemon that serves `spool`; says what happened.
/// `system`: the installed configuration (systemd's postern.service).
pub fn reload(system: bool, spool: &Spool) -> String {
    if system && systemd_runs_postern() {
        let ok = Command::new("systemctl")
            .args(["reload", "postern"])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        return if ok {
            "Reloaded postern.service.".into()
        } else {
            "systemctl reload postern failed: run it yourself (journalctl -u postern says why)."
                .into()
        };
    }
    if spool.daemon_running() {
        return match lock_holder(spool) {
            Some(pid) => {
                use nix::sys::signal::{Signal, kill};
                match kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP) {
                    Ok(()) => format!("Asked the daemon (pid {pid}) to reload (SIGHUP)."),
                    Err(e) => format!(
                        "Could not signal the daemon (pid {pid}: {e}); reload it: systemctl reload postern, or kill -HUP {pid}."
                    ),
                }
            }
            None => "A daemon is running: reload it (systemctl reload postern, or send it SIGHUP)."
                .into(),
        };
    }
    "No postern daemon is running: start it (systemctl enable --now postern, or run `postern daemon`); until then mail waits in the queue.".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_holder_is_found_by_device_and_inode() {
        let locks = "1: POSIX  ADVISORY  WRITE 99 fd:01:42 0 EOF\n2: FLOCK  ADVISORY  WRITE 1234 fd:01:42 0 EOF\n2: -> FLOCK  ADVISORY  WRITE 777 fd:01:42 0 EOF\n";
        assert_eq!(holder_in(locks, 0xfd, 1, 42), Some(1234));
        assert_eq!(holder_in(locks, 0xfd, 1, 43), None);
    }
}
