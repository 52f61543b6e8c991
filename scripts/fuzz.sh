#!/usr/bin/env bash
# scripts/fuzz.sh — run every cargo-fuzz target of Postern for a bounded time
# and print, per target, the executions run, the corpus size and the crashes.
#
#   scripts/fuzz.sh                      # every target, FUZZ_SECONDS=60 each
#   FUZZ_SECONDS=1800 scripts/fuzz.sh    # the longer run before a release
#   FUZZ_SECONDS=600 scripts/fuzz.sh smtpd headers   # chosen targets
#   FUZZ_JOBS=2 scripts/fuzz.sh          # libFuzzer workers per target
#
# Needs a nightly toolchain (`rustup toolchain install nightly`: cargo-fuzz
# builds with -Zsanitizer=address) and cargo-fuzz, installed here from
# crates.io when missing. New interesting inputs are added to
# fuzz/corpus/<target>/; minimise before committing them
# (`cargo +nightly fuzz cmin <target>`; keep each corpus at <= 300 files).
# A crash leaves its input in fuzz/artifacts/<target>/ and makes the script
# exit 1 after every target has run; reproduce it with
# `cargo +nightly fuzz run <target> fuzz/artifacts/<target>/crash-...`, fix
# it in src/, and add the input to the corpus (tests/suite/fuzz_corpus.rs then
# replays it on stable in `cargo test`).
set -u
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_JOBS=${FUZZ_JOBS:-1}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked || exit 1
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: a nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 1
fi

if [ "$#" -gt 0 ]; then
    targets="$*"
else
    targets=$(cargo fuzz list 2>/dev/null)
fi
[ -n "$targets" ] || { echo "fuzz.sh: no fuzz targets found" >&2; exit 1; }

echo "fuzz.sh: building the targets (release, debug assertions on)" >&2
cargo +nightly fuzz build -O >&2 || exit 1

logdir=$(mktemp -d "${TMPDIR:-/tmp}/postern-fuzz.XXXXXX")
status=0
summary=""
for t in $targets; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    before=$(ls "fuzz/artifacts/$t" | grep -c '^\(crash\|oom\|timeout\|leak\)-' || true)
    log="$logdir/$t.log"
    echo "fuzz.sh: $t for ${FUZZ_SECONDS}s" >&2
    if [ "$FUZZ_JOBS" -gt 1 ]; then
        extra="-jobs=$FUZZ_JOBS -workers=$FUZZ_JOBS"
    else
        extra=""
    fi
    # shellcheck disable=SC2086
    cargo +nightly fuzz run -O "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 $extra >"$log" 2>&1
    rc=$?
    execs=$(grep -h 'stat::number_of_executed_units:' "$log" fuzz-*.log 2>/dev/null \
        | awk '{s += $2} END {print s + 0}')
    rm -f fuzz-*.log
    after=$(ls "fuzz/artifacts/$t" | grep -c '^\(crash\|oom\|timeout\|leak\)-' || true)
    crashes=$((after - before))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1 # libFuzzer failed without leaving an artifact: look at the log
    fi
    corpus=$(ls "fuzz/corpus/$t" | wc -l)
    [ "$crashes" -eq 0 ] || status=1
    summary="$summary$(printf '%-14s %8ss %12s execs %6s corpus %3s crashes' "$t" "$FUZZ_SECONDS" "$execs" "$corpus" "$crashes")
"
    if [ "$crashes" -ne 0 ]; then
        echo "fuzz.sh: $t FAILED; log: $log" >&2
        grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 5 >&2
    fi
done
# The smtpd target keeps a scratch spool per process under /dev/shm, the
# wire and request targets a scratch file.
rm -rf /dev/shm/postern-fuzz-smtpd-* /dev/shm/postern-fuzz-wire-* \
    /dev/shm/postern-fuzz-request-* 2>/dev/null
echo
echo "target         time        executions        corpus     crashes"
printf '%s' "$summary"
echo "logs: $logdir"
exit "$status"
