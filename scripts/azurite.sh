#!/usr/bin/env bash
# Local Azure Blob Storage emulator (Azurite) for tests and local runs.
#
#   scripts/azurite.sh start   install azurite into ./.tools if missing, start the blob service
#                              on 127.0.0.1:10000 in the background, wait until it answers
#   scripts/azurite.sh stop    stop the instance started by `start`
#   scripts/azurite.sh status  say whether it is running
#
# Everything lives under ./.tools (gitignored): node_modules, azurite.pid, azurite.log.
# The account is Azurite's published development account, devstoreaccount1; the blob
# endpoint is http://127.0.0.1:10000/devstoreaccount1. Data is in memory only.
# --skipApiVersionCheck: the Rust SDK sends a newer x-ms-version than Azurite knows.
# --disableTelemetry: Azurite otherwise phones home to Application Insights.
set -euo pipefail

AZURITE_VERSION="3.35.0" # 3.36+ needs Node 21
HOST="127.0.0.1"
PORT="${AZURITE_BLOB_PORT:-10000}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
PID_FILE="$TOOLS/azurite.pid"
LOG_FILE="$TOOLS/azurite.log"
BIN="$TOOLS/node_modules/.bin/azurite-blob"

die() { echo "azurite.sh: $*" >&2; exit 1; }

installed_version() {
  local pkg="$TOOLS/node_modules/azurite/package.json"
  [[ -f "$pkg" ]] || return 0
  node -e 'process.stdout.write(require(process.argv[1]).version)' "$pkg" 2>/dev/null || true
}

install() {
  command -v node >/dev/null || die "node is not installed (Node 20 or newer is needed)"
  command -v npm >/dev/null || die "npm is not installed"
  if [[ -x "$BIN" && "$(installed_version)" == "$AZURITE_VERSION" ]]; then
    return 0
  fi
  echo "azurite.sh: installing azurite@$AZURITE_VERSION into $TOOLS" >&2
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --no-audit --no-fund --save-exact --loglevel=error \
    "azurite@$AZURITE_VERSION" >&2
  [[ -x "$BIN" ]] || die "npm install finished but $BIN is missing"
}

running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(cat "$PID_FILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

port_answers() {
  # bash's /dev/tcp: no curl or nc needed.
  (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

start() {
  if pid="$(running_pid)"; then
    echo "azurite.sh: already running (pid $pid) on http://$HOST:$PORT" >&2
    return 0
  fi
  if port_answers; then
    die "something else is already listening on $HOST:$PORT"
  fi
  install
  mkdir -p "$TOOLS"
  # setsid: its own session, so it outlives this script and a Ctrl-C in the caller's shell.
  setsid "$BIN" --blobHost "$HOST" --blobPort "$PORT" \
    --inMemoryPersistence --skipApiVersionCheck --loose --silent --disableTelemetry \
    >"$LOG_FILE" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$PID_FILE"
  for _ in $(seq 1 60); do
    if port_answers; then
      echo "azurite.sh: blob service up (pid $pid) at http://$HOST:$PORT/devstoreaccount1" >&2
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      cat "$LOG_FILE" >&2 || true
      die "azurite exited during start-up (log above)"
    fi
    sleep 0.5
  done
  kill "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
  cat "$LOG_FILE" >&2 || true
  die "azurite did not answer on $HOST:$PORT within 30 s"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    echo "azurite.sh: not running" >&2
    return 0
  fi
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
  echo "azurite.sh: stopped (pid $pid)" >&2
}

status() {
  if pid="$(running_pid)"; then
    echo "running (pid $pid) at http://$HOST:$PORT/devstoreaccount1"
  else
    echo "not running"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
