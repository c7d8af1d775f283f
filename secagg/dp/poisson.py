"""Poisson sampling of patients: which rows take part in a DP round.

Each row is included independently with probability (at most) the accounted rate q, what the
amplification bound of :mod:`secagg.dp.subsampling` assumes. That bound holds only for a sample
nobody but the hospital can predict, so the sample is a secret as the noise is and comes from
the same kind of source: a :class:`~secagg.dp.RandomSource`, the OS CSPRNG (``os.urandom``) by
default, a :class:`~secagg.dp.SeededRandomSource` only in tests and vectors. A numpy Generator is
refused: PCG64 is no CSPRNG, and a seeded one makes the sample follow from its seed.

The rule, exact in integers: row i reads the i-th 8-byte word of the source (little-endian,
all rows' words in one request), keeps its top 53 bits k (uniform below 2^53) and is included iff
k < floor(q 2^53). That holds with probability floor(q 2^53) / 2^53: q when q 2^53 is an integer
(every q >= 1/2 that a float can hold), else a hair below, never above; a thinner sample than
accounted is covered by the bound (the thinning is part of the mechanism).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from secagg._validate import require_finite, require_int
from secagg.dp.sampler import MAX_SAMPLES, RandomSource, _Reader
from secagg.errors import ConfigurationError, ConfigurationTypeError

__all__ = ["INCLUSION_BITS", "inclusion_bound", "poisson_mask"]

INCLUSION_BITS = 53
"""Bits of each row's word compared with the rate (its top bits; the low 11 are unused)."""
_SHIFT = np.uint64(64 - INCLUSION_BITS)


def inclusion_bound(rate: float) -> int:
    """floor(rate 2^53): a row is included iff its 53-bit draw is below it (exact for a float rate:
    multiplying by a power of two loses nothing)."""
    return math.floor(rate * 2.0**INCLUSION_BITS)


def poisson_mask(num_rows: int, rate: float | None, source: RandomSource | None = None) -> npt.NDArray[np.bool_]:
    """Which of ``num_rows`` rows take part: each independently with probability floor(rate 2^53) / 2^53,
    at most ``rate`` (module docstring); every row, drawing nothing, if ``rate`` is None or 1.

    ``source``: the hospital's secret randomness (default: the OS CSPRNG); 8 bytes a row. Raises
    ConfigurationError for ``num_rows`` outside 0..MAX_SAMPLES (2^28, the noise samplers' bound: at
    most 2 GiB asked of the source), for a rate outside (0, 1] (a rate above 1 is refused, not read
    as 1), for a source without ``random_bytes(n)`` (a numpy Generator included), or one that returns
    another number of bytes than asked. docs/spec.md, section 19.6, states the rule.
    """
    num_rows = require_int("num_rows", num_rows, 0, MAX_SAMPLES)
    q = None if rate is None else require_finite("sampling rate", rate)
    if q is not None and not 0.0 < q <= 1.0:
        raise ConfigurationError(f"sampling rate must be in (0, 1], got {rate}")
    if isinstance(source, (np.random.Generator, np.random.RandomState)):
        raise ConfigurationTypeError(
            f"the Poisson sample's source must be a secagg.dp.RandomSource with random_bytes(n) (None: the OS "
            f"CSPRNG), got a numpy {type(source).__name__}: its draws are predictable (docs/privacy.md)"
        )
    reader = _Reader(source)  # checks the source even when nothing is drawn
    if q is None or q == 1.0:
        return np.ones(num_rows, dtype=bool)
    words = reader.words(num_rows)
    mask: npt.NDArray[np.bool_] = (words >> _SHIFT) < np.uint64(inclusion_bound(q))
    return mask
