#!/usr/bin/env bash
# A throwaway PostgreSQL for the SQL-source tests, from Debian's packages.
#
#   scripts/postgres.sh start   install postgresql with apt where missing, create a cluster in
#                               ./.tools/postgres (superuser `movielake`, trust auth), start it on
#                               127.0.0.1 on a free port, wait until it answers, print its URL
#   scripts/postgres.sh stop    stop it and delete its data
#   scripts/postgres.sh url     print the URL of the running instance
#   scripts/postgres.sh ca      print the path of the CA that signed its TLS certificate
#
# initdb refuses to run as root: as root the cluster belongs to the `postgres` user the Debian
# package creates. Nothing listens beyond 127.0.0.1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/.tools/postgres"
DATA="$DIR/data"

die() { echo "postgres.sh: $*" >&2; exit 1; }

bindir() {
  local initdb
  initdb="$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)"
  [[ -n "$initdb" ]] && dirname "$initdb"
}

install() {
  [[ -n "$(bindir)" ]] && return 0
  command -v apt-get >/dev/null || die "PostgreSQL is not installed and apt-get is not here: install postgresql"
  [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed: sudo apt-get install postgresql"
  echo "postgres.sh: installing postgresql with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 \
    || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
  [[ -n "$(bindir)" ]] || die "apt-get finished but initdb is missing"
}

# Runs a PostgreSQL program as the cluster's owner.
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

url() {
  [[ -f "$DIR/port" ]] || die "not started (scripts/postgres.sh start)"
  echo "postgres://movielake@127.0.0.1:$(cat "$DIR/port")/postgres"
}

start() {
  install
  local bin port
  bin="$(bindir)"
  if [[ -f "$DIR/port" ]] && as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    url
    return 0
  fi
  rm -rf "$DIR"
  mkdir -p "$DATA"
  [[ "$(id -u)" == 0 ]] && chown -R postgres "$DIR"
  as_owner "$bin/initdb" -D "$DATA" -U movielake --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
    || die "initdb failed: $(tail -n 5 "$DIR/initdb.log")"
  certificates
  port="$(free_port)"
  echo "$port" >"$DIR/port"
  as_owner "$bin/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $DATA -c ssl=on -c ssl_cert_file=$DATA/server.crt -c ssl_key_file=$DATA/server.key" start >/dev/null \
    || die "did not start: $(tail -n 5 "$DATA/server.log")"
  url
}

# A throwaway CA and a server certificate for 127.0.0.1 signed by it, so the TLS tests verify
# a real chain (a self-signed CA certificate cannot serve as the server's own: rustls refuses a
# CA used as an end entity). Clients in the clear still connect: ssl=on does not force TLS.
certificates() {
  if ! command -v openssl >/dev/null; then
    [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null || die "openssl is missing: sudo apt-get install openssl"
    echo "postgres.sh: installing openssl with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssl >&2 \
      || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssl >&2; }
  fi
  (
    cd "$DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3 -subj "/CN=movielake test CA" \
      -keyout ca.key -out ca.crt >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3 -extfile server.ext \
      -out server.crt >/dev/null 2>&1
  ) || die "could not make the test certificates"
  cp "$DIR/server.crt" "$DIR/server.key" "$DATA/"
  chmod 600 "$DATA/server.key"
  [[ "$(id -u)" == 0 ]] && chown postgres "$DATA/server.crt" "$DATA/server.key"
  return 0
}

# The CA that signed the server's certificate (for sslmode=require tests).
ca() {
  [[ -f "$DIR/ca.crt" ]] || die "not started (scripts/postgres.sh start)"
  echo "$DIR/ca.crt"
}

stop() {
  local bin
  bin="$(bindir)"
  if [[ -n "$bin" && -d "$DATA" ]]; then
    as_owner "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  ca) ca ;;
  *) die "usage: scripts/postgres.sh start|stop|url|ca" ;;
esac
