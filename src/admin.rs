//! Admin commands on queued messages (placeholder: completed with issue 6).

use crate::cli::postern::Command;
use crate::config::Config;
use crate::error::{Error, Kind, Result};
use crate::privilege::Prepared;

/// Run an admin command.
pub fn run(_cfg: &Config, _p: &mut Prepared, cmd: Command) -> Result<u8> {
    Err(Error::new(Kind::Software, format!("{cmd:?}: not implemented yet")))
}
