//! Every fsync and rename sequence of the spool lives here.
//!
//! `write_atomic` replaces a file whole: write a temporary file in `tmp/`,
//! fsync it, rename it over the target, fsync the target directory. A crash
//! at any instant leaves either the old file or the new one, never a mix.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// One bounded read of a small regular file that anyone may have tried to
/// replace (no symlink followed, no FIFO waited on): None when it is absent,
/// not a regular file, longer than `max` bytes or unreadable.
pub fn read_small(path: &Path, max: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    match f.metadata() {
        Ok(m) if m.is_file() && m.len() <= max as u64 => {}
        _ => return None,
    }
    let mut buf = Vec::with_capacity(1024.min(max));
    f.take(max as u64 + 1).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// fsync a directory so that names created or removed in it are durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replace `target` with `bytes` atomically, using `tmp_dir` (same file
/// system) for the temporary file. `durable` adds the fsyncs; without it the
/// replacement is still atomic but may be lost in a crash (for derived data).
pub fn write_atomic(
    tmp_dir: &Path,
    target: &Path,
    bytes: &[u8],
    mode: u32,
    durable: bool,
) -> std::io::Result<()> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = tmp_dir.join(format!("{name}.{}.{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        // Explicit: the service may run with UMask=0077.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, target)?;
        if durable && let Some(dir) = target.parent() {
            fsync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Move `from` to `to` (same file system), then make both directories durable
/// when `durable`.
pub fn rename(from: &Path, to: &Path, durable: bool) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    if durable {
        if let Some(d) = to.parent() {
            fsync_dir(d)?;
        }
        if let Some(d) = from.parent() {
            fsync_dir(d)?;
        }
    }
    Ok(())
}
