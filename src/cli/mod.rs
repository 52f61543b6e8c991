//! Which personality the binary has (argv[0]) and its parsed arguments.
//!
//! `sendmail`/`send-mail` (and any unknown name) → sendmail grammar;
//! `mailq` → queue listing; `newaliases` → aliases check; `postern` → admin
//! commands. Parsing is pure and runs before the privilege drop, and the
//! parsed command says what the privileged start-up must prepare for it
//! ([`Invocation::intent`]: exhaustive, so a new command must say).

pub mod postern;
pub mod sendmail;

use crate::error::{Error, Kind, Result};
use crate::privilege::Intent;

/// What the process was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// The sendmail interface.
    Sendmail(sendmail::SendmailArgs),
    /// `mailq`.
    Mailq {
        /// JSON output.
        json: bool,
        /// `-C FILE`.
        config: Option<std::path::PathBuf>,
        /// `-v`.
        verbose: bool,
        /// `--help`.
        help: bool,
    },
    /// `newaliases`.
    Newaliases {
        /// `-C FILE`.
        config: Option<std::path::PathBuf>,
    },
    /// The admin interface.
    Postern(postern::PosternArgs),
}

impl Invocation {
    /// What the privileged start-up must prepare for this command.
    pub fn intent(&self) -> Intent {
        match self {
            Invocation::Sendmail(a) => a.intent(),
            Invocation::Mailq { .. } => Intent::ListQueue,
            Invocation::Newaliases { .. } => Intent::Nothing,
            Invocation::Postern(p) => p.command.intent(),
        }
    }
}

/// The program name used in messages (`sendmail`, `mailq`, …).
pub fn program_name(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

/// Parse the whole argv.
pub fn parse(argv: &[String]) -> Result<Invocation> {
    let name = argv.first().map(|s| program_name(s)).unwrap_or("sendmail");
    let rest = argv.get(1..).unwrap_or(&[]);
    match name {
        "mailq" => {
            let mut json = false;
            let mut config = None;
            let mut verbose = false;
            let mut help = false;
            let mut i = 0;
            while i < rest.len() {
                match rest[i].as_str() {
                    "--json" => json = true,
                    "-v" => verbose = true,
                    "-C" => {
                        i += 1;
                        config = rest.get(i).map(std::path::PathBuf::from);
                    }
                    "--help" => help = true,
                    s if s.starts_with("-A") || s.starts_with("-q") => {}
                    other => {
                        return Err(Error::new(
                            Kind::Usage,
                            format!("unknown option {other} (usage: mailq [--json])"),
                        ));
                    }
                }
                i += 1;
            }
            Ok(Invocation::Mailq {
                json,
                config,
                verbose,
                help,
            })
        }
        "newaliases" => {
            let mut config = None;
            let mut i = 0;
            while i < rest.len() {
                if rest[i] == "-C" {
                    config = rest.get(i + 1).map(std::path::PathBuf::from);
                    i += 1;
                }
                i += 1;
            }
            Ok(Invocation::Newaliases { config })
        }
        "postern" => {
            let p = postern::parse(rest)?;
            if let postern::Command::Sendmail(args) = &p.command {
                let mut s = sendmail::parse(args)?;
                if s.config.is_none() {
                    s.config = p.config.clone();
                }
                s.verbose |= p.verbose;
                return Ok(Invocation::Sendmail(s));
            }
            Ok(Invocation::Postern(p))
        }
        _ => Ok(Invocation::Sendmail(sendmail::parse(rest)?)),
    }
}

/// Usage text of `sendmail --help`.
pub const SENDMAIL_USAGE: &str = "\
usage: sendmail [options] [recipient ...] < message

Postern's sendmail interface: the message on stdin is queued durably and
delivered in the background through the configured smart host.

  -t              also take recipients from To, Cc, Bcc (Resent-* when present)
  -i, -oi         a line with a single dot does not end the message
  -f ADDR, -r ADDR  envelope sender ('<>' for the null sender)
  -F NAME         full name for a generated From header
  -bm             read a message from stdin (default)
  -bs             SMTP dialogue on stdin/stdout
  -bp             list the queue (= mailq)
  -bi             check the aliases file (= newaliases)
  -bv             show how each recipient would be routed; deliver nothing
  -q              deliver the queue now (-q30m: accepted; the daemon keeps the schedule)
  -odb            deliver in the background (default)
  -odi            deliver before returning; the exit status reports the result
  -odq            queue only
  -oem -oep -oeq -oew  error reporting (errors are always on stderr and in the exit status)
  -N never|success,failure,delay   DSN notify;  -R full|hdrs  DSN return;  -V ID  envelope id
  -v              verbose: routing and the SMTP dialogue (secrets redacted)
  -C FILE         configuration file (ignored by the installed setgid binary)
  -B, -L, -h, -n, -m, -U, -X, -A, -o…, -O…  accepted and ignored

Exit status: 0 queued (or delivered), 64 usage, 65 bad data, 67 a local name
that resolves nowhere (unknown_local = \"reject\"), 69 refused (-odi), 73
cannot create the queue file, 75 temporary failure (nothing queued, try
again), 78 configuration error. See sendmail(8).
";

#[cfg(test)]
mod tests {
    use super::*;

    fn intent_of(argv: &[&str]) -> Intent {
        parse(&argv.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
            .intent()
    }

    #[test]
    fn every_command_says_what_the_privileged_start_up_prepares() {
        assert_eq!(intent_of(&["sendmail", "a@b"]), Intent::SubmitOne);
        assert_eq!(intent_of(&["sendmail", "--help"]), Intent::Nothing);
        assert_eq!(intent_of(&["sendmail", "-bs"]), Intent::SubmitMany);
        assert_eq!(intent_of(&["sendmail", "-bp"]), Intent::ListQueue);
        assert_eq!(intent_of(&["sendmail", "-q"]), Intent::Poke);
        assert_eq!(intent_of(&["sendmail", "-bi"]), Intent::Nothing);
        assert_eq!(intent_of(&["mailq"]), Intent::ListQueue);
        assert_eq!(intent_of(&["newaliases"]), Intent::Nothing);
        assert_eq!(
            intent_of(&["postern", "sendmail", "-bs"]),
            Intent::SubmitMany
        );
        assert_eq!(intent_of(&["postern", "status"]), Intent::ListQueue);
        assert_eq!(intent_of(&["postern", "flush"]), Intent::Poke);
        assert_eq!(intent_of(&["postern", "daemon"]), Intent::Nothing);
        for change in [
            &["postern", "queue", "delete", "1K1D6V0JC6N9J9M"][..],
            &["postern", "queue", "hold", "1K1D6V0JC6N9J9M"],
            &["postern", "queue", "retry", "ALL"],
            &["postern", "queue", "bounce", "1K1D6V0JC6N9J9M"],
        ] {
            assert_eq!(intent_of(change), Intent::SubmitOne, "{change:?}");
        }
    }
}
