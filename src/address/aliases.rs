//! `/etc/aliases` (path from `addresses.aliases_file`): parsing, expansion
//! and `newaliases`.
//!
//! Format (aliases(5)): `name: target, target` — continuation lines start
//! with a blank, `#` starts a comment line, names match case-insensitively,
//! targets may be quoted. Targets are addresses, local names (expanded
//! again: nested aliases), or `:include:/path` (a file of addresses, one
//! list per line, `#` comments). Pipe (`|command`) and file (`/path`)
//! targets are not supported by a relay-only MTA: each such target fails
//! alone with a clear reason (logged, and bounced at delivery), never
//! silently. Loops (`a: b`, `b: a`) are detected and reported; an alias
//! that names itself (`root: root, ops@x`) means the local user itself.
//! One recipient expands through at most 20 levels, to at most 10,000
//! addresses, visiting at most 20,000 aliases (beyond that the expansion
//! stops with a failure naming the cause).
//!
//! No database is built: the file is read directly and re-read when its
//! modification time changes.

use crate::config::Config;
use crate::error::{Error, Kind, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Most alias expansions followed for one recipient.
const MAX_DEPTH: usize = 20;
/// Most addresses one recipient may expand to.
const MAX_TARGETS: usize = 10_000;
/// Most aliases visited for one recipient: a file whose aliases name each
/// other many times over (a diamond at every level) would otherwise be
/// walked path by path, up to `MAX_TARGETS` × `MAX_DEPTH` visits.
const MAX_VISITS: usize = 2 * MAX_TARGETS;

/// One alias target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An address or local name.
    Address(String),
    /// `:include:/path`.
    Include(PathBuf),
    /// `|command` (unsupported).
    Pipe(String),
    /// `/path` (unsupported).
    File(String),
}

/// A parsed aliases file.
#[derive(Debug, Clone, Default)]
pub struct Aliases {
    map: HashMap<String, Vec<Target>>,
    /// Syntax problems: (line number, message).
    pub errors: Vec<(usize, String)>,
}

fn split_targets(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = false;
    let mut angle = 0usize;
    for c in s.chars() {
        match c {
            '"' => {
                quote = !quote;
                cur.push(c);
            }
            '<' if !quote => {
                angle += 1;
                cur.push(c);
            }
            '>' if !quote => {
                angle = angle.saturating_sub(1);
                cur.push(c);
            }
            ',' if !quote && angle == 0 => {
                out.push(std::mem::take(&mut cur));
            }
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn target(raw: &str) -> Target {
    let unq = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .map(str::trim)
        .unwrap_or(raw);
    if let Some(p) = unq.strip_prefix(":include:") {
        return Target::Include(PathBuf::from(p.trim()));
    }
    if unq.starts_with('|') {
        return Target::Pipe(unq.to_string());
    }
    if unq.starts_with('/') {
        return Target::File(unq.to_string());
    }
    let a = unq.trim_start_matches('<').trim_end_matches('>').trim();
    Target::Address(a.to_string())
}

impl Aliases {
    /// Parse aliases text.
    pub fn parse(text: &str) -> Aliases {
        let mut a = Aliases::default();
        let mut entries: Vec<(usize, String)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if line.trim_start().starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                match entries.last_mut() {
                    Some((_, e)) => {
                        e.push(' ');
                        e.push_str(line.trim());
                    }
                    None => a
                        .errors
                        .push((n, "continuation line without an alias before it".into())),
                }
                continue;
            }
            entries.push((n, line.to_string()));
        }
        for (n, e) in entries {
            let Some((name, rest)) = e.split_once(':') else {
                a.errors
                    .push((n, format!("missing colon in {:?}", e.trim())));
                continue;
            };
            let name = name.trim().trim_matches('"').to_ascii_lowercase();
            if name.is_empty() || name.contains(char::is_whitespace) {
                a.errors.push((n, format!("bad alias name {name:?}")));
                continue;
            }
            let targets: Vec<Target> = split_targets(rest).iter().map(|t| target(t)).collect();
            if targets.is_empty() {
                a.errors.push((n, format!("alias {name:?} has no target")));
                continue;
            }
            a.map.entry(name).or_default().extend(targets);
        }
        a
    }

    /// Number of aliases.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The targets of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[Target]> {
        self.map.get(&name.to_ascii_lowercase()).map(Vec::as_slice)
    }
}

struct Cached {
    path: PathBuf,
    mtime: Option<SystemTime>,
    aliases: std::sync::Arc<Aliases>,
}

static CACHE: Mutex<Option<Cached>> = Mutex::new(None);

/// The aliases of `path`, re-read when the file changed. A missing or
/// unreadable file gives an empty table.
pub fn load(path: &Path) -> std::sync::Arc<Aliases> {
    let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    if let Ok(guard) = CACHE.lock()
        && let Some(c) = guard.as_ref()
        && c.path == path
        && c.mtime == mtime
    {
        return std::sync::Arc::clone(&c.aliases);
    }
    let aliases = std::sync::Arc::new(match std::fs::read_to_string(path) {
        Ok(t) => Aliases::parse(&t),
        Err(_) => Aliases::default(),
    });
    if let Ok(mut guard) = CACHE.lock() {
        *guard = Some(Cached {
            path: path.to_path_buf(),
            mtime,
            aliases: std::sync::Arc::clone(&aliases),
        });
    }
    aliases
}

/// One step of an expansion, for `-bv` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expansion {
    /// A final address.
    Address(String),
    /// A target that cannot be delivered, with the reason.
    Failed(String, String),
}

/// Expand a local name through `aliases`. `terminal(name)` maps a local
/// name that has no alias (or names itself) to a final address, or fails.
pub fn expand(
    aliases: &Aliases,
    name: &str,
    is_local: &dyn Fn(&str) -> Option<String>,
    terminal: &dyn Fn(&str) -> std::result::Result<String, String>,
) -> Vec<Expansion> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    let mut walk = Walk {
        aliases,
        is_local,
        terminal,
        visits: 0,
        done: std::collections::HashSet::new(),
        includes: HashMap::new(),
        stopped: false,
    };
    walk.walk(name, &mut path, &mut out, 0);
    out
}

/// One expansion: what it reads, how many aliases it visited, and which
/// names it has already expanded.
struct Walk<'a> {
    aliases: &'a Aliases,
    is_local: &'a dyn Fn(&str) -> Option<String>,
    terminal: &'a dyn Fn(&str) -> std::result::Result<String, String>,
    visits: usize,
    /// Names (lower case) already expanded for this recipient. As in
    /// sendmail, a name reached a second time adds nothing: its addresses
    /// are already in the list. This keeps an expansion linear in the size
    /// of the table (a diamond at every level is not walked path by path).
    done: std::collections::HashSet<String>,
    /// `:include:` files already read for this recipient (or why not).
    includes: HashMap<PathBuf, std::result::Result<std::rc::Rc<str>, String>>,
    /// Set once a limit is reached and reported.
    stopped: bool,
}

impl Walk<'_> {
    fn walk(&mut self, name: &str, path: &mut Vec<String>, out: &mut Vec<Expansion>, depth: usize) {
        let (aliases, is_local, terminal) = (self.aliases, self.is_local, self.terminal);
        if self.full(name, out) {
            return;
        }
        self.visits += 1;
        let key = name.to_ascii_lowercase();
        if depth > MAX_DEPTH {
            out.push(Expansion::Failed(
                name.to_string(),
                "alias nesting too deep".into(),
            ));
            return;
        }
        if path.contains(&key) {
            let mut chain = path.clone();
            chain.push(key);
            out.push(Expansion::Failed(
                name.to_string(),
                format!("alias loop: {}", chain.join(" -> ")),
            ));
            return;
        }
        if !self.done.insert(key.clone()) {
            return;
        }
        let targets = aliases.get(&key).map(|t| t.to_vec()).or_else(|| {
            // postmaster and MAILER-DAEMON work without an aliases file.
            matches!(key.as_str(), "postmaster" | "mailer-daemon")
                .then(|| vec![Target::Address("root".into())])
        });
        let Some(targets) = targets else {
            match terminal(name) {
                Ok(a) => out.push(Expansion::Address(a)),
                Err(e) => out.push(Expansion::Failed(name.to_string(), e)),
            }
            return;
        };
        path.push(key.clone());
        for t in targets {
            if self.full(name, out) {
                break;
            }
            match t {
                Target::Address(a) => match is_local(&a) {
                    Some(local) if local.eq_ignore_ascii_case(&key) => match terminal(&local) {
                        Ok(x) => out.push(Expansion::Address(x)),
                        Err(e) => out.push(Expansion::Failed(a, e)),
                    },
                    Some(local) => self.walk(&local, path, out, depth + 1),
                    None => out.push(Expansion::Address(a)),
                },
                Target::Include(p) => match self.include(&p) {
                    Ok(text) => {
                        for line in text.lines() {
                            let line = line.trim();
                            if line.is_empty() || line.starts_with('#') {
                                continue;
                            }
                            for raw in split_targets(line) {
                                if self.full(name, out) {
                                    break;
                                }
                                match target(&raw) {
                                Target::Address(a) => match is_local(&a) {
                                    Some(local) => self.walk(&local, path, out, depth + 1),
                                    None => out.push(Expansion::Address(a)),
                                },
                                Target::Pipe(c) | Target::File(c) => out.push(Expansion::Failed(
                                    c,
                                    "pipe and file targets are not supported (Postern only relays)".into(),
                                )),
                                Target::Include(q) => out.push(Expansion::Failed(
                                    q.display().to_string(),
                                    "nested :include: is not supported".into(),
                                )),
                            }
                            }
                        }
                    }
                    Err(e) => out.push(Expansion::Failed(
                        format!(":include:{}", p.display()),
                        format!("cannot read include file: {e}"),
                    )),
                },
                Target::Pipe(c) => out.push(Expansion::Failed(
                    c,
                    "pipe targets are not supported (Postern only relays)".into(),
                )),
                Target::File(f) => out.push(Expansion::Failed(
                    f,
                    "file targets are not supported (Postern only relays)".into(),
                )),
            }
        }
        path.pop();
    }

    /// Whether the expansion must stop: it has reached `MAX_TARGETS`
    /// results or visited more than `MAX_VISITS` names. The first time,
    /// one failure saying so is added (the rest of the list is never
    /// dropped silently).
    fn full(&mut self, name: &str, out: &mut Vec<Expansion>) -> bool {
        if self.stopped {
            return true;
        }
        let why = if out.len() >= MAX_TARGETS {
            format!("alias expansion too large (over {MAX_TARGETS} addresses)")
        } else if self.visits >= MAX_VISITS {
            format!("alias expansion too large (over {MAX_VISITS} aliases visited)")
        } else {
            return false;
        };
        out.push(Expansion::Failed(name.to_string(), why));
        self.stopped = true;
        true
    }

    /// The text of an `:include:` file, read once per expansion.
    fn include(&mut self, p: &Path) -> std::result::Result<std::rc::Rc<str>, String> {
        self.includes
            .entry(p.to_path_buf())
            .or_insert_with(|| {
                read_include(p)
                    .map(std::rc::Rc::from)
                    .map_err(|e| crate::error::describe_io(&e))
            })
            .clone()
    }
}

/// Largest `:include:` file read.
const MAX_INCLUDE: u64 = 1024 * 1024;

/// Read an `:include:` file: a regular file only (a FIFO or device named
/// there must not block or flood the runner), at most 1 MiB.
fn read_include(p: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(p)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut text = String::new();
    f.take(MAX_INCLUDE).read_to_string(&mut text)?;
    Ok(text)
}

/// `newaliases` / `sendmail -bi`: check the file and say what it holds.
pub fn newaliases(cfg: &Config) -> Result<u8> {
    let path = &cfg.addresses.aliases_file;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::stdout::line(format_args!(
                "postern: {} does not exist; root, postmaster and MAILER-DAEMON go to {}",
                path.display(),
                super::local::local_target(cfg, "root")
            ));
            return Ok(0);
        }
        Err(e) => {
            return Err(Error::io(
                Kind::Config,
                format!("cannot read {}", path.display()),
                &e,
            ));
        }
    };
    let a = Aliases::parse(&text);
    for (line, msg) in &a.errors {
        eprintln!("postern: {}:{line}: {msg}", path.display());
    }
    let unsupported = a
        .map
        .values()
        .flatten()
        .filter(|t| matches!(t, Target::Pipe(_) | Target::File(_)))
        .count();
    crate::stdout::line(format_args!(
        "postern: {}: {} aliases, {} errors{} (read directly; no database needed)",
        path.display(),
        a.len(),
        a.errors.len(),
        if unsupported > 0 {
            format!(", {unsupported} pipe/file targets that will bounce")
        } else {
            String::new()
        }
    ));
    if a.errors.is_empty() {
        Ok(0)
    } else {
        Err(Error::new(
            Kind::DataErr,
            format!("{}: {} syntax error(s)", path.display(), a.errors.len()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(text: &str, name: &str) -> Vec<Expansion> {
        let a = Aliases::parse(text);
        let is_local = |s: &str| (!s.contains('@')).then(|| s.to_string());
        let terminal = |s: &str| {
            if s == "nobody-here" {
                Err("unknown local user".to_string())
            } else {
                Ok(format!("{s}@example.com"))
            }
        };
        expand(&a, name, &is_local, &terminal)
    }

    #[test]
    fn a_diamond_at_every_level_is_walked_once_per_name() {
        // l0 -> l1, m1 -> l2, m2 ... : 2^18 paths to the leaf, but 38 names.
        let mut text = String::new();
        for i in 0..18 {
            let n = i + 1;
            text.push_str(&format!("l{i}: l{n}, m{n}\nm{i}: l{n}, m{n}\n"));
        }
        text.push_str("l18: leaf\nm18: leaf\n");
        assert_eq!(
            exp(&text, "l0"),
            vec![Expansion::Address("leaf@example.com".into())]
        );
        // A name reached twice (not a loop) is delivered once.
        assert_eq!(
            exp("all: ops, dev\nops: ann, bob\ndev: bob, cy\n", "all"),
            vec![
                Expansion::Address("ann@example.com".into()),
                Expansion::Address("bob@example.com".into()),
                Expansion::Address("cy@example.com".into()),
            ]
        );
        // A wide, flat list is not affected.
        let wide: Vec<String> = (0..3000).map(|i| format!("u{i}")).collect();
        let out = exp(&format!("all: {}\n", wide.join(", ")), "all");
        assert_eq!(out.len(), 3000);
        assert!(out.iter().all(|e| matches!(e, Expansion::Address(_))));
    }

    #[test]
    fn too_many_addresses_fail_with_a_reason() {
        // Remote addresses and local names alike: the 10 001st is not
        // dropped silently.
        for form in ["r{i}@x.org", "u{i}"] {
            let many: Vec<String> = (0..10_500)
                .map(|i| form.replace("{i}", &i.to_string()))
                .collect();
            let out = exp(&format!("all: {}\n", many.join(", ")), "all");
            assert_eq!(out.len(), MAX_TARGETS + 1, "{form}");
            assert!(
                out[..MAX_TARGETS]
                    .iter()
                    .all(|e| matches!(e, Expansion::Address(_)))
            );
            assert!(
                matches!(&out[MAX_TARGETS], Expansion::Failed(_, why) if why.contains("over 10000 addresses")),
                "{:?}",
                out.last()
            );
        }
    }

    #[test]
    fn too_many_visits_are_cut_short() {
        // 12 000 aliases that each name two shared ones: 36 000 visits
        // for one address.
        let many: Vec<String> = (0..12_000).map(|i| format!("a{i}")).collect();
        let mut text = format!("all: {}\n", many.join(", "));
        for n in &many {
            text.push_str(&format!("{n}: x, y\n"));
        }
        let out = exp(&text, "all");
        assert!(out.len() <= 3, "{out:?}");
        assert!(
            out.iter()
                .any(|e| matches!(e, Expansion::Failed(_, why) if why.contains("too large"))),
            "{out:?}"
        );
    }

    #[test]
    fn parse_and_expand() {
        let text = "# comment\nroot: admin@x.org, ops\nops: a@x.org,\n  b@x.org\nPostmaster: root\nweb: \"|/usr/bin/cmd\", /var/log/x, c@x.org\nself: self, d@x.org\nloop1: loop2\nloop2: loop1\n";
        assert_eq!(
            exp(text, "root"),
            vec![
                Expansion::Address("admin@x.org".into()),
                Expansion::Address("a@x.org".into()),
                Expansion::Address("b@x.org".into())
            ]
        );
        assert_eq!(exp(text, "POSTMASTER").len(), 3);
        let web = exp(text, "web");
        assert!(matches!(&web[0], Expansion::Failed(t, _) if t == "|/usr/bin/cmd"));
        assert!(matches!(&web[1], Expansion::Failed(t, _) if t == "/var/log/x"));
        assert_eq!(web[2], Expansion::Address("c@x.org".into()));
        assert_eq!(
            exp(text, "self"),
            vec![
                Expansion::Address("self@example.com".into()),
                Expansion::Address("d@x.org".into())
            ]
        );
        assert!(matches!(&exp(text, "loop1")[0], Expansion::Failed(_, m) if m.contains("loop")));
        assert_eq!(
            exp(text, "alice"),
            vec![Expansion::Address("alice@example.com".into())]
        );
        assert!(matches!(
            &exp(text, "nobody-here")[0],
            Expansion::Failed(_, _)
        ));
        // postmaster works without a file
        assert_eq!(
            exp("", "MAILER-DAEMON"),
            vec![Expansion::Address("root@example.com".into())]
        );
    }

    #[test]
    fn syntax_errors_and_includes() {
        let a = Aliases::parse("  leading: x\nnocolon\nok: y\n");
        assert_eq!(a.errors.len(), 2);
        assert_eq!(a.len(), 1);
        let dir = std::env::temp_dir().join(format!("postern-alias-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let inc = dir.join("list");
        std::fs::write(&inc, "# members\nm1@x.org, m2@x.org\nroot\n").unwrap();
        let text = format!("list: :include:{}\nroot: r@x.org\n", inc.display());
        assert_eq!(
            exp(&text, "list"),
            vec![
                Expansion::Address("m1@x.org".into()),
                Expansion::Address("m2@x.org".into()),
                Expansion::Address("r@x.org".into())
            ]
        );
        // A FIFO named in :include: fails that target instead of blocking.
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let text = format!("list: :include:{}, ok@x.org\n", fifo.display());
        let e = exp(&text, "list");
        assert!(
            matches!(&e[0], Expansion::Failed(_, m) if m.contains("not a regular file")),
            "{e:?}"
        );
        assert_eq!(e[1], Expansion::Address("ok@x.org".into()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
