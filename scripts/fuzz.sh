#!/usr/bin/env bash
# Fuzzes the decoders that take hostile input (docs/fuzzing.md) with libFuzzer, ASan and UBSan.
# Usage: scripts/fuzz.sh SECONDS [TARGET...]
#   Configures and builds a separate clang build (FUZZ_BUILD_DIR, default build-fuzz; ccache when
#   present), writes the seed corpora from the real encoders, runs each TARGET (default: all) for
#   SECONDS at `nice -n FUZZ_NICE` (default 10), one after the other, and prints executions,
#   exec/s and coverage (libFuzzer's cov: edges, ft: features) per target.
#   The corpus grows across runs in FUZZ_BUILD_DIR/corpus/<target>; crashes (and the inputs of
#   out-of-memory or time-outs) are kept in FUZZ_BUILD_DIR/crashes/<target>/, logs in .../logs/.
#   Exit status 1 if any target found a crash. Env: FUZZ_JOBS (build, default 2), FUZZ_ARGS
#   (extra libFuzzer flags, e.g. "-rss_limit_mb=4096").
set -euo pipefail
cd "$(dirname "$0")/.."
ALL_TARGETS=(envelope chunk_reassembler amqp_reassembler codec_decode offload_wire rendezvous)

usage() { echo "usage: scripts/fuzz.sh SECONDS [TARGET...]   targets: ${ALL_TARGETS[*]}" >&2; exit 2; }
[ $# -ge 1 ] || usage
SECONDS_PER_TARGET=$1
shift
[[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: SECONDS must be a positive integer, got '$SECONDS_PER_TARGET'" >&2; usage; }
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
  [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target '$t'" >&2; usage; }
done

BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${FUZZ_JOBS:-2}
NICE=${FUZZ_NICE:-10}

command -v clang++ >/dev/null || scripts/setup.sh
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is missing; scripts/setup.sh did not install it" >&2; exit 1; }

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DP2P_FUZZ=ON -DP2P_BUILD_TESTS=OFF -DP2P_BUILD_BENCH=OFF "${launcher[@]}" >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS" --target fuzz_seeds "${TARGETS[@]/#/fuzz_}" >/dev/null
echo "fuzz.sh: build took $(($(date +%s) - start)) s"
"$BUILD_DIR/tests/fuzz/fuzz_seeds" "$BUILD_DIR/seeds"

# The last status line libFuzzer printed ("#N  DONE cov: C ft: F corp: K/B ... exec/s: E"), as
# "field value" pairs for the summary.
last_status() { grep -E '^#[0-9]+' "$1" | tail -n 1 || true; }
field() { sed -nE "s@.*[[:space:]]$2:? ([0-9]+[^[:space:]]*).*@\1@p" <<<"$1"; }

failed=()
summary=()
for t in "${TARGETS[@]}"; do
  corpus=$BUILD_DIR/corpus/$t crashes=$BUILD_DIR/crashes/$t log=$BUILD_DIR/logs/$t.log
  mkdir -p "$corpus" "$crashes" "$BUILD_DIR/logs"
  echo "fuzz.sh: $t for ${SECONDS_PER_TARGET} s (log $log)"
  rc=0
  regressions=()  # fixed findings: replayed first, under the sanitizers
  [ -d "tests/fuzz/regressions/$t" ] && regressions=("tests/fuzz/regressions/$t")
  # shellcheck disable=SC2086  # FUZZ_ARGS is a list of flags
  nice -n "$NICE" "$BUILD_DIR/tests/fuzz/fuzz_$t" -max_total_time="$SECONDS_PER_TARGET" \
    -timeout=60 -print_final_stats=1 -artifact_prefix="$crashes/" ${FUZZ_ARGS:-} \
    "$corpus" "$BUILD_DIR/seeds/$t" "${regressions[@]}" >"$log" 2>&1 || rc=$?
  status=$(last_status "$log")
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log")
  result=ok
  if [ "$rc" -ne 0 ]; then
    artifact=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
    result="FAILED rc=$rc ${artifact:-see $log}"
    failed+=("$t")
    grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz property)' "$log" | head -n 3 >&2 || true
  fi
  summary+=("$(printf '%-18s execs %-9s exec/s %-6s cov %-5s ft %-6s corpus %-10s %s' "$t" \
    "${execs:-?}" "$(field "$status" exec/s)" "$(field "$status" cov)" "$(field "$status" ft)" \
    "$(field "$status" corp)" "$result")")
done

echo "fuzz.sh: ${SECONDS_PER_TARGET} s per target, total $(($(date +%s) - start)) s"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in ${failed[*]}: inputs kept in $BUILD_DIR/crashes/<target>/; reproduce with $BUILD_DIR/tests/fuzz/fuzz_<target> FILE" >&2
  exit 1
fi
