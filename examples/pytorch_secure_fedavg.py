"""Secure FedAvg of a PyTorch model across five hospitals (breast-cancer data, SecAgg).

Each round every hospital trains a copy of the global model on its own rows;
:func:`secagg.integrations.torch.aggregate_models` turns each local model into
an update vector (local minus global), runs one SecAgg session over the
updates (the server learns only their weighted sum) and returns the new global
state dict. One hospital drops out mid-protocol in every round: the default
configuration for five hospitals (active mode, the complete graph, threshold 4,
a self-held seed share) tolerates one dropout, and prints what it protects
against (a lying server plus up to 2 colluding hospitals).

Run:  pip install -e '.[examples,torch]' && python examples/pytorch_secure_fedavg.py
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from fl_core.aggregators import DropoutStage, make_aggregator
from fl_core.data import FEATURE_BOUNDS, federated_standardiser, make_federation, moments_quantization
from secagg.integrations.torch import aggregate_models, flatten_model, load_into_model

HOSPITALS = 5
ROUNDS = 8
LOCAL_EPOCHS = 5


def make_model(num_features: int) -> torch.nn.Module:
    """A small two-layer classifier (float32, as PyTorch models usually are)."""
    return torch.nn.Sequential(torch.nn.Linear(num_features, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


def train_locally(model: torch.nn.Module, features: np.ndarray, labels: np.ndarray) -> None:
    """A few epochs of full-batch SGD on one hospital's rows (stays on that hospital)."""
    x = torch.from_numpy(features).float()
    y = torch.from_numpy(labels)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(LOCAL_EPOCHS):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()


def accuracy(model: torch.nn.Module, features: np.ndarray, labels: np.ndarray) -> float:
    """Share of correctly classified rows."""
    with torch.no_grad():
        predicted = model(torch.from_numpy(features).float()).argmax(dim=1).numpy()
    return float((predicted == labels).mean())


def main() -> None:
    """Standardise securely, then run secure FedAvg rounds and print the test accuracy."""
    rng = np.random.default_rng(2024)
    torch.manual_seed(0)
    federation = make_federation("breast-cancer", HOSPITALS, partition="iid", rng=rng)
    # Pooled feature statistics through a secure aggregation, then standardise everywhere.
    moments = make_aggregator(
        "secagg+", num_clients=HOSPITALS, **moments_quantization(HOSPITALS, FEATURE_BOUNDS["breast-cancer"], 4096)
    )
    federation = federation.standardised(federated_standardiser(federation.clients, moments, rng))

    aggregator = make_aggregator("secagg", num_clients=HOSPITALS)
    print(f"protection: {aggregator.guarantee}")  # type: ignore[attr-defined]
    global_model = make_model(federation.num_features)
    vector, layout = flatten_model(global_model)
    print(f"model: {layout.size} parameters in {len(layout.specs)} tensors; flat vector {vector.dtype}")
    for round_number in range(1, ROUNDS + 1):
        local_models = []
        for hospital in federation.clients:
            local = copy.deepcopy(global_model)
            train_locally(local, hospital.features, hospital.labels)
            local_models.append(local)
        # One hospital goes silent after sharing its keys, before uploading its masked update.
        dropped = int(rng.integers(0, HOSPITALS))
        outcome = aggregate_models(
            global_model,
            local_models,
            aggregator,
            num_samples=[c.num_samples for c in federation.clients],
            client_ids=[c.client_id for c in federation.clients],
            dropouts={federation.clients[dropped].client_id: DropoutStage.UPLOAD},
            rng=rng,
        )
        outcome.load_into(global_model)
        acc = accuracy(global_model, federation.test_features, federation.test_labels)
        print(
            f"round {round_number}: hospitals {sorted(outcome.result.included)} aggregated, "
            f"{outcome.result.bytes_per_client / 1024:.1f} KiB uploaded each, test accuracy {acc:.3f}"
        )
    # The flat vector round-trips exactly into a fresh model.
    final, final_layout = flatten_model(global_model)
    fresh = make_model(federation.num_features)
    load_into_model(fresh, final, final_layout)
    assert accuracy(fresh, federation.test_features, federation.test_labels) == acc


if __name__ == "__main__":
    main()
