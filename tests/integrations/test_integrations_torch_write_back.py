"""PyTorch adapters: every write-back refuses what the read side refuses, before writing anything.

``flatten_model``, ``model_digest`` and the DP digest refuse a module with extra state
(``get_extra_state``: no tensor, neither summed nor bound) and a tensor on the meta device (a shape,
no values). The entry points that write an aggregate back into a module (``load_into_model``,
``ModelAggregation.load_into``, ``torch_dp.apply_dp_step``) wrote into such a module all the same:
the extra state kept whatever the module held, and a write into a meta tensor is a no-op torch
does not report (the tensors before it written, the meta one not). ``ModelAggregation.load_into``
also wrote the new global model into a module with a tensor more than the round's layout (left as
it was: half a new global model). Each is now refused with the module untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from secagg.errors import ConfigurationError

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

from fl_core.aggregators import make_aggregator  # noqa: E402
from secagg.integrations import torch as adapter  # noqa: E402

from .torch_modules import WithExtraState as _WithExtraState  # noqa: E402


def _extra_state_model() -> Any:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 3), _WithExtraState())


def _half_meta_model() -> Any:
    """A Linear(3, 3) with values, then a Linear(3, 2) on the meta device (shapes, no values)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2, device="meta"))


def _plain_twin() -> Any:
    """The same layout with values: where the aggregate comes from."""
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))


def _snapshot(model: Any) -> dict[str, Any]:
    return {name: tensor.detach().clone() for name, tensor in model.named_parameters()}


def _unchanged(model: Any, before: dict[str, Any]) -> bool:
    now = dict(model.named_parameters())
    return all(torch.equal(now[name].detach(), value) for name, value in before.items() if not value.is_meta)


def _load_into_model(model: Any) -> None:
    adapter.load_into_model(model, *adapter.flatten_model(_plain_twin()))


def _load_into(model: Any) -> None:
    twin = _plain_twin()
    outcome = adapter.aggregate_models(
        twin, [twin, twin], make_aggregator("plain"), num_samples=[1, 1], rng=np.random.default_rng(0),
        discovery=False,
    )  # fmt: skip
    outcome.load_into(model)


def _apply_dp_step(model: Any) -> None:
    size = sum(int(p.numel()) for p in model.parameters())
    torch_dp.apply_dp_step(model, np.ones(size), 1.0, 0.1)


WRITES = {
    "load_into_model": _load_into_model, "ModelAggregation.load_into": _load_into, "apply_dp_step": _apply_dp_step,
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_module_with_extra_state_is_refused_before_any_write(write: str) -> None:
    """Before: written (its extra state left as it was, never summed nor bound)."""
    model = _extra_state_model()
    before = _snapshot(model)
    with pytest.raises(ConfigurationError, match=r"module '1' has extra state \(get_extra_state\)"):
        WRITES[write](model)
    assert _unchanged(model, before)


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_module_with_a_tensor_on_the_meta_device_is_refused_before_any_write(write: str) -> None:
    """Before: the tensors with values written, the meta ones silently not (torch's no-op), or torch's
    own error after the first writes."""
    model = _half_meta_model()
    before = _snapshot(model)
    with pytest.raises(ConfigurationError, match=r"'1\.weight' is on the meta device"):
        WRITES[write](model)
    assert _unchanged(model, before)


def test_load_into_refuses_a_module_with_a_tensor_the_round_did_not_aggregate() -> None:
    """Before: the round's tensors written, the extra parameter left as it was (half a new global)."""
    model = _plain_twin()
    model.add_module("2", torch.nn.Linear(2, 2))
    before = _snapshot(model)
    with pytest.raises(ConfigurationError, match=r"'2\.weight'.*not in the round's layout"):
        _load_into(model)
    assert _unchanged(model, before)


@pytest.mark.parametrize("buffers", [True, False])
def test_load_into_still_writes_the_global_model_s_layout_in_either_buffer_mode(buffers: bool) -> None:
    """What the refusals leave: the model the round aggregated takes its new tensors, buffers
    (BatchNorm's statistics) only if the round summed them."""
    torch.manual_seed(2)
    global_model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    local = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    local.load_state_dict(global_model.state_dict())
    with torch.no_grad():
        local[0].weight.add_(1.0)
        local[1].running_mean.add_(1.0)
    outcome = adapter.aggregate_models(
        global_model, [local, local], make_aggregator("plain"), num_samples=[1, 1], rng=np.random.default_rng(0),
        discovery=False, buffers=buffers,
    )  # fmt: skip
    outcome.load_into(global_model)
    assert torch.allclose(global_model[0].weight, local[0].weight)
    assert torch.equal(global_model[1].running_mean, local[1].running_mean) is buffers
