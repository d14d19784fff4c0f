#!/usr/bin/env bash
# The test command: lints, Nix checks, and every test, against a real SkyPilot API server.
#
#   scripts/test.sh            everything
#   scripts/test.sh -- ARGS    extra arguments for `cargo test` (e.g. a test name filter)
#
# Installs what it needs: Debian packages (promtool, nix-instantiate, systemd-analyze,
# visudo, rsync, unshare, ip, ssh), a venv with SkyPilot 0.14.1 and the patches of
# nix/patches/ (the API server of the Rust tests), one with SkyPilot 0.14.1 as released
# (the reference of scripts/status-contract.sh) and one with its aws extra (for
# scripts/module-run.sh).
# Starts SkyPilot's API server on a free loopback port with its state in a temporary
# directory, and stops its whole process group afterwards.
#
# The NixOS module's evaluation suite and the run of what it renders need nixpkgs' lib:
# NIXPKGS_LIB, or else ../shared/nixpkgs-lib beside the repository, or else a copy
# downloaded into .cache/ and checked by its SHA-256 (scripts/lib.sh, find_nixpkgs_lib).
# Without any of them the run fails, saying so.
#
# Every suite runs even when an earlier one failed; the last line adds them up
# ("tests: N passed, N failed") and the exit status is non-zero when anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

extra=()
if [ "${1:-}" = "--" ]; then shift; extra=("$@"); fi

command -v cargo >/dev/null || die "cargo is required (https://rustup.rs)"
ensure_apt curl python3-venv prometheus nix-bin systemd sudo rsync openssh-client iproute2 util-linux postgresql
ensure_venv
ensure_reference_venv
ensure_cloud_venv
ensure_browser_venv
ensure_oidc_provider

find_nixpkgs_lib

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy (all targets, both feature sets, -D warnings)"
cargo clippy --all-targets --quiet -- -D warnings
cargo clippy --all-targets --features real-server --quiet -- -D warnings

work=$(mktemp -d)
# A throwaway PostgreSQL (SkyPilot's state in PostgreSQL: tests/it/postgres.rs). Its own
# directory: when run as root, PostgreSQL runs as an unprivileged user that owns it.
pgdir=$(mktemp -d)
cleanup() {
  stop_sky_server "$work/server"
  stop_postgres "$pgdir"
  rm -rf "$work" "$pgdir"
}
trap cleanup EXIT INT TERM

log "exporting SkyPilot's config schema"
export SKYPILOT_CONFIG_SCHEMA="$work/sky-config-schema.json"
"$VENV_DIR/bin/python" scripts/sky-schema.py >"$SKYPILOT_CONFIG_SCHEMA"

# Suites run to the end even when one fails; each prints "<name>: N passed, N failed",
# which the closing line adds up.
failed_suites=()
suite() {
  local name=$1
  shift
  log "$name"
  local rc=0
  "$@" 2>&1 | tee "$work/suite-$name.log" || rc=$?
  if [ "$rc" -ne 0 ]; then
    failed_suites+=("$name (exit $rc)")
  fi
}

# The gateway's route table is checked against tests/fixtures/skypilot-0.14.1-routes.txt;
# that list must be the one the installed SkyPilot serves.
routes_check() {
  if diff <("$VENV_DIR/bin/python" scripts/sky-routes.py 2>/dev/null) tests/fixtures/skypilot-$SKYPILOT_VERSION-routes.txt; then
    echo "skypilot routes: 1 passed, 0 failed"
  else
    echo "the routes of SkyPilot $SKYPILOT_VERSION differ from tests/fixtures/skypilot-$SKYPILOT_VERSION-routes.txt (above): classify the new ones in src/web_ui/rules.rs" >&2
    echo "skypilot routes: 0 passed, 1 failed"
  fi
}
suite routes routes_check
suite nixpkgs-lib scripts/nixpkgs-lib-check.sh
suite nix-checks scripts/nix-checks.sh
suite module-run scripts/module-run.sh

port=$(free_port)
log "starting SkyPilot $SKYPILOT_VERSION API server on 127.0.0.1:$port"
start_sky_server "$work/server" "$port"
(
  sky_env "$work/server"
  "$VENV_DIR/bin/python" tests/real/skyctl.py catalog >/dev/null
)

log "starting a throwaway PostgreSQL in $pgdir"
start_postgres "$pgdir"

export SKYPILOT_VENV="$VENV_DIR"
export SKYPILOT_TEST_API_URL="http://127.0.0.1:$port"
export SKYPILOT_TEST_HOME="$work/server/home"
export SKYPILOT_TEST_RUNTIME_DIR="$work/server/runtime"
export SKYPILOT_TEST_GLOBAL_CONFIG="$work/server/config.yaml"
export SKYPILOT_TEST_SERVER_LOG="$work/server/server.log"

# Library, binary and integration tests (the crate has no doc tests).
suite cargo-test cargo test --features real-server --lib --bins --tests -- "${extra[@]}"
# The SkyPilot patch: its tests, the contract against the released SkyPilot, the load test.
suite status-contract scripts/status-contract.sh
# The console in headless Chromium; prints "browser: N passed, N failed".
suite browser cargo test --features "browser real-server" --test it browser_ -- --nocapture
# A newcomer's first minute with scripts/run-local.sh --demo; prints "demo: N passed, N failed".
suite demo scripts/demo-check.sh

echo
# cargo's "test result: ok. N passed; M failed; ...", and the module suites'
# "...: N passed, M failed". A suite that failed without a failing test (a build error,
# a crash) counts as one failure.
passed=0
failed=0
for f in "$work"/suite-*.log; do
  read -r p n < <(awk '
    /^test result:/ { p += $4; f += $6; next }
    /^(nix evaluation checks|rendered run|package checks|skypilot patch tests|status contract|load test|browser|skypilot routes|nixpkgs-lib|demo): [0-9]+ passed, [0-9]+ failed$/ {
      p += $(NF - 3); f += $(NF - 1)
    }
    END { printf "%d %d\n", p, f }' "$f")
  passed=$((passed + p))
  failed=$((failed + n))
  name=${f##*/suite-}
  name=${name%.log}
  for s in "${failed_suites[@]}"; do
    if [ "${s%% *}" = "$name" ] && [ "$n" -eq 0 ]; then
      echo "$s failed without a failing test: counted as 1 failed" >&2
      failed=$((failed + 1))
    fi
  done
done
if [ ${#failed_suites[@]} -gt 0 ]; then
  echo "failed suites: ${failed_suites[*]}" >&2
fi
echo "tests: $passed passed, $failed failed"
[ ${#failed_suites[@]} -eq 0 ] && [ "$failed" -eq 0 ]
