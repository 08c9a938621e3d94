"""Fixtures of the infra tests: the tools scripts/check_infra.sh installs, and a scratch copy of
the repository (infra/, functions/, the Rust sources the checks read) to plant problems in."""
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TOOLS = REPO / ".tools" / "infra"
CHECKS = REPO / "infra" / "checks"
SCHEMA_5 = TOOLS / "schema" / "cdktn-provider-azurerm-18.9.0.json"
SCHEMA_4 = TOOLS / "schema" / "cdktn-provider-azurerm-17.0.0.json"
NODE_MODULES = TOOLS / "node" / "node_modules"
CHECKOV = TOOLS / "checkov" / "bin" / "checkov"


def pytest_configure(config):
    missing = [p for p in (SCHEMA_5, SCHEMA_4, NODE_MODULES / "@cdktn" / "hcl-tools", CHECKOV) if not p.exists()]
    if missing:
        pytest.exit(f"infra check tools missing ({missing[0]}): run scripts/check_infra.sh --install-only first",
                    returncode=2)


class Repo:
    """A scratch copy of the parts of the repository the checks read."""

    def __init__(self, root):
        self.root = root
        self.infra = root / "infra"

    def path(self, rel):
        return self.root / rel

    def read(self, rel):
        return self.path(rel).read_text()

    def write(self, rel, text):
        p = self.path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    def replace(self, rel, old, new, count=1):
        text = self.read(rel)
        assert old in text, f"{rel} does not contain {old!r}: the test needs updating"
        self.write(rel, text.replace(old, new, count))

    # the four checks, each returning (exit code, output)
    def run(self, *cmd):
        p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=self.root)
        return p.returncode, p.stdout + p.stderr

    def syntax(self):
        return self.run("node", CHECKS / "hcl_check.mjs", "--modules", NODE_MODULES, self.infra)

    def schema(self, schema=SCHEMA_5):
        return self.run(sys.executable, CHECKS / "schema_check.py", schema, self.infra)

    def checkov(self):
        return self.run(sys.executable, CHECKS / "checkov_check.py", "--checkov", CHECKOV, self.infra)

    def consistency(self):
        return self.run(sys.executable, CHECKS / "consistency_check.py", "--repo", self.root)


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    skip = shutil.ignore_patterns("checks", "target", ".terraform*", "__pycache__")
    shutil.copytree(REPO / "infra", root / "infra", ignore=skip)
    shutil.copytree(REPO / "functions", root / "functions")
    shutil.copytree(REPO / "contracts", root / "contracts")
    for crate in sorted((REPO / "crates").iterdir()):
        if (crate / "src").is_dir():
            shutil.copytree(crate / "src", root / "crates" / crate.name / "src")
    shutil.copy(REPO / "host.json", root / "host.json")
    return Repo(root)
