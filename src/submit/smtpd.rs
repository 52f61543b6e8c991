//! `sendmail -bs`: an SMTP dialogue on stdin/stdout (RFC 5321), as Symfony
//! Mailer and other libraries speak it to a local MTA.
//!
//! EHLO/HELO, MAIL (SIZE, BODY, RET, ENVID, SMTPUTF8), RCPT (NOTIFY, ORCPT
//! accepted), DATA, RSET, NOOP, VRFY, HELP and QUIT; any number of messages
//! per session; PIPELINING (replies are flushed only when no more input is
//! already buffered, so a pipelining client gets its replies in one batch).
//! Each accepted message is committed to its own maildrop entry before the
//! `250 … queued as ID` reply. The session has the caller's identity: the
//! envelope sender from MAIL FROM is used as given, as with `-f`.
//!
//! The grammar is RFC 5321 4.1, checked as Postfix's smtpd checks it:
//! HELO/EHLO need a domain (501); MAIL/RCPT are `MAIL FROM:<path> [params]`
//! and `RCPT TO:<path> [params]` (a blank after the colon and a missing `<>`
//! are tolerated, as Postfix does; an empty or unterminated path, text
//! glued to the `>`, a malformed or repeated `KEYWORD[=value]` parameter
//! are 501; a well-formed parameter that is not supported is 555); DATA,
//! RSET and QUIT take no argument and VRFY needs one (501); a command line
//! is at most 512 octets with its CRLF (4.5.3.1.4), plus what the
//! extensions advertised add to MAIL (SIZE 26, BODY 16, RET/ENVID 110,
//! SMTPUTF8 10) and RCPT (NOTIFY/ORCPT 500); longer lines get 500.
//!
//! The same engine serves the daemon's SMTP listener ([`serve`] over a
//! [`Channel`] with a [`Policy`]): STARTTLS when the channel can do TLS
//! (commands pipelined after it are refused: the CVE-2011-0411 class), AUTH
//! PLAIN/LOGIN when the policy has an [`Authenticator`] (only under TLS when
//! it says so, required before MAIL when it says so), a bound on recipients
//! and on refused commands, and 421 on an idle or total timeout. `-bs` is
//! [`run`]: stdin/stdout, no TLS, no AUTH, no error bound.

use super::input::{LineReader, Terminator};
use super::limit::SizeLimit;
use super::{Committed, MessageOptions, Origin, Submitter};
use crate::error::{Error, Kind, Result};
use crate::spool::maildrop;
use base64::Engine as _;
use std::io::{BufRead, BufReader, Read, Write};

/// Longest command line read; anything longer is discarded (and refused).
const MAX_COMMAND: usize = 2048;

/// The longest command line for `verb`, CRLF included: 512 (RFC 5321
/// 4.5.3.1.4) plus what the advertised extensions add to it: SIZE 26
/// (RFC 1870), BODY 16 (RFC 1652), RET and ENVID 110 (RFC 3461 4),
/// SMTPUTF8 10 (RFC 6531 3.4) for MAIL; NOTIFY and ORCPT 500 (RFC 3461 4)
/// for RCPT.
fn line_limit(verb: &str) -> usize {
    match verb {
        "MAIL" => 512 + 26 + 16 + 110 + 10,
        "RCPT" => 512 + 500,
        _ => 512,
    }
}

/// The connection under a session: bytes both ways, and what it can do
/// beyond bytes (TLS, being told when the session is idle).
pub trait Channel: Read + Write {
    /// STARTTLS may be offered: a certificate is configured and TLS is not
    /// active yet.
    fn tls_offered(&self) -> bool {
        false
    }
    /// Become a TLS server (the 220 has been sent and flushed); the
    /// handshake is complete when this returns Ok.
    fn start_tls(&mut self) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
    /// Told whether the session waits for a command (true) or is inside a
    /// command or its data (false): a channel that is being shut down ends
    /// only an idle session (its read fails with `ConnectionAborted`).
    fn at_command(&mut self, _waiting: bool) {}
}

/// Standard input and output as a channel (`sendmail -bs`).
pub struct Stdio<R, W> {
    /// Where commands come from.
    pub input: R,
    /// Where replies go.
    pub output: W,
}

impl<R: Read, W> Read for Stdio<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl<R, W: Write> Write for Stdio<R, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.output.flush()
    }
}

impl<R: Read, W: Write> Channel for Stdio<R, W> {}

/// Checks AUTH credentials.
pub trait Authenticator {
    /// True when `password` is `user`'s.
    fn check(&self, user: &str, password: &[u8]) -> bool;
}

/// What a session allows beyond the RFC 5321 basics.
pub struct Policy<'a> {
    /// AUTH (PLAIN, LOGIN) is offered with this checker; None: not offered.
    pub auth: Option<&'a dyn Authenticator>,
    /// MAIL needs a successful AUTH first.
    pub auth_required: bool,
    /// AUTH is offered only once TLS is active.
    pub auth_needs_tls: bool,
    /// Recipients of one message.
    pub max_recipients: usize,
    /// Refused commands before the session is closed with 421.
    pub max_errors: u32,
    /// Who the client is (`[192.0.2.1]:40000`, `unix socket, uid 1000
    /// (alice)`), for the Received field and the log; None for `-bs`
    /// (the caller is the submitting user).
    pub client: Option<String>,
    /// Called after each message is committed (before its 250 is sent):
    /// the listener wakes the daemon's pickup.
    pub on_commit: Option<&'a dyn Fn()>,
}

impl Policy<'_> {
    /// `sendmail -bs`: the local caller, as before: no AUTH, no TLS, the
    /// spool's recipient bound, no error bound.
    pub fn local() -> Policy<'static> {
        Policy {
            auth: None,
            auth_required: false,
            auth_needs_tls: false,
            max_recipients: crate::spool::format::MAX_RCPTS,
            max_errors: u32::MAX,
            client: None,
            on_commit: None,
        }
    }
}

struct Session<'s, 'c, 'p> {
    sub: &'s mut Submitter<'c>,
    policy: &'p Policy<'p>,
    /// Replies not yet written (flushed when no more input is buffered).
    out: Vec<u8>,
    /// The HELO/EHLO argument (printable), and whether it was EHLO.
    helo: Option<(String, bool)>,
    mail: Option<MessageOptions>,
    committed: Vec<Committed>,
    limit: SizeLimit,
    tls: bool,
    authed: Option<String>,
    errors: u32,
}

fn read_command<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut too_long = false;
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                None
            } else {
                Some(too_long)
            });
        }
        match avail.iter().position(|&b| b == b'\n') {
            Some(i) => {
                if buf.len() + i <= MAX_COMMAND {
                    buf.extend_from_slice(&avail[..i]);
                } else {
                    too_long = true;
                }
                r.consume(i + 1);
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                return Ok(Some(too_long));
            }
            None => {
                let n = avail.len();
                if buf.len() + n <= MAX_COMMAND {
                    buf.extend_from_slice(avail);
                } else {
                    too_long = true;
                }
                r.consume(n);
            }
        }
    }
}

/// Why a MAIL or RCPT argument does not parse.
#[derive(Debug, PartialEq, Eq)]
enum PathError {
    /// No path at all, an unterminated `<`, or text glued to the `>`.
    Path,
    /// A parameter that is not `KEYWORD[=value]` (RFC 5321 4.1.2), or one
    /// given twice (RFC 1869).
    Param(String),
}

/// True for an esmtp-keyword: `(ALPHA / DIGIT) *(ALPHA / DIGIT / "-")`.
fn is_keyword(k: &str) -> bool {
    k.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// True for an esmtp-value: `1*(%d33-60 / %d62-126)`, or UTF-8 beyond
/// ASCII (RFC 6531).
fn is_value(v: &str) -> bool {
    !v.is_empty()
        && v.bytes()
            .all(|b| (33..=126).contains(&b) && b != b'=' || b >= 0x80)
}

/// `s` for quoting in a reply: at most 40 characters, control characters
/// and non-ASCII as `?`.
fn printable(s: &str) -> String {
    s.chars()
        .take(40)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// Split `<path> PARAMS` (what follows `FROM:` or `TO:`) into the path and
/// the parameters (keywords upper-cased). A source route (`<@a,@b:u@d>`)
/// is dropped, as RFC 5321 4.1.1.3 allows.
fn split_path(arg: &str) -> std::result::Result<(String, Vec<(String, String)>), PathError> {
    // A blank after the colon is not RFC 5321 but common; Postfix allows it.
    let arg = arg.trim_start_matches([' ', '\t']);
    let (path, rest) = if let Some(stripped) = arg.strip_prefix('<') {
        let mut in_quote = false;
        let mut escaped = false;
        let mut end = None;
        for (i, c) in stripped.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_quote => escaped = true,
                '"' => in_quote = !in_quote,
                '>' if !in_quote => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end.ok_or(PathError::Path)?;
        let rest = &stripped[end + 1..];
        if !rest.is_empty() && !rest.starts_with(' ') {
            return Err(PathError::Path);
        }
        (stripped[..end].to_string(), rest)
    } else {
        // Tolerate a missing <> (some clients), up to the first space.
        let end = arg.find(' ').unwrap_or(arg.len());
        if end == 0 {
            return Err(PathError::Path);
        }
        (arg[..end].to_string(), &arg[end..])
    };
    let path = match path.strip_prefix('@') {
        Some(route) => match route.split_once(':') {
            Some((_, mailbox)) => mailbox.to_string(),
            None => return Err(PathError::Path),
        },
        None => path,
    };
    let mut params: Vec<(String, String)> = Vec::new();
    for p in rest.split(' ').filter(|p| !p.is_empty()) {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) if is_value(v) => (k, v),
            Some(_) => return Err(PathError::Param(printable(p))),
            None => (p, ""),
        };
        if !is_keyword(k) {
            return Err(PathError::Param(printable(p)));
        }
        let k = k.to_ascii_uppercase();
        if params.iter().any(|(x, _)| *x == k) {
            return Err(PathError::Param(format!("{k} (given twice)")));
        }
        params.push((k, v.to_string()));
    }
    Ok((path, params))
}

/// Decode xtext (RFC 3461): `+XX` hex escapes.
fn xtext_decode(s: &str) -> Option<String> {
    crate::spool::state::unescape_hex(s, b'+')
}

impl Session<'_, '_, '_> {
    fn reply(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn flush<C: Write>(&mut self, chan: &mut C) -> std::io::Result<()> {
        chan.write_all(&self.out)?;
        self.out.clear();
        chan.flush()
    }

    /// The RFC 3848 protocol name of this session so far.
    fn protocol(&self) -> &'static str {
        match (
            self.helo.as_ref().is_some_and(|h| h.1),
            self.tls,
            self.authed.is_some(),
        ) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        }
    }

    fn mail(&mut self, arg: &str) -> String {
        if self.mail.is_some() {
            return "503 5.5.1 Error: nested MAIL command".into();
        }
        if self.policy.auth_required && self.authed.is_none() {
            return if self.policy.auth_needs_tls && !self.tls {
                "530 5.7.0 Must issue a STARTTLS command first".into()
            } else {
                "530 5.7.0 Authentication required".into()
            };
        }
        if let Err(e) = self.sub.check_reserve() {
            log::warn!("{e}");
            return format!("452 4.3.1 {}", e.message());
        }
        let (path, params) = match split_path(arg) {
            Ok(p) => p,
            Err(PathError::Path) => return "501 5.5.4 Syntax: MAIL FROM:<address>".into(),
            Err(PathError::Param(p)) => return format!("501 5.5.4 Bad parameter syntax: {p}"),
        };
        let mut opts = MessageOptions::default();
        for (k, v) in params {
            match k.as_str() {
                "SIZE" => match v.parse::<u64>() {
                    Ok(n) if self.limit.exceeded_by(n) => {
                        return format!(
                            "552 5.3.4 Message size exceeds fixed limit: {}",
                            self.limit.describe()
                        );
                    }
                    Ok(_) => {}
                    Err(_) => return "501 5.5.4 Bad SIZE parameter".into(),
                },
                "BODY" => {
                    if !v.eq_ignore_ascii_case("7BIT") && !v.eq_ignore_ascii_case("8BITMIME") {
                        return "501 5.5.4 Bad BODY parameter".into();
                    }
                }
                "SMTPUTF8" if v.is_empty() => {}
                "SMTPUTF8" => return "501 5.5.4 Bad SMTPUTF8 parameter".into(),
                "RET" => {
                    let u = v.to_ascii_uppercase();
                    if u != "FULL" && u != "HDRS" {
                        return "501 5.5.4 Bad RET parameter".into();
                    }
                    opts.ret = Some(u);
                }
                "ENVID" => match xtext_decode(&v) {
                    Some(e)
                        if !e.is_empty()
                            && e.len() <= 100
                            && e.bytes().all(|b| (0x21..0x7f).contains(&b)) =>
                    {
                        opts.envid = Some(e)
                    }
                    _ => return "501 5.5.4 Bad ENVID parameter".into(),
                },
                "AUTH" => {}
                _ => return format!("555 5.5.4 Unsupported option: {k}"),
            }
        }
        match self.sub.parse_sender(&path) {
            Ok(s) => {
                opts.sender = s;
                opts.origin = self.policy.client.as_ref().map(|client| Origin {
                    helo: self.helo.as_ref().map(|h| h.0.clone()).unwrap_or_default(),
                    client: client.clone(),
                    protocol: self.protocol().to_string(),
                    auth: self.authed.clone(),
                });
                self.mail = Some(opts);
                "250 2.1.0 Ok".into()
            }
            Err(e) => format!("553 5.1.7 {}", e.message()),
        }
    }

    fn rcpt(&mut self, arg: &str) -> String {
        let Some(mail) = self.mail.as_ref() else {
            return "503 5.5.1 Error: need MAIL command".into();
        };
        if mail.recipients.len()
            >= self
                .policy
                .max_recipients
                .min(crate::spool::format::MAX_RCPTS)
        {
            return "452 4.5.3 Too many recipients".into();
        }
        let (path, params) = match split_path(arg) {
            Ok((p, _)) if p.is_empty() => {
                return "501 5.1.3 Syntax: RCPT TO:<address> (the null path is only a sender)"
                    .into();
            }
            Ok(p) => p,
            Err(PathError::Path) => return "501 5.5.4 Syntax: RCPT TO:<address>".into(),
            Err(PathError::Param(p)) => return format!("501 5.5.4 Bad parameter syntax: {p}"),
        };
        let mut notify = None;
        for (k, v) in params {
            match k.as_str() {
                "NOTIFY" => {
                    let u = v.to_ascii_uppercase();
                    if u != "NEVER"
                        && !u
                            .split(',')
                            .all(|p| matches!(p, "SUCCESS" | "FAILURE" | "DELAY"))
                    {
                        return "501 5.5.4 Bad NOTIFY parameter".into();
                    }
                    notify = Some(u);
                }
                // ORCPT=addr-type;xtext (RFC 3461 4.2)
                "ORCPT" => match v.split_once(';') {
                    Some((t, x))
                        if is_keyword(t) && xtext_decode(x).is_some_and(|a| !a.is_empty()) => {}
                    _ => return "501 5.5.4 Bad ORCPT parameter".into(),
                },
                _ => return format!("555 5.5.4 Unsupported option: {k}"),
            }
        }
        match self.sub.parse_recipient(&path) {
            Ok(r) => {
                // A local name that resolves nowhere is refused now, not
                // after DATA (where only a 4xx/5xx for the whole message is
                // possible and the client would retry it).
                if let Err(e) = self.sub.check_local(&r) {
                    return format!("550 5.1.1 {}", e.message());
                }
                if let Some(m) = self.mail.as_mut() {
                    if notify.is_some() {
                        m.notify = notify;
                    }
                    if !m.recipients.contains(&r) {
                        m.recipients.push(r);
                    }
                }
                "250 2.1.5 Ok".into()
            }
            Err(e) => format!("553 5.1.3 {}", e.message()),
        }
    }
}

/// Run an SMTP session over `input`/`output` (`sendmail -bs`). Returns
/// the committed messages.
pub fn run<R: Read, W: Write>(
    sub: &mut Submitter<'_>,
    input: R,
    output: W,
) -> Result<Vec<Committed>> {
    serve(sub, Stdio { input, output }, &Policy::local())
}

/// True for the errors a read deadline gives.
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// Run an SMTP session over `chan` under `policy`. Returns the committed
/// messages.
pub fn serve<C: Channel>(
    sub: &mut Submitter<'_>,
    chan: C,
    policy: &Policy<'_>,
) -> Result<Vec<Committed>> {
    let mut reader = BufReader::with_capacity(64 * 1024, chan);
    let limit = SizeLimit::for_submission(sub.cfg);
    let mut s = Session {
        sub,
        policy,
        out: Vec::new(),
        helo: None,
        mail: None,
        committed: Vec::new(),
        limit,
        tls: false,
        authed: None,
        errors: 0,
    };
    let hostname = s.sub.cfg.hostname.clone();
    s.reply(&format!("220 {hostname} ESMTP Postern"));
    s.flush(reader.get_mut()).map_err(io_err)?;
    let mut line = Vec::new();
    loop {
        reader.get_mut().at_command(true);
        let read = read_command(&mut reader, &mut line);
        reader.get_mut().at_command(false);
        let too_long = match read {
            Ok(None) => break, // client went away
            Ok(Some(t)) => t,
            Err(e) if is_timeout(&e) => {
                s.reply(&format!("421 4.4.2 {hostname} Error: timeout exceeded"));
                let _ = s.flush(reader.get_mut());
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {
                s.reply(&format!("421 4.3.2 {hostname} Service shutting down"));
                let _ = s.flush(reader.get_mut());
                break;
            }
            Err(e) => return Err(io_err(e)),
        };
        let text = String::from_utf8_lossy(&line).into_owned();
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.to_string()),
            None => (text.to_ascii_uppercase(), String::new()),
        };
        let tls_offered = !s.tls && reader.get_ref().tls_offered();
        let next = if too_long || line.len() + 2 > line_limit(&verb) {
            Next::Reply("500 5.5.2 Error: line too long".into())
        } else {
            s.command(&verb, &arg, tls_offered)
        };
        let (reply, quit) = match next {
            Next::Reply(r) => (r, false),
            Next::Quit(r) => (r, true),
            Next::Data => match s.data(&mut reader)? {
                Some(r) => (r, false),
                None => break, // the client went away during DATA
            },
            Next::StartTls if !reader.buffer().is_empty() => {
                // RFC 3207 5: STARTTLS ends a pipelined group. Anything
                // after it in plaintext would be taken as sent under TLS.
                log::warn!(
                    "{}: commands pipelined after STARTTLS (command injection?); connection closed",
                    policy.client.as_deref().unwrap_or("client")
                );
                (
                    "554 5.5.1 Error: commands sent after STARTTLS are refused".into(),
                    true,
                )
            }
            Next::StartTls => {
                s.reply("220 2.0.0 Ready to start TLS");
                s.flush(reader.get_mut()).map_err(io_err)?;
                if let Err(e) = reader.get_mut().start_tls() {
                    log::warn!(
                        "{}: TLS handshake failed: {}",
                        policy.client.as_deref().unwrap_or("client"),
                        crate::escape::field(&e.to_string())
                    );
                    break;
                }
                // RFC 3207 4.2: forget everything learnt before TLS.
                s.tls = true;
                s.helo = None;
                s.mail = None;
                s.authed = None;
                continue;
            }
            Next::Auth => match s.auth(&mut reader, &arg) {
                Ok(r) => (r, false),
                Err(e) if is_timeout(&e) => {
                    s.reply(&format!("421 4.4.2 {hostname} Error: timeout exceeded"));
                    let _ = s.flush(reader.get_mut());
                    break;
                }
                Err(e) => return Err(io_err(e)),
            },
        };
        s.reply(&reply);
        let mut quit = quit;
        if reply.starts_with(['4', '5']) {
            s.errors = s.errors.saturating_add(1);
            if s.errors >= policy.max_errors && !quit {
                s.reply(&format!("421 4.7.0 {hostname} Error: too many errors"));
                log::warn!(
                    "{}: too many errors ({}); connection closed",
                    policy.client.as_deref().unwrap_or("client"),
                    s.errors
                );
                quit = true;
            }
        }
        if quit || reader.buffer().is_empty() {
            s.flush(reader.get_mut()).map_err(io_err)?;
        }
        if quit {
            break;
        }
    }
    let _ = s.flush(reader.get_mut());
    Ok(s.committed)
}

fn io_err(e: std::io::Error) -> Error {
    Error::io(Kind::IoErr, "SMTP session", &e)
}

/// What one command line asks for.
enum Next {
    /// Send this reply and read the next command.
    Reply(String),
    /// Send this reply and end the session.
    Quit(String),
    /// DATA was accepted: read the message.
    Data,
    /// STARTTLS was accepted: start TLS unless more input is buffered.
    StartTls,
    /// AUTH: run the exchange.
    Auth,
}

impl Session<'_, '_, '_> {
    /// The reply to one command (DATA's message is read by [`Self::data`]).
    fn command(&mut self, verb: &str, arg: &str, tls_offered: bool) -> Next {
        let no_arg = arg.trim().is_empty();
        let hostname = &self.sub.cfg.hostname;
        let r: String = match verb {
            "EHLO" | "HELO" if no_arg => format!("501 5.5.4 Syntax: {verb} hostname"),
            "EHLO" => {
                self.helo = Some((printable_helo(arg), true));
                self.mail = None;
                let mut ext = String::new();
                if tls_offered {
                    ext.push_str("\r\n250-STARTTLS");
                }
                if self.auth_offered() {
                    ext.push_str("\r\n250-AUTH PLAIN LOGIN");
                }
                format!(
                    "250-{hostname}\r\n250-PIPELINING\r\n250-SIZE {}{ext}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250 HELP",
                    self.limit.advertised()
                )
            }
            "HELO" => {
                self.helo = Some((printable_helo(arg), false));
                self.mail = None;
                format!("250 {hostname}")
            }
            "STARTTLS" if !no_arg => "501 5.5.4 Syntax: STARTTLS".into(),
            "STARTTLS" if self.tls => "503 5.5.1 Error: TLS already active".into(),
            "STARTTLS" if tls_offered => return Next::StartTls,
            "AUTH" if self.policy.auth.is_none() => {
                "503 5.5.1 Error: authentication not enabled".into()
            }
            "AUTH" if !self.auth_offered() => {
                "538 5.7.11 Encryption required for requested authentication mechanism".into()
            }
            "AUTH" if self.helo.is_none() => "503 5.5.1 Error: send EHLO first".into(),
            "AUTH" if self.authed.is_some() => "503 5.5.1 Error: already authenticated".into(),
            "AUTH" if self.mail.is_some() => "503 5.5.1 Error: MAIL transaction in progress".into(),
            "AUTH" if no_arg => "501 5.5.4 Syntax: AUTH mechanism".into(),
            "AUTH" => return Next::Auth,
            "DATA" | "RSET" | "QUIT" if !no_arg => format!("501 5.5.4 Syntax: {verb}"),
            "VRFY" if no_arg => "501 5.5.4 Syntax: VRFY address".into(),
            "MAIL" => match arg.get(..5) {
                Some(p) if p.eq_ignore_ascii_case("FROM:") => self.mail(&arg[5..]),
                _ => "501 5.5.4 Syntax: MAIL FROM:<address>".into(),
            },
            "RCPT" => match arg.get(..3) {
                Some(p) if p.eq_ignore_ascii_case("TO:") => self.rcpt(&arg[3..]),
                _ => "501 5.5.4 Syntax: RCPT TO:<address>".into(),
            },
            "DATA" => match &self.mail {
                None => "503 5.5.1 Error: need MAIL command".into(),
                Some(m) if m.recipients.is_empty() => "554 5.5.1 Error: no valid recipients".into(),
                Some(_) => return Next::Data,
            },
            "RSET" => {
                self.mail = None;
                "250 2.0.0 Ok".into()
            }
            "NOOP" => "250 2.0.0 Ok".into(),
            "VRFY" => "252 2.0.0 Cannot VRFY user, but will accept message".into(),
            "HELP" => "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY QUIT".into(),
            "QUIT" => return Next::Quit("221 2.0.0 Bye".into()),
            "STARTTLS" | "BDAT" => "502 5.5.1 Error: command not implemented".into(),
            "" => "500 5.5.2 Error: empty command".into(),
            _ => "500 5.5.2 Error: command not recognized".into(),
        };
        Next::Reply(r)
    }

    /// AUTH is offered now (configured, and under TLS when required).
    fn auth_offered(&self) -> bool {
        self.policy.auth.is_some() && (self.tls || !self.policy.auth_needs_tls)
    }

    /// The AUTH exchange (RFC 4954) for PLAIN and LOGIN; `arg` is what
    /// follows AUTH. Returns the final reply.
    fn auth<C: Channel>(
        &mut self,
        reader: &mut BufReader<C>,
        arg: &str,
    ) -> std::io::Result<String> {
        let Some(checker) = self.policy.auth else {
            return Ok("503 5.5.1 Error: authentication not enabled".into());
        };
        let mut words = arg.split_whitespace();
        let mech = words.next().unwrap_or("").to_ascii_uppercase();
        let initial = words.next();
        if words.next().is_some() {
            return Ok("501 5.5.4 Syntax: AUTH mechanism [initial-response]".into());
        }
        let mut line = Vec::new();
        let (user, password) = match mech.as_str() {
            "PLAIN" => {
                let resp = match initial {
                    Some("=") => Vec::new(),
                    Some(i) => i.as_bytes().to_vec(),
                    None => match self.challenge(reader, "", &mut line)? {
                        Some(r) => r,
                        None => return Ok("501 5.7.0 Authentication aborted".into()),
                    },
                };
                let Some(raw) = b64(&resp) else {
                    return Ok("501 5.5.2 Error: cannot decode the response".into());
                };
                let mut parts = raw.split(|&b| b == 0);
                let (Some(authz), Some(user), Some(pass), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Ok("501 5.5.2 Error: malformed PLAIN response".into());
                };
                if !authz.is_empty() && authz != user {
                    return Ok("535 5.7.8 Error: authentication failed".into());
                }
                (user.to_vec(), pass.to_vec())
            }
            "LOGIN" => {
                let user = match initial {
                    Some(i) => i.as_bytes().to_vec(),
                    None => match self.challenge(reader, "VXNlcm5hbWU6", &mut line)? {
                        Some(r) => r,
                        None => return Ok("501 5.7.0 Authentication aborted".into()),
                    },
                };
                let pass = match self.challenge(reader, "UGFzc3dvcmQ6", &mut line)? {
                    Some(r) => r,
                    None => return Ok("501 5.7.0 Authentication aborted".into()),
                };
                match (b64(&user), b64(&pass)) {
                    (Some(u), Some(p)) => (u, p),
                    _ => return Ok("501 5.5.2 Error: cannot decode the response".into()),
                }
            }
            _ => return Ok("504 5.5.4 Unrecognized authentication type".into()),
        };
        let user = String::from_utf8_lossy(&user).into_owned();
        let client = self.policy.client.as_deref().unwrap_or("client");
        if !user.is_empty() && checker.check(&user, &password) {
            let shown = printable_helo(&user);
            log::info!("{client}: authenticated as {shown}");
            self.authed = Some(shown);
            Ok("235 2.7.0 Authentication successful".into())
        } else {
            log::warn!(
                "{client}: authentication failed for {}",
                crate::escape::field(&user)
            );
            Ok("535 5.7.8 Error: authentication failed".into())
        }
    }

    /// Send `334 challenge`, read the client's line; None when it cancels
    /// (`*`) or goes away.
    fn challenge<C: Channel>(
        &mut self,
        reader: &mut BufReader<C>,
        challenge: &str,
        line: &mut Vec<u8>,
    ) -> std::io::Result<Option<Vec<u8>>> {
        self.reply(&format!("334 {challenge}"));
        self.flush(reader.get_mut())?;
        match read_command(reader, line)? {
            Some(false) if line.as_slice() != b"*" => Ok(Some(line.clone())),
            _ => Ok(None),
        }
    }

    /// After DATA: 354, read and commit the message, the final reply.
    /// None when the client went away during DATA (nothing queued).
    fn data<C: Channel>(&mut self, reader: &mut BufReader<C>) -> Result<Option<String>> {
        self.reply("354 End data with <CR><LF>.<CR><LF>");
        self.flush(reader.get_mut()).map_err(io_err)?;
        let opts = self.mail.take().unwrap_or_default();
        let mut lr = LineReader::new(reader, Terminator::SmtpData);
        let result = self.sub.submit(&mut lr, &opts);
        // Whatever happened, consume the rest of the DATA section so the
        // dialogue stays in step.
        let drained = result.is_ok() || drain(&mut lr);
        let truncated = lr.truncated;
        Ok(match result {
            Ok(c) => {
                let r = format!("250 2.0.0 Ok: queued as {}", c.id);
                self.committed.push(c);
                if let Some(f) = self.policy.on_commit {
                    f();
                }
                Some(r)
            }
            Err(_) if truncated || !drained => {
                log::warn!("SMTP client went away during DATA; nothing queued");
                None
            }
            Err(e) => Some(data_refusal(&e)),
        })
    }
}

/// Decode a base64 response (RFC 4954: standard alphabet, padded).
fn b64(s: &[u8]) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// A client-given name (HELO argument, AUTH user) as it may appear in a
/// header field or the log: printable ASCII without spaces, at most 64
/// characters; anything else becomes `?`.
fn printable_helo(s: &str) -> String {
    s.trim()
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// Read the rest of a DATA section; false when the input failed.
fn drain<R: std::io::BufRead>(lr: &mut LineReader<R>) -> bool {
    loop {
        match lr.next_piece() {
            Ok(super::input::Piece::End) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

/// The reply to a message that could not be queued.
fn data_refusal(e: &Error) -> String {
    match e.kind() {
        Kind::DataErr if e.message().starts_with("message too big") => {
            format!("552 5.3.4 {}", e.message())
        }
        Kind::DataErr => format!("554 5.6.0 {}", e.message()),
        _ if e.message().contains(maildrop::RESERVE_REFUSAL) => {
            log::warn!("{e}");
            format!("452 4.3.1 {}", e.message())
        }
        Kind::Usage => format!("554 5.5.1 {}", e.message()),
        _ => {
            log::error!("{e}");
            format!("451 4.3.0 {}", e.message())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_params() {
        let (p, params) = split_path("<a@b> SIZE=10 BODY=8BITMIME").unwrap();
        assert_eq!(p, "a@b");
        assert_eq!(params[0], ("SIZE".into(), "10".into()));
        assert_eq!(split_path("<>").unwrap().0, "");
        assert_eq!(split_path("<\"a>b\"@c>").unwrap().0, "\"a>b\"@c");
        assert_eq!(split_path("<a@b"), Err(PathError::Path));
        assert_eq!(split_path(""), Err(PathError::Path));
        assert_eq!(split_path("<a@b>SIZE=1"), Err(PathError::Path));
        assert_eq!(split_path(" <a@b>").unwrap().0, "a@b");
        assert_eq!(split_path("a@b SIZE=1").unwrap().0, "a@b");
        assert_eq!(split_path("<@r1,@r2:u@d>").unwrap().0, "u@d");
        assert_eq!(split_path("<\"a\\\">\"@c>").unwrap().0, "\"a\\\">\"@c");
        assert!(matches!(
            split_path("<a@b> SIZE="),
            Err(PathError::Param(_))
        ));
        assert!(matches!(split_path("<a@b> -X=1"), Err(PathError::Param(_))));
        assert!(matches!(
            split_path("<a@b> K=a=b"),
            Err(PathError::Param(_))
        ));
        assert_eq!(
            split_path("<a@b> K=\rx"),
            Err(PathError::Param("K=?x".into()))
        );
        assert!(matches!(
            split_path("<a@b> SIZE=1 size=2"),
            Err(PathError::Param(_))
        ));
        assert_eq!(
            split_path("<a@b>  SMTPUTF8").unwrap().1,
            vec![("SMTPUTF8".to_string(), String::new())]
        );
        assert_eq!(xtext_decode("a+2Bb").as_deref(), Some("a+b"));
        assert!(xtext_decode("a+2").is_none());
    }
}
