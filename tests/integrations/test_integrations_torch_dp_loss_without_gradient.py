"""PyTorch DP: a loss that does not depend on the trainable parameters is refused, not summed as zeros.

``torch.func.grad`` of a loss computed from a detached output (``output.detach()``, a loss written
on ``output.data``) is zero for every parameter, without a word: every example's clipped gradient
was 0, so a hospital contributed nothing but still counted in the round's denominator, and a round
of such hospitals released noise around a zero update. It is the same silence as an integer loss's
(refused as :class:`LossNotScalarError`); now the per-sample computation refuses a loss that does not
depend on the model's trainable parameters the same way, so ``run_dp_round`` raises it for the round,
uncharged, when it is the caller's loss, and withholds a hospital whose copy alone makes it so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

from .torch_dp_checks import assert_refused_before_any_charge, dp_aggregator, five_hospitals  # noqa: E402

F = torch.nn.functional


def _model() -> Any:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3).double()


DETACHED = {
    "output.detach()": lambda o, t: F.cross_entropy(o.detach(), t),
    "a constant": lambda o, t: torch.tensor(0.5, dtype=torch.float64),
    # requires_grad, but a leaf of its own: grad of it with respect to the model's parameters is zero
    "a parameter of the loss's own": lambda o, t: _OWN,
    # requires grad and has a grad_fn, but was computed before, outside the per-sample computation: a
    # loss the function closes over (a cached one) is no function of the model's parameters there either
    "a function of its own parameter, computed before": lambda o, t: _BEFORE,
    "a cached loss of another model's output": lambda o, t: _CACHED,
}
_OWN = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))
_BEFORE = _OWN * 1.0
_CACHED = F.cross_entropy(torch.nn.Linear(4, 3).double()(torch.ones(1, 4, dtype=torch.float64)), torch.tensor([0]))


@pytest.mark.parametrize("case", sorted(DETACHED))
def test_a_loss_that_does_not_depend_on_the_parameters_is_refused(case: str) -> None:
    """Before: clipped_gradient_sum returned zeros, run_dp_round included every hospital and
    charged the round for a zero update."""
    assert_refused_before_any_charge(
        _model(), five_hospitals(), DETACHED[case], dp_aggregator(15), r"does not depend on the model's trainable"
    )


def test_a_loss_that_depends_on_the_parameters_keeps_its_gradients() -> None:
    """The check refuses nothing else: the clipped sum of a plain cross-entropy is not zero."""
    inputs, targets = five_hospitals()[0][1:]
    summed = torch_dp.clipped_gradient_sum(_model(), F.cross_entropy, inputs, targets, 1.0)
    assert np.abs(summed).max() > 0


class _Scale(torch.nn.Module):  # type: ignore[misc]
    """A model whose output is its own 0-d parameter, as it is (a leaf, no operation on it)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

    def forward(self, x: Any) -> Any:
        return self.scale


def test_a_loss_that_is_a_trainable_parameter_itself_keeps_its_gradient() -> None:
    """The check refuses no loss that is one of the model's own parameters: its gradient is one."""
    inputs, targets = five_hospitals()[0][1:]
    summed = torch_dp.clipped_gradient_sum(_Scale(), lambda o, t: o, inputs, targets, 1e6)
    np.testing.assert_array_equal(summed, [12.0])
