"""Quantization: float vectors in, ring vectors out, and sums of them back to floats.

This is the only place where floats meet the cryptographic layer. A value x is
clipped to ``[-clip, clip]``, scaled by ``scale = (2^(bits-1) - 1) / clip`` and
rounded stochastically to an integer q with ``|q| <= qmax = 2^(bits-1) - 1``:
``q = floor(x * scale) + [u < frac(x * scale)]`` for u uniform in [0, 1), so
``E[q] = x * scale`` (unbiased). q is stored in two's complement in Z_(2^ring).

A sum of ``num_clients`` encodings, each multiplied by an integer weight of at
most ``max_weight``, stays within ``(-2^(ring-1), 2^(ring-1))`` exactly when
``num_clients * max_weight * qmax <= 2^(ring-1) - 1``; :class:`QuantizationConfig`
refuses any configuration for which that does not hold, so
``decode(sum of encodings) == sum of the integers`` with no wrap, bit for bit.
Invariant: ``dequantize(Σ quantize(x_i)) = Σ q_i / scale``, and each
``|q_i / scale - clip(x_i)| < 1 / scale`` (one quantization step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg._validate import check_fields, require_instance, require_int, require_real_array, require_rng
from secagg.errors import ConfigurationError, ConfigurationTypeError, OverflowDetectedError
from secagg.ring import NARROW_MAX_BITS, NARROW_MIN_BITS, NarrowRing, RingVector

__all__ = [
    "MAX_BITS",
    "MAX_WEIGHT",
    "RING_CHOICES",
    "WORD_RINGS",
    "QuantizationConfig",
    "dequantize",
    "from_ring",
    "quantize",
    "quantize_to_integers",
    "smallest_ring_bits",
    "to_ring",
]

MAX_BITS = 53
MAX_WEIGHT = (1 << 32) - 1
"""The largest ``max_weight``: the session descriptor (and a Flower RoundSetup) binds it as a u32."""
RING_CHOICES = tuple(range(NARROW_MIN_BITS, NARROW_MAX_BITS + 1))
"""The rings a federation's encodings can live in: Z_(2^b) for every b in 8..64,
smallest (cheapest on the wire: b bits per coordinate, bit-packed) first."""
WORD_RINGS = (32, 64)
"""The word rings, smallest first: what callers that want whole 32- or 64-bit words pick from."""


def smallest_ring_bits(
    bits: int, num_clients: int, max_weight: int = 1, choices: tuple[int, ...] = RING_CHOICES
) -> int:
    """The smallest ring of ``choices`` (default: every b in 8..64) in which ``num_clients``
    encodings of ``bits`` bits, each weighted by at most ``max_weight``, can never wrap:
    the smallest b with ``num_clients * max_weight * (2^(bits-1) - 1) <= 2^(b-1) - 1``.
    The ring follows the federation (a 5,000-row hospital or a 17th site needs a wider
    ring). ``choices=WORD_RINGS`` picks between Z_(2^32) and Z_(2^64) only.
    ConfigurationError (with the safe settings) if none fits."""
    bits = require_int("bits", bits)
    if not choices or any(b not in RING_CHOICES for b in choices):
        raise ConfigurationError(f"ring choices must be ring widths in {RING_CHOICES[0]}..{RING_CHOICES[-1]}")
    for ring_bits in sorted(choices):
        if num_clients * max_weight * ((1 << (bits - 1)) - 1) <= (1 << (ring_bits - 1)) - 1:
            return ring_bits
    QuantizationConfig(1.0, bits, num_clients, max(choices), max_weight=max_weight)  # raises, with advice
    raise AssertionError("unreachable: the largest ring overflows")


FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class QuantizationConfig:
    """How floats become ring elements, and for how many summands.

    Attributes:
        clip: values are clipped to ``[-clip, clip]`` (``clip > 0``, and ``qmax / clip`` finite).
        bits: bits per quantized value including the sign (2..ring_bits - 1).
        num_clients: the largest number of encodings that will be summed.
        ring_bits: the ring Z_(2^ring_bits), any of 8..64 (default 32; a narrow ring
            travels bit-packed, ``ring_bits`` bits per coordinate).
        max_weight: the largest integer weight a client multiplies its encoding
            by before summing (1 for a plain sum; the sample-count bound for a
            weighted mean); at most :data:`MAX_WEIGHT` (2^32 - 1).
    """

    clip: float
    bits: int
    num_clients: int
    ring_bits: int = 32
    max_weight: int = 1

    def __post_init__(self) -> None:
        check_fields(self, ints=("bits", "num_clients", "ring_bits", "max_weight"), reals=("clip",))
        NarrowRing(self.ring_bits)  # validates ring_bits: 8..64
        if not (np.isfinite(self.clip) and self.clip > 0):
            raise ConfigurationError(f"clip must be a positive finite number, got {self.clip}")
        if not 2 <= self.bits <= MAX_BITS:
            # Quantization runs in float64: beyond 53 bits the clip bound itself is inexact.
            raise ConfigurationError(f"bits must be in 2..{MAX_BITS} (float64 precision), got {self.bits}")
        if not np.isfinite(self.qmax / self.clip):
            # 0 * inf is NaN: a zero would not quantize to an integer at all.
            raise ConfigurationError(
                f"clip {self.clip!r} is too small for bits={self.bits}: "
                f"its scale {self.qmax} / clip is not a finite float64"
            )
        if self.num_clients < 1 or self.max_weight < 1:
            raise ConfigurationError("num_clients and max_weight must be at least 1")
        if self.max_weight > MAX_WEIGHT:
            raise ConfigurationError(
                f"max_weight must be at most {MAX_WEIGHT} (2^32 - 1: the session descriptor binds it as a u32), "
                f"got {self.max_weight}"
            )
        if self.num_clients * self.max_weight * self.qmax > self.limit:
            raise ConfigurationError(self._overflow_message())

    @property
    def ring(self) -> NarrowRing:
        """The ring the encodings live in (held in 32- or 64-bit words: :attr:`NarrowRing.container`)."""
        return NarrowRing(self.ring_bits)

    @property
    def qmax(self) -> int:
        """Largest quantized magnitude, 2^(bits-1) - 1."""
        return (1 << (self.bits - 1)) - 1

    @property
    def limit(self) -> int:
        """Largest magnitude a sum may reach without wrapping: 2^(ring-1) - 1."""
        return (1 << (self.ring_bits - 1)) - 1

    @property
    def scale(self) -> float:
        """Quantization steps per unit: qmax / clip."""
        return self.qmax / self.clip

    @property
    def step(self) -> float:
        """The size of one quantization step, 1 / scale."""
        return 1.0 / self.scale

    def _fits_some_ring(self) -> bool:
        return self.num_clients * self.max_weight * self.qmax <= (1 << (NARROW_MAX_BITS - 1)) - 1

    def _overflow_message(self) -> str:
        weight_total = self.num_clients * self.max_weight
        safe_bits = [b for b in range(2, MAX_BITS + 1) if weight_total * ((1 << (b - 1)) - 1) <= self.limit]
        safe_clients = self.limit // (self.max_weight * self.qmax)
        options = []
        if safe_bits:
            options.append(f"bits <= {max(safe_bits)} for {self.num_clients} clients")
        if safe_clients >= 1:
            options.append(f"at most {safe_clients} clients at bits={self.bits}")
        wider = smallest_ring_bits(self.bits, self.num_clients, self.max_weight) if self._fits_some_ring() else 0
        if wider > self.ring_bits:
            word = next(b for b in WORD_RINGS if b >= wider)
            options.append(f"ring_bits >= {wider}" + ("" if word == wider else f" (the word ring: ring_bits={word})"))
        advice = ", or ".join(options) if options else "a smaller max_weight or fewer clients"
        return (
            f"quantization could overflow Z_(2^{self.ring_bits}): {self.num_clients} clients x weight "
            f"{self.max_weight} x {self.qmax} (bits={self.bits}) exceeds {self.limit}. Safe settings: {advice}"
        )


def quantize_to_integers(values: npt.ArrayLike, config: QuantizationConfig, rng: np.random.Generator) -> IntArray:
    """Clip, scale and stochastically round ``values`` to integers in [-qmax, qmax].

    The clipped coordinates are not counted here (see :func:`quantize`; the reporting path
    is :func:`secagg.segments.quantize_segments`).

    ``rng`` supplies the rounding randomness (it need not be secret; it must be
    independent of the data). Non-finite inputs are refused, and so are arrays that are not
    real numbers (complex, object, string, date/time dtypes): only bool, integer and float
    arrays are taken.
    """
    require_instance("config", config, QuantizationConfig)
    require_rng("rng", rng)
    x = require_real_array("quantize", values)
    if not np.all(np.isfinite(x)):
        raise ConfigurationError("cannot quantize NaN or infinite values")
    # Clip after scaling: clip * (qmax / clip) can round just below qmax in float64.
    # A huge finite x may scale to +-inf, which the clip maps to +-qmax as intended.
    # In place where possible: each fresh d-sized temporary costs a pass over
    # new memory, and the arithmetic (hence every output) is the same either way.
    with np.errstate(over="ignore"):
        scaled = np.multiply(x, config.scale)
    np.clip(scaled, -config.qmax, config.qmax, out=scaled)
    rounded = np.floor(scaled)
    fraction = np.subtract(scaled, rounded, out=scaled)
    np.add(rounded, rng.random(x.shape[0]) < fraction, out=rounded)
    np.clip(rounded, -config.qmax, config.qmax, out=rounded)
    integers: IntArray = rounded.astype(np.int64)
    return integers


def quantize(values: npt.ArrayLike, config: QuantizationConfig, rng: np.random.Generator) -> RingVector:
    """Quantize ``values`` and store them in two's complement in the config's ring.

    Values beyond ``config.clip`` are clipped and not counted here: a caller that needs the
    count (the rule is clip *and report*) uses :func:`secagg.segments.quantize_segments`,
    which returns it per segment for the secure sum (:class:`~secagg.segments.ClippingReport`)."""
    return to_ring(quantize_to_integers(values, config, rng), config)


def to_ring(integers: npt.NDArray[Any], config: QuantizationConfig) -> RingVector:
    """Signed integers (|v| <= limit) in two's complement in Z_(2^ring_bits): ``v mod 2^ring_bits``
    in the ring's container words (high bits zero for a narrow ring)."""
    require_instance("config", config, QuantizationConfig)
    if not isinstance(integers, np.ndarray) or integers.dtype.kind not in "iu":
        raise ConfigurationTypeError(f"to_ring needs a numpy integer array, got {type(integers).__name__}")
    signed = np.asarray(integers, dtype=np.int64)
    ring = config.ring
    return ring.reduce(signed.view(np.uint64).astype(ring.dtype))


def from_ring(vector: RingVector, config: QuantizationConfig) -> IntArray:
    """Read a ring vector as signed integers in [-2^(ring-1), 2^(ring-1)): two's complement
    from bit ring_bits - 1, ``(v XOR 2^(ring-1)) - 2^(ring-1)``."""
    require_instance("config", config, QuantizationConfig)
    ring = config.ring
    ring.check(vector)
    if ring.bits in (32, 64):
        signed: IntArray = vector.view(np.int32 if ring.bits == 32 else np.int64).astype(np.int64)
        return signed
    half = np.int64(1 << (ring.bits - 1))
    extended: IntArray = np.bitwise_xor(vector.astype(np.int64), half)
    np.subtract(extended, half, out=extended)
    return extended


def dequantize(
    vector: RingVector, config: QuantizationConfig, num_summands: int = 1, weight_total: int = 1
) -> FloatArray:
    """Decode a ring sum of ``num_summands`` encodings back to floats.

    Returns the sum (divided by ``weight_total`` when a weighted mean is wanted).
    Raises OverflowDetectedError if a coordinate lies outside the range such a
    sum can reach, which means the encodings were not what the config promised.
    """
    require_instance("config", config, QuantizationConfig)
    num_summands = require_int("num_summands", num_summands)
    weight_total = require_int("weight_total", weight_total)
    if not 1 <= num_summands <= config.num_clients:
        raise ConfigurationError(f"num_summands must be in 1..{config.num_clients}, got {num_summands}")
    if weight_total < 1:
        raise ConfigurationError("weight_total must be at least 1")
    integers = from_ring(vector, config)
    bound = num_summands * config.max_weight * config.qmax
    # Compare min and max: np.abs(-2^63) overflows int64 and stays negative.
    if integers.size and (int(integers.min()) < -bound or int(integers.max()) > bound):
        raise OverflowDetectedError(
            f"decoded sum exceeds {bound}, the largest value {num_summands} summands can reach"
        )
    return integers.astype(np.float64) / (config.scale * weight_total)
