//! The config edit of `postern setup`: put the relay it manages into the
//! configuration text, keeping every other line and comment (`toml_edit`,
//! the format-preserving editor), and set the envelope sender.
//!
//! The managed `[[relay]]` is marked by a comment line ([`MARKER`]) just
//! above it; a re-run replaces it in place. A `[[relay]]` the user wrote by
//! hand is not deleted: it is turned into comment lines above the managed
//! one (setup configures the one relay mail goes through), and the caller
//! is told how many. The relay of the package's debconf block counts as
//! managed: it is replaced in place, between the block's marker lines.

use crate::config::{TlsMode, is_loopback_host};
use crate::setup::presets::{Provider, tls_name};
use std::path::PathBuf;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

/// The comment line that marks the relay `postern setup` manages.
pub const MARKER: &str = "# Written by `postern setup`";

/// The keys setup writes itself (a re-run drops them when it does not).
const OURS: [&str; 8] = [
    "host",
    "port",
    "tls",
    "allow_plaintext",
    "username",
    "password_file",
    "password_command",
    "ca_file",
];

/// The relay to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySpec {
    /// Which preset (named in the marker comment).
    pub provider: Provider,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport security.
    pub tls: TlsMode,
    /// AUTH user name (None: no AUTH, no secret).
    pub username: Option<String>,
    /// Where the secret is (with a user name).
    pub password_file: Option<PathBuf>,
    /// Extra trust anchor.
    pub ca_file: Option<PathBuf>,
}

impl RelaySpec {
    /// `allow_plaintext` is written only for AUTH over a plain connection
    /// to a loopback host (a local stunnel or sidecar; the tests).
    pub fn allow_plaintext(&self) -> bool {
        self.tls == TlsMode::None && self.username.is_some() && is_loopback_host(&self.host)
    }
}

/// The edited text and what the edit did.
#[derive(Debug)]
pub struct Edited {
    /// The new configuration text.
    pub text: String,
    /// Relays written by hand that are now comments.
    pub disabled: usize,
    /// A relay managed by setup was replaced.
    pub replaced: bool,
}

/// The first line of the block the package's debconf questions manage
/// (`dpkg-reconfigure postern`): the relay inside it is replaced in place,
/// so the two never leave two relays behind.
pub const DEBCONF_BEGIN: &str = "# BEGIN postern debconf relay";

fn is_managed(t: &Table) -> bool {
    prefix_of(t)
        .lines()
        .any(|l| l.starts_with(MARKER) || l.starts_with(DEBCONF_BEGIN))
}

fn prefix_of(t: &Table) -> String {
    t.decor()
        .prefix()
        .and_then(|p| p.as_str())
        .unwrap_or("")
        .to_string()
}

/// `t` as comment lines (`#[[relay]]`, `#host = …`), its own leading
/// comments kept as they are.
fn commented(t: &Table) -> String {
    let mut bare = t.clone();
    bare.decor_mut().clear();
    bare.set_position(None);
    let mut aot = ArrayOfTables::new();
    aot.push(bare);
    let mut doc = DocumentMut::new();
    doc.insert("relay", Item::ArrayOfTables(aot));
    let mut out = prefix_of(t);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for line in doc.to_string().lines() {
        out.push('#');
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Shift every table (below the root) at `from` or later by one position.
fn shift(t: &mut Table, from: isize) {
    for (_, item) in t.iter_mut() {
        match item {
            Item::Table(sub) => {
                if let Some(p) = sub.position()
                    && p >= from
                {
                    sub.set_position(Some(p + 1));
                }
                shift(sub, from);
            }
            Item::ArrayOfTables(a) => {
                for sub in a.iter_mut() {
                    if let Some(p) = sub.position()
                        && p >= from
                    {
                        sub.set_position(Some(p + 1));
                    }
                    shift(sub, from);
                }
            }
            _ => {}
        }
    }
}

/// The first position of a table in `t` (the first section header).
fn first_position(t: &Table) -> Option<isize> {
    let mut best: Option<isize> = None;
    for (_, item) in t.iter() {
        let ps: Vec<Option<isize>> = match item {
            Item::Table(sub) => vec![sub.position()],
            Item::ArrayOfTables(a) => a.iter().map(Table::position).collect(),
            _ => vec![],
        };
        for p in ps.into_iter().flatten() {
            best = Some(best.map_or(p, |b: isize| b.min(p)));
        }
    }
    best
}

/// The table (below the root) whose position is `pos`.
fn table_at(t: &mut Table, pos: isize) -> Option<&mut Table> {
    for (_, item) in t.iter_mut() {
        match item {
            Item::Table(sub) if sub.position() == Some(pos) => return Some(sub),
            Item::ArrayOfTables(a) => {
                if let Some(sub) = a.iter_mut().find(|s| s.position() == Some(pos)) {
                    return Some(sub);
                }
            }
            _ => {}
        }
    }
    None
}

/// Put `relay` into `text` (replacing the managed relay, turning relays
/// written by hand into comments) and, when given, set `[addresses]
/// sender` (and `from_header = "local"` unless the file sets it).
pub fn apply(
    text: &str,
    relay: &RelaySpec,
    sender: Option<&str>,
) -> std::result::Result<Edited, String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string())?;
    let mut prefix = String::new();
    let mut replaced = false;
    let mut disabled = Vec::new();
    let mut pos = None;
    let mut old_managed: Option<Table> = None;
    match doc.remove("relay") {
        None => {}
        Some(Item::ArrayOfTables(aot)) => {
            for t in aot.iter() {
                pos = pos.or(t.position());
                if is_managed(t) {
                    if !replaced {
                        prefix = prefix_of(t)
                            .lines()
                            .filter(|l| !l.starts_with(MARKER))
                            .map(|l| format!("{l}\n"))
                            .collect();
                    }
                    if !replaced {
                        old_managed = Some(t.clone());
                    }
                    replaced = true;
                } else {
                    disabled.push(commented(t));
                }
            }
        }
        Some(_) => return Err("\"relay\" is not a list of [[relay]] tables".into()),
    }
    let pos = match pos {
        Some(p) => p,
        None => {
            // Before the first section, taking the comments above that
            // section up to its ruler line ("# ---- addresses") along.
            match first_position(doc.as_table()) {
                Some(p) => {
                    if let Some(next) = table_at(doc.as_table_mut(), p) {
                        let before = prefix_of(next);
                        let lines: Vec<&str> = before.split_inclusive('\n').collect();
                        if let Some(cut) = lines.iter().rposition(|l| l.starts_with("# --")) {
                            prefix = lines[..cut].concat();
                            let rest = lines[cut..].concat();
                            next.decor_mut().set_prefix(format!("\n{rest}"));
                        }
                    }
                    p
                }
                None => 1,
            }
        }
    };
    shift(doc.as_table_mut(), pos);

    let mut t = Table::new();
    t.insert("host", value(relay.host.as_str()));
    t.insert("port", value(i64::from(relay.port)));
    t.insert("tls", value(tls_name(relay.tls)));
    if relay.allow_plaintext() {
        t.insert("allow_plaintext", value(true));
    }
    if let Some(u) = &relay.username {
        t.insert("username", value(u.as_str()));
    }
    if let Some(p) = &relay.password_file {
        t.insert("password_file", value(p.to_string_lossy().as_ref()));
    }
    if let Some(p) = &relay.ca_file {
        t.insert("ca_file", value(p.to_string_lossy().as_ref()));
    }
    // Keys setup does not ask about (rate_limit, auth, a client
    // certificate, a ca_file given before) stay while the host is the same.
    if let Some(old) =
        old_managed.filter(|o| o.get("host").and_then(Item::as_str) == Some(relay.host.as_str()))
    {
        for (k, v) in old.iter() {
            let ours = OURS.contains(&k) && !(k == "ca_file" && relay.ca_file.is_none());
            if !ours && !t.contains_key(k) {
                t.insert(k, v.clone());
            }
        }
    }
    if !prefix.is_empty() && !prefix.ends_with('\n') {
        prefix.push('\n');
    }
    if !disabled.is_empty() {
        prefix.push_str(
            "\n# Disabled by `postern setup`, which configures the relay below instead:\n",
        );
        for d in &disabled {
            prefix.push_str(d);
        }
        prefix.push('\n');
    }
    prefix.push_str(&format!(
        "{MARKER} (provider: {}); run it again to change this relay.\n",
        relay.provider.name()
    ));
    t.decor_mut().set_prefix(prefix);
    t.set_position(Some(pos));
    let mut aot = ArrayOfTables::new();
    aot.push(t);
    doc.insert("relay", Item::ArrayOfTables(aot));

    if let Some(s) = sender {
        let addresses = doc
            .entry("addresses")
            .or_insert_with(toml_edit::table)
            .as_table_mut()
            .ok_or("\"addresses\" is not a table")?;
        if addresses.contains_key("sender") {
            addresses.insert("sender", value(s));
        } else {
            let mut k = toml_edit::Key::new("sender");
            k.leaf_decor_mut()
                .set_prefix("# The sender your relay accepts (set by `postern setup`).\n");
            addresses.insert_formatted(&k, value(s));
        }
        if !addresses.contains_key("from_header") {
            addresses.insert("from_header", value("local"));
        }
    }
    Ok(Edited {
        text: doc.to_string(),
        disabled: disabled.len(),
        replaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../etc/postern.toml");

    fn spec() -> RelaySpec {
        RelaySpec {
            provider: Provider::SendGrid,
            host: "smtp.sendgrid.net".into(),
            port: 587,
            tls: TlsMode::Starttls,
            username: Some("apikey".into()),
            password_file: Some("/etc/postern/relay.secret".into()),
            ca_file: None,
        }
    }

    #[test]
    fn the_shipped_file_keeps_its_comments_and_gains_one_relay() {
        let e = apply(SHIPPED, &spec(), Some("noreply@example.com")).unwrap();
        assert!(!e.replaced && e.disabled == 0);
        // Every comment line of the shipped file is still there.
        for line in SHIPPED.lines().filter(|l| l.starts_with('#')) {
            assert!(e.text.contains(line), "lost {line:?}");
        }
        let relay_at = e.text.find("\n[[relay]]").unwrap();
        let addresses_at = e.text.find("\n[addresses]").unwrap();
        let ruler_at = e
            .text
            .find("# ---------------------------------------------------------------- addresses")
            .unwrap();
        let example_at = e.text.find("# Example 5").unwrap();
        assert!(example_at < relay_at && relay_at < ruler_at && ruler_at < addresses_at);
        let cfg = crate::config::Config::parse(&e.text, std::path::Path::new("x")).unwrap();
        assert_eq!(cfg.relays.len(), 1);
        assert_eq!(cfg.relays[0].host, "smtp.sendgrid.net");
        assert_eq!(cfg.addresses.sender.as_deref(), Some("noreply@example.com"));

        // A second run replaces the block: still one, in the same place.
        let mut s2 = spec();
        s2.port = 2525;
        let e2 = apply(&e.text, &s2, None).unwrap();
        assert!(e2.replaced && e2.disabled == 0);
        assert_eq!(
            e2.text.matches("[[relay]]\n").count() - SHIPPED.matches("#[[relay]]\n").count(),
            1
        );
        assert_eq!(e2.text.matches(MARKER).count(), 1);
        assert!(e2.text.contains("port = 2525"));
        let cfg = crate::config::Config::parse(&e2.text, std::path::Path::new("x")).unwrap();
        assert_eq!(cfg.relays.len(), 1);
        assert_eq!(cfg.relays[0].port, 2525);
        // Idempotent.
        assert_eq!(apply(&e2.text, &s2, None).unwrap().text, e2.text);
        // A key added by hand to the managed block stays while the host does.
        let edited = e2
            .text
            .replace("\nport = 2525\n", "\nport = 2525\nrate_limit = 60\n");
        let e3 = apply(&edited, &s2, None).unwrap();
        assert!(e3.text.contains("rate_limit = 60\n"), "{}", e3.text);
        let mut other = s2.clone();
        other.host = "smtp.eu.mailgun.org".into();
        assert!(
            !apply(&edited, &other, None)
                .unwrap()
                .text
                .contains("\nrate_limit")
        );
    }

    #[test]
    fn a_relay_written_by_hand_becomes_comments() {
        let text = "log = \"stderr\"\n\n# mine\n[[relay]]\nhost = \"mail.example.net\"\n\n[queue]\nparallel = 3 # two is slow\n";
        let e = apply(text, &spec(), None).unwrap();
        assert_eq!(e.disabled, 1);
        assert!(
            e.text
                .contains("# mine\n#[[relay]]\n#host = \"mail.example.net\"\n"),
            "{}",
            e.text
        );
        assert!(e.text.contains("parallel = 3 # two is slow"));
        let cfg = crate::config::Config::parse(&e.text, std::path::Path::new("x")).unwrap();
        assert_eq!(cfg.relays.len(), 1);
        assert_eq!(cfg.queue.parallel, 3);
        let e2 = apply(&e.text, &spec(), None).unwrap();
        assert_eq!(e2.text, e.text);
    }

    #[test]
    fn the_debconf_block_is_replaced_in_place() {
        let text = "log = \"stderr\"\n\n[queue]\nparallel = 2\n\n# BEGIN postern debconf relay: written by debconf (dpkg-reconfigure postern).\n# Keep it the last table of this file.\n[[relay]]\nhost = \"smtp.mailgun.org\"\ntls = \"starttls\"\n# END postern debconf relay (md5 0123)\n";
        let e = apply(text, &spec(), None).unwrap();
        assert!(e.replaced && e.disabled == 0, "{}", e.text);
        let begin = e.text.find(DEBCONF_BEGIN).unwrap();
        let relay = e.text.find("[[relay]]").unwrap();
        let end = e.text.find("# END postern debconf relay").unwrap();
        assert!(begin < relay && relay < end, "{}", e.text);
        assert!(!e.text.contains("mailgun"), "{}", e.text);
        assert_eq!(e.text.matches("[[relay]]").count(), 1);
    }

    #[test]
    fn plaintext_auth_only_to_loopback() {
        let mut s = spec();
        s.tls = TlsMode::None;
        s.host = "127.0.0.1".into();
        assert!(s.allow_plaintext());
        s.host = "smtp.example.com".into();
        assert!(!s.allow_plaintext());
        assert!(apply("", &s, None).unwrap().text.contains("[[relay]]"));
    }
}
