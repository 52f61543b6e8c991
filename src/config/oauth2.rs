//! `[relay.oauth2]`: how a relay's SASL user gets its OAuth2 access token
//! (issue 13 §1). The raw table, the provider presets (`microsoft365`,
//! `google`) that fill the endpoints and scopes, and the checks. The secrets
//! (client secret, refresh token) live in files named here, never in
//! `postern.toml`; the token flows themselves are `deliver::oauth2`.

use serde::Deserialize;
use std::path::PathBuf;

/// Which OAuth2 grant obtains the access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// App-only (Microsoft 365 `SMTP.SendAsApp`): client id and secret.
    ClientCredentials,
    /// Delegated (Google, Microsoft on behalf of a mailbox): a refresh
    /// token obtained once by `postern oauth2 login`.
    RefreshToken,
}

impl Flow {
    /// The name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Flow::ClientCredentials => "client_credentials",
            Flow::RefreshToken => "refresh_token",
        }
    }
}

/// A relay's OAuth2 settings, presets applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2 {
    /// The grant.
    pub flow: Flow,
    /// `microsoft365` or `google` when a preset was used (for hints).
    pub provider: Option<String>,
    /// Token endpoint (HTTPS).
    pub token_url: String,
    /// Device authorization endpoint (RFC 8628), for `oauth2 login`.
    pub device_url: Option<String>,
    /// Authorization endpoint (authorization code + PKCE), for `oauth2 login`.
    pub auth_url: Option<String>,
    /// The application's client id.
    pub client_id: String,
    /// File holding the client secret (first line).
    pub client_secret_file: Option<PathBuf>,
    /// File holding the refresh token (first line).
    pub refresh_token_file: Option<PathBuf>,
    /// Space-separated scopes asked for.
    pub scope: String,
}

/// The raw `[relay.oauth2]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOAuth2 {
    flow: Option<String>,
    provider: Option<String>,
    tenant: Option<String>,
    token_url: Option<String>,
    device_url: Option<String>,
    auth_url: Option<String>,
    client_id: Option<String>,
    client_secret_file: Option<PathBuf>,
    refresh_token_file: Option<PathBuf>,
    scope: Option<String>,
}

/// Microsoft's identity platform (v2.0 endpoints) for `tenant`.
const MS_LOGIN: &str = "https://login.microsoftonline.com";
/// App-only SMTP (SMTP.SendAsApp).
pub const MS_APP_SCOPE: &str = "https://outlook.office365.com/.default";
/// Delegated SMTP, with a refresh token.
pub const MS_DELEGATED_SCOPE: &str = "https://outlook.office.com/SMTP.Send offline_access";
/// App-only Microsoft Graph (`kind = "graph"`: Mail.Send, an application
/// permission).
pub const GRAPH_APP_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Delegated Microsoft Graph, with a refresh token.
pub const GRAPH_DELEGATED_SCOPE: &str = "https://graph.microsoft.com/Mail.Send offline_access";
/// Google's token endpoint.
const GOOGLE_TOKEN: &str = "https://oauth2.googleapis.com/token";
/// Google's authorization endpoint.
const GOOGLE_AUTH: &str = "https://accounts.google.com/o/oauth2/v2/auth";
/// Full Gmail access: the only scope Gmail's SMTP accepts.
pub const GOOGLE_SCOPE: &str = "https://mail.google.com/";

/// Check `[relay.oauth2]` of relay `i` and apply its preset (for a
/// `kind = "graph"` relay when `graph`: the Graph scopes, not SMTP's).
/// Err: (key, why).
pub(super) fn oauth2(i: usize, r: RawOAuth2, graph: bool) -> Result<OAuth2, (String, String)> {
    let key = |k: &str| format!("relay[{i}].oauth2.{k}");
    let bad = |k: &str, why: &str| Err((key(k), why.to_string()));
    let flow = match r.flow.as_deref() {
        Some("client_credentials") => Flow::ClientCredentials,
        Some("refresh_token") => Flow::RefreshToken,
        Some(other) => {
            return Err((
                key("flow"),
                format!("unknown flow {other:?} (client_credentials or refresh_token)"),
            ));
        }
        None => return bad("flow", "missing: client_credentials or refresh_token"),
    };
    let (mut token_url, mut device_url, mut auth_url, mut scope) = (None, None, None, None);
    match r.provider.as_deref() {
        None => {
            if r.tenant.is_some() {
                return bad("tenant", "tenant goes with provider = \"microsoft365\"");
            }
        }
        Some("microsoft365") => {
            let Some(t) = r.tenant.as_deref() else {
                return bad(
                    "tenant",
                    "provider = \"microsoft365\" needs tenant (the directory id or a verified domain, e.g. \"contoso.onmicrosoft.com\")",
                );
            };
            if t.is_empty()
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return bad(
                    "tenant",
                    "not a directory id or domain (letters, digits, '-', '.')",
                );
            }
            let base = format!("{MS_LOGIN}/{t}/oauth2/v2.0");
            token_url = Some(format!("{base}/token"));
            device_url = Some(format!("{base}/devicecode"));
            auth_url = Some(format!("{base}/authorize"));
            scope = Some(match (flow, graph) {
                (Flow::ClientCredentials, false) => MS_APP_SCOPE,
                (Flow::RefreshToken, false) => MS_DELEGATED_SCOPE,
                (Flow::ClientCredentials, true) => GRAPH_APP_SCOPE,
                (Flow::RefreshToken, true) => GRAPH_DELEGATED_SCOPE,
            });
        }
        Some("google") if graph => {
            return bad(
                "provider",
                "kind = \"graph\" is Microsoft Graph: use provider = \"microsoft365\"",
            );
        }
        Some("google") => {
            if flow == Flow::ClientCredentials {
                return bad(
                    "flow",
                    "Gmail's SMTP takes delegated tokens only: use flow = \"refresh_token\" with provider = \"google\"",
                );
            }
            if r.tenant.is_some() {
                return bad("tenant", "tenant goes with provider = \"microsoft365\"");
            }
            token_url = Some(GOOGLE_TOKEN.to_string());
            // Google's device flow does not grant the Gmail scope: login
            // uses the authorization code with a loopback redirect.
            auth_url = Some(GOOGLE_AUTH.to_string());
            scope = Some(GOOGLE_SCOPE);
        }
        Some(other) => {
            return Err((
                key("provider"),
                format!("unknown provider {other:?} (microsoft365 or google)"),
            ));
        }
    }
    let token_url = match r.token_url.or(token_url) {
        Some(u) => https(&key("token_url"), u)?,
        None => return bad("token_url", "missing (or set provider)"),
    };
    let device_url = match r.device_url.or(device_url) {
        Some(u) => Some(https(&key("device_url"), u)?),
        None => None,
    };
    let auth_url = match r.auth_url.or(auth_url) {
        Some(u) => Some(https(&key("auth_url"), u)?),
        None => None,
    };
    let Some(client_id) = r.client_id.filter(|c| !c.trim().is_empty()) else {
        return bad("client_id", "missing: the application (client) id");
    };
    if client_id.chars().any(|c| c.is_control()) {
        return bad("client_id", "must not contain control characters");
    }
    let scope = match r.scope {
        Some(s) => s,
        None => match scope {
            Some(s) => s.to_string(),
            None => return bad("scope", "missing (or set provider)"),
        },
    };
    if scope.trim().is_empty() || scope.chars().any(|c| c.is_control()) {
        return bad("scope", "must be space-separated scopes");
    }
    match flow {
        Flow::ClientCredentials => {
            if r.client_secret_file.is_none() {
                return bad(
                    "client_secret_file",
                    "flow = \"client_credentials\" needs the client secret in client_secret_file",
                );
            }
            if r.refresh_token_file.is_some() {
                return bad(
                    "refresh_token_file",
                    "flow = \"client_credentials\" uses no refresh token",
                );
            }
        }
        Flow::RefreshToken => {
            if r.refresh_token_file.is_none() {
                return bad(
                    "refresh_token_file",
                    "flow = \"refresh_token\" needs refresh_token_file (postern oauth2 login writes it)",
                );
            }
        }
    }
    Ok(OAuth2 {
        flow,
        provider: r.provider,
        token_url,
        device_url,
        auth_url,
        client_id,
        client_secret_file: r.client_secret_file,
        refresh_token_file: r.refresh_token_file,
        scope,
    })
}

/// An endpoint must be an `https://` URL with a host.
fn https(key: &str, u: String) -> Result<String, (String, String)> {
    let rest = u.strip_prefix("https://").unwrap_or("");
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err((
            key.to_string(),
            format!("{u:?} is not an https:// URL (tokens are fetched over HTTPS only)"),
        ));
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(flow: &str) -> RawOAuth2 {
        RawOAuth2 {
            flow: Some(flow.into()),
            provider: None,
            tenant: None,
            token_url: None,
            device_url: None,
            auth_url: None,
            client_id: Some("cid".into()),
            client_secret_file: None,
            refresh_token_file: None,
            scope: None,
        }
    }

    #[test]
    fn microsoft_preset_fills_the_tenant_endpoints_and_app_scope() {
        let mut r = raw("client_credentials");
        r.provider = Some("microsoft365".into());
        r.tenant = Some("contoso.onmicrosoft.com".into());
        r.client_secret_file = Some("/etc/postern/secret".into());
        let o = oauth2(0, r, false).unwrap();
        assert_eq!(
            o.token_url,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(o.scope, MS_APP_SCOPE);
        assert!(o.device_url.unwrap().ends_with("/devicecode"));
    }

    #[test]
    fn graph_relays_get_the_graph_scopes_unless_scope_is_given() {
        let ms = |flow: &str| {
            let mut r = raw(flow);
            r.provider = Some("microsoft365".into());
            r.tenant = Some("contoso.onmicrosoft.com".into());
            r.client_secret_file = Some("/s".into());
            r.refresh_token_file = (flow == "refresh_token").then(|| "/r".into());
            r
        };
        assert_eq!(
            oauth2(0, ms("client_credentials"), true).unwrap().scope,
            GRAPH_APP_SCOPE
        );
        assert_eq!(
            oauth2(0, ms("refresh_token"), true).unwrap().scope,
            GRAPH_DELEGATED_SCOPE
        );
        let mut r = ms("client_credentials");
        r.scope = Some("api://custom/.default".into());
        assert_eq!(oauth2(0, r, true).unwrap().scope, "api://custom/.default");
        let mut r = raw("refresh_token");
        r.provider = Some("google".into());
        r.refresh_token_file = Some("/r".into());
        assert_eq!(
            oauth2(0, r, true).unwrap_err().0,
            "relay[0].oauth2.provider"
        );
    }

    #[test]
    fn bad_tables_name_the_key() {
        let mut r = raw("refresh_token");
        r.provider = Some("microsoft365".into());
        assert_eq!(oauth2(2, r, false).unwrap_err().0, "relay[2].oauth2.tenant");
        let mut r = raw("refresh_token");
        r.provider = Some("google".into());
        assert_eq!(
            oauth2(0, r, false).unwrap_err().0,
            "relay[0].oauth2.refresh_token_file"
        );
        let mut r = raw("client_credentials");
        r.token_url = Some("http://127.0.0.1/token".into());
        r.scope = Some("x".into());
        r.client_secret_file = Some("/s".into());
        assert_eq!(
            oauth2(0, r, false).unwrap_err().0,
            "relay[0].oauth2.token_url"
        );
        let mut r = raw("client_credentials");
        r.provider = Some("google".into());
        assert_eq!(oauth2(0, r, false).unwrap_err().0, "relay[0].oauth2.flow");
    }

    #[test]
    fn google_preset_has_no_device_endpoint() {
        let mut r = raw("refresh_token");
        r.provider = Some("google".into());
        r.refresh_token_file = Some("/r".into());
        let o = oauth2(0, r, false).unwrap();
        assert_eq!(o.scope, GOOGLE_SCOPE);
        assert!(o.device_url.is_none() && o.auth_url.is_some());
    }
}
