#!/usr/bin/env bash
# Peak resident memory per process through the real CLI on Fashion-MNIST (each process's own
# peak_rss_mb metric): W local mlp peers for one epoch, then `train --shard` on rank 1's shard of
# a 3-way split. Goal (issue 17): <= 80 MiB per peer at W = 4.
# Measured 2026-12-05, W = 4, 1 thread, shared 2-core machine: before (whole training set as
# float32 in every peer) 275 MiB per peer and 380 MiB for --shard; after 40 MiB and 80 MiB.
# Usage: bench/peer_memory.sh [BUILD_DIR]   (default build; needs p2ptrain built)
# Env: PEERS (default 4), MODEL (default mlp).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build}/peer/p2ptrain
[ -x "$BIN" ] || { echo "peer_memory.sh: $BIN not found; build first (cmake --build build)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
peers=${PEERS:-4}
"$BIN" launch --size "$peers" --run-id "peer-memory-$$" --metrics-dir "$out/m" --progress off -- \
  --model "${MODEL:-mlp}" --epochs 1 --threads 1 >/dev/null 2>"$out/launch.err" ||
  { cat "$out/launch.err" >&2; exit 1; }
"$BIN" split --size 3 --out "$out/shards" >/dev/null 2>"$out/split.err" ||
  { cat "$out/split.err" >&2; exit 1; }
"$BIN" train --shard "$out/shards/rank-1.shard" --model "${MODEL:-mlp}" --epochs 1 --threads 1 \
  --progress off --metrics "$out/shard.jsonl" >/dev/null 2>"$out/shard.err" ||
  { cat "$out/shard.err" >&2; exit 1; }
python3 - "$out" "$peers" <<'PY'
import json, sys
out, peers = sys.argv[1], int(sys.argv[2])
last = lambda path: json.loads(open(path).read().splitlines()[-1])
print(f"{'process':<28} {'peak_rss_mb':>11} {'param_hash':>18}")
for r in range(peers):
    rec = last(f"{out}/m/rank-{r}.jsonl")
    print(f"{'peer ' + str(r) + ' of ' + str(peers):<28} {rec['peak_rss_mb']:>11.1f} {rec['param_hash']:>18}")
rec = last(f"{out}/shard.jsonl")
print(f"{'train --shard (1/3)':<28} {rec['peak_rss_mb']:>11.1f} {rec['param_hash']:>18}")
PY
