#!/usr/bin/env bash
# The main job on the embedded default: install what is missing, build, then run 4 local peers
# that train an MLP on Fashion-MNIST together over ZeroMQ (no broker to install), showing one
# combined progress line and each peer's final test accuracy.
# Extra arguments go to every peer, e.g. scripts/run-demo.sh --epochs 5 --model lenet5
# The peers authenticate each other: launch generates a key per peer for the run (docs/security.md);
# pass --insecure to measure the run without authentication.
# Env: PEERS (default 4), BUILD_DIR (default build), JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
PEERS=${PEERS:-4}

scripts/setup.sh
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DP2P_BUILD_TESTS=OFF -DP2P_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD_DIR" -j "${JOBS:-2}" --target p2ptrain

# The demo's defaults, each dropped when the caller gives that flag (a flag may appear only once).
# One compute thread per peer: the peers share this machine.
defaults=(--dataset fashion-mnist --model mlp --epochs 3 --batch_size 64 --optimizer sgd
  --lr 0.02 --threads 1)
args=()
for ((i = 0; i < ${#defaults[@]}; i += 2)); do
  flag=${defaults[i]}
  case " $* " in *" $flag "* | *" $flag="*) ;; *) args+=("$flag" "${defaults[i + 1]}") ;; esac
done
exec "$BUILD_DIR/peer/p2ptrain" launch --size "$PEERS" --transport zmq --metrics-dir runs/demo \
  -- "${args[@]}" "$@"
