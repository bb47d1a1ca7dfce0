#!/usr/bin/env bash
# make run: the orchestrator in the foreground, on a local mosquitto.
# If nothing listens on the configured broker port on this machine, start a
# private mosquitto there for as long as the orchestrator runs.
set -euo pipefail
venv=${1:-.venv}
config=${2:-config.json}
here=$(cd "$(dirname "$0")/.." && pwd)

# the first broker address, read as the service reads it (host, host:port, or a list)
read -r host port < <("$venv/bin/python" - "$config" <<'PY'
import os, sys
from orchestrator.config import ConfigError, broker_addresses, load_config
try:
    config, _ = load_config(sys.argv[1] if os.path.exists(sys.argv[1]) else None)
    host, port = broker_addresses(config)[0]
except ConfigError:
    host, port = "localhost", 1883      # twistd says what is wrong with the config
print(host, port)
PY
)

broker_pid=
if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  case "$host" in
    localhost|127.0.0.1|::1) ;;
    *) echo "broker $host:$port is not reachable; start it first" >&2; exit 1 ;;
  esac
  dir=$(mktemp -d)
  {
    echo "listener $port 127.0.0.1"
    echo "allow_anonymous true"
    echo "persistence false"
    [ "$(id -u)" = 0 ] && echo "user root"
  } > "$dir/mosquitto.conf"
  echo "starting a private mosquitto on 127.0.0.1:$port (log: $dir/mosquitto.log)"
  /usr/sbin/mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
  broker_pid=$!
  trap 'kill $broker_pid 2>/dev/null || true' EXIT
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
fi

cd "$here"
"$venv/bin/twistd" -n --pidfile= silverline --config "$config" &
orchestrator=$!
# (set -e holds in traps too: every step may fail, the broker must still go)
trap 'kill -TERM $orchestrator 2>/dev/null || true; wait $orchestrator || true
      [ -z "$broker_pid" ] || kill $broker_pid 2>/dev/null || true' INT TERM EXIT
wait $orchestrator
