//! Dispatch of each personality and command to the library.

use postern::cli::sendmail::{DeliveryMode, Mode, SendmailArgs};
use postern::cli::{self, Invocation};
use postern::config::{Config, ConfigSource};
use postern::error::{Error, Kind, Result};
use postern::logging;
use postern::privilege::Prepared;
use postern::spool::{Spool, maildrop};
use postern::submit::input::{LineReader, Terminator};
use postern::submit::{EntrySource, MessageOptions, Submitter, User};
use std::path::PathBuf;

fn config_source(p: &Prepared, explicit: Option<PathBuf>) -> ConfigSource {
    if p.privileged {
        if explicit.is_some() || std::env::var_os("POSTERN_CONFIG").is_some() {
            eprintln!("postern: warning: -C and POSTERN_CONFIG are ignored by the installed set-group-id binary");
        }
        ConfigSource::System
    } else {
        ConfigSource::Unprivileged(
            explicit.or_else(|| std::env::var_os("POSTERN_CONFIG").map(PathBuf::from)),
        )
    }
}

fn load_config(p: &Prepared, explicit: Option<PathBuf>) -> Result<Config> {
    Config::load(&config_source(p, explicit))
}

/// Run the parsed invocation; returns the exit code on success.
pub fn run(mut p: Prepared) -> Result<u8> {
    let inv = std::mem::replace(
        &mut p.invocation,
        Err(Error::new(Kind::Software, "invocation taken")),
    );
    let inv = match inv {
        Ok(i) => i,
        Err(e) => {
            logging::init(logging::Target::Stderr, true, false);
            return Err(e);
        }
    };
    match inv {
        Invocation::Sendmail(a) => sendmail(p, a),
        Invocation::Mailq { .. } | Invocation::Newaliases { .. } | Invocation::Postern(_) => {
            logging::init(logging::Target::Stderr, false, false);
            Err(Error::new(Kind::Software, "not implemented yet"))
        }
    }
}

fn sendmail(mut p: Prepared, a: SendmailArgs) -> Result<u8> {
    if a.help {
        print!("{}", cli::SENDMAIL_USAGE);
        return Ok(0);
    }
    let cfg = match load_config(&p, a.config.clone()) {
        Ok(c) => c,
        Err(e) => {
            logging::init(logging::Target::Syslog, true, a.verbose);
            return Err(e);
        }
    };
    logging::init(logging::Target::from_config(&cfg.log), true, a.verbose);
    if !a.ignored.is_empty() {
        log::debug!("ignored legacy options: {}", a.ignored.join(" "));
    }
    match a.mode {
        Mode::Deliver | Mode::Smtp => {}
        _ => return Err(Error::new(Kind::Software, "not implemented yet")),
    }
    let spool = Spool::new(&cfg.spool_dir);
    let (dir, source) = if p.privileged {
        let dir = match p.maildrop_dir.take() {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                return Err(Error::io(
                    postern::error::spool_write_kind(&e),
                    format!("cannot open the spool {}", spool.maildrop().display()),
                    &e,
                ));
            }
            None => return Err(Error::new(Kind::Software, "maildrop not prepared")),
        };
        let source = match a.mode {
            Mode::Smtp => match p.opener.take() {
                Some(Ok(o)) => EntrySource::Opener(o),
                Some(Err(e)) => {
                    return Err(Error::io(Kind::TempFail, "cannot start the entry helper", &e));
                }
                None => return Err(Error::new(Kind::Software, "entry helper not prepared")),
            },
            _ => EntrySource::Preopened(p.entry.take()),
        };
        (dir, source)
    } else {
        spool.ensure_layout().map_err(|e| {
            Error::io(
                postern::error::spool_write_kind(&e),
                format!("cannot create the spool {}", spool.root().display()),
                &e,
            )
        })?;
        let dir = maildrop::open_dir(&spool.maildrop()).map_err(|e| {
            Error::io(
                postern::error::spool_write_kind(&e),
                format!("cannot open the spool {}", spool.maildrop().display()),
                &e,
            )
        })?;
        (dir, EntrySource::Direct)
    };
    let user = User::lookup(p.uid);
    let mut sub = Submitter::new(&cfg, user, source, dir);
    if a.mode == Mode::Smtp {
        let stdin = std::io::stdin();
        let stdout = std::io::stdout();
        let committed = postern::submit::smtpd::run(&mut sub, stdin.lock(), stdout.lock())?;
        let _ = committed;
        return Ok(0);
    }
    let sender = match &a.sender {
        Some(s) => sub.parse_sender(s)?,
        None => sub.default_sender(),
    };
    let mut recipients = Vec::new();
    for r in &a.recipients {
        recipients.push(sub.parse_recipient(r)?);
    }
    let opts = MessageOptions {
        sender,
        recipients,
        extract: a.extract,
        fullname: a.fullname.clone(),
        notify: a.notify.clone(),
        ret: a.ret.clone(),
        envid: a.envid.clone(),
    };
    let term = if a.ignore_dots {
        Terminator::Eof
    } else {
        Terminator::DotOrEof
    };
    let stdin = std::io::stdin();
    let mut reader = LineReader::new(std::io::BufReader::with_capacity(64 * 1024, stdin.lock()), term);
    let committed = sub.submit(&mut reader, &opts)?;
    let _ = (committed, DeliveryMode::Background);
    Ok(0)
}
