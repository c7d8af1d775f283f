"""PyTorch DP: why ``clipped_gradient_sum`` keeps one copy of the parameters per call, and what it
puts back with it.

The per-sample computation reads the parameters' own memory (detached, expanded views: no copy),
so a forward pass that writes into a parameter in place writes into the caller's model; the copy
taken before is what finds the write (a value comparison: a ``.data`` write made outside torch.func
moves no version counter) and puts the parameter back (test_integrations_torch_dp.py, "writes into
a parameter": it fails with the copy removed). The dry run on the first example, which names a
failure, ran the same forward pass again after the put-back: a write it made through a reference
the module kept to its own parameter (``.data``, which torch.func refuses inside the computation but
not outside it) stayed in the caller's model after the refusal. It is put back too now, and so is a
running statistic the dry run updates in a buffer it kept a reference to, or in a frozen parameter
(neither among the copies the dry run runs on): the first example's values stayed in the model.
"""

from __future__ import annotations

from typing import Any

import pytest

from secagg.errors import ConfigurationError

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

F = torch.nn.functional


class _KeepsItsWeight(torch.nn.Module):  # type: ignore[misc]
    """A Linear layer whose forward clamps its weight through a reference kept at construction."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(4, 3)
        self.kept = (self.linear.weight,)  # a plain attribute: functional_call does not swap it

    def forward(self, x: Any) -> Any:
        self.kept[0].data.clamp_(-0.1, 0.1)
        return self.linear(x)


def test_a_write_the_dry_run_makes_into_the_model_is_put_back_after_the_refusal() -> None:
    """Before: refused (torch.func refused the write inside the computation), but the dry run that
    followed clamped the caller's weight, and it stayed clamped."""
    # Prepare
    model = _KeepsItsWeight()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert float(before["linear.weight"].abs().max()) > 0.1  # the clamp would change it
    # Execute / Assert: refused, the model as it was
    with pytest.raises(ConfigurationError):
        torch_dp.clipped_gradient_sum(model, F.cross_entropy, torch.randn(3, 4), torch.tensor([0, 1, 2]), 1.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.kept[0] is model.linear.weight  # the module's own attribute kept


class _UpdatesItsState(torch.nn.Module):  # type: ignore[misc]
    """A Linear layer and a running mean of the inputs updated in place inside forward (as a
    BatchNorm's running statistics are): in a buffer written through a reference the module kept to
    it, or in a frozen parameter (requires_grad=False: no gradient, so not among the ones copied)."""

    def __init__(self, state: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.state, self.linear = state, torch.nn.Linear(4, 3)
        self.register_buffer("running", torch.ones(4))
        self.frozen = torch.nn.Parameter(torch.ones(4), requires_grad=False)
        self.kept = (self.running,)  # a plain attribute: functional_call does not swap it

    def forward(self, x: Any) -> Any:
        updated = self.kept[0] if self.state == "a buffer kept by reference" else self.frozen
        updated.mul_(0.9).add_(0.1 * x.mean(0))  # the first example's values, in the dry run
        return self.linear(x)


@pytest.mark.parametrize("state", ["a buffer kept by reference", "a frozen parameter"])
def test_a_running_statistic_the_dry_run_updates_is_put_back_after_the_refusal(state: str) -> None:
    """Before: refused (torch.func refuses the in-place update inside the computation), but the dry
    run that followed updated the caller's buffer or frozen parameter from the first example's
    values, and the model kept them."""
    # Prepare
    model = _UpdatesItsState(state)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # Execute / Assert: refused, the model as it was (the first example's values nowhere in it)
    with pytest.raises(ConfigurationError):
        torch_dp.clipped_gradient_sum(model, F.cross_entropy, torch.randn(3, 4), torch.tensor([0, 1, 2]), 1.0)
    assert [k for k, v in model.state_dict().items() if not torch.equal(before[k], v)] == []
    assert model.kept[0] is model.running  # the module's own attribute kept


def _bits(model: Any) -> dict[str, bytes]:
    """Every parameter's and buffer's bytes: ``-0.0`` and ``0.0`` are other values to the round's digest."""
    return {k: v.detach().cpu().numpy().tobytes() for k, v in model.state_dict().items()}


class _FlipsZeroSigns(torch.nn.Module):  # type: ignore[misc]
    """A Linear layer with a zero bias whose forward negates it in place: ``0.0`` becomes ``-0.0``,
    equal by value, another model by its bits (``1 / b``, the round's digest)."""

    def __init__(self, how: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.how, self.linear = how, torch.nn.Linear(4, 3).double()
        torch.nn.init.zeros_(self.linear.bias)
        self.kept = (self.linear.bias,)

    def forward(self, x: Any) -> Any:
        if self.how == "under no_grad":  # goes through the computation
            with torch.no_grad():
                self.linear.bias.mul_(-1.0)
        else:  # refused inside the computation, run by the dry run
            self.kept[0].data.mul_(-1.0)
        return self.linear(x)


@pytest.mark.parametrize("how", ["under no_grad", "through .data"])
def test_a_write_of_the_other_zero_into_a_parameter_is_found_and_put_back(how: str) -> None:
    """Before: the put-back compared values, to which -0.0 equals 0.0: under no_grad the sum was
    returned (no 'wrote into parameter'), and either way the bias stayed -0.0, another model."""
    # Prepare
    model = _FlipsZeroSigns(how)
    before = _bits(model)
    x, y = torch.randn(3, 4, dtype=torch.float64), torch.tensor([0, 1, 2])
    refusal = "wrote into parameter 'linear.bias'" if how == "under no_grad" else None
    # Execute / Assert: refused, the model as it was, bit for bit
    with pytest.raises(ConfigurationError, match=refusal):
        torch_dp.clipped_gradient_sum(model, F.cross_entropy, x, y, 1.0)
    assert _bits(model) == before
