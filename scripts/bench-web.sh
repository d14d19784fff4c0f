#!/usr/bin/env bash
# Benchmark: the web UI next to the real SkyPilot API server holding the same fleet
# (clusters over AWS, GCP and Azure in a generated catalog, tests/real/fleet.py), with the
# patch of nix/patches/ (VENV_DIR) and as released (REFERENCE_VENV_DIR), one server at a
# time so an idle one does not take the CPU.
#
#   scripts/bench-web.sh [SIZES...]        default: 1000 10000
#
# For each size and each server:
# - as a person sees it (tests/browser/first_row.py): headless Chromium loads the
#   console's Clusters page (the release build's cluster manager and web UI in front of
#   that server, logged in) and SkyPilot's own dashboard Clusters page, alternating
#   (BENCH_REPS loads each, default 5), each timing the first cluster row's paint;
# - unless WEB_BROWSER_ONLY=1: `cargo bench --bench web_ui` (the server-side figures,
#   with the server's /status round trip in the same run), and against the patched
#   server `cargo bench --bench gateway`.
# Results: the Markdown rows on stdout, every load as JSON in $BENCH_OUT (default
# target/bench-web.jsonl); recorded in docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_venv
ensure_reference_venv
ensure_browser_venv
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000)
out=${BENCH_OUT:-target/bench-web.jsonl}
work=$(mktemp -d)
HOST_PIDS=()
cleanup() {
  stop_host_roles
  stop_sky_server "$work/patched"
  stop_sky_server "$work/released"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
cargo build --release --quiet --bin skypilot-host
bin=target/release/skypilot-host
[ "${WEB_BROWSER_ONLY:-0}" = 1 ] || cargo bench --no-run --bench web_ui --bench gateway

# The release build's cluster manager and web UI in front of the server at $1 (port),
# their database in $2; waits until the cluster manager has recorded $3 clusters.
start_host() {
  local api_port=$1 dir=$2 n=$3
  start_host_roles "$bin" "$dir" "$api_port" "poll_interval_secs = 30"
  local i
  for i in $(seq 1 1200); do
    if "$bin" status --json --config "$dir/host.toml" 2>/dev/null \
      | python3 -c "import json,sys; r=json.load(sys.stdin); sys.exit(0 if r['total'] >= $n and not r['state']['stale'] else 1)" 2>/dev/null; then
      return 0
    fi
    sleep 1
  done
  die "the cluster manager did not record $n clusters within 20 min (log: $dir/manager.log)"
}

echo "| clusters | SkyPilot | browser cache | console: first row, median (range) | SkyPilot's dashboard: first row | dashboard / console |"
echo "|---:|---|---|---:|---:|---:|"
for n in "${sizes[@]}"; do
  rm -rf "$work/patched" "$work/released"
  log "fleet of $n clusters"
  (sky_env "$work/patched" && "$VENV_DIR/bin/python" tests/real/fleet.py create "$n" >/dev/null)
  cp -a "$work/patched" "$work/released"
  for which in patched released; do
    venv=$VENV_DIR
    [ "$which" = released ] && venv=$REFERENCE_VENV_DIR
    port=$(free_port)
    start_sky_server "$work/$which" "$port" "$venv"
    log "console and dashboard, $which SkyPilot, $n clusters"
    start_host "$port" "$work/host-$which-$n" "$n"
    "$BROWSER_VENV_DIR/bin/python" tests/browser/first_row.py \
      --console "http://127.0.0.1:$WEB_PORT/console/clusters" \
      --login "http://127.0.0.1:$WEB_PORT/console/login" \
      --user admin --password-file "$work/host-$which-$n/password" \
      --dashboard "http://127.0.0.1:$port/dashboard/clusters" \
      --reps "${BENCH_REPS:-5}" --label "$which" --clusters "$n" >"$work/result"
    grep -v '^{' "$work/result"
    grep '^{' "$work/result" >>"$out"
    stop_host_roles
    if [ "${WEB_BROWSER_ONLY:-0}" != 1 ]; then
      log "web UI benches next to the $which SkyPilot"
      WEB_CLUSTERS=$n SKYPILOT_URL="http://127.0.0.1:$port" SKYPILOT_LABEL=$which \
        cargo bench --quiet --bench web_ui >&2
      if [ "$which" = patched ]; then
        SKYPILOT_BENCH_API_URL="http://127.0.0.1:$port" cargo bench --quiet --bench gateway >&2
      fi
    fi
    stop_sky_server "$work/$which"
  done
done
