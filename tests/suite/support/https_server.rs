//! A scripted HTTPS server on 127.0.0.1 for the HTTPS API transports'
//! tests: TLS with a certificate from an rcgen CA (`ensure_cert_dir`:
//! `ca.pem`, `cert.pem` for localhost and 127.0.0.1, `key.pem`), HTTP/1.1
//! with keep-alive, request bodies by `Content-Length` or chunked. Every
//! request is recorded — method, path, headers (in order, as sent), body
//! bytes — and answered with the next scripted [`Answer`] (a 500 saying
//! "no scripted answer" when the script is used up). Bounded: at most 64
//! connections, 100 requests per connection, 64 MiB per body, 10 s idle.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// (name as sent, value), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    /// `status` with a JSON `body`.
    pub fn json(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
        }
    }

    /// With one more header.
    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }
}

struct Shared {
    requests: Mutex<Vec<Request>>,
    script: Mutex<VecDeque<Answer>>,
}

/// The server; it stops when dropped (the listener thread ends at its
/// next accept, which `Drop` provokes).
pub struct HttpsServer {
    port: u16,
    shared: Arc<Shared>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl HttpsServer {
    /// Serve with the certificate in `cert_dir` (created if missing),
    /// answering with `script` in order.
    pub fn start(cert_dir: &Path, script: Vec<Answer>) -> HttpsServer {
        let tls = super::smtp_server::server_tls(cert_dir);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(script.into()),
        });
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for (n, conn) in listener.incoming().enumerate() {
                    if n >= 64 || stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = conn else { continue };
                    let shared = Arc::clone(&shared);
                    let tls = Arc::clone(&tls);
                    std::thread::spawn(move || {
                        let _ = serve(tcp, tls, &shared);
                    });
                }
            });
        }
        HttpsServer { port, shared, stop }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Add answers to the script.
    pub fn push(&self, a: Answer) {
        self.shared.script.lock().unwrap().push_back(a);
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Wait (at most `timeout`) until `n` requests arrived; return them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let start = Instant::now();
        loop {
            let r = self.requests();
            if r.len() >= n || start.elapsed() > timeout {
                return r;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(tcp: TcpStream, tls: Arc<rustls::ServerConfig>, shared: &Shared) -> io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(tls).map_err(io::Error::other)?;
    let stream = rustls::StreamOwned::new(conn, tcp);
    let mut r = BufReader::new(stream);
    for _ in 0..100 {
        let Some(req) = read_request(&mut r)? else {
            return Ok(());
        };
        shared.requests.lock().unwrap().push(req);
        let a = shared
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Answer::json(500, r#"{"message":"no scripted answer"}"#));
        let mut out = format!("HTTP/1.1 {} Scripted\r\n", a.status);
        for (n, v) in &a.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\n\r\n{}",
            a.body.len(),
            a.body
        ));
        let s = r.get_mut();
        s.write_all(out.as_bytes())?;
        s.flush()?;
    }
    Ok(())
}

fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = r.by_ref().take(16 * 1024).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

fn read_request(r: &mut impl BufRead) -> io::Result<Option<Request>> {
    let line = match read_line(r) {
        Ok(Some(l)) => l,
        Ok(None) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for _ in 0..200 {
        let Some(h) = read_line(r)? else {
            return Ok(None);
        };
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.to_string(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let size = read_line(r)?.unwrap_or_default();
            let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "chunk size"))?;
            if n == 0 {
                let _ = read_line(r)?;
                break;
            }
            if body.len() + n > 64 << 20 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "too big"));
            }
            let at = body.len();
            body.resize(at + n, 0);
            r.read_exact(&mut body[at..])?;
            let _ = read_line(r)?;
        }
    } else if let Some(len) = get("content-length") {
        let n: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "content-length"))?;
        if n > 64 << 20 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "too big"));
        }
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}
