//! Security round 2 (issue 11): regressions for what an attacker found,
//! each through the real binary.

use crate::support;

use support::TestEnv;

/// `A\n.\nB` must not end `-bs` DATA at the bare-LF dot: only
/// `<CR><LF>.<CR><LF>` does (Postfix's smtpd_forbid_bare_newline =
/// normalize). Before the fix, the lines after the bare-LF dot were read
/// as SMTP commands, so a message body could smuggle a second transaction
/// with recipients of its own.
#[test]
fn bare_lf_dot_does_not_end_bs_data() {
    let env = TestEnv::new();
    let dialogue = "EHLO client.example\r\n\
                    MAIL FROM:<alice@example.com>\r\n\
                    RCPT TO:<bob@example.org>\r\n\
                    DATA\r\n\
                    Subject: smuggle\r\n\
                    \r\n\
                    A\n.\nMAIL FROM:<mallory@example.com>\r\n\
                    RCPT TO:<victim@example.net>\r\n\
                    DATA\r\n\
                    B\r\n\
                    .\r\n\
                    QUIT\r\n";
    let out = env.sendmail(&["-bs"], dialogue.as_bytes());
    assert_eq!(out.code, 0, "{out:?}");
    let queued = out.stdout.matches("250 2.0.0 Ok: queued as").count();
    assert_eq!(queued, 1, "exactly one message: {}", out.stdout);
    let e = env.single_entry();
    assert_eq!(e.rcpts(), vec!["bob@example.org"]);
    assert_eq!(e.sender(), "alice@example.com");
    let body = String::from_utf8_lossy(&e.body()).into_owned();
    assert!(body.contains("A\n"), "{body:?}");
    assert!(
        body.contains("MAIL FROM:<mallory@example.com>\n"),
        "{body:?}"
    );
    assert!(body.contains("RCPT TO:<victim@example.net>\n"), "{body:?}");
    assert!(body.ends_with("B\n"), "{body:?}");
}

/// A ready maildrop entry carries no group bits: the group only creates
/// entries (0704 = the ready bit on 0604).
#[test]
fn ready_entries_have_no_group_bits() {
    let env = TestEnv::new();
    let out = env.sendmail(&["bob@example.org"], b"Subject: x\n\nbody\n");
    assert_eq!(out.code, 0, "{out:?}");
    let e = env.single_entry();
    assert_eq!(e.mode & 0o070, 0, "mode {:o}", e.mode);
    assert_eq!(e.mode, 0o704);
}
