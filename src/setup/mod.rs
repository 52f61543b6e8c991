//! `postern setup`: from an installed package to a delivered test message
//! without editing a file.
//!
//! It asks (on a terminal) or takes from flags (scripts) the provider, the
//! relay's host, port, TLS mode, user name and secret; writes the one
//! `[[relay]]` it manages into the configuration, keeping the rest of the
//! file and its comments ([`edit`]); writes the secret file atomically,
//! never readable by others ([`secret`]); reloads the daemon ([`reload`]);
//! runs the same probe as `postern check` (`crate::check`); and sends a
//! test message through the normal submission path (`sendmail -bs`, the
//! binary itself), naming its queue id and where to follow it.
//!
//! The secret never comes from argv (a file, standard input, or the
//! terminal with echo off) and is never printed.

pub mod edit;
pub mod presets;
pub mod prompt;
pub mod reload;
pub mod secret;
mod testmsg;

use crate::config::{Config, ConfigSource, TlsMode};
use crate::error::{Error, Kind, Result};
use edit::RelaySpec;
use presets::Provider;
use std::path::{Path, PathBuf};

/// Where the secret comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SecretFrom {
    /// Ask on the terminal (or keep the current secret file).
    #[default]
    Ask,
    /// The first line of this file (`--secret-file`).
    File(PathBuf),
    /// The first line of standard input (`--secret-stdin`).
    Stdin,
}

/// `postern setup`'s flags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetupArgs {
    /// `--provider NAME`.
    pub provider: Option<String>,
    /// `--host HOST`.
    pub host: Option<String>,
    /// `--port N`.
    pub port: Option<u16>,
    /// `--tls starttls|tls|none`.
    pub tls: Option<TlsMode>,
    /// `--region R` (SES region; Mailgun us or eu).
    pub region: Option<String>,
    /// `--user NAME`.
    pub user: Option<String>,
    /// `--secret-file PATH` or `--secret-stdin`.
    pub secret: SecretFrom,
    /// `--password-file PATH`: where the secret is written.
    pub password_file: Option<PathBuf>,
    /// `--ca-file PATH`.
    pub ca_file: Option<PathBuf>,
    /// `--from ADDR`: the envelope sender the relay accepts.
    pub from: Option<String>,
    /// `--test-to ADDR`: send a test message there.
    pub test_to: Option<String>,
    /// `--yes`: never ask.
    pub yes: bool,
    /// `--help`.
    pub help: bool,
}

/// Where setup runs: which file it edits and how the rest of the binary
/// would read it.
#[derive(Debug, Clone)]
pub struct Context {
    /// The configuration file to edit.
    pub config_path: PathBuf,
    /// The installed binary's configuration (reload the system daemon).
    pub system: bool,
    /// The explicit configuration to hand a child process
    /// (`POSTERN_CONFIG`), for an unprivileged run with `-C`.
    pub explicit: Option<PathBuf>,
}

/// The default secret file of the installed configuration.
pub const DEFAULT_SECRET: &str = "/etc/postern/relay.secret";

fn usage(msg: impl Into<String>) -> Error {
    Error::new(Kind::Usage, msg)
}

fn io_err(what: &str, e: &std::io::Error) -> Error {
    Error::io(Kind::IoErr, what, e)
}

/// The provider named in the managed relay's marker comment.
fn current_provider(text: &str) -> Option<Provider> {
    let line = text.lines().find(|l| l.starts_with(edit::MARKER))?;
    let rest = line.split("(provider: ").nth(1)?;
    Provider::from_name(rest.split(')').next()?)
}

struct Asker {
    interactive: bool,
}

impl Asker {
    /// `given`, else the answer on the terminal (default `default`), else
    /// `default`.
    fn value(&self, given: Option<String>, q: &str, default: Option<&str>) -> Result<String> {
        if let Some(v) = given {
            return Ok(v);
        }
        if self.interactive {
            return prompt::ask(q, default).map_err(|e| io_err("setup", &e));
        }
        Ok(default.unwrap_or("").to_string())
    }
}

fn parse_tls(s: &str) -> Option<TlsMode> {
    match s.to_ascii_lowercase().as_str() {
        "starttls" => Some(TlsMode::Starttls),
        "tls" | "ssl" | "smtps" => Some(TlsMode::Tls),
        "none" | "plain" => Some(TlsMode::None),
        _ => None,
    }
}

fn plausible_address(a: &str) -> bool {
    a.contains('@')
        && !a.starts_with('@')
        && !a.ends_with('@')
        && !a.contains(|c: char| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
}

/// Write the configuration text atomically, keeping the file's mode (0644
/// for a new file) and owner.
fn write_config(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let old = std::fs::metadata(path).ok();
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let r = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        let mode = old.as_ref().map_or(0o644, |m| m.mode() & 0o7777);
        if let Some(m) = &old
            && nix::unistd::geteuid().is_root()
        {
            std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()))?;
        }
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Run `postern setup`; the exit code (0: configured, probed and, when
/// asked, the test message queued; 1: the relay is not usable yet).
pub fn command(args: &SetupArgs, ctx: &Context) -> Result<u8> {
    let interactive = !args.yes && args.secret != SecretFrom::Stdin && prompt::is_terminal();
    let ask = Asker { interactive };
    let path = &ctx.config_path;
    if ctx.system && !nix::unistd::geteuid().is_root() {
        return Err(Error::new(
            Kind::NoPerm,
            format!(
                "postern setup writes {} and the relay secret: run it as root (sudo postern setup)",
                path.display()
            ),
        ));
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(Error::io(
                Kind::Config,
                format!("cannot read config file {}", path.display()),
                &e,
            ));
        }
    };
    // The current settings, for defaults (an invalid file is replaced in
    // part only; its error shows when the result is checked).
    let current = Config::parse(&text, path).ok();
    let cur_relay = current.as_ref().and_then(|c| c.relays.first().cloned());

    if interactive {
        println!("Postern setup: the smart host mail from this machine goes through.");
        println!(
            "Configuration: {} (the rest of the file is kept). Press Enter to take the [default].\n",
            path.display()
        );
    }

    // The provider.
    let provider = match &args.provider {
        Some(n) => Provider::from_name(n).ok_or_else(|| {
            usage(format!(
                "unknown provider {n:?}; one of: {}",
                presets::ALL.map(Provider::name).join(", ")
            ))
        })?,
        None if interactive => {
            for (i, p) in presets::ALL.iter().enumerate() {
                println!("  {}) {:<13} {}", i + 1, p.name(), p.label());
            }
            let def = current_provider(&text).unwrap_or(Provider::SendGrid);
            loop {
                let a = ask.value(None, "Provider", Some(def.name()))?;
                let pick = a
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| presets::ALL.get(i.wrapping_sub(1)).copied())
                    .or_else(|| Provider::from_name(&a));
                match pick {
                    Some(p) => break p,
                    None => println!("Please give a number from 1 to 7 or a name."),
                }
            }
        }
        None if args.host.is_some() => Provider::Generic,
        None => {
            return Err(usage(format!(
                "--provider is needed (one of: {}), or --host for a generic relay",
                presets::ALL.map(Provider::name).join(", ")
            )));
        }
    };
    for n in provider.notes() {
        println!("Note: {n}");
    }
    let same_provider = current_provider(&text) == Some(provider);
    let cur = cur_relay.as_ref().filter(|_| same_provider);

    // Region and host.
    let region = match provider.region() {
        Some((q, def)) => {
            let r = ask.value(args.region.clone(), q, Some(def))?;
            let r = r.to_ascii_lowercase();
            if !presets::valid_region(&r)
                || (provider == Provider::Mailgun && r != "us" && r != "eu")
            {
                return Err(usage(format!(
                    "--region {r:?} is not a region of {}",
                    provider.name()
                )));
            }
            Some(r)
        }
        None => None,
    };
    let host = match (&args.host, provider.host(region.as_deref())) {
        (Some(h), _) => h.clone(),
        (None, Some(h)) => h,
        (None, None) => {
            let def = cur.map(|r| r.host.clone());
            let h = ask.value(None, "Relay host name", def.as_deref())?;
            if h.is_empty() {
                return Err(usage("--host is needed for a generic relay"));
            }
            h
        }
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/' || c == '"') {
        return Err(usage(format!("{host:?} is not a host name")));
    }

    // Port and TLS.
    let ports = provider.ports();
    let def_port = cur.map_or(ports[0], |r| r.port).to_string();
    let q = format!(
        "Port ({})",
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let port_s = ask.value(args.port.map(|p| p.to_string()), &q, Some(&def_port))?;
    let port: u16 = port_s
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| usage(format!("{port_s:?} is not a port")))?;
    let tls = match args.tls {
        Some(t) => t,
        None if provider == Provider::Generic && interactive => {
            let def = presets::tls_name(presets::tls_for_port(port));
            let a = ask.value(None, "TLS (starttls, tls or none)", Some(def))?;
            parse_tls(&a).ok_or_else(|| usage(format!("{a:?} is not starttls, tls or none")))?
        }
        None => presets::tls_for_port(port),
    };
    if tls == TlsMode::None && !crate::config::is_loopback_host(&host) {
        return Err(usage(
            "tls none is only for a relay on this machine (localhost); use starttls or tls",
        ));
    }

    // User name.
    let user = match (&args.user, provider.fixed_user()) {
        (Some(u), _) => Some(u.clone()),
        (None, Some(u)) => Some(u.to_string()),
        (None, None) => {
            let def = cur.and_then(|r| r.username.clone());
            let q = format!("User name ({})", provider.user_hint());
            let u = ask.value(None, &q, def.as_deref())?;
            if u.is_empty() { None } else { Some(u) }
        }
    };
    if user.is_none() && !matches!(provider, Provider::Generic | Provider::Postmark) {
        return Err(usage(format!("--user is needed for {}", provider.name())));
    }
    if let Some(u) = &user
        && (u.is_empty() || u.contains(|c: char| c.is_control()))
    {
        return Err(usage("the user name must be one line"));
    }
    let with_auth = user.is_some() || provider == Provider::Postmark;

    // The secret.
    let password_file = if with_auth {
        Some(match &args.password_file {
            Some(p) => p.clone(),
            None => cur_relay
                .as_ref()
                .and_then(|r| r.password_file.clone())
                .unwrap_or_else(|| {
                    if ctx.system {
                        PathBuf::from(DEFAULT_SECRET)
                    } else {
                        path.parent().unwrap_or(Path::new(".")).join("relay.secret")
                    }
                }),
        })
    } else {
        None
    };
    let new_secret: Option<String> = match &password_file {
        None => None,
        Some(pf) => {
            let s = match &args.secret {
                SecretFrom::File(f) => {
                    let t = std::fs::read_to_string(f).map_err(|e| {
                        Error::io(Kind::NoInput, format!("--secret-file {}", f.display()), &e)
                    })?;
                    Some(secret::first_line(&t).to_string())
                }
                SecretFrom::Stdin => {
                    let mut t = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
                        .map_err(|e| io_err("--secret-stdin", &e))?;
                    Some(secret::first_line(&t).to_string())
                }
                SecretFrom::Ask if interactive => {
                    let keep = pf.exists();
                    let q = if keep {
                        format!(
                            "{} (not shown; Enter keeps the current one)",
                            provider.secret_hint()
                        )
                    } else {
                        format!("{} (not shown)", provider.secret_hint())
                    };
                    loop {
                        let s = prompt::ask_secret(&q).map_err(|e| io_err("setup", &e))?;
                        if s.is_empty() && keep {
                            break None;
                        }
                        match secret::check(&s) {
                            Ok(()) => break Some(s),
                            Err(why) => println!("{why}; again."),
                        }
                    }
                }
                SecretFrom::Ask if pf.exists() => None,
                SecretFrom::Ask => {
                    return Err(usage(
                        "the secret is needed: --secret-file PATH or --secret-stdin (never on the command line)",
                    ));
                }
            };
            if let Some(s) = &s {
                secret::check(s).map_err(|why| usage(format!("the secret: {why}")))?;
            }
            s
        }
    };
    // Postmark: the server token is the user name too.
    let user = match (user, provider) {
        (None, Provider::Postmark) => match (&new_secret, cur.and_then(|r| r.username.clone())) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(u)) => Some(u),
            (None, None) => return Err(usage("postmark: the server token is needed")),
        },
        (u, _) => u,
    };

    // The sender.
    let def_from = current.as_ref().and_then(|c| c.addresses.sender.clone());
    let from = ask.value(
        args.from.clone(),
        "Sender address the relay accepts (a verified address; empty: leave as it is)",
        def_from.as_deref(),
    )?;
    let from = if from.is_empty() || Some(&from) == def_from.as_ref() && args.from.is_none() {
        None
    } else {
        if !plausible_address(&from) {
            return Err(usage(format!("{from:?} is not an address")));
        }
        Some(from)
    };

    let spec = RelaySpec {
        provider,
        host: host.clone(),
        port,
        tls,
        username: user.clone(),
        password_file: password_file.clone(),
        ca_file: args.ca_file.clone(),
    };
    let edited = edit::apply(&text, &spec, from.as_deref())
        .map_err(|e| Error::new(Kind::Config, format!("cannot edit {}: {e}", path.display())))?;
    // What is written must load.
    Config::parse(&edited.text, path)?;

    let user_txt = user
        .as_ref()
        .map(|u| {
            if Some(u) == new_secret.as_ref() {
                "the token".to_string()
            } else {
                format!("user {u}")
            }
        })
        .unwrap_or_else(|| "no AUTH".into());
    println!(
        "\nRelay: {host} port {port}, {}, {user_txt}",
        presets::tls_name(tls)
    );
    if interactive
        && !prompt::yes_no("Write this configuration?", true).map_err(|e| io_err("setup", &e))?
    {
        println!("Nothing changed.");
        return Ok(0);
    }

    // The secret first, so the config never names a missing file.
    if let (Some(pf), Some(s)) = (&password_file, &new_secret) {
        let access = secret::write(pf, s).map_err(|e| {
            Error::io(
                Kind::CantCreat,
                format!("cannot write the secret file {}", pf.display()),
                &e,
            )
        })?;
        match access {
            secret::Access::RootPostern => println!(
                "Secret written to {} (root:{} mode 0640).",
                pf.display(),
                secret::GROUP
            ),
            secret::Access::CallerOnly => {
                let why = if nix::unistd::geteuid().is_root() {
                    format!("there is no group {}", secret::GROUP)
                } else {
                    "not run as root".to_string()
                };
                println!(
                    "Secret written to {} (mode 0600, owned by you: {why}). The daemon (user postern) reads it only as root:postern 0640: chown root:postern {0} && chmod 640 {0}",
                    pf.display()
                );
            }
        }
    } else if let Some(pf) = &password_file {
        println!("Secret kept in {}.", pf.display());
    }
    write_config(path, &edited.text).map_err(|e| {
        Error::io(
            Kind::CantCreat,
            format!("cannot write {}", path.display()),
            &e,
        )
    })?;
    println!(
        "{} the relay in {}.",
        if edited.replaced { "Replaced" } else { "Wrote" },
        path.display()
    );
    if edited.disabled > 0 {
        println!(
            "{} relay(s) written by hand are now comments in that file.",
            edited.disabled
        );
    }

    // Reload, then probe with what the daemon now reads.
    let source = if ctx.system {
        ConfigSource::System
    } else {
        ConfigSource::Unprivileged(Some(path.clone()))
    };
    let cfg = Config::load(&source)?;
    let spool = crate::spool::Spool::new(&cfg.spool_dir);
    println!("{}", reload::reload(ctx.system, &spool));
    println!("\nChecking the relay (as `postern check` does):");
    // Postmark's server token as the user name: the report names the user,
    // so it runs in a child whose output is shown with the token hidden.
    let token_user = user
        .as_ref()
        .filter(|_| provider == Provider::Postmark && args.user.is_none());
    let code = match token_user {
        None => crate::check::command(&cfg)?,
        Some(token) => probe_hiding(ctx, token)?,
    };
    if code != 0 {
        println!(
            "\nThe relay is not usable yet (see above). Fix it and run `postern setup` again (or `postern check`)."
        );
        return Ok(1);
    }

    // The test message.
    let to = match &args.test_to {
        Some(t) => Some(t.clone()),
        None if interactive => {
            let t = ask.value(None, "\nSend a test message to (empty: skip)", None)?;
            if t.is_empty() { None } else { Some(t) }
        }
        None => None,
    };
    if let Some(to) = to {
        if !plausible_address(&to) {
            return Err(usage(format!("{to:?} is not an address")));
        }
        let sender = from.clone().or_else(|| cfg.addresses.sender.clone());
        let id = testmsg::send(&cfg, ctx, sender.as_deref(), &to, &host, port)?;
        println!("Test message to {to} queued as {id}.");
        testmsg::follow(&cfg, &spool, &id);
    } else {
        println!("\nDone. Mail from this machine now goes through {host}.");
    }
    Ok(0)
}

/// `postern check` in a child process, its output shown with `token`
/// replaced.
fn probe_hiding(ctx: &Context, token: &str) -> Result<u8> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| Error::io(Kind::OsErr, "own binary", &e))?;
    let mut c = std::process::Command::new(exe);
    c.arg0("postern").arg("check");
    if let Some(p) = &ctx.explicit {
        c.env("POSTERN_CONFIG", p);
    }
    let o = c
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::io(Kind::OsErr, "cannot run postern check", &e))?;
    let hide = |b: &[u8]| String::from_utf8_lossy(b).replace(token, "<server token>");
    print!("{}", hide(&o.stdout));
    eprint!("{}", hide(&o.stderr));
    Ok(match o.status.code() {
        Some(0) => 0,
        Some(78) => {
            return Err(Error::new(
                Kind::Config,
                "postern check: configuration error",
            ));
        }
        _ => 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_names_the_provider() {
        let t = format!(
            "x = 1\n{} (provider: mailgun); run it again\n",
            edit::MARKER
        );
        assert_eq!(current_provider(&t), Some(Provider::Mailgun));
        assert_eq!(current_provider("nothing"), None);
        assert!(plausible_address("a@b.example") && !plausible_address("a b@c"));
        assert_eq!(parse_tls("STARTTLS"), Some(TlsMode::Starttls));
    }
}
