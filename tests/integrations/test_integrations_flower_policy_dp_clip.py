"""``NodePolicy(max_clip=...)`` bounds, in a DP round, the per-patient L2 clip the plan names.

Without DP, ``max_clip`` bounds the quantization's clip (the encoding range) and every array's
clip: what one hospital's update can move a coordinate by. In a DP round nothing is clipped by
the protocol; the per-patient L2 clip (``l2_clip``, the sensitivity the noise is calibrated to)
is what bounds a patient's influence, and the encoding range is that clip times the round's
``max_weight`` plus room for the noise (8192 with the sample plan), sized and checked by the
range and overflow rules. ``max_clip`` used to be compared with that range, so a node with any
``max_clip`` below it refused every DP round. It now bounds the plan's ``l2_clip``: a round at
the node's ``max_clip`` is accepted, one whose ``l2_clip`` is above it refused at setup.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from secagg.integrations.flower import NodePolicy, SecAggGrid
from secagg.integrations.flower.protocol import ENCRYPT, SETUP

from .flower_harness import Audit
from .test_integrations_flower_clipping_dp import DP, NODES, dp_grid, options
from .test_integrations_flower_node_budget import dp_round
from .test_integrations_flower_paillier_dp import dp_grid as paillier_dp_grid

pytestmark = pytest.mark.usefixtures("server_identity")


@pytest.mark.parametrize("max_clip", [DP.l2_clip, DP.l2_clip * 4, DP.l2_clip / 2])
def test_max_clip_bounds_a_dp_rounds_per_patient_l2_clip_not_its_encoding_range(max_clip: float) -> None:
    # Prepare: every node caps the clip at l2_clip (the bound), above it, or at half of it (past it)
    audit = Audit()
    grid, _ = dp_grid(audit, policy=NodePolicy(allow_semi_honest=True, max_clip=max_clip))
    secure = SecAggGrid(grid, options(dp=DP))
    # Execute
    report = dp_round(secure, 1)
    # Assert: at or above the plan's l2_clip every node takes part (the encoding range, far wider,
    # is not what the cap bounds); below it every node refuses at setup, naming the L2 clip
    if max_clip >= DP.l2_clip:
        assert report.skipped_reason is None and report.included == frozenset(NODES), report.errors
        return
    assert report.dropped == dict.fromkeys(NODES, SETUP), report.dropped
    for reason in report.errors.values():
        assert f"l2_clip {DP.l2_clip:g} exceeds this node's maximum {max_clip:g}" in reason, reason
    assert audit.records == []


@pytest.mark.parametrize("max_clip", [DP.l2_clip, DP.l2_clip / 2])
def test_a_paillier_nodes_max_clip_bounds_the_dp_rounds_l2_clip(tmp_path: Path, max_clip: float) -> None:
    # Prepare: Paillier nodes (3-of-5 key, accepted by name) capping the clip at l2_clip or half of it
    audit = Audit()
    _, secure = paillier_dp_grid(tmp_path, audit, NodePolicy(min_colluders=0, max_clip=max_clip))
    # Execute
    report = dp_round(secure, 1)
    # Assert: at the bound every node uploads and the round is decrypted; past it every node
    # refuses before it trains, naming the L2 clip
    if max_clip == DP.l2_clip:
        assert report.skipped_reason is None and report.included == frozenset(NODES), report.errors
        return
    assert report.dropped == dict.fromkeys(NODES, ENCRYPT), report.dropped
    for reason in report.errors.values():
        assert f"l2_clip {DP.l2_clip:g} exceeds this node's maximum {max_clip:g}" in reason, reason
    assert audit.records == []
