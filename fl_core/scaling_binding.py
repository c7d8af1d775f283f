"""What binds a round to the feature scaling its hospitals' contributions were computed at.

A hospital's contribution depends on how it scaled its features: the noised moments release
(:func:`fl_core.dp_moments.release_moments`) sums ``(sum u, sum u^2)`` with ``u`` the features
mapped by the declared public ranges (:func:`fl_core.public_scaling.public_scaler`), and the
server maps the released sums back with the same ranges; every training round sums updates (or
clipped gradients) computed at features standardised with the run's scaler (the pooled moments,
the noised release, or the public ranges alone). A hospital holding another scaler (another
version of the data dictionary's ranges) sends as many values under the same protocol, DP and
quantization parameters, in other units. :func:`bind_scaling` binds the scaler into the session
descriptor of every round of an aggregator, so such a hospital is refused at the session's
first step (tests/fl_core/test_fl_scaling_binding.py).

The entries (:func:`scaling_parameters`): ``fl_core.scaling.kind`` (how the scaler was made:
``"public-ranges"``, ``"noised-moments"`` or ``"pooled-moments"``) and ``fl_core.scaling.digest``,
the SHA-256 of the scaler's per-feature centre and scale (little-endian float64). Both are public:
the ranges are declared, and the moments are what the server released or summed already.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from fl_core.aggregators.base import Aggregator
from fl_core.data import Standardiser
from secagg.descriptor import Parameter
from secagg.errors import ConfigurationError

__all__ = ["SCALING_KINDS", "SCALING_PREFIX", "bind_scaling", "scaling_parameters"]

SCALING_PREFIX = "fl_core.scaling."
"""The prefix of the descriptor entries :func:`bind_scaling` binds."""

SCALING_KINDS = ("public-ranges", "noised-moments", "pooled-moments")
"""How a scaler is made: the declared public ranges alone, the noised moments release
(:mod:`fl_core.dp_moments`), the securely pooled moments (:func:`fl_core.data.federated_standardiser`)."""

_DOMAIN = b"secagg/v1/fl-scaling"


def scaling_parameters(kind: str, standardiser: Standardiser) -> dict[str, Parameter]:
    """The descriptor entries of the scaler ``standardiser`` made as ``kind`` (one of
    :data:`SCALING_KINDS`): the kind and the digest of its centre and scale, feature count included."""
    if kind not in SCALING_KINDS:
        raise ConfigurationError(f"scaling kind must be one of {', '.join(SCALING_KINDS)}, got {kind!r}")
    if not isinstance(standardiser, Standardiser):
        raise ConfigurationError(f"expected a Standardiser, got {type(standardiser).__name__}")
    centre = np.ascontiguousarray(standardiser.mean, dtype="<f8")
    scale = np.ascontiguousarray(standardiser.std, dtype="<f8")
    digest = hashlib.sha256(_DOMAIN + centre.shape[0].to_bytes(8, "big") + centre.tobytes() + scale.tobytes())
    return {SCALING_PREFIX + "kind": kind, SCALING_PREFIX + "digest": digest.digest()}


def bind_scaling(aggregator: Aggregator, kind: str, standardiser: Standardiser) -> None:
    """Bind the scaler into every round ``aggregator`` runs from now on: its quantizer's
    ``fl_core.scaling.*`` entries (:func:`scaling_parameters`) are replaced, in place, on every
    layer that holds that quantizer (a DP aggregator and the protocol under it, a wrapper and the
    aggregator it wraps), so they stay one quantizer. Nothing is bound without a quantizer
    (``plain``: there is no session). Call it before the rounds (it replaces the quantizer)."""
    entries = scaling_parameters(kind, standardiser)
    quantizer = getattr(aggregator, "quantizer", None)
    if quantizer is None:
        return
    kept = tuple((name, value) for name, value in quantizer.parameters if not name.startswith(SCALING_PREFIX))
    bound = dataclasses.replace(quantizer, parameters=kept + tuple(sorted(entries.items())))
    layer: object = aggregator
    while layer is not None:
        if getattr(layer, "quantizer", None) is quantizer:
            setattr(layer, "quantizer", bound)  # noqa: B010 (any layer: a DP aggregator, a wrapper, the protocol)
        layer = getattr(layer, "inner", None)
