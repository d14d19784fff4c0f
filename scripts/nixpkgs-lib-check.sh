#!/usr/bin/env bash
# Where scripts/test.sh finds nixpkgs' lib (find_nixpkgs_lib in scripts/lib.sh), in a
# repository without ../shared/nixpkgs-lib and without NIXPKGS_LIB: the download (here a
# file:// tarball of the same commit, made from NIXPKGS_LIB) is checked by its SHA-256
# and cached; a tarball with one changed file is refused with the one line that names
# the three ways. Prints "nixpkgs-lib: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
find_nixpkgs_lib
src=$NIXPKGS_LIB
[ -d "$src/lib" ] || src=$(dirname "$src")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
check() {
  if [ "$1" = 0 ]; then passed=$((passed + 1)); echo "ok   $2"; else failed=$((failed + 1)); echo "FAIL $2"; fi
}
# A repository alone in its directory: no ../shared beside it.
mkdir -p "$work/alone/repo/scripts"
cp scripts/lib.sh "$work/alone/repo/scripts/"
mkdir -p "$work/good/nixpkgs.lib-$NIXPKGS_LIB_REV"
cp -a "$src/lib" "$work/good/nixpkgs.lib-$NIXPKGS_LIB_REV/"
tar -czf "$work/good.tar.gz" -C "$work/good" "nixpkgs.lib-$NIXPKGS_LIB_REV"
cp -a "$work/good" "$work/bad"
echo '# changed' >>"$work/bad/nixpkgs.lib-$NIXPKGS_LIB_REV/lib/default.nix"
tar -czf "$work/bad.tar.gz" -C "$work/bad" "nixpkgs.lib-$NIXPKGS_LIB_REV"

run() {
  env -u NIXPKGS_LIB NIXPKGS_LIB_URL="file://$1" bash -c \
    '. "$0/scripts/lib.sh" && find_nixpkgs_lib && echo "$NIXPKGS_LIB"' "$work/alone/repo" 2>&1
}
out=$(run "$work/bad.tar.gz"); rc=$?
[ $rc -ne 0 ] && [ "$(printf '%s\n' "$out" | grep -c '^error: ')" = 1 ] &&
  printf '%s\n' "$out" | grep -q "set NIXPKGS_LIB.*\.\./shared/nixpkgs-lib.*download"
check $? "a download whose files differ is refused, in one line naming the three ways: $(printf '%s' "$out" | tail -1)"
[ ! -e "$work/alone/repo/.cache/nixpkgs-lib-$NIXPKGS_LIB_REV/.complete" ]
check $? "nothing of the refused download is kept"
out=$(run "$work/good.tar.gz"); rc=$?
cache="$work/alone/repo/.cache/nixpkgs-lib-$NIXPKGS_LIB_REV"
[ $rc -eq 0 ] && [ "$(printf '%s\n' "$out" | tail -1)" = "$cache" ] && [ -f "$cache/lib/modules.nix" ]
check $? "the download of the pinned commit is used: $(printf '%s' "$out" | tail -1)"
out=$(run "$work/missing.tar.gz"); rc=$?
[ $rc -eq 0 ] && [ "$(printf '%s\n' "$out" | tail -1)" = "$cache" ]
check $? "the cached copy is used without the network"
echo "nixpkgs-lib: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
