#!/usr/bin/env bash
# Every test of the project, in one command (README.md "Tests"):
# formatting, lints, unit and integration tests (which replay the committed
# fuzz corpora; as root also the root-only tests), and — when run as root
# with debootstrap available — the package install test in a Debian chroot.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --all-targets -- -D warnings

# Tests that need root are #[ignore = "needs root ..."]: as root they run
# too. Tests that need a tool the host lacks (python3 aiosmtpd, a tmpfs
# mount, ...) skip with a message, except under CI=true, where they fail.
include_ignored=""
if [ "$(id -u)" = 0 ]; then
    include_ignored="--include-ignored"
fi
echo "==> cargo test ${include_ignored:+(with the root-only tests)}"
cargo test --all-targets -- --test-threads="${TEST_THREADS:-4}" $include_ignored

if [ -x tests/install/run.sh ]; then
    if [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null; then
        echo "==> package install test"
        tests/install/run.sh
    elif [ "${CI:-}" = true ]; then
        echo "==> FAILED: the package install test needs root and debootstrap (CI=true)" >&2
        exit 1
    else
        echo "==> package install test skipped (needs root and debootstrap)"
    fi
fi
echo "==> all tests passed"
