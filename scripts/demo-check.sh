#!/usr/bin/env bash
# A newcomer's first minute, checked: scripts/run-local.sh --demo (debug build) is started
# as README.md says, and then:
#   - the banner says the poll interval and when it stretches, and the demo's notice;
#   - the console shows the notice on every page, behind its login;
#   - SkyPilot's own CLI through the gateway, as the console's admin, lists the demo's
#     clusters (they belong to admin), and with a wrong password says so in one line
#     without the password;
#   - `status --json` prints money rounded;
#   - the demo's managed jobs are in `status --jobs`, on the console's Jobs page and in
#     the monitor's series; its services likewise in `status --services`, on the
#     Services page and in the monitor's series;
#   - no role logs an ERROR line in the first minute;
#   - a stop and a down from the console's API complete: SkyPilot lists the one STOPPED and
#     not the other, and the EC2 emulator's instances are stopped and terminated;
#   - stopping it names each part, leaves nothing listening, and SkyPilot logs no
#     BrokenPipeError.
# Prints "demo: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
VENV_DIR=$DEMO_VENV_DIR
passed=0 failed=0
check() {
  if [ "$1" = 0 ]; then passed=$((passed + 1)); echo "ok   $2"; else failed=$((failed + 1)); echo "FAIL $2"; fi
}
out=$(mktemp)
rm -f .run/*.log
SKYPILOT_HOST_PROFILE=debug setsid scripts/run-local.sh --demo >"$out" 2>&1 &
pid=$!
started=$SECONDS
for _ in $(seq 1 600); do
  grep -q "Ctrl-C stops everything" "$out" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
ready=$((SECONDS - started))
grep -q "Ctrl-C stops everything" "$out"
check $? "run-local.sh --demo is ready ($ready s with the build done)"
grep -q "polls every 10 s into .run/host.db, less often when its reads would" "$out"
check $? "the banner says the poll interval and that it stretches"
grep -q "Demo: demo-train and demo-notebook run on a local EC2 emulator, not on a cloud" "$out"
check $? "the banner says the demo's clusters run on a local EC2 emulator"

web=$(sed -n 's|.*web UI *http://\(127.0.0.1:[0-9]*\)/console/.*|\1|p' "$out" | head -1)
pw=$(sed -n 's/.*log in as admin, password \([A-Za-z0-9]*\).*/\1/p' "$out" | head -1)
jar=$(mktemp)
login=$(curl -s -c "$jar" "http://$web/console/login")
token=$(printf '%s' "$login" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
curl -s -b "$jar" -c "$jar" -o /dev/null --data-urlencode "username=admin" \
  --data-urlencode "password=$pw" --data-urlencode "csrf_token=$token" "http://$web/console/login"
all=0
for path in / /clusters /jobs /serve /autostop /audit /services /config; do
  curl -s -b "$jar" "http://$web/console$path" | grep -q 'class="notice" role="note">Demo: demo-train and demo-notebook run on a local EC2 emulator' || all=1
done
check $all "every console page shows the demo's notice"
sky=$(SKYPILOT_API_SERVER_ENDPOINT="http://admin:$pw@$web" timeout 120 "$VENV_DIR/bin/sky" status 2>&1)
printf '%s\n' "$sky" | grep -q "^demo-train " && printf '%s\n' "$sky" | grep -q "^demo-notebook "
check $? "sky status through the gateway as admin lists the demo's clusters"
sky=$(SKYPILOT_API_SERVER_ENDPOINT="http://admin:not-the-pw-42@$web" timeout 120 "$VENV_DIR/bin/sky" status 2>&1)
printf '%s\n' "$sky" | grep -q 'wrong user name or password for "admin"' && ! printf '%s\n' "$sky" | grep -q "not-the-pw-42"
check $? "sky with a wrong password says so without the password: $(printf '%s' "$sky" | tail -1)"
json=$(target/debug/skypilot-host status --json --config .run/host.toml 2>&1)
printf '%s\n' "$json" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for c in d["clusters"]:
    for k, places in (("hourly_cost", 4), ("total_cost", 2), ("cost_so_far", 2)):
        v = c.get(k)
        assert v is None or round(v, places) == v, (c["name"], k, v)
    assert c["user_name"] == "admin", c
assert {c["name"] for c in d["clusters"]} >= {"demo-train", "demo-notebook"}, d
'
check $? "status --json: the demo's clusters, owned by admin, money rounded"
# The demo's managed jobs: status --jobs, the console's Jobs page, the monitor's series.
# The cluster manager reads the job queue at its first poll.
for _ in $(seq 1 60); do
  jobs=$(target/debug/skypilot-host status --jobs --all --config .run/host.toml 2>&1)
  printf '%s\n' "$jobs" | grep -q "demo-finetune  *RUNNING  *admin  *demo-train  *1 " && break
  sleep 1
done
printf '%s\n' "$jobs" | grep -q "demo-finetune  *RUNNING  *admin  *demo-train  *1 " &&
  printf '%s\n' "$jobs" | grep -q "demo-eval  *FAILED_SETUP .*setup failed: pip could not install" &&
  printf '%s\n' "$jobs" | grep -q "demo-sweep  *PENDING"
check $? "status --jobs --all lists the demo's three managed jobs: $(printf '%s\n' "$jobs" | sed -n 2p)"
page=$(curl -s -b "$jar" "http://$web/console/jobs?all=1")
printf '%s' "$page" | grep -q ">demo-finetune<" && printf '%s' "$page" | grep -q ">FAILED_SETUP<" &&
  printf '%s' "$page" | grep -q 'href="/dashboard/jobs"'
check $? "the console's Jobs page shows them, with a link to SkyPilot's own jobs page"
metrics=$(sed -n 's|.*monitor *\(http://127.0.0.1:[0-9]*/metrics\).*|\1|p' "$out" | head -1)
scrape=$(curl -s "$metrics")
printf '%s\n' "$scrape" | grep -q '^skypilot_managed_jobs{status="RUNNING",user="admin"} 1$' &&
  printf '%s\n' "$scrape" | grep -q '^skypilot_managed_jobs_failed_total{user="admin"} 1$' &&
  printf '%s\n' "$scrape" | grep -q '^skypilot_managed_job_recoveries_total{job_id="[0-9]*",name="demo-finetune",user="admin"} 1$'
check $? "the monitor exports them (jobs by status, failures, recoveries)"

# The demo's services: status --services, the console's Services page, the monitor.
for _ in $(seq 1 60); do
  services=$(target/debug/skypilot-host status --services --config .run/host.toml 2>&1)
  printf '%s\n' "$services" | grep -q "demo-llm-api  *READY  *admin  *1/2 " && break
  sleep 1
done
printf '%s\n' "$services" | grep -q "demo-llm-api  *READY  *admin  *1/2 " &&
  printf '%s\n' "$services" | grep -q "demo-embed  *FAILED  *admin  *0/1  *1 FAILED_PROBING"
check $? "status --services lists the demo's two services: $(printf '%s\n' "$services" | sed -n 2p)"
page=$(curl -s -b "$jar" "http://$web/console/serve")
printf '%s' "$page" | grep -q ">demo-llm-api<" && printf '%s' "$page" | grep -q "1 FAILED_PROBING"
check $? "the console's Services page shows them with their replicas"
scrape=$(curl -s "$metrics")
printf '%s\n' "$scrape" | grep -q '^skypilot_service_ready_replicas{service="demo-llm-api",user="admin"} 1$' &&
  printf '%s\n' "$scrape" | grep -q '^skypilot_service_ready_replicas{service="demo-embed",user="admin"} 0$' &&
  printf '%s\n' "$scrape" | grep -q '^skypilot_host_services_feed_up 1$'
check $? "the monitor exports them (ready replicas per service)"

while [ $((SECONDS - started)) -lt $((ready + 60)) ]; do sleep 2; done
errors=$(grep -l "ERROR" .run/*.log 2>/dev/null)
[ -z "$errors" ]
check $? "no ERROR line in any role's log in the first minute ${errors:+($errors)}"

# An action that completes: stop demo-train and take demo-notebook down, as admin in the
# console's session (with its CSRF token, as the console's own pages send it).
csrf=$(curl -s -b "$jar" "http://$web/console/" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
act() {
  curl -s -o /dev/null -w '%{http_code}' -b "$jar" -H "X-CSRF-Token: $csrf" \
    -H 'content-type: application/json' \
    -d "{\"cluster\": \"$1\", \"action\": \"$2\"}" "http://$web/api/v1/actions"
}
stop_code=$(act demo-train stop)
down_code=$(act demo-notebook down)
sky=$(SKYPILOT_API_SERVER_ENDPOINT="http://admin:$pw@$web" timeout 120 "$VENV_DIR/bin/sky" status 2>&1)
[ "$stop_code" = 200 ] && [ "$down_code" = 200 ] &&
  printf '%s\n' "$sky" | grep -q "^demo-train .* STOPPED " && ! printf '%s\n' "$sky" | grep -q "^demo-notebook "
check $? "stop and down from the console complete (HTTP $stop_code, $down_code; sky status: $(printf '%s\n' "$sky" | grep -c '^demo-') demo cluster(s))"
ec2=$(sed -n 's|.*EC2 emulator *\(http://127.0.0.1:[0-9]*\) .*|\1|p' "$out" | head -1)
states=$(AWS_ENDPOINT_URL=$ec2 AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo "$VENV_DIR/bin/python" -c '
import boto3
ec2 = boto3.client("ec2", region_name="us-west-2")
for r in ec2.describe_instances()["Reservations"]:
    for i in r["Instances"]:
        tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
        print(tags.get("skypilot-cluster-name"), i["State"]["Name"])
' 2>&1 | sort | tr '\n' ' ')
[ "$states" = "demo-notebook-oncloud terminated demo-train-oncloud stopped " ]
check $? "the EC2 emulator's instances: $states"

kill -TERM "$pid"
wait "$pid" 2>/dev/null
grep -q "stopped the SkyPilot API server" "$out" && grep -q "stopped cluster-manager" "$out" && grep -q "stopped the EC2 emulator" "$out"
check $? "stopping names each part"
listening=$(ss -ltnH 2>/dev/null | grep -c "127.0.0.1:$(printf '%s' "$web" | cut -d: -f2) ")
[ "$listening" = 0 ]
check $? "nothing listens after the stop"
! grep -q "Broken pipe" .run/sky/server.log
check $? "SkyPilot logged no BrokenPipeError while stopping ($(wc -l <.run/sky/server.log) lines in its log)"
rm -f "$out" "$jar"
echo "demo: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
