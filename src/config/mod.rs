//! `postern.toml`: the typed configuration, its defaults and its validation.
//!
//! The file is world-readable and holds no secrets (a relay's secret lives in
//! `password_file` or comes from `password_command`). Which file is read is
//! decided by the caller through [`ConfigSource`]: an installed setgid binary
//! always uses the compiled-in path and spool; `-C FILE` and `POSTERN_CONFIG`
//! are honoured only for unprivileged runs (tests, development), and so is
//! the configuration from `POSTERN_*` variables (containers, [`env`]).
//!
//! Every error names the file and the key, and maps to exit code 78.

pub mod env;
mod limits;
mod listen;
mod oauth2;
mod validate;

pub use limits::{
    DEFAULT_MESSAGES_PER_HOUR, DEFAULT_RECIPIENTS_PER_HOUR, DEFAULT_RECIPIENTS_PER_MESSAGE, Limits,
    UserLimits,
};
use limits::{RawLimits, limits_from};
pub use listen::{Listen, Network};
pub use oauth2::{Flow, OAuth2};

use crate::error::{Error, Kind, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The compiled-in configuration path.
pub const DEFAULT_CONFIG: &str = "/etc/postern/postern.toml";
/// The compiled-in spool directory.
pub const DEFAULT_SPOOL: &str = "/var/spool/postern";

/// Transport security towards a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection, then STARTTLS, which is required.
    Starttls,
    /// Implicit TLS from the first byte (port 465).
    Tls,
    /// No TLS at all: only to loopback, or with `allow_plaintext = true`.
    None,
}

/// Which transport delivers through a relay (`kind` in `[[relay]]`). A new
/// transport is one module under `deliver/` and one arm here (and in
/// `deliver::relays::transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayKind {
    /// SMTP submission to a smart host (the default).
    Smtp,
    /// Mailgun's HTTPS API (`messages.mime`): `deliver::mailgun`.
    Mailgun,
    /// Amazon SES v2 `SendEmail` with raw content, SigV4: `deliver::ses`.
    Ses,
    /// Microsoft Graph `sendMail` with the base64 MIME message, OAuth2
    /// client credentials: `deliver::graph`.
    Graph,
}

impl RelayKind {
    /// The names `kind` accepts, for error messages.
    pub const NAMES: &'static [&'static str] = &["smtp", "mailgun", "ses", "graph"];

    /// The kind named `s` (as written in the config).
    pub fn from_name(s: &str) -> Option<RelayKind> {
        match s {
            "smtp" => Some(RelayKind::Smtp),
            "mailgun" => Some(RelayKind::Mailgun),
            "ses" => Some(RelayKind::Ses),
            "graph" => Some(RelayKind::Graph),
            _ => None,
        }
    }

    /// The kind's name, as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            RelayKind::Smtp => "smtp",
            RelayKind::Mailgun => "mailgun",
            RelayKind::Ses => "ses",
            RelayKind::Graph => "graph",
        }
    }

    /// An HTTPS API transport (not SMTP).
    pub fn is_https(self) -> bool {
        self != RelayKind::Smtp
    }
}

/// Where an HTTPS API relay (`kind = "mailgun"`, `"ses"` or `"graph"`) is reached:
/// the base URL (`url`, or the provider's default for the region) and the
/// provider's keys. `host` and `port` of the [`Relay`] are the URL's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpApi {
    /// `https://host[:port][/prefix]`, without a trailing slash.
    pub base: String,
    /// Mailgun: the sending domain (`domain`); empty for SES.
    pub domain: String,
    /// SES: the AWS region; Mailgun: `us` or `eu`.
    pub region: String,
}

/// How the From header is rewritten to the configured sender identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FromRewrite {
    /// Never touch From.
    Never,
    /// Only when From is a local address (a local user on this host).
    Local,
    /// Always.
    Always,
}

/// Which envelope senders `addresses.sender` replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SenderScope {
    /// Every message.
    All,
    /// Only local senders (a bare user name or a local domain).
    Local,
}

/// What happens to a local name that is neither an alias nor an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownLocal {
    /// Deliver it like any local name: `local_recipient`, else
    /// `name@domain` (Postfix as a null client, nullmailer).
    Qualify,
    /// Refuse it (exit 67, `550` in `-bs`), as sendmail does.
    Reject,
}

/// One smart host.
#[derive(Debug, Clone)]
pub struct Relay {
    /// Which transport delivers through this relay.
    pub kind: RelayKind,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Transport security.
    pub tls: TlsMode,
    /// Allow `tls = "none"` to a host that is not loopback (without AUTH);
    /// on a loopback host, allow AUTH over the plain connection (a local
    /// stunnel or sidecar). AUTH in plain text to any other host is a
    /// configuration error.
    pub allow_plaintext: bool,
    /// AUTH user name (None: no AUTH).
    pub username: Option<String>,
    /// File holding the secret (first line).
    pub password_file: Option<PathBuf>,
    /// Command whose stdout is the secret (e.g. a fresh OAuth2 token).
    pub password_command: Option<String>,
    /// Allowed AUTH mechanisms, in preference order (upper case).
    pub auth_mechanisms: Vec<String>,
    /// Extra trust anchors (PEM).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) and key.
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM).
    pub client_key: Option<PathBuf>,
    /// Messages per minute, 0 = unlimited.
    pub rate_limit: u32,
    /// Envelope-sender patterns this relay serves (lower case; `*` matches
    /// any run of characters, `@domain` means `*@domain`, `<>` the null
    /// sender). Empty: the relay serves every sender no other relay claims
    /// (the default group). See `deliver::sender_relays`.
    pub senders: Vec<String>,
    /// SPKI SHA-256 pins of the relay's key (`sha256//BASE64`, as curl's
    /// `--pinnedpubkey`): the leaf's key must match one. Empty: no pinning.
    pub tls_pins: Vec<String>,
    /// Verify the certificate chain and name (true unless `tls_verify =
    /// false`, which is allowed only together with `tls_pin`: pin-only).
    pub tls_verify: bool,
    /// `port = "auto"`: `port` is only the first candidate; the transport
    /// tries 587 (STARTTLS), 465 (TLS) and 2525 (STARTTLS) and remembers
    /// what worked (`spool::relay_ports`).
    pub port_auto: bool,
    /// The HTTPS API endpoint (Some exactly for an HTTPS `kind`).
    pub api: Option<HttpApi>,
    /// `[relay.oauth2]`: the secret is an OAuth2 access token obtained by
    /// `deliver::oauth2` (None: password_file / password_command).
    pub oauth2: Option<OAuth2>,
}

impl Relay {
    /// `host:port` for messages (`host:auto` for `port = "auto"`).
    pub fn label(&self) -> String {
        if self.port_auto {
            return format!("{}:auto", self.host);
        }
        format!("{}:{}", self.host, self.port)
    }
}

/// The `[addresses]` section.
#[derive(Debug, Clone)]
pub struct Addresses {
    /// Path of the aliases file.
    pub aliases_file: PathBuf,
    /// Where mail for a local name with no alias goes (`%u` = the name).
    pub local_recipient: Option<String>,
    /// A local name that is neither an alias nor an account: qualify or reject.
    pub unknown_local: UnknownLocal,
    /// Extra domains that count as this host.
    pub local_domains: Vec<String>,
    /// Envelope sender to impose.
    pub sender: Option<String>,
    /// Which senders `sender` replaces.
    pub sender_scope: SenderScope,
    /// From header rewriting.
    pub from_header: FromRewrite,
    /// Qualify unqualified addresses in To/Cc/From with `domain`.
    pub masquerade: bool,
}

/// The `[queue]` section.
#[derive(Debug, Clone)]
pub struct Queue {
    /// How long a message may stay before what is left bounces.
    pub max_lifetime: Duration,
    /// First retry delay.
    pub retry_min: Duration,
    /// Largest retry delay.
    pub retry_max: Duration,
    /// Send a delay warning after this long (None: never).
    pub delay_warning: Option<Duration>,
    /// Parallel SMTP sessions when draining.
    pub parallel: usize,
    /// Start a one-shot queue run after submission when no daemon answers.
    pub run_on_submit: bool,
    /// How long a submitter may hold a maildrop entry locked without
    /// committing it before the runner removes it (an entry whose writer
    /// let go of it is removed at once).
    pub maildrop_stale_after: Duration,
    /// Free bytes a submission (other than root's) must leave on the
    /// spool's file system (0: no reserve).
    pub min_free: u64,
    /// How long `postern daemon` waits, after SIGTERM, for the transactions
    /// in flight; then it exits leaving them queued (retried at the next
    /// start; the relay may then see a duplicate).
    pub shutdown_timeout: Duration,
}

/// The `[smtp]` section: client behaviour.
#[derive(Debug, Clone)]
pub struct Smtp {
    /// Name sent in EHLO (default: hostname).
    pub helo_name: Option<String>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Timeout for each command reply.
    pub command_timeout: Duration,
    /// Timeout for the reply after the final dot.
    pub data_timeout: Duration,
    /// Messages sent over one session before it is closed.
    pub max_messages_per_session: usize,
}

/// The `[stats]` section.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Keep the event log (for `postern stats`).
    pub enabled: bool,
    /// Largest event log before it is rotated.
    pub max_log_bytes: u64,
    /// Write Prometheus metrics to this file (node_exporter textfile collector).
    pub prometheus_textfile: Option<PathBuf>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the file came from (None: built-in defaults, no file).
    pub path: Option<PathBuf>,
    /// Fully qualified host name (unset in the file: from the system, see
    /// [`system_hostname`]).
    pub hostname: String,
    /// Where `hostname` came from (for `postern check`).
    pub hostname_origin: NameOrigin,
    /// Domain for local senders.
    pub domain: String,
    /// Where `domain` came from (for `postern check`).
    pub domain_origin: NameOrigin,
    /// Spool directory.
    pub spool_dir: PathBuf,
    /// Largest accepted message in bytes, when set explicitly. None: the
    /// relays' advertised SIZE, or [`FALLBACK_MESSAGE_SIZE`] while no relay
    /// has been seen (see `submit::limit`).
    pub max_message_size: Option<u64>,
    /// Relays in order.
    pub relays: Vec<Relay>,
    /// Address handling.
    pub addresses: Addresses,
    /// Queue behaviour.
    pub queue: Queue,
    /// SMTP client behaviour.
    pub smtp: Smtp,
    /// Metrics.
    pub stats: Stats,
    /// Outbound guard: per-submitter limits, storms, suppression, DSN cap.
    pub limits: Limits,
    /// Where logs go: "syslog" (default, stderr when there is no syslog) or "stderr".
    pub log: String,
    /// The local SMTP listener (off unless configured).
    pub listen: Listen,
}

/// The submission size limit when `max_message_size` is not set and no
/// relay's SIZE is known yet (before the first contact): 50 MiB, above what
/// the common smart hosts accept (SendGrid 30 MB, Microsoft 365 35 MB, SES
/// 40 MB), so no message a relay would take is refused locally, yet bounded.
pub const FALLBACK_MESSAGE_SIZE: u64 = 50 * 1024 * 1024;

/// Where the host name or the domain in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameOrigin {
    /// Set in the configuration file (`hostname` / `domain`).
    Config,
    /// The mail name file (`/etc/mailname`, Debian).
    Mailname(PathBuf),
    /// The kernel's short host name, qualified by the hosts file.
    HostsFile(PathBuf),
    /// The kernel's host name (gethostname), as it is.
    Gethostname,
    /// No usable name anywhere: `localhost`.
    Fallback,
    /// The domain only: the same as the host name (which has its own origin).
    Hostname,
}

impl std::fmt::Display for NameOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameOrigin::Config => f.write_str("configuration file"),
            NameOrigin::Mailname(p) => write!(f, "{}", p.display()),
            NameOrigin::HostsFile(p) => {
                write!(f, "host name (gethostname) qualified by {}", p.display())
            }
            NameOrigin::Gethostname => f.write_str("host name (gethostname)"),
            NameOrigin::Fallback => f.write_str("fallback (no usable host name)"),
            NameOrigin::Hostname => f.write_str("same as hostname"),
        }
    }
}

/// Where the system's own name is looked up when `hostname` is not set:
/// the real files and the kernel, or — for unprivileged runs only (tests,
/// development) — files and a name given in the environment
/// (`POSTERN_MAILNAME_FILE`, `POSTERN_HOSTS_FILE`, `POSTERN_NODENAME`).
/// The installed set-group-id binary always uses [`SystemNames::system`].
#[derive(Debug, Clone)]
pub struct SystemNames {
    /// The mail name file.
    pub mailname: PathBuf,
    /// The hosts file.
    pub hosts: PathBuf,
    /// The kernel's host name (None: ask gethostname).
    pub nodename: Option<String>,
}

impl SystemNames {
    /// `/etc/mailname`, `/etc/hosts` and gethostname.
    pub fn system() -> SystemNames {
        SystemNames {
            mailname: PathBuf::from("/etc/mailname"),
            hosts: PathBuf::from("/etc/hosts"),
            nodename: None,
        }
    }

    /// The system sources, with the test overrides from the environment.
    /// Only for an unprivileged process.
    pub fn from_env() -> SystemNames {
        let mut n = SystemNames::system();
        if let Some(p) = std::env::var_os("POSTERN_MAILNAME_FILE") {
            n.mailname = PathBuf::from(p);
        }
        if let Some(p) = std::env::var_os("POSTERN_HOSTS_FILE") {
            n.hosts = PathBuf::from(p);
        }
        if let Ok(h) = std::env::var("POSTERN_NODENAME") {
            n.nodename = Some(h);
        }
        n
    }
}

/// Where to read the configuration from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// The compiled-in path and spool (installed, privileged binary).
    System,
    /// An explicit file (unprivileged run, `-C` or `POSTERN_CONFIG`), or the
    /// compiled-in path with a spool from the file when None.
    Unprivileged(Option<PathBuf>),
    /// The `POSTERN_*` variables ([`env`]): an unprivileged process with
    /// no file given and none at the default path (a container).
    Environment,
}

impl ConfigSource {
    /// The source of an unprivileged process (never the installed
    /// set-group-id binary: that is [`ConfigSource::System`]): `explicit`
    /// (`-C`, `POSTERN_CONFIG`) when given; else the default file when it
    /// exists; else the environment when one of [`env::VARS`] is set; else
    /// the default path (absent: the built-in defaults).
    pub fn unprivileged(explicit: Option<PathBuf>) -> ConfigSource {
        if explicit.is_some() {
            return ConfigSource::Unprivileged(explicit);
        }
        let default_absent = matches!(
            std::fs::symlink_metadata(default_config_path()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound
        );
        if default_absent && env::wanted() {
            ConfigSource::Environment
        } else {
            ConfigSource::Unprivileged(None)
        }
    }
}

/// The default configuration path of an unprivileged process:
/// [`DEFAULT_CONFIG`], or for tests `POSTERN_DEFAULT_CONFIG` (like
/// `POSTERN_MAILNAME_FILE`: never seen by the set-group-id binary, which
/// empties its environment and always reads [`DEFAULT_CONFIG`]).
fn default_config_path() -> PathBuf {
    std::env::var_os("POSTERN_DEFAULT_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
}

// ---- raw (serde) form -------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    hostname: Option<String>,
    domain: Option<String>,
    spool_dir: Option<PathBuf>,
    max_message_size: Option<Size>,
    log: Option<String>,
    #[serde(default)]
    relay: Vec<RawRelay>,
    #[serde(default)]
    addresses: RawAddresses,
    #[serde(default)]
    queue: RawQueue,
    #[serde(default)]
    smtp: RawSmtp,
    #[serde(default)]
    stats: RawStats,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    listen: listen::RawListen,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    kind: Option<String>,
    #[serde(default)]
    host: String,
    port: Option<RawPort>,
    tls: Option<TlsMode>,
    #[serde(default)]
    allow_plaintext: bool,
    username: Option<String>,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
    auth: Option<Vec<String>>,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    #[serde(default)]
    rate_limit: u32,
    senders: Option<Vec<String>>,
    tls_pin: Option<Vec<String>>,
    tls_verify: Option<bool>,
    url: Option<String>,
    domain: Option<String>,
    region: Option<String>,
    oauth2: Option<oauth2::RawOAuth2>,
}

/// `port`: a number, or `"auto"` (try 587, 465, 2525).
#[derive(Debug, Clone, Copy)]
enum RawPort {
    Number(u16),
    Auto,
}

impl<'de> Deserialize<'de> for RawPort {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<RawPort, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            N(i64),
            S(String),
        }
        match Either::deserialize(d)? {
            Either::N(n) => u16::try_from(n)
                .map(RawPort::Number)
                .map_err(|_| serde::de::Error::custom(format!("port {n} is not in 0-65535"))),
            Either::S(s) if s == "auto" => Ok(RawPort::Auto),
            Either::S(s) => Err(serde::de::Error::custom(format!(
                "port {s:?}: use a number or \"auto\""
            ))),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAddresses {
    aliases_file: Option<PathBuf>,
    local_recipient: Option<String>,
    unknown_local: Option<UnknownLocal>,
    #[serde(default)]
    local_domains: Vec<String>,
    sender: Option<String>,
    sender_scope: Option<SenderScope>,
    from_header: Option<FromRewrite>,
    masquerade: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    max_lifetime: Option<Dur>,
    retry_min: Option<Dur>,
    retry_max: Option<Dur>,
    delay_warning: Option<Dur>,
    parallel: Option<usize>,
    run_on_submit: Option<bool>,
    maildrop_stale_after: Option<Dur>,
    min_free: Option<Size>,
    shutdown_timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    helo_name: Option<String>,
    connect_timeout: Option<Dur>,
    command_timeout: Option<Dur>,
    data_timeout: Option<Dur>,
    max_messages_per_session: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStats {
    enabled: Option<bool>,
    max_log_size: Option<Size>,
    prometheus_textfile: Option<PathBuf>,
}

/// A duration written as seconds (integer) or `30s`, `5m`, `2h`, `5d`, `1w`.
#[derive(Debug, Clone, Copy)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Dur, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            N(u64),
            S(String),
        }
        match Either::deserialize(d)? {
            Either::N(n) => parse_duration(&n.to_string())
                .map(Dur)
                .map_err(serde::de::Error::custom),
            Either::S(s) => parse_duration(&s)
                .map(Dur)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A size written as bytes (integer) or `25M`, `512k`, `1G` (binary multiples).
#[derive(Debug, Clone, Copy)]
struct Size(u64);

/// Default `[queue] min_free`: room for a few large messages from root
/// (two of the 50 MiB fallback limit) and for the daemon's state, log and
/// bounce writes once other users' submissions are refused.
pub const DEFAULT_MIN_FREE: u64 = 100 * 1024 * 1024;

/// Default `[queue] shutdown_timeout`: well below systemd's
/// `TimeoutStopSec=90s` in postern.service (and the SysV script's 90 s), so
/// the daemon exits on its own, logging what it left in flight, before it
/// is killed.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 30;

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Size, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            N(u64),
            S(String),
        }
        match Either::deserialize(d)? {
            Either::N(n) => Ok(Size(n)),
            Either::S(s) => parse_size(&s).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

/// Parse `90`, `30s`, `5m`, `2h`, `5d`, `1w` (also combined: `1h30m`).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for c in s.chars() {
        if let Some(d) = c.to_digit(10) {
            num = Some(
                num.unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or_else(|| format!("duration {s:?} is too large"))?,
            );
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 7 * 86400,
            _ => return Err(format!("bad duration {s:?} (use e.g. 30s, 5m, 2h, 5d)")),
        };
        let n = num
            .take()
            .ok_or_else(|| format!("bad duration {s:?} (a unit without a number)"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {s:?} is too large"))?;
    }
    if let Some(n) = num {
        total = total
            .checked_add(n)
            .ok_or_else(|| format!("duration {s:?} is too large"))?;
    }
    // Times are added to dates: keep them far from any overflow.
    if total > 100 * 365 * 86400 {
        return Err(format!("duration {s:?} is longer than 100 years"));
    }
    Ok(Duration::from_secs(total))
}

/// Parse `1000`, `512k`, `25M`, `1G` (binary multiples, optional `B`).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().trim_end_matches(['B', 'b']);
    let (digits, mult) = match t.chars().last() {
        Some('k') | Some('K') => (&t[..t.len() - 1], 1024u64),
        Some('m') | Some('M') => (&t[..t.len() - 1], 1024 * 1024),
        Some('g') | Some('G') => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (t, 1),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("bad size {s:?} (use e.g. 25M, 512k or a byte count)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

fn default_port(tls: TlsMode) -> u16 {
    match tls {
        TlsMode::Starttls => 587,
        TlsMode::Tls => 465,
        TlsMode::None => 25,
    }
}

/// True for `localhost`, `127.0.0.0/8` and `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

impl Config {
    /// Load from `source`. A missing file gives the defaults (mail is then
    /// only queued); anything unreadable or invalid is a `Config` error.
    pub fn load(source: &ConfigSource) -> Result<Config> {
        let (path, spool_override) = match source {
            ConfigSource::System => (PathBuf::from(DEFAULT_CONFIG), false),
            ConfigSource::Unprivileged(Some(p)) => (p.clone(), true),
            // The installed daemon (NoNewPrivileges: unprivileged) reads the
            // system file; it must use the same spool as the setgid sendmail.
            ConfigSource::Unprivileged(None) => (default_config_path(), false),
            ConfigSource::Environment => return env::load(&SystemNames::from_env()),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if matches!(source, ConfigSource::Unprivileged(Some(_))) {
                    return Err(Error::new(
                        Kind::Config,
                        format!("config file {} does not exist", path.display()),
                    ));
                }
                None
            }
            Err(e) => {
                return Err(Error::io(
                    Kind::Config,
                    format!("cannot read config file {}", path.display()),
                    &e,
                ));
            }
        };
        // The environment's test overrides: never for the installed binary.
        let names = match source {
            ConfigSource::System => SystemNames::system(),
            ConfigSource::Unprivileged(_) | ConfigSource::Environment => SystemNames::from_env(),
        };
        let mut cfg = Config::parse_with(text.as_deref().unwrap_or(""), &path, &names)?;
        cfg.path = text.as_ref().map(|_| path.clone());
        if !spool_override {
            cfg.spool_dir = PathBuf::from(DEFAULT_SPOOL);
        }
        Ok(cfg)
    }

    /// Parse and validate configuration text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        Config::parse_with(text, path, &SystemNames::system())
    }

    /// [`Config::parse`], taking the system's own name from `names` when
    /// the file does not set `hostname`.
    pub fn parse_with(text: &str, path: &Path, names: &SystemNames) -> Result<Config> {
        let at = |line: Option<usize>, key: Option<&str>| match (line, key) {
            (Some(l), Some(k)) => format!("{}:{l}: {k}", path.display()),
            (Some(l), None) => format!("{}:{l}", path.display()),
            (None, Some(k)) => format!("{}: {k}", path.display()),
            (None, None) => path.display().to_string(),
        };
        Config::parse_from(text, Some(path), names, &at)
    }

    /// Parse and validate `text`; `at(line, key)` says, for an error
    /// message, where the bad value came from (a file's name, line and
    /// key; an environment variable: see `env`).
    fn parse_from(
        text: &str,
        path: Option<&Path>,
        names: &SystemNames,
        at: &dyn Fn(Option<usize>, Option<&str>) -> String,
    ) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().replace('\n', " ");
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            // Name the key too (toml's message often does not, e.g. for a
            // bad enum value): `section.key` of the offending line.
            let key = e.span().and_then(|s| key_at(text, s.start));
            Error::new(Kind::Config, format!("{}: {msg}", at(line, key.as_deref())))
        })?;
        let bad = |key: &str, why: String| {
            Error::new(Kind::Config, format!("{}: {why}", at(None, Some(key))))
        };

        let (hostname, hostname_origin) = match raw.hostname {
            Some(h) => {
                check_domain(&h).map_err(|w| bad("hostname", w))?;
                (h, NameOrigin::Config)
            }
            None => system_hostname(names),
        };
        let (domain, domain_origin) = match raw.domain {
            Some(d) => {
                check_domain(&d).map_err(|w| bad("domain", w))?;
                (d, NameOrigin::Config)
            }
            None => (hostname.clone(), NameOrigin::Hostname),
        };

        let relays = raw
            .relay
            .into_iter()
            .enumerate()
            .map(|(i, r)| validate::relay(i, r))
            .collect::<validate::Bad<Vec<Relay>>>()
            .map_err(|(k, w)| bad(&k, w))?;

        let addresses = validate::addresses(raw.addresses).map_err(|(k, w)| bad(&k, w))?;
        let queue = validate::queue(raw.queue, &relays).map_err(|(k, w)| bad(&k, w))?;
        let smtp = validate::smtp(raw.smtp).map_err(|(k, w)| bad(&k, w))?;
        let stats = validate::stats(raw.stats);
        let limits = limits_from(raw.limits).map_err(|(k, w)| bad(&k, w))?;

        let log = validate::log(raw.log).map_err(|(k, w)| bad(&k, w))?;
        let listen = listen::listen(raw.listen).map_err(|(k, w)| bad(&k, w))?;

        Ok(Config {
            path: path.map(Path::to_path_buf),
            hostname,
            hostname_origin,
            domain,
            domain_origin,
            spool_dir: raw
                .spool_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SPOOL)),
            max_message_size: raw.max_message_size.map(|s| s.0),
            relays,
            addresses,
            queue,
            smtp,
            stats,
            limits,
            log,
            listen,
        })
    }

    /// The EHLO name.
    pub fn helo_name(&self) -> &str {
        self.smtp.helo_name.as_deref().unwrap_or(&self.hostname)
    }

    /// True when `domain` names this host (hostname, domain, localhost or a
    /// configured local domain), compared case-insensitively.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.');
        d.eq_ignore_ascii_case(&self.hostname)
            || d.eq_ignore_ascii_case("localhost")
            || d.eq_ignore_ascii_case("localhost.localdomain")
            || self
                .addresses
                .local_domains
                .iter()
                .any(|l| l.eq_ignore_ascii_case(d))
    }
}

/// The dotted key (`section.key`) of the `key = value` line holding byte
/// `offset` of `text`, for error messages.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    if !text.is_char_boundary(offset) {
        return None;
    }
    let start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[start..].lines().next().unwrap_or("");
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() || key.starts_with(['[', '#']) {
        return None;
    }
    let section = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(['[', ']']).trim().to_string());
    Some(match section {
        Some(s) if !s.is_empty() => format!("{s}.{key}"),
        _ => key.to_string(),
    })
}

fn check_domain(d: &str) -> std::result::Result<(), String> {
    if d.is_empty()
        || d.len() > 253
        || !d
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err(format!("{d:?} is not a valid host or domain name"));
    }
    Ok(())
}

/// The host's name and where it came from: the mail name file if it
/// holds a valid name (Debian's `/etc/mailname`), else the kernel's host
/// name, qualified through the hosts file when it has no dot.
pub fn system_hostname(names: &SystemNames) -> (String, NameOrigin) {
    if let Ok(s) = std::fs::read_to_string(&names.mailname) {
        let s = s.trim();
        if check_domain(s).is_ok() {
            return (s.to_string(), NameOrigin::Mailname(names.mailname.clone()));
        }
    }
    let node = match &names.nodename {
        Some(n) => Some(n.clone()),
        None => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok()),
    };
    let Some(short) = node.filter(|h| check_domain(h).is_ok()) else {
        return ("localhost".to_string(), NameOrigin::Fallback);
    };
    if short.contains('.') {
        return (short, NameOrigin::Gethostname);
    }
    let hosts = std::fs::read_to_string(&names.hosts).unwrap_or_default();
    match canonical_name(&hosts, &short) {
        Some(fqdn) => (fqdn, NameOrigin::HostsFile(names.hosts.clone())),
        None => (short, NameOrigin::Gethostname),
    }
}

/// The canonical name of `host` in hosts-file text: the first name with a
/// dot on a line that lists `host`, or None. Blank lines, comment lines
/// and trailing comments are skipped (cloud-init and container hosts files
/// start with comments).
fn canonical_name(hosts: &str, host: &str) -> Option<String> {
    // std has no AI_CANONNAME; /etc/hosts is where a short name is usually
    // qualified, so read it directly rather than asking DNS on every submit.
    for line in hosts.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        if fields.next().is_none() {
            continue;
        }
        let names: Vec<&str> = fields.collect();
        if names.iter().any(|n| n.eq_ignore_ascii_case(host))
            && let Some(fqdn) = names.iter().find(|n| n.contains('.'))
            && check_domain(fqdn).is_ok()
        {
            return Some(fqdn.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_defaults_to_4_and_to_3_for_microsoft_365() {
        let p = |t: &str| {
            Config::parse(t, Path::new("/nonexistent/postern.toml"))
                .unwrap()
                .queue
                .parallel
        };
        assert_eq!(p(""), 4);
        assert_eq!(p("[[relay]]\nhost = \"smtp.sendgrid.net\"\n"), 4);
        assert_eq!(p("[[relay]]\nhost = \"SMTP.Office365.com\"\n"), 3);
        assert_eq!(
            p("[queue]\nparallel = 8\n[[relay]]\nhost = \"smtp.office365.com\"\n"),
            8
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("5d").unwrap(), Duration::from_secs(432000));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("18000000000000000000").is_err());
        assert!(parse_duration("99999w").is_err());
    }

    #[test]
    fn canonical_name_reads_past_comments_and_blank_lines() {
        let hosts = "# Your system has configured 'manage_etc_hosts' as True.\n\
            # As a result, if you wish for changes to this file to persist\n\
            # then you will need to either\n\
            #     a.) make changes to the master file in /etc/cloud/templates/hosts.debian.tmpl\n\
            \n\
            127.0.1.1 web1.example.com web1\n\
            127.0.0.1 localhost\n\
            \n\
            # The following lines are desirable for IPv6 capable hosts\n\
            ::1 localhost ip6-localhost ip6-loopback\n";
        assert_eq!(
            canonical_name(hosts, "web1").as_deref(),
            Some("web1.example.com")
        );
        assert_eq!(
            canonical_name(hosts, "WEB1").as_deref(),
            Some("web1.example.com")
        );
        assert_eq!(canonical_name(hosts, "db1"), None);
        assert_eq!(canonical_name("", "web1"), None);
    }

    #[test]
    fn name_origins_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "# comment\n\n127.0.1.1 web1.example.com web1\n").unwrap();
        let mut names = SystemNames {
            mailname: dir.path().join("mailname"),
            hosts: hosts.clone(),
            nodename: Some("web1".into()),
        };
        let c = Config::parse_with("", Path::new("t.toml"), &names).unwrap();
        assert_eq!(c.hostname, "web1.example.com");
        assert_eq!(c.hostname_origin, NameOrigin::HostsFile(hosts.clone()));
        assert_eq!(c.domain, "web1.example.com");
        assert_eq!(c.domain_origin, NameOrigin::Hostname);
        let c =
            Config::parse_with("domain = \"example.com\"\n", Path::new("t.toml"), &names).unwrap();
        assert_eq!(c.domain_origin, NameOrigin::Config);
        std::fs::write(&names.mailname, "mail.example.org\n").unwrap();
        let c = Config::parse_with("", Path::new("t.toml"), &names).unwrap();
        assert_eq!(c.hostname, "mail.example.org");
        assert_eq!(
            c.hostname_origin,
            NameOrigin::Mailname(names.mailname.clone())
        );
        let c =
            Config::parse_with("hostname = \"h.example\"\n", Path::new("t.toml"), &names).unwrap();
        assert_eq!(c.hostname_origin, NameOrigin::Config);
        names.mailname = dir.path().join("none");
        names.nodename = Some("db1.example.net".into());
        let c = Config::parse_with("", Path::new("t.toml"), &names).unwrap();
        assert_eq!(
            (c.hostname.as_str(), c.hostname_origin),
            ("db1.example.net", NameOrigin::Gethostname)
        );
        names.nodename = Some("bad name!".into());
        let c = Config::parse_with("", Path::new("t.toml"), &names).unwrap();
        assert_eq!(
            (c.hostname.as_str(), c.hostname_origin),
            ("localhost", NameOrigin::Fallback)
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("25M").unwrap(), 25 * 1024 * 1024);
        assert_eq!(parse_size("512k").unwrap(), 512 * 1024);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn limits_defaults_and_overrides() {
        let c = Config::parse("", Path::new("t.toml")).unwrap();
        let l = &c.limits;
        assert!(l.enabled);
        assert_eq!(l.default.messages_per_hour, DEFAULT_MESSAGES_PER_HOUR);
        assert_eq!(l.exempt, vec!["root".to_string()]);
        assert_eq!(l.alert_to, "root");
        assert_eq!(l.storm_threshold, 5);
        assert!(l.is_exempt(0, Some("root")));
        assert!(!l.is_exempt(33, Some("www-data")));
        let c = Config::parse(
            "[limits]\nmessages_per_hour = 50\nexempt = []\n[limits.user.www-data]\nmessages_per_hour = 2\n[limits.user.\"1001\"]\nrecipients_per_message = 7\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let l = &c.limits;
        assert_eq!(l.for_user(33, Some("www-data")).messages_per_hour, 2);
        assert_eq!(
            l.for_user(33, Some("www-data")).recipients_per_hour,
            DEFAULT_RECIPIENTS_PER_HOUR
        );
        assert_eq!(l.for_user(1001, None).recipients_per_message, 7);
        assert_eq!(l.for_user(1001, None).messages_per_hour, 50);
        assert_eq!(l.for_user(5, None).messages_per_hour, 50);
        assert!(!l.is_exempt(0, Some("root")));
        for bad in [
            "[limits]\nbogus = 1\n",
            "[limits]\nalert_to = \"a b\"\n",
            "[limits.storm]\nwindow = \"0s\"\n",
            "[limits.user.x]\nfoo = 1\n",
        ] {
            assert!(Config::parse(bad, Path::new("t.toml")).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_relay() {
        let c = Config::parse(
            "hostname = \"h.example\"\n[[relay]]\nhost = \"smtp.example\"\nusername = \"apikey\"\npassword_file = \"/x\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.domain, "h.example");
        assert_eq!(c.relays[0].port, 587);
        assert_eq!(c.relays[0].tls, TlsMode::Starttls);
        assert_eq!(c.relays[0].kind, RelayKind::Smtp);
        assert_eq!(c.max_message_size, None);
        assert_eq!(c.queue.min_free, DEFAULT_MIN_FREE);
        assert_eq!(
            c.queue.shutdown_timeout,
            Duration::from_secs(DEFAULT_SHUTDOWN_TIMEOUT_SECS)
        );
        let c = Config::parse("[queue]\nshutdown_timeout = \"5s\"\n", Path::new("t.toml")).unwrap();
        assert_eq!(c.queue.shutdown_timeout, Duration::from_secs(5));
        let c = Config::parse(
            "hostname = \"h.example\"\n[queue]\nmin_free = \"0\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.queue.min_free, 0);
        let c = Config::parse(
            "hostname = \"h.example\"\n[queue]\nmin_free = \"2G\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.queue.min_free, 2 * 1024 * 1024 * 1024);
    }

    #[test]
    fn errors_name_file_and_key() {
        let e = Config::parse(
            "[[relay]]\nhost = \"smtp.example\"\ntls = \"none\"\n",
            Path::new("t.toml"),
        )
        .unwrap_err();
        assert_eq!(e.kind(), Kind::Config);
        assert!(
            e.message().contains("t.toml: relay[0].tls"),
            "{}",
            e.message()
        );
        let e = Config::parse("bogus = 1\n", Path::new("t.toml")).unwrap_err();
        assert!(e.message().starts_with("t.toml:1:"), "{}", e.message());
        let e = Config::parse("[queue]\nmax_lifetime = \"5q\"\n", Path::new("t.toml")).unwrap_err();
        assert!(e.message().contains("bad duration"), "{}", e.message());
        assert!(
            e.message().contains("queue.max_lifetime"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn https_api_relays() {
        let parse = |t: &str| Config::parse(t, Path::new("t.toml"));
        let c = parse(
            "[[relay]]\nkind = \"mailgun\"\ndomain = \"MG.example.com\"\npassword_file = \"/k\"\n",
        )
        .unwrap();
        let r = &c.relays[0];
        assert_eq!(r.kind, RelayKind::Mailgun);
        assert_eq!(r.label(), "api.mailgun.net:443");
        assert_eq!(r.username.as_deref(), Some("api"));
        let api = r.api.as_ref().unwrap();
        assert_eq!(
            (api.base.as_str(), api.domain.as_str()),
            ("https://api.mailgun.net", "mg.example.com")
        );
        let c = parse("[[relay]]\nkind = \"mailgun\"\ndomain = \"mg.example.com\"\nregion = \"EU\"\npassword_file = \"/k\"\n").unwrap();
        assert_eq!(
            c.relays[0].api.as_ref().unwrap().base,
            "https://api.eu.mailgun.net"
        );
        let c = parse("[[relay]]\nkind = \"ses\"\nregion = \"eu-west-1\"\nusername = \"AKID\"\npassword_file = \"/k\"\n").unwrap();
        assert_eq!(c.relays[0].label(), "email.eu-west-1.amazonaws.com:443");
        let c = parse("[[relay]]\nkind = \"ses\"\nregion = \"eu-west-1\"\nusername = \"AKID\"\npassword_file = \"/k\"\nurl = \"https://[::1]:8443/x/\"\n").unwrap();
        let r = &c.relays[0];
        assert_eq!((r.host.as_str(), r.port), ("[::1]", 8443));
        assert_eq!(r.api.as_ref().unwrap().base, "https://[::1]:8443/x");
        for bad in [
            "url = \"https://h:0\"",
            "url = \"https://u@h\"",
            "url = \"https://h/?q\"",
            "url = \"https://\"",
            "tls = \"tls\"",
            "auth = [\"PLAIN\"]",
            "host = \"h\"",
        ] {
            let t = format!(
                "[[relay]]\nkind = \"ses\"\nregion = \"eu-west-1\"\nusername = \"AKID\"\npassword_file = \"/k\"\n{bad}\n"
            );
            assert!(parse(&t).is_err(), "{bad}");
        }
        assert!(
            parse("[[relay]]\nkind = \"ses\"\nregion = \"eu-west-1\"\nusername = \"AKID\"\n")
                .is_err()
        );
    }

    #[test]
    fn relay_kind() {
        let c = Config::parse(
            "[[relay]]\nkind = \"smtp\"\nhost = \"smtp.example\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.relays[0].kind, RelayKind::Smtp);
        let e = Config::parse(
            "[[relay]]\nkind = \"carrier-pigeon\"\nhost = \"smtp.example\"\n",
            Path::new("t.toml"),
        )
        .unwrap_err();
        assert_eq!(e.kind(), Kind::Config);
        assert_eq!(e.kind().exit_code(), 78);
        assert!(
            e.message().contains("t.toml: relay[0].kind")
                && e.message().contains("\"carrier-pigeon\"")
                && e.message().contains("smtp.example"),
            "{}",
            e.message()
        );
    }
}
