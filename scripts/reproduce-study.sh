#!/usr/bin/env bash
# Reproduces the study's experiments with one command and writes results/<date>/report.md, the
# CSVs, the raw JSON lines and the figures (docs/experiments.md).
#
#   scripts/reproduce-study.sh            # quick version: small sweeps, 1 epoch (well under 15 min on 2 cores)
#   scripts/reproduce-study.sh --full     # the full grids of experiments/*.yaml
#
# Environment: P2P_AMQP_URL (a RabbitMQ to use for the loopback AMQP points; default: start a
# private one with scripts/start-rabbitmq.sh on port $P2P_STUDY_RABBIT_PORT, default 5720, and
# stop it at the end), RESULTS (default results), BUILD_DIR (default build), JOBS (default 2).
# Interrupted (Ctrl-C)? Run the same command again the same day: finished points are not redone.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=quick
QUICK=(--quick)
case "${1:-}" in
  "") ;;
  --full) MODE=full; QUICK=() ;;
  *) echo "reproduce-study.sh: unknown argument '$1' (use --full or nothing)" >&2; exit 2 ;;
esac

EXPERIMENTS=(experiments/a-no-serverless.yaml experiments/b-serverless.yaml experiments/c-compression.yaml
  experiments/e-robustness.yaml experiments/hosts-bandwidth.yaml)
RESULTS="${RESULTS:-results}"
BUILD_DIR="${BUILD_DIR:-build}"
OUT="$RESULTS/$(date -u +%F)"

scripts/setup.sh
if [[ ! -x "$BUILD_DIR/peer/p2ptrain" || ! -x "$BUILD_DIR/serverless_offload/p2ptrain-function" ]]; then
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" -j"${JOBS:-2}" --target p2ptrain p2ptrain-function
fi
export P2P_BINARY="$PWD/$BUILD_DIR/peer/p2ptrain"

STARTED_RABBIT=""
if [[ -z "${P2P_AMQP_URL:-}" ]]; then
  PORT="${P2P_STUDY_RABBIT_PORT:-5720}"
  P2P_AMQP_URL="$(scripts/start-rabbitmq.sh "$PORT" | tail -n 1)"
  STARTED_RABBIT="$PORT"
fi
export P2P_AMQP_URL
cleanup() { [[ -n "$STARTED_RABBIT" ]] && scripts/stop-rabbitmq.sh "$STARTED_RABBIT" >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "reproduce-study.sh: $MODE version into $OUT (broker $P2P_AMQP_URL)" >&2
start=$SECONDS
for f in "${EXPERIMENTS[@]}"; do
  name="$(basename "$f" .yaml)"
  rc=0
  scripts/experiment run "$f" "${QUICK[@]}" --out "$OUT/$name" || rc=$?
  if ((rc == 130)); then
    echo "reproduce-study.sh: interrupted; run the same command again to resume" >&2
    exit 130
  fi
  ((rc == 0)) || { echo "reproduce-study.sh: $f could not run (exit $rc)" >&2; exit "$rc"; }
done
scripts/experiment study "$OUT" "${EXPERIMENTS[@]}" "${QUICK[@]}"
echo "reproduce-study.sh: done in $((SECONDS - start)) s: $OUT/report.md" >&2
