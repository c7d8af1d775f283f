"""PyTorch DP: recurrent layers (LSTM, GRU, RNN and their cells) get exact per-example gradients.

``clipped_gradient_sum`` computed the per-example gradients with ``vmap(grad(...))`` over the
examples only, the parameters shared (unbatched): the backward pass of torch's recurrent kernels
accumulates a parameter's gradient in place into a tensor of the parameter's (unbatched) shape, which
vmap cannot do with one gradient per example, so every GRU, RNN and cell, in float32 and float64,
and an LSTM in float64, raised torch's "output with shape [1, 4] doesn't match the broadcast shape
[5, 1, 4]" (a float32 LSTM, whose kernel differs, worked). Each example now gets its own view of
the parameters (expanded, no copy): the gradients equal the ones torch's autograd gives one example
at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

LAYERS: dict[str, Callable[[], Any]] = {
    "LSTM": lambda: torch.nn.LSTM(3, 4, batch_first=True),
    "GRU": lambda: torch.nn.GRU(3, 4, batch_first=True),
    "RNN": lambda: torch.nn.RNN(3, 4, batch_first=True),
    "LSTMCell": lambda: torch.nn.LSTMCell(3, 4),
    "GRUCell": lambda: torch.nn.GRUCell(3, 4),
    "RNNCell": lambda: torch.nn.RNNCell(3, 4),
    "two-layer bidirectional LSTM": lambda: torch.nn.LSTM(3, 2, num_layers=2, bidirectional=True, batch_first=True),
}
CELLS = ("LSTMCell", "GRUCell", "RNNCell")
DTYPES = {"float32": (torch.float32, 1e-5), "float64": (torch.float64, 1e-12)}
BATCH = 5


class _Head(torch.nn.Module):  # type: ignore[misc]
    """A recurrent layer (its last step's output for a sequence layer), then a Linear(4, 1)."""

    def __init__(self, layer: Any, cell: bool) -> None:
        super().__init__()
        self.layer, self.cell, self.head = layer, cell, torch.nn.Linear(4, 1)

    def forward(self, x: Any) -> Any:
        out = self.layer(x)
        out = out[0] if isinstance(out, tuple) else out
        return self.head(out if self.cell else out[:, -1])


def _loss(output: Any, target: Any) -> Any:
    return ((output - target) ** 2).sum()


def _model_and_batch(name: str, dtype: Any) -> tuple[Any, Any, Any]:
    torch.manual_seed(0)
    model = _Head(LAYERS[name](), name in CELLS).to(dtype)
    shape = (BATCH, 3) if name in CELLS else (BATCH, 2, 3)
    return model, torch.randn(*shape, dtype=dtype), torch.randn(BATCH, 1, dtype=dtype)


def _one_at_a_time(model: Any, inputs: Any, targets: Any, l2_clip: float) -> np.ndarray:
    """The clipped sum from torch's autograd, one example per backward pass."""
    total = np.zeros(sum(p.numel() for p in model.parameters()))
    for i in range(inputs.shape[0]):
        model.zero_grad()
        _loss(model(inputs[i : i + 1]), targets[i : i + 1]).backward()
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double().numpy()
        total += g * min(1.0, l2_clip / np.linalg.norm(g))
    return total


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("l2_clip", [1e6, 0.05])
def test_a_recurrent_layer_gets_each_examples_own_clipped_gradient(name: str, dtype: str, l2_clip: float) -> None:
    # Prepare
    torch_dtype, tolerance = DTYPES[dtype]
    model, inputs, targets = _model_and_batch(name, torch_dtype)
    expected = _one_at_a_time(model, inputs, targets, l2_clip)
    # Execute
    got = torch_dp.clipped_gradient_sum(model, _loss, inputs, targets, l2_clip)
    # Assert: the same sum, clipped (0.05) or not (1e6), as one backward pass per example gives
    np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance * max(1.0, float(np.abs(expected).max())))


def test_a_linear_model_keeps_its_gradients() -> None:
    # The control: a model without recurrent layers gets the per-example gradients it got before
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    inputs, targets = torch.randn(BATCH, 3, dtype=torch.float64), torch.randn(BATCH, 1, dtype=torch.float64)
    got = torch_dp.clipped_gradient_sum(model, _loss, inputs, targets, 0.05)
    np.testing.assert_allclose(got, _one_at_a_time(model, inputs, targets, 0.05), rtol=1e-12, atol=1e-14)


# --- the model a hospital computed at is left as it was ----------------------------------------
# torch.func.functional_call swaps each parameter for vmap's per-example tensor and back, but a
# recurrent layer keeps its own list of its weights (_flat_weights, a plain attribute) that the swap
# back does not reach: clipped_gradient_sum left the caller's layer holding vmap's escaped tensors,
# so the next dp_model_digest of the same model (the next hospital's in run_dp_round, or the next
# round's) raised torch's RuntimeError "your tensor may have escaped from inside a function being
# vmapped": run_dp_round withheld every hospital but the first, then raised.


@pytest.mark.parametrize("name", list(LAYERS))
def test_the_model_s_digest_is_the_same_after_its_gradients_are_computed(name: str) -> None:
    # Prepare
    model, inputs, targets = _model_and_batch(name, torch.float32)
    before = torch_dp.dp_model_digest(model)
    # Execute
    torch_dp.clipped_gradient_sum(model, _loss, inputs, targets, 1.0)
    # Assert: the model reads as it did
    assert torch_dp.dp_model_digest(model) == before


def test_a_recurrent_model_trains_for_rounds_with_every_hospital_included() -> None:
    from fl_core.aggregators import make_aggregator  # noqa: PLC0415
    from secagg.dp import DPConfig  # noqa: PLC0415

    # Prepare: a GRU model shared by three hospitals (run_dp_round computes each at the global model)
    model, _, _ = _model_and_batch("GRU", torch.float32)
    dimension = sum(int(p.numel()) for p in model.parameters())
    dp = DPConfig(epsilon=8.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2, sampling_rate=1.0)
    aggregator = make_aggregator("plain-quantized", num_clients=3, dp=dp, dimension=dimension)
    rng = np.random.default_rng(0)
    hospitals = [(i, torch.randn(4, 2, 3), torch.randn(4, 1)) for i in (1, 2, 3)]
    for _ in range(2):
        # Execute
        result = torch_dp.run_dp_round(
            model, hospitals, _loss, aggregator, learning_rate=0.1, denominator=12.0, rng=rng
        )
        # Assert: no hospital withheld, the round released
        assert result.withheld == () and result.included == frozenset({1, 2, 3}) and result.mean is not None
