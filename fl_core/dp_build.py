"""Building a DP aggregator: calibrate, size the encoding, cap h by the secure sum's floor.

:func:`make_dp_aggregator` puts :class:`fl_core.dp.DPAggregator` around the aggregation a
demo or a study names (``plain-quantized``, ``secagg``, ``secagg+``, ``paillier``), and
:func:`supported_honest` says, before any key exists, the largest h (honest noise shares in
every released sum) that aggregation supports (:mod:`secagg.dp.floors`). Apart from
:mod:`fl_core.dp` because choosing and wiring the protocol is a concept of its own.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fl_core.aggregators.base import DEFAULT_MAX_SAMPLES_PER_CLIENT, Aggregator
from fl_core.aggregators.masking import MaskingAggregator
from fl_core.aggregators.masking import supported_honest as masking_supported_honest
from fl_core.aggregators.paillier_import import paillier_module
from fl_core.aggregators.plain import QuantizedPlainAggregator
from fl_core.dp import DPAggregator, DPQuantizer
from secagg.dp import DPConfig, Preceding, PrivacyAccountant, RandomSource
from secagg.dp.encoding import dp_quantization
from secagg.errors import ConfigurationError
from secagg.masking import COMPLETE, HARARY

__all__ = ["make_dp_aggregator", "supported_honest"]


def make_dp_aggregator(
    name: str,
    dp: DPConfig,
    *,
    num_clients: int,
    dimension: int,
    max_samples_per_client: int = DEFAULT_MAX_SAMPLES_PER_CLIENT,
    ring_bits: int | str | None = None,
    accountant_path: str | None = None,
    noise_source: RandomSource | None = None,
    preceding: Preceding = (),
    size_honest: bool = False,
    **protocol_options: Any,
) -> DPAggregator:
    """The aggregator ``name`` (``plain-quantized``, ``secagg``, ``secagg+`` or ``paillier``)
    with distributed DP: calibrates the noise for ``dp`` (n = ``num_clients``, d =
    ``dimension``), sizes the encoding (:func:`dp_quantization`) and keeps the budget in a
    :class:`~secagg.dp.PrivacyAccountant` (state file ``accountant_path``, if given). ``preceding``
    releases (plan, count) are composed with the rounds in the same account (the budget covers
    them all; :func:`secagg.dp.calibrate`).

    Over a secure sum (secagg, secagg+, paillier) h must not exceed the full roster's floor
    (:func:`supported_honest`): ConfigurationError if ``dp.min_honest`` does, unless
    ``size_honest`` is True, which sizes h as ``min(dp.min_honest, floor)`` (the Flower server's
    rule). plain-quantized has no floor (no secure sum: nothing to size h against)."""
    if not isinstance(dp, DPConfig):
        raise ConfigurationError(f"dp must be a DPConfig, got {type(dp).__name__}")
    if protocol_options.pop("clipping", "fixed") != "fixed":
        raise ConfigurationError("DP mode never clips coordinates: the adaptive clip (un-noised counts) is not used")
    if name == "plain":
        raise ConfigurationError(
            "DP noise is added to the integer encoding: use plain-quantized, secagg, secagg+ or paillier"
        )
    if size_honest:
        floor = supported_honest(name, num_clients, **protocol_options)
        if floor is not None and floor < dp.honest:
            if floor < 1:
                raise ConfigurationError(f"{name} with {num_clients} hospitals releases sums with no honest input")
            dp = dataclasses.replace(dp, min_honest=floor)
    plan, quantization, tail = dp_quantization(
        dp, num_clients=num_clients, dimension=dimension, max_samples_per_client=max_samples_per_client,
        ring_bits=_dp_ring(ring_bits), preceding=preceding,
    )  # fmt: skip
    quantizer = DPQuantizer(
        quantization, plan=plan, tail_bound=tail, noise_source=noise_source, max_patients=max_samples_per_client
    )
    inner: Aggregator
    if name == "plain-quantized":
        if protocol_options:
            raise ConfigurationError(f"plain-quantized takes no protocol options, got {sorted(protocol_options)}")
        inner = QuantizedPlainAggregator(quantizer, clipping="fixed")
    elif name in ("secagg", "secagg+"):
        graph = COMPLETE if name == "secagg" else HARARY
        inner = MaskingAggregator(quantizer, graph=graph, clipping="fixed", **protocol_options)
    elif name == "paillier":
        module = paillier_module()
        inner = module.PaillierAggregator(quantizer, clipping="fixed", **protocol_options)
    else:
        raise ConfigurationError(f"unknown aggregation {name!r}")
    return DPAggregator(inner, quantizer, PrivacyAccountant(plan, accountant_path))


def _dp_ring(ring_bits: int | str | None) -> int | str | None:
    """``ring_bits`` for the DP encoding: ``"word"`` is the default (None, the smaller word ring that
    fits), as without dp; ``"smallest"`` the smallest b in 8..64 that holds the noised sum
    (:func:`secagg.dp.encoding.size_encoding`, whose check also covers the width's type and
    range); another name is a ConfigurationError."""
    if not isinstance(ring_bits, str) or ring_bits == "smallest":
        return ring_bits
    if ring_bits == "word":
        return None
    raise ConfigurationError(
        f"with dp, ring_bits takes an int in 8..64, 'word' (the smaller word ring that holds the noised sum, "
        f"the default) or 'smallest' (the smallest b in 8..64 that holds it), got {ring_bits!r}"
    )


def supported_honest(name: str, num_clients: int, **protocol_options: Any) -> int | None:
    """The largest h a full round of ``num_clients`` hospitals of aggregation ``name`` with these
    protocol options supports (:mod:`secagg.dp.floors`), before any key exists; None for
    ``plain-quantized`` (no secure sum). Options the floor does not depend on are ignored."""
    if name in ("secagg", "secagg+"):
        keys = ("mode", "corrupt_fraction", "dropout_fraction", "dropout_per_round")
        graph = COMPLETE if name == "secagg" else HARARY
        return masking_supported_honest(
            graph, num_clients, **{k: protocol_options[k] for k in keys if k in protocol_options}
        )
    if name == "paillier":
        module = paillier_module()
        paillier_keys = ("threshold", "min_contributors", "colluders")
        floor: int = module.supported_honest(
            num_clients, **{k: protocol_options[k] for k in paillier_keys if k in protocol_options}
        )
        return floor
    return None
