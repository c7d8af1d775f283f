"""A skipped masking round's reason stays short as the round grows.

The reason names the clients that dropped (with their stage) and spells out which client each
protocol id is; both lists grew with the number of clients. Each now names at most
:data:`~secagg.masking.server_state.SUMMARY_IDS` entries, then counts the rest (the protocol's own
summary is bounded the same way).
"""

from __future__ import annotations

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, DropoutStage, make_aggregator
from secagg.masking.server_state import SUMMARY_IDS
from secagg.primitives.randomness import InsecureDeterministicRandom


@pytest.mark.parametrize("lost", [SUMMARY_IDS, SUMMARY_IDS + 1])
def test_a_skip_reason_names_at_most_ten_dropped_clients_and_ten_protocol_ids(lost: int) -> None:
    # Prepare: lost + 2 hospitals (ids 0, 1, ...: protocol ids are spelled out), the first `lost`
    # (10 or 11) never join: 2 remain, below any threshold
    clients = lost + 2
    rng = np.random.default_rng(0)
    updates = [ClientUpdate(client, rng.uniform(-0.4, 0.4, size=4), 10) for client in range(clients)]
    aggregator = make_aggregator("secagg", num_clients=clients, random_bytes=InsecureDeterministicRandom(1))

    # Execute
    result = aggregator.aggregate(updates, dict.fromkeys(range(lost), DropoutStage.JOIN), rng=rng)

    # Assert: skipped; ten named in each list, then the rest counted
    reason = result.skipped_reason
    assert reason is not None and result.mean is None
    named = ", ".join(f"{client} at join" for client in range(SUMMARY_IDS))
    more = "" if lost == SUMMARY_IDS else " and 1 more"
    assert f"clients that dropped: {named}{more};" in reason, reason
    ids = ", ".join(map(str, range(SUMMARY_IDS)))
    assert f"(protocol ids 1..{clients} are clients [{ids} and {clients - SUMMARY_IDS} more])" in reason, reason
