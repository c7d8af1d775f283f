"""``secagg vectors verify [DIR]`` and ``secagg vectors generate DIR``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from secagg.vectors._run import DATA_DIR, generate_directory, verify_directory

__all__ = ["generate", "verify"]


def verify(args: argparse.Namespace) -> int:
    """Run the implementation against every vector file; exit status 1 on any failure.

    Prints one line per file with its counts, every failure, and a final
    ``N passed, M failed`` line.
    """
    directory = args.directory or DATA_DIR
    try:
        empty = not any(Path(directory).glob("*.json"))
    except OSError:  # a folder that cannot be listed: verify_directory says why
        empty = False
    if empty:  # a wrong folder: one line, not every file "missing"
        print(
            f"secagg vectors verify: no vector files (*.json) in {directory}: give the folder that holds them",
            file=sys.stderr,
        )
        return 1
    reports = verify_directory(directory)
    for report in reports:
        print(report.line())
        for failure in report.failures:
            print(f"  FAIL {failure}")
    passed = sum(report.passed for report in reports)
    failed = sum(report.failed for report in reports)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def generate(args: argparse.Namespace) -> int:
    """Regenerate every vector file into ``args.directory`` (deterministic: byte-identical output)."""
    for name, count in generate_directory(args.directory):
        print(f"{name}: {count} tests")
    return 0
