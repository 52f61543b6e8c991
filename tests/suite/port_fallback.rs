//! Port fallback (issue 13 §4): `port = "auto"` tries 587 (STARTTLS), 465
//! (implicit TLS) and 2525 (STARTTLS) with a short connect timeout,
//! remembers the port that worked in the spool (`relay-ports`, so a new
//! process — a restart — goes straight to it) and probes again when it
//! stops answering; `postern check` tells a refused port from a blocked one
//! and, when every SMTP port is blocked, names the provider's HTTPS API.
//!
//! The real port numbers are needed, so the test runs in a network
//! namespace of its own (root): a thread unshares CLONE_NEWNET, brings `lo`
//! up, and everything it starts — the SMTP servers, the blocked listener,
//! the postern processes — lives there. A blocked port is a listener whose
//! accept queue is full (backlog 0, one connection never accepted): the
//! kernel drops further SYNs without an answer, as a firewall's DROP does.

use crate::support;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, bind, listen, setsockopt, socket,
    sockopt,
};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;
use support::smtp_server::{ServerConfig, SmtpServer, TlsMode};
use support::{TestEnv, base_config};

/// Run `f` on a thread in a new network namespace with `lo` up.
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare(2) only changes this thread's network namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        if !up.is_ok_and(|s| s.success()) {
            support::unavailable("cannot bring lo up with ip(8) in a new network namespace");
        }
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// A port on 127.0.0.1 that drops connections silently: a listener with a
/// full accept queue. Keep the value alive while the port must stay blocked.
struct Blocked {
    _listener: OwnedFd,
    _queued: Vec<TcpStream>,
}

fn blocked(port: u16) -> Blocked {
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    setsockopt(&fd, sockopt::ReuseAddr, &true).expect("SO_REUSEADDR");
    // A server this test just stopped may still hold the port for a moment:
    // a child that another test thread forked at that instant keeps a copy
    // of its listening socket until its exec.
    let start = std::time::Instant::now();
    while let Err(e) = bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port)) {
        assert!(
            e == nix::errno::Errno::EADDRINUSE && start.elapsed() < Duration::from_secs(5),
            "bind {port}: {e}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    listen(&fd, Backlog::new(0).expect("backlog")).expect("listen");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut queued = Vec::new();
    let mut dropped = false;
    for _ in 0..4 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(s) => queued.push(s),
            Err(_) => {
                dropped = true;
                break;
            }
        }
    }
    assert!(
        dropped,
        "the listener on {port} still answers: cannot block it"
    );
    Blocked {
        _listener: fd,
        _queued: queued,
    }
}

fn starttls_server(port: u16) -> SmtpServer {
    SmtpServer::start_on(
        ServerConfig {
            tls: TlsMode::StartTls,
            ..Default::default()
        },
        &format!("127.0.0.1:{port}"),
    )
    .expect("a server on the real port inside the namespace")
}

fn config(env: &TestEnv, host: &str, ca: &std::path::Path) -> String {
    format!(
        "{}[[relay]]\nhost = \"{host}\"\nport = \"auto\"\nca_file = \"{}\"\n",
        base_config(&env.root).replace("connect_timeout = \"5s\"", "connect_timeout = \"1s\""),
        ca.display()
    )
}

fn remembered(env: &TestEnv) -> String {
    std::fs::read_to_string(env.spool.join("relay-ports")).unwrap_or_default()
}

#[test]
#[ignore = "needs root: binds 587, 465 and 2525 in a network namespace of its own"]
fn auto_port_skips_refused_and_blocked_ports_remembers_and_reprobes() {
    support::require_root();
    in_netns(|| {
        let env = TestEnv::new();
        let s2525 = starttls_server(2525);
        let _drop465 = blocked(465);
        let ca = env.root.join("ca.pem");
        s2525.write_ca_file(&ca);
        env.write_config(&config(&env, "127.0.0.1", &ca));

        // check: 587 refused, 465 blocked, 2525 open and used.
        let o = env.run("postern", &["check"], b"");
        assert_eq!(o.code, 0, "{o:?}");
        for line in [
            "  port 587     --     refused (127.0.0.1:587: the host answers, nothing listens on 587)",
            "  port 465     --     blocked (127.0.0.1:465: no answer within 1s: a firewall drops it)",
            "  port 2525    --     open (STARTTLS; 127.0.0.1:2525 in ",
            "  ports        ok     using port 2525",
        ] {
            assert!(o.stdout.contains(line), "{line}\n{}", o.stdout);
        }

        // Delivery finds 2525 and remembers it.
        assert_eq!(env.sendmail(&["a@x.test"], b"Subject: one\n\nx\n").code, 0);
        env.queue_run();
        assert_eq!(
            s2525.wait_for(1, Duration::from_secs(10)).len(),
            1,
            "{}",
            env.log()
        );
        assert_eq!(remembered(&env), "postern-relay-ports 1\n2525 127.0.0.1\n");
        assert!(
            env.log().contains(
                "relay 127.0.0.1:auto: port 2525 works (587: connection refused; 465: timed out); remembered"
            ),
            "{}",
            env.log()
        );
        let m = &s2525.messages()[0];
        assert!(m.tls, "STARTTLS on 2525");

        // 587 comes up: a new process still goes straight to the remembered 2525.
        let s587 = starttls_server(587);
        assert_eq!(env.sendmail(&["b@x.test"], b"Subject: two\n\nx\n").code, 0);
        env.queue_run();
        assert_eq!(
            s2525.wait_for(2, Duration::from_secs(10)).len(),
            2,
            "{}",
            env.log()
        );
        assert!(
            s587.messages().is_empty(),
            "the remembered port is used first"
        );
        let o = env.run("postern", &["check"], b"");
        assert!(
            o.stdout.contains("(remembered: delivery tries it first)")
                && o.stdout.contains("  ports        ok     using port 2525"),
            "{}",
            o.stdout
        );

        // 2525 goes away: probe again, 587 works and is remembered.
        s2525.stop();
        assert_eq!(
            env.sendmail(&["c@x.test"], b"Subject: three\n\nx\n").code,
            0
        );
        env.queue_run();
        let got = s587.wait_for(1, Duration::from_secs(10));
        assert_eq!(got.len(), 1, "{}", env.log());
        assert_eq!(got[0].rcpts, vec!["c@x.test"]);
        assert!(got[0].tls);
        assert_eq!(remembered(&env), "postern-relay-ports 1\n587 127.0.0.1\n");
        assert!(env.files("queue").is_empty());
        s587.stop();

        // Every SMTP port blocked: check says so and names the provider's
        // HTTPS API (the relay's name resolves to 127.0.0.1 through a hosts
        // file bound over /etc/hosts in a mount namespace of the check alone).
        let _b587 = blocked(587);
        let _b2525 = blocked(2525);
        let hosts = env.root.join("hosts");
        std::fs::write(&hosts, "127.0.0.1 smtp.eu.mailgun.org\n").unwrap();
        env.write_config(&config(&env, "smtp.eu.mailgun.org", &ca));
        let mut c = Command::new("unshare");
        c.env("POSTERN_CONFIG", &env.config)
            .env_remove("POSTERN_NOW")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                "mount --bind \"$1\" /etc/hosts && exec \"$2\" check",
                "sh",
            ]);
        c.arg(&hosts).arg(env.bindir.join("postern"));
        let o = env.run_cmd(c, &[], b"");
        assert_eq!(o.code, 1, "{o:?}");
        for line in [
            "  port 587     --     blocked (127.0.0.1:587: no answer within 1s",
            "  port 465     --     blocked (127.0.0.1:465: no answer within 1s",
            "  port 2525    --     blocked (127.0.0.1:2525: no answer within 1s",
            "  ports        FAILED every SMTP port is blocked (587, 465, 2525 time out): this network drops outgoing SMTP; Mailgun offers its HTTPS API (POST /v3/DOMAIN/messages.mime, kind = \"mailgun\"): add a [[relay]] of that kind after this one (postern.toml(5), HTTPS API RELAYS)",
        ] {
            assert!(o.stdout.contains(line), "{line}\n{o:?}");
        }
    });
}

#[test]
fn auto_port_keys_are_checked() {
    let env = TestEnv::new();
    for (port, why) in [
        ("port = \"auto\"\ntls = \"tls\"\n", "relay[0].port"),
        ("port = \"sometimes\"\n", "port"),
    ] {
        env.write_config(&format!(
            "{}[[relay]]\nhost = \"smtp.example.com\"\n{port}",
            base_config(&env.root)
        ));
        let o = env.sendmail(&["-bv", "a@x.test"], b"");
        assert_eq!(o.code, 78, "{port}: {o:?}");
        assert!(o.stderr.contains(why), "{o:?}");
    }
    env.write_config(&format!(
        "{}[[relay]]\nhost = \"smtp.example.com\"\nport = \"auto\"\n",
        base_config(&env.root)
    ));
    let o = env.sendmail(&["-bv", "a@x.test"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("host smtp.example.com:auto"), "{o:?}");
}
