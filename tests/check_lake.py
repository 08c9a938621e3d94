#!/usr/bin/env python3
"""End-to-end check of a lake written by `movielake run`, with readers that are not ours.

    check_lake.py <lake> [<folder of the IMDb .tsv files ingested into it>]

<lake> is a folder (`/tmp/lake`, `file:///tmp/lake`) or an Azurite blob endpoint
(`http://127.0.0.1:10000/devstoreaccount1`; Azurite's published development key, or
MOVIELAKE_TEST_AZURITE_KEY). Files (manifests, bronze, quarantine) are read through pyarrow's
file systems, the same way for both.

Silver and gold tables are Delta tables (`silver/<source>/<table>/`, `gold/<model>/`, each with a
`_delta_log/`); every folder there must be one. Each table is read by two readers that share no
code with movielake's write path:
  - the `deltalake` package: delta-rs replays the log, pyarrow reads the Parquet files;
  - DuckDB's `delta` extension: delta-kernel-rs replays the log, DuckDB reads the Parquet files.
    It is loaded by file path from the `duckdb-extension-delta` package (and, on Azurite, the
    `azure` extension from `duckdb-extension-azure`): DuckDB downloads nothing.
Per table: both readers see the same rows and the same columns; the log's per-file row counts
add up to them; the protocol is minReaderVersion 1 / minWriterVersion 2; no column is a
timestamp without time zone (TIMESTAMP_NTZ: Fabric's SQL endpoint cannot read it).

Run manifests (ops/runs/<pipeline>/date=YYYY-MM-DD/<run>.json) against the lake:
  - each adds up: records_in = silver + quarantined + duplicates_dropped, and its silver outputs
    in the record-level table hold counts.silver rows;
  - bronze and quarantine outputs exist with the bytes and rows they name; quarantine lines are
    records with their reasons; a Parquet bronze part holds every record in;
  - a silver output names a data file of a Delta table. Compaction rewrites data files and
    VACUUM deletes the old ones, so a silver output's file NEED NOT EXIST ANY MORE; if it is
    still there it has the bytes and rows the manifest names. Rows are checked in the tables:
  - silver/events/watch holds the sum of counts.silver over the watch_events manifests, and no
    event_id twice (in either reader);
  - the other append tables (TMDB list entries, movie details) hold the rows their manifests'
    silver outputs name;
  - file tables (imdb/*, movies_dataset/*; a re-ingest replaces its snapshot_date partition):
    each snapshot_date partition holds the rows the latest manifest writing it names;
  - a table version a manifest records (`tables`) is not newer than the table.
All of this holds as well after `movielake maintain` (compaction, VACUUM): check again then.

Content: column types, the contracts' rules holding, no duplicate keys, both readers agreeing on
values, gold equal to DuckDB's aggregates of silver, each IMDb TSV (read by DuckDB itself) equal
to the latest snapshot of its silver table. Exits non-zero with a list of what failed.
"""
import csv
import gzip
import io
import json
import os
import pathlib
import re
import sys
import urllib.parse
from collections import defaultdict

import deltalake
import duckdb
import duckdb_extension_azure
import duckdb_extension_delta
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable

# Azurite's published development account key (in Azurite's documentation; not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

# Tables whose partition a re-ingest replaces (one snapshot per snapshot_date); all other
# silver tables the manifests name are appended to.
SNAPSHOT_SOURCES = ("silver/imdb/", "silver/movies_dataset/")
# The table a pipeline's record counts (counts.silver) are about: file pipelines write child
# tables too (genres, companies, ...), and TMDB list pages also feed silver/tmdb/movies.
RECORD_TABLE = {
    "watch_events": "silver/events/watch/",
    "movies_dataset": "silver/movies_dataset/movies/",
    "tmdb_list_entries": "silver/tmdb/list_entries/",
    "tmdb_movie_details": "silver/tmdb/movie_details/",
}
# Tables no manifest names rows for: the latest attributes of each TMDB movie, merged in place.
MERGED = {"silver/tmdb/movies"}
# The SQL source's tables (change log, deletes, history, current): checked by check_sql.
SQL_SOURCE = "silver/sql/"
# Keys no row may repeat, in either reader.
KEYS = {
    "silver/events/watch": ["event_id"],
    "silver/tmdb/movies": ["movie_id"],
    "silver/movies_dataset/movies": ["snapshot_date", "id"],
}

failures = []


def check(ok, message):
    if not ok:
        failures.append(message)


def extension(package, name: str) -> str:
    path = pathlib.Path(package.__file__).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        sys.exit(f"check_lake: {path} is missing: duckdb and duckdb-extension-{name} must have the same version "
                 f"(tests/requirements.txt)")
    return str(path)


class Lake:
    """A lake folder or an Azurite account: its files through a pyarrow file system, its tables
    through deltalake and DuckDB."""

    def __init__(self, location: str):
        url = urllib.parse.urlsplit(location)
        self.duckdb_setup = []
        if url.scheme in ("http", "https"):
            account = url.path.strip("/").split("/")[0]
            key = os.environ.get("MOVIELAKE_TEST_AZURITE_KEY", AZURITE_KEY)
            self.fs = pafs.AzureFileSystem(
                account_name=account, account_key=key,
                blob_storage_authority=url.netloc, blob_storage_scheme=url.scheme,
                dfs_storage_authority=url.netloc, dfs_storage_scheme=url.scheme)
            self.base = ""  # container/blob
            self.storage_options = {"account_name": account, "account_key": key,
                                    "endpoint": f"{url.scheme}://{url.netloc}/{account}",
                                    "allow_http": str(url.scheme == "http").lower()}
            self.uri = lambda table: f"az://{table}"
            # delta-kernel-rs (in DuckDB's delta extension) treats devstoreaccount1 as the emulator
            # and takes its address from this variable (object_store's), not from the secret.
            os.environ["AZURITE_BLOB_STORAGE_URL"] = f"{url.scheme}://{url.netloc}"
            connection = (f"DefaultEndpointsProtocol={url.scheme};AccountName={account};AccountKey={key};"
                          f"BlobEndpoint={url.scheme}://{url.netloc}/{account};")
            self.duckdb_setup = [f"LOAD '{extension(duckdb_extension_azure, 'azure')}'",
                                 f"CREATE SECRET lake (TYPE azure, CONNECTION_STRING '{connection}')"]
        else:
            root = pathlib.Path(url.path if url.scheme == "file" else location).resolve()
            if not root.is_dir():
                sys.exit(f"check_lake: no lake folder at {root}")
            self.fs = pafs.LocalFileSystem()
            self.base = f"{root}/"
            self.storage_options = None
            self.uri = lambda table: f"{root}/{table}"
        self.duckdb_setup.append(f"LOAD '{extension(duckdb_extension_delta, 'delta')}'")

    def files(self, prefix: str) -> dict:
        """Every file under `prefix` (a folder), path relative to the lake → size."""
        selector = pafs.FileSelector(self.base + prefix.rstrip("/"), recursive=True, allow_not_found=True)
        return {i.path[len(self.base):]: i.size for i in self.fs.get_file_info(selector)
                if i.type == pafs.FileType.File}

    def folders(self, prefix: str) -> list:
        selector = pafs.FileSelector(self.base + prefix.rstrip("/"), allow_not_found=True)
        return sorted(i.base_name for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.Directory)

    def size(self, path: str):
        info = self.fs.get_file_info(self.base + path)
        return info.size if info.type == pafs.FileType.File else None

    def read(self, path: str) -> bytes:
        """The object's bytes as stored (pyarrow would gunzip a `.gz` name by default)."""
        with self.fs.open_input_stream(self.base + path, compression=None) as f:
            return f.read()

    def parquet_rows(self, path: str) -> int:
        with self.fs.open_input_file(self.base + path) as f:
            return pq.ParquetFile(f).metadata.num_rows

    def table(self, name: str) -> DeltaTable:
        return DeltaTable(self.uri(name), storage_options=self.storage_options)

    def duckdb(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
        for statement in self.duckdb_setup:
            con.execute(statement)
        return con


def table_of(path: str) -> str:
    """`silver/<source>/<table>/…` → `silver/<source>/<table>`; `gold/<model>/…` → `gold/<model>`."""
    parts = path.split("/")
    return "/".join(parts[:3] if parts[0] == "silver" else parts[:2])


def snapshot_of(path: str):
    return next((seg.split("=", 1)[1] for seg in path.split("/") if seg.startswith("snapshot_date=")), None)


def finished(m: dict):
    """Orders manifests by when they finished (RFC 3339, UTC, any number of fraction digits)."""
    stamp = (m.get("finished_at") or m.get("started_at") or "").rstrip("Z")
    head, _, fraction = stamp.partition(".")
    return head, fraction.ljust(9, "0"), m.get("run_id", "")


def ntz_columns(node, path=""):
    """Columns of a Delta schema (its JSON) whose type is, or holds, timestamp_ntz."""
    out = []
    if isinstance(node, str):
        return [path or "?"] if node == "timestamp_ntz" else []
    if isinstance(node, dict):
        if "name" in node and "type" in node:
            return ntz_columns(node["type"], f"{path}.{node['name']}" if path else node["name"])
        for k, v in node.items():
            if k in ("type", "fields", "elementType", "keyType", "valueType"):
                out += ntz_columns(v, path)
    elif isinstance(node, list):
        for v in node:
            out += ntz_columns(v, path)
    return out


class Table:
    """One Delta table as both readers see it: `arrow` (deltalake + pyarrow), and the DuckDB view
    named after the table (`"silver/events/watch"`)."""

    def __init__(self, lake: Lake, con, name: str):
        self.name = name
        self.dt = lake.table(name)
        self.version = self.dt.version()
        protocol = self.dt.protocol()
        check((protocol.min_reader_version, protocol.min_writer_version) == (1, 2),
              f"{name}: protocol reader {protocol.min_reader_version} / writer {protocol.min_writer_version}, "
              f"want 1 / 2 (features: {protocol.reader_features} / {protocol.writer_features})")
        ntz = ntz_columns(json.loads(self.dt.schema().to_json()))
        check(not ntz, f"{name}: timestamp without time zone (timestamp_ntz) in {ntz}")
        self.arrow = self.dt.to_pyarrow_table()
        con.execute(f"CREATE VIEW \"{name}\" AS SELECT * FROM delta_scan('{lake.uri(name)}')")
        self.rows = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
        check(self.arrow.num_rows == self.rows,
              f"{name}: deltalake/pyarrow reads {self.arrow.num_rows} rows, DuckDB delta_scan {self.rows}")
        self.types = dict(con.execute(f'SELECT column_name, column_type FROM (DESCRIBE "{name}")').fetchall())
        check(set(self.types) == set(self.arrow.column_names),
              f"{name}: DuckDB sees columns {sorted(self.types)}, deltalake {sorted(self.arrow.column_names)}")
        naive = [c for c, t in self.types.items() if re.search(r"TIMESTAMP(?! WITH TIME ZONE)", t)]
        check(not naive, f"{name}: DuckDB reads {naive} as timestamps without time zone")
        added = pa.table(self.dt.get_add_actions(flatten=True)).column("num_records").to_pylist()
        if added and None not in added:
            check(sum(added) == self.rows, f"{name}: the log's numRecords add up to {sum(added)}, readers see {self.rows}")

    def by_snapshot(self, con) -> tuple:
        duck = dict(con.execute(f'SELECT CAST(snapshot_date AS VARCHAR), count(*) FROM "{self.name}" GROUP BY 1').fetchall())
        grouped = self.arrow.group_by("snapshot_date").aggregate([([], "count_all")]).to_pylist()
        arrow = {str(r["snapshot_date"]): r["count_all"] for r in grouped}
        return duck, arrow


def main(lake: Lake, imdb_sources: pathlib.Path | None = None) -> int:
    con = lake.duckdb()

    names = [f"silver/{s}/{t}" for s in lake.folders("silver") for t in lake.folders(f"silver/{s}")]
    names += [f"gold/{m}" for m in lake.folders("gold")]
    tables = {}
    for name in names:
        if not lake.files(name):
            continue  # an empty folder (a local table opened before its first commit) holds nothing
        if not any(p.endswith(".json") for p in lake.files(f"{name}/_delta_log")):
            check(False, f"{name}: not a Delta table (no _delta_log/*.json)")
            continue
        try:
            tables[name] = Table(lake, con, name)
        except Exception as e:  # a reader refusing the table is the finding
            check(False, f"{name}: {type(e).__name__}: {e}")
    check(any(n.startswith("silver/") for n in tables), "no silver Delta tables")

    manifests = []
    for path in sorted(p for p in lake.files("ops/runs") if p.endswith(".json")):
        manifests.append((path, json.loads(lake.read(path))))
    check(manifests, "no run manifests under ops/runs")
    manifests.sort(key=lambda pm: finished(pm[1]))

    totals = {"records_in": 0, "silver": 0, "quarantined": 0, "duplicates_dropped": 0}
    watch_silver = 0
    appended = defaultdict(int)  # table → rows all manifests append to it
    snapshots = {}  # (table, snapshot_date) → (manifest, rows) of the latest manifest writing it
    for path, m in manifests:
        c = m["counts"]
        for k in totals:
            totals[k] += c[k]
        watch_silver += c["silver"] if m["pipeline"] == "watch_events" else 0
        check(c["records_in"] == c["silver"] + c["quarantined"] + c["duplicates_dropped"],
              f"{path}: counts do not add up: {c}")
        record_table = RECORD_TABLE.get(m["pipeline"], "silver/")
        silver_rows = 0
        snapshot_rows = defaultdict(int)
        for out in m["outputs"]:
            size = lake.size(out["path"])
            if out["kind"] == "silver":
                table = table_of(out["path"])
                check(table in tables, f"{path}: output {out['path']} is not in a Delta table")
                silver_rows += out["rows"] if out["path"].startswith(record_table) else 0
                if out["path"].startswith(SNAPSHOT_SOURCES):
                    snapshot_rows[(table, snapshot_of(out["path"]))] += out["rows"]
                else:
                    appended[table] += out["rows"]
                if size is None:
                    continue  # compacted away and vacuumed: the table's rows are checked below
                check(size == out["bytes"], f"{out['path']}: {size} bytes, manifest says {out['bytes']}")
                rows = lake.parquet_rows(out["path"])
                check(rows == out["rows"], f"{out['path']}: pyarrow reads {rows} rows, manifest says {out['rows']}")
                continue
            check(size is not None, f"{path}: output {out['path']} is missing")
            if size is None:
                continue
            check(size == out["bytes"], f"{out['path']}: {size} bytes, manifest says {out['bytes']}")
            if out["kind"] == "bronze" and out["path"].endswith(".csv.gz"):
                # SQL pulls: gzipped CSV with a header, read by Python's own csv module, and a
                # sidecar that agrees with it.
                text = gzip.decompress(lake.read(out["path"])).decode()
                rows = list(csv.DictReader(io.StringIO(text, newline="")))
                check(len(rows) == out["rows"] == c["records_in"],
                      f"{out['path']}: {len(rows)} rows, manifest says {out['rows']}, records_in {c['records_in']}")
                sidecar = json.loads(lake.read(out["path"].rsplit("/", 1)[0] + "/_extract.json"))
                check(sidecar["rows"] == len(rows) and sidecar["csv_bytes"] == len(text.encode()),
                      f"{out['path']}: the sidecar says {sidecar['rows']} rows, {sidecar['csv_bytes']} bytes")
                check(not any(w in json.dumps(sidecar).lower() for w in ("password", "postgresql://")),
                      f"{out['path']}: the sidecar must not hold credentials")
            elif out["kind"] == "bronze" and not out["path"].endswith(".parquet"):
                json.loads(lake.read(out["path"]))  # a TMDB page lands verbatim: still JSON
            elif out["kind"] == "bronze":
                rows = lake.parquet_rows(out["path"])
                check(rows == out["rows"], f"{out['path']}: pyarrow reads {rows} rows, manifest says {out['rows']}")
                check(rows == c["records_in"], f"{out['path']}: bronze has {rows} rows for {c['records_in']} records")
            elif out["kind"] == "quarantine":
                lines = [json.loads(line) for line in lake.read(out["path"]).decode().splitlines()]
                check(len(lines) == out["rows"], f"{out['path']}: {len(lines)} lines, manifest says {out['rows']}")
                for q in lines:
                    missing = {"dataset", "contract_version", "stage", "reasons", "source", "run_id", "time", "raw"} - q.keys()
                    check(not missing, f"{out['path']}: quarantine record lacks {missing}")
                    check(q.get("reasons") and all({"rule", "detail"} <= r.keys() for r in q["reasons"]),
                          f"{out['path']}: a quarantine record without reasons")
        # A SQL pull's rows go in by MERGE: its manifest names the commits (`tables`), not
        # files; check_sql holds its counts against the change log instead.
        if m["pipeline"] != "sql_pull":
            check(silver_rows == c["silver"],
                  f"{path}: silver outputs name {silver_rows} rows, counts.silver is {c['silver']}")
        for key, rows in snapshot_rows.items():
            snapshots[key] = (path, rows)  # a later ingest of the same snapshot replaces it
        for table, version in (m.get("tables") or {}).items():
            check(table in tables, f"{path}: records a commit to {table}, which is not a Delta table")
            if table in tables and version is not None:
                check(version <= tables[table].version,
                      f"{path}: committed {table} version {version}, the table is at {tables[table].version}")

    # Rows of each silver table against the manifests.
    for name, t in tables.items():
        if not name.startswith("silver/") or name in MERGED or name.startswith(SQL_SOURCE):
            continue
        if name.startswith(SNAPSHOT_SOURCES):
            want = {date: rows for (table, date), (_, rows) in snapshots.items() if table == name}
            check(want, f"{name}: no manifest names rows for it")
            duck, arrow = t.by_snapshot(con)
            for date in sorted(set(want) | set(duck) | set(arrow)):
                source = next((p for (tb, d), (p, _) in snapshots.items() if (tb, d) == (name, date)), "no manifest")
                check(duck.get(date, 0) == want.get(date, 0) == arrow.get(date, 0),
                      f"{name} snapshot_date={date}: DuckDB {duck.get(date, 0)} rows, deltalake {arrow.get(date, 0)}, "
                      f"latest manifest ({source}) {want.get(date, 0)}")
        else:
            check(name in appended, f"{name}: no manifest names rows for it")
            check(t.rows == appended.get(name, 0),
                  f"{name}: the readers see {t.rows} rows, the manifests' silver outputs name {appended.get(name, 0)}")
    for name, cols in KEYS.items():
        if name in tables:
            t = tables[name]
            keys = ", ".join(f'"{c}"' for c in cols)
            repeated = con.execute(f'SELECT count(*) - count(DISTINCT ({keys})) FROM "{name}"').fetchone()[0]
            check(repeated == 0, f"{name}: DuckDB sees {repeated} repeated ({keys})")
            distinct = t.arrow.group_by(cols).aggregate([]).num_rows
            check(distinct == t.arrow.num_rows,
                  f"{name}: deltalake/pyarrow sees {t.arrow.num_rows - distinct} repeated ({keys})")

    if "silver/events/watch" in tables:
        check_watch(con, tables["silver/events/watch"], watch_silver, tables)
    check_tmdb(con, tables)
    check_sql(con, tables, manifests)
    check_movies_dataset_and_gold(con, tables)
    if imdb_sources:
        check_imdb(con, tables, imdb_sources)

    print(f"check_lake: {len(manifests)} manifests; in={totals['records_in']} silver={totals['silver']} "
          f"quarantined={totals['quarantined']} duplicates={totals['duplicates_dropped']}; "
          f"{len(tables)} Delta tables read by deltalake {deltalake.__version__} and DuckDB {duckdb.__version__} "
          f"delta_scan: " + ", ".join(f"{n} {t.rows}" for n, t in tables.items()))
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    return 1 if failures else 0


def check_sql(con, tables: dict, manifests: list):
    """The SQL source: every version the pulls counted is in the change log once; each key's
    history intervals never overlap and at most the last is open; the current table has one
    row per key, flagged deleted exactly when the key's history has no open interval."""
    for table, key in (("users", "user_id"), ("subscriptions", "subscription_id")):
        changes, history, current = (f"silver/sql/{table}_changes", f"silver/sql/{table}_history",
                                     f"silver/sql/{table}")
        counted = sum(m["counts"]["silver"] for _, m in manifests
                      if m["pipeline"] == "sql_pull" and any(i.endswith(f"/{table}") for i in m["inputs"]))
        if changes not in tables:
            check(counted == 0, f"{changes}: missing, but the manifests count {counted} rows for it")
            continue
        check(tables[changes].rows == counted,
              f"{changes}: readers see {tables[changes].rows} versions, the sql_pull manifests count {counted}")
        repeated = con.execute(f'SELECT count(*) - count(DISTINCT ("{key}", updated_at)) FROM "{changes}"').fetchone()[0]
        check(repeated == 0, f"{changes}: {repeated} repeated ({key}, updated_at)")
        check(history in tables and current in tables, f"{table}: history or current table missing")
        if history not in tables or current not in tables:
            continue
        overlaps = con.execute(
            f'SELECT count(*) FROM "{history}" a JOIN "{history}" b ON a."{key}" = b."{key}" '
            f"AND a.valid_from < b.valid_from WHERE a.valid_to IS NULL OR a.valid_to > b.valid_from").fetchone()[0]
        check(overlaps == 0, f"{history}: {overlaps} overlapping intervals (DuckDB)")
        bad = con.execute(f'SELECT count(*) FROM "{history}" WHERE is_current <> (valid_to IS NULL) '
                          "OR valid_to <= valid_from").fetchone()[0]
        check(bad == 0, f"{history}: {bad} rows with is_current not matching valid_to, or empty intervals")
        keys = con.execute(f'SELECT count(DISTINCT "{key}") FROM "{changes}"').fetchone()[0]
        check(tables[current].rows == keys,
              f"{current}: {tables[current].rows} rows for {keys} keys in the change log")
        mismatched = con.execute(
            f'SELECT count(*) FROM "{current}" c LEFT JOIN (SELECT "{key}" AS k FROM "{history}" WHERE is_current) h '
            f'ON c."{key}" = h.k WHERE c.is_deleted = (h.k IS NOT NULL)').fetchone()[0]
        check(mismatched == 0, f"{current}: {mismatched} keys whose is_deleted disagrees with the history")
        arrow_open = tables[history].arrow.filter(pa.compute.field("is_current")).num_rows
        duck_open = con.execute(f'SELECT count(*) FROM "{history}" WHERE is_current').fetchone()[0]
        check(arrow_open == duck_open, f"{history}: open intervals: deltalake {arrow_open}, DuckDB {duck_open}")


def check_watch(con, t: Table, manifests_silver: int, tables: dict):
    name = t.name
    check(t.rows == manifests_silver,
          f"{name}: the readers see {t.rows} rows, the watch_events manifests' counts.silver add up to {manifests_silver}")
    expected = {"event_id": "VARCHAR", "movie_id": "BIGINT", "occurred_at": "TIMESTAMP WITH TIME ZONE",
                "position_seconds": "BIGINT", "event_date": "DATE", "_ingested_at": "TIMESTAMP WITH TIME ZONE",
                "_run_id": "VARCHAR", "_source_object": "VARCHAR", "_rescued": "VARCHAR"}
    for col, ty in expected.items():
        check(t.types.get(col) == ty, f"DuckDB sees watch {col} as {t.types.get(col)}, expected {ty}")
    bad_pos, bad_country, null_ids, wrong_hour = con.execute(f"""
        SELECT count(*) FILTER (WHERE position_seconds > duration_seconds),
               count(*) FILTER (WHERE NOT regexp_matches(country, '^[A-Z]{{2}}$')),
               count(*) FILTER (WHERE event_id IS NULL),
               count(*) FILTER (WHERE hour(occurred_at AT TIME ZONE 'UTC') <> hour
                                 OR CAST(occurred_at AT TIME ZONE 'UTC' AS DATE) <> event_date)
        FROM "{name}" """).fetchone()
    check(bad_pos == 0, f"{bad_pos} silver rows break position <= duration")
    check(bad_country == 0, f"{bad_country} silver rows have a bad country")
    check(null_ids == 0, f"{null_ids} silver rows without event_id")
    check(wrong_hour == 0, f"{wrong_hour} silver rows sit in the wrong event-time partition")
    # The readers agree on the values, not only the counts.
    pa_sum = sum(v for v in t.arrow.column("position_seconds").to_pylist() if v is not None)
    db_sum = con.execute(f'SELECT coalesce(sum(position_seconds), 0) FROM "{name}"').fetchone()[0]
    check(pa_sum == db_sum, f"sum(position_seconds): deltalake/pyarrow {pa_sum}, DuckDB {db_sum}")
    check(all(v is not None and re.fullmatch(r"[0-9a-f-]{36}", v) for v in t.arrow.column("event_id").to_pylist()),
          "an event_id in silver is not a UUID")
    check_enriched(con, t, tables)


def check_enriched(con, t: Table, tables: dict):
    """Issue 17: every event carries the dimension as of its time. DuckDB checks each matched
    event against the SCD2 history itself: the version it names exists, contains occurred_at,
    and has the plan and status the event carries."""
    name = t.name
    for col, ty in {"subscription_id": "VARCHAR", "plan": "VARCHAR", "subscription_status": "VARCHAR",
                    "user_country": "VARCHAR", "dimension_valid_from": "TIMESTAMP WITH TIME ZONE",
                    "dimension_status": "VARCHAR"}.items():
        check(t.types.get(col) == ty, f"DuckDB sees watch {col} as {t.types.get(col)}, expected {ty}")
    by_status = dict(con.execute(f'SELECT dimension_status, count(*) FROM "{name}" GROUP BY ALL').fetchall())
    pa_status = {}
    for v in t.arrow.column("dimension_status").to_pylist():
        pa_status[v] = pa_status.get(v, 0) + 1
    check(by_status == pa_status, f"{name}: dimension_status counts: DuckDB {by_status}, deltalake {pa_status}")
    check(set(by_status) <= {"matched", "no_subscription", "user_unknown"},
          f"{name}: unexpected dimension_status values {sorted(map(str, by_status))}")
    history = "silver/sql/subscriptions_history"
    if history not in tables:
        return
    check(by_status.get("matched", 0) > 0, f"{name}: no event matched a subscription: {by_status}")
    wrong = con.execute(f"""
        SELECT count(*) FROM "{name}" e
        LEFT JOIN "{history}" h
          ON h.subscription_id = e.subscription_id AND h.valid_from = e.dimension_valid_from
         AND h.user_id = e.user_id
         AND h.valid_from <= e.occurred_at AND (h.valid_to IS NULL OR e.occurred_at < h.valid_to)
         AND h.plan = e.plan AND h.status = e.subscription_status
        WHERE e.dimension_status = 'matched' AND h.subscription_id IS NULL""").fetchone()[0]
    check(wrong == 0, f"{name}: {wrong} matched events whose version is not in {history} as of occurred_at")
    print(f"  {name}: enriched {by_status}; every matched event found in {history} as of its time")
    gold = "gold/watch_by_plan_country"
    if gold in tables:
        # The gold model's totals are silver's: every event counted once, under one plan.
        g_events, g_seconds, g_matched = con.execute(
            f'SELECT sum(events), sum(watch_seconds), coalesce(sum(events) FILTER (WHERE dimension_status = \'matched\'), 0) '
            f'FROM "{gold}"').fetchone()
        s_events, s_seconds = con.execute(
            f"SELECT count(*), coalesce(sum(position_seconds) FILTER (WHERE event_type = 'watch_finished'), 0) "
            f'FROM "{name}"').fetchone()
        check((g_events, g_seconds) == (s_events, s_seconds),
              f"{gold}: {g_events} events / {g_seconds} s watched, silver has {s_events} / {s_seconds}")
        check(g_matched == by_status.get("matched", 0),
              f"{gold}: {g_matched} matched events, silver has {by_status.get('matched', 0)}")


def check_tmdb(con, tables: dict):
    if "silver/tmdb/list_entries" in tables:
        t = tables["silver/tmdb/list_entries"]
        for col, ty in {"movie_id": "BIGINT", "genre_ids": "BIGINT[]", "snapshot_date": "DATE",
                        "popularity": "DOUBLE", "release_date": "DATE"}.items():
            check(t.types.get(col) == ty, f"DuckDB sees tmdb {col} as {t.types.get(col)}, expected {ty}")
        null_ids = con.execute(f'SELECT count(*) FILTER (WHERE movie_id IS NULL) FROM "{t.name}"').fetchone()[0]
        check(t.rows > 0 and null_ids == 0, f"tmdb list entries: {t.rows} rows, {null_ids} without movie_id")
    if "silver/tmdb/movie_details" in tables:
        t = tables["silver/tmdb/movie_details"]
        for col, ty in {"movie_id": "BIGINT", "imdb_id": "VARCHAR", "budget": "BIGINT", "runtime": "INTEGER",
                        "genre_names": "VARCHAR[]", "snapshot_date": "DATE", "release_date": "DATE"}.items():
            check(t.types.get(col) == ty, f"DuckDB sees tmdb details {col} as {t.types.get(col)}, expected {ty}")
        null_ids = con.execute(f'SELECT count(*) FILTER (WHERE movie_id IS NULL) FROM "{t.name}"').fetchone()[0]
        check(t.rows > 0 and null_ids == 0, f"tmdb movie details: {t.rows} rows, {null_ids} without movie_id")
    if "silver/tmdb/movies" in tables:
        t = tables["silver/tmdb/movies"]
        check(t.rows > 0, "tmdb movies: no rows")  # unique movie_id: KEYS


def check_imdb(con, tables: dict, sources: pathlib.Path):
    """Every IMDb source file against the latest snapshot of its silver table: DuckDB reads the
    TSV itself (tab, no quoting, `\\N` null); rows and per-column non-null counts must match,
    column by column in file order."""
    csv = "delim='\t', quote='', escape='', nullstr='\\N', header=true, all_varchar=true"
    for tsv in sorted(sources.glob("*.tsv")):
        name = "silver/imdb/" + tsv.name.removesuffix(".tsv").replace(".", "_")
        check(name in tables, f"no silver Delta table for {tsv.name} at {name}")
        if name not in tables:
            continue
        t = tables[name]
        src_cols = [d[0] for d in con.execute(f"SELECT * FROM read_csv('{tsv}', {csv}) LIMIT 0").description]
        out_cols = [c for c in t.types if not c.startswith("_") and c != "snapshot_date"]
        check(len(src_cols) == len(out_cols), f"{name}: {src_cols} vs {out_cols}")
        src_counts = con.execute(
            "SELECT count(*), " + ", ".join(f'count("{c}")' for c in src_cols) + f" FROM read_csv('{tsv}', {csv})"
        ).fetchone()
        latest = f'(SELECT max(snapshot_date) FROM "{name}")'
        out_counts = con.execute(
            "SELECT count(*), " + ", ".join(f'count("{c}")' for c in out_cols)
            + f' FROM "{name}" WHERE snapshot_date = {latest}'
        ).fetchone()
        check(src_counts == out_counts, f"{name}: TSV (rows, non-nulls) {src_counts}, latest silver snapshot {out_counts}")
        dates = t.arrow.column("snapshot_date").to_pylist()
        pa_rows = dates.count(max(dates)) if dates else 0
        check(pa_rows == src_counts[0], f"{name}: deltalake/pyarrow reads {pa_rows} rows, the TSV has {src_counts[0]}")


def check_movies_dataset_and_gold(con, tables: dict):
    """Silver of The Movies Dataset is typed and clean; gold (read by deltalake) equals the same
    aggregates computed by DuckDB straight from silver."""
    if "silver/movies_dataset/movies" not in tables:
        return
    for table in ("movie_genres", "movie_production_companies"):
        check(f"silver/movies_dataset/{table}" in tables, f"silver/movies_dataset/{table} is not a Delta table")
        if f"silver/movies_dataset/{table}" not in tables:
            return
    types = tables["silver/movies_dataset/movies"].types
    for col, ty in {"id": "BIGINT", "budget": "BIGINT", "revenue": "BIGINT", "release_date": "DATE",
                    "release_year": "INTEGER", "adult": "BOOLEAN", "popularity": "DOUBLE",
                    "budget_unknown": "BOOLEAN", "snapshot_date": "DATE"}.items():
        check(types.get(col) == ty, f"DuckDB sees movies {col} as {types.get(col)}, expected {ty}")
    movies, genres, companies = ('"silver/movies_dataset/movies"', '"silver/movies_dataset/movie_genres"',
                                 '"silver/movies_dataset/movie_production_companies"')
    n, zero, unknown_mismatch = con.execute(f"""
        SELECT count(*),
               count(*) FILTER (WHERE budget = 0 OR revenue = 0),
               count(*) FILTER (WHERE (budget IS NULL) <> budget_unknown OR (revenue IS NULL) <> revenue_unknown)
        FROM {movies}""").fetchone()
    check(n > 0, "no movies in silver")
    check(zero == 0, f"{zero} movies with a 0 budget/revenue in silver (unknown must be NULL)")
    check(unknown_mismatch == 0, f"{unknown_mismatch} movies whose *_unknown flag disagrees with a NULL")

    latest = f"(SELECT max(snapshot_date) FROM {movies})"
    expected_genre = {(g, y): rest for g, y, *rest in con.execute(f"""
        SELECT g.genre_name, m.release_year, count(*), sum(m.budget), sum(m.revenue), sum(m.revenue - m.budget),
               avg(m.popularity)
        FROM {genres} g JOIN {movies} m ON m.id = g.movie_id AND m.snapshot_date = g.snapshot_date
        WHERE m.snapshot_date = {latest} AND m.release_year IS NOT NULL
        GROUP BY ALL""").fetchall()}
    check("gold/genre_year" in tables, "gold/genre_year is not a Delta table")
    if "gold/genre_year" in tables:
        rows = tables["gold/genre_year"].arrow.to_pylist()
        got = {(r["genre"], r["year"]): [r["releases"], r["total_budget"], r["total_revenue"], r["profit"],
                                         r["avg_popularity"]] for r in rows}
        check(got.keys() == expected_genre.keys(), "gold genre_year has other (genre, year) groups than silver")
        for key, want in expected_genre.items():
            have = got.get(key)
            same = have is not None and have[:4] == want[:4] and abs(have[4] - want[4]) < 1e-9
            check(same, f"gold genre_year {key}: {have}, DuckDB from silver: {want}")
        for year in {r["year"] for r in rows}:
            year_rows = [r for r in rows if r["year"] == year]
            top = max(r["avg_popularity"] for r in year_rows)
            check(all(r["most_popular"] == (r["avg_popularity"] == top) for r in year_rows),
                  f"gold genre_year {year}: most_popular does not mark the top average popularity")

    expected_company = {(c, y): rest for c, y, *rest in con.execute(f"""
        SELECT c.company_id, m.release_year, count(*), sum(m.budget), sum(m.revenue), sum(m.revenue - m.budget)
        FROM {companies} c JOIN {movies} m ON m.id = c.movie_id AND m.snapshot_date = c.snapshot_date
        WHERE m.snapshot_date = {latest} AND m.release_year IS NOT NULL
        GROUP BY ALL""").fetchall()}
    check("gold/company_year" in tables, "gold/company_year is not a Delta table")
    if "gold/company_year" in tables:
        got = {(r["company_id"], r["year"]): [r["releases"], r["total_budget"], r["total_revenue"], r["profit"]]
               for r in tables["gold/company_year"].arrow.to_pylist()}
        check(got == expected_company, "gold company_year differs from DuckDB's aggregate of silver")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: check_lake.py <lake folder or Azurite URL> [<folder of the IMDb .tsv files ingested into it>]")
    sys.exit(main(Lake(sys.argv[1]), pathlib.Path(sys.argv[2]) if len(sys.argv) == 3 else None))
