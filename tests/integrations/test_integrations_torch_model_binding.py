"""PyTorch adapter: a round is bound to the global model it hands out.

The adapter computes the digest of the global model (its state-dict keys, shapes, dtypes
and values), every hospital's update declares the digest of the model it trained from
(``hospital_update``, and ``aggregate_models`` for each local model), and the aggregation
passes the round's digest: a hospital that trained from a stale or substituted global
model is refused with its reason (``result.refused``) and the round goes on without it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

from fl_core.aggregators import make_aggregator  # noqa: E402
from fl_core.aggregators.base import AggregationResult, DropoutStage  # noqa: E402
from secagg.dp import DPConfig  # noqa: E402
from secagg.errors import ConfigurationError  # noqa: E402
from secagg.integrations import torch as adapter  # noqa: E402


def _linear(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 2).double()


def _trained(start: Any, step: float) -> Any:
    """A copy of ``start`` after a local step of ``step`` on every parameter."""
    local = _linear()
    local.load_state_dict(start.state_dict())
    with torch.no_grad():
        for p in local.parameters():
            p.add_(step)
    return local


class _Recording:
    """Records what the adapter hands the aggregator; returns the plain mean of the updates."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def aggregate(
        self, updates: Any, dropouts: Any = None, *, rng: Any, segments: Any = None, model_digest: Any = None
    ) -> Any:
        self.calls.append({"updates": list(updates), "model_digest": model_digest})
        mean = np.mean([u.vector for u in updates], axis=0)
        return AggregationResult(mean, frozenset(u.client_id for u in updates), 0.0, 0.0)


def test_aggregate_models_passes_the_global_models_digest_and_every_update_declares_it() -> None:
    # Prepare: three hospitals trained from the global model
    global_model = _linear()
    local_models = [_trained(global_model, 0.01 * (k + 1)) for k in range(3)]
    recording = _Recording()
    # Execute
    adapter.aggregate_models(
        global_model, local_models, recording, num_samples=[1, 1, 1], rng=np.random.default_rng(0), discovery=False
    )
    # Assert: the round's digest is given (was None: any model summed in) and each update declares it
    (call,) = recording.calls
    assert call["model_digest"] is not None
    assert [u.model_digest for u in call["updates"]] == [call["model_digest"]] * 3
    assert call["model_digest"] == adapter.model_digest(global_model)


def test_a_hospital_that_trained_from_a_stale_global_model_is_refused_and_the_round_goes_on() -> None:
    # Prepare: hospital 2 trained from last round's model (a stale copy), the others from this round's
    stale, global_model = _linear(), _trained(_linear(), 0.5)
    local_models = [_trained(global_model, 0.01), _trained(global_model, 0.02), _trained(stale, 0.03)]
    local_models.append(_trained(global_model, 0.04))
    # Execute: range discovery first (the default), then the secure aggregation
    outcome = adapter.aggregate_models(
        global_model, local_models, make_aggregator("secagg", num_clients=4), num_samples=[10, 10, 10, 10],
        rng=np.random.default_rng(0), trained_from={2: stale},
    )  # fmt: skip
    # Assert: refused with its reason in both rounds (was summed in as local - global: -0.47 per coordinate)
    assert outcome.result.included == {0, 1, 3}
    assert [client for client, _ in outcome.result.refused] == [2]
    assert "trained from another model" in outcome.result.refused[0][1]
    assert outcome.discovery is not None and [c for c, _ in outcome.discovery.refused] == [2]
    assert outcome.state_dict is not None
    expected = global_model.weight.detach() + (0.01 + 0.02 + 0.04) / 3
    assert torch.allclose(outcome.state_dict["weight"], expected, atol=1e-4)


def test_a_round_left_with_too_few_hospitals_after_the_refusals_is_skipped_with_the_reason() -> None:
    # Prepare: two of three hospitals trained from a substituted model; secagg needs two to finish
    global_model, other = _linear(0), _linear(1)
    local_models = [_trained(global_model, 0.01), _trained(other, 0.02), _trained(other, 0.03)]
    # Execute
    outcome = adapter.aggregate_models(
        global_model, local_models, make_aggregator("secagg", num_clients=3), num_samples=[5, 5, 5],
        rng=np.random.default_rng(0), clips={"weight": 1.0, "bias": 1.0}, trained_from={1: other, 2: other},
    )  # fmt: skip
    # Assert
    assert outcome.state_dict is None and outcome.result.skipped_reason
    assert [client for client, _ in outcome.result.refused] == [1, 2]


def test_the_model_digest_binds_every_tensors_name_dtype_shape_and_value() -> None:
    # Prepare
    state = {"a": torch.zeros(2, 3), "b": torch.ones(4, dtype=torch.bfloat16)}
    digest = adapter.model_digest(state)
    variants = {
        "renamed": {"c": state["a"], "b": state["b"]},
        "reordered": {"b": state["b"], "a": state["a"]},
        "reshaped": {"a": torch.zeros(3, 2), "b": state["b"]},
        "retyped": {"a": torch.zeros(2, 3, dtype=torch.float64), "b": state["b"]},
        "a value": {"a": torch.zeros(2, 3), "b": torch.tensor([1.0, 1.0, 1.0, 1.0078125], dtype=torch.bfloat16)},
    }
    # Execute / Assert: same tensors, same digest; any change, another
    assert adapter.model_digest({k: v.clone() for k, v in state.items()}) == digest and len(digest) == 32
    for name, variant in variants.items():
        assert adapter.model_digest(variant) != digest, name
    module = _linear()
    assert adapter.model_digest(module) == adapter.model_digest(dict(module.named_parameters()))


def test_hospital_update_declares_the_model_it_trained_from_and_the_aggregator_refuses_another() -> None:
    # Prepare: the hospital-side API, each update built from (received model, local model)
    global_model, stale = _linear(0), _linear(1)
    updates = [
        adapter.hospital_update(0, global_model, _trained(global_model, 0.1), num_samples=3),
        adapter.hospital_update(1, stale, _trained(stale, 0.2), num_samples=3),
        adapter.hospital_update(2, global_model, _trained(global_model, 0.3), num_samples=3),
    ]
    # Execute
    result = make_aggregator("plain").aggregate(
        updates, rng=np.random.default_rng(0), model_digest=adapter.model_digest(global_model)
    )
    # Assert: the update is local minus the model it received; the stale one is refused
    np.testing.assert_allclose(updates[1].vector, 0.2)
    assert updates[1].model_digest == adapter.model_digest(stale)
    assert result.included == {0, 2} and [c for c, _ in result.refused] == [1]
    assert result.mean is not None
    np.testing.assert_allclose(result.mean, 0.2)
    with pytest.raises(ConfigurationError, match="client 4"):
        adapter.hospital_update(4, global_model, {"weight": torch.zeros(2, 4)}, num_samples=1)


def test_trained_from_naming_a_client_outside_the_round_is_refused() -> None:
    global_model = _linear()
    with pytest.raises(ConfigurationError, match="trained_from"):
        adapter.aggregate_models(
            global_model, [_trained(global_model, 0.1)], make_aggregator("plain"), num_samples=[1],
            rng=np.random.default_rng(0), trained_from={7: global_model},
        )  # fmt: skip


def _hospitals(sizes: dict[int, int]) -> list[tuple[int, Any, Any]]:
    rng = np.random.default_rng(2)
    return [
        (i, torch.from_numpy(rng.normal(size=(n, 4))), torch.from_numpy(rng.integers(0, 2, size=n)))
        for i, n in sizes.items()
    ]


def _loss(output: Any, target: Any) -> Any:
    return torch.nn.functional.cross_entropy(output, target)


def test_a_dp_round_binds_the_global_model_and_neither_charges_nor_counts_a_stale_hospital(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: hospital 3 computes its contribution at a stale copy of the model
    sizes = {1: 30, 2: 20, 3: 50, 4: 10, 5: 40}
    dp = DPConfig(epsilon=8.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=3, sampling_rate=0.5)
    aggregator = make_aggregator("plain-quantized", num_clients=5, dp=dp, dimension=10, max_samples_per_client=64)
    model, stale = _linear(0), _linear(1)
    before = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()
    digest = torch_dp.dp_model_digest(model)  # the model the round starts from (its trainable names too)
    bound: list[Any] = []
    charged: list[Any] = []
    inner_aggregate, record = aggregator.inner.aggregate, aggregator.accountant.record_round
    monkeypatch.setattr(
        aggregator.inner, "aggregate", lambda *a, **k: bound.append(k.get("model_digest")) or inner_aggregate(*a, **k)
    )
    monkeypatch.setattr(
        aggregator.accountant, "record_round", lambda *a, **k: charged.append(k) or record(*a, **k)
    )
    # Execute
    result = torch_dp.run_dp_round(
        model, _hospitals(sizes), _loss, aggregator, learning_rate=1.5, declared_sizes=sizes,
        rng=np.random.default_rng(3), trained_from={3: stale},
    )  # fmt: skip
    # Assert: the round binds the model's digest (was the all-zero "no model"), hospital 3 is refused,
    # four contributors are charged and the step divides by q * (30 + 20 + 10 + 40) only
    assert bound == [digest]
    assert [client for client, _ in result.refused] == [3]
    assert result.mean is not None and result.included == {1, 2, 4, 5}
    assert [k.get("num_contributors") for k in charged] == [4]
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()
    np.testing.assert_allclose(after, before - 1.5 * result.mean / (0.5 * 100), rtol=1e-12, atol=1e-15)


def test_a_dp_round_left_below_its_honest_floor_by_the_refusals_is_skipped_uncharged() -> None:
    # Prepare: two of four stale hospitals, one dropout: one contributor left, h = 2
    sizes = {1: 20, 2: 20, 3: 20, 4: 20}
    dp = DPConfig(epsilon=8.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2)
    aggregator = make_aggregator("plain-quantized", num_clients=4, dp=dp, dimension=10, max_samples_per_client=64)
    model, stale = _linear(0), _linear(1)
    before = [p.detach().clone() for p in model.parameters()]
    # Execute
    result = torch_dp.run_dp_round(
        model, _hospitals(sizes), _loss, aggregator, learning_rate=1.0, declared_sizes=sizes,
        rng=np.random.default_rng(0), trained_from={2: stale, 3: stale}, dropouts={4: DropoutStage.UPLOAD},
    )  # fmt: skip
    # Assert: skipped with the reason, nothing charged, the model unchanged
    assert result.mean is None and result.skipped_reason
    assert [client for client, _ in result.refused] == [2, 3]
    assert aggregator.accountant.num_releases == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
