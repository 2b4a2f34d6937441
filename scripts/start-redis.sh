#!/usr/bin/env bash
# Starts one private redis-server for a p2ptrain peer (SPIRT's database per peer, docs/spirt.md):
# no persistence, a random password, the p2ptrain module loaded. For hand-made and multi-host runs;
# tests and `launch` start their own.
#
# Usage: scripts/start-redis.sh DIR [PORT]   start; DIR holds the socket, log, pid and password
#        scripts/start-redis.sh --stop DIR   stop the server started in DIR
# Without PORT the server listens only on DIR/redis.sock; with PORT also on 127.0.0.1:PORT (bind
# another address by editing --bind, and keep the password file private). Prints the store URL;
# give peers the password through --store-password-file DIR/password or $P2P_REDIS_PASSWORD.
# The module is $P2P_REDIS_MODULE, else build/redis_module/p2ptrain_redis.so of this checkout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

if [ "${1:-}" = "--stop" ]; then
  dir=${2:?usage: start-redis.sh --stop DIR}
  [ -r "$dir/redis.pid" ] || { echo "start-redis.sh: no $dir/redis.pid; nothing to stop" >&2; exit 1; }
  pid=$(cat "$dir/redis.pid")
  REDISCLI_AUTH=$(cat "$dir/password") redis-cli -s "$dir/redis.sock" shutdown nosave >/dev/null 2>&1 ||
    kill "$pid" 2>/dev/null || true
  # Block until the process is gone (tail --pid exits when it does), at most 30 s.
  timeout 30 tail --pid="$pid" -f /dev/null || { echo "start-redis.sh: redis-server $pid did not stop" >&2; exit 1; }
  rm -f "$dir/redis.pid"
  echo "start-redis.sh: stopped redis-server in $dir"
  exit 0
fi

dir=${1:?usage: start-redis.sh DIR [PORT] | --stop DIR}
port=${2:-0}
module=${P2P_REDIS_MODULE:-$root/build/redis_module/p2ptrain_redis.so}
command -v redis-server >/dev/null || { echo "start-redis.sh: redis-server is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
[ -r "$module" ] || { echo "start-redis.sh: module '$module' not found; build it (cmake --build build --target p2ptrain_redis) or set P2P_REDIS_MODULE" >&2; exit 1; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
umask 077
[ -s "$dir/password" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/password"
: >"$dir/redis.log"
# jemalloc (redis-server's allocator) would hand freed pages back to the kernel after a short decay;
# the module's list averaging copies each element, and re-faulting tens of MB per call costs
# seconds on some VMs (bench/README.md, redis_bench). Keep freed pages for reuse unless set.
export MALLOC_CONF=${MALLOC_CONF:-dirty_decay_ms:-1,muzzy_decay_ms:-1}
# The password goes through a config read from stdin, never the command line (ps would show it).
{
  echo "requirepass $(cat "$dir/password")"
} | redis-server - --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" \
  --daemonize yes --save '' --appendonly no --unixsocket "$dir/redis.sock" --unixsocketperm 700 \
  --port "$port" --bind 127.0.0.1 --loadmodule "$module"
# Block (no polling) until the log says the server listens, or fails.
if ! timeout 30 grep -q -m1 -E "eady to accept connections|failed to load|Fatal|FATAL" <(tail --pid=$$ -n +1 -f "$dir/redis.log") ||
   ! grep -q "eady to accept connections" "$dir/redis.log"; then
  echo "start-redis.sh: redis-server did not start; its log ($dir/redis.log):" >&2
  tail -n 20 "$dir/redis.log" >&2
  exit 1
fi
echo "unix://$dir/redis.sock"
[ "$port" = 0 ] || echo "redis://127.0.0.1:$port/0"
