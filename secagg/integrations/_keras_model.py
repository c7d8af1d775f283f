"""Which of a Keras model's variables the Keras adapter reads, and the models it refuses to read.

:func:`model_variables` gives a model's weights (all of them, or the trainable ones) after
refusing, with a :class:`~secagg.errors.ConfigurationError`, what its weights would not tell
whole: anything but a Keras layer or model; a wrapped PyTorch module with state that is no Keras
weight (:mod:`secagg.integrations._keras_torch`); and a layer not built yet whose class has a
``build`` of its own (Keras creates a layer's weights at its first call, so such a model holds
only some of them: a Sequential without ``keras.Input`` never called holds none; a layer without
its own ``build``, such as ``Flatten`` or ``Rescaling``, creates none and is let through).
:func:`unsent_variables` gives the weights ``trainable_only`` leaves out of the sum (a frozen
layer's kernels, batch-norm statistics), which the adapter binds instead; :func:`named_arrays`
pairs variables with their stable names (:mod:`secagg.integrations._keras_names`) and values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg._validate import require_bool
from secagg.errors import ConfigurationError
from secagg.integrations._keras_names import weight_names
from secagg.integrations._keras_torch import refuse_torch_state
from secagg.integrations._layout import _shown

__all__ = ["model_variables", "named_arrays", "unsent_variables"]


def model_variables(keras: Any, model: Any, trainable_only: bool) -> list[Any]:
    """``model.weights`` (``model.trainable_weights`` if ``trainable_only``, which must be a bool),
    refused as the module docstring says."""
    require_bool("trainable_only", trainable_only)  # "no" would read as True
    if not isinstance(model, keras.layers.Layer):
        raise ConfigurationError(f"expected a Keras model or layer, got {type(model).__name__}")
    refuse_torch_state(keras, model)
    variables = list(model.trainable_weights if trainable_only else model.weights)
    layers = model._flatten_layers(include_self=True, recursive=True)  # the model first
    # Only a layer with a build of its own can create weights when built: one without (Flatten,
    # Rescaling, a training-only augmentation left unbuilt by an inference call) has none to miss.
    default = keras.layers.Layer.build
    unbuilt = [layer for layer in layers if not layer.built and type(layer).build is not default][-1:]
    if unbuilt:
        raise ConfigurationError(
            f"layer {_shown(unbuilt[0].name)} is not built: Keras creates its weights at its first call, so the "
            "model has only some of them; call the model once on an input (or start a Sequential with "
            "keras.Input) before reading its weights, and leave out a layer it never calls"
        )
    return variables


def unsent_variables(keras: Any, model: Any) -> list[Any]:
    """The weights of ``model`` that ``trainable_only`` does not send, in weight order."""
    sent = {id(v) for v in model_variables(keras, model, True)}
    return [v for v in model_variables(keras, model, False) if id(v) not in sent]


def named_arrays(keras: Any, model: Any, variables: Sequence[Any]) -> list[tuple[str, npt.NDArray[Any]]]:
    """Each of ``variables`` (of ``model``) as its stable name and its values in a numpy array."""
    arrays = [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]
    return list(zip(weight_names(model, variables), arrays, strict=True))
