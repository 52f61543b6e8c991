//! The checks behind Postern's fuzz targets, one function per target.
//!
//! Each `fuzz_targets/<name>.rs` is a one-line libFuzzer wrapper around
//! `checks::<name>`, and `tests/suite/fuzz_corpus.rs` (stable, `cargo test`)
//! includes this same file and replays every committed corpus through the
//! same functions. Only std and the `postern` library are used here.
//! Each function asserts no panic plus cheap invariants; see the comment
//! of each.

#![allow(dead_code)]

// ---- argv ----

/// Fuzz target `argv`: `cli::parse` on arbitrary argv vectors.
///
/// The input is split on NUL bytes into arguments (lossy UTF-8, as the
/// privileged start-up does); its first byte picks argv[0] among the names
/// Postern answers to. Asserts no panic, and that whatever the sendmail
/// grammar accepts as a sender, full name or recipient carries no CR, LF or
/// NUL (those would break a header or an envelope line).
pub mod argv {
    use postern::cli::{self, Invocation};

    const NAMES: [&str; 6] = [
        "sendmail",
        "/usr/sbin/sendmail",
        "mailq",
        "newaliases",
        "postern",
        "send-mail",
    ];

    /// Run the `argv` checks on one input.
    pub fn check(data: &[u8]) {
        let Some((&pick, rest)) = data.split_first() else {
            return;
        };
        let mut argv = vec![NAMES[usize::from(pick) % NAMES.len()].to_string()];
        if !rest.is_empty() {
            argv.extend(
                rest.split(|&b| b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned()),
            );
        }
        if let Ok(inv) = cli::parse(&argv) {
            let _ = inv.intent();
            if let Invocation::Sendmail(a) = &inv {
                let clean = |s: &str| !s.contains(['\r', '\n', '\0']);
                assert!(
                    a.sender.as_deref().is_none_or(clean),
                    "sender {:?}",
                    a.sender
                );
                assert!(
                    a.fullname.as_deref().is_none_or(clean),
                    "fullname {:?}",
                    a.fullname
                );
                for r in &a.recipients {
                    assert!(clean(r), "recipient {r:?}");
                }
                if let Some(e) = &a.envid {
                    assert!(!e.is_empty() && e.len() <= 100);
                }
            }
        }
    }
}

// ---- headers ----

/// Fuzz target `headers`: the header section of a submission —
/// `submit::headers::field_name`, `extract_recipients` (`-t`),
/// `qualify_field` (masquerading), `from_mailbox` and `message_id` on
/// arbitrary header blocks.
///
/// The input is split into fields exactly as `submit::Submitter::submit`
/// does (a line with a field name starts a field, a line starting with a
/// blank continues the previous one, anything else ends the header
/// section). Asserts no panic; that every extracted recipient is a
/// non-empty address without controls; and that a masqueraded field keeps
/// its name, still parses, has the same number of mailboxes, and no longer
/// has an unqualified one.
pub mod headers {
    use postern::address::parse::parse_address_list;
    use postern::submit::headers::{self, Field};

    const DOMAIN: &str = "example.com";

    fn split_fields(data: &[u8]) -> Vec<Field> {
        let mut fields: Vec<Field> = Vec::new();
        for line in data.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break;
            }
            if headers::is_continuation(line) && !fields.is_empty() {
                if let Some(last) = fields.last_mut() {
                    last.raw.push(b'\n');
                    last.raw.extend_from_slice(line);
                }
                continue;
            }
            match headers::field_name(line) {
                Some(n) => {
                    assert!(!n.is_empty() && !n.contains([':', ' ', '\t']));
                    fields.push(Field {
                        name: n.to_string(),
                        raw: line.to_vec(),
                    })
                }
                None => break,
            }
        }
        fields
    }

    /// Run the `headers` checks on one input.
    pub fn check(data: &[u8]) {
        let fields = split_fields(data);
        if let Ok(rcpts) = headers::extract_recipients(&fields) {
            for m in &rcpts {
                assert!(!m.addr.is_empty());
                assert!(!m.addr.contains(['\r', '\n', '\0']), "{:?}", m.addr);
            }
        }
        for f in &fields {
            let _ = headers::is_dropped(f);
            let _ = headers::from_mailbox(f);
            if let Some(q) = headers::qualify_field(f, DOMAIN) {
                let colon = f
                    .raw
                    .iter()
                    .position(|&b| b == b':')
                    .expect("a field has a colon");
                assert_eq!(&q[..=colon], &f.raw[..=colon], "field name changed");
                let before =
                    parse_address_list(f.value()).expect("qualify_field only rewrites what parses");
                let nf = Field {
                    name: f.name.clone(),
                    raw: q.clone(),
                };
                let after = parse_address_list(nf.value()).unwrap_or_else(|e| {
                    panic!(
                        "masqueraded field does not parse: {e}: {:?} -> {:?}",
                        String::from_utf8_lossy(&f.raw),
                        String::from_utf8_lossy(&q)
                    )
                });
                assert_eq!(
                    before.len(),
                    after.len(),
                    "{:?}",
                    String::from_utf8_lossy(&q)
                );
                for (b, a) in before.iter().zip(&after) {
                    if b.unqualified && !b.addr.is_empty() {
                        assert_eq!(a.addr, format!("{}@{DOMAIN}", b.addr));
                    } else {
                        assert_eq!(a.addr, b.addr);
                    }
                }
            }
        }
        let _ = headers::message_id(&fields);
    }
}

// ---- aliases ----

/// Fuzz target `aliases`: `address::aliases::Aliases::parse` and `expand`
/// on arbitrary aliases files.
///
/// Every name the file defines is expanded with an `is_local` that treats
/// addresses without `@` (or `@localhost`) as local and a terminal closure
/// that accepts names starting with a letter. `:include:` targets are only
/// followed when they name the fixture file below (a fuzzer must not make
/// the target read /dev/zero or a FIFO); the fixture is created on first
/// use. Asserts no panic, bounded output, and that every final address is
/// non-empty.
pub mod aliases {
    use postern::address::aliases::{Aliases, Expansion, Target, expand};
    use std::path::Path;

    const INCLUDE: &str = "/tmp/postern-fuzz-include.txt";

    fn fixture() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let _ = std::fs::write(
                INCLUDE,
                "# team list\nalice@example.org, bob@example.org\nroot\n|/bin/false\n:include:/etc/passwd\n",
            );
        });
    }

    /// Run the `aliases` checks on one input.
    pub fn check(data: &[u8]) {
        fixture();
        let text = String::from_utf8_lossy(data);
        let aliases = Aliases::parse(&text);
        for (n, msg) in &aliases.errors {
            assert!(*n >= 1 && !msg.is_empty());
        }
        let names: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with([' ', '\t']))
            .filter_map(|l| l.split_once(':'))
            .map(|(n, _)| n.trim().trim_matches('"').to_string())
            .filter(|n| !n.is_empty())
            .take(20)
            .collect();
        // Every include anywhere in the table must be the fixture.
        for n in &names {
            if let Some(targets) = aliases.get(n) {
                for t in targets {
                    if let Target::Include(p) = t
                        && p != Path::new(INCLUDE)
                    {
                        return;
                    }
                }
            }
        }
        let is_local = |a: &str| -> Option<String> {
            match a.rsplit_once('@') {
                None => Some(a.to_string()),
                Some((l, d)) if d.eq_ignore_ascii_case("localhost") => Some(l.to_string()),
                Some(_) => None,
            }
        };
        let terminal = |u: &str| -> Result<String, String> {
            if u.starts_with(|c: char| c.is_ascii_alphabetic()) {
                Ok(format!("{u}@example.com"))
            } else {
                Err(format!("unknown local user {u:?}"))
            }
        };
        for n in names
            .iter()
            .chain(std::iter::once(&"postmaster".to_string()))
        {
            let out = expand(&aliases, n, &is_local, &terminal);
            assert!(out.len() <= 20_000, "{} expansions", out.len());
            for e in &out {
                if let Expansion::Address(a) = e {
                    assert!(!a.is_empty(), "empty address from {n:?}");
                }
            }
        }
    }
}

// ---- config ----

/// Fuzz target `config`: `config::Config::parse` on arbitrary text.
///
/// Asserts no panic; an error is always a configuration error (exit 78)
/// whose message is one line; an accepted config satisfies the validation
/// rules the rest of Postern relies on.
pub mod config {
    use postern::config::{Config, TlsMode, is_loopback_host};
    use postern::error::Kind;
    use std::path::Path;

    /// Run the `config` checks on one input.
    pub fn check(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        match Config::parse(text, Path::new("/etc/postern/postern.toml")) {
            Ok(c) => {
                assert!(c.queue.parallel >= 1 && c.queue.parallel <= 64);
                assert!(!c.queue.retry_min.is_zero());
                assert!(c.queue.retry_max >= c.queue.retry_min);
                assert!(!c.queue.max_lifetime.is_zero());
                assert!(c.smtp.max_messages_per_session >= 1);
                assert!(c.log == "syslog" || c.log == "stderr" || c.log.starts_with('/'));
                for r in &c.relays {
                    assert!(!r.host.trim().is_empty());
                    assert!(
                        r.tls != TlsMode::None || r.allow_plaintext || is_loopback_host(&r.host),
                        "plaintext to {} accepted",
                        r.host
                    );
                    assert!(!(r.password_file.is_some() && r.password_command.is_some()));
                    assert_eq!(r.client_cert.is_some(), r.client_key.is_some());
                }
                if let Some(s) = &c.addresses.sender {
                    assert!(s.contains('@') && !s.contains(['\r', '\n']));
                }
            }
            Err(e) => {
                assert_eq!(e.kind(), Kind::Config);
                assert!(!e.to_string().contains(['\n', '\r']));
            }
        }
    }
}

// ---- queue_entry ----

/// Fuzz target `queue_entry`: the spool codecs on arbitrary bytes —
/// `spool::format::decode`, `decode_envelope` and `spool::state::State::decode`.
///
/// Asserts no panic, that whatever decodes re-encodes to something that
/// decodes to the same value (arrival times are stored with microsecond
/// precision, so they may move by less than 1 µs once), and that a decoded
/// message range lies inside the input.
pub mod queue_entry {
    use postern::spool::format::{self, Envelope};
    use postern::spool::state::State;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * a.abs().max(1.0)
    }

    fn check_envelope(e: &Envelope) {
        assert!(postern::spool::is_valid_id(&e.id));
        assert!(!e.recipients.is_empty() && e.recipients.len() <= format::MAX_RCPTS);
        assert!(e.arrival.is_finite() && e.arrival >= 0.0);
        let Ok(text) = format::encode_envelope(e) else {
            // Decoding accepts lines a little longer than encoding writes.
            return;
        };
        let again = format::decode_envelope(text.as_bytes()).expect("re-encoded envelope decodes");
        assert!(
            close(again.arrival, e.arrival),
            "{} vs {}",
            again.arrival,
            e.arrival
        );
        let mut norm = again.clone();
        norm.arrival = e.arrival;
        assert_eq!(&norm, e);
        let text2 = format::encode_envelope(&again).expect("encodes twice");
        assert_eq!(text, text2, "encoding is not stable");
    }

    /// Run the `queue_entry` checks on one input.
    pub fn check(data: &[u8]) {
        if let Ok((env, range)) = format::decode(data) {
            assert!(range.start == format::HEADER_LEN as usize && range.end <= data.len());
            check_envelope(&env);
            if let Ok(text) = format::encode_envelope(&env) {
                let mut whole = format::header((range.end - range.start) as u64).into_bytes();
                whole.extend_from_slice(&data[range.clone()]);
                whole.extend_from_slice(text.as_bytes());
                let (env2, range2) = format::decode(&whole).expect("re-encoded entry decodes");
                assert_eq!(&whole[range2], &data[range]);
                assert_eq!(env2.recipients, env.recipients);
            }
        }
        if let Ok(env) = format::decode_envelope(data) {
            check_envelope(&env);
        }
        let text = String::from_utf8_lossy(data);
        if let Some(s1) = State::decode(&text) {
            assert!(postern::spool::is_valid_id(&s1.id));
            let s2 = State::decode(&s1.encode()).expect("re-encoded state decodes");
            assert_eq!(s2.id, s1.id);
            assert_eq!(s2.rcpts.len(), s1.rcpts.len());
            assert_eq!(s2.sender, s1.sender);
            for (a, b) in s1.rcpts.iter().zip(&s2.rcpts) {
                assert_eq!(
                    (a.status, &a.address, &a.original, &a.reply),
                    (b.status, &b.address, &b.original, &b.reply)
                );
            }
            let s3 = State::decode(&s2.encode()).expect("re-encoded state decodes twice");
            assert_eq!(s2, s3, "state encoding is not stable");
            let _ = (s1.is_done(), s1.last_deferral(), s1.open_rcpts().count());
        }
    }
}

// ---- smtpd ----

/// Fuzz target `smtpd`: the `sendmail -bs` SMTP dialogue
/// (`submit::smtpd::run`) over arbitrary client bytes, committing into a
/// real development spool.
///
/// The spool lives under /dev/shm (or the temp dir when /dev/shm is
/// missing), one per fuzzing process, with `max_message_size = 64k` so a
/// run can never fill a disk; every run starts with an empty maildrop.
/// Asserts no panic; that every reply line is a well-formed SMTP reply;
/// that the number of `250 … queued as` replies equals the number of
/// committed messages; and that each committed entry is a whole, ready,
/// decodable file whose envelope matches what `run` returned.
pub mod smtpd {
    use postern::config::Config;
    use postern::spool::{Spool, format, maildrop};
    use postern::submit::{EntrySource, Submitter, User, smtpd};
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    struct Fixture {
        cfg: Config,
        spool: Spool,
    }

    static FIXTURE: OnceLock<Fixture> = OnceLock::new();

    fn fixture() -> &'static Fixture {
        FIXTURE.get_or_init(|| {
            let base = if Path::new("/dev/shm").is_dir() {
                PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            };
            let root = base.join(format!("postern-fuzz-smtpd-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).expect("fuzz spool root");
            let text = format!(
                "hostname = \"fuzz.example.com\"\ndomain = \"example.com\"\nspool_dir = \"{}\"\nmax_message_size = \"64k\"\nlog = \"stderr\"\n[addresses]\naliases_file = \"{}\"\n",
                root.join("spool").display(),
                root.join("no-aliases").display()
            );
            let cfg = Config::parse(&text, Path::new("fuzz.toml")).expect("fuzz config");
            let spool = Spool::new(&cfg.spool_dir);
            spool.ensure_layout().expect("fuzz spool layout");
            Fixture { cfg, spool }
        })
    }

    /// Remove this process's scratch spool (for the corpus replay test).
    pub fn cleanup() {
        if let Some(f) = FIXTURE.get() {
            let _ = std::fs::remove_dir_all(f.spool.root().parent().unwrap_or(f.spool.root()));
        }
    }

    fn clear(dir: &Path) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Run the `smtpd` checks on one input.
    pub fn check(data: &[u8]) {
        let f = fixture();
        clear(&f.spool.maildrop());
        let dir = maildrop::open_dir(&f.spool.maildrop()).expect("maildrop dir");
        let user = User {
            uid: 1000,
            name: "fuzz".into(),
            gecos: Some("Fuzz Tester".into()),
        };
        let mut sub = Submitter::new(&f.cfg, user, EntrySource::Direct, dir);
        let mut out: Vec<u8> = Vec::new();
        let result = smtpd::run(&mut sub, data, &mut out);
        let text = String::from_utf8_lossy(&out);
        let mut queued = 0;
        for line in text.split("\r\n").filter(|l| !l.is_empty()) {
            let b = line.as_bytes();
            assert!(
                b.len() >= 4
                    && b[..3].iter().all(u8::is_ascii_digit)
                    && (b[3] == b' ' || b[3] == b'-'),
                "bad reply line {line:?}"
            );
            if line.starts_with("250 2.0.0 Ok: queued as ") {
                queued += 1;
            }
        }
        assert!(text.starts_with("220 "), "no greeting: {text:?}");
        let committed = result.expect("only I/O errors end a session with an error");
        assert_eq!(committed.len(), queued, "replies: {text:?}");
        let mut ready = 0;
        for e in std::fs::read_dir(f.spool.maildrop())
            .expect("read maildrop")
            .flatten()
        {
            let md = e.metadata().expect("entry metadata");
            if md.permissions().mode() & maildrop::READY_BIT == 0 {
                continue;
            }
            ready += 1;
            let bytes = std::fs::read(e.path()).expect("read entry");
            let (env, range) = format::decode(&bytes).expect("a ready entry decodes");
            assert_eq!(env.id, e.file_name().to_string_lossy());
            assert!(
                (range.end - range.start) as u64
                    <= f.cfg
                        .max_message_size
                        .unwrap_or(u64::MAX)
                        .saturating_add(4096)
            );
            let c = committed
                .iter()
                .find(|c| c.id == env.id)
                .expect("ready entry was reported committed");
            assert_eq!(c.recipients, env.recipients);
            assert_eq!(c.sender, env.sender);
        }
        assert_eq!(ready, committed.len());
    }
}

// ---- address_list ----

/// The assertions of `fuzz_targets/address_list.rs` (owned by the address
/// parser's developers), repeated here so `tests/suite/fuzz_corpus.rs` replays
/// that corpus on stable too.
pub mod address_list {
    use postern::address::parse::{parse_address_list, parse_single_address};

    /// Run the `address_list` checks on one input.
    pub fn check(data: &[u8]) {
        if let Ok(list) = parse_address_list(data) {
            for m in &list {
                assert!(m.span.start < m.span.end, "span {:?}", m.span);
                assert!(m.span.end <= data.len(), "span {:?} out of bounds", m.span);
                assert!(!m.addr.is_empty() && m.addr.len() <= 998);
                assert!(m.unqualified || m.addr.contains('@'));
                if !m.addr.contains('\t') {
                    assert_eq!(
                        parse_single_address(&m.addr).as_deref(),
                        Ok(m.addr.as_str())
                    );
                }
            }
        }
        if let Ok(s) = std::str::from_utf8(data)
            && let Ok(addr) = parse_single_address(s)
        {
            assert!(!addr.is_empty());
            assert!(!addr.bytes().any(|b| b < 0x20 || b == 0x7f));
            let list = parse_address_list(data).expect("single address must parse as a list");
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].addr, addr);
        }
    }
}

// ---- wire ----

/// The assertions of `fuzz_targets/wire.rs` (owned by the wire
/// normaliser's developers), repeated here so `tests/suite/fuzz_corpus.rs`
/// replays that corpus on stable too: any bytes plan and stream without a
/// panic, the stream has exactly the planned size and is legal SMTP DATA
/// content (CRLF only, lines of at most 998 octets, one trailing CRLF
/// dropped).
pub mod wire {
    use postern::deliver::smtp::wire::{WireOptions, plan, stream};
    use std::fs::File;
    use std::path::PathBuf;

    const CHUNK: usize = 64 * 1024;

    fn spool_path() -> PathBuf {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        base.join(format!("postern-fuzz-wire-{}", std::process::id()))
    }

    /// Remove this process's scratch file.
    pub fn cleanup() {
        let _ = std::fs::remove_file(spool_path());
    }

    fn ends_with_empty_line(data: &[u8]) -> bool {
        let rest = if let Some(r) = data.strip_suffix(b"\r\n") {
            r
        } else if let Some(r) = data.strip_suffix(b"\n") {
            r
        } else if let Some(r) = data.strip_suffix(b"\r") {
            r
        } else {
            return false;
        };
        rest.ends_with(b"\n") || rest.ends_with(b"\r")
    }

    fn check_wire(out: &[u8], input: &[u8]) {
        let mut line = 0usize;
        for (i, &b) in out.iter().enumerate() {
            match b {
                b'\r' => assert_eq!(out.get(i + 1), Some(&b'\n'), "lone CR at {i}"),
                b'\n' => {
                    assert!(i > 0 && out[i - 1] == b'\r', "bare LF at {i}");
                    line = 0;
                }
                _ => {
                    line += 1;
                    assert!(line <= 998, "line longer than 998 octets at {i}");
                }
            }
        }
        if out.ends_with(b"\r\n") {
            assert!(ends_with_empty_line(input), "trailing CRLF not dropped");
        }
    }

    /// Run the `wire` checks on one input.
    pub fn check(data: &[u8]) {
        let path = spool_path();
        std::fs::write(&path, data).expect("write spool file");
        let file = File::open(&path).expect("open spool file");
        let len = data.len() as u64;
        for eight_bit_ok in [true, false] {
            let plan = plan(&file, 0, len, WireOptions { eight_bit_ok }).expect("plan");
            let mut out = Vec::new();
            for chunk in stream(&file, 0, len, &plan) {
                let chunk = chunk.expect("stream");
                assert!(!chunk.is_empty() && chunk.len() <= CHUNK, "bad chunk size");
                out.extend_from_slice(&chunk);
            }
            assert_eq!(out.len() as u64, plan.size, "plan.size != streamed bytes");
            assert_eq!(
                out.iter().any(|&b| b >= 0x80),
                plan.eight_bit,
                "eight_bit flag"
            );
            assert!(plan.reencoded_parts <= 10_000);
            check_wire(&out, data);
        }
    }
}
