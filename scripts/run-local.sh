#!/usr/bin/env bash
# Runs the whole stack locally: SkyPilot's API server (0.14.1, in a venv) on loopback and
# every skypilot-host role, with all state under .run/. Ctrl-C stops everything.
#
#   scripts/run-local.sh           an empty fleet
#   scripts/run-local.sh --demo    plus two demo clusters, three managed jobs and two services made through SkyPilot's own API,
#                                  on a local EC2 emulator (no cloud is contacted)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

demo=false
for a in "$@"; do
  case "$a" in
    --demo) demo=true ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) die "unknown argument $a (expected --demo)" ;;
  esac
done

command -v cargo >/dev/null || die "cargo is required (https://rustup.rs)"
ensure_apt curl python3-venv
if $demo; then
  # The demo's SkyPilot has the AWS SDK and talks to a local EC2 emulator.
  VENV_DIR=$DEMO_VENV_DIR
  ensure_demo_venv
else
  ensure_venv
fi
# SKYPILOT_HOST_PROFILE=debug uses the debug build (scripts/demo-check.sh, which runs
# next to the tests' build).
profile=${SKYPILOT_HOST_PROFILE:-release}
case $profile in
  release) build=(--release) ;;
  debug) build=() ;;
  *) die "SKYPILOT_HOST_PROFILE=$profile: expected release or debug" ;;
esac
log "building skypilot-host ($profile; a few minutes the first time)"
t0=$SECONDS
# cargo's own progress on a terminal; on a pipe or a log, one line at the end.
if [ -t 2 ]; then cargo build "${build[@]}"; else cargo build "${build[@]}" --quiet; fi
log "built target/$profile/skypilot-host in $((SECONDS - t0)) s"
bin="$REPO_ROOT/target/$profile/skypilot-host"

run="$REPO_ROOT/.run"
mkdir -p "$run"
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
api_port=46580; port_free "$api_port" || api_port=$(free_port)
metrics_port=9188; port_free "$metrics_port" || metrics_port=$(free_port)
web_port=9189; port_free "$web_port" || web_port=$(free_port)
policy_port=9190; port_free "$policy_port" || policy_port=$(free_port)
ec2_port=$(free_port)
ec2_pid=

pids=()
names=()
cleanup() {
  trap - EXIT
  trap "" INT TERM  # a second Ctrl-C must not cut the clean-up short
  # Stop everything even if one step fails. The roles first (they read SkyPilot), then
  # SkyPilot's API server.
  set +e
  log "stopping"
  local i t0
  for i in "${!pids[@]}"; do
    t0=$SECONDS
    kill -TERM "${pids[$i]}" 2>/dev/null && wait "${pids[$i]}" 2>/dev/null
    printf '    stopped %s (%d s)\n' "${names[$i]}" $((SECONDS - t0)) >&2
  done
  if [ -f "$run/sky/server.pgid" ]; then
    t0=$SECONDS
    stop_sky_server "$run/sky"
    printf '    stopped the SkyPilot API server (%d s)\n' $((SECONDS - t0)) >&2
  fi
  # The EC2 emulator last: SkyPilot may call it until it stops.
  if [ -n "$ec2_pid" ]; then
    kill -TERM "$ec2_pid" 2>/dev/null && wait "$ec2_pid" 2>/dev/null
    printf '    stopped the EC2 emulator\n' >&2
  fi
  log "stopped; state and logs are kept in .run/"
}
# start_role NAME ARGS...: runs the skypilot-host role NAME in the background, its log
# in .run/NAME.log.
start_role() {
  local name=$1
  shift
  "$bin" "$@" 2>>"$run/$name.log" &
  pids+=($!)
  names+=("$name")
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM


# The demo's clusters are instances in a local EC2 emulator (moto's server) with SkyPilot's
# records of them, made through SkyPilot's Python API: SkyPilot's stop and down act on the
# emulator's instances as they would on AWS's. Autostop and start need the cluster's head
# node over SSH (SkyPilot's skylet runs there), and an emulated instance is no machine.
demo_notice="demo-train and demo-notebook run on a local EC2 emulator, not on a cloud: stop and down on them complete for real against it; autostop and start cannot (SkyPilot sets them on the cluster's head node over SSH, and an emulated instance is no machine)."
web_notice=
$demo && web_notice="notice = \"Demo: $demo_notice\""
if $demo; then
  # The demo's clusters are made anew at each start, so the host's history of the last
  # run (status timelines, audit, charts) would describe other clusters of the same names.
  rm -f "$run/host.db" "$run/host.db-wal" "$run/host.db-shm"
  # The same for SkyPilot's managed jobs: the demo's three are made anew too.
  rm -f "$run"/sky/runtime/.sky/spot_jobs.db*
  # And its SkyServe services.
  rm -f "$run"/sky/runtime/.sky/serve/services.db*
fi
cat >"$run/host.toml" <<TOML
[skypilot]
api_url = "http://127.0.0.1:$api_port"

[cluster_manager]
poll_interval_secs = 10
force_refresh_interval_secs = 300
database = "$run/host.db"
# The API server's CPU for the load budget: its process tree (start_sky_server writes
# the pid of its main process there).
api_server_pid_file = "$run/sky/server.pgid"

[monitor]
listen = "127.0.0.1:$metrics_port"

[web_ui]
listen = "127.0.0.1:$web_port"
users_file = "$run/web-users"
$web_notice

[autostop]
idle_minutes = 60
interval_secs = 60

[policy]
listen = "127.0.0.1:$policy_port"
launch_policy = "$run/launch-policy.json"
token_file = "$run/policy-token"
create_token = true
catalog_dir = "$run/sky/runtime/.sky/catalogs/v8"
TOML
# A demo admin with a random password, new at each start.
web_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$web_password" | "$bin" hash-password admin --role admin >"$run/web-users"
chmod 600 "$run/web-users"
cat >>"$run/host.toml" <<TOML

[log]
level = "info"
TOML
"$bin" check-config "$run/host.toml" >/dev/null

# The launch policy: autostop at most 60 idle minutes on every launch. SkyPilot's config
# names it (admin_policy, with the token the policy creates at its first start), so it
# starts before the API server.
echo '{"autostop_idle_minutes": 60}' >"$run/launch-defaults.json"
if $demo; then
  # SkyPilot's jobs and serve controllers on this host (consolidation mode): the demo's
  # managed jobs and services are their records, and /jobs/queue/v2 and /serve/status
  # answer from them.
  echo '{"rbac": {"default_role": "viewer"}, "jobs": {"controller": {"consolidation_mode": true}}, "serve": {"controller": {"consolidation_mode": true}}}' >"$run/sky-config.json"
else
  echo '{"rbac": {"default_role": "viewer"}}' >"$run/sky-config.json"
fi
"$VENV_DIR/bin/python" scripts/sky-schema.py >"$run/sky-config-schema.json"
"$bin" sky-config render "$run/sky-config.json" "$run/sky-config.yaml" \
  --schema "$run/sky-config-schema.json" \
  --launch-defaults "$run/launch-defaults.json" --policy-out "$run/launch-policy.json" >/dev/null
start_role policy policy --config "$run/host.toml"
for _ in $(seq 1 50); do [ -s "$run/policy-token" ] && break; sleep 0.1; done
mkdir -p "$run/sky"
rm -f "$run/sky/config.yaml"
"$bin" policy --config "$run/host.toml" sky-config "$run/sky-config.yaml" "$run/sky/config.yaml"

if $demo; then
  log "starting the EC2 emulator (moto $MOTO_VERSION) on 127.0.0.1:$ec2_port (log: .run/ec2-emulator.log)"
  "$VENV_DIR/bin/moto_server" -H 127.0.0.1 -p "$ec2_port" >"$run/ec2-emulator.log" 2>&1 &
  ec2_pid=$!
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$ec2_port/moto-api/" 2>/dev/null && break
    kill -0 "$ec2_pid" 2>/dev/null || die "the EC2 emulator exited at start; see .run/ec2-emulator.log"
    sleep 0.2
  done
  # SkyPilot's AWS SDK calls go to the emulator, with its fixed test account.
  export AWS_ENDPOINT_URL="http://127.0.0.1:$ec2_port" AWS_ACCESS_KEY_ID=demo \
    AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION=us-west-2
fi
log "starting SkyPilot $SKYPILOT_VERSION API server on 127.0.0.1:$api_port (log: .run/sky/server.log)"
t0=$SECONDS
start_sky_server "$run/sky" "$api_port"
log "SkyPilot's API server answers (after $((SECONDS - t0)) s)"
if $demo; then
  log "making two demo clusters on the EC2 emulator, three managed jobs and two services through SkyPilot's own API, owned by admin"
  (
    sky_env "$run/sky"
    "$VENV_DIR/bin/python" tests/real/skyctl.py catalog --zone-ids >/dev/null
    for spec in "demo-train --autostop 60" "demo-notebook --status STOPPED"; do
      # shellcheck disable=SC2086
      "$VENV_DIR/bin/python" tests/real/skyctl.py remove ${spec%% *} >/dev/null 2>&1 || true
      # shellcheck disable=SC2086
      "$VENV_DIR/bin/python" tests/real/skyctl.py create $spec --user admin --ec2 >/dev/null
    done
    # Three managed jobs of admin, made through SkyPilot's own state functions as its
    # jobs controller would: one running on demo-train after a recovery, one whose setup
    # failed, one waiting.
    id=$("$VENV_DIR/bin/python" tests/real/skyctl.py job demo-finetune --user admin)
    "$VENV_DIR/bin/python" tests/real/skyctl.py job-state "$id" RUNNING --recoveries 1 --cluster demo-train >/dev/null
    id=$("$VENV_DIR/bin/python" tests/real/skyctl.py job demo-eval --user admin)
    "$VENV_DIR/bin/python" tests/real/skyctl.py job-state "$id" FAILED_SETUP \
      --reason "setup failed: pip could not install torch==9.9 (demo)" >/dev/null
    "$VENV_DIR/bin/python" tests/real/skyctl.py job demo-sweep --user admin >/dev/null
    # Two SkyServe services of admin, recorded as `sky serve up` and its replica manager
    # record them: one serving on one of its two replicas (the other starting), one whose
    # only replica failed its readiness probe (no ready replica).
    "$VENV_DIR/bin/python" tests/real/skyctl.py service demo-llm-api --user admin --replicas 2 >/dev/null
    "$VENV_DIR/bin/python" tests/real/skyctl.py replica demo-llm-api 1 READY >/dev/null
    "$VENV_DIR/bin/python" tests/real/skyctl.py replica demo-llm-api 2 STARTING >/dev/null
    "$VENV_DIR/bin/python" tests/real/skyctl.py service demo-embed --user admin >/dev/null
    "$VENV_DIR/bin/python" tests/real/skyctl.py replica demo-embed 1 FAILED_PROBING >/dev/null
  )
fi

log "starting the cluster manager, monitor, web UI and autostop enforcer"
start_role cluster-manager cluster-manager --config "$run/host.toml"
start_role monitor monitor --config "$run/host.toml"
start_role web-ui web-ui --config "$run/host.toml"
start_role autostop autostop --daemon --config "$run/host.toml"
sleep 2
for i in "${!pids[@]}"; do
  kill -0 "${pids[$i]}" 2>/dev/null || die "${names[$i]} exited at start; see .run/${names[$i]}.log"
done

cat <<INFO

  SkyPilot API server   http://127.0.0.1:$api_port            dashboard: http://127.0.0.1:$api_port/dashboard/
  cluster manager       polls every 10 s into .run/host.db, less often when its reads would
                        take over 2% of the API server's CPU (status and the console's
                        Services page say the interval in use and why)
                                                             log: .run/cluster-manager.log
  monitor               http://127.0.0.1:$metrics_port/metrics   log: .run/monitor.log
  web UI                http://127.0.0.1:$web_port/console/   log: .run/web-ui.log
                        log in as admin, password $web_password (new at each start)
                        SkyPilot's dashboard through it: http://127.0.0.1:$web_port/dashboard/
  autostop enforcer     a pass every 60 s (autostop <= 60 min)  log: .run/autostop.log
  launch policy         http://127.0.0.1:$policy_port/v1/policy (SkyPilot's admin_policy)  log: .run/policy.log

  Try:
    $bin status --config .run/host.toml
    $bin status --jobs --all --config .run/host.toml
    $bin status --services --config .run/host.toml
    $bin autostop --dry-run --config .run/host.toml
    SKYPILOT_API_SERVER_ENDPOINT=http://admin:$web_password@127.0.0.1:$web_port $VENV_DIR/bin/sky status
    curl -s http://127.0.0.1:$metrics_port/metrics | grep '^skypilot_'
    SKYPILOT_API_SERVER_ENDPOINT=http://127.0.0.1:$api_port $VENV_DIR/bin/sky status -u

  The API server trusts every local caller as admin: keep this to a machine you alone use.
  Ctrl-C stops everything.
INFO
if $demo; then
  cat <<INFO
  Demo: $demo_notice
  EC2 emulator          http://127.0.0.1:$ec2_port (moto $MOTO_VERSION)   log: .run/ec2-emulator.log
    stop demo-train from its console page, or:
    SKYPILOT_API_SERVER_ENDPOINT=http://admin:$web_password@127.0.0.1:$web_port $VENV_DIR/bin/sky stop -y demo-train

INFO
fi
wait -n "${pids[@]}" || true
die "a skypilot-host role exited; see .run/*.log"
