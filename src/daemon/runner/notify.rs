//! Telling the sender: delay warnings and non-delivery reports (RFC 3464
//! DSNs) about a queued message, under the rules for when not to (a
//! message from `<>` or a bounce is never bounced; NOTIFY decides; at most
//! `limits.max_bounces_per_hour` to one address, the rest logged and
//! counted by the outbound guard). The report is queued as a new message
//! through `spool::enqueue`.

use super::Ctx;
use crate::clock;
use crate::deliver::Reply;
use crate::spool::queue::Queued;
use crate::spool::state::{RcptState, RcptStatus, State};
use crate::spool::{enqueue, format};
use std::io;

pub(super) fn maybe_warn(ctx: &Ctx, q: &Queued, st: &mut State, now: f64) {
    let Some(after) = ctx.cfg.queue.delay_warning else {
        return;
    };
    if st.warned || q.env.sender.is_empty() || q.env.is_bounce {
        return;
    }
    if let Some(n) = &q.env.dsn_notify
        && !n.contains("DELAY")
    {
        return;
    }
    if now - q.env.arrival < after.as_secs_f64() {
        return;
    }
    let delayed: Vec<&RcptState> = st
        .rcpts
        .iter()
        .filter(|r| r.status == RcptStatus::Deferred)
        .collect();
    if delayed.is_empty() {
        return;
    }
    match queue_dsn(ctx, q, st, &delayed, crate::bounce::Action::Delayed, now) {
        Ok(new) => {
            log::info!("{}: sender delay notification: {new}", q.env.id);
            st.warned = true;
        }
        Err(e) => log::error!("{}: cannot queue a delay notification: {e}", q.env.id),
    }
}

/// Tell the sender about `bounced` (a DSN), unless the rules say not
/// to: a message from `<>` or a bounce is never bounced; NOTIFY without
/// FAILURE asks for silence.
pub(super) fn report(
    ctx: &Ctx,
    q: &Queued,
    st: &State,
    bounced: &[&RcptState],
    now: f64,
) -> Result<(), String> {
    let id = &q.env.id;
    if bounced.is_empty() {
        return Ok(());
    }
    let wants = q
        .env
        .dsn_notify
        .as_deref()
        .is_none_or(|n| n.contains("FAILURE"));
    if q.env.sender.is_empty() || q.env.is_bounce {
        log::warn!("{id}: undeliverable notification from <> dropped (a bounce is never bounced)");
        Ok(())
    } else if !wants {
        log::info!(
            "{id}: no bounce: NOTIFY={}",
            q.env.dsn_notify.as_deref().unwrap_or("")
        );
        Ok(())
    } else if !crate::guard::allow_bounce(&ctx.cfg, &ctx.spool, &q.env.sender) {
        // The DSN storm cap: never a flood of bounces back to one
        // (possibly spoofed) sender. Counted in the guard's state.
        log::warn!(
            "{id}: bounce to <{}> not sent: over {} bounces/hour to that address (limits.max_bounces_per_hour)",
            crate::escape::field(&q.env.sender),
            ctx.cfg.limits.max_bounces_per_hour
        );
        Ok(())
    } else {
        match queue_dsn(ctx, q, st, bounced, crate::bounce::Action::Failed, now) {
            Ok(new) => {
                log::info!("{id}: sender non-delivery notification: {new}");
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Report recipients that bounced in this attempt (indices `newly`).
/// When the DSN cannot be queued they go back to deferred: losing the
/// bounce would lose the news, so they are tried (and reported) again.
pub(super) fn report_new(ctx: &Ctx, q: &Queued, st: &mut State, newly: &[usize], now: f64) {
    if newly.is_empty() {
        return;
    }
    let all_refused = st.rcpts.iter().all(|r| r.status == RcptStatus::Bounced);
    if q.env.interactive && all_refused {
        return; // finish() decides: the -odi caller is told instead
    }
    let bounced: Vec<&RcptState> = newly.iter().filter_map(|&i| st.rcpts.get(i)).collect();
    if let Err(e) = report(ctx, q, st, &bounced, now) {
        log::error!("{}: cannot queue the bounce, will retry: {e}", q.env.id);
        for &i in newly {
            if let Some(r) = st.rcpts.get_mut(i) {
                r.status = RcptStatus::Deferred;
            }
        }
    }
}

/// A reader over the message part of a queued file.
struct MessageReader<'a> {
    file: &'a std::fs::File,
    pos: u64,
    end: u64,
}

impl io::Read for MessageReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if self.pos >= self.end {
            return Ok(0);
        }
        let want = buf.len().min((self.end - self.pos) as usize);
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Queue a DSN about `rcpts` of `q` to its sender. Returns the new id.
fn queue_dsn(
    ctx: &Ctx,
    q: &Queued,
    st: &State,
    rcpts: &[&RcptState],
    action: crate::bounce::Action,
    now: f64,
) -> io::Result<String> {
    use crate::bounce::{DsnInput, RecipientReport, write_dsn};
    let cfg = &ctx.cfg;
    let reports: Vec<RecipientReport> = rcpts
        .iter()
        .map(|r| recipient_report(ctx, q, st, r, action))
        .collect();
    let postmaster = format!("MAILER-DAEMON@{}", cfg.hostname);
    let input = DsnInput {
        reporting_mta: &cfg.hostname,
        queue_id: &q.env.id,
        original_sender: &q.env.sender,
        envid: q.env.envid.as_deref(),
        arrival: clock::from_unix_f64(q.env.arrival),
        now: clock::from_unix_f64(now),
        recipients: &reports,
        return_full: q.env.dsn_ret.as_deref() == Some("FULL"),
        postmaster: &postmaster,
        message_id_domain: &cfg.hostname,
        max_full_size: 10 * 1024 * 1024,
    };
    let env = format::Envelope {
        id: String::new(),
        sender: String::new(),
        recipients: vec![q.env.sender.clone()],
        uid: nix::unistd::getuid().as_raw(),
        user: "MAILER-DAEMON".into(),
        arrival: now,
        eight_bit: q.env.eight_bit && q.env.dsn_ret.as_deref() == Some("FULL"),
        message_id: None,
        is_bounce: true,
        ..Default::default()
    };
    let new_id = enqueue::enqueue(&ctx.spool, env, |w| {
        let reader = MessageReader {
            file: &q.file,
            pos: q.start,
            end: q.start + q.len,
        };
        write_dsn(&input, reader, q.len, w)
    })?;
    if let Ok(mut v) = ctx.new_ids.lock() {
        v.push(new_id.clone());
    }
    Ok(new_id)
}

/// What the DSN says about one recipient.
fn recipient_report(
    ctx: &Ctx,
    q: &Queued,
    st: &State,
    r: &RcptState,
    action: crate::bounce::Action,
) -> crate::bounce::RecipientReport {
    use crate::bounce::RecipientReport;
    let reply = parse_reply(&r.reply);
    RecipientReport {
        final_recipient: r.address.clone(),
        original_recipient: (r.original != r.address).then(|| r.original.clone()),
        action,
        status: match (&reply, action) {
            (Some(rep), _) => rep.enhanced(),
            (None, crate::bounce::Action::Delayed) => "4.4.1".into(),
            (None, crate::bounce::Action::Failed) => {
                if r.reply.contains("expired") {
                    "4.4.7".into()
                } else {
                    "5.0.0".into()
                }
            }
        },
        remote_mta: (!st.relay.is_empty() && reply.is_some())
            .then(|| format!("dns; {}", st.relay.split('[').next().unwrap_or(""))),
        diagnostic: reply.as_ref().map(|r| r.to_string()),
        reason: r.reply.clone(),
        last_attempt: (st.last_attempt > 0.0).then(|| clock::from_unix_f64(st.last_attempt)),
        will_retry_until: (action == crate::bounce::Action::Delayed)
            .then(|| clock::from_unix_f64(q.env.arrival) + ctx.cfg.queue.max_lifetime),
    }
}

fn parse_reply(s: &str) -> Option<Reply> {
    let (code, text) = s.split_once(' ').unwrap_or((s, ""));
    let code: u16 = code.parse().ok().filter(|c| (200..600).contains(c))?;
    Some(Reply {
        code,
        text: text.to_string(),
    })
}
