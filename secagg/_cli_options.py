"""Option types and limits shared by the ``secagg`` subcommands (:mod:`secagg.cli`).

Numbers are checked against their range while parsing (:func:`_integer`,
:func:`_real`); output paths by creating a scratch file where the output will go
(:func:`_output_file`, :func:`_output_dir`); handlers are imported lazily
(:func:`_lazy`), so ``secagg --help`` and ``import secagg`` stay light.
"""

from __future__ import annotations

import argparse
import importlib
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import cast

from secagg._outputs import output_problem

Handler = Callable[[argparse.Namespace], int]
Check = Callable[[argparse.Namespace], str | None]

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
"""Largest ``--dropout`` the demo's semi-honest SecAgg+ graph can be sized for: with
its 5% corrupt clients, corrupt + dropout must stay at most 0.9."""

SECAGG_PLUS_ACTIVE_DROPOUT_BELOW = 0.5
"""``--dropout`` the demo's active-mode (default) SecAgg+ takes is below this: a lying
server must not split the hospitals into two groups that each reach the threshold, so
2t > n + c and fewer than half the hospitals may drop."""

MAX_SEED = 2**32 - 1
MAX_CLIENTS = 1 << 16  # secagg.masking.parameters.MAX_CLIENTS (not imported: the CLI stays light)
MAX_DIM = 100_000_000
MAX_REPEATS = 1_000
MAX_HOSPITALS_BENCH = 256  # Paillier bench parties, each holding a key share: secagg.paillier.keys.MAX_PARTIES
MIN_PAILLIER_KEY_BITS = 2048  # secagg.paillier.keys.MIN_KEY_BITS (neither imported: the CLI stays light)


def _integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: a whole number in ``minimum..maximum`` (either bound optional)."""

    def parse(text: str) -> int:
        if not text.isascii():  # int() also reads other scripts' digits (Arabic-Indic, full-width, ...)
            raise argparse.ArgumentTypeError(f"expected a whole number in ASCII digits, got {text!r}")
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
        if not text.isascii():  # float() also reads other scripts' digits (Arabic-Indic, full-width, ...)
            raise argparse.ArgumentTypeError(f"expected a number in ASCII digits, got {text!r}")
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


_EMPTY_PATH = 'an empty path (an unset variable?): name the folder, "." for the current one'


def _existing_ancestor(text: str, path: Path) -> Path:
    """The nearest of ``path`` and its parents that exists; ArgumentTypeError if one of them is a
    symbolic link to nothing (``mkdir`` could neither create it nor go through it)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
        if candidate.is_symlink():
            raise argparse.ArgumentTypeError(f"cannot create {text}: {candidate} is a symbolic link to nothing")
    return Path(".")


def _output_file(text: str) -> str:
    """An argparse ``type``: a file path that can be written now (``--json PATH``): a regular file is
    replaced atomically through a temporary file in its folder, so that folder must take a new file;
    ``/dev/stdout``, a named pipe or a device only needs to be writable (:mod:`secagg._outputs`)."""
    if text == "":
        raise argparse.ArgumentTypeError("an empty path (an unset variable?): name the file")
    try:
        if Path(text).is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a directory")
        problem = output_problem(text, probe=lambda folder: _probe(Path(folder)))
    except (OSError, ValueError) as exc:  # ValueError: a path holding a NUL byte
        raise argparse.ArgumentTypeError(f"cannot write {text}: {getattr(exc, 'strerror', None) or exc}") from None
    if problem is not None:
        raise argparse.ArgumentTypeError(f"cannot write {text}: {problem}")
    return text


def _output_dir(text: str) -> str:
    """An argparse ``type``: a folder that exists and takes new files, or that can be created (``--out DIR``)."""
    if text == "":  # Path("") is the current folder: never what an empty argument meant
        raise argparse.ArgumentTypeError(_EMPTY_PATH)
    path = Path(text)
    try:
        ancestor = _existing_ancestor(text, path)
        folder = ancestor.is_dir()
    except OSError as exc:  # a name longer than the file system takes, a loop of links
        raise argparse.ArgumentTypeError(f"cannot create {text}: {exc.strerror or exc}") from None
    if not folder:
        raise argparse.ArgumentTypeError(f"cannot create {text}: {ancestor} is not a directory")
    try:
        _probe(ancestor)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot write into {ancestor}: {exc.strerror or exc}") from None
    return text


def _new_file(text: str) -> str:
    """An argparse ``type``: the path of a file a subcommand creates (``secagg keys new PATH``), refused
    empty (an unset variable); the rest (it exists, its folder does not) is for the writer to say."""
    if text == "":
        raise argparse.ArgumentTypeError("an empty path (an unset variable?): name the file to create")
    return text


def _input_dir(text: str) -> str:
    """An argparse ``type``: a folder that exists (``secagg vectors verify DIR``), so a mistyped path is one
    usage error rather than every file of the folder reported missing; an empty path is refused, not
    taken for the committed vectors (what leaving the argument out means)."""
    if text == "":
        raise argparse.ArgumentTypeError(_EMPTY_PATH)
    try:
        folder = Path(text).is_dir()
    except OSError as exc:  # a name longer than the file system takes, a loop of links
        raise argparse.ArgumentTypeError(f"cannot use {text}: {exc.strerror or exc}") from None
    if not folder:
        raise argparse.ArgumentTypeError(
            f"{text} is not a folder: give the folder holding the *.json vector files, "
            "or nothing for the committed vectors"
        )
    return text


def _lazy(module: str, function: str = "main") -> Handler:
    """A handler that imports ``module`` only when the subcommand runs."""

    def handler(args: argparse.Namespace) -> int:
        return cast(Handler, getattr(importlib.import_module(module), function))(args)

    return handler
