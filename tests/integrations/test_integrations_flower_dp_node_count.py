"""A Flower server's DP plan counts the noised coordinates of every round it charges.

The plan is fixed at the first DP round, with that round's node count n; the refusal residual
in delta (docs/privacy.md, "The refusal residual") counts rounds x n x d noised coordinates. A
later round with more nodes than the first encoded more coordinates than that: ``plan_round(3,
10)`` then ``charge(2, 9)`` accounted 2 x 3 x 10 = 60 coordinates against 30 + 90 = 120
encoded, so the residual was under-counted. ``DPRounds.charge`` now refuses (the round is
skipped, nothing charged) a round with more nodes than the plan was fixed for; a round with
fewer is charged as before (its coordinates are over-counted: an upper bound).
"""

from __future__ import annotations

import pytest

pytest.importorskip("dp_accounting")

from secagg.dp import DPConfig
from secagg.integrations.flower.dp import DPRounds
from secagg.masking import SEMI_HONEST, MaskingConfig

CONFIG = DPConfig(epsilon=2.0, delta=1e-5, rounds=3, l2_clip=1.0, min_honest=1)
DIMENSION = 10


def test_a_round_with_more_nodes_than_the_plan_is_refused_and_every_charged_coordinate_is_counted() -> None:
    # Prepare: the plan is fixed at a first round of 3 nodes, which is charged
    rounds = DPRounds(CONFIG)
    guarantee = MaskingConfig.secagg(3, DIMENSION, mode=SEMI_HONEST).guarantee
    plan, _ = rounds.plan_round(3, DIMENSION, guarantee, 100, None)
    assert rounds.charge(1, 3) is None
    encoded = 3 * DIMENSION
    # Execute: a round of 9 nodes, then one of 2
    larger = rounds.charge(2, 9)
    smaller = rounds.charge(3, 2)
    # Assert: the larger round is refused, naming both counts, and not charged; the smaller one is
    assert larger is not None and "9 nodes" in larger and "3" in larger, larger
    assert smaller is None, smaller
    encoded += 2 * DIMENSION
    assert rounds.accountant is not None and rounds.accountant.num_releases == 2
    # ... and the residual the accountant adds counts at least every coordinate encoded
    assert plan.tail_coordinates(rounds.accountant.num_releases) >= encoded
