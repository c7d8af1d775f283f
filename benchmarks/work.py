"""The work one SecAgg+ aggregation asks of a client and of the server, and two
implementations of it timed component by component: ours (:mod:`secagg`) and
Flower 1.41/1.42's (:mod:`secagg_bench.flower_peer`).

Both sides do the same operations on the same sizes, composed as each
implementation composes them in its protocol:

client
    two key pairs; 2k key agreements (k share-encryption keys, k mask seeds);
    Shamir shares of two secrets for the k neighbours; k share boxes sealed and
    k opened; quantization of d floats; k + 1 masks of d words added into the
    vector.
server
    t-of-k reconstruction of S self-mask seeds and D mask keys; the sum of n
    masked vectors; S self-masks and D x k pairwise masks (each with its key
    agreement) regenerated and removed.

S and D follow the masking suite's dropout schedule: of round(rate x n)
dropouts, the first half (rounded up) drop after ShareKeys and leave D
clients whose pairwise masks must be regenerated; the others still count.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from secagg import wire
from secagg.encoding import QuantizationConfig, quantize
from secagg.masking.benchmark import harary_config
from secagg.masking.messages import ShareBundle
from secagg.masking.session import (
    PAIR_MASK_LABEL,
    SELF_MASK_LABEL,
    pair_mask_seeds,
    pair_mask_subtracts,
    share_encryption_keys,
)
from secagg.primitives import aead, prg, shamir
from secagg.primitives.key_agreement import generate_keypair
from secagg.ring import RING32

__all__ = ["CLIENT_COMPONENTS", "SERVER_COMPONENTS", "Work", "measure_ours", "time_median"]

CLIENT_COMPONENTS = ("key agreement", "Shamir share", "share encryption", "quantization", "mask generation")
SERVER_COMPONENTS = ("Shamir reconstruct", "mask removal")

CLIP = 8.0
"""Clipping range of the quantization (Flower's default ``clipping_range``)."""

QUANTIZATION_BITS = 23
"""Our bits per value: qmax = 2^22 - 1, Flower's default ``quantization_range`` is 2^22."""


@dataclass(frozen=True)
class Work:
    """One aggregation's sizes: n clients, vectors of d, k neighbours, threshold t,
    S survivors whose self-masks are removed, D clients dropped after ShareKeys."""

    clients: int
    dim: int
    degree: int
    threshold: int
    survivors: int
    dropped: int

    @classmethod
    def secagg_plus(cls, clients: int, dim: int, dropout: float) -> Work:
        """The sizes our SecAgg+ picks for ``clients`` and ``dropout`` (k, t derived)."""
        config = harary_config(clients, dim, dropout)
        dropped = math.ceil(round(dropout * clients) / 2)
        return cls(clients, dim, config.degree, config.threshold, clients - dropped, dropped)

    def params(self) -> dict[str, Any]:
        """The sizes as report params."""
        return {
            "clients": self.clients,
            "dim": self.dim,
            "degree": self.degree,
            "threshold": self.threshold,
            "survivors": self.survivors,
            "dropped_after_sharing": self.dropped,
        }


MIN_SAMPLE_S = 0.05
"""Cheap operations are repeated until their samples add up to this (at most 200 calls)."""


def time_median(operation: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``operation`` over at least ``repeats`` calls (more, up to
    200, while the calls so far took less than :data:`MIN_SAMPLE_S` in total)."""
    samples: list[float] = []
    while len(samples) < max(1, repeats) or (sum(samples) < MIN_SAMPLE_S and len(samples) < 200):
        started = time.perf_counter()
        operation()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def update_vector(dim: int, seed: int = 0) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A model update of ``dim`` floats (values well inside the clip range)."""
    vector: np.ndarray[Any, np.dtype[np.float64]] = np.random.default_rng(seed).normal(0.0, 0.05, dim)
    return vector


def measure_ours(work: Work, repeats: int) -> dict[str, float]:
    """Seconds of each component (per client, and the server's) with :mod:`secagg`'s primitives."""
    k, t, me = work.degree, work.threshold, 1
    session = os.urandom(32)
    peers = [(2 + i, generate_keypair(), generate_keypair()) for i in range(k)]  # (id, encryption, mask) keys
    holders = [peer for peer, _, _ in peers]
    own_encryption, own_mask = generate_keypair(), generate_keypair()
    seed = os.urandom(prg.SEED_SIZE)

    def key_agreement() -> tuple[list[bytes], list[bytes]]:
        generate_keypair(), generate_keypair()
        box_keys = share_encryption_keys(own_encryption.private, [(p, e.public) for p, e, _ in peers], session, me)
        return box_keys, pair_mask_seeds(own_mask.private, [(p, m.public) for p, _, m in peers], session, me)

    box_keys, mask_seeds = key_agreement()

    def share() -> tuple[tuple[shamir.Share, ...], tuple[shamir.Share, ...]]:
        return shamir.split(own_mask.private, t, holders), shamir.split(seed, t, holders)

    key_shares, seed_shares = share()

    def share_encryption() -> None:
        boxes = []
        for (peer, _, _), key, key_share, seed_share in zip(peers, box_keys, key_shares, seed_shares, strict=True):
            size = shamir.VALUE_SIZE
            bundle = ShareBundle(
                me, peer, key_share.value.to_bytes(size, "big"), seed_share.value.to_bytes(size, "big")
            )
            ad = aead.share_associated_data(session, me, peer, 1)
            boxes.append((key, aead.seal(key, wire.encode(bundle), ad), ad))
        for key, sealed, ad in boxes:  # the same number of boxes arrive from the neighbours
            wire.decode(aead.open_sealed(key, sealed, ad), ShareBundle)

    update = update_vector(work.dim)
    config = QuantizationConfig(CLIP, QUANTIZATION_BITS, work.clients)
    rng = np.random.default_rng(1)
    quantized = quantize(update, config, rng)

    def masks() -> None:
        vector = quantized.copy()
        prg.add_expansion(vector, seed, SELF_MASK_LABEL)
        for (peer, _, _), pair_seed in zip(peers, mask_seeds, strict=True):
            prg.add_expansion(vector, pair_seed, PAIR_MASK_LABEL, subtract=pair_mask_subtracts(me, peer))

    def reconstruct() -> None:
        for _ in range(work.survivors):
            shamir.combine(seed_shares[:t], t)
        for _ in range(work.dropped):
            shamir.combine(key_shares[:t], t)

    masked = quantized.copy()

    def remove_masks() -> None:
        total = RING32.zeros(work.dim)
        for _ in range(work.clients):
            np.add(total, masked, out=total)
        for _ in range(work.survivors):
            prg.add_expansion(total, seed, SELF_MASK_LABEL, subtract=True)
        for _ in range(work.dropped):
            seeds = pair_mask_seeds(own_mask.private, [(p, m.public) for p, _, m in peers], session, me)
            for (peer, _, _), pair_seed in zip(peers, seeds, strict=True):
                prg.add_expansion(total, pair_seed, PAIR_MASK_LABEL, subtract=not pair_mask_subtracts(me, peer))

    heavy = max(1, repeats // 3) if work.dim >= 1_000_000 else repeats
    return {
        "key agreement": time_median(key_agreement, repeats),
        "Shamir share": time_median(share, repeats),
        "share encryption": time_median(share_encryption, repeats),
        "quantization": time_median(lambda: quantize(update, config, rng), heavy),
        "mask generation": time_median(masks, heavy),
        "Shamir reconstruct": time_median(reconstruct, max(1, repeats // 3)),
        "mask removal": time_median(remove_masks, 1),
    }
