#!/usr/bin/env bash
# Benchmark: the SkyPilot API server's CPU per /status and per poll, with the patch of
# nix/patches/ (VENV_DIR) and as released (REFERENCE_VENV_DIR), side by side in one run,
# at each fleet size (default "1000 10000"; clusters over AWS, GCP and Azure in a
# generated catalog of thousands of rows, tests/real/fleet.py). CPU is the server's
# whole process tree from /proc, idle subtracted (tests/real/server_cpu.py). Also the
# poll interval the cluster manager chooses against each server (default config).
#
#   scripts/bench-status-cpu.sh [SIZES...]      e.g. scripts/bench-status-cpu.sh 1000
#
# Environment: BENCH_CATALOG (published, the default: catalogs the size of SkyPilot's
# published v8 ones, about 85,000 rows; or test: the tests' 3,380 rows), BENCH_REPS
# (default 5), BENCH_IDLE_SECS (default 30), BENCH_RELEASED_UP_TO (measure the released
# SkyPilot only at sizes up to this; default: every size). Results:
# the Markdown rows on stdout, every figure as JSON in $BENCH_OUT (default
# target/bench-status-cpu.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_venv
# The cluster manager only reads the interval it chose: its own build does not matter.
cargo build --quiet --bin skypilot-host
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)
out=${BENCH_OUT:-target/bench-status-cpu.jsonl}
work=$(mktemp -d)
cleanup() {
  stop_sky_server "$work/patched"
  stop_sky_server "$work/released"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
echo "| clusters | SkyPilot | CPU s per /status, whole tree | CPU s per /status, executor + main | CPU s per poll | wall s per /status | manager's interval s | manager's share of a core |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|"
for n in "${sizes[@]}"; do
  rm -rf "$work/patched" "$work/released"
  log "fleet of $n clusters, ${BENCH_CATALOG:-published} catalog"
  (sky_env "$work/patched" && "$VENV_DIR/bin/python" tests/real/fleet.py create "$n" \
    --catalog "${BENCH_CATALOG:-published}" >/dev/null)
  port_p=$(free_port)
  start_sky_server "$work/patched" "$port_p" "$VENV_DIR"
  servers=(--server "patched=http://127.0.0.1:$port_p,$work/patched")
  if [ "$n" -le "${BENCH_RELEASED_UP_TO:-$n}" ]; then
    cp -a "$work/patched" "$work/released"
    port_r=$(free_port)
    start_sky_server "$work/released" "$port_r" "$REFERENCE_VENV_DIR"
    servers+=(--server "released=http://127.0.0.1:$port_r,$work/released")
  fi
  python3 tests/real/bench_status_cpu.py --clusters "$n" --reps "${BENCH_REPS:-5}" \
    --catalog "${BENCH_CATALOG:-published}" \
    --idle-secs "${BENCH_IDLE_SECS:-30}" --host-bin target/debug/skypilot-host \
    "${servers[@]}" >"$work/result"
  grep -v '^{' "$work/result"
  grep '^{' "$work/result" >>"$out"
  stop_sky_server "$work/patched"
  stop_sky_server "$work/released"
done
