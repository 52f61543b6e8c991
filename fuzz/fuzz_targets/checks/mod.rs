//! The checks behind Postern's fuzz targets, one function per target.
//!
//! Each `fuzz_targets/<name>.rs` is a one-line libFuzzer wrapper around
//! `checks::<name>`, and `tests/suite/fuzz_corpus.rs` (stable, `cargo test`)
//! includes this same file and replays every committed corpus through the
//! same functions. Only std and the `postern` library are used here.
//! Each function asserts no panic plus cheap invariants; see the comment
//! of each.

#![allow(dead_code)]

/// A fresh scratch directory for one target's fixture (a spool, a users
/// file): on tmpfs when there is one, named after the target and the
/// process so parallel fuzzers never share it.
fn scratch_root(tag: &str) -> std::path::PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let root = base.join(format!("postern-fuzz-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("fuzz spool root");
    root
}

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
                    if b.unqualified && !b.addr.is_empty() && b.addr.len() + 1 + DOMAIN.len() <= 998
                    {
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
/// use. Each distinct name (case-insensitively) is expanded once.
/// Asserts no panic, bounded output, and that every final address is
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
            // Six names: each may expand to 10 000 addresses, and twenty
            // made the target run at ~300 exec/s on its grown corpus.
            .take(6)
            .collect();
        // Names match case-insensitively: each distinct one is expanded
        // once (a name defined on several lines gives the same expansion).
        let mut names = names;
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.to_ascii_lowercase()));
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
        let postmaster = "postmaster".to_string();
        let extra = (!seen.contains("postmaster")).then_some(&postmaster);
        for n in names.iter().chain(extra) {
            let out = expand(&aliases, n, &is_local, &terminal);
            // 10 000 results and one failure saying the limit was reached.
            assert!(out.len() <= 10_001, "{} expansions", out.len());
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
    use std::path::Path;
    use std::sync::OnceLock;

    struct Fixture {
        cfg: Config,
        spool: Spool,
    }

    static FIXTURE: OnceLock<Fixture> = OnceLock::new();

    fn fixture() -> &'static Fixture {
        FIXTURE.get_or_init(|| {
            let root = super::scratch_root("smtpd");
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

// ---- smtp_reply ----

/// Fuzz target `smtp_reply`: what a (hostile) relay sends our client —
/// `deliver::smtp::reply::read_reply` read repeatedly over the input as a
/// session does, and `Features::parse` on every reply (as after EHLO).
///
/// Asserts no panic; that a reply consumes exactly its own lines (up to and
/// including the LF of its last line, nothing after it); that its code is
/// 200..=599 and every consumed line starts with a code in that range and
/// continues (`NNN-`) on every line but the last unless the line limit cut
/// the reply; that the reply keeps at most 200 lines of at most 4096 input
/// bytes each (an overlong line is cut, a longer reply ends at the limit);
/// that no kept line has a LF; that `NotSmtp` carries at most 81
/// characters; and that the features agree with the keyword lines.
pub mod smtp_reply {
    use postern::deliver::smtp::reply::{Features, ReadError, read_reply};
    use postern::spool::relay_limits::Advertised;

    const MAX_LINE: usize = 4096;
    const MAX_LINES: usize = 200;

    fn code_of(raw: &[u8]) -> Option<u16> {
        let d = raw.get(..3)?;
        if !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let c = d.iter().fold(0u16, |a, &b| a * 10 + u16::from(b - b'0'));
        (200..600).contains(&c).then_some(c)
    }

    fn check_features(lines: &[String]) {
        let f = Features::parse(lines.iter().map(|s| s.as_str()));
        let ext: Vec<&String> = lines
            .iter()
            .skip(1)
            .filter(|l| l.split_whitespace().next().is_some())
            .collect();
        assert_eq!(f.keywords.len(), ext.len());
        for (k, l) in f.keywords.iter().zip(&ext) {
            assert_eq!(k, l.trim());
            assert!(!k.is_empty());
        }
        let has = |kw: &str| {
            ext.iter().any(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.to_ascii_uppercase() == kw)
            })
        };
        assert_eq!(f.size.is_some(), has("SIZE"));
        assert_eq!(f.dsn, has("DSN"));
        assert_eq!(f.eight_bit, has("8BITMIME"));
        assert_eq!(f.smtputf8, has("SMTPUTF8"));
        assert_eq!(f.pipelining, has("PIPELINING"));
        assert_eq!(f.starttls, has("STARTTLS"));
        for m in &f.auth {
            assert!(!m.is_empty() && *m == m.to_ascii_uppercase());
        }
        match Advertised::from_ehlo(f.size) {
            Advertised::Limit(n) => assert!(n > 0 && f.size == Some(n)),
            Advertised::NoLimit => assert!(f.size.unwrap_or(0) == 0),
        }
    }

    /// Run the `smtp_reply` checks on one input.
    pub fn check(data: &[u8]) {
        let mut rest: &[u8] = data;
        for _ in 0..64 {
            let before = rest;
            match read_reply(&mut rest) {
                Ok(r) => {
                    let used = &before[..before.len() - rest.len()];
                    assert!(used.ends_with(b"\n"), "reply did not end at a LF");
                    let raws: Vec<&[u8]> = used[..used.len() - 1].split(|&b| b == b'\n').collect();
                    assert_eq!(raws.len(), r.lines.len(), "lines consumed vs kept");
                    assert!(!r.lines.is_empty() && r.lines.len() <= MAX_LINES);
                    assert!((200..600).contains(&r.code));
                    for (i, raw) in raws.iter().enumerate() {
                        assert!(code_of(raw).is_some(), "line {i} has no code");
                        let cont = raw.get(3) == Some(&b'-');
                        if i + 1 < raws.len() {
                            assert!(cont, "a reply ended early at line {i}");
                        } else {
                            assert!(!cont || r.lines.len() == MAX_LINES);
                        }
                    }
                    assert_eq!(code_of(raws[raws.len() - 1]), Some(r.code));
                    for l in &r.lines {
                        assert!(!l.contains('\n'));
                        // lossy UTF-8 may widen a kept byte to U+FFFD
                        assert!(l.len() <= 3 * MAX_LINE);
                    }
                    let _ = r.one_line();
                    check_features(&r.lines);
                }
                Err(ReadError::NotSmtp(s)) => {
                    assert!(s.chars().count() <= 81);
                    return;
                }
                Err(ReadError::Closed) => {
                    assert!(rest.is_empty());
                    return;
                }
                Err(ReadError::Io(e)) => panic!("a slice cannot fail: {e}"),
            }
        }
    }
}

// ---- relay_limits ----

/// Fuzz target `relay_limits`: `spool::relay_limits::RelayLimits::decode`
/// on arbitrary bytes (the `<spool>/relay-limits` file read by the setgid
/// submission path).
///
/// Asserts no panic; that a file over `MAX_LEN` or without the exact first
/// line decodes to nothing; that decode→encode→decode is the identity and
/// the encoding is stable and never longer than the input; that every
/// label found is one printable ASCII word of at most 300 bytes whose
/// value is the first one the file gives it.
pub mod relay_limits {
    use postern::spool::relay_limits::{Advertised, MAX_LEN, RelayLimits};

    /// Run the `relay_limits` checks on one input.
    pub fn check(data: &[u8]) {
        let d = RelayLimits::decode(data);
        let e = d.encode();
        assert!(e.starts_with(b"postern-relay-limits 1\n"));
        let empty = e == b"postern-relay-limits 1\n";
        if data.len() > MAX_LEN {
            assert!(empty, "an oversize file decoded");
        }
        let first = std::str::from_utf8(data)
            .ok()
            .and_then(|t| t.lines().next());
        if first != Some("postern-relay-limits 1") {
            assert!(empty, "a file with a bad first line decoded");
        }
        if !empty {
            assert!(e.len() <= data.len() + 1, "encoding grew");
        }
        // At most the final LF the input lacked (a file of exactly MAX_LEN
        // bytes without one re-encodes one byte over; the writer never
        // writes such a file).
        assert!(e.len() <= MAX_LEN + 1);
        if e.len() > MAX_LEN {
            return;
        }
        let d2 = RelayLimits::decode(&e);
        assert_eq!(d2, d, "decode(encode(x)) != x");
        assert_eq!(d2.encode(), e, "encoding is not stable");
        // Every line of the encoding names a label the record answers for.
        let text = String::from_utf8(e).expect("encoding is UTF-8");
        for line in text.lines().skip(1) {
            let (n, label) = line.split_once(' ').expect("encoded line has a space");
            assert!(!label.is_empty() && label.len() <= 300);
            assert!(label.bytes().all(|b| b.is_ascii_graphic()), "{label:?}");
            let n: u64 = n.parse().expect("encoded number");
            let want = Advertised::from_ehlo(Some(n));
            assert_eq!(d.get(label), Some(want));
        }
    }
}

// ---- guard_state ----

/// Fuzz target `guard_state`: `spool::guard::GuardState::decode` on
/// arbitrary text (the outbound guard's `<spool>/guard` counters file).
///
/// Asserts no panic; that whatever decodes re-encodes to text that decodes
/// to the same counters (times are written with millisecond precision, so
/// they may move by at most half a millisecond, once) and that the encoding
/// is then stable; that every decoded time is finite; and that no strict
/// prefix of an encoding decodes (a torn file is refused, never read as
/// fewer counters).
pub mod guard_state {
    use postern::spool::guard::GuardState;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 0.0005 + 1e-12 * a.abs()
    }

    fn assert_same(a: &GuardState, b: &GuardState) {
        assert_eq!(a.users.len(), b.users.len());
        assert_eq!(a.storms.len(), b.storms.len());
        assert_eq!(a.suppressed.len(), b.suppressed.len());
        assert_eq!(a.dsn.len(), b.dsn.len());
        for (x, y) in a.users.iter().zip(&b.users) {
            assert!(close(x.start, y.start), "{} vs {}", x.start, y.start);
            assert_eq!(
                (
                    x.uid,
                    x.messages,
                    x.recipients,
                    x.alerted,
                    x.held,
                    &x.reason
                ),
                (
                    y.uid,
                    y.messages,
                    y.recipients,
                    y.alerted,
                    y.held,
                    &y.reason
                )
            );
        }
        for (x, y) in a.storms.iter().zip(&b.storms) {
            assert!(close(x.first, y.first) && close(x.last, y.last));
            assert_eq!(
                (&x.id, &x.key, x.count, x.held, &x.label),
                (&y.id, &y.key, y.count, y.held, &y.label)
            );
        }
        for (x, y) in a.suppressed.iter().zip(&b.suppressed) {
            assert!(close(x.until, y.until));
            assert_eq!((&x.address, &x.reason), (&y.address, &y.reason));
        }
        for (x, y) in a.dsn.iter().zip(&b.dsn) {
            assert!(close(x.start, y.start));
            assert_eq!(
                (&x.address, x.sent, x.dropped),
                (&y.address, y.sent, y.dropped)
            );
        }
    }

    /// Run the `guard_state` checks on one input.
    pub fn check(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let Some(g) = GuardState::decode(&text) else {
            return;
        };
        let times = g
            .users
            .iter()
            .map(|u| u.start)
            .chain(g.storms.iter().flat_map(|s| [s.first, s.last]))
            .chain(g.suppressed.iter().map(|s| s.until))
            .chain(g.dsn.iter().map(|d| d.start));
        for t in times {
            assert!(t.is_finite());
        }
        let t1 = g.encode();
        let g2 = GuardState::decode(&t1).expect("re-encoded guard state decodes");
        assert_same(&g, &g2);
        let t2 = g2.encode();
        let g3 = GuardState::decode(&t2).expect("re-encoded guard state decodes twice");
        assert_eq!(g3, g2, "guard encoding is not stable");
        assert_eq!(g3.encode(), t2);
        // A torn file: every strict prefix is refused (bounded work).
        if t2.len() <= 4096 {
            for cut in (0..t2.len()).filter(|&c| t2.is_char_boundary(c)) {
                assert!(
                    GuardState::decode(&t2[..cut]).is_none(),
                    "a torn guard file decoded at {cut}: {:?}",
                    &t2[..cut]
                );
            }
        }
    }
}

// ---- request ----

/// Fuzz target `request`: the queue-request entries a user may drop in
/// maildrop — `spool::request::parse_request`, and `read` / `is_request`
/// on the same bytes as an open file.
///
/// Asserts no panic; that the strict decoder accepts only the canonical
/// text (`encode(op, target)` gives back exactly the input), a target the
/// verb allows, and targets of the documented shapes; that `read` agrees
/// with `parse_request` (or sees the void request), refuses files over
/// `MAX_REQUEST`, and that `is_request` is exactly "starts with the magic".
pub mod request {
    use postern::spool::is_valid_id;
    use postern::spool::request::{
        self, Entry, MAX_REQUEST, REQUEST_MAGIC, Target, VOID_REQUEST, valid_user,
    };
    use std::fs::File;
    use std::path::PathBuf;

    fn scratch() -> PathBuf {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        base.join(format!("postern-fuzz-request-{}", std::process::id()))
    }

    /// Remove this process's scratch file.
    pub fn cleanup() {
        let _ = std::fs::remove_file(scratch());
    }

    /// Run the `request` checks on one input.
    pub fn check(data: &[u8]) {
        let parsed = request::parse_request(data);
        match &parsed {
            Ok(r) => {
                assert!(r.op.allows(&r.target));
                match &r.target {
                    Target::Id(id) | Target::Storm(id) => assert!(is_valid_id(id)),
                    Target::User(u) => assert!(valid_user(u)),
                    Target::All | Target::Deferred => {}
                }
                assert_eq!(
                    request::encode(r.op, &r.target).as_bytes(),
                    data,
                    "a non-canonical request was accepted"
                );
                assert!(data.len() as u64 <= MAX_REQUEST);
            }
            Err(e) => assert!(!e.is_empty()),
        }
        let path = scratch();
        std::fs::write(&path, data).expect("write scratch request");
        let file = File::open(&path).expect("open scratch request");
        assert_eq!(request::is_request(&file), data.starts_with(REQUEST_MAGIC));
        match request::read(&file) {
            Ok(Entry::Void) => assert_eq!(data, VOID_REQUEST),
            Ok(Entry::Change(r)) => {
                assert!(data.len() as u64 <= MAX_REQUEST);
                assert_eq!(parsed.as_ref().ok(), Some(&r));
            }
            Err(_) => assert!(parsed.is_err() || data.len() as u64 > MAX_REQUEST),
        }
    }
}

// ---- escape ----

/// Fuzz target `escape`: `escape::field`, `escape::text` and
/// `escape::bytes` (what reaches an admin's terminal or a log line).
///
/// Compares each with an independent reference: every input character is
/// either kept as is or replaced by its escape (`\xNN` below U+0080,
/// `\u{…}` above; an invalid UTF-8 byte by `\xNN`), so nothing is dropped;
/// the escaped set is C0 but TAB (and LF for `text`/`bytes`), DEL, C1 and
/// the Unicode bidi controls (U+061C, U+200E, U+200F, U+202A–U+202E,
/// U+2066–U+2069). Asserts the output has none of those raw and that an
/// input needing nothing comes back borrowed.
pub mod escape {
    use postern::escape;
    use std::borrow::Cow;
    use std::fmt::Write;

    fn bad(c: char, keep_lf: bool) -> bool {
        let n = c as u32;
        (n < 0x20 && c != '\t' && !(keep_lf && c == '\n'))
            || (0x7f..=0x9f).contains(&n)
            || matches!(
                n,
                0x061c | 0x200e | 0x200f | 0x202a..=0x202e | 0x2066..=0x2069
            )
    }

    fn reference(s: &str, keep_lf: bool) -> String {
        let mut out = String::new();
        for c in s.chars() {
            if bad(c, keep_lf) {
                let n = c as u32;
                if n < 0x80 {
                    let _ = write!(out, "\\x{n:02x}");
                } else {
                    let _ = write!(out, "\\u{{{n:x}}}");
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    fn one(s: &str, keep_lf: bool) {
        let got = if keep_lf {
            escape::text(s)
        } else {
            escape::field(s)
        };
        assert!(
            !got.chars().any(|c| bad(c, keep_lf)),
            "raw control in {got:?}"
        );
        assert_eq!(got, reference(s, keep_lf), "escape of {s:?}");
        assert_eq!(matches!(got, Cow::Borrowed(_)), got == s);
        assert!(got.len() >= s.len());
    }

    /// Run the `escape` checks on one input.
    pub fn check(data: &[u8]) {
        let lossy = String::from_utf8_lossy(data);
        one(&lossy, false);
        one(&lossy, true);
        let got = escape::bytes(data);
        assert!(!got.chars().any(|c| bad(c, true)), "raw control in {got:?}");
        let mut want = String::new();
        for chunk in data.utf8_chunks() {
            want.push_str(&reference(chunk.valid(), true));
            for x in chunk.invalid() {
                let _ = write!(want, "\\x{x:02x}");
            }
        }
        assert_eq!(got, want, "escape::bytes of {data:?}");
        if let Ok(s) = std::str::from_utf8(data) {
            assert_eq!(got, escape::text(s));
        }
    }
}

// ---- shared by the targets below ----

/// What `escape::field` promises of a text bound for a log line: no C0
/// control but TAB, no DEL, no C1 control and no Unicode bidi control.
fn log_safe(s: &str) -> bool {
    !s.chars().any(|c| {
        let n = c as u32;
        (n < 0x20 && c != '\t')
            || (0x7f..=0x9f).contains(&n)
            || matches!(
                n,
                0x061c | 0x200e | 0x200f | 0x202a..=0x202e | 0x2066..=0x2069
            )
    })
}

/// The latest time an IMF-fixdate can name (9999-12-31 23:59:60 GMT), in
/// Unix seconds: the bound of a date-form `Retry-After`.
const MAX_HTTP_DATE: u64 = 253_402_300_800;

/// `Retry-After: value` read at `now` (Unix seconds): delta-seconds give
/// exactly their value (saturated), a date at most the last IMF-fixdate.
fn check_retry_after(value: Option<&str>, now: u64) {
    use postern::deliver::http::retry_after;
    use std::time::{Duration, SystemTime};
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
    let Some(d) = retry_after(value, at) else {
        return;
    };
    let v = value.expect("no value, no delay").trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        assert_eq!(d.as_secs(), v.parse::<u64>().unwrap_or(u64::MAX));
    } else {
        assert!(d.as_secs() <= MAX_HTTP_DATE - now, "{v:?} -> {d:?}");
    }
}

// ---- http_response ----

/// Fuzz target `http_response`: `deliver::http::read_response`, the HTTPS
/// API client's reader of the server's answer (status line, header,
/// `Content-Length`, chunked or to-the-end body), and `retry_after` on the
/// answer's `Retry-After` and on the raw input.
///
/// The first byte picks how the bytes arrive (1, 7, 512 or 64 KiB per
/// read, as TLS records do, under a 16-byte or 8 KiB buffer); the rest is
/// the server's answer. Asserts no panic; that a parsed status is
/// 100..=999; that the body keeps at most `MAX_RESPONSE` input bytes (each
/// at most one character) and the header at most `MAX_HEAD` bytes in at
/// most 200 fields with lower-case names and no LF; that `retry_after`
/// is the header's value; and that the delay `Retry-After` gives is its
/// delta-seconds exactly or at most the last IMF-fixdate away.
pub mod http_response {
    use super::check_retry_after;
    use postern::deliver::http::{MAX_HEAD, MAX_RESPONSE, read_response};
    use std::io::{self, BufReader, Read};

    /// Hands out at most `step` bytes per read.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    const NOW: u64 = 1_796_000_000;

    /// Run the `http_response` checks on one input.
    pub fn check(data: &[u8]) {
        let Some((&pick, rest)) = data.split_first() else {
            return;
        };
        let step = [1, 7, 512, 64 * 1024][usize::from(pick & 3)];
        let cap = if pick & 4 != 0 { 16 } else { 8192 };
        let mut r = BufReader::with_capacity(cap, Trickle { data: rest, step });
        if let Ok(resp) = read_response(&mut r) {
            assert!((100..=999).contains(&resp.status), "{}", resp.status);
            assert!(resp.body.chars().count() as u64 <= MAX_RESPONSE);
            assert!(resp.headers.len() <= 200);
            let head: usize = resp.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
            assert!(head <= MAX_HEAD, "{head} header bytes kept");
            for (n, v) in &resp.headers {
                assert_eq!(*n, n.to_ascii_lowercase());
                assert!(!n.contains('\n') && !v.contains('\n'));
                assert_eq!(n.trim(), n);
                assert_eq!(v.trim(), v);
            }
            assert_eq!(resp.retry_after.as_deref(), resp.header("retry-after"));
            check_retry_after(resp.retry_after.as_deref(), NOW);
        }
        let text = String::from_utf8_lossy(rest);
        check_retry_after(Some(&text), NOW);
        check_retry_after(Some(&text), 0);
    }
}

// ---- oauth2_token ----

/// Fuzz target `oauth2_token`: the token endpoint's answer —
/// `deliver::oauth2::endpoint::answer` (2xx JSON object, RFC 6749 §5.2
/// error named with `error` and the first line of `error_description`,
/// Microsoft's `AADSTS…`, or a quoted start of the body) and `granted`
/// (`access_token`, `token_type`, `expires_in`, `refresh_token`).
///
/// The first byte picks the HTTP status; the rest (lossy UTF-8) is the
/// body. The body is also tried with a sentinel `access_token` and
/// `refresh_token` added at the front and at the end of its object.
/// Asserts no panic; that every error text is safe for a log line (what
/// `escape::field` promises: no control but TAB, no bidi control) and
/// never holds a sentinel token unless the input itself spelled it; that a
/// granted token and a rotated refresh token are non-empty printable ASCII
/// without blanks; and that only a 2xx answer is granted.
pub mod oauth2_token {
    use super::log_safe;
    use postern::deliver::oauth2::endpoint::{answer, granted};

    const URL: &str = "https://login.microsoftonline.com/tenant/oauth2/v2.0/token";
    const MARK: &str = "Zx7SeNtInEl";
    const STATUSES: [u16; 12] = [200, 201, 400, 401, 403, 404, 429, 500, 502, 503, 302, 100];

    fn token_ok(t: &str) -> bool {
        !t.is_empty() && t.bytes().all(|b| (0x21..0x7f).contains(&b))
    }

    /// The error texts of one answer (after checking a grant).
    fn one(status: u16, body: &str, spelled: bool) -> Vec<String> {
        let no_leak = |t: &str| {
            assert!(log_safe(t), "control character in {t:?}");
            assert!(
                spelled || !t.contains(MARK),
                "a token reached the text: {t:?}"
            );
            t.to_string()
        };
        match answer(URL, status, body) {
            Err(e) => vec![no_leak(&e.text)],
            Ok(obj) => {
                assert!((200..300).contains(&status));
                match granted(&obj) {
                    Ok(g) => {
                        assert!(token_ok(&g.access_token));
                        assert!(g.refresh_token.as_deref().is_none_or(token_ok));
                        Vec::new()
                    }
                    Err(e) => vec![no_leak(&e.text)],
                }
            }
        }
    }

    /// Run the `oauth2_token` checks on one input.
    pub fn check(data: &[u8]) {
        let Some((&pick, rest)) = data.split_first() else {
            return;
        };
        let status = STATUSES[usize::from(pick) % STATUSES.len()];
        let body = String::from_utf8_lossy(rest);
        let spelled = body.contains(MARK);
        let secrets = format!(r#""access_token":"AT-{MARK}","refresh_token":"RT-{MARK}""#);
        for s in [status, 200] {
            // The marker may also come from the input's own JSON escapes.
            let spelled = spelled || one(s, &body, true).iter().any(|t| t.contains(MARK));
            let trimmed = body.trim();
            if let Some(inner) = trimmed.strip_prefix('{') {
                let sep = if inner.trim_start().starts_with('}') {
                    ""
                } else {
                    ","
                };
                one(s, &format!("{{{secrets}{sep}{inner}"), spelled);
                if let Some(inner) = inner.strip_suffix('}') {
                    let sep = if inner.trim().is_empty() { "" } else { "," };
                    one(s, &format!("{{{inner}{sep}{secrets}}}"), spelled);
                }
            }
        }
    }
}

// ---- oauth2_cache ----

/// Fuzz target `oauth2_cache`: `deliver::oauth2::cache::decode`, the
/// token cache file (`<spool>/oauth2/<host>_<user>.json`), and `path`.
///
/// Asserts no panic; that whatever decodes encodes to bytes that decode
/// to the same entry and encode again identically; and that the file name
/// made of the input (split at its first NUL into host and user) is one
/// plain name in the cache directory.
pub mod oauth2_cache {
    use postern::deliver::oauth2::cache::{self, decode, encode};
    use std::path::Path;

    /// Run the `oauth2_cache` checks on one input.
    pub fn check(data: &[u8]) {
        if let Some(e) = decode(data) {
            let bytes = encode(&e).expect("an entry encodes");
            let again = decode(&bytes).expect("an encoded entry decodes");
            assert_eq!(again, e);
            assert_eq!(encode(&again).expect("encodes twice"), bytes);
        }
        let text = String::from_utf8_lossy(data);
        let (host, user) = text.split_once('\0').unwrap_or((&text, ""));
        let spool = Path::new("/var/spool/postern");
        let p = cache::path(spool, host, user);
        assert_eq!(p.parent(), Some(cache::dir(spool).as_path()));
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 name");
        assert!(name.ends_with(".json"));
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@+".contains(c)),
            "{name:?}"
        );
    }
}

// ---- api_answer ----

/// Fuzz target `api_answer`: what the HTTPS API transports make of an
/// answer — `Mailgun`'s, `SES`'s and `Graph`'s `message_id` and
/// `error_text`, and `deliver::api::classify` (verdict, reply, `Retry-After`
/// delay).
///
/// The first byte picks the provider (mod 3) and the HTTP status; the rest
/// (lossy UTF-8) is split at NULs into the body, a `Retry-After` value and
/// an `x-amzn-ErrorType` value. Asserts no panic; that the verdict is the
/// documented one for the status (2xx sent, 401/403 credentials (and 404
/// for Graph), other 4xx but 408/429 bounced, anything else deferred) with
/// its reply code; that
/// the reply is one line safe for a log (no control but TAB, no bidi
/// control) no longer than one SMTP reply line; and that a deferral's delay is what
/// `Retry-After` says (delta-seconds exactly, a date at most the last
/// IMF-fixdate away).
pub mod api_answer {
    use super::{MAX_HTTP_DATE, log_safe};
    use postern::config::HttpApi;
    use postern::deliver::api::{Api, Outcome, classify};
    use postern::deliver::graph::Graph;
    use postern::deliver::http::{Response, retry_after};
    use postern::deliver::mailgun::Mailgun;
    use postern::deliver::ses::Ses;

    const STATUSES: [u16; 18] = [
        200, 202, 204, 400, 401, 403, 404, 408, 413, 422, 429, 500, 502, 503, 302, 100, 999, 499,
    ];

    /// Run the `api_answer` checks on one input.
    pub fn check(data: &[u8]) {
        let Some((&pick, rest)) = data.split_first() else {
            return;
        };
        // Provider: Mailgun, SES or Graph; the rest of the byte picks the status.
        let which = pick % 3;
        let status = STATUSES[usize::from(pick / 3) % STATUSES.len()];
        let text = String::from_utf8_lossy(rest);
        let mut parts = text.splitn(3, '\0');
        let body = parts.next().unwrap_or("").to_string();
        let retry = parts.next().map(str::to_string);
        let errtype = parts.next().map(str::to_string);
        let mut headers = Vec::new();
        if let Some(r) = &retry {
            headers.push(("retry-after".to_string(), r.clone()));
        }
        if let Some(t) = &errtype {
            headers.push(("x-amzn-errortype".to_string(), t.clone()));
        }
        let resp = Response {
            status,
            retry_after: retry.clone(),
            body,
            headers,
        };
        let cfg = HttpApi {
            base: "https://api.example.net".into(),
            domain: "mg.example.com".into(),
            region: "eu-west-1".into(),
        };
        let api: Box<dyn Api> = match which {
            0 => Box::new(Mailgun::new(&cfg, "api")),
            1 => Box::new(Ses::new(&cfg, "AKIDEXAMPLE")),
            _ => Box::new(Graph::new(&cfg, "noreply@example.com")),
        };
        // Graph also reads 404 (no such mailbox) as a setting to fix.
        let credentials = |s: u16| s == 401 || s == 403 || (which == 2 && s == 404);
        let _ = api.message_id(&resp);
        let _ = api.error_text(&resp);
        let (reply, code) = match classify(api.as_ref(), &resp) {
            Outcome::Sent(r) => {
                assert!((200..300).contains(&status));
                (r, 250)
            }
            Outcome::Credentials(r) => {
                assert!(credentials(status));
                (r, 454)
            }
            Outcome::Bounced(r) => {
                assert!(
                    (400..500).contains(&status)
                        && !credentials(status)
                        && ![408, 429].contains(&status)
                );
                (r, 554)
            }
            Outcome::Deferred(r, wait) => {
                assert!(
                    !(200..300).contains(&status)
                        && (!(400..500).contains(&status) || [408, 429].contains(&status))
                );
                let now = postern::clock::unix_secs(postern::clock::now());
                let want = retry_after(retry.as_deref(), postern::clock::now());
                assert_eq!(wait.is_some(), want.is_some(), "{retry:?}");
                if let Some(d) = wait {
                    let v = retry.as_deref().unwrap_or("").trim();
                    if v.bytes().all(|b| b.is_ascii_digit()) {
                        assert_eq!(d.as_secs(), v.parse::<u64>().unwrap_or(u64::MAX));
                    } else {
                        // classify read the clock a moment before us
                        assert!(d.as_secs() <= MAX_HTTP_DATE - now + 60, "{v:?} -> {d:?}");
                    }
                }
                (r, 451)
            }
        };
        assert_eq!(reply.code, code);
        assert!(
            log_safe(&reply.text),
            "control character in {:?}",
            reply.text
        );
        // One SMTP reply line: 512 octets with the code, its space and CRLF
        // (RFC 5321 4.5.3.1.5). Graph's credentials hint is the longest.
        assert!(
            reply.text.len() <= 512 - 6,
            "{} bytes of reply",
            reply.text.len()
        );
    }
}

// ---- smtpd_listener ----

/// Fuzz target `smtpd_listener`: the daemon listener's SMTP dialogue —
/// `submit::smtpd::serve` under a listener `Policy` (AUTH PLAIN/LOGIN
/// checked against a real `listen::Users` file holding one user,
/// STARTTLS, recipient and error bounds, a client address) — over
/// arbitrary client bytes, committing into a real development spool.
///
/// The first byte picks the policy: AUTH required before MAIL (bit 0),
/// AUTH only under TLS (bit 1), STARTTLS offered (bit 2; the in-memory
/// channel's "handshake" then succeeds, or fails with bit 3), how the
/// input ends (bits 4-5: end of stream, a read timeout, or a shutdown
/// while the session waits for a command), and whether the client
/// pipelines (bit 6: all its bytes arrive in one read; else one line per
/// read). The rest is the client's bytes. Asserts no panic; that every reply line is a well-formed SMTP
/// reply; that the number of `250 … queued as` replies equals the
/// number of committed messages, of ready maildrop entries and of
/// `on_commit` calls, and each entry decodes to what `serve` returned;
/// that a `235` (AUTH success) comes only after the checker accepted,
/// only for the fixture's exact user and password, and only when the input
/// carries their base64 form; that with AUTH required nothing is
/// committed without a successful AUTH; and that nothing follows a 221,
/// a 421 or a refused pipelined STARTTLS.
pub mod smtpd_listener {
    use postern::config::Config;
    use postern::listen::Users;
    use postern::spool::{Spool, format, maildrop};
    use postern::submit::smtpd::{self, Authenticator, Channel, Policy};
    use postern::submit::{EntrySource, Submitter, User};
    use std::cell::{Cell, RefCell};
    use std::io::{self, Read, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::sync::OnceLock;

    const USER: &str = "app";
    const PASS: &[u8] = b"s3cret pw";

    struct Fixture {
        cfg: Config,
        spool: Spool,
        users: Users,
    }

    static FIXTURE: OnceLock<Fixture> = OnceLock::new();

    fn fixture() -> &'static Fixture {
        FIXTURE.get_or_init(|| {
            let root = super::scratch_root("listener");
            let users_file = root.join("users");
            std::fs::write(&users_file, "# the one user\napp:s3cret pw\n").expect("users file");
            std::fs::set_permissions(&users_file, std::fs::Permissions::from_mode(0o600))
                .expect("chmod users file");
            let users = Users::load(&users_file).expect("users file loads");
            let text = format!(
                "hostname = \"fuzz.example.com\"\ndomain = \"example.com\"\nspool_dir = \"{}\"\nmax_message_size = \"64k\"\nlog = \"stderr\"\n[addresses]\naliases_file = \"{}\"\n",
                root.join("spool").display(),
                root.join("no-aliases").display()
            );
            let cfg = Config::parse(&text, Path::new("fuzz.toml")).expect("fuzz config");
            let spool = Spool::new(&cfg.spool_dir);
            spool.ensure_layout().expect("fuzz spool layout");
            Fixture { cfg, spool, users }
        })
    }

    /// Remove this process's scratch spool (for the corpus replay test).
    pub fn cleanup() {
        if let Some(f) = FIXTURE.get() {
            let _ = std::fs::remove_dir_all(f.spool.root().parent().unwrap_or(f.spool.root()));
        }
    }

    /// The users file's checker, recording every answer.
    struct Recorder<'a> {
        users: &'a Users,
        calls: RefCell<Vec<(String, Vec<u8>, bool)>>,
    }

    impl Authenticator for Recorder<'_> {
        fn check(&self, user: &str, password: &[u8]) -> bool {
            let ok = self.users.check(user, password);
            self.calls
                .borrow_mut()
                .push((user.to_string(), password.to_vec(), ok));
            ok
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum End {
        Eof,
        Timeout,
        Shutdown,
    }

    /// An in-memory connection: the client's bytes, then `end`.
    struct Mem<'a> {
        input: &'a [u8],
        out: Vec<u8>,
        tls_offered: bool,
        tls_fails: bool,
        end: End,
        waiting: bool,
        /// All the input in one read (else a line per read, as a client
        /// that waits for each reply sends it).
        pipelined: bool,
    }

    impl Read for Mem<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.input.is_empty() {
                return match self.end {
                    End::Eof => Ok(0),
                    End::Timeout => Err(io::Error::new(io::ErrorKind::TimedOut, "timeout")),
                    End::Shutdown if self.waiting => Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "shutting down",
                    )),
                    End::Shutdown => Ok(0),
                };
            }
            let mut n = buf.len().min(self.input.len());
            if !self.pipelined
                && let Some(lf) = self.input[..n].iter().position(|&b| b == b'\n')
            {
                n = lf + 1;
            }
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input = &self.input[n..];
            Ok(n)
        }
    }

    impl Write for Mem<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.out.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// `Channel` is implemented for a `&mut Mem` so the output can be read
    /// after `serve` consumed the channel.
    struct Chan<'m, 'a>(&'m mut Mem<'a>);

    impl Read for Chan<'_, '_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl Write for Chan<'_, '_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.flush()
        }
    }

    impl Channel for Chan<'_, '_> {
        fn tls_offered(&self) -> bool {
            self.0.tls_offered
        }
        fn start_tls(&mut self) -> io::Result<()> {
            self.0.tls_offered = false;
            if self.0.tls_fails {
                self.0.input = &[];
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad handshake"));
            }
            Ok(())
        }
        fn at_command(&mut self, waiting: bool) {
            self.0.waiting = waiting;
        }
    }

    fn b64(s: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in s.chunks(3) {
            let n = c.iter().fold(0u32, |a, &b| a << 8 | u32::from(b)) << (8 * (3 - c.len()));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn contains(hay: &[u8], needle: &str) -> bool {
        hay.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    /// Run the `smtpd_listener` checks on one input.
    pub fn check(data: &[u8]) {
        let Some((&pick, input)) = data.split_first() else {
            return;
        };
        let f = fixture();
        let dir = f.spool.maildrop();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let md = maildrop::open_dir(&dir).expect("maildrop dir");
        let user = User {
            uid: 1000,
            name: "postern".into(),
            gecos: None,
        };
        let mut sub = Submitter::new(&f.cfg, user, EntrySource::Direct, md);
        let rec = Recorder {
            users: &f.users,
            calls: RefCell::new(Vec::new()),
        };
        let commits = Cell::new(0usize);
        let on_commit = || commits.set(commits.get() + 1);
        let auth_required = pick & 1 != 0;
        let policy = Policy {
            auth: Some(&rec),
            auth_required,
            auth_needs_tls: pick & 2 != 0,
            max_recipients: 50,
            max_errors: 20,
            client: Some("[192.0.2.7]:40000".into()),
            on_commit: Some(&on_commit),
        };
        let mut mem = Mem {
            input,
            out: Vec::new(),
            tls_offered: pick & 4 != 0,
            tls_fails: pick & 8 != 0,
            end: [End::Eof, End::Timeout, End::Shutdown, End::Eof][usize::from(pick >> 4 & 3)],
            waiting: false,
            pipelined: pick & 0x40 != 0,
        };
        let committed = smtpd::serve(&mut sub, Chan(&mut mem), &policy)
            .expect("an in-memory session ends without an I/O error");
        let text = String::from_utf8_lossy(&mem.out);
        assert!(text.starts_with("220 "), "no greeting: {text:?}");
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        let mut queued = 0;
        let mut successes = 0;
        let mut authed_before_commit = false;
        for (i, line) in lines.iter().enumerate() {
            let b = line.as_bytes();
            assert!(
                b.len() >= 4
                    && b[..3].iter().all(u8::is_ascii_digit)
                    && (b[3] == b' ' || b[3] == b'-'),
                "bad reply line {line:?}"
            );
            if line.starts_with("235 ") {
                successes += 1;
                authed_before_commit = true;
            }
            if line.starts_with("250 2.0.0 Ok: queued as ") {
                queued += 1;
                assert!(
                    !auth_required || authed_before_commit,
                    "a message was queued without AUTH: {text:?}"
                );
            }
            if line.starts_with("221 ")
                || line.starts_with("421 ")
                || line.starts_with("554 5.5.1 Error: commands sent after STARTTLS")
            {
                assert_eq!(i + 1, lines.len(), "replies after the end: {text:?}");
            }
            if line.starts_with("220 2.0.0 Ready to start TLS") {
                // forgotten under TLS (RFC 3207 4.2)
                authed_before_commit = false;
            }
        }
        let calls = rec.calls.borrow();
        let accepted: Vec<_> = calls.iter().filter(|c| c.2).collect();
        assert_eq!(
            successes,
            accepted.len(),
            "235s vs accepted checks: {text:?}"
        );
        for (u, p, _) in &accepted {
            assert_eq!((u.as_str(), p.as_slice()), (USER, PASS));
        }
        if successes > 0 {
            let mut plain = b"\0app\0".to_vec();
            plain.extend_from_slice(PASS);
            let mut plain2 = b"app".to_vec();
            plain2.extend_from_slice(&plain);
            assert!(
                contains(input, &b64(&plain))
                    || contains(input, &b64(&plain2))
                    || (contains(input, &b64(USER.as_bytes())) && contains(input, &b64(PASS))),
                "AUTH succeeded without the credentials in the input"
            );
        }
        assert_eq!(committed.len(), queued, "replies: {text:?}");
        assert_eq!(commits.get(), queued);
        let mut ready = 0;
        for e in std::fs::read_dir(&dir).expect("read maildrop").flatten() {
            let md = e.metadata().expect("entry metadata");
            if md.permissions().mode() & maildrop::READY_BIT == 0 {
                continue;
            }
            ready += 1;
            let bytes = std::fs::read(e.path()).expect("read entry");
            let (env, _) = format::decode(&bytes).expect("a ready entry decodes");
            let c = committed
                .iter()
                .find(|c| c.id == env.id)
                .expect("ready entry was reported committed");
            assert_eq!(c.recipients, env.recipients);
            assert!(env.recipients.len() <= 50);
        }
        assert_eq!(ready, committed.len());
    }
}

// ---- relay_ports ----

/// Fuzz target `relay_ports`: `spool::relay_ports::RelayPorts::decode` on
/// arbitrary bytes (the `<spool>/relay-ports` file of `port = "auto"`).
///
/// Asserts no panic; that a file over `MAX_LEN` or without the exact first
/// line decodes to nothing; that decode→encode→decode is the identity and
/// the encoding is stable and never longer than the input (but for a final
/// LF); that at most 64 hosts are kept; that every encoded line is a
/// non-zero port and one lower-case printable ASCII word of at most 255
/// bytes that `get` answers with that port, in any case.
pub mod relay_ports {
    use postern::spool::relay_ports::{MAX_LEN, RelayPorts};

    const MAGIC: &[u8] = b"postern-relay-ports 1\n";

    /// Run the `relay_ports` checks on one input.
    pub fn check(data: &[u8]) {
        let d = RelayPorts::decode(data);
        let e = d.encode();
        assert!(e.starts_with(MAGIC));
        let empty = e == MAGIC;
        if data.len() > MAX_LEN {
            assert!(empty, "an oversize file decoded");
        }
        let first = std::str::from_utf8(data)
            .ok()
            .and_then(|t| t.lines().next());
        if first != Some("postern-relay-ports 1") {
            assert!(empty, "a file with a bad first line decoded");
        }
        if !empty {
            assert!(e.len() <= data.len() + 1, "encoding grew");
        }
        assert!(e.len() <= MAX_LEN + 1);
        let d2 = RelayPorts::decode(&e);
        if e.len() <= MAX_LEN {
            assert_eq!(d2, d, "decode(encode(x)) != x");
            assert_eq!(d2.encode(), e, "encoding is not stable");
        }
        let text = String::from_utf8(e).expect("encoding is UTF-8");
        let mut n = 0;
        for line in text.lines().skip(1) {
            n += 1;
            let (p, host) = line.split_once(' ').expect("encoded line has a space");
            let p: u16 = p.parse().expect("encoded port");
            assert!(p != 0);
            assert!(!host.is_empty() && host.len() <= 255);
            assert!(host.bytes().all(|b| b.is_ascii_graphic()), "{host:?}");
            assert_eq!(host, host.to_ascii_lowercase());
            assert_eq!(d.get(host), Some(p));
            assert_eq!(d.get(&host.to_ascii_uppercase()), Some(p));
        }
        assert!(n <= 64, "{n} hosts kept");
    }
}

// ---- guard_seen ----

/// Fuzz target `guard_seen`: `spool::guard::Seen::decode` on arbitrary
/// text (the outbound guard's `<spool>/guard-seen` message keys).
///
/// Asserts no panic; that every decoded time is finite; that whatever
/// decodes re-encodes to text that decodes to the same keys and queue ids
/// (times are written with one decimal, so they may move by at most
/// 0.1 s at each round); that an encoding ends with the `end` line; and
/// that no prefix of an encoding that stops before its `end` line decodes
/// (a torn file is refused, never read as fewer keys).
pub mod guard_seen {
    use postern::spool::guard::Seen;

    /// Run the `guard_seen` checks on one input.
    pub fn check(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let Some(s) = Seen::decode(&text) else {
            return;
        };
        for (_, first) in s.keys.values() {
            assert!(first.is_finite());
        }
        let t1 = s.encode();
        assert!(t1.starts_with("postern-guard-seen 1\n") && t1.ends_with("\nend\n"));
        let s2 = Seen::decode(&t1).expect("re-encoded seen keys decode");
        assert_eq!(s2.keys.len(), s.keys.len());
        // One decimal is within 0.05 of the time; the double read back
        // is the nearest to that decimal, so within 0.1 of the time.
        let same = |a: &Seen, b: &Seen| {
            assert_eq!(a.keys.len(), b.keys.len());
            for (k, (id, first)) in &a.keys {
                let (id2, first2) = b.keys.get(k).expect("a key survives encoding");
                assert_eq!(id2, id);
                assert!(
                    (first - first2).abs() <= 0.1 + 1e-12 * first.abs(),
                    "{first} vs {first2}"
                );
            }
        };
        same(&s, &s2);
        let t2 = s2.encode();
        let s3 = Seen::decode(&t2).expect("re-encoded seen keys decode twice");
        same(&s2, &s3);
        // A torn file: prefixes that stop before the `end` line — every
        // one within 64 bytes of the start (cheap) and 24 of the `end`
        // line (the last key's line, cut anywhere), and about 16 in
        // between. Decoding reads lines in order and says Some only at a
        // whole `end` line, so a cut in the middle can only fail the way
        // one near the end does; all of them made this target 30x slower
        // (and 128 in between still 5x) for no new coverage.
        if t2.len() <= 4096 {
            let end = t2.len() - "end\n".len();
            let step = (end / 16).max(1);
            let cuts = (0..end).filter(|&c| c < 64 || c + 24 >= end || c % step == 0);
            for cut in cuts.filter(|&c| t2.is_char_boundary(c)) {
                assert!(
                    Seen::decode(&t2[..cut]).is_none(),
                    "a torn guard-seen file decoded at {cut}: {:?}",
                    &t2[..cut]
                );
            }
        }
    }
}

// ---- oauth2_login ----

/// Fuzz target `oauth2_login`: what `postern oauth2 login` reads from
/// outside — a pasted code or address (`code_of`), the loopback redirect's
/// request head (`redirect_answer`), and a device endpoint's JSON answer
/// (`endpoint::answer` then `device_answer` and the prompt shown).
///
/// The first byte picks the reader. Asserts no panic; that every error and
/// every prompt line is log-safe (no control or bidi character); that a
/// code accepted from a query whose `state` is present carries this
/// sign-in's state; that a redirect's code or error counts only with this
/// sign-in's state (anyone on the host can reach the loopback port); that a
/// device answer's poll interval is 1..=60 s and its wait at most 15 min.
pub mod oauth2_login {
    use super::log_safe;
    use postern::deliver::oauth2::endpoint::answer;
    use postern::setup::oauth2_login::{code_of, device_answer, redirect_answer};

    const STATE: &str = "S7tAtE";
    const URL: &str = "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode";

    /// The last `state` of a query (before `#` or a space), decoded: an
    /// oracle written apart from the code under test.
    fn last_state(q: &str) -> Option<String> {
        let q = q.split(['#', ' ']).next().unwrap_or("");
        let raw = q
            .split('&')
            .rev()
            .find_map(|p| p.strip_prefix("state=").or((p == "state").then_some("")))?;
        let b = raw.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                c => out.push(c),
            }
            i += 1;
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    fn pasted(text: &str) {
        match code_of(text, STATE) {
            Err(e) => assert!(log_safe(&e), "control character in {e:?}"),
            Ok(None) => assert!(text.trim().is_empty() || text.contains('?') || text.contains('=')),
            Ok(Some(c)) => {
                let t = text.trim();
                if !t.contains('?') && !t.contains("code=") && !t.contains("error=") {
                    assert_eq!(c, t, "a bare pasted code is taken as it is");
                } else {
                    let q = t.split_once('?').map_or(t, |(_, q)| q);
                    let st = last_state(q);
                    assert!(
                        st.is_none_or(|s| s == STATE),
                        "a code accepted for another sign-in: {t:?}"
                    );
                }
            }
        }
    }

    fn redirect(head: &[u8]) {
        let r = redirect_answer(head, STATE);
        let text = String::from_utf8_lossy(head);
        let target = text
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("");
        let ours = target
            .split_once('?')
            .and_then(|(_, q)| last_state(q))
            .as_deref()
            == Some(STATE);
        match r {
            Err(e) => {
                assert!(log_safe(&e), "control character in {e:?}");
                assert!(
                    ours,
                    "a request without this sign-in's state ended it: {target:?}"
                );
            }
            Ok(Some(_)) => assert!(ours, "a code without this sign-in's state: {target:?}"),
            Ok(None) => {}
        }
    }

    fn device(body: &str) {
        let Ok(obj) = answer(URL, 200, body) else {
            return;
        };
        match device_answer(&obj) {
            Err(e) => assert!(log_safe(&e)),
            Ok(d) => {
                assert!((1..=60).contains(&d.interval), "interval {}", d.interval);
                assert!(d.wait.as_secs() <= 15 * 60);
                let prompt = d.prompt("ops@example.com");
                assert!(prompt.ends_with('\n'));
                let lines: Vec<&str> = prompt.lines().collect();
                assert_eq!(
                    lines.len(),
                    1 + usize::from(d.complete.is_some()),
                    "{prompt:?}"
                );
                for l in lines {
                    assert!(log_safe(l), "control character in the prompt {l:?}");
                }
            }
        }
    }

    /// Run the `oauth2_login` checks on one input.
    pub fn check(data: &[u8]) {
        let Some((&pick, rest)) = data.split_first() else {
            return;
        };
        match pick % 3 {
            0 => pasted(&String::from_utf8_lossy(rest)),
            1 => redirect(rest),
            _ => device(&String::from_utf8_lossy(rest)),
        }
    }
}
