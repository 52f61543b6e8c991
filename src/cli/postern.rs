//! The `postern` admin command line: `postern [-C FILE] [-v] COMMAND …`.
//!
//! Pure parsing, no I/O (it runs before the privilege drop).

use crate::error::{Error, Kind, Result};
use crate::privilege::Intent;
use crate::setup::{SecretFrom, SetupArgs};
use std::path::PathBuf;

/// Which messages a queue command acts on (the spool's request-entry
/// target: a command and the request it may become name the same thing).
pub use crate::spool::request::Target;

/// An admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the queue runner in the foreground (systemd).
    Daemon,
    /// Deliver what is in the queue once, in this process, then exit.
    QueueRun {
        /// The detached run a submission starts (steps aside for a daemon).
        auto: bool,
    },
    /// List the queue.
    QueueList {
        /// One JSON object per line.
        json: bool,
        /// Only held messages.
        held: bool,
        /// Only this submitter's messages (user name or uid).
        user: Option<String>,
    },
    /// Show one message.
    QueueShow {
        /// Queue id.
        id: String,
        /// JSON output.
        json: bool,
        /// Include the body (root only).
        body: bool,
    },
    /// Delete messages.
    QueueDelete(Target),
    /// Put a message on hold.
    QueueHold(String),
    /// Release held messages (one, a user's, a storm's).
    QueueRelease(Target),
    /// List the suppressed recipients.
    QueueSuppressed {
        /// JSON lines.
        json: bool,
    },
    /// Take a recipient (or `ALL`) off the suppression list.
    QueueUnsuppress(String),
    /// Retry now.
    QueueRetry(Target),
    /// Return to sender now.
    QueueBounce(String),
    /// Deliver everything deferred now (`sendmail -q`).
    Flush,
    /// Probe every relay.
    Check,
    /// Metrics.
    Stats {
        /// Prometheus text format.
        prometheus: bool,
        /// JSON.
        json: bool,
    },
    /// Health summary.
    Status {
        /// JSON.
        json: bool,
    },
    /// Configure the relay, the secret, reload, probe, test message.
    Setup(SetupArgs),
    /// Obtain the first OAuth2 refresh token of a relay (by host,
    /// `host:port` or position).
    OAuth2Login(String),
    /// Behave as sendmail with these arguments.
    Sendmail(Vec<String>),
    /// Print usage.
    Help,
    /// Print the version.
    Version,
}

impl Command {
    /// What the privileged start-up must prepare for this command (no
    /// wildcard: a new command must say).
    pub fn intent(&self) -> Intent {
        match self {
            Command::QueueList { .. }
            | Command::QueueShow { .. }
            | Command::Status { .. }
            | Command::Stats { .. }
            | Command::QueueSuppressed { .. } => Intent::ListQueue,
            Command::Flush => Intent::Poke,
            // A queue change by a caller who cannot write the queue (a user
            // deleting their own mail, a member of group postern) becomes a
            // request entry in maildrop, applied by the daemon.
            Command::QueueDelete(_)
            | Command::QueueHold(_)
            | Command::QueueRelease(_)
            | Command::QueueRetry(_)
            | Command::QueueBounce(_) => Intent::SubmitOne,
            // `cli::parse` turns `postern sendmail ARGS` into a sendmail
            // invocation, which says its own intent.
            Command::Sendmail(_) => Intent::Nothing,
            // Setup edits files as its caller and submits its test message
            // through a child `sendmail -bs`, which says its own intent.
            Command::Setup(_) => Intent::Nothing,
            // Writes the relay's refresh_token_file as its caller (root).
            Command::OAuth2Login(_) => Intent::Nothing,
            // Only the spool owner (or root, who becomes it) writes the
            // guard's counters: no request entry.
            Command::QueueUnsuppress(_) => Intent::Nothing,
            Command::Daemon
            | Command::QueueRun { .. }
            | Command::Check
            | Command::Help
            | Command::Version => Intent::Nothing,
        }
    }
}

/// Parsed `postern` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosternArgs {
    /// `-C FILE`.
    pub config: Option<PathBuf>,
    /// `-v`.
    pub verbose: bool,
    /// The command.
    pub command: Command,
}

/// Usage text of `postern --help`.
pub const USAGE: &str = "\
usage: postern [-C FILE] [-v] COMMAND [ARGS]

Postern is a sendmail-compatible mail relay: it queues mail from local programs
and delivers it through an authenticated smart host.

Commands:
  daemon                  run the queue runner in the foreground (systemd runs this)
  flush                   deliver everything deferred now (same as sendmail -q)
  check                   connect to each relay: TLS, certificate, AUTH, size limit
  setup [OPTIONS]         configure the relay and its secret, reload, check, send a test
                          message (asks on a terminal; see postern(8) for the options)
  oauth2 login RELAY      obtain and store a relay's first OAuth2 refresh token
                          (device code, or a browser sign-in; RELAY: host or position)
  status [--json]         daemon, last delivery, relays, oldest deferred; exit 1 when mail is stuck
  stats [--prometheus|--json]
                          accepted/sent/deferred/bounced, delays, per-relay results
  queue list [--json] [--held] [--user U]
                          list queued messages (also: mailq, sendmail -bp)
  queue show ID [--json] [--body]
  queue delete ID|ALL|--deferred|--user U|--storm ID
  queue hold ID           keep a message from being delivered
  queue release ID|--user U|--storm ID
                          release held mail (delivered once)
  queue suppressed [--json]
                          recipients suppressed after a permanent 5.1.x failure
  queue unsuppress ADDRESS|ALL
                          take a recipient (or every one) off that list
  queue retry ID|ALL      deliver now
  queue bounce ID         return a message to its sender now
  queue run               deliver what is queued in this process, then exit
  sendmail ARGS           behave as sendmail(8)

Options:
  -C FILE                 configuration file (ignored by the installed setgid binary)
  -v                      verbose: show routing and the SMTP dialogue (secrets redacted)
  --help, --version

Configuration: /etc/postern/postern.toml; see postern.toml(5), postern(8), sendmail(8).
";

/// Usage text of `postern setup --help`.
pub const SETUP_USAGE: &str = "\
usage: postern setup [OPTIONS]

Configure the relay mail goes through: writes its [[relay]] block (the rest of
the configuration is kept), the secret file, reloads the daemon, runs the probe
of `postern check` and sends a test message. On a terminal it asks; with --yes
(or without a terminal) everything comes from the options.

  --provider NAME        sendgrid, mailgun, ses, google, microsoft365, postmark, generic
  --host HOST            the relay (generic; overrides a preset)
  --port N               e.g. 587, 465, 2525 (default: the preset's first)
  --tls MODE             starttls, tls or none (default: tls on 465, else starttls)
  --region R             SES region (e.g. eu-west-1); Mailgun: us or eu
  --user NAME            AUTH user name (SendGrid: apikey)
  --secret-file PATH     read the secret from the first line of PATH
  --secret-stdin         read the secret from the first line of standard input
  --password-file PATH   where to write the secret (default /etc/postern/relay.secret)
  --ca-file PATH         extra trust anchor for a private relay
  --from ADDR            the sender address the relay accepts ([addresses] sender)
  --test-to ADDR         send a test message there after a successful probe
  --yes, -y              never ask

The secret is never taken from the command line. See postern(8).
";

fn usage(msg: impl Into<String>) -> Error {
    Error::new(Kind::Usage, msg)
}

fn target(v: Option<&String>, allow_deferred: bool) -> Result<Target> {
    match v.map(String::as_str) {
        Some("ALL") | Some("all") => Ok(Target::All),
        Some("--deferred") if allow_deferred => Ok(Target::Deferred),
        Some(id) if crate::spool::is_valid_id(id) => Ok(Target::Id(id.to_string())),
        Some(other) => Err(usage(format!("{other:?} is not a queue id"))),
        None => Err(usage("a queue id (or ALL) is needed")),
    }
}

/// `--user U` / `--storm ID` among `args`, if given (with its value).
fn bulk_target(args: &[&String]) -> Result<Option<Target>> {
    let value = |flag: &str| -> Result<Option<String>> {
        match args.iter().position(|a| *a == flag) {
            None => Ok(None),
            Some(i) => match args.get(i + 1) {
                Some(v) if !v.starts_with("--") => Ok(Some(v.to_string())),
                _ => Err(usage(format!("{flag} needs a value"))),
            },
        }
    };
    match (value("--user")?, value("--storm")?) {
        (Some(_), Some(_)) => Err(usage("--user and --storm do not go together")),
        (Some(u), None) if crate::spool::request::valid_user(&u) => Ok(Some(Target::User(u))),
        (Some(u), None) => Err(usage(format!("{u:?} is not a user name or uid"))),
        (None, Some(id)) if crate::spool::is_valid_id(&id) => Ok(Some(Target::Storm(id))),
        (None, Some(id)) => Err(usage(format!("{id:?} is not a storm id"))),
        (None, None) => Ok(None),
    }
}

fn one_id(v: Option<&String>) -> Result<String> {
    match v {
        Some(id) if crate::spool::is_valid_id(id) => Ok(id.clone()),
        Some(other) => Err(usage(format!("{other:?} is not a queue id"))),
        None => Err(usage("a queue id is needed")),
    }
}

/// The options of `postern setup` (`--flag VALUE` or `--flag=VALUE`).
/// There is no option for the secret itself: never on argv.
fn parse_setup(args: &[String]) -> Result<SetupArgs> {
    let mut s = SetupArgs::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let takes_value = !matches!(name, "--yes" | "-y" | "--secret-stdin" | "--help" | "-h");
        let v = if takes_value {
            match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| usage(format!("{name} needs a value")))?
                }
            }
        } else {
            if inline.is_some() {
                return Err(usage(format!("{name} takes no value")));
            }
            String::new()
        };
        match name {
            "--provider" => s.provider = Some(v),
            "--host" => s.host = Some(v),
            "--port" => {
                s.port = Some(
                    v.parse()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| usage(format!("--port {v:?} is not a port")))?,
                )
            }
            "--tls" => {
                s.tls = Some(match v.as_str() {
                    "starttls" => crate::config::TlsMode::Starttls,
                    "tls" => crate::config::TlsMode::Tls,
                    "none" => crate::config::TlsMode::None,
                    _ => return Err(usage(format!("--tls {v:?}: starttls, tls or none"))),
                })
            }
            "--region" => s.region = Some(v),
            "--user" => s.user = Some(v),
            "--secret-file" => s.secret = SecretFrom::File(PathBuf::from(v)),
            "--secret-stdin" => s.secret = SecretFrom::Stdin,
            "--password-file" => s.password_file = Some(PathBuf::from(v)),
            "--ca-file" => s.ca_file = Some(PathBuf::from(v)),
            "--from" => s.from = Some(v),
            "--test-to" => s.test_to = Some(v),
            "--yes" | "-y" => s.yes = true,
            "--help" | "-h" => s.help = true,
            "--secret" | "--password" => {
                return Err(usage(format!(
                    "{name}: a secret is never taken from the command line (other users can read it); use --secret-file PATH or --secret-stdin"
                )));
            }
            other => return Err(usage(format!("unknown option {other} for setup"))),
        }
        i += 1;
    }
    Ok(s)
}

/// Parse `postern`'s arguments (without argv[0]).
pub fn parse(args: &[String]) -> Result<PosternArgs> {
    let mut config = None;
    let mut verbose = false;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-C" => {
                config = Some(PathBuf::from(
                    args.get(i + 1).ok_or_else(|| usage("-C needs a file"))?,
                ));
                i += 2;
            }
            s if s.starts_with("-C") && s.len() > 2 => {
                config = Some(PathBuf::from(&s[2..]));
                i += 1;
            }
            "-v" => {
                verbose = true;
                i += 1;
            }
            _ => break,
        }
    }
    let rest = &args[i..];
    let flag = |f: &str| rest.iter().skip(1).any(|a| a == f);
    let positional: Vec<&String> = rest
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let check_flags = |allowed: &[&str]| -> Result<()> {
        for a in rest.iter().skip(1) {
            if a.starts_with("--") && !allowed.contains(&a.as_str()) {
                return Err(usage(format!("unknown option {a}")));
            }
        }
        Ok(())
    };
    let command = match rest.first().map(String::as_str) {
        None | Some("--help") | Some("-h") | Some("help") => Command::Help,
        Some("--version") | Some("version") => Command::Version,
        Some("daemon") => {
            check_flags(&["--foreground"])?;
            Command::Daemon
        }
        Some("flush") => {
            check_flags(&[])?;
            Command::Flush
        }
        Some("check") => {
            check_flags(&[])?;
            Command::Check
        }
        Some("status") => {
            check_flags(&["--json"])?;
            Command::Status {
                json: flag("--json"),
            }
        }
        Some("stats") => {
            check_flags(&["--prometheus", "--json"])?;
            Command::Stats {
                prometheus: flag("--prometheus"),
                json: flag("--json"),
            }
        }
        Some("oauth2") => match (rest.get(1).map(String::as_str), rest.get(2), rest.len()) {
            (Some("login"), Some(relay), 3) if !relay.starts_with('-') => {
                Command::OAuth2Login(relay.clone())
            }
            _ => return Err(usage("usage: postern oauth2 login RELAY")),
        },
        Some("sendmail") => Command::Sendmail(rest[1..].to_vec()),
        Some("setup") => Command::Setup(parse_setup(&rest[1..])?),
        Some("queue") => {
            let sub = rest.get(1).map(String::as_str);
            let args2: Vec<&String> = rest.iter().skip(2).collect();
            let pos2: Vec<&String> = args2
                .iter()
                .copied()
                .filter(|a| !a.starts_with("--") || *a == "--deferred")
                .collect();
            let has = |f: &str| args2.iter().any(|a| *a == f);
            let only = |allowed: &[&str]| -> Result<()> {
                for a in &args2 {
                    if a.starts_with("--") && !allowed.contains(&a.as_str()) {
                        return Err(usage(format!("unknown option {a}")));
                    }
                }
                Ok(())
            };
            match sub {
                Some("list") | None => {
                    only(&["--json", "--held", "--user"])?;
                    let user = match args2.iter().position(|a| *a == "--user") {
                        None => None,
                        Some(i) => match args2.get(i + 1) {
                            Some(v) if crate::spool::request::valid_user(v) => Some(v.to_string()),
                            _ => return Err(usage("--user needs a user name or uid")),
                        },
                    };
                    Command::QueueList {
                        json: has("--json"),
                        held: has("--held"),
                        user,
                    }
                }
                Some("--json") => Command::QueueList {
                    json: true,
                    held: false,
                    user: None,
                },
                Some("show") => {
                    only(&["--json", "--body"])?;
                    Command::QueueShow {
                        id: one_id(pos2.first().copied())?,
                        json: has("--json"),
                        body: has("--body"),
                    }
                }
                Some("delete") => {
                    only(&["--deferred", "--user", "--storm"])?;
                    match bulk_target(&args2)? {
                        Some(t) => Command::QueueDelete(t),
                        None => Command::QueueDelete(target(pos2.first().copied(), true)?),
                    }
                }
                Some("hold") => Command::QueueHold(one_id(pos2.first().copied())?),
                Some("release") => {
                    only(&["--user", "--storm"])?;
                    match bulk_target(&args2)? {
                        Some(t) => Command::QueueRelease(t),
                        None => Command::QueueRelease(Target::Id(one_id(pos2.first().copied())?)),
                    }
                }
                Some("suppressed") => {
                    only(&["--json"])?;
                    Command::QueueSuppressed {
                        json: has("--json"),
                    }
                }
                Some("unsuppress") => {
                    only(&[])?;
                    match pos2.first() {
                        Some(a) if !a.is_empty() && !a.contains(char::is_control) => {
                            Command::QueueUnsuppress(a.to_string())
                        }
                        _ => return Err(usage("an address (or ALL) is needed")),
                    }
                }
                Some("retry") => Command::QueueRetry(target(pos2.first().copied(), false)?),
                Some("bounce") => Command::QueueBounce(one_id(pos2.first().copied())?),
                Some("run") => {
                    only(&["--once", "--auto"])?;
                    Command::QueueRun {
                        auto: has("--auto"),
                    }
                }
                Some(other) => return Err(usage(format!("unknown queue command {other:?}"))),
            }
        }
        Some(other) => {
            return Err(usage(format!(
                "unknown command {other:?} (see postern --help)"
            )));
        }
    };
    let _ = positional;
    Ok(PosternArgs {
        config,
        verbose,
        command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[&str]) -> Result<PosternArgs> {
        parse(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn commands() {
        assert_eq!(p(&["daemon"]).unwrap().command, Command::Daemon);
        let a = p(&["-C", "/x.toml", "-v", "queue", "list", "--json"]).unwrap();
        assert_eq!(a.config, Some(PathBuf::from("/x.toml")));
        assert!(a.verbose);
        assert_eq!(
            a.command,
            Command::QueueList {
                json: true,
                held: false,
                user: None
            }
        );
        assert_eq!(
            p(&["queue", "list", "--held", "--user", "www-data"])
                .unwrap()
                .command,
            Command::QueueList {
                json: false,
                held: true,
                user: Some("www-data".into())
            }
        );
        assert_eq!(
            p(&["queue", "release", "--user", "33"]).unwrap().command,
            Command::QueueRelease(Target::User("33".into()))
        );
        assert_eq!(
            p(&["queue", "delete", "--storm", "1K1D6V0JC6N9J9M"])
                .unwrap()
                .command,
            Command::QueueDelete(Target::Storm("1K1D6V0JC6N9J9M".into()))
        );
        assert!(p(&["queue", "release", "--user"]).is_err());
        assert!(p(&["queue", "release", "--user", "a b"]).is_err());
        assert!(p(&["queue", "release", "--storm", "../x"]).is_err());
        assert_eq!(
            p(&["queue", "delete", "--deferred"]).unwrap().command,
            Command::QueueDelete(Target::Deferred)
        );
        assert_eq!(
            p(&["queue", "retry", "ALL"]).unwrap().command,
            Command::QueueRetry(Target::All)
        );
        assert!(p(&["queue", "show", "../../etc"]).is_err());
        assert!(p(&["frobnicate"]).is_err());
        assert!(p(&["stats", "--bogus"]).is_err());
    }

    #[test]
    fn setup_options() {
        let a = p(&[
            "setup",
            "--provider",
            "sendgrid",
            "--port=2525",
            "--secret-stdin",
            "--from",
            "noreply@example.com",
            "--yes",
        ])
        .unwrap();
        let Command::Setup(s) = a.command else {
            panic!("{a:?}")
        };
        assert_eq!(s.provider.as_deref(), Some("sendgrid"));
        assert_eq!(s.port, Some(2525));
        assert_eq!(s.secret, SecretFrom::Stdin);
        assert!(s.yes);
        assert_eq!(Command::Setup(s).intent(), Intent::Nothing);
        assert!(p(&["setup", "--secret", "hunter2"]).is_err());
        assert!(p(&["setup", "--port", "x"]).is_err());
        assert!(p(&["setup", "--tls", "maybe"]).is_err());
        assert!(p(&["setup", "--host"]).is_err());
    }
}
