#!/usr/bin/env bash
# The test command (README, CI): install what is missing, build, start the real services the
# tests need (RabbitMQ on loopback), run every test with ctest, stop the services.
# Usage: scripts/test.sh [extra ctest args, e.g. -L ml or -R Envelope]
# A full run (no ctest args) ends with a short fuzzing run of every fuzz target (scripts/fuzz.sh,
# its own clang build in build-fuzz); FUZZ_SECONDS sets the seconds per target (default 10; 0 skips
# it, any other value also runs it after a partial run).
# Env: BUILD_DIR (default build), JOBS (default 2), FUZZ_SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-2}

scripts/setup.sh
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DP2P_BUILD_TESTS=ON -DP2P_BUILD_BENCH=ON >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"

started_rabbit=0
cleanup() {
  if [ "$started_rabbit" = 1 ]; then scripts/stop-rabbitmq.sh "$P2P_RABBIT_PORT" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
if [ -z "${P2P_AMQP_URL:-}" ] && [ -x scripts/start-rabbitmq.sh ]; then
  # The AMQP tests run against this broker; its own node name and data directory keep it apart
  # from any RabbitMQ already on the machine.
  # A port another program holds is skipped: try a few.
  for port in ${P2P_RABBIT_PORT:-5679 5689 5699 5709}; do
    if P2P_AMQP_URL=$(scripts/start-rabbitmq.sh "$port" 2>/tmp/p2ptrain-rabbit-$$.err | tail -n 1) \
        && [ -n "$P2P_AMQP_URL" ]; then
      export P2P_RABBIT_PORT=$port P2P_AMQP_URL
      started_rabbit=1
      break
    fi
    echo "test.sh: RabbitMQ on port $port: $(cat /tmp/p2ptrain-rabbit-$$.err)" >&2
  done
  rm -f /tmp/p2ptrain-rabbit-$$.err
  [ "$started_rabbit" = 1 ] || { echo "test.sh: could not start RabbitMQ (see above)" >&2; exit 1; }
fi

ctest --test-dir "$BUILD_DIR" -j "$JOBS" --output-on-failure "$@"

fuzz_seconds=${FUZZ_SECONDS:-$([ $# -eq 0 ] && echo 10 || echo 0)}
if [ "$fuzz_seconds" != 0 ]; then
  FUZZ_JOBS=$JOBS scripts/fuzz.sh "$fuzz_seconds"
fi
