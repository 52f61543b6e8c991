#!/usr/bin/env bash
# Regenerate scripts/submit-order.txt: the functions the setgid submission
# path runs, in the order the linker should place them first in .text.
#
# Why: sendmail is exec'd per message, and the kernel maps a binary's code
# 64 KB at a time around each page it faults in ("fault-around"). With the
# submission path's ~300 functions scattered over 3.4 MB of code, a plain
# submission touched 2 MB of it; placed together they fit in ~0.5 MB, which
# is fewer page faults and a smaller peak RSS (issue 10's constraint).
#
# How: build an unstripped release binary (same code, same layout inputs),
# run the submission paths under valgrind's callgrind, keep every function
# of the binary that ran, and write their demangled names without crate
# hashes (so a new compiler or version number does not make the list
# stale; scripts/cc-static-libgcc maps them back to the symbols of the
# object being linked). Needs valgrind. Run it after a large change of the
# submission path, and commit the result.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tdir=${ORDER_TARGET_DIR:-$root/target/order}
CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --target-dir "$tdir" -q
bin=$tdir/release/postern
D=$(mktemp -d /var/tmp/postern-order.XXXXXX)
trap 'rm -rf "$D"' EXIT
mkdir "$D/bin"
cp "$bin" "$D/bin/postern"
for n in sendmail mailq newaliases; do ln -s postern "$D/bin/$n"; done
printf 'hostname = "web1.example.com"\ndomain = "example.com"\nspool_dir = "%s/spool"\nlog = "%s/log"\nmax_message_size = "100M"\n[queue]\nrun_on_submit = false\n' "$D" "$D" > "$D/c.toml"
{ printf 'From: a@example.com\nTo: b@example.org\nSubject: x\n\n'; for i in $(seq 27); do echo "line $i the quick brown fox"; done; } > "$D/small"
{ printf 'From: a@example.com\nTo: b@example.org\nSubject: x\n\n'; head -c 3000000 /dev/zero | tr '\0' 'a' | fold -w 76; } > "$D/big"
printf 'Subject: no from\n\nbody\n' > "$D/nofrom"
printf 'From: a@example.com\nTo: bad address <<x\n\nhi\n' > "$D/bad"
printf 'From: a@example.com\nTo: b@example.org\n\nnul\0here\n' > "$D/nul"
cd "$D"
n=0
run() { n=$((n + 1)); valgrind --tool=callgrind --demangle=no -q --callgrind-out-file="cg.$n" "$@" >/dev/null 2>&1 || true; }
run bin/sendmail -C c.toml -t -odq < small
run bin/sendmail -C c.toml -t -odq < big
run bin/sendmail -C c.toml -odq -f me@example.com rcpt@example.org < nofrom
run bin/sendmail -C c.toml -oi root < small
run bin/sendmail -C c.toml -odq < small
run bin/sendmail -C c.toml -t -odq < bad
run bin/sendmail -C c.toml -t -odq < nul
run bin/sendmail -C c.toml -t -odq < /dev/null
printf 'EHLO x\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nSubject: s\r\n\r\nhi\r\n.\r\nQUIT\r\n' > bs
run bin/sendmail -C c.toml -bs -odq < bs
run bin/mailq -C c.toml
run bin/sendmail -C c.toml -bv root
nm --defined-only "$bin" | awk '{print $3}' | sort -u > syms
cat cg.* | sed -n 's/^c\{0,1\}fn=([0-9]*) //p' | sort -u > ran
# Keep the order of first appearance in the small submission, then the rest.
comm -12 syms ran > used
{ sed -n 's/^c\{0,1\}fn=([0-9]*) //p' cg.1; cat used; } | awk '!seen[$0]++' | grep -Fxf used |
    c++filt | sed 's/\[[0-9a-f]*\]//g; s/::h[0-9a-f]\{16\}$//' | awk '!seen[$0]++' > "$root/scripts/submit-order.txt"
echo "$(wc -l < "$root/scripts/submit-order.txt") functions -> scripts/submit-order.txt"
