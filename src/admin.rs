//! Admin commands on queued messages (placeholder: completed with issue 6).

use crate::cli::postern::Command;
use crate::config::Config;
use crate::error::{Error, Kind, Result};
use crate::privilege::Prepared;

/// Run an admin command.
pub fn run(_cfg: &Config, _p: &mut Prepared, cmd: Command) -> Result<u8> {
    Err(Error::new(
        Kind::Software,
        format!("{cmd:?}: not implemented yet"),
    ))
}

/// First bytes of a request entry in maildrop.
pub const REQUEST_MAGIC: &[u8; 16] = b"POSTERN-REQUEST ";

/// Handle a request entry written by user `uid` (placeholder).
pub fn handle_request(_spool: &crate::spool::Spool, _file: &std::fs::File, uid: u32, name: &str) {
    log::warn!("{name}: request from uid {uid} ignored: requests are not implemented yet");
}
