"""The ClippingWarning's advice fits the clip it warns about: the clip is adaptive by default
(fl_core's aggregators, the Flower grids), so telling that user to "use the adaptive clip" sent
them looking for a switch they had already on. The advice names what to raise in either case."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, make_aggregator
from secagg.clipping import AdaptiveClip
from secagg.segments import ClippingWarning


@pytest.mark.parametrize("clipping", ["adaptive", "fixed"])
def test_the_clipping_warning_says_what_to_raise_whatever_the_clip(clipping: str) -> None:
    # Prepare: every coordinate 1.8, above the starting clip 0.5
    updates = [ClientUpdate(k, np.full(8, 1.8), 10) for k in range(3)]
    aggregator = make_aggregator("plain-quantized", num_clients=3, clipping=clipping)

    # Execute
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        aggregator.aggregate(updates, rng=np.random.default_rng(0))

    # Verify: one warning; it does not tell a user of the default to switch to it
    messages = [str(w.message) for w in caught if w.category is ClippingWarning]
    assert len(messages) == 1, messages
    assert "use the adaptive clip" not in messages[0], messages[0]
    assert "raise the clip" in messages[0] and "adaptive clip's starting value" in messages[0], messages[0]


def test_an_adaptive_clip_aiming_above_the_warning_level_is_advised_to_lower_its_target() -> None:
    # Prepare: an adaptive clip aiming at 5% clipped, above the warning's 1%: once it has moved
    # there it clips about 5% every round by design, whatever its starting value was
    aggregator = make_aggregator("plain-quantized", num_clients=3, clipping=AdaptiveClip(target=0.05))
    rng = np.random.default_rng(1)

    # Execute: rounds until the clip has settled near its target
    for server_round in range(15):
        updates = [ClientUpdate(k, rng.standard_normal(400), 10) for k in range(3)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            aggregator.aggregate(updates, rng=np.random.default_rng(server_round))

    # Verify: the last round still warns (about 5% clipped); its advice names the target to lower
    messages = [str(w.message) for w in caught if w.category is ClippingWarning]
    assert len(messages) == 1, messages
    assert "lower its target" in messages[0], messages[0]
