#!/usr/bin/env bash
# Benchmark: `skypilot-host backup` (release build) of a SkyPilot 0.14.1 API server's state
# at BENCH_SIZES clusters (default "1000 10000"), and SkyPilot's /status latency while
# backups run back to back next to without (tests/real/bench_backup.py, same run).
#
# For each size: a fresh SkyPilot state with the fleet made through SkyPilot's own Python
# API (tests/real/fleet.py) and SkyPilot's SSH key pairs of 20 people
# (tests/real/skyctl.py keys), the server started, the cluster manager run until the host
# database holds the fleet (so the backup takes it too), then stopped (its polls would
# weigh on the latency measured). Prints a Markdown table for docs/performance.md.
# Everything it started is stopped at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

sizes=${BENCH_SIZES:-1000 10000}
ensure_venv
cargo build --quiet --release --bin skypilot-host
bin=$PWD/target/release/skypilot-host

work=$(mktemp -d)
manager_pid=
cleanup() {
  [ -n "$manager_pid" ] && kill "$manager_pid" 2>/dev/null || true
  stop_sky_server "$work/sky"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "| clusters | backup, median | backup size | /status p50 without | /status p50 during backups | difference | backups during |"
echo "|---:|---|---:|---:|---:|---:|---:|"
for n in $sizes; do
  stop_sky_server "$work/sky"
  rm -rf "$work/sky" "$work/host"
  mkdir -p "$work/host"
  (
    sky_env "$work/sky"
    "$VENV_DIR/bin/python" tests/real/fleet.py create "$n" >/dev/null
    for i in $(seq 1 20); do
      "$VENV_DIR/bin/python" tests/real/skyctl.py keys "person$i" >/dev/null
    done
  )
  port=$(free_port)
  start_sky_server "$work/sky" "$port"
  cat >"$work/host/host.toml" <<TOML
[skypilot]
api_url = "http://127.0.0.1:$port"
request_timeout_secs = 900

[cluster_manager]
database = "$work/host/host.db"
poll_interval_secs = 5
poll_deadline_secs = 1800

[backup]
directory = "$work/host/backups"
sky_home = "$work/sky/home"
sky_runtime_dir = "$work/sky/runtime"
skypilot_version = "$SKYPILOT_VERSION"
TOML
  "$bin" cluster-manager --config "$work/host/host.toml" 2>"$work/host/manager.log" &
  manager_pid=$!
  for _ in $(seq 1 600); do
    got=$("$bin" status --json --config "$work/host/host.toml" 2>/dev/null \
      | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["clusters"]))' 2>/dev/null || echo 0)
    [ "$got" -ge "$n" ] && break
    kill -0 "$manager_pid" 2>/dev/null || die "the cluster manager exited: $(tail -3 "$work/host/manager.log")"
    sleep 1
  done
  kill "$manager_pid"
  wait "$manager_pid" 2>/dev/null || true
  manager_pid=
  "$VENV_DIR/bin/python" tests/real/bench_backup.py --url "http://127.0.0.1:$port" \
    --host-bin "$bin" --config "$work/host/host.toml" --clusters "$n"
done
