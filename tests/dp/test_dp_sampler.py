"""The exact noise sampler: bit-for-bit against a scalar reference written from
docs/spec.md section 19, its law against the exact pmf (chi-square, mean,
variance; shown able to fail on perturbed samplers), and its refusals.

Every test uses SeededRandomSource with a fixed seed, so it is deterministic.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from scipy import stats

from secagg.dp import (
    SeededRandomSource,
    SystemRandomSource,
    discrete_gaussian_pmf,
    sample_discrete_gaussian,
    sample_discrete_laplace,
)
from secagg.dp.sampler import _bern_exp_fraction, _exponent, _Reader
from secagg.errors import ConfigurationError, ConfigurationTypeError
from secagg.vectors import load_vectors

# --- scalar reference, from the text of docs/spec.md section 19 -------------------------


def seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def draw(source: SeededRandomSource, m: int) -> int | None:
    """19.2: c words, little-endian, accepted below 2^(64c) - (2^(64c) mod m)."""
    c = max(1, -(-(m - 1).bit_length() // 64))
    w = int.from_bytes(source.random_bytes(8 * c), "little")
    span = 1 << (64 * c)
    return w % m if w < span - span % m else None


def phase(states: list[list[int]], step: Callable[[list[int]], bool]) -> None:
    """19.3: sub-rounds; each unfinished sample draws once, in index order. ``step``
    makes one draw and updates one state, returning True when the sample is finished."""
    active = list(range(len(states)))
    while active:
        active = [i for i in active if not step(states[i])]


def phase_e(source: SeededRandomSource, pairs: list[tuple[int, int]]) -> list[int]:
    """E(num, den): state [num, den, K, result]."""
    states = [[num, den, 1, -1] for num, den in pairs]

    def step(state: list[int]) -> bool:
        v = draw(source, state[1] * state[2])
        if v is None:
            return False
        if v < state[0]:
            state[2] += 1
            return False
        state[3] = state[2] % 2
        return True

    phase(states, step)
    return [state[3] for state in states]


def phase_r(source: SeededRandomSource, limits: list[int]) -> list[int]:
    """R(limit): state [limit, K, ones]; limit -1 means unlimited; limit 0 draws nothing."""
    states = [[limit, 2, 0] for limit in limits]

    def step(state: list[int]) -> bool:
        v = draw(source, state[1])
        if v is None:
            return False
        if v == 0:
            state[1] += 1
            return False
        if state[1] % 2 == 0:
            return True
        state[1], state[2] = 2, state[2] + 1
        return state[2] == state[0]

    phase([state for state in states if state[0] != 0], step)
    return [state[2] for state in states]


def laplace_attempt(source: SeededRandomSource, count: int, s: int, t: int) -> list[int | None]:
    """19.4 phases U, D, V, B; None for a failed attempt."""
    us: list[int] = []
    pending = list(range(count))
    values: dict[int, int] = {}
    while pending:
        still = []
        for i in pending:
            u = draw(source, t)
            if u is None:
                still.append(i)
            else:
                values[i] = u
        pending = still
    us = [values[i] for i in range(count)]
    alive = [i for i, d in enumerate(phase_e(source, [(u, t) for u in us])) if d == 1]
    vs = phase_r(source, [-1] * len(alive))
    out: list[int | None] = [None] * count
    for i, v in zip(alive, vs, strict=True):
        b = draw(source, 2)
        y = (us[i] + t * v) // s
        if not (b == 1 and y == 0):
            out[i] = -y if b == 1 else y
    return out


def reference(attempt: Callable[[int], list[int | None]], size: int) -> list[int]:
    out: list[int | None] = [None] * size
    pending = list(range(size))
    while pending:
        results = attempt(len(pending))
        for i, value in zip(pending, results, strict=True):
            out[i] = value
        pending = [i for i, value in zip(pending, results, strict=True) if value is None]
    return [int(x) for x in out if x is not None]


def reference_laplace(scale: Fraction, size: int, source: SeededRandomSource) -> list[int]:
    return reference(lambda n: laplace_attempt(source, n, scale.denominator, scale.numerator), size)


def reference_gaussian(sigma2: Fraction, size: int, source: SeededRandomSource) -> list[int]:
    p, q = sigma2.numerator, sigma2.denominator
    t = math.isqrt(p // q) + 1
    d = 2 * p * q * t * t

    def attempt(count: int) -> list[int | None]:
        ys = laplace_attempt(source, count, 1, t)
        alive = [i for i, y in enumerate(ys) if y is not None]
        splits = [divmod((abs(ys[i]) * q * t - p) ** 2, d) for i in alive]  # type: ignore[arg-type]
        ones = phase_r(source, [k for k, _ in splits])
        left = [(i, r) for i, (k, r), n in zip(alive, splits, ones, strict=True) if n == k]
        accepted = phase_e(source, [(r, d) for _, r in left])
        out: list[int | None] = [None] * count
        for (i, _), c in zip(left, accepted, strict=True):
            if c == 1:
                out[i] = ys[i]
        return out

    return reference(attempt, size)


@pytest.mark.parametrize(
    "sigma2",
    [
        Fraction(1, 2),
        Fraction(1),
        Fraction(3),
        Fraction(100),
        Fraction(10**6),
        Fraction(2**40),
        Fraction(10**13, 7),
        Fraction(1, 100),
        Fraction(2**63 - 25, 2**64 - 59),  # d just below 2^128: draws of 2 and 3 words in one sub-round
    ],
)
def test_vectorised_equals_scalar_reference(sigma2: Fraction) -> None:
    got = sample_discrete_gaussian(sigma2, 300, SeededRandomSource(seed(f"ref/{sigma2}")))
    expected = reference_gaussian(sigma2, 300, SeededRandomSource(seed(f"ref/{sigma2}")))
    assert got.tolist() == expected


@pytest.mark.parametrize("scale", [Fraction(1), Fraction(10), Fraction(7, 3), Fraction(1, 5), Fraction(10**9)])
def test_laplace_vectorised_equals_scalar_reference(scale: Fraction) -> None:
    got = sample_discrete_laplace(scale, 300, SeededRandomSource(seed(f"lap/{scale}")))
    assert got.tolist() == reference_laplace(scale, 300, SeededRandomSource(seed(f"lap/{scale}")))


def test_stream_continues_across_calls() -> None:
    source = SeededRandomSource(seed("continue"))
    first = sample_discrete_gaussian(5, 50, source).tolist()
    second = sample_discrete_gaussian(5, 50, source).tolist()
    replay = SeededRandomSource(seed("continue"))
    assert reference_gaussian(Fraction(5), 50, replay) == first
    assert reference_gaussian(Fraction(5), 50, replay) == second


def test_rejected_words_are_redrawn() -> None:
    """A source of all-0xff words makes every draw from [0, m) with m not a power of
    two rejected; the sampler then takes the next words (checked with the reference)."""

    class Skewed:
        """Every third 8-byte word of the stream is all ones (rejected unless m divides 2^64)."""

        def __init__(self) -> None:
            self.inner = SeededRandomSource(seed("skew"))
            self.offset = 0

        def random_bytes(self, n: int) -> bytes:
            data = bytearray(self.inner.random_bytes(n))
            for i in range(n):
                if ((self.offset + i) // 8) % 3 == 0:
                    data[i] = 0xFF
            self.offset += n
            return bytes(data)

    got = sample_discrete_gaussian(7, 40, Skewed()).tolist()
    assert got == reference_gaussian(Fraction(7), 40, Skewed())  # type: ignore[arg-type]
    assert got != sample_discrete_gaussian(7, 40, SeededRandomSource(seed("skew"))).tolist()


# --- the law --------------------------------------------------------------------------


def laplace_pmf(scale: Fraction, values: np.ndarray) -> np.ndarray:
    with mpmath.workdps(50):
        e = mpmath.exp(-1 / (mpmath.mpf(scale.numerator) / scale.denominator))
        norm = (1 - e) / (1 + e)
        return np.array([float(norm * e ** abs(int(x))) for x in values])


def chi_square_pvalue(samples: np.ndarray, support: np.ndarray, pmf: np.ndarray, min_expected: float = 20) -> float:
    """Pearson's chi-square over consecutive bins of ``support``, each with expected
    count >= ``min_expected`` (the two outer bins also take the mass outside)."""
    n = samples.size
    edges, masses, acc = [], [], 0.0
    for x, mass in zip(support, pmf, strict=True):
        acc += mass
        if acc * n >= min_expected:
            edges.append(x)
            masses.append(acc)
            acc = 0.0
    masses[-1] += acc + (1.0 - float(pmf.sum()))
    bins = np.searchsorted(np.array(edges), samples, side="left")
    observed = np.bincount(np.minimum(bins, len(edges) - 1), minlength=len(edges))
    expected = np.array(masses) * n
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return float(stats.chi2.sf(statistic, len(edges) - 1))


def gaussian_support(sigma2: Fraction) -> tuple[np.ndarray, np.ndarray]:
    bound = math.isqrt(int(sigma2 * 100)) + 3  # 10 sigma: mass outside < 1e-22
    support = np.arange(-bound, bound + 1)
    return support, discrete_gaussian_pmf(sigma2, support)


LAW_CASES = [
    (Fraction(1, 2), 10**6),
    (Fraction(1), 10**6),
    (Fraction(3), 10**6),
    (Fraction(100), 10**6),
    (Fraction(10**6), 3 * 10**5),
]


@pytest.mark.parametrize(("sigma2", "n"), LAW_CASES)
def test_gaussian_matches_pmf(sigma2: Fraction, n: int) -> None:
    samples = sample_discrete_gaussian(sigma2, n, SeededRandomSource(seed(f"law/{sigma2}")))
    support, pmf = gaussian_support(sigma2)
    assert chi_square_pvalue(samples, support, pmf) > 1e-4
    variance = float((support.astype(float) ** 2 * pmf).sum())
    fourth = float((support.astype(float) ** 4 * pmf).sum())
    assert abs(samples.mean()) < 6 * math.sqrt(variance / n)  # mean 0, 6 standard errors
    assert abs(float((samples.astype(float) ** 2).mean()) - variance) < 6 * math.sqrt((fourth - variance**2) / n)
    assert abs(int((samples > 0).sum()) - int((samples < 0).sum())) < 6 * math.sqrt(n)  # symmetric


def test_large_sigma_moments() -> None:
    """sigma^2 = 2^40 (Python-integer path, two-word draws): mean, variance and symmetry."""
    sigma2, n = 2**40, 20000
    samples = sample_discrete_gaussian(sigma2, n, SeededRandomSource(seed("law/large"))).astype(float)
    assert abs(samples.mean()) < 6 * math.sqrt(sigma2 / n)
    assert abs((samples**2).mean() / sigma2 - 1) < 6 * math.sqrt(2 / n)
    assert stats.kstest(samples / math.sqrt(sigma2), "norm").pvalue > 1e-4  # close to N(0, 1) at this scale


def test_chi_square_detects_sigma_five_percent_off() -> None:
    sigma2 = Fraction(100)
    samples = sample_discrete_gaussian(sigma2 * Fraction(105, 100), 10**6, SeededRandomSource(seed("law/100")))
    support, pmf = gaussian_support(sigma2)
    assert chi_square_pvalue(samples, support, pmf) < 1e-12


@pytest.mark.parametrize("scale", [Fraction(1, 2), Fraction(10), Fraction(7, 3)])
def test_laplace_matches_pmf(scale: Fraction) -> None:
    samples = sample_discrete_laplace(scale, 10**6, SeededRandomSource(seed(f"lap-law/{scale}")))
    bound = int(scale * 60) + 3
    support = np.arange(-bound, bound + 1)
    assert chi_square_pvalue(samples, support, laplace_pmf(scale, support)) > 1e-4


def test_chi_square_detects_biased_laplace_sign() -> None:
    """Flipping 3% of the negative samples to positive must fail the same check."""
    scale = Fraction(10)
    samples = sample_discrete_laplace(scale, 10**6, SeededRandomSource(seed("lap-law/10")))
    flip = (samples < 0) & (np.arange(samples.size) % 33 == 0)
    biased = np.where(flip, -samples, samples)
    support = np.arange(-603, 604)
    assert chi_square_pvalue(biased, support, laplace_pmf(scale, support)) < 1e-12


def test_pmf_sums_to_one_and_matches_direct_sum() -> None:
    for sigma2 in (Fraction(1, 2), Fraction(3), Fraction(10**6)):
        _, pmf = gaussian_support(sigma2)
        assert abs(pmf.sum() - 1) < 1e-12
    direct = sum(math.exp(-(x * x) / 6) for x in range(-60, 61))
    assert discrete_gaussian_pmf(3, [0, 2])[1] == pytest.approx(math.exp(-4 / 6) / direct, rel=1e-12)


# --- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize("sigma2", [0, -1, Fraction(-1, 2), 2**60 + 1, Fraction(1, 2**65)])
def test_bad_sigma_refused(sigma2: object) -> None:
    with pytest.raises(ConfigurationError):
        sample_discrete_gaussian(sigma2, 1, SeededRandomSource(bytes(32)))  # type: ignore[arg-type]


@pytest.mark.parametrize("sigma2", [1.5, 2.0, float("nan"), True, "3", None])
def test_non_rational_sigma_refused(sigma2: object) -> None:
    with pytest.raises(ConfigurationTypeError):
        sample_discrete_gaussian(sigma2, 1)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationTypeError):
        sample_discrete_laplace(sigma2, 1)  # type: ignore[arg-type]


def test_float_accepted_only_through_fraction() -> None:
    assert sample_discrete_gaussian(Fraction(2.5), 3, SeededRandomSource(bytes(32))).shape == (3,)


@pytest.mark.parametrize("size", [-1, 2**28 + 1])
def test_bad_size_refused(size: int) -> None:
    with pytest.raises(ConfigurationError):
        sample_discrete_gaussian(1, size)
    with pytest.raises(ConfigurationError):
        sample_discrete_laplace(1, size)


def test_size_type_and_zero() -> None:
    with pytest.raises(ConfigurationTypeError):
        sample_discrete_gaussian(1, 2.0)  # type: ignore[arg-type]
    source = SeededRandomSource(bytes(32))
    assert sample_discrete_gaussian(1, 0, source).shape == (0,)
    assert source.random_bytes(4) == SeededRandomSource(bytes(32)).random_bytes(4)  # n = 0 drew nothing


def test_bad_source_refused() -> None:
    with pytest.raises(ConfigurationTypeError):
        sample_discrete_gaussian(1, 1, object())  # type: ignore[arg-type]

    class Short:
        def random_bytes(self, n: int) -> bytes:
            return bytes(max(0, n - 1))

    with pytest.raises(ConfigurationError):
        sample_discrete_gaussian(1, 1, Short())
    with pytest.raises(ConfigurationError):
        SeededRandomSource(bytes(31))
    with pytest.raises(ConfigurationTypeError):
        SeededRandomSource("0" * 32)  # type: ignore[arg-type]


def test_laplace_scale_bounds() -> None:
    with pytest.raises(ConfigurationError):
        sample_discrete_laplace(Fraction(2**48 + 1, 3), 1)
    with pytest.raises(ConfigurationError):
        sample_discrete_laplace(0, 1)


def test_system_source_draws_fresh_noise() -> None:
    a = sample_discrete_gaussian(10**6, 64, SystemRandomSource())
    b = sample_discrete_gaussian(10**6, 64)
    assert a.dtype == np.int64 and a.shape == (64,)
    assert a.tolist() != b.tolist()


def test_scalar_reference_reproduces_committed_vectors() -> None:
    """The vectors pin the spec, not just this implementation: the reference agrees too."""
    for group in load_vectors("dp_sampler.json")["testGroups"]:
        for test in group["tests"]:
            if test["result"] != "valid" or group["type"] in ("DpSamplerStreamTest", "PoissonSampleTest"):
                continue
            source = SeededRandomSource(bytes.fromhex(test["seed"]))
            value = Fraction(test["parameter"])
            if group["type"] == "DiscreteGaussianTest":
                assert reference_gaussian(value, test["size"], source) == test["output"], test["comment"]
            else:
                assert reference_laplace(value, test["size"], source) == test["output"], test["comment"]


# --- paths that random inputs almost never reach --------------------------------------


def test_exponent_split_is_exact_on_every_path() -> None:
    """floor(a^2 / d) and a^2 mod d against Python integers: the numpy path, its far-tail
    fallback (a >= 2^32, probability about e^-44 at sigma = 10^4) and the object path."""
    for sigma2, magnitudes in [
        (Fraction(10**8), [0, 1, 9999, 10**4, 10**6, 430_000, 5 * 10**5, 10**7]),
        (Fraction(2**40), [0, 1, 2**20, 2**21, 2**30, 2**40]),
        (Fraction(10**13, 7), [0, 5, 10**6, 10**9]),
    ]:
        p, q = sigma2.numerator, sigma2.denominator
        t = math.isqrt(p // q) + 1
        d = 2 * p * q * t * t
        whole, rest = _exponent(np.array(magnitudes, dtype=np.int64), p, q, t)
        expected = [divmod((y * q * t - p) ** 2, d) for y in magnitudes]
        assert [(int(w), int(r)) for w, r in zip(whole, rest, strict=True)] == expected


def test_bernoulli_exp_crossing_64_bit_moduli_matches_reference() -> None:
    """E(num, den) with den just above 2^63: K = 1 draws one word, K >= 2 moves to the
    Python-integer path in the same phase; the bytes and results match the reference."""
    den = 2**63 + 5
    nums = [0, 1, den // 3, den // 2, den - 1] * 40
    got = _bern_exp_fraction(_Reader(SeededRandomSource(seed("cross"))), np.array(nums, dtype=np.uint64), den)
    expected = phase_e(SeededRandomSource(seed("cross")), [(n, den) for n in nums])
    assert got.astype(int).tolist() == expected
