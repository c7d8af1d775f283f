"""Exact integer noise: discrete Laplace and discrete Gaussian samplers.

Canonne, Kamath, Steinke (NeurIPS 2020, "The Discrete Gaussian for Differential
Privacy"), Algorithms 1-3, in integer arithmetic only: no floating point lies on
the path from random bytes to noise, so the output distribution is exactly the
one the accountant assumes (a float sampler's rounding breaks the DP proof).
Parameters are rationals (``int`` or ``Fraction``).

The samplers are vectorised: every sample runs the same phases, and each phase
advances all samples still in it by one uniform draw per *sub-round*, reading
the bytes of a sub-round in one block, in increasing sample order. That byte
order is part of the specification (docs/spec.md, section 19), so a scalar
re-implementation reproduces the output bit for bit from the same bytes.

Values that do not fit in 64-bit words (large sigma^2, far tails) take an exact
Python-integer path with the same byte consumption.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from math import isqrt
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from secagg._validate import is_int, require_bytes, require_int
from secagg.errors import ConfigurationError, ConfigurationTypeError
from secagg.primitives.prg import SEED_SIZE, _keystream

__all__ = [
    "MAX_DENOMINATOR",
    "MAX_LAPLACE_SCALE",
    "MAX_SAMPLES",
    "MAX_SIGMA_SQUARED",
    "SAMPLER_LABEL",
    "WORD_SIZE",
    "RandomSource",
    "SeededRandomSource",
    "SystemRandomSource",
    "discrete_gaussian_pmf",
    "sample_discrete_gaussian",
    "sample_discrete_laplace",
]

WORD_SIZE = 8
"""Bytes per word of a uniform draw (read little-endian)."""
SAMPLER_LABEL = b"dp-sampler"
"""PRG label of :class:`SeededRandomSource` (domain separation from mask expansion)."""
MAX_SIGMA_SQUARED = 1 << 60
"""Largest sigma^2 accepted: keeps t = floor(sigma) + 1 and every output inside int64."""
MAX_LAPLACE_SCALE = 1 << 48
"""Largest discrete Laplace scale (and largest numerator of a rational scale)."""
MAX_DENOMINATOR = 1 << 64
"""Largest denominator of a rational sigma^2 or scale."""
MAX_SAMPLES = 1 << 28
"""Most samples one call returns (2 GiB of int64 output)."""

_CHUNK = 1 << 20
_U64_MAX = (1 << 64) - 1
_ZERO = np.uint64(0)
_NO_LIMIT = np.iinfo(np.int64).max
Array = npt.NDArray[Any]


@runtime_checkable
class RandomSource(Protocol):
    """A stream of random bytes: successive calls return successive bytes of the stream."""

    def random_bytes(self, n: int) -> bytes:
        """The next ``n`` bytes of the stream."""
        ...


@dataclass(frozen=True)
class SystemRandomSource:
    """The operating system's CSPRNG (``os.urandom``): the default for real noise."""

    def random_bytes(self, n: int) -> bytes:
        """``n`` fresh bytes from ``os.urandom``."""
        return os.urandom(require_int("random byte count", n, 0))


class SeededRandomSource:
    """A reproducible stream for tests and vectors. **Not for real noise**: anyone
    holding the seed can subtract the noise.

    Stream = AES-128-CTR keystream of the project PRG (docs/spec.md, section 5) with
    key HKDF-SHA256(seed, info = "secagg/v1/prg:dp-sampler").
    """

    def __init__(self, seed: bytes) -> None:
        self._stream = _keystream(require_bytes("sampler seed", seed, SEED_SIZE), SAMPLER_LABEL)

    def random_bytes(self, n: int) -> bytes:
        """The next ``n`` bytes of the keystream."""
        n = require_int("random byte count", n, 0)
        return b"".join(self._stream.update(bytes(min(_CHUNK, n - at))) for at in range(0, n, _CHUNK))


class _Reader:
    """Checks what a source returns: exactly the requested number of bytes."""

    def __init__(self, source: RandomSource | None) -> None:
        if source is None:
            source = SystemRandomSource()
        if not callable(getattr(source, "random_bytes", None)):
            raise ConfigurationTypeError(f"random source must have random_bytes(n), got {type(source).__name__}")
        self._source = source

    def take(self, n: int) -> bytes:
        data = self._source.random_bytes(n)
        if not isinstance(data, (bytes, bytearray)) or len(data) != n:
            raise ConfigurationError(f"random source returned {_describe(data)} for a request of {n} bytes")
        return bytes(data)

    def words(self, n: int) -> Array:
        return np.frombuffer(self.take(WORD_SIZE * n), dtype="<u8")


def _describe(data: object) -> str:
    return f"{len(data)} bytes" if isinstance(data, (bytes, bytearray)) else type(data).__name__


# --- uniform draws (section 19.2) --------------------------------------------------


def _uniform_words(reader: _Reader, m: Array | int, count: int) -> tuple[Array, Array]:
    """``count`` draws from [0, m) with ``1 <= m < 2^64``, one word each.

    Word w is accepted if w < 2^64 - (2^64 mod m) and then yields w mod m; a
    rejected draw is retried by the caller in the next sub-round (no modulo bias).
    """
    w = reader.words(count)
    if isinstance(m, int):
        rem = (1 << 64) % m
        return (w < np.uint64((1 << 64) - rem)) if rem else np.ones(count, dtype=bool), w % np.uint64(m)
    value = w % m
    # Same rule without a second division: w's block [w - v, w - v + m) must end by 2^64,
    # i.e. w - v <= 2^64 - m (computed by unsigned wrap-around; arrays wrap silently).
    return (w - value) <= (_ZERO - m), value


def _word_count(m: int) -> int:
    return max(1, -(-(m - 1).bit_length() // 64))


def _uniform_big(reader: _Reader, moduli: Array) -> tuple[Array, Array]:
    """Draws from [0, m) for any m >= 1 (``moduli``: an object array of Python ints):
    ceil(bitlen(m - 1) / 64) words (at least one), one little-endian integer; the
    same rejection rule with 2^(64 * words). Values are an object array."""
    width = _word_count(int(moduli.min()))
    if width == _word_count(int(moduli.max())):  # the usual case: one width (it grows with m), C loops
        words = reader.words(width * moduli.size).reshape(moduli.size, width)
        value = np.zeros(moduli.size, dtype=object)
        for j in range(width):
            value = value + (words[:, j].astype(object) << (64 * j))
        span = 1 << (64 * width)
        return (value < span - span % moduli).astype(bool), value % moduli
    counts = [_word_count(int(m)) for m in moduli]
    data = reader.take(WORD_SIZE * sum(counts))
    ok = np.zeros(len(counts), dtype=bool)
    values = np.zeros(len(counts), dtype=object)
    at = 0
    for i, (m, count) in enumerate(zip(moduli, counts, strict=True)):
        word = int.from_bytes(data[at : at + WORD_SIZE * count], "little")
        at += WORD_SIZE * count
        span = 1 << (64 * count)
        ok[i], values[i] = word < span - span % int(m), word % int(m)
    return ok, values


# --- Bernoulli(exp(-gamma)) (CKS Algorithm 1, section 19.3) ---------------------------


def _bern_exp_fraction(reader: _Reader, num: Array, den: int) -> Array:
    """Bernoulli(exp(-num/den)) per element, ``0 <= num < den``.

    K = 1; repeat: draw v from [0, den*K); if v < num then K += 1 else stop;
    the result is 1 iff K is odd. ``num`` is uint64 (den < 2^64) or object.
    """
    result = np.zeros(num.shape[0], dtype=bool)
    active = np.arange(num.shape[0])
    k = np.ones(num.shape[0], dtype=np.uint64)
    while active.size:
        if num.dtype != object and int(k.max()) <= _U64_MAX // den:
            ok, value = _uniform_words(reader, k * np.uint64(den), active.size)
            below = value < num
        else:
            ok, values = _uniform_big(reader, k.astype(object) * den)
            below = (values < num).astype(bool)
        hit = ok & below
        stop = ok & ~below
        result[active[stop]] = (k[stop] & np.uint64(1)) == 1
        k = k + hit.astype(np.uint64)
        keep = ~stop
        active, k, num = active[keep], k[keep], num[keep]
    return result


def _exp_minus_one_runs(reader: _Reader, limit: Array) -> Array:
    """Per element: Bernoulli(exp(-1)) trials until the first 0 or ``limit`` ones; the number of ones.

    One trial is Algorithm 1 with gamma = 1, whose first draw Bernoulli(1) is
    certain and skipped: K = 2; repeat: draw v from [0, K); if v == 0 then K += 1
    else stop; the trial's result is 1 iff K is odd. Elements with limit 0 draw nothing.
    """
    ones = limit.astype(np.int64)
    active = np.flatnonzero(limit > 0)
    left = ones[active]
    k = np.full(active.size, 2, dtype=np.uint64)
    while active.size:
        ok, value = _uniform_words(reader, k, active.size)
        hit = ok & (value == 0)
        end = ok & ~hit
        one = end & ((k & np.uint64(1)) == 1)
        k = np.where(end, np.uint64(2), k + hit)
        left -= one
        done = (end & ~one) | (left == 0)
        ones[active[done]] -= left[done]
        keep = ~done
        active, k, left = active[keep], k[keep], left[keep]
    return ones


# --- discrete Laplace (CKS Algorithm 2, section 19.4) --------------------------------


def _laplace_attempt(reader: _Reader, count: int, s: int, t: int) -> tuple[Array, Array]:
    """One attempt of Algorithm 2 (scale t/s) for ``count`` samples.

    Returns the positions (into 0..count-1) whose attempt succeeded and their signed values.
    """
    u = np.empty(count, dtype=np.uint64)
    need = np.arange(count)
    while need.size:  # phase U: U uniform in [0, t)
        ok, value = _uniform_words(reader, t, need.size)
        u[need[ok]] = value[ok]
        need = need[~ok]
    alive = np.flatnonzero(_bern_exp_fraction(reader, u, t))  # phase D
    v = _exp_minus_one_runs(reader, np.full(alive.size, _NO_LIMIT, dtype=np.int64))  # phase V
    y = (u[alive].astype(np.int64) + np.int64(t) * v) // np.int64(s)
    _, sign = _uniform_words(reader, 2, alive.size)  # phase B: never rejected, 2 divides 2^64
    negative = sign == 1
    good = ~(negative & (y == 0))
    return alive[good], np.where(negative[good], -y[good], y[good])


# --- discrete Gaussian (CKS Algorithm 3, section 19.5) ------------------------------


def _exponent(magnitude: Array, p: int, q: int, t: int) -> tuple[Array, Array]:
    """gamma = (|Y| - sigma^2/t)^2 / (2 sigma^2) = a^2 / d with a = |Y|qt - p, d = 2pqt^2.

    Returns (floor(gamma) as int64, a^2 mod d): uint64 when d < 2^64, else Python ints.
    Exact: numpy only where a < 2^32 (a^2 < 2^64) and d < 2^63, Python integers elsewhere.
    """
    d = 2 * p * q * t * t
    qt = q * t
    big = d >= 1 << 63 or qt * int(magnitude.max(initial=0)) + p >= 1 << 62
    if big:  # object arrays of Python ints: exact at any size
        square = np.abs(magnitude.astype(object) * qt - p) ** 2
        whole = (square // d).astype(np.int64)
        rest = square % d
        return whole, rest.astype(np.uint64) if d <= _U64_MAX else rest
    a = np.abs(magnitude * np.int64(qt) - np.int64(p)).astype(np.uint64)
    small = a < np.uint64(1 << 32)
    square = a * a
    whole = (square // np.uint64(d)).astype(np.int64)
    rest = square % np.uint64(d)
    for i in np.flatnonzero(~small):  # far tail: a^2 overflows 64 bits
        whole[i], r = divmod(int(a[i]) ** 2, d)
        rest[i] = r
    return whole, rest


def _gaussian_attempt(reader: _Reader, count: int, p: int, q: int, t: int) -> tuple[Array, Array]:
    """One attempt of Algorithm 3: a discrete Laplace candidate (scale t), accepted
    with probability exp(-gamma), drawn as floor(gamma) Bernoulli(exp(-1)) trials
    (phase G1) then Bernoulli(exp(-frac(gamma))) (phase G2)."""
    position, y = _laplace_attempt(reader, count, 1, t)
    whole, rest = _exponent(np.abs(y), p, q, t)
    passed = _exp_minus_one_runs(reader, whole) == whole  # phase G1
    accept = _bern_exp_fraction(reader, rest[passed], 2 * p * q * t * t)  # phase G2
    return position[passed][accept], y[passed][accept]


def _run(attempt: Callable[[int], tuple[Array, Array]], size: int) -> Array:
    """Repeat attempts over the pending samples (in index order) until every sample has a value."""
    out = np.zeros(size, dtype=np.int64)
    pending = np.arange(size)
    while pending.size:
        position, value = attempt(pending.size)
        out[pending[position]] = value
        done = np.zeros(pending.size, dtype=bool)
        done[position] = True
        pending = pending[~done]
    return out


def _rational(name: str, value: object, hi: int) -> Fraction:
    if isinstance(value, Fraction):
        number = value
    elif is_int(value):
        number = Fraction(int(value))  # type: ignore[call-overload]
    else:
        raise ConfigurationTypeError(
            f"{name} must be an int or fractions.Fraction, got {type(value).__name__}"
            " (convert a float explicitly with Fraction(x), which keeps its exact binary value)"
        )
    if number <= 0 or number > hi:
        raise ConfigurationError(f"{name} must be in (0, {hi}], got {number}")
    if number.denominator > MAX_DENOMINATOR:
        raise ConfigurationError(f"{name} has denominator {number.denominator} > 2^64")
    return number


def sample_discrete_gaussian(
    sigma_squared: Fraction | int, size: int, source: RandomSource | None = None
) -> npt.NDArray[np.int64]:
    """``size`` independent samples of N_Z(0, sigma^2): P(x) proportional to exp(-x^2 / (2 sigma^2)).

    ``sigma_squared``: a positive int or Fraction, at most ``MAX_SIGMA_SQUARED``.
    ``source``: the randomness (default :class:`SystemRandomSource`). Exact: the
    output law is the discrete Gaussian, not an approximation of it.
    """
    sigma2 = _rational("sigma^2", sigma_squared, MAX_SIGMA_SQUARED)
    size = require_int("sample size", size, 0, MAX_SAMPLES)
    reader = _Reader(source)
    p, q = sigma2.numerator, sigma2.denominator
    t = isqrt(p // q) + 1
    return _run(lambda count: _gaussian_attempt(reader, count, p, q, t), size)


def sample_discrete_laplace(
    scale: Fraction | int, size: int, source: RandomSource | None = None
) -> npt.NDArray[np.int64]:
    """``size`` samples with P(x) proportional to exp(-|x| / scale); ``scale`` a positive int or Fraction."""
    rational = _rational("discrete Laplace scale", scale, MAX_LAPLACE_SCALE)
    if rational.numerator > MAX_LAPLACE_SCALE:
        raise ConfigurationError(f"discrete Laplace scale numerator must be at most 2^48, got {rational.numerator}")
    size = require_int("sample size", size, 0, MAX_SAMPLES)
    reader = _Reader(source)
    s, t = rational.denominator, rational.numerator
    return _run(lambda count: _laplace_attempt(reader, count, s, t), size)


def discrete_gaussian_pmf(sigma_squared: Fraction | int, values: Iterable[int] | Array) -> npt.NDArray[np.float64]:
    """P(X = x) for X ~ N_Z(0, sigma^2), computed with mpmath at 50 digits (for tests, not sampling).

    The normaliser sum_n exp(-n^2 / (2 sigma^2)) is summed directly for sigma^2 < 1
    and by Poisson summation, sqrt(2 pi sigma^2) * sum_k exp(-2 pi^2 sigma^2 k^2), otherwise.
    """
    import mpmath  # type: ignore[import-untyped]  # noqa: PLC0415 - test-only dependency, not needed to sample

    sigma2 = _rational("sigma^2", sigma_squared, MAX_SIGMA_SQUARED)
    with mpmath.workdps(50):
        s2 = mpmath.mpf(sigma2.numerator) / sigma2.denominator
        if sigma2 < 1:
            norm = 1 + 2 * mpmath.fsum(mpmath.exp(-mpmath.mpf(n * n) / (2 * s2)) for n in range(1, 200))
        else:
            poisson = mpmath.fsum(mpmath.exp(-2 * mpmath.pi**2 * s2 * k * k) for k in range(1, 20))
            norm = mpmath.sqrt(2 * mpmath.pi * s2) * (1 + 2 * poisson)
        return np.array(
            [float(mpmath.exp(-(mpmath.mpf(int(x)) ** 2) / (2 * s2)) / norm) for x in values], dtype=np.float64
        )
