"""Fails when a package's line coverage is under its floor: ``check_coverage.py FILE pkg=95 ...``."""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    report = json.load(open(argv[1], encoding="utf-8"))
    failed = False
    for spec in argv[2:]:
        package, floor = spec.split("=")
        covered = total = 0
        for path, data in report["files"].items():
            if path.startswith(package + "/"):
                covered += data["summary"]["covered_lines"]
                total += data["summary"]["num_statements"]
        percent = 100.0 * covered / total if total else 0.0
        verdict = "ok" if percent >= float(floor) else "TOO LOW"
        print(f"coverage {package}: {percent:.1f}% (floor {floor}%) {verdict}")
        failed |= percent < float(floor)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
