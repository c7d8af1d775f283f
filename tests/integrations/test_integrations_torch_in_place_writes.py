"""PyTorch adapters: a write into a model is refused before any tensor is written, or made.

``apply_dp_step`` wrote each trainable parameter in turn: a parameter whose elements share memory
(made with ``expand``) failed with torch's RuntimeError after the parameters before it had taken
the step, and two parameters over one memory were written one over the other without a word.
``load_into_model`` refused those (``secagg.integrations._torch_ties``); ``apply_dp_step`` now runs
the same check first. A model built under ``torch.inference_mode()`` holds inference tensors, which
torch lets no one write in place outside inference mode: ``load_into_model`` (and ``apply_dp_step``)
raised torch's RuntimeError, after writing the tensors before the first inference one; such a
tensor is now written inside inference mode, as torch allows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from secagg.errors import ConfigurationError

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")
from secagg.integrations.torch import flatten_model, load_into_model, unflatten_state_dict  # noqa: E402


def _shared_memory(how: str) -> Any:
    """A Linear(2, 2), then a module whose parameters share memory: an expanded one, one with
    overlapping strides, or two over one memory."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Module())
    base = torch.zeros(6)
    if how == "expand":
        model[1].p = torch.nn.Parameter(base[:1].expand(4))
    elif how == "overlapping-strides":
        model[1].p = torch.nn.Parameter(base.as_strided((2, 2), (1, 1)))
    else:
        model[1].p, model[1].q = torch.nn.Parameter(base[:4]), torch.nn.Parameter(base[2:])
    return model


@pytest.mark.parametrize("how", ["expand", "overlapping-strides", "two-parameters"])
def test_apply_dp_step_refuses_parameters_that_share_memory_before_any_write(how: str) -> None:
    # Prepare
    model = _shared_memory(how)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    total = sum(p.numel() for p in model.parameters())
    # Execute / Assert: the library's error naming the parameter, and no parameter written
    with pytest.raises(ConfigurationError, match=r"'1\.[pq]'.*share"):
        torch_dp.apply_dp_step(model, np.ones(total), 1.0, 0.1)
    for name, p in model.named_parameters():
        assert torch.equal(p.detach(), before[name]), name


def test_apply_dp_step_takes_the_step_on_a_strided_parameter_whose_elements_do_not_share_memory() -> None:
    # The control: a transposed parameter is written as any other
    model = torch.nn.Module()
    model.p = torch.nn.Parameter(torch.zeros(3, 2, dtype=torch.float64).t())
    torch_dp.apply_dp_step(model, np.arange(6, dtype=np.float64), 2.0, 1.0)
    assert torch.equal(model.p.detach(), -torch.arange(6, dtype=torch.float64).reshape(2, 3) / 2)


def _inference_model(whole: bool) -> Any:
    """A Linear then a BatchNorm1d, every tensor an inference tensor (``whole``), or only the
    BatchNorm's bias (a parameter replaced under inference mode, after the Linear in write order)."""
    torch.manual_seed(0)
    if whole:
        with torch.inference_mode():
            return torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    with torch.inference_mode():
        model[1].bias = torch.nn.Parameter(torch.zeros(2))
    return model


@pytest.mark.parametrize("whole", [True, False], ids=["built-in-inference-mode", "one-inference-parameter"])
def test_load_into_model_writes_inference_tensors(whole: bool) -> None:
    # Prepare
    model = _inference_model(whole)
    vector, layout = flatten_model(model, buffers=True)
    wanted = vector + np.arange(vector.size)
    # Execute
    load_into_model(model, wanted, layout)
    # Assert: every tensor holds the vector's values, still an inference tensor where it was one
    got, _ = flatten_model(model, buffers=True)
    expected = np.concatenate([t.double().reshape(-1).numpy() for t in unflatten_state_dict(wanted, layout).values()])
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, vector)
    assert model[1].bias.is_inference() and model[0].weight.is_inference() == whole


@pytest.mark.parametrize("whole", [True, False], ids=["built-in-inference-mode", "one-inference-parameter"])
def test_apply_dp_step_steps_inference_parameters(whole: bool) -> None:
    # Prepare
    model = _inference_model(whole)
    before, _ = flatten_model(model)
    # Execute
    torch_dp.apply_dp_step(model, np.ones(before.size), 1.0, 0.5)
    # Assert: every trainable parameter took the step
    after, _ = flatten_model(model)
    np.testing.assert_allclose(after, before - 0.5, rtol=0, atol=1e-7)
