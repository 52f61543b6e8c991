//! Smoke test of the whole path: sendmail -> spool -> queue run -> SMTP server.

use crate::support;

use std::time::Duration;
use support::TestEnv;
use support::smtp_server::{ServerConfig, SmtpServer};

#[test]
fn submit_then_queue_run_delivers_exact_bytes() {
    let server = SmtpServer::start(ServerConfig::default());
    let env = TestEnv::new();
    env.write_config(&env.relay_config(server.port(), ""));
    let o = env.sendmail(
        &["-i", "bob@example.org"],
        b"Subject: hi\n\nline one\n.starts with a dot\n",
    );
    assert_eq!(o.code, 0, "{o:?}");
    let o = env.queue_run();
    assert_eq!(o.code, 0, "{o:?}");
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.mail_from, "root@example.com".replace("root", &whoami()));
    assert_eq!(m.rcpts, vec!["bob@example.org"]);
    let data = String::from_utf8_lossy(&m.data);
    assert!(data.contains("\r\nSubject: hi\r\n"), "{data}");
    assert!(
        data.ends_with("\r\n\r\nline one\r\n.starts with a dot\r\n"),
        "{data:?}"
    );
    assert!(String::from_utf8_lossy(&m.raw_data).contains("\r\n..starts with a dot\r\n"));
    assert!(env.files("queue").is_empty());
    assert!(env.log().contains("status=sent"));
}

fn whoami() -> String {
    postern::submit::User::lookup(nix::unistd::getuid().as_raw()).name
}
