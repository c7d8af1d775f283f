"""A sampler whose chosen draws leave their room: the DP tests' one seam for a noise overflow."""

from __future__ import annotations

from collections.abc import Callable, Collection
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pytest

from secagg.dp import RandomSource
from secagg.dp import encoding as dp_encoding

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
