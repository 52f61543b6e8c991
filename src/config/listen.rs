//! `[listen]`: the local SMTP listener's addresses, who may connect, and its
//! limits — typed, with defaults, and the loopback rule checked here.
//!
//! The rule: a TCP address that is not a loopback address (127.0.0.0/8,
//! ::1) is refused unless the section names the networks allowed to connect
//! (`networks`), the users who may authenticate (`users_file`: AUTH is then
//! required) and a certificate (`tls_cert`/`tls_key`: STARTTLS is offered
//! and AUTH only after it). A unix socket is local by construction.

use super::Dur;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// One network of `networks`: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The network's address.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

impl Network {
    /// Parse `10.0.0.0/8`, `fd00::/8` or a single address.
    pub fn parse(s: &str) -> Result<Network, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{s:?} is not an address or network (e.g. 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        Ok(Network { addr, prefix })
    }

    /// True when `ip` is inside this network (an IPv4-mapped IPv6 peer is
    /// compared as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// True for a loopback peer or address (IPv4-mapped included).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}

/// The `[listen]` section. Off (no address, no socket) by default.
#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    /// TCP addresses to listen on.
    pub addresses: Vec<SocketAddr>,
    /// A unix socket to listen on.
    pub socket: Option<PathBuf>,
    /// Mode of the unix socket (who may connect: 0666 = every local user,
    /// like `/usr/sbin/sendmail`).
    pub socket_mode: u32,
    /// Who may connect to a non-loopback address.
    pub networks: Vec<Network>,
    /// `user:password` lines; AUTH is offered when set and required on a
    /// non-loopback address.
    pub users_file: Option<PathBuf>,
    /// Certificate chain (PEM) for STARTTLS.
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for STARTTLS.
    pub tls_key: Option<PathBuf>,
    /// Sessions open at once, over all clients.
    pub max_sessions: usize,
    /// Sessions open at once from one client address (or one local uid).
    pub max_sessions_per_client: usize,
    /// Longest wait for the client's next command or data.
    pub idle_timeout: Duration,
    /// Longest session, whatever it does.
    pub session_timeout: Duration,
    /// Recipients of one message.
    pub max_recipients: usize,
    /// Commands refused (4xx/5xx) before the connection is closed.
    pub max_errors: u32,
}

impl Listen {
    /// True when anything is to be listened on.
    pub fn enabled(&self) -> bool {
        !self.addresses.is_empty() || self.socket.is_some()
    }

    /// True when a client at `ip` may connect to a non-loopback address:
    /// a loopback peer, or one inside `networks`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        is_loopback(ip) || self.networks.iter().any(|n| n.contains(ip))
    }

    /// True when `addr` is a TCP address that needs the non-loopback
    /// requirements (networks, AUTH, TLS).
    pub fn is_public(addr: &SocketAddr) -> bool {
        !is_loopback(addr.ip())
    }
}

impl Default for Listen {
    fn default() -> Listen {
        listen(RawListen::default()).unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

/// `[listen]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    #[serde(default)]
    addresses: Vec<String>,
    socket: Option<PathBuf>,
    socket_mode: Option<String>,
    #[serde(default)]
    networks: Vec<String>,
    users_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    max_sessions: Option<usize>,
    max_sessions_per_client: Option<usize>,
    idle_timeout: Option<Dur>,
    session_timeout: Option<Dur>,
    max_recipients: Option<usize>,
    max_errors: Option<u32>,
}

/// `[listen]`, checked, with its defaults.
pub(super) fn listen(l: RawListen) -> Result<Listen, (String, String)> {
    let bad = |key: &str, why: String| (format!("listen.{key}"), why);
    let mut addresses = Vec::new();
    for a in &l.addresses {
        let sa: SocketAddr = a.parse().map_err(|_| {
            bad(
                "addresses",
                format!("{a:?} is not an address:port (e.g. \"127.0.0.1:25\" or \"[::1]:25\")"),
            )
        })?;
        if !addresses.contains(&sa) {
            addresses.push(sa);
        }
    }
    let networks = l
        .networks
        .iter()
        .map(|n| Network::parse(n).map_err(|w| bad("networks", w)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(s) = &l.socket
        && !s.is_absolute()
    {
        return Err(bad(
            "socket",
            format!("{}: must be an absolute path", s.display()),
        ));
    }
    let socket_mode = match &l.socket_mode {
        None => 0o666,
        Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                bad(
                    "socket_mode",
                    format!("{m:?}: an octal mode such as \"0660\""),
                )
            })?,
    };
    for (k, p) in [
        ("users_file", &l.users_file),
        ("tls_cert", &l.tls_cert),
        ("tls_key", &l.tls_key),
    ] {
        if let Some(p) = p
            && !p.is_absolute()
        {
            return Err(bad(k, format!("{}: must be an absolute path", p.display())));
        }
    }
    if l.tls_cert.is_some() != l.tls_key.is_some() {
        return Err(bad(
            "tls_cert",
            "tls_cert and tls_key go together (a certificate and its key)".into(),
        ));
    }
    if let Some(public) = addresses.iter().find(|a| Listen::is_public(a)) {
        let mut missing = Vec::new();
        if networks.is_empty() {
            missing.push("networks (who may connect)");
        }
        if l.users_file.is_none() {
            missing.push("users_file (AUTH is then required)");
        }
        if l.tls_cert.is_none() {
            missing.push("tls_cert and tls_key (STARTTLS before AUTH)");
        }
        if !missing.is_empty() {
            return Err(bad(
                "addresses",
                format!(
                    "{public} is not a loopback address: listening on it needs {}",
                    missing.join(", ")
                ),
            ));
        }
    }
    let positive = |k: &str, v: Option<usize>, def: usize| match v {
        Some(0) => Err(bad(k, "must be at least 1".into())),
        Some(n) => Ok(n),
        None => Ok(def),
    };
    let idle_timeout = l
        .idle_timeout
        .map(|d| d.0)
        .unwrap_or(Duration::from_secs(300));
    let session_timeout = l
        .session_timeout
        .map(|d| d.0)
        .unwrap_or(Duration::from_secs(1800));
    if idle_timeout.is_zero() || session_timeout.is_zero() {
        return Err(bad("idle_timeout", "timeouts must be above zero".into()));
    }
    Ok(Listen {
        addresses,
        socket: l.socket,
        socket_mode,
        networks,
        users_file: l.users_file,
        tls_cert: l.tls_cert,
        tls_key: l.tls_key,
        max_sessions: positive("max_sessions", l.max_sessions, 100)?,
        max_sessions_per_client: positive(
            "max_sessions_per_client",
            l.max_sessions_per_client,
            20,
        )?,
        idle_timeout,
        session_timeout,
        max_recipients: positive("max_recipients", l.max_recipients, 100)?,
        max_errors: l.max_errors.unwrap_or(20).max(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Listen, (String, String)> {
        let raw: RawListen = toml::from_str(text).expect("toml");
        listen(raw)
    }

    #[test]
    fn networks_match_by_prefix() {
        let n = Network::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let all = Network::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let v6 = Network::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("host").is_err());
        assert_eq!(Network::parse("192.0.2.7").unwrap().prefix, 32);
    }

    #[test]
    fn loopback_needs_nothing_else() {
        let l = parse("addresses = [\"127.0.0.1:2525\", \"[::1]:2525\"]").unwrap();
        assert_eq!(l.addresses.len(), 2);
        assert!(l.enabled());
        assert!(!parse("").unwrap().enabled());
    }

    #[test]
    fn public_address_needs_networks_auth_and_tls() {
        let e = parse("addresses = [\"0.0.0.0:2525\"]").unwrap_err();
        assert_eq!(e.0, "listen.addresses");
        assert!(e.1.contains("networks") && e.1.contains("users_file") && e.1.contains("tls_cert"));
        let e = parse(
            "addresses = [\"0.0.0.0:2525\"]\nnetworks = [\"10.0.0.0/8\"]\nusers_file = \"/u\"",
        )
        .unwrap_err();
        assert!(
            e.1.contains("tls_cert") && !e.1.contains("networks ("),
            "{e:?}"
        );
        parse(
            "addresses = [\"0.0.0.0:2525\"]\nnetworks = [\"10.0.0.0/8\"]\nusers_file = \"/u\"\ntls_cert = \"/c\"\ntls_key = \"/k\"",
        )
        .unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        assert_eq!(
            parse("addresses = [\"localhost:25\"]").unwrap_err().0,
            "listen.addresses"
        );
        assert_eq!(parse("socket = \"rel\"").unwrap_err().0, "listen.socket");
        assert_eq!(
            parse("socket_mode = \"999\"").unwrap_err().0,
            "listen.socket_mode"
        );
        assert_eq!(
            parse("max_sessions = 0").unwrap_err().0,
            "listen.max_sessions"
        );
        assert_eq!(parse("tls_cert = \"/c\"").unwrap_err().0, "listen.tls_cert");
        assert_eq!(parse("socket_mode = \"0660\"").unwrap().socket_mode, 0o660);
    }
}
