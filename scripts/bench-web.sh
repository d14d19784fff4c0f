#!/usr/bin/env bash
# Benchmark: the web UI and the gateway next to the real SkyPilot API server holding the
# same fleet (default 1,000 clusters over AWS, GCP and Azure in a generated catalog,
# tests/real/fleet.py), with the patch of nix/patches/ (VENV_DIR) and as released
# (REFERENCE_VENV_DIR), one server at a time so an idle one does not take the CPU.
#
#   scripts/bench-web.sh [CLUSTERS]
#
# Runs `cargo bench --bench web_ui` against each server (its /status round trip and
# /api/health in the same run as the web UI's figures), then `cargo bench --bench gateway`
# with the patched server as the upstream. Results: docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_venv
ensure_reference_venv
ensure_apt wrk
n=${1:-1000}
work=$(mktemp -d)
cleanup() {
  stop_sky_server "$work/patched"
  stop_sky_server "$work/released"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
cargo bench --no-run --bench web_ui --bench gateway
log "fleet of $n clusters"
(sky_env "$work/patched" && "$VENV_DIR/bin/python" tests/real/fleet.py create "$n" >/dev/null)
cp -a "$work/patched" "$work/released"
for which in patched released; do
  venv=$VENV_DIR
  [ "$which" = released ] && venv=$REFERENCE_VENV_DIR
  port=$(free_port)
  start_sky_server "$work/$which" "$port" "$venv"
  log "web UI next to the $which SkyPilot on port $port"
  WEB_CLUSTERS=$n SKYPILOT_URL="http://127.0.0.1:$port" SKYPILOT_LABEL=$which \
    cargo bench --quiet --bench web_ui
  if [ "$which" = patched ]; then
    log "gateway in front of the $which SkyPilot"
    SKYPILOT_BENCH_API_URL="http://127.0.0.1:$port" cargo bench --quiet --bench gateway
  fi
  stop_sky_server "$work/$which"
done
