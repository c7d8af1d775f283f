"""Secure FedAvg of a Keras 3 model across four hospitals (handwritten digits, SecAgg).

The founding example of federated learning with Keras: a small MLP (here
64-64-10 on scikit-learn's 8x8 digits, so it runs offline) trained by FedAvg,
with secure aggregation underneath. Each round every hospital sets the global
weights into its model, trains a little on its own rows and hands back
``model.get_weights()``; :func:`secagg.integrations.keras.aggregate_models`
flattens each list of numpy arrays into an update vector (local minus global),
runs one SecAgg session over the updates (the server learns only their
weighted sum) and returns the new global weights for ``set_weights``. One
hospital drops out mid-protocol in every round after the first: SecAgg on the
complete graph tolerates that with four hospitals (threshold 3 of 4).

Each round is also aggregated in the clear with the same quantization
(``plain-quantized``, same randomness) to show that secure aggregation changes
nothing: the new weights are bit for bit the same.

Run:  pip install -e '.[examples,keras]' && KERAS_BACKEND=torch python examples/keras_secure_fedavg.py
(the script selects the torch backend itself if KERAS_BACKEND is unset).
"""

from __future__ import annotations

import copy
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported

import keras
import numpy as np

from fl_core.aggregators import DropoutStage, make_aggregator
from fl_core.data import FEATURE_BOUNDS, make_federation
from secagg.integrations.keras import aggregate_models, flatten_model

HOSPITALS = 4
ROUNDS = 5
LOCAL_EPOCHS = 2
BATCH_SIZE = 16
LEARNING_RATE = 0.1


def make_model(num_features: int, num_classes: int) -> keras.Model:
    """The MLP, compiled for local SGD (float32 weights, as Keras models usually are)."""
    model = keras.Sequential(
        [
            keras.Input((num_features,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(num_classes),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def run(rounds: int = ROUNDS, hospitals: int = HOSPITALS, seed: int = 2024, verbose: bool = True) -> dict[str, object]:
    """Train securely for ``rounds`` rounds; return the accuracies and the per-round checks."""
    if keras.backend.backend() == "torch":
        # A model this small trains fastest on one thread (and does not fight other processes for cores).
        import torch  # noqa: PLC0415

        torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    federation = make_federation("digits", hospitals, partition="iid", rng=rng)
    # Pixel intensities are 0..16, a public bound: every hospital scales the same way, no statistics shared.
    scale = FEATURE_BOUNDS["digits"]

    secure = make_aggregator("secagg", num_clients=hospitals)
    in_the_clear = make_aggregator("plain-quantized", num_clients=hospitals)
    global_model = make_model(federation.num_features, federation.num_classes)
    local_model = make_model(federation.num_features, federation.num_classes)
    vector, layout = flatten_model(global_model)
    if verbose:
        print(f"model: {layout.size} weights in {len(layout.specs)} arrays {list(layout.names)}; vector {vector.dtype}")
    accuracies: list[float] = []
    identical: list[bool] = []
    included: list[list[int]] = []
    for round_number in range(1, rounds + 1):
        global_weights = global_model.get_weights()
        local_weights = []
        for hospital in federation.clients:  # each on its own machine in a real federation
            local_model.set_weights(global_weights)
            local_model.fit(
                hospital.features / scale, hospital.labels, epochs=LOCAL_EPOCHS, batch_size=BATCH_SIZE, verbose=0
            )
            local_weights.append(local_model.get_weights())
        # From round 2 on, one hospital goes silent after sharing its keys, before uploading.
        dropouts = {}
        if round_number > 1:
            dropouts = {federation.clients[int(rng.integers(0, hospitals))].client_id: DropoutStage.UPLOAD}
        counts = [c.num_samples for c in federation.clients]
        ids = [c.client_id for c in federation.clients]
        round_rng = copy.deepcopy(rng)  # the same rounding randomness for the clear reference
        outcome = aggregate_models(
            global_weights, local_weights, secure, num_samples=counts, client_ids=ids, dropouts=dropouts, rng=rng
        )
        reference = aggregate_models(
            global_weights, local_weights, in_the_clear, num_samples=counts, client_ids=ids, dropouts=dropouts,
            rng=round_rng,
        )
        assert outcome.weights is not None and reference.weights is not None
        identical.append(all(np.array_equal(a, b) for a, b in zip(outcome.weights, reference.weights, strict=True)))
        global_model.set_weights(outcome.weights)
        _, accuracy = global_model.evaluate(federation.test_features / scale, federation.test_labels, verbose=0)
        accuracies.append(float(accuracy))
        included.append(sorted(outcome.result.included))
        if verbose:
            print(
                f"round {round_number}: hospitals {included[-1]} aggregated, "
                f"{outcome.result.bytes_per_client / 1024:.1f} KiB uploaded each, "
                f"same weights as in the clear: {identical[-1]}, test accuracy {accuracies[-1]:.3f}"
            )
    return {"accuracies": accuracies, "identical": identical, "included": included}


def main() -> int:
    """Run the example; exit 1 if a check fails."""
    report = run()
    accuracies, identical = report["accuracies"], report["identical"]
    assert isinstance(accuracies, list) and isinstance(identical, list)
    return 0 if all(identical) and accuracies[-1] > 0.85 else 1


if __name__ == "__main__":
    sys.exit(main())
