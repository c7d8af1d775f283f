"""The library's Poisson sampler includes a patient with probability at most the accounted q.

Row i takes the i-th 8-byte word of the random source (little-endian) and keeps its top 53 bits
k, uniform below 2^53; it is included iff k < floor(q 2^53), an integer comparison: probability
floor(q 2^53) / 2^53 exactly, at most q. ``k / 2^53 < q`` would hold with probability
ceil(q 2^53) / 2^53, above q for every q < 1/2 that is not a multiple of 2^-53 (by up to 2^-53: a
relative 1e-10 at q = 1e-6, beyond the account's 1e-12 rounding). Sampling at a smaller rate than
accounted is covered by the bound (a further thinning of the sample is part of the mechanism).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from secagg.dp import poisson_mask
from secagg.dp.sampler import MAX_SAMPLES
from secagg.errors import ConfigurationError

LOW_BITS = (1 << 11) - 1
"""The 11 low bits of a word, below the 53 that make k: set, they must not matter."""


class Words:
    """A stand-in random source whose successive 8-byte words carry the given k in their top 53 bits."""

    def __init__(self, ks: list[int], low: int = LOW_BITS) -> None:
        self.data = b"".join(((k << 11) | low).to_bytes(8, "little") for k in ks)
        self.asked: list[int] = []

    def random_bytes(self, n: int) -> bytes:
        self.asked.append(n)
        out, self.data = self.data[:n], self.data[n:]
        return out


@pytest.mark.parametrize("q", [0.1, 1e-6, 0.3, 2.0**-60])
@pytest.mark.parametrize("low", [0, LOW_BITS])
def test_a_row_is_included_iff_its_top_53_bits_are_below_floor_q_2_53(q: float, low: int) -> None:
    # Included iff k < floor(q 2^53): floor(q 2^53) values of k out of 2^53, at most q.
    edge = math.floor(q * 2.0**53)
    ks = [edge, edge + 1] if edge == 0 else [edge - 1, edge, edge + 1]
    source = Words(ks, low)
    mask = poisson_mask(len(ks), q, source)
    assert mask.dtype == np.bool_
    assert list(mask) == [k < edge for k in ks]
    assert source.asked == [8 * len(ks)]  # 8 bytes a row, in one request


def test_a_rate_of_one_half_or_more_is_exact_already() -> None:
    # q 2^53 is an integer there: the rate is q exactly.
    edge = int(0.75 * 2**53)
    assert list(poisson_mask(2, 0.75, Words([edge - 1, edge]))) == [True, False]


@pytest.mark.parametrize("rate", [None, 1.0, 1])
def test_every_row_without_sampling_and_no_byte_drawn(rate: float | None) -> None:
    source = Words([])
    assert poisson_mask(4, rate, source).all()
    assert source.asked == []


@pytest.mark.parametrize("got", [7, 9, 0])
def test_a_source_returning_another_number_of_bytes_is_refused(got: int) -> None:
    class Short:
        def random_bytes(self, n: int) -> bytes:
            return bytes(got * (n // 8))

    with pytest.raises(ConfigurationError, match="random source returned"):
        poisson_mask(1, 0.5, Short())


@pytest.mark.parametrize("source", [np.random.default_rng(0), np.random.RandomState(0), object()])
def test_a_numpy_generator_or_other_object_is_refused_as_a_source(source: object) -> None:
    with pytest.raises(ConfigurationError, match="random_bytes"):
        poisson_mask(3, 0.5, source)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.5, 2.0, float("nan"), float("inf"), "x", True])
def test_a_rate_outside_0_1_is_refused(rate: object) -> None:
    with pytest.raises(ConfigurationError):
        poisson_mask(3, rate, Words([0, 0, 0]))  # type: ignore[arg-type]


class Unasked:
    """A source that must not be read: it records the request and refuses it."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def random_bytes(self, n: int) -> bytes:
        self.asked.append(n)
        raise AssertionError(f"asked for {n} bytes")


@pytest.mark.parametrize("rate", [0.5, None, 1.0])
def test_more_rows_than_the_samplers_bound_are_refused_before_any_draw(rate: float | None) -> None:
    # Without the bound, 2^28 + 1 rows asked the source for 2 GiB (or built a 256 MiB mask).
    source = Unasked()
    with pytest.raises(ConfigurationError, match="num_rows"):
        poisson_mask(MAX_SAMPLES + 1, rate, source)
    assert source.asked == []

