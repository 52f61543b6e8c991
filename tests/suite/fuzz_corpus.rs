//! Replays every committed fuzz corpus (fuzz/corpus/<target>/*) on stable,
//! through the very checks the cargo-fuzz targets run
//! (fuzz/fuzz_targets/checks/mod.rs), so `cargo test` covers every input the
//! fuzzers found interesting and every crash input added as a regression.
//! A corpus whose target has no replay here is reported and skipped (its
//! owners add it to `replay`). Fails on any panic, naming the input file.

#[path = "../../fuzz/fuzz_targets/checks/mod.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn replay(target: &str) -> Option<fn(&[u8])> {
    Some(match target {
        "argv" => checks::argv::check,
        "headers" => checks::headers::check,
        "aliases" => checks::aliases::check,
        "config" => checks::config::check,
        "queue_entry" => checks::queue_entry::check,
        "smtpd" => checks::smtpd::check,
        "address_list" => checks::address_list::check,
        "wire" => checks::wire::check,
        "smtp_reply" => checks::smtp_reply::check,
        "relay_limits" => checks::relay_limits::check,
        "guard_state" => checks::guard_state::check,
        "request" => checks::request::check,
        "escape" => checks::escape::check,
        "http_response" => checks::http_response::check,
        "oauth2_token" => checks::oauth2_token::check,
        "oauth2_cache" => checks::oauth2_cache::check,
        "api_answer" => checks::api_answer::check,
        "smtpd_listener" => checks::smtpd_listener::check,
        "relay_ports" => checks::relay_ports::check,
        "guard_seen" => checks::guard_seen::check,
        "oauth2_login" => checks::oauth2_login::check,
        _ => return None,
    })
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn every_committed_corpus_replays_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus");
    let mut total = 0;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fuzz/corpus")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut replayed = Vec::new();
    for dir in dirs {
        let target = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let Some(check) = replay(&target) else {
            eprintln!("fuzz_corpus: no stable replay for target {target:?}; skipped");
            continue;
        };
        let inputs = files(&dir);
        for f in &inputs {
            let data = match std::fs::read(f) {
                Ok(d) => d,
                // a fuzzer running in this checkout may reduce its corpus
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", f.display()),
            };
            if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{target}: input {} failed: {msg}", f.display());
            }
        }
        total += inputs.len();
        replayed.push(format!("{target}={}", inputs.len()));
    }
    checks::smtpd::cleanup();
    checks::wire::cleanup();
    checks::request::cleanup();
    checks::smtpd_listener::cleanup();
    for t in [
        "argv",
        "headers",
        "aliases",
        "config",
        "queue_entry",
        "smtpd",
        "smtp_reply",
        "relay_limits",
        "guard_state",
        "request",
        "escape",
        "http_response",
        "oauth2_token",
        "oauth2_cache",
        "api_answer",
        "smtpd_listener",
        "relay_ports",
        "guard_seen",
        "oauth2_login",
    ] {
        assert!(
            replayed.iter().any(|r| r.starts_with(&format!("{t}="))),
            "corpus for {t} missing"
        );
    }
    assert!(total > 0);
    println!(
        "fuzz_corpus: replayed {total} inputs ({})",
        replayed.join(", ")
    );
}
