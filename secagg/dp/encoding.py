"""The noised integer encoding: the seam where a hospital adds its noise share (any engine).

A hospital's DP contribution is ``round(x * scale) + N_Z(0, sigma^2)^d`` (stochastic
rounding, then exact discrete Gaussian noise from :func:`secagg.dp.sample_discrete_gaussian`),
computed on the hospital **before** masking or encryption (:func:`noised_encoding`).
:func:`dp_quantization` calibrates the noise and sizes the encoding; :func:`size_encoding`
sizes it for an existing plan (a federation whose round has other nodes than the first).

**No coordinate clipping (the rule).** A hospital's update has at most
``max_samples_per_client`` terms of norm <= ``l2_clip``, so every coordinate lies in
``[-R, R]`` with ``R = max_samples_per_client * l2_clip``; the encoding's range is at
least R, so no coordinate is ever clipped and there is no clipped-coordinate count to
report (it would be an un-noised, data-dependent release); :func:`noised_encoding`
refuses a contribution outside the range instead of clipping it. Nor is a sample count
sent: the encoding has no weight coordinate.

**Overflow.** ``qmax`` covers one hospital's clipped sum plus its own noise (:func:`noise_room`,
``noise_tail_bound(plan, 1, 2^-64)``, exceeded with probability below 2^-64 per coordinate;
:func:`noised_encoding` refuses a contribution beyond ``qmax`` less that room, and noise that
exceeds its room (:func:`noise_overflow`: an event of the noise alone, whatever the data, so the
encoding never leaves ``qmax``; that refusal's residual is in the accounted delta,
:mod:`secagg.dp.tail`). A caller that must know before a round is charged draws the noise first
(:func:`own_noise`) and hands it to :func:`noised_encoding` (fl_core's ``DPAggregator``), so every
protocol's per-value bound (ring, Paillier slots) holds for noised encodings; the ring must hold
``n * qmax + noise_tail_bound(plan, n)``; refused otherwise.

fl_core (:mod:`fl_core.dp`) and the Flower adapter both encode through this module.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

from secagg._validate import require_int, require_rng
from secagg.dp.calibration import NoisePlan, Preceding, calibrate, noise_tail_bound
from secagg.dp.config import DPConfig
from secagg.dp.sampler import RandomSource, sample_discrete_gaussian
from secagg.dp.tail import REFUSAL_PROBABILITY
from secagg.encoding import WORD_RINGS, QuantizationConfig
from secagg.errors import ConfigurationError, OverflowDetectedError

__all__ = [
    "MIN_SCALE_LOG2",
    "ROUNDING_SHARE",
    "check_contribution",
    "dp_quantization",
    "dp_scale",
    "noise_overflow",
    "noise_room",
    "noised_encoding",
    "own_noise",
    "size_encoding",
]

ROUNDING_SHARE = 0.01
"""The scale is the smallest power of two at which the rounding term sqrt(d) of the integer
sensitivity is at most this share of the clip term ``l2_clip * scale``."""

MIN_SCALE_LOG2 = 4


def dp_scale(l2_clip: float, dimension: int) -> float:
    """Quantization steps per model unit: the smallest power of two >= 2^4 with
    ``sqrt(d) <= ROUNDING_SHARE * l2_clip * scale`` (rounding adds at most 1% to Delta2)."""
    if not (math.isfinite(l2_clip) and l2_clip > 0) or dimension < 1:
        raise ConfigurationError(f"need l2_clip > 0 and dimension >= 1, got {l2_clip}, {dimension}")
    wanted = math.sqrt(dimension) / (ROUNDING_SHARE * l2_clip)
    return float(2 ** max(MIN_SCALE_LOG2, math.ceil(math.log2(wanted))))


def noise_room(plan: NoisePlan) -> int:
    """The room an encoding keeps for its hospital's own noise: ``noise_tail_bound(plan, 1, 2^-64)``,
    exceeded with the per-coordinate probability the refusal residual accounts (:mod:`secagg.dp.tail`)."""
    return noise_tail_bound(plan, 1, REFUSAL_PROBABILITY)


@functools.lru_cache(maxsize=64)
def calibrated(
    config: DPConfig, num_clients: int, scale: float, dimension: int, preceding: Preceding = ()
) -> NoisePlan:
    """:func:`secagg.dp.calibrate`, remembered: a NoisePlan is immutable and depends only on these."""
    return calibrate(config, num_clients=num_clients, scale=scale, dimension=dimension, preceding=preceding)


def size_encoding(
    plan: NoisePlan, *, num_clients: int, max_samples_per_client: int, ring_bits: int | str | None = None
) -> tuple[QuantizationConfig, int]:
    """The encoding of ``plan``'s noised contributions for ``num_clients`` summands: ``(quantization, tail_bound)``.

    Range ``clip >= max_samples_per_client * l2_clip``, scale exactly ``plan.scale``; the
    ring (``ring_bits``; None or ``"word"``: the smallest of 32, 64 that fits; ``"smallest"``:
    the smallest b in 8..64 that fits) must hold ``num_clients * qmax + noise_tail_bound(plan, num_clients)``
    (the noised sum, at the tail's stated probability); ConfigurationError otherwise, and for a
    ``ring_bits`` outside 8..64 or another name (ConfigurationTypeError for one that is no
    integer nor string).
    """
    candidates: tuple[int, ...] = WORD_RINGS
    if isinstance(ring_bits, str):  # names first: an array compared with a string is no bool
        if ring_bits not in ("word", "smallest"):
            raise ConfigurationError(
                f"ring_bits takes an int in 8..64, 'word' (None, the default) or 'smallest', got {ring_bits!r}"
            )
        candidates = WORD_RINGS if ring_bits == "word" else tuple(range(8, 65))
    elif ring_bits is not None:  # not a bool read as a 1-bit ring, nor a width the loop below misnames
        candidates = (require_int("ring_bits", ring_bits, 8, 64),)
    scale, l2_clip = plan.scale, plan.config.l2_clip
    # One hospital's encoding: its clipped sum plus its own noise (tail 2^-64 per coordinate),
    # so every protocol's per-value bound (ring, Paillier slots) holds for noised encodings too.
    reach = math.ceil(max_samples_per_client * l2_clip * scale) + noise_room(plan)
    bits = reach.bit_length() + 1  # qmax = 2^(bits-1) - 1 >= reach
    qmax = (1 << (bits - 1)) - 1
    tail = noise_tail_bound(plan, num_clients)
    for candidate in candidates:
        if num_clients * qmax + tail <= (1 << (candidate - 1)) - 1 and bits <= candidate - 1:
            return QuantizationConfig(qmax / scale, bits, num_clients, candidate, max_weight=1), tail
    raise ConfigurationError(
        f"DP encoding could overflow: {num_clients} hospitals x {qmax} (range {max_samples_per_client} samples x "
        f"clip {l2_clip} at scale {scale:g}) + noise tail {tail} does not fit "
        f"Z_(2^{candidates[-1]}); lower max_samples_per_client or l2_clip"
    )


def dp_quantization(
    config: DPConfig,
    *,
    num_clients: int,
    dimension: int,
    max_samples_per_client: int,
    ring_bits: int | str | None = None,
    preceding: Preceding = (),
) -> tuple[NoisePlan, QuantizationConfig, int]:
    """Calibrate the noise (scale :func:`dp_scale`; composed after ``preceding`` releases) and
    size the encoding (:func:`size_encoding`): ``(plan, quantization, tail_bound)``."""
    scale = dp_scale(config.l2_clip, dimension)
    plan = calibrated(config, num_clients, scale, dimension, preceding)
    quantization, tail = size_encoding(
        plan, num_clients=num_clients, max_samples_per_client=max_samples_per_client, ring_bits=ring_bits
    )
    return plan, quantization, tail


def check_contribution(
    plan: NoisePlan, quantization: QuantizationConfig, contribution: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """``contribution`` as float64 if :func:`noised_encoding` accepts it (``plan.dimension`` finite
    coordinates within the range less the room for its own noise, at the plan's scale);
    ConfigurationError otherwise. Depends on the contribution only, not on any noise."""
    vector = np.asarray(contribution, dtype=np.float64)
    if vector.ndim != 1 or vector.shape[0] != plan.dimension:
        raise ConfigurationError(f"a DP contribution has {plan.dimension} coordinates, got shape {vector.shape}")
    if not np.all(np.isfinite(vector)):
        raise ConfigurationError("a DP contribution must be finite")
    scale = quantization.scale
    if scale != plan.scale:
        raise ConfigurationError(f"quantization scale {scale} differs from the noise plan's {plan.scale}")
    scaled = vector * scale
    # The range leaves room for this hospital's own noise: a coordinate within qmax - room is
    # pushed past qmax (refused below, which the server sees) only by noise beyond its 2^-64 tail,
    # whatever the coordinate; nearer qmax that refusal would be likely and depend on the data.
    accepted = quantization.qmax - noise_room(plan)
    if float(np.max(np.abs(scaled))) > accepted:
        raise ConfigurationError(
            f"a DP contribution coordinate exceeds the range {accepted / scale:g}: DP mode never clips "
            "coordinates (the clipped count would leak); clip per example and respect max_samples_per_client"
        )
    return vector


def own_noise(plan: NoisePlan, source: RandomSource | None = None) -> npt.NDArray[np.int64]:
    """One hospital's noise for one encoding: ``N_Z(0, sigma^2)^d`` from ``source`` (None: the OS
    CSPRNG; a seeded source only in tests). Check it with :func:`noise_overflow` before use."""
    return sample_discrete_gaussian(plan.variance, plan.dimension, source)


def noise_overflow(plan: NoisePlan, noise: npt.NDArray[np.int64]) -> str | None:
    """Why ``noise`` cannot go into an encoding (a coordinate beyond :func:`noise_room`: probability
    below ``d * 2^-64`` whatever the data, the refusal residual of :mod:`secagg.dp.tail`), or None.
    ConfigurationError if it is not ``plan.dimension`` integers."""
    values = np.asarray(noise)
    if values.ndim != 1 or values.shape[0] != plan.dimension or values.dtype.kind not in "iu":
        raise ConfigurationError(f"noise must be {plan.dimension} integers, got {values.dtype} {values.shape}")
    # Python ints of the extremes, not np.abs of int64: abs(-2^63) stays -2^63 in int64, and a
    # uint64 read as int64 wraps, so either would pass noise far beyond the room.
    room, worst = noise_room(plan), max(abs(int(values.min())), abs(int(values.max())))
    if worst <= room:
        return None
    return (
        f"its own noise exceeds its room ({worst} > {room}; probability below d x 2^-64, the refusal residual "
        "accounted in delta): its noise is never released"
    )


def noised_encoding(
    plan: NoisePlan,
    quantization: QuantizationConfig,
    contribution: npt.NDArray[np.float64],
    rounding_rng: np.random.Generator,
    source: RandomSource | None = None,
    *,
    noise: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.int64]:
    """A hospital's noised integer encoding of its float ``contribution``:
    ``round(contribution * scale) + N_Z(0, sigma^2)^d``.

    ``contribution`` must have ``plan.dimension`` finite coordinates within the encoding's
    range less the room for this hospital's own noise, ``(qmax - noise_room(plan)) / scale``
    (ConfigurationError otherwise; DP mode never clips a coordinate). OverflowDetectedError if
    the noise exceeds its room (:func:`noise_overflow`), with probability below ``d * 2^-64``
    whatever the contribution, a residual the plan's accounted delta includes
    (``plan.tail_delta``); within its room the encoding never leaves ``qmax``. Every honest sum
    (``max_samples_per_client`` clipped terms) is inside the range. ``rounding_rng`` drives the
    stochastic rounding (need not be secret); ``noise``, if given, is the hospital's noise drawn
    beforehand (:func:`own_noise`), else it is drawn from ``source`` (None: the OS CSPRNG; a
    seeded source only in tests). A ``rounding_rng`` that is no ``numpy.random.Generator`` (a legacy
    ``RandomState``) is a ConfigurationTypeError before any noise is drawn, as at every ``rng``.
    """
    require_rng("rounding_rng", rounding_rng)
    vector = check_contribution(plan, quantization, contribution)
    scaled = vector * quantization.scale
    floor = np.floor(scaled)
    rounded = (floor + (rounding_rng.random(vector.shape[0]) < scaled - floor)).astype(np.int64)
    drawn = own_noise(plan, source) if noise is None else noise
    overflow = noise_overflow(plan, drawn)
    if overflow is not None:
        raise OverflowDetectedError(f"a noised encoding: {overflow}")
    encoded: npt.NDArray[np.int64] = rounded + drawn.astype(np.int64)
    if int(np.max(np.abs(encoded))) > quantization.qmax:  # |rounded| <= qmax - room: cannot happen
        raise OverflowDetectedError("a noised encoding left the range its protocol is sized for; retry the round")
    return encoded
