#!/usr/bin/env bash
# Runs what the Nix files render, against the real programs:
#   nix/tests/run_rendered.py   the units of the `run-roles` case (and of `run-database`,
#     against a throwaway PostgreSQL), evaluated with nixpkgs'
#     lib, started as systemd would start them (store paths replaced by the SkyPilot venv,
#     the locally built skypilot-host and Debian's programs) in a network and mount
#     namespace of their own: sockets on loopback only, READY=1 and Type, sky check,
#     credential files as rsync delivers them, workdir upload from a user's home;
#   nix/tests/package_checks.py the package recipes' imports check and cargo check phase
#     in sandbox-like conditions (unwritable HOME; no promtool, curl or contrib/).
#
# Needs root (unshare), cargo, NIXPKGS_LIB (nixpkgs' lib, or a tree holding it as lib/),
# SKYPILOT_CONFIG_SCHEMA (SkyPilot's config schema, scripts/sky-schema.py), the cloud venv of
# scripts/lib.sh (ensure_cloud_venv: SkyPilot with its aws extra), and Debian's iproute2, util-linux, rsync, openssh-client. Installs
# nothing: scripts/test.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

[ "$(id -u)" -eq 0 ] || die "scripts/module-run.sh needs root (network and mount namespaces)"
[ -n "${NIXPKGS_LIB:-}" ] || die "NIXPKGS_LIB is not set (nixpkgs' lib directory)"
[ -n "${SKYPILOT_CONFIG_SCHEMA:-}" ] || die "SKYPILOT_CONFIG_SCHEMA is not set (scripts/sky-schema.py)"
[ -x "$CLOUD_VENV_DIR/bin/sky" ] || die "no SkyPilot venv with cloud extras at $CLOUD_VENV_DIR (scripts/lib.sh ensure_cloud_venv)"
lib_dir=$NIXPKGS_LIB
[ -f "$lib_dir/modules.nix" ] || lib_dir=$NIXPKGS_LIB/lib
[ -f "$lib_dir/modules.nix" ] || die "NIXPKGS_LIB=$NIXPKGS_LIB is not nixpkgs' lib directory (no modules.nix there or in lib/)"

lib_dir=$(cd "$lib_dir" && pwd)
cargo build --quiet --bin skypilot-host
host_bin="${CARGO_TARGET_DIR:-target}/debug/skypilot-host"
status=0
python3 nix/tests/run_rendered.py --nixpkgs-lib "$lib_dir" --host-bin "$host_bin" \
  --venv "$CLOUD_VENV_DIR" || status=1
# database.uriFile (the `run-database` case): the API server's start script against a
# throwaway PostgreSQL; the URI carries a password (PostgreSQL's trust authentication
# ignores it) that must show up nowhere but in the secret.
pgdir=$(mktemp -d)
trap 'stop_postgres "$pgdir"; rm -rf "$pgdir"' EXIT
start_postgres "$pgdir"
SKYPILOT_RENDERED_DB_URI="postgresql+psycopg2://skypilot:rendered-$RANDOM$RANDOM@/skypilot?host=$pgdir" \
  python3 nix/tests/run_rendered.py --nixpkgs-lib "$lib_dir" --host-bin "$host_bin" \
  --venv "$CLOUD_VENV_DIR" --case run-database || status=1
stop_postgres "$pgdir"
# The package recipes' imports check and cargo check phase, in sandbox-like conditions.
python3 nix/tests/package_checks.py --nixpkgs-lib "$lib_dir" --venv "$CLOUD_VENV_DIR" || status=1
exit "$status"
