//! An append-only file that stays open between lines: the log file
//! (`log = "/path"`) and the spool's `events.log`.
//!
//! Opening, writing and closing the file for every line cost three system
//! calls (four with the size check) per line, and a delivery writes four
//! lines. The file is kept open instead, and before each line one `stat`
//! of the path tells whether it is still the file held open: when it was
//! renamed (logrotate, or `events.log` rotated by another process) or
//! removed, the path is opened afresh, so no line goes to a file nobody
//! reads. The same `stat` gives the size for a caller that rotates.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

/// One append-only file, opened on first use and reopened when its path
/// names another file.
#[derive(Debug)]
pub struct Appender {
    path: PathBuf,
    /// Mode of a file this creates (set explicitly: umask does not apply).
    mode: Option<u32>,
    /// The file held open, with its device and inode.
    open: Option<(File, u64, u64)>,
}

impl Appender {
    /// Append to `path`; a file it creates gets `mode` when given (else the
    /// umask's default).
    pub fn new(path: PathBuf, mode: Option<u32>) -> Appender {
        Appender {
            path,
            mode,
            open: None,
        }
    }

    /// Append `line` (one `write`). Before it, the path is checked: a
    /// missing file is created, a replaced one reopened.
    pub fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.write_rotating(line, None)
    }

    /// Append `line`; first, when the file at the path is larger than
    /// `rotate_past` bytes, rename it to `PATH.1` (replacing the previous
    /// generation) and start a new one. One `stat` serves both checks.
    pub fn write_rotating(&mut self, line: &[u8], rotate_past: Option<u64>) -> std::io::Result<()> {
        let mut current = std::fs::metadata(&self.path).ok();
        if let (Some(m), Some(max)) = (&current, rotate_past)
            && m.len() > max
        {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            // A failed rename (another process rotated first) keeps writing
            // to whatever the path names now.
            if std::fs::rename(&self.path, old).is_ok() {
                current = None;
            }
        }
        let same = match (&self.open, &current) {
            (Some((_, dev, ino)), Some(m)) => m.dev() == *dev && m.ino() == *ino,
            _ => false,
        };
        if !same {
            self.open = None;
            let f = self.open_file()?;
            let m = f.metadata()?;
            self.open = Some((f, m.dev(), m.ino()));
        }
        match self.open.as_mut() {
            Some((f, _, _)) => f.write_all(line),
            None => Ok(()),
        }
    }

    fn open_file(&self) -> std::io::Result<File> {
        let mut o = std::fs::OpenOptions::new();
        o.create(true).append(true).custom_flags(libc::O_CLOEXEC);
        if let Some(mode) = self.mode {
            o.mode(mode);
        }
        let f = o.open(&self.path)?;
        if let Some(mode) = self.mode
            && f.metadata()?.permissions().mode() & 0o7777 != mode
        {
            // Explicit: the service runs with UMask=0077.
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("postern-appender-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("tmp dir");
        d
    }

    #[test]
    fn lines_follow_the_path_across_rename_and_removal() {
        let d = tmp("rot");
        let p = d.join("events.log");
        let mut a = Appender::new(p.clone(), Some(0o640));
        a.write(b"one\n").expect("write");
        a.write(b"two\n").expect("write");
        let mode = std::fs::metadata(&p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        // Rotated by someone else: the next line starts the new file.
        std::fs::rename(&p, d.join("events.log.1")).expect("rename");
        a.write(b"three\n").expect("write");
        // Removed: recreated.
        std::fs::remove_file(d.join("events.log.1")).expect("rm");
        a.write(b"four\n").expect("write");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "three\nfour\n");
        std::fs::remove_file(&p).expect("rm");
        a.write(b"five\n").expect("write");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "five\n");
        assert_eq!(std::fs::metadata(&p).expect("stat").len(), 5);
        // Past the limit, the file moves to .1 before the line.
        a.write_rotating(b"six\n", Some(5)).expect("write");
        a.write_rotating(b"seven\n", Some(5)).expect("write");
        assert_eq!(
            std::fs::read_to_string(d.join("events.log.1")).expect("read"),
            "five\nsix\n"
        );
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "seven\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn another_writer_interleaves_whole_lines() {
        let d = tmp("two");
        let p = d.join("postern.log");
        let mut a = Appender::new(p.clone(), None);
        let mut b = Appender::new(p.clone(), None);
        for i in 0..3 {
            a.write(format!("a{i}\n").as_bytes()).expect("write");
            b.write(format!("b{i}\n").as_bytes()).expect("write");
        }
        assert_eq!(
            std::fs::read_to_string(&p).expect("read"),
            "a0\nb0\na1\nb1\na2\nb2\n"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
