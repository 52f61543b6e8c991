//! Fuzz `postern::deliver::wire`: any bytes a local program may hand to
//! sendmail must plan and stream without panicking, and the stream must be
//! legal SMTP `DATA` content of exactly the planned size.
#![no_main]

use std::fs::File;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use postern::deliver::wire::{WireOptions, plan, stream};

/// Largest chunk the stream may yield.
const CHUNK: usize = 64 * 1024;

fn spool_path() -> PathBuf {
    PathBuf::from(format!("/dev/shm/postern-fuzz-wire-{}", std::process::id()))
}

/// The input ends with two line breaks (an empty last line): only then may
/// the output end with CRLF, since one trailing CRLF is always dropped.
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

fuzz_target!(|data: &[u8]| {
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
});
