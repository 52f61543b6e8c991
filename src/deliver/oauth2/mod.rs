//! OAuth2 access tokens for relays with `[relay.oauth2]` (issue 13 §1):
//! the client credentials grant (Microsoft 365 app-only) and the refresh
//! token grant (Google, delegated Microsoft), the token cache (memory, and
//! the file of [`cache`] so a restart does not fetch again), refresh before
//! expiry, and the saving of a rotated refresh token.
//!
//! Delivery asks [`token`] for the SASL secret (XOAUTH2 / OAUTHBEARER, see
//! `smtp::conn`); when the relay refuses a cached token with 535 it asks
//! again with `fresh = true`, once. Daemon side only: nothing here is
//! reached from the submission path. Errors name their cause (the OAuth2
//! error code, Microsoft's `AADSTS…`) and never hold a secret or token.

pub mod cache;
pub mod endpoint;
pub mod http;

use crate::config::{Flow, OAuth2, Relay};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// A token is refreshed when less than this remains (or half its life,
/// when that is shorter).
const MARGIN_SECS: u64 = 300;

/// An access token and where it came from.
#[derive(Debug, Clone)]
pub struct Token {
    /// The bearer token (a secret: never log it).
    pub access_token: String,
    /// True when it came from a cache (memory or file), false when the
    /// endpoint just issued it. Only a cached token is worth a retry.
    pub cached: bool,
}

/// Tokens issued in this process, by cache file path.
static MEMORY: Mutex<Option<HashMap<std::path::PathBuf, cache::Entry>>> = Mutex::new(None);

fn now() -> u64 {
    crate::clock::unix_secs(crate::clock::now())
}

/// Does `e` belong to these settings and is it still good at `t`?
fn usable(e: &cache::Entry, o: &OAuth2, user: &str, t: u64) -> bool {
    matches(e, o, user) && !e.access_token.is_empty() && e.expires_at > t + MARGIN_SECS
}

fn matches(e: &cache::Entry, o: &OAuth2, user: &str) -> bool {
    e.token_url == o.token_url && e.client_id == o.client_id && e.scope == o.scope && e.user == user
}

/// The access token for `relay` (which must have `[relay.oauth2]` and a
/// username): a cached one that is not about to expire, unless `fresh`;
/// else one from the token endpoint, cached in memory and in the spool.
/// Err: one line naming the cause, for the log, `check` and `status`.
pub fn token(spool_dir: &Path, relay: &Relay, fresh: bool) -> Result<Token, String> {
    let (Some(o), Some(user)) = (&relay.oauth2, &relay.username) else {
        return Err(format!("relay {}: no [relay.oauth2]", relay.host));
    };
    let path = cache::path(spool_dir, &relay.host, user);
    let t = now();
    let mut memory = MEMORY.lock().unwrap_or_else(|p| p.into_inner());
    let memory = memory.get_or_insert_with(HashMap::new);
    let in_memory = memory.get(&path).filter(|e| matches(e, o, user)).cloned();
    if !fresh
        && let Some(e) = &in_memory
        && usable(e, o, user, t)
    {
        return Ok(Token {
            access_token: e.access_token.clone(),
            cached: true,
        });
    }
    // The file may be newer than our memory: another process (`postern
    // check`, a queue run) may have refreshed, or rotated the refresh token.
    let stored = cache::read(&path)
        .filter(|e| matches(e, o, user))
        .or(in_memory);
    if !fresh
        && let Some(e) = &stored
        && usable(e, o, user, t)
    {
        memory.insert(path.clone(), e.clone());
        return Ok(Token {
            access_token: e.access_token.clone(),
            cached: true,
        });
    }
    let prefix = |why: String| format!("OAuth2 token for {user} at relay {}: {why}", relay.host);
    let secret = match &o.client_secret_file {
        Some(p) => Some(
            crate::deliver::credentials::read_secret_file(relay, "client_secret_file", p)
                .map_err(|e| e.message().to_string())?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let mut form: Vec<(&str, &str)> = vec![("client_id", &o.client_id)];
    if let Some(s) = &secret {
        form.push(("client_secret", s));
    }
    let (file_token, refresh) = match o.flow {
        Flow::ClientCredentials => {
            form.insert(0, ("grant_type", "client_credentials"));
            form.push(("scope", &o.scope));
            (None, None)
        }
        Flow::RefreshToken => {
            let p = o.refresh_token_file.as_deref().unwrap_or(Path::new(""));
            let file =
                crate::deliver::credentials::read_secret_file(relay, "refresh_token_file", p)
                    .map_err(|e| e.message().to_string())?
                    .trim()
                    .to_string();
            let rotated = stored.as_ref().and_then(|e| {
                (e.rotated_from.as_deref() == Some(cache::digest(&file).as_str()))
                    .then(|| e.refresh_token.clone())
                    .flatten()
            });
            let current = rotated.unwrap_or_else(|| file.clone());
            (Some(file), Some(current))
        }
    };
    if let Some(r) = &refresh {
        form.insert(0, ("grant_type", "refresh_token"));
        form.push(("refresh_token", r));
        // Google refuses a scope on refresh that differs in form from the
        // grant; the grant's scope is kept anyway (RFC 6749 §6).
        if o.provider.as_deref() != Some("google") {
            form.push(("scope", &o.scope));
        }
    }
    let obj = endpoint::post(relay, &o.token_url, &form).map_err(|e| prefix(e.text))?;
    let g = endpoint::granted(&obj).map_err(|e| prefix(e.text))?;
    let mut entry = cache::Entry {
        token_url: o.token_url.clone(),
        client_id: o.client_id.clone(),
        scope: o.scope.clone(),
        user: user.clone(),
        access_token: g.access_token.clone(),
        expires_at: t + g.expires_in,
        refresh_token: None,
        rotated_from: None,
    };
    if let (Some(file), Some(used)) = (&file_token, &refresh) {
        let new = g.refresh_token.clone().filter(|n| n != used);
        let rotated = new.clone().or_else(|| (used != file).then(|| used.clone()));
        if let Some(r) = rotated {
            entry.refresh_token = Some(r);
            entry.rotated_from = Some(cache::digest(file));
        }
        if new.is_some() {
            log::info!(
                "OAuth2: the token endpoint rotated the refresh token of {user} at relay {}; saved in {}",
                relay.host,
                path.display()
            );
        }
    }
    // Short-lived tokens are refreshed at half their life.
    if g.expires_in < 2 * MARGIN_SECS {
        entry.expires_at = t + MARGIN_SECS + g.expires_in / 2;
    }
    log::info!(
        "OAuth2: new access token for {user} at relay {} ({} grant, valid {}s)",
        relay.host,
        o.flow.name(),
        g.expires_in
    );
    if let Err(e) = cache::write(spool_dir, &path, &entry) {
        log::warn!(
            "OAuth2: cannot save the token cache {}: {e}{}",
            path.display(),
            if entry.refresh_token.is_some() {
                " (the rotated refresh token is kept in memory only)"
            } else {
                ""
            }
        );
    }
    memory.insert(path, entry);
    Ok(Token {
        access_token: g.access_token,
        cached: false,
    })
}
