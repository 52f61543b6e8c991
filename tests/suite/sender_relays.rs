//! Per-sender relays (issue 13 §2): `senders` patterns choose the relays
//! by envelope sender, with failover inside the group only; relays without
//! `senders` serve everyone else; a sender no relay serves stays queued
//! with the reason; a bounce leaves through its original sender's relays.
//! `-bv`, `queue show` and `postern check` say which relay a sender maps to.

use crate::support;

use std::sync::Arc;
use std::time::Duration;
use support::smtp_server::{Action, Event, ServerConfig, SmtpServer};
use support::{TestEnv, base_config};

fn relay(port: u16, senders: &str) -> String {
    let senders = if senders.is_empty() {
        String::new()
    } else {
        format!("senders = [{senders}]\n")
    };
    format!("[[relay]]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n{senders}")
}

fn from(m: &support::smtp_server::Received) -> (String, Vec<String>) {
    (m.mail_from.clone(), m.rcpts.clone())
}

#[test]
fn each_sender_reaches_its_relays_with_failover_inside_the_group() {
    let a2 = SmtpServer::start(ServerConfig::default());
    let b = SmtpServer::start(ServerConfig::default());
    let d = SmtpServer::start(ServerConfig::default());
    let down = support::closed_port();
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}{}{}{}{}",
        base_config(&env.root),
        relay(down, "\"*@example.com\""),
        relay(a2.port(), "\"@example.com\""),
        relay(b.port(), "\"billing@example.org\""),
        relay(d.port(), "")
    ));
    for (sender, rcpt) in [
        ("alice@example.com", "r1@x.test"),
        ("billing@example.org", "r2@x.test"),
        ("other@example.net", "r3@x.test"),
        ("Billing@Example.ORG", "r4@x.test"),
        ("bob@sub.example.com", "r5@x.test"),
    ] {
        let o = env.sendmail(&["-f", sender, rcpt], b"Subject: route\n\nx\n");
        assert_eq!(o.code, 0, "{o:?}");
    }
    assert_eq!(env.queue_run().code, 0);
    let got_a = a2.wait_for(1, Duration::from_secs(10));
    let got_b = b.wait_for(2, Duration::from_secs(10));
    let got_d = d.wait_for(2, Duration::from_secs(10));
    assert_eq!(
        got_a.iter().map(from).collect::<Vec<_>>(),
        vec![(
            "alice@example.com".to_string(),
            vec!["r1@x.test".to_string()]
        )],
        "the first relay of the group is down: its second relay, never the default"
    );
    let mut b_from: Vec<_> = got_b.iter().map(from).collect();
    b_from.sort();
    assert_eq!(
        b_from,
        vec![
            (
                "Billing@Example.ORG".to_string(),
                vec!["r4@x.test".to_string()]
            ),
            (
                "billing@example.org".to_string(),
                vec!["r2@x.test".to_string()]
            ),
        ]
    );
    let mut d_from: Vec<_> = got_d.iter().map(from).collect();
    d_from.sort();
    assert_eq!(
        d_from,
        vec![
            (
                "bob@sub.example.com".to_string(),
                vec!["r5@x.test".to_string()]
            ),
            (
                "other@example.net".to_string(),
                vec!["r3@x.test".to_string()]
            ),
        ],
        "*@example.com does not match a subdomain: the default relays"
    );
    assert!(env.files("queue").is_empty());
    assert!(env.log().contains("connection refused"), "{}", env.log());

    // -bv names the relays a sender maps to.
    let o = env.sendmail(&["-bv", "-f", "billing@example.org", "r@x.test"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains(&format!("host 127.0.0.1:{}, sender <billing@example.org> via senders pattern billing@example.org", b.port())),
        "{o:?}"
    );
    let o = env.sendmail(&["-bv", "-f", "carol@example.com", "r@x.test"], b"");
    assert!(
        o.stdout.contains(&format!(
            "host 127.0.0.1:{down} (then 127.0.0.1:{}), sender <carol@example.com> via senders pattern *@example.com",
            a2.port()
        )),
        "{o:?}"
    );
    let o = env.sendmail(&["-bv", "-f", "x@example.net", "r@x.test"], b"");
    assert!(
        o.stdout.contains(&format!(
            "host 127.0.0.1:{}, sender <x@example.net> via the default relays",
            d.port()
        )),
        "{o:?}"
    );

    // check prints the routing table.
    let o = env.run("postern", &["check"], b"");
    assert!(
        o.stdout.contains("relays by envelope sender (senders):"),
        "{o:?}"
    );
    assert!(
        o.stdout.contains(&format!(
            "*@example.com                relay 1 (127.0.0.1:{down})\n"
        )),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains(&format!(
            "every other sender           relay 4 (127.0.0.1:{})",
            d.port()
        )),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains(&format!(
            "bounces (null sender <>)     the relays of the original sender's pattern, else relay 4 (127.0.0.1:{})",
            d.port()
        )),
        "{}",
        o.stdout
    );
}

#[test]
fn a_sender_no_relay_serves_stays_queued_with_the_reason() {
    let a = SmtpServer::start(ServerConfig::default());
    let d = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    let only_a = format!(
        "{}{}",
        base_config(&env.root),
        relay(a.port(), "\"*@example.com\"")
    );
    env.write_config(&only_a);
    let o = env.sendmail(&["-f", "x@example.net", "r@x.test"], b"Subject: s\n\nx\n");
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.queue_run().code, 0);
    let id = env.files("queue")[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let reason =
        "no relay serves sender <x@example.net>: every [[relay]] has senders and none matches";
    let show = env.run("postern", &["queue", "show", &id], b"");
    assert!(
        show.stdout
            .contains(&format!("Relays:        none ({reason}")),
        "{show:?}"
    );
    assert!(
        show.stdout.contains(reason),
        "the deferral reason: {show:?}"
    );
    let json = env.run("postern", &["queue", "show", &id, "--json"], b"");
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["relays"]["hosts"], serde_json::json!([]));
    let o = env.sendmail(&["-bv", "-f", "x@example.net", "r@x.test"], b"");
    assert_eq!(o.code, 67, "{o:?}");
    assert!(o.stdout.contains(reason), "{o:?}");
    let o = env.run("postern", &["check"], b"");
    assert!(
        o.stdout
            .contains("every other sender           none: their mail stays queued"),
        "{o:?}"
    );
    assert!(a.messages().is_empty());

    // A default relay appears: the queued message leaves through it.
    env.write_config(&format!("{only_a}{}", relay(d.port(), "")));
    let show = env.run("postern", &["queue", "show", &id, "--json"], b"");
    let v: serde_json::Value = serde_json::from_str(&show.stdout).expect("json");
    assert_eq!(
        v["relays"]["hosts"],
        serde_json::json!([format!("127.0.0.1:{}", d.port())])
    );
    assert_eq!(v["relays"]["reason"], "the default relays (no senders)");
    assert_eq!(env.run("postern", &["queue", "retry", &id], b"").code, 0);
    assert_eq!(env.queue_run().code, 0);
    let got = d.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, "x@example.net");
    assert!(a.messages().is_empty());
}

#[test]
fn a_bounce_leaves_through_the_original_senders_relays() {
    let refusing = |e: &Event| match e {
        Event::Rcpt { to, .. } if to.starts_with("bad") => {
            Action::Reply(550, "5.1.1 no such user".into())
        }
        _ => Action::Default,
    };
    let b = SmtpServer::start(ServerConfig {
        script: Arc::new(refusing),
        ..Default::default()
    });
    let d = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}{}{}",
        base_config(&env.root),
        relay(b.port(), "\"billing@example.org\""),
        relay(d.port(), "")
    ));
    let o = env.sendmail(
        &["-f", "billing@example.org", "bad@x.test"],
        b"Subject: b\n\nx\n",
    );
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.queue_run().code, 0);
    // The DSN is queued; deliver it (it may already have gone in the same run).
    for _ in 0..20 {
        if b.messages().iter().any(|m| m.mail_from.is_empty()) {
            break;
        }
        env.run("postern", &["queue", "retry", "ALL"], b"");
        env.queue_run();
        std::thread::sleep(Duration::from_millis(100));
    }
    let dsn: Vec<_> = b
        .messages()
        .into_iter()
        .filter(|m| m.mail_from.is_empty())
        .collect();
    assert_eq!(
        dsn.len(),
        1,
        "the bounce went to the billing relay: {:?}",
        b.messages()
    );
    assert_eq!(dsn[0].rcpts, vec!["billing@example.org"]);
    assert!(String::from_utf8_lossy(&dsn[0].data).contains("Final-Recipient: rfc822;bad@x.test"));
    assert!(d.messages().is_empty(), "nothing through the default relay");

    // A null-sender message to an address no pattern matches: the default relays.
    let o = env.sendmail(&["-f", "<>", "someone@x.test"], b"Subject: n\n\nx\n");
    assert_eq!(o.code, 0, "{o:?}");
    env.queue_run();
    let got = d.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].mail_from.as_str(), got[0].rcpts.clone()),
        ("", vec!["someone@x.test".to_string()])
    );
}
