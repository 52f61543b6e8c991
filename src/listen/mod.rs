//! The daemon's SMTP listener (`[listen]`): applications that speak SMTP
//! (Grafana, GitLab, Django, containers) hand mail to Postern on a loopback
//! port, a non-loopback port for the networks the config names, or a unix
//! socket — with exactly the semantics of `sendmail -bs` (the engine is
//! `submit::smtpd::serve`): 250 after DATA only once the message is durably
//! committed to maildrop, the same header fix-ups, sender rules and size
//! limit; the daemon's pickup then takes it like any other submission.
//!
//! Sockets are bound by [`bind`] before the daemon leaves root (port 25),
//! or passed by systemd socket activation (`LISTEN_FDS`, the
//! `postern-smtp.socket` unit), then served by [`Listeners::start`]: one
//! thread accepts (polling every listening socket), one thread per session,
//! bounded overall and per client (address, or uid on the unix socket via
//! `SO_PEERCRED`). The client is recorded in the Received field and the
//! log. [`Running::stop`] ends idle sessions with 421 and lets a DATA in
//! progress finish, within a bound.

mod channel;
mod tls;
mod users;

use crate::config::{Config, ConfigSource, Listen};
use crate::error::{Error, Kind, Result};
use crate::spool::Spool;
use crate::submit::smtpd::{self, Policy};
use crate::submit::{EntrySource, Submitter, User};
use channel::Conn;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
pub use users::Users;

/// The configuration the sessions use; replaced on SIGHUP.
type SharedConfig = Arc<RwLock<Arc<Config>>>;

/// One listening socket.
enum Socket {
    Tcp {
        listener: TcpListener,
        local: SocketAddr,
    },
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

impl Socket {
    fn describe(&self) -> String {
        match self {
            Socket::Tcp { local, .. } => local.to_string(),
            Socket::Unix { path, .. } => format!("unix:{}", path.display()),
        }
    }

    /// A TCP socket on a non-loopback address.
    fn is_public(&self) -> bool {
        matches!(self, Socket::Tcp { local, .. } if Listen::is_public(local))
    }
}

/// The bound sockets, not yet served.
pub struct Listeners {
    sockets: Vec<Socket>,
}

/// A listening socket passed by systemd, as a TCP or unix listener.
fn adopt(fd: OwnedFd) -> Result<Socket> {
    use nix::sys::socket::{AddressFamily, SockaddrLike, SockaddrStorage, getsockname};
    let addr: SockaddrStorage = getsockname(fd.as_raw_fd()).map_err(|e| {
        Error::new(
            Kind::OsErr,
            format!("a socket passed by systemd is not usable: {e}"),
        )
    })?;
    match addr.family() {
        Some(AddressFamily::Unix) => {
            let listener = UnixListener::from(fd);
            let path = addr
                .as_unix_addr()
                .and_then(|u| u.path())
                .map(PathBuf::from)
                .unwrap_or_default();
            Ok(Socket::Unix { listener, path })
        }
        Some(AddressFamily::Inet | AddressFamily::Inet6) => {
            let listener = TcpListener::from(fd);
            let local = listener
                .local_addr()
                .map_err(|e| Error::io(Kind::OsErr, "a socket passed by systemd", &e))?;
            Ok(Socket::Tcp { listener, local })
        }
        _ => Err(Error::new(
            Kind::Config,
            "a socket passed by systemd is neither TCP nor a unix socket",
        )),
    }
}

/// Bind what `[listen]` names, after taking `inherited`, the sockets
/// systemd passed (`privilege::systemd_sockets`). Called before the daemon
/// leaves root, so port 25 works from a root start; an unprivileged daemon
/// needs a port above 1023, socket activation or CAP_NET_BIND_SERVICE.
pub fn bind(cfg: &Listen, inherited: Vec<OwnedFd>) -> Result<Listeners> {
    let mut sockets = Vec::new();
    for fd in inherited {
        sockets.push(adopt(fd)?);
    }
    for addr in &cfg.addresses {
        let have = sockets
            .iter()
            .any(|s| matches!(s, Socket::Tcp { local, .. } if local == addr));
        if have {
            continue;
        }
        let listener = TcpListener::bind(addr).map_err(|e| bind_error(&addr.to_string(), &e))?;
        let local = listener.local_addr().unwrap_or(*addr);
        sockets.push(Socket::Tcp { listener, local });
    }
    if let Some(path) = &cfg.socket {
        let have = sockets
            .iter()
            .any(|s| matches!(s, Socket::Unix { path: p, .. } if p == path));
        if !have {
            sockets.push(bind_unix(path, cfg.socket_mode)?);
        }
    }
    if let Some(public) = sockets.iter().find(|s| s.is_public())
        && (cfg.networks.is_empty() || cfg.users_file.is_none() || cfg.tls_cert.is_none())
    {
        return Err(Error::new(
            Kind::Config,
            format!(
                "listen: {} is not a loopback address: set listen.networks, listen.users_file and listen.tls_cert/tls_key",
                public.describe()
            ),
        ));
    }
    for s in &sockets {
        let r = match s {
            Socket::Tcp { listener, .. } => listener.set_nonblocking(true),
            Socket::Unix { listener, .. } => listener.set_nonblocking(true),
        };
        r.map_err(|e| Error::io(Kind::OsErr, format!("listen on {}", s.describe()), &e))?;
    }
    Ok(Listeners { sockets })
}

fn bind_error(what: &str, e: &std::io::Error) -> Error {
    let kind = if e.kind() == std::io::ErrorKind::PermissionDenied {
        Kind::Config
    } else {
        Kind::TempFail
    };
    let mut err = Error::io(kind, format!("cannot listen on {what}"), e);
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        err = err.context(
            "a port below 1024 needs the daemon started as root, the postern-smtp.socket unit, or CAP_NET_BIND_SERVICE",
        );
    }
    err
}

/// Bind a unix socket at `path` (a stale socket left by an earlier run is
/// replaced; any other file is not touched) with `mode`.
fn bind_unix(path: &std::path::Path, mode: u32) -> Result<Socket> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let shown = format!("unix:{}", path.display());
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if !md.file_type().is_socket() {
            return Err(Error::new(
                Kind::Config,
                format!(
                    "listen.socket {} exists and is not a socket",
                    path.display()
                ),
            ));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|e| bind_error(&shown, &e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(Kind::OsErr, format!("chmod {}", path.display()), &e))?;
    Ok(Socket::Unix {
        listener,
        path: path.to_path_buf(),
    })
}

impl Listeners {
    /// Nothing to listen on.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Serve the sockets with `cfg`, reloaded from `source` on SIGHUP like
    /// the rest of the daemon (new sessions use the new file; the addresses,
    /// the socket, the users file and the certificate are taken at start).
    /// Loads the users file and the certificate now: a broken one stops the
    /// daemon from starting with a configuration error.
    pub fn start(self, cfg: Config, source: ConfigSource) -> Result<Running> {
        let snapshot = Arc::new(cfg);
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))
            .map_err(|e| Error::io(Kind::OsErr, "SIGHUP handler", &e))?;
        // SIGTERM stops the listener at once, while the daemon's loop lets
        // its deliveries finish: both within the same shutdown_timeout.
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
            signal_hook::flag::register(sig, Arc::clone(&stop))
                .map_err(|e| Error::io(Kind::OsErr, "SIGTERM handler", &e))?;
        }
        let cfg: SharedConfig = Arc::new(RwLock::new(snapshot.clone()));
        let l = &snapshot.listen;
        let users = match &l.users_file {
            Some(p) => Some(Arc::new(Users::load(p)?)),
            None => None,
        };
        let tls = match (&l.tls_cert, &l.tls_key) {
            (Some(c), Some(k)) => Some(tls::server_config(c, k)?),
            _ => None,
        };
        let spool = Spool::new(&snapshot.spool_dir);
        let maildrop = crate::spool::maildrop::open_dir(&spool.maildrop()).map_err(|e| {
            Error::io(
                Kind::TempFail,
                format!("cannot open {}", spool.maildrop().display()),
                &e,
            )
        })?;
        let shared = Arc::new(Shared {
            cfg,
            source,
            hup,
            users,
            tls,
            stop,
            stopped_at: Mutex::new(None),
            sessions: Mutex::new(Sessions::default()),
            user: User::lookup(nix::unistd::geteuid().as_raw()),
            maildrop,
            spool: spool.clone(),
        });
        for s in &self.sockets {
            log::info!("listening for SMTP on {}", s.describe());
        }
        let sh = shared.clone();
        let accept = std::thread::Builder::new()
            .name("smtp-accept".into())
            .spawn(move || accept_loop(self.sockets, sh))
            .map_err(|e| Error::io(Kind::OsErr, "cannot start the SMTP listener", &e))?;
        Ok(Running { shared, accept })
    }
}

/// Who is connected: per client and overall.
#[derive(Default)]
struct Sessions {
    total: usize,
    per_client: HashMap<ClientKey, usize>,
}

/// What the per-client bound counts by.
#[derive(Clone, PartialEq, Eq, Hash)]
enum ClientKey {
    Ip(IpAddr),
    Uid(u32),
}

/// What every session shares.
struct Shared {
    cfg: SharedConfig,
    source: ConfigSource,
    /// SIGHUP seen: reload before the next session.
    hup: Arc<AtomicBool>,
    users: Option<Arc<Users>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: Arc<AtomicBool>,
    /// When the accept loop saw `stop` (the grace counts from there).
    stopped_at: Mutex<Option<Instant>>,
    sessions: Mutex<Sessions>,
    /// The daemon's own user: the owner of the entries it writes.
    user: User,
    maildrop: std::fs::File,
    /// Its trigger FIFO is poked after each commit.
    spool: Spool,
}

impl Shared {
    /// After SIGHUP: the new file for new sessions (a broken file keeps
    /// the old one; the daemon's loop logs why).
    fn reload_if_asked(&self) {
        if !self.hup.swap(false, Ordering::Relaxed) {
            return;
        }
        let Ok(new) = Config::load(&self.source) else {
            return;
        };
        let old = self.config();
        if new.listen != old.listen {
            log::warn!(
                "listen: the [listen] section changed; its addresses, socket, users and certificate take effect at the next start"
            );
        }
        if let Ok(mut c) = self.cfg.write() {
            *c = Arc::new(new);
        }
    }

    fn config(&self) -> Arc<Config> {
        match self.cfg.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Count a new session from `key`; Err: the reply that refuses it.
    fn admit(&self, key: &ClientKey, l: &Listen, host: &str) -> std::result::Result<(), String> {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if s.total >= l.max_sessions {
            return Err(format!("421 4.7.0 {host} Error: too many connections"));
        }
        let mine = s.per_client.get(key).copied().unwrap_or(0);
        if mine >= l.max_sessions_per_client {
            return Err(format!(
                "421 4.7.0 {host} Error: too many connections from you"
            ));
        }
        s.total += 1;
        s.per_client.insert(key.clone(), mine + 1);
        Ok(())
    }

    fn release(&self, key: &ClientKey) {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_client.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                s.per_client.remove(key);
            }
        }
    }

    fn active(&self) -> usize {
        self.sessions.lock().map(|s| s.total).unwrap_or(0)
    }

    /// Wake the daemon's pickup: a message is in maildrop.
    fn poke(&self) {
        if let Ok(f) = self.spool.open_trigger() {
            crate::spool::poke(&f, b'W');
        }
    }
}

/// The listener at work.
pub struct Running {
    shared: Arc<Shared>,
    accept: std::thread::JoinHandle<()>,
}

impl Running {
    /// Stop accepting (SIGTERM already did); idle sessions get 421 within
    /// a second; a DATA in progress may finish within `grace` of the stop.
    /// Returns the sessions still open when the grace ran out (their
    /// clients got no 250: nothing is lost).
    pub fn stop(self, grace: Duration) -> usize {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.accept.join();
        let since = self
            .shared
            .stopped_at
            .lock()
            .ok()
            .and_then(|t| *t)
            .unwrap_or_else(Instant::now);
        let end = since + grace;
        while self.shared.active() > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.shared.active()
    }
}

fn accept_loop(sockets: Vec<Socket>, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::Relaxed) {
        accept_round(&sockets, &shared);
    }
    if let Ok(mut t) = shared.stopped_at.lock() {
        *t = Some(Instant::now());
    }
    log::info!("SMTP listener stopped accepting");
}

/// Wait (at most 250 ms) for connections and take them.
fn accept_round(sockets: &[Socket], shared: &Arc<Shared>) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds: Vec<PollFd> = sockets
        .iter()
        .map(|s| match s {
            Socket::Tcp { listener, .. } => PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            Socket::Unix { listener, .. } => PollFd::new(listener.as_fd(), PollFlags::POLLIN),
        })
        .collect();
    match poll(&mut fds, PollTimeout::from(250u16)) {
        Ok(0) | Err(nix::errno::Errno::EINTR) => return,
        Ok(_) => {}
        Err(e) => {
            log::error!("SMTP listener: poll: {e}");
            std::thread::sleep(Duration::from_secs(1));
            return;
        }
    }
    let ready: Vec<bool> = fds
        .iter()
        .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
        .collect();
    drop(fds);
    shared.reload_if_asked();
    for (s, _) in sockets.iter().zip(ready).filter(|(_, r)| *r) {
        accept_one(s, shared);
    }
}

/// Take every pending connection on `s` and start its session.
fn accept_one(s: &Socket, shared: &Arc<Shared>) {
    loop {
        let accepted = match s {
            Socket::Tcp { listener, .. } => listener.accept().map(|(c, peer)| {
                let _ = c.set_nonblocking(false);
                Accepted::Tcp(c, peer)
            }),
            Socket::Unix { listener, .. } => listener.accept().map(|(c, _)| {
                let _ = c.set_nonblocking(false);
                Accepted::Unix(c)
            }),
        };
        let a = match accepted {
            Ok(a) => a,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // EMFILE and friends: the connection stays in the backlog.
                log::warn!("SMTP listener: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
                return;
            }
        };
        let public = s.is_public();
        let key = match admit(&a, public, shared) {
            Ok(k) => k,
            Err(line) => {
                a.refuse(&line);
                continue;
            }
        };
        let sh = shared.clone();
        let counted = key.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("smtp-session".into())
            .spawn(move || session(a, key, public, &sh))
        {
            log::error!("SMTP listener: cannot start a session: {e}");
            shared.release(&counted);
        }
    }
}

/// A connection just accepted.
enum Accepted {
    Tcp(std::net::TcpStream, SocketAddr),
    Unix(std::os::unix::net::UnixStream),
}

impl Accepted {
    /// Who it counts as: the peer address, or the peer uid on the socket.
    fn key(&self) -> ClientKey {
        match self {
            Accepted::Tcp(_, peer) => ClientKey::Ip(peer.ip()),
            Accepted::Unix(s) => ClientKey::Uid(
                nix::sys::socket::getsockopt(s, nix::sys::socket::sockopt::PeerCredentials)
                    .map(|c| c.uid())
                    .unwrap_or(u32::MAX),
            ),
        }
    }

    /// Refuse with `line` without waiting: the connection is new, so its
    /// send buffer is empty and one short line never blocks.
    fn refuse(self, line: &str) {
        use std::io::Write;
        let bytes = format!("{line}\r\n");
        match self {
            Accepted::Tcp(s, _) => {
                let _ = s.set_nonblocking(true);
                let _ = (&s).write_all(bytes.as_bytes());
            }
            Accepted::Unix(s) => {
                let _ = s.set_nonblocking(true);
                let _ = (&s).write_all(bytes.as_bytes());
            }
        }
    }
}

/// In the accept thread, in the order connections arrive: a client outside
/// `networks` (on a non-loopback address) or over a session bound is
/// refused at once; otherwise its session is counted. Ok(key): serve it;
/// Err: the reply that refuses it.
fn admit(a: &Accepted, public: bool, shared: &Shared) -> std::result::Result<ClientKey, String> {
    let cfg = shared.config();
    let host = &cfg.hostname;
    let key = a.key();
    let who = match (&key, a) {
        (_, Accepted::Tcp(_, peer)) => format!("[{}]:{}", peer.ip(), peer.port()),
        (ClientKey::Uid(u), _) => format!("unix socket, uid {u}"),
        (ClientKey::Ip(ip), _) => format!("[{ip}]"),
    };
    let refusal = match &key {
        ClientKey::Ip(ip) if public && !cfg.listen.allows(*ip) => {
            log::warn!("{who}: connection refused: not in listen.networks");
            Some(format!("554 5.7.1 {host} Error: access denied"))
        }
        _ => match shared.admit(&key, &cfg.listen, host) {
            Ok(()) => None,
            Err(reply) => {
                log::warn!("{who}: connection refused: {}", &reply[10..]);
                Some(reply)
            }
        },
    };
    match refusal {
        None => Ok(key),
        Some(line) => Err(line),
    }
}

/// One admitted session (counted as `key`): who it is, the SMTP dialogue.
fn session(a: Accepted, key: ClientKey, public: bool, shared: &Shared) {
    let cfg = shared.config();
    let l = &cfg.listen;
    let host = cfg.hostname.clone();
    let stop = shared.stop.clone();
    let (mut conn, client) = match a {
        Accepted::Tcp(s, peer) => {
            let conn = Conn::tcp(
                s,
                shared.tls.clone(),
                l.idle_timeout,
                l.session_timeout,
                stop,
            );
            (conn, format!("[{}]:{}", peer.ip(), peer.port()))
        }
        Accepted::Unix(s) => {
            let conn = Conn::unix(s, l.idle_timeout, l.session_timeout, stop);
            let client = match key {
                ClientKey::Uid(uid) if uid != u32::MAX => {
                    let name = User::lookup(uid).name;
                    format!("unix socket, uid {uid} ({})", crate::escape::field(&name))
                }
                _ => "unix socket".to_string(),
            };
            (conn, client)
        }
    };
    log::info!("{client}: connected");
    let dir = match shared.maildrop.try_clone() {
        Ok(d) => d,
        Err(e) => {
            log::error!("{client}: cannot use maildrop: {e}");
            conn.refuse(&format!("421 4.3.0 {host} Error: cannot accept mail now"));
            shared.release(&key);
            return;
        }
    };
    let mut sub = Submitter::new(&cfg, shared.user.clone(), EntrySource::Direct, dir);
    let users = shared.users.clone();
    let poke = || shared.poke();
    let policy = Policy {
        auth: users.as_deref().map(|u| u as &dyn smtpd::Authenticator),
        auth_required: public,
        auth_needs_tls: public,
        max_recipients: l.max_recipients,
        max_errors: l.max_errors,
        client: Some(client.clone()),
        on_commit: Some(&poke),
    };
    let served = smtpd::serve(&mut sub, conn, &policy);
    // Released before the line is logged: a session counted is one whose
    // end has not been logged yet.
    shared.release(&key);
    match served {
        Ok(c) => log::info!("{client}: disconnected after {} message(s)", c.len()),
        Err(e) => log::info!("{client}: session ended: {e}"),
    }
}
