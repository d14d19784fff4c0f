#!/usr/bin/env bash
# The SkyPilot patch (nix/patches/): its own tests, then the contract that it changes
# nothing but time. Two real SkyPilot API servers, the patched one (VENV_DIR) and the
# released one (REFERENCE_VENV_DIR), serve copies of the same state: a fleet of
# CONTRACT_CLUSTERS clusters (default 160) over AWS, GCP and Azure in a generated catalog
# of thousands of rows (tests/real/fleet.py); tests/real/status_contract.py compares
# their /status and cost_report answers field by field.
#
# Then the load test (tests/real/load_test.py): the cluster manager's share of the
# patched server's CPU, from /proc, stays within its load_budget (2%).
#
# Prints "skypilot patch tests: N passed, N failed", "status contract: N passed,
# N failed" and "load test: N passed, N failed". Stops both servers' process groups on
# exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_venv
ensure_reference_venv

clusters=${CONTRACT_CLUSTERS:-160}
work=$(mktemp -d)
cleanup() {
  stop_sky_server "$work/patched"
  stop_sky_server "$work/reference"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
status=0

log "the patch's own tests (pytest, patched SkyPilot)"
out=$(cd "$work" && HOME="$work/pytest-home" SKY_RUNTIME_DIR="$work/pytest-home" \
  SKYPILOT_DISABLE_USAGE_COLLECTION=1 "$VENV_DIR/bin/python" -m pytest -q -p no:cacheprovider \
  -W ignore::DeprecationWarning "$REPO_ROOT"/nix/patches/test_*.py 2>&1) || status=1
printf '%s\n' "$out"
p=$(printf '%s\n' "$out" | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^passed/) n += $(i - 1)} END {print n + 0}')
f=$(printf '%s\n' "$out" | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^(failed|errors?)/) n += $(i - 1)} END {print n + 0}')
echo "skypilot patch tests: ${p:-0} passed, ${f:-0} failed"

for v in "$VENV_DIR" "$REFERENCE_VENV_DIR"; do
  site=$("$v/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  # Each patch leaves a mark: both marks is patched, neither is released.
  marks=0
  grep -q _request_cached_lookup "$site/sky/catalog/common.py" && marks=$((marks + 1))
  grep -q '^    gc.freeze()$' "$site/sky/server/requests/executor.py" && marks=$((marks + 1))
  case $marks in 2) echo "$v: patched" ;; 0) echo "$v: released" ;; *) echo "$v: partly patched" ;; esac
done >"$work/which"
grep -qx "$VENV_DIR: patched" "$work/which" && grep -qx "$REFERENCE_VENV_DIR: released" "$work/which" ||
  { cat "$work/which" >&2; die "expected a patched $VENV_DIR and a released $REFERENCE_VENV_DIR"; }

log "generating a fleet of $clusters clusters and the catalogs"
(sky_env "$work/patched" && "$VENV_DIR/bin/python" tests/real/fleet.py create "$clusters" >/dev/null)
cp -a "$work/patched" "$work/reference"
# The copy's catalogs and state must be read from its own directories.
grep -rlF "$work/patched" "$work/reference" 2>/dev/null | head -1 | grep -q . &&
  die "the state in $work/patched names its own directory; a copy would not be independent"

port_p=$(free_port)
start_sky_server "$work/patched" "$port_p" "$VENV_DIR"
port_r=$(free_port)
start_sky_server "$work/reference" "$port_r" "$REFERENCE_VENV_DIR"
python3 tests/real/status_contract.py --patched "http://127.0.0.1:$port_p" \
  --reference "http://127.0.0.1:$port_r" --clusters "$clusters" || status=1
stop_sky_server "$work/reference"

log "load test: the cluster manager's share of the patched server's CPU"
cargo build --quiet --bin skypilot-host
python3 tests/real/load_test.py --host-bin "${CARGO_TARGET_DIR:-target}/debug/skypilot-host" \
  --url "http://127.0.0.1:$port_p" --state-dir "$work/patched" \
  --window "${LOAD_WINDOW_SECS:-90}" || status=1
exit $status
