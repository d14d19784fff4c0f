#!/usr/bin/env bash
# The console's screenshots in docs/screenshots, from real parts: the patched SkyPilot
# API server with a fleet of CLUSTERS (default 1,000) made through its own Python API
# (tests/real/fleet.py), the release build's cluster manager (polling every 5 s) and web
# UI in front of it, and the fleet at work for CHURN_SECS (default 300: some clusters
# stop, start and launch every 15 s, so the charts and timelines have a history).
#
#   scripts/screenshots.sh [CLUSTERS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_venv
ensure_browser_venv
n=${1:-1000}
work=$(mktemp -d)
HOST_PIDS=()
cleanup() {
  stop_host_roles
  stop_sky_server "$work/sky"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
cargo build --release --quiet --bin skypilot-host
log "fleet of $n clusters"
(sky_env "$work/sky" && "$VENV_DIR/bin/python" tests/real/fleet.py create "$n" >/dev/null)
port=$(free_port)
start_sky_server "$work/sky" "$port"
start_host_roles target/release/skypilot-host "$work/host" "$port" \
  "poll_interval_secs = 5
api_server_pid_file = \"$work/sky/server.pgid\"
[policy]
catalog_dir = \"$work/sky/runtime/.sky/catalogs/v8\""
log "the fleet at work for ${CHURN_SECS:-300} s"
(sky_env "$work/sky" && "$VENV_DIR/bin/python" tests/real/fleet.py churn "${CHURN_SECS:-300}")
sleep 10
mkdir -p docs/screenshots
(cd tests/browser && "$BROWSER_VENV_DIR/bin/python" screenshots.py "http://127.0.0.1:$WEB_PORT" \
  admin "$work/host/password" "$OLDPWD/docs/screenshots")
