"""PyTorch DP: a hospital's contribution declares the DP configuration it was clipped and sampled under.

``dp_update(..., dp, ...)`` clips every example's gradient to ``dp.l2_clip`` and samples with
``dp.sampling_rate``: both shape what the hospital sends, and the noise the round adds is sized
for the aggregator's. A hospital that computed under another configuration (a clip 100 times
the declared one: one patient moves its contribution 100 times as far as the noise covers)
would otherwise be summed silently. It declares ``dp.digest()``; the DP aggregator refuses an
update declaring another configuration than its own, with the reason, before the round is
charged, and the round goes on for the others.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from fl_core.aggregators.base import ClientUpdate
from fl_core.dp import DPAggregator
from secagg.dp import DPConfig, SeededRandomSource
from secagg.errors import ConfigurationError

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")
torch_adapter = pytest.importorskip("secagg.integrations.torch")

HOSPITALS = (1, 2, 3, 4, 5)
DP = DPConfig(epsilon=8.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=2)


def _loss(output: object, target: object) -> object:
    return torch.nn.functional.cross_entropy(output, target)


def _setup() -> tuple[object, DPAggregator, dict[int, tuple[object, object]]]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2).double()
    aggregator = make_aggregator("secagg", num_clients=5, dp=DP, dimension=10, max_samples_per_client=64)
    assert isinstance(aggregator, DPAggregator)
    rng = np.random.default_rng(3)
    data = {h: (torch.from_numpy(rng.normal(size=(20, 4))), torch.from_numpy(rng.integers(0, 2, size=20)))
            for h in HOSPITALS}
    return model, aggregator, data


def _round(other: DPConfig) -> tuple[object, tuple[tuple[int, str], ...], float]:
    """Hospital 1 computes under ``other``, the others under the aggregator's configuration."""
    model, aggregator, data = _setup()
    sample = SeededRandomSource(bytes(32))
    updates = [
        torch_dp.dp_update(h, model, _loss, *data[h], other if h == 1 else aggregator.config, sample) for h in HOSPITALS
    ]
    digest = torch_dp.dp_model_digest(model)
    result = aggregator.aggregate(updates, rng=np.random.default_rng(4), model_digest=digest)
    return result, result.refused, aggregator.spent()[0]


@pytest.mark.parametrize(
    "other",
    [dataclasses.replace(DP, l2_clip=100.0), dataclasses.replace(DP, sampling_rate=0.5)],
    ids=["l2_clip", "sampling_rate"],
)
def test_a_hospital_under_another_dp_configuration_is_refused_with_the_reason(other: DPConfig) -> None:
    # Execute
    result, refused, _ = _round(other)
    # Assert: hospital 1 is refused by name and reason; the round goes on for the four others
    assert [client for client, _ in refused] == [1], refused
    assert "DP configuration" in refused[0][1]
    assert result.mean is not None and result.included == frozenset(HOSPITALS[1:])


def test_hospitals_under_the_aggregators_dp_configuration_are_all_included() -> None:
    # Execute: the control, every hospital under the declared configuration
    result, refused, spent = _round(DP)
    # Assert
    assert refused == () and result.included == frozenset(HOSPITALS)
    assert spent > 0


def test_a_malformed_dp_digest_is_refused_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="dp_digest"):
        ClientUpdate(1, np.zeros(3), 1, dp_digest=b"short")


# Every DPConfig field shapes a DP contribution or its noise: a hospital holding another value of
# any one of them is refused by name. Introspected, so a field added later is split here too.
OTHER_VALUES = {
    "epsilon": 4.0,
    "delta": 1e-6,
    "rounds": 5,
    "l2_clip": 100.0,
    "sampling_rate": 0.5,
    "min_honest": 3,
}


def test_every_dp_configuration_field_has_another_value_to_split() -> None:
    # mechanism has one value so far (MECHANISMS): nothing to split it with
    assert {f.name for f in dataclasses.fields(DPConfig)} == set(OTHER_VALUES) | {"mechanism"}


@pytest.mark.parametrize("field", sorted(OTHER_VALUES))
def test_a_split_of_any_dp_configuration_field_refuses_the_hospital_that_holds_it(field: str) -> None:
    # Execute: hospital 1 computes under the configuration with only ``field`` changed
    result, refused, _ = _round(dataclasses.replace(DP, **{field: OTHER_VALUES[field]}))
    # Assert: hospital 1 alone is refused, with the reason; the round goes on for the others
    assert [client for client, _ in refused] == [1], refused
    assert "another DP configuration" in refused[0][1]
    assert result.mean is not None and result.included == frozenset(HOSPITALS[1:])


# Which parameters are trainable (requires_grad) lays out a DP contribution: the clipped gradient
# sum covers the trainable parameters only, in named_parameters order. A state dict has no
# requires_grad, so a hospital whose copy trains another set of parameters of the same total size
# (its fine-tuning code froze the other layer) sent the same length under the same model digest,
# and its gradients were summed into another layer's coordinates.


def _two_layers(frozen: int) -> object:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)).double()
    for parameter in model[frozen].parameters():
        parameter.requires_grad_(False)
    return model


def _trainable_split_round(other: object) -> object:
    model = _two_layers(frozen=0)  # layer 1 trains: 6 values
    aggregator = make_aggregator(
        "secagg", num_clients=5, dp=DP, dimension=6, max_samples_per_client=64,
        noise_source=SeededRandomSource(bytes(32)),
    )  # fmt: skip
    rng = np.random.default_rng(3)
    hospitals = [
        (h, torch.from_numpy(rng.normal(size=(20, 2))), torch.from_numpy(rng.normal(size=(20, 2)))) for h in HOSPITALS
    ]
    return torch_dp.run_dp_round(
        model, hospitals, torch.nn.functional.mse_loss, aggregator, learning_rate=0.1,
        declared_sizes=dict.fromkeys(HOSPITALS, 20), rng=np.random.default_rng(0), trained_from={1: other},
    )  # fmt: skip


def test_a_hospital_training_another_set_of_parameters_is_refused_not_summed_into_other_coordinates() -> None:
    # Prepare: hospital 1's copy has the same values (the same state-dict digest), but trains layer 0
    # (6 values) instead of layer 1
    other = _two_layers(frozen=1)
    assert torch_adapter.model_digest(other) == torch_adapter.model_digest(_two_layers(frozen=0))
    assert torch_dp.dp_model_digest(other) != torch_dp.dp_model_digest(_two_layers(frozen=0))
    # Execute
    result = _trainable_split_round(other)
    # Assert: hospital 1 alone is refused, with the reason; the round goes on without its gradients
    assert [client for client, _ in result.refused] == [1], result.refused
    assert "another model" in result.refused[0][1]
    assert result.mean is not None and result.included == frozenset(HOSPITALS[1:])


def test_hospitals_training_the_global_models_parameters_are_all_included() -> None:
    # The control: hospital 1's copy trains the same layer
    result = _trainable_split_round(_two_layers(frozen=0))
    assert result.refused == () and result.included == frozenset(HOSPITALS)


# What the forward pass does lays out nothing but shapes every gradient: which modules are in
# training mode (a module's forward may differ by mode), which modules the model is made of (an
# activation has no parameters) and their settings (a LeakyReLU's slope). A state dict holds none
# of them, so a hospital whose copy differs only there sent as many values under the same digest.


class _TrainingScale(torch.nn.Module):
    """Doubles its input in training mode only (as a model with a training-only branch would)."""

    def forward(self, x: object) -> object:
        return x * 2.0 if self.training else x


def _forward_model(activation: object = None, *, training: bool = True) -> object:
    torch.manual_seed(0)
    layers = [torch.nn.Linear(2, 2), _TrainingScale(), activation or torch.nn.Tanh(), torch.nn.Linear(2, 2)]
    model = torch.nn.Sequential(*layers).double()
    return model.train(training)


def _forward_split_round(other: object, *, loss_names: tuple[str | None, str | None] = (None, None)) -> object:
    """A round of hospitals computing at :func:`_forward_model`, hospital 1 at ``other``; the server
    binds ``loss_names[0]``, hospital 1 declares ``loss_names[1]`` (the others the server's)."""
    model = _forward_model()
    aggregator = make_aggregator(
        "secagg", num_clients=5, dp=DP, dimension=12, max_samples_per_client=64,
        noise_source=SeededRandomSource(bytes(32)),
    )  # fmt: skip
    rng = np.random.default_rng(3)
    sample = SeededRandomSource(bytes(32))
    server_loss, hospital_loss = loss_names
    updates = [
        torch_dp.dp_update(
            h, other if h == 1 else model, torch.nn.functional.mse_loss, torch.from_numpy(rng.normal(size=(20, 2))),
            torch.from_numpy(rng.normal(size=(20, 2))), DP, sample, loss_name=hospital_loss if h == 1 else server_loss,
        )
        for h in HOSPITALS
    ]
    digest = torch_dp.dp_model_digest(model, loss_name=server_loss)
    return aggregator.aggregate(updates, rng=np.random.default_rng(0), model_digest=digest)


def _scale_in_eval() -> object:
    """The global model with its training-only module in eval mode, every other in training mode."""
    model = _forward_model()
    model[1].eval()
    return model


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda: _forward_model(training=False), id="eval-mode"),
        pytest.param(_scale_in_eval, id="one-module-in-eval-mode"),
        pytest.param(lambda: _forward_model(torch.nn.ReLU()), id="another-activation"),
        pytest.param(lambda: _forward_model(torch.nn.LeakyReLU(0.2)), id="another-activation-setting"),
    ],
)
def test_a_hospital_whose_forward_pass_differs_is_refused_not_summed(other: Any) -> None:
    # Prepare: hospital 1's copy has the global model's state dict and trainable parameters
    copy = other()
    assert torch_adapter.model_digest(copy) == torch_adapter.model_digest(_forward_model())
    if isinstance(copy[2], torch.nn.LeakyReLU):  # the control for the setting: the default slope is another copy
        assert torch_dp.dp_model_digest(copy) != torch_dp.dp_model_digest(_forward_model(torch.nn.LeakyReLU()))
    # Execute
    result = _forward_split_round(copy)
    # Assert: hospital 1 alone is refused, with the reason; the round goes on without its gradients
    assert [client for client, _ in result.refused] == [1], result.refused
    assert "another model" in result.refused[0][1]
    assert result.mean is not None and result.included == frozenset(HOSPITALS[1:])


def test_hospitals_whose_forward_pass_is_the_global_models_are_all_included() -> None:
    # The control: a separate copy built alike, in the same mode
    result = _forward_split_round(_forward_model())
    assert result.refused == () and result.included == frozenset(HOSPITALS)


@pytest.mark.parametrize(
    "loss_names", [("mse", "huber"), ("mse", None), (None, "mse")], ids=["another", "undeclared", "unbound"]
)
def test_a_hospital_declaring_another_loss_than_the_round_binds_is_refused(
    loss_names: tuple[str | None, str | None],
) -> None:
    result = _forward_split_round(_forward_model(), loss_names=loss_names)
    assert [client for client, _ in result.refused] == [1], result.refused
    assert result.mean is not None and result.included == frozenset(HOSPITALS[1:])


def test_hospitals_declaring_the_rounds_loss_are_all_included() -> None:
    result = _forward_split_round(_forward_model(), loss_names=("mse", "mse"))
    assert result.refused == () and result.included == frozenset(HOSPITALS)


@pytest.mark.parametrize("name", ["", "\ud800", b"mse", 3])
def test_a_loss_name_that_is_no_nonempty_text_is_refused(name: Any) -> None:
    with pytest.raises(ConfigurationError, match="loss_name"):
        torch_dp.dp_model_digest(_forward_model(), loss_name=name)


def test_a_parameter_name_utf8_cannot_encode_is_refused_with_a_library_error() -> None:
    # A lone surrogate (bytes that were not UTF-8, decoded) has no UTF-8 form to digest
    model = torch.nn.Module()
    model.register_parameter("\ud800", torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)))
    with pytest.raises(ConfigurationError, match="Unicode"):
        torch_dp.dp_model_digest(model)
