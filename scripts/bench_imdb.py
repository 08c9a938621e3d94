#!/usr/bin/env python3
"""IMDb title.basics → Parquet: movielake beside DuckDB, polars streaming and pyarrow, one run.

    .venv/bin/python scripts/bench_imdb.py [--rows 10000000] [--workdir /tmp/movielake-bench-imdb]

Generates a synthetic title.basics.tsv with the real file's shape (movielake's own generator:
titles starting with `"`, titles that are literally NA / None / null), converts it with each tool
in its own process, and reports wall time, CPU time (user + system) and peak resident memory
(ru_maxrss of that process, from wait4). Every tool is configured to read the file correctly
(tab, no quoting, `\\N` the only null), and the outputs are read back with DuckDB: row counts and
per-column null counts must be equal, or the run fails. Needs polars, duckdb and pyarrow in the
Python running it (`pip install -r scripts/bench-requirements.txt`).
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
COLUMNS = ["tconst", "titleType", "primaryTitle", "originalTitle", "isAdult", "startYear", "endYear",
           "runtimeMinutes", "genres"]
# movielake's silver names for the same columns (contracts/imdb_title_basics.toml).
OURS = ["tconst", "title_type", "primary_title", "original_title", "is_adult", "start_year", "end_year",
        "runtime_minutes", "genres"]

DUCKDB = """
import duckdb, sys
con = duckdb.connect()
con.execute("SET threads = {threads}")
con.execute('''COPY (SELECT * FROM read_csv('{src}', delim='\\t', quote='', escape='', nullstr='\\\\N', header=true,
    columns={{'tconst': 'VARCHAR', 'titleType': 'VARCHAR', 'primaryTitle': 'VARCHAR', 'originalTitle': 'VARCHAR',
             'isAdult': 'BOOLEAN', 'startYear': 'INTEGER', 'endYear': 'INTEGER', 'runtimeMinutes': 'INTEGER',
             'genres': 'VARCHAR'}}))
    TO '{out}/part.parquet' (FORMAT parquet, COMPRESSION zstd)''')
"""

POLARS = """
import polars as pl
schema = {{'tconst': pl.Utf8, 'titleType': pl.Utf8, 'primaryTitle': pl.Utf8, 'originalTitle': pl.Utf8,
          'isAdult': pl.Int8, 'startYear': pl.Int32, 'endYear': pl.Int32, 'runtimeMinutes': pl.Int32,
          'genres': pl.Utf8}}
(pl.scan_csv('{src}', separator='\\t', quote_char=None, null_values='\\\\N', schema=schema)
   .sink_parquet('{out}/part.parquet', compression='zstd'))
"""

PYARROW = """
import pyarrow as pa, pyarrow.csv as csv, pyarrow.parquet as pq
types = {{'tconst': pa.string(), 'titleType': pa.string(), 'primaryTitle': pa.string(), 'originalTitle': pa.string(),
         'isAdult': pa.bool_(), 'startYear': pa.int32(), 'endYear': pa.int32(), 'runtimeMinutes': pa.int32(),
         'genres': pa.string()}}
reader = csv.open_csv('{src}',
    read_options=csv.ReadOptions(block_size=8 << 20),
    parse_options=csv.ParseOptions(delimiter='\\t', quote_char=False, double_quote=False, escape_char=False),
    convert_options=csv.ConvertOptions(column_types=types, null_values=['\\\\N'], strings_can_be_null=True,
                                       true_values=['1'], false_values=['0']))
writer = None
for batch in reader:
    if writer is None:
        writer = pq.ParquetWriter('{out}/part.parquet', batch.schema, compression='zstd')
    writer.write_batch(batch)
writer.close()
"""


def measure(argv):
    """Runs argv in its own process: (wall s, cpu s, peak MiB, stdout)."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{argv[0]} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out


def counts(out_dir, names):
    """Rows and per-column null counts of a tool's Parquet output, read by DuckDB."""
    import duckdb
    glob = f"{out_dir}/**/*.parquet"
    nulls = ", ".join(f'count(*) - count("{n}")' for n in names)
    title = names[2]
    special = (f"count(*) FILTER (WHERE \"{title}\" IN ('NA', 'None', 'null')), "
               f"count(*) FILTER (WHERE starts_with(\"{title}\", '\"'))")
    return list(duckdb.connect().execute(f"SELECT count(*), {nulls}, {special} FROM read_parquet('{glob}')").fetchone())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--workdir", default="/tmp/movielake-bench-imdb")
    args = parser.parse_args()
    work = pathlib.Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    python = sys.executable

    print("building the converter (release)...", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "movielake-core", "--example", "imdb_convert"],
                   cwd=ROOT, check=True)
    exe = ROOT / "target" / "release" / "examples" / "imdb_convert"
    src = work / f"title.basics.{args.rows}.tsv"
    if not src.exists():
        print(f"generating {src}...", file=sys.stderr)
        subprocess.run([exe, "generate", str(args.rows), str(src)], check=True)
    size = src.stat().st_size

    tools = [
        ("movielake", [str(exe), "convert", str(src), "{out}"], OURS),
        ("movielake, statistics on every column", [str(exe), "convert-all-statistics", str(src), "{out}"], OURS),
        ("DuckDB (threads=2)", [python, "-c", DUCKDB.format(threads=2, src=src, out="{out}")], COLUMNS),
        ("DuckDB (threads=1)", [python, "-c", DUCKDB.format(threads=1, src=src, out="{out}")], COLUMNS),
        ("polars streaming", [python, "-c", POLARS.format(src=src, out="{out}")], COLUMNS),
        ("pyarrow (streaming CSV reader)", [python, "-c", PYARROW.format(src=src, out="{out}")], COLUMNS),
    ]
    rows = []
    reference = None
    for name, argv, names in tools:
        out = work / ("out-" + name.split()[0].strip(",").lower() + ("-1" if "threads=1" in name else "")
                      + ("-all" if "every column" in name else ""))
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        argv = [a.replace("{out}", str(out)) for a in argv]
        # Drop the page cache's advantage for whoever runs second: read the input once first.
        subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)
        print(f"running {name}...", file=sys.stderr)
        wall, cpu, peak, _ = measure(argv)
        got = counts(out, names)
        reference = reference or got
        bytes_out = sum(p.stat().st_size for p in out.rglob("*.parquet"))
        rows.append((name, wall, cpu, peak, bytes_out, got))
        if got != reference:
            print(f"MISMATCH: {name} reads back {got}, movielake {reference}", file=sys.stderr)

    print(f"\n{args.rows:,} rows, {size / 2**20:.0f} MiB of TSV; "
          f"{os.cpu_count()} CPUs; outputs read back by DuckDB\n")
    print("| tool | wall s | CPU s | peak MiB | output MiB | rows | NA/None/null titles kept | titles starting with \" |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, wall, cpu, peak, bytes_out, got in rows:
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {peak:.0f} | {bytes_out / 2**20:.0f} | {got[0]:,} | {got[-2]:,} | {got[-1]:,} |")
    nulls = ", ".join(f"{c}={n}" for c, n in zip(COLUMNS, reference[1:1 + len(COLUMNS)]))
    print(f"\nnull counts (equal for every tool): {nulls}")
    if any(got != reference for *_, got in rows):
        sys.exit("outputs differ: see MISMATCH above")


if __name__ == "__main__":
    main()
