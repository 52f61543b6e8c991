//! What is local to this host, and where a local name goes when no alias
//! says otherwise. Shared by alias expansion ([`super::aliases`]) and
//! routing ([`super::route`]); it imports neither, so the dependency runs
//! one way: `local` ← `aliases` ← `route`.
//!
//! The rule for a local name that no alias maps further (a "terminal"):
//! `addresses.local_recipient` when set (`%u` is the name; for any local
//! name, an account or not), else `name@domain`. With
//! `addresses.unknown_local = "reject"` a name that is neither an account
//! nor `root`/`postmaster`/`MAILER-DAEMON` is refused instead (sendmail's
//! "User unknown").

use crate::config::{Config, UnknownLocal};

/// Split `local@domain` (the last `@` outside quotes).
pub fn split(addr: &str) -> (&str, Option<&str>) {
    let mut in_quote = false;
    let mut at = None;
    for (i, c) in addr.char_indices() {
        match c {
            '"' => in_quote = !in_quote,
            '@' if !in_quote => at = Some(i),
            _ => {}
        }
    }
    match at {
        Some(i) => (&addr[..i], Some(&addr[i + 1..])),
        None => (addr, None),
    }
}

/// True when `addr` is local to this host: no `@`, or a domain of this
/// host (hostname, `localhost`, a `local_domains` entry).
pub fn is_local(cfg: &Config, addr: &str) -> bool {
    match split(addr).1 {
        None => true,
        Some(d) => cfg.is_local_domain(d),
    }
}

/// The local part of `addr` when it is local, for alias lookups.
pub fn local_name(cfg: &Config, addr: &str) -> Option<String> {
    is_local(cfg, addr).then(|| split(addr).0.to_string())
}

/// The address mail for local name `user` goes to.
pub fn local_target(cfg: &Config, user: &str) -> String {
    match &cfg.addresses.local_recipient {
        Some(p) if p.contains("%u") => p.replace("%u", user),
        Some(p) => p.clone(),
        None => format!("{user}@{}", cfg.domain),
    }
}

/// True when `user` is an account on this host or one of the names that
/// always exist (`root`, `postmaster`, `MAILER-DAEMON`).
pub fn is_known_user(user: &str) -> bool {
    let lower = user.to_ascii_lowercase();
    matches!(lower.as_str(), "root" | "postmaster" | "mailer-daemon")
        || nix::unistd::User::from_name(user).ok().flatten().is_some()
}

/// Where a local name with no (further) alias goes, or why it cannot go
/// anywhere (only with `unknown_local = "reject"`).
pub fn terminal(cfg: &Config, user: &str) -> Result<String, String> {
    match cfg.addresses.unknown_local {
        UnknownLocal::Qualify => Ok(local_target(cfg, user)),
        UnknownLocal::Reject if is_known_user(user) => Ok(local_target(cfg, user)),
        UnknownLocal::Reject => Err(format!(
            "unknown local user {user:?} (no alias and no such account; unknown_local = \"reject\")"
        )),
    }
}
