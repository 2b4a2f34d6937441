#!/usr/bin/env bash
# The study's headline quantity through the real CLI: one epoch of Fashion-MNIST's gradient
# computation time (compute_s) in one process, and with --offload process for K = 1, 2, 4 warm
# functions, per step (each minibatch split into K parts) and fanned out (--sync-every epoch:
# one function per minibatch, the study's Step Function). Prints a table; JSONL=FILE adds JSON lines.
# Usage: bench/offload_epoch.sh [BUILD_DIR]   Env: MODELS (default "mlp lenet5"), KS ("1 2 4").
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build}/peer/p2ptrain
[ -x "$BIN" ] || { echo "offload_epoch.sh: $BIN not found; build first (cmake --build build)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# One peer alone with --sync-every epoch runs the same minibatches as `train`, fanned out.
run() {  # name, then flags
  local name=$1; shift
  "$BIN" peer --size 1 --rank 0 --insecure --epochs 1 --threads 1 --progress off \
    --metrics "$out/$name.jsonl" "$@" >/dev/null 2>"$out/$name.err" ||
    { echo "offload_epoch.sh: $name failed:" >&2; cat "$out/$name.err" >&2; exit 1; }
}
printf '%-8s %-10s %3s %12s %9s %12s\n' model mode K compute_s speedup invocations
for model in ${MODELS:-mlp lenet5}; do
  run "$model-local" --model "$model"
  for k in ${KS:-1 2 4}; do
    run "$model-split-$k" --model "$model" --offload process --functions "$k" --fn-warm
    run "$model-fanout-$k" --model "$model" --offload process --functions "$k" --fn-warm \
      --sync-every epoch
  done
  python3 - "$out" "$model" "${KS:-1 2 4}" "${JSONL:-}" <<'PY'
import json, sys
out, model, ks, jsonl = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4]
def rec(name):
    return json.loads(open(f"{out}/{model}-{name}.jsonl").read().splitlines()[-1])
base = rec("local")["compute_s"]
rows = [("local", 0, base, 0)]
for k in ks:
    for mode in ("split", "fanout"):
        r = rec(f"{mode}-{k}")
        rows.append((mode, int(k), r["compute_s"], r.get("invocations", 0)))
for mode, k, c, inv in rows:
    print(f"{model:<8} {mode:<10} {k:>3} {c:>12.2f} {base / c:>8.2f}x {inv:>12}")
if jsonl:
    with open(jsonl, "a") as f:
        for mode, k, c, inv in rows:
            f.write(json.dumps({"bench": "offload_epoch", "model": model, "mode": mode,
                                "functions": k, "compute_s": c, "speedup": base / c,
                                "invocations": inv}) + "\n")
PY
done
