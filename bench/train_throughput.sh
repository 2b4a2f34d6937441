#!/usr/bin/env bash
# End-to-end training throughput through the real CLI: one epoch of Fashion-MNIST per model in one
# process, printing samples/s of compute (forward + backward) and the epoch's wall time.
# Usage: bench/train_throughput.sh [BUILD_DIR]   (default build; needs p2ptrain built)
# Env: THREADS (default 1), MODELS (default "mlp lenet5").
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build}/peer/p2ptrain
[ -x "$BIN" ] || { echo "train_throughput.sh: $BIN not found; build first (cmake --build build)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-8s %8s %14s %10s %10s\n' model threads samples_per_s epoch_s test_acc
for model in ${MODELS:-mlp lenet5}; do
  "$BIN" train --model "$model" --epochs 1 --threads "${THREADS:-1}" --progress off \
    --metrics "$out/$model.jsonl" >/dev/null 2>"$out/$model.err" ||
    { cat "$out/$model.err" >&2; exit 1; }
  python3 - "$out/$model.jsonl" "$model" "${THREADS:-1}" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print(f"{sys.argv[2]:<8} {sys.argv[3]:>8} {r['samples_per_s']:>14.0f} {r['epoch_s']:>10.2f} {r['test_accuracy']:>10.4f}")
PY
done
