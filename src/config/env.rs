//! Configuration from the environment, for containers: `POSTERN_RELAY_HOST`
//! and friends become TOML text that the normal parser and validator read,
//! so every rule of `postern.toml` applies to them.
//!
//! Used only when nothing else is: no `-C`, no `POSTERN_CONFIG`, no file at
//! the default path, at least one of [`VARS`] set, and a process that is not
//! the installed set-group-id binary (which empties its environment first
//! and always reads the compiled-in file: `ConfigSource::System`). The
//! decision is [`super::ConfigSource::unprivileged`].
//!
//! The TOML is built with `toml_edit`, never by pasting raw values into a
//! template, so a value cannot add keys or tables. An error names the
//! variable: `configuration from the environment: POSTERN_RELAY_TLS: ...`
//! (exit 78 like any configuration error).

use super::{Config, SystemNames};
use crate::error::{Error, Kind, Result};
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

/// Every variable read here and the key it sets (`section.key`, the form
/// the parser's messages use, indexes dropped).
pub const VARS: &[(&str, &str)] = &[
    ("POSTERN_HOSTNAME", "hostname"),
    ("POSTERN_DOMAIN", "domain"),
    ("POSTERN_SPOOL", "spool_dir"),
    ("POSTERN_LOG", "log"),
    ("POSTERN_SHUTDOWN_TIMEOUT", "queue.shutdown_timeout"),
    ("POSTERN_RELAY_HOST", "relay.host"),
    ("POSTERN_RELAY_PORT", "relay.port"),
    ("POSTERN_RELAY_TLS", "relay.tls"),
    ("POSTERN_RELAY_USER", "relay.username"),
    ("POSTERN_RELAY_PASSWORD_FILE", "relay.password_file"),
    ("POSTERN_LISTEN", "listen.addresses"),
    ("POSTERN_LISTEN_NETWORKS", "listen.networks"),
    ("POSTERN_LISTEN_USERS_FILE", "listen.users_file"),
    ("POSTERN_LISTEN_TLS_CERT", "listen.tls_cert"),
    ("POSTERN_LISTEN_TLS_KEY", "listen.tls_key"),
];

/// Where `log` goes when `POSTERN_LOG` is not set: a container's log is
/// its standard error.
pub const DEFAULT_LOG: &str = "stderr";

/// What errors say the configuration came from.
const ORIGIN: &str = "configuration from the environment";

/// True when any of [`VARS`] is set (even to an empty or non-UTF-8 value:
/// that is then an error, not a silent fallback to the defaults).
pub fn wanted() -> bool {
    VARS.iter().any(|(v, _)| std::env::var_os(v).is_some())
}

/// One variable's value: None when unset, an error naming it when it is
/// not UTF-8.
fn var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::new(
            Kind::Config,
            format!("{ORIGIN}: {name}: not valid UTF-8"),
        )),
    }
}

/// The configuration the process environment describes.
pub fn load(names: &SystemNames) -> Result<Config> {
    let mut vals = Vec::new();
    for (name, _) in VARS {
        if let Some(v) = var(name)? {
            vals.push((*name, v));
        }
    }
    let text = toml_text(&|n| vals.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()))?;
    parse(&text, names)
}

/// Parse `text` (from [`toml_text`]); errors name the variable.
pub fn parse(text: &str, names: &SystemNames) -> Result<Config> {
    let at = |_line: Option<usize>, key: Option<&str>| match key {
        Some(k) => format!("{ORIGIN}: {}", variable_for(k)),
        None => ORIGIN.to_string(),
    };
    Config::parse_from(text, None, names, &at)
}

/// The variable that sets `key` (`relay[0].tls`, `listen.addresses`), or
/// the family of variables for a whole section.
fn variable_for(key: &str) -> String {
    let plain: String = {
        // relay[0].tls -> relay.tls
        let mut out = String::with_capacity(key.len());
        let mut skip = false;
        for c in key.chars() {
            match c {
                '[' => skip = true,
                ']' => skip = false,
                _ if !skip => out.push(c),
                _ => {}
            }
        }
        out
    };
    if let Some((v, _)) = VARS.iter().find(|(_, k)| *k == plain) {
        return format!("{v} ({key})");
    }
    let section = plain.split('.').next().unwrap_or("");
    match section {
        "relay" => format!("POSTERN_RELAY_* ({key})"),
        "listen" => format!("POSTERN_LISTEN* ({key})"),
        _ => key.to_string(),
    }
}

/// A comma-separated list, blanks trimmed, empty items dropped.
fn list(v: &str) -> Array {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The TOML text for the variables `get` returns (None: unset).
pub fn toml_text(get: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut doc = DocumentMut::new();
    for (var, key) in [
        ("POSTERN_HOSTNAME", "hostname"),
        ("POSTERN_DOMAIN", "domain"),
        ("POSTERN_SPOOL", "spool_dir"),
    ] {
        if let Some(v) = get(var) {
            doc[key] = value(v);
        }
    }
    doc["log"] = value(get("POSTERN_LOG").unwrap_or_else(|| DEFAULT_LOG.into()));
    if let Some(v) = get("POSTERN_SHUTDOWN_TIMEOUT") {
        let mut q = Table::new();
        q["shutdown_timeout"] = value(v);
        doc["queue"] = Item::Table(q);
    }

    let need = |var: &str, main: &str| {
        Error::new(
            Kind::Config,
            format!("{ORIGIN}: {var} is set but {main} is not"),
        )
    };
    let relay_vars = [
        "POSTERN_RELAY_PORT",
        "POSTERN_RELAY_TLS",
        "POSTERN_RELAY_USER",
        "POSTERN_RELAY_PASSWORD_FILE",
    ];
    match get("POSTERN_RELAY_HOST") {
        Some(host) => {
            let mut t = Table::new();
            t["host"] = value(host);
            if let Some(p) = get("POSTERN_RELAY_PORT") {
                // A number is written as one; anything else as a string,
                // which the parser then refuses naming the variable.
                t["port"] = match p.trim().parse::<i64>() {
                    Ok(n) => value(n),
                    Err(_) => value(p),
                };
            }
            for (var, key) in [
                ("POSTERN_RELAY_TLS", "tls"),
                ("POSTERN_RELAY_USER", "username"),
                ("POSTERN_RELAY_PASSWORD_FILE", "password_file"),
            ] {
                if let Some(v) = get(var) {
                    t[key] = value(v);
                }
            }
            let mut relays = ArrayOfTables::new();
            relays.push(t);
            doc["relay"] = Item::ArrayOfTables(relays);
        }
        None => {
            if let Some(v) = relay_vars.iter().find(|v| get(v).is_some()) {
                return Err(need(v, "POSTERN_RELAY_HOST"));
            }
        }
    }

    let listen_vars = [
        "POSTERN_LISTEN_NETWORKS",
        "POSTERN_LISTEN_USERS_FILE",
        "POSTERN_LISTEN_TLS_CERT",
        "POSTERN_LISTEN_TLS_KEY",
    ];
    match get("POSTERN_LISTEN") {
        Some(addrs) => {
            let mut t = Table::new();
            t["addresses"] = value(list(&addrs));
            if let Some(n) = get("POSTERN_LISTEN_NETWORKS") {
                t["networks"] = value(list(&n));
            }
            for (var, key) in [
                ("POSTERN_LISTEN_USERS_FILE", "users_file"),
                ("POSTERN_LISTEN_TLS_CERT", "tls_cert"),
                ("POSTERN_LISTEN_TLS_KEY", "tls_key"),
            ] {
                if let Some(v) = get(var) {
                    t[key] = value(v);
                }
            }
            doc["listen"] = Item::Table(t);
        }
        None => {
            if let Some(v) = listen_vars.iter().find(|v| get(v).is_some()) {
                return Err(need(v, "POSTERN_LISTEN"));
            }
        }
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TlsMode;
    use std::path::Path;

    fn text(vars: &[(&str, &str)]) -> Result<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        toml_text(&|n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
    }

    fn names() -> SystemNames {
        SystemNames {
            mailname: "/nonexistent/mailname".into(),
            hosts: "/nonexistent/hosts".into(),
            nodename: Some("box.example.net".into()),
        }
    }

    #[test]
    fn relay_and_names_become_the_usual_config() {
        let t = text(&[
            ("POSTERN_RELAY_HOST", "smtp.example.com"),
            ("POSTERN_RELAY_PORT", " 2525 "),
            ("POSTERN_RELAY_TLS", "tls"),
            ("POSTERN_RELAY_USER", "apikey"),
            ("POSTERN_RELAY_PASSWORD_FILE", "/run/secrets/relay"),
            ("POSTERN_HOSTNAME", "relay.example.com"),
            ("POSTERN_DOMAIN", "example.com"),
            ("POSTERN_SPOOL", "/var/spool/postern"),
            ("POSTERN_SHUTDOWN_TIMEOUT", "8s"),
        ])
        .unwrap();
        let c = parse(&t, &names()).unwrap();
        assert_eq!(c.path, None);
        assert_eq!(c.hostname, "relay.example.com");
        assert_eq!(c.domain, "example.com");
        assert_eq!(c.spool_dir, Path::new("/var/spool/postern"));
        assert_eq!(c.log, "stderr");
        assert_eq!(c.queue.shutdown_timeout, std::time::Duration::from_secs(8));
        assert_eq!(c.relays.len(), 1);
        let r = &c.relays[0];
        assert_eq!(
            (r.host.as_str(), r.port, r.tls),
            ("smtp.example.com", 2525, TlsMode::Tls)
        );
        assert_eq!(r.username.as_deref(), Some("apikey"));
        assert_eq!(
            r.password_file.as_deref(),
            Some(Path::new("/run/secrets/relay"))
        );
        // Nothing set but the log: the defaults, host name from the system.
        let c = parse(&text(&[("POSTERN_LOG", "syslog")]).unwrap(), &names()).unwrap();
        assert_eq!(c.log, "syslog");
        assert!(c.relays.is_empty());
        assert_eq!(c.hostname, "box.example.net");
    }

    #[test]
    fn values_cannot_inject_toml() {
        // Quotes, newlines and brackets stay inside the string.
        let evil = "smtp.example.com\"\n[[relay]]\nhost = \"evil.example";
        let t = text(&[("POSTERN_RELAY_HOST", evil), ("POSTERN_RELAY_TLS", "tls")]).unwrap();
        let doc: toml::Table = toml::from_str(&t).unwrap();
        let relays = doc["relay"].as_array().unwrap();
        assert_eq!(relays.len(), 1);
        assert_eq!(relays[0]["host"].as_str(), Some(evil));
        assert_eq!(doc.len(), 2, "{t}"); // log and relay, nothing else
        // A value that tries to add a key is one bad value, refused by the
        // usual rule for that key.
        let t = text(&[("POSTERN_HOSTNAME", "a\"\nspool_dir = \"/tmp/x")]).unwrap();
        let e = parse(&t, &names()).unwrap_err();
        assert_eq!(e.kind().exit_code(), 78);
        assert!(
            e.message()
                .starts_with("configuration from the environment: POSTERN_HOSTNAME (hostname): "),
            "{}",
            e.message()
        );
    }

    #[test]
    fn errors_name_the_variable() {
        for (vars, want) in [
            (
                vec![
                    ("POSTERN_RELAY_HOST", "h.example"),
                    ("POSTERN_RELAY_TLS", "maybe"),
                ],
                "POSTERN_RELAY_TLS (relay.tls)",
            ),
            (
                vec![
                    ("POSTERN_RELAY_HOST", "h.example"),
                    ("POSTERN_RELAY_PORT", "smtp"),
                ],
                "POSTERN_RELAY_PORT (relay.port)",
            ),
            (
                vec![
                    ("POSTERN_RELAY_HOST", "h.example"),
                    ("POSTERN_RELAY_PORT", "70000"),
                ],
                "POSTERN_RELAY_PORT (relay.port)",
            ),
            (
                vec![
                    ("POSTERN_RELAY_HOST", "h.example"),
                    ("POSTERN_RELAY_TLS", "none"),
                ],
                "POSTERN_RELAY_TLS (relay[0].tls)",
            ),
            (
                vec![("POSTERN_RELAY_HOST", " ")],
                "POSTERN_RELAY_HOST (relay[0].host)",
            ),
            (vec![("POSTERN_LOG", "journal")], "POSTERN_LOG (log)"),
            (
                vec![("POSTERN_SHUTDOWN_TIMEOUT", "soon")],
                "POSTERN_SHUTDOWN_TIMEOUT (queue.shutdown_timeout)",
            ),
            (
                vec![("POSTERN_DOMAIN", "not a domain")],
                "POSTERN_DOMAIN (domain)",
            ),
        ] {
            let e = parse(&text(&vars).unwrap(), &names()).unwrap_err();
            assert_eq!(e.kind().exit_code(), 78, "{vars:?}");
            assert!(
                e.message()
                    .starts_with(&format!("configuration from the environment: {want}: ")),
                "{vars:?}: {}",
                e.message()
            );
            assert!(!e.message().contains('\n'), "{}", e.message());
        }
        let e = text(&[("POSTERN_RELAY_USER", "apikey")]).unwrap_err();
        assert_eq!(
            e.message(),
            "configuration from the environment: POSTERN_RELAY_USER is set but POSTERN_RELAY_HOST is not"
        );
        let e = text(&[("POSTERN_LISTEN_TLS_CERT", "/c.pem")]).unwrap_err();
        assert_eq!(e.kind().exit_code(), 78);
        assert!(
            e.message().contains("POSTERN_LISTEN is not"),
            "{}",
            e.message()
        );
    }

    /// The `[listen]` table for the listener (its parsing and rules are
    /// the listener's; here only the text is checked).
    #[test]
    fn listen_variables_become_the_listen_table() {
        let t = text(&[
            ("POSTERN_LISTEN", "0.0.0.0:2525, [::]:2525,"),
            ("POSTERN_LISTEN_NETWORKS", "10.0.0.0/8,172.16.0.0/12"),
            ("POSTERN_LISTEN_USERS_FILE", "/run/secrets/listen-users"),
            ("POSTERN_LISTEN_TLS_CERT", "/etc/postern/tls/cert.pem"),
            ("POSTERN_LISTEN_TLS_KEY", "/etc/postern/tls/key.pem"),
        ])
        .unwrap();
        let doc: toml::Table = toml::from_str(&t).unwrap();
        let l = doc["listen"].as_table().unwrap();
        let strs = |k: &str| -> Vec<String> {
            l[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(strs("addresses"), ["0.0.0.0:2525", "[::]:2525"]);
        assert_eq!(strs("networks"), ["10.0.0.0/8", "172.16.0.0/12"]);
        assert_eq!(l["users_file"].as_str(), Some("/run/secrets/listen-users"));
        assert_eq!(l["tls_cert"].as_str(), Some("/etc/postern/tls/cert.pem"));
        assert_eq!(l["tls_key"].as_str(), Some("/etc/postern/tls/key.pem"));
        assert_eq!(l.len(), 5);
    }

    #[test]
    fn every_variable_maps_to_a_key() {
        for (v, k) in VARS {
            assert!(v.starts_with("POSTERN_"));
            assert!(variable_for(k).starts_with(v), "{v} {k}");
        }
    }
}
