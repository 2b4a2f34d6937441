#!/usr/bin/env bash
# End-to-end: time per epoch of W local peers (p2ptrain launch, ZeroMQ or AMQP) against one
# process on the same data, with the split of each peer's epoch into compute / send / wait / update.
# Usage: bench/peers_vs_single.sh [BUILD_DIR]   Env: PEERS (default 4), EPOCHS (default 1),
#   MODEL (default mlp), TRANSPORT (zmq | amqp, default zmq), BROKER (amqp URL), SYNC_EVERY (1).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build}/peer/p2ptrain
[ -x "$BIN" ] || { echo "peers_vs_single.sh: $BIN not found; build first" >&2; exit 1; }
PEERS=${PEERS:-4}
EPOCHS=${EPOCHS:-1}
MODEL=${MODEL:-mlp}
TRANSPORT=${TRANSPORT:-zmq}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$BIN" train --model "$MODEL" --epochs "$EPOCHS" --threads 1 --progress off \
  --metrics "$out/single.jsonl" >/dev/null 2>"$out/single.err" || { cat "$out/single.err" >&2; exit 1; }
broker_args=()
[ "$TRANSPORT" = amqp ] && broker_args=(--broker "${BROKER:-amqp://guest:guest@127.0.0.1:5672/}")
"$BIN" launch --size "$PEERS" --transport "$TRANSPORT" "${broker_args[@]}" --metrics-dir "$out/peers" -- \
  --model "$MODEL" --epochs "$EPOCHS" --threads 1 --sync-every "${SYNC_EVERY:-1}" >/dev/null 2>"$out/peers.err" ||
  { cat "$out/peers.err" >&2; exit 1; }

python3 - "$out" "$PEERS" "$TRANSPORT" <<'PY'
import glob, json, statistics, sys
out, peers, transport = sys.argv[1], int(sys.argv[2]), sys.argv[3]
single = [json.loads(l) for l in open(f"{out}/single.jsonl")]
ranks = [[json.loads(l) for l in open(p)] for p in sorted(glob.glob(f"{out}/peers/rank-*.jsonl"))]
def mean(key, recs): return statistics.mean(r.get(key, 0) for r in recs)
print(f"1 process:        epoch {mean('epoch_s', single):7.2f} s  compute {mean('compute_s', single):6.2f} s  "
      f"test_acc {single[-1]['test_accuracy']:.4f}")
allrec = [r for rk in ranks for r in rk]
print(f"{peers} peers ({transport}): epoch {mean('epoch_s', allrec):7.2f} s  compute {mean('compute_s', allrec):6.2f} s  "
      f"send {mean('send_s', allrec):5.2f} s  wait {mean('wait_s', allrec):5.2f} s  update {mean('update_s', allrec):5.2f} s  "
      f"sent {mean('bytes_sent', allrec)/1e6:8.1f} MB/peer/epoch  test_acc {ranks[0][-1]['test_accuracy']:.4f}")
print(f"speed-up per epoch: {mean('epoch_s', single) / mean('epoch_s', allrec):.2f}x "
      f"(each peer trains 1/{peers} of the data; all share this machine's cores)")
PY
