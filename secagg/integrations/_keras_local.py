"""The Keras adapter's ``local_weights``: the batch-norm statistics each hospital keeps as its own
under ``trainable_only=True`` (FedBN-style, Li et al., ICLR 2021).

Under ``trainable_only`` the non-trainable weights are not summed but the model a hospital trained
from is bound with them (:func:`unsent_variables`), so a hospital that kept its own batch-norm
statistics declares another model than the server's and is refused. ``local_weights`` names the
weights left out of that binding too, and nothing else: :func:`local_names` checks the option
itself (a list or tuple of distinct ``str``, and ``trainable_only=True``: a trainable weight is
summed and cannot be kept local this way), :func:`bound_variables` checks it against a model
(each name one weight of the model, by its :func:`~secagg.integrations.keras.flatten_model` name,
and that weight a ``BatchNormalization`` layer's ``moving_mean`` or ``moving_variance``: a frozen
layer's kernel, or any other non-trainable weight, cannot leave the binding this way) and returns
the non-trainable weights that stay bound. The names themselves are bound into every digest
(:func:`~secagg.integrations._model_binding.bound_digest`), sorted, so a hospital that keeps
another set than the server is refused whatever its values.
"""

from __future__ import annotations

from typing import Any

from secagg._validate import require_bool, require_sequence
from secagg.errors import ConfigurationError, ConfigurationTypeError
from secagg.integrations._keras_model import model_variables, unsent_variables
from secagg.integrations._keras_names import weight_names
from secagg.integrations._layout import _shown

__all__ = ["bound_variables", "local_names"]


def local_names(local_weights: object, trainable_only: object) -> tuple[str, ...]:
    """``local_weights`` sorted, after refusing anything but a list or tuple (a ``str`` would be read
    as its characters, a set as no order the caller chose) of distinct ``str``; non-empty only with
    ``trainable_only=True`` (which must be a bool)."""
    trainable_only = require_bool("trainable_only", trainable_only)
    names = require_sequence("local_weights", local_weights)
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str):
            raise ConfigurationTypeError(
                f"local_weights: each name must be a str, got {type(name).__name__} (a weight's name as "
                "flatten_model gives it, e.g. 'batch_normalization/moving_mean')"
            )
        if name in seen:
            raise ConfigurationError(f"local_weights: {_shown(name)} is named twice")
        seen.add(name)
    if seen and not trainable_only:
        raise ConfigurationError(
            "local_weights needs trainable_only=True: without it every weight, non-trainable ones included, is "
            "summed, and a weight kept local would be summed too"
        )
    return tuple(sorted(seen))


def _statistics(keras: Any, model: Any) -> set[int]:
    """The ids of the moving statistics (``moving_mean``, ``moving_variance``) of every
    ``keras.layers.BatchNormalization`` in ``model``, the model itself included."""
    found: set[int] = set()
    for layer in model._flatten_layers(include_self=True, recursive=True):  # Keras 3's own walk
        if isinstance(layer, keras.layers.BatchNormalization):
            found.update((id(layer.moving_mean), id(layer.moving_variance)))
    return found


def bound_variables(keras: Any, model: Any, local: tuple[str, ...]) -> list[Any]:
    """The non-trainable weights of ``model`` that ``trainable_only`` binds (not sums): all of them but
    those named in ``local``; ConfigurationError for a name that matches several of the model's weights,
    is trainable, is no weight of the model, or is no batch-norm statistic."""
    unsent = unsent_variables(keras, model)
    names = weight_names(model, unsent)
    if local:
        everything = weight_names(model, model_variables(keras, model, False))
        trainable = set(weight_names(model, model_variables(keras, model, True)))
        statistics = _statistics(keras, model)
        for name in local:
            count = everything.count(name)
            if count > 1:
                raise ConfigurationError(
                    f"local_weights: {_shown(name)} names {count} weights of the model (layers of nested models "
                    "that share a name): a name must pick one weight; give the layers distinct names"
                )
            if name in trainable:
                raise ConfigurationError(
                    f"local_weights: {_shown(name)} is trainable: trainable weights are summed, and none can be "
                    "kept local (local_weights names non-trainable weights, e.g. batch-norm statistics)"
                )
            if name not in names:
                shown = ", ".join(_shown(other) for other in names[:8]) or "none"
                raise ConfigurationError(
                    f"local_weights: {_shown(name)} is no weight of the model (its non-trainable weights: {shown})"
                )
            if id(unsent[names.index(name)]) not in statistics:
                raise ConfigurationError(
                    f"local_weights: {_shown(name)} is no batch-norm statistic (a BatchNormalization layer's "
                    "moving_mean or moving_variance): any other non-trainable weight (a frozen layer's kernel, "
                    "a frozen batch norm's scale or shift) shapes every hospital's training and stays bound"
                )
    return [variable for variable, name in zip(unsent, names, strict=True) if name not in local]
