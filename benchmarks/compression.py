"""Compression primitives against masking: the rotation and bit packing at d = 10^6.

Issue 16's time target: rotating an update at d = 10^6 should cost no more than
masking the same vector, since every hospital does both each round. This module
measures, in one process and on the same d:

- ``rotation_forward_s`` / ``rotation_inverse_s``: :class:`secagg.rotation.Rotation`
  (a client rotates its update; the server un-rotates the aggregate once);
- ``mask_s``: the masking work of one client's MaskedInput step for the same
  configuration as the masking suite's target (self-mask expanded into the
  output, the input added, k pairwise masks added in place, 32-bit ring): the
  PRG part of ``client_mask_s`` in ``secagg bench masking``, without the key
  agreements and box openings, so the comparison is the harder one for the
  rotation;
- ``quantize_s``: quantizing the rotated vector (what follows the rotation);
- ``pack_s`` / ``unpack_s`` at b bits: the wire form of a narrow ring.

:func:`rotation_vs_masking` returns one row (``params`` and ``metrics``, as the
other suites' rows); a ``secagg bench compression`` suite can call it per
configuration. ``python -m benchmarks.compression`` prints the row.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from secagg import bitpack
from secagg._install import install_hint
from secagg.encoding import QuantizationConfig, quantize
from secagg.errors import ConfigurationError
from secagg.masking.benchmark import harary_config, median_seconds
from secagg.masking.config import MaskingConfig
from secagg.primitives import prg
from secagg.rotation import Rotation

from . import compression_accuracy as accuracy
from .common import RunContext, resolve, row_line, utc_now
from .progress import Progress
from .report import Column, Row, SuiteReport, Target

__all__ = ["COLUMNS", "METRIC_NOTES", "OPTIONS", "PRESETS", "TITLE", "main", "rotation_vs_masking", "run"]

METRIC_NOTES = {
    "rotation_forward_s": "seconds, median: Rotation.forward of a d-vector of doubles (one client, one round)",
    "rotation_inverse_s": "seconds, median: Rotation.inverse of the padded aggregate (the server, once a round)",
    "mask_s": "seconds, median: self-mask expansion + input add + k pairwise-mask expansions added in place (uint32)",
    "rotation_over_mask": "rotation_forward_s / mask_s (the issue's target: <= 1)",
    "quantize_s": "seconds, median: quantize the rotated vector (16 bits, stochastic rounding)",
    "pack_s": "seconds, median: bit-pack the padded vector to b bits",
    "unpack_s": "seconds, median: unpack it (length and padding checks included)",
    "bytes_per_parameter": "packed bytes / d (padding of the rotation included), against 4.0 for Z_(2^32) words",
}


def _config(num_clients: int, dim: int, graph: str, dropout: float) -> MaskingConfig:
    if graph == "complete":
        return MaskingConfig.secagg(num_clients, dim)
    return harary_config(num_clients, dim, dropout)


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

    forward_s = median_seconds(lambda: rotation.forward(update), repeats)
    inverse_s = median_seconds(lambda: rotation.inverse(rotated), repeats)
    mask_s = median_seconds(mask, repeats)
    return {
        "params": {
            "dim": dim,
            "padded_dim": rotation.padded_dimension,
            "clients": num_clients,
            "graph": graph,
            "degree": config.degree,
            "bits": bits,
        },
        "metrics": {
            "rotation_forward_s": forward_s,
            "rotation_inverse_s": inverse_s,
            "mask_s": mask_s,
            "rotation_over_mask": forward_s / mask_s,
            "quantize_s": median_seconds(lambda: quantize(rotated, quantization, rng), repeats),
            "pack_s": median_seconds(lambda: bitpack.pack(narrow, bits), repeats),
            "unpack_s": median_seconds(lambda: bitpack.unpack(packed, rotation.padded_dimension, bits), repeats),
            "bytes_per_parameter": len(packed) / dim,
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
                    "Rotation.forward seconds / one client's mask expansion and adds, same d, same process (medians)",
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
    """``python -m benchmarks.compression [--dim D] [--clients N] [--graph G] [--bits B] [--repeats R]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dim", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--graph", choices=["complete", "harary"], default="harary")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--bits", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    row = rotation_vs_masking(args.dim, args.clients, args.graph, args.dropout, args.bits, args.repeats)
    print(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
