#!/usr/bin/env bash
# bench/run.sh — Postern's delivery-side benchmark in one command, on
# 127.0.0.1, without chroots (the conventions of ../shared/bench: distinct
# ~2 KB messages, warm and cold drains, floors measured in the same run,
# every wait bounded). See bench/README.md for what each phase measures.
#
# usage: bench/run.sh                (all phases, prints a markdown table)
#
# Knobs (environment):
#   BENCH_PHASES="submit drain big cpu"  subset of phases to run
#   BENCH_N=1000            messages per drain (phase drain)
#   BENCH_ROUNDS=2          repetitions of each drain mode (median reported)
#   BENCH_SUBMIT_N=500      submissions per unit in phase submit
#   BENCH_BIG_MB=50         size of the message in phase big
#   BENCH_CPU_SIZES="1000 10000"  queue sizes of phase cpu (e.g. "1000 100000")
#   BENCH_BINS="postern=target/release/postern"  label=binary pairs, space
#                           separated: every phase runs each, in the same run
#                           (e.g. "before=/tmp/old/postern after=target/release/postern")
#   BENCH_QUEUE_<label>     keys added to that binary's [queue] table (the
#                           config has one already, so BENCH_TOML cannot add
#                           a second), e.g. BENCH_QUEUE_p4='parallel = 4'
#   BENCH_TOML_<label>      TOML appended to the config of that binary's runs, e.g.
#                           BENCH_TOML_b=$'[smtp]\nmax_messages_per_session = 1000'
#                           (the same binary under two labels compares settings)
#   BENCH_SINKS=auto        ours (examples/smtp_sink), postfix (Postfix's
#                           smtp-sink, when installed) or "ours postfix";
#                           auto = ours, plus postfix when smtp-sink is found
#   BENCH_TIMEOUT=900       upper bound (s) on every wait
#   BENCH_DIR               work directory (default: new one under /var/tmp)
#   BENCH_KEEP=1            keep BENCH_DIR;  BENCH_NO_BUILD=1  use existing builds
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
PHASES="${BENCH_PHASES:-submit drain big cpu}"
N="${BENCH_N:-1000}"
ROUNDS="${BENCH_ROUNDS:-2}"
SUBMIT_N="${BENCH_SUBMIT_N:-500}"
BIG_MB="${BENCH_BIG_MB:-50}"
CPU_SIZES="${BENCH_CPU_SIZES:-1000 10000}"
TIMEOUT="${BENCH_TIMEOUT:-900}"
BINS="${BENCH_BINS:-postern=$here/target/release/postern}"
SINKS="${BENCH_SINKS:-auto}"
TCK=$(getconf CLK_TCK)

say() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { say "FATAL: $*"; exit 1; }
has() { [[ " $PHASES " == *" $1 "* ]]; }

# ---- build and tools ---------------------------------------------------------
cd "$here"
if [[ "${BENCH_NO_BUILD:-0}" != 1 ]]; then
    say "building the release binary and examples/smtp_sink..."
    cargo build --release --bin postern --example smtp_sink >&2
fi
OUR_SINK="$here/target/release/examples/smtp_sink"
[[ -x "$OUR_SINK" ]] || die "no sink at $OUR_SINK (cargo build --release --example smtp_sink)"
command -v gcc >/dev/null || die "gcc is needed (apt-get install gcc)"
PF_SINK="$(command -v smtp-sink || true)"
[[ -z "$PF_SINK" && -x /usr/sbin/smtp-sink ]] && PF_SINK=/usr/sbin/smtp-sink
if [[ "$SINKS" == auto ]]; then
    SINKS=ours
    [[ -n "$PF_SINK" ]] && SINKS="ours postfix"
fi
[[ " $SINKS " == *" postfix "* && -z "$PF_SINK" ]] && die "BENCH_SINKS names postfix but smtp-sink is not installed"

DIR="${BENCH_DIR:-$(mktemp -d /var/tmp/postern-bench.XXXXXX)}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
PIDS=()   # everything we started and still run, stopped by PID at exit
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [[ "${BENCH_KEEP:-0}" != 1 ]]; then rm -rf "$DIR"; else say "raw data kept in $DIR"; fi
}
trap cleanup EXIT
forget() { # pid: no longer ours to stop
    local p keep=()
    for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
stop() { # pid: SIGTERM, wait (bounded), then SIGKILL
    local i
    kill "$1" 2>/dev/null || true
    for (( i = 0; i < 300; i++ )); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget "$1"
}
mkdir -p "$DIR/tools" "$DIR/msgs" "$DIR/out"
gcc -O2 -Wall -o "$DIR/tools/fsync_floor" bench/fsync_floor.c
gcc -O2 -Wall -o "$DIR/tools/submit_loop" bench/submit_loop.c
LOOP="$DIR/tools/submit_loop"

# Each binary under test gets its own copy (a rebuild during the run changes nothing).
LABELS=()
for pair in $BINS; do
    label="${pair%%=*}" bin="${pair#*=}"
    [[ "$label" != "$pair" && -x "$bin" ]] || die "BENCH_BINS: '$pair' is not label=executable"
    mkdir -p "$DIR/bin-$label"
    cp "$bin" "$DIR/bin-$label/postern"
    ln -sf postern "$DIR/bin-$label/sendmail"
    LABELS+=("$label")
done

# 1000 distinct ~2 KB messages, as `sendmail -t` callers send them (bigger
# queues reuse them: each submission is still its own queued message).
MSGS=1000
awk -v n="$MSGS" -v dir="$DIR/msgs" 'BEGIN {
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

# ---- helpers -----------------------------------------------------------------
now() { date +%s.%N; }
ticks() { # pid -> utime+stime of the process (all its threads), in clock ticks
    local s
    [[ -n "$1" ]] && s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    s="${s##*) }"; set -- $s; echo $(( ${12} + ${13} ))
}
free_port() {
    local p i
    for (( i = 0; i < 100; i++ )); do
        p=$(( 20000 + RANDOM % 20000 ))
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
    die "no free port"
}
config() { # dir port [extra toml lines]
    mkdir -p "$1"
    {
        printf 'hostname = "web1.example.com"\ndomain = "example.com"\n'
        printf 'spool_dir = "%s/spool"\nlog = "%s/postern.log"\n' "$1" "$1"
        printf 'max_message_size = "%dM"\n' $(( BIG_MB + 16 ))
        # retry_min: a queue made deferred (relay down) is not retried
        # before the measured flush, however long taking it in lasts.
        printf '[queue]\nrun_on_submit = false\nretry_min = "1h"\n%s\n' "${3:-}"
        printf '[[relay]]\nhost = "127.0.0.1"\nport = %s\ntls = "none"\n' "$2"
    } > "$1/postern.toml"
}
label_toml() { # label dir: BENCH_QUEUE_<label> into [queue], BENCH_TOML_<label> at the end
    local q="BENCH_QUEUE_$1" v="BENCH_TOML_$1"
    if [[ -n "${!q:-}" ]]; then
        printf '%s\n' "${!q}" > "$2/queue.extra"
        sed -i "/^retry_min = \"1h\"\$/r $2/queue.extra" "$2/postern.toml"
    fi
    if [[ -n "${!v:-}" ]]; then printf '%s\n' "${!v}" >> "$2/postern.toml"; fi
}
SINK_PID="" SINK_KIND="" SINK_OUT=""
sink_up() { # kind port out-dir
    SINK_KIND=$1 SINK_OUT=$3
    mkdir -p "$3"
    if [[ "$1" == ours ]]; then
        "$OUR_SINK" --listen "127.0.0.1:$2" > "$3/sink.log" 2> "$3/sink.err" &
    else
        mkdir -p "$3/dump" && chmod 777 "$3/dump"
        "$PF_SINK" -u nobody -m 2000 -c -d "$3/dump/m." "127.0.0.1:$2" 4096 > "$3/sink.log" 2>&1 &
    fi
    SINK_PID=$!
    PIDS+=("$SINK_PID")
    local i
    for (( i = 0; i < 200; i++ )); do
        (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
        sleep 0.05
    done
    die "sink ($1) did not come up on 127.0.0.1:$2"
}
sink_count() {
    if [[ "$SINK_KIND" == ours ]]; then grep -c '^from=' "$SINK_OUT/sink.log" || true
    else find "$SINK_OUT/dump" -type f | wc -l; fi
}
sink_down() { # prints the number of SMTP sessions the sink saw
    [[ -n "$SINK_PID" ]] || { echo 0; return; }
    stop "$SINK_PID"
    SINK_PID=""
    if [[ "$SINK_KIND" == ours ]]; then
        sed -n 's/.* session=\([0-9]*\)$/\1/p' "$SINK_OUT/sink.log" | sort -u | wc -l
    else # smtp-sink -c: the last counter line, "sess quit mesg" counts
        tr '\r' '\n' < "$SINK_OUT/sink.log" | awk '/sess/ { s = $0 } END {
            n = split(s, f, /[ ]+/); for (i = 1; i < n; i++) if (f[i + 1] == "sess") v = f[i]
            print v + 0 }'
    fi
}
count_files() { find "$1" -mindepth 1 -maxdepth 1 -type f 2>/dev/null | wc -l; }
wait_for() { # description, then a command that succeeds when done; bounded by TIMEOUT
    local what="$1" t0; shift
    t0=$(date +%s)
    until "$@"; do
        (( $(date +%s) - t0 < TIMEOUT )) || { say "timeout: $what"; return 1; }
        sleep "$POLL"
    done
}
drained() { # spool expected
    [[ $(sink_count) -ge $2 ]] && [[ $(count_files "$1/queue") -eq 0 ]] && [[ $(count_files "$1/maildrop") -eq 0 ]]
}
POLL=0.02   # poll interval of wait_for; set_poll scales it with the queue
set_poll() { POLL=$(awk -v n="$1" 'BEGIN { p = n / 500000; if (p < 0.02) p = 0.02; printf "%.3f", p }'); }
started_since() { [[ $(grep -c "daemon started" "$1" || true) -gt $2 ]]; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

# A spool of n submitted messages (in maildrop, as `sendmail -odq` leaves
# them), made once per size and copied for every run. Up to MSGS are
# submitted; beyond that the submitted entries are cloned under new queue
# ids, each with its own Subject (the id and the Subject are rewritten in
# place at the same length, so the header stays true; distinct subjects
# keep the outbound guard's storm collapse from holding the clones) —
# submitting 100 000 one by one would take longer than the rest of the run.
fill() { # n -> path of the pristine spool
    local n=$1 d="$DIR/fill-$1"
    if [[ ! -d "$d/spool" ]]; then
        local k=$(( n < MSGS ? n : MSGS ))
        say "queueing $n messages (sendmail -t -odq: $k, then clones)..."
        rm -rf "$d"; config "$d" 9 ""
        "$LOOP" -n "$k" -k 0 -i "$DIR/msgs/msg-%d.eml" -o /dev/null -e "$DIR/out/fill.err" \
            -E "POSTERN_CONFIG=$d/postern.toml" -E PATH=/usr/bin:/bin -- "$DIR/bin-${LABELS[0]}/sendmail" -t -odq >/dev/null \
            || die "queueing failed (see $DIR/out/fill.err)"
        (( n <= k )) || python3 - "$d/spool/maildrop" "$n" <<'PY' || die "cannot clone maildrop entries"
import os, sys
drop, n = sys.argv[1], int(sys.argv[2])
alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
names = sorted(os.listdir(drop))
have, k = set(names), 0
while len(have) < n:
    for name in names:
        if len(have) >= n:
            break
        new = name[:-3] + "".join(alphabet[(k >> s) & 31] for s in (10, 5, 0))
        if new in have:
            continue
        with open(os.path.join(drop, name), "rb") as f:
            data = f.read()
        path = os.path.join(drop, new)
        with open(path, "wb") as f:
            data = data.replace(b"\nid " + name.encode() + b"\n", b"\nid " + new.encode() + b"\n", 1)
            # "benchmark message " (18 bytes) -> "clone " + 11 id bytes + " "
            f.write(data.replace(b"Subject: benchmark message ", b"Subject: clone " + new[4:].encode() + b" ", 1))
        st = os.stat(os.path.join(drop, name))
        os.chmod(path, st.st_mode & 0o7777)
        os.chown(path, st.st_uid, st.st_gid)
        have.add(new)
    k += 1
PY
    fi
    echo "$d/spool"
}
DAEMON_PID=""
daemon_up() { # label dir
    POSTERN_CONFIG="$2/postern.toml" "$DIR/bin-$1/postern" daemon >> "$2/daemon.out" 2>&1 &
    DAEMON_PID=$!
    PIDS+=("$DAEMON_PID")
}
daemon_down() { [[ -z "$DAEMON_PID" ]] || stop "$DAEMON_PID"; DAEMON_PID=""; }
idle() { # the daemon took every entry in and used no CPU for 0.5 s
    local spool=$1 a b
    [[ $(count_files "$spool/maildrop") -eq 0 ]] || return 1
    a=$(ticks "$DAEMON_PID"); sleep 0.5; b=$(ticks "$DAEMON_PID")
    [[ "$a" == "$b" ]]
}

# A queue of n deferred messages: the daemon took them in and failed each
# attempt while the relay was down (connection refused), as after an outage.
prepare_deferred() { # label n dir port -> leaves the daemon running
    local label=$1 n=$2 d=$3 port=$4
    rm -rf "$d"; config "$d" "$port"; label_toml "$label" "$d"
    cp -a "$(fill "$n")" "$d/spool"
    daemon_up "$label" "$d"
    wait_for "$label: $n deferred" idle "$d/spool" || die "the queue did not settle"
}
# The same, made once per size by the first binary and copied for the
# others, whose daemon then starts on it (phase cpu: taking 100 000 in and
# failing each takes minutes, and is not what that phase measures).
deferred_copy() { # label n dir port -> leaves the daemon running, idle
    local label=$1 n=$2 d=$3 port=$4 c="$DIR/deferred-$2"
    if [[ ! -d "$c/spool" ]]; then
        prepare_deferred "$label" "$n" "$d" "$port"
        daemon_down
        rm -rf "$c"; mkdir -p "$c"; cp -a "$d/spool" "$c/spool"
    fi
    rm -rf "$d"; config "$d" "$port"; label_toml "$label" "$d"
    cp -a "$c/spool" "$d/spool"
    daemon_up "$label" "$d"
    wait_for "$label: daemon started on $n deferred" idle "$d/spool" || die "the daemon did not settle"
}

RESULTS="$DIR/results"
: > "$RESULTS"
row() { printf '%s\n' "$*" >> "$RESULTS"; }

# ---- phase submit: latency of a 2 KB submission vs the fsync floor ------------
if has submit; then
    say "submit: $SUBMIT_N submissions per unit, 5 interleaved rounds..."
    per=$(( (SUBMIT_N + 4) / 5 ))
    units=(floor)
    for l in "${LABELS[@]}"; do units+=("$l"); config "$DIR/submit-$l" 9 ""; label_toml "$l" "$DIR/submit-$l"; done
    mkdir -p "$DIR/floor"
    for (( r = 0; r < 5; r++ )); do
        for (( i = 0; i < ${#units[@]}; i++ )); do
            u="${units[$(( (i + r) % ${#units[@]} ))]}"
            if [[ "$u" == floor ]]; then
                "$LOOP" -n "$per" -k 0 -i "$DIR/msgs/msg-%d.eml" -o "$DIR/out/submit-floor.$r" -- "$DIR/tools/fsync_floor" "$DIR/floor" >/dev/null
            else
                "$LOOP" -n "$per" -k 0 -i "$DIR/msgs/msg-%d.eml" -o "$DIR/out/submit-$u.$r" -e "$DIR/out/submit.err" \
                    -E "POSTERN_CONFIG=$DIR/submit-$u/postern.toml" -E PATH=/usr/bin:/bin -- "$DIR/bin-$u/sendmail" -t -odq >/dev/null \
                    || say "  $u: some submissions failed"
            fi
        done
    done
    floor=$(cat "$DIR/out/submit-floor".* | awk '{ print $2 / 1000 }' | median)
    row "submit|floor: write+fsync+rename+fsync dir|$(calc %.3f "$floor") ms|1.00×"
    for l in "${LABELS[@]}"; do
        m=$(cat "$DIR/out/submit-$l".* | awk '{ print $2 / 1000 }' | median)
        row "submit|$l: sendmail -t -odq, ${MSG_BYTES} B, median of $(( per * 5 ))|$(calc %.3f "$m") ms|$(calc %.2f× "$m / $floor")"
    done
fi

# ---- phase drain: N queued, warm and cold, per sink --------------------------
drain_once() { # label sink mode n -> "rate cpu_ms_per_msg sessions secs"
    local label=$1 sink=$2 mode=$3 n=$4 d="$DIR/drain" port t0 t1 c0 c1 sess
    port=$(free_port); set_poll "$n"
    prepare_deferred "$label" "$n" "$d" "$port"
    if [[ "$mode" == cold ]]; then daemon_down; fi
    sink_up "$sink" "$port" "$d/sink"
    t0=$(now)
    c0=$(ticks "$DAEMON_PID")
    if [[ "$mode" == cold ]]; then
        # the flush must reach this daemon (with none reading the FIFO,
        # `postern flush` would deliver in its own process)
        local started; started=$(grep -c "daemon started" "$d/postern.log" || true)
        daemon_up "$label" "$d"
        c0=0
        wait_for "$label: daemon up" started_since "$d/postern.log" "$started" || true
    fi
    POSTERN_CONFIG="$d/postern.toml" "$DIR/bin-$label/postern" flush >> "$d/flush.out" 2>&1 || say "flush failed"
    wait_for "$label $mode drain of $n" drained "$d/spool" "$n" || true
    t1=$(now)
    c1=$(ticks "$DAEMON_PID")
    daemon_down
    local got; got=$(sink_count)
    sess=$(sink_down)
    (( got >= n )) || say "  $label $mode: only $got of $n delivered"
    echo "$(calc %.0f "$n / ($t1 - $t0)") $(calc %.3f "($c1 - $c0) * 1000 / $TCK / $n") $sess $(calc %.2f "$t1 - $t0")"
}
if has drain; then
    for sink in $SINKS; do
        for mode in warm cold; do
            for l in "${LABELS[@]}"; do : > "$DIR/out/drain-$sink-$mode-$l"; done
            for (( r = 0; r < ROUNDS; r++ )); do
                for l in "${LABELS[@]}"; do
                    say "drain: $l, $N queued, $mode, sink $sink, round $(( r + 1 ))/$ROUNDS..."
                    drain_once "$l" "$sink" "$mode" "$N" | tee -a "$DIR/out/drain-$sink-$mode-$l" >&2
                done
            done
            for l in "${LABELS[@]}"; do
                f="$DIR/out/drain-$sink-$mode-$l"
                rate=$(awk '{ print $1 }' "$f" | median)
                cpu=$(awk '{ print $2 }' "$f" | median)
                sess=$(awk '{ print $3 }' "$f" | median)
                row "drain|$l: $N queued, $mode, sink $sink (median of $ROUNDS: msg/s; sessions; daemon CPU/msg)|$rate msg/s|$sess sessions, $cpu ms CPU/msg; rounds: $(awk '{ printf "%s ", $1 }' "$f")"
            done
        done
    done
fi

# ---- phase big: one BIG_MB MB message, submit -> delivered --------------------
if has big; then
    awk -v mb="$BIG_MB" 'BEGIN {
        printf "From: Big <big@example.com>\nTo: big@example.org\nSubject: %d MB\n\n", mb
        line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?()[]"
        n = int(mb * 1048576 / (length(line) + 1))
        for (i = 0; i < n; i++) print line
    }' > "$DIR/big.eml"
    sink=${SINKS%% *}
    for l in "${LABELS[@]}"; do
        : > "$DIR/out/big-$l"
        for (( r = 0; r < 3; r++ )); do
            d="$DIR/big"; rm -rf "$d"; port=$(free_port); config "$d" "$port"; label_toml "$l" "$d"; set_poll 1
            sink_up "$sink" "$port" "$d/sink"
            daemon_up "$l" "$d"
            wait_for "daemon up" grep -qs "daemon started" "$d/postern.log" || true
            t0=$(now)
            POSTERN_CONFIG="$d/postern.toml" "$DIR/bin-$l/sendmail" -t < "$DIR/big.eml" >> "$d/submit.out" 2>&1 || say "big submission failed"
            t1=$(now)
            wait_for "$l: big message delivered" drained "$d/spool" 1 || true
            t2=$(now)
            daemon_down; sink_down >/dev/null
            echo "$(calc %.3f "$t1 - $t0") $(calc %.3f "$t2 - $t0")" >> "$DIR/out/big-$l"
        done
        row "big|$l: ${BIG_MB} MB, sendmail -t with the daemon running, sink $sink (median of 3: submit returned; delivered)|$(awk '{ print $2 }' "$DIR/out/big-$l" | median) s|submit returned after $(awk '{ print $1 }' "$DIR/out/big-$l" | median) s"
    done
fi

# ---- phase cpu: daemon CPU per delivered message, and mailq/status, by size ---
if has cpu; then
    sink=${SINKS%% *}
    for n in $CPU_SIZES; do
        for l in "${LABELS[@]}"; do
            say "cpu: $l, $n queued (daemon started on them, then flush; sink $sink)..."
            d="$DIR/cpu"; port=$(free_port); set_poll "$n"
            deferred_copy "$l" "$n" "$d" "$port"
            t0=$(now); POSTERN_CONFIG="$d/postern.toml" "$DIR/bin-$l/postern" queue list > "$d/mailq.out" 2>&1 || true; t1=$(now)
            listed=$(grep -c '^[0-9A-Z]\{10,\}' "$d/mailq.out" || true)
            t2=$(now); POSTERN_CONFIG="$d/postern.toml" "$DIR/bin-$l/postern" status > "$d/status.out" 2>&1 || true; t3=$(now)
            sink_up "$sink" "$port" "$d/sink"
            c0=$(ticks "$DAEMON_PID"); t4=$(now)
            POSTERN_CONFIG="$d/postern.toml" "$DIR/bin-$l/postern" flush >> "$d/flush.out" 2>&1 || say "flush failed"
            wait_for "$l cpu drain of $n" drained "$d/spool" "$n" || true
            t5=$(now); c1=$(ticks "$DAEMON_PID")
            daemon_down; sess=$(sink_down)
            row "cpu|$l: $n queued: daemon CPU per delivered message, flush to last delivery (msg/s; sessions)|$(calc %.3f "($c1 - $c0) * 1000 / $TCK / $n") ms|$(calc %.0f "$n / ($t5 - $t4)") msg/s, $sess sessions"
            row "cpu|$l: $n queued: mailq (queue list, $listed listed) per queued message|$(calc %.1f "($t1 - $t0) * 1000000 / $n") µs|total $(calc %.2f "$t1 - $t0") s"
            row "cpu|$l: $n queued: status per queued message|$(calc %.1f "($t3 - $t2) * 1000000 / $n") µs|total $(calc %.2f "$t3 - $t2") s"
        done
    done
fi

# ---- report ------------------------------------------------------------------
echo
echo "## bench/run.sh ($(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; spool on $(df -T "$DIR" | awk 'NR == 2 { print $2 }');"
echo "binaries: $BINS; sinks: $SINKS."
echo
echo "| phase | what | result | notes |"
echo "|---|---|---|---|"
awk -F'|' '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }' "$RESULTS"
