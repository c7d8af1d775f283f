"""The ``paillier`` aggregator's key: its size, and the material dealt or reused.

:func:`key_size` resolves ``key_bits`` and ``insecure_small_key`` (warning that such a key
is NOT secure); :func:`aggregator_key` runs the key ceremony
(:func:`secagg.paillier.deal_threshold_key`) once, at construction, or checks reused key
material against the aggregator's t-of-n. :class:`~fl_core.aggregators.paillier.PaillierAggregator`
calls both, and re-exports :data:`INSECURE_KEY_BITS` and :data:`DEFAULT_KEY_BITS`.
"""

from __future__ import annotations

import warnings

from secagg._validate import require_int
from secagg.errors import ConfigurationError
from secagg.paillier import DEFAULT_KEY_BITS, ThresholdKeyMaterial, Workers, deal_threshold_key
from secagg.paillier.keys import MAX_KEY_BITS, key_policy
from secagg.primitives.randomness import RandomBytes

__all__ = ["DEFAULT_KEY_BITS", "INSECURE_KEY_BITS", "aggregator_key", "key_size"]

INSECURE_KEY_BITS = 1024
"""Key size of ``insecure_small_key`` (the demo's ``--insecure-small-key``): fast, NOT secure."""


def key_size(key_bits: int | None, insecure: bool) -> int:
    """The modulus size: ``key_bits`` if given, else :data:`INSECURE_KEY_BITS` with ``insecure``,
    else :data:`DEFAULT_KEY_BITS`; ConfigurationTypeError/ConfigurationError for a size that is no
    integer in 1..MAX_KEY_BITS (the key policy's floor is checked at dealing). With ``insecure``, a
    UserWarning that the key is NOT secure, attributed to the aggregator's caller."""
    bits = key_bits if key_bits is not None else (INSECURE_KEY_BITS if insecure else DEFAULT_KEY_BITS)
    bits = require_int("key_bits", bits, 1, MAX_KEY_BITS)  # the key policy's floor is checked at dealing
    if insecure:
        warnings.warn(
            f"paillier: insecure_small_key uses a {bits}-bit key; it is NOT secure (demos and tests only)",
            UserWarning,
            stacklevel=3,  # the caller of PaillierAggregator(...), as when this was in its constructor
        )
    return bits


def aggregator_key(
    bits: int,
    num_parties: int,
    threshold: int,
    *,
    insecure: bool,
    key_material: ThresholdKeyMaterial | None,
    random_bytes: RandomBytes,
    workers: Workers,
) -> ThresholdKeyMaterial:
    """``key_material`` if given, else a ``threshold``-of-``num_parties`` key of ``bits`` bits dealt
    from ``random_bytes`` (under the insecure key policy with ``insecure``). ConfigurationError if the
    material is another t-of-n than the aggregator's."""
    with key_policy(insecure):
        if key_material is None:
            key_material = deal_threshold_key(
                bits,
                num_parties=num_parties,
                threshold=threshold,
                random_bytes=random_bytes,
                workers=workers,
                insecure_for_testing=insecure,
            )
        public = key_material.public
        if (public.num_parties, public.threshold) != (num_parties, threshold):
            raise ConfigurationError(
                f"key material is {public.threshold}-of-{public.num_parties}, "
                f"the aggregator needs {threshold}-of-{num_parties}"
            )
    return key_material
