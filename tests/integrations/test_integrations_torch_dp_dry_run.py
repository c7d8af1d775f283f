"""PyTorch DP: the dry run on the batch's first example changes nothing the computation then uses.

:func:`clipped_gradient_sum` runs the model and the loss once on the batch's first example before
``torch.func.vmap`` (:mod:`secagg.integrations._torch_one_example`). It ran on ``inputs[:1]``, a
view of the caller's inputs: a forward pass that writes into its input in place (``x.mul_(2.0)``,
``x.sub_(mean)``) wrote into the first example before the per-sample computation ran, which then
computed that example's gradient at an input written twice, silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

from .torch_dp_checks import five_hospitals  # noqa: E402

F = torch.nn.functional


class _Doubled(torch.nn.Module):  # type: ignore[misc]
    """A Linear(4, 3) on twice its input, the doubling written into the input in place (``inplace``)
    or not: the same function, so the same gradients."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(4, 3).double()
        self.inplace = inplace

    def forward(self, x: Any) -> Any:
        return self.linear(x.mul_(2.0) if self.inplace else x * 2.0)


def test_a_forward_pass_that_writes_into_its_input_gets_the_gradients_of_its_function() -> None:
    """Before the fix: the first example's gradient was computed at 4x its features (written once by
    the dry run, once by the per-sample computation): the two sums differed."""
    # Prepare: one hospital's batch, a copy of it for each model
    inputs, targets = five_hospitals()[0][1:]
    # Execute: a clip no gradient reaches, so each example's gradient is in the sum as computed
    in_place = torch_dp.clipped_gradient_sum(_Doubled(True), F.cross_entropy, inputs.clone(), targets, 1e6)
    expected = torch_dp.clipped_gradient_sum(_Doubled(False), F.cross_entropy, inputs.clone(), targets, 1e6)
    # Assert: the same gradients as the same function written without the in-place write
    np.testing.assert_allclose(in_place, expected, rtol=1e-12, atol=1e-12)
