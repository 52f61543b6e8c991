//! Put a message the daemon made itself (a bounce, a delay warning)
//! straight into `queue/`, durably: the same entry format and the same
//! commit as a submission (length header proving the file whole, ready
//! mode, fsync of file and directory), then its initial delivery state.
//! A failure at any step removes the partial entry.

use super::{Spool, format, maildrop, queue};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

/// Queue a new message. `write_message` writes the message bytes and
/// returns their length; `envelope` describes it (its `id` is set here to
/// the new queue id). Returns the new id once the entry and its state are
/// on disk.
pub fn enqueue(
    spool: &Spool,
    mut envelope: format::Envelope,
    write_message: impl FnOnce(&mut dyn Write) -> io::Result<u64>,
) -> io::Result<String> {
    let dir = maildrop::open_dir(&spool.queue())?;
    // A new id, unique in queue/.
    let (new_id, file) = maildrop::create(&dir)?;
    let path = spool.queue().join(&new_id);
    envelope.id = new_id.clone();
    let result = (|| -> io::Result<()> {
        let mut w = io::BufWriter::with_capacity(64 * 1024, &file);
        w.write_all(format::header(0).as_bytes())?;
        let len = write_message(&mut w)?;
        let text = format::encode_envelope(&envelope).map_err(|e| io::Error::other(e.0))?;
        w.write_all(text.as_bytes())?;
        w.flush()?;
        drop(w);
        file.write_all_at(format::header(len).as_bytes(), 0)?;
        nix::sys::stat::fchmod(
            &file,
            nix::sys::stat::Mode::from_bits_truncate(maildrop::MODE_READY),
        )
        .map_err(io::Error::from)?;
        file.sync_all()?;
        dir.sync_all()?;
        let st = queue::initial_state(&envelope, len, envelope.uid);
        queue::save_state(spool, &st, false)?;
        Ok(())
    })();
    let _ = file.unlock();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(new_id)
}
