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

Exit status: 0 on success, 1 when the work ran and failed (a failing vector, a
failed suite of ``bench all``), 2 for a usage error or any library error (a
refused file, an output that cannot be written, stdout on a full disk: one
line, no traceback), 130 on Ctrl-C (one line, no traceback) and 141 when stdout
is a pipe closed early (``secagg ... | head -1``), as the shell reports a
command killed by SIGPIPE (stdout's own broken pipe only: one of the work's own
pipes is a failure of the work, with its traceback). With stdout closed (``>&-``) a command does its work
and what it prints is discarded, except ``keys public``, whose printing is its work.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO, cast

import secagg
from secagg._cli_bench import _add_bench
from secagg._cli_demo_checks import check_demo as _check_demo
from secagg._cli_options import (  # noqa: F401 (re-exported: the limits are part of the command line's contract)
    EXIT_BROKEN_PIPE,
    MAX_CLIENTS,
    MAX_DIM,
    MAX_HOSPITALS,
    MAX_HOSPITALS_BENCH,
    MAX_REPEATS,
    MAX_ROUNDS,
    MAX_SEED,
    MIN_HOSPITALS,
    SECAGG_PLUS_ACTIVE_DROPOUT_BELOW,
    SECAGG_PLUS_MAX_DROPOUT,
    Check,
    Handler,
    _input_dir,
    _integer,
    _lazy,
    _new_file,
    _output_dir,
    _output_file,
    _real,
)
from secagg._cli_stdout import GuardedStdout, StdoutBrokenPipeError, StdoutWriteError, drop_stdout
from secagg._outputs import EXIT_INTERRUPTED

__all__ = ["build_parser", "main"]


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
        help=f"number of hospitals: at least 3 for the secure aggregations, 1 for plain and plain-quantized, "
        f"at most {MAX_HOSPITALS} (default: 5)",
    )
    demo.add_argument(
        "--rounds", type=_integer(1, MAX_ROUNDS), default=20, help=f"FedAvg rounds, 1..{MAX_ROUNDS:,} (default: 20)"
    )
    demo.add_argument(
        "--dataset",
        choices=["breast-cancer", "digits"],
        default="breast-cancer",
        help="scikit-learn data set: breast-cancer (2 classes) or digits (10 classes) (default: breast-cancer)",
    )
    demo.add_argument(
        "--partition",
        choices=["iid", "dirichlet"],
        default="dirichlet",
        help="how the rows are split across hospitals: iid (shuffled, near-equal parts) or dirichlet (label "
        "skew, --alpha) (default: dirichlet)",
    )
    demo.add_argument(
        "--alpha",
        type=_real(0, 1e6, include_low=False),
        default=None,
        help="with --partition dirichlet: the Dirichlet concentration, > 0 (default: 0.5)",
    )
    demo.add_argument(
        "--dropout",
        type=_real(0, 1, include_high=False),
        default=0.0,
        help=f"per-round dropout probability per hospital, in [0, 1); with secagg+ below "
        f"{SECAGG_PLUS_ACTIVE_DROPOUT_BELOW} (active mode) or at most {SECAGG_PLUS_MAX_DROPOUT} (semi-honest) "
        "(default: 0)",
    )
    demo.add_argument(
        "--seed",
        type=_integer(0, MAX_SEED),
        default=0,
        help=f"seed of the simulation (data split, training), 0..{MAX_SEED} (default: 0)",
    )
    demo.add_argument(
        "--clipping",
        choices=["adaptive", "fixed"],
        default=None,
        help="the update clip: adaptive (follows the securely summed clipped fraction toward 0.1%%) or fixed "
        "(default: adaptive)",
    )
    demo.add_argument(
        "--ring-bits",
        type=_ring_choice,
        default=None,  # word; None tells "not given" apart, so that naming it where it does nothing is refused
        metavar="{word,smallest,8..64}",
        help="the updates' ring: word (Z_(2^32), or Z_(2^64) when 32 bits could overflow), smallest (the "
        "smallest Z_(2^b) that cannot overflow; masked uploads of b bits a coordinate) or b (default: word)",
    )
    demo.add_argument("--bits", type=_integer(2, 53), help="bits per quantized value, 2..53 (default: 16)")
    demo.add_argument(
        "--max-samples-per-client",
        type=_integer(1, 1 << 30),
        help="public bound on one hospital's sample count, the weight of its update (default: 4096)",
    )
    demo.add_argument("--json", metavar="PATH", type=_output_file, help="write the run's results as JSON")
    demo.add_argument(
        "--insecure-small-key",
        action="store_true",
        help="paillier only: use a 1024-bit test key for speed (INSECURE; prints a warning)",
    )
    demo.add_argument(
        "--colluders",
        type=_integer(0, MAX_HOSPITALS),
        default=None,
        metavar="C",
        help="paillier only: the hospitals that may collude with the server, at most hospitals - 2: the key's "
        "threshold becomes (hospitals + C) // 2 + 1, and each round needs that many hospitals to decrypt "
        "(default: as masking's active mode, the most colluders, up to a third, that leave one dropout: "
        "5 hospitals 4-of-5, 2 colluders tolerated)",
    )
    demo.add_argument(
        "--dp-epsilon",
        type=_real(0, 1000, include_low=False),
        default=None,
        metavar="EPSILON",
        help="train with distributed differential privacy: this epsilon per patient over the run (delta "
        "--dp-delta), noise split across the hospitals and sized to survive at least one colluding or dropped "
        "hospital (over a secure sum, as many as its floor leaves: the summary says how many; default: no DP)",
    )
    demo.add_argument(
        "--dp-delta",
        type=_real(0, 1, include_low=False, include_high=False),
        default=None,
        help="with --dp-epsilon: the DP budget's delta per patient (default: 1e-5)",
    )
    demo.add_argument(
        "--dp-scaling",
        choices=("noised-moments", "public-ranges"),
        default=None,
        help="with --dp-epsilon: DP feature scaling: standardise from a noised moments release (calibrated alone "
        "at 20%% of epsilon; the training is calibrated after it in one Renyi account, so the run spends the "
        "declared epsilon and delta in total; default), or from the declared public ranges alone (nothing released)",
    )
    demo.add_argument(
        "--bytes-per-parameter",
        metavar="B",
        type=_real(0, 1e6, include_low=False),
        help="byte budget of each hospital's protected update (masked vector or ciphertexts) per round, per model "
        "parameter: picks the quantization bits (16 down to 8), the smallest ring that cannot overflow, a rotation "
        "below 16 bits and, if that is not enough, a shared subset of coordinates (the rest kept for later rounds); "
        "the summary shows the choice and its accuracy cost (uncompressed: about 4; default: no compression)",
    )
    demo.add_argument(
        "--rotate",
        action="store_true",
        help="every hospital rotates its update by the round's public random (Walsh-Hadamard) rotation before "
        "quantizing, the server rotates the mean back: fewer bits lose less (not with --dp-epsilon)",
    )
    demo.add_argument(
        "--masking-mode",
        choices=["active", "semi-honest"],
        default=None,  # active; None tells "not given" apart, so that naming it where it does nothing is refused
        help="secagg/secagg+ only: active (signed keys and a consistency round: private against a server that "
        "lies about dropouts; default) or semi-honest (fewer bytes and, at small n, one more dropout survived, but "
        "it does NOT resist a server that lies about dropouts: an honest-but-curious server only)",
    )
    demo.add_argument(
        "--no-progress", action="store_true", help="no progress bar (there is none unless stderr is a terminal)"
    )
    demo.set_defaults(handler=_lazy("fl_core.demo"), check=_check_demo, command_parser=demo)


def _ring_choice(text: str) -> str:
    """``word``, ``smallest`` or an integer 8..64 (kept as text: fl_core resolves it)."""
    if text in ("word", "smallest") or (text.isascii() and text.isdigit() and 8 <= int(text) <= 64):
        return text
    raise argparse.ArgumentTypeError(f"must be word, smallest or an integer in 8..64, got {text!r}")


def _add_vectors(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vectors = commands.add_parser("vectors", help="verify or regenerate the committed test vectors")
    actions = vectors.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser("verify", help="run the implementation against every vector file")
    verify.add_argument("directory", nargs="?", type=_input_dir, help="vector folder (default: the committed vectors)")
    verify.set_defaults(handler=_lazy("secagg.vectors.command", "verify"))
    generate = actions.add_parser("generate", help="regenerate every vector file from deterministic randomness")
    generate.add_argument("directory", type=_output_dir, help="folder to write the vector files into")
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
    new.add_argument("path", type=_new_file, help="the identity key file to create; its public key goes to PATH.pub")
    public = actions.add_parser("public", help="print the public key of an identity key file")
    public.add_argument("path", help="the identity key file (made by secagg keys new)")
    trust = actions.add_parser("trust", help="build the federation's trusted-keys file from public keys")
    trust.add_argument("out", type=_new_file, help="the trusted-keys file to create (never overwritten)")
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


def _library_error(exc: secagg.SecAggError) -> int:
    """Print the library error ``exc`` as one line on stderr; the exit status of a refusal."""
    if isinstance(exc, StdoutWriteError):
        drop_stdout()
    print(f"secagg: error: {exc}", file=sys.stderr)
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
    stdout = sys.stdout
    if stdout is not None:
        sys.stdout = cast(TextIO, GuardedStdout(stdout))
    try:
        return _main(argv)
    finally:
        sys.stdout = stdout


def _main(argv: Sequence[str] | None) -> int:
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
        except StdoutWriteError:
            raise
        except secagg.SecAggError as exc:
            code = _library_error(exc)
        if sys.stdout is not None:  # None: closed (`>&-`); what is printed is discarded, as asked
            sys.stdout.flush()  # inside the try: a closed pipe surfaces here, not at interpreter exit
        return code
    except StdoutWriteError as exc:  # also while argparse prints --help or --version
        return _library_error(exc)
    except KeyboardInterrupt:
        after_echo = "" if getattr(args, "suite", None) else "\n"  # the bench runner already ended the ^C line
        isatty = getattr(sys.stderr, "isatty", None)
        print(f"{after_echo if isatty is not None and isatty() else ''}secagg: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except StdoutBrokenPipeError:  # stdout's own (another broken pipe is the work's failure: a traceback)
        return _quiet_broken_pipe()


if __name__ == "__main__":
    raise SystemExit(main())
