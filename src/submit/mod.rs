//! One submission: from the caller's stdin (or an SMTP DATA section) to a
//! committed maildrop entry.
//!
//! Runs after the privilege drop, as the caller. Reads the header section
//! (bounded), extracts `-t` recipients, applies the fix-ups a valid message
//! needs (Received first; Bcc, Resent-Bcc, Return-Path, Content-Length
//! removed; From, Date and Message-ID added when missing), then streams the
//! body to the entry in bounded pieces and commits it. NUL bytes are refused
//! in the header section (exit 65) and accepted in the body, where the
//! delivery side re-encodes the part as quoted-printable so it arrives
//! intact.

pub mod headers;
pub mod input;
pub mod limit;
pub mod smtpd;

use crate::address;
use crate::config::Config;
use crate::error::{Error, Kind, Result, spool_write_kind};
use crate::spool::format::Envelope;
use crate::spool::maildrop::{self, MessageWriter};
use headers::Field;
use input::{LineReader, Piece};
use std::fs::File;
use std::io::BufRead;

/// Largest header section accepted.
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// The submitting user.
#[derive(Debug, Clone)]
pub struct User {
    /// Real uid of the caller.
    pub uid: u32,
    /// Login name (or `uid<N>` when the uid has no passwd entry).
    pub name: String,
    /// Full name from the GECOS field, if any.
    pub gecos: Option<String>,
}

impl User {
    /// Look up `uid`: `/etc/passwd` first (cheap: no NSS modules to load
    /// on every submission), then the passwd database through NSS (LDAP,
    /// sssd, systemd users).
    pub fn lookup(uid: u32) -> User {
        if let Some(u) = User::from_etc_passwd(uid) {
            return u;
        }
        match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            Ok(Some(u)) => User {
                uid,
                name: u.name,
                gecos: u.gecos.to_str().ok().and_then(gecos_name),
            },
            _ => User {
                uid,
                name: format!("uid{uid}"),
                gecos: None,
            },
        }
    }

    fn from_etc_passwd(uid: u32) -> Option<User> {
        let text = std::fs::read_to_string("/etc/passwd").ok()?;
        for line in text.lines() {
            let mut f = line.split(':');
            let name = f.next()?;
            let _pw = f.next();
            let Some(Ok(u)) = f.next().map(str::parse::<u32>) else {
                continue;
            };
            if u != uid || name.is_empty() || name.starts_with(['+', '-']) {
                continue;
            }
            let _gid = f.next();
            let gecos = f.next().and_then(gecos_name);
            return Some(User {
                uid,
                name: name.to_string(),
                gecos,
            });
        }
        None
    }
}

/// The full name from a GECOS field (its first comma-separated part).
fn gecos_name(g: &str) -> Option<String> {
    g.split(',')
        .next()
        .map(|g| g.trim().to_string())
        .filter(|g| !g.is_empty() && !g.contains(['\r', '\n']))
}

/// Where new maildrop entries come from.
pub enum EntrySource {
    /// One entry opened before the privilege drop (installed `sendmail`).
    Preopened(Option<std::io::Result<(String, File)>>),
    /// The helper that kept the group (installed `sendmail -bs`).
    Helper(Box<dyn maildrop::OpenEntry>),
    /// Create entries directly (unprivileged spool).
    Direct,
}

impl Drop for EntrySource {
    fn drop(&mut self) {
        // An entry opened before the privilege drop and never used (the
        // arguments were refused): mark it abandoned so the daemon removes
        // it at its next look.
        if let EntrySource::Preopened(Some(Ok((_, file)))) = self {
            maildrop::abandon(file);
        }
    }
}

/// Per-message envelope choices made before the data is read.
#[derive(Debug, Clone, Default)]
pub struct MessageOptions {
    /// Envelope sender, already validated and qualified ("" = null sender).
    pub sender: String,
    /// Recipients from the command line or RCPT, validated.
    pub recipients: Vec<String>,
    /// `-t`.
    pub extract: bool,
    /// `-F`.
    pub fullname: Option<String>,
    /// DSN NOTIFY.
    pub notify: Option<String>,
    /// DSN RET.
    pub ret: Option<String>,
    /// DSN ENVID.
    pub envid: Option<String>,
    /// `-odi`: the caller is told of a permanent failure (no bounce).
    pub interactive: bool,
    /// Where the message came from when it came over the SMTP listener.
    pub origin: Option<Origin>,
}

/// Where a message submitted over the SMTP listener came from: its
/// Received field and log line name the client (every part already
/// printable ASCII).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The client's HELO/EHLO argument.
    pub helo: String,
    /// `[192.0.2.1]:40000`, or `unix socket, uid 1000 (alice)`.
    pub client: String,
    /// The RFC 3848 protocol: SMTP, ESMTP, ESMTPS, ESMTPA or ESMTPSA.
    pub protocol: String,
    /// The authenticated user, if any.
    pub auth: Option<String>,
}

/// A committed message.
#[derive(Debug, Clone)]
pub struct Committed {
    /// Queue id.
    pub id: String,
    /// Stored size in bytes.
    pub size: u64,
    /// Envelope recipients.
    pub recipients: Vec<String>,
    /// Envelope sender.
    pub sender: String,
}

/// Creates and fills maildrop entries for one process.
pub struct Submitter<'a> {
    /// Configuration.
    pub cfg: &'a Config,
    /// The caller.
    pub user: User,
    source: EntrySource,
    dir: File,
}

/// At most the first 100 characters of `s` (for quoting input in a message).
fn shorten(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

fn spool_error(what: &str, e: &std::io::Error) -> Error {
    let mut err = Error::io(spool_write_kind(e), what, e);
    if e.raw_os_error() == Some(libc::EACCES) && maildrop::setgid_bit_ignored() {
        err = err.context("the set-group-id bit was ignored (NoNewPrivileges= or a nosuid mount?)");
    }
    err
}

impl<'a> Submitter<'a> {
    /// A submitter writing into the maildrop directory `dir`.
    pub fn new(cfg: &'a Config, user: User, source: EntrySource, dir: File) -> Submitter<'a> {
        Submitter {
            cfg,
            user,
            source,
            dir,
        }
    }

    fn new_entry(&mut self) -> Result<(String, File)> {
        let r = match &mut self.source {
            EntrySource::Preopened(slot) => match slot.take() {
                Some(r) => r,
                None => {
                    return Err(Error::new(
                        Kind::Software,
                        "only one message can be submitted by this invocation",
                    ));
                }
            },
            EntrySource::Helper(o) => o.open_entry(),
            EntrySource::Direct => maildrop::create(&self.dir),
        };
        r.map_err(|e| spool_error("cannot create the queue file", &e))
    }

    /// Free space this caller's submission must leave on the spool's file
    /// system (`[queue] min_free`): root is exempt, so that root's own mail
    /// still fits when everyone else is refused.
    fn reserve(&self) -> u64 {
        if self.user.uid == 0 {
            0
        } else {
            self.cfg.queue.min_free
        }
    }

    /// Whether the spool still has room above the reserve for this caller
    /// (one `fstatvfs`; the SMTP server asks at MAIL).
    pub fn check_reserve(&self) -> Result<()> {
        maildrop::keeps_free(&self.dir, self.reserve())
            .map_err(|e| spool_error("cannot accept mail now", &e))
    }

    /// The default envelope sender of the caller: `user@domain`.
    pub fn default_sender(&self) -> String {
        format!("{}@{}", self.user.name, self.cfg.domain)
    }

    /// Validate and qualify a sender given with `-f` or MAIL FROM.
    pub fn parse_sender(&self, raw: &str) -> Result<String> {
        let t = raw.trim();
        if t.is_empty() || t == "<>" {
            return Ok(String::new());
        }
        let a = address::parse::parse_single_address(t).map_err(|e| {
            Error::new(
                Kind::DataErr,
                format!("bad sender address {:?}: {e}", shorten(t)),
            )
        })?;
        Ok(self.qualify(&a))
    }

    /// Validate a recipient given on the command line or in RCPT TO.
    pub fn parse_recipient(&self, raw: &str) -> Result<String> {
        address::parse::parse_single_address(raw.trim()).map_err(|e| {
            Error::new(
                Kind::DataErr,
                format!("bad recipient address {:?}: {e}", shorten(raw)),
            )
        })
    }

    fn qualify(&self, addr: &str) -> String {
        if addr.contains('@') {
            addr.to_string()
        } else {
            format!("{addr}@{}", self.cfg.domain)
        }
    }

    /// A local recipient must resolve somewhere (exit 67 otherwise).
    fn check_local(&self, rcpt: &str) -> Result<()> {
        if !address::route::is_local(self.cfg, rcpt) {
            return Ok(());
        }
        let exp = address::route::expand(self.cfg, rcpt);
        let delivers = exp
            .iter()
            .any(|e| matches!(e, address::aliases::Expansion::Address(_)));
        if delivers {
            return Ok(());
        }
        let why = exp
            .iter()
            .find_map(|e| match e {
                address::aliases::Expansion::Failed(t, w) => Some(format!("{t}: {w}")),
                _ => None,
            })
            .unwrap_or_else(|| "resolves to nothing".into());
        Err(Error::new(
            Kind::NoUser,
            format!("recipient {rcpt:?} resolves nowhere: {why}"),
        ))
    }

    /// With `addresses.from_header`, the From field rewritten to the
    /// configured sender identity, keeping the display name; the original
    /// address goes to Reply-To when the message has none.
    fn rewrite_from(
        &self,
        f: &Field,
        has_reply_to: bool,
        reply_to: &mut Option<String>,
    ) -> Option<String> {
        use crate::config::FromRewrite;
        let identity = self.cfg.addresses.sender.as_ref()?;
        let (display, addr) = headers::from_mailbox(f)?;
        let local = addr.is_empty() || address::rewrite::is_local_sender(self.cfg, &addr);
        let rewrite = match self.cfg.addresses.from_header {
            FromRewrite::Never => false,
            FromRewrite::Always => true,
            FromRewrite::Local => local,
        };
        if !rewrite || addr.eq_ignore_ascii_case(identity) {
            return None;
        }
        let original = if addr.contains('@') {
            addr.clone()
        } else {
            format!("{addr}@{}", self.cfg.domain)
        };
        if !has_reply_to {
            *reply_to = Some(format!("<{original}>"));
        }
        Some(match display.filter(|d| !d.trim().is_empty()) {
            Some(d) => format!("From: {} <{identity}>", headers::encode_phrase(&d)),
            None => format!("From: {identity}"),
        })
    }

    /// Read one message from `reader` and commit it: open the entry, read
    /// the header section, settle the recipients, write the fixed-up header,
    /// copy the body, commit.
    pub fn submit<R: BufRead>(
        &mut self,
        reader: &mut LineReader<R>,
        opts: &MessageOptions,
    ) -> Result<Committed> {
        let (id, mut out) = self.open_entry()?;
        let header = read_header_section(reader)?;
        let recipients = self.recipients(&header.fields, opts)?;
        let now = crate::clock::now();
        let (fixed, message_id) = self.fixed_header(&id, &header, opts, now);
        out.write(&fixed)?;
        drop(fixed);
        copy_body(reader, &header.after, &mut out)?;
        let env = Envelope {
            id: id.clone(),
            sender: opts.sender.clone(),
            recipients: recipients.clone(),
            uid: self.user.uid,
            user: self.user.name.clone(),
            arrival: crate::clock::unix_f64(now),
            fullname: opts.fullname.clone(),
            dsn_notify: opts.notify.clone(),
            dsn_ret: opts.ret.clone(),
            envid: opts.envid.clone(),
            eight_bit: out.eight_bit,
            message_id: Some(message_id.clone()).filter(|m| crate::spool::format::is_safe_value(m)),
            is_bounce: false,
            interactive: opts.interactive,
        };
        let size = out.commit(&env)?;
        let client = opts
            .origin
            .as_ref()
            .map(|o| {
                let auth = o
                    .auth
                    .as_ref()
                    .map(|a| format!(" auth={a}"))
                    .unwrap_or_default();
                format!(" client={} proto={}{auth}", o.client, o.protocol)
            })
            .unwrap_or_default();
        log::info!(
            "{id}: uid={} from=<{}> size={size} nrcpt={} message-id={message_id}{client}",
            self.user.uid,
            opts.sender,
            recipients.len()
        );
        Ok(Committed {
            id,
            size,
            recipients,
            sender: opts.sender.clone(),
        })
    }

    /// Step 1: a new maildrop entry and a size-checked writer on it.
    fn open_entry(&mut self) -> Result<(String, Output)> {
        let (id, file) = self.new_entry()?;
        let dir = self
            .dir
            .try_clone()
            .map_err(|e| spool_error("cannot use the spool directory", &e))?;
        let w = MessageWriter::new(id.clone(), file, dir)
            .and_then(|mut w| w.keep_free(self.reserve()).map(|()| w))
            .map_err(|e| spool_error("cannot write the queue file", &e))?;
        Ok((
            id,
            Output {
                w,
                limit: limit::SizeLimit::for_submission(self.cfg),
                line_breaks: 0,
                eight_bit: false,
            },
        ))
    }

    /// Step 3: the envelope recipients (arguments or RCPT, then with `-t`
    /// the header's), without duplicates, each local one resolving
    /// somewhere.
    fn recipients(&self, fields: &[Field], opts: &MessageOptions) -> Result<Vec<String>> {
        let mut recipients: Vec<String> = Vec::new();
        let mut push = |r: String| {
            if !recipients.iter().any(|x| x == &r) {
                recipients.push(r);
            }
        };
        for r in &opts.recipients {
            push(r.clone());
        }
        if opts.extract {
            for m in headers::extract_recipients(fields)? {
                push(m.addr);
            }
        }
        if recipients.len() > crate::spool::format::MAX_RCPTS {
            return Err(Error::new(
                Kind::DataErr,
                format!(
                    "too many recipients: {} (at most {} per message)",
                    recipients.len(),
                    crate::spool::format::MAX_RCPTS
                ),
            ));
        }
        for r in &recipients {
            self.check_local(r)?;
        }
        if recipients.is_empty() {
            return Err(Error::new(
                Kind::Usage,
                if opts.extract {
                    "no recipients: none given as arguments and none in To, Cc or Bcc"
                } else {
                    "no recipients: give them as arguments, or use -t to take them from the headers"
                },
            ));
        }
        Ok(recipients)
    }

    /// Step 4: the header section as it is stored: Received first, the
    /// caller's fields (dropped ones removed, From rewritten, addresses
    /// masqueraded), then the From, Date and Message-ID the message lacks.
    /// Returns the bytes and the Message-ID.
    fn fixed_header(
        &self,
        id: &str,
        header: &HeaderSection,
        opts: &MessageOptions,
        now: std::time::SystemTime,
    ) -> (Vec<u8>, String) {
        let fields = &header.fields;
        let date = crate::clock::rfc5322(now);
        let mut out = Vec::with_capacity(header.bytes + 512);
        let received = match &opts.origin {
            None => format!(
                "Received: by {} (Postern, from userid {})\n\tid {}; {}\n",
                self.cfg.hostname, self.user.uid, id, date
            ),
            Some(o) => format!(
                "Received: from {} ({}{})\n\tby {} (Postern) with {} id {}; {}\n",
                o.helo,
                o.client,
                o.auth
                    .as_ref()
                    .map(|a| format!(", authenticated as {a}"))
                    .unwrap_or_default(),
                self.cfg.hostname,
                o.protocol,
                id,
                date
            ),
        };
        out.extend_from_slice(received.as_bytes());
        let has_reply_to = fields.iter().any(|f| f.is("Reply-To"));
        let mut reply_to: Option<String> = None;
        for f in fields.iter().filter(|f| !headers::is_dropped(f)) {
            if f.is("From")
                && let Some(new) = self.rewrite_from(f, has_reply_to, &mut reply_to)
            {
                out.extend_from_slice(new.as_bytes());
                out.push(b'\n');
                continue;
            }
            let masq = self.cfg.addresses.masquerade
                && ["From", "To", "Cc", "Reply-To", "Sender"]
                    .iter()
                    .any(|n| f.is(n));
            match masq
                .then(|| headers::qualify_field(f, &self.cfg.domain))
                .flatten()
            {
                Some(q) => out.extend_from_slice(&q),
                None => out.extend_from_slice(&f.raw),
            }
            out.push(b'\n');
        }
        if let Some(rt) = reply_to {
            out.extend_from_slice(format!("Reply-To: {rt}\n").as_bytes());
        }
        if !fields.iter().any(|f| f.is("From")) {
            self.generated_from(opts, has_reply_to, &mut out);
        }
        if !fields.iter().any(|f| f.is("Date")) {
            out.extend_from_slice(format!("Date: {date}\n").as_bytes());
        }
        let message_id = match headers::message_id(fields) {
            Some(m) => m,
            None => {
                let m = format!("<{}.{}@{}>", id, std::process::id(), self.cfg.hostname);
                out.extend_from_slice(format!("Message-ID: {m}\n").as_bytes());
                m
            }
        };
        (out, message_id)
    }

    /// The From field of a message that has none: the envelope sender (or
    /// the caller), with `-F` or the caller's full name; rewritten to the
    /// sender identity like a given From.
    fn generated_from(&self, opts: &MessageOptions, has_reply_to: bool, out: &mut Vec<u8>) {
        let addr = if opts.sender.is_empty() {
            self.default_sender()
        } else {
            opts.sender.clone()
        };
        let name = opts.fullname.clone().or_else(|| {
            if addr == self.default_sender() {
                self.user.gecos.clone()
            } else {
                None
            }
        });
        let name = name.filter(|n| !n.trim().is_empty());
        let line = match &name {
            Some(n) => format!("From: {} <{}>", headers::encode_phrase(n), addr),
            None => format!("From: {addr}"),
        };
        let generated = Field {
            name: "From".into(),
            raw: line.clone().into_bytes(),
        };
        let mut rt = None;
        match self.rewrite_from(&generated, has_reply_to, &mut rt) {
            Some(new) => {
                out.extend_from_slice(new.as_bytes());
                out.push(b'\n');
                if let Some(rt) = rt {
                    out.extend_from_slice(format!("Reply-To: {rt}\n").as_bytes());
                }
            }
            None => {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            }
        }
    }
}

/// The entry being written: every write is checked against the size limit
/// ([`limit::SizeLimit`]) and notes 8-bit data. Against a relay's SIZE (or
/// the fallback) the size counts each line break as CRLF, as on the wire;
/// `max_message_size` counts the bytes as given.
struct Output {
    w: MessageWriter,
    limit: limit::SizeLimit,
    line_breaks: u64,
    eight_bit: bool,
}

impl Output {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if !self.eight_bit && !bytes.is_ascii() {
            self.eight_bit = true;
        }
        self.w
            .write(bytes)
            .map_err(|e| spool_error("cannot write the queue file", &e))?;
        let size = if self.limit.source == limit::Source::Config {
            self.w.len()
        } else {
            self.line_breaks += count_newlines(bytes);
            self.w.len() + self.line_breaks
        };
        if self.limit.exceeded_by(size) {
            return Err(Error::new(Kind::DataErr, self.limit.refusal()));
        }
        Ok(())
    }

    /// Step 6: commit the entry with `env`; returns its size.
    fn commit(self, env: &Envelope) -> Result<u64> {
        let size = self.w.len();
        self.w
            .commit(env)
            .map_err(|e| spool_error("cannot commit the queue file", &e))?;
        Ok(size)
    }
}

/// The number of `\n` in `d`, counted in blocks of 255 with a byte-wide
/// sum, which the compiler vectorises.
fn count_newlines(d: &[u8]) -> u64 {
    d.chunks(255)
        .map(|c| u64::from(c.iter().fold(0u8, |n, &b| n + u8::from(b == b'\n'))))
        .sum()
}

/// What ended the header section.
enum After {
    /// The empty line.
    Separator,
    /// A line that is neither a field nor a continuation: the body's first.
    BodyLine { newline: bool, complete: bool },
    /// The end of the input.
    End,
}

/// The header section as read.
struct HeaderSection {
    /// The fields, each in its normal form.
    fields: Vec<Field>,
    /// Bytes read (for sizing the fixed-up copy).
    bytes: usize,
    /// What ended it.
    after: After,
}

fn read_err(e: std::io::Error) -> Error {
    Error::io(Kind::IoErr, "cannot read the message", &e)
}

/// Step 2: read the header section (bounded: 1 MiB, no NUL), skipping an
/// mbox `From ` line, joining continuation lines to their field.
fn read_header_section<R: BufRead>(reader: &mut LineReader<R>) -> Result<HeaderSection> {
    let mut fields: Vec<Field> = Vec::new();
    let mut header_bytes = 0usize;
    let mut first_line = true;
    let after;
    loop {
        let piece = reader.next_piece().map_err(read_err)?;
        let (newline, complete) = match piece {
            Piece::End => {
                after = After::End;
                break;
            }
            Piece::Data {
                newline, complete, ..
            } => (newline, complete),
        };
        let line = &reader.buf;
        if first_line && headers::is_mbox_from(line) && complete {
            first_line = false;
            continue;
        }
        first_line = false;
        if line.is_empty() && complete {
            after = After::Separator;
            break;
        }
        let cont = headers::is_continuation(line) && !fields.is_empty();
        let name = if cont {
            None
        } else {
            headers::field_name(line).map(str::to_string)
        };
        if !cont && name.is_none() {
            after = After::BodyLine { newline, complete };
            break;
        }
        let mut full = line.clone();
        let mut complete = complete;
        while !complete {
            match reader.next_piece().map_err(read_err)? {
                Piece::Data { complete: c, .. } => {
                    full.extend_from_slice(&reader.buf);
                    complete = c;
                }
                Piece::End => break,
            }
            if full.len() > MAX_HEADER_BYTES {
                break;
            }
        }
        header_bytes += full.len() + 1;
        if header_bytes > MAX_HEADER_BYTES {
            return Err(Error::new(
                Kind::DataErr,
                "the header section is larger than 1 MiB",
            ));
        }
        if full.contains(&0) {
            return Err(Error::new(
                Kind::DataErr,
                "the header section contains a NUL byte; mail cannot carry it",
            ));
        }
        match name {
            Some(n) => fields.push(Field {
                name: n,
                raw: headers::normal_form(full),
            }),
            None => {
                if let Some(last) = fields.last_mut() {
                    last.raw.push(b'\n');
                    last.raw.extend_from_slice(&full);
                }
            }
        }
    }
    Ok(HeaderSection {
        fields,
        bytes: header_bytes,
        after,
    })
}

/// Step 5: the separator and the body, streamed in bounded pieces; an
/// input that ended inside the message (SMTP DATA without its dot) fails.
fn copy_body<R: BufRead>(
    reader: &mut LineReader<R>,
    after: &After,
    out: &mut Output,
) -> Result<()> {
    match after {
        After::End => {}
        After::Separator => out.write(b"\n")?,
        After::BodyLine { newline, complete } => {
            out.write(b"\n")?;
            let line = std::mem::take(&mut reader.buf);
            out.write(&line)?;
            reader.buf = line;
            if *complete && *newline {
                out.write(b"\n")?;
            }
        }
    }
    if !matches!(after, After::End) {
        let mut plain = Vec::new();
        loop {
            let (run, has_cr) = reader.peek_run().map_err(read_err)?;
            if !run.is_empty() {
                if has_cr {
                    input::without_cr(run, &mut plain);
                    out.write(&plain)?;
                } else {
                    out.write(run)?;
                }
                reader.consume_run();
                continue;
            }
            match reader.next_piece().map_err(read_err)? {
                Piece::End => break,
                Piece::Data { newline, .. } => {
                    let line = std::mem::take(&mut reader.buf);
                    let r = out.write(&line);
                    reader.buf = line;
                    r?;
                    if newline {
                        out.write(b"\n")?;
                    }
                }
            }
        }
    }
    if reader.truncated {
        return Err(Error::new(
            Kind::DataErr,
            "the input ended before the end of the message",
        ));
    }
    Ok(())
}
