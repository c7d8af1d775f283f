"""Checks of :func:`fl_core.fedavg.run_fedavg`'s inputs before any training: the starting model
(:func:`check_initial`, refused unless it is the model's) and each hospital's data (:func:`unusable_data`:
a hospital the model cannot take is left out of every round with its reason, costing only itself; a
test set the model cannot take is refused)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from fl_core.data import ClientData, data_problem
from fl_core.models import Model, Params, flatten, unflatten
from secagg._validate import require_sequence
from secagg.errors import ConfigurationError

__all__ = ["check_initial", "unusable_data"]

LOGGER = logging.getLogger("fl_core.fedavg")  # run_fedavg's log: these checks are its first step


def check_initial(initial: object, fresh: Params) -> Params:
    """``initial`` as float64 copies, exactly (:func:`fl_core.models.flatten`: integers, bools and float32
    too, which local SGD could not step in place or would step in float32); ConfigurationError unless it
    is a list of finite numpy arrays shaped as ``fresh`` (the model's own ``init``): a starting model of
    another model fails every hospital's training."""
    given = require_sequence("initial_params", initial)
    if len(given) != len(fresh):
        raise ConfigurationError(f"initial_params: {len(given)} arrays, the model has {len(fresh)}")
    for index, (array, own) in enumerate(zip(given, fresh, strict=True)):
        if not isinstance(array, np.ndarray):
            raise ConfigurationError(
                f"initial_params: parameter {index} must be a numpy array, got {type(array).__name__}"
            )
        if array.shape != own.shape:
            raise ConfigurationError(
                f"initial_params: parameter {index} has shape {array.shape}, the model's {own.shape}"
            )
    vector = flatten(given)
    if not np.all(np.isfinite(vector)):
        bad = next(i for i, a in enumerate(given) if not np.all(np.isfinite(np.asarray(a, dtype=np.float64))))
        raise ConfigurationError(f"initial_params: parameter {bad} holds NaN or infinite values")
    return unflatten(vector, fresh)


def unusable_data(
    model: Model, params: Params, clients: Sequence[ClientData], test_features: object, test_labels: object
) -> dict[int, str]:
    """Each client whose data ``model`` cannot take, with the reason (it is left out of every round,
    costing only itself; logged here, once); ConfigurationError for such a test set (the server's own
    data). The width is the model's ``num_features`` when it has one, else the test set's; the class
    count its ``num_classes``, else the width of its ``predict_proba`` at ``params`` on the test set."""
    declared = getattr(model, "num_features", None)
    shape = getattr(test_features, "shape", None)
    width = declared if isinstance(declared, int) else shape[-1] if isinstance(shape, tuple) and shape else 0
    classes = getattr(model, "num_classes", None)
    num_classes = classes if isinstance(classes, int) else None
    problem = data_problem(test_features, test_labels, int(width), num_classes)
    if problem is not None:
        raise ConfigurationError(f"test set: {problem}")
    if num_classes is None:  # a model of the user's own: its classes are its probabilities' columns
        num_classes = _predicted_classes(model, params, test_features)
        problem = data_problem(test_features, test_labels, int(width), num_classes)
        if problem is not None:
            raise ConfigurationError(f"test set: {problem}")
    found = {c.client_id: data_problem(c.features, c.labels, int(width), num_classes) for c in clients}
    unusable = {client: problem for client, problem in found.items() if problem is not None}
    for client, reason in sorted(unusable.items()):  # said before training, sampled or not
        LOGGER.warning("hospital %d is left out of every round: %s", client, reason)
    return unusable


def _predicted_classes(model: Model, params: Params, features: object) -> int | None:
    """The number of columns of ``model``'s class probabilities on the first test row, or None if it
    gives no 2-D array (then no label is checked against a class count)."""
    probabilities = model.predict_proba(params, np.asarray(features)[:1])
    shape = getattr(probabilities, "shape", None)
    return int(shape[1]) if isinstance(shape, tuple) and len(shape) == 2 else None
