"""Compression primitives against masking: the rotation and bit packing at d = 10^6.

Issue 16's time target: rotating an update at d = 10^6 should cost no more than
masking the same vector, since every hospital does both each round. This module
measures, in one process and on the same d:

- ``rotation_forward_s`` / ``rotation_inverse_s``: :class:`secagg.rotation.Rotation`
  (a client rotates its update; the server un-rotates the aggregate once) on the
  backend in use (param ``rotation_backend``: ``numba`` where it imports, else
  ``numpy``; :func:`secagg.rotation.backend`), and
  ``rotation_numpy_forward_s`` / ``rotation_numpy_inverse_s`` on the numpy
  backend, timed in the same interleaved rounds (the same figures when numpy is
  the backend in use);
- ``mask_s``: the masking work of one client's MaskedInput step for the same
  configuration as the masking suite's target (self-mask expanded into the
  output, the input added, k pairwise masks added in place, 32-bit ring): the
  PRG part of ``client_mask_s`` in ``secagg bench masking``, without the key
  agreements and box openings, so the comparison is the harder one for the
  rotation;
- ``quantize_s``: quantizing the rotated vector (what follows the rotation);
- ``pack_s`` / ``unpack_s`` at b bits: the wire form of a narrow ring.

All of them are medians of CPU seconds (``time.process_time``) over ``repeats``
rounds in which every operation runs once, in turn (:func:`interleaved_cpu_medians`):
on a machine shared with other jobs, the ratios of one run are what compares.

:func:`rotation_vs_masking` returns one row (``params`` and ``metrics``, as the
other suites' rows); the ``secagg bench compression`` suite calls it when asked
(``--rotation-dim``). ``python -m benchmarks.compression`` prints the row, and
with ``--pack-widths`` the packing and unpacking times per width
(:func:`bitpack_widths`).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from secagg import bitpack
from secagg import rotation as rotation_module
from secagg._cli_options import MAX_CLIENTS, MAX_DIM, MAX_REPEATS, _integer, _real
from secagg._install import install_hint
from secagg._outputs import run_tool
from secagg.encoding import QuantizationConfig, quantize
from secagg.errors import ConfigurationError
from secagg.masking.benchmark import harary_config
from secagg.masking.config import MaskingConfig
from secagg.primitives import prg
from secagg.rotation import Rotation

from . import compression_accuracy as accuracy
from .checks import _first_problem
from .common import RunContext, resolve, row_line, utc_now
from .progress import Progress
from .report import Column, Row, SuiteReport, Target

__all__ = ["COLUMNS", "METRIC_NOTES", "OPTIONS", "PRESETS", "TITLE", "main", "rotation_vs_masking", "run"]

METRIC_NOTES = {
    "rotation_forward_s": "CPU seconds, median, interleaved with mask_s: Rotation.forward of a d-vector of doubles "
    "(one client, one round)",
    "rotation_inverse_s": "CPU seconds, median, interleaved with mask_s: Rotation.inverse of the padded aggregate "
    "(the server, once a round)",
    "rotation_numpy_forward_s": "CPU seconds, median, same rounds: rotation_forward_s on the numpy backend "
    "(SECAGG_ROTATION_BACKEND=numpy; bit-identical output)",
    "rotation_numpy_inverse_s": "CPU seconds, median, same rounds: rotation_inverse_s on the numpy backend",
    "mask_s": "CPU seconds, median: self-mask expansion + input add + k pairwise-mask expansions added in place "
    "(uint32)",
    "rotation_over_mask": "rotation_forward_s / mask_s (the issue's target: <= 1)",
    "rotation_inverse_over_mask": "rotation_inverse_s / mask_s",
    "quantize_s": "CPU seconds, median: quantize the rotated vector (16 bits, stochastic rounding)",
    "pack_s": "CPU seconds, median: bit-pack the padded vector to b bits",
    "unpack_s": "CPU seconds, median: unpack it (length and padding checks included)",
    "bytes_per_parameter": "packed bytes / d (padding of the rotation included), against 4.0 for Z_(2^32) words",
}


def _on_numpy(operation: Callable[[], object]) -> Callable[[], object]:
    """``operation`` run with the rotation forced to its numpy backend (the variable restored after)."""

    def run() -> object:
        previous = os.environ.get(rotation_module.BACKEND_VARIABLE)
        os.environ[rotation_module.BACKEND_VARIABLE] = "numpy"
        try:
            return operation()
        finally:
            if previous is None:
                del os.environ[rotation_module.BACKEND_VARIABLE]
            else:
                os.environ[rotation_module.BACKEND_VARIABLE] = previous

    return run


def _config(num_clients: int, dim: int, graph: str, dropout: float) -> MaskingConfig:
    if graph == "complete":
        return MaskingConfig.secagg(num_clients, dim, mode="semi-honest")
    return harary_config(num_clients, dim, dropout)


def interleaved_cpu_medians(operations: Mapping[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median CPU seconds (``time.process_time``) of each operation, the operations run in turn ``repeats`` times.

    Interleaving gives each operation the same share of a shared machine's load
    over the run, and CPU time leaves out the time other processes hold the
    core, so the ratios of these medians are what one run can compare.
    """
    samples: dict[str, list[float]] = {name: [] for name in operations}
    for _ in range(repeats):
        for name, operation in operations.items():
            started = time.process_time()
            operation()
            samples[name].append(time.process_time() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def rotation_vs_masking(
    dim: int = 1_000_000,
    num_clients: int = 100,
    graph: str = "harary",
    dropout: float = 0.1,
    bits: int = 12,
    repeats: int = 7,
) -> dict[str, Any]:
    """One row: the rotation, masking, quantization and packing of one d-vector, medians of ``repeats``."""
    config = _config(num_clients, dim, graph, dropout)
    rng = np.random.default_rng(0)
    update = rng.normal(size=dim)
    rotation = Rotation(os.urandom(32), dim)
    rotated = rotation.forward(update)

    inputs = rng.integers(0, 1 << 32, dim, dtype=np.uint32)
    seeds = [os.urandom(32) for _ in range(config.degree)]
    self_seed = os.urandom(32)

    def mask() -> None:
        vector = np.empty(dim, dtype=np.uint32)
        prg.expand_into(vector, self_seed, b"self-mask")
        np.add(vector, inputs, out=vector)
        for index, seed in enumerate(seeds):
            prg.add_expansion(vector, seed, b"pairwise-mask", subtract=bool(index % 2))

    quantization = QuantizationConfig(clip=4.0, bits=16, num_clients=num_clients)
    narrow = rng.integers(0, 1 << bits, rotation.padded_dimension, dtype=np.uint64).astype(
        np.uint32 if bits <= 32 else np.uint64
    )
    packed = bitpack.pack(narrow, bits)

    backend = rotation_module.backend()
    numpy_runs: dict[str, Callable[[], object]] = {}
    if backend != "numpy":
        numpy_runs = {
            "numpy_forward": _on_numpy(lambda: rotation.forward(update)),
            "numpy_inverse": _on_numpy(lambda: rotation.inverse(rotated)),
        }
    cpu = interleaved_cpu_medians(
        {
            "forward": lambda: rotation.forward(update),
            "inverse": lambda: rotation.inverse(rotated),
            **numpy_runs,
            "mask": mask,
            "quantize": lambda: quantize(rotated, quantization, rng),
            "pack": lambda: bitpack.pack(narrow, bits),
            "unpack": lambda: bitpack.unpack(packed, rotation.padded_dimension, bits),
        },
        repeats,
    )
    forward_s, inverse_s, mask_s = cpu["forward"], cpu["inverse"], cpu["mask"]
    return {
        "params": {
            "dim": dim,
            "padded_dim": rotation.padded_dimension,
            "clients": num_clients,
            "graph": graph,
            "degree": config.degree,
            "bits": bits,
            "rotation_backend": backend,
        },
        "metrics": {
            "rotation_forward_s": forward_s,
            "rotation_inverse_s": inverse_s,
            "rotation_numpy_forward_s": cpu.get("numpy_forward", forward_s),
            "rotation_numpy_inverse_s": cpu.get("numpy_inverse", inverse_s),
            "mask_s": mask_s,
            "rotation_over_mask": forward_s / mask_s,
            "rotation_inverse_over_mask": inverse_s / mask_s,
            "quantize_s": cpu["quantize"],
            "pack_s": cpu["pack"],
            "unpack_s": cpu["unpack"],
            "bytes_per_parameter": len(packed) / dim,
        },
    }


PACK_WIDTHS = (8, 12, 16, 20, 24, 32)
"""The narrow-ring widths :func:`bitpack_widths` measures by default."""


def bitpack_widths(dim: int = 1_000_000, widths: tuple[int, ...] = PACK_WIDTHS, repeats: int = 7) -> dict[str, Any]:
    """CPU-time medians of packing and unpacking ``dim`` uniform b-bit values, for each b (interleaved)."""
    rng = np.random.default_rng(0)
    operations: dict[str, Callable[[], object]] = {}
    for bits in widths:
        values = rng.integers(0, 1 << bits, dim, dtype=np.uint64).astype(np.uint32 if bits <= 32 else np.uint64)
        packed = bitpack.pack(values, bits)
        operations[f"pack_{bits}"] = functools.partial(bitpack.pack, values, bits)
        operations[f"unpack_{bits}"] = functools.partial(bitpack.unpack, packed, dim, bits)
    cpu = interleaved_cpu_medians(operations, repeats)
    return {
        "params": {"dim": dim, "widths": list(widths), "repeats": repeats},
        "metrics": {f"{name}_s": seconds for name, seconds in cpu.items()},
    }


def rotation_blocks(dim: int = 1_000_000, blocks: tuple[int, ...] = (), repeats: int = 7) -> dict[str, Any]:
    """CPU-time medians of Rotation.forward at d = ``dim`` with one block (the default) and each explicit block size,
    interleaved, and each one's ratio to the default (docs/compression.md, "Block size")."""
    update = np.random.default_rng(0).normal(size=dim)
    seed = os.urandom(32)
    rotations = {"default": Rotation(seed, dim), **{str(block): Rotation(seed, dim, block) for block in blocks}}
    cpu = interleaved_cpu_medians(
        {name: functools.partial(r.forward, update) for name, r in rotations.items()}, repeats
    )
    return {
        "params": {"dim": dim, "blocks": [r.block_size for r in rotations.values()], "repeats": repeats},
        "metrics": {
            **{f"forward_{r.block_size}_s": cpu[name] for name, r in rotations.items()},
            **{f"padded_{r.block_size}": r.padded_dimension for r in rotations.values()},
            **{f"forward_{r.block_size}_over_default": cpu[name] / cpu["default"] for name, r in rotations.items()},
        },
    }


# --- the suite ``secagg bench compression`` ------------------------------------------------

TITLE = "Compression: bytes per parameter in the secure sum, accuracy, and the rotation against masking"

OPTIONS = ("dataset", "aggregation", "bits", "sparsity", "bytes_per_parameter", "seeds", "rounds", "rotation_dim")

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"dataset": ["breast-cancer"], "aggregation": "secagg+", "bits": [16], "sparsity": [],
              "bytes_per_parameter": [accuracy.BUDGET], "seeds": 1, "rounds": 5, "rotation_dim": 1 << 16,
              "rotation_repeats": 3},
    "full": {"dataset": ["breast-cancer", "digits"], "aggregation": "secagg+", "bits": [16, 8],
             "sparsity": [0.5, 0.1], "bytes_per_parameter": [accuracy.BUDGET], "seeds": 10, "rounds": 20,
             "rotation_dim": 1_000_000, "rotation_repeats": 9},
    "custom": {"dataset": ["breast-cancer", "digits"], "aggregation": "secagg+", "bits": [16], "sparsity": [0.5],
               "bytes_per_parameter": [accuracy.BUDGET], "seeds": 3, "rounds": 20, "rotation_dim": 0,
               "rotation_repeats": 5},
}  # fmt: skip
"""``rotation_dim`` 0 skips the rotation row (``--rotation-dim 1000000`` asks for it)."""

COLUMNS = (
    *accuracy.COLUMNS,
    Column("rotation / masking", "metrics", "rotation_over_mask", "x"),
)

SUITE_METRIC_NOTES = {**accuracy.METRIC_NOTES, **METRIC_NOTES}


def run(overrides: Mapping[str, Any], context: RunContext) -> SuiteReport:
    """The rotation row (if asked), then every data set x setting of the preset (or the options given)."""
    if importlib.util.find_spec("sklearn") is None:
        raise ConfigurationError(f"the compression suite needs scikit-learn for the demo data: {install_hint('bench')}")
    started, clock = utc_now(), time.perf_counter()
    options = resolve(PRESETS, context.mode, overrides)
    floors = context.floors()
    grid = accuracy.settings(options)
    plan = [(dataset, setting) for dataset in options["dataset"] for setting in grid]
    rotation_dim = int(options["rotation_dim"])
    results: list[Row] = []
    with Progress(len(plan) + bool(rotation_dim), "compression", enabled=context.progress) as progress:
        if rotation_dim:
            progress.begin(f"rotation vs masking, d = {rotation_dim:,}")
            row = rotation_vs_masking(rotation_dim, repeats=int(options["rotation_repeats"]))
            row["params"]["setting"] = "rotation vs masking (SecAgg+, n = 100)"
            results.append(row)
            context.measured(row)
            progress.write("compression  " + row_line(row, COLUMNS))
            progress.advance()
        for dataset, setting in plan:
            progress.begin(f"{dataset} {setting['bits']} bits {setting['setting']}")
            row = accuracy.accuracy_row(dataset, options["aggregation"], setting, options["seeds"], options["rounds"])
            accuracy.relate(row, results)
            results.append(row)
            context.measured(row)
            progress.write("compression  " + row_line(row, COLUMNS))
            progress.advance()
    notes = [
        f"{options['aggregation']} through fl_core's aggregator, 5 hospitals, Dirichlet(0.5) label skew, "
        f"{options['rounds']} rounds, seeds 0..{options['seeds'] - 1} (the demo's data split and training per seed)",
        "partial updates: each round a public subset of coordinates drawn from the round's seed "
        "(secagg.sparsity), bound in the session descriptor; every hospital keeps what it did not send and adds it "
        "to its next update (error feedback)",
        "a budget (fl_core.budget) picks the quantization bits (16 down to 8), the smallest ring Z_(2^b) that cannot "
        "overflow for 5 hospitals of up to 4,096 samples, a rotation below 16 bits and then the largest subset that "
        "fits; masked vectors travel bit-packed, b bits a value; fixed settings use the word ring Z_(2^32)",
    ]
    found = accuracy.targets(results)
    for row in results:
        if "rotation_over_mask" in row["metrics"]:
            notes.append(
                f"rotation row: Rotation.forward of a d = {row['params']['dim']:,} vector against one client's masking "
                f"of the same vector (self-mask + input + k = {row['params']['degree']} pairwise masks, uint32)"
            )
            found.append(
                Target(
                    f"rotation at d = {row['params']['dim']:,} over masking the same vector",
                    "Rotation.forward / one client's mask expansion and adds, same d, CPU-time medians, interleaved "
                    f"(inverse / masking: {row['metrics']['rotation_inverse_over_mask']:.2f})",
                    row["metrics"]["rotation_over_mask"],
                    1.0,
                    "<=",
                    {"dim": row["params"]["dim"]},
                )
            )
    return context.report(
        "compression", started, clock, floors=floors, results=results, targets=found, notes=notes,
        metric_notes=SUITE_METRIC_NOTES,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.compression [--dim D] [--clients N] [--graph G] [--bits B] [--repeats R]
    [--pack-widths B ...] [--blocks B ...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    dim, widths = _integer(1, MAX_DIM), _integer(bitpack.MIN_BITS, bitpack.MAX_BITS)
    parser.add_argument("--dim", type=dim, default=1_000_000)
    parser.add_argument("--clients", type=_integer(3, MAX_CLIENTS), default=100)
    parser.add_argument("--graph", choices=["complete", "harary"], default="harary")
    parser.add_argument("--dropout", type=_real(0, 1, include_high=False), default=0.1)
    parser.add_argument("--bits", type=widths, default=12)
    parser.add_argument("--repeats", type=_integer(1, MAX_REPEATS), default=7)
    parser.add_argument(
        "--pack-widths", type=widths, nargs="*", default=None, metavar="B",
        help=f"also time bit packing and unpacking of --dim values at these widths (none given: {PACK_WIDTHS})",
    )  # fmt: skip
    parser.add_argument(
        "--blocks", type=dim, nargs="+", default=None, metavar="B",
        help="also time the forward rotation with these explicit block sizes against the default (one block)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    problem = _first_problem([(args.clients, args.graph, args.dropout)], graph_option=True)  # as secagg bench
    for block in args.blocks or ():
        try:
            Rotation(bytes(32), args.dim, block=block)
        except ConfigurationError as exc:
            problem = problem or f"argument --blocks: {exc}"
    if problem is not None:
        parser.error(problem)
    row = rotation_vs_masking(args.dim, args.clients, args.graph, args.dropout, args.bits, args.repeats)
    if args.pack_widths is not None:
        row["bitpack"] = bitpack_widths(args.dim, tuple(args.pack_widths) or PACK_WIDTHS, args.repeats)
    if args.blocks is not None:
        row["blocks"] = rotation_blocks(args.dim, tuple(args.blocks), args.repeats)
    print(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":  # a library error or Ctrl-C: one line, exit code 2 or 130
    raise SystemExit(run_tool("compression", main))
