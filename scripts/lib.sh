# Shared shell functions of scripts/test.sh and scripts/run-local.sh. Source it.
# shellcheck shell=bash

SKYPILOT_VERSION=0.14.1
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The tests and run-local.sh run SkyPilot with the patches the flake's package applies
# (nix/patches/); REFERENCE_VENV_DIR is SkyPilot as released, for the contract test.
VENV_DIR=${SKYPILOT_VENV:-$REPO_ROOT/.venv/skypilot-$SKYPILOT_VERSION-patched}
REFERENCE_VENV_DIR=${SKYPILOT_REFERENCE_VENV:-$REPO_ROOT/.venv/skypilot-$SKYPILOT_VERSION}
SKYPILOT_PATCHES=("$REPO_ROOT"/nix/patches/skypilot-$SKYPILOT_VERSION-*.patch)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs Debian packages that are missing (needs root or sudo).
ensure_apt() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  log "installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Creates the venv with SkyPilot (pinned) unless it is already complete. No cloud SDK: the
# Rust tests' API server runs from it, and their expectations are those of a server
# without SDKs (with boto3 installed, a forced refresh of a test cluster fails otherwise).
ensure_venv() {
  # For the patches' own tests (nix/patches/test_*.py).
  ensure_patched_venv "$VENV_DIR" "skypilot==$SKYPILOT_VERSION" pytest
}

# The demo's SkyPilot (scripts/run-local.sh --demo): patched as above, with the AWS SDK,
# and a local EC2 emulator (moto's server) that the demo's clusters run on.
DEMO_VENV_DIR=${SKYPILOT_DEMO_VENV:-$REPO_ROOT/.venv/skypilot-$SKYPILOT_VERSION-demo}
MOTO_VERSION=5.1.0
ensure_demo_venv() {
  ensure_patched_venv "$DEMO_VENV_DIR" "skypilot[aws]==$SKYPILOT_VERSION" "moto[server]==$MOTO_VERSION"
}

# ensure_patched_venv DIR SPEC...: a venv at DIR with pip's SPECs and SkyPilot patched
# with nix/patches/, unless one of the same SPECs and patches is already complete.
ensure_patched_venv() {
  local dir=$1
  shift
  local marker
  marker="$dir/.complete-$(printf '%s\n' "$@" | cat - "${SKYPILOT_PATCHES[@]}" | sha256sum | cut -c1-16)"
  if [ -x "$dir/bin/sky" ] && [ -f "$marker" ]; then
    return 0
  fi
  command -v patch >/dev/null || ensure_apt patch
  new_venv "$dir" "$@"
  local site patch
  site=$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  for patch in "${SKYPILOT_PATCHES[@]}"; do
    log "applying ${patch#"$REPO_ROOT"/} to $site"
    patch -p1 --forward --quiet -d "$site" -i "$patch" || die "$patch does not apply to SkyPilot $SKYPILOT_VERSION in $site"
  done
  touch "$marker"
}

# The unpatched SkyPilot: the reference server of the contract test (scripts/status-contract.sh).
ensure_reference_venv() {
  if [ -x "$REFERENCE_VENV_DIR/bin/sky" ] && [ -f "$REFERENCE_VENV_DIR/.complete-$SKYPILOT_VERSION" ]; then
    return 0
  fi
  new_venv "$REFERENCE_VENV_DIR" "skypilot==$SKYPILOT_VERSION"
  touch "$REFERENCE_VENV_DIR/.complete-$SKYPILOT_VERSION"
}

# SkyPilot's extras the run of what the NixOS module renders needs (scripts/module-run.sh):
# `aws` (boto3, botocore, the aws CLI) for `sky check aws` with the module's credential.
SKYPILOT_EXTRAS=aws
CLOUD_VENV_DIR=${SKYPILOT_CLOUD_VENV:-$REPO_ROOT/.venv/skypilot-$SKYPILOT_VERSION-clouds}
# Changes with what ensure_cloud_venv installs: a venv of another marker is rebuilt.
CLOUD_VENV_MARKER="$CLOUD_VENV_DIR/.complete-$SKYPILOT_VERSION-${SKYPILOT_EXTRAS//,/-}"

# Creates the venv with SkyPilot (pinned) and SKYPILOT_EXTRAS unless it is already complete.
ensure_cloud_venv() {
  if [ -x "$CLOUD_VENV_DIR/bin/sky" ] && [ -f "$CLOUD_VENV_MARKER" ]; then
    return 0
  fi
  new_venv "$CLOUD_VENV_DIR" "skypilot[$SKYPILOT_EXTRAS]==$SKYPILOT_VERSION"
  touch "$CLOUD_VENV_MARKER"
}

# new_venv DIR SPEC...: a fresh venv at DIR with pip's SPECs installed.
new_venv() {
  local dir=$1
  shift
  command -v python3 >/dev/null || die "python3 is required (Debian: apt-get install python3 python3-venv)"
  python3 -m venv --help >/dev/null 2>&1 || ensure_apt python3-venv
  log "creating $dir with $* (about a minute)"
  local t0=$SECONDS
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q --disable-pip-version-check "$@"
  log "created $dir in $((SECONDS - t0)) s"
}

# Prints a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Exports the environment of a SkyPilot API server whose state lives in $1.
sky_env() {
  local dir=$1
  export HOME="$dir/home"
  export SKY_RUNTIME_DIR="$dir/runtime"
  export SKYPILOT_GLOBAL_CONFIG="$dir/config.yaml"
  export SKYPILOT_DISABLE_USAGE_COLLECTION=1
  mkdir -p "$HOME" "$SKY_RUNTIME_DIR"
  [ -f "$SKYPILOT_GLOBAL_CONFIG" ] || echo '{}' >"$SKYPILOT_GLOBAL_CONFIG"
}

# start_sky_server DIR PORT [VENV]: starts `sky api start --foreground` on 127.0.0.1:PORT
# in a session of its own, with HOME, SKY_RUNTIME_DIR and SKYPILOT_GLOBAL_CONFIG under DIR,
# and waits until /api/health answers. Records the process group in DIR/server.pgid.
# VENV defaults to VENV_DIR.
# The server reaches the two addresses SkyPilot probes before /serve/status through
# tests/real/reachability.py (an HTTPS proxy that answers for them and passes any other
# host through), so services can be listed on a host without internet.
start_sky_server() {
  local dir=$1 port=$2 venv=${3:-$VENV_DIR}
  mkdir -p "$dir"
  (
    sky_env "$dir"
    # A marker in the environment lets stop_sky_server find every descendant, even
    # one that left the process group.
    export SKYPILOT_HOST_SERVER_MARKER="$dir"
    rm -f "$dir/reachability.port"
    "$venv/bin/python" "$REPO_ROOT/tests/real/reachability.py" "$dir" --forever \
      >/dev/null 2>"$dir/reachability.log" </dev/null &
    local i
    for i in $(seq 1 100); do
      [ -s "$dir/reachability.port" ] && break
      sleep 0.1
    done
    [ -s "$dir/reachability.port" ] || { cat "$dir/reachability.log" >&2; die "the reachability stand-in did not start (log: $dir/reachability.log)"; }
    export HTTPS_PROXY="http://127.0.0.1:$(cat "$dir/reachability.port")" \
      NO_PROXY=127.0.0.1,localhost,::1 REQUESTS_CA_BUNDLE="$dir/ca-bundle.pem"
    exec setsid "$venv/bin/sky" api start --foreground --host 127.0.0.1 --port "$port" \
      >"$dir/server.log" 2>&1 </dev/null
  ) &
  local pid=$!
  echo "$pid" >"$dir/server.pgid"
  local i wait=${SKY_SERVER_START_SECS:-60}
  for i in $(seq 1 $((2 * wait))); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/api/health" 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { tail -20 "$dir/server.log" >&2; die "SkyPilot API server exited (log: $dir/server.log)"; }
    sleep 0.5
  done
  tail -20 "$dir/server.log" >&2
  die "SkyPilot API server on port $port not healthy after $wait s (SKY_SERVER_START_SECS; log: $dir/server.log)"
}

# stop_sky_server DIR: SIGTERM to the server's main process (sky.server.server); once it
# has finished (or after 10 s), SIGKILL to its process group (its idle workers ignore
# SIGTERM; before it finished, SIGTERM first and 5 s), then SIGKILL to any process still carrying the marker of DIR.
# (A SIGTERM to the whole group at once kills SkyPilot's worker processes under its
# main process, whose request loop then logs a BrokenPipeError as fast as it can until
# it is killed: 100,000 lines in 10 s.)
stop_sky_server() {
  local dir=$1
  [ -f "$dir/server.pgid" ] || return 0
  local pgid main i
  pgid=$(cat "$dir/server.pgid")
  main=$(pgrep -o -g "$pgid" -f 'sky\.server\.server' 2>/dev/null || true)
  if [ -n "$main" ]; then
    kill -TERM "$main" 2>/dev/null || true
    # Once uvicorn has finished, what is left are idle workers that ignore SIGTERM.
    for i in $(seq 1 40); do
      kill -0 "$main" 2>/dev/null || break
      grep -q 'Finished server process' "$dir/server.log" 2>/dev/null && break
      sleep 0.25
    done
  fi
  if ! grep -q 'Finished server process' "$dir/server.log" 2>/dev/null; then
    kill -TERM -- "-$pgid" 2>/dev/null || true
    for i in $(seq 1 10); do
      kill -0 -- "-$pgid" 2>/dev/null || break
      sleep 0.5
    done
  fi
  kill -KILL -- "-$pgid" 2>/dev/null || true
  local p
  for p in /proc/[0-9]*; do
    if tr '\0' '\n' 2>/dev/null <"$p/environ" | grep -qxF "SKYPILOT_HOST_SERVER_MARKER=$dir"; then
      kill -KILL "${p#/proc/}" 2>/dev/null || true
    fi
  done
  rm -f "$dir/server.pgid"
}

# start_postgres DIR: a throwaway PostgreSQL (Debian's `postgresql`) with its data and its
# Unix socket in DIR (no TCP), trust authentication, superuser and database `skypilot`.
# Run as an unprivileged user: the caller, or `postgres` (else `nobody`) when root, since
# PostgreSQL refuses to run as root. Writes DIR/ctl, which runs pg_ctl (start|stop ...)
# as that user, and exports what the tests need: SKYPILOT_TEST_PG_HOST (the socket's
# directory), SKYPILOT_TEST_PG_CTL (DIR/ctl), SKYPILOT_TEST_PG_BIN (psql, createdb) and
# SKYPILOT_TEST_PG_URI (SkyPilot's connection URI for the database `skypilot`).
start_postgres() {
  local dir=$1 bin run=()
  bin=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)
  [ -x "$bin/initdb" ] || die "PostgreSQL's initdb not found under /usr/lib/postgresql (Debian: apt-get install postgresql)"
  if [ "$(id -u)" -eq 0 ]; then
    local user=postgres
    id "$user" >/dev/null 2>&1 || user=nobody
    chown "$user" "$dir"
    run=(setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups)
  fi
  "${run[@]}" "$bin/initdb" -D "$dir/data" -U skypilot --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb in $dir failed"; }
  printf '#!/bin/sh\nexec %s %q -D %q -l %q -o "-k %s -c listen_addresses=" -w "$@"\n' \
    "${run[*]}" "$bin/pg_ctl" "$dir/data" "$dir/postgres.log" "$dir" >"$dir/ctl"
  chmod 755 "$dir/ctl"
  "$dir/ctl" start >/dev/null || { tail -20 "$dir/postgres.log" >&2; die "PostgreSQL in $dir did not start"; }
  "$bin/createdb" -h "$dir" -U skypilot skypilot || die "createdb skypilot in $dir failed"
  export SKYPILOT_TEST_PG_HOST=$dir SKYPILOT_TEST_PG_CTL=$dir/ctl SKYPILOT_TEST_PG_BIN=$bin
  export SKYPILOT_TEST_PG_URI="postgresql+psycopg2://skypilot@/skypilot?host=$dir"
}

# stop_postgres DIR: stops the PostgreSQL of start_postgres DIR, if it runs.
stop_postgres() {
  [ -x "$1/ctl" ] && "$1/ctl" stop -m fast >/dev/null 2>&1 || true
}

# The browser tests' venv: Playwright for Python, driving Debian's /usr/bin/chromium (no
# browser download).
BROWSER_VENV_DIR=${BROWSER_VENV:-$REPO_ROOT/.venv/browser}
PLAYWRIGHT_VERSION=1.65.2
ensure_browser_venv() {
  ensure_apt chromium
  if [ -x "$BROWSER_VENV_DIR/bin/python" ] && [ -f "$BROWSER_VENV_DIR/.complete-playwright-$PLAYWRIGHT_VERSION" ]; then
    return 0
  fi
  new_venv "$BROWSER_VENV_DIR" "playwright==$PLAYWRIGHT_VERSION"
  touch "$BROWSER_VENV_DIR/.complete-playwright-$PLAYWRIGHT_VERSION"
}

# The single sign-on tests' OpenID Provider: panva/oidc-provider under Node, installed
# from tests/oidc/package-lock.json (exact versions and integrity hashes).
ensure_oidc_provider() {
  command -v node >/dev/null && command -v npm >/dev/null || ensure_apt nodejs npm
  local dir="$REPO_ROOT/tests/oidc"
  if [ -f "$dir/node_modules/.complete" ] && [ "$dir/node_modules/.complete" -nt "$dir/package-lock.json" ]; then
    return 0
  fi
  log "installing the test OpenID Provider (npm ci in tests/oidc)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci in tests/oidc failed"
  touch "$dir/node_modules/.complete"
}

# start_host_roles BIN DIR API_PORT [TOML]: the cluster manager and the web UI of BIN (an
# admin `admin`, password in DIR/password) in front of the SkyPilot API server on
# API_PORT, their config and database in DIR, TOML appended to [cluster_manager]. Sets
# WEB_PORT and appends their pids to HOST_PIDS.
start_host_roles() {
  local bin=$1 dir=$2 api_port=$3 extra=${4:-}
  mkdir -p "$dir"
  WEB_PORT=$(free_port)
  printf 'admin-password\n' >"$dir/password"
  "$bin" hash-password admin --role admin <"$dir/password" >"$dir/users"
  cat >"$dir/host.toml" <<TOML
[skypilot]
api_url = "http://127.0.0.1:$api_port"
request_timeout_secs = 600
[cluster_manager]
database = "$dir/host.db"
poll_deadline_secs = 1200
force_refresh_interval_secs = 86400
$extra
[web_ui]
listen = "127.0.0.1:$WEB_PORT"
users_file = "$dir/users"
[log]
level = "warning"
TOML
  "$bin" cluster-manager --config "$dir/host.toml" 2>>"$dir/manager.log" &
  HOST_PIDS+=($!)
  "$bin" web-ui --config "$dir/host.toml" 2>>"$dir/web-ui.log" &
  HOST_PIDS+=($!)
}

# stop_host_roles: SIGTERM to HOST_PIDS, and waits for them.
stop_host_roles() {
  local p
  for p in "${HOST_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${HOST_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  HOST_PIDS=()
}

# nixpkgs' lib for the module's evaluation suite: nix-community/nixpkgs.lib (a mirror of
# nixpkgs' lib/) at this commit, identified by the SHA-256 over its lib/ files (sorted
# `sha256sum` lines), so a download is checked against the copy the tests were run with.
NIXPKGS_LIB_REV=de42d44212d207476489bce163375d8306a26d59
NIXPKGS_LIB_SHA256=51c3464906cf0d6d3161372e30a1c04776ad1452927fb69ed3864f6eb17969a5
NIXPKGS_LIB_URL=${NIXPKGS_LIB_URL:-https://github.com/nix-community/nixpkgs.lib/archive/$NIXPKGS_LIB_REV.tar.gz}

# The SHA-256 over the files under DIR/lib.
nixpkgs_lib_hash() {
  (cd "$1" && find lib -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)
}

# Exports NIXPKGS_LIB (a directory holding lib/): NIXPKGS_LIB as set, else
# ../shared/nixpkgs-lib beside the repository, else a copy under .cache/ (downloaded
# once from NIXPKGS_LIB_URL and checked against NIXPKGS_LIB_SHA256); else one line that
# says these three ways.
find_nixpkgs_lib() {
  if [ -n "${NIXPKGS_LIB:-}" ]; then
    [ -d "$NIXPKGS_LIB/lib" ] || [ -f "$NIXPKGS_LIB/modules.nix" ] ||
      die "NIXPKGS_LIB=$NIXPKGS_LIB is neither nixpkgs' lib/ nor a directory holding it (a nixpkgs checkout, nix-community/nixpkgs.lib)"
    export NIXPKGS_LIB
    return 0
  fi
  local shared cache
  shared=$(cd "$REPO_ROOT/.." && pwd)/shared/nixpkgs-lib
  if [ -d "$shared/lib" ]; then
    export NIXPKGS_LIB=$shared
    return 0
  fi
  cache="$REPO_ROOT/.cache/nixpkgs-lib-$NIXPKGS_LIB_REV"
  if [ ! -f "$cache/.complete" ]; then
    log "fetching nixpkgs' lib (nix-community/nixpkgs.lib $NIXPKGS_LIB_REV) into .cache/"
    local tmp
    tmp=$(mktemp -d)
    if curl -fsSL --max-time 120 "$NIXPKGS_LIB_URL" -o "$tmp/lib.tar.gz" 2>/dev/null &&
      mkdir -p "$tmp/x" && tar -xzf "$tmp/lib.tar.gz" -C "$tmp/x" --strip-components=1 &&
      [ "$(nixpkgs_lib_hash "$tmp/x")" = "$NIXPKGS_LIB_SHA256" ]; then
      rm -rf "$cache"
      mkdir -p "$(dirname "$cache")"
      mv "$tmp/x" "$cache"
      touch "$cache/.complete"
    fi
    rm -rf "$tmp"
  fi
  [ -f "$cache/.complete" ] ||
    die "nixpkgs' lib not found: set NIXPKGS_LIB to a directory holding nixpkgs' lib/, or put nix-community/nixpkgs.lib at ../shared/nixpkgs-lib, or let this script download it ($NIXPKGS_LIB_URL, checked by its SHA-256)"
  export NIXPKGS_LIB=$cache
}
