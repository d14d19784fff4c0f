#!/usr/bin/env bash
# Fuzzes the parsers that read outside input, with AFL++ through cargo-afl (stable Rust).
# Not part of the test command: a full run takes minutes per target.
#
#   scripts/fuzz.sh                      every target, 1,000,000 inputs each
#   scripts/fuzz.sh -n 200000 host_config   one target, 200,000 inputs
#   scripts/fuzz.sh -l                   list the targets
#
# Options:
#   -n EXECS   inputs per target (AFL++ `-E`: it stops at about that many), default 1000000
#   -t MS      time limit of one input in ms (a slower input is a hang), default 1000
#   -o DIR     where AFL++ keeps its state, default fuzz/out (kept for inspection)
#   -l         list the targets and exit
#
# Installs what it needs: Debian's build tools for AFL++ if missing, `cargo-afl` with
# `cargo install` and, through it, AFL++ itself (built from the source it ships). Targets run
# one after another. A crashing input is copied to fuzz/crashes/<target>/ (named by its
# SHA-1) so that it can be kept and turned into a test in tests/it/fuzz_regressions.rs.
# For each target it prints inputs run, wall time, inputs per second, inputs kept,
# crashes and hangs; it exits 1 when any target crashed or hung.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

TARGETS=(skypilot_payload skypilot_status host_config sky_config_yaml credentials)
declare -A DICT=(
  [skypilot_payload]=json
  [skypilot_status]=json
  [host_config]=toml
  [sky_config_yaml]=yaml
  [credentials]=credentials
)
CARGO_AFL_VERSION=0.18.2

execs=1000000
timeout_ms=1000
out=fuzz/out
while getopts "n:t:o:lh" opt; do
  case $opt in
    n) execs=$OPTARG ;;
    t) timeout_ms=$OPTARG ;;
    o) out=$OPTARG ;;
    l) printf '%s\n' "${TARGETS[@]}"; exit 0 ;;
    h) sed -n '2,20p' "$0"; exit 0 ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
case $execs in '' | *[!0-9]*) die "-n expects a number of inputs, got '$execs'" ;; esac
selected=("$@")
[ ${#selected[@]} -gt 0 ] || selected=("${TARGETS[@]}")
for t in "${selected[@]}"; do
  [ -n "${DICT[$t]:-}" ] || die "unknown target '$t': expected one of ${TARGETS[*]}"
done

command -v cargo >/dev/null || die "cargo is required (https://rustup.rs)"
ensure_apt build-essential
if ! cargo afl --version >/dev/null 2>&1; then
  log "installing cargo-afl $CARGO_AFL_VERSION"
  cargo install --locked --version "$CARGO_AFL_VERSION" cargo-afl
fi
# Builds AFL++ for this toolchain once; says so (and fails) when it is already built.
if ! msg=$(cargo afl config --build 2>&1); then
  grep -q "already built" <<<"$msg" || { printf '%s\n' "$msg" >&2; die "cargo afl config --build failed"; }
fi

log "building the fuzz targets (instrumented, release with debug assertions and overflow checks)"
(cd fuzz && cargo afl build --release --locked --quiet)

mkdir -p "$out"
# Credential files are rewritten for every input: keep them in memory when possible.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then scratch=$(mktemp -d -p /dev/shm); else scratch=$(mktemp -d); fi
trap 'rm -rf "$scratch"' EXIT

stat_of() { sed -n "s/^$1 *: *//p" "$2"; }

results=()
failed=0
for t in "${selected[@]}"; do
  dir=$out/$t
  rm -rf "$dir"
  log "fuzzing $t for about $execs inputs"
  start=$(date +%s.%N)
  # AFL++ refuses to start on a machine tuned for power saving or with a core-dump
  # handler unless told; neither changes what it finds.
  AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 \
    AFL_NO_UI=1 FUZZ_SCRATCH="$scratch" \
    cargo afl fuzz -i "fuzz/corpus/$t" -o "$dir" -x "fuzz/dict/${DICT[$t]}.dict" \
    -t "$timeout_ms" -E "$execs" -- "fuzz/target/release/$t" >"$dir.log" 2>&1 ||
    { tail -20 "$dir.log" >&2; die "afl-fuzz failed for $t (log: $dir.log)"; }
  end=$(date +%s.%N)
  stats=$dir/default/fuzzer_stats
  [ -f "$stats" ] || die "no fuzzer_stats for $t (log: $dir.log)"
  done_=$(stat_of execs_done "$stats")
  crashes=$(stat_of saved_crashes "$stats")
  hangs=$(stat_of saved_hangs "$stats")
  kept=$(stat_of corpus_count "$stats")
  wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
  rate=$(awk -v n="$done_" -v s="$wall" 'BEGIN { printf "%.0f", (s > 0 ? n / s : n) }')
  for kind in crashes hangs; do
    for f in "$dir"/default/"$kind"/id:*; do
      [ -e "$f" ] || continue
      mkdir -p "fuzz/$kind/$t"
      cp "$f" "fuzz/$kind/$t/$(sha1sum "$f" | cut -c1-16)"
    done
  done
  [ "$crashes" = 0 ] && [ "$hangs" = 0 ] || failed=1
  line=$(printf '%-17s execs %10s  wall %5ss  execs/s %6s  corpus %5s  crashes %s  hangs %s' \
    "$t" "$done_" "$wall" "$rate" "$kept" "$crashes" "$hangs")
  printf '%s\n' "$line"
  results+=("$line")
done

printf '\nfuzz summary (%s inputs asked per target, %s cores):\n' "$execs" "$(nproc)"
printf '%s\n' "${results[@]}"
if [ "$failed" = 1 ]; then
  printf 'findings: see fuzz/crashes/ and fuzz/hangs/\n'
  exit 1
fi
printf 'findings: none\n'
