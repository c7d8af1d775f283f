"""PyTorch DP: a model, data or loss the per-example computation cannot take is the library's refusal.

Before, each of these raised torch's own error from inside ``torch.func.vmap(grad(...))``
(``RuntimeError``, or ``AssertionError`` from ``cross_entropy``): a model on the meta device
("Tensor.item() cannot be called on meta tensors", after the whole vmap had run), inputs of another
width than the first layer's ("Expected size for first two dimensions of batch2 tensor ..."),
integer features for a float model, labels of another dtype or shape than the loss takes, a label
out of the loss's range at a later row, and a loss that returns a vector, not a scalar
("grad_and_value(f)(*args): Expected f(*args) to return a scalar Tensor"). ``run_dp_round``
withheld each such hospital as "the per-sample gradient computation raised RuntimeError (its
message is not reported)", which said nothing of what to fix.

Now :func:`clipped_gradient_sum` computes the model and the loss on the batch's first example
before vmap: a failure there is a ConfigurationError naming which of the two failed, on what
(the example's shapes and dtypes, the model's first layer), chained from torch's error; a loss
that returns anything but a scalar float tensor is refused naming what it returned; a model on the
meta device is refused before anything runs. ``run_dp_round`` raises the two that are the
caller's own (its global model, its loss) before the round is charged, and withholds a hospital
whose data the model or loss cannot take with the library's reason.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from secagg.errors import ConfigurationError, SecAggError

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

from .torch_dp_checks import assert_refused_before_any_charge, dp_aggregator, five_hospitals  # noqa: E402

F = torch.nn.functional
NOT_REPORTED = "(its message is not reported)"


def _loss(output: Any, target: Any) -> Any:
    return F.cross_entropy(output, target)


def _model() -> Any:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 3).double()


# --- the caller's own model and loss: refused by both, before anything is charged ----------------


def test_a_model_on_the_meta_device_is_refused_before_anything_runs() -> None:
    """Before: torch's RuntimeError "Tensor.item() cannot be called on meta tensors" from
    clipped_gradient_sum, after the per-sample computation ran; in run_dp_round, the digest's
    ConfigurationError told the caller to "to_dense() it"."""
    # Prepare: a model built on the meta device, with no values to compute at
    model = torch.nn.Linear(4, 3, device="meta", dtype=torch.float64)
    # Execute / Assert: refused naming the device and what to do, nothing charged, still on meta
    assert_refused_before_any_charge(model, five_hospitals(), _loss, dp_aggregator(15), r"meta device.*load_state_dict")


_BATCH_LABELS = five_hospitals()[0][2]  # 12 labels: what a loss closing over the batch would read


def _vector_loss(output: Any, target: Any) -> Any:
    return (output**2).sum(dim=1)  # one value per example: shape (batch,)


NOT_A_SCALAR = {
    "reduction='none'": (lambda o, t: F.cross_entropy(o, t, reduction="none"), r"a tensor of shape \(1,\)"),
    "a (batch,) vector": (_vector_loss, r"a tensor of shape \(1,\)"),
    "a (1, 1) tensor": (lambda o, t: F.cross_entropy(o, t).reshape(1, 1), r"a tensor of shape \(1, 1\)"),
    "a Python float": (lambda o, t: 0.5, r"a float"),
    "an integer tensor": (lambda o, t: t.sum(), r"a torch\.int64 tensor"),
    # Shapes that reach past the example: the loss broadcast over a tensor of the whole batch's size
    # (here its labels), or over nothing; each is refused naming its shape, as the odd (1,) and (1, 1) are.
    "a (batch,) tensor broadcast from outside the example": (
        lambda o, t: F.cross_entropy(o, t) * _BATCH_LABELS.double(), r"a tensor of shape \(12,\)"
    ),
    "an empty tensor": (lambda o, t: F.cross_entropy(o, t) * torch.ones(0), r"a tensor of shape \(0,\)"),
}


@pytest.mark.parametrize("case", sorted(NOT_A_SCALAR))
def test_a_loss_that_does_not_return_a_scalar_is_refused_naming_what_it_returned(case: str) -> None:
    """Before: torch's RuntimeError from grad ("Expected f(*args) to return a scalar Tensor, got
    tensor with 1 dims"); every hospital withheld by run_dp_round as "raised RuntimeError"."""
    loss, returned = NOT_A_SCALAR[case]
    assert_refused_before_any_charge(
        _model(), five_hospitals(), loss, dp_aggregator(15), rf"loss_fn returned {returned}.*scalar"
    )


def test_the_loss_refusal_can_be_caught_by_its_public_name() -> None:
    """It was defined only in a private module: callers could catch it only as ConfigurationError."""
    assert issubclass(torch_dp.LossNotScalarError, ConfigurationError)
    assert "LossNotScalarError" in torch_dp.__all__
    with pytest.raises(torch_dp.LossNotScalarError):
        torch_dp.clipped_gradient_sum(_model(), lambda out, y: out.sum(dim=1), *five_hospitals()[0][1:], 1.0)


# --- a hospital's data the model or loss cannot take: its own refusal, in the library's words ----


def _wide(x: Any, y: Any) -> tuple[Any, Any]:
    return torch.cat([x, x[:, :3]], dim=1), y  # 7 features for a model of 4


BAD_DATA = {
    # case: (the hospital's (inputs, targets) from a good one's, what the refusal names)
    "7 features for a model of 4": (_wide, r"forward pass.*shape \(1, 7\).*in_features=4"),
    "integer features for a float64 model": (
        lambda x, y: (x.long(), y), r"forward pass.*torch\.int64.*torch\.float64"
    ),
    "float labels for cross_entropy": (lambda x, y: (x, y.double()), r"loss_fn.*target.*torch\.float64"),
    "two labels per example": (lambda x, y: (x, torch.stack([y, y], dim=1)), r"loss_fn.*target.*\(1, 2\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_data_the_model_or_loss_cannot_take_is_a_library_error_chained_from_torch_s(case: str) -> None:
    """Before: torch's RuntimeError (AssertionError for two labels) from inside vmap."""
    # Prepare
    make, named = BAD_DATA[case]
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs, targets = make(*five_hospitals()[0][1:])
    # Execute
    with pytest.raises(ConfigurationError, match=named) as refused:
        torch_dp.clipped_gradient_sum(model, _loss, inputs, targets, 1.0)
    # Assert: torch's error is the cause, for the caller's traceback; the model is as it was
    assert refused.value.__cause__ is not None and not isinstance(refused.value.__cause__, SecAggError)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_a_hospital_whose_data_cannot_be_taken_is_withheld_saying_why(case: str) -> None:
    """Before: withheld as "the per-sample gradient computation raised RuntimeError (its message
    is not reported)": the reason said nothing of what was wrong."""
    # Prepare: hospital 3's data is bad, the other four's good (h = 2)
    make, named = BAD_DATA[case]
    hospitals = five_hospitals()
    hospitals[2] = (3, *make(*hospitals[2][1:]))
    aggregator = dp_aggregator(15)
    # Execute
    result = torch_dp.run_dp_round(
        _model(), hospitals, _loss, aggregator, learning_rate=1.0,
        declared_sizes={h: 12 for h in range(1, 6)}, rng=np.random.default_rng(0),
    )  # fmt: skip
    # Assert: withheld alone, with the library's reason; the others' round released and charged once
    ((client, reason),) = result.withheld
    assert client == 3 and NOT_REPORTED not in reason
    assert re.search(named, reason)
    assert result.included == {1, 2, 4, 5} and aggregator.accountant.num_releases == 1


def test_a_label_out_of_the_loss_s_range_at_a_later_row_is_a_library_error() -> None:
    """The first example's forward pass and loss work, the vmap over the batch fails on a later
    row's value. Before: torch's RuntimeError ("index 7 is out of bounds for dimension 2 with size
    3", a patient's label in it)."""
    # Prepare: the last row's label is 7, for a model of 3 classes
    model = _model()
    inputs, targets = five_hospitals()[0][1:]
    targets = targets.clone()
    targets[-1] = 7
    # Execute / Assert: named as a per-sample failure, torch's error chained, its text not in ours
    with pytest.raises(ConfigurationError, match="per-sample gradient computation") as refused:
        torch_dp.clipped_gradient_sum(model, _loss, inputs, targets, 1.0)
    assert refused.value.__cause__ is not None and "7" not in str(refused.value)
