#!/usr/bin/env bash
# Loopback SMTP listener benchmark (issue 14 §1): Postern's `[listen]`
# (postern daemon) next to Postfix's smtpd on a loopback port (smtpd ->
# cleanup -> qmgr -> smtp), both relaying to the same sink. One client
# (bench/listener.py, Python smtplib) sends BENCH_N messages of ~2 KB over
# 1 and over 10 concurrent connections to each system; reported: messages/s
# at the client (first connect -> last 250), end-to-end messages/s (first
# connect -> last arrival at the sink) and the latency from the client's
# 250 to the sink's 250 for the same message (matched by Message-ID).
# See bench/listener.md.
#
#   sudo bench/listener.sh            (root: needed for the Postfix chroot)
#   bench/listener.sh                 (not root, or no chroot: Postern only)
#
# Knobs: BENCH_N=1000, BENCH_ROUNDS=3 (rounds per system and connection
# count, system order alternating), BENCH_CONNS="1 10",
# BENCH_DELIVER_TIMEOUT=120 (s, per wait for the sink),
# MTA_CHROOTS=/var/tmp/mta-chroots (the shared harness's chroots: its
# `postfix` chroot is copied, never changed), LISTENBENCH_DIR=/var/tmp/listenbench
# (the Postfix copy and the raw data of every run),
# BENCH_SYSTEMS="postern postern-noguard postfix" (postern-noguard: the same
# daemon with the outbound guard of issue 15 switched off, to show its cost),
# BENCH_POSTERN_EXTRA (TOML added to both Postern configs before their own
# sections, e.g. $'[queue]\nparallel = 5'; it must not name [limits]).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${BENCH_N:-1000}
ROUNDS=${BENCH_ROUNDS:-3}
read -r -a CONNS <<< "${BENCH_CONNS:-1 10}"
DELIVER_TIMEOUT=${BENCH_DELIVER_TIMEOUT:-120}
CHROOTS=${MTA_CHROOTS:-/var/tmp/mta-chroots}
LB=${LISTENBENCH_DIR:-/var/tmp/listenbench}
PF_SRC=$CHROOTS/postfix
PF_ROOT=$LB/postfix-chroot
CHROOT_PATH=/usr/sbin:/usr/bin:/sbin:/bin
read -r -a SYSTEMS <<< "${BENCH_SYSTEMS:-postern postern-noguard postfix}"

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# ------------------------------------------------------------ processes
PIDS=()          # everything we started, stopped by PID at the end
stop_pid() {     # TERM, wait up to 5 s, then KILL
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
mounts_under() { awk -v p="$1" '$5==p || index($5, p "/")==1 { print $5 }' /proc/self/mountinfo | sort -r; }
pf_pids() {      # processes whose root directory is our Postfix copy
    local p
    [ -d "$PF_ROOT" ] || return 0
    for p in /proc/[0-9]*; do [ "$p/root" -ef "$PF_ROOT" ] 2>/dev/null && echo "${p#/proc/}"; done
    return 0
}
pf_stop() {
    [ -d "$PF_ROOT/proc" ] || return 0
    if mountpoint -q "$PF_ROOT/proc"; then
        timeout 30 chroot "$PF_ROOT" /usr/bin/env -i PATH=$CHROOT_PATH postfix stop >/dev/null 2>&1 || true
    fi
    local pid i
    pid=$(tr -d ' ' 2>/dev/null < "$PF_ROOT/var/spool/postfix/pid/master.pid")
    [ -n "$pid" ] && [ "/proc/$pid/root" -ef "$PF_ROOT" ] 2>/dev/null && stop_pid "$pid"
    for i in $(seq 50); do [ -z "$(pf_pids)" ] && break; sleep 0.1; done
    for pid in $(pf_pids); do stop_pid "$pid"; done
    local m
    for m in $(mounts_under "$PF_ROOT"); do umount "$m" 2>/dev/null || umount -l "$m"; done
}
cleanup() {
    local pid
    log "stopping everything this run started"
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [ "$(id -u)" = 0 ] && pf_stop
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {    # $1 port, $2 seconds
    local i
    for i in $(seq $(($2 * 10))); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    return 1
}

# ------------------------------------------------------------ build
log "building Postern (release) and the sink"
(cd "$REPO" && cargo build --release --quiet && cargo build --release --quiet --example smtp_sink) \
    || die "cargo build failed"
POSTERN=$REPO/target/release/postern
SINK=$REPO/target/release/examples/smtp_sink

RUN_ID=$(date +%Y%m%d-%H%M%S)
W=$LB/runs/$RUN_ID
mkdir -p "$W/results"
ARR=$W/arrivals.txt

# Postfix only when root and the harness's chroot exists.
want_postfix=no
for s in "${SYSTEMS[@]}"; do [ "$s" = postfix ] && want_postfix=yes; done
if [ "$want_postfix" = yes ]; then
    if [ "$(id -u)" != 0 ]; then
        log "not root: Postfix left out (it runs in a chroot)"; want_postfix=no
    elif [ ! -f "$PF_SRC/.bench-ok" ]; then
        log "no Postfix chroot at $PF_SRC (run /work/shared/bench/run.sh setup): Postfix left out"; want_postfix=no
    fi
fi
if [ "$want_postfix" = no ]; then
    kept=()
    for s in "${SYSTEMS[@]}"; do [ "$s" = postfix ] || kept+=("$s"); done
    SYSTEMS=("${kept[@]}")
fi

# ------------------------------------------------------------ sink
SINK_PORT=$(free_port)
"$SINK" --listen "127.0.0.1:$SINK_PORT" --arrivals "$ARR" > /dev/null 2> "$W/sink.err" &
PIDS+=($!)
wait_port "$SINK_PORT" 10 || die "the sink did not come up (see $W/sink.err)"
log "sink (examples/smtp_sink) on 127.0.0.1:$SINK_PORT"

# ------------------------------------------------------------ postern
declare -A PORT
start_postern() {   # NAME EXTRA_TOML: a daemon with its own spool and port
    local name=$1 extra=$2 port pid d=$W/$1
    port=$(free_port)
    mkdir -p "$d"
    cat > "$d/postern.toml" <<EOF
# written by bench/listener.sh: Postern's listener relaying to the sink;
# every other setting is the default.
hostname = "benchhost.localdomain"
domain = "benchhost.localdomain"
spool_dir = "$d/spool"
log = "$d/postern.log"
${BENCH_POSTERN_EXTRA:-}
$extra
[[relay]]
host = "127.0.0.1"
port = $SINK_PORT
tls = "none"

[listen]
addresses = ["127.0.0.1:$port"]
EOF
    POSTERN_CONFIG=$d/postern.toml "$POSTERN" daemon < /dev/null > "$d/daemon.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port" 20 || die "postern daemon ($name) did not listen on $port (see $d/)"
    PORT[$name]=$port
    log "$name: postern daemon (pid $pid) listening on 127.0.0.1:$port"
}
for s in "${SYSTEMS[@]}"; do
    case $s in
        postern) start_postern postern "" ;;
        # The same with the outbound guard (issue 15: per-user limits and
        # the storm table, rewritten at every pickup) switched off: shows
        # what the guard costs. Not the default configuration.
        postern-noguard) start_postern postern-noguard $'[limits]\nenabled = false\n[limits.storm]\nthreshold = 0' ;;
        postfix) ;;
        *) die "unknown system $s (postern, postern-noguard, postfix)" ;;
    esac
done

# ------------------------------------------------------------ postfix
if [ "$want_postfix" = yes ]; then
    stamp="$(cat "$PF_SRC/.bench-ok") $(stat -c %Y "$PF_SRC/.bench-ok")"
    if [ "$(cat "$PF_ROOT/.listenbench-ok" 2>/dev/null)" != "$stamp" ]; then
        pf_stop
        [ -n "$(mounts_under "$PF_ROOT")" ] && die "mounts below $PF_ROOT: refusing to replace it"
        log "copying $PF_SRC to $PF_ROOT (the shared chroot is not changed)"
        rm -rf --one-file-system "$PF_ROOT"
        mkdir -p "$LB"
        cp -a "$PF_SRC" "$PF_ROOT" || die "copy failed"
        echo "$stamp" > "$PF_ROOT/.listenbench-ok"
    fi
    pf_stop   # leftovers of an interrupted run
    PF_PORT=$(free_port)
    mount -t proc proc "$PF_ROOT/proc" && mount --make-private "$PF_ROOT/proc"
    mount --bind /dev "$PF_ROOT/dev" && mount --make-private "$PF_ROOT/dev"
    echo benchhost.localdomain > "$PF_ROOT/etc/mailname"
    cat > "$PF_ROOT/etc/postfix/main.cf" <<EOF
# written by bench/listener.sh: Postfix's smtpd on a loopback port relaying
# every message to the sink (a null client with a listener); everything
# else is the Debian default.
compatibility_level = 3.6
myhostname = benchhost.localdomain
myorigin = \$myhostname
mydestination =
relayhost = [127.0.0.1]:$SINK_PORT
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
maillog_file = /var/log/postfix.log
EOF
    cp "$PF_ROOT/usr/share/postfix/master.cf.dist" "$PF_ROOT/etc/postfix/master.cf"
    pfc() { chroot "$PF_ROOT" /usr/bin/env -i PATH=$CHROOT_PATH "$@"; }
    pfc postconf -M# smtp/inet >/dev/null 2>&1
    pfc postconf -M "127.0.0.1:$PF_PORT/inet=127.0.0.1:$PF_PORT inet n - n - - smtpd" || die "postconf -M failed"
    # we are already in a chroot: no per-service chroot jail
    pfc postconf -F '*/*/chroot = n' >/dev/null
    pfc postsuper -d ALL >/dev/null 2>&1 || true
    timeout 60 chroot "$PF_ROOT" /usr/bin/env -i PATH=$CHROOT_PATH postfix start > "$W/postfix-start.log" 2>&1 \
        || die "postfix start failed (see $W/postfix-start.log)"
    wait_port "$PF_PORT" 20 || die "Postfix smtpd did not listen on $PF_PORT"
    PORT[postfix]=$PF_PORT
    log "Postfix $(pfc postconf -h mail_version) smtpd listening on 127.0.0.1:$PF_PORT"
fi

{
    echo "run_id=$RUN_ID"
    echo "n=$N rounds=$ROUNDS conns=${CONNS[*]} systems=${SYSTEMS[*]}"
    echo "postern=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null)$(cd "$REPO" && git diff --quiet HEAD 2>/dev/null || echo +dirty)"
    [ "$want_postfix" = yes ] && echo "postfix=$(chroot "$PF_ROOT" /usr/sbin/postconf -h mail_version)"
    echo "cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo) x $(nproc)"
    echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
} > "$W/meta.txt"

# ------------------------------------------------------------ measure
one() {   # system conns round
    local sys=$1 c=$2 r=$3 tag="$1-$2-$3" i got=0 rc=0
    python3 "$REPO/bench/listener.py" send 127.0.0.1 "${PORT[$sys]}" "$N" "$c" "$tag" \
        "$W/results/$sys.$c.$r.txt" 2>> "$W/client.err" || rc=$?
    [ "$rc" = 0 ] || log "$tag: the client reported errors (see $W/client.err)"
    # wait until the sink holds the accepted messages, so runs never overlap
    local want; want=$(grep -vc '^#' "$W/results/$sys.$c.$r.txt")
    for i in $(seq $((DELIVER_TIMEOUT * 10))); do
        got=$(grep -c "<$tag\." "$ARR" 2>/dev/null)
        [ "${got:-0}" -ge "$want" ] && break
        sleep 0.1
    done
    [ "${got:-0}" -ge "$want" ] || log "$tag: only ${got:-0} of $want at the sink after ${DELIVER_TIMEOUT}s"
    sleep 1
}

log "run $RUN_ID: N=$N rounds=$ROUNDS conns=${CONNS[*]} systems=${SYSTEMS[*]} raw=$W"
for r in $(seq "$ROUNDS"); do
    for c in "${CONNS[@]}"; do
        # rotate the order every round: slow drifts in load hit all alike
        order=()
        for k in "${!SYSTEMS[@]}"; do order+=("${SYSTEMS[$(((k + r) % ${#SYSTEMS[@]}))]}"); done
        for s in "${order[@]}"; do one "$s" "$c" "$r" >&2; done
    done
done
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >> "$W/meta.txt"

{
    echo "## Listener benchmark $RUN_ID"
    echo
    sed 's/^/    /' "$W/meta.txt"
    echo
    python3 "$REPO/bench/listener.py" report "$ARR" "$W"/results/*.txt
} > "$W/report.md"
cat "$W/report.md"
log "report: $W/report.md"
