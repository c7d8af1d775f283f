"""What a :class:`~fl_core.aggregators.paillier.PaillierAggregator` is sized by before its key exists.

- its key's shape: t and ``min_contributors`` with the defaults filled in
  (:func:`paillier_shape`; its options checked, :func:`checked_shape`), and the honest floor of
  a full round (:func:`supported_honest`);
- the guarantee of a round of any n of its hospitals (:func:`round_guarantee`);
- its packing: the slot layout of the weighted values (:func:`packing_layout`), the split of
  values too wide for one slot into :data:`LIMB_BITS`-bit limbs (:func:`split_limbs`,
  :func:`join_limbs`) and the size of one ciphertext on the wire (:func:`ciphertext_bytes`).

A byte budget (:mod:`fl_core.budget`) and a DP build (:mod:`fl_core.dp_build`) use them before
the key ceremony; the aggregator uses the same functions after it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from secagg._validate import require_int
from secagg.dp.floors import decryption_floor
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError, OverflowDetectedError
from secagg.guarantee import Guarantee
from secagg.paillier import SlotLayout
from secagg.paillier.packing import MAX_SLOT_BITS, MAX_VALUE_BITS, minimal_slot_bits
from secagg.paillier.parameters import (
    check_declared_colluders,
    check_decryption_majority,
    default_contributors,
    default_threshold,
    threshold_guarantee,
)

__all__ = [
    "LIMB_BITS",
    "checked_shape",
    "ciphertext_bytes",
    "join_limbs",
    "packing_layout",
    "paillier_shape",
    "round_guarantee",
    "split_limbs",
    "supported_honest",
    "value_bits",
]

LIMB_BITS = 32
"""Limb width for values too wide for one packing slot."""

IntArray = npt.NDArray[np.int64]


def split_limbs(values: IntArray) -> IntArray:
    """``(high limbs, low limbs)`` with v = high * 2^32 + low, 0 <= low < 2^32."""
    split: IntArray = np.concatenate([values >> LIMB_BITS, values & ((1 << LIMB_BITS) - 1)])
    return split


def join_limbs(sums: IntArray) -> IntArray:
    """Inverse of :func:`split_limbs` on sums: sum(high) * 2^32 + sum(low), exactly."""
    half = sums.shape[0] // 2
    exact = (sums[:half].astype(object) << LIMB_BITS) + sums[half:].astype(object)
    try:
        joined: IntArray = np.array(exact, dtype=np.int64)
    except OverflowError as exc:
        raise OverflowDetectedError("recombined Paillier sum does not fit in 64 bits") from exc
    return joined


def value_bits(config: QuantizationConfig) -> int:
    """Bits of one signed weighted value: ``bitlen(max_weight * qmax) + 1``."""
    return (config.max_weight * config.qmax).bit_length() + 1


def packing_layout(config: QuantizationConfig, num_parties: int, key_bits: int) -> tuple[SlotLayout, bool]:
    """The slot layout of ``config``'s weighted values for ``num_parties`` summands under a
    ``key_bits``-bit key, and whether values are split into two :data:`LIMB_BITS` limbs (values
    too wide for one slot). Unsplit values ``|w q| <= max_weight * qmax`` use the bounded range
    (offset exactly ``max_weight * qmax``, slot ``bitlen(2 N max_weight qmax) + 1`` bits: one more
    than the smallest narrow ring); limbs use the 33-bit bit range. Needs no key: a byte budget
    sizes ciphertexts with it before the key ceremony (:mod:`fl_core.budget`)."""
    bound = config.max_weight * config.qmax
    split = value_bits(config) > MAX_VALUE_BITS or minimal_slot_bits(2 * bound, num_parties) > MAX_SLOT_BITS
    if split:
        return SlotLayout(LIMB_BITS + 1, num_parties, key_bits), True
    return SlotLayout.bounded(bound, num_parties, key_bits), False


def ciphertext_bytes(key_bits: int) -> int:
    """Bytes of one ciphertext of a ``key_bits``-bit key on the wire: 2 * ceil(key_bits / 8)."""
    return 2 * ((key_bits + 7) // 8)


def paillier_shape(
    num_parties: int, threshold: int | None, min_contributors: int | None, colluders: int | None = None
) -> tuple[int, int]:
    """(t, min_contributors) of a :class:`~fl_core.aggregators.paillier.PaillierAggregator` for
    ``num_parties`` hospitals, the defaults filled in: t by
    :func:`secagg.paillier.parameters.default_threshold` (``(l + c) // 2 + 1`` with c = ``colluders``
    declared, else the active masking default's trade-off: 5 hospitals 4-of-5, c = 2, one dropout),
    ``min_contributors = min(num_parties, max(2, t, c + 2))``."""
    t = threshold if threshold is not None else default_threshold(num_parties, colluders)
    contributors = min_contributors if min_contributors is not None else default_contributors(num_parties, t, colluders)
    return t, contributors


def checked_shape(
    num_parties: int, threshold: object, min_contributors: object, colluders: object
) -> tuple[int, int, int | None]:
    """:func:`paillier_shape` of a :class:`~fl_core.aggregators.paillier.PaillierAggregator`'s options,
    checked (ConfigurationError naming the option): t and ``min_contributors`` in 2..``num_parties``,
    ``colluders`` in 0..``num_parties - 2`` (None: the default), ``2t > l``
    (:func:`secagg.paillier.parameters.check_decryption_majority`) and the declared colluders'
    rules (:func:`secagg.paillier.parameters.check_declared_colluders`). Returns (t, min_contributors,
    colluders as an int or None)."""
    t = None if threshold is None else require_int("threshold", threshold, 2, num_parties)
    m = None if min_contributors is None else require_int("min_contributors", min_contributors, 2, num_parties)
    c = None if colluders is None else require_int("colluders", colluders, 0, num_parties - 2)
    t, m = paillier_shape(num_parties, t, m, c)
    if not 2 <= t <= num_parties:
        raise ConfigurationError(
            f"threshold must be in 2..{num_parties} (with t = 1 one hospital decrypts alone), got {t}"
        )
    if not 2 <= m <= num_parties:
        raise ConfigurationError(
            f"min_contributors must be in 2..{num_parties} (one upload would be decrypted alone), got {m}"
        )
    check_decryption_majority(num_parties, t)
    check_declared_colluders(num_parties, t, m, c or 0)
    return t, m, c


def supported_honest(
    num_parties: int,
    *,
    threshold: int | None = None,
    min_contributors: int | None = None,
    colluders: int | None = None,
) -> int:
    """The largest h (honest uploads in every sum a key-share holder decrypts,
    :func:`secagg.dp.floors.decryption_floor`) of a full round of a
    :class:`~fl_core.aggregators.paillier.PaillierAggregator` with these options, before its key
    ceremony: ``min_contributors - c``."""
    t, contributors = paillier_shape(num_parties, threshold, min_contributors, colluders)
    return decryption_floor(num_parties, t, num_parties, contributors)


def round_guarantee(
    num_parties: int, threshold: int, min_contributors: int, num_clients: int, key_bits: int | None = None
) -> Guarantee:
    """What a round of ``num_clients`` of the ``num_parties`` hospitals (a t-of-l key, ``threshold`` t)
    guarantees: its session's, as :attr:`secagg.paillier.SessionParameters.guarantee` computes it
    (:func:`secagg.paillier.parameters.threshold_guarantee`: d at most n - t, since only the round's
    own hospitals decrypt its sum). c is the full roster's: a released sum has ``min_contributors``
    uploads. ConfigurationError for a round too small ever to be decrypted (fewer hospitals than
    ``min_contributors`` or t)."""
    if num_clients < max(min_contributors, threshold):
        raise ConfigurationError(
            f"a paillier round of {num_clients} hospitals never completes: {min_contributors} uploads "
            f"(min_contributors) and t = {threshold} partial decryptions from its hospitals are needed"
        )
    return threshold_guarantee(num_parties, threshold, num_clients, min_contributors, key_bits=key_bits)
