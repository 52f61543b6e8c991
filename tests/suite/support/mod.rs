//! Shared test support: a throwaway Postern installation (config, spool,
//! log file, argv[0] links to the real binary) and the controllable SMTP
//! server in `smtp_server`.

#![allow(dead_code)]

pub mod https_server;
pub mod smtp_server;
pub mod token_server;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_postern"))
}

/// Output of one run.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A throwaway installation.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub spool: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub bindir: PathBuf,
}

/// The base config every test starts from: no relay, no automatic queue
/// run after submission (tests decide when delivery happens), a log file.
pub fn base_config(root: &Path) -> String {
    format!(
        "hostname = \"web1.example.com\"\ndomain = \"example.com\"\nspool_dir = \"{}\"\nlog = \"{}\"\n[queue]\nrun_on_submit = false\nretry_min = \"1m\"\nretry_max = \"1h\"\n[smtp]\nconnect_timeout = \"5s\"\ncommand_timeout = \"10s\"\ndata_timeout = \"20s\"\n",
        root.join("spool").display(),
        root.join("postern.log").display()
    )
}

impl TestEnv {
    /// A new installation with `extra` TOML appended to the base config
    /// (sections in `extra` must not repeat [queue] or [smtp]; use
    /// `with_config` for full control).
    pub fn new() -> TestEnv {
        TestEnv::with_config_fn(base_config)
    }

    /// A new installation whose config is built by `f(root)`.
    pub fn with_config_fn(f: impl FnOnce(&Path) -> String) -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("postern-test")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        let bindir = root.join("bin");
        std::fs::create_dir_all(&bindir).expect("bindir");
        for name in ["sendmail", "mailq", "newaliases", "postern", "send-mail"] {
            std::os::unix::fs::symlink(bin(), bindir.join(name)).expect("symlink");
        }
        let config = root.join("postern.toml");
        std::fs::write(&config, f(&root)).expect("config");
        TestEnv {
            spool: root.join("spool"),
            log: root.join("postern.log"),
            config,
            bindir,
            root,
            dir,
        }
    }

    /// Replace the config file.
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("config");
    }

    /// Base config plus a relay section for `port` (plain, loopback) and `extra`.
    pub fn relay_config(&self, port: u16, extra: &str) -> String {
        format!(
            "{}{extra}\n[[relay]]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n",
            base_config(&self.root)
        )
    }

    /// A command for `argv0` (sendmail, mailq, postern, ...) with the test config.
    pub fn cmd(&self, argv0: &str) -> Command {
        let mut c = Command::new(self.bindir.join(argv0));
        c.env("POSTERN_CONFIG", &self.config);
        c.env_remove("POSTERN_NOW");
        c
    }

    /// Run `argv0 args` with `stdin`, wait (at most 60 s).
    pub fn run(&self, argv0: &str, args: &[&str], stdin: &[u8]) -> Out {
        self.run_cmd(self.cmd(argv0), args, stdin)
    }

    /// Run with POSTERN_NOW set.
    pub fn run_at(&self, now: f64, argv0: &str, args: &[&str], stdin: &[u8]) -> Out {
        let mut c = self.cmd(argv0);
        c.env("POSTERN_NOW", format!("{now}"));
        self.run_cmd(c, args, stdin)
    }

    /// Run a prepared command.
    pub fn run_cmd(&self, mut c: Command, args: &[&str], stdin: &[u8]) -> Out {
        c.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        {
            let mut si = child.stdin.take().expect("stdin");
            let data = stdin.to_vec();
            std::thread::spawn(move || {
                let _ = si.write_all(&data);
            });
        }
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!("command did not finish within 60 s: {c:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let o = child.wait_with_output().expect("output");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// `sendmail args < stdin`.
    pub fn sendmail(&self, args: &[&str], stdin: &[u8]) -> Out {
        self.run("sendmail", args, stdin)
    }

    /// `postern queue run` (deliver what is due, in-process).
    pub fn queue_run(&self) -> Out {
        self.run("postern", &["queue", "run"], b"")
    }

    /// `postern queue run` at a given (test) time.
    pub fn queue_run_at(&self, now: f64) -> Out {
        self.run_at(now, "postern", &["queue", "run"], b"")
    }

    /// Files in a spool subdirectory, sorted.
    pub fn files(&self, sub: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.spool.join(sub))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Every committed entry (maildrop and queue), parsed.
    pub fn entries(&self) -> Vec<Entry> {
        let mut v = Vec::new();
        for sub in ["maildrop", "queue"] {
            for p in self.files(sub) {
                if let Some(e) = Entry::read(&p) {
                    v.push(e);
                }
            }
        }
        v
    }

    /// The one committed entry (panics unless exactly one).
    pub fn single_entry(&self) -> Entry {
        let e = self.entries();
        assert_eq!(
            e.len(),
            1,
            "expected exactly one queue entry, found {}",
            e.len()
        );
        e.into_iter().next().expect("entry")
    }

    /// Open this (root-owned) installation to user `nobody` as an installed
    /// spool is open to the set-group-id binary: the spool laid out, the
    /// config readable, maildrop writable (sticky), the trigger FIFO
    /// writable, the log file appendable (nobody's own lines land there).
    pub fn open_to_nobody(&self) {
        use std::os::unix::fs::PermissionsExt;
        let set = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()))
        };
        postern::spool::Spool::new(&self.spool)
            .ensure_layout()
            .expect("spool layout");
        set(&self.root, 0o755);
        set(&self.bindir, 0o755);
        set(&self.config, 0o644);
        set(&self.spool, 0o755);
        set(&self.spool.join("maildrop"), 0o1777);
        set(&self.spool.join("public"), 0o711);
        let trigger = self.spool.join("public").join("trigger");
        if trigger.exists() {
            set(&trigger, 0o622);
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        set(&self.log, 0o666);
    }

    /// The log file so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until `pred(log)` holds (at most `secs`).
    pub fn wait_log(&self, secs: u64, pred: impl Fn(&str) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            if pred(&self.log()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// A frozen test clock that a test moves: `POSTERN_NOW=@<file>` (see
/// src/clock.rs). Every process given [`TestClock::env_value`] reads the
/// instant in the file on each "now", so a running daemon sees [`set`]
/// at once (its timers wait at most a short tick under such a clock).
///
/// [`set`]: TestClock::set
pub struct TestClock {
    path: PathBuf,
}

impl TestClock {
    /// A clock file in `dir` standing at `t` (unix seconds).
    pub fn new(dir: &Path, t: f64) -> TestClock {
        let c = TestClock {
            path: dir.join("test-clock"),
        };
        c.set(t);
        c
    }

    /// Move the clock to `t`: written whole and renamed into place, so a
    /// reader never sees a partial number.
    pub fn set(&self, t: f64) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, format!("{t}\n")).expect("clock file");
        std::fs::rename(&tmp, &self.path).expect("clock file");
    }

    /// The value for `POSTERN_NOW`.
    pub fn env_value(&self) -> String {
        format!("@{}", self.path.display())
    }
}

/// Whether this is a CI run (`CI=true`), where no test may skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// This host lacks something a test needs (`reason`: a tool, a Python
/// package, a mount). Such a test is `#[ignore = "needs ..."]`, so only a
/// run with `--include-ignored` (scripts/test.sh as root, as CI does) gets
/// here; it fails rather than pass without having run.
#[track_caller]
pub fn unavailable(reason: &str) -> ! {
    panic!("this test cannot run on this host: {reason} (.ci/run installs what it needs)")
}

/// For `#[ignore = "needs root ..."]` tests: fail with a clear message when
/// run (with --include-ignored) by someone else than root.
#[track_caller]
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: run it as root (scripts/test.sh adds --include-ignored then)"
    );
}

/// A parsed queue entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub message: Vec<u8>,
    /// Envelope lines as (key, value).
    pub envelope: Vec<(String, String)>,
    pub mode: u32,
}

impl Entry {
    /// Parse a committed entry file; None when it is not whole.
    pub fn read(p: &Path) -> Option<Entry> {
        use std::os::unix::fs::PermissionsExt;
        let bytes = std::fs::read(p).ok()?;
        let (env, range) = postern::spool::format::decode(&bytes).ok()?;
        let _ = env;
        let text = std::str::from_utf8(&bytes[range.end..]).ok()?;
        let envelope = text
            .lines()
            .filter(|l| *l != "end")
            .map(|l| {
                let (k, v) = l.split_once(' ').unwrap_or((l, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        Some(Entry {
            path: p.to_path_buf(),
            message: bytes[range].to_vec(),
            envelope,
            mode: std::fs::metadata(p).ok()?.permissions().mode() & 0o7777,
        })
    }

    /// All values of `key`.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.envelope
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        self.all(key).into_iter().next()
    }

    /// Recipients without angle brackets.
    pub fn rcpts(&self) -> Vec<String> {
        self.all("rcpt")
            .iter()
            .map(|r| r.trim_matches(['<', '>']).to_string())
            .collect()
    }

    /// Sender without angle brackets.
    pub fn sender(&self) -> String {
        self.get("sender")
            .unwrap_or_default()
            .trim_matches(['<', '>'])
            .to_string()
    }

    /// The message as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.message).into_owned()
    }

    /// Header section (up to the first empty line), unfolded lines kept.
    pub fn headers(&self) -> String {
        let t = self.text();
        match t.find("\n\n") {
            Some(i) => t[..i + 1].to_string(),
            None => t,
        }
    }

    /// Body (after the first empty line).
    pub fn body(&self) -> Vec<u8> {
        match self.message.windows(2).position(|w| w == b"\n\n") {
            Some(i) => self.message[i + 2..].to_vec(),
            None => Vec::new(),
        }
    }
}

/// A port on 127.0.0.1 where connections are refused, kept reserved: a
/// socket bound to it but not listening, so no other test (or outgoing
/// connection) can take the port while the guard lives. `release` frees it
/// just before a test starts a server there.
pub struct ClosedPort {
    fd: Option<std::os::fd::OwnedFd>,
    /// The port.
    pub port: u16,
}

impl ClosedPort {
    /// A new reserved, refusing port.
    pub fn new() -> ClosedPort {
        use nix::sys::socket::{
            AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket,
        };
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("socket");
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn::new(127, 0, 0, 1, 0),
        )
        .expect("bind");
        let addr: SockaddrIn =
            getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd)).expect("getsockname");
        ClosedPort {
            fd: Some(fd),
            port: addr.port(),
        }
    }

    /// Free the port (to start a server on it).
    pub fn release(&mut self) -> u16 {
        self.fd = None;
        self.port
    }
}

/// A refusing port reserved for the rest of the test process.
pub fn closed_port() -> u16 {
    let p = ClosedPort::new();
    let port = p.port;
    std::mem::forget(p);
    port
}

/// Start a server on `port` (a relay that comes back), retrying for a few
/// seconds while the port is still taken.
pub fn start_on_port(cfg: smtp_server::ServerConfig, port: u16) -> smtp_server::SmtpServer {
    let start = Instant::now();
    loop {
        match smtp_server::SmtpServer::start_on(cfg.clone(), &format!("127.0.0.1:{port}")) {
            Ok(s) => return s,
            Err(e) if start.elapsed() < Duration::from_secs(10) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot start a server on port {port}: {e}"),
        }
    }
}

/// A free port on 127.0.0.1 for a server the test starts (bound once to
/// find it, then freed: the kernel does not hand it out again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Copy the postern binary to `dst` with `cp` in a child process. Copying
/// it here would hold a write descriptor in this multi-threaded process,
/// and a child another test thread forks at that moment keeps a copy of it
/// until its exec: executing `dst` then fails with ETXTBSY ("Text file
/// busy").
pub fn copy_binary(dst: &Path) {
    let st = Command::new("cp").arg(bin()).arg(dst).status().expect("cp");
    assert!(st.success(), "cp {} {}", bin().display(), dst.display());
}
