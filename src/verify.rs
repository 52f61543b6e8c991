//! `sendmail -bv ADDRESS…`: how each recipient would be routed, without
//! delivering anything. One line per final address, in sendmail's shape:
//!
//! ```text
//! root... deliverable: mailer esmtp, host smtp.sendgrid.net:587, user ops@example.com
//! web... undeliverable: |/usr/bin/cmd: pipe targets are not supported (Postern only relays)
//! ```
//! The host is the first relay serving the envelope sender (`-f`, else the
//! caller's `user@domain`, as rewritten for the wire): with per-sender
//! relays (`senders` in `[[relay]]`) the line names the sender, its relays
//! in order and why (the pattern, or the default relays); a sender no relay
//! serves is reported as such (the message would stay queued, deferred).
//! Exit status 0 when every address is deliverable, 67 otherwise.
//!
//! A service (it reports on the address and the delivery modules), not part
//! of `address`, which `deliver` itself uses.

use crate::address::parse::parse_single_address;
use crate::address::{rewrite, route};
use crate::config::Config;
use crate::deliver::sender_relays;
use crate::error::{Error, Kind, Result};

/// The relay part of a `-bv` line for a message from `sender` (as given,
/// "" = null sender) to `rcpt`: Ok(`host …`), or Err(why none serves it).
fn relay_text(cfg: &Config, sender: &str, rcpt: &str) -> std::result::Result<String, String> {
    let Some(first) = cfg.relays.first() else {
        return Ok("host (no relay configured: mail would stay queued)".into());
    };
    if !sender_relays::per_sender(&cfg.relays) {
        return Ok(format!("host {}", first.label()));
    }
    let wire = rewrite::sender_on_wire(cfg, sender);
    let bounce_to = rewrite::sender_on_wire(cfg, rcpt);
    let g = sender_relays::group(&cfg.relays, &wire, Some(&bounce_to));
    let Some(&idx) = g.relays.first() else {
        return Err(sender_relays::no_relay_reason(&wire));
    };
    let mut s = format!("host {}", cfg.relays[idx].label());
    if g.relays.len() > 1 {
        let rest: Vec<String> = g.relays[1..]
            .iter()
            .map(|&i| cfg.relays[i].label())
            .collect();
        s.push_str(&format!(" (then {})", rest.join(", ")));
    }
    s.push_str(&format!(", sender <{wire}> via {}", g.reason()));
    Ok(s)
}

/// Print the routing of `addrs` for a message from `sender` (qualified;
/// "" = null sender); returns the exit code.
pub fn verify(cfg: &Config, addrs: &[String], sender: &str) -> Result<u8> {
    if addrs.is_empty() {
        return Err(Error::new(Kind::Usage, "-bv needs at least one address"));
    }
    let mut all_ok = true;
    for raw in addrs {
        let addr = match parse_single_address(raw) {
            Ok(a) => a,
            Err(e) => {
                crate::stdout::line(format_args!("{raw}... undeliverable: bad address: {e}"));
                all_ok = false;
                continue;
            }
        };
        let (ok, failed) = route::resolve(cfg, &addr);
        for a in &ok {
            match relay_text(cfg, sender, a) {
                Ok(host) => crate::stdout::line(format_args!(
                    "{raw}... deliverable: mailer esmtp, {}, user {a}",
                    crate::escape::field(&host)
                )),
                Err(why) => {
                    all_ok = false;
                    crate::stdout::line(format_args!(
                        "{raw}... undeliverable: user {a}: {}",
                        crate::escape::field(&why)
                    ));
                }
            }
        }
        for (t, why) in &failed {
            all_ok = false;
            if t == &addr || route::split(&addr).0 == t {
                crate::stdout::line(format_args!("{raw}... undeliverable: {}", why.0));
            } else {
                crate::stdout::line(format_args!("{raw}... undeliverable: {t}: {}", why.0));
            }
        }
    }
    Ok(if all_ok { 0 } else { Kind::NoUser.exit_code() })
}
