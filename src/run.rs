//! The one dispatcher: each personality and command, routed to the service
//! or library code that does it (admin exposes only its verbs).

use postern::admin::{self, Op, Target};
use postern::cli::postern::{Command, PosternArgs};
use postern::cli::sendmail::{DeliveryMode, Mode, SendmailArgs};
use postern::cli::{self, Invocation};
use postern::config::{Config, ConfigSource};
use postern::daemon::handoff::Handoff;
use postern::daemon::{self, Selection};

/// How every queue run started from here applies users' request entries:
/// the admin service's, handed to the daemon (which never names admin).
const REQUESTS: daemon::RequestHandler = postern::admin::requests::handle;
use postern::error::{Error, Kind, Result, spool_write_kind};
use postern::logging;
use postern::privilege::Prepared;
use postern::spool::{Spool, maildrop};
use postern::submit::input::{LineReader, Terminator};
use postern::submit::{EntrySource, MessageOptions, Submitter, User};
use std::path::PathBuf;

fn explicit_config(p: &Prepared, explicit: Option<PathBuf>) -> Option<PathBuf> {
    if p.privileged {
        None
    } else {
        explicit.or_else(|| std::env::var_os("POSTERN_CONFIG").map(PathBuf::from))
    }
}

fn load_config(
    p: &Prepared,
    explicit: Option<PathBuf>,
    quiet_stderr: bool,
    verbose: bool,
) -> Result<(Config, ConfigSource)> {
    if p.privileged && explicit.is_some() {
        eprintln!("postern: warning: -C is ignored by the installed set-group-id binary");
    }
    let source = if p.privileged {
        ConfigSource::System
    } else {
        ConfigSource::unprivileged(explicit_config(p, explicit))
    };
    match Config::load(&source) {
        Ok(c) => {
            logging::init(logging::Target::from_config(&c.log), quiet_stderr, verbose);
            Ok((c, source))
        }
        Err(e) => {
            logging::init(logging::Target::Syslog, quiet_stderr, verbose);
            Err(e)
        }
    }
}

/// Run the parsed invocation (the one dispatcher: every command is routed
/// here); returns the exit code on success.
pub fn run(mut p: Prepared, inv: Result<Invocation>) -> Result<u8> {
    let inv = match inv {
        Ok(i) => i,
        Err(e) => {
            logging::init(logging::Target::Stderr, true, false);
            return Err(e);
        }
    };
    match inv {
        Invocation::Sendmail(a) => sendmail(p, a),
        Invocation::Mailq { help: true, .. } => {
            postern::stdout::line(format_args!(
                "usage: mailq [--json] [-v]\n\nList the mail queue (Postfix style); --json prints one JSON object per message."
            ));
            Ok(0)
        }
        Invocation::Mailq {
            json,
            config,
            verbose,
            ..
        } => {
            let (cfg, _) = load_config(&p, config, false, verbose)?;
            list_queue(&mut p, &cfg, json, false, None)
        }
        Invocation::Newaliases { config } => {
            let (cfg, _) = load_config(&p, config, false, false)?;
            postern::address::aliases::newaliases(&cfg)
        }
        Invocation::Postern(a) => admin(p, a),
    }
}

/// The names waiting in maildrop (through the directory opened before the
/// drop when there is one).
fn incoming(p: &mut Prepared, spool: &Spool) -> Vec<String> {
    match p.maildrop_dir.take() {
        Some(Ok(dir)) => postern::spool::maildrop::names(dir),
        _ => postern::spool::queue::list_ids(&spool.maildrop()).unwrap_or_default(),
    }
}

/// The caller of an admin verb: who asks, and what was opened for it
/// before the drop.
fn caller(p: &mut Prepared) -> admin::Caller {
    admin::Caller {
        privileged: p.privileged,
        uid: p.uid,
        gid: p.gid,
        entry: p.entry.take(),
        maildrop_dir: p.maildrop_dir.take(),
        trigger: p.trigger.take(),
    }
}

fn list_queue(
    p: &mut Prepared,
    cfg: &Config,
    json: bool,
    held: bool,
    user: Option<&str>,
) -> Result<u8> {
    let spool = Spool::new(&cfg.spool_dir);
    let incoming = incoming(p, &spool);
    if !spool.state().is_dir() && !p.privileged {
        // A development spool that was never used.
        if json {
            return Ok(0);
        }
        postern::stdout::line(format_args!("Mail queue is empty"));
        return Ok(0);
    }
    let mut items = postern::mailq::collect(&spool, incoming);
    if held || user.is_some() {
        let uid = match user {
            Some(u) => Some(
                postern::guard::resolve_user(u)
                    .ok_or_else(|| Error::new(Kind::NoUser, format!("{u:?}: no such user")))?,
            ),
            None => None,
        };
        items.retain(|it| postern::mailq::matches(it, held, uid));
    }
    let waiting =
        postern::mailq::Waiting::read(&spool, &items, p.uid, std::mem::take(&mut p.own_waiting));
    if json {
        for it in &items {
            postern::stdout::line(format_args!("{}", postern::mailq::json(it, &waiting)));
        }
    } else {
        postern::stdout::text(format_args!("{}", postern::mailq::text(&items, &waiting)));
    }
    Ok(0)
}

fn may_deliver(p: &Prepared, cfg: &Config) -> bool {
    daemon::may_run_queue(p.privileged, p.uid, &Spool::new(&cfg.spool_dir))
}

fn flush(p: &mut Prepared, cfg: &Config) -> Result<u8> {
    let spool = Spool::new(&cfg.spool_dir);
    let byte = daemon::flush_byte(p.privileged, p.uid, &spool);
    if let Some(f) = p.take_trigger(&spool)
        && daemon::poke(&f, byte)
    {
        if byte == b'F' {
            log::info!("asked the daemon to deliver the whole queue now");
        } else {
            log::info!(
                "asked the daemon to deliver what is due now (a user's flush keeps retry times; only root's flushes everything)"
            );
        }
        return Ok(0);
    }
    if !may_deliver(p, cfg) {
        return Err(Error::new(
            Kind::TempFail,
            "no postern daemon is running (start postern.service); only root can run the queue directly",
        ));
    }
    let results = daemon::run_once(cfg.clone(), Selection::All, REQUESTS)?;
    log::debug!("queue run: {} message(s) attempted", results.len());
    Ok(0)
}

fn sendmail(mut p: Prepared, a: SendmailArgs) -> Result<u8> {
    if a.help {
        postern::stdout::text(format_args!("{}", cli::SENDMAIL_USAGE));
        return Ok(0);
    }
    let quiet = matches!(a.mode, Mode::Deliver | Mode::Smtp);
    let (cfg, _) = load_config(&p, a.config.clone(), quiet, a.verbose)?;
    if !a.ignored.is_empty() {
        log::debug!("ignored legacy options: {}", a.ignored.join(" "));
    }
    match &a.mode {
        Mode::Deliver | Mode::Smtp => {}
        Mode::List => return list_queue(&mut p, &cfg, false, false, None),
        Mode::Aliases => return postern::address::aliases::newaliases(&cfg),
        Mode::Verify => {
            let sender = match a.sender.as_deref().map(str::trim) {
                None => format!("{}@{}", User::lookup(p.uid).name, cfg.domain),
                Some("" | "<>") => String::new(),
                Some(s) if !s.contains('@') => format!("{s}@{}", cfg.domain),
                Some(s) => s.trim_matches(['<', '>']).to_string(),
            };
            return postern::verify::verify(&cfg, &a.recipients, &sender);
        }
        Mode::RunQueue(None) => return flush(&mut p, &cfg),
        Mode::RunQueue(Some(interval)) => {
            postern::config::parse_duration(interval)
                .map_err(|e| Error::new(Kind::Usage, format!("-q{interval}: {e}")))?;
            log::info!("-q{interval}: the postern daemon schedules retries itself; nothing to do");
            return Ok(0);
        }
    }
    let spool = Spool::new(&cfg.spool_dir);
    let (dir, source) = entry_source(&mut p, &spool, &a.mode)?;
    let maildrop_handle = if p.privileged {
        dir.try_clone().ok()
    } else {
        None
    };
    let mut sub = Submitter::new(&cfg, User::lookup(p.uid), source, dir);
    let committed = if a.mode == Mode::Smtp {
        let stdin = std::io::stdin();
        let stdout = std::io::stdout();
        postern::submit::smtpd::run(&mut sub, stdin.lock(), stdout.lock())?
    } else {
        match submit_stdin(&mut sub, &a) {
            Ok(c) => vec![c],
            Err(e) => {
                // The entry opened for this message is abandoned: close it
                // (which releases its lock) and wake the daemon so that it
                // is removed now rather than at the daemon's next run.
                drop(sub);
                if let Some(f) = p.take_trigger(&spool) {
                    daemon::poke(&f, b'W');
                }
                return Err(e);
            }
        }
    };
    let handoff = Handoff {
        cfg: &cfg,
        requests: REQUESTS,
        privileged: p.privileged,
        uid: p.uid,
        trigger: p.take_trigger(&spool),
        config_path: explicit_config(&p, a.config.clone()),
        maildrop: maildrop_handle,
    };
    let mode = match (&a.mode, a.delivery) {
        // An SMTP session reports per message; -odi has no meaning there.
        (Mode::Smtp, DeliveryMode::Interactive) => DeliveryMode::Background,
        (_, d) => d,
    };
    handoff.run(&committed, mode)
}

/// The maildrop directory and where this process's entries come from: what
/// the set-gid step opened (installed binary), or the spool itself
/// (unprivileged development setup, created on first use).
fn entry_source(
    p: &mut Prepared,
    spool: &Spool,
    mode: &Mode,
) -> Result<(std::fs::File, EntrySource)> {
    let open_err = |e: std::io::Error, what: &str, path: &std::path::Path| {
        Error::io(
            spool_write_kind(&e),
            format!("cannot {what} the spool {}", path.display()),
            &e,
        )
    };
    if !p.privileged {
        spool
            .ensure_layout()
            .map_err(|e| open_err(e, "create", spool.root()))?;
        let dir = maildrop::open_dir(&spool.maildrop())
            .map_err(|e| open_err(e, "open", &spool.maildrop()))?;
        return Ok((dir, EntrySource::Direct));
    }
    let dir = match p.maildrop_dir.take() {
        Some(Ok(d)) => d,
        Some(Err(e)) => return Err(open_err(e, "open", &spool.maildrop())),
        None => return Err(Error::new(Kind::Software, "maildrop not prepared")),
    };
    let source = match mode {
        Mode::Smtp => match p.opener.take() {
            Some(Ok(o)) => EntrySource::Helper(Box::new(o)),
            Some(Err(e)) => {
                return Err(Error::io(
                    Kind::TempFail,
                    "cannot start the entry helper",
                    &e,
                ));
            }
            None => return Err(Error::new(Kind::Software, "entry helper not prepared")),
        },
        _ => EntrySource::Preopened(p.entry.take()),
    };
    Ok((dir, source))
}

/// One message from stdin with the command line's envelope.
fn submit_stdin(sub: &mut Submitter<'_>, a: &SendmailArgs) -> Result<postern::submit::Committed> {
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
        interactive: a.delivery == DeliveryMode::Interactive,
        origin: None,
    };
    let term = if a.ignore_dots {
        Terminator::Eof
    } else {
        Terminator::DotOrEof
    };
    let stdin = std::io::stdin();
    let mut reader = LineReader::new(
        std::io::BufReader::with_capacity(64 * 1024, stdin.lock()),
        term,
    );
    sub.submit(&mut reader, &opts)
}

fn admin(mut p: Prepared, a: PosternArgs) -> Result<u8> {
    match &a.command {
        Command::Help => {
            postern::stdout::text(format_args!("{}", cli::postern::USAGE));
            return Ok(0);
        }
        Command::Version => {
            postern::stdout::line(format_args!("postern {}", env!("CARGO_PKG_VERSION")));
            return Ok(0);
        }
        Command::Setup(s) => return setup(&p, a.config.clone(), a.verbose, s),
        _ => {}
    }
    let (cfg, source) = load_config(&p, a.config.clone(), false, a.verbose)?;
    if matches!(a.command, Command::Daemon | Command::QueueRun { .. }) {
        logging::keep_file_open();
    }
    match a.command {
        Command::Daemon => {
            daemon::daemon(cfg, source, REQUESTS, postern::privilege::systemd_sockets())
        }
        Command::QueueRun { auto: true } => daemon::run_auto(cfg, REQUESTS).map(|_| 0),
        Command::QueueRun { auto: false } => {
            if !may_deliver(&p, &cfg) {
                return Err(Error::new(
                    Kind::NoPerm,
                    "only root or the postern user can run the queue",
                ));
            }
            daemon::run_once(cfg, Selection::Due, REQUESTS).map(|_| 0)
        }
        Command::Flush => flush(&mut p, &cfg),
        Command::QueueList { json, held, user } => {
            list_queue(&mut p, &cfg, json, held, user.as_deref())
        }
        Command::QueueSuppressed { json } => postern::admin::guard::list_suppressed(&cfg, json),
        Command::QueueUnsuppress(a) => {
            postern::admin::guard::unsuppress(&cfg, &mut caller(&mut p), &a)
        }
        Command::QueueShow { id, json, body } => {
            let spool = Spool::new(&cfg.spool_dir);
            admin::show::show(&mut caller(&mut p), &cfg, &spool, &id, json, body)
        }
        Command::Stats { prometheus, json } => {
            let spool = Spool::new(&cfg.spool_dir);
            let incoming = incoming(&mut p, &spool);
            postern::stats::command(&spool, incoming, prometheus, json)
        }
        Command::Status { json } => {
            let spool = Spool::new(&cfg.spool_dir);
            let incoming = incoming(&mut p, &spool);
            postern::status::command(&cfg, &spool, incoming, json)
        }
        Command::Check => postern::check::command(&cfg),
        Command::OAuth2Login(relay) => {
            postern::setup::oauth2_login::command(&cfg, &relay, &mut std::io::stdout())
        }
        Command::QueueDelete(t) => change(&cfg, &mut p, Op::Delete, t),
        Command::QueueHold(id) => change(&cfg, &mut p, Op::Hold, Target::Id(id)),
        Command::QueueRelease(t) => change(&cfg, &mut p, Op::Release, t),
        Command::QueueRetry(t) => change(&cfg, &mut p, Op::Retry, t),
        Command::QueueBounce(id) => change(&cfg, &mut p, Op::Bounce, Target::Id(id)),
        other @ (Command::Sendmail(_) | Command::Setup(_) | Command::Help | Command::Version) => {
            Err(Error::new(
                Kind::Software,
                format!("{other:?} is not an admin command"),
            ))
        }
    }
}

/// `postern setup`: the file it edits is the one the rest of the binary
/// would read (-C / POSTERN_CONFIG only in an unprivileged process); it
/// may not exist yet or not load, so setup reads it itself.
fn setup(
    p: &Prepared,
    explicit: Option<PathBuf>,
    verbose: bool,
    s: &postern::setup::SetupArgs,
) -> Result<u8> {
    if s.help {
        postern::stdout::text(format_args!("{}", cli::postern::SETUP_USAGE));
        return Ok(0);
    }
    logging::init(logging::Target::Stderr, false, verbose);
    if p.privileged && explicit.is_some() {
        eprintln!("postern: warning: -C is ignored by the installed set-group-id binary");
    }
    let explicit = explicit_config(p, explicit);
    let ctx = postern::setup::Context {
        config_path: explicit
            .clone()
            .unwrap_or_else(|| PathBuf::from(postern::config::DEFAULT_CONFIG)),
        system: explicit.is_none(),
        explicit,
    };
    postern::setup::command(s, &ctx)
}

/// A queue change (`postern queue delete|hold|release|retry|bounce`).
fn change(cfg: &Config, p: &mut Prepared, op: Op, t: Target) -> Result<u8> {
    let spool = Spool::new(&cfg.spool_dir);
    admin::verbs::change(cfg, &mut caller(p), &spool, op, t)
}
