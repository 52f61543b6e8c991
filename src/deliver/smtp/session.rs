//! One SMTP session with a smart host, on our own [`Conn`].
//!
//! We drive every step ourselves: resolve the relay (to log
//! `host[ip]:port`), connect (implicit TLS when `tls = "tls"`), STARTTLS when
//! `tls = "starttls"` (required: a server that does not offer it is a TLS
//! failure, never a silent downgrade; bytes that follow its `220` in plain
//! text are a TLS failure too — see [`super::conn`]), a second EHLO to learn
//! SIZE, DSN, 8BITMIME, SMTPUTF8 and PIPELINING, AUTH only over TLS, then
//! MAIL / one RCPT per recipient / DATA with per-reply outcomes. Commands are
//! sent as our own lines. The DATA body is streamed from the spool through
//! `wire` in bounded chunks; should reading the spool fail midway, the
//! connection is dropped without the final dot so the server discards the
//! partial message. Reused for several messages; RSET only after a
//! transaction that did not reach its final reply.

use super::conn::{self, Conn, TlsParameters};
use super::reply::Features;
use super::wire;
use crate::config::{Config, Relay, TlsMode};
use crate::deliver::transport::STALE_SESSION;
use crate::deliver::transport::{self, ConnectError, RcptVerdict, Transaction, TxRcpt, TxResult};
use crate::deliver::{Reply, Verdict};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// The reply inside a connection error, when the error is an SMTP reply.
pub fn reply_of(e: &conn::Error) -> Option<Reply> {
    e.reply()
}

fn describe(e: &conn::Error) -> String {
    e.describe()
}

/// A positive reply as the session reports it.
fn positive(r: &super::reply::RawReply) -> Reply {
    Reply {
        code: r.code,
        text: conn::positive_text(r),
    }
}

/// A transaction with at most this many recipients is pipelined (RFC 2920)
/// when the server offers PIPELINING: RSET (when due), MAIL, every RCPT and DATA in
/// one write, then their replies read in order. More recipients go in lock
/// step, so the replies we have not read yet always fit in the socket
/// buffers while we write.
const PIPELINE_MAX_RCPTS: usize = 100;

/// Messages up to this size whose wire form is UTF-8 go out in a single
/// write together with the end-of-data dot (one segment for a small
/// message, rather than a write per chunk and one for the dot).
const ONE_WRITE_MAX: u64 = 1024 * 1024;

/// The whole DATA payload (dot-stuffed, with the terminating `.` line)
/// sent as one write.
struct Payload(String);

/// The one-write payload of a small message, or None when it is not UTF-8
/// (such a message is streamed instead). Err on a spool read error.
fn one_write_payload(
    tx: &Transaction<'_>,
    plan: &wire::WirePlan,
) -> Result<Option<Payload>, String> {
    let mut buf = Vec::with_capacity(plan.size as usize + 8);
    for chunk in wire::stream(tx.file, tx.start, tx.len, plan) {
        buf.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
    }
    let Ok(text) = String::from_utf8(buf) else {
        return Ok(None);
    };
    // Every line break is CRLF here (wire guarantees it), so stuffing a dot
    // after each CRLF and at the start is complete transparency (RFC 5321 4.5.2).
    let mut out = String::with_capacity(text.len() + text.len() / 64 + 8);
    if text.starts_with('.') {
        out.push('.');
    }
    out.push_str(&text.replace("\r\n.", "\r\n.."));
    out.push_str("\r\n.\r\n");
    Ok(Some(Payload(out)))
}

/// Build the TLS parameters of a relay (trust store + ca_file + client
/// cert): the one builder, shared with `postern check`.
pub fn tls_parameters(relay: &Relay) -> Result<TlsParameters, ConnectError> {
    conn::tls_parameters(relay).map_err(ConnectError::Local)
}

/// Resolve `host:port` to addresses.
pub fn resolve(relay: &Relay) -> Result<Vec<SocketAddr>, ConnectError> {
    let host = relay.host.trim_matches(['[', ']']);
    let addrs: Vec<SocketAddr> = (host, relay.port)
        .to_socket_addrs()
        .map_err(|e| ConnectError::Dns(format!("cannot resolve {}: {e}", relay.host)))?
        .collect();
    if addrs.is_empty() {
        return Err(ConnectError::Dns(format!("{} has no address", relay.host)));
    }
    Ok(addrs)
}

/// An open SMTP session.
pub struct SmtpSession {
    conn: Conn,
    /// Index of the relay in the config.
    pub relay_index: usize,
    /// `host[ip]:port`.
    pub label: String,
    /// What the server offers.
    pub features: Features,
    /// Messages sent over this session.
    pub messages: usize,
    /// TLS in use.
    pub encrypted: bool,
    dirty: bool,
    /// This transaction opens on a session that already delivered and
    /// sent no RSET first: its first command is the probe that finds a
    /// session the relay closed meanwhile.
    reused: bool,
    command_timeout: Duration,
    data_timeout: Duration,
}

fn xtext(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

impl SmtpSession {
    /// Open a session to `relay` (index `idx`), with TLS and AUTH as
    /// configured.
    pub fn connect(
        cfg: &Config,
        idx: usize,
        relay: &Relay,
        tls: Option<&TlsParameters>,
    ) -> Result<SmtpSession, ConnectError> {
        let addrs = resolve(relay)?;
        let hello = cfg.helo_name().to_string();
        let mut last = None;
        for addr in addrs {
            let label = format!("{}[{}]:{}", relay.host, addr.ip(), addr.port());
            log::debug!("connecting to {label} (tls={:?})", relay.tls);
            let wrapper = if relay.tls == TlsMode::Tls { tls } else { None };
            match open(&addr, cfg.smtp.connect_timeout, &hello, wrapper) {
                Ok((conn, offer)) => {
                    return SmtpSession::setup(cfg, idx, relay, tls, conn, offer, label, &hello);
                }
                Err(e) => {
                    let msg = describe(&e);
                    last = Some(if let Some(r) = reply_of(&e) {
                        ConnectError::Refused(format!("{label} refused the session: {r}"))
                    } else if relay.tls == TlsMode::Tls
                        && !e.is_timeout()
                        && (matches!(e, conn::Error::Handshake(_)) || is_tls_error(&msg))
                    {
                        ConnectError::Tls(format!("TLS with {label} failed: {msg}"))
                    } else if msg.contains("refused") {
                        ConnectError::Unreachable(format!("connect to {label}: connection refused"))
                    } else if msg.contains("timed out") || e.is_timeout() {
                        ConnectError::Unreachable(format!("connect to {label}: timed out"))
                    } else {
                        ConnectError::Unreachable(format!("connect to {label}: {msg}"))
                    });
                }
            }
        }
        Err(last.unwrap_or_else(|| ConnectError::Unreachable("no address".into())))
    }

    #[allow(clippy::too_many_arguments)]
    fn setup(
        cfg: &Config,
        idx: usize,
        relay: &Relay,
        tls: Option<&TlsParameters>,
        mut conn: Conn,
        offer: Features,
        label: String,
        hello: &str,
    ) -> Result<SmtpSession, ConnectError> {
        conn.set_timeout(cfg.smtp.command_timeout);
        if relay.tls == TlsMode::Starttls {
            starttls(&mut conn, &offer, tls, &label)?;
        }
        let encrypted = conn.is_encrypted();
        let features = ehlo(&mut conn, cfg, &label, hello)?;
        learn_size(cfg, relay, features.size);
        if let Some(user) = &relay.username {
            authenticate(&mut conn, cfg, relay, user, &features, encrypted, &label)?;
        }
        Ok(SmtpSession {
            conn,
            relay_index: idx,
            label,
            features,
            messages: 0,
            encrypted,
            dirty: false,
            reused: false,
            command_timeout: cfg.smtp.command_timeout,
            data_timeout: cfg.smtp.data_timeout,
        })
    }

    fn cmd(&mut self, line: String) -> Result<Reply, (Option<Reply>, String)> {
        log::debug!("C: {line}");
        let r = self.conn.command(&line);
        self.answer(r)
    }

    /// A command's reply as [`Self::cmd`] reports it: the positive reply,
    /// or the negative one, or (None, why) when the connection failed.
    fn answer(
        &mut self,
        r: Result<super::reply::RawReply, conn::Error>,
    ) -> Result<Reply, (Option<Reply>, String)> {
        match r {
            Ok(r) => {
                let reply = positive(&r);
                log::debug!("S: {reply}");
                Ok(reply)
            }
            Err(e) => match reply_of(&e) {
                Some(r) => {
                    log::debug!("S: {r}");
                    Err((Some(r), String::new()))
                }
                None => {
                    let d = describe(&e);
                    log::debug!("connection error: {d}");
                    Err((None, d))
                }
            },
        }
    }

    /// Run one transaction. Never fails as a whole: every recipient gets a
    /// verdict.
    pub fn send(&mut self, tx: &Transaction<'_>) -> TxResult {
        self.reused = !self.dirty && self.messages > 0;
        let needs_utf8 = !tx.sender.is_ascii() || tx.rcpts.iter().any(|r| !r.address.is_ascii());
        if self.features.pipelining
            && tx.rcpts.len() <= PIPELINE_MAX_RCPTS
            && (self.features.smtputf8 || !needs_utf8)
        {
            return self.send_pipelined(tx, needs_utf8);
        }
        if let Err(res) = self.reset(tx.rcpts.len()) {
            return res;
        }
        if needs_utf8 && !self.features.smtputf8 {
            return self.send_without_smtputf8(tx);
        }
        match self.envelope(tx, needs_utf8) {
            Ok((plan, verdicts)) => self.data(tx, &plan, verdicts),
            Err(res) => res,
        }
    }

    /// RSET before a transaction on a session whose last transaction did
    /// not end with the final reply to its message.
    fn reset(&mut self, n: usize) -> Result<(), TxResult> {
        if self.dirty
            && let Err((_, e)) = self.cmd("RSET".into()).map(|_| ())
        {
            let reply = Reply::local(format!("lost connection with {} at RSET: {e}", self.label));
            return Err(TxResult::all(
                n,
                Verdict::Deferred,
                reply,
                STALE_SESSION,
                false,
            ));
        }
        self.dirty = true;
        Ok(())
    }

    /// One transaction pipelined (RFC 2920): RSET (when due), MAIL,
    /// every RCPT and DATA in one write, then their replies in order. Each
    /// reply means what it means in lock step (`reset`, `mail_from`,
    /// `rcpt_to`, `data`): the same verdict per recipient. What differs is
    /// only what the server saw after a refusal — the commands that followed
    /// it, which it answers with errors we read and drop; should it accept
    /// DATA with no recipient accepted, the connection is dropped before any
    /// message byte, so nothing is delivered.
    fn send_pipelined(&mut self, tx: &Transaction<'_>, needs_utf8: bool) -> TxResult {
        let n = tx.rcpts.len();
        let (plan, wire_size) = match self.plan(tx) {
            Ok(p) => p,
            Err(res) => {
                self.dirty = true; // as after the RSET lock step sends first
                return res;
            }
        };
        let rset = self.dirty;
        self.dirty = true;
        let mut lines = Vec::with_capacity(n + 3);
        if rset {
            lines.push("RSET".to_string());
        }
        lines.push(self.mail_line(tx, &plan, wire_size, needs_utf8));
        lines.extend(tx.rcpts.iter().map(|r| self.rcpt_line(tx, r)));
        lines.push("DATA".to_string());
        let mut batch = String::with_capacity(lines.iter().map(|l| l.len() + 2).sum());
        for l in &lines {
            log::debug!("C: {l}");
            batch.push_str(l);
            batch.push_str("\r\n");
        }
        // A failed write shows as the failed read of the first reply.
        let _ = self.conn.send(batch.as_bytes());
        if rset {
            let r = self.conn.response();
            if let Err((_, e)) = self.answer(r) {
                let reply =
                    Reply::local(format!("lost connection with {} at RSET: {e}", self.label));
                return TxResult::all(n, Verdict::Deferred, reply, STALE_SESSION, false);
            }
        }
        let r = self.conn.response();
        let r = self.answer(r);
        if let Err(res) = self.mail_outcome(n, r) {
            return self.skip_replies(n + 1, res);
        }
        let mut verdicts: Vec<RcptVerdict> = Vec::with_capacity(n);
        for _ in tx.rcpts {
            let r = self.conn.response();
            let r = self.answer(r);
            if let Err(res) = self.rcpt_outcome(n, &mut verdicts, r) {
                return res;
            }
        }
        let r = self.conn.response();
        if !verdicts.iter().any(|v| v.0 == Verdict::Sent) {
            let res = TxResult {
                verdicts,
                reusable: true,
                retry_after: None,
            };
            return self.refused_data(r, res);
        }
        self.after_data(tx, &plan, verdicts, r)
    }

    /// After a refused MAIL: read (and drop) the replies to the `k`
    /// commands that followed it (the RCPTs and DATA); `res` stands.
    fn skip_replies(&mut self, k: usize, res: TxResult) -> TxResult {
        if !res.reusable {
            return res; // the connection is gone
        }
        for _ in 1..k {
            let r = self.conn.response();
            if !matches!(self.answer(r), Err((Some(_), _))) {
                self.conn.abort();
                return TxResult {
                    reusable: false,
                    ..res
                };
            }
        }
        let r = self.conn.response();
        self.refused_data(r, res)
    }

    /// DATA's reply when no recipient was accepted: a refusal keeps the
    /// session; a 354 (or a lost connection) ends it before any message
    /// byte is sent.
    fn refused_data(
        &mut self,
        r: Result<super::reply::RawReply, conn::Error>,
        res: TxResult,
    ) -> TxResult {
        match self.answer(r) {
            Err((Some(_), _)) => res,
            _ => {
                self.conn.abort();
                TxResult {
                    reusable: false,
                    ..res
                }
            }
        }
    }

    /// Non-ASCII addresses need SMTPUTF8, which this server lacks: those
    /// recipients (all, when the sender is not ASCII) bounce; the ASCII
    /// recipients are delivered now.
    fn send_without_smtputf8(&mut self, tx: &Transaction<'_>) -> TxResult {
        let mut verdicts = Vec::with_capacity(tx.rcpts.len());
        for r in tx.rcpts {
            if !tx.sender.is_ascii() || !r.address.is_ascii() {
                verdicts.push((
                    Verdict::Bounced,
                    Reply {
                        code: 553,
                        text: format!(
                            "5.6.7 non-ASCII address and {} does not support SMTPUTF8",
                            self.label
                        ),
                    },
                    "MAIL FROM",
                ));
            } else {
                verdicts.push((Verdict::Deferred, Reply::local("pending".into()), ""));
            }
        }
        let ascii: Vec<TxRcpt> = tx
            .rcpts
            .iter()
            .filter(|r| r.address.is_ascii())
            .cloned()
            .collect();
        if !tx.sender.is_ascii() || ascii.is_empty() {
            return TxResult {
                verdicts,
                reusable: true,
                retry_after: None,
            };
        }
        let sub = Transaction {
            rcpts: &ascii,
            ..*tx
        };
        self.dirty = false;
        let inner = self.send(&sub);
        let mut it = inner.verdicts.into_iter();
        for (i, r) in tx.rcpts.iter().enumerate() {
            if r.address.is_ascii()
                && let Some(v) = it.next()
            {
                verdicts[i] = v;
            }
        }
        TxResult {
            verdicts,
            reusable: inner.reusable,
            retry_after: None,
        }
    }

    /// Plan the wire form, check SIZE, then MAIL FROM and one RCPT TO per
    /// recipient. Ok: the plan and the RCPT verdicts, at least one accepted.
    fn envelope(
        &mut self,
        tx: &Transaction<'_>,
        needs_utf8: bool,
    ) -> Result<(wire::WirePlan, Vec<RcptVerdict>), TxResult> {
        let (plan, wire_size) = self.plan(tx)?;
        self.mail_from(tx, &plan, wire_size, needs_utf8)?;
        let verdicts = self.rcpt_to(tx)?;
        if !verdicts.iter().any(|v| v.0 == Verdict::Sent) {
            return Err(TxResult {
                verdicts,
                reusable: true,
                retry_after: None,
            });
        }
        Ok((plan, verdicts))
    }

    /// The wire plan and the size the server counts, checked against SIZE.
    fn plan(&self, tx: &Transaction<'_>) -> Result<(wire::WirePlan, u64), TxResult> {
        let n = tx.rcpts.len();
        let opts = wire::WireOptions {
            eight_bit_ok: self.features.eight_bit,
        };
        let plan = wire::plan(tx.file, tx.start, tx.len, opts).map_err(|e| {
            let reply = Reply::local(format!("cannot read the queue file: {e}"));
            TxResult::all(n, Verdict::Deferred, reply, "", true)
        })?;
        // What the server counts: our bytes plus the line break that the
        // end-of-data sequence puts back after the last line.
        let wire_size = plan.size + 2;
        if let Some(limit) = self.features.size
            && limit > 0
            && wire_size > limit
        {
            let reply = Reply {
                code: 552,
                text: format!(
                    "5.3.4 message size {} exceeds the limit of {} ({limit} bytes)",
                    wire_size, self.label
                ),
            };
            return Err(TxResult::all(n, Verdict::Bounced, reply, "MAIL FROM", true));
        }
        Ok((plan, wire_size))
    }

    fn mail_from(
        &mut self,
        tx: &Transaction<'_>,
        plan: &wire::WirePlan,
        wire_size: u64,
        needs_utf8: bool,
    ) -> Result<(), TxResult> {
        let mail = self.mail_line(tx, plan, wire_size, needs_utf8);
        let r = self.cmd(mail);
        self.mail_outcome(tx.rcpts.len(), r)
    }

    fn mail_line(
        &self,
        tx: &Transaction<'_>,
        plan: &wire::WirePlan,
        wire_size: u64,
        needs_utf8: bool,
    ) -> String {
        let mut mail = format!("MAIL FROM:<{}>", tx.sender);
        if self.features.size.is_some() {
            mail.push_str(&format!(" SIZE={wire_size}"));
        }
        if plan.eight_bit && self.features.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if needs_utf8 {
            mail.push_str(" SMTPUTF8");
        }
        if self.features.dsn {
            if let Some(r) = tx.ret {
                mail.push_str(&format!(" RET={r}"));
            }
            if let Some(e) = tx.envid {
                mail.push_str(&format!(" ENVID={}", xtext(e)));
            }
        }
        mail
    }

    /// What MAIL FROM's reply means for the `n` recipients.
    fn mail_outcome(
        &self,
        n: usize,
        r: Result<Reply, (Option<Reply>, String)>,
    ) -> Result<(), TxResult> {
        match r {
            Ok(_) => Ok(()),
            // A relay that timed the idle session out says so with 421
            // (closing) to the next command: a fresh session may try again.
            Err((Some(r), _)) if r.code == 421 && self.reused => {
                Err(TxResult::all(n, Verdict::Deferred, r, STALE_SESSION, false))
            }
            Err((Some(r), _)) => {
                let v = Verdict::from_code(r.code);
                Err(TxResult::all(n, v, r, "MAIL FROM", true))
            }
            Err((None, e)) => {
                let reply = Reply::local(format!(
                    "lost connection with {} at MAIL FROM: {e}",
                    self.label
                ));
                // Nothing was accepted: on a reused session that means the
                // relay closed it while idle, and a fresh one may try again.
                let stage = if self.reused {
                    STALE_SESSION
                } else {
                    "MAIL FROM"
                };
                Err(TxResult::all(n, Verdict::Deferred, reply, stage, false))
            }
        }
    }

    /// One RCPT TO per recipient; a lost connection defers them all.
    fn rcpt_to(&mut self, tx: &Transaction<'_>) -> Result<Vec<RcptVerdict>, TxResult> {
        let n = tx.rcpts.len();
        let mut verdicts: Vec<RcptVerdict> = Vec::with_capacity(n);
        for r in tx.rcpts {
            let r = self.cmd(self.rcpt_line(tx, r));
            self.rcpt_outcome(n, &mut verdicts, r)?;
        }
        Ok(verdicts)
    }

    /// Record one RCPT reply in `verdicts`; a lost connection defers all
    /// `n` recipients (those accepted before it too).
    fn rcpt_outcome(
        &self,
        n: usize,
        verdicts: &mut Vec<RcptVerdict>,
        r: Result<Reply, (Option<Reply>, String)>,
    ) -> Result<(), TxResult> {
        match r {
            Ok(reply) => verdicts.push((Verdict::Sent, reply, "RCPT TO")),
            Err((Some(reply), _)) => {
                verdicts.push((Verdict::from_code(reply.code), reply, "RCPT TO"))
            }
            Err((None, e)) => {
                let reply = Reply::local(format!(
                    "lost connection with {} at RCPT TO: {e}",
                    self.label
                ));
                while verdicts.len() < n {
                    verdicts.push((Verdict::Deferred, reply.clone(), "RCPT TO"));
                }
                for v in verdicts.iter_mut() {
                    if v.0 == Verdict::Sent {
                        *v = (Verdict::Deferred, reply.clone(), "RCPT TO");
                    }
                }
                return Err(TxResult {
                    verdicts: std::mem::take(verdicts),
                    reusable: false,
                    retry_after: None,
                });
            }
        }
        Ok(())
    }

    fn rcpt_line(&self, tx: &Transaction<'_>, r: &TxRcpt) -> String {
        let mut line = format!("RCPT TO:<{}>", r.address);
        if self.features.dsn {
            if let Some(nf) = tx.notify {
                line.push_str(&format!(" NOTIFY={nf}"));
            }
            let orcpt = if r.original.contains('@') {
                &r.original
            } else {
                &r.address
            };
            if orcpt.is_ascii() {
                line.push_str(&format!(" ORCPT=rfc822;{}", xtext(orcpt)));
            }
        }
        line
    }

    /// DATA and the message; the final reply applies to every recipient
    /// whose RCPT was accepted.
    fn data(
        &mut self,
        tx: &Transaction<'_>,
        plan: &wire::WirePlan,
        verdicts: Vec<RcptVerdict>,
    ) -> TxResult {
        log::debug!("C: DATA");
        let r = self.conn.command("DATA");
        self.after_data(tx, plan, verdicts, r)
    }

    /// DATA's reply: on 354 the message goes out, and the final reply
    /// applies to every recipient whose RCPT was accepted.
    fn after_data(
        &mut self,
        tx: &Transaction<'_>,
        plan: &wire::WirePlan,
        mut verdicts: Vec<RcptVerdict>,
        r: Result<super::reply::RawReply, conn::Error>,
    ) -> TxResult {
        if let Err(e) = r {
            let (reply, reusable) = match reply_of(&e) {
                Some(r) => (r, true),
                None => (
                    Reply::local(format!(
                        "lost connection with {} at DATA: {}",
                        self.label,
                        describe(&e)
                    )),
                    false,
                ),
            };
            let v = if reusable {
                Verdict::from_code(reply.code)
            } else {
                Verdict::Deferred
            };
            for x in verdicts.iter_mut().filter(|x| x.0 == Verdict::Sent) {
                *x = (v, reply.clone(), "DATA");
            }
            return TxResult {
                verdicts,
                reusable,
                retry_after: None,
            };
        }
        log::debug!("S: 354");
        let (verdict, reply, reusable) = self.transfer(tx, plan);
        if reusable {
            // The final reply ends the transaction, accepted or not (RFC
            // 5321 4.1.1.4): the next one needs no RSET, which saves a
            // command and its reply per message (a round trip in lock step).
            self.dirty = false;
        }
        for x in verdicts.iter_mut().filter(|x| x.0 == Verdict::Sent) {
            *x = (verdict, reply.clone(), "end of DATA");
        }
        if verdict == Verdict::Sent || reusable {
            self.messages += 1;
        }
        TxResult {
            verdicts,
            reusable,
            retry_after: None,
        }
    }

    /// Send the message (one write when small, else streamed) and read the
    /// final reply: its verdict, the reply, and whether the session lives.
    fn transfer(&mut self, tx: &Transaction<'_>, plan: &wire::WirePlan) -> (Verdict, Reply, bool) {
        self.conn.set_timeout(self.data_timeout);
        let result = self.write_message(tx, plan);
        self.conn.set_timeout(self.command_timeout);
        log::debug!("C: <message, {} bytes>", plan.size);
        match result {
            Err(read_error) => (
                Verdict::Deferred,
                Reply::local(format!(
                    "cannot read the queue file during DATA: {read_error}"
                )),
                false,
            ),
            Ok(Ok(r)) => {
                let reply = positive(&r);
                log::debug!("S: {reply}");
                (Verdict::Sent, reply, true)
            }
            Ok(Err(e)) => match reply_of(&e) {
                Some(r) => {
                    log::debug!("S: {r}");
                    (Verdict::from_code(r.code), r, true)
                }
                None => (
                    Verdict::Deferred,
                    Reply::local(format!(
                        "lost connection with {} while sending message: {}",
                        self.label,
                        describe(&e)
                    )),
                    false,
                ),
            },
        }
    }

    /// Write the message and the end-of-data dot; Err(reason) when the spool
    /// could not be read (the transfer is then cut without the dot).
    fn write_message(
        &mut self,
        tx: &Transaction<'_>,
        plan: &wire::WirePlan,
    ) -> Result<Result<super::reply::RawReply, conn::Error>, String> {
        if plan.size <= ONE_WRITE_MAX
            && let Some(payload) = one_write_payload(tx, plan)?
        {
            return Ok(self
                .conn
                .send(payload.0.as_bytes())
                .and_then(|_| self.conn.response()));
        }
        self.conn
            .message(wire::stream(tx.file, tx.start, tx.len, plan))
    }

    /// Close politely.
    pub fn quit(mut self) {
        log::debug!("C: QUIT");
        let _ = self.conn.command("QUIT");
    }

    /// True when the connection is still usable.
    pub fn is_broken(&self) -> bool {
        self.conn.has_broken()
    }
}

impl transport::Session for SmtpSession {
    fn label(&self) -> &str {
        &self.label
    }

    fn send(&mut self, tx: &Transaction<'_>) -> TxResult {
        SmtpSession::send(self, tx)
    }

    fn messages(&self) -> usize {
        self.messages
    }

    fn is_healthy(&self) -> bool {
        !self.is_broken()
    }

    fn quit(self: Box<Self>) {
        SmtpSession::quit(*self)
    }
}

/// TCP connect, implicit TLS when `tls` is given, the banner and the first
/// EHLO (what decides STARTTLS).
fn open(
    addr: &SocketAddr,
    timeout: Duration,
    hello: &str,
    tls: Option<&TlsParameters>,
) -> Result<(Conn, Features), conn::Error> {
    let mut conn = Conn::connect(addr, timeout)?;
    conn.set_timeout(timeout);
    if let Some(params) = tls {
        conn.handshake(params)?;
    }
    conn.response()?;
    let ehlo = conn.command(&format!("EHLO {hello}"))?;
    let offer = Features::parse(ehlo.lines.iter().map(|l| l.as_str()));
    Ok((conn, offer))
}

/// STARTTLS, which `tls = "starttls"` requires (never a silent downgrade).
/// A byte after its `220` is an attack on the connection (RFC 3207 §6): the
/// session ends as a TLS failure, so the message is deferred.
fn starttls(
    conn: &mut Conn,
    offer: &Features,
    tls: Option<&TlsParameters>,
    label: &str,
) -> Result<(), ConnectError> {
    if !offer.starttls {
        conn.abort();
        return Err(ConnectError::Tls(format!(
            "{label} does not offer STARTTLS (tls = \"starttls\" requires it; mail is never sent in clear text silently)"
        )));
    }
    let Some(params) = tls else {
        return Err(ConnectError::Local("no TLS parameters".into()));
    };
    log::debug!("C: STARTTLS");
    match conn.starttls(params) {
        Ok(_) => Ok(()),
        Err(e) => {
            let mut why = describe(&e);
            if e.is_plaintext_in_handshake() {
                why.push_str(" (not TLS after the STARTTLS reply: possible STARTTLS response injection, or a relay that does not start TLS)");
            }
            if let conn::Error::Injection(_) = e {
                log::warn!("possible attack on the connection to {label}: {why}");
            } else if e.reply().is_some() {
                conn.abort();
            }
            Err(ConnectError::Tls(format!(
                "STARTTLS with {label} failed: {why}"
            )))
        }
    }
}

/// The (second) EHLO: what the server offers.
fn ehlo(conn: &mut Conn, cfg: &Config, label: &str, hello: &str) -> Result<Features, ConnectError> {
    log::debug!("C: EHLO {}", cfg.helo_name());
    let ehlo = conn.command(&format!("EHLO {hello}")).map_err(|e| {
        let msg = describe(&e);
        if is_tls_error(&msg) {
            ConnectError::Tls(format!("TLS with {label} failed: {msg}"))
        } else {
            ConnectError::Refused(format!("{label}: EHLO failed: {msg}"))
        }
    })?;
    let lines: Vec<&str> = ehlo.lines.iter().map(|l| l.as_str()).collect();
    for l in &lines {
        log::debug!("S: 250 {l}");
    }
    let features = Features::parse(lines.iter().copied());
    Ok(features)
}

/// Record the relay's SIZE (RFC 1870), learned at this EHLO, for the
/// submission path's limit (`spool::relay_limits`, keyed by the configured
/// `host:port`; rewritten only when it changes).
pub fn learn_size(cfg: &Config, relay: &Relay, size: Option<u64>) {
    use crate::spool::relay_limits::{self, Advertised};
    let spool = crate::spool::Spool::new(&cfg.spool_dir);
    if let Err(e) = relay_limits::record(&spool, &relay.label(), Advertised::from_ehlo(size)) {
        log::debug!("cannot record the SIZE of {}: {e}", relay.label());
    }
}

/// AUTH as `user`, only over TLS (or in plain text to a loopback relay with
/// `allow_plaintext = true`, logged at each session), with the first allowed
/// mechanism the server offers. With `[relay.oauth2]` the secret is the
/// access token; a cached token refused with 535 is replaced by a fresh one
/// and AUTH tried once more.
fn authenticate(
    conn: &mut Conn,
    cfg: &Config,
    relay: &Relay,
    user: &str,
    features: &Features,
    encrypted: bool,
    label: &str,
) -> Result<(), ConnectError> {
    let plain_ok = relay.allow_plaintext && crate::config::is_loopback_host(&relay.host);
    if !encrypted && plain_ok {
        log::warn!(
            "AUTH as {user} to {label} over a plain-text connection (allow_plaintext = true on a loopback relay)"
        );
    } else if !encrypted {
        conn.abort();
        return Err(ConnectError::Auth(format!(
            "refusing to send credentials to {label} over an unencrypted connection (use tls = \"starttls\" or \"tls\"; for a local stunnel or sidecar on a loopback address, allow_plaintext = true)"
        )));
    }
    let mechs: Vec<&str> = relay
        .auth_mechanisms
        .iter()
        .map(|m| m.as_str())
        .filter(|m| matches!(*m, "PLAIN" | "LOGIN" | "XOAUTH2" | "OAUTHBEARER"))
        .filter(|m| features.auth.iter().any(|a| a == m))
        .collect();
    if mechs.is_empty() {
        conn.abort();
        return Err(ConnectError::Auth(format!(
            "{label} offers AUTH {} but we may use only {}",
            if features.auth.is_empty() {
                "nothing".to_string()
            } else {
                features.auth.join(" ")
            },
            relay.auth_mechanisms.join(" ")
        )));
    }
    let oauth = |fresh: bool| {
        crate::deliver::oauth2::token(&cfg.spool_dir, relay, fresh).map_err(ConnectError::Auth)
    };
    let (mut secret, mut cached) = if relay.oauth2.is_some() {
        let t = oauth(false).inspect_err(|_| conn.abort())?;
        (t.access_token, t.cached)
    } else {
        let s = crate::deliver::credentials::secret(relay)
            .map_err(|e| ConnectError::Local(e.message().to_string()))?
            .unwrap_or_default();
        (s, false)
    };
    loop {
        log::debug!("C: AUTH {} <credentials redacted>", mechs[0]);
        let e = match conn.auth(mechs[0], user, &secret) {
            Ok(r) => {
                log::debug!("S: {}", positive(&r));
                return Ok(());
            }
            Err(e) => e,
        };
        let reply = reply_of(&e);
        if cached && reply.as_ref().is_some_and(|r| r.code == 535) {
            log::info!(
                "{label} refused the cached OAuth2 token of {user} ({}): fetching a new one",
                reply.as_ref().map(|r| r.to_string()).unwrap_or_default()
            );
            let t = oauth(true).inspect_err(|_| conn.abort())?;
            (secret, cached) = (t.access_token, false);
            continue;
        }
        let why = match reply {
            Some(r) => r.to_string(),
            None => describe(&e),
        };
        conn.abort();
        return Err(ConnectError::Auth(format!(
            "authentication as {user} at {label} failed: {why}"
        )));
    }
}

/// True when an error text is a TLS/certificate failure.
pub fn is_tls_error(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("certificate") || m.contains("tls") || m.contains("handshake") || m.contains("alert")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_and_xtext() {
        let f = Features::parse(
            [
                "sink.test",
                "PIPELINING",
                "SIZE 1000",
                "8BITMIME",
                "DSN",
                "AUTH PLAIN LOGIN",
            ]
            .into_iter(),
        );
        assert_eq!(f.size, Some(1000));
        assert!(f.dsn && f.eight_bit && f.pipelining && !f.smtputf8);
        assert_eq!(f.auth, vec!["PLAIN", "LOGIN"]);
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
    }
}
