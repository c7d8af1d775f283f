"""The masking node's h check in DP rounds over Flower (issue 15): every sum the server can unmask
holds the plan's h honest noise shares, or the node refuses the setup before it trains or sends.

The rule (``secagg.integrations.flower.dp.unmasked_sums``): the fewest inputs an unmasked sum
holds, m = t on the complete graph (own seed share counted) and t + 1 on a Harary graph, less
the colluders c among them, is at least h. The server's own setups pass it at every size and
mode; a lying server's setup one step weaker fails it, through the Flower harness.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from secagg import wire
from secagg.descriptor import decode_parameters, encode_parameters
from secagg.dp import DPConfig, SeededRandomSource
from secagg.dp.calibration import NoisePlan
from secagg.errors import ConfigurationError
from secagg.integrations.flower import NodePolicy, SecAggGrid, SecAggOptions
from secagg.integrations.flower import dp as flower_dp
from secagg.integrations.flower._grid import TrainingBatch
from secagg.integrations.flower._masking_plan import MaskingPlan
from secagg.integrations.flower._records import read_stage
from secagg.integrations.flower.client import make_secagg_mod
from secagg.integrations.flower.dp import (
    DPRounds,
    check_unmasked_sums,
    dp_parameters,
    honest_count,
    node_plan,
    unmasked_sums,
)
from secagg.integrations.flower.protocol import SETUP, RoundSetup, flatten_arrays
from secagg.masking import ACTIVE, COMPLETE, HARARY, SEMI_HONEST, MaskingConfig
from secagg.primitives.signing import placeholder_public_keys

from .flower_harness import RUN_ID, Audit, FakeGrid, initial_arrays
from .paillier_keys import identity_files, trusted_keys
from .test_integrations_flower_clipping_dp import DP, NODES, dp_grid, per_example_clipped_delta, run
from .test_integrations_flower_split_setup import TARGET, _replace_payload, lying_server

GENEROUS = Fraction(2**56)
"""A sigma^2 that buys any of these tests' epsilon (the h check never reads it)."""


pytestmark = pytest.mark.usefixtures("server_identity")


def _batch(num_nodes: int) -> TrainingBatch:
    base, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in initial_arrays().items()])
    return TrainingBatch(
        template=None, message_type="train", server_round=1, training=None, base=base, layout=layout,  # type: ignore[arg-type]
        digest=bytes(32), parameters=b"", node_ids=tuple(range(101, 101 + num_nodes)),
    )  # fmt: skip


def _stronger(plan: NoisePlan) -> NoisePlan:
    """``plan`` claiming one more honest contributor (the check reads only h)."""
    config = dataclasses.replace(plan.config, min_honest=plan.honest + 1)
    return dataclasses.replace(plan, config=config, num_clients=max(plan.num_clients, plan.honest + 1))


@pytest.fixture
def quick_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's calibration with a fixed, generous sigma^2 (the h check does not read it; the
    dp-accounting calibration would take a second per case)."""

    def calibrated(config: DPConfig, num_clients: int, scale: float, dimension: int) -> NoisePlan:
        return NoisePlan(config, GENEROUS, num_clients, dimension, scale)

    monkeypatch.setattr(flower_dp, "calibrated", calibrated)


@pytest.mark.parametrize("mode", [SEMI_HONEST, ACTIVE])
@pytest.mark.parametrize("protocol", ["secagg", "secagg+"])
@pytest.mark.parametrize("num_nodes", range(3, 13))
def test_the_server_built_setups_pass_the_node_check_and_one_more_honest_fails(
    quick_calibration: None, num_nodes: int, protocol: str, mode: str
) -> None:
    # Prepare: the server's own round setup for this size, protocol and mode, as MaskingPlan builds it
    options = SecAggOptions(protocol=protocol, mode=mode, dp=DP)
    identities = {node: bytes([node % 256]) * 32 for node in range(101, 101 + num_nodes)}
    built = MaskingPlan.create(_batch(num_nodes), options, RUN_ID, identities, None, DPRounds(DP), None)  # type: ignore[arg-type]
    # Execute: what the node rebuilds from the bytes it is sent
    setup = wire.decode(wire.encode(built.setup), RoundSetup)
    masking = setup.bound_masking_config(RUN_ID)
    plan = node_plan(setup.dp, setup.quantization, num_nodes, NodePolicy(allow_semi_honest=True))
    assert plan is not None
    check_unmasked_sums(plan, masking)
    # Assert: on the complete graph (every protocol up to 100 nodes) h = t - c = n - c - d, as before
    guarantee = masking.guarantee
    assert masking.graph == COMPLETE
    assert plan.honest == masking.threshold - guarantee.colluders
    assert plan.honest == num_nodes - guarantee.colluders - guarantee.dropouts
    # ... and a plan sized for one more honest contributor is refused
    with pytest.raises(ConfigurationError, match=f"h = {plan.honest + 1} honest ones"):
        check_unmasked_sums(_stronger(plan), masking)


@pytest.mark.parametrize("extra", [1, 1_000, 2**62])
def test_a_plan_counting_on_more_honest_nodes_than_the_round_has_is_refused(extra: int) -> None:
    # Prepare: the server's DP setup for 5 nodes, rebound with min_honest beyond them (the node's
    # accounting sums one term per honest node, so a huge count would also stall the node)
    options = SecAggOptions(protocol="secagg", mode=SEMI_HONEST, dp=DP)
    built = MaskingPlan.create(_batch(5), options, RUN_ID, {}, None, DPRounds(DP), None)  # type: ignore[arg-type]
    setup = wire.decode(wire.encode(built.setup), RoundSetup)
    params = decode_parameters(setup.dp)
    params["secagg.dp.min_honest"] = 5 + extra
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="honest"):
        flower_dp.read_dp(encode_parameters(params), setup.quantization, 5)


@pytest.mark.parametrize("mode", [SEMI_HONEST, ACTIVE])
@pytest.mark.parametrize("num_nodes", [30, 60, 200])
def test_on_a_harary_graph_h_is_a_survivor_and_t_neighbours_less_the_corrupt_ones(num_nodes: int, mode: str) -> None:
    # Prepare: SecAgg+ on a Harary graph (what the adapter uses beyond 100 nodes)
    keys = placeholder_public_keys(num_nodes) if mode == ACTIVE else ()
    masking = MaskingConfig.secagg_plus(num_nodes, 17, complete_up_to=0, mode=mode, identity_keys=keys)
    assert masking.graph == HARARY
    # Execute
    sums = unmasked_sums(masking)
    h = honest_count(num_nodes, sums, DP)
    # Assert: a released sum holds a survivor and t of its neighbours (no self-held share), fewer
    # than t of them corrupt: t + 1 - corrupt_neighbours, not the completion tolerance's n - c - d
    assert h == masking.threshold + 1 - masking.corrupt_neighbours >= 2
    guarantee = masking.guarantee
    assert h < num_nodes - guarantee.colluders - guarantee.dropouts
    plan = NoisePlan(dataclasses.replace(DP, min_honest=h), GENEROUS, num_nodes, 17, 1.0)
    check_unmasked_sums(plan, masking)
    with pytest.raises(ConfigurationError, match="a survivor and t of its neighbours"):
        check_unmasked_sums(_stronger(plan), masking)


# --- Through the Flower harness: a lying server ---------------------------------------------------


def _refusals(report_errors: dict[int, str], h: int) -> bool:
    return all(f"fewer than the h = {h} honest ones" in report_errors.get(node, "") for node in NODES if node != TARGET)


def test_a_semi_honest_node_refuses_a_plan_sized_for_more_honest_inputs_than_a_sum_holds(tmp_path: Path) -> None:
    # Prepare: five semi-honest nodes, t = 3 and c = 1, so a sum may hold 3 inputs, 2 of them honest
    # (h = 2). A lying server tells every node but the target that the noise is sized for h = 3
    # (each adds sigma^2 = total / 3, correctly calibrated, the record rebound), while the masking
    # configuration still unmasks sums of 3 inputs: 2 honest noise shares, under-noised.
    audit = Audit()
    grid, _ = dp_grid(tmp_path, audit)
    secure = SecAggGrid(grid, SecAggOptions(mode=SEMI_HONEST, protocol="secagg", stage_timeout=5.0, dp=DP))
    lied: dict[bytes, RoundSetup] = {}

    def rewrite(message: Message) -> None:
        stage, payload = read_stage(message.content)
        if stage != SETUP:
            return
        if payload not in lied:
            setup = wire.decode(payload, RoundSetup)
            plan = flower_dp.read_dp(setup.dp, setup.quantization, len(setup.node_ids))
            config = dataclasses.replace(plan.config, min_honest=plan.honest + 1)
            stronger = flower_dp.calibrated(config, len(setup.node_ids), plan.scale, plan.dimension)
            split = dataclasses.replace(setup, dp=dp_parameters(stronger))
            masking = dataclasses.replace(split.masking_config, descriptor=split.descriptor(RUN_ID).digest())
            lied[payload] = dataclasses.replace(split, masking=masking.record())
        _replace_payload(message, SETUP, wire.encode(lied[payload]))

    lying_server(grid, rewrite)
    # Execute
    run(secure)
    # Assert: the server's plan is h = 2; the others refuse the lie at setup, before training
    assert secure.dp is not None and secure.dp.plan is not None and secure.dp.plan.honest == 2
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None
    assert _refusals(report.errors, 3), report.errors
    assert audit.of_round(1) == {}


SIX = (*NODES, 7_777_777_777)


def _six_apps(tmp_path: Path, audit: Audit) -> dict[int, ClientApp]:
    """Six active nodes (identity keys, the federation's trusted list, the default NodePolicy)."""
    paths, trusted, _ = identity_files(tmp_path, len(SIX))
    apps = {}
    for node, path in zip(SIX, paths, strict=True):
        mod = make_secagg_mod(
            audit=audit,
            rng=np.random.default_rng(node),
            identity_key_file=path,
            trusted_keys_file=trusted,
            noise_source=SeededRandomSource(node.to_bytes(32, "big")),
        )
        client = ClientApp(mods=[mod])

        @client.train()
        def train(message: Message, context: Context, node: int = node) -> Message:
            arrays = message.content["arrays"]
            updated = {
                name: Array((a.numpy() + per_example_clipped_delta(node, name, a.numpy())).astype(a.numpy().dtype))
                for name, a in arrays.items()
            }
            metrics = MetricRecord({"num-examples": 20})
            return Message(RecordDict({"arrays": ArrayRecord(updated), "metrics": metrics}), reply_to=message)

        apps[node] = client
    return apps


def test_an_active_node_refuses_a_threshold_whose_smallest_sum_holds_fewer_than_h_honest_inputs(
    tmp_path: Path,
) -> None:
    # Prepare: six active nodes; the server's round: t = 4, c = min(t - 2, 2t - n - 1) = 1, so a sum
    # may hold 4 inputs, 1 a colluder's: h = 3. A lying server keeps that plan but tells every node
    # but the target t = 5 (a valid configuration, the record rebound): c = min(3, 3) = 3, so a sum
    # of 5 inputs may hold 3 colluders' and only 2 honest noise shares.
    audit = Audit()
    grid = FakeGrid(_six_apps(tmp_path, audit), dp_state_dir=tmp_path)
    options = SecAggOptions(mode=ACTIVE, protocol="secagg", stage_timeout=5.0, dp=DP, trusted_keys=trusted_keys(6))
    secure = SecAggGrid(grid, options)

    def rewrite(message: Message) -> None:
        stage, payload = read_stage(message.content)
        if stage != SETUP:
            return
        setup = wire.decode(payload, RoundSetup)
        masking = dataclasses.replace(setup.masking_config, threshold=setup.masking_config.threshold + 1)
        _replace_payload(message, SETUP, wire.encode(dataclasses.replace(setup, masking=masking.record())))

    lying_server(grid, rewrite)
    # Execute
    run(secure)
    # Assert: h = 3 is the server's; the others refuse t = 5 at setup, before training or sending
    assert secure.dp is not None and secure.dp.plan is not None and secure.dp.plan.honest == 3
    sent = wire.decode(read_stage(next(m for m in grid.sent if m.metadata.dst_node_id == TARGET
                                       and read_stage(m.content)[0] == SETUP).content)[1], RoundSetup)  # fmt: skip
    assert sent.masking_config.threshold == 4
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None
    assert all("fewer than the h = 3 honest ones" in report.errors.get(node, "") for node in SIX if node != TARGET), (
        report.errors
    )
    assert set(audit.of_round(1)) <= {TARGET}


def test_the_server_built_active_round_passes_every_node_and_completes(tmp_path: Path) -> None:
    # Prepare: the same six active nodes and the server's own setup (h = 3), no lie
    audit = Audit()
    grid = FakeGrid(_six_apps(tmp_path, audit), dp_state_dir=tmp_path)
    options = SecAggOptions(mode=ACTIVE, protocol="secagg", stage_timeout=5.0, dp=DP, trusted_keys=trusted_keys(6))
    secure = SecAggGrid(grid, options)
    # Execute
    run(secure)
    # Assert: every node accepted and contributed its noised encoding
    report = secure.reports[0]
    assert report.skipped_reason is None and report.included == frozenset(SIX), report.errors
    assert set(audit.of_round(1)) == set(SIX)


def test_the_server_skips_a_later_round_whose_nodes_would_refuse_its_plan(tmp_path: Path) -> None:
    # Prepare: the plan is fixed at the first DP round (six active nodes: h = 3); one node leaves
    # after it, and a round of five active nodes unmasks sums of t = 4 inputs, c = 2 of them
    # colluders': 2 < 3
    audit = Audit()
    grid = FakeGrid(_six_apps(tmp_path, audit), dp_state_dir=tmp_path)
    options = SecAggOptions(mode=ACTIVE, protocol="secagg", stage_timeout=5.0, dp=DP, trusted_keys=trusted_keys(6))
    secure = SecAggGrid(grid, options)
    grid.get_node_ids = lambda: [n for n in sorted(grid.apps) if not secure.reports or n != SIX[-1]]  # type: ignore[method-assign]
    # Execute
    run(secure, rounds=2)
    # Assert: the second round is skipped before any setup is sent or any budget charged, with the node's reason
    first, later = secure.reports
    assert first.skipped_reason is None, first.errors
    assert later.skipped_reason is not None and "fewer than the h = 3 honest ones" in later.skipped_reason
    setups = [m.metadata.group_id for m in grid.sent if read_stage(m.content)[0] == SETUP]
    assert setups == [setups[0]] * len(SIX)
    assert secure.dp is not None and secure.dp.accountant is not None
    assert secure.dp.accountant.spent()[0] == pytest.approx(first.epsilon_spent)
