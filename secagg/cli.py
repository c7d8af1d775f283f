"""The ``secagg`` command line: one face on top of every layer.

Each subcommand's options are declared here so ``secagg --help`` stays light;
its implementation (fl_core, a benchmark suite, the vectors) is imported lazily
inside the handler, so ``import secagg`` never pulls in the layers above it.

- ``secagg demo``: the hospital FedAvg demo (:mod:`fl_core.demo`).
- ``secagg bench masking|paillier``: overhead benchmarks against their floors.
- ``secagg vectors verify|generate``: the committed test vectors.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import cast

import secagg

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _lazy(module: str, function: str = "main") -> Handler:
    """A handler that imports ``module`` only when the subcommand runs."""

    def handler(args: argparse.Namespace) -> int:
        return cast(Handler, getattr(importlib.import_module(module), function))(args)

    return handler


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="federated training across simulated hospitals with secure aggregation",
        description="Train one model across hospitals with FedAvg; the server sees only aggregates.",
    )
    demo.add_argument(
        "--aggregation", choices=["plain", "secagg", "secagg+", "paillier"], default="secagg+",
        help="how updates are summed (default: secagg+)",
    )
    demo.add_argument("--hospitals", type=int, default=5, help="number of hospitals (default: 5)")
    demo.add_argument("--rounds", type=int, default=20, help="FedAvg rounds (default: 20)")
    demo.add_argument("--dataset", choices=["breast-cancer", "digits"], default="breast-cancer")
    demo.add_argument("--partition", choices=["iid", "dirichlet"], default="dirichlet")
    demo.add_argument("--alpha", type=float, default=0.5, help="Dirichlet concentration (default: 0.5)")
    demo.add_argument("--dropout", type=float, default=0.0, help="per-round dropout probability per hospital")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulation (data split, training)")
    demo.add_argument("--json", metavar="PATH", help="write the run's results as JSON")
    demo.add_argument(
        "--insecure-small-key", action="store_true",
        help="paillier only: use a 1024-bit test key for speed (INSECURE; prints a warning)",
    )
    demo.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    demo.set_defaults(handler=_lazy("fl_core.demo"))


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser("bench", help="overhead benchmarks against the plain baseline and the floor")
    suites = bench.add_subparsers(dest="suite", metavar="SUITE", required=True)
    masking = suites.add_parser("masking", help="pairwise masking: client and server time vs the PRG floor")
    masking.add_argument("--clients", type=int, nargs="+", default=[100])
    masking.add_argument("--dim", type=int, nargs="+", default=[100_000])
    masking.add_argument("--graph", choices=["complete", "harary"], nargs="+", default=["harary"])
    masking.add_argument("--dropout", type=float, nargs="+", default=[0.1])
    masking.add_argument("--repeats", type=int, default=1, help="sessions per configuration (median taken)")
    masking.add_argument("--json", metavar="PATH", help="write results as JSON")
    masking.set_defaults(handler=_lazy("secagg.masking.benchmark"))
    paillier = suites.add_parser("paillier", help="packed threshold Paillier vs phe and the powmod floor")
    paillier.add_argument("--clients", type=int, nargs="+", default=[10])
    paillier.add_argument("--dim", type=int, nargs="+", default=[10_000])
    paillier.add_argument("--key-bits", type=int, nargs="+", default=[2048])
    paillier.add_argument("--value-bits", type=int, default=16)
    paillier.add_argument("--workers", type=int, default=0, help="processes (default: one per core)")
    paillier.add_argument("--json", metavar="PATH", help="write results as JSON")
    paillier.set_defaults(handler=_lazy("secagg.paillier.benchmark"))


def _add_vectors(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vectors = commands.add_parser("vectors", help="verify or regenerate the committed test vectors")
    actions = vectors.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser("verify", help="run the implementation against every vector file")
    verify.add_argument("directory", nargs="?", help="vector folder (default: the committed vectors)")
    verify.set_defaults(handler=_lazy("secagg.vectors.command", "verify"))
    generate = actions.add_parser("generate", help="regenerate every vector file from deterministic randomness")
    generate.add_argument("directory", help="folder to write the vector files into")
    generate.set_defaults(handler=_lazy("secagg.vectors.command", "generate"))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="secagg",
        description="Secure aggregation for federated learning: the server learns only the sum.",
    )
    parser.add_argument("--version", action="version", version=f"secagg {secagg.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(commands)
    _add_bench(commands)
    _add_vectors(commands)
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
