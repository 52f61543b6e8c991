//! The outbound guard's suppression list as an admin sees it:
//! `postern queue suppressed [--json]` lists the recipients that got a
//! permanent 5.1.x failure and are bounced locally until their time is up;
//! `postern queue unsuppress ADDRESS|ALL` takes one (or all) off the list.
//! Listing reads the world-readable `<spool>/guard`; clearing is for whoever
//! may change the queue directly (root, who becomes the spool owner, or the
//! spool owner), under the guard's lock.

use super::caller::{Authority, Caller, authority};
use crate::clock;
use crate::config::Config;
use crate::error::{Error, Kind, Result};
use crate::spool::Spool;
use std::fmt::Write as _;

/// `postern queue suppressed`.
pub fn list_suppressed(cfg: &Config, json: bool) -> Result<u8> {
    let spool = Spool::new(&cfg.spool_dir);
    let now = clock::unix_f64(clock::now());
    let g = crate::spool::guard::load(&spool);
    let live: Vec<_> = g.suppressed.iter().filter(|s| now < s.until).collect();
    let mut o = String::new();
    if json {
        for s in &live {
            let _ = writeln!(
                o,
                "{}",
                crate::mailq::to_json(&serde_json::json!({
                    "address": s.address,
                    "until": s.until as u64,
                    "reason": s.reason,
                }))
            );
        }
        crate::stdout::text(format_args!("{o}"));
        return Ok(0);
    }
    if live.is_empty() {
        crate::stdout::line(format_args!("no suppressed recipients"));
        return Ok(0);
    }
    for s in &live {
        let _ = writeln!(
            o,
            "{}  until {}  ({})",
            s.address,
            clock::iso8601(clock::from_unix_f64(s.until)),
            s.reason
        );
    }
    let _ = writeln!(o, "-- {} suppressed recipient(s)", live.len());
    crate::stdout::text(format_args!("{}", crate::escape::text(&o)));
    Ok(0)
}

/// `postern queue unsuppress ADDRESS|ALL`.
pub fn unsuppress(cfg: &Config, p: &mut Caller, what: &str) -> Result<u8> {
    let spool = Spool::new(&cfg.spool_dir);
    super::requests::discard_entry(p);
    if authority(p, &spool) != Authority::Direct {
        return Err(Error::new(
            Kind::NoPerm,
            "only root and the spool owner may change the suppression list",
        ));
    }
    crate::daemon::become_spool_owner(&spool)?;
    let all = what.eq_ignore_ascii_case("ALL");
    let want = what.to_lowercase();
    let removed = crate::spool::guard::update(&spool, |g| {
        let before = g.suppressed.len();
        g.suppressed.retain(|s| !all && s.address != want);
        before - g.suppressed.len()
    })
    .map_err(|e| Error::io(Kind::TempFail, "cannot change the suppression list", &e))?;
    if removed == 0 && !all {
        return Err(Error::new(
            Kind::NoInput,
            format!("{}: not suppressed", crate::escape::field(what)),
        ));
    }
    log::info!(
        "suppression list: {removed} recipient(s) removed by uid {} ({})",
        p.uid,
        crate::escape::field(what)
    );
    crate::stdout::line(format_args!(
        "{removed} recipient(s) taken off the suppression list"
    ));
    Ok(0)
}
