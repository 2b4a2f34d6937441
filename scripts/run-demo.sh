#!/usr/bin/env bash
# The main job on the embedded default: install what is missing, build, then train an MLP on
# Fashion-MNIST and print progress and the final test accuracy.
# Extra arguments go to `p2ptrain train`, e.g. scripts/run-demo.sh --epochs 5 --model lenet5
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

scripts/setup.sh
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DP2P_BUILD_TESTS=OFF -DP2P_BUILD_BENCH=OFF >/dev/null
cmake --build "$BUILD_DIR" -j "${JOBS:-2}" --target p2ptrain

mkdir -p runs/demo
exec "$BUILD_DIR/peer/p2ptrain" train --dataset fashion-mnist --model mlp --epochs 3 \
  --batch_size 64 --optimizer sgd --lr 0.02 --momentum 0.9 \
  --metrics runs/demo/metrics.jsonl "$@"
