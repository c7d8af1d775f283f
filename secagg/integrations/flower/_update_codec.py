"""A node's update as integers: ``(w * q(delta), w)`` encoded, and the sum decoded.

:func:`encode_integers` is one node's contribution before any ring or packing;
:func:`encode_update` puts it in the masking ring, :func:`packed_value_bits` gives its
bits in Paillier packing; :func:`decode_sum` / :func:`decode_integers` turn the sum of
``n`` encodings back into the weighted mean and the weight total, refusing sums no
``n`` honest encodings reach. Re-exported by :mod:`secagg.integrations.flower.protocol`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from secagg.encoding import IntArray, QuantizationConfig, from_ring, quantize_to_integers, to_ring
from secagg.errors import ConfigurationError, OverflowDetectedError
from secagg.ring import RingVector

__all__ = ["decode_integers", "decode_sum", "encode_integers", "encode_update", "packed_value_bits"]


def encode_integers(
    delta: npt.NDArray[np.float64], weight: int, config: QuantizationConfig, rng: np.random.Generator
) -> IntArray:
    """``(weight * q(delta), weight)`` as signed int64: one node's contribution before any ring or packing.

    ``q`` is the stochastic quantization of :mod:`secagg.encoding` with ``rng``
    the rounding randomness. Raises ConfigurationError if ``weight`` is not in
    ``1..config.max_weight`` or ``delta`` is not finite.
    """
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= config.max_weight:
        raise ConfigurationError(f"weight must be an integer in 1..{config.max_weight}, got {weight}")
    q = quantize_to_integers(delta, config, rng)
    encoded = np.empty(q.shape[0] + 1, dtype=np.int64)
    np.multiply(q, weight, out=encoded[:-1])
    encoded[-1] = weight
    return encoded


def encode_update(
    delta: npt.NDArray[np.float64], weight: int, config: QuantizationConfig, rng: np.random.Generator
) -> RingVector:
    """:func:`encode_integers` in the config's ring: one node's masking contribution."""
    return to_ring(encode_integers(delta, weight, config, rng), config)


def decode_sum(total: RingVector, config: QuantizationConfig, num_summands: int) -> tuple[npt.NDArray[np.float64], int]:
    """The weighted mean update and the weight total from the ring sum of ``num_summands`` encodings.

    Raises OverflowDetectedError if the sum is impossible for that many
    encodings (a fault, never silently wrong numbers).
    """
    return decode_integers(from_ring(config.ring.check(total), config), config, num_summands)


def decode_integers(
    integers: IntArray, config: QuantizationConfig, num_summands: int
) -> tuple[npt.NDArray[np.float64], int]:
    """:func:`decode_sum` for the exact integer sum of ``num_summands`` :func:`encode_integers` outputs."""
    if integers.ndim != 1 or integers.shape[0] < 2 or not 1 <= num_summands <= config.num_clients:
        raise ConfigurationError("an encoded sum has at least two entries and 1..num_clients summands")
    bound = num_summands * config.max_weight
    weight_total = int(integers[-1])
    if not num_summands <= weight_total <= bound:
        raise OverflowDetectedError(
            f"decoded weight total {weight_total} is impossible for {num_summands} nodes "
            f"of weight <= {config.max_weight}"
        )
    sums = integers[:-1]
    # Compare min and max as Python ints: np.abs(-2^63) overflows int64 and stays negative.
    limit = bound * config.qmax
    if sums.size and (int(sums.min()) < -limit or int(sums.max()) > limit):
        raise OverflowDetectedError(f"decoded sum exceeds {limit} in magnitude, the most {num_summands} nodes reach")
    mean: npt.NDArray[np.float64] = sums.astype(np.float64) / (config.scale * weight_total)
    return mean, weight_total


def packed_value_bits(config: QuantizationConfig) -> int:
    """Bits of one signed packed value: ``bitlen(max_weight * qmax) + 1``, so that every entry
    of an :func:`encode_integers` output (``|w q| <= max_weight * qmax``, ``1 <= w <= max_weight``) fits:
    the ``value_bits`` of the round's bounded layout
    (:func:`~secagg.integrations.flower.protocol.paillier_layout`, values in ``[-B, B]``, ``B = max_weight * qmax``)."""
    return (config.max_weight * config.qmax).bit_length() + 1
