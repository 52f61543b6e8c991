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

use super::input::{LineReader, Terminator};
use super::limit::SizeLimit;
use super::{Committed, MessageOptions, Submitter};
use crate::error::{Error, Kind, Result};
use crate::spool::maildrop;
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

struct Session<'s, 'c, W: Write> {
    sub: &'s mut Submitter<'c>,
    out: W,
    helo: bool,
    mail: Option<MessageOptions>,
    committed: Vec<Committed>,
    limit: SizeLimit,
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

impl<W: Write> Session<'_, '_, W> {
    fn reply(&mut self, line: &str) -> std::io::Result<()> {
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\r\n")
    }

    fn mail(&mut self, arg: &str) -> String {
        if self.mail.is_some() {
            return "503 5.5.1 Error: nested MAIL command".into();
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
        if mail.recipients.len() >= crate::spool::format::MAX_RCPTS {
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

/// Run an SMTP session over `input`/`output`. Returns the committed messages.
pub fn run<R: Read, W: Write>(
    sub: &mut Submitter<'_>,
    input: R,
    output: W,
) -> Result<Vec<Committed>> {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let limit = SizeLimit::for_submission(sub.cfg);
    let mut s = Session {
        sub,
        out: std::io::BufWriter::new(output),
        helo: false,
        mail: None,
        committed: Vec::new(),
        limit,
    };
    let greeting = format!("220 {} ESMTP Postern", s.sub.cfg.hostname);
    s.reply(&greeting).map_err(io_err)?;
    s.out.flush().map_err(io_err)?;
    let mut line = Vec::new();
    loop {
        let too_long = match read_command(&mut reader, &mut line).map_err(io_err)? {
            None => break, // client went away
            Some(t) => t,
        };
        let text = String::from_utf8_lossy(&line).into_owned();
        let (verb, arg) = match text.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.to_string()),
            None => (text.to_ascii_uppercase(), String::new()),
        };
        let next = if too_long || line.len() + 2 > line_limit(&verb) {
            Next::Reply("500 5.5.2 Error: line too long".into())
        } else {
            s.command(&verb, &arg)
        };
        let (reply, quit) = match next {
            Next::Reply(r) => (r, false),
            Next::Quit(r) => (r, true),
            Next::Data => match s.data(&mut reader)? {
                Some(r) => (r, false),
                None => break, // the client went away during DATA
            },
        };
        s.reply(&reply).map_err(io_err)?;
        if quit || reader.buffer().is_empty() {
            s.out.flush().map_err(io_err)?;
        }
        if quit {
            break;
        }
    }
    let _ = s.out.flush();
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
}

impl<W: Write> Session<'_, '_, W> {
    /// The reply to one command (DATA's message is read by [`Self::data`]).
    fn command(&mut self, verb: &str, arg: &str) -> Next {
        let no_arg = arg.trim().is_empty();
        let hostname = &self.sub.cfg.hostname;
        let r: String = match verb {
            "EHLO" | "HELO" if no_arg => format!("501 5.5.4 Syntax: {verb} hostname"),
            "EHLO" => {
                self.helo = true;
                self.mail = None;
                format!(
                    "250-{hostname}\r\n250-PIPELINING\r\n250-SIZE {}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250 HELP",
                    self.limit.advertised()
                )
            }
            "HELO" => {
                self.helo = true;
                self.mail = None;
                format!("250 {hostname}")
            }
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
            "STARTTLS" | "AUTH" | "BDAT" => "502 5.5.1 Error: command not implemented".into(),
            "" => "500 5.5.2 Error: empty command".into(),
            _ => "500 5.5.2 Error: command not recognized".into(),
        };
        Next::Reply(r)
    }

    /// After DATA: 354, read and commit the message, the final reply.
    /// None when the client went away during DATA (nothing queued).
    fn data<R: Read>(&mut self, reader: &mut BufReader<R>) -> Result<Option<String>> {
        self.reply("354 End data with <CR><LF>.<CR><LF>")
            .map_err(io_err)?;
        self.out.flush().map_err(io_err)?;
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
