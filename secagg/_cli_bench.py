"""The ``secagg bench`` subcommand's options, one parser per suite (:mod:`secagg_bench`)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from secagg._cli_bench_out import json_partial_problem, out_problem
from secagg._cli_options import (
    MAX_CLIENTS,
    MAX_DIM,
    MAX_HOSPITALS,
    MAX_HOSPITALS_BENCH,
    MAX_REPEATS,
    MAX_ROUNDS,
    MAX_SEED,
    MIN_PAILLIER_KEY_BITS,
    _integer,
    _lazy,
    _output_dir,
    _output_file,
    _real,
)

MAX_MEMORY_GIB = float(1 << 20)
"""``--max-memory``'s ceiling (1 PiB in GiB): a limit, not a size anything allocates."""

_BENCH_SUITES = {
    "masking": "pairwise masking: client and server time vs d, dropout and graph, against the PRG floor",
    "paillier": "packed threshold Paillier vs d, key size and n, against phe and the powmod floor",
    "fedavg": "the hospital demo end to end: time per round and bytes per hospital, each aggregation vs plain",
    "scaling": "clients n from 10 to 1000 at fixed d: per-client cost of SecAgg vs SecAgg+ (log-log)",
    "peers": "Flower's SecAgg+ primitives and phe's per-value encryption doing the same work, same run",
    "dropouts": "default configurations under dropouts: one at any round (n <= 10), 10%% of n per stage (larger n)",
    "dp": "distributed DP: accuracy against epsilon (mean and spread over seeds) and exact sampler throughput",
    "compression": "bytes per parameter of the protected update and in total, and accuracy, against quantization "
    "bits, shared-seed sparsity and byte budgets; the rotation against masking",
    "all": "every suite, one summary (what CI runs with --quick)",
}


def _bench_common(parser: argparse.ArgumentParser, *, json_option: bool = True) -> None:
    """Options every ``secagg bench`` suite takes; suite options default to None so
    that a preset fills them unless given."""
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument(
        "--quick",
        dest="preset",
        action="store_const",
        const="quick",
        help="small preset grid (all suites together in under two minutes; CI)",
    )
    preset.add_argument(
        "--full", dest="preset", action="store_const", const="full", help="the grid docs/benchmarks.md quotes"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=_output_dir,
        help="write SUITE.json, SUITE.csv, SUITE_*.png and summary.md into DIR (results measured so far go to "
        "DIR/SUITE.partial.jsonl as they come, kept if the run is interrupted)",
    )
    if json_option:
        parser.add_argument(
            "--json", metavar="PATH", type=_output_file, help="also write the suite's JSON report to PATH"
        )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bars (there are none unless stderr is a terminal)"
    )
    parser.set_defaults(handler=_lazy("secagg_bench.runner"))


def _add_bench(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser(
        "bench",
        help="overhead benchmarks against the plain baseline, the hardware floor and peer libraries",
        description="Run benchmark suites; without --quick/--full the options given (or their defaults) "
        "make the grid, with a preset they override its axes.",
    )
    suites = bench.add_subparsers(dest="suite", metavar="SUITE", required=True)
    # help is %-formatted by argparse (hence "%%" in the texts), the description is printed as is
    parsers = {
        name: suites.add_parser(name, help=text, description=text.replace("%%", "%"))
        for name, text in _BENCH_SUITES.items()
    }
    masking = parsers["masking"]
    clients, dim = _integer(3, MAX_CLIENTS), _integer(1, MAX_DIM)
    repeats, dropout = _integer(1, MAX_REPEATS), _real(0, 1, include_high=False)
    masking.add_argument("--clients", type=clients, nargs="+", help="n (default: 100)")
    masking.add_argument("--dim", type=dim, nargs="+", help="vector length d (default: 100000)")
    masking.add_argument("--graph", choices=["complete", "harary"], nargs="+", help="default: harary")
    masking.add_argument(
        "--dropout",
        type=dropout,
        nargs="+",
        help="dropout rates: each session loses this fraction; SecAgg+ is sized as the defaults size it "
        "(10%% of n at each of the four stages from 20 clients on) or for this rate if larger (default: 0.1)",
    )
    masking.add_argument("--repeats", type=repeats, help="sessions per configuration, median taken (default: 1)")
    masking.add_argument(
        "--ring-bits",
        type=_integer(8, 64),
        nargs="+",
        help="rings Z_(2^b), b in 8..64: masked inputs travel packed, b bits a coordinate (default: 32)",
    )
    paillier = parsers["paillier"]
    paillier.add_argument("--clients", type=_integer(2, MAX_HOSPITALS_BENCH), nargs="+", help="default: 10")
    paillier.add_argument("--dim", type=dim, nargs="+", help="default: 10000")
    paillier.add_argument(
        "--key-bits", type=_integer(MIN_PAILLIER_KEY_BITS, 8192), nargs="+", help="2048..8192, even (default: 2048)"
    )
    paillier.add_argument("--value-bits", type=_integer(1, 64), help="default: 16")
    paillier.add_argument("--workers", type=_integer(0, 1024), help="processes (default: 0, one per core)")
    paillier.add_argument(
        "--obfuscation",
        choices=["djn", "textbook"],
        nargs="+",
        help="obfuscator generation: DJN short exponent with fixed-base table, or r^n (default: djn)",
    )
    paillier.add_argument(
        "--threshold",
        type=_integer(2, MAX_HOSPITALS_BENCH),
        default=None,
        help="t, with 2t > clients (default: as masking's active mode, the most colluders, up to a third, that "
        "leave one dropout, 40%% from 20 clients on: 7 of 10)",
    )
    paillier.add_argument(
        "--naive-sample", type=_integer(1, MAX_DIM), help="values encrypted with phe for the baseline (default: 50)"
    )
    paillier.add_argument("--seed", type=_integer(0, MAX_SEED), help="seed of the random input vectors (default: 0)")
    fedavg = parsers["fedavg"]
    fedavg.add_argument("--dataset", choices=["breast-cancer", "digits"], nargs="+", help="default: breast-cancer")
    fedavg.add_argument(
        "--aggregation",
        choices=["secagg", "secagg+", "paillier"],
        nargs="+",
        help="secure aggregations to compare with plain FedAvg (default: all three)",
    )
    fedavg.add_argument("--hospitals", type=_integer(3, MAX_HOSPITALS), help=f"3..{MAX_HOSPITALS} (default: 5)")
    fedavg.add_argument("--rounds", type=_integer(2, MAX_ROUNDS), help=f"FedAvg rounds, 2..{MAX_ROUNDS:,} (default: 5)")
    fedavg.add_argument("--seed", type=_integer(0, MAX_SEED), help="default: 0")
    fedavg.add_argument(
        "--insecure-small-key",
        action="store_const",
        const=True,
        help="paillier with a 1024-bit key (INSECURE; what --quick uses)",
    )
    dropouts = parsers["dropouts"]
    dropouts.add_argument("--clients", type=clients, nargs="+", help="n values (default: 3 5 10 20)")
    dropouts.add_argument(
        "--sessions", type=_integer(1, 100_000), help="sessions per n above 10, at 10%% per stage (default: 50)"
    )
    dropouts.add_argument("--dim", type=dim, help="vector length d (default: 100)")
    _add_compression_bench(parsers["compression"])
    scaling = parsers["scaling"]
    scaling.add_argument("--clients", type=clients, nargs="+", help="n values (default: 10 100 1000)")
    scaling.add_argument("--dim", type=dim, help="vector length d (default: 10000)")
    scaling.add_argument("--dropout", type=dropout, help="dropout rate (default: 0.1)")
    scaling.add_argument("--repeats", type=repeats, help="sessions per configuration (default: 1)")
    scaling.add_argument(
        "--max-complete", type=_integer(0, MAX_CLIENTS), help="largest n run on the complete graph (default: 200)"
    )
    peers = parsers["peers"]
    peers.add_argument("--clients", type=clients, help="n (default: 100)")
    peers.add_argument("--dim", type=dim, nargs="+", help="vector lengths d (default: 1000000)")
    peers.add_argument("--dropout", type=dropout, help="dropout rate (default: 0.1)")
    peers.add_argument("--repeats", type=repeats, help="repetitions of each component, median taken (default: 3)")
    peers.add_argument("--paillier-dim", type=dim, help="vector length of the phe comparison (default: 10000)")
    _add_dp_bench(parsers["dp"])
    for name in ("masking", "scaling", "peers", "dropouts"):  # secagg_bench.checks.MEMORY_CHECKED
        parsers[name].add_argument(
            "--max-memory",
            metavar="GIB",
            type=_real(0, MAX_MEMORY_GIB, include_low=False),
            help="refuse, before any work, a grid whose largest session is estimated to need more memory than "
            "GIB (default: this machine's physical memory, or its container's memory limit where smaller; "
            "docs/benchmarks.md, \"Memory\")",
        )
    for name, parser in parsers.items():
        _bench_common(parser, json_option=name != "all")
        parser.set_defaults(command_parser=parser, check=_check_bench_all if name == "all" else _check_bench)


def _add_dp_bench(dp: argparse.ArgumentParser) -> None:
    """The options of ``secagg bench dp``."""
    dp.add_argument("--dataset", choices=["breast-cancer", "digits"], nargs="+", help="default: breast-cancer")
    dp.add_argument(
        "--epsilon",
        type=_real(0, 1000, include_low=False),
        nargs="+",
        help="budgets per patient (delta 1e-5); 'no DP' is always run as the baseline (default: 1 3)",
    )
    dp.add_argument("--seeds", type=_integer(1, 1000), help="seeds 0..N-1 per budget (default: 10)")
    dp.add_argument("--rounds", type=_integer(1, MAX_ROUNDS), help="rounds (default: 20)")
    dp.add_argument(
        "--hospitals",
        type=_integer(3, MAX_HOSPITALS),
        help="default: 5 (noise sized for n - 1, capped by the secure sum's floor over secagg and secagg+)",
    )
    dp.add_argument(
        "--aggregation",
        choices=["plain-quantized", "secagg", "secagg+"],
        help="the sum the noised encodings go through (default: plain-quantized, bit-identical to secagg's)",
    )


def _add_compression_bench(compression: argparse.ArgumentParser) -> None:
    compression.add_argument("--dataset", choices=["breast-cancer", "digits"], nargs="+", help="default: both")
    compression.add_argument("--aggregation", choices=["secagg", "secagg+"], help="default: secagg+")
    compression.add_argument("--bits", type=_integer(2, 32), nargs="+", help="quantization bits (default: 16)")
    compression.add_argument(
        "--sparsity",
        type=_real(0, 1, include_low=False),
        nargs="*",
        help="fractions of coordinates sent, besides the uncompressed run (default: 0.5)",
    )
    compression.add_argument(
        "--bytes-per-parameter",
        type=_real(0, 1e6, include_low=False),
        nargs="*",
        help="budgets of the protected update per parameter per hospital per round; each picks its own bits, "
        "ring, rotation and subset (default: 1)",
    )
    compression.add_argument("--seeds", type=_integer(1, 1000), help="seeds 0..N-1 per setting (default: 3)")
    compression.add_argument("--rounds", type=_integer(1, MAX_ROUNDS), help="FedAvg rounds (default: 20)")
    compression.add_argument(
        "--rotation-dim",
        type=_integer(0, MAX_DIM),
        help="d of the rotation-against-masking row, 0 for none (default: 0; --full: 1000000)",
    )


def _check_bench_all(args: argparse.Namespace) -> str | None:
    """``bench all``: a ``--out`` folder holding a file it did not write (:mod:`secagg._cli_bench_out`)."""
    suites: Sequence[str] = importlib.import_module("secagg_bench").SUITES
    return out_problem(getattr(args, "out", None), suites)


def _check_bench(args: argparse.Namespace) -> str | None:
    """What the suite's grid cannot run (the preset's axes with the options given), before any
    work: a ``--out`` folder holding a file the run did not write (:mod:`secagg._cli_bench_out`),
    the key size's parity here, the rest in :mod:`secagg_bench.checks` on the grid itself."""
    problem = out_problem(getattr(args, "out", None), [args.suite]) or json_partial_problem(
        getattr(args, "json", None), getattr(args, "out", None), args.suite
    )
    if problem is not None:
        return problem
    problem = paillier_problem(getattr(args, "key_bits", None) or (), (), None)
    if problem is not None:
        return problem
    checks = importlib.import_module("secagg_bench.checks")
    found: str | None = checks.check(args.suite, vars(args), getattr(args, "preset", None) or "custom")
    return found


def paillier_problem(key_bits: Sequence[int], clients: Sequence[int], threshold: int | None) -> str | None:
    """An odd key size, or a threshold above the fewest clients or with 2t <= l (every session refuses
    such a key: secagg.paillier.parameters.check_dealt_shape, not imported: the CLI stays light), as a
    usage message naming the option; None if the Paillier grid can be dealt."""
    odd = [bits for bits in key_bits if bits % 2]
    if odd:
        return f"argument --key-bits: a key size must be even, got {odd[0]}"
    if threshold is None or not clients:
        return None
    if threshold > min(clients):
        return f"argument --threshold: must be at most --clients ({min(clients)}), got {threshold}"
    most = max(clients)
    if 2 * threshold <= most:
        return (
            f"argument --threshold: must be at least {most // 2 + 1} for --clients {most} (2t > l: every "
            f"session refuses a key with 2t <= l, docs/paillier.md), got {threshold}"
        )
    return None
