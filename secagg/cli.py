"""The ``secagg`` command line: one face on top of every layer.

Each subcommand's options are declared here so ``secagg --help`` stays light;
its implementation (fl_core, a benchmark suite, the vectors) is imported lazily
inside the handler, so ``import secagg`` never pulls in the layers above it.

- ``secagg demo``: the hospital FedAvg demo (:mod:`fl_core.demo`).
- ``secagg bench SUITE``: overhead benchmarks against their floors and peers (:mod:`secagg_bench`).
- ``secagg vectors verify|generate``: the committed test vectors.
- ``secagg keys``: hospital identity keys and the trusted-keys file.

Every option is checked while parsing, before any work: numbers against their
range (:func:`_integer`, :func:`_real`), output paths by creating a scratch file
where the output will go (:func:`_output_file`, :func:`_output_dir`), and what
depends on several options by the subcommand's ``check`` (e.g. the fewest
hospitals each ``--aggregation`` needs). Errors name the option as typed.

Exit status: 0 on success, 1 when the work failed, 2 for a usage or
configuration error, 130 on Ctrl-C (one line, no traceback) and 141 when stdout
is a pipe closed early (``secagg ... | head -1``), as the shell reports a
command killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import secagg

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]
Check = Callable[[argparse.Namespace], str | None]

EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT, what shells report)."""

EXIT_BROKEN_PIPE = 141
"""Exit status when stdout was closed early (128 + SIGPIPE, what ``yes | head -1`` reports for ``yes``)."""

MAX_ROUNDS = 10_000
"""Most FedAvg rounds ``secagg demo`` and ``secagg bench fedavg`` run."""

MAX_HOSPITALS = 100
"""Most hospitals of the demo: the bundled data sets have 398 (breast-cancer) and
1,257 (digits) training rows to share out."""

MIN_HOSPITALS = {"plain": 1, "plain-quantized": 1, "secagg": 3, "secagg+": 3, "paillier": 3}
"""Fewest hospitals per ``--aggregation``: a secure sum of two would reveal each
hospital's update to the other (:class:`fl_core.demo.DemoConfig` enforces the same)."""

SECAGG_PLUS_MAX_DROPOUT = 0.85
"""Largest ``--dropout`` the demo's SecAgg+ graph can be sized for: with its 5%
corrupt clients, corrupt + dropout must stay at most 0.9."""

MAX_SEED = 2**32 - 1
MAX_CLIENTS = 1 << 16  # secagg.masking.parameters.MAX_CLIENTS (not imported: the CLI stays light)
MAX_DIM = 100_000_000
MAX_REPEATS = 1_000
MAX_HOSPITALS_BENCH = 1_000  # Paillier bench parties (each holds a key share)


def _integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in ``minimum..maximum`` (either bound optional)."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            if maximum is None:
                raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
            if minimum is None:
                raise argparse.ArgumentTypeError(f"must be at most {maximum:,}, got {text}")
            raise argparse.ArgumentTypeError(f"must be in {minimum}..{maximum:,}, got {text}")
        return value

    return parse


def _real(low: float, high: float, *, include_low: bool = True, include_high: bool = True) -> Callable[[str], float]:
    """An argparse ``type``: a finite number in the interval from ``low`` to ``high``."""
    interval = f"{'[' if include_low else '('}{low:g}, {high:g}{']' if include_high else ')'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        inside = (
            math.isfinite(value)
            and (low <= value if include_low else low < value)
            and (value <= high if include_high else value < high)
        )
        if not inside:
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {text}")
        return value

    return parse


def _probe(directory: Path) -> None:
    """Create and remove a scratch file in ``directory``; OSError if that is impossible."""
    with tempfile.TemporaryFile(dir=directory, prefix=".secagg-write-check-"):
        pass


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _output_file(text: str) -> str:
    """An argparse ``type``: a file path that can be written now (``--json PATH``)."""
    path = Path(text)
    try:
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a directory")
        if path.exists():
            if not os.access(path, os.W_OK):
                raise argparse.ArgumentTypeError(f"cannot write {text}: permission denied")
        elif not path.parent.exists():
            raise argparse.ArgumentTypeError(f"cannot write {text}: folder {path.parent} does not exist")
        elif not path.parent.is_dir():
            raise argparse.ArgumentTypeError(f"cannot write {text}: {path.parent} is not a directory")
        else:
            _probe(path.parent)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot write {text}: {exc.strerror or exc}") from None
    return text


def _output_dir(text: str) -> str:
    """An argparse ``type``: a folder that exists and takes new files, or that can be created (``--out DIR``)."""
    path = Path(text)
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create {text}: {ancestor} is not a directory")
    try:
        _probe(ancestor)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot write into {ancestor}: {exc.strerror or exc}") from None
    return text


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
        "--aggregation",
        choices=["plain", "plain-quantized", "secagg", "secagg+", "paillier"],
        default="secagg+",
        help="how updates are summed (default: secagg+; plain-quantized: the secure arithmetic in the clear)",
    )
    demo.add_argument(
        "--hospitals",
        type=_integer(maximum=MAX_HOSPITALS),
        default=5,
        help=f"number of hospitals: at least 3 for the secure aggregations, 1 for plain, at most {MAX_HOSPITALS} "
        "(default: 5)",
    )
    demo.add_argument(
        "--rounds", type=_integer(1, MAX_ROUNDS), default=20, help=f"FedAvg rounds, 1..{MAX_ROUNDS:,} (default: 20)"
    )
    demo.add_argument("--dataset", choices=["breast-cancer", "digits"], default="breast-cancer")
    demo.add_argument("--partition", choices=["iid", "dirichlet"], default="dirichlet")
    demo.add_argument(
        "--alpha",
        type=_real(0, 1e6, include_low=False),
        default=0.5,
        help="Dirichlet concentration, > 0 (default: 0.5)",
    )
    demo.add_argument(
        "--dropout",
        type=_real(0, 1, include_high=False),
        default=0.0,
        help=f"per-round dropout probability per hospital, in [0, 1); at most {SECAGG_PLUS_MAX_DROPOUT} with "
        "secagg+ (default: 0)",
    )
    demo.add_argument(
        "--seed",
        type=_integer(0, MAX_SEED),
        default=0,
        help=f"seed of the simulation (data split, training), 0..{MAX_SEED} (default: 0)",
    )
    demo.add_argument(
        "--clipping", choices=["adaptive", "fixed"], default="adaptive",
        help="the update clip: adaptive (follows the securely summed clipped fraction toward 0.1%%) or fixed "
        "(default: adaptive)",
    )
    demo.add_argument("--json", metavar="PATH", type=_output_file, help="write the run's results as JSON")
    demo.add_argument(
        "--insecure-small-key",
        action="store_true",
        help="paillier only: use a 1024-bit test key for speed (INSECURE; prints a warning)",
    )
    demo.add_argument(
        "--dp-epsilon",
        type=_real(0, 1000, include_low=False),
        default=None,
        metavar="EPSILON",
        help="train with distributed differential privacy: this epsilon per patient over the run (delta "
        "--dp-delta), noise split across the hospitals and sized to survive one colluding or dropped hospital "
        "(default: no DP)",
    )
    demo.add_argument(
        "--dp-delta",
        type=_real(0, 1, include_low=False, include_high=False),
        default=1e-5,
        help="the DP budget's delta per patient (default: 1e-5)",
    )
    demo.add_argument(
        "--no-progress", action="store_true", help="no progress bar (there is none unless stderr is a terminal)"
    )
    demo.set_defaults(handler=_lazy("fl_core.demo"), check=_check_demo, command_parser=demo)


def _check_demo(args: argparse.Namespace) -> str | None:
    """What depends on several demo options: the problem, naming the option as typed, or None."""
    fewest = MIN_HOSPITALS[args.aggregation]
    if args.hospitals < fewest:
        reason = " (a secure sum of two would reveal each update to the other)" if fewest > 1 else ""
        return (
            f"argument --hospitals: --aggregation {args.aggregation} needs at least {fewest} "
            f"hospital{'s' if fewest > 1 else ''}{reason}, got {args.hospitals}"
        )
    if args.aggregation == "secagg+" and args.dropout > SECAGG_PLUS_MAX_DROPOUT:
        return (
            f"argument --dropout: --aggregation secagg+ is sized for at most {SECAGG_PLUS_MAX_DROPOUT} "
            f"(with 5% corrupt hospitals), got {args.dropout:g}; --aggregation secagg takes more"
        )
    if args.insecure_small_key and args.aggregation != "paillier":
        return "argument --insecure-small-key: applies to --aggregation paillier only"
    if getattr(args, "dp_epsilon", None) is not None and args.aggregation == "plain":
        return "argument --dp-epsilon: the noise is added to the integer encoding; use an aggregation other than plain"
    return None


_BENCH_SUITES = {
    "masking": "pairwise masking: client and server time vs d, dropout and graph, against the PRG floor",
    "paillier": "packed threshold Paillier vs d, key size and n, against phe and the powmod floor",
    "fedavg": "the hospital demo end to end: time per round and bytes per hospital, each aggregation vs plain",
    "scaling": "clients n from 10 to 1000 at fixed d: per-client cost of SecAgg vs SecAgg+ (log-log)",
    "peers": "Flower's SecAgg+ primitives and phe's per-value encryption doing the same work, same run",
    "dropouts": "default configurations under dropouts: one at any round (n <= 10), 10%% of n per stage (larger n)",
    "dp": "distributed DP: accuracy against epsilon (mean and spread over seeds) and exact sampler throughput",
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
    parsers = {name: suites.add_parser(name, help=text, description=text) for name, text in _BENCH_SUITES.items()}
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
    paillier = parsers["paillier"]
    paillier.add_argument("--clients", type=_integer(2, MAX_HOSPITALS_BENCH), nargs="+", help="default: 10")
    paillier.add_argument("--dim", type=dim, nargs="+", help="default: 10000")
    paillier.add_argument("--key-bits", type=_integer(1024, 8192), nargs="+", help="1024..8192, even (default: 2048)")
    paillier.add_argument("--value-bits", type=_integer(1, 64), help="default: 16")
    paillier.add_argument("--workers", type=_integer(0, 1024), help="processes (default: 0, one per core)")
    paillier.add_argument(
        "--obfuscation",
        choices=["djn", "textbook"],
        nargs="+",
        help="obfuscator generation: DJN short exponent with fixed-base table, or r^n (default: djn)",
    )
    paillier.add_argument(
        "--threshold", type=_integer(2, MAX_HOSPITALS_BENCH), default=None, help="t (default: clients // 2 + 1)"
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
    paillier.set_defaults(check=_check_paillier_bench, command_parser=paillier)
    for name, parser in parsers.items():
        _bench_common(parser, json_option=name != "all")
        parser.set_defaults(command_parser=parser)


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
    dp.add_argument("--hospitals", type=_integer(3, MAX_HOSPITALS), help="default: 5 (noise sized for n - 1)")
    dp.add_argument(
        "--aggregation",
        choices=["plain-quantized", "secagg", "secagg+"],
        help="the sum the noised encodings go through (default: plain-quantized, bit-identical to secagg's)",
    )


def _check_paillier_bench(args: argparse.Namespace) -> str | None:
    odd = [bits for bits in args.key_bits or () if bits % 2]
    if odd:
        return f"argument --key-bits: a key size must be even, got {odd[0]}"
    if args.threshold is not None and args.clients and args.threshold > min(args.clients):
        return f"argument --threshold: must be at most --clients ({min(args.clients)}), got {args.threshold}"
    return None


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
        "keys",
        help="create hospital identity keys and the federation's trusted-keys file",
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
    check.add_argument(
        "--identity",
        action="append",
        default=[],
        metavar="PATH",
        help="an identity key file whose public key must be listed (repeatable)",
    )
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


def _usage_error(args: argparse.Namespace, message: str) -> int:
    """Print ``message`` as argparse does for the subcommand's parser; the usage exit status."""
    parser: argparse.ArgumentParser = args.command_parser
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 2


def _quiet_broken_pipe() -> int:
    """After stdout's reader went away: point stdout at /dev/null so the interpreter's
    final flush cannot fail again (the pattern of the Python docs, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code (see the module docstring)."""
    parser = build_parser()
    args: argparse.Namespace | None = None
    try:
        args = parser.parse_args(argv)
        handler: Handler | None = getattr(args, "handler", None)
        if handler is None:
            parser.print_help()
            return 0
        check: Check | None = getattr(args, "check", None)
        problem = check(args) if check is not None else None
        if problem is not None:
            return _usage_error(args, problem)
        try:
            code = handler(args)
        except secagg.SecAggError as exc:
            print(f"secagg: error: {exc}", file=sys.stderr)
            code = 2
        sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at interpreter exit
        return code
    except KeyboardInterrupt:
        after_echo = "" if getattr(args, "suite", None) else "\n"  # the bench runner already ended the ^C line
        isatty = getattr(sys.stderr, "isatty", None)
        print(f"{after_echo if isatty is not None and isatty() else ''}secagg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _quiet_broken_pipe()


if __name__ == "__main__":
    raise SystemExit(main())
