#!/usr/bin/env bash
# Nix checks that run without nixpkgs' package set (CI and developers' machines):
#   1. every .nix file parses (nix-instantiate --parse);
#   2. formatting (nixpkgs-fmt --check; installed with cargo into a cache dir when missing);
#   3. the evaluation suite of the NixOS module (nix/tests/check.py), with NIXPKGS_LIB:
#      cases and VM-test nodes evaluated with nixpkgs' lib, generated units checked with
#      systemd-analyze verify and scored with systemd-analyze security, host configs checked
#      with skypilot-host check-config, the VM test's testScript compiled and checked.
# NIXPKGS_LIB is nixpkgs' `lib` directory (the one holding default.nix), or a nixpkgs
# checkout / nixpkgs.lib tree that has it as `lib/`. Without it the run fails: the
# evaluation suite is part of the checks, not an extra.
# Installs no Debian package (scripts/test.sh installs what it needs: nix-bin, systemd, sudo);
# a missing tool fails the run and names the package.
# Exits non-zero when a check fails or cannot run.
set -euo pipefail

cd "$(dirname "$0")/.."
status=0
evaluated=no
fail() {
  echo "FAILED: $*" >&2
  status=1
}

# The verbatim copies of the seed's examples keep the seed's own layout.
nix_files() {
  git ls-files --cached --others --exclude-standard -- '*.nix'
}
format_excluded='^nix/tests/cases/seed-(basic|advanced)\.nix$'

echo "== 1. every .nix file parses"
command -v nix-instantiate >/dev/null || {
  echo "FAILED: nix-instantiate not found (Debian: apt-get install nix-bin)" >&2
  exit 1
}
count=0
while IFS= read -r f; do
  count=$((count + 1))
  if ! nix-instantiate --parse "$f" >/dev/null; then
    fail "nix-instantiate --parse $f"
  fi
done < <(nix_files)
echo "parsed $count files"
[ "$count" -gt 0 ] || fail "no .nix file found"

echo "== 2. formatting (nixpkgs-fmt --check)"
tools="${SKYPILOT_NIX_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/skypilot-nixos-tools}"
fmt="$(command -v nixpkgs-fmt || true)"
if [ -z "$fmt" ]; then
  fmt="$tools/bin/nixpkgs-fmt"
  if [ ! -x "$fmt" ]; then
    echo "installing nixpkgs-fmt 1.3.0 into $tools (a few minutes, once)"
    cargo install nixpkgs-fmt --version 1.3.0 --locked --root "$tools"
  fi
fi
mapfile -t to_format < <(nix_files | grep -Ev "$format_excluded")
if ! "$fmt" --check "${to_format[@]}"; then
  fail "nixpkgs-fmt --check (run: $fmt ${to_format[*]})"
fi

echo "== 3. NixOS module evaluation tests"
if [ -z "${NIXPKGS_LIB:-}" ]; then
  fail "NixOS module evaluation tests cannot run: NIXPKGS_LIB is not set (nixpkgs' lib directory; scripts/test.sh uses ../shared/nixpkgs-lib)"
else
  lib_dir="$NIXPKGS_LIB"
  if [ ! -f "$lib_dir/default.nix" ] || [ ! -f "$lib_dir/modules.nix" ]; then
    lib_dir="$NIXPKGS_LIB/lib"
  fi
  if [ ! -f "$lib_dir/modules.nix" ]; then
    fail "NIXPKGS_LIB=$NIXPKGS_LIB is not nixpkgs' lib directory (no modules.nix there or in lib/)"
  else
    command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (Debian: apt-get install systemd)"
    # visudo checks the syntax of the generated sudo rules.
    command -v visudo >/dev/null || fail "visudo not found (Debian: apt-get install sudo)"
    echo "building skypilot-host for check-config"
    cargo build --quiet --bin skypilot-host
    host_bin="${CARGO_TARGET_DIR:-target}/debug/skypilot-host"
    if python3 nix/tests/check.py --nixpkgs-lib "$(cd "$lib_dir" && pwd)" --host-bin "$host_bin"; then
      evaluated=yes
    else
      fail "NixOS module evaluation tests"
    fi
  fi
fi

if [ "$status" -eq 0 ] && [ "$evaluated" = yes ]; then
  echo "nix checks: all passed (parse, format, module evaluation)"
else
  echo "nix checks: FAILED" >&2
fi
exit "$status"
