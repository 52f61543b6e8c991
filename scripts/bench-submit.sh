#!/usr/bin/env bash
# bench-submit.sh — how fast and how lean is a submission?
#
# (1) Latency: the median time of BENCH_N sequential `sendmail -t` submissions
#     of distinct ~2 KB messages, each timed from fork() to waitpid() by
#     bench/submit_loop.c (no shell in the measured path), against the fsync
#     floor measured in the same run on the same file system:
#     bench/fsync_floor.c reads stdin into a temp file, fsyncs it, renames it
#     and fsyncs the directory -- the durability Postern promises before it
#     exits 0. Units run interleaved in BENCH_ROUNDS rounds (order rotated
#     every round) so drifts in machine load hit all of them alike.
#     Postern runs unprivileged with a throwaway config (like the tests:
#     run_on_submit = false, so no queue runner is spawned), in two modes:
#     `-odq` and the default (`-odb`: it also tries to wake a daemon).
#     A third, separate phase (not interleaved: its background deliveries
#     would load the machine) measures the out-of-the-box mode:
#     run_on_submit = true with a relay (examples/smtp_sink on 127.0.0.1),
#     where each submission starts a detached queue run.
# (2) Memory: peak RSS (`/usr/bin/time -v`, "Maximum resident set size") of
#     submitting a BENCH_BIG_MB MB message through a pipe, next to the RSS of
#     a 2 KB submission and of `postern --version` (the binary's baseline).
#
# Prints a markdown table (and keeps the raw data in BENCH_DIR with
# BENCH_KEEP=1). Targets from issue 2: <= 1.25x the fsync floor; <= 4 MB.
# Peers measured on this machine by ../shared/bench: dma 3.8x, nullmailer
# 5.2x, Postfix 11.7x; RSS nullmailer 3.0, dma 3.4, Postfix 7.1 MB.
#
# Knobs (environment):
#   BENCH_N=1000  BENCH_ROUNDS=5  BENCH_BIG_MB=50  BENCH_RSS_RUNS=3
#   BENCH_DIR     work directory (default: a new one under /var/tmp)
#   BENCH_KEEP=1  keep BENCH_DIR;  BENCH_NO_BUILD=1  use the existing build
#   BENCH_BIN     the postern binary (default target/release/postern)
#   BENCH_AUTORUN=0  skip the run_on_submit phase
#   BENCH_TMPFS=0    skip the supplementary phase on /dev/shm (tmpfs: fsync
#                    is free there, so it shows the fixed CPU cost of a
#                    submission beyond the floor's, independent of disk load)
#   BENCH_STATIC=1   also build and measure a static-pie (crt-static) binary
#                    (target/x86_64-unknown-linux-gnu/release/postern)
#   BENCH_FATLTO=1   also build and measure the release profile with
#                    lto = "fat", codegen-units = 1 (target/benchfat/postern)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
N="${BENCH_N:-1000}"
ROUNDS="${BENCH_ROUNDS:-5}"
BIG_MB="${BENCH_BIG_MB:-50}"
RSS_RUNS="${BENCH_RSS_RUNS:-3}"
AUTORUN="${BENCH_AUTORUN:-1}"
STATIC="${BENCH_STATIC:-0}"
FATLTO="${BENCH_FATLTO:-0}"
if (( N % ROUNDS != 0 )); then
    echo "BENCH_N ($N) must be a multiple of BENCH_ROUNDS ($ROUNDS)" >&2
    exit 64
fi
PER=$(( N / ROUNDS ))

say() { printf '%s\n' "$*" >&2; }

# ---- build ------------------------------------------------------------------
cd "$here"
if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
    say "building the release binary and the sink..."
    cargo build --release --bin postern --example smtp_sink >&2
    if [[ "$STATIC" == 1 ]]; then
        say "building the static-pie variant..."
        RUSTFLAGS="-C target-feature=+crt-static" \
            cargo build --release --bin postern --target x86_64-unknown-linux-gnu >&2
    fi
    if [[ "$FATLTO" == 1 ]]; then
        say "building the fat-LTO variant..."
        cargo build --bin postern --config 'profile.benchfat.inherits="release"' \
            --config 'profile.benchfat.lto="fat"' --config 'profile.benchfat.codegen-units=1' \
            --profile benchfat >&2
    fi
fi
BIN="${BENCH_BIN:-$here/target/release/postern}"
SINK_BIN="$here/target/release/examples/smtp_sink"
STATIC_BIN="$here/target/x86_64-unknown-linux-gnu/release/postern"
FAT_BIN="$here/target/benchfat/postern"
[[ -x "$BIN" ]] || { say "no binary at $BIN"; exit 69; }
if ! [[ -x /usr/bin/time ]]; then
    say "installing GNU time for the RSS measurement..."
    apt-get install -y time >&2
fi
command -v gcc >/dev/null || { say "gcc is needed (apt-get install gcc)"; exit 69; }

# ---- work directory -----------------------------------------------------------
DIR="${BENCH_DIR:-$(mktemp -d /var/tmp/postern-bench.XXXXXX)}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
SINK_PID=""
cleanup() {
    if [[ -n "$SINK_PID" ]]; then kill "$SINK_PID" 2>/dev/null || true; fi
    if [[ "${BENCH_KEEP:-0}" != 1 ]]; then rm -rf "$DIR"; else say "raw data kept in $DIR"; fi
}
trap cleanup EXIT
mkdir -p "$DIR/tools" "$DIR/msgs" "$DIR/floor" "$DIR/out"
gcc -O2 -Wall -o "$DIR/tools/fsync_floor" bench/fsync_floor.c
gcc -O2 -Wall -o "$DIR/tools/submit_loop" bench/submit_loop.c
LOOP="$DIR/tools/submit_loop"

# The binary under test gets its own copy and argv[0] links, so a rebuild by
# someone else during the run cannot change what is measured.
install_bin() { # name source
    mkdir -p "$DIR/$1"
    cp "$2" "$DIR/$1/postern"
    ln -sf postern "$DIR/$1/sendmail"
}
install_bin bin "$BIN"
[[ "$STATIC" == 1 ]] && install_bin sbin "$STATIC_BIN"
[[ "$FATLTO" == 1 ]] && install_bin fbin "$FAT_BIN"

config() { # name run_on_submit [relay_port]
    local d="$DIR/$1"
    mkdir -p "$d"
    {
        printf 'hostname = "web1.example.com"\ndomain = "example.com"\n'
        printf 'spool_dir = "%s/spool"\nlog = "%s/postern.log"\n' "$d" "$d"
        printf 'max_message_size = "%dM"\n' $(( BIG_MB + 16 ))
        printf '[queue]\nrun_on_submit = %s\n' "$2"
        if [[ -n "${3:-}" ]]; then
            printf '[[relay]]\nhost = "127.0.0.1"\nport = %s\ntls = "none"\n' "$3"
        fi
    } > "$d/postern.toml"
    echo "$d/postern.toml"
}

# Distinct ~2 KB messages, as `sendmail -t` callers send them.
say "writing $N messages..."
awk -v n="$N" -v dir="$DIR/msgs" 'BEGIN {
    for (i = 0; i < n; i++) {
        f = sprintf("%s/msg-%d.eml", dir, i)
        printf "From: Bench <bench@example.com>\nTo: rcpt-%d@example.org\nSubject: benchmark message %d\n", i, i > f
        printf "Date: Sun, 29 Nov 2026 12:00:00 +0000\nMessage-ID: <bench-%d@example.com>\n\n", i > f
        for (j = 0; j < 27; j++)
            printf "line %02d of message %05d: the quick brown fox jumps over the lazy dog\n", j, i > f
        close(f)
    }
}'
MSG_BYTES=$(wc -c < "$DIR/msgs/msg-0.eml")

# ---- units ---------------------------------------------------------------------
CFG_Q=$(config postern-odq false)
CFG_B=$(config postern-default false)
UNITS=(floor-true floor-fsyncdir postern-odq postern-default)
if [[ "$STATIC" == 1 ]]; then
    CFG_S=$(config postern-static-odq false)
    UNITS+=(postern-static-odq)
fi
if [[ "$FATLTO" == 1 ]]; then
    CFG_F=$(config postern-fatlto-odq false)
    UNITS+=(postern-fatlto-odq)
fi

run_unit() { # unit round
    local u="$1" k=$(( $2 * PER )) out="$DIR/out/$1.$2"
    case "$u" in
        floor-true) "$LOOP" -n "$PER" -k "$k" -i "$DIR/msgs/msg-%d.eml" -o "$out" -- /bin/true ;;
        floor-fsyncdir) "$LOOP" -n "$PER" -k "$k" -i "$DIR/msgs/msg-%d.eml" -o "$out" -- "$DIR/tools/fsync_floor" "$DIR/floor" ;;
        postern-odq) "$LOOP" -n "$PER" -k "$k" -i "$DIR/msgs/msg-%d.eml" -o "$out" -e "$DIR/out/stderr" \
            -E "POSTERN_CONFIG=$CFG_Q" -E PATH=/usr/bin:/bin -- "$DIR/bin/sendmail" -t -odq ;;
        postern-default) "$LOOP" -n "$PER" -k "$k" -i "$DIR/msgs/msg-%d.eml" -o "$out" -e "$DIR/out/stderr" \
            -E "POSTERN_CONFIG=$CFG_B" -E PATH=/usr/bin:/bin -- "$DIR/bin/sendmail" -t ;;
        postern-static-odq) "$LOOP" -n "$PER" -k "$k" -i "$DIR/msgs/msg-%d.eml" -o "$out" -e "$DIR/out/stderr" \
            -E "POSTERN_CONFIG=$CFG_S" -E PATH=/usr/bin:/bin -- "$DIR/sbin/sendmail" -t -odq ;;
        postern-fatlto-odq) "$LOOP" -n "$PER" -k "$k" -i "$DIR/msgs/msg-%d.eml" -o "$out" -e "$DIR/out/stderr" \
            -E "POSTERN_CONFIG=$CFG_F" -E PATH=/usr/bin:/bin -- "$DIR/fbin/sendmail" -t -odq ;;
    esac
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "latency: $ROUNDS rounds x $PER submissions per unit (${UNITS[*]})..."
for (( r = 0; r < ROUNDS; r++ )); do
    n=${#UNITS[@]}
    for (( i = 0; i < n; i++ )); do
        u="${UNITS[$(( (i + r) % n ))]}"
        run_unit "$u" "$r" >/dev/null || say "  $u round $r: some runs failed (see $DIR/out/$u.$r)"
    done
    say "  round $(( r + 1 ))/$ROUNDS done"
done

# Stats over all runs of a unit: n fail median p90 p99 (ms), per-round medians.
stats() {
    cat "$DIR/out/$1".* | awk '{ print $2, $3 }' | sort -n | awk '
        { v[NR] = $1; if ($2 != 0) f++ }
        END {
            printf "%d %d %.3f %.3f %.3f\n", NR, f + 0,
                v[int((NR - 1) * 0.5 + 0.5) + 1] / 1000,
                v[int((NR - 1) * 0.9 + 0.5) + 1] / 1000,
                v[int((NR - 1) * 0.99 + 0.5) + 1] / 1000
        }'
}
round_medians() {
    local out="" r
    for (( r = 0; r < ROUNDS; r++ )); do
        out+=$(awk '{ print $2 }' "$DIR/out/$1.$r" | sort -n | awk '{ v[NR] = $1 } END { printf "%.3f", v[int((NR - 1) * 0.5 + 0.5) + 1] / 1000 }')
        out+=" "
    done
    echo "${out% }"
}
read -r _ _ FLOOR_MED _ _ < <(stats floor-fsyncdir)

# ---- default mode with a queue runner ------------------------------------------------
AUTO_LINE=""
if [[ "$AUTORUN" == 1 && -x "$SINK_BIN" ]]; then
    port=$(( 20000 + RANDOM % 20000 ))
    "$SINK_BIN" --listen "127.0.0.1:$port" > "$DIR/out/sink.log" 2>&1 &
    SINK_PID=$!
    for _ in $(seq 100); do
        grep -q . "$DIR/out/sink.log" 2>/dev/null && break
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.05
    done
    CFG_A=$(config postern-autorun true "$port")
    say "default mode with a runner: $PER submissions, relay 127.0.0.1:$port..."
    t0=$(date +%s.%N)
    "$LOOP" -n "$PER" -k 0 -i "$DIR/msgs/msg-%d.eml" -o "$DIR/out/postern-autorun.0" -e "$DIR/out/stderr" \
        -E "POSTERN_CONFIG=$CFG_A" -E PATH=/usr/bin:/bin -- "$DIR/bin/sendmail" -t >/dev/null || true
    # wait (bounded) until every message reached the sink
    for _ in $(seq 1200); do
        got=$(grep -c '^from=' "$DIR/out/sink.log" || true)
        (( got >= PER )) && break
        sleep 0.1
    done
    t1=$(date +%s.%N)
    got=$(grep -c '^from=' "$DIR/out/sink.log" || true)
    read -r an afail amed ap90 ap99 < <(cat "$DIR/out/postern-autorun.0" | awk '{ print $2, $3 }' | sort -n | awk '
        { v[NR] = $1; if ($2 != 0) f++ }
        END { printf "%d %d %.3f %.3f %.3f\n", NR, f + 0, v[int((NR-1)*0.5+0.5)+1]/1000, v[int((NR-1)*0.9+0.5)+1]/1000, v[int((NR-1)*0.99+0.5)+1]/1000 }')
    AUTO_LINE=$(printf '| postern (default: run_on_submit, relay up; separate phase) | %s | %s | %s | %s | %s | %.2f | %s delivered in %.1f s |' \
        "$an" "$afail" "$amed" "$ap90" "$ap99" "$(awk -v a="$amed" -v b="$FLOOR_MED" 'BEGIN { print a / b }')" \
        "$got/$PER" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    kill "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=""
fi
# ---- supplementary: the same on tmpfs (no fsync cost) ----------------------------------
TMPFS_UNITS=()
if [[ "${BENCH_TMPFS:-1}" == 1 ]] && [[ "$(df -T /dev/shm 2>/dev/null | awk 'NR == 2 { print $2 }')" == tmpfs ]]; then
    SHM=$(mktemp -d /dev/shm/postern-bench.XXXXXX)
    trap 'rm -rf "$SHM"; cleanup' EXIT
    mkdir -p "$SHM/floor"
    shm_config() { # name
        mkdir -p "$SHM/$1"
        printf 'hostname = "web1.example.com"\ndomain = "example.com"\nspool_dir = "%s/spool"\nlog = "%s/postern.log"\n[queue]\nrun_on_submit = false\n' \
            "$SHM/$1" "$SHM/$1" > "$SHM/$1/postern.toml"
        echo "$SHM/$1/postern.toml"
    }
    TMPFS_UNITS=(tmpfs-floor tmpfs-postern)
    TC=$(shm_config postern)
    [[ "$STATIC" == 1 ]] && { TS=$(shm_config static); TMPFS_UNITS+=(tmpfs-static); }
    [[ "$FATLTO" == 1 ]] && { TF=$(shm_config fatlto); TMPFS_UNITS+=(tmpfs-fatlto); }
    say "supplementary: ${TMPFS_UNITS[*]} on /dev/shm..."
    for (( r = 0; r < ROUNDS; r++ )); do
        n=${#TMPFS_UNITS[@]}
        for (( i = 0; i < n; i++ )); do
            u="${TMPFS_UNITS[$(( (i + r) % n ))]}"
            k=$(( r * PER )); out="$DIR/out/$u.$r"
            case "$u" in
                tmpfs-floor) "$LOOP" -n "$PER" -k "$k" -i "$DIR/msgs/msg-%d.eml" -o "$out" -- "$DIR/tools/fsync_floor" "$SHM/floor" ;;
                tmpfs-postern) "$LOOP" -n "$PER" -k "$k" -i "$DIR/msgs/msg-%d.eml" -o "$out" -e "$DIR/out/stderr" \
                    -E "POSTERN_CONFIG=$TC" -E PATH=/usr/bin:/bin -- "$DIR/bin/sendmail" -t -odq ;;
                tmpfs-static) "$LOOP" -n "$PER" -k "$k" -i "$DIR/msgs/msg-%d.eml" -o "$out" -e "$DIR/out/stderr" \
                    -E "POSTERN_CONFIG=$TS" -E PATH=/usr/bin:/bin -- "$DIR/sbin/sendmail" -t -odq ;;
                tmpfs-fatlto) "$LOOP" -n "$PER" -k "$k" -i "$DIR/msgs/msg-%d.eml" -o "$out" -e "$DIR/out/stderr" \
                    -E "POSTERN_CONFIG=$TF" -E PATH=/usr/bin:/bin -- "$DIR/fbin/sendmail" -t -odq ;;
            esac >/dev/null || say "  $u round $r: some runs failed"
        done
    done
    rm -rf "$SHM"
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- peak RSS --------------------------------------------------------------------
say "peak RSS: a $BIG_MB MB message, $RSS_RUNS runs..."
awk -v mb="$BIG_MB" 'BEGIN {
    printf "From: Big <big@example.com>\nTo: big@example.org\nSubject: %d MB\n\n", mb
    line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?()[]"
    n = int(mb * 1048576 / (length(line) + 1))
    for (i = 0; i < n; i++) print line
}' > "$DIR/big.eml"
CFG_R=$(config postern-rss false)
rss() { # binary input -> KB (median of RSS_RUNS)
    local bin="$1" input="$2" i
    for (( i = 0; i < RSS_RUNS; i++ )); do
        # through a pipe, as PHP and cron deliver it
        cat "$input" | POSTERN_CONFIG="$CFG_R" /usr/bin/time -v "$bin" -t -odq 2>&1 >/dev/null |
            awk -F': ' '/Maximum resident set size/ { print $2 }'
    done | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
version_rss() {
    /usr/bin/time -v "$1" --version 2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/ { print $2 }'
}
RSS_BIG=$(rss "$DIR/bin/sendmail" "$DIR/big.eml")
RSS_SMALL=$(rss "$DIR/bin/sendmail" "$DIR/msgs/msg-0.eml")
RSS_VERSION=$(version_rss "$DIR/bin/postern")
STORED=$(ls "$DIR/postern-rss/spool/maildrop" | wc -l)
if [[ "$STATIC" == 1 ]]; then
    SRSS_BIG=$(rss "$DIR/sbin/sendmail" "$DIR/big.eml")
    SRSS_SMALL=$(rss "$DIR/sbin/sendmail" "$DIR/msgs/msg-0.eml")
    SRSS_VERSION=$(version_rss "$DIR/sbin/postern")
fi
if [[ "$FATLTO" == 1 ]]; then
    FRSS_BIG=$(rss "$DIR/fbin/sendmail" "$DIR/big.eml")
    FRSS_SMALL=$(rss "$DIR/fbin/sendmail" "$DIR/msgs/msg-0.eml")
    FRSS_VERSION=$(version_rss "$DIR/fbin/postern")
fi

# ---- report -----------------------------------------------------------------------
committed() { ls "$DIR/$1/spool/maildrop" 2>/dev/null | wc -l; }
echo
echo "## Submission benchmark ($(date -u +%Y-%m-%dT%H:%MZ), scripts/bench-submit.sh)"
echo
echo "$N sequential \`sendmail -t\` submissions of distinct ${MSG_BYTES}-byte messages per unit,"
echo "fork→waitpid, $ROUNDS interleaved rounds; $(nproc) CPUs; spool on $(df -T "$DIR" | awk 'NR == 2 { print $2 }');"
echo "load average $LOAD_START at start, $LOAD_END at end. Release build, unprivileged, throwaway config."
echo
echo "| unit | n | failed | median ms | p90 ms | p99 ms | × fsync floor | per-round medians ms |"
echo "|---|---|---|---|---|---|---|---|"
for u in "${UNITS[@]}"; do
    read -r n fail med p90 p99 < <(stats "$u")
    ratio=$(awk -v a="$med" -v b="$FLOOR_MED" 'BEGIN { printf "%.2f", a / b }')
    label="$u"
    case "$u" in
        floor-true) label="floor: /bin/true (process spawn)" ;;
        floor-fsyncdir) label="**floor: write + fsync + rename + fsync dir**" ;;
        postern-odq) label="**postern \`-t -odq\`** ($(committed postern-odq) committed)" ;;
        postern-default) label="postern \`-t\` (-odb, no daemon, run_on_submit = false) ($(committed postern-default) committed)" ;;
        postern-static-odq) label="postern static-pie \`-t -odq\` ($(committed postern-static-odq) committed)" ;;
        postern-fatlto-odq) label="postern fat LTO \`-t -odq\` ($(committed postern-fatlto-odq) committed)" ;;
    esac
    echo "| $label | $n | $fail | $med | $p90 | $p99 | $ratio | $(round_medians "$u") |"
done
if (( ${#TMPFS_UNITS[@]} > 0 )); then
    read -r _ _ TFLOOR _ _ < <(stats tmpfs-floor)
    echo
    echo "Supplementary, on tmpfs (fsync costs nothing there): the fixed cost of a submission."
    echo
    echo "| unit (tmpfs) | n | failed | median ms | p90 ms | − floor ms | × floor |"
    echo "|---|---|---|---|---|---|---|"
    for u in "${TMPFS_UNITS[@]}"; do
        read -r n fail med p90 _ < <(stats "$u")
        echo "| $u | $n | $fail | $med | $p90 | $(awk -v a="$med" -v b="$TFLOOR" 'BEGIN { printf "%.3f", a - b }') | $(awk -v a="$med" -v b="$TFLOOR" 'BEGIN { printf "%.2f", a / b }') |"
    done
fi
if [[ -n "$AUTO_LINE" ]]; then
    echo
    echo "| unit | n | failed | median ms | p90 ms | p99 ms | × fsync floor | delivery |"
    echo "|---|---|---|---|---|---|---|---|"
    echo "$AUTO_LINE"
fi
echo
echo "| peak RSS (\`/usr/bin/time -v\`, median of $RSS_RUNS) | KB | MB |"
echo "|---|---|---|"
printf '| **sendmail -t -odq < %d MB message (pipe)** (%s stored) | %s | %.2f |\n' "$BIG_MB" "$STORED" "$RSS_BIG" "$(awk -v k="$RSS_BIG" 'BEGIN { print k / 1024 }')"
printf '| sendmail -t -odq < 2 KB message | %s | %.2f |\n' "$RSS_SMALL" "$(awk -v k="$RSS_SMALL" 'BEGIN { print k / 1024 }')"
printf '| postern --version (binary baseline) | %s | %.2f |\n' "$RSS_VERSION" "$(awk -v k="$RSS_VERSION" 'BEGIN { print k / 1024 }')"
if [[ "$STATIC" == 1 ]]; then
    printf '| static-pie: sendmail -t -odq < %d MB message | %s | %.2f |\n' "$BIG_MB" "$SRSS_BIG" "$(awk -v k="$SRSS_BIG" 'BEGIN { print k / 1024 }')"
    printf '| static-pie: sendmail -t -odq < 2 KB message | %s | %.2f |\n' "$SRSS_SMALL" "$(awk -v k="$SRSS_SMALL" 'BEGIN { print k / 1024 }')"
    printf '| static-pie: postern --version | %s | %.2f |\n' "$SRSS_VERSION" "$(awk -v k="$SRSS_VERSION" 'BEGIN { print k / 1024 }')"
fi
if [[ "$FATLTO" == 1 ]]; then
    printf '| fat LTO: sendmail -t -odq < %d MB message | %s | %.2f |\n' "$BIG_MB" "$FRSS_BIG" "$(awk -v k="$FRSS_BIG" 'BEGIN { print k / 1024 }')"
    printf '| fat LTO: sendmail -t -odq < 2 KB message | %s | %.2f |\n' "$FRSS_SMALL" "$(awk -v k="$FRSS_SMALL" 'BEGIN { print k / 1024 }')"
    printf '| fat LTO: postern --version | %s | %.2f |\n' "$FRSS_VERSION" "$(awk -v k="$FRSS_VERSION" 'BEGIN { print k / 1024 }')"
fi
echo
echo "Targets: ≤ 1.25× the fsync floor, ≤ 4 MB peak RSS. Peers (../shared/bench, this machine):"
echo "dma 3.8×, nullmailer 5.2×, Postfix 11.7×; RSS nullmailer 3.0, dma 3.4, Postfix 7.1 MB."
