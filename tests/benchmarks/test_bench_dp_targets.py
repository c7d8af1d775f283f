"""The dp suite states the h its sum was sized for, and holds the issue's targets only at h = 4."""

from __future__ import annotations

import pytest
from secagg_bench import dp as dp_suite

pytest.importorskip("dp_accounting")


def test_dp_suite_states_the_h_of_its_sum_and_holds_the_targets_only_at_h_4() -> None:
    options = {"rounds": 20, "hospitals": 5, "seeds": 10}
    # Over a secure sum the demo caps h = n - 1 by the floor (2 at 5 hospitals, active mode).
    assert dp_suite._min_honest({**options, "aggregation": "secagg+"}) == 2
    assert dp_suite._min_honest({**options, "aggregation": "secagg"}) == 2
    assert dp_suite._min_honest({**options, "aggregation": "plain-quantized"}) == 4
    rows = [
        {"params": {"dataset": "breast-cancer", "epsilon": e}, "metrics": {"accuracy_mean": 0.96}} for e in (1.0, 3.0)
    ]
    over_masking = dp_suite._targets(rows, {**options, "aggregation": "secagg+"})
    in_the_clear = dp_suite._targets(rows, {**options, "aggregation": "plain-quantized"})
    assert all(t.limit is None and "reported only" in t.description for t in over_masking)
    assert all(t.limit == pytest.approx({1.0: 0.95, 3.0: 0.97}[t.params["epsilon"]]) for t in in_the_clear)
