//! One accepted connection as an SMTP [`Channel`]: a TCP or unix stream,
//! upgraded in place to TLS on STARTTLS, with the listener's deadlines.
//!
//! Every read waits in slices of at most a second, so that the idle
//! timeout, the session's total timeout and the daemon's shutdown are all
//! seen within a second: a timeout is `TimedOut` (the session answers 421
//! and closes), a shutdown while the session waits for a command is
//! `ConnectionAborted` (421 "shutting down"); inside DATA a shutdown lets
//! the transaction finish (the daemon bounds how long it waits).

use crate::submit::smtpd::Channel;
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The stream under the channel.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
    Unix(UnixStream),
    /// After a failed upgrade.
    Closed,
}

/// An accepted connection with its deadlines.
pub struct Conn {
    stream: Stream,
    tls: Option<Arc<ServerConfig>>,
    idle: Duration,
    deadline: Instant,
    stop: Arc<AtomicBool>,
    waiting: bool,
}

impl Conn {
    /// A TCP connection; `tls`: the certificate to offer STARTTLS with.
    pub fn tcp(
        s: TcpStream,
        tls: Option<Arc<ServerConfig>>,
        idle: Duration,
        total: Duration,
        stop: Arc<AtomicBool>,
    ) -> Conn {
        let _ = s.set_nodelay(true);
        Conn::new(Stream::Tcp(s), tls, idle, total, stop)
    }

    /// A unix-socket connection (no TLS: it never leaves the host).
    pub fn unix(s: UnixStream, idle: Duration, total: Duration, stop: Arc<AtomicBool>) -> Conn {
        Conn::new(Stream::Unix(s), None, idle, total, stop)
    }

    fn new(
        stream: Stream,
        tls: Option<Arc<ServerConfig>>,
        idle: Duration,
        total: Duration,
        stop: Arc<AtomicBool>,
    ) -> Conn {
        Conn {
            stream,
            tls,
            idle,
            deadline: Instant::now() + total,
            stop,
            waiting: false,
        }
    }

    /// Write a reply before any session runs (a refusal), best effort.
    pub fn refuse(&mut self, line: &str) {
        let _ = self.set_timeout(Duration::from_secs(5));
        let _ = self.write_all(format!("{line}\r\n").as_bytes());
        let _ = self.flush();
    }

    fn set_timeout(&self, t: Duration) -> io::Result<()> {
        let t = Some(t.max(Duration::from_millis(1)));
        match &self.stream {
            Stream::Tcp(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Stream::Tls(s) => {
                s.sock.set_read_timeout(t)?;
                s.sock.set_write_timeout(t)
            }
            Stream::Unix(s) => {
                s.set_read_timeout(t)?;
                s.set_write_timeout(t)
            }
            Stream::Closed => Ok(()),
        }
    }

    fn read_once(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Closed => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let idle_end = Instant::now() + self.idle;
        loop {
            let now = Instant::now();
            let end = idle_end.min(self.deadline);
            if now >= end {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timeout exceeded"));
            }
            if self.waiting && self.stop.load(Ordering::Relaxed) {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "shutting down",
                ));
            }
            self.set_timeout((end - now).min(Duration::from_secs(1)))?;
            match self.read_once(buf) {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A client that does not read its replies is bounded by the idle
        // timeout too.
        self.set_timeout(
            self.idle
                .min(self.deadline.saturating_duration_since(Instant::now())),
        )?;
        match &mut self.stream {
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Closed => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.stream {
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
            Stream::Closed => Ok(()),
        }
    }
}

impl Channel for Conn {
    fn tls_offered(&self) -> bool {
        self.tls.is_some() && matches!(self.stream, Stream::Tcp(_))
    }

    fn start_tls(&mut self) -> io::Result<()> {
        let Some(cfg) = self.tls.clone() else {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        };
        let Stream::Tcp(sock) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        };
        let conn = ServerConnection::new(cfg).map_err(io::Error::other)?;
        let mut tls = StreamOwned::new(conn, sock);
        // The handshake, bounded by the idle timeout and the session's end.
        let end = (Instant::now() + self.idle).min(self.deadline);
        while tls.conn.is_handshaking() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"));
            }
            tls.sock.set_read_timeout(Some(left))?;
            tls.sock.set_write_timeout(Some(left))?;
            tls.conn.complete_io(&mut tls.sock)?;
        }
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    fn at_command(&mut self, waiting: bool) {
        self.waiting = waiting;
    }
}
