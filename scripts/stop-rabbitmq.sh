#!/usr/bin/env bash
# Stops the node started by scripts/start-rabbitmq.sh [PORT]: `rabbitmqctl stop` first, then
# SIGTERM and finally SIGKILL to the pid recorded in the state dir. Idempotent: succeeds when the
# node is not running. Keeps the state dir (logs) unless P2P_RABBIT_PURGE=1.
#
# Usage: scripts/stop-rabbitmq.sh [PORT]   (same PORT / P2P_RABBIT_DIR as the start script)
set -euo pipefail

PORT="${1:-${P2P_RABBIT_PORT:-5672}}"
STATE="${P2P_RABBIT_DIR:-/tmp/p2ptrain-rabbitmq}/node-$PORT"
[[ -d "$STATE" ]] || { echo "stop-rabbitmq.sh: nothing to stop ($STATE does not exist)" >&2; exit 0; }
NODE="$(cat "$STATE/nodename" 2>/dev/null || echo "p2ptrain-$PORT@localhost")"
PID_FILE="$STATE/rabbitmq.pid"
PID="$(cat "$PID_FILE" 2>/dev/null || true)"
RABBIT_BIN=/usr/lib/rabbitmq/bin
[[ -x "$RABBIT_BIN/rabbitmqctl" ]] || RABBIT_BIN="$(dirname "$(command -v rabbitmqctl || echo /x/x)")"
export HOME="$STATE"  # the node's Erlang cookie

alive() { [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; }
wait_gone() {  # wait_gone SECONDS
  local deadline=$((SECONDS + $1))
  while alive && ((SECONDS < deadline)); do sleep 0.2; done
  ! alive
}

if alive; then
  if [[ -x "$RABBIT_BIN/rabbitmqctl" ]]; then
    timeout 60 "$RABBIT_BIN/rabbitmqctl" -n "$NODE" -t 30 stop --idempotent "$PID_FILE" >/dev/null 2>&1 || true
  fi
  wait_gone 10 || { kill -TERM "$PID" 2>/dev/null || true; wait_gone 10; } ||
    { kill -KILL "$PID" 2>/dev/null || true; wait_gone 5; } ||
    { echo "stop-rabbitmq.sh: could not stop $NODE (pid $PID)" >&2; exit 1; }
  echo "stop-rabbitmq.sh: stopped $NODE" >&2
else
  echo "stop-rabbitmq.sh: $NODE is not running" >&2
fi
rm -f "$PID_FILE"
[[ "${P2P_RABBIT_PURGE:-0}" == 1 ]] && rm -rf "$STATE"
exit 0
