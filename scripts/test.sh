#!/usr/bin/env bash
# The test command: lints, Nix checks, and every test, against a real SkyPilot API server.
#
#   scripts/test.sh            everything
#   scripts/test.sh -- ARGS    extra arguments for `cargo test` (e.g. a test name filter)
#
# Installs what it needs: Debian packages (promtool, nix-instantiate), a venv with
# SkyPilot 0.14.1. Starts SkyPilot's API server on a free loopback port with its state in
# a temporary directory, and stops its whole process group afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

extra=()
if [ "${1:-}" = "--" ]; then shift; extra=("$@"); fi

command -v cargo >/dev/null || die "cargo is required (https://rustup.rs)"
ensure_apt curl python3-venv prometheus nix-bin systemd
ensure_venv

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy (all targets, both feature sets, -D warnings)"
cargo clippy --all-targets --quiet -- -D warnings
cargo clippy --all-targets --features real-server --quiet -- -D warnings

work=$(mktemp -d)
cleanup() {
  stop_sky_server "$work/server"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

log "exporting SkyPilot's config schema"
export SKYPILOT_CONFIG_SCHEMA="$work/sky-config-schema.json"
"$VENV_DIR/bin/python" scripts/sky-schema.py >"$SKYPILOT_CONFIG_SCHEMA"

log "Nix checks"
scripts/nix-checks.sh

port=$(free_port)
log "starting SkyPilot $SKYPILOT_VERSION API server on 127.0.0.1:$port"
start_sky_server "$work/server" "$port"
(
  sky_env "$work/server"
  "$VENV_DIR/bin/python" tests/real/skyctl.py catalog >/dev/null
)

export SKYPILOT_VENV="$VENV_DIR"
export SKYPILOT_TEST_API_URL="http://127.0.0.1:$port"
export SKYPILOT_TEST_HOME="$work/server/home"
export SKYPILOT_TEST_RUNTIME_DIR="$work/server/runtime"
export SKYPILOT_TEST_GLOBAL_CONFIG="$work/server/config.yaml"
export SKYPILOT_TEST_SERVER_LOG="$work/server/server.log"

log "cargo test --features real-server"
# Library, binary and integration tests (the crate has no doc tests). The output is
# kept to add up the totals at the end.
cargo test --features real-server --lib --bins --tests -- "${extra[@]}" 2>&1 | tee "$work/cargo-test.log"
echo
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' \
  "$work/cargo-test.log"
