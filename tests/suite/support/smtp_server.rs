//! Controllable in-process SMTP server for Postern's integration tests.
//!
//! This module owns the test-side SMTP receiver: it listens on 127.0.0.1,
//! speaks ESMTP (EHLO/HELO, MAIL/RCPT/DATA, RSET, NOOP, VRFY, QUIT, STARTTLS,
//! implicit TLS, AUTH PLAIN/LOGIN/XOAUTH2/OAUTHBEARER, SIZE, 8BITMIME, SMTPUTF8, DSN,
//! PIPELINING, ENHANCEDSTATUSCODES), records exactly what each client sent
//! (envelope, raw DATA bytes, command lines, replies) and lets a test script
//! the replies and inject faults (drops, delays, hangs, silence) through
//! [`ServerConfig::script`].
//!
//! It is self-contained (std + rustls + rcgen only) so it can be included both
//! as `support::smtp_server` from integration tests and via `#[path]` from the
//! `smtp_sink` example. Test certificates (a CA and leaves for each
//! [`CertKind`]) are generated once per process with rcgen.
//!
//! Session numbers are 0-based indexes into [`SmtpServer::sessions`].
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Maximum length of a command line, including the CRLF.
const MAX_LINE: usize = 1000;
/// Maximum size of one message kept in memory.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Socket read/write timeout, so a misbehaving client cannot hang a test.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop` waits for connection threads to finish.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// How the server offers TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain SMTP only.
    #[default]
    None,
    /// Plain SMTP with the STARTTLS extension.
    StartTls,
    /// TLS from the first byte (SMTPS, port-465 style).
    Implicit,
}

/// Which certificate the server presents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CertKind {
    /// Leaf for `localhost` / `127.0.0.1` signed by the exported test CA.
    #[default]
    Valid,
    /// Leaf signed by a CA that is NOT exported; `ca_pem()` returns the
    /// regular test CA, which did not sign it.
    Untrusted,
    /// Leaf signed by the exported test CA, but expired (not_after in 2001).
    Expired,
    /// Leaf signed by the exported test CA whose only SAN is `wrong.example`.
    WrongHost,
}

/// AUTH settings.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Mechanisms advertised and accepted, e.g. `["PLAIN", "LOGIN", "XOAUTH2"]`.
    pub mechanisms: Vec<String>,
    pub username: String,
    /// Password, or the OAuth2 bearer token for XOAUTH2.
    pub secret: String,
}

/// One client command that needs a reply, handed to [`ServerConfig::script`].
#[derive(Debug)]
pub enum Event<'a> {
    /// A new connection, before the 220 banner (after `banner_delay`).
    Connect { session: usize },
    /// EHLO (HELO gets no event: it is always answered 250).
    Ehlo { session: usize, name: &'a str },
    Mail {
        session: usize,
        from: &'a str,
        params: &'a str,
    },
    Rcpt {
        session: usize,
        to: &'a str,
        params: &'a str,
    },
    /// DATA, with at least one accepted recipient.
    DataStart { session: usize },
    /// The end-of-data dot was received; `data` is un-stuffed.
    DataEnd {
        session: usize,
        from: &'a str,
        rcpts: &'a [String],
        data: &'a [u8],
    },
    /// An AUTH exchange finished; `ok` says whether the credentials matched.
    Auth {
        session: usize,
        mechanism: &'a str,
        user: &'a str,
        ok: bool,
    },
}

/// What the server does in response to an [`Event`].
#[derive(Debug, Clone)]
pub enum Action {
    /// The server's normal reply.
    Default,
    /// Send `code text`; a text with `\n` becomes a multi-line reply.
    Reply(u16, String),
    /// Close the connection immediately, without a reply.
    Drop,
    /// For `DataStart` only: reply 354, then close the connection after
    /// reading this many DATA bytes (or at the end of data if sooner).
    /// Elsewhere it behaves like `Drop`.
    DropAfterBytes(usize),
    /// Wait, then do the inner action.
    Delay(Duration, Box<Action>),
    /// Never reply; the socket stays open until the server stops.
    Hang,
}

/// Reply script: called once per [`Event`].
pub type Script = Arc<dyn Fn(&Event) -> Action + Send + Sync>;
/// Callback for each accepted message.
pub type MessageHook = Arc<dyn Fn(&Received) + Send + Sync>;

/// Server configuration; use `..Default::default()` for the fields you do not set.
#[derive(Clone)]
pub struct ServerConfig {
    pub tls: TlsMode,
    pub cert: CertKind,
    /// None = no AUTH advertised.
    pub auth: Option<AuthConfig>,
    /// Advertise `SIZE n`; reject larger `MAIL ... SIZE=` and larger DATA with 552.
    /// None advertises a bare `SIZE`.
    pub size_limit: Option<u64>,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    /// Advertise PIPELINING (pipelined input is always handled correctly).
    pub pipelining: bool,
    /// Sleep before the 220 banner.
    pub banner_delay: Option<Duration>,
    /// Accept TCP connections but never send anything.
    pub silent: bool,
    pub script: Script,
    /// AUTH before TLS -> 538 5.7.11 (and AUTH is not advertised before TLS).
    pub require_tls_for_auth: bool,
    pub hostname: String,
    /// Extension: MAIL before a successful AUTH -> 530 5.7.0 (default false).
    pub require_auth: bool,
    /// Extension: use `cert.pem`/`key.pem`/`ca.pem` from this directory,
    /// generating them first if `cert.pem` is absent. Overrides `cert`.
    pub cert_dir: Option<PathBuf>,
    /// Extension: called for every accepted message (from the session thread).
    pub on_message: Option<MessageHook>,
    /// Extension: keep accepted messages for `messages()` (default true).
    pub keep_messages: bool,
    /// Extension (STARTTLS response injection, RFC 3207 §6): bytes sent
    /// right after the `220` to STARTTLS, in the same write, before the
    /// handshake — what an on-path attacker injects (default none).
    pub starttls_inject: Option<Vec<u8>>,
    /// Extension: bytes sent in their own write 200 ms after the `220` to
    /// STARTTLS, before the handshake (they reach the client's TLS layer).
    pub starttls_inject_late: Option<Vec<u8>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tls: TlsMode::None,
            cert: CertKind::Valid,
            auth: None,
            size_limit: None,
            eightbitmime: true,
            smtputf8: true,
            dsn: true,
            pipelining: true,
            banner_delay: None,
            silent: false,
            script: Arc::new(|_| Action::Default),
            require_tls_for_auth: true,
            hostname: "sink.test".to_string(),
            require_auth: false,
            cert_dir: None,
            on_message: None,
            keep_messages: true,
            starttls_inject: None,
            starttls_inject_late: None,
        }
    }
}

/// An accepted transaction (final reply 2xx).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub session: usize,
    /// Path without `<>`; "" for the null sender.
    pub mail_from: String,
    pub mail_params: String,
    /// Only the recipients that got a 2xx.
    pub rcpts: Vec<String>,
    pub rcpt_params: Vec<String>,
    /// Un-stuffed message bytes, without the final ".\r\n" line.
    pub data: Vec<u8>,
    /// Exact wire bytes after the 354, including the terminating "\r\n.\r\n".
    pub raw_data: Vec<u8>,
    pub tls: bool,
    pub auth_user: Option<String>,
}

/// Everything that happened on one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionLog {
    pub session: usize,
    /// Name given in the last EHLO/HELO.
    pub ehlo: Option<String>,
    pub tls: bool,
    pub auth_user: Option<String>,
    /// Raw command lines (without CRLF), including AUTH continuation lines.
    pub commands: Vec<String>,
    /// Replies sent, one entry per reply (multi-line replies joined by "\r\n").
    pub replies: Vec<String>,
    pub quit: bool,
    /// The TLS handshake error, if the handshake failed (e.g. the client
    /// rejected the certificate).
    pub tls_error: Option<String>,
    /// The connection has ended.
    pub closed: bool,
}

#[derive(Default)]
struct State {
    stopped: bool,
    messages: Vec<Received>,
    sessions: Vec<SessionLog>,
    conns: HashMap<usize, TcpStream>,
    active: usize,
}

struct Shared {
    cfg: ServerConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Mutex<State>,
    cond: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log<F: FnOnce(&mut SessionLog)>(&self, session: usize, f: F) {
        let mut st = self.lock();
        if let Some(s) = st.sessions.get_mut(session) {
            f(s);
        }
        drop(st);
        self.cond.notify_all();
    }

    /// Waits for `dur` (or forever with None) unless the server stops first.
    /// Returns true if the server stopped.
    fn wait_stop(&self, dur: Option<Duration>) -> bool {
        let deadline = dur.map(|d| Instant::now() + d);
        let mut st = self.lock();
        loop {
            if st.stopped {
                return true;
            }
            match deadline {
                None => st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    st = self
                        .cond
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

/// A running SMTP server; stopped on `stop()` or drop.
pub struct SmtpServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
    ca_pem: String,
}

impl SmtpServer {
    /// Binds 127.0.0.1:0 and starts serving. Panics if binding fails.
    pub fn start(cfg: ServerConfig) -> SmtpServer {
        Self::start_on(cfg, "127.0.0.1:0").expect("bind 127.0.0.1:0")
    }

    /// Binds `addr` and starts serving.
    pub fn start_on(cfg: ServerConfig, addr: &str) -> io::Result<SmtpServer> {
        let (tls, ca_pem) = build_tls(&cfg)?;
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cfg,
            tls,
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let sh = shared.clone();
        let acceptor = thread::Builder::new()
            .name(format!("smtp-accept-{}", addr.port()))
            .spawn(move || accept_loop(sh, listener))?;
        Ok(SmtpServer {
            shared,
            addr,
            acceptor: Some(acceptor),
            ca_pem,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the test CA (for `CertKind::Untrusted`, a CA that did not sign the leaf).
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    pub fn write_ca_file(&self, path: &Path) {
        std::fs::write(path, self.ca_pem.as_bytes()).expect("write CA file");
    }

    /// Accepted transactions, in order.
    pub fn messages(&self) -> Vec<Received> {
        self.shared.lock().messages.clone()
    }

    /// Blocks until at least `n` messages were accepted or `timeout` passed;
    /// returns whatever is there.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while st.messages.len() < n {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .shared
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.messages.clone()
    }

    /// Removes and returns the accepted messages (used by the sink).
    pub fn take_messages(&self) -> Vec<Received> {
        std::mem::take(&mut self.shared.lock().messages)
    }

    pub fn sessions(&self) -> Vec<SessionLog> {
        self.shared.lock().sessions.clone()
    }

    pub fn connection_count(&self) -> usize {
        self.shared.lock().sessions.len()
    }

    /// Blocks until at least `n` connections were accepted or `timeout`
    /// passed; returns the connection count.
    pub fn wait_for_connections(&self, n: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while st.sessions.len() < n {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .shared
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.sessions.len()
    }

    /// Stops accepting, closes the listener and all connections.
    pub fn stop(self) {
        // Drop does the work.
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let mut st = self.shared.lock();
            st.stopped = true;
            for c in st.conns.values() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
        self.shared.cond.notify_all();
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        let deadline = Instant::now() + STOP_GRACE;
        let mut st = self.shared.lock();
        while st.active > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .shared
                .cond
                .wait_timeout(st, (deadline - now).min(Duration::from_millis(50)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            for c in st.conns.values() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => spawn_session(&shared, stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5))
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
    // The listener is dropped (closed) here.
}

fn spawn_session(shared: &Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let id;
    {
        let mut st = shared.lock();
        if st.stopped {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        id = st.sessions.len();
        st.sessions.push(SessionLog {
            session: id,
            ..Default::default()
        });
        if let Ok(c) = stream.try_clone() {
            st.conns.insert(id, c);
        }
        st.active += 1;
    }
    shared.cond.notify_all();
    let sh = shared.clone();
    let spawned = thread::Builder::new()
        .name(format!("smtp-session-{id}"))
        .spawn(move || {
            let mut s = Session::new(sh.clone(), id, stream);
            s.run();
            drop(s);
            finish_session(&sh, id);
        });
    if spawned.is_err() {
        finish_session(shared, id);
    }
}

fn finish_session(shared: &Shared, id: usize) {
    let mut st = shared.lock();
    if let Some(c) = st.conns.remove(&id) {
        let _ = c.shutdown(Shutdown::Both);
    }
    if let Some(s) = st.sessions.get_mut(id) {
        s.closed = true;
    }
    st.active = st.active.saturating_sub(1);
    drop(st);
    shared.cond.notify_all();
}

// ---------------------------------------------------------------------------
// Connection streams

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
    Gone,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Gone => Ok(0),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Gone => Ok(()),
        }
    }
}

/// Why a session ends early.
enum End {
    /// I/O error, EOF, or a Drop action: just close.
    Close,
}

impl From<io::Error> for End {
    fn from(_: io::Error) -> Self {
        End::Close
    }
}

/// An action with delays and hangs already carried out.
enum Resolved {
    Default,
    Reply(u16, String),
    Drop,
    DropAfterBytes(usize),
}

enum Line {
    Ok(String),
    TooLong,
    BareLf(String),
}

#[derive(Default)]
struct Txn {
    from: String,
    params: String,
    smtputf8: bool,
    rcpts: Vec<String>,
    rcpt_params: Vec<String>,
}

struct Session {
    shared: Arc<Shared>,
    id: usize,
    stream: Stream,
    inbuf: Vec<u8>,
    tls: bool,
    greeted: bool,
    refused: bool,
    auth_user: Option<String>,
    txn: Option<Txn>,
}

impl Session {
    fn new(shared: Arc<Shared>, id: usize, tcp: TcpStream) -> Session {
        Session {
            shared,
            id,
            stream: Stream::Plain(tcp),
            inbuf: Vec::new(),
            tls: false,
            greeted: false,
            refused: false,
            auth_user: None,
            txn: None,
        }
    }

    fn cfg(&self) -> &ServerConfig {
        &self.shared.cfg
    }

    fn run(&mut self) {
        // After QUIT, close TLS politely; Drop actions and errors just close.
        if self.run_inner().is_ok()
            && let Stream::Tls(s) = &mut self.stream
        {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    }

    fn run_inner(&mut self) -> Result<(), End> {
        if self.cfg().silent {
            self.shared.wait_stop(None);
            return Err(End::Close);
        }
        if self.cfg().tls == TlsMode::Implicit {
            self.start_tls()?;
        }
        if let Some(d) = self.cfg().banner_delay
            && self.shared.wait_stop(Some(d))
        {
            return Err(End::Close);
        }
        let action = (self.cfg().script)(&Event::Connect { session: self.id });
        let banner = format!("{} ESMTP", self.cfg().hostname);
        match self.resolve(action) {
            Resolved::Default => self.reply(220, &banner)?,
            Resolved::Reply(code, text) => {
                self.refused = code != 220;
                self.reply(code, &text)?;
            }
            Resolved::Drop | Resolved::DropAfterBytes(_) => return Err(End::Close),
        }
        loop {
            let line = match self.read_line()? {
                Line::Ok(l) => l,
                Line::TooLong => {
                    self.log_cmd("<line too long>".to_string());
                    self.reply(500, "5.5.2 line too long")?;
                    continue;
                }
                Line::BareLf(l) => {
                    self.log_cmd(l);
                    self.reply(500, "5.5.2 bare LF in command line not allowed")?;
                    continue;
                }
            };
            self.log_cmd(line.clone());
            if !self.command(&line)? {
                return Ok(());
            }
        }
    }

    fn log_cmd(&self, line: String) {
        self.shared.log(self.id, |s| s.commands.push(line));
    }

    /// Handles one command line; returns false after QUIT.
    fn command(&mut self, line: &str) -> Result<bool, End> {
        let (verb, arg) = match line.find(' ') {
            Some(i) => (&line[..i], line[i + 1..].trim()),
            None => (line, ""),
        };
        let verb = verb.to_ascii_uppercase();
        if self.refused && verb != "QUIT" {
            self.reply(503, "5.5.1 no service")?;
            return Ok(true);
        }
        match verb.as_str() {
            "EHLO" => self.cmd_ehlo(arg)?,
            "HELO" => {
                if arg.is_empty() {
                    self.reply(501, "5.5.4 syntax: HELO hostname")?;
                } else {
                    self.set_greeted(arg);
                    let text = format!("{} hello {}", self.cfg().hostname, arg);
                    self.reply(250, &text)?;
                }
            }
            "MAIL" => self.cmd_mail(arg)?,
            "RCPT" => self.cmd_rcpt(arg)?,
            "DATA" => self.cmd_data(arg)?,
            "RSET" => {
                self.txn = None;
                self.reply(250, "2.0.0 ok")?;
            }
            "NOOP" => self.reply(250, "2.0.0 ok")?,
            "VRFY" => self.reply(252, "2.5.2 cannot VRFY user")?,
            "QUIT" => {
                self.shared.log(self.id, |s| s.quit = true);
                self.reply(221, "2.0.0 bye")?;
                return Ok(false);
            }
            "STARTTLS" => self.cmd_starttls(arg)?,
            "AUTH" => self.cmd_auth(arg)?,
            _ => self.reply(500, "5.5.1 command unrecognized")?,
        }
        Ok(true)
    }

    fn set_greeted(&mut self, name: &str) {
        self.greeted = true;
        self.txn = None;
        let name = name.to_string();
        self.shared.log(self.id, |s| s.ehlo = Some(name));
    }

    fn cmd_ehlo(&mut self, arg: &str) -> Result<(), End> {
        if arg.is_empty() {
            return self.reply(501, "5.5.4 syntax: EHLO hostname");
        }
        let action = (self.cfg().script)(&Event::Ehlo {
            session: self.id,
            name: arg,
        });
        match self.resolve(action) {
            Resolved::Default => {}
            Resolved::Reply(code, text) => {
                if (200..300).contains(&code) {
                    self.set_greeted(arg);
                }
                return self.reply(code, &text);
            }
            _ => return Err(End::Close),
        }
        self.set_greeted(arg);
        let cfg = self.cfg();
        let mut lines = vec![format!("{} hello {}", cfg.hostname, arg)];
        if cfg.pipelining {
            lines.push("PIPELINING".into());
        }
        match cfg.size_limit {
            Some(n) => lines.push(format!("SIZE {n}")),
            None => lines.push("SIZE".into()),
        }
        if cfg.eightbitmime {
            lines.push("8BITMIME".into());
        }
        if cfg.smtputf8 {
            lines.push("SMTPUTF8".into());
        }
        if cfg.dsn {
            lines.push("DSN".into());
        }
        lines.push("ENHANCEDSTATUSCODES".into());
        if cfg.tls == TlsMode::StartTls && !self.tls {
            lines.push("STARTTLS".into());
        }
        if let Some(a) = &cfg.auth
            && (self.tls || !cfg.require_tls_for_auth)
            && !a.mechanisms.is_empty()
        {
            lines.push(format!("AUTH {}", a.mechanisms.join(" ")));
        }
        let text = lines.join("\n");
        self.reply(250, &text)
    }

    fn cmd_mail(&mut self, arg: &str) -> Result<(), End> {
        if !self.greeted {
            return self.reply(503, "5.5.1 send EHLO/HELO first");
        }
        if self.txn.is_some() {
            return self.reply(503, "5.5.1 nested MAIL command");
        }
        let Some((from, params)) = parse_path(arg, "FROM:") else {
            return self.reply(501, "5.5.4 syntax: MAIL FROM:<address>");
        };
        let (from, params) = (from.to_string(), params.to_string());
        let mut smtputf8 = false;
        let mut default: Option<(u16, String)> = None;
        for p in params.split_ascii_whitespace() {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let k = k.to_ascii_uppercase();
            let cfg = self.cfg();
            let bad = match k.as_str() {
                "SIZE" => match v.parse::<u64>() {
                    Err(_) => Some((501, "5.5.4 bad SIZE parameter".to_string())),
                    Ok(m) if cfg.size_limit.is_some_and(|n| m > n) => Some((
                        552,
                        "5.3.4 message size exceeds fixed maximum message size".to_string(),
                    )),
                    Ok(_) => None,
                },
                "BODY" => match v.to_ascii_uppercase().as_str() {
                    "7BIT" => None,
                    "8BITMIME" if cfg.eightbitmime => None,
                    _ => Some((555, format!("5.5.4 unsupported BODY={v}"))),
                },
                "SMTPUTF8" if cfg.smtputf8 && v.is_empty() => {
                    smtputf8 = true;
                    None
                }
                "RET" | "ENVID" if cfg.dsn => None,
                "AUTH" if cfg.auth.is_some() => None,
                _ => Some((555, format!("5.5.4 unsupported parameter {p}"))),
            };
            if default.is_none() {
                default = bad;
            }
        }
        if default.is_none() && !smtputf8 && !from.is_ascii() {
            default = Some((553, "5.6.7 non-ASCII address requires SMTPUTF8".into()));
        }
        if default.is_none() && self.cfg().require_auth && self.auth_user.is_none() {
            default = Some((530, "5.7.0 authentication required".into()));
        }
        let (dcode, dtext) = default.unwrap_or((250, "2.1.0 sender ok".into()));
        let ev = Event::Mail {
            session: self.id,
            from: &from,
            params: &params,
        };
        let action = (self.cfg().script)(&ev);
        let (code, text) = match self.resolve(action) {
            Resolved::Default => (dcode, dtext),
            Resolved::Reply(c, t) => (c, t),
            _ => return Err(End::Close),
        };
        if (200..300).contains(&code) {
            self.txn = Some(Txn {
                from,
                params,
                smtputf8,
                ..Default::default()
            });
        }
        self.reply(code, &text)
    }

    fn cmd_rcpt(&mut self, arg: &str) -> Result<(), End> {
        let Some(smtputf8) = self.txn.as_ref().map(|t| t.smtputf8) else {
            return self.reply(503, "5.5.1 need MAIL before RCPT");
        };
        let Some((to, params)) = parse_path(arg, "TO:") else {
            return self.reply(501, "5.5.4 syntax: RCPT TO:<address>");
        };
        if to.is_empty() {
            return self.reply(501, "5.1.3 empty recipient address");
        }
        let (to, params) = (to.to_string(), params.to_string());
        let mut default: Option<(u16, String)> = None;
        for p in params.split_ascii_whitespace() {
            let k = p.split_once('=').map_or(p, |(k, _)| k).to_ascii_uppercase();
            let ok = matches!(k.as_str(), "NOTIFY" | "ORCPT") && self.cfg().dsn;
            if !ok && default.is_none() {
                default = Some((555, format!("5.5.4 unsupported parameter {p}")));
            }
        }
        if default.is_none() && !smtputf8 && !to.is_ascii() {
            default = Some((553, "5.6.7 non-ASCII address requires SMTPUTF8".into()));
        }
        let (dcode, dtext) = default.unwrap_or((250, "2.1.5 recipient ok".into()));
        let ev = Event::Rcpt {
            session: self.id,
            to: &to,
            params: &params,
        };
        let action = (self.cfg().script)(&ev);
        let (code, text) = match self.resolve(action) {
            Resolved::Default => (dcode, dtext),
            Resolved::Reply(c, t) => (c, t),
            _ => return Err(End::Close),
        };
        if (200..300).contains(&code)
            && let Some(t) = self.txn.as_mut()
        {
            t.rcpts.push(to);
            t.rcpt_params.push(params);
        }
        self.reply(code, &text)
    }

    fn cmd_data(&mut self, arg: &str) -> Result<(), End> {
        if !arg.is_empty() {
            return self.reply(501, "5.5.4 syntax: DATA");
        }
        let Some(txn) = self.txn.as_ref() else {
            return self.reply(503, "5.5.1 need MAIL before DATA");
        };
        if txn.rcpts.is_empty() {
            return self.reply(554, "5.5.1 no valid recipients");
        }
        let action = (self.cfg().script)(&Event::DataStart { session: self.id });
        let go_ahead = "end data with <CR><LF>.<CR><LF>".to_string();
        let (text, limit) = match self.resolve(action) {
            Resolved::Default => (go_ahead, None),
            Resolved::Reply(354, text) => (text, None),
            Resolved::Reply(code, text) => return self.reply(code, &text),
            Resolved::Drop => return Err(End::Close),
            Resolved::DropAfterBytes(n) => (go_ahead, Some(n)),
        };
        self.reply(354, &text)?;
        let (raw, overflow) = self.read_data(limit)?;
        let txn = self.txn.take().unwrap_or_default();
        let end = if raw.starts_with(b".\r\n") {
            0
        } else {
            raw.len() - 3
        };
        let data = unstuff(&raw[..end]);
        let too_big = overflow || self.cfg().size_limit.is_some_and(|n| data.len() as u64 > n);
        let ev = Event::DataEnd {
            session: self.id,
            from: &txn.from,
            rcpts: &txn.rcpts,
            data: &data,
        };
        let action = (self.cfg().script)(&ev);
        let (code, text) = match self.resolve(action) {
            Resolved::Default if too_big => (
                552,
                "5.3.4 message size exceeds fixed maximum message size".to_string(),
            ),
            Resolved::Default => (
                250,
                format!("2.0.0 ok: queued as S{}M{}", self.id, now_id()),
            ),
            Resolved::Reply(c, t) => (c, t),
            _ => return Err(End::Close),
        };
        if (200..300).contains(&code) {
            let msg = Received {
                session: self.id,
                mail_from: txn.from,
                mail_params: txn.params,
                rcpts: txn.rcpts,
                rcpt_params: txn.rcpt_params,
                data,
                raw_data: raw,
                tls: self.tls,
                auth_user: self.auth_user.clone(),
            };
            if let Some(hook) = &self.cfg().on_message {
                hook(&msg);
            }
            if self.cfg().keep_messages {
                self.shared.lock().messages.push(msg);
                self.shared.cond.notify_all();
            }
        }
        self.reply(code, &text)
    }

    fn cmd_starttls(&mut self, arg: &str) -> Result<(), End> {
        if self.cfg().tls != TlsMode::StartTls || self.shared.tls.is_none() {
            return self.reply(502, "5.5.1 STARTTLS not available");
        }
        if self.tls {
            return self.reply(503, "5.5.1 TLS already active");
        }
        if !arg.is_empty() {
            return self.reply(501, "5.5.4 syntax: STARTTLS");
        }
        match self.cfg().starttls_inject.clone() {
            Some(extra) => self.reply_with(220, "2.0.0 ready to start TLS", &extra)?,
            None => self.reply(220, "2.0.0 ready to start TLS")?,
        }
        if let Some(late) = self.cfg().starttls_inject_late.clone() {
            thread::sleep(Duration::from_millis(200));
            self.stream.write_all(&late)?;
            self.stream.flush()?;
        }
        // Plaintext pipelined after STARTTLS must not be carried into TLS.
        self.inbuf.clear();
        self.start_tls()?;
        self.greeted = false;
        self.txn = None;
        self.auth_user = None;
        Ok(())
    }

    fn start_tls(&mut self) -> Result<(), End> {
        let Some(cfg) = self.shared.tls.clone() else {
            return Err(End::Close);
        };
        let Stream::Plain(mut tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(End::Close);
        };
        let mut conn = match rustls::ServerConnection::new(cfg) {
            Ok(c) => c,
            Err(e) => {
                let msg = e.to_string();
                self.shared.log(self.id, |s| s.tls_error = Some(msg));
                return Err(End::Close);
            }
        };
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                let msg = e.to_string();
                self.shared.log(self.id, |s| s.tls_error = Some(msg));
                return Err(End::Close);
            }
        }
        self.stream = Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)));
        self.tls = true;
        self.shared.log(self.id, |s| s.tls = true);
        Ok(())
    }

    fn cmd_auth(&mut self, arg: &str) -> Result<(), End> {
        let Some(auth) = self.cfg().auth.clone() else {
            return self.reply(502, "5.5.1 AUTH not available");
        };
        if !self.tls && self.cfg().require_tls_for_auth {
            return self.reply(
                538,
                "5.7.11 encryption required for requested authentication mechanism",
            );
        }
        if !self.greeted {
            return self.reply(503, "5.5.1 send EHLO first");
        }
        if self.auth_user.is_some() {
            return self.reply(503, "5.5.1 already authenticated");
        }
        if self.txn.is_some() {
            return self.reply(503, "5.5.1 AUTH not allowed during a mail transaction");
        }
        let mut parts = arg.split_ascii_whitespace();
        let mech = parts.next().unwrap_or("").to_ascii_uppercase();
        let initial = parts.next().map(str::to_string);
        if mech.is_empty() {
            return self.reply(501, "5.5.4 syntax: AUTH mechanism");
        }
        if !auth
            .mechanisms
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&mech))
        {
            return self.reply(504, "5.5.4 unrecognized authentication type");
        }
        let creds = match mech.as_str() {
            "PLAIN" => {
                let Some(resp) = self.auth_response(initial, "")? else {
                    return Ok(());
                };
                let mut f = resp.split(|&b| b == 0);
                let (_authz, user, pass) = (f.next(), f.next(), f.next());
                match (user, pass, f.next()) {
                    (Some(u), Some(p), None) => Some((lossy(u), lossy(p))),
                    _ => None,
                }
            }
            "LOGIN" => {
                let Some(user) = self.auth_response(initial, "VXNlcm5hbWU6")? else {
                    return Ok(());
                };
                let Some(pass) = self.auth_response(None, "UGFzc3dvcmQ6")? else {
                    return Ok(());
                };
                Some((lossy(&user), lossy(&pass)))
            }
            "XOAUTH2" => {
                let Some(resp) = self.auth_response(initial, "")? else {
                    return Ok(());
                };
                parse_xoauth2(&lossy(&resp))
            }
            "OAUTHBEARER" => {
                let Some(resp) = self.auth_response(initial, "")? else {
                    return Ok(());
                };
                parse_oauthbearer(&lossy(&resp))
            }
            _ => None,
        };
        let (user, ok) = match &creds {
            Some((u, p)) => (u.as_str(), *u == auth.username && *p == auth.secret),
            None => ("", false),
        };
        let ev = Event::Auth {
            session: self.id,
            mechanism: &mech,
            user,
            ok,
        };
        let action = (self.cfg().script)(&ev);
        let (code, text) = match self.resolve(action) {
            Resolved::Default if ok => (235, "2.7.0 ok".to_string()),
            Resolved::Default => (535, "5.7.8 authentication failed".to_string()),
            Resolved::Reply(c, t) => (c, t),
            _ => return Err(End::Close),
        };
        if (200..300).contains(&code) {
            let user = user.to_string();
            self.auth_user = Some(user.clone());
            self.shared.log(self.id, |s| s.auth_user = Some(user));
        }
        self.reply(code, &text)
    }

    /// Gets one SASL response: the initial response if given, else a 334
    /// challenge and a continuation line. Returns None (after replying) when
    /// the client cancelled or sent bad base64.
    fn auth_response(
        &mut self,
        initial: Option<String>,
        prompt: &str,
    ) -> Result<Option<Vec<u8>>, End> {
        let line = match initial {
            Some(s) => s,
            None => {
                self.reply(334, prompt)?;
                match self.read_line()? {
                    Line::Ok(l) => {
                        self.log_cmd(l.clone());
                        l
                    }
                    Line::TooLong => {
                        self.log_cmd("<line too long>".into());
                        self.reply(500, "5.5.2 line too long")?;
                        return Ok(None);
                    }
                    Line::BareLf(l) => {
                        self.log_cmd(l);
                        self.reply(500, "5.5.2 bare LF in command line not allowed")?;
                        return Ok(None);
                    }
                }
            }
        };
        let line = line.trim();
        if line == "*" {
            self.reply(501, "5.0.0 authentication cancelled")?;
            return Ok(None);
        }
        if line == "=" {
            return Ok(Some(Vec::new()));
        }
        match base64_decode(line) {
            Some(v) => Ok(Some(v)),
            None => {
                self.reply(501, "5.5.2 cannot decode response")?;
                Ok(None)
            }
        }
    }

    /// Carries out delays and hangs.
    fn resolve(&self, mut action: Action) -> Resolved {
        loop {
            match action {
                Action::Default => return Resolved::Default,
                Action::Reply(c, t) => return Resolved::Reply(c, t),
                Action::Drop => return Resolved::Drop,
                Action::DropAfterBytes(n) => return Resolved::DropAfterBytes(n),
                Action::Delay(d, inner) => {
                    if self.shared.wait_stop(Some(d)) {
                        return Resolved::Drop;
                    }
                    action = *inner;
                }
                Action::Hang => {
                    self.shared.wait_stop(None);
                    return Resolved::Drop;
                }
            }
        }
    }

    fn reply(&mut self, code: u16, text: &str) -> Result<(), End> {
        self.reply_with(code, text, b"")
    }

    /// A reply followed by `extra` raw bytes in the same write.
    fn reply_with(&mut self, code: u16, text: &str, extra: &[u8]) -> Result<(), End> {
        let lines: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
        let mut out = String::new();
        for (i, l) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            if l.is_empty() && sep == ' ' {
                // "334 " style replies keep the space.
                out.push_str(&format!("{code} \r\n"));
            } else {
                out.push_str(&format!("{code}{sep}{l}\r\n"));
            }
        }
        let logged = out.trim_end_matches("\r\n").to_string();
        self.shared.log(self.id, |s| s.replies.push(logged));
        let mut out = out.into_bytes();
        out.extend_from_slice(extra);
        self.stream.write_all(&out)?;
        self.stream.flush()?;
        Ok(())
    }

    fn fill(&mut self) -> Result<(), End> {
        let mut buf = [0u8; 65536];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(End::Close),
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(End::Close),
            }
        }
    }

    fn read_line(&mut self) -> Result<Line, End> {
        let mut scanned = 0;
        let mut too_long = false;
        loop {
            if let Some(i) = self.inbuf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i;
                let line: Vec<u8> = self.inbuf.drain(..=end).collect();
                if too_long || line.len() > MAX_LINE {
                    return Ok(Line::TooLong);
                }
                let body = &line[..line.len() - 1];
                return Ok(match body.strip_suffix(b"\r") {
                    Some(b) => Line::Ok(lossy(b)),
                    None => Line::BareLf(lossy(body)),
                });
            }
            if self.inbuf.len() > MAX_LINE {
                // Discard, but keep looking for the end of the line.
                too_long = true;
                self.inbuf.clear();
            }
            scanned = self.inbuf.len();
            self.fill()?;
        }
    }

    /// Reads DATA up to and including the terminator. Returns the raw bytes
    /// and whether the message overflowed the in-memory cap (then only the
    /// tail is kept). With `limit`, closes the connection once that many
    /// bytes were read (or at the end of data, if that comes first).
    fn read_data(&mut self, limit: Option<usize>) -> Result<(Vec<u8>, bool), End> {
        let mut raw: Vec<u8> = Vec::new();
        let mut overflow = false;
        let mut total: usize = 0;
        loop {
            let scan_from = raw.len().saturating_sub(4);
            total += self.inbuf.len();
            raw.append(&mut self.inbuf);
            let end = if !overflow && raw.starts_with(b".\r\n") {
                Some(3)
            } else {
                find(&raw[scan_from..], b"\r\n.\r\n").map(|i| scan_from + i + 5)
            };
            if let Some(end) = end {
                if limit.is_some() {
                    return Err(End::Close);
                }
                self.inbuf = raw.split_off(end);
                return Ok((raw, overflow));
            }
            if limit.is_some_and(|n| total >= n) {
                return Err(End::Close);
            }
            if raw.len() > MAX_MESSAGE {
                overflow = true;
                raw = raw.split_off(raw.len() - 4);
            }
            self.fill()?;
        }
    }
}

fn now_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Removes the leading dot of each line that starts with one (lines end at CRLF).
pub fn unstuff(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut at_line_start = true;
    let mut prev_cr = false;
    for &b in raw {
        if at_line_start && b == b'.' {
            at_line_start = false;
            prev_cr = false;
            continue;
        }
        at_line_start = prev_cr && b == b'\n';
        prev_cr = b == b'\r';
        out.push(b);
    }
    out
}

/// Parses `FROM:<path> params` / `TO:<path> params` (keyword case-insensitive).
fn parse_path<'a>(arg: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    if arg.len() < keyword.len() || !arg[..keyword.len()].eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => {
                let after = &inner[i + 1..];
                if !after.is_empty() && !after.starts_with(' ') {
                    return None;
                }
                return Some((&inner[..i], after.trim()));
            }
            _ => {}
        }
    }
    None
}

fn parse_xoauth2(s: &str) -> Option<(String, String)> {
    let mut user = None;
    let mut token = None;
    for part in s.split('\x01') {
        if let Some(u) = part.strip_prefix("user=") {
            user = Some(u.to_string());
        } else if let Some(a) = part.strip_prefix("auth=") {
            token = a.strip_prefix("Bearer ").map(str::to_string);
        }
    }
    Some((user?, token?))
}

/// RFC 7628 §3.1: `n,a=USER,` then `\x01auth=Bearer TOKEN\x01\x01`
/// (the GS2 escapes `=2C` and `=3D` undone).
fn parse_oauthbearer(s: &str) -> Option<(String, String)> {
    let mut parts = s.split('\x01');
    let gs2 = parts.next()?;
    let user = gs2
        .split(',')
        .find_map(|f| f.strip_prefix("a="))?
        .replace("=2C", ",")
        .replace("=3D", "=");
    let token = parts.find_map(|p| p.strip_prefix("auth=Bearer "))?;
    Some((user, token.to_string()))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 (padding optional); None on invalid input.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return None;
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// Certificates

/// Certificate material for one server: chain, key and the CA PEM to export.
#[derive(Clone)]
struct CertMaterial {
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
    ca_pem: String,
}

struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem: String,
}

fn make_ca(name: &str) -> TestCa {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("CA cert");
    TestCa {
        pem: cert.pem(),
        params,
        key,
    }
}

fn make_leaf(
    ca: &TestCa,
    sans: &[&str],
    expired: bool,
) -> (String, CertificateDer<'static>, Vec<u8>) {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(sans).expect("leaf params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "postern test server");
    params.is_ca = rcgen::IsCa::NoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).expect("sign leaf");
    (cert.pem(), cert.der().clone(), key.serialize_der())
}

fn main_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| make_ca("Postern Test CA"))
}

fn cert_material(kind: CertKind) -> CertMaterial {
    static CACHE: OnceLock<Mutex<HashMap<CertKind, CertMaterial>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(kind)
        .or_insert_with(|| {
            let ca = main_ca();
            let local = ["localhost", "127.0.0.1"];
            let (_, der, key) = match kind {
                CertKind::Valid => make_leaf(ca, &local, false),
                CertKind::Expired => make_leaf(ca, &local, true),
                CertKind::WrongHost => make_leaf(ca, &["wrong.example"], false),
                CertKind::Untrusted => make_leaf(&make_ca("Postern Rogue CA"), &local, false),
            };
            CertMaterial {
                chain: vec![der],
                key_der: key,
                ca_pem: ca.pem.clone(),
            }
        })
        .clone()
}

/// A TLS server configuration with the certificate of `cert_dir` (made by
/// [`ensure_cert_dir`] when missing), for the tests' HTTPS servers.
pub fn server_tls(cert_dir: &Path) -> Arc<rustls::ServerConfig> {
    ensure_cert_dir(cert_dir).expect("cert dir");
    let chain = CertificateDer::pem_file_iter(cert_dir.join("cert.pem"))
        .expect("cert.pem")
        .collect::<Result<Vec<_>, _>>()
        .expect("cert.pem");
    let key = PrivateKeyDer::from_pem_file(cert_dir.join("key.pem")).expect("key.pem");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server cert"),
    )
}

/// Writes `ca.pem`, `cert.pem` (leaf for localhost/127.0.0.1) and `key.pem`
/// into `dir` unless `cert.pem` already exists.
pub fn ensure_cert_dir(dir: &Path) -> io::Result<()> {
    if dir.join("cert.pem").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let ca = make_ca("Postern Sink CA");
    let (leaf_pem, _, key_der) = make_leaf(&ca, &["localhost", "127.0.0.1"], false);
    let key_pem = rustls_pem("PRIVATE KEY", &key_der);
    std::fs::write(dir.join("ca.pem"), ca.pem)?;
    std::fs::write(dir.join("key.pem"), key_pem)?;
    std::fs::write(dir.join("cert.pem"), leaf_pem)?;
    Ok(())
}

fn rustls_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn load_cert_dir(dir: &Path) -> io::Result<CertMaterial> {
    ensure_cert_dir(dir)?;
    let bad = |e: rustls::pki_types::pem::Error| {
        io::Error::new(io::ErrorKind::InvalidData, e.to_string())
    };
    let chain = CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .map_err(bad)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).map_err(bad)?;
    let key_der = match key {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "key.pem must be PKCS#8",
            ));
        }
    };
    let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).unwrap_or_default();
    Ok(CertMaterial {
        chain,
        key_der,
        ca_pem,
    })
}

fn build_tls(cfg: &ServerConfig) -> io::Result<(Option<Arc<rustls::ServerConfig>>, String)> {
    let material = match &cfg.cert_dir {
        Some(dir) => load_cert_dir(dir)?,
        None => cert_material(cfg.cert),
    };
    if cfg.tls == TlsMode::None {
        return Ok((None, material.ca_pem));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(material.key_der.clone()));
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| {
            b.with_no_client_auth()
                .with_single_cert(material.chain.clone(), key)
        })
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok((Some(Arc::new(tls)), material.ca_pem))
}
