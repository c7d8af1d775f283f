"""The ``secagg`` command line: one face on top of every layer.

Each subcommand's options are declared here so ``secagg --help`` stays light;
its implementation (fl_core, a benchmark suite, the vectors) is imported lazily
inside the handler, so ``import secagg`` never pulls in the layers above it.

- ``secagg demo``: the hospital FedAvg demo (:mod:`fl_core.demo`).
- ``secagg bench SUITE``: overhead benchmarks against their floors and peers (:mod:`secagg_bench`).
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


_BENCH_SUITES = {
    "masking": "pairwise masking: client and server time vs d, dropout and graph, against the PRG floor",
    "paillier": "packed threshold Paillier vs d, key size and n, against phe and the powmod floor",
    "fedavg": "the hospital demo end to end: time per round and bytes per hospital, each aggregation vs plain",
    "scaling": "clients n from 10 to 1000 at fixed d: per-client cost of SecAgg vs SecAgg+ (log-log)",
    "peers": "Flower's SecAgg+ primitives and phe's per-value encryption doing the same work, same run",
    "all": "every suite, one summary (what CI runs with --quick)",
}


def _bench_common(parser: argparse.ArgumentParser, *, json_option: bool = True) -> None:
    """Options every ``secagg bench`` suite takes; suite options default to None so
    that a preset fills them unless given."""
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument(
        "--quick", dest="preset", action="store_const", const="quick",
        help="small preset grid (all suites together in under two minutes; CI)",
    )
    preset.add_argument(
        "--full", dest="preset", action="store_const", const="full", help="the grid docs/benchmarks.md quotes"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="write SUITE.json, SUITE.csv, SUITE_*.png and summary.md into DIR"
    )
    if json_option:
        parser.add_argument("--json", metavar="PATH", help="also write the suite's JSON report to PATH")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_lazy("secagg_bench.runner"))


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser(
        "bench",
        help="overhead benchmarks against the plain baseline, the hardware floor and peer libraries",
        description="Run benchmark suites; without --quick/--full the options given (or their defaults) "
        "make the grid, with a preset they override its axes.",
    )
    suites = bench.add_subparsers(dest="suite", metavar="SUITE", required=True)
    parsers = {name: suites.add_parser(name, help=text, description=text) for name, text in _BENCH_SUITES.items()}
    masking = parsers["masking"]
    masking.add_argument("--clients", type=int, nargs="+", help="n (default: 100)")
    masking.add_argument("--dim", type=int, nargs="+", help="vector length d (default: 100000)")
    masking.add_argument("--graph", choices=["complete", "harary"], nargs="+", help="default: harary")
    masking.add_argument(
        "--dropout", type=float, nargs="+",
        help="dropout rates: each session loses this fraction; SecAgg+ is sized as the defaults size it "
        "(10%% of n at each of the four stages from 20 clients on) or for this rate if larger (default: 0.1)",
    )
    masking.add_argument("--repeats", type=int, help="sessions per configuration, median taken (default: 1)")
    paillier = parsers["paillier"]
    paillier.add_argument("--clients", type=int, nargs="+", help="default: 10")
    paillier.add_argument("--dim", type=int, nargs="+", help="default: 10000")
    paillier.add_argument("--key-bits", type=int, nargs="+", help="default: 2048")
    paillier.add_argument("--value-bits", type=int, help="default: 16")
    paillier.add_argument("--workers", type=int, help="processes (default: 0, one per core)")
    paillier.add_argument(
        "--obfuscation", choices=["djn", "textbook"], nargs="+",
        help="obfuscator generation: DJN short exponent with fixed-base table, or r^n (default: djn)",
    )
    paillier.add_argument("--threshold", type=int, default=None, help="t (default: clients // 2 + 1)")
    paillier.add_argument("--naive-sample", type=int, help="values encrypted with phe for the baseline (default: 50)")
    paillier.add_argument("--seed", type=int, help="seed of the random input vectors (default: 0)")
    fedavg = parsers["fedavg"]
    fedavg.add_argument("--dataset", choices=["breast-cancer", "digits"], nargs="+", help="default: breast-cancer")
    fedavg.add_argument(
        "--aggregation", choices=["secagg", "secagg+", "paillier"], nargs="+",
        help="secure aggregations to compare with plain FedAvg (default: all three)",
    )
    fedavg.add_argument("--hospitals", type=int, help="default: 5")
    fedavg.add_argument("--rounds", type=int, help="FedAvg rounds, at least 2 (default: 5)")
    fedavg.add_argument("--seed", type=int, help="default: 0")
    fedavg.add_argument(
        "--insecure-small-key", action="store_const", const=True,
        help="paillier with a 1024-bit key (INSECURE; what --quick uses)",
    )
    scaling = parsers["scaling"]
    scaling.add_argument("--clients", type=int, nargs="+", help="n values (default: 10 100 1000)")
    scaling.add_argument("--dim", type=int, help="vector length d (default: 10000)")
    scaling.add_argument("--dropout", type=float, help="dropout rate (default: 0.1)")
    scaling.add_argument("--repeats", type=int, help="sessions per configuration (default: 1)")
    scaling.add_argument("--max-complete", type=int, help="largest n run on the complete graph (default: 200)")
    peers = parsers["peers"]
    peers.add_argument("--clients", type=int, help="n (default: 100)")
    peers.add_argument("--dim", type=int, nargs="+", help="vector lengths d (default: 1000000)")
    peers.add_argument("--dropout", type=float, help="dropout rate (default: 0.1)")
    peers.add_argument("--repeats", type=int, help="repetitions of each component, median taken (default: 3)")
    peers.add_argument("--paillier-dim", type=int, help="vector length of the phe comparison (default: 10000)")
    for name, parser in parsers.items():
        _bench_common(parser, json_option=name != "all")


def _add_vectors(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vectors = commands.add_parser("vectors", help="verify or regenerate the committed test vectors")
    actions = vectors.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser("verify", help="run the implementation against every vector file")
    verify.add_argument("directory", nargs="?", help="vector folder (default: the committed vectors)")
    verify.set_defaults(handler=_lazy("secagg.vectors.command", "verify"))
    generate = actions.add_parser("generate", help="regenerate every vector file from deterministic randomness")
    generate.add_argument("directory", help="folder to write the vector files into")
    generate.set_defaults(handler=_lazy("secagg.vectors.command", "generate"))


def _add_keys(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = commands.add_parser(
        "keys", help="create hospital identity keys and the federation's trusted-keys file",
        description="Provision the Ed25519 identities that sign active-mode masking and Paillier uploads "
        "(docs/integrations.md, 'Provisioning identities').",
    )
    actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = actions.add_parser("new", help="create a hospital's Ed25519 identity (0600, never overwritten)")
    new.add_argument("path", help="the identity key file to create; its public key goes to PATH.pub")
    public = actions.add_parser("public", help="print the public key of an identity key file")
    public.add_argument("path")
    trust = actions.add_parser("trust", help="build the federation's trusted-keys file from public keys")
    trust.add_argument("out", help="the trusted-keys file to create (never overwritten)")
    trust.add_argument("keys", nargs="+", metavar="KEY", help="a public key in hex, or a .pub file holding one")
    check = actions.add_parser("check", help="check a trusted-keys file (and that your identity is on it)")
    check.add_argument("trusted", help="the trusted-keys file")
    check.add_argument("--identity", action="append", default=[], metavar="PATH",
                       help="an identity key file whose public key must be listed (repeatable)")
    keys.set_defaults(handler=_lazy("secagg.keys_command"))


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
    _add_keys(commands)
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
