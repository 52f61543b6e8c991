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
pub mod oauth2_login;
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

/// `postern setup`: settle the relay (provider, host, port and TLS, user,
/// secret, sender), write the secret and the config, reload, probe, and
/// send a test message. Each step is one function below.
pub fn command(args: &SetupArgs, ctx: &Context) -> Result<u8> {
    let run = Run::start(args, ctx)?;
    let provider = run.provider()?;
    for n in provider.notes() {
        crate::stdout::line(format_args!("Note: {n}"));
    }
    let cur_relay = run.current.as_ref().and_then(|c| c.relays.first().cloned());
    let same_provider = current_provider(&run.text) == Some(provider);
    let cur = cur_relay.as_ref().filter(|_| same_provider);
    let host = run.host(provider, cur)?;
    let (port, tls) = run.port_and_tls(provider, cur, &host)?;
    let user = run.user(provider, cur)?;
    let with_auth = user.is_some() || provider == Provider::Postmark;
    let password_file = with_auth.then(|| run.password_file(cur_relay.as_ref()));
    let new_secret = match &password_file {
        Some(pf) => run.secret(provider, pf)?,
        None => None,
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
    let from = run.sender()?;
    let spec = RelaySpec {
        provider,
        host: host.clone(),
        port,
        tls,
        username: user.clone(),
        password_file: password_file.clone(),
        ca_file: args.ca_file.clone(),
    };
    let edited = edit::apply(&run.text, &spec, from.as_deref()).map_err(|e| {
        Error::new(
            Kind::Config,
            format!("cannot edit {}: {e}", run.path().display()),
        )
    })?;
    // What is written must load.
    Config::parse(&edited.text, run.path())?;
    if !run.confirm(&spec, new_secret.as_ref())? {
        crate::stdout::line(format_args!("Nothing changed."));
        return Ok(0);
    }
    run.write(&edited, password_file.as_deref(), new_secret.as_deref())?;
    let (cfg, code) = run.reload_and_probe(provider, user.as_deref())?;
    if code != 0 {
        crate::stdout::line(format_args!(
            "\nThe relay is not usable yet (see above). Fix it and run `postern setup` again (or `postern check`)."
        ));
        return Ok(1);
    }
    run.test_message(&cfg, from, &host, port)
}

/// One run of `postern setup`: its arguments, whether it asks, and the
/// config file as it was.
struct Run<'a> {
    args: &'a SetupArgs,
    ctx: &'a Context,
    ask: Asker,
    interactive: bool,
    /// The config file's text ("" when it does not exist yet).
    text: String,
    /// The current settings, for defaults (an invalid file is replaced in
    /// part only; its error shows when the result is checked).
    current: Option<Config>,
}

impl<'a> Run<'a> {
    /// Refuse a non-root caller on the system config, read the file, greet.
    fn start(args: &'a SetupArgs, ctx: &'a Context) -> Result<Run<'a>> {
        let interactive = !args.yes && args.secret != SecretFrom::Stdin && prompt::is_terminal();
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
        let current = Config::parse(&text, path).ok();
        if interactive {
            crate::stdout::line(format_args!(
                "Postern setup: the smart host mail from this machine goes through."
            ));
            crate::stdout::line(format_args!(
                "Configuration: {} (the rest of the file is kept). Press Enter to take the [default].\n",
                path.display()
            ));
        }
        Ok(Run {
            args,
            ctx,
            ask: Asker { interactive },
            interactive,
            text,
            current,
        })
    }

    fn path(&self) -> &Path {
        &self.ctx.config_path
    }

    /// `--provider`, a menu, or generic when only `--host` is given.
    fn provider(&self) -> Result<Provider> {
        match &self.args.provider {
            Some(n) => Provider::from_name(n).ok_or_else(|| {
                usage(format!(
                    "unknown provider {n:?}; one of: {}",
                    presets::ALL.map(Provider::name).join(", ")
                ))
            }),
            None if self.interactive => {
                for (i, p) in presets::ALL.iter().enumerate() {
                    crate::stdout::line(format_args!(
                        "  {}) {:<13} {}",
                        i + 1,
                        p.name(),
                        p.label()
                    ));
                }
                let def = current_provider(&self.text).unwrap_or(Provider::SendGrid);
                loop {
                    let a = self.ask.value(None, "Provider", Some(def.name()))?;
                    let pick = a
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| presets::ALL.get(i.wrapping_sub(1)).copied())
                        .or_else(|| Provider::from_name(&a));
                    match pick {
                        Some(p) => return Ok(p),
                        None => crate::stdout::line(format_args!(
                            "Please give a number from 1 to 7 or a name."
                        )),
                    }
                }
            }
            None if self.args.host.is_some() => Ok(Provider::Generic),
            None => Err(usage(format!(
                "--provider is needed (one of: {}), or --host for a generic relay",
                presets::ALL.map(Provider::name).join(", ")
            ))),
        }
    }

    /// The region (where the provider has them) and the relay's host name.
    fn host(&self, provider: Provider, cur: Option<&crate::config::Relay>) -> Result<String> {
        let region = match provider.region() {
            Some((q, def)) => {
                let r = self.ask.value(self.args.region.clone(), q, Some(def))?;
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
        let host = match (&self.args.host, provider.host(region.as_deref())) {
            (Some(h), _) => h.clone(),
            (None, Some(h)) => h,
            (None, None) => {
                let def = cur.map(|r| r.host.clone());
                let h = self.ask.value(None, "Relay host name", def.as_deref())?;
                if h.is_empty() {
                    return Err(usage("--host is needed for a generic relay"));
                }
                h
            }
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/' || c == '"') {
            return Err(usage(format!("{host:?} is not a host name")));
        }
        Ok(host)
    }

    /// The port (the provider's first by default) and the TLS mode.
    fn port_and_tls(
        &self,
        provider: Provider,
        cur: Option<&crate::config::Relay>,
        host: &str,
    ) -> Result<(u16, TlsMode)> {
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
        let port_s = self
            .ask
            .value(self.args.port.map(|p| p.to_string()), &q, Some(&def_port))?;
        let port: u16 = port_s
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| usage(format!("{port_s:?} is not a port")))?;
        let tls = match self.args.tls {
            Some(t) => t,
            None if provider == Provider::Generic && self.interactive => {
                let def = presets::tls_name(presets::tls_for_port(port));
                let a = self
                    .ask
                    .value(None, "TLS (starttls, tls or none)", Some(def))?;
                parse_tls(&a).ok_or_else(|| usage(format!("{a:?} is not starttls, tls or none")))?
            }
            None => presets::tls_for_port(port),
        };
        if tls == TlsMode::None && !crate::config::is_loopback_host(host) {
            return Err(usage(
                "tls none is only for a relay on this machine (localhost); use starttls or tls",
            ));
        }
        Ok((port, tls))
    }

    /// The SASL user name (fixed by some providers); None: no AUTH.
    fn user(
        &self,
        provider: Provider,
        cur: Option<&crate::config::Relay>,
    ) -> Result<Option<String>> {
        let user = match (&self.args.user, provider.fixed_user()) {
            (Some(u), _) => Some(u.clone()),
            (None, Some(u)) => Some(u.to_string()),
            (None, None) => {
                let def = cur.and_then(|r| r.username.clone());
                let q = format!("User name ({})", provider.user_hint());
                let u = self.ask.value(None, &q, def.as_deref())?;
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
        Ok(user)
    }

    /// Where the secret lives: `--password-file`, the current relay's, or
    /// the default beside the config.
    fn password_file(&self, cur_relay: Option<&crate::config::Relay>) -> PathBuf {
        match &self.args.password_file {
            Some(p) => p.clone(),
            None => cur_relay
                .and_then(|r| r.password_file.clone())
                .unwrap_or_else(|| {
                    if self.ctx.system {
                        PathBuf::from(DEFAULT_SECRET)
                    } else {
                        self.path()
                            .parent()
                            .unwrap_or(Path::new("."))
                            .join("relay.secret")
                    }
                }),
        }
    }

    /// A new secret from a file, stdin or the prompt (never argv); None
    /// keeps the secret file `pf` as it is.
    fn secret(&self, provider: Provider, pf: &Path) -> Result<Option<String>> {
        let s = match &self.args.secret {
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
            SecretFrom::Ask if self.interactive => {
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
                        Err(why) => crate::stdout::line(format_args!("{why}; again.")),
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
        Ok(s)
    }

    /// The envelope sender the relay accepts (`[addresses] sender`); None
    /// leaves the file's as it is.
    fn sender(&self) -> Result<Option<String>> {
        let def_from = self
            .current
            .as_ref()
            .and_then(|c| c.addresses.sender.clone());
        let from = self.ask.value(
            self.args.from.clone(),
            "Sender address the relay accepts (a verified address; empty: leave as it is)",
            def_from.as_deref(),
        )?;
        if from.is_empty() || Some(&from) == def_from.as_ref() && self.args.from.is_none() {
            return Ok(None);
        }
        if !plausible_address(&from) {
            return Err(usage(format!("{from:?} is not an address")));
        }
        Ok(Some(from))
    }

    /// Show what will be written; ask when interactive.
    fn confirm(&self, spec: &RelaySpec, new_secret: Option<&String>) -> Result<bool> {
        let user_txt = spec
            .username
            .as_ref()
            .map(|u| {
                if Some(u) == new_secret {
                    "the token".to_string()
                } else {
                    format!("user {u}")
                }
            })
            .unwrap_or_else(|| "no AUTH".into());
        crate::stdout::line(format_args!(
            "\nRelay: {} port {}, {}, {user_txt}",
            spec.host,
            spec.port,
            presets::tls_name(spec.tls)
        ));
        if self.interactive {
            return prompt::yes_no("Write this configuration?", true)
                .map_err(|e| io_err("setup", &e));
        }
        Ok(true)
    }

    /// The secret first, so the config never names a missing file; then
    /// the config.
    fn write(
        &self,
        edited: &edit::Edited,
        pf: Option<&Path>,
        new_secret: Option<&str>,
    ) -> Result<()> {
        if let (Some(pf), Some(s)) = (pf, new_secret) {
            let access = secret::write(pf, s).map_err(|e| {
                Error::io(
                    Kind::CantCreat,
                    format!("cannot write the secret file {}", pf.display()),
                    &e,
                )
            })?;
            match access {
                secret::Access::RootPostern => crate::stdout::line(format_args!(
                    "Secret written to {} (root:{} mode 0640).",
                    pf.display(),
                    secret::GROUP
                )),
                secret::Access::CallerOnly => {
                    let why = if nix::unistd::geteuid().is_root() {
                        format!("there is no group {}", secret::GROUP)
                    } else {
                        "not run as root".to_string()
                    };
                    crate::stdout::line(format_args!(
                        "Secret written to {} (mode 0600, owned by you: {why}). The daemon (user postern) reads it only as root:postern 0640: chown root:postern {0} && chmod 640 {0}",
                        pf.display()
                    ));
                }
            }
        } else if let Some(pf) = pf {
            crate::stdout::line(format_args!("Secret kept in {}.", pf.display()));
        }
        let path = self.path();
        write_config(path, &edited.text).map_err(|e| {
            Error::io(
                Kind::CantCreat,
                format!("cannot write {}", path.display()),
                &e,
            )
        })?;
        crate::stdout::line(format_args!(
            "{} the relay in {}.",
            if edited.replaced { "Replaced" } else { "Wrote" },
            path.display()
        ));
        if edited.disabled > 0 {
            crate::stdout::line(format_args!(
                "{} relay(s) written by hand are now comments in that file.",
                edited.disabled
            ));
        }
        Ok(())
    }

    /// Reload the daemon, then probe with what it now reads; the config
    /// and `postern check`'s exit code.
    fn reload_and_probe(&self, provider: Provider, user: Option<&str>) -> Result<(Config, u8)> {
        let source = if self.ctx.system {
            ConfigSource::System
        } else {
            ConfigSource::Unprivileged(Some(self.path().to_path_buf()))
        };
        let cfg = Config::load(&source)?;
        let spool = crate::spool::Spool::new(&cfg.spool_dir);
        crate::stdout::line(format_args!("{}", reload::reload(self.ctx.system, &spool)));
        crate::stdout::line(format_args!(
            "\nChecking the relay (as `postern check` does):"
        ));
        // Postmark's server token as the user name: the report names the
        // user, so it runs in a child whose output is shown with the token
        // hidden.
        let token_user =
            user.filter(|_| provider == Provider::Postmark && self.args.user.is_none());
        let code = match token_user {
            None => crate::check::command(&cfg)?,
            Some(token) => probe_hiding(self.ctx, token)?,
        };
        Ok((cfg, code))
    }

    /// `--test-to` (or asked): a test message through `sendmail -bs`, then
    /// where it went.
    fn test_message(
        &self,
        cfg: &Config,
        from: Option<String>,
        host: &str,
        port: u16,
    ) -> Result<u8> {
        let to = match &self.args.test_to {
            Some(t) => Some(t.clone()),
            None if self.interactive => {
                let t = self
                    .ask
                    .value(None, "\nSend a test message to (empty: skip)", None)?;
                if t.is_empty() { None } else { Some(t) }
            }
            None => None,
        };
        let Some(to) = to else {
            crate::stdout::line(format_args!(
                "\nDone. Mail from this machine now goes through {host}."
            ));
            return Ok(0);
        };
        if !plausible_address(&to) {
            return Err(usage(format!("{to:?} is not an address")));
        }
        let sender = from.or_else(|| cfg.addresses.sender.clone());
        let id = testmsg::send(cfg, self.ctx, sender.as_deref(), &to, host, port)?;
        crate::stdout::line(format_args!("Test message to {to} queued as {id}."));
        let spool = crate::spool::Spool::new(&cfg.spool_dir);
        testmsg::follow(cfg, &spool, &id);
        Ok(0)
    }
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
    crate::stdout::text(format_args!("{}", hide(&o.stdout)));
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
