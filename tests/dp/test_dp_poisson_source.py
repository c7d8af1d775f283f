"""The Poisson sample is drawn from a secagg.dp random source, like the noise: the OS CSPRNG by default.

Zhu and Wang's amplification bound (secagg/dp/subsampling.py) holds only for a sample nobody but
the hospital can predict. The samplers drew it from numpy Generators (PCG64, not a CSPRNG, and a
caller's seeded Generator made it follow from the seed); ``secagg.dp.poisson_mask`` reads it from a
:class:`~secagg.dp.RandomSource`, ``os.urandom`` unless a test or vector seeds it.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.dp import SeededRandomSource, poisson_mask

SEED = bytes(32)
OTHER = bytes([1]) * 32


def _expected(data: bytes, rate: float) -> list[bool]:
    words = np.frombuffer(data, dtype="<u8")
    return [int(w) >> 11 < int(rate * 2**53) for w in words]


def test_the_sample_is_the_sources_words_compared_with_the_rate() -> None:
    mask = poisson_mask(1000, 0.3, SeededRandomSource(SEED))
    assert list(mask) == _expected(SeededRandomSource(SEED).random_bytes(8000), 0.3)


def test_a_seeded_source_reproduces_the_sample_and_another_seed_changes_it() -> None:
    first = poisson_mask(400, 0.5, SeededRandomSource(SEED))
    assert np.array_equal(first, poisson_mask(400, 0.5, SeededRandomSource(SEED)))
    assert not np.array_equal(first, poisson_mask(400, 0.5, SeededRandomSource(OTHER)))  # equal w.p. 2^-400


def test_the_default_source_is_the_os_csprng(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    def urandom(n: int) -> bytes:
        asked.append(n)
        return SeededRandomSource(SEED).random_bytes(n)

    monkeypatch.setattr("secagg.dp.sampler.os.urandom", urandom)
    mask = poisson_mask(50, 0.3)
    assert asked == [400]
    assert list(mask) == _expected(SeededRandomSource(SEED).random_bytes(400), 0.3)
