//! The test message of `postern setup`: submitted through the normal path
//! (this binary as `sendmail -bs`, so the privileged maildrop step, the
//! header fix-ups and the hand-off to the daemon are the ones every
//! message takes), then where to follow it.

use crate::config::Config;
use crate::error::{Error, Kind, Result};
use crate::setup::Context;
use crate::spool::Spool;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fail(msg: impl Into<String>) -> Error {
    Error::new(Kind::TempFail, msg)
}

/// One reply: (code, last line).
fn reply(r: &mut impl BufRead) -> Result<(u16, String)> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)
            .map_err(|e| Error::io(Kind::IoErr, "sendmail -bs", &e))?
            == 0
        {
            return Err(fail("sendmail -bs ended the session"));
        }
        let line = line.trim_end().to_string();
        let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, line));
        }
    }
}

/// Submit the test message; its queue id.
pub fn send(
    cfg: &Config,
    ctx: &Context,
    from: Option<&str>,
    to: &str,
    host: &str,
    port: u16,
) -> Result<String> {
    let exe = std::env::current_exe().map_err(|e| Error::io(Kind::OsErr, "own binary", &e))?;
    let mut c = Command::new(exe);
    c.arg0("sendmail")
        .arg("-bs")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(p) = &ctx.explicit {
        c.env("POSTERN_CONFIG", p);
    }
    let mut child = c
        .spawn()
        .map_err(|e| Error::io(Kind::OsErr, "cannot start sendmail -bs", &e))?;
    let mut w = child.stdin.take().ok_or_else(|| fail("no stdin"))?;
    let mut r = BufReader::new(child.stdout.take().ok_or_else(|| fail("no stdout"))?);
    let login = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| "root".to_string(), |u| u.name);
    let sender = from
        .map(str::to_string)
        .unwrap_or_else(|| format!("{login}@{}", cfg.domain));
    let body = format!(
        "From: {sender}\r\nTo: {to}\r\nSubject: Postern test message from {h}\r\n\r\nThis is a test message sent by `postern setup` on {h}\r\nthrough the relay {host} port {port}.\r\n\r\nIf you can read it, mail from this machine is delivered.\r\n",
        h = cfg.hostname
    );
    let mut step = |cmd: Option<&str>, want: u16| -> Result<String> {
        if let Some(cmd) = cmd {
            w.write_all(cmd.as_bytes())
                .and_then(|_| w.write_all(b"\r\n"))
                .and_then(|_| w.flush())
                .map_err(|e| Error::io(Kind::IoErr, "sendmail -bs", &e))?;
        }
        let (code, line) = reply(&mut r)?;
        if code != want {
            return Err(Error::new(
                Kind::Unavailable,
                format!("the test message was not queued: {line}"),
            ));
        }
        Ok(line)
    };
    step(None, 220)?;
    step(Some(&format!("EHLO {}", cfg.hostname)), 250)?;
    step(Some(&format!("MAIL FROM:<{sender}>")), 250)?;
    step(Some(&format!("RCPT TO:<{to}>")), 250)?;
    step(Some("DATA"), 354)?;
    let mut data = body.clone();
    data.push('.');
    let last = step(Some(&data), 250)?;
    let _ = step(Some("QUIT"), 221);
    drop(w);
    let _ = child.wait();
    last.rsplit(' ')
        .next()
        .filter(|id| crate::spool::is_valid_id(id))
        .map(str::to_string)
        .ok_or_else(|| fail(format!("no queue id in {last:?}")))
}

/// Say where the message went: wait a little for a running daemon to
/// deliver it, show the log lines naming it (a log file), and how to look.
pub fn follow(cfg: &Config, spool: &Spool, id: &str) {
    let queued = || spool.queue().join(id).exists() || spool.maildrop().join(id).exists();
    if spool.daemon_running() {
        let start = Instant::now();
        while queued() && start.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    if cfg.log.starts_with('/')
        && let Ok(text) = std::fs::read_to_string(&cfg.log)
    {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(id)).collect();
        if !lines.is_empty() {
            crate::stdout::line(format_args!("The log ({}) says:", cfg.log));
            for l in lines.iter().rev().take(5).rev() {
                crate::stdout::line(format_args!(
                    "  {}",
                    l.chars().filter(|c| !c.is_control()).collect::<String>()
                ));
            }
        }
    }
    if queued() {
        crate::stdout::line(format_args!(
            "It is in the queue: `postern queue show {id}` shows its state, `mailq` the whole queue."
        ));
    } else {
        crate::stdout::line(format_args!(
            "It has left the queue: delivered to the relay (or returned to the sender; the log says which)."
        ));
    }
    let log = match cfg.log.as_str() {
        "syslog" => "the mail log (journalctl -t postern, or /var/log/mail.log)".to_string(),
        "stderr" => "the daemon's standard error (journalctl -u postern)".to_string(),
        p => p.to_string(),
    };
    crate::stdout::line(format_args!(
        "Each delivery attempt is logged with the id {id} in {log}."
    ));
}
