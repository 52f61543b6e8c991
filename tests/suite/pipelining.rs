//! SMTP PIPELINING (RFC 2920) in our client: when the relay offers it, a
//! transaction's RSET, MAIL, RCPTs and DATA go out together and the replies
//! are read in order. Every reply must mean what it means in lock step —
//! the same outcome per recipient with and without PIPELINING — and a
//! refused MAIL, or a transaction with no recipient accepted, must leave
//! the session in step for the next message (one session for the run).

use crate::support;

use postern::spool::state::State;
use std::sync::Arc;
use std::time::Duration;
use support::TestEnv;
use support::smtp_server::{Action, Event, ServerConfig, SmtpServer};

fn states(env: &TestEnv) -> Vec<State> {
    env.files("state")
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).expect("state file");
            State::decode(&text).expect("state decodes")
        })
        .collect()
}

/// (address, status, reply) of every recipient of the message from `sender`.
fn outcome(all: &[State], sender: &str) -> Vec<(String, String, String)> {
    let st = all
        .iter()
        .find(|s| s.sender == sender)
        .unwrap_or_else(|| panic!("no state for {sender}: {all:?}"));
    st.rcpts
        .iter()
        .map(|r| {
            (
                r.address.clone(),
                format!("{:?}", r.status),
                r.reply.clone(),
            )
        })
        .collect()
}

#[test]
fn refusals_mean_the_same_pipelined_or_in_lock_step() {
    let mut seen = Vec::new();
    for pipelining in [true, false] {
        let server = SmtpServer::start(ServerConfig {
            pipelining,
            script: Arc::new(|e| match e {
                Event::Mail { from, .. } if from.starts_with("busy") => {
                    Action::Reply(451, "4.3.0 try again later".into())
                }
                Event::Rcpt { to, .. } if to.starts_with("defer") => {
                    Action::Reply(450, "4.2.1 mailbox busy".into())
                }
                Event::Rcpt { to, .. } if to.starts_with("bad") => {
                    Action::Reply(550, "5.1.1 no such user".into())
                }
                _ => Action::Default,
            }),
            ..Default::default()
        });
        let env = TestEnv::new();
        env.write_config(
            &env.relay_config(server.port(), "")
                .replace("[queue]\n", "[queue]\nparallel = 1\n"),
        );
        // In arrival order: MAIL refused; no RCPT accepted; partly accepted.
        let submissions: [(&str, &[&str]); 3] = [
            ("busy@example.com", &["ok9@x.test"]),
            ("nobody@example.com", &["bad@x.test", "defer@x.test"]),
            (
                "sender@example.com",
                &["ok1@x.test", "bad2@x.test", "ok2@x.test"],
            ),
        ];
        for (from, rcpts) in submissions {
            let mut args = vec!["-odq", "-f", from];
            args.extend_from_slice(rcpts);
            let o = env.sendmail(&args, b"Subject: pipelining\n\nbody\n");
            assert_eq!(o.code, 0, "{o:?}");
            // distinct arrival times keep the order of the attempts
            std::thread::sleep(Duration::from_millis(5));
        }
        let o = env.queue_run();
        assert_eq!(o.code, 0, "{o:?}");
        // sender@'s message to ok1 and ok2, and two DSNs (bad@, bad2@).
        let msgs = server.wait_for(3, Duration::from_secs(20));
        let main: Vec<_> = msgs
            .iter()
            .filter(|m| m.mail_from == "sender@example.com")
            .collect();
        assert_eq!(main.len(), 1, "pipelining={pipelining}: {msgs:?}");
        assert_eq!(main[0].rcpts, ["ok1@x.test", "ok2@x.test"]);
        let data = String::from_utf8_lossy(&main[0].data);
        assert!(
            data.contains("Subject: pipelining\r\n") && data.ends_with("\r\n\r\nbody\r\n"),
            "{data}"
        );
        assert!(
            !msgs
                .iter()
                .any(|m| m.mail_from.starts_with("busy") || m.mail_from.starts_with("nobody")),
            "nothing of a refused transaction is delivered: {msgs:?}"
        );
        let dsns: Vec<_> = msgs.iter().filter(|m| m.mail_from.is_empty()).collect();
        assert_eq!(dsns.len(), 2, "{msgs:?}");

        let all = states(&env);
        let busy = outcome(&all, "busy@example.com");
        assert_eq!(busy.len(), 1);
        assert_eq!(busy[0].1, "Deferred");
        assert!(busy[0].2.contains("451 4.3.0 try again later"), "{busy:?}");
        let nobody = outcome(&all, "nobody@example.com");
        assert_eq!(nobody[0].1, "Bounced", "{nobody:?}");
        assert!(nobody[0].2.contains("550 5.1.1 no such user"), "{nobody:?}");
        assert_eq!(nobody[1].1, "Deferred", "{nobody:?}");
        assert!(nobody[1].2.contains("450 4.2.1 mailbox busy"), "{nobody:?}");
        assert!(
            all.iter().all(|s| s.sender != "sender@example.com"),
            "sender@'s message is done and removed"
        );

        // One session: after each refusal the dialogue stayed in step.
        let sessions = server.sessions();
        assert_eq!(sessions.len(), 1, "pipelining={pipelining}: {sessions:?}");
        let cmds = &sessions[0].commands;
        // Pipelined, the RCPT after the refused MAIL was sent (and refused
        // by the server); in lock step it never was.
        assert_eq!(
            cmds.iter().any(|c| c.starts_with("RCPT TO:<ok9@x.test>")),
            pipelining,
            "{cmds:?}"
        );
        // RSET only after the two transactions that never reached a final
        // reply (MAIL refused; no recipient accepted); none after the
        // delivered message, before the two DSNs that follow it.
        assert_eq!(
            cmds.iter().filter(|c| c.as_str() == "RSET").count(),
            2,
            "pipelining={pipelining}: {cmds:?}"
        );
        let statuses = |v: &[(String, String, String)]| -> Vec<(String, String)> {
            v.iter().map(|(a, s, _)| (a.clone(), s.clone())).collect()
        };
        seen.push((statuses(&busy), statuses(&nobody)));
    }
    assert_eq!(seen[0], seen[1], "the same outcomes either way");
}
