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
import json
import os
from typing import Any

import numpy as np

from secagg import bitpack
from secagg.encoding import QuantizationConfig, quantize
from secagg.masking.benchmark import harary_config, median_seconds
from secagg.masking.config import MaskingConfig
from secagg.primitives import prg
from secagg.rotation import Rotation

__all__ = ["METRIC_NOTES", "main", "rotation_vs_masking"]

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
