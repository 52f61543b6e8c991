//! Where a recipient goes: local names through aliases to the configured
//! local recipient, remote addresses unchanged.
//!
//! A local recipient has no `@`, or its domain is this host (hostname,
//! `localhost`, a `local_domains` entry). It resolves through the aliases
//! file; what is left (a local user, or `root`, `postmaster`,
//! `MAILER-DAEMON`, which work with no aliases file at all, or any other
//! name) goes to `addresses.local_recipient` (`%u` is replaced by the
//! name), or to `name@domain` when that is unset — the rule lives in
//! [`super::local`]. With `addresses.unknown_local = "reject"` a local name
//! that is neither an alias nor an account resolves nowhere. Resolution
//! happens at delivery time (config and aliases changes apply to queued
//! mail), at submission (a local name that resolves nowhere is refused,
//! exit 67), and in `-bv`.

use super::aliases::{self, Expansion};
pub use super::local::{is_local, local_target, split};
use crate::config::Config;

/// Why a recipient cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError(pub String);

/// Expand `addr` fully: final addresses and failed targets.
pub fn expand(cfg: &Config, addr: &str) -> Vec<Expansion> {
    if !is_local(cfg, addr) {
        return vec![Expansion::Address(addr.to_string())];
    }
    let table = aliases::load(&cfg.addresses.aliases_file);
    let is_local_fn = |a: &str| super::local::local_name(cfg, a);
    let terminal_fn = |u: &str| super::local::terminal(cfg, u);
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
