#!/usr/bin/env bash
# The main job, end to end, without root: build Postern, start a local smart
# host on 127.0.0.1, submit a message through the sendmail interface, and
# show it delivered and logged. Everything lives in a temporary directory
# that is removed at the end (KEEP=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building"
cargo build --release --bin postern --example smtp_sink 2>&1 | tail -n 2

work=$(mktemp -d /tmp/postern-demo.XXXXXX)
sink_pid=""
cleanup() {
    [ -n "$sink_pid" ] && kill "$sink_pid" 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] && echo "(kept $work)" || rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 2525)
mkdir -p "$work/bin" "$work/mail"
ln -s "$PWD/target/release/postern" "$work/bin/sendmail"
ln -s "$PWD/target/release/postern" "$work/bin/mailq"

echo "==> starting a local smart host on 127.0.0.1:$port (STARTTLS + AUTH)"
target/release/examples/smtp_sink --listen "127.0.0.1:$port" --tls starttls \
    --cert-dir "$work/certs" --auth demo:s3cret --maildir "$work/mail" > "$work/sink.out" 2>&1 &
sink_pid=$!
for _ in $(seq 1 100); do [ -f "$work/certs/ca.pem" ] && grep -q listening "$work/sink.out" && break; sleep 0.05; done

printf 's3cret\n' > "$work/relay.secret"
chmod 600 "$work/relay.secret"
cat > "$work/postern.toml" <<CONF
hostname = "demo.example.com"
domain = "example.com"
spool_dir = "$work/spool"
log = "$work/postern.log"

[[relay]]
host = "localhost"
port = $port
tls = "starttls"
username = "demo"
password_file = "$work/relay.secret"
ca_file = "$work/certs/ca.pem"

[addresses]
local_recipient = "%u@ops.example.net"
CONF

echo "==> submitting: printf '...' | sendmail -t -i"
printf 'To: alice@example.org\nCc: root\nSubject: Hello from Postern\n\nIt works.\n' |
    POSTERN_CONFIG="$work/postern.toml" "$work/bin/sendmail" -t -i
echo "    sendmail exited $?"

echo "==> waiting for delivery"
for _ in $(seq 1 200); do
    grep -q ": removed" "$work/postern.log" 2>/dev/null && break
    sleep 0.05
done

echo "==> what the smart host received"
cat "$work/sink.out"
echo "--- envelope:"; cat "$work/mail"/*.env
echo "--- message:"; tr -d '\r' < "$(ls "$work/mail"/*.eml | head -n1)"
echo "==> Postern's log"
cat "$work/postern.log"
echo "==> mailq"
POSTERN_CONFIG="$work/postern.toml" "$work/bin/mailq"
grep -q "status=sent" "$work/postern.log" && echo "==> delivered" || { echo "==> NOT delivered"; exit 1; }
