"""Per-weight ranges and exact integer weights in the Keras adapter (weight lists need only numpy)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from secagg.errors import ConfigurationError
from secagg.integrations.keras import aggregate_models, flatten_weights
from secagg.segments import ClippingWarning


def test_weight_lists_get_one_segment_per_weight_and_exact_integer_weights() -> None:
    # Prepare: a kernel, a wide-ranged statistic and an int64 step counter, five hospitals
    global_weights = [np.zeros((3, 2), np.float32), np.ones(4, np.float32), np.array(0, np.int64)]
    rng = np.random.default_rng(0)
    locals_ = [
        [rng.uniform(-0.2, 0.2, (3, 2)).astype(np.float32), rng.uniform(5, 9, 4).astype(np.float32), np.array(7)]
        for _ in range(5)
    ]
    counts = [3, 5, 8, 13, 21]
    aggregator = make_aggregator("secagg", num_clients=5)
    # Execute
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClippingWarning)
        outcome = aggregate_models(
            global_weights, locals_, aggregator, num_samples=counts, rng=np.random.default_rng(2), clips={"1": 10.0}
        )
    # Assert
    assert outcome.weights is not None and outcome.result.clipping is not None
    assert outcome.result.clipping.table.names == ("0", "1", "2")
    assert outcome.result.clipping.table.clips == {"0": 0.5, "1": 10.0}
    assert outcome.weights[2].dtype == np.int64 and int(outcome.weights[2]) == 7
    expected = sum(c * w[1].astype(np.float64) for c, w in zip(counts, locals_, strict=True)) / sum(counts)
    np.testing.assert_allclose(outcome.weights[1], expected, rtol=1e-6, atol=10.0 / 32767)


def test_weights_layout_marks_integer_and_boolean_weights_exact() -> None:
    _, layout = flatten_weights([np.zeros(2, np.float16), np.zeros(3, np.uint8), np.zeros(1, bool)])
    assert [s.integer for s in layout.segments().segments] == [False, True, True]
    with pytest.raises(ConfigurationError, match="not a floating weight"):
        layout.segments({"1": 1.0})
