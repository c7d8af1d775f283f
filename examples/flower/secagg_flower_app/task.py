"""The learning task: each node's share of the breast-cancer data, and a logistic regression.

Every node derives the same split from a fixed seed and keeps only its own
partition (``partition-id`` of ``num-partitions``), standardised with its own
statistics; the server evaluates on the held-out test set.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from flwr.app import Array, ArrayRecord

from fl_core.data import ClientData, Federation, Standardiser, make_federation
from fl_core.fedavg import local_sgd
from fl_core.models import LogisticRegression, Params, softmax_cross_entropy

SPLIT_SEED = 2024
DATASET = "breast-cancer"
NUM_FEATURES, NUM_CLASSES = 30, 2
MODEL = LogisticRegression(NUM_FEATURES, NUM_CLASSES, l2=1e-3)
DP_MODEL = LogisticRegression(NUM_FEATURES, NUM_CLASSES, l2=0.0)
"""The same model for DP steps: per-example gradients bound the cross-entropy only (no L2 penalty)."""


@lru_cache(maxsize=4)
def federation(num_partitions: int) -> Federation:
    """The same IID split on every node (fixed seed); each uses only its own partition."""
    return make_federation(DATASET, num_partitions, partition="iid", rng=np.random.default_rng(SPLIT_SEED))


def local_data(partition_id: int, num_partitions: int) -> ClientData:
    """One node's rows, standardised with that node's own statistics."""
    rows = federation(num_partitions).clients[partition_id]
    standardiser = Standardiser.fit(rows.features)
    return ClientData(rows.client_id, standardiser.apply(rows.features), rows.labels)


def held_out_set(num_partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """The held-out test set, standardised with its own statistics (server-side evaluation)."""
    held_out = federation(num_partitions)
    return Standardiser.fit(held_out.test_features).apply(held_out.test_features), held_out.test_labels


def to_record(params: Params) -> ArrayRecord:
    """Model parameters as Flower arrays."""
    return ArrayRecord({"weights": Array(params[0]), "bias": Array(params[1])})


def from_record(record: ArrayRecord) -> Params:
    """Flower arrays back to model parameters."""
    return [record["weights"].numpy(), record["bias"].numpy()]


def initial_params() -> Params:
    """Zero weights and biases."""
    return MODEL.init(np.random.default_rng(0))


def train(params: Params, data: ClientData, epochs: int, batch_size: int, learning_rate: float) -> Params:
    """Local minibatch SGD (non-secret shuffling randomness)."""
    return local_sgd(
        MODEL, params, data, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        rng=np.random.default_rng(),
    )


def dp_step(params: Params, data: ClientData, learning_rate: float, clip: float) -> Params:
    """One DP step over all the node's rows: ``params - learning_rate * sum_i clip(g_i, clip)``.

    Each patient's gradient is clipped to L2 norm ``clip`` before the sum, so adding or
    removing one patient moves the update by at most ``learning_rate * clip``: the
    ``l2_clip`` the server declares in its DPConfig.
    """
    gradient = DP_MODEL.clipped_gradient_sum(params, data.features, data.labels, clip)
    return [p - learning_rate * g for p, g in zip(params, gradient, strict=True)]


def evaluate(params: Params, features: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy."""
    weights, bias = params
    loss, _ = softmax_cross_entropy(features @ weights + bias, labels)
    accuracy = float(np.mean(MODEL.predict_proba(params, features).argmax(axis=1) == labels))
    return float(loss), accuracy
