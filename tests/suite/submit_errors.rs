//! Every error path of submission: its sysexits code, its one-line message
//! on stderr (`sendmail: …`), and that nothing deliverable is left in the
//! spool afterwards.

use crate::support;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use support::{Out, TestEnv, base_config};

const MSG: &[u8] = b"Subject: test\n\nhello\n";

/// The command failed with `code`, said so in exactly one `sendmail:` line
/// containing every one of `words`, and left nothing in the spool.
fn fails(env: &TestEnv, o: &Out, code: i32, words: &[&str]) {
    assert_eq!(o.code, code, "{o:?}");
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {o:?}");
    assert!(lines[0].starts_with("sendmail: "), "{o:?}");
    for w in words {
        assert!(lines[0].contains(w), "{w:?} missing: {o:?}");
    }
    assert!(
        env.entries().is_empty(),
        "an entry was left: {:?}",
        env.entries()
    );
    assert!(
        env.files("maildrop").is_empty(),
        "{:?}",
        env.files("maildrop")
    );
}

// ---- configuration (78) --------------------------------------------------------

#[test]
fn bad_config_is_78_naming_file_and_key() {
    let env = TestEnv::new();
    let path = env.config.display().to_string();
    // a value that fails validation
    env.write_config(&base_config(&env.root).replace("[queue]\n", "[queue]\nparallel = 0\n"));
    let o = env.sendmail(&["a@x.example"], MSG);
    fails(&env, &o, 78, &[&path, "queue.parallel"]);
    // a key that does not exist
    env.write_config(&format!("bogus_key = 1\n{}", base_config(&env.root)));
    let o = env.sendmail(&["a@x.example"], MSG);
    fails(&env, &o, 78, &[&path, "bogus_key"]);
    // bad TOML: file and line
    env.write_config(&format!("{}hostname = \n", base_config(&env.root)));
    let o = env.sendmail(&["a@x.example"], MSG);
    fails(&env, &o, 78, &[&path]);
    // a bad enum value
    env.write_config(&format!(
        "{}[addresses]\nfrom_header = \"sometimes\"\n",
        base_config(&env.root)
    ));
    let o = env.sendmail(&["a@x.example"], MSG);
    fails(&env, &o, 78, &[&path, "from_header"]);
    // from_header without a sender identity
    env.write_config(&format!(
        "{}[addresses]\nfrom_header = \"local\"\n",
        base_config(&env.root)
    ));
    let o = env.sendmail(&["a@x.example"], MSG);
    fails(&env, &o, 78, &[&path, "addresses.from_header"]);
}

#[test]
fn missing_explicit_config_is_78() {
    let env = TestEnv::new();
    let missing = env.root.join("nope.toml");
    let mut c = env.cmd("sendmail");
    c.env("POSTERN_CONFIG", &missing);
    let o = env.run_cmd(c, &["a@x.example"], MSG);
    fails(&env, &o, 78, &[&missing.display().to_string()]);
    let mut c = env.cmd("sendmail");
    c.arg("-C").arg(&missing);
    let o = env.run_cmd(c, &["a@x.example"], MSG);
    fails(&env, &o, 78, &["nope.toml", "does not exist"]);
}

// ---- the spool (73 / 75) -------------------------------------------------------

#[test]
fn spool_below_a_file_is_73() {
    let env = TestEnv::new();
    let file = env.root.join("afile");
    std::fs::write(&file, "x").unwrap();
    env.write_config(&base_config(&env.root).replace(
        &format!("spool_dir = \"{}\"", env.spool.display()),
        &format!("spool_dir = \"{}/spool\"", file.display()),
    ));
    let o = env.sendmail(&["a@x.example"], MSG);
    assert!(o.code == 73 || o.code == 75, "{o:?}");
    assert_eq!(o.stderr.lines().count(), 1, "{o:?}");
    assert!(o.stderr.contains("afile/spool"), "{o:?}");
}

#[test]
fn spool_that_is_a_file_is_73_or_75() {
    let env = TestEnv::new();
    std::fs::write(&env.spool, "not a directory").unwrap();
    let o = env.sendmail(&["a@x.example"], MSG);
    assert!(o.code == 73 || o.code == 75, "{o:?}");
    assert_eq!(o.stderr.lines().count(), 1, "{o:?}");
    assert!(o.stderr.starts_with("sendmail: "), "{o:?}");
    assert!(o.stderr.contains(&env.spool.display().to_string()), "{o:?}");
    // maildrop being a file
    let env = TestEnv::new();
    std::fs::create_dir_all(&env.spool).unwrap();
    std::fs::write(env.spool.join("maildrop"), "x").unwrap();
    let o = env.sendmail(&["a@x.example"], MSG);
    assert!(o.code == 73 || o.code == 75, "{o:?}");
    assert_eq!(o.stderr.lines().count(), 1, "{o:?}");
    assert!(o.stderr.contains(&env.spool.display().to_string()), "{o:?}");
}

/// Run as `nobody` (the tests run as root, for whom no permission check fails).
fn as_nobody(env: &TestEnv, args: &[&str]) -> Out {
    use std::os::unix::process::CommandExt;
    let mut c = env.cmd("sendmail");
    c.uid(65534).gid(65534);
    env.run_cmd(c, args, MSG)
}

#[test]
#[ignore = "needs root: runs the binary as another user"]
fn unwritable_spool_is_73() {
    support::require_root();
    let env = TestEnv::new();
    // let nobody reach the config and the binary links
    std::fs::set_permissions(&env.root, std::fs::Permissions::from_mode(0o755)).unwrap();
    // a spool that exists, owned by root: maildrop not writable by nobody
    assert_eq!(env.sendmail(&["-odq", "a@x.example"], MSG).code, 0);
    let first = env.files("maildrop");
    assert_eq!(first.len(), 1);
    std::fs::set_permissions(
        env.spool.join("maildrop"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let o = as_nobody(&env, &["a@x.example"]);
    assert_eq!(o.code, 73, "{o:?}");
    assert_eq!(o.stderr.lines().count(), 1, "{o:?}");
    assert!(o.stderr.contains("Permission denied"), "{o:?}");
    assert_eq!(env.files("maildrop"), first);
    // a spool nobody cannot even enter
    std::fs::set_permissions(&env.spool, std::fs::Permissions::from_mode(0o700)).unwrap();
    let o = as_nobody(&env, &["a@x.example"]);
    assert!(o.code == 73 || o.code == 75, "{o:?}");
    assert_eq!(o.stderr.lines().count(), 1, "{o:?}");
    assert_eq!(env.files("maildrop"), first);
}

// ---- bad data (65) ------------------------------------------------------------

#[test]
fn malformed_header_address_with_t_is_65_naming_the_header() {
    let cases: &[(&str, &str)] = &[
        ("To: a@@b.example\n", "To"),
        ("To: ok@x.example\nCc: <unbalanced@x.example\n", "Cc"),
        ("To: ok@x.example\nBcc: ;\n", "Bcc"),
        ("Resent-From: r@x.example\nResent-To: a@@b\n", "Resent-To"),
        ("To: ok@x.example,\n  \"unterminated@x.example\n", "To"),
    ];
    for (headers, name) in cases {
        let env = TestEnv::new();
        let o = env.sendmail(&["-t"], format!("{headers}Subject: s\n\nb\n").as_bytes());
        fails(&env, &o, 65, &[&format!("{name} header")]);
    }
}

#[test]
fn malformed_header_address_without_t_is_accepted() {
    // only -t reads addresses from the header; the message itself is passed on
    let env = TestEnv::new();
    let o = env.sendmail(&["a@x.example"], b"To: a@@b\nSubject: s\n\nb\n");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(env.single_entry().headers().contains("\nTo: a@@b\n"));
}

#[test]
fn bad_argv_address_is_65() {
    for bad in ["a@@x.example", "<unbalanced@x.example", "a b c@", "@", "a@"] {
        let env = TestEnv::new();
        let o = env.sendmail(&[bad], MSG);
        fails(&env, &o, 65, &["bad recipient address"]);
    }
    let env = TestEnv::new();
    let o = env.sendmail(&["-f", "x@@y", "a@x.example"], MSG);
    fails(&env, &o, 65, &["bad sender address"]);
}

#[test]
fn nul_in_the_header_is_65() {
    let env = TestEnv::new();
    let o = env.sendmail(&["a@x.example"], b"Subject: a\0b\n\nbody\n");
    fails(&env, &o, 65, &["NUL"]);
    let o = env.sendmail(&["a@x.example"], b"Subject: a\n continued \0\n\nbody\n");
    fails(&env, &o, 65, &["NUL"]);
}

#[test]
fn over_max_message_size_is_65_with_nothing_left() {
    let env = TestEnv::new();
    env.write_config(&format!(
        "max_message_size = \"10k\"\n{}",
        base_config(&env.root)
    ));
    let mut msg = b"Subject: big\n\n".to_vec();
    msg.extend(std::iter::repeat_n(b"0123456789abcdef\n".as_slice(), 2000).flatten());
    let o = env.sendmail(&["-i", "a@x.example"], &msg);
    fails(&env, &o, 65, &["too big", "max_message_size"]);
    // just under the limit passes
    let o = env.sendmail(&["a@x.example"], &msg[..8000]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.entries().len(), 1);
}

#[test]
fn huge_header_section_is_65() {
    let env = TestEnv::new();
    let mut msg = Vec::new();
    for i in 0..20_000 {
        msg.extend_from_slice(format!("X-Filler-{i}: {}\n", "h".repeat(60)).as_bytes());
    }
    msg.extend_from_slice(b"\nbody\n");
    let o = env.sendmail(&["a@x.example"], &msg);
    fails(&env, &o, 65, &["header section"]);
}

// ---- usage (64) ----------------------------------------------------------------

#[test]
fn non_utf8_argv_is_64() {
    let env = TestEnv::new();
    let mut c = env.cmd("sendmail");
    c.arg(std::ffi::OsStr::from_bytes(b"a\xff@x.example"));
    let o = env.run_cmd(c, &[], MSG);
    fails(&env, &o, 64, &["UTF-8"]);
}

#[test]
fn no_recipients_is_64() {
    let env = TestEnv::new();
    let o = env.sendmail(&[], MSG);
    fails(&env, &o, 64, &["no recipients"]);
    let o = env.sendmail(&["-t", "-i"], b"From: a@x.example\nSubject: s\n\nb\n");
    fails(&env, &o, 64, &["no recipients"]);
    let o = env.sendmail(&["-t"], b"To: Group:;\nSubject: s\n\nb\n");
    fails(&env, &o, 64, &["no recipients"]);
}

#[test]
fn newline_in_sender_or_name_is_64() {
    let env = TestEnv::new();
    let o = env.sendmail(&["-f", "a@x.example\nTo: x", "b@x.example"], MSG);
    fails(&env, &o, 64, &["-f", "line break"]);
    let o = env.sendmail(&["-F", "Name\rX", "b@x.example"], MSG);
    fails(&env, &o, 64, &["-F", "line break"]);
    let o = env.sendmail(&["b@x.example\n"], MSG);
    fails(&env, &o, 64, &["recipient", "line break"]);
}

#[test]
fn option_without_value_is_64() {
    let env = TestEnv::new();
    for flag in ["-f", "-F", "-N", "-R", "-V", "-C", "-o", "-b"] {
        let o = env.sendmail(&[flag], MSG);
        fails(&env, &o, 64, &[flag, "needs a value"]);
    }
}

// ---- unknown local users (67) ------------------------------------------------

/// The sendmail-style refusal of unknown local names is an explicit option.
fn rejecting_env() -> TestEnv {
    let env = TestEnv::new();
    env.write_config(&format!(
        "{}[addresses]\nunknown_local = \"reject\"\n",
        base_config(&env.root)
    ));
    env
}

#[test]
fn local_recipient_that_resolves_nowhere_is_67() {
    for rcpt in [
        "nosuchuser-xyz",
        "nosuchuser-xyz@localhost",
        "nosuchuser-xyz@web1.example.com",
    ] {
        let env = rejecting_env();
        let o = env.sendmail(&[rcpt], MSG);
        fails(&env, &o, 67, &["nosuchuser-xyz", "resolves nowhere"]);
    }
    // also when it comes from the header with -t, next to a good one
    let env = rejecting_env();
    let o = env.sendmail(&["-t"], b"To: ok@x.example, nosuchuser-xyz\n\nb\n");
    fails(&env, &o, 67, &["nosuchuser-xyz"]);
    // root, postmaster and MAILER-DAEMON work without an aliases file
    let env = TestEnv::new();
    let o = env.sendmail(
        &["root", "postmaster", "MAILER-DAEMON", "root@localhost"],
        MSG,
    );
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn pipe_or_file_only_alias_is_67() {
    let env = TestEnv::new();
    let aliases = env.root.join("aliases");
    std::fs::write(
        &aliases,
        "web: |/usr/bin/process-mail\narchive: /var/mail/archive\nmixed: |/bin/cat, ops@x.example\nloop1: loop2\nloop2: loop1\n",
    )
    .unwrap();
    env.write_config(&format!(
        "{}[addresses]\naliases_file = \"{}\"\n",
        base_config(&env.root),
        aliases.display()
    ));
    let o = env.sendmail(&["web"], MSG);
    fails(&env, &o, 67, &["web", "resolves nowhere"]);
    let o = env.sendmail(&["archive"], MSG);
    fails(&env, &o, 67, &["archive"]);
    let o = env.sendmail(&["loop1"], MSG);
    fails(&env, &o, 67, &["loop1"]);
    // an alias with at least one deliverable address is accepted
    let o = env.sendmail(&["mixed"], MSG);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.single_entry().rcpts(), vec!["mixed"]);
}

// ---- limits of the envelope ------------------------------------------------------

#[test]
fn too_many_recipients_is_65_not_a_temporary_failure() {
    // regression: this used to fail at commit time with 75 (try again),
    // so the caller would have retried forever
    let env = TestEnv::new();
    let to: Vec<String> = (0..10_001).map(|i| format!("r{i}@x.example")).collect();
    let msg = format!("To: {}\nSubject: many\n\nb\n", to.join(", "));
    let o = env.sendmail(&["-t"], msg.as_bytes());
    fails(&env, &o, 65, &["too many recipients", "10001"]);
    // exactly the limit is fine
    let msg = format!("To: {}\nSubject: many\n\nb\n", to[..10_000].join(", "));
    let o = env.sendmail(&["-t"], msg.as_bytes());
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(env.single_entry().rcpts().len(), 10_000);
}

#[test]
fn overlong_full_name_is_64() {
    // regression: a -F longer than an envelope line failed at commit with 75
    let env = TestEnv::new();
    let name = "N".repeat(5000);
    let o = env.sendmail(&["-F", &name, "a@x.example"], MSG);
    fails(&env, &o, 64, &["-F", "at most"]);
    let o = env.sendmail(&["-F", &"N".repeat(256), "a@x.example"], MSG);
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn overlong_bad_address_is_quoted_short() {
    let env = TestEnv::new();
    let addr = format!("{}@x.example", "a".repeat(5000));
    let o = env.sendmail(&[&addr], MSG);
    fails(&env, &o, 65, &["bad recipient address", "longer than 998"]);
    assert!(o.stderr.len() < 400, "{} bytes on stderr", o.stderr.len());
    let o = env.sendmail(&["-f", &addr, "b@x.example"], MSG);
    fails(&env, &o, 65, &["bad sender address"]);
    assert!(o.stderr.len() < 400, "{} bytes on stderr", o.stderr.len());
}
