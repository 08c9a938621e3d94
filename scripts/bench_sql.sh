#!/usr/bin/env bash
# The SQL source's pull beside PostgreSQL's own export of the same rows (BENCHMARKS.md):
#
#   scripts/bench_sql.sh [ROWS]     ROWS subscriptions (default 1000000) and ROWS/5 users
#   PAGES="20000 1000000" scripts/bench_sql.sh   the pull once per page size (--page-rows)
#
# Starts the throwaway PostgreSQL (scripts/postgres.sh), fills a database `bench_sql` with
# generated rows, then runs each of these three times, printing wall time and peak memory
# (/usr/bin/time -v):
#   pull   movielake pull-sql --table subscriptions --no-key-check --page-rows P into a fresh local lake:
#          bronze (gzipped CSV), contract, change log, SCD2 history, SCD1 current, watermark
#   copy   psql -c "COPY (SELECT …) TO STDOUT (FORMAT csv)" > /dev/null: the floor, reading
#          the same rows out of the same server and nothing else
# Build first: cargo build --release -p movielake.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROWS="${1:-1000000}"
BIN="$ROOT/target/release/movielake"
[[ -x "$BIN" ]] || { echo "bench_sql.sh: build first: cargo build --release -p movielake" >&2; exit 1; }
command -v psql >/dev/null || { echo "bench_sql.sh: psql is missing (Debian: postgresql-client)" >&2; exit 1; }

SERVER="$("$ROOT/scripts/postgres.sh" start)"
BASE="${SERVER%/*}"
DB="$BASE/bench_sql"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

psql -q "$SERVER" -c "DROP DATABASE IF EXISTS bench_sql" -c "CREATE DATABASE bench_sql"
psql -q "$DB" -f "$ROOT/crates/movielake-core/src/sources/sql/ddl/postgres.sql"
USERS=$(( ROWS / 5 > 0 ? ROWS / 5 : 1 ))
echo "generating $USERS users and $ROWS subscriptions ..."
psql -q "$DB" <<SQL
INSERT INTO users (user_id, email, display_name, country, created_at, updated_at)
SELECT 'user-' || lpad(g::text, 8, '0'), 'user' || g || '@example.com', 'User ' || g,
       (ARRAY['FR','DE','US','GB','ES','IT','NL','BR','JP','IN'])[1 + g % 10],
       now() - interval '2 days', now() - interval '2 days'
FROM generate_series(1, $USERS) g;
INSERT INTO subscriptions (subscription_id, user_id, plan, status, started_at, ends_at,
                           monthly_price, currency, updated_at)
SELECT 'sub-' || lpad(g::text, 9, '0'), 'user-' || lpad((1 + g % $USERS)::text, 8, '0'),
       (ARRAY['basic','standard','premium'])[1 + g % 3],
       (ARRAY['trial','active','past_due','cancelled'])[1 + g % 4],
       now() - interval '400 days' + (g % 300) * interval '1 day', NULL,
       (ARRAY[7.99, 12.99, 17.99])[1 + g % 3], 'EUR',
       now() - interval '1 day' + (g % 80000) * interval '1 second'
FROM generate_series(1, $ROWS) g;
ANALYZE;
SQL

COLUMNS="subscription_id, user_id, plan, status, started_at, ends_at, monthly_price, currency, updated_at"
measure() { # name command...
  local name="$1"; shift
  /usr/bin/time -v "$@" 2>"$WORK/time" >/dev/null || { cat "$WORK/time" >&2; exit 1; }
  awk -v n="$name" -F': ' '/Elapsed \(wall clock\)/{w=$2} /Maximum resident set size/{m=$2}
    END{printf "%-13s wall %s  peak RSS %.0f MiB\n", n, w, m/1024}' "$WORK/time"
}
PAGES="${PAGES:-20000}"
for i in 1 2 3; do
  for p in $PAGES; do
    rm -rf "$WORK/lake"
    measure "pull/$p" "$BIN" --lake "$WORK/lake" pull-sql --database "$DB" --table subscriptions --no-key-check --page-rows "$p"
  done
  measure copy psql -q "$DB" -c "COPY (SELECT $COLUMNS FROM subscriptions ORDER BY updated_at, subscription_id) TO STDOUT (FORMAT csv)"
done
echo "rows: $ROWS"
