"""Per-tensor ranges and exact integer buffers in the PyTorch adapter (issue 14, item 2)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fl_core.aggregators import make_aggregator  # noqa: E402
from secagg.errors import ConfigurationError  # noqa: E402
from secagg.integrations.torch import aggregate_models, flatten_state_dict  # noqa: E402
from secagg.segments import ClippingWarning  # noqa: E402

HOSPITALS = 20


def _batchnorm_states() -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]], list[int]]:
    """A fresh BatchNorm1d(4) (running_var 1, 0 batches) and 20 hospitals' copies after 20 batches
    of data with variance ~8.7."""
    global_state = {k: v.clone() for k, v in torch.nn.BatchNorm1d(4).state_dict().items()}
    rng = np.random.default_rng(0)
    locals_ = []
    for _ in range(HOSPITALS):
        state = {k: v.clone() for k, v in global_state.items()}
        state["running_mean"] = torch.tensor(rng.uniform(-3, 3, 4), dtype=torch.float32)
        state["running_var"] = torch.tensor(rng.uniform(7.5, 9.9, 4), dtype=torch.float32)
        state["weight"] = state["weight"] + torch.tensor(rng.uniform(-0.1, 0.1, 4), dtype=torch.float32)
        state["num_batches_tracked"] = torch.tensor(20)
        locals_.append(state)
    counts = [int(c) for c in rng.integers(10, 200, HOSPITALS)]
    return global_state, locals_, counts


def _weighted_mean(locals_: list[dict[str, torch.Tensor]], counts: list[int], name: str) -> np.ndarray:
    stacked = np.stack([s[name].double().numpy() for s in locals_])
    return np.asarray(np.array(counts, dtype=np.float64) @ stacked / sum(counts))


def test_batchnorm_state_dicts_with_per_tensor_clips_give_the_weighted_mean_and_exact_counters() -> None:
    # Prepare: 20 hospitals; running statistics get a clip that fits them, the rest the default
    global_state, locals_, counts = _batchnorm_states()
    clips = {"running_mean": 4.0, "running_var": 16.0}
    aggregator = make_aggregator("secagg", num_clients=HOSPITALS)
    # Execute
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClippingWarning)
        outcome = aggregate_models(
            global_state, locals_, aggregator, num_samples=counts, rng=np.random.default_rng(1), clips=clips
        )
    # Assert: within one quantization step of each tensor's clip; num_batches_tracked exactly 20
    assert outcome.state_dict is not None and outcome.result.clipped_fraction == 0.0
    assert outcome.state_dict["num_batches_tracked"].dtype == torch.int64
    assert int(outcome.state_dict["num_batches_tracked"]) == 20
    qmax = aggregator.quantizer.config.qmax
    for name, clip in (*clips.items(), ("weight", 0.5), ("bias", 0.5)):
        got = outcome.state_dict[name].double().numpy()
        # one step of the sum, plus the float32 rounding of the result
        np.testing.assert_allclose(got, _weighted_mean(locals_, counts, name), rtol=1e-6, atol=clip / qmax)
    # the segment table names every tensor with its clip; the counter is an exact integer segment
    assert outcome.result.clipping is not None
    table = outcome.result.clipping.table
    assert table.names == ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    assert table.clips == {"weight": 0.5, "bias": 0.5, "running_mean": 4.0, "running_var": 16.0}


def test_batchnorm_without_discovery_the_adaptive_clip_warns_then_converges() -> None:
    # Prepare: no clips and discovery off; running_var's update (~7.7) is far beyond the starting clip 0.5
    global_state, locals_, counts = _batchnorm_states()
    aggregator = make_aggregator("secagg", num_clients=HOSPITALS)
    # Execute / Assert: the first round is reported as clipped, with a warning naming the tensor
    with pytest.warns(ClippingWarning, match="running_var 100.0%"):
        first = aggregate_models(
            global_state, locals_, aggregator, num_samples=counts, rng=np.random.default_rng(1), discovery=False
        )
    assert first.result.clipped_fraction > 0.3
    assert first.state_dict is not None and int(first.state_dict["num_batches_tracked"]) == 20
    # the adaptive clip of each tensor follows its securely summed count; a few rounds later it fits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingWarning)
        for seed in range(6):
            outcome = aggregate_models(
                global_state, locals_, aggregator, num_samples=counts, rng=np.random.default_rng(seed), discovery=False
            )
    assert outcome.state_dict is not None and outcome.result.clipping is not None
    assert outcome.result.clipped_fraction == 0.0
    clip = outcome.result.clipping.table.clips["running_var"]
    assert clip is not None and clip > 7.7
    np.testing.assert_allclose(
        outcome.state_dict["running_var"].double().numpy(),
        _weighted_mean(locals_, counts, "running_var"),
        rtol=1e-6,
        atol=clip / aggregator.quantizer.config.qmax,
    )
    assert int(outcome.state_dict["num_batches_tracked"]) == 20


def test_an_integer_buffer_beyond_its_bound_is_refused_not_clipped() -> None:
    # Hospital 3 is withheld (its counter is refused, never clipped); the others' mean is the round without it.
    global_state, locals_, counts = _batchnorm_states()
    locals_[3]["num_batches_tracked"] = torch.tensor(40_000)  # beyond 2^15 - 1 at the default 16 bits
    outcome = aggregate_models(
        global_state,
        locals_,
        make_aggregator("plain-quantized", num_clients=HOSPITALS),
        num_samples=counts,
        rng=np.random.default_rng(0),
    )
    ((client, reason),) = outcome.result.withheld
    assert client == 3 and "integer segment 'num_batches_tracked'" in reason and "refused rather than clipped" in reason
    assert outcome.result.included == frozenset(range(HOSPITALS)) - {3}
    assert outcome.state_dict is not None and int(outcome.state_dict["num_batches_tracked"]) == 20


def test_layout_segments_refuse_a_clip_for_an_integer_or_unknown_tensor() -> None:
    _, layout = flatten_state_dict(torch.nn.BatchNorm1d(2).state_dict())
    assert [s.integer for s in layout.segments().segments] == [False, False, False, False, True]
    with pytest.raises(ConfigurationError, match="not a floating tensor"):
        layout.segments({"num_batches_tracked": 1.0})
    with pytest.raises(ConfigurationError, match="not a floating tensor"):
        layout.segments({"nope": 1.0})
