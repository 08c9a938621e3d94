#!/usr/bin/env bash
# Builds the deployment package of the Function App: a zip with the layout the Functions host
# expects for a custom handler, ready for
#   az functionapp deployment source config-zip -g <rg> -n <app> --src <zip>
#
#   host.json                      (customHandler: defaultExecutablePath "movielake", ["serve"])
#   movielake                      the release binary, mode 0755 in the zip
#   <function>/function.json       one folder per Function, from functions/<function>/
#   contracts/<dataset>.toml       the dataset contracts (the binary reads ./contracts)
#   tmdb_lists.toml                the TMDB lists pull_tmdb_lists reads (./tmdb_lists.toml), if
#                                  the repository has it
#
# usage: scripts/package.sh [--binary PATH] [--out PATH]
#   --binary PATH   package this binary instead of building one with
#                   `cargo build --release --locked --bin movielake`
#   --out PATH      where to write the zip (default: target/movielake.zip)
# The binary must run on the Function App's Linux x86-64 workers: build it on (or for) Linux
# x86-64; a binary of another kind is packaged with a warning.
# The zip is reproducible: entries sorted, fixed timestamps.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
out="target/movielake.zip"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --out) out="${2:?--out needs a path}"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "package.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -z "$binary" ]]; then
  echo "building the release binary (cargo build --release --locked --bin movielake) ..." >&2
  cargo build --release --locked --bin movielake
  binary="target/release/movielake"
fi
[[ -f "$binary" ]] || { echo "package.sh: no binary at '$binary'" >&2; exit 1; }

python3 - "$binary" "$out" <<'PY'
import json
import pathlib
import stat
import sys
import zipfile

binary, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
root = pathlib.Path(".")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)

def fail(msg):
    sys.exit(f"package.sh: {msg}")

host = json.loads((root / "host.json").read_text())
handler = host.get("customHandler", {}).get("description", {})
exe = handler.get("defaultExecutablePath")
if exe != "movielake":
    fail(f"host.json customHandler.description.defaultExecutablePath is {exe!r}; the package ships the binary as 'movielake'")

head = binary.read_bytes()[:20]
if not (head[:4] == b"\x7fELF" and head[4] == 2 and int.from_bytes(head[18:20], "little") == 0x3E):
    print(f"package.sh: warning: {binary} is not a 64-bit x86-64 Linux executable; the Function App will not run it",
          file=sys.stderr)

entries = [("host.json", (root / "host.json").read_bytes(), 0o644)]
functions = sorted(p for p in (root / "functions").iterdir() if p.is_dir())
if not functions:
    fail("functions/ has no Function folder")
for folder in functions:
    fj = folder / "function.json"
    if not fj.exists():
        fail(f"{folder} has no function.json")
    json.loads(fj.read_text())  # refuse a broken function.json now, not at host start
    entries.append((f"{folder.name}/function.json", fj.read_bytes(), 0o644))
for contract in sorted((root / "contracts").glob("*.toml")):
    entries.append((f"contracts/{contract.name}", contract.read_bytes(), 0o644))
# Files the binary reads from its working directory (the app root), beside the built-in copies.
for name in ("tmdb_lists.toml",):
    if (root / name).is_file():
        entries.append((name, (root / name).read_bytes(), 0o644))
entries.append(("movielake", binary.read_bytes(), 0o755))

out.parent.mkdir(parents=True, exist_ok=True)
tmp = out.with_name(out.name + ".tmp")
with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
    for name, data, mode in sorted(entries):
        info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
        info.create_system = 3  # Unix: the host reads the mode from the high bits
        info.external_attr = (stat.S_IFREG | mode) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, data)
tmp.replace(out)
size = out.stat().st_size
print(f"{out}: {len(entries)} files, {size / 1e6:.1f} MB "
      f"({', '.join(f.name for f in functions)}; {sum(1 for e in entries if e[0].startswith('contracts/'))} contracts)")
PY
