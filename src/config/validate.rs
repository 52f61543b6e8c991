//! From the raw TOML tables to the typed configuration: one function per
//! section, each applying that section's defaults and checks. A failed
//! check is `(key, why)`; `Config::parse_with` adds the file's name and
//! makes it a configuration error (exit 78).

use super::*;

/// A section's result: the value, or the key at fault and why.
pub(super) type Bad<T> = std::result::Result<T, (String, String)>;

/// A duration key, or its default in seconds.
fn dur(d: Option<Dur>, def: u64) -> Duration {
    d.map(|d| d.0).unwrap_or(Duration::from_secs(def))
}

/// One `[[relay]]` (index `i`), checked, with its defaults.
pub(super) fn relay(i: usize, r: RawRelay) -> Bad<Relay> {
    let bad = |key: &str, why: String| (key.to_string(), why);
    let key = |k: &str| format!("relay[{i}].{k}");
    let kind = match r.kind.as_deref() {
        None => RelayKind::Smtp,
        Some(k) => RelayKind::from_name(k).ok_or_else(|| {
            bad(
                &key("kind"),
                format!(
                    "unknown transport {k:?} for relay {} (known: {})",
                    r.host,
                    RelayKind::NAMES.join(", ")
                ),
            )
        })?,
    };
    if kind.is_https() {
        return api_relay(i, kind, r);
    }
    if r.host.trim().is_empty() {
        return Err(bad(&key("host"), "must not be empty".into()));
    }
    for (k, set) in [
        ("url", r.url.is_some()),
        ("domain", r.domain.is_some()),
        ("region", r.region.is_some()),
    ] {
        if set {
            return Err(bad(
                &key(k),
                format!(
                    "{k} belongs to an HTTPS API relay (kind = \"mailgun\", \"ses\" or \"graph\"), not to kind = \"smtp\""
                ),
            ));
        }
    }
    let tls = r.tls.unwrap_or(TlsMode::Starttls);
    if tls == TlsMode::None && !r.allow_plaintext && !is_loopback_host(&r.host) {
        return Err(bad(
            &key("tls"),
            format!(
                "\"none\" sends mail in clear text to {}; use \"starttls\" or \"tls\", or set allow_plaintext = true",
                r.host
            ),
        ));
    }
    if tls == TlsMode::None
        && r.allow_plaintext
        && r.username.is_some()
        && !is_loopback_host(&r.host)
    {
        return Err(bad(
            &key("allow_plaintext"),
            format!(
                "AUTH in plain text is allowed only to a loopback relay (localhost, 127.0.0.0/8, ::1), not to {}: the credentials would cross the network in clear text; use tls = \"starttls\" or \"tls\"",
                r.host
            ),
        ));
    }
    if r.password_file.is_some() && r.password_command.is_some() {
        return Err(bad(
            &key("password_file"),
            "set password_file or password_command, not both".into(),
        ));
    }
    if r.username.is_none() && (r.password_file.is_some() || r.password_command.is_some()) {
        return Err(bad(
            &key("username"),
            "a secret is set but no username".into(),
        ));
    }
    if r.oauth2.is_some() && (r.password_file.is_some() || r.password_command.is_some()) {
        return Err(bad(
            &key("oauth2"),
            "the secret is the OAuth2 token: remove password_file / password_command".into(),
        ));
    }
    if r.oauth2.is_some() && r.username.is_none() {
        return Err(bad(
            &key("username"),
            "[relay.oauth2] needs username (the mailbox the token is for; the SASL user)".into(),
        ));
    }
    if r.username.is_some()
        && r.password_file.is_none()
        && r.password_command.is_none()
        && r.oauth2.is_none()
    {
        return Err(bad(
            &key("password_file"),
            "username is set: give password_file or password_command".into(),
        ));
    }
    if r.client_cert.is_some() != r.client_key.is_some() {
        return Err(bad(
            &key("client_cert"),
            "client_cert and client_key go together".into(),
        ));
    }
    let oauth2 = match r.oauth2 {
        Some(o) => Some(super::oauth2::oauth2(i, o, false)?),
        None => None,
    };
    let auth_mechanisms = match r.auth {
        Some(list) => {
            let mut out = Vec::new();
            for m in list {
                let u = m.to_ascii_uppercase();
                let token = matches!(u.as_str(), "XOAUTH2" | "OAUTHBEARER");
                if !matches!(u.as_str(), "PLAIN" | "LOGIN") && !token {
                    return Err(bad(
                        &key("auth"),
                        format!("unknown mechanism {m:?} (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER)"),
                    ));
                }
                if oauth2.is_some() && !token {
                    return Err(bad(
                        &key("auth"),
                        format!(
                            "{u} sends a password; with [relay.oauth2] use XOAUTH2 or OAUTHBEARER"
                        ),
                    ));
                }
                if u == "OAUTHBEARER" && oauth2.is_none() {
                    return Err(bad(&key("auth"), "OAUTHBEARER needs [relay.oauth2]".into()));
                }
                out.push(u);
            }
            out
        }
        None if oauth2.is_some() => vec!["OAUTHBEARER".into(), "XOAUTH2".into()],
        None => vec!["PLAIN".into(), "LOGIN".into(), "XOAUTH2".into()],
    };
    let port_auto = matches!(r.port, Some(RawPort::Auto));
    if port_auto && r.tls.is_some() {
        return Err(bad(
            &key("port"),
            "port = \"auto\" chooses TLS per port (587 and 2525 STARTTLS, 465 implicit TLS): remove tls from this relay".into(),
        ));
    }
    let port = match r.port {
        Some(RawPort::Number(p)) => p,
        Some(RawPort::Auto) => 587,
        None => default_port(tls),
    };
    let senders = relay_senders(&key("senders"), r.senders)?;
    let tls_pins = relay_pins(&key("tls_pin"), r.tls_pin)?;
    let tls_verify = r.tls_verify.unwrap_or(true);
    if !tls_verify && tls_pins.is_empty() {
        return Err(bad(
            &key("tls_verify"),
            "false is allowed only together with tls_pin (pin-only: the relay's key must match a pin); Postern never sends over unverified TLS".into(),
        ));
    }
    if tls == TlsMode::None && (!tls_pins.is_empty() || r.tls_verify.is_some()) {
        return Err(bad(
            &key("tls_pin"),
            "tls_pin and tls_verify need TLS (tls = \"starttls\" or \"tls\")".into(),
        ));
    }
    Ok(Relay {
        kind,
        port,
        host: r.host,
        tls,
        allow_plaintext: r.allow_plaintext,
        username: r.username,
        password_file: r.password_file,
        password_command: r.password_command,
        auth_mechanisms,
        ca_file: r.ca_file,
        client_cert: r.client_cert,
        client_key: r.client_key,
        rate_limit: r.rate_limit,
        senders,
        tls_pins,
        tls_verify,
        port_auto,
        api: None,
        oauth2,
    })
}

/// Mailgun's API base in the US and in the EU (`region = "eu"`).
pub const MAILGUN_US: &str = "https://api.mailgun.net";
/// Mailgun's EU API base.
pub const MAILGUN_EU: &str = "https://api.eu.mailgun.net";
/// Microsoft Graph's API base.
pub const GRAPH: &str = "https://graph.microsoft.com";

/// One `[[relay]]` of an HTTPS API kind (`mailgun`, `ses`, `graph`): the endpoint
/// from `url` or the provider's default for `region`; `host` and `port`
/// are the URL's; SMTP-only keys are refused, so nothing is silently
/// ignored.
fn api_relay(i: usize, kind: RelayKind, r: RawRelay) -> Bad<Relay> {
    let key = |k: &str| format!("relay[{i}].{k}");
    let name = kind.name();
    let bad = |k: &str, why: String| (key(k), why);
    for (k, set) in [
        ("host", !r.host.is_empty()),
        ("port", r.port.is_some()),
        ("tls", r.tls.is_some()),
        ("allow_plaintext", r.allow_plaintext),
        ("auth", r.auth.is_some()),
        ("oauth2", r.oauth2.is_some() && kind != RelayKind::Graph),
    ] {
        if set {
            return Err(bad(
                k,
                format!(
                    "kind = \"{name}\" speaks HTTPS to its API: {k} is for SMTP relays (url overrides the API's address)"
                ),
            ));
        }
    }
    if kind == RelayKind::Graph {
        if r.password_file.is_some() || r.password_command.is_some() {
            let k = if r.password_file.is_some() {
                "password_file"
            } else {
                "password_command"
            };
            return Err(bad(
                k,
                "graph authenticates with [relay.oauth2]: remove password_file / password_command"
                    .into(),
            ));
        }
        if r.oauth2.is_none() {
            return Err(bad(
                "oauth2",
                "kind = \"graph\" needs [relay.oauth2] (the app's client id and secret: provider = \"microsoft365\", tenant, client_id, client_secret_file)".into(),
            ));
        }
    }
    if r.password_file.is_some() && r.password_command.is_some() {
        return Err(bad(
            "password_file",
            "set password_file or password_command, not both".into(),
        ));
    }
    if kind != RelayKind::Graph && r.password_file.is_none() && r.password_command.is_none() {
        let what = match kind {
            RelayKind::Ses => "the secret access key",
            _ => "the API key",
        };
        return Err(bad(
            "password_file",
            format!("kind = \"{name}\" needs {what}: give password_file or password_command"),
        ));
    }
    if r.client_cert.is_some() != r.client_key.is_some() {
        return Err(bad(
            "client_cert",
            "client_cert and client_key go together".into(),
        ));
    }
    let label_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    let (username, domain, region, default_base) = match kind {
        RelayKind::Mailgun => {
            let Some(domain) = r.domain.filter(|d| label_ok(d)) else {
                return Err(bad(
                    "domain",
                    "kind = \"mailgun\" needs domain, the Mailgun sending domain (e.g. mg.example.com)".into(),
                ));
            };
            let region = r.region.unwrap_or_else(|| "us".into()).to_ascii_lowercase();
            let base = match region.as_str() {
                "us" => MAILGUN_US,
                "eu" => MAILGUN_EU,
                other => {
                    return Err(bad(
                        "region",
                        format!("{other:?}: Mailgun's regions are \"us\" (the default) and \"eu\""),
                    ));
                }
            };
            let user = r.username.unwrap_or_else(|| "api".into());
            (user, domain.to_ascii_lowercase(), region, base.to_string())
        }
        RelayKind::Graph => {
            for (k, set) in [
                ("domain", r.domain.is_some()),
                ("region", r.region.is_some()),
            ] {
                if set {
                    return Err(bad(
                        k,
                        format!("kind = \"graph\" has no {k} (url overrides the API's address)"),
                    ));
                }
            }
            let Some(user) = r
                .username
                .filter(|u| !u.trim().is_empty() && !u.contains(char::is_whitespace))
            else {
                return Err(bad(
                    "username",
                    "kind = \"graph\" needs username, the mailbox Graph sends as (e.g. noreply@example.com)".into(),
                ));
            };
            (user, String::new(), String::new(), GRAPH.to_string())
        }
        _ => {
            let Some(region) = r.region.filter(|g| label_ok(g) && !g.contains('.')) else {
                return Err(bad(
                    "region",
                    "kind = \"ses\" needs region, the AWS region of SES (e.g. eu-west-1)".into(),
                ));
            };
            let Some(user) = r.username.filter(|u| !u.trim().is_empty()) else {
                return Err(bad(
                    "username",
                    "kind = \"ses\" needs username, the AWS access key id (AKIA...)".into(),
                ));
            };
            let region = region.to_ascii_lowercase();
            let base = format!("https://email.{region}.amazonaws.com");
            (user, String::new(), region, base)
        }
    };
    if username.contains(|c: char| c.is_control()) {
        return Err(bad("username", "must not hold control characters".into()));
    }
    let base = match r.url {
        Some(u) => u,
        None => default_base,
    };
    let (host, port, base) = https_url(&base).map_err(|w| bad("url", w))?;
    let oauth2 = match r.oauth2 {
        Some(o) if kind == RelayKind::Graph => Some(super::oauth2::oauth2(i, o, true)?),
        _ => None,
    };
    let senders = relay_senders(&key("senders"), r.senders)?;
    let tls_pins = relay_pins(&key("tls_pin"), r.tls_pin)?;
    let tls_verify = r.tls_verify.unwrap_or(true);
    if !tls_verify && tls_pins.is_empty() {
        return Err(bad(
            "tls_verify",
            "false is allowed only together with tls_pin (pin-only: the relay's key must match a pin); Postern never sends over unverified TLS".into(),
        ));
    }
    Ok(Relay {
        kind,
        host,
        port,
        tls: TlsMode::Tls,
        allow_plaintext: false,
        username: Some(username),
        password_file: r.password_file,
        password_command: r.password_command,
        auth_mechanisms: Vec::new(),
        ca_file: r.ca_file,
        client_cert: r.client_cert,
        client_key: r.client_key,
        rate_limit: r.rate_limit,
        senders,
        tls_pins,
        tls_verify,
        port_auto: false,
        oauth2,
        api: Some(HttpApi {
            base,
            domain,
            region,
        }),
    })
}

/// `https://host[:port][/prefix]` → (host, port, the URL without a
/// trailing slash). Only https; no user, query or fragment.
pub fn https_url(url: &str) -> std::result::Result<(String, u16, String), String> {
    let why = |w: &str| format!("{url:?}: {w} (use https://host[:port][/path])");
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| why("only https:// is allowed"))?;
    if rest.contains(['?', '#', '@', ' ', '\\']) || rest.contains(|c: char| c.is_control()) {
        return Err(why("no user, query, fragment or space"));
    }
    let (authority, path) = match rest.find('/') {
        Some(p) => (&rest[..p], &rest[p..]),
        None => (rest, ""),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| why("unclosed ["))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| why("bad port"))?),
        };
        (format!("[{h}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        None => 443,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| why("bad port"))?,
    };
    if host.is_empty() || host == "[]" {
        return Err(why("no host"));
    }
    let base = format!("https://{authority}{}", path.trim_end_matches('/'));
    Ok((host.to_ascii_lowercase(), port, base))
}

/// `senders`: envelope-sender patterns, lower-cased. Each is an address
/// (`billing@example.org`), `@domain` or a pattern with `*`
/// (`*@example.com`, `*@*.example.com`), or `<>` (the null sender).
fn relay_senders(key: &str, list: Option<Vec<String>>) -> Bad<Vec<String>> {
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    if list.is_empty() {
        return Err((
            key.to_string(),
            "an empty list serves nobody: remove senders to make this relay serve every other sender".into(),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for p in list {
        let t = p.trim();
        let ok = t == "<>"
            || (t.contains('@')
                && !t.is_empty()
                && t.len() <= 320
                && !t.contains(|c: char| {
                    c.is_whitespace() || c.is_control() || "<>,;\"".contains(c)
                }));
        if !ok {
            return Err((
                key.to_string(),
                format!(
                    "{p:?} is not a sender pattern (use user@example.com, *@example.com, @example.com or <> for bounces)"
                ),
            ));
        }
        out.push(t.to_ascii_lowercase());
    }
    Ok(out)
}

/// `tls_pin`: `sha256//` and the base64 of 32 bytes (an SPKI SHA-256, as
/// curl's `--pinnedpubkey` takes it); several are allowed (key rollover).
fn relay_pins(key: &str, list: Option<Vec<String>>) -> Bad<Vec<String>> {
    use base64::Engine as _;
    let Some(list) = list else {
        return Ok(Vec::new());
    };
    if list.is_empty() {
        return Err((
            key.to_string(),
            "an empty list pins nothing: remove tls_pin or give sha256//BASE64 values".into(),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for p in list {
        let b64 = p.trim().strip_prefix("sha256//").unwrap_or("");
        let ok = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .is_ok_and(|d| d.len() == 32);
        if !ok {
            return Err((
                key.to_string(),
                format!(
                    "{p:?} is not sha256// followed by the base64 SHA-256 of a public key (postern check prints the relay's pin)"
                ),
            ));
        }
        out.push(format!("sha256//{b64}"));
    }
    Ok(out)
}

/// `[addresses]`, checked, with its defaults.
pub(super) fn addresses(a: RawAddresses) -> Bad<Addresses> {
    let bad = |key: &str, why: String| (key.to_string(), why);
    for d in &a.local_domains {
        check_domain(d).map_err(|w| bad("addresses.local_domains", w))?;
    }
    if let Some(s) = &a.sender
        && (!s.contains('@') || s.contains(['\r', '\n', ' ', '<', '>']))
    {
        return Err(bad(
            "addresses.sender",
            format!("{s:?} is not a plain user@domain address"),
        ));
    }
    if let Some(s) = &a.local_recipient
        && (s.is_empty() || s.contains(['\r', '\n', ' ', '<', '>']))
    {
        return Err(bad(
            "addresses.local_recipient",
            format!("{s:?} is not an address or pattern such as %u@example.com"),
        ));
    }
    if a.from_header.is_some_and(|f| f != FromRewrite::Never) && a.sender.is_none() {
        return Err(bad(
            "addresses.from_header",
            "rewriting From needs addresses.sender (the verified sender identity)".into(),
        ));
    }
    let addresses = Addresses {
        aliases_file: a
            .aliases_file
            .unwrap_or_else(|| PathBuf::from("/etc/aliases")),
        local_recipient: a.local_recipient,
        unknown_local: a.unknown_local.unwrap_or(UnknownLocal::Qualify),
        local_domains: a.local_domains,
        sender: a.sender,
        sender_scope: a.sender_scope.unwrap_or(SenderScope::All),
        from_header: a.from_header.unwrap_or(FromRewrite::Never),
        masquerade: a.masquerade.unwrap_or(true),
    };
    Ok(addresses)
}

/// Default `[queue] parallel`: 4 sessions (a drain of 1000 queued messages
/// on loopback ran 1.3-1.9x faster than with 2, measured with
/// `bench/run.sh`), but 3 when a relay is Microsoft 365's SMTP AUTH
/// submission, which refuses a fourth concurrent connection per mailbox
/// (`432 4.3.2 Concurrent connections limit exceeded`).
pub(super) fn default_parallel(relays: &[Relay]) -> usize {
    let m365 = relays.iter().any(|r| {
        let host = r.host.to_ascii_lowercase();
        r.kind == RelayKind::Smtp
            && (host == "smtp.office365.com"
                || host == "smtp-mail.outlook.com"
                || r.oauth2.as_ref().and_then(|o| o.provider.as_deref()) == Some("microsoft365"))
    });
    if m365 { 3 } else { 4 }
}

/// `[queue]`, checked, with its defaults.
pub(super) fn queue(q: RawQueue, relays: &[Relay]) -> Bad<Queue> {
    let bad = |key: &str, why: String| (key.to_string(), why);
    let queue = Queue {
        max_lifetime: dur(q.max_lifetime, 5 * 86400),
        retry_min: dur(q.retry_min, 60),
        retry_max: dur(q.retry_max, 3600),
        delay_warning: q.delay_warning.map(|d| d.0).filter(|d| !d.is_zero()),
        parallel: q.parallel.unwrap_or_else(|| default_parallel(relays)),
        run_on_submit: q.run_on_submit.unwrap_or(true),
        maildrop_stale_after: dur(q.maildrop_stale_after, 86400),
        min_free: q.min_free.map(|s| s.0).unwrap_or(DEFAULT_MIN_FREE),
        shutdown_timeout: dur(q.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT_SECS),
    };
    if queue.parallel == 0 || queue.parallel > 64 {
        return Err(bad("queue.parallel", "must be between 1 and 64".into()));
    }
    if queue.retry_min.is_zero() || queue.retry_max < queue.retry_min {
        return Err(bad(
            "queue.retry_max",
            "retry_min must be > 0 and retry_max >= retry_min".into(),
        ));
    }
    if queue.max_lifetime.is_zero() {
        return Err(bad("queue.max_lifetime", "must be > 0".into()));
    }
    Ok(queue)
}

/// `[smtp]`, checked, with its defaults.
pub(super) fn smtp(s: RawSmtp) -> Bad<Smtp> {
    let bad = |key: &str, why: String| (key.to_string(), why);
    if let Some(h) = &s.helo_name {
        check_domain(h).map_err(|w| bad("smtp.helo_name", w))?;
    }
    let smtp = Smtp {
        helo_name: s.helo_name,
        connect_timeout: dur(s.connect_timeout, 30),
        command_timeout: dur(s.command_timeout, 300),
        data_timeout: dur(s.data_timeout, 600),
        max_messages_per_session: s.max_messages_per_session.unwrap_or(100).max(1),
    };
    Ok(smtp)
}

/// `[stats]`, with its defaults.
pub(super) fn stats(st: RawStats) -> Stats {
    Stats {
        enabled: st.enabled.unwrap_or(true),
        max_log_bytes: st.max_log_size.map(|s| s.0).unwrap_or(4 * 1024 * 1024),
        prometheus_textfile: st.prometheus_textfile,
    }
}

/// `log`: "syslog" (the default), "stderr" or an absolute path.
pub(super) fn log(log: Option<String>) -> Bad<String> {
    let bad = |key: &str, why: String| (key.to_string(), why);
    let log = log.unwrap_or_else(|| "syslog".into());
    if log != "syslog" && log != "stderr" && !log.starts_with('/') {
        return Err(bad(
            "log",
            format!("{log:?}: use \"syslog\", \"stderr\" or an absolute file path"),
        ));
    }
    Ok(log)
}
