#!/usr/bin/env bash
# Starts a private RabbitMQ node on loopback for p2ptrain's tests, CI and demos, and prints its
# AMQP URL as the last line of stdout:  amqp://guest:guest@127.0.0.1:PORT/
#
# Usage: scripts/start-rabbitmq.sh [PORT]          (PORT defaults to $P2P_RABBIT_PORT or 5672)
#
# The node is independent of any system RabbitMQ: its own node name (p2ptrain-PORT@localhost),
# its own data, logs, config, Erlang cookie and HOME under $P2P_RABBIT_DIR/node-PORT (default
# /tmp/p2ptrain-rabbitmq/node-PORT), AMQP only on 127.0.0.1:PORT, Erlang distribution on
# PORT+20000, no plugins. Works as root (CI) and as an ordinary user; needs no systemd.
# Idempotent: if the node is already up, it only prints the URL. Concurrent calls are serialised
# by a lock, so parallel test processes can all call it. scripts/stop-rabbitmq.sh stops the node.
#
# Environment: P2P_RABBIT_DIR (state root), P2P_RABBIT_PORT, P2P_RABBIT_TIMEOUT (seconds to wait
# for startup, default 90), P2P_RABBIT_TLS_PORT (also listen for amqps on 127.0.0.1:THAT_PORT
# with a throwaway CA and a server certificate for "localhost", generated on first use into
# STATE/tls/: clients verify with ?cacertfile=STATE/tls/ca.pem; takes effect when the node starts).
set -euo pipefail

PORT="${1:-${P2P_RABBIT_PORT:-5672}}"
[[ "$PORT" =~ ^[0-9]+$ ]] && ((PORT > 0 && PORT < 45536)) || {
  echo "start-rabbitmq.sh: bad port '$PORT' (1..45535, the distribution port is PORT+20000)" >&2
  exit 2
}
STATE="${P2P_RABBIT_DIR:-/tmp/p2ptrain-rabbitmq}/node-$PORT"
NODE="p2ptrain-$PORT@localhost"
URL="amqp://guest:guest@127.0.0.1:$PORT/"
TIMEOUT="${P2P_RABBIT_TIMEOUT:-90}"
TLS_PORT="${P2P_RABBIT_TLS_PORT:-}"

# Debian's /usr/sbin wrappers re-run the tools as the rabbitmq user through su, which cannot use
# our state dir; the real scripts live in /usr/lib/rabbitmq/bin.
RABBIT_BIN=/usr/lib/rabbitmq/bin
[[ -x "$RABBIT_BIN/rabbitmq-server" ]] || RABBIT_BIN="$(dirname "$(command -v rabbitmq-server || echo /nonexistent/x)")"
[[ -x "$RABBIT_BIN/rabbitmq-server" ]] || {
  echo "start-rabbitmq.sh: rabbitmq-server not found; run scripts/setup.sh (Debian package rabbitmq-server)" >&2
  exit 1
}

mkdir -p "$STATE"/{mnesia,log}
export HOME="$STATE"  # the Erlang cookie of this node and of rabbitmqctl lives here
export RABBITMQ_NODENAME="$NODE" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$PORT"
export RABBITMQ_DIST_PORT=$((PORT + 20000))
export RABBITMQ_MNESIA_BASE="$STATE/mnesia" RABBITMQ_LOG_BASE="$STATE/log"
export RABBITMQ_PID_FILE="$STATE/rabbitmq.pid" RABBITMQ_CONFIG_FILE="$STATE/rabbitmq.conf"
export RABBITMQ_CONF_ENV_FILE="$STATE/rabbitmq-env.conf"  # ignore /etc/rabbitmq/rabbitmq-env.conf
export RABBITMQ_ENABLED_PLUGINS_FILE="$STATE/enabled_plugins"
export RABBITMQ_ADVANCED_CONFIG_FILE="$STATE/advanced.config"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/${1:-$PORT}") 2>/dev/null; }
node_pid() { [[ -s "$RABBITMQ_PID_FILE" ]] && cat "$RABBITMQ_PID_FILE"; }
running() { local pid; pid="$(node_pid)" && kill -0 "$pid" 2>/dev/null && port_open; }
ctl() { "$RABBIT_BIN/rabbitmqctl" -n "$NODE" "$@"; }

write_config() {
  [[ -s "$HOME/.erlang.cookie" ]] || {
    (umask 077 && head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \n' | head -c 32 >"$HOME/.erlang.cookie")
    chmod 400 "$HOME/.erlang.cookie"
  }
  : >"$RABBITMQ_CONF_ENV_FILE"
  echo "[]." >"$RABBITMQ_ENABLED_PLUGINS_FILE"
  echo "[]." >"$RABBITMQ_ADVANCED_CONFIG_FILE"
  cat >"$RABBITMQ_CONFIG_FILE" <<EOF
# Written by scripts/start-rabbitmq.sh; rewritten on every start.
loopback_users.guest = true
log.console = false
log.file.level = info
# CI disks are small; the default 50 MB free-disk alarm would block publishers.
disk_free_limit.absolute = 10MB
EOF
  write_tls_config
}

# A throwaway CA and a "localhost" server certificate (SAN DNS:localhost only, so a client that
# dials 127.0.0.1 must fail hostname verification). Test material, never for production.
make_tls_material() {
  local dir="$STATE/tls"
  [[ -s "$dir/server.pem" ]] && return 0
  mkdir -p "$dir"
  command -v openssl >/dev/null || { echo "start-rabbitmq.sh: TLS needs the openssl CLI" >&2; exit 1; }
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=p2ptrain test CA" \
      -keyout ca.key -out ca.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
    printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -extfile ext.cnf -out server.pem
  ) >"$STATE/tls.log" 2>&1 || {
    echo "start-rabbitmq.sh: generating TLS material failed, see $STATE/tls.log" >&2
    exit 1
  }
}

write_tls_config() {
  [[ -n "$TLS_PORT" ]] || return 0
  make_tls_material
  cat >>"$RABBITMQ_CONFIG_FILE" <<EOF
listeners.ssl.default = 127.0.0.1:$TLS_PORT
ssl_options.cacertfile = $STATE/tls/ca.pem
ssl_options.certfile = $STATE/tls/server.pem
ssl_options.keyfile = $STATE/tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
EOF
}

fail_with_log() {
  echo "start-rabbitmq.sh: $1 (node $NODE, logs in $RABBITMQ_LOG_BASE)" >&2
  tail -n 30 "$RABBITMQ_LOG_BASE"/*.log "$STATE/startup.log" 2>/dev/null | sed 's/^/  | /' >&2 || true
  exit 1
}

wait_started() {
  local deadline=$((SECONDS + TIMEOUT)) pid
  until [[ -s "$RABBITMQ_PID_FILE" ]]; do
    ((SECONDS < deadline)) || fail_with_log "no pid file after ${TIMEOUT}s"
    sleep 0.2
  done
  pid="$(node_pid)"
  until ctl -t 5 await_startup >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || fail_with_log "the node exited during startup"
    ((SECONDS < deadline)) || fail_with_log "not started after ${TIMEOUT}s"
    sleep 0.5
  done
  for p in "$PORT" $TLS_PORT; do  # await_startup returns once the app is up; listeners follow
    until port_open "$p"; do
      ((SECONDS < deadline)) || fail_with_log "port $p not accepting connections after ${TIMEOUT}s"
      sleep 0.2
    done
  done
}

start() {
  for p in "$PORT" $TLS_PORT; do
    if port_open "$p"; then
      echo "start-rabbitmq.sh: 127.0.0.1:$p is in use by something other than $NODE; pick another port" >&2
      exit 1
    fi
  done
  write_config
  rm -f "$RABBITMQ_PID_FILE"
  # 9>&-: the node must not inherit (and so hold forever) our lock.
  "$RABBIT_BIN/rabbitmq-server" -detached >"$STATE/startup.log" 2>&1 9>&- ||
    fail_with_log "rabbitmq-server -detached failed"
  wait_started
  echo "$NODE" >"$STATE/nodename"
  echo "start-rabbitmq.sh: started $NODE (pid $(node_pid)), state in $STATE" >&2
}

exec 9>"$STATE/lock"
flock -w "$TIMEOUT" 9 || { echo "start-rabbitmq.sh: timed out waiting for $STATE/lock" >&2; exit 1; }
if ! running; then
  start
elif [[ -n "$TLS_PORT" ]] && ! port_open "$TLS_PORT"; then
  echo "start-rabbitmq.sh: $NODE runs without a TLS listener on $TLS_PORT; stop it first" \
    "(scripts/stop-rabbitmq.sh $PORT)" >&2
  exit 1
fi
echo "$URL"
