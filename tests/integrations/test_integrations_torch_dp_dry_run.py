"""PyTorch DP: the dry run on the batch's first example changes nothing the computation then uses,
and a hospital's data or copy cannot make it end the round for everyone.

:func:`clipped_gradient_sum` runs the model and the loss once on the batch's first example before
``torch.func.vmap`` (:mod:`secagg.integrations._torch_one_example`). Two defects of that dry run:

- It ran on ``inputs[:1]``, a view of the caller's inputs: a forward pass that writes into its input
  in place (``x.mul_(2.0)``, ``x.sub_(mean)``) wrote into the first example before the per-sample
  computation ran, which then computed that example's gradient at an input written twice, silently.
- ``run_dp_round`` raised :class:`LossNotScalarError` for the whole round when the loss returned
  no scalar float at the first hospital whose turn came, taking it for the caller's loss. But what
  the loss returns can depend on the hospital: complex features through a model that keeps its
  input's dtype (an elementwise weighting), or a hospital's own ``trained_from`` copy whose output
  is complex, made it return a complex scalar, and that one hospital ended every hospital's round.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fl_core.dp import DPAggregator
from secagg.errors import ConfigurationError

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

from .torch_dp_checks import dp_aggregator, five_hospitals  # noqa: E402

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


class _Weighted(torch.nn.Module):  # type: ignore[misc]
    """``(x * w).sum(-1)``: a hand-written linear score, in the dtype its input promotes it to."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(0.1, 0.4, 4, dtype=torch.float64))

    def forward(self, x: Any) -> Any:
        return (x * self.w).sum(-1)


class _ComplexCopy(_Weighted):
    """A hospital's own copy whose score comes out complex."""

    def forward(self, x: Any) -> Any:
        return super().forward(x).to(torch.complex128)


def _squared_error(output: Any, target: Any) -> Any:
    return (output - target).square().sum()  # a float scalar for real scores and targets


def _round(
    hospitals: list[tuple[int, Any, Any]], loss: Any = _squared_error, trained_from: Any = None
) -> tuple[Any, DPAggregator]:
    aggregator = dp_aggregator(4)
    result = torch_dp.run_dp_round(
        _Weighted(), hospitals, loss, aggregator, learning_rate=1.0, declared_sizes={h: 12 for h in range(1, 6)},
        rng=np.random.default_rng(0), trained_from=trained_from,
    )  # fmt: skip
    return result, aggregator


def _real_targets(hospitals: list[tuple[int, Any, Any]]) -> list[tuple[int, Any, Any]]:
    return [(h, x, y.double()) for h, x, y in hospitals]


@pytest.mark.parametrize("cause", ["its complex features", "its own copy"])
def test_a_hospital_that_makes_the_loss_return_no_scalar_float_is_withheld_alone(cause: str) -> None:
    """Before the fix: run_dp_round raised LossNotScalarError ("loss_fn returned a torch.complex128
    tensor") for the round: the four other hospitals' round was lost to hospital 3's data or copy."""
    # Prepare: hospital 3's features are complex, or it holds a copy whose score is complex
    hospitals = _real_targets(five_hospitals())
    trained_from = None
    if cause == "its complex features":
        hospitals[2] = (3, hospitals[2][1].to(torch.complex128), hospitals[2][2])
    else:
        trained_from = {3: _ComplexCopy()}
    # Execute
    result, aggregator = _round(hospitals, trained_from=trained_from)
    # Assert: hospital 3 withheld with the library's reason; the others' round released, charged once
    ((client, reason),) = result.withheld
    assert client == 3 and "loss_fn returned a torch.complex128 tensor" in reason, reason
    assert result.included == {1, 2, 4, 5} and aggregator.accountant.num_releases == 1


def test_a_loss_that_returns_no_scalar_anywhere_still_ends_the_round_before_any_charge() -> None:
    """The caller's own loss (``reduction='none'``) returns no scalar at any hospital whose sample
    is not empty: still raised for the round, uncharged, even beside a hospital with no rows, whose
    contribution of zeros never ran the loss (a rule of 'raise only when every hospital fails so'
    would have released a round of noise alone, charged)."""
    # Prepare: hospital 5 has no rows; the others' targets real
    hospitals = _real_targets(five_hospitals())
    hospitals[4] = (5, hospitals[4][1][:0], hospitals[4][2][:0])
    aggregator = dp_aggregator(4)
    model = _Weighted()
    before = model.w.detach().clone()

    def per_example(output: Any, target: Any) -> Any:
        return (output - target).square()

    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"loss_fn returned a tensor of shape \(1,\)"):
        torch_dp.run_dp_round(
            model, hospitals, per_example, aggregator, learning_rate=1.0,
            declared_sizes={h: 12 for h in range(1, 6)}, rng=np.random.default_rng(0),
        )  # fmt: skip
    assert aggregator.spent()[0] == 0.0 and torch.equal(model.w.detach(), before)


def test_an_empty_batch_contributes_zeros_without_running_the_model_or_the_loss() -> None:
    """Pins the documented behaviour (docs/privacy.md): an empty batch's exact clipped sum is the
    zero vector, computed without the model or the loss (no forward pass on made-up data), so a loss
    that returns no scalar is found only at a non-empty batch, where it is refused."""
    # Prepare: a loss returning one value per example, recording its calls; a model counting its forward passes
    calls: list[int] = []
    forwards: list[int] = []
    model = _Doubled(False)
    model.register_forward_hook(lambda module, args, output: forwards.append(1))
    inputs, targets = five_hospitals()[0][1:]

    def per_example(output: Any, target: Any) -> Any:
        calls.append(1)
        return F.cross_entropy(output, target, reduction="none")

    # Execute: an empty batch
    total = torch_dp.clipped_gradient_sum(model, per_example, inputs[:0], targets[:0], 1.0)
    # Assert: zeros of the model's size, neither the model nor the loss ran
    assert total.shape == (15,) and not total.any()
    assert calls == [] and forwards == []
    # The same loss on a non-empty batch is refused, naming what it returned
    with pytest.raises(ConfigurationError, match=r"loss_fn returned a tensor of shape \(1,\)"):
        torch_dp.clipped_gradient_sum(model, per_example, inputs, targets, 1.0)


def test_a_computation_that_succeeds_runs_the_forward_hooks_once_and_no_dry_run() -> None:
    """Before: the dry run ran the model once more on copies of the first example, the parameters
    and the buffers, before the per-sample computation: its forward hooks ran twice per hospital
    (a hook counting calls saw 2) and each hospital held one more copy of the parameters. The dry
    run now runs only to name a failure of the per-sample computation."""
    # Prepare: a model whose forward hook counts its calls
    calls: list[int] = []
    model = _Doubled(False)
    model.register_forward_hook(lambda module, args, output: calls.append(1))
    inputs, targets = five_hospitals()[0][1:]
    # Execute
    torch_dp.clipped_gradient_sum(model, F.cross_entropy, inputs, targets, 1.0)
    # Assert: one forward pass, the per-sample computation's (vmap runs the hook once for the batch)
    assert len(calls) == 1


def test_a_failure_of_the_per_sample_computation_is_still_named_by_the_first_example() -> None:
    """The dry run, now run only after the per-sample computation failed, still names which of the
    model and the loss failed on the first example, with the model put back as it was."""
    # Prepare: 7 features for a model of 4
    model = _Doubled(False)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    inputs, targets = five_hospitals()[0][1:]
    wide = torch.cat([inputs, inputs[:, :3]], dim=1)
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"forward pass raised RuntimeError on the batch's first example"):
        torch_dp.clipped_gradient_sum(model, F.cross_entropy, wide, targets, 1.0)
    assert all(torch.equal(p.detach(), before[name]) for name, p in model.named_parameters())
