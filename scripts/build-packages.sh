#!/usr/bin/env bash
# Build Postern's .deb and .rpm from Cargo.toml's [package.metadata.deb] and
# [package.metadata.generate-rpm] sections.
#
#   scripts/build-packages.sh            # build both
#   scripts/build-packages.sh deb        # only the .deb
#   scripts/build-packages.sh rpm        # only the .rpm
#
# Installs cargo-deb and cargo-generate-rpm (cargo install --locked) when they
# are missing. Prints the paths of the packages at the end; with
# PACKAGES_OUT=FILE it also writes them there, one per line.
set -euo pipefail

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
what=${1:-all}
case "$what" in all|deb|rpm) ;; *) echo "usage: $0 [all|deb|rpm]" >&2; exit 64 ;; esac

log() { printf '[build-packages] %s\n' "$*" >&2; }

need_tool() {   # $1 = cargo subcommand, $2 = crate, $3 = version
    if ! cargo "$1" --version >/dev/null 2>&1; then
        log "installing $2 $3 (cargo install --locked; a few minutes)"
        cargo install --locked "$2@$3"
    fi
}

[ "$what" = rpm ] || need_tool deb cargo-deb "$CARGO_DEB_VERSION"
[ "$what" = deb ] || need_tool generate-rpm cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"

log "cargo build --release"
cargo build --release --locked

# The release profile strips symbols (strip = true), so cargo-deb does not
# strip again and rustc's .comment section (compiler versions) would stay:
# lintian's binary-has-unneeded-section. Both packages ship this binary.
bin=target/release/postern
[ -f "$bin" ] || bin=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/postern
if objdump -h "$bin" | grep -q ' \.comment '; then
    log "objcopy --remove-section=.comment $bin"
    objcopy --remove-section=.comment "$bin"
fi

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null || echo "$root/target")
out=()

if [ "$what" != rpm ]; then
    log "cargo deb --no-build"
    # cargo deb prints the package's path on stdout, everything else on stderr.
    deb=$(cargo deb --no-build --locked | tail -n 1)
    [ -f "$deb" ] || { log "cargo deb did not report a package path"; exit 1; }
    # cargo-deb writes no DEBIAN/md5sums (dpkg --verify and debsums use it):
    # unpack, add it, repack with the same owner (root) and compression.
    log "adding DEBIAN/md5sums"
    work=$(mktemp -d)
    dpkg-deb -R "$deb" "$work/pkg"
    (cd "$work/pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort \
        | xargs -r -d '\n' md5sum) > "$work/pkg/DEBIAN/md5sums"
    chmod 0644 "$work/pkg/DEBIAN/md5sums"
    dpkg-deb --root-owner-group -Zxz -b "$work/pkg" "$deb" >/dev/null
    rm -rf "$work"
    out+=("$deb")
fi

if [ "$what" != deb ]; then
    # cargo generate-rpm neither compresses man pages nor makes symlinks:
    # gzip the pages under the names the alternatives scriptlet expects.
    man_out="$root/target/rpm-man"
    rm -rf "$man_out"; mkdir -p "$man_out"
    gz() { gzip -9n < "packaging/man/$1" > "$man_out/$2"; }
    gz postern.8 postern.8.gz
    gz sendmail.8 sendmail.postern.8.gz
    gz newaliases.8 newaliases.postern.8.gz
    gz mailq.1 mailq.postern.1.gz
    gz postern.toml.5 postern.toml.5.gz
    log "cargo generate-rpm"
    rpm_dir="$target_dir/generate-rpm"
    mkdir -p "$rpm_dir"
    rm -f "$rpm_dir"/postern-*.rpm
    cargo generate-rpm --target-dir "$target_dir" -o "$rpm_dir/" >&2
    rpms=("$rpm_dir"/postern-*.rpm)
    [ -f "${rpms[0]}" ] || { log "cargo generate-rpm made no package"; exit 1; }
    rpm=${rpms[0]}
    out+=("$rpm")
fi

echo
for p in "${out[@]}"; do
    printf '%s  (%s bytes)\n' "$p" "$(stat -c %s "$p")"
done
if [ -n "${PACKAGES_OUT:-}" ]; then
    printf '%s\n' "${out[@]}" > "$PACKAGES_OUT"
fi
