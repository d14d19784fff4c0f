#!/usr/bin/env bash
# Benchmark: the cluster manager taking in SkyPilot's managed-job queue, next to SkyPilot's
# own /jobs/queue/v2 round trip for the same records (benches/jobs.rs).
#
# Starts a SkyPilot 0.14.1 API server whose jobs controller runs on this host
# (consolidation mode), makes BENCH_JOBS (default 10,000) managed jobs in it through
# SkyPilot's own state functions (tests/real/skyctl.py jobs-bulk: every 10th running,
# every 10th failed, the rest succeeded; about 25 s per 1,000 on 2 cores), then runs
# `cargo bench --bench jobs` with JOBS_API_URL pointing at it. The simulator's part of the
# benchmark (ingest and the monitor's scrape with 1,000 clusters) runs in the same
# process. Everything it started is stopped at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

n=${BENCH_JOBS:-10000}
ensure_venv
work=$(mktemp -d)
cleanup() {
  stop_sky_server "$work/sky"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

mkdir -p "$work/sky"
printf 'jobs:\n  controller:\n    consolidation_mode: true\n' >"$work/sky/config.yaml"
port=$(free_port)
start_sky_server "$work/sky" "$port"
log "making $n managed jobs through SkyPilot's own state functions"
t0=$SECONDS
(
  sky_env "$work/sky"
  "$VENV_DIR/bin/python" tests/real/skyctl.py jobs-bulk "$n" --user bench >/dev/null
)
log "made them in $((SECONDS - t0)) s"
JOBS_API_URL="http://127.0.0.1:$port" BENCH_JOBS="$n" cargo bench --quiet --bench jobs
