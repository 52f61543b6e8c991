//! A standalone SMTP sink built from the integration-test server
//! (`tests/suite/support/smtp_server.rs`), for the README quick start and the
//! benchmark.
//!
//! ```text
//! cargo run --example smtp_sink -- --listen 127.0.0.1:2525 [--maildir DIR]
//!     [--tls none|starttls|implicit --cert-dir DIR] [--auth user:pass]
//!     [--arrivals FILE]
//! ```
//!
//! Runs until killed and prints one line per accepted message:
//! `from=<a> to=<b>,<c> size=N tls=yes|no auth=user|- session=S` (S: the
//! 0-based number of the SMTP connection, so a benchmark can count
//! sessions). With `--maildir`, each message's un-stuffed DATA goes to `DIR/<n>.eml` and its envelope to
//! `DIR/<n>.env`. With `--tls`, a CA and a leaf for localhost/127.0.0.1 are
//! generated into `--cert-dir` (`ca.pem`, `cert.pem`, `key.pem`) unless
//! `cert.pem` is already there; point clients at `ca.pem`.
//! With `--arrivals`, one line per accepted message is appended to FILE:
//! the wall-clock time just before the sink's 250 to the final dot
//! (`SECONDS.NANOSECONDS` since the epoch) and the message's Message-ID
//! (`-` if none) — what `bench/listener.sh` uses for its latency figure.

#[path = "../tests/suite/support/smtp_server.rs"]
mod smtp_server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use smtp_server::{AuthConfig, Received, ServerConfig, SmtpServer, TlsMode};

const USAGE: &str = "usage: smtp_sink --listen ADDR [--maildir DIR] \
    [--tls none|starttls|implicit --cert-dir DIR] [--auth user:pass] [--arrivals FILE]";

struct Args {
    listen: String,
    maildir: Option<PathBuf>,
    tls: TlsMode,
    cert_dir: Option<PathBuf>,
    auth: Option<(String, String)>,
    arrivals: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:2525".into(),
        maildir: None,
        tls: TlsMode::None,
        cert_dir: None,
        auth: None,
        arrivals: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let known = [
            "--listen",
            "--maildir",
            "--cert-dir",
            "--tls",
            "--auth",
            "--arrivals",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown option {flag}"));
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => args.listen = value,
            "--maildir" => args.maildir = Some(value.into()),
            "--cert-dir" => args.cert_dir = Some(value.into()),
            "--arrivals" => args.arrivals = Some(value.into()),
            "--tls" => {
                args.tls = match value.as_str() {
                    "none" => TlsMode::None,
                    "starttls" => TlsMode::StartTls,
                    "implicit" => TlsMode::Implicit,
                    _ => return Err(format!("bad --tls value {value:?}")),
                }
            }
            "--auth" => {
                let (u, p) = value.split_once(':').ok_or("--auth wants user:pass")?;
                args.auth = Some((u.to_string(), p.to_string()));
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if args.tls != TlsMode::None && args.cert_dir.is_none() {
        return Err("--tls needs --cert-dir".into());
    }
    Ok(args)
}

/// First unused message number in the maildir.
fn next_number(dir: &std::path::Path) -> usize {
    let mut n = 1;
    while dir.join(format!("{n}.eml")).exists() {
        n += 1;
    }
    n
}

/// The value of the first Message-ID field of the header (`-` if none),
/// as printable ASCII without spaces (anything else becomes `?`).
fn message_id(data: &[u8]) -> String {
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.len() > 11 && line[..11].eq_ignore_ascii_case(b"message-id:") {
            let v: String = line[11..]
                .iter()
                .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
                .collect::<String>()
                .trim_matches('?')
                .to_string();
            if !v.is_empty() {
                return v;
            }
        }
    }
    "-".into()
}

fn envelope(m: &Received) -> String {
    let mut env = format!("MAIL FROM:<{}>", m.mail_from);
    if !m.mail_params.is_empty() {
        env.push(' ');
        env.push_str(&m.mail_params);
    }
    env.push('\n');
    for (to, params) in m.rcpts.iter().zip(&m.rcpt_params) {
        env.push_str(&format!("RCPT TO:<{to}>"));
        if !params.is_empty() {
            env.push(' ');
            env.push_str(params);
        }
        env.push('\n');
    }
    env
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("smtp_sink: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = &args.maildir
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!("smtp_sink: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let maildir = args.maildir.clone();
    let arrivals = match &args.arrivals {
        None => None,
        Some(path) => match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("smtp_sink: cannot open {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
    };
    let counter = AtomicUsize::new(maildir.as_deref().map_or(1, next_number));
    // Held while a message is reported: lines from concurrent sessions do
    // not interleave. Holds the arrivals file, if any.
    let write_lock = Mutex::new(arrivals);
    let on_message = Arc::new(move |m: &Received| {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut guard = write_lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = guard.as_mut() {
            use std::io::Write;
            let line = format!(
                "{}.{:09} {}\n",
                at.as_secs(),
                at.subsec_nanos(),
                message_id(&m.data)
            );
            if let Err(e) = f.write_all(line.as_bytes()) {
                eprintln!("smtp_sink: writing the arrivals file: {e}");
            }
        }
        let to: Vec<String> = m.rcpts.iter().map(|r| format!("<{r}>")).collect();
        println!(
            "from=<{}> to={} size={} tls={} auth={} session={}",
            m.mail_from,
            to.join(","),
            m.data.len(),
            if m.tls { "yes" } else { "no" },
            m.auth_user.as_deref().unwrap_or("-"),
            m.session,
        );
        if let Some(dir) = &maildir {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let eml = dir.join(format!("{n}.eml"));
            let env = dir.join(format!("{n}.env"));
            if let Err(e) =
                std::fs::write(&eml, &m.data).and_then(|_| std::fs::write(&env, envelope(m)))
            {
                eprintln!("smtp_sink: writing message {n}: {e}");
            }
        }
    });
    let auth = args.auth.map(|(username, secret)| AuthConfig {
        mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
        username,
        secret,
    });
    let cfg = ServerConfig {
        tls: args.tls,
        auth,
        // Without TLS, AUTH has to be allowed in the clear to be usable.
        require_tls_for_auth: args.tls != TlsMode::None,
        cert_dir: args.cert_dir.clone(),
        on_message: Some(on_message),
        keep_messages: false,
        ..Default::default()
    };
    let server = match SmtpServer::start_on(cfg, &args.listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("smtp_sink: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "smtp_sink: listening on {} (tls={:?})",
        server.addr(),
        args.tls
    );
    if let Some(dir) = &args.cert_dir
        && args.tls != TlsMode::None
    {
        eprintln!(
            "smtp_sink: CA certificate in {}",
            dir.join("ca.pem").display()
        );
    }
    loop {
        std::thread::park();
    }
}
