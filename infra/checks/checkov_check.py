#!/usr/bin/env python3
"""Check 3 of scripts/check_infra.sh: checkov over a Terraform folder, with zero failed checks,
and every skip justified where it is made. A skip is an inline comment inside the resource:

    # checkov:skip=CKV_AZURE_35:<why this check does not apply here, in a sentence>

Fails on: any failed check; a skip without a reason (or with a reason under 20 characters); a
skip that suppresses nothing (the check id does not apply to that resource any more); checkov
itself failing to run.

usage: checkov_check.py --checkov PATH/TO/checkov TF_DIR
"""
import argparse
import json
import pathlib
import re
import subprocess
import sys

SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?$")
RESOURCE = re.compile(r'^resource\s+"([\w-]+)"\s+"([\w-]+)"')
MIN_REASON = 20


def skips_in(folder):
    """[(file, line, resource address, check id, reason)] of every checkov:skip comment."""
    out = []
    for f in sorted(pathlib.Path(folder).glob("*.tf")):
        current = None
        for n, line in enumerate(f.read_text().splitlines(), 1):
            m = RESOURCE.match(line)
            if m:
                current = f"{m.group(1)}.{m.group(2)}"
            s = SKIP.search(line.strip())
            if s:
                out.append((f.name, n, current, s.group(1), (s.group(2) or "").strip()))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkov", required=True)
    ap.add_argument("folder")
    a = ap.parse_args()
    folder = pathlib.Path(a.folder).resolve()
    proc = subprocess.run(
        [a.checkov, "-d", str(folder), "--framework", "terraform", "--skip-download",
         "--output", "json"],
        capture_output=True, text=True)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        print(f"ERROR checkov did not produce a report (exit {proc.returncode}):")
        print((proc.stderr or proc.stdout)[-3000:])
        return 1
    reports = report if isinstance(report, list) else [report]
    failed, skipped, passed = [], [], 0
    for r in reports:
        results = r.get("results", {})
        failed += results.get("failed_checks", [])
        skipped += results.get("skipped_checks", [])
        passed += len(results.get("passed_checks", []))

    errors = []
    for c in failed:
        lines = c.get("file_line_range") or [0, 0]
        errors.append(f"{c['file_path'].lstrip('/')}:{lines[0]}: {c['resource']}: {c['check_id']} failed: "
                      f"{c['check_name']} (fix it, or skip it inside the resource with "
                      f"'# checkov:skip={c['check_id']}:<reason>')")
    used = {(c["check_id"], c["resource"].split("[")[0]) for c in skipped}
    for fname, line, resource, check, reason in skips_in(folder):
        where = f"{fname}:{line}"
        if resource is None:
            errors.append(f"{where}: checkov:skip={check} is outside any resource")
        elif len(reason) < MIN_REASON:
            errors.append(f"{where}: {resource}: checkov:skip={check} has no written reason "
                          f"(write '# checkov:skip={check}:<why it does not apply here>')")
        elif (check, resource) not in used:
            errors.append(f"{where}: {resource}: checkov:skip={check} suppresses nothing "
                          f"(the check does not fail here): remove it")
    if not (passed or failed or skipped):
        errors.append(f"checkov ran no check on {folder}: is it a Terraform folder?")
    for e in errors:
        print("ERROR", e)
    print(f"checkov: {passed} passed, {len(failed)} failed, {len(skipped)} skipped with a reason; "
          f"{len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
