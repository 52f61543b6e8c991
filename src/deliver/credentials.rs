//! Relay secrets: read from `password_file` or the stdout of
//! `password_command` (and the OAuth2 secret files, for `deliver::oauth2`). Daemon side only — the submission path never calls
//! this. A secret is never logged, never shown by `-v`, and a secret file
//! that other users can read is refused (exit 78): fix its mode first.

use crate::config::Relay;
use crate::error::{Error, Kind, Result};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `password_command` may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Check that the secret files of `relay` (`password_file`, and the
/// `client_secret_file` / `refresh_token_file` of `[relay.oauth2]`) exist,
/// are regular files and are not readable by others. Used at daemon
/// start-up and by `postern check`.
pub fn check_secret_file(relay: &Relay) -> Result<()> {
    if let Some(path) = &relay.password_file {
        check_file(relay, "password_file", path)?;
    }
    if let Some(o) = &relay.oauth2 {
        if let Some(path) = &o.client_secret_file {
            check_file(relay, "client_secret_file", path)?;
        }
        if let Some(path) = &o.refresh_token_file {
            check_file(relay, "refresh_token_file", path)?;
        }
    }
    Ok(())
}

/// One secret file (`key` names it in messages): present, regular, not
/// readable by every user.
fn check_file(relay: &Relay, key: &str, path: &Path) -> Result<()> {
    let md = std::fs::metadata(path).map_err(|e| {
        let hint = if key == "refresh_token_file" && e.kind() == std::io::ErrorKind::NotFound {
            format!(" (run: postern oauth2 login {})", relay.host)
        } else {
            String::new()
        };
        let err = Error::io(
            Kind::Config,
            format!("relay {}: {key} {}", relay.host, path.display()),
            &e,
        );
        Error::new(Kind::Config, format!("{}{hint}", err.message()))
    })?;
    if !md.is_file() {
        return Err(Error::new(
            Kind::Config,
            format!(
                "relay {}: {key} {} is not a regular file",
                relay.host,
                path.display()
            ),
        ));
    }
    if md.mode() & 0o004 != 0 {
        return Err(Error::new(
            Kind::Config,
            format!(
                "relay {}: {key} {} is readable by every user; run: chown root:postern {} && chmod 640 {}",
                relay.host,
                path.display(),
                path.display(),
                path.display()
            ),
        ));
    }
    Ok(())
}

/// The first line of the secret file `path` (`key` names it), after the
/// checks of [`check_secret_file`]. Never logs the content.
pub fn read_secret_file(relay: &Relay, key: &str, path: &Path) -> Result<String> {
    check_file(relay, key, path)?;
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::io(
            Kind::Config,
            format!("relay {}: cannot read {key} {}", relay.host, path.display()),
            &e,
        )
    })?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(Error::new(
            Kind::Config,
            format!("relay {}: {key} {} is empty", relay.host, path.display()),
        ));
    }
    Ok(line.to_string())
}

/// The secret for `relay` (None when it has no username).
pub fn secret(relay: &Relay) -> Result<Option<String>> {
    if relay.username.is_none() {
        return Ok(None);
    }
    if let Some(path) = &relay.password_file {
        return read_secret_file(relay, "password_file", path).map(Some);
    }
    if let Some(cmd) = &relay.password_command {
        return run_command(cmd, &relay.host).map(Some);
    }
    Ok(None)
}

fn run_command(cmd: &str, host: &str) -> Result<String> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::io(
                Kind::TempFail,
                format!("relay {host}: password_command"),
                &e,
            )
        })?;
    let mut out = Vec::new();
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::new(Kind::Software, "password_command: no stdout"))?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.by_ref().take(64 * 1024).read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > COMMAND_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::new(
                    Kind::TempFail,
                    format!("relay {host}: password_command did not finish within 30s"),
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                return Err(Error::io(
                    Kind::TempFail,
                    format!("relay {host}: password_command"),
                    &e,
                ));
            }
        }
    };
    if let Ok(b) = reader.join() {
        out = b;
    }
    if !status.success() {
        return Err(Error::new(
            Kind::TempFail,
            format!("relay {host}: password_command failed ({status})"),
        ));
    }
    let s = String::from_utf8_lossy(&out);
    let line = s.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        return Err(Error::new(
            Kind::TempFail,
            format!("relay {host}: password_command printed nothing"),
        ));
    }
    Ok(line.to_string())
}
