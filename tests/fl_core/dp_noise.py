"""The fl_core DP tests' shared pieces: a sampler whose chosen draws leave their room (the one
seam for a noise overflow), and the five-hospital DP aggregator they run."""

from __future__ import annotations

from collections.abc import Callable, Collection
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pytest

from fl_core.aggregators import make_aggregator
from fl_core.dp import DPAggregator
from secagg.dp import DPConfig, RandomSource, SeededRandomSource
from secagg.dp import encoding as dp_encoding
from secagg.primitives.randomness import InsecureDeterministicRandom

Sampler = Callable[[Fraction | int, int, RandomSource | None], npt.NDArray[np.int64]]


def overflowing(
    monkeypatch: pytest.MonkeyPatch, calls: Collection[int], coordinate: int = 1, value: int = 2**40
) -> None:
    """The real sampler, except that its draws numbered ``calls`` (0-based: a round draws one per
    hospital, in order) get ``value`` at ``coordinate``: by default far beyond any encoding's range."""
    real: Sampler = dp_encoding.sample_discrete_gaussian
    count = [0]

    def sampler(variance: Fraction | int, size: int, source: RandomSource | None = None) -> npt.NDArray[np.int64]:
        noise = real(variance, size, source)
        if count[0] in calls:
            noise = noise.copy()
            noise[coordinate] = value
        count[0] += 1
        return noise

    monkeypatch.setattr(dp_encoding, "sample_discrete_gaussian", sampler)


def dp_aggregator(name: str, min_honest: int, *, dimension: int, label: bytes) -> DPAggregator:
    """aggregator ``name`` under DP (epsilon 3, delta 1e-5, 4 rounds, l2_clip 1, ``min_honest``) for
    5 hospitals of at most 100 samples; its noise seeded, a secagg one's randomness from ``label``."""
    config = DPConfig(epsilon=3.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=min_honest)
    options = {"random_bytes": InsecureDeterministicRandom(label)} if name.startswith("secagg") else {}
    built = make_aggregator(
        name, num_clients=5, dp=config, dimension=dimension, max_samples_per_client=100,
        noise_source=SeededRandomSource(bytes(32)), **options,
    )  # fmt: skip
    assert isinstance(built, DPAggregator)
    return built
