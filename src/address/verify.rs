//! `sendmail -bv ADDRESS…`: how each recipient would be routed, without
//! delivering anything. One line per final address, in sendmail's shape:
//!
//! ```text
//! root... deliverable: mailer esmtp, host smtp.sendgrid.net:587, user ops@example.com
//! web... undeliverable: |/usr/bin/cmd: pipe targets are not supported (Postern only relays)
//! ```
//! Exit status 0 when every address is deliverable, 67 otherwise.

use super::parse::parse_single_address;
use super::route;
use crate::config::Config;
use crate::error::{Error, Kind, Result};

/// Print the routing of `addrs`; returns the exit code.
pub fn verify(cfg: &Config, addrs: &[String]) -> Result<u8> {
    if addrs.is_empty() {
        return Err(Error::new(Kind::Usage, "-bv needs at least one address"));
    }
    let host = match cfg.relays.first() {
        Some(r) => r.label(),
        None => "(no relay configured: mail would stay queued)".into(),
    };
    let mut all_ok = true;
    for raw in addrs {
        let addr = match parse_single_address(raw) {
            Ok(a) => a,
            Err(e) => {
                println!("{raw}... undeliverable: bad address: {e}");
                all_ok = false;
                continue;
            }
        };
        let (ok, failed) = route::resolve(cfg, &addr);
        for a in &ok {
            println!("{raw}... deliverable: mailer esmtp, host {host}, user {a}");
        }
        for (t, why) in &failed {
            all_ok = false;
            if t == &addr || route::split(&addr).0 == t {
                println!("{raw}... undeliverable: {}", why.0);
            } else {
                println!("{raw}... undeliverable: {t}: {}", why.0);
            }
        }
    }
    Ok(if all_ok { 0 } else { Kind::NoUser.exit_code() })
}
