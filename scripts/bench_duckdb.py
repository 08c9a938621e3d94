#!/usr/bin/env python3
"""DuckDB's side of `movielake bench events`: the same events as JSON lines, read with explicit
columns and written to zstd Parquet, once single-threaded and once with every core.
Prints one JSON object: {"rows": n, "threads1_s": t, "default_s": t, "default_threads": k}."""
import json
import sys
import tempfile
import time

import duckdb

COLUMNS = ("{event_id: 'VARCHAR', event_type: 'VARCHAR', user_id: 'VARCHAR', session_id: 'VARCHAR', "
           "movie_id: 'BIGINT', occurred_at: 'TIMESTAMPTZ', device: 'VARCHAR', country: 'VARCHAR', "
           "position_seconds: 'BIGINT', duration_seconds: 'BIGINT'}")


def run(path: str, threads: int | None) -> tuple[float, int, int]:
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    used = con.execute("SELECT current_setting('threads')").fetchone()[0]
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        con.execute(f"""COPY (SELECT * FROM read_json('{path}', format = 'newline_delimited',
                              columns = {COLUMNS}, ignore_errors = true))
                        TO '{out}/events.parquet' (FORMAT parquet, COMPRESSION zstd)""")
        elapsed = time.perf_counter() - start
        rows = con.execute(f"SELECT count(*) FROM '{out}/events.parquet'").fetchone()[0]
    return elapsed, rows, used


if __name__ == "__main__":
    events = sys.argv[1]
    t1, rows, _ = run(events, 1)
    td, _, used = run(events, None)
    print(json.dumps({"rows": rows, "threads1_s": t1, "default_s": td, "default_threads": used}))
