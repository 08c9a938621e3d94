"""scripts/package.sh: the zip has the layout the Functions host expects for a custom handler,
and the binary keeps its executable bit. Packages a small stand-in binary (a copy of a system
executable), never a release build."""
import json
import os
import pathlib
import shutil
import stat
import subprocess
import zipfile

import pytest

from conftest import REPO


def package(tmp_path, binary):
    out = tmp_path / "movielake.zip"
    p = subprocess.run(["bash", str(REPO / "scripts" / "package.sh"), "--binary", str(binary), "--out", str(out)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    return out, p.stdout + p.stderr


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


@pytest.fixture
def stand_in_binary(tmp_path):
    """A real x86-64 Linux executable to package in place of movielake (exits 0)."""
    src = shutil.which("true")
    assert src, "no `true` executable on PATH"
    dst = tmp_path / "bin" / "movielake-stand-in"
    dst.parent.mkdir()
    shutil.copy(src, dst)
    return dst


def expected_entries():
    functions = sorted(p.name for p in (REPO / "functions").iterdir() if (p / "function.json").exists())
    contracts = sorted(p.name for p in (REPO / "contracts").glob("*.toml"))
    extra = {name for name in ("tmdb_lists.toml",) if (REPO / name).is_file()}
    return ({"host.json", "movielake"} | {f"{f}/function.json" for f in functions}
            | {f"contracts/{c}" for c in contracts} | extra), functions


def test_layout_and_modes(tmp_path, stand_in_binary):
    out, log = package(tmp_path, stand_in_binary)
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
        assert z.read("movielake") == stand_in_binary.read_bytes()
    host = json.loads((REPO / "host.json").read_text())["customHandler"]["description"]
    assert host["defaultExecutablePath"] == "movielake" and host["arguments"] == ["serve"]
    assert "warning" not in log


def test_unpacked_binary_is_executable(tmp_path, stand_in_binary):
    out, _ = package(tmp_path, stand_in_binary)
    root = tmp_path / "wwwroot"
    unpack(out, root)
    exe = root / "movielake"
    assert stat.S_IMODE(exe.stat().st_mode) == 0o755
    assert subprocess.run([str(exe)], cwd=root).returncode == 0
    assert (root / "host.json").exists() and (root / "ingest_watch_events" / "function.json").exists()


@pytest.mark.skipif(shutil.which("unzip") is None, reason="no unzip on this machine")
def test_unzip_keeps_the_executable_bit(tmp_path, stand_in_binary):
    out, _ = package(tmp_path, stand_in_binary)
    root = tmp_path / "unzipped"
    subprocess.run(["unzip", "-q", str(out), "-d", str(root)], check=True)
    assert os.access(root / "movielake", os.X_OK)
    assert not os.access(root / "host.json", os.X_OK)


def test_zip_is_reproducible(tmp_path, stand_in_binary):
    zips = []
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
        zips.append(package(tmp_path / run, stand_in_binary)[0].read_bytes())
    assert zips[0] == zips[1]


def test_a_binary_that_is_not_linux_x86_64_is_packaged_with_a_warning(tmp_path):
    fake = tmp_path / "not-elf"
    fake.write_text("#!/bin/sh\necho hi\n")
    out, log = package(tmp_path, fake)
    assert "is not a 64-bit x86-64 Linux executable" in log
    with zipfile.ZipFile(out) as z:
        assert stat.S_IMODE(z.getinfo("movielake").external_attr >> 16) == 0o755


def test_missing_binary_fails_clearly(tmp_path):
    p = subprocess.run(["bash", str(REPO / "scripts" / "package.sh"), "--binary", str(tmp_path / "nope")],
                       capture_output=True, text=True)
    assert p.returncode != 0
    assert "no binary at" in p.stderr
