"""PyTorch DP: a dropout module in training mode is refused up front, naming it and what to do.

Per-sample gradients come from ``torch.func.vmap``, which refuses a random operation: a model with
``Dropout(p > 0)`` in training mode (the mode a freshly built module is in, and the one the docs
tell the server to share with its hospitals) failed inside every hospital's gradient computation,
so ``run_dp_round`` withheld every hospital as "the per-sample gradient computation raised
RuntimeError (its message is not reported)" and skipped every round, leaving the integrator
nothing to act on (torch's text is logged at DEBUG only)."""

from __future__ import annotations

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from fl_core.dp import DPAggregator
from secagg.dp import DPConfig
from secagg.errors import ConfigurationError

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

from .torch_dp_checks import assert_refused_before_any_charge, five_hospitals  # noqa: E402


def _loss(output: object, target: object) -> object:
    return torch.nn.functional.cross_entropy(output, target)



def _model(dropout: object) -> object:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), dropout, torch.nn.Linear(3, 2)).double()


def _aggregator() -> DPAggregator:
    dp = DPConfig(epsilon=3.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2)
    aggregator = make_aggregator("secagg", num_clients=5, dp=dp, dimension=23, max_samples_per_client=64)
    assert isinstance(aggregator, DPAggregator)
    return aggregator


@pytest.mark.parametrize("dropout", ["Dropout", "AlphaDropout", "Dropout1d"])
def test_dropout_in_training_mode_is_refused_naming_the_module_and_model_eval(dropout: str) -> None:
    # Prepare: a model in training mode with a dropout module of p = 0.1
    model = _model(getattr(torch.nn, dropout)(0.1))
    hospitals = five_hospitals()
    aggregator = _aggregator()
    refusal = rf"module '1' \({dropout}\) is in training mode.*model\.eval\(\)"

    # Execute / Assert: refused before anything is computed or charged, the model untouched
    assert_refused_before_any_charge(model, hospitals, _loss, aggregator, refusal)


@pytest.mark.parametrize("mode", ["eval", "p=0"])
def test_dropout_that_draws_nothing_still_trains(mode: str) -> None:
    """At the bound: a dropout in eval mode, or of p = 0, draws no randomness and is computed."""
    # Prepare
    model = _model(torch.nn.Dropout(0.1 if mode == "eval" else 0.0))
    if mode == "eval":
        model.eval()
    aggregator = _aggregator()

    # Execute
    result = torch_dp.run_dp_round(
        model, five_hospitals(), _loss, aggregator, learning_rate=1.0,
        declared_sizes={h: 12 for h in range(1, 6)}, rng=np.random.default_rng(0),
    )  # fmt: skip

    # Assert: every hospital contributed, none withheld
    assert result.included == {1, 2, 3, 4, 5} and result.withheld == ()



class _Attention(torch.nn.Module):  # type: ignore[misc]
    """One self-attention layer over a sequence of one token, then a linear head."""

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(4, 2, dropout=dropout, batch_first=True)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x: object) -> object:
        tokens = x.reshape(x.shape[0], 1, 4)  # type: ignore[attr-defined]
        attended, _ = self.attention(tokens, tokens, tokens)
        return self.head(attended.reshape(x.shape[0], 4))  # type: ignore[attr-defined]


def _attention(p: float) -> object:
    torch.manual_seed(0)
    return _Attention(p).double()


def test_attention_with_dropout_in_training_mode_is_refused() -> None:
    """MultiheadAttention's own dropout (a float setting, not a Dropout module) failed every
    hospital's computation as a Dropout module did, withheld as 'raised RuntimeError'."""
    # Prepare
    model = _attention(0.1)
    inputs, targets = five_hospitals()[0][1:]

    # Execute / Assert: refused up front, naming the module and model.eval()
    refusal = r"module 'attention' \(MultiheadAttention\) is in training mode.*model\.eval\(\)"
    with pytest.raises(ConfigurationError, match=refusal):
        torch_dp.clipped_gradient_sum(model, _loss, inputs, targets, 1.0)


@pytest.mark.parametrize("mode", ["eval", "dropout=0"])
def test_attention_that_draws_nothing_is_computed(mode: str) -> None:
    """At the bound: attention with dropout 0.1 in eval mode, or with dropout 0 in training mode."""
    # Prepare
    model = _attention(0.1 if mode == "eval" else 0.0)
    if mode == "eval":
        model.eval()  # type: ignore[attr-defined]
    inputs, targets = five_hospitals()[0][1:]

    # Execute
    total = torch_dp.clipped_gradient_sum(model, _loss, inputs, targets, 1.0)

    # Assert: a finite sum of gradients each clipped to 1
    assert np.isfinite(total).all() and np.linalg.norm(total) <= len(inputs) + 1e-9


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_rrelu_is_refused_in_either_mode_naming_leaky_relu(mode: str) -> None:
    """vmap has no rule for RReLU's kernel (aten::rrelu_with_noise) in either mode: every hospital's
    computation failed, withheld as 'raised RuntimeError'. In eval mode RReLU is LeakyReLU with the
    mean slope, which vmap computes."""
    # Prepare
    model = _model(torch.nn.RReLU(0.1, 0.3))
    if mode == "eval":
        model.eval()  # type: ignore[attr-defined]
    inputs, targets = five_hospitals()[0][1:]

    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"module '1' \(RReLU\).*LeakyReLU\(negative_slope=0\.2\)"):
        torch_dp.clipped_gradient_sum(model, _loss, inputs, targets, 1.0)
