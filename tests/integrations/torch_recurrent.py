"""Shared by the PyTorch DP tests of recurrent layers (``test_integrations_torch_dp_recurrent_*``):
lookups by routes no ``TorchFunctionMode`` sees, token batches, one-at-a-time autograd's clipped sum,
and the two checks those tests repeat (a refusal that leaves the model as it was; one example moving the
clipped sum by at most the clip)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from secagg.errors import ConfigurationError

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

F = torch.nn.functional


def _embedding(weight: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return torch.embedding(weight, indices)


with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script's own: still what models ship
    _scripted_lookup = torch.jit.script(_embedding)


def lookup(route: str, weight: Any, indices: Any) -> Any:
    """``weight``'s rows at ``indices`` by ``route``: a TorchScript function, ``torch.ops.aten.embedding``
    called directly, ``F.embedding`` under ``torch._C.DisableTorchFunction`` (none of which a
    TorchFunctionMode sees), or plain ``F.embedding``."""
    if route == "TorchScript":
        return _scripted_lookup(weight, indices)
    if route == "aten":
        return torch.ops.aten.embedding(weight, indices)
    if route == "F.embedding":
        return F.embedding(indices, weight)
    with torch._C.DisableTorchFunction():
        return F.embedding(indices, weight)


def tokens(table: int, rows: int) -> tuple[Any, Any]:
    """``rows`` examples of three token ids below ``table``, and their labels (0 or 1)."""
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.integers(0, table, size=(rows, 3)))
    return x, torch.from_numpy(rng.integers(0, 2, size=rows))


def outside(table: int) -> dict[str, tuple[int, int]]:
    """Where one token (its row of :func:`tokens`'s batch, its id) lies outside a table of ``table`` rows,
    by case."""
    return {
        "past the table, a middle row": (3, table),
        "far past the table, a middle row": (3, table + 5),
        "negative, a middle row": (3, -1),
        "past the table, the first row": (0, table),
    }


def looped(model: Any, x: Any, y: Any, clip: float) -> Any:
    """The clipped sum by plain autograd, one example at a time (trainable parameters, in order; a
    parameter the example does not reach, zero)."""
    trained = [p for p in model.parameters() if p.requires_grad]
    total = np.zeros(sum(p.numel() for p in trained))
    for i in range(x.shape[0]):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        g = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in trained])
        g = g.double().numpy()
        total += g * min(1.0, clip / float(np.linalg.norm(g)))
    return total


def refusal_leaving_the_model(model: Any, x: Any, y: Any) -> ConfigurationError:
    """The library's refusal of ``model``'s clipped sum over ``x``, ``y`` (clip 1.0), asserted to leave
    the model's state as it was; returned for the caller's checks of its cause."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigurationError) as refused:
        torch_dp.clipped_gradient_sum(model, F.cross_entropy, x, y, 1.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    return refused.value


def assert_one_example_moves_the_sum_by_at_most_the_clip(model: Callable[[], Any], table: int) -> None:
    """Example 1 the honest tokens 0, 1, 2 (label 0); example 0 (label 1) tokens ``table`` .. ``table + 2``,
    the same rows of example 1's view were its lookup offset unchecked. Adding example 0 must move the
    clipped sum (clip 0.01) of ``model()`` by at most the clip, or the batch is refused."""
    clip = 0.01
    x = torch.tensor([[table, table + 1, table + 2], [0, 1, 2]])
    y = torch.tensor([1, 0])
    without = torch_dp.clipped_gradient_sum(model(), F.cross_entropy, x[1:], y[1:], clip)
    try:
        summed = torch_dp.clipped_gradient_sum(model(), F.cross_entropy, x, y, clip)
    except ConfigurationError:
        return  # refused: no sum, no sensitivity to break
    moved = float(np.linalg.norm(summed - without))
    assert moved <= clip * (1 + 1e-9), f"one example moved the clipped sum by {moved / clip:.3f} clips"


def assert_the_clipped_sum_is_one_at_a_time_autograd_s(model: Callable[[], Any], x: Any, y: Any) -> None:
    """The clipped sum (clip 0.05, which binds) of a fresh ``model()`` over ``x``, ``y`` equals
    :func:`looped`'s on another fresh ``model()``, to float64 rounding."""
    summed = torch_dp.clipped_gradient_sum(model(), F.cross_entropy, x, y, 0.05)
    np.testing.assert_allclose(summed, looped(model(), x, y, 0.05), rtol=1e-10, atol=1e-12)
