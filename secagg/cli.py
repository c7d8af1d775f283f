"""The ``secagg`` command line: one face on top of every layer.

Subcommands import what they need (fl_core, the benchmark suites, the vectors)
lazily, inside the subcommand, so ``import secagg`` never pulls them in.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import secagg

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="secagg",
        description="Secure aggregation for federated learning: the server learns only the sum.",
    )
    parser.add_argument("--version", action="version", version=f"secagg {secagg.__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return handler(args)
    except secagg.SecAggError as exc:
        print(f"secagg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
