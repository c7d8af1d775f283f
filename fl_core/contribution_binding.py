"""What binds a round to how every hospital computed its contribution: its feature scaling and
its local training.

**Feature scaling.** A hospital's contribution depends on how it scaled its features: the noised
moments release (:func:`fl_core.dp_moments.release_moments`) sums ``(sum u, sum u^2)`` with ``u``
the features mapped by the declared public ranges (:func:`fl_core.public_scaling.public_scaler`),
and the server maps the released sums back with the same ranges; every training round sums updates
(or clipped gradients) computed at features standardised with the run's scaler (the pooled moments,
the noised release, or the public ranges alone). A hospital holding another scaler (another version
of the data dictionary's ranges) sends as many values under the same protocol, DP and quantization
parameters, in other units. :func:`bind_scaling` binds the scaler into the session descriptor of
every round of an aggregator, so such a hospital is refused at the session's first step
(tests/fl_core/test_fl_scaling_binding.py). The entries (:func:`scaling_parameters`):
``fl_core.scaling.kind`` (how the scaler was made: ``"public-ranges"``, ``"noised-moments"`` or
``"pooled-moments"``) and ``fl_core.scaling.digest``, the SHA-256 of the scaler's per-feature centre
and scale (little-endian float64). Both are public: the ranges are declared, and the moments are
what the server released or summed already.

**Local training.** Without DP a hospital's update is its model after ``local_epochs`` epochs of
minibatch SGD (``batch_size``, ``learning_rate``) minus the global model, so
:func:`fl_core.fedavg.run_fedavg` binds the three (:func:`training_parameters`, entries
``fl_core.training.*``), as the Flower adapter binds its training parameters
(tests/fl_core/test_fl_fedavg_training_binding.py). A DP round is one clipped gradient step at the
global model: no local training, nothing to bind here (its DP configuration is bound).

**The model.** A hospital's update (or, with DP, its clipped gradient sum) is computed by the model
it runs, and a model's settings shape it beyond its parameters' shapes: a
:class:`~fl_core.models.LogisticRegression` with another ``l2`` trains another update from the same
global model, of the same length, under the same model digest. :func:`fl_core.fedavg.run_fedavg`
binds the model's kind and every one of its dataclass fields (:func:`model_parameters`, entries
``fl_core.model.*``), read with :func:`dataclasses.fields`, so a field added later is bound without
a change here (tests/fl_core/test_fl_fedavg_model_binding.py). A model that is no dataclass of its
own (its settings would not be visible), or is a mutable one (its settings are bound once, before
the first round: one changed afterwards would train unbound), or whose field holds no scalar a descriptor can bind, or
has a field named ``kind`` (its entry would replace the class's), is refused before the first round.

All bind with :func:`fl_core.aggregators.binding.bind_entries`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from fl_core.aggregators.base import Aggregator
from fl_core.aggregators.binding import bind_entries
from fl_core.data import Standardiser
from secagg.descriptor import Parameter
from secagg.errors import ConfigurationError

if TYPE_CHECKING:
    from fl_core.fedavg import FedAvgConfig

__all__ = [
    "MODEL_PREFIX",
    "SCALING_KINDS",
    "SCALING_PREFIX",
    "TRAINING_PREFIX",
    "bind_scaling",
    "model_parameters",
    "scaling_parameters",
    "training_parameters",
]

SCALING_PREFIX = "fl_core.scaling."
"""The prefix of the descriptor entries :func:`bind_scaling` binds."""

SCALING_KINDS = ("public-ranges", "noised-moments", "pooled-moments")
"""How a scaler is made: the declared public ranges alone, the noised moments release
(:mod:`fl_core.dp_moments`), the securely pooled moments (:func:`fl_core.data.federated_standardiser`)."""

TRAINING_PREFIX = "fl_core.training."
"""The prefix of the local-training entries a FedAvg run binds (:func:`training_parameters`)."""

MODEL_PREFIX = "fl_core.model."
"""The prefix of the model entries a FedAvg run binds (:func:`model_parameters`)."""

_DOMAIN = b"secagg/v1/fl-scaling"


def scaling_parameters(kind: str, standardiser: Standardiser) -> dict[str, Parameter]:
    """The descriptor entries of the scaler ``standardiser`` made as ``kind`` (one of
    :data:`SCALING_KINDS`): the kind and the digest of its centre and scale, feature count included."""
    if kind not in SCALING_KINDS:
        raise ConfigurationError(f"scaling kind must be one of {', '.join(SCALING_KINDS)}, got {kind!r}")
    if not isinstance(standardiser, Standardiser):
        raise ConfigurationError(f"expected a Standardiser, got {type(standardiser).__name__}")
    # + 0.0 makes -0.0 0.0: a centre or scale of either zero scales every feature to the same values
    # (a zero's sign at most), so two hospitals whose pooled centre came out as -0.0 and 0.0 bind alike.
    centre = np.ascontiguousarray(np.asarray(standardiser.mean, dtype=np.float64) + 0.0, dtype="<f8")
    scale = np.ascontiguousarray(np.asarray(standardiser.std, dtype=np.float64) + 0.0, dtype="<f8")
    digest = hashlib.sha256(_DOMAIN + centre.shape[0].to_bytes(8, "big") + centre.tobytes() + scale.tobytes())
    return {SCALING_PREFIX + "kind": kind, SCALING_PREFIX + "digest": digest.digest()}


def bind_scaling(aggregator: Aggregator, kind: str, standardiser: Standardiser) -> None:
    """Bind the scaler into every round ``aggregator`` runs from now on
    (:func:`~fl_core.aggregators.binding.bind_entries` of :func:`scaling_parameters`: on every layer
    that holds its quantizer; nothing without one). Call it before the rounds."""
    bind_entries(aggregator, SCALING_PREFIX, scaling_parameters(kind, standardiser))


def training_parameters(config: FedAvgConfig) -> dict[str, Parameter]:
    """The descriptor entries of the local training every hospital runs without DP: its epochs, batch
    size and learning rate (they shape its update); :func:`fl_core.fedavg.run_fedavg` binds them."""
    return {
        TRAINING_PREFIX + "local_epochs": config.local_epochs,
        TRAINING_PREFIX + "batch_size": config.batch_size,
        TRAINING_PREFIX + "learning_rate": float(config.learning_rate),
    }


def model_parameters(model: Any) -> dict[str, Parameter]:
    """The descriptor entries of the model every hospital runs: ``fl_core.model.kind`` (its class's
    module and qualified name) and ``fl_core.model.<field>`` for every dataclass field (its settings:
    ``l2``, ``hidden``, ...); :func:`fl_core.fedavg.run_fedavg` binds them. ConfigurationError for a
    model whose class is no dataclass of its own (a plain class, or an undecorated subclass, could
    hold settings no field names) or is not frozen (a setting changed after the binding would train
    unbound), or for a field whose value is not exactly a bool, int, float, str or
    bytes (numpy scalars are taken as their Python value; a subclass such as an IntEnum is refused), or
    is NaN, or for a field named ``kind`` (its entry is the one that names the class)."""
    kind = type(model)
    if "__dataclass_fields__" not in vars(kind):
        parent = next((base for base in kind.__mro__[1:] if "__dataclass_fields__" in vars(base)), None)
        inherited = (
            f" of its own: it inherits {parent.__qualname__}'s fields, but a setting it adds would not be one; "
            f"decorate {kind.__qualname__} itself" if parent is not None else "; declare it"
        )
        raise ConfigurationError(
            f"model {kind.__qualname__} is no dataclass{inherited} with @dataclass(frozen=True) and its settings "
            "as fields (a model's settings shape every hospital's update and are bound from its dataclass "
            "fields: fl_core.contribution_binding.model_parameters)"
        )
    if not kind.__dataclass_params__.frozen:
        raise ConfigurationError(
            f"model {kind.__qualname__} is a mutable dataclass: its settings are bound once, before the first round, "
            "and a change after that (model.l2 = ..., between rounds) would train with settings the session does not "
            "bind; declare it with @dataclass(frozen=True) (a change is then a new model, dataclasses.replace)"
        )
    entries: dict[str, Parameter] = {MODEL_PREFIX + "kind": f"{kind.__module__}.{kind.__qualname__}"}
    for field in dataclasses.fields(model):
        value = getattr(model, field.name)
        if isinstance(value, np.generic):
            value = value.item()
        if type(value) not in (bool, int, float, str, bytes):  # exactly: a subclass has no encoding of its own
            raise ConfigurationError(
                f"model {kind.__qualname__}: field {field.name!r} holds a {type(value).__qualname__}, which cannot "
                "be bound (a model's settings must be bool, int, float, str or bytes: hold a tuple, an optional "
                "or an array setting as scalars, one field per value, or as its text in a str)"
            )
        if isinstance(value, float) and math.isnan(value):
            raise ConfigurationError(
                f"model {kind.__qualname__}: field {field.name!r} is NaN, which cannot be bound (it has many encodings)"
            )
        if MODEL_PREFIX + field.name in entries:  # "kind": its entry would replace the model's class
            raise ConfigurationError(
                f"model {kind.__qualname__}: field {field.name!r} would be bound under the entry that names the "
                "model's class (two classes alike in their fields would bind alike): rename the field"
            )
        entries[MODEL_PREFIX + field.name] = value
    return entries
