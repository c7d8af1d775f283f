"""PyTorch adapter, no DP: what a module holds outside its state dict is bound or refused.

The non-DP adapter binds the global model a hospital trained from by its state dict
(``model_digest``). A module can hold two kinds of values outside it:

- a non-persistent buffer (``register_buffer(..., persistent=False)``: a mask, a scale): a tensor
  value of the model that its forward pass reads, in no state dict, so two hospitals whose models
  differed only there had one digest and their updates were summed as one model's. It is now bound:
  a module's ``model_digest`` covers its non-persistent buffers (by name, dtype, shape and values),
  and a hospital whose local model holds another value than the model it trained from is withheld.
- extra state (``get_extra_state``: any Python object): no tensor, so nothing can sum or bind it.
  ``flatten_model(buffers=True)`` skipped it without a word and ``model_digest`` refused it as
  "entry '_extra_state' is a dict, not a torch.Tensor"; both now refuse it naming extra state.

A model on the meta device (shapes, no values) was refused telling the caller to "to_dense() it".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fl_core.aggregators import make_aggregator  # noqa: E402
from secagg.errors import ConfigurationError, ConfigurationTypeError  # noqa: E402
from secagg.integrations import torch as adapter  # noqa: E402

from .torch_modules import WithExtraState as _WithExtraState  # noqa: E402


class _Scaled(torch.nn.Module):  # type: ignore[misc]
    """A Linear(3, 2) whose output is multiplied by a non-persistent buffer (in no state dict)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3, 2).double()
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float64), persistent=False)

    def forward(self, x: Any) -> Any:
        return self.linear(x) * self.scale


def _trained(model: Any, step: float) -> Any:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(step)
    return model


def test_two_models_differing_only_in_a_non_persistent_buffer_have_other_digests() -> None:
    """Before: one digest for scales 1 and 5."""
    assert adapter.model_digest(_Scaled(1.0)) != adapter.model_digest(_Scaled(5.0))
    assert adapter.model_digest(_Scaled(1.0)) == adapter.model_digest(_Scaled(1.0))
    assert adapter.model_digest(_Scaled(1.0), buffers=False) != adapter.model_digest(_Scaled(5.0), buffers=False)


def test_a_hospital_whose_model_holds_another_non_persistent_buffer_is_withheld_naming_it() -> None:
    """Before: hospital 1's update (of a model computing five times the output) was summed in."""
    # Prepare: hospital 1 built its model with another scale, everything else equal
    global_model = _Scaled(1.0)
    local_models = [_trained(_Scaled(5.0 if k == 1 else 1.0), 0.01 * (k + 1)) for k in range(4)]
    # Execute
    outcome = adapter.aggregate_models(
        global_model, local_models, make_aggregator("secagg", num_clients=4), num_samples=[5, 5, 5, 5],
        rng=np.random.default_rng(0), clips={"linear.weight": 1.0, "linear.bias": 1.0},
    )  # fmt: skip
    # Assert: withheld naming the buffer, the others' mean without it
    assert outcome.result.included == {0, 2, 3}
    assert [client for client, _ in outcome.result.withheld] == [1]
    assert "non-persistent buffer 'scale'" in outcome.result.withheld[0][1]
    assert outcome.state_dict is not None
    expected = global_model.linear.weight.detach() + (0.01 + 0.03 + 0.04) / 3
    assert torch.allclose(outcome.state_dict["linear.weight"], expected, atol=1e-4)


def test_a_hospital_that_trained_from_a_copy_with_another_non_persistent_buffer_is_refused() -> None:
    """Before: the copy's digest was the global model's, so hospital 2 was summed in."""
    global_model, other = _Scaled(1.0), _Scaled(5.0)
    local_models = [_trained(_Scaled(1.0), 0.01), _trained(_Scaled(1.0), 0.02), _trained(_Scaled(5.0), 0.03)]
    outcome = adapter.aggregate_models(
        global_model, local_models, make_aggregator("plain"), num_samples=[1, 1, 1], rng=np.random.default_rng(0),
        trained_from={2: other}, discovery=False,
    )  # fmt: skip
    assert outcome.result.included == {0, 1}
    assert [client for client, _ in outcome.result.refused] == [2]


def test_hospital_update_declares_the_non_persistent_buffers_and_refuses_a_local_model_that_changed_them() -> None:
    """Before: the declared digest was the state dict's alone (the server's aggregate took it), and a
    local model with another scale than the received one was taken."""
    received, stale = _Scaled(1.0), _Scaled(5.0)
    updates = [
        adapter.hospital_update(0, received, _trained(_Scaled(1.0), 0.1), num_samples=1),
        adapter.hospital_update(1, stale, _trained(_Scaled(5.0), 0.1), num_samples=1),
    ]
    result = make_aggregator("plain").aggregate(
        updates, rng=np.random.default_rng(0), model_digest=adapter.model_digest(received)
    )
    assert result.included == {0} and [client for client, _ in result.refused] == [1]
    with pytest.raises(ConfigurationError, match=r"client 3:.*non-persistent buffer 'scale'"):
        adapter.hospital_update(3, received, _trained(_Scaled(5.0), 0.1), num_samples=1)


def test_a_module_with_extra_state_is_refused_by_flatten_model_naming_it() -> None:
    """Before: flattened without its extra state (buffers=True skipped it without a word)."""
    with pytest.raises(ConfigurationError, match=r"module '' has extra state \(get_extra_state\)"):
        adapter.flatten_model(_WithExtraState(), buffers=True)


@pytest.mark.parametrize("buffers", [True, False])
def test_a_module_with_extra_state_is_refused_by_model_digest_naming_it(buffers: bool) -> None:
    """Before: "entry '_extra_state' is a dict, not a torch.Tensor" (buffers=True), or a digest
    that left the extra state out (buffers=False)."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), _WithExtraState())
    with pytest.raises(ConfigurationError, match=r"module '1' has extra state \(get_extra_state\)"):
        adapter.model_digest(model, buffers=buffers)


def test_two_hospitals_whose_extra_state_differs_are_withheld_not_summed() -> None:
    """Before: withheld with the reason "entry '_extra_state' is a dict, not a torch.Tensor"."""
    global_model = torch.nn.Linear(3, 2)
    outcome = adapter.aggregate_models(
        global_model, [torch.nn.Linear(3, 2), _WithExtraState()], make_aggregator("plain"), num_samples=[1, 1],
        rng=np.random.default_rng(0), discovery=False,
    )  # fmt: skip
    assert [client for client, _ in outcome.result.withheld] == [1]
    assert "extra state (get_extra_state)" in outcome.result.withheld[0][1]


def test_a_state_dict_entry_of_extra_state_is_refused_naming_it() -> None:
    """Before: "entry '_extra_state' is a dict, not a torch.Tensor"."""
    with pytest.raises(ConfigurationError, match=r"'_extra_state'.*extra state \(get_extra_state\)"):
        adapter.model_digest(_WithExtraState().state_dict())


@pytest.mark.parametrize(
    "read",
    [adapter.model_digest, adapter.flatten_model, lambda model: adapter.flatten_state_dict(model.state_dict())],
    ids=["model_digest", "flatten_model", "flatten_state_dict"],
)
def test_a_model_on_the_meta_device_is_refused_saying_it_has_no_values(read: Any) -> None:
    """Before: "only dense tensors with data are supported (to_dense() it)": it is dense."""
    model = torch.nn.Linear(4, 3, device="meta")
    with pytest.raises(ConfigurationError, match=r"'weight' is on the meta device.*load_state_dict") as refusal:
        read(model)
    assert "to_dense" not in str(refusal.value)


ENTRY_POINTS = {
    "flatten_model": lambda model, value: adapter.flatten_model(model, buffers=value),
    "model_digest": lambda model, value: adapter.model_digest(model, buffers=value),
    "hospital_update": lambda model, value: adapter.hospital_update(0, model, model, num_samples=1, buffers=value),
    "aggregate_models": lambda model, value: adapter.aggregate_models(
        model, [model, model], make_aggregator("plain", num_clients=2), num_samples=[1, 1],
        rng=np.random.default_rng(0), buffers=value,
    ),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("value", ["no", 0, None, np.True_])
def test_buffers_must_be_a_bool_in_every_entry_point(entry: str, value: Any) -> None:
    """``buffers="no"`` was read as true (and 0 or None as false) by truthiness, so a typo chose
    what the round sums and binds; it is the library's type error, as ``trainable_only`` is in Keras."""
    with pytest.raises(ConfigurationTypeError, match="buffers must be True or False"):
        ENTRY_POINTS[entry](torch.nn.Linear(2, 1), value)
