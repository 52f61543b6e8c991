#!/usr/bin/env bash
# Postern package install test: the .deb in a fresh Debian chroot, with real
# callers (PHP mail(), bsd-mailx, cron) delivering through a real SMTP server
# with STARTTLS and AUTH on 127.0.0.1; then remove, purge, another MTA, an
# upgrade; and the .rpm's metadata checked with rpm -qp.
#
# Run as root on a Debian host (debootstrap is installed when missing):
#
#   tests/install/run.sh
#
# Environment:
#   POSTERN_DEB=FILE, POSTERN_RPM=FILE   use these packages instead of building
#                                        them with scripts/build-packages.sh
#   POSTERN_SINK_BIN=FILE                smtp_sink binary (default: cargo build
#                                        --example smtp_sink)
#   POSTERN_INSTALL_CACHE=DIR            chroot cache (default
#                                        /var/tmp/postern-install-test)
#   POSTERN_INSTALL_REFRESH=1            rebuild the cached chroots
#   POSTERN_INSTALL_KEEP=1               keep this run's chroot and logs
#   POSTERN_INSTALL_REAL_CRON=0          skip the real cron job (it needs the
#                                        next minute boundary, up to 90 s)
#   POSTERN_INSTALL_OTHER_MTA=PKG        the MTA present before (nullmailer)
#   POSTERN_INSTALL_PARALLEL=N           [queue] parallel = N in the test's
#                                        config (default: the package's)
#   POSTERN_INSTALL_EVIDENCE=DIR         when a delivered-mail check fails,
#                                        copy the sink's mail, the daemon log
#                                        and the spool to DIR/HHMMSS.PID
#
# Layout: CACHE/base (debootstrap minbase bookworm), CACHE/callers (base + the
# other MTA, php-cli, bsd-mailx, cron, rpm), both reused; each run copies
# callers to CACHE/run.PID/chroot. The chroot shares the host's network, so
# the daemon inside reaches the SMTP server on the host's 127.0.0.1.
#
# Exit status: 0 when every check passed; 1 otherwise (the failed checks are
# listed at the end); 2 for a setup problem.
set -uo pipefail
# With pipefail, never `producer | grep -q`: grep -q exits at its first
# match, and a producer that still writes (bash's echo writes one line per
# write(2)) dies of SIGPIPE (status 141), which fails the pipeline although
# grep matched. Give grep the text as a here-string (`grep -q RE <<<"$x"`)
# or the file itself.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${POSTERN_INSTALL_CACHE:-/var/tmp/postern-install-test}
SUITE=bookworm
OTHER_MTA=${POSTERN_INSTALL_OTHER_MTA:-nullmailer}
CALLER_PKGS="$OTHER_MTA php-cli bsd-mailx cron procps passwd rpm"
LAYER_RECIPE="v1 $SUITE $CALLER_PKGS alice"
REAL_CRON=${POSTERN_INSTALL_REAL_CRON:-1}
CHROOT_PATH=/usr/sbin:/usr/bin:/sbin:/bin
RUN=$CACHE/run.$$
CH=$RUN/chroot
SINK_DIR=$RUN/sink
TOKEN=t$$x$RANDOM

T0=$(date +%s.%N)
declare -a RESULTS=() FAILED=() TIMINGS=()
SINK_PID='' DAEMON_PID='' CRON_PID='' PORT=''

# ------------------------------------------------------------------ output
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '[%s +%ss] %s\n' "$(date +%H:%M:%S)" "$(since "$T0")" "$*" >&2; }
die() { log "SETUP FAILED: $*"; exit 2; }
pass() { RESULTS+=("PASS  $1"); log "  ok: $1"; }
fail() { RESULTS+=("FAIL  $1${2:+ -- $2}"); FAILED+=("$1${2:+ -- $2}"); log "  FAIL: $1${2:+ -- $2}"; }
skip() { RESULTS+=("SKIP  $1${2:+ -- $2}"); log "  skipped: $1${2:+ -- $2}"; }
# check NAME CMD...: run CMD, record pass/fail (CMD's output goes to the log)
check() { local n=$1; shift; if "$@" >>"$RUN/checks.log" 2>&1; then pass "$n"; else fail "$n" "see $RUN/checks.log"; fi; }
step_start() { STEP_NAME=$1; STEP_T=$(now); log "== $1"; }
step_end() { TIMINGS+=("$(printf '%-44s %6ss' "$STEP_NAME" "$(since "$STEP_T")")"); }

# ------------------------------------------------------------------ mounts, processes
mounts_under() { awk -v p="$1" '$5==p || index($5, p "/")==1 { print $5 }' /proc/self/mountinfo | sort -r; }
umount_under() { local m; for m in $(mounts_under "$1"); do umount "$m" 2>/dev/null || umount -l "$m"; done; }
mount_chroot() {
    local r=$1
    mountpoint -q "$r/proc" || { mount -t proc proc "$r/proc" && mount --make-private "$r/proc"; } || return 1
    mountpoint -q "$r/dev" || { mount --bind /dev "$r/dev" && mount --make-private "$r/dev"; } || return 1
    mkdir -p "$r/dev/pts"
    mountpoint -q "$r/dev/pts" || { mount --bind /dev/pts "$r/dev/pts" && mount --make-private "$r/dev/pts"; } || return 1
}
safe_rm() {   # remove a directory of ours that has no mount below it
    local d=$1
    [ -n "$(mounts_under "$d")" ] && { log "refusing to remove $d: mounts below it"; return 1; }
    case "$d" in "$CACHE"/?*) rm -rf --one-file-system "$d" ;; *) log "refusing to remove $d"; return 1 ;; esac
}
chroot_pids() {   # processes whose root is the chroot $1
    local p
    for p in /proc/[0-9]*; do [ "$p/root" -ef "$1" ] 2>/dev/null && echo "${p#/proc/}"; done
    return 0
}
stop_pid() {   # TERM, wait up to $2 s, then KILL
    local pid=$1 t=${2:-10} i
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < t * 10; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null; return 0
}
kill_chroot_procs() {
    local r=$1 pids i
    [ -d "$r" ] || return 0
    pids=$(chroot_pids "$r"); [ -z "$pids" ] && return 0
    log "stopping processes left in $r: $(echo $pids)"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null
    for ((i = 0; i < 50; i++)); do pids=$(chroot_pids "$r"); [ -z "$pids" ] && return 0; sleep 0.1; done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null; return 0
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$DAEMON_PID" 5
    stop_pid "$CRON_PID" 5
    [ -d "$CH" ] && kill_chroot_procs "$CH"
    stop_pid "$SINK_PID" 5
    [ -d "$CH" ] && umount_under "$CH"
    [ -d "$CACHE/.layer.tmp" ] && { kill_chroot_procs "$CACHE/.layer.tmp"; umount_under "$CACHE/.layer.tmp"; }
    if [ "${POSTERN_INSTALL_KEEP:-0}" = 1 ]; then
        log "kept $RUN (chroot, sink maildir, logs)"
    elif [ -d "$RUN" ]; then
        [ -n "$(mounts_under "$RUN")" ] || safe_rm "$RUN"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run a command in the chroot as root, clean environment, bounded in time.
in_ch() { timeout -k 5 "${TMO:-120}" chroot "$CH" /usr/bin/env -i PATH=$CHROOT_PATH HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
# Run a shell command in the chroot as USER (su, as a login-less service would).
as_user() { local u=$1; shift; in_ch su -s /bin/sh "$u" -c "$*"; }
# In a layer being built.
in_layer() { timeout -k 5 900 chroot "$1" /usr/bin/env -i PATH=$CHROOT_PATH HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "${@:2}"; }

# ------------------------------------------------------------------ preflight
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, mounts)"
mkdir -p "$CACHE" "$RUN" "$SINK_DIR"
: > "$RUN/checks.log"
exec 9>"$CACHE/.lock"
flock -w 900 9 || die "another install test holds $CACHE/.lock"

# Leftovers of runs that died without their trap.
for d in "$CACHE"/run.*; do
    [ -d "$d" ] || continue
    pid=${d##*.}
    [ "$pid" = $$ ] && continue
    kill -0 "$pid" 2>/dev/null && continue
    log "removing stale $d"
    kill_chroot_procs "$d/chroot"; umount_under "$d"; safe_rm "$d" || true
done

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v python3 >/dev/null || need+=(python3)
command -v lintian >/dev/null || need+=(lintian)
command -v rpmlint >/dev/null || need+=(rpmlint)
if [ ${#need[@]} -gt 0 ]; then
    log "installing on the host: ${need[*]}"
    timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${need[@]}" >/dev/null \
        || die "cannot install ${need[*]}"
fi

host_mirror() {   # $1 = suite; from the host's deb822 sources, else sources.list
    local want=$1 f=/etc/apt/sources.list.d/debian.sources
    if [ -r "$f" ]; then
        awk -v want="$want" '
            /^[[:space:]]*$/ { if (uri != "" && hit) { print uri; exit } uri=""; hit=0; next }
            /^URIs:/ { uri=$2 }
            /^Suites:/ { for (i=2;i<=NF;i++) if ($i==want) hit=1 }
            END { if (uri != "" && hit) print uri }' "$f" | head -n1 && return
    fi
    [ -r /etc/apt/sources.list ] && awk -v want="$want" '$1=="deb" { for (i=2;i<=NF;i++) if ($i==want) { u=$2; if (u ~ /^\[/) u=$3; print u; exit } }' /etc/apt/sources.list | head -n1
}
MIRROR=$(host_mirror "$SUITE"); MIRROR=${MIRROR:-http://deb.debian.org/debian}
MIRROR_SEC=$(host_mirror "$SUITE-security"); MIRROR_SEC=${MIRROR_SEC:-http://deb.debian.org/debian-security}

# ================================================================== 1. packages
step_start "1. build packages"
DEB=${POSTERN_DEB:-}
RPM=${POSTERN_RPM:-}
if [ -z "$DEB" ] || [ -z "$RPM" ]; then
    log "scripts/build-packages.sh (log: $RUN/build.log)"
    PACKAGES_OUT=$RUN/packages timeout -k 10 3600 "$ROOT/scripts/build-packages.sh" >"$RUN/build.log" 2>&1 \
        || { tail -n 30 "$RUN/build.log" >&2; die "scripts/build-packages.sh failed"; }
    [ -n "$DEB" ] || DEB=$(grep '\.deb$' "$RUN/packages")
    [ -n "$RPM" ] || RPM=$(grep '\.rpm$' "$RUN/packages")
fi
[ -f "$DEB" ] || die "no .deb at '$DEB'"
[ -f "$RPM" ] || die "no .rpm at '$RPM'"
DEB_VERSION=$(dpkg-deb -f "$DEB" Version)
log "deb: $DEB ($(stat -c %s "$DEB") bytes, version $DEB_VERSION)"
log "rpm: $RPM ($(stat -c %s "$RPM") bytes)"

# The shipped configuration must parse with the real binary, as shipped and
# with every example uncommented (an unprivileged copy honours -C).
X=$RUN/extract; mkdir -p "$X"; dpkg-deb -x "$DEB" "$X"
conf_ok() {   # $1 = config file; exit 78 is a configuration error
    local conf=$1 spool=$RUN/cfgspool.$RANDOM rc
    sed -i "s|^#\?spool_dir = .*|spool_dir = \"$spool\"|" "$conf"
    "$X/usr/sbin/postern" -C "$conf" queue list >>"$RUN/checks.log" 2>&1; rc=$?
    if [ "$rc" = 78 ]; then return 1; fi
    if [ "$rc" != 0 ]; then   # queue list not available yet: submit with -odq
        printf 'Subject: config check\n\nx\n' | "$X/usr/sbin/postern" sendmail -C "$conf" -odq root@localhost >>"$RUN/checks.log" 2>&1 || return 1
    fi
}
cp "$X/etc/postern/postern.toml" "$RUN/as-shipped.toml"
check "shipped postern.toml parses" conf_ok "$RUN/as-shipped.toml"
awk '
    /^\[/ { delete seen }                          # a table header starts a new scope
    /^#\[/ { delete seen; print substr($0, 2); next }   # a commented table header ([[relay]], [limits.storm], ...)
    /^#[a-z_]+ = / { k = $1; sub(/^#/, "", k); if (!(k in seen)) { seen[k] = 1; print substr($0, 2); next } }
    { print }' "$X/etc/postern/postern.toml" > "$RUN/uncommented.toml"
check "postern.toml with every example uncommented parses" conf_ok "$RUN/uncommented.toml"
# lintian: no error and no warning (overrides, each with its reason in
# packaging/README.md, are in the package); rpmlint: none after the filters
# of packaging/rpm/rpmlint.toml (also explained there).
lintian_clean() {
    local out rc
    out=$(lintian --fail-on error,warning "$DEB" 2>&1); rc=$?
    printf '%s\n' "$out"
    printf '%s\n' "$out" | grep -v 'running with root privileges' > "$RUN/lintian.txt"
    [ "$rc" = 0 ] && ! grep -q '^[EW]: ' "$RUN/lintian.txt"
}
check "lintian: 0 errors, 0 warnings" lintian_clean
rpmlint_clean() {
    rpmlint -c "$ROOT/packaging/rpm/rpmlint.toml" "$RPM" > "$RUN/rpmlint.txt" 2>&1
    cat "$RUN/rpmlint.txt"
    grep -q ' 0 errors, 0 warnings' "$RUN/rpmlint.txt"
}
check "rpmlint: 0 errors, 0 warnings (packaging/rpm/rpmlint.toml)" rpmlint_clean
step_end

# ================================================================== 2. chroot
step_start "2. chroot (debootstrap cache, fresh copy)"
build_base() {
    local tmp=$CACHE/.layer.tmp
    [ -e "$tmp" ] && { kill_chroot_procs "$tmp"; umount_under "$tmp"; safe_rm "$tmp" || die "cannot clear $tmp"; }
    if [ -f "$CACHE/.base.tmp/.postern-debootstrap-ok" ]; then
        mv "$CACHE/.base.tmp" "$tmp"          # a debootstrap finished earlier
    else
        [ -e "$CACHE/.base.tmp" ] && safe_rm "$CACHE/.base.tmp"
        log "debootstrap --variant=minbase $SUITE from $MIRROR (about a minute)"
        timeout -k 10 900 debootstrap --variant=minbase "$SUITE" "$tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
            || die "debootstrap failed; see $CACHE/debootstrap.log"
    fi
    cat > "$tmp/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $MIRROR_SEC
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    rm -f "$tmp/etc/apt/sources.list"
    # Package installs must not start daemons: the test starts what it needs.
    printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"; chmod 755 "$tmp/usr/sbin/policy-rc.d"
    echo web1 > "$tmp/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 web1.example.org web1\n' > "$tmp/etc/hosts"
    cp /etc/resolv.conf "$tmp/etc/resolv.conf" 2>/dev/null || true
    mount_chroot "$tmp" || die "cannot mount /proc, /dev in $tmp"
    in_layer "$tmp" apt-get update -qq >"$CACHE/layer.log" 2>&1 || die "apt-get update in the chroot failed; see $CACHE/layer.log"
    umount_under "$tmp"
    touch "$tmp/.postern-base"
    [ -e "$CACHE/base" ] && safe_rm "$CACHE/base"
    mv "$tmp" "$CACHE/base"
}
build_callers() {
    local tmp=$CACHE/.layer.tmp
    [ -e "$tmp" ] && { kill_chroot_procs "$tmp"; umount_under "$tmp"; safe_rm "$tmp" || die "cannot clear $tmp"; }
    cp -a "$CACHE/base" "$tmp"
    mount_chroot "$tmp" || die "cannot mount /proc, /dev in $tmp"
    log "installing into the cached chroot: $CALLER_PKGS"
    # shellcheck disable=SC2086
    { in_layer "$tmp" apt-get update -qq && in_layer "$tmp" apt-get install -y -q --no-install-recommends $CALLER_PKGS; } \
        >"$CACHE/layer.log" 2>&1 || { umount_under "$tmp"; tail -n 20 "$CACHE/layer.log" >&2; die "installing $CALLER_PKGS failed; see $CACHE/layer.log"; }
    in_layer "$tmp" sh -c 'id alice >/dev/null 2>&1 || useradd -m -s /bin/sh alice' >>"$CACHE/layer.log" 2>&1
    # Keep /var/cache/apt/archives: reinstalling the other MTA at the end then
    # needs no download.
    umount_under "$tmp"
    echo "$LAYER_RECIPE" > "$tmp/.postern-callers"
    [ -e "$CACHE/callers" ] && safe_rm "$CACHE/callers"
    mv "$tmp" "$CACHE/callers"
}
if [ "${POSTERN_INSTALL_REFRESH:-0}" = 1 ]; then
    for d in base callers; do [ -e "$CACHE/$d" ] && safe_rm "$CACHE/$d"; done
fi
[ -f "$CACHE/base/.postern-base" ] || build_base
if [ "$(cat "$CACHE/callers/.postern-callers" 2>/dev/null)" != "$LAYER_RECIPE" ]; then build_callers; fi
cp -a "$CACHE/callers" "$CH" || die "cannot copy the chroot"
cp /etc/resolv.conf "$CH/etc/resolv.conf" 2>/dev/null || true
mount_chroot "$CH" || die "cannot mount /proc, /dev in $CH"
step_end

# ================================================================== 3. SMTP server
step_start "3. SMTP server (STARTTLS + AUTH) on 127.0.0.1"
SINK=${POSTERN_SINK_BIN:-}
if [ -z "$SINK" ]; then
    # The dev profile: its dependencies are usually built already by the
    # test suite, and the sink's speed does not matter here.
    (cd "$ROOT" && timeout -k 10 1800 cargo build --example smtp_sink) >"$RUN/sink-build.log" 2>&1 \
        || { tail -n 20 "$RUN/sink-build.log" >&2; die "cannot build examples/smtp_sink.rs"; }
    SINK=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null || echo "$ROOT/target")/debug/examples/smtp_sink
fi
[ -x "$SINK" ] || die "no smtp_sink at $SINK"
"$SINK" --listen 127.0.0.1:0 --tls starttls --cert-dir "$SINK_DIR/certs" --auth apikey:secret123 \
    --maildir "$SINK_DIR/mail" >"$SINK_DIR/sink.out" 2>"$SINK_DIR/sink.err" &
SINK_PID=$!
for ((i = 0; i < 100; i++)); do
    PORT=$(sed -n 's/^smtp_sink: listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$SINK_DIR/sink.err")
    [ -n "$PORT" ] && [ -f "$SINK_DIR/certs/ca.pem" ] && break
    kill -0 "$SINK_PID" 2>/dev/null || break
    sleep 0.1
done
[ -n "$PORT" ] || { cat "$SINK_DIR/sink.err" >&2; die "smtp_sink did not start"; }
log "smtp_sink pid $SINK_PID on 127.0.0.1:$PORT"
pass "smtp_sink listening on 127.0.0.1:$PORT"
step_end

# ================================================================== 4. preseeded install
step_start "4. preseeded install over $OTHER_MTA"
# The relay's answers are preseeded (as an unattended install would) and
# its CA goes into the chroot's trust store (as a public relay's would be
# trusted): then the install alone must give a working relay.
mkdir -p "$CH/etc/ssl/certs"
cat "$SINK_DIR/certs/ca.pem" >> "$CH/etc/ssl/certs/ca-certificates.crt"
cat > "$CH/tmp/preseed" <<EOF
postern postern/mailname string web1.example.org
postern postern/relay_host string 127.0.0.1
postern postern/relay_port string $PORT
postern postern/relay_tls select starttls
postern postern/relay_user string apikey
postern postern/relay_password password secret123
EOF
check "debconf-set-selections (preseed)" in_ch debconf-set-selections /tmp/preseed
rm -f "$CH/tmp/preseed"
check "$OTHER_MTA provides /usr/sbin/sendmail before" in_ch test -e /usr/sbin/sendmail
cp "$DEB" "$CH/tmp/postern.deb"
if in_ch apt-get install -y --no-install-recommends /tmp/postern.deb >"$RUN/install.log" 2>&1; then
    pass "apt-get install ./postern.deb (replacing $OTHER_MTA)"
else
    tail -n 30 "$RUN/install.log" >&2; fail "apt-get install ./postern.deb" "see $RUN/install.log"; exit 1
fi
check "$OTHER_MTA removed" sh -c "! chroot '$CH' dpkg-query -W -f='\${db:Status-Status}' $OTHER_MTA | grep -qx installed"
check "/usr/sbin/sendmail -> postern" test "$(readlink "$CH/usr/sbin/sendmail")" = postern
for l in usr/lib/sendmail usr/bin/mailq usr/bin/newaliases; do
    check "/$l -> ../sbin/postern" test "$(readlink "$CH/$l")" = ../sbin/postern
done
check "binary is -rwxr-sr-x root postern-drop" test "$(in_ch stat -c '%A %U %G' /usr/sbin/postern)" = "-rwxr-sr-x root postern-drop"
check "dpkg-statoverride root postern-drop 2755" test "$(in_ch dpkg-statoverride --list /usr/sbin/postern)" = "root postern-drop 2755 /usr/sbin/postern"
check "user postern (home spool, nologin)" sh -c "chroot '$CH' getent passwd postern | grep -q ':/var/spool/postern:/usr/sbin/nologin\$'"
check "group postern-drop has no members" sh -c "chroot '$CH' getent group postern-drop | grep -q ':\$'"
spool_modes() {
    local want got ok=0 line
    want='/var/spool/postern 755 postern postern directory
/var/spool/postern/maildrop 1770 postern postern-drop directory
/var/spool/postern/queue 700 postern postern directory
/var/spool/postern/state 755 postern postern directory
/var/spool/postern/tmp 700 postern postern directory
/var/spool/postern/corrupt 700 postern postern directory
/var/spool/postern/public 710 postern postern-drop directory
/var/spool/postern/public/trigger 620 postern postern-drop fifo'
    while read -r line; do
        got=$(in_ch stat -c '%n %a %U %G %F' "${line%% *}" 2>&1)
        [ "$got" = "$line" ] || { echo "want: $line"; echo "got:  $got"; ok=1; }
    done <<<"$want"
    return $ok
}
check "spool tree owners and modes" spool_modes
check "conffile /etc/postern/postern.toml" sh -c "grep -qx '/etc/postern/postern.toml' '$CH/var/lib/dpkg/info/postern.conffiles'"
check "man pages installed (gzipped)" test -f "$CH/usr/share/man/man8/sendmail.8.gz" -a -f "$CH/usr/share/man/man5/postern.toml.5.gz" -a -f "$CH/usr/share/man/man1/mailq.1.gz" -a -f "$CH/usr/share/man/man8/newaliases.8.gz" -a -f "$CH/usr/share/man/man8/postern.8.gz"
check "systemd unit and sysusers/tmpfiles installed" test -f "$CH/usr/lib/systemd/system/postern.service" -a -f "$CH/usr/lib/sysusers.d/postern.conf" -a -f "$CH/usr/lib/tmpfiles.d/postern.conf"
check "service enabled for systemd (multi-user.target.wants)" test -L "$CH/etc/systemd/system/multi-user.target.wants/postern.service"
check "socket unit postern-smtp.socket installed (loopback port 25)" grep -qx 'ListenStream=127.0.0.1:25' "$CH/usr/lib/systemd/system/postern-smtp.socket"
check "socket unit not enabled by the install" test ! -e "$CH/etc/systemd/system/sockets.target.wants/postern-smtp.socket"
check "no daemon started by the install (policy-rc.d)" test -z "$(chroot_pids "$CH")"
step_end

# ================================================================== 4b. preseeded relay
step_start "4b. the preseeded relay delivers; dpkg-reconfigure"
CONF_CH=$CH/etc/postern/postern.toml
strip_block() {   # the file without the debconf block and trailing blank lines
    awk 'index($0, "# BEGIN postern debconf relay") == 1 { s = 1; next }
         s && index($0, "# END postern debconf relay") == 1 { s = 0; next }
         !s' "$1" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
}
rest_untouched() { diff <(strip_block "$CONF_CH") <(strip_block "$X/etc/postern/postern.toml"); }
one_block_with() {   # KEY = VALUE lines that must be in the one managed block
    local n l
    n=$(grep -c '^# BEGIN postern debconf relay' "$CONF_CH")
    [ "$n" = 1 ] || { echo "$n managed blocks"; return 1; }
    for l in "$@"; do
        grep -qxF -- "$l" <<<"$(sed -n '/^# BEGIN postern debconf relay/,/^# END postern debconf relay/p' "$CONF_CH")" \
            || { echo "no '$l' in the block:"; cat "$CONF_CH" | tail -n 12; return 1; }
    done
}
no_secret_in_debconf() {
    ! grep -rqF secret123 "$CH/var/cache/debconf/" || { grep -rlF secret123 "$CH/var/cache/debconf/"; return 1; }
    [ "$(echo 'GET postern/relay_password' | in_ch debconf-communicate postern | sed 's/ *$//')" = 0 ]
}
check "preseed: /etc/mailname is web1.example.org" test "$(cat "$CH/etc/mailname")" = web1.example.org
check "preseed: one [[relay]] block with the answers" one_block_with '[[relay]]' 'host = "127.0.0.1"' "port = $PORT" \
    'tls = "starttls"' 'username = "apikey"' 'password_file = "/etc/postern/relay.secret"'
check "preseed: the rest of postern.toml is as shipped" rest_untouched
check "preseed: relay.secret is 0640 root:postern" test "$(in_ch stat -c '%a %U %G' /etc/postern/relay.secret)" = "640 root postern"
check "preseed: relay.secret holds the secret" test "$(cat "$CH/etc/postern/relay.secret")" = secret123
check "preseed: no secret in postern.toml" sh -c "! grep -q secret123 '$CONF_CH'"
check "preseed: secret cleared from the debconf database" no_secret_in_debconf
check "preseed: shipped config + answers parse" conf_ok "$(cp "$CONF_CH" "$RUN/preseeded.toml"; echo "$RUN/preseeded.toml")"
# Deliver with the files exactly as the install left them.
PUID=$(in_ch id -u postern); PGID=$(in_ch id -g postern)
chroot --userspec="$PUID:$PGID" --groups="$PGID" "$CH" /usr/bin/env -i PATH=$CHROOT_PATH LANG=C.UTF-8 \
    /usr/sbin/postern daemon >"$RUN/daemon-preseed.log" 2>&1 &
PRE_PID=$!
DAEMON_PID=$PRE_PID
daemon_started() {   # as in step 5: up, and said so, before mail is submitted
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q 'daemon started' "$RUN/daemon-preseed.log" && return 0
        kill -0 "$PRE_PID" 2>/dev/null || break
        sleep 0.1
    done
    cat "$RUN/daemon-preseed.log"; return 1
}
check "preseed: postern daemon starts with the preseeded config" daemon_started
in_ch sh -c "printf 'Subject: preseed-$TOKEN\n\nsent right after apt install\n' | /usr/sbin/sendmail -i ops@example.com" >>"$RUN/checks.log" 2>&1
preseed_delivered() {
    local i f
    for ((i = 0; i < 150; i++)); do
        for f in "$SINK_DIR"/mail/*.eml; do
            if [ -f "$f" ] && grep -q "preseed-$TOKEN" "$f" && [ -f "${f%.eml}.env" ]; then
                head -n 1 "${f%.eml}.env" | grep -q '^MAIL FROM:<root@web1.example.org>' && return 0
                echo "envelope: $(head -n 1 "${f%.eml}.env")"; return 1
            fi
        done
        sleep 0.2
    done
    echo "nothing at the sink after 30 s; daemon log:"; cat "$RUN/daemon-preseed.log"
    echo "spool:"; find "$CH/var/spool/postern" -ls; echo "sink:"; tail -n 20 "$SINK_DIR/sink.err"
    return 1
}
check "preseed: sendmail right after apt install is delivered (MAIL FROM root@web1.example.org)" preseed_delivered
stop_pid "$PRE_PID" 5; DAEMON_PID=''
kill_chroot_procs "$CH"
# dpkg-reconfigure with new answers replaces the block, keeps the secret.
reconf() { printf '%s\n' "$@" | in_ch debconf-set-selections && in_ch dpkg-reconfigure -f noninteractive postern; }
check "dpkg-reconfigure with a new relay" reconf 'postern postern/relay_host string relay2.example.net' \
    'postern postern/relay_port string 2525'
check "reconfigure: the one block has the new relay" one_block_with 'host = "relay2.example.net"' 'port = 2525' 'username = "apikey"'
check "reconfigure: the rest of postern.toml is as shipped" rest_untouched
check "reconfigure: empty password keeps relay.secret" test "$(cat "$CH/etc/postern/relay.secret")" = secret123
check "reconfigure: relay.secret still 0640 root:postern" test "$(in_ch stat -c '%a %U %G' /etc/postern/relay.secret)" = "640 root postern"
warns_invalid() {
    local out
    out=$(reconf 'postern postern/relay_tls select none' 2>&1) || { echo "$out"; return 1; }
    echo "$out"
    grep -q 'invalid configuration' <<<"$out"
}
check "reconfigure to tls none for a remote relay warns (and succeeds)" warns_invalid
reconf 'postern postern/relay_tls select starttls' >>"$RUN/checks.log" 2>&1
# An administrator's edit of the block is the master copy.
sed -i 's/^host = "relay2.example.net"$/host = "relay3.example.net"/' "$CONF_CH"
check "dpkg-reconfigure after a hand edit of the block" in_ch dpkg-reconfigure -f noninteractive postern
check "reconfigure keeps the hand-edited host" one_block_with 'host = "relay3.example.net"' 'port = 2525'
check "an empty relay host removes the block" reconf 'postern postern/relay_host string'
no_block() { ! grep -q 'postern debconf relay' "$CONF_CH" && rest_untouched; }
check "no block left; postern.toml as shipped" no_block
check "debconf database still has no secret" no_secret_in_debconf
step_end

step_start "4c. configure by hand (the reference)"

# Configure the installed Postern: edit the conffile (the upgrade keeps it).
install -m 0644 "$SINK_DIR/certs/ca.pem" "$CH/etc/postern/ca.pem"
cat > "$CH/etc/postern/postern.toml" <<EOF
# install-test-edit $TOKEN
hostname = "web1.example.org"
domain = "example.org"

[[relay]]
host = "127.0.0.1"
port = $PORT
tls = "starttls"
username = "apikey"
password_file = "/etc/postern/relay.secret"
ca_file = "/etc/postern/ca.pem"

[addresses]
local_recipient = "%u@example.net"

[queue]
retry_min = "2s"
retry_max = "10s"
${POSTERN_INSTALL_PARALLEL:+parallel = $POSTERN_INSTALL_PARALLEL}
EOF
in_ch sh -c 'umask 077; printf "secret123\n" > /etc/postern/relay.secret; chown root:postern /etc/postern/relay.secret; chmod 0640 /etc/postern/relay.secret'
printf 'root: admin@example.net\npostmaster: root\n' > "$CH/etc/aliases"
check "relay.secret is 0640 root:postern" test "$(in_ch stat -c '%a %U %G' /etc/postern/relay.secret)" = "640 root postern"
step_end

# ================================================================== 5. daemon
step_start "5. daemon as user postern"
PUID=$(in_ch id -u postern); PGID=$(in_ch id -g postern)
# chroot execs env, which execs postern: $! is the daemon. The trap stops it.
chroot --userspec="$PUID:$PGID" --groups="$PGID" "$CH" /usr/bin/env -i PATH=$CHROOT_PATH LANG=C.UTF-8 \
    /usr/sbin/postern daemon >"$RUN/daemon.log" 2>&1 &
DAEMON_PID=$!
DPID=$DAEMON_PID
sleep 1.5
DAEMON_UP=0
if kill -0 "$DPID" 2>/dev/null; then
    DAEMON_UP=1
    pass "postern daemon running (pid $DPID)"
    check "daemon runs as user postern" test "$(stat -c %u "/proc/$DPID")" = "$PUID"
    # Let the package's init script manage it from here (remove stops it).
    echo "$DPID" > "$CH/run/postern.pid"
else
    wait "$DAEMON_PID" 2>/dev/null; rc=$?
    fail "postern daemon running" "exited with status $rc: $(tail -n 3 "$RUN/daemon.log" | tr '\n' ' ')"
fi
# From now on the package may start and stop its own service.
printf '#!/bin/sh\ncase "$1" in postern) exit 0 ;; esac\nexit 101\n' > "$CH/usr/sbin/policy-rc.d"
step_end

# ================================================================== 6. callers
step_start "6. real callers"
WAIT=${POSTERN_INSTALL_WAIT:-20}
[ "$DAEMON_UP" = 1 ] || WAIT=3
# wait_msg TOKEN: the .eml (and its .env) whose content has TOKEN; prints the stem
wait_msg() {
    local tok=$1 i f
    for ((i = 0; i < WAIT * 5; i++)); do
        for f in "$SINK_DIR"/mail/*.eml; do
            [ -f "$f" ] && grep -q -- "$tok" "$f" && [ -f "${f%.eml}.env" ] && { echo "${f%.eml}"; return 0; }
        done
        sleep 0.2
    done
    return 1
}
# keep_evidence WHY [STEM]: with POSTERN_INSTALL_EVIDENCE, what a failed
# delivery check looked at (the sink's files and output, the daemon log,
# the spool), with the flagged message's header as bytes (cat -A).
keep_evidence() {
    [ -n "${POSTERN_INSTALL_EVIDENCE:-}" ] || return 0
    local d=$POSTERN_INSTALL_EVIDENCE/$(date +%H%M%S).$$
    mkdir -p "$d" || return 0
    { echo "failed: $1"; echo "token: $TOKEN"
      if [ -n "${2:-}" ]; then echo "--- header of $2.eml (cat -A):"; sed '/^\r\?$/q' "$2.eml" | cat -A; echo "--- $2.env:"; cat "$2.env"; fi
      echo "--- files with the token:"; grep -l -- "$TOKEN" "$SINK_DIR"/mail/*.eml
      echo "--- ls -l --full-time:"; ls -l --full-time "$SINK_DIR"/mail/; } > "$d/summary.txt" 2>&1
    cp -a "$SINK_DIR/mail" "$SINK_DIR/sink.out" "$SINK_DIR/sink.err" "$RUN/daemon.log" "$RUN/checks.log" "$d/" 2>/dev/null
    cp -a "$CH/var/spool/postern" "$d/spool" 2>/dev/null
    cp -a "$CH/etc/postern/postern.toml" "$d/" 2>/dev/null
    log "evidence kept in $d"
}
maildrop_count() { find "$CH/var/spool/postern/maildrop" "$CH/var/spool/postern/queue" -type f 2>/dev/null | wc -l; }
# expect NAME TOKEN 'MAIL FROM:<x>' 'rcpt1 rcpt2' [header-regex ...] [!header-regex ...]
expect() {
    local name=$1 tok=$2 from=$3 rcpts=$4 stem want got h; shift 4
    if ! stem=$(wait_msg "$tok"); then
        fail "$name: delivered" "nothing at the sink after ${WAIT}s; $(maildrop_count) file(s) in maildrop/queue; daemon log: $(tail -n 2 "$RUN/daemon.log" | tr '\n' ' ')"
        keep_evidence "$name: delivered"; return 1
    fi
    got=$(head -n 1 "$stem.env" | sed 's/>.*/>/')
    [ "$got" = "MAIL FROM:<$from>" ] || { fail "$name: envelope sender" "want MAIL FROM:<$from>, got $got"; keep_evidence "$name: envelope sender" "$stem"; return 1; }
    want=$(for r in $rcpts; do echo "RCPT TO:<$r>"; done | sort)
    got=$(grep '^RCPT TO:' "$stem.env" | sed 's/>.*/>/' | sort)
    [ "$want" = "$got" ] || { fail "$name: envelope recipients" "want $(echo $want), got $(echo $got)"; keep_evidence "$name: envelope recipients" "$stem"; return 1; }
    local hdr; hdr=$(sed '/^\r\?$/q' "$stem.eml")
    for h in "$@"; do
        if [ "${h#!}" != "$h" ]; then
            grep -qiE -- "${h#!}" <<<"$hdr" && { fail "$name: header" "unexpected /${h#!}/ in $stem.eml"; keep_evidence "$name: unexpected /${h#!}/" "$stem"; return 1; }
        else
            grep -qiE -- "$h" <<<"$hdr" || { fail "$name: header" "no /$h/ in $stem.eml"; keep_evidence "$name: no /$h/" "$stem"; return 1; }
        fi
    done
    pass "$name: delivered with the right envelope and headers"
}
# submitted NAME CMD...: the caller's own exit status (0 = queued)
submitted() { local n=$1; shift; if "$@" >>"$RUN/checks.log" 2>&1; then pass "$n: accepted (exit 0)"; else fail "$n: accepted" "exit $?; see $RUN/checks.log"; fi; }

if [ "$REAL_CRON" = 1 ] && [ "$DAEMON_UP" = 1 ]; then
    # A real cron job for alice; it fires at the next minute boundary while
    # the other callers run.
    printf '* * * * * echo real-cron-%s\n' "$TOKEN" | in_ch crontab -u alice - >>"$RUN/checks.log" 2>&1
    # (chroot execs env, which execs cron: $! is cron itself.)
    chroot "$CH" /usr/bin/env -i PATH=$CHROOT_PATH LANG=C.UTF-8 /usr/sbin/cron -f >>"$RUN/cron.log" 2>&1 &
    CRON_PID=$!
    CRON_T=$(now)
fi

mkphp() {   # $1 = file, $2 = to, $3 = subject, $4 = 5th parameter
    cat > "$CH/tmp/$1" <<EOF
<?php
\$ok = mail("$2", "$3", "PHP body $3\n", "From: PHP test <web@example.org>\r\nX-Test: php", "$4");
exit(\$ok ? 0 : 1);
EOF
    chmod 644 "$CH/tmp/$1"
}
mkphp php1.php php1@example.com "php-root-$TOKEN" ""
mkphp php2.php php2@example.com "php-root-f-$TOKEN" "-fsender@example.com"
mkphp php3.php php3@example.com "php-www-$TOKEN" ""
mkphp php4.php php4@example.com "php-www-f-$TOKEN" "-fsender@example.com"
submitted "PHP mail() as root" in_ch php /tmp/php1.php
submitted "PHP mail() -f as root" in_ch php /tmp/php2.php
submitted "PHP mail() as www-data" as_user www-data php /tmp/php3.php
submitted "PHP mail() -f as www-data" as_user www-data php /tmp/php4.php
submitted "mailx -s -c -b as alice" as_user alice "echo 'mailx body' | mail -s 'mailx-$TOKEN' -c cc@example.com -b bcc@example.com to@example.com"
# Debian cron's own mailer command line (cron runs it as the job's owner).
cat > "$CH/tmp/cronmsg" <<EOF
From: root (Cron Daemon)
To: alice
Subject: Cron <alice@web1> echo cronargv-$TOKEN
MIME-Version: 1.0
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit
X-Cron-Env: <SHELL=/bin/sh>
X-Cron-Env: <HOME=/home/alice>
X-Cron-Env: <LOGNAME=alice>

cronargv-$TOKEN
EOF
chmod 644 "$CH/tmp/cronmsg"
submitted "cron's sendmail -FCronDaemon -i -B8BITMIME -oem alice" as_user alice "/usr/sbin/sendmail -FCronDaemon -i -B8BITMIME -oem alice < /tmp/cronmsg"
submitted "sendmail root (aliased) as root" in_ch sh -c "printf 'Subject: alias-$TOKEN\n\nto root\n' | /usr/sbin/sendmail -i root"
if [ "$DAEMON_UP" != 1 ]; then
    # Nothing picks the entries up: at least they must be there, owned by
    # their submitters (the group was used to create them, then dropped).
    www_entry() { [ "$(find "$CH/var/spool/postern/maildrop" -type f -user "$(in_ch id -u www-data)" | wc -l)" -ge 2 ]; }
    check "www-data's submissions are in maildrop/, owned by www-data" www_entry
fi

expect "PHP mail() as root" "php-root-$TOKEN" root@example.org "php1@example.com" \
    "^Subject: php-root-$TOKEN" "^To: php1@example.com" "^From: PHP test <web@example.org>" "^X-Test: php" "^Date: " "^Message-ID: "
expect "PHP mail() -f as root" "php-root-f-$TOKEN" sender@example.com "php2@example.com" "^Subject: php-root-f-$TOKEN"
expect "PHP mail() as www-data" "php-www-$TOKEN" www-data@example.org "php3@example.com" "^Subject: php-www-$TOKEN" "^From: PHP test <web@example.org>"
expect "PHP mail() -f as www-data" "php-www-f-$TOKEN" sender@example.com "php4@example.com" "^Subject: php-www-f-$TOKEN"
expect "mailx To/Cc/Bcc" "mailx-$TOKEN" alice@example.org "to@example.com cc@example.com bcc@example.com" \
    "^To: to@example.com" "^Cc: cc@example.com" "!^Bcc:" "!bcc@example.com"
expect "cron output for alice" "cronargv-$TOKEN" alice@example.org "alice@example.net" "^Subject: Cron <alice@web1>" "^From: root(@example\.org)? \(Cron Daemon\)"
expect "mail to root via /etc/aliases" "alias-$TOKEN" root@example.org "admin@example.net" "^Subject: alias-$TOKEN"

secret_hidden_from_www() { ! as_user www-data 'cat /etc/postern/relay.secret'; }
secret_hidden_from_drop() {
    local g; g=$(in_ch getent group postern-drop | cut -d: -f3)
    ! chroot --userspec="65534:$g" --groups="$g" "$CH" /bin/cat /etc/postern/relay.secret
}
check "www-data cannot read relay.secret" secret_hidden_from_www
check "group postern-drop cannot read relay.secret" secret_hidden_from_drop
check "mailq as www-data exits 0" as_user www-data mailq
check "newaliases as root exits 0" in_ch newaliases

if [ "$REAL_CRON" != 1 ]; then
    skip "real cron job for alice" "POSTERN_INSTALL_REAL_CRON=0"
elif [ "$DAEMON_UP" != 1 ]; then
    skip "real cron job for alice" "no daemon to deliver it"
else
    left=$(awk -v a="$CRON_T" -v b="$(now)" 'BEGIN { l = 90 - (b - a); print (l < 1 ? 1 : int(l)) }')
    WAIT=$left expect "real cron job for alice" "real-cron-$TOKEN" alice@example.org "alice@example.net" "^Subject: Cron <alice@"
    in_ch crontab -u alice -r >/dev/null 2>&1
    stop_pid "$CRON_PID" 5; CRON_PID=''
fi
# Anything else still running in the chroot besides the daemon (a one-shot
# queue runner, a cron child) is reported and stopped before the package
# checks below.
others=$(chroot_pids "$CH" | grep -vx "${DPID:-none}")
if [ -n "$others" ]; then
    log "processes in the chroot besides the daemon: $(ps -o pid=,user=,args= -p "$(echo $others | tr ' ' ,)" | tr '\n' ';')"
    # shellcheck disable=SC2086
    kill -TERM $others 2>/dev/null; sleep 1
fi
step_end

# ================================================================== 7. upgrade, remove, purge
step_start "7a. upgrade (same package, bumped version)"
UP=$RUN/upgrade; rm -rf "$UP"; mkdir -p "$UP"
dpkg-deb -R "$DEB" "$UP/pkg"
sed -i "s/^Version: .*/Version: ${DEB_VERSION}+installtest1/" "$UP/pkg/DEBIAN/control"
dpkg-deb --root-owner-group -Zxz -b "$UP/pkg" "$CH/tmp/postern-upgrade.deb" >/dev/null 2>&1 \
    || dpkg-deb -b "$UP/pkg" "$CH/tmp/postern-upgrade.deb" >/dev/null
if in_ch apt-get install -y /tmp/postern-upgrade.deb >"$RUN/upgrade.log" 2>&1; then pass "upgrade installs"; else fail "upgrade installs" "see $RUN/upgrade.log"; fi
check "upgrade: version ${DEB_VERSION}+installtest1" test "$(in_ch dpkg-query -W -f='${Version}' postern)" = "${DEB_VERSION}+installtest1"
check "upgrade keeps the setgid bit" test "$(in_ch stat -c '%A %U %G' /usr/sbin/postern)" = "-rwxr-sr-x root postern-drop"
check "upgrade keeps the edited config" grep -q "install-test-edit $TOKEN" "$CH/etc/postern/postern.toml"
check "upgrade keeps relay.secret" test "$(in_ch stat -c '%a %U %G' /etc/postern/relay.secret)" = "640 root postern"
check "upgrade adds no debconf block to a hand-written config" sh -c "! grep -q 'postern debconf relay' '$CH/etc/postern/postern.toml'"
check "upgrade leaves no .dpkg-dist/.dpkg-new config" test ! -e "$CH/etc/postern/postern.toml.dpkg-dist" -a ! -e "$CH/etc/postern/postern.toml.dpkg-new"
if [ "$DAEMON_UP" = 1 ]; then
    # postinst restarted the service through /etc/init.d/postern.
    sleep 1
    NEWPID=$(cat "$CH/run/postern.pid" 2>/dev/null)
    if [ -n "$NEWPID" ] && [ "$NEWPID" != "$DPID" ] && kill -0 "$NEWPID" 2>/dev/null; then
        pass "upgrade restarts the daemon (init script, pid $NEWPID)"
        printf 'Subject: after-upgrade-%s\n\nx\n' "$TOKEN" > "$CH/tmp/upmsg"
        submitted "sendmail after the upgrade" as_user alice "/usr/sbin/sendmail -i ops@example.com < /tmp/upmsg"
        expect "delivery after the upgrade" "after-upgrade-$TOKEN" alice@example.org "ops@example.com"
    else
        fail "upgrade restarts the daemon" "pid file: '${NEWPID}'"
    fi
else
    skip "upgrade restarts the daemon" "no daemon"
fi
step_end

step_start "7b. remove"
if in_ch apt-get remove -y postern >"$RUN/remove.log" 2>&1; then pass "apt-get remove postern"; else fail "apt-get remove postern" "see $RUN/remove.log"; fi
sleep 0.5
no_procs() {
    local p; p=$(chroot_pids "$CH")
    [ -z "$p" ] && return 0
    ps -o pid=,user=,args= -p "$(echo $p | tr ' ' ,)"; return 1
}
check "remove stops the daemon" no_procs
check "remove: program and links gone" test ! -e "$CH/usr/sbin/postern" -a ! -L "$CH/usr/sbin/sendmail" -a ! -L "$CH/usr/bin/mailq" -a ! -L "$CH/usr/lib/sendmail"
check "remove keeps the config" grep -q "install-test-edit $TOKEN" "$CH/etc/postern/postern.toml"
check "remove keeps the spool and users" sh -c "test -d '$CH/var/spool/postern/maildrop' && chroot '$CH' getent passwd postern >/dev/null"
step_end

step_start "7c. purge with mail waiting, reinstall, purge"
# No daemon during this step: it would rightly quarantine the fake message.
printf '#!/bin/sh\nexit 101\n' > "$CH/usr/sbin/policy-rc.d"
in_ch sh -c 'umask 077; echo waiting > /var/spool/postern/queue/TESTWAITING00001; chown postern:postern /var/spool/postern/queue/TESTWAITING00001'
if in_ch apt-get purge -y postern >"$RUN/purge1.log" 2>&1; then pass "apt-get purge (mail waiting)"; else fail "apt-get purge (mail waiting)" "see $RUN/purge1.log"; fi
check "purge: /etc/postern removed" test ! -e "$CH/etc/postern"
check "purge: statoverride removed" test -z "$(in_ch dpkg-statoverride --list /usr/sbin/postern)"
check "purge keeps a spool with waiting mail" test -f "$CH/var/spool/postern/queue/TESTWAITING00001"
check "purge keeps the user that owns it" sh -c "chroot '$CH' getent passwd postern >/dev/null"
check "purge says where the mail is" grep -q "/var/spool/postern" "$RUN/purge1.log"
if in_ch apt-get install -y /tmp/postern.deb >"$RUN/reinstall.log" 2>&1; then pass "reinstall over a kept spool and users"; else fail "reinstall over a kept spool and users" "see $RUN/reinstall.log"; fi
check "reinstall: waiting mail untouched" test -f "$CH/var/spool/postern/queue/TESTWAITING00001"
check "reinstall: binary setgid again" test "$(in_ch stat -c '%A %U %G' /usr/sbin/postern)" = "-rwxr-sr-x root postern-drop"
rm -f "$CH/var/spool/postern/queue/TESTWAITING00001"
# Undelivered test mail (only when delivery failed above) would rightly keep
# the spool; clear it so the empty-spool branch of purge is what is tested.
left=$(find "$CH/var/spool/postern/queue" "$CH/var/spool/postern/maildrop" -mindepth 1 -maxdepth 1 | wc -l)
if [ "$left" -gt 0 ]; then
    log "clearing $left undelivered file(s) from the spool before the second purge"
    find "$CH/var/spool/postern/queue" "$CH/var/spool/postern/maildrop" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
fi
if in_ch apt-get purge -y postern >"$RUN/purge2.log" 2>&1; then pass "apt-get purge (empty spool)"; else fail "apt-get purge (empty spool)" "see $RUN/purge2.log"; fi
purged_users() { ! in_ch getent passwd postern && ! in_ch getent group postern && ! in_ch getent group postern-drop; }
purged_rest() {
    [ -z "$(in_ch dpkg-statoverride --list /usr/sbin/postern)" ] && [ ! -e "$CH/etc/postern" ] \
        && ! in_ch dpkg-query -W postern && ! compgen -G "$CH/etc/rc?.d/[SK][0-9][0-9]postern" >/dev/null
}
check "nothing left running in the chroot" no_procs
check "purge: spool removed" test ! -e "$CH/var/spool/postern"
check "purge: users and groups removed" purged_users
check "purge: no statoverride, /etc/postern, package or rc.d links" purged_rest
step_end

step_start "7d. another MTA installs again"
if in_ch apt-get install -y --no-install-recommends "$OTHER_MTA" >"$RUN/othermta.log" 2>&1; then pass "apt-get install $OTHER_MTA after purge"; else fail "apt-get install $OTHER_MTA after purge" "see $RUN/othermta.log"; fi
check "/usr/sbin/sendmail is $OTHER_MTA's" sh -c "chroot '$CH' dpkg -S /usr/sbin/sendmail | grep -q '^$OTHER_MTA:'"
step_end

# ================================================================== 8. rpm
step_start "8. rpm -qp checks"
cp "$RPM" "$CH/tmp/postern.rpm"
rpmq() { in_ch rpm -qp "$@" /tmp/postern.rpm 2>/dev/null; }
# (rpm -qlv cuts group names to 8 characters.)
rpmq --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]' > "$RUN/rpm-files.txt"
check "rpm: /usr/sbin/postern is -rwxr-sr-x root postern-drop" grep -qx -- '-rwxr-sr-x root postern-drop /usr/sbin/postern' "$RUN/rpm-files.txt"
rpmq --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' > "$RUN/rpm-flags.txt"
check "rpm: postern.toml is %config(noreplace)" grep -qE '^c[a-z]*n[a-z]* /etc/postern/postern.toml$|^[a-z]*cn[a-z]* /etc/postern/postern.toml$' "$RUN/rpm-flags.txt"
has_all() {   # FILE LINE...: every LINE is a whole line of FILE
    local f=$1 l; shift
    for l in "$@"; do grep -qxF -- "$l" "$f" || { echo "missing in $f: $l"; return 1; }; done
}
has_all_re() {   # FILE REGEX...
    local f=$1 r; shift
    for r in "$@"; do grep -qE -- "$r" "$f" || { echo "no /$r/ in $f"; return 1; }; done
}
check "rpm: man pages, units, sysusers, tmpfiles" has_all_re "$RUN/rpm-files.txt" \
    ' /usr/share/man/man8/sendmail\.postern\.8\.gz$' ' /usr/share/man/man1/mailq\.postern\.1\.gz$' \
    ' /usr/lib/systemd/system/postern\.service$' ' /usr/lib/systemd/system/postern-smtp\.socket$' \
    ' /usr/lib/sysusers\.d/postern\.conf$' ' /usr/lib/tmpfiles\.d/postern\.conf$'
rpmq --scripts > "$RUN/rpm-scripts.txt"
check "rpm: %pre creates users and groups" has_all_re "$RUN/rpm-scripts.txt" '^preinstall scriptlet' 'groupadd -r postern-drop' 'useradd -r -g postern'
check "rpm: %post alternatives --install mta" has_all_re "$RUN/rpm-scripts.txt" '^postinstall scriptlet' \
    'alternatives --install /usr/sbin/sendmail mta /usr/sbin/sendmail\.postern 30' 'ln -sfn postern /usr/sbin/sendmail\.postern'
check "rpm: slaves /usr/lib/sendmail, mailq, newaliases and man pages" has_all_re "$RUN/rpm-scripts.txt" \
    '--slave /usr/lib/sendmail mta-sendmail ' '--slave /usr/bin/mailq mta-mailq ' '--slave /usr/bin/newaliases mta-newaliases ' \
    '--slave /usr/share/man/man8/sendmail\.8\.gz mta-sendmailman ' '--slave /usr/share/man/man1/mailq\.1\.gz mta-mailqman ' \
    '--slave /usr/share/man/man1/newaliases\.1\.gz mta-newaliasesman '
check "rpm: %preun alternatives --remove on erase" has_all_re "$RUN/rpm-scripts.txt" '^preuninstall scriptlet' \
    'if \[ "\$1" -eq 0 \]' 'alternatives --remove mta /usr/sbin/sendmail\.postern'
rpmq --provides > "$RUN/rpm-provides.txt"
check "rpm: Provides MTA smtpdaemon server(smtp)" has_all "$RUN/rpm-provides.txt" MTA smtpdaemon 'server(smtp)'
rpmq --requires > "$RUN/rpm-requires.txt"
check "rpm: Requires /usr/sbin/alternatives, useradd, groupadd, /bin/sh" has_all "$RUN/rpm-requires.txt" \
    /usr/sbin/alternatives /usr/sbin/useradd /usr/sbin/groupadd /bin/sh
check "rpm: digests OK" in_ch rpm -K --nosignature /tmp/postern.rpm
step_end

# ================================================================== summary
echo
echo "==== Postern install test summary ($(since "$T0")s)"
printf '  %s\n' "${TIMINGS[@]}"
echo "  packages: $(basename "$DEB") $(stat -c %s "$DEB") bytes; $(basename "$RPM") $(stat -c %s "$RPM") bytes;"
echo "            installed size $(dpkg-deb -f "$DEB" Installed-Size) KiB; binary $(stat -c %s "$X/usr/sbin/postern") bytes"
echo
printf '  %s\n' "${RESULTS[@]}"
echo
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "FAILED: ${#FAILED[@]} of ${#RESULTS[@]} checks (logs: $RUN, kept only with POSTERN_INSTALL_KEEP=1)"
    exit 1
fi
echo "PASSED: all ${#RESULTS[@]} checks"
exit 0
