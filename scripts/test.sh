#!/usr/bin/env bash
# Every test of the project, in one command (README.md "Tests"):
# formatting, lints, unit and integration tests (which replay the committed
# fuzz corpora), and — when run as root with debootstrap available — the
# package install test in a Debian chroot.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --all-targets -- -D warnings

echo "==> cargo test"
cargo test --all-targets -- --test-threads="${TEST_THREADS:-4}"

if [ -x tests/install/run.sh ]; then
    if [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null; then
        echo "==> package install test"
        tests/install/run.sh
    else
        echo "==> package install test skipped (needs root and debootstrap)"
    fi
fi
echo "==> all tests passed"
