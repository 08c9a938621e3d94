#!/usr/bin/env bash
# Runs every test of movielake, installing what the tests need first:
#   - Azurite (the Azure Storage emulator, npm) in ./.tools, started here and stopped on exit;
#   - PostgreSQL from Debian's packages (apt-get where missing), a throwaway cluster in
#     ./.tools/postgres on a free port of 127.0.0.1, stopped and deleted on exit;
#   - independent readers in ./.venv: pyarrow, the deltalake package, and DuckDB with its delta and
#     azure extensions from PyPI packages (tests/requirements.txt; DuckDB downloads nothing).
# Then: all Rust tests (unit, contract, property, snapshot, handler over HTTP, lake conformance
# on the local folder and on Azurite), and an end-to-end `movielake run` on a local folder and on
# a fresh Azurite, each lake's Delta tables and run manifests checked by deltalake and DuckDB
# (tests/check_lake.py); then the offline Terraform checks (HCL syntax and
# format, the azurerm provider schema, checkov, code/infra consistency; tools in ./.tools/infra)
# and the packaging tests.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "Python readers (pyarrow, deltalake, DuckDB with its delta and azure extensions) in .venv"
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt

step "Azurite"
scripts/azurite.sh start
trap 'scripts/azurite.sh stop' EXIT
export MOVIELAKE_TEST_AZURITE="http://127.0.0.1:${AZURITE_BLOB_PORT:-10000}/devstoreaccount1"

step "PostgreSQL (Debian's package) for the SQL source's tests"
MOVIELAKE_TEST_POSTGRES="$(scripts/postgres.sh start)"
export MOVIELAKE_TEST_POSTGRES
MOVIELAKE_TEST_POSTGRES_CA="$(scripts/postgres.sh ca)"
export MOVIELAKE_TEST_POSTGRES_CA
trap 'scripts/postgres.sh stop; scripts/azurite.sh stop' EXIT

step "Rust tests"
cargo test --workspace --locked

step "End to end: movielake run on a fresh local lake, read back by deltalake and DuckDB"
lake="$(mktemp -d)/lake"
cargo run --locked --quiet --bin movielake -- run --lake "$lake" --events 4000 --seed 42
imdb=../shared/fixtures/imdb/othonas_2021
if [[ -d "$imdb" ]]; then
  cargo run --locked --quiet --bin movielake -- ingest --lake "$lake" --date 2024-05-01 "$imdb"/*.tsv >/dev/null
  .venv/bin/python tests/check_lake.py "$lake" "$imdb"
else
  echo "SKIPPED: the IMDb samples ($imdb) are not here; checking the lake without them"
  .venv/bin/python tests/check_lake.py "$lake"
fi

step "End to end on Azurite: the same run against a fresh blob lake, read back by deltalake and DuckDB"
# Azurite keeps its data in memory: a restart drops what the Rust tests left in its containers,
# so the check sees exactly the lake this run wrote.
scripts/azurite.sh stop && scripts/azurite.sh start
cargo run --locked --quiet --bin movielake -- run --lake "$MOVIELAKE_TEST_AZURITE" --events 1000 --seed 7 >/dev/null
.venv/bin/python tests/check_lake.py "$MOVIELAKE_TEST_AZURITE"

step "Infrastructure: offline Terraform checks (syntax/fmt, azurerm schema, checkov, code consistency)"
scripts/check_infra.sh

step "Infrastructure and packaging tests"
PYTHONDONTWRITEBYTECODE=1 .tools/infra/venv/bin/python -m pytest -q -p no:cacheprovider tests/infra

printf '\nall tests passed\n'
