"""A round skipped with withheld clients keeps its reason short as the round grows.

:func:`~fl_core.aggregators.base.with_withheld` named every withheld client with its reason in a
skipped round's reason, so the reason grew with the number of clients. It now names at most
:data:`~secagg.masking.server_state.SUMMARY_IDS` of them (with their reasons), then counts the
rest; every reason stays in the result's ``withheld`` (and so in the round record's ``rejected``).
"""

from __future__ import annotations

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, make_aggregator
from fl_core.aggregators.base import skipped, with_withheld
from secagg.masking.server_state import SUMMARY_IDS
from secagg.primitives.randomness import InsecureDeterministicRandom

TOO_MANY = 5000  # samples: above max_samples_per_client = 4096 (the default), so not encodable


@pytest.mark.parametrize("withheld", [SUMMARY_IDS, SUMMARY_IDS + 1, SUMMARY_IDS + 5])
def test_a_skipped_rounds_reason_names_at_most_ten_withheld_clients_and_counts_the_rest(withheld: int) -> None:
    # Prepare: `withheld` hospitals (ids 0, 1, ...) declare too many samples, 2 more are benign:
    # 2 uploaders remain, below the masking threshold
    clients = withheld + 2
    rng = np.random.default_rng(0)
    updates = [
        ClientUpdate(client, rng.uniform(-0.4, 0.4, size=4), TOO_MANY if client < withheld else 10)
        for client in range(clients)
    ]
    aggregator = make_aggregator("secagg", num_clients=clients, random_bytes=InsecureDeterministicRandom(2))

    # Execute
    result = aggregator.aggregate(updates, rng=rng)

    # Assert: skipped; the first ten named with their reasons, the rest counted; every reason kept
    reason = result.skipped_reason
    assert reason is not None and result.mean is None
    assert [client for client, _ in result.withheld] == list(range(withheld))
    assert all(f"{TOO_MANY} samples exceeds" in why for _, why in result.withheld)
    for client in range(SUMMARY_IDS):
        assert f"client {client}: {TOO_MANY} samples" in reason, reason
    for client in range(SUMMARY_IDS, withheld):
        assert f"client {client}:" not in reason, reason
    more = withheld - SUMMARY_IDS
    assert (f"and {more} more" in reason) == (more > 0), reason
    assert reason.count(f"{TOO_MANY} samples exceeds") == SUMMARY_IDS, reason


def test_with_withheld_keeps_every_reason_in_withheld_and_names_ten_in_the_reason() -> None:
    # Prepare: a skipped round, 15 clients withheld with distinct reasons
    withheld = [(client, f"reason number {client}") for client in range(15)]

    # Execute
    result = with_withheld(skipped("too few clients", 0.0, 0.0), withheld)

    # Assert: the reason names clients 0..9 with their reasons and counts 5; withheld keeps all 15
    reason = result.skipped_reason
    assert reason is not None and reason.startswith("too few clients; withheld (update not encodable): ")
    assert all(f"client {client}: reason number {client}" in reason for client in range(10)), reason
    assert "client 10:" not in reason and "reason number 14" not in reason, reason
    assert "and 5 more" in reason, reason
    assert result.withheld == tuple(withheld)
