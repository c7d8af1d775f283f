"""A node's two clip limits: ``NodePolicy(max_clip=...)`` per coordinate, ``max_l2_clip`` per patient.

Without DP a round clips every coordinate: ``max_clip`` bounds the quantization's clip (the
encoding range) and every array's clip, what one hospital's update can move a coordinate by. In a
DP round nothing is clipped per coordinate; the per-patient L2 clip (``l2_clip``, the sensitivity
the noise is calibrated to) bounds a patient's influence, and the encoding range is that clip
times the round's ``max_weight`` plus room for the noise (8192 with the sample plan), sized and
checked by the range and overflow rules. ``max_clip`` bounded both, in two units: a policy written
with ``max_clip=4.0`` meaning "no coordinate past 4" silently became a per-patient L2 bound of 4 in
a DP round. Each unit now has its own field: ``max_l2_clip`` bounds a DP round's ``l2_clip`` and
nothing else, ``max_clip`` bounds rounds without DP and nothing else, and a node that names one
and not the other refuses the rounds the other would bound, naming the field to set (a limit the
node wrote is never read in another unit, nor dropped without a word).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from flwr.app import Message

from secagg.errors import ConfigurationError
from secagg.integrations.flower import NodePolicy, SecAggGrid
from secagg.integrations.flower._grid import RoundReport
from secagg.integrations.flower._records import stage_content
from secagg.integrations.flower.protocol import ENCRYPT, SETUP
from secagg.wire import encode

from .flower_harness import Audit, make_app
from .test_integrations_flower import client_context, setup_for, train_message
from .test_integrations_flower_clipping_dp import DP, NODES, dp_grid, options
from .test_integrations_flower_node_budget import dp_round
from .test_integrations_flower_paillier_dp import dp_grid as paillier_dp_grid

pytestmark = pytest.mark.usefixtures("server_identity")


def _dp_round(tmp_path: Path, policy: NodePolicy, audit: Audit) -> RoundReport:
    grid, _ = dp_grid(tmp_path, audit, policy=policy)
    return dp_round(SecAggGrid(grid, options(dp=DP)), 1)


@pytest.mark.parametrize("max_l2_clip", [DP.l2_clip, DP.l2_clip * 4, math.nextafter(DP.l2_clip, 0.0), DP.l2_clip / 2])
def test_max_l2_clip_bounds_a_dp_rounds_per_patient_l2_clip_not_its_encoding_range(
    tmp_path: Path, max_l2_clip: float
) -> None:
    # Prepare: every node caps the L2 clip at l2_clip (the bound), above it, one float below it, or at half of it
    audit = Audit()
    # Execute
    report = _dp_round(tmp_path, NodePolicy(allow_semi_honest=True, max_l2_clip=max_l2_clip), audit)
    # Assert: at or above the plan's l2_clip every node takes part (the encoding range, far wider,
    # is not what the cap bounds); below it every node refuses at setup, naming the field
    if max_l2_clip >= DP.l2_clip:
        assert report.skipped_reason is None and report.included == frozenset(NODES), report.errors
        return
    assert report.dropped == dict.fromkeys(NODES, SETUP), report.dropped
    for reason in report.errors.values():
        assert f"l2_clip {DP.l2_clip:g} exceeds this node's maximum {max_l2_clip!r} (max_l2_clip)" in reason, reason
    assert audit.records == []


def test_a_policys_per_coordinate_max_clip_is_not_read_as_a_dp_rounds_l2_bound(tmp_path: Path) -> None:
    # Prepare: a policy written for rounds without DP ("no coordinate past 4"), and the DP round's
    # per-patient L2 clip below it: the old code read 4 as an L2 bound and took part
    audit = Audit()
    # Execute
    report = _dp_round(tmp_path, NodePolicy(allow_semi_honest=True, max_clip=DP.l2_clip * 4), audit)
    # Assert: every node refuses at setup, before it trains, naming the field that bounds DP rounds
    assert report.dropped == dict.fromkeys(NODES, SETUP), report.dropped
    for reason in report.errors.values():
        assert "names no max_l2_clip" in reason and "max_clip 4 bounds rounds without DP only" in reason, reason
    assert audit.records == []


def test_a_dp_round_is_bounded_by_max_l2_clip_whatever_max_clip_says(tmp_path: Path) -> None:
    # Prepare: a per-coordinate limit far below the DP round's l2_clip, and the L2 limit at it
    policy = NodePolicy(allow_semi_honest=True, max_clip=DP.l2_clip / 100, max_l2_clip=DP.l2_clip)
    # Execute
    report = _dp_round(tmp_path, policy, Audit())
    # Assert: every node takes part (the per-coordinate limit is not an L2 bound)
    assert report.skipped_reason is None and report.included == frozenset(NODES), report.errors


def _setup_reply(policy: NodePolicy) -> Message:
    """Node 1's reply to a setup of a round without DP whose clip (range and every array) is 0.5."""
    app = make_app(1, 10, policy=policy)
    return app(train_message(1, stage_content(SETUP, encode(setup_for((1, 2, 3, 4, 5))))), client_context(1))


def test_a_round_without_dp_is_bounded_by_max_clip_whatever_max_l2_clip_says() -> None:
    # At the bound (0.5) accepted, with an L2 limit far below it; one past it refused by max_clip
    accepted = _setup_reply(NodePolicy(allow_semi_honest=True, max_clip=0.5, max_l2_clip=0.01))
    refused = _setup_reply(NodePolicy(allow_semi_honest=True, max_clip=0.25, max_l2_clip=10.0))
    assert not accepted.has_error(), accepted.error.reason
    assert refused.has_error() and "clip 0.5 exceeds this node's maximum 0.25" in refused.error.reason


def test_a_policy_naming_only_max_l2_clip_refuses_a_round_without_dp_naming_max_clip() -> None:
    reply = _setup_reply(NodePolicy(allow_semi_honest=True, max_l2_clip=10.0))
    assert reply.has_error()
    assert "names no max_clip" in reply.error.reason and "max_l2_clip 10 bounds DP rounds only" in reply.error.reason


@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), float("nan"), 1e13, True, "1"])
def test_max_l2_clip_must_be_a_positive_finite_number(value: object) -> None:
    with pytest.raises(ConfigurationError, match="max_l2_clip"):
        NodePolicy(max_l2_clip=value)  # type: ignore[arg-type]


@pytest.mark.slow  # a heavy Flower round: CI runs it in the slow suite, beside the default suite
@pytest.mark.parametrize("max_l2_clip", [DP.l2_clip, DP.l2_clip / 2])
def test_a_paillier_nodes_max_l2_clip_bounds_the_dp_rounds_l2_clip(tmp_path: Path, max_l2_clip: float) -> None:
    # Prepare: Paillier nodes (3-of-5 key, accepted by name) capping the L2 clip at l2_clip or half of it
    audit = Audit()
    _, secure = paillier_dp_grid(tmp_path, audit, NodePolicy(min_colluders=0, max_l2_clip=max_l2_clip))
    # Execute
    report = dp_round(secure, 1)
    # Assert: at the bound every node uploads and the round is decrypted; past it every node
    # refuses before it trains, naming the field
    if max_l2_clip == DP.l2_clip:
        assert report.skipped_reason is None and report.included == frozenset(NODES), report.errors
        return
    assert report.dropped == dict.fromkeys(NODES, ENCRYPT), report.dropped
    for reason in report.errors.values():
        assert f"l2_clip {DP.l2_clip:g} exceeds this node's maximum {max_l2_clip:g} (max_l2_clip)" in reason, reason
    assert audit.records == []


def test_a_paillier_nodes_per_coordinate_max_clip_is_not_read_as_a_dp_rounds_l2_bound(tmp_path: Path) -> None:
    audit = Audit()
    _, secure = paillier_dp_grid(tmp_path, audit, NodePolicy(min_colluders=0, max_clip=DP.l2_clip * 4))
    report = dp_round(secure, 1)
    assert report.dropped == dict.fromkeys(NODES, ENCRYPT), report.dropped
    for reason in report.errors.values():
        assert "names no max_l2_clip" in reason, reason
    assert audit.records == []
