"""Aggregators: the weighted mean of client updates, in the clear or securely.

All of them satisfy :class:`Aggregator`; FedAvg cannot tell them apart except by
what they cost. Build one by name with :func:`make_aggregator`:

===================  ==========================================================
name                 what the server learns / how
===================  ==========================================================
``plain``            every update (float64 weighted mean, the baseline)
``plain-quantized``  every quantized update (the secure arithmetic in the clear)
``secagg``           only the sum: pairwise masking on the complete graph
``secagg+``          only the sum: pairwise masking on a sparse Harary graph
``paillier``         only the sum: packed threshold Paillier
===================  ==========================================================
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from fl_core.aggregators.base import (
    DEFAULT_BITS,
    DEFAULT_CLIP,
    DEFAULT_MAX_SAMPLES_PER_CLIENT,
    DEFAULT_RING_BITS,
    AggregationResult,
    Aggregator,
    ClientUpdate,
    DropoutStage,
)
from fl_core.aggregators.binding import model_digest
from fl_core.aggregators.clipping import CLIPPING_NAMES, AdaptiveClip, ClipPolicy, FixedClip
from fl_core.aggregators.masking import MaskingAggregator
from fl_core.aggregators.paillier_import import paillier_module
from fl_core.aggregators.plain import PlainAggregator, QuantizedPlainAggregator
from fl_core.aggregators.quantizer import WeightedQuantizer
from secagg._validate import require_instance, require_int, require_optional_int
from secagg.errors import ConfigurationError

__all__ = [
    "AGGREGATOR_NAMES",
    "CLIPPING_NAMES",
    "DEFAULT_BITS",
    "DEFAULT_CLIP",
    "DEFAULT_MAX_SAMPLES_PER_CLIENT",
    "DEFAULT_RING_BITS",
    "AdaptiveClip",
    "AggregationResult",
    "Aggregator",
    "ClientUpdate",
    "ClipPolicy",
    "DropoutStage",
    "FixedClip",
    "MaskingAggregator",
    "PlainAggregator",
    "QuantizedPlainAggregator",
    "WeightedQuantizer",
    "make_aggregator",
    "model_digest",
]

AGGREGATOR_NAMES = ("plain", "plain-quantized", "secagg", "secagg+", "paillier")
"""Names accepted by :func:`make_aggregator`."""

_QUANTIZATION_OPTIONS = ("clip", "bits", "ring_bits", "max_samples_per_client")
_MASKING_OPTIONS = ("corrupt_fraction", "dropout_fraction", "dropout_per_round", "random_bytes", "mode", "run_id")


def make_aggregator(
    name: str, *, num_clients: int | None = None, dp: Any = None, dimension: int | None = None, **options: Any
) -> Aggregator:
    """Build the aggregator called ``name`` (one of :data:`AGGREGATOR_NAMES`).

    ``num_clients`` is the most clients one round will sum; every aggregator but
    ``plain`` needs it, to check that the quantization cannot overflow. ``plain`` takes it
    too, with the same meaning: a round of more updates is refused (ConfigurationError), as
    every other aggregator refuses it; without it plain takes any number.
    Quantization options (all but ``plain``, which refuses them: it clips and quantizes
    nothing, so they would have no effect): ``clip``, ``bits``, ``ring_bits``,
    ``max_samples_per_client`` (defaults in :mod:`fl_core.aggregators.base`), and
    ``clipping``: ``"adaptive"`` (the default: each segment's clip follows the
    securely summed clipped fraction, ``clip`` is its starting value), ``"fixed"``
    (``clip`` throughout), or a :class:`ClipPolicy` (see
    :mod:`fl_core.aggregators.clipping`).
    Further options go to the protocol: for ``secagg``/``secagg+`` see
    :class:`fl_core.aggregators.masking.MaskingAggregator` (``mode``: ``"active"``, the
    default, or ``"semi-honest"`` by name; ``random_bytes``, ``corrupt_fraction``,
    ``dropout_per_round``, ``dropout_fraction``, ``run_id``); for ``paillier``,
    ``fl_core.aggregators.paillier.PaillierAggregator(quantizer, **options)``,
    imported only when asked for.

    With ``dp`` (a :class:`secagg.dp.DPConfig`) the result is a
    :class:`fl_core.dp.DPAggregator`: every hospital adds its share of exact integer noise to
    its encoding before the secure sum, and an accountant enforces the budget. It needs
    ``dimension`` (the model's parameter count, to calibrate the noise); its options are
    ``max_samples_per_client``, ``ring_bits``, ``accountant_path``, ``noise_source`` and the
    protocol's (``clip`` and ``bits`` are derived from the DP configuration).

    Raises ConfigurationError for an unknown name or option, a quantization that
    could overflow for ``num_clients``, or an aggregator that is not available;
    ConfigurationTypeError for a wrong-typed argument (``num_clients="4"``, a bool).
    """
    require_instance("name", name, str)
    num_clients = require_optional_int("num_clients", num_clients)
    dimension = require_optional_int("dimension", dimension)
    if dp is not None:
        if num_clients is None or dimension is None:
            raise ConfigurationError("a DP aggregator needs num_clients and dimension (the model's parameter count)")
        if "clip" in options or "bits" in options:
            raise ConfigurationError("with dp, clip and bits follow from the DP configuration; do not give them")
        dp_module = importlib.import_module("fl_core.dp_build")
        _check_dp_options(name, options, dp_module.make_dp_aggregator)
        aggregator: Aggregator = dp_module.make_dp_aggregator(
            name, dp, num_clients=num_clients, dimension=dimension, **options
        )
        return aggregator
    if dimension is not None:
        raise ConfigurationError("dimension is only used with dp")
    if name not in AGGREGATOR_NAMES:
        raise ConfigurationError(f"unknown aggregation {name!r}; choose one of {', '.join(AGGREGATOR_NAMES)}")
    if name == "plain":
        return _plain(options, num_clients)
    quantization = {key: options.pop(key) for key in _QUANTIZATION_OPTIONS if key in options}
    clipping = options.pop("clipping", "adaptive")
    if num_clients is None:
        raise ConfigurationError(f"aggregation {name!r} needs num_clients to validate its quantization")
    quantizer = WeightedQuantizer.create(num_clients, **quantization)
    if name == "plain-quantized":
        if options:
            raise ConfigurationError(f"aggregation 'plain-quantized' takes no protocol options, got {sorted(options)}")
        return QuantizedPlainAggregator(quantizer, clipping=clipping)
    if name in ("secagg", "secagg+"):
        unknown = sorted(set(options) - set(_MASKING_OPTIONS))
        if unknown:
            raise ConfigurationError(
                f"aggregation {name!r} does not take {unknown}; it takes {[*_QUANTIZATION_OPTIONS, 'clipping']} "
                f"(quantization) and {list(_MASKING_OPTIONS)} (protocol)"
            )
        graph = "complete" if name == "secagg" else "harary"
        return MaskingAggregator(quantizer, graph=graph, clipping=clipping, **options)
    return _paillier(quantizer, {**options, "clipping": clipping})


def _plain(options: dict[str, Any], num_clients: int | None) -> Aggregator:
    """The plain aggregator, bounding a round to ``num_clients`` updates as the others do (at least
    1; None: no bound); ConfigurationError for any option, a quantization option (which it would
    ignore: it sums the float updates as they are) named as having no effect."""
    if num_clients is not None:
        require_int("num_clients", num_clients, 1)
    ignored = [key for key in (*_QUANTIZATION_OPTIONS, "clipping") if key in options]
    if ignored:
        raise ConfigurationError(
            f"aggregation 'plain' does not take {', '.join(ignored)}: it averages the float updates as they are "
            "(nothing is clipped, quantized or summed in a ring), so it would have no effect; use 'plain-quantized' "
            "for the secure aggregators' encoding in the clear"
        )
    if options:
        raise ConfigurationError(f"aggregation 'plain' takes no options, got {sorted(options)}")
    return PlainAggregator(max_clients=num_clients)


def _paillier(quantizer: WeightedQuantizer, options: dict[str, Any]) -> Aggregator:
    """Import the Paillier aggregator lazily (it pulls in phe and gmpy2: :func:`paillier_module`)."""
    module = paillier_module()
    protocol = _keywords(module.PaillierAggregator, "clipping")
    unknown = sorted(set(options) - {*protocol, "clipping"})
    if unknown:  # refused here, with every option named, before the constructor deals a key
        raise ConfigurationError(
            f"aggregation 'paillier' does not take {unknown}; it takes {[*_QUANTIZATION_OPTIONS, 'clipping']} "
            f"(quantization) and {protocol} (protocol)"
        )
    aggregator: Aggregator = module.PaillierAggregator(quantizer, **options)
    return aggregator


def _keywords(function: Any, *left_out: str) -> list[str]:
    """The keyword-only parameters of ``function`` (a constructor: the options it takes), in order."""
    return [
        parameter.name
        for parameter in inspect.signature(function).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.name not in left_out
    ]


def _check_dp_options(name: str, options: dict[str, Any], make_dp_aggregator: Any) -> None:
    """ConfigurationError naming the options a DP aggregator ``name`` does not take, as without DP (they
    would reach the protocol's constructor, whose TypeError named neither the DP options nor the
    protocol's), before any key exists. Other names are left to :func:`fl_core.dp_build.make_dp_aggregator`."""
    if name in ("secagg", "secagg+"):
        protocol = list(_MASKING_OPTIONS)
    elif name == "paillier":
        protocol = _keywords(paillier_module().PaillierAggregator, "clipping")
    else:
        return
    encoding = [*_keywords(make_dp_aggregator, "num_clients", "dimension"), "clipping"]
    unknown = sorted(set(options) - {*encoding, *protocol})
    if unknown:
        raise ConfigurationError(
            f"aggregation {name!r} does not take {unknown}; with dp it takes {encoding} (DP and encoding) "
            f"and {protocol} (protocol)"
        )
