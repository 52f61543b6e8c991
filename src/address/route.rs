//! Where a recipient goes: local names through aliases to the configured
//! local recipient, remote addresses unchanged.
//!
//! A local recipient has no `@`, or its domain is this host (hostname,
//! `localhost`, a `local_domains` entry). It resolves through the aliases
//! file; what is left (a local user, or `root`, `postmaster`,
//! `MAILER-DAEMON`, which work with no aliases file at all) goes to
//! `addresses.local_recipient` (`%u` is replaced by the user name), or to
//! `user@domain` when that is unset. A local name that is neither an alias
//! nor an account resolves nowhere. Resolution happens at delivery time
//! (config and aliases changes apply to queued mail), at submission to
//! reject a local name that resolves nowhere (exit 67), and in `-bv`.

use super::aliases::{self, Expansion};
use crate::config::Config;

/// Why a recipient cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError(pub String);

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

/// True when `addr` is local to this host.
pub fn is_local(cfg: &Config, addr: &str) -> bool {
    match split(addr).1 {
        None => true,
        Some(d) => cfg.is_local_domain(d),
    }
}

/// The address mail for local user `user` goes to.
pub fn local_target(cfg: &Config, user: &str) -> String {
    match &cfg.addresses.local_recipient {
        Some(p) if p.contains("%u") => p.replace("%u", user),
        Some(p) => p.clone(),
        None => format!("{user}@{}", cfg.domain),
    }
}

fn terminal(cfg: &Config, user: &str) -> Result<String, String> {
    let lower = user.to_ascii_lowercase();
    let known = matches!(lower.as_str(), "root" | "postmaster" | "mailer-daemon")
        || nix::unistd::User::from_name(user).ok().flatten().is_some();
    if known {
        Ok(local_target(cfg, user))
    } else {
        Err(format!(
            "unknown local user {user:?} (no alias and no such account)"
        ))
    }
}

/// Expand `addr` fully: final addresses and failed targets.
pub fn expand(cfg: &Config, addr: &str) -> Vec<Expansion> {
    if !is_local(cfg, addr) {
        return vec![Expansion::Address(addr.to_string())];
    }
    let table = aliases::load(&cfg.addresses.aliases_file);
    let is_local_fn = |a: &str| is_local(cfg, a).then(|| split(a).0.to_string());
    let terminal_fn = |u: &str| terminal(cfg, u);
    aliases::expand(&table, split(addr).0, &is_local_fn, &terminal_fn)
}

/// Resolve one envelope recipient: the addresses to deliver to, and the
/// targets that failed (each with its reason).
pub fn resolve(cfg: &Config, addr: &str) -> (Vec<String>, Vec<(String, RouteError)>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for e in expand(cfg, addr) {
        match e {
            Expansion::Address(a) => {
                if !ok.contains(&a) {
                    ok.push(a)
                }
            }
            Expansion::Failed(t, why) => failed.push((t, RouteError(why))),
        }
    }
    (ok, failed)
}
