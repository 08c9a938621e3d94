"""scripts/package.sh: the zip has the layout the Functions host expects for a custom handler, the
binary keeps its executable bit, needs no glibc newer than the floor (2.28), and the packaged
binary, unpacked as the platform unpacks it, starts and answers the host's `GET /`.

The package is built once per session the way a user builds it (cargo zigbuild for
x86_64-unknown-linux-gnu.2.28), in the `package-check` profile (dev without debug info): the
glibc floor comes from the link, which is the same in every profile, and a release build of the
full stack takes about 20 minutes here."""
import json
import os
import pathlib
import re
import shutil
import socket
import stat
import subprocess
import time
import urllib.request
import zipfile

import pytest

from conftest import REPO

GLIBC_FLOOR = (2, 28)


def package(tmp_path, *args):
    out = tmp_path / "movielake.zip"
    p = subprocess.run(["bash", str(REPO / "scripts" / "package.sh"), *args, "--out", str(out)],
                       capture_output=True, text=True, cwd=tmp_path)
    return p, out


def unpack(zip_path, into):
    """Extracts like the platform's unzip: files with the mode stored in the zip."""
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            target = into / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(info))
            mode = (info.external_attr >> 16) & 0o777
            if mode:
                os.chmod(target, mode)


def glibc_versions(binary):
    """The GLIBC_x.y versions the binary's symbols need (objdump's "Version References")."""
    refs = subprocess.run(["objdump", "-p", str(binary)], capture_output=True, text=True, check=True).stdout
    assert "Version References" in refs, "a dynamically linked binary lists the glibc versions it needs"
    return sorted({tuple(int(p) for p in v.split(".")) for v in re.findall(r"\bGLIBC_([0-9]+(?:\.[0-9]+)+)\b", refs)})


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """The package, built by package.sh itself (cargo zigbuild with the glibc floor)."""
    tmp = tmp_path_factory.mktemp("package")
    p, out = package(tmp, "--profile", "package-check")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "x86_64-unknown-linux-gnu.2.28" in p.stderr, p.stderr
    return out, p.stdout + p.stderr


@pytest.fixture
def unpacked(built, tmp_path):
    root = tmp_path / "wwwroot"
    unpack(built[0], root)
    return root


def expected_entries():
    functions = sorted(p.name for p in (REPO / "functions").iterdir() if (p / "function.json").exists())
    contracts = sorted(p.name for p in (REPO / "contracts").glob("*.toml"))
    extra = {name for name in ("tmdb_lists.toml",) if (REPO / name).is_file()}
    return ({"host.json", "movielake"} | {f"{f}/function.json" for f in functions}
            | {f"contracts/{c}" for c in contracts} | extra), functions


def test_layout_and_modes(built):
    out, log = built
    want, functions = expected_entries()
    assert "ingest_watch_events" in functions
    with zipfile.ZipFile(out) as z:
        infos = {i.filename: i for i in z.infolist()}
        assert set(infos) == want
        for name, info in infos.items():
            mode = info.external_attr >> 16
            assert stat.S_ISREG(mode), name
            assert stat.S_IMODE(mode) == (0o755 if name == "movielake" else 0o644), (name, oct(mode))
        assert z.read("host.json") == (REPO / "host.json").read_bytes()
        for f in functions:
            assert z.read(f"{f}/function.json") == (REPO / "functions" / f / "function.json").read_bytes()
    host = json.loads((REPO / "host.json").read_text())["customHandler"]["description"]
    assert host["defaultExecutablePath"] == "movielake" and host["arguments"] == ["serve"]
    assert "warning" not in log


def test_the_packaged_binary_needs_no_glibc_newer_than_the_floor(unpacked):
    needed = glibc_versions(unpacked / "movielake")
    assert needed, "the handler links glibc dynamically"
    assert max(needed) <= GLIBC_FLOOR, f"needs GLIBC_{'.'.join(map(str, max(needed)))}, floor 2.28"


def test_the_packaged_binary_starts_and_answers_the_host(unpacked, tmp_path):
    exe = unpacked / "movielake"
    assert stat.S_IMODE(exe.stat().st_mode) == 0o755
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOVIELAKE_", "TMDB_"))}
    env.update(FUNCTIONS_CUSTOMHANDLER_PORT=str(port), MOVIELAKE_LAKE=str(tmp_path / "lake"))
    # As the host starts it: `defaultExecutablePath arguments...` in the app root.
    proc = subprocess.Popen([str(exe), "serve"], cwd=unpacked, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        answer = None
        while time.monotonic() < deadline and answer is None:
            assert proc.poll() is None, f"serve exited: {proc.communicate()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    answer = (r.status, json.loads(r.read()))
            except OSError:
                time.sleep(0.1)
        assert answer is not None, "no answer on GET / within 30 s"
        status, body = answer
        assert status == 200
        assert body["status"] == "ready"
        assert sorted(body["functions"]) == expected_entries()[1]
    finally:
        proc.kill()
        proc.communicate()


def test_unzip_keeps_the_executable_bit(built, tmp_path):
    if shutil.which("unzip") is None:
        pytest.skip("no unzip on this machine")
    root = tmp_path / "unzipped"
    subprocess.run(["unzip", "-q", str(built[0]), "-d", str(root)], check=True)
    assert os.access(root / "movielake", os.X_OK)
    assert not os.access(root / "host.json", os.X_OK)


def test_zip_is_reproducible(built, unpacked, tmp_path):
    zips = []
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
        p, out = package(tmp_path / run, "--binary", str(unpacked / "movielake"))
        assert p.returncode == 0, p.stderr
        zips.append(out.read_bytes())
    assert zips[0] == zips[1]
    assert zips[0] == built[0].read_bytes(), "--binary packs the same zip as the build"


def test_a_binary_that_needs_a_newer_glibc_is_refused(tmp_path):
    # This machine's own `true` is linked against its glibc (2.36 on Debian 12): too new.
    system = shutil.which("true")
    needed = glibc_versions(system)
    assert max(needed) > GLIBC_FLOOR, f"the planted binary must need more than the floor: {needed}"
    p, out = package(tmp_path, "--binary", system)
    assert p.returncode != 0
    assert "floor 2.28" in p.stderr and "zigbuild" in p.stderr, p.stderr
    assert not out.exists(), "no package is written"


def test_a_binary_that_is_not_linux_x86_64_is_packaged_with_a_warning(tmp_path):
    fake = tmp_path / "not-elf"
    fake.write_text("#!/bin/sh\necho hi\n")
    p, out = package(tmp_path, "--binary", str(fake))
    assert p.returncode == 0, p.stderr
    assert "is not a 64-bit x86-64 Linux executable" in p.stderr
    with zipfile.ZipFile(out) as z:
        assert stat.S_IMODE(z.getinfo("movielake").external_attr >> 16) == 0o755


def test_missing_binary_fails_clearly(tmp_path):
    p = subprocess.run(["bash", str(REPO / "scripts" / "package.sh"), "--binary", str(tmp_path / "nope")],
                       capture_output=True, text=True)
    assert p.returncode != 0
    assert "no binary at" in p.stderr
