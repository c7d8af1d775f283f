"""``secagg vectors verify [DIR]`` and ``secagg vectors generate DIR``."""

from __future__ import annotations

import argparse
import sys

from secagg.vectors._run import DATA_DIR, generate_directory, verify_directory

__all__ = ["generate", "verify"]


def verify(args: argparse.Namespace) -> int:
    """Run the implementation against every vector file; exit status 1 on any failure.

    Prints one line per file with its counts, every failure, and a final
    ``N passed, M failed`` line.
    """
    directory = args.directory or DATA_DIR
    reports = verify_directory(directory)
    if not reports:
        print(f"no vector files in {directory}", file=sys.stderr)
        return 1
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
