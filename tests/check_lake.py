#!/usr/bin/env python3
"""End-to-end check of a local lake written by `movielake run`, with readers that are not ours.

Every run manifest in ops/runs is checked against the objects it names: silver Parquet is read
by pyarrow and by DuckDB (row counts, types, rules holding, no duplicate keys), quarantine lines
are parsed, bronze keeps every record, and `in = silver + quarantined + duplicates` holds.
Exits non-zero with a list of what failed.
"""
import json
import pathlib
import re
import sys

import duckdb
import pyarrow.parquet as pq

failures = []


def check(ok, message):
    if not ok:
        failures.append(message)


def main(root: pathlib.Path, imdb_sources: pathlib.Path | None = None) -> int:
    manifests = sorted((root / "ops" / "runs").rglob("*.json"))
    check(manifests, f"no run manifests under {root}/ops/runs")
    totals = {"records_in": 0, "silver": 0, "quarantined": 0, "duplicates_dropped": 0}
    watch_silver = [0]
    for path in manifests:
        m = json.loads(path.read_text())
        c = m["counts"]
        for k in totals:
            totals[k] += c[k]
        watch_silver[0] += c["silver"] if m["pipeline"] == "watch_events" else 0
        check(c["records_in"] == c["silver"] + c["quarantined"] + c["duplicates_dropped"],
              f"{path}: counts do not add up: {c}")
        silver_rows = 0
        # File pipelines write child tables too (genres, companies, ...): the record counts are
        # those of the record-level table.
        record_table = {"movies_dataset": "silver/movies_dataset/movies/"}.get(m["pipeline"], "silver/")
        for out in m["outputs"]:
            obj = root / out["path"]
            check(obj.is_file(), f"{path}: output {out['path']} is missing")
            if not obj.is_file():
                continue
            check(obj.stat().st_size == out["bytes"], f"{out['path']}: size differs from the manifest")
            if out["kind"] == "bronze" and not out["path"].endswith(".parquet"):
                json.loads(obj.read_bytes())  # a TMDB page lands verbatim: still JSON
            elif out["kind"] in ("silver", "bronze"):
                rows = pq.read_metadata(obj).num_rows
                check(rows == out["rows"], f"{out['path']}: pyarrow reads {rows} rows, manifest says {out['rows']}")
                if out["kind"] == "silver":
                    silver_rows += rows if out["path"].startswith(record_table) else 0
                else:
                    check(rows == c["records_in"], f"{out['path']}: bronze has {rows} rows for {c['records_in']} records")
            elif out["kind"] == "quarantine":
                lines = [json.loads(l) for l in obj.read_text().splitlines()]
                check(len(lines) == out["rows"], f"{out['path']}: {len(lines)} lines, manifest says {out['rows']}")
                for q in lines:
                    missing = {"dataset", "contract_version", "stage", "reasons", "source", "run_id", "time", "raw"} - q.keys()
                    check(not missing, f"{out['path']}: quarantine record lacks {missing}")
                    check(q["reasons"] and all({"rule", "detail"} <= r.keys() for r in q["reasons"]),
                          f"{out['path']}: a quarantine record without reasons")
        check(silver_rows == c["silver"], f"{path}: silver files hold {silver_rows} rows, manifest says {c['silver']}")

    silver = root / "silver" / "events" / "watch"
    if silver.is_dir():
        glob = str(silver / "**" / "*.parquet")
        con = duckdb.connect()
        con.execute(f"CREATE VIEW watch AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true)")
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE watch)").fetchall())
        expected = {"event_id": "VARCHAR", "movie_id": "BIGINT", "occurred_at": "TIMESTAMP WITH TIME ZONE",
                    "position_seconds": "BIGINT", "event_date": "DATE", "_ingested_at": "TIMESTAMP WITH TIME ZONE",
                    "_run_id": "VARCHAR", "_source_object": "VARCHAR", "_rescued": "VARCHAR"}
        for col, ty in expected.items():
            check(types.get(col) == ty, f"DuckDB sees {col} as {types.get(col)}, expected {ty}")
        n, bad_pos, bad_country, null_ids, wrong_hour = con.execute("""
            SELECT count(*),
                   count(*) FILTER (WHERE position_seconds > duration_seconds),
                   count(*) FILTER (WHERE NOT regexp_matches(country, '^[A-Z]{2}$')),
                   count(*) FILTER (WHERE event_id IS NULL),
                   count(*) FILTER (WHERE hour(occurred_at AT TIME ZONE 'UTC') <> hour
                                     OR CAST(occurred_at AT TIME ZONE 'UTC' AS DATE) <> event_date)
            FROM watch""").fetchone()
        check(n == watch_silver[0], f"DuckDB reads {n} watch silver rows, manifests say {watch_silver[0]}")
        check(bad_pos == 0, f"{bad_pos} silver rows break position <= duration")
        check(bad_country == 0, f"{bad_country} silver rows have a bad country")
        check(null_ids == 0, f"{null_ids} silver rows without event_id")
        check(wrong_hour == 0, f"{wrong_hour} silver rows sit in the wrong event-time partition")
        dup_in_file = con.execute("""
            SELECT count(*) FROM (SELECT filename, event_id FROM read_parquet(?, filename = true)
                                  GROUP BY ALL HAVING count(*) > 1)""", [glob]).fetchone()[0]
        check(dup_in_file == 0, f"{dup_in_file} event_ids repeated within one silver part")
        repeated = con.execute("SELECT count(*) - count(DISTINCT event_id) FROM watch").fetchone()[0]
        check(repeated == 0, f"{repeated} event_ids appear more than once in silver")
        # pyarrow and DuckDB agree on the values, not only the counts.
        table = pq.read_table(str(silver), partitioning="hive")
        check(table.num_rows == n, f"pyarrow reads {table.num_rows} rows, DuckDB {n}")
        pa_sum = sum(v for v in table.column("position_seconds").to_pylist() if v is not None)
        db_sum = con.execute("SELECT coalesce(sum(position_seconds), 0) FROM watch").fetchone()[0]
        check(pa_sum == db_sum, f"sum(position_seconds): pyarrow {pa_sum}, DuckDB {db_sum}")
        check(all(re.fullmatch(r"[0-9a-f-]{36}", v) for v in table.column("event_id").to_pylist()),
              "an event_id in silver is not a UUID")

    tmdb = root / "silver" / "tmdb" / "list_entries"
    if tmdb.is_dir():
        con = duckdb.connect()
        glob = str(tmdb / "**" / "*.parquet")
        con.execute(f"CREATE VIEW entries AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true)")
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE entries)").fetchall())
        for col, ty in {"movie_id": "BIGINT", "genre_ids": "BIGINT[]", "snapshot_date": "DATE",
                        "popularity": "DOUBLE", "release_date": "DATE"}.items():
            check(types.get(col) == ty, f"DuckDB sees tmdb {col} as {types.get(col)}, expected {ty}")
        n, null_ids = con.execute("SELECT count(*), count(*) FILTER (WHERE movie_id IS NULL) FROM entries").fetchone()
        check(n > 0 and null_ids == 0, f"tmdb list entries: {n} rows, {null_ids} without movie_id")
        pa_rows = pq.read_table(str(tmdb), partitioning="hive").num_rows
        check(pa_rows == n, f"tmdb list entries: pyarrow reads {pa_rows}, DuckDB {n}")

    details = root / "silver" / "tmdb" / "movie_details"
    if details.is_dir():
        con = duckdb.connect()
        glob = str(details / "**" / "*.parquet")
        con.execute(f"CREATE VIEW details AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true)")
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE details)").fetchall())
        for col, ty in {"movie_id": "BIGINT", "imdb_id": "VARCHAR", "budget": "BIGINT", "runtime": "INTEGER",
                        "genre_names": "VARCHAR[]", "snapshot_date": "DATE", "release_date": "DATE"}.items():
            check(types.get(col) == ty, f"DuckDB sees tmdb details {col} as {types.get(col)}, expected {ty}")
        n, null_ids = con.execute("SELECT count(*), count(*) FILTER (WHERE movie_id IS NULL) FROM details").fetchone()
        check(n > 0 and null_ids == 0, f"tmdb movie details: {n} rows, {null_ids} without movie_id")
        pa_rows = pq.read_table(str(details), partitioning="hive").num_rows
        check(pa_rows == n, f"tmdb movie details: pyarrow reads {pa_rows}, DuckDB {n}")

    movies = root / "silver" / "tmdb" / "movies"
    if movies.is_dir():
        glob = str(movies / "**" / "*.parquet")
        n, distinct = duckdb.connect().execute(
            f"SELECT count(*), count(DISTINCT movie_id) FROM read_parquet('{glob}', hive_partitioning = true)").fetchone()
        check(n > 0 and n == distinct, f"tmdb movies: {n} rows, {distinct} distinct movie_id (want > 0, all unique)")
        pa_rows = pq.read_table(str(movies), partitioning="hive").num_rows
        check(pa_rows == n, f"tmdb movies: pyarrow reads {pa_rows}, DuckDB {n}")

    check_movies_dataset_and_gold(root)
    if imdb_sources:
        check_imdb(root, imdb_sources)

    print(f"check_lake: {len(manifests)} manifests; in={totals['records_in']} silver={totals['silver']} "
          f"quarantined={totals['quarantined']} duplicates={totals['duplicates_dropped']}")
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    return 1 if failures else 0


def check_imdb(root: pathlib.Path, sources: pathlib.Path):
    """Every IMDb source file against its silver table: DuckDB reads the TSV itself (tab, no
    quoting, `\\N` null) and the silver Parquet; rows and per-column non-null counts must match,
    column by column in file order."""
    con = duckdb.connect()
    for tsv in sorted(sources.glob("*.tsv")):
        table = tsv.name.removesuffix(".tsv").replace(".", "_")
        silver = root / "silver" / "imdb" / table
        check(silver.is_dir(), f"no silver for {tsv.name} at {silver}")
        if not silver.is_dir():
            continue
        src = con.execute(f"""SELECT * FROM read_csv('{tsv}', delim='\t', quote='', escape='', nullstr='\\N',
                                header=true, all_varchar=true) LIMIT 0""").description
        src_cols = [d[0] for d in src]
        out = con.execute(f"SELECT * FROM read_parquet('{silver}/**/*.parquet', hive_partitioning = true) LIMIT 0").description
        out_cols = [d[0] for d in out if not d[0].startswith("_") and d[0] != "snapshot_date"]
        check(len(src_cols) == len(out_cols), f"{table}: {src_cols} vs {out_cols}")
        src_counts = con.execute(
            "SELECT count(*), " + ", ".join(f'count("{c}")' for c in src_cols)
            + f" FROM read_csv('{tsv}', delim='\t', quote='', escape='', nullstr='\\N', header=true, all_varchar=true)"
        ).fetchone()
        out_counts = con.execute(
            "SELECT count(*), " + ", ".join(f'count("{c}")' for c in out_cols)
            + f" FROM read_parquet('{silver}/**/*.parquet', hive_partitioning = true)"
        ).fetchone()
        check(src_counts == out_counts, f"{table}: TSV (rows, non-nulls) {src_counts}, silver {out_counts}")
        pa_rows = pq.read_table(str(silver), partitioning="hive").num_rows
        check(pa_rows == src_counts[0], f"{table}: pyarrow reads {pa_rows} rows, the TSV has {src_counts[0]}")


def check_movies_dataset_and_gold(root: pathlib.Path):
    """Silver of The Movies Dataset is typed and clean; gold equals the same aggregates computed
    by DuckDB straight from silver, read back with pyarrow."""
    base = root / "silver" / "movies_dataset"
    if not (base / "movies").is_dir():
        return
    con = duckdb.connect()
    for view, table in [("movies", "movies"), ("genres", "movie_genres"), ("companies", "movie_production_companies")]:
        con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{base / table}/**/*.parquet', hive_partitioning = true)")
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE movies)").fetchall())
    for col, ty in {"id": "BIGINT", "budget": "BIGINT", "revenue": "BIGINT", "release_date": "DATE",
                    "release_year": "INTEGER", "adult": "BOOLEAN", "popularity": "DOUBLE",
                    "budget_unknown": "BOOLEAN", "snapshot_date": "DATE"}.items():
        check(types.get(col) == ty, f"DuckDB sees movies {col} as {types.get(col)}, expected {ty}")
    n, zero, unknown_mismatch, repeated = con.execute("""
        SELECT count(*),
               count(*) FILTER (WHERE budget = 0 OR revenue = 0),
               count(*) FILTER (WHERE (budget IS NULL) <> budget_unknown OR (revenue IS NULL) <> revenue_unknown),
               count(*) - count(DISTINCT (snapshot_date, id))
        FROM movies""").fetchone()
    check(n > 0, "no movies in silver")
    check(zero == 0, f"{zero} movies with a 0 budget/revenue in silver (unknown must be NULL)")
    check(unknown_mismatch == 0, f"{unknown_mismatch} movies whose *_unknown flag disagrees with a NULL")
    check(repeated == 0, f"{repeated} movie ids repeated within a snapshot")
    pa_rows = pq.read_table(str(base / "movies"), partitioning="hive").num_rows
    check(pa_rows == n, f"movies: pyarrow reads {pa_rows}, DuckDB {n}")

    latest = "(SELECT max(snapshot_date) FROM movies)"
    expected_genre = {(g, y): rest for g, y, *rest in con.execute(f"""
        SELECT g.genre_name, m.release_year, count(*), sum(m.budget), sum(m.revenue), sum(m.revenue - m.budget),
               avg(m.popularity)
        FROM genres g JOIN movies m ON m.id = g.movie_id AND m.snapshot_date = g.snapshot_date
        WHERE m.snapshot_date = {latest} AND m.release_year IS NOT NULL
        GROUP BY ALL""").fetchall()}
    gold = root / "gold" / "genre_year" / "part-00000.parquet"
    check(gold.is_file(), "gold/genre_year was not built")
    if gold.is_file():
        rows = pq.read_table(gold).to_pylist()
        got = {(r["genre"], r["year"]): [r["releases"], r["total_budget"], r["total_revenue"], r["profit"],
                                         r["avg_popularity"]] for r in rows}
        check(got.keys() == expected_genre.keys(), "gold genre_year has other (genre, year) groups than silver")
        for key, want in expected_genre.items():
            have = got.get(key)
            same = have is not None and have[:4] == want[:4] and abs(have[4] - want[4]) < 1e-9
            check(same, f"gold genre_year {key}: {have}, DuckDB from silver: {want}")
        for year in {y for _, y in expected_genre}:
            year_rows = [r for r in rows if r["year"] == year]
            top = max(r["avg_popularity"] for r in year_rows)
            check(all(r["most_popular"] == (r["avg_popularity"] == top) for r in year_rows),
                  f"gold genre_year {year}: most_popular does not mark the top average popularity")

    expected_company = {(c, y): rest for c, y, *rest in con.execute(f"""
        SELECT c.company_id, m.release_year, count(*), sum(m.budget), sum(m.revenue), sum(m.revenue - m.budget)
        FROM companies c JOIN movies m ON m.id = c.movie_id AND m.snapshot_date = c.snapshot_date
        WHERE m.snapshot_date = {latest} AND m.release_year IS NOT NULL
        GROUP BY ALL""").fetchall()}
    gold = root / "gold" / "company_year" / "part-00000.parquet"
    check(gold.is_file(), "gold/company_year was not built")
    if gold.is_file():
        got = {(r["company_id"], r["year"]): [r["releases"], r["total_budget"], r["total_revenue"], r["profit"]]
               for r in pq.read_table(gold).to_pylist()}
        check(got == expected_company, "gold company_year differs from DuckDB's aggregate of silver")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: check_lake.py <lake folder> [<folder of the IMDb .tsv files ingested into it>]")
    sys.exit(main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]) if len(sys.argv) == 3 else None))
