#!/usr/bin/env bash
# Builds the deployment package of the Function App: a zip with the layout the Functions host
# expects for a custom handler, ready for
#   az functionapp deployment source config-zip -g <rg> -n <app> --src <zip>
#
#   host.json                      (customHandler: defaultExecutablePath "movielake", ["serve"])
#   movielake                      the handler binary, mode 0755 in the zip
#   <function>/function.json       one folder per Function, from functions/<function>/
#   contracts/<dataset>.toml       the dataset contracts (the binary reads ./contracts)
#   tmdb_lists.toml                the TMDB lists pull_tmdb_lists reads (./tmdb_lists.toml), if
#                                  the repository has it
#
# The binary is built for a glibc floor of 2.28 (cargo-zigbuild, target
# x86_64-unknown-linux-gnu.2.28), so that it starts on the Functions Linux images whatever their
# glibc (Debian 11 has 2.31; nothing documents the Flex Consumption image's). A binary that needs
# a newer glibc dies at exec ("version `GLIBC_2.3x' not found") and the host never gets an answer,
# so a binary whose versioned symbols need more than the floor is refused here.
# cargo-zigbuild and zig (PyPI wheels, scripts/package-requirements.txt) are installed into
# ./.tools/zig on first use.
#
# usage: scripts/package.sh [--binary PATH] [--profile release|dev|package-check] [--out PATH]
#   --binary PATH     package this binary instead of building one (it is still held to the floor)
#   --profile NAME    cargo profile of the build (default: release; the package tests use
#                     package-check, dev without debug info: same glibc floor, a fraction of the time)
#   --out PATH        where to write the zip (default: target/movielake.zip)
# The zip is reproducible: entries sorted, fixed timestamps.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
profile="release"
out="target/movielake.zip"
TARGET="x86_64-unknown-linux-gnu"
GLIBC_FLOOR="2.28"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --out) out="${2:?--out needs a path}"; shift 2 ;;
    --profile) profile="${2:?--profile needs a name}"; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "package.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [[ -z "$binary" ]]; then
  tools=".tools/zig"
  req="scripts/package-requirements.txt"
  stamp="$(sha256sum "$req" | cut -c1-16)"
  if [[ ! -x "$tools/bin/cargo-zigbuild" || "$(cat "$tools/.stamp" 2>/dev/null)" != "$stamp" ]]; then
    echo "installing cargo-zigbuild and zig into $tools ($req) ..." >&2
    rm -rf "$tools"
    python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    echo "$stamp" >"$tools/.stamp"
  fi
  echo "building the handler for glibc $GLIBC_FLOOR (cargo zigbuild --profile $profile --target $TARGET.$GLIBC_FLOOR) ..." >&2
  PATH="$PWD/$tools/bin:$PATH" cargo zigbuild --locked --bin movielake --profile "$profile" --target "$TARGET.$GLIBC_FLOOR"
  dir="$profile"
  [[ "$profile" == "dev" ]] && dir="debug"
  binary="${CARGO_TARGET_DIR:-target}/$TARGET/$dir/movielake"
fi
[[ -f "$binary" ]] || { echo "package.sh: no binary at '$binary'" >&2; exit 1; }

python3 - "$binary" "$out" "$GLIBC_FLOOR" <<'PY'
import json
import re
import shutil
import subprocess
import pathlib
import stat
import sys
import zipfile

binary, out, floor = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
root = pathlib.Path(".")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)

def fail(msg):
    sys.exit(f"package.sh: {msg}")

host = json.loads((root / "host.json").read_text())
handler = host.get("customHandler", {}).get("description", {})
exe = handler.get("defaultExecutablePath")
if exe != "movielake":
    fail(f"host.json customHandler.description.defaultExecutablePath is {exe!r}; the package ships the binary as 'movielake'")

def version(text):
    return tuple(int(p) for p in text.split("."))

head = binary.read_bytes()[:20]
if not (head[:4] == b"\x7fELF" and head[4] == 2 and int.from_bytes(head[18:20], "little") == 0x3E):
    print(f"package.sh: warning: {binary} is not a 64-bit x86-64 Linux executable; the Function App will not run it",
          file=sys.stderr)
else:
    # The glibc versions the binary's symbols need (its "Version References"), against the floor.
    if shutil.which("objdump") is None:
        fail("objdump (binutils) is needed to check the binary's glibc floor; install binutils")
    refs = subprocess.run(["objdump", "-p", str(binary)], capture_output=True, text=True, check=True).stdout
    needed = sorted({m for m in re.findall(r"\bGLIBC_([0-9]+(?:\.[0-9]+)+)\b", refs)}, key=version)
    too_new = [v for v in needed if version(v) > version(floor)]
    if too_new:
        fail(f"{binary} needs GLIBC_{too_new[-1]} (floor {floor}): it would not start on older Functions "
             f"images. Build it with scripts/package.sh (cargo zigbuild --target x86_64-unknown-linux-gnu.{floor}) "
             f"instead of a plain cargo build")
    print(f"{binary}: needs glibc {needed[-1] if needed else '(none)'} at most (floor {floor})", file=sys.stderr)

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
