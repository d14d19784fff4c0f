#!/usr/bin/env bash
# Benchmark: the cluster manager's poll against SkyPilot 0.14.1 keeping its state in
# SQLite (its default) and in PostgreSQL, side by side in one run.
#
#   scripts/bench-db.sh        BENCH_CLUSTERS (1000), BENCH_POLLS (5 per turn),
#                              BENCH_ROUNDS (2 turns per backend, alternating)
#
# Starts a throwaway PostgreSQL (scripts/lib.sh start_postgres) and two SkyPilot API
# servers, one per backend, fills each with BENCH_CLUSTERS clusters through SkyPilot's own
# Python API (tests/real/skyctl.py: records, no cloud), then runs `skypilot-host
# cluster-manager` (release build) against
# each in turn, polling every 2 s, and reads every poll's duration from its own record
# (`poll_runs`: health probe, /status, waiting for SkyPilot's answer, diff and commit).
# The first poll of each turn is a forced refresh (SkyPilot asks the cloud of every
# cluster; here, without cloud SDKs, each fails) and is reported apart. Timeouts are long
# (15 min a request): an abandoned request keeps running in SkyPilot and would slow the
# next. Prints medians and p90 per backend. Everything it started is stopped at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

clusters=${BENCH_CLUSTERS:-1000}
polls=${BENCH_POLLS:-5}
rounds=${BENCH_ROUNDS:-2}

ensure_venv
cargo build --quiet --release --bin skypilot-host
bin=target/release/skypilot-host
log "cluster manager: $bin"

work=$(mktemp -d)
pgdir=$(mktemp -d)
manager_pid=
cleanup() {
  [ -n "$manager_pid" ] && kill "$manager_pid" 2>/dev/null || true
  stop_sky_server "$work/sqlite"
  stop_sky_server "$work/postgres"
  stop_postgres "$pgdir"
  rm -rf "$work" "$pgdir"
}
trap cleanup EXIT INT TERM

# start DIR PORT: SkyPilot's server, tried three times (on a loaded machine SkyPilot may
# give up waiting for its own request queues).
start() {
  local n
  for n in 1 2 3; do
    ( start_sky_server "$1" "$2" ) && return 0
    stop_sky_server "$1"
    log "SkyPilot did not start (attempt $n of 3)"
  done
  die "SkyPilot's API server in $1 did not start"
}

start_postgres "$pgdir"
pg_uri=$SKYPILOT_TEST_PG_URI
port_sqlite=$(free_port)
log "SkyPilot on SQLite, 127.0.0.1:$port_sqlite"
start "$work/sqlite" "$port_sqlite"
port_pg=$(free_port)
log "SkyPilot on PostgreSQL, 127.0.0.1:$port_pg"
SKYPILOT_DB_CONNECTION_URI=$pg_uri start "$work/postgres" "$port_pg"

# fill DIR [URI]: BENCH_CLUSTERS clusters in the state of the server of DIR.
fill() {
  (
    sky_env "$1"
    if [ -n "${2:-}" ]; then
      # SkyPilot reads the database URI only in a server process.
      export SKYPILOT_DB_CONNECTION_URI=$2 IS_SKYPILOT_SERVER=true
    fi
    "$VENV_DIR/bin/python" - "$clusters" <<'EOF'
import argparse, sys
sys.path.insert(0, 'tests/real')
import skyctl
skyctl.write_catalog()
for i in range(int(sys.argv[1])):
    skyctl.create(argparse.Namespace(
        name=f'bench-{i:05d}', status=['UP', 'STOPPED', 'INIT'][i % 3], autostop=-1,
        down=False, instance_type='m6i.large', region='us-west-2', nodes=1))
EOF
  )
}
log "creating $clusters clusters in each"
fill "$work/sqlite"
fill "$work/postgres" "$pg_uri"

# turn NAME PORT: one manager against one server, until `polls` polls after the first.
turn() {
  local name=$1 port=$2 n=$3 db="$work/$1-$3.db"
  cat >"$work/host-$name.toml" <<EOF
[skypilot]
api_url = "http://127.0.0.1:$port"
request_timeout_secs = 900
[cluster_manager]
poll_interval_secs = 2
# The poll's duration is measured here, not the rate: no stretching of the interval.
load_budget = 1.0
force_refresh_interval_secs = 86400
poll_deadline_secs = 1800
database = "$db"
EOF
  "$bin" cluster-manager --config "$work/host-$name.toml" 2>"$work/manager-$name-$n.log" &
  manager_pid=$!
  local i
  for i in $(seq 1 3600); do
    sleep 1
    kill -0 "$manager_pid" 2>/dev/null || { tail -5 "$work/manager-$name-$n.log" >&2; die "cluster manager against $name exited"; }
    [ -f "$db" ] || continue
    if python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); sys.exit(0 if c.execute("select count(*) from poll_runs").fetchone()[0] > int(sys.argv[2]) else 1)' "$db" "$polls" 2>/dev/null; then
      break
    fi
  done
  kill "$manager_pid"
  wait "$manager_pid" 2>/dev/null || true
  manager_pid=
}

for r in $(seq 1 "$rounds"); do
  log "round $r of $rounds"
  turn sqlite "$port_sqlite" "$r"
  turn postgres "$port_pg" "$r"
done

python3 - "$work" "$clusters" <<'EOF'
import glob, sqlite3, statistics, sys
work, clusters = sys.argv[1], int(sys.argv[2])
print(f'poll of {clusters:,} clusters (ms): median, p90, polls (every poll but the first of '
      'each turn); then the first polls (forced refresh, then the read without refresh)')
for name in ('sqlite', 'postgres'):
    times, errors, seen, forced = [], [], set(), []
    for db in sorted(glob.glob(f'{work}/{name}-*.db')):
        c = sqlite3.connect(db)
        first = c.execute('select min(started_at) from poll_runs where refresh = "NONE"').fetchone()[0]
        rows = c.execute('select finished_at - started_at, outcome, error, clusters from poll_runs '
                         'where refresh = "NONE" order by id').fetchall()
        t0 = c.execute('select min(started_at) from poll_runs').fetchone()[0]
        forced.append((rows[0][0] + (first - t0)) * 1000 if rows else float('nan'))
        for dt, outcome, error, n in rows[1:]:
            if outcome == 'ok':
                times.append(dt * 1000)
                seen.add(n)
            else:
                errors.append(error)
    times.sort()
    p90 = times[int(0.9 * (len(times) - 1))] if times else float('nan')
    med = statistics.median(times) if times else float('nan')
    print(f'  {name:9} {med:8.0f} {p90:8.0f} {len(times):4d}  clusters seen {sorted(seen)}'
          + (f'; {len(errors)} failed: {errors[:1]}' if errors else '')
          + f'; first polls: {", ".join(f"{x:.0f}" for x in forced)}')
EOF
