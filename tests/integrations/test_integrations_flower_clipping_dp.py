"""Clipping and distributed DP over Flower (issue 14 item 2, issue 15), in-process through FakeGrid.

Clipping: per-array clips, counts inside the secure sum, the fraction reported with a
ClippingWarning, the adaptive clip by default, integer arrays exact, a split clip table
never aggregated. DP: the nodes add the noise (the aggregate differs from the noise-free
sum and equals the sum of what the nodes encoded), a split DP value never aggregated, the
node's policy refuses under-noised setups, the budget refuses a round.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from secagg import wire
from secagg.descriptor import decode_parameters, encode_parameters
from secagg.dp import DPConfig, SeededRandomSource
from secagg.dp.encoding import noise_room
from secagg.errors import ConfigurationError, InsufficientNoiseError
from secagg.guarantee import Guarantee
from secagg.integrations.flower import NodePolicy, SecAggGrid, SecAggOptions
from secagg.integrations.flower import dp as flower_dp
from secagg.integrations.flower._node_errors import NODE_WEIGHT
from secagg.integrations.flower._records import read_stage
from secagg.integrations.flower.client import make_secagg_mod
from secagg.integrations.flower.clipping import layout_table, parse_table
from secagg.integrations.flower.dp import decode_noised
from secagg.integrations.flower.protocol import SETUP, RoundSetup, flatten_arrays
from secagg.segments import ClippingWarning, Segment

from .flower_harness import Audit, FakeGrid, initial_arrays
from .test_integrations_flower_split_setup import TARGET, _replace_payload, lying_server

NODES = (1_000_000_007, 2**63 + 11, 42, 9_999_999_999, 2**64 - 1)
WEIGHTS = dict(zip(NODES, (30, 55, 12, 80, 41), strict=True))
DP = DPConfig(epsilon=2.0, delta=1e-5, rounds=2, l2_clip=1.0)
Delta = Callable[[int, str, np.ndarray], np.ndarray]


pytestmark = pytest.mark.usefixtures("server_identity")


def per_example_clipped_delta(node: int, name: str, array: np.ndarray) -> np.ndarray:
    """What a DP training function does (the app's job): per-example gradients of the loss
    0.5 ||theta - x_i||^2 at the global model, each clipped to L2 norm ``DP.l2_clip`` over the
    whole model, summed, one step of learning rate 1; integer buffers unchanged. Called one array
    at a time, it clips each float array's part to ``DP.l2_clip / sqrt(k)`` for the model's k float
    arrays, so a patient's whole gradient stays within ``DP.l2_clip``."""
    if array.dtype.kind in "iub":
        return np.zeros_like(array)
    float_arrays = sum(a.numpy().dtype.kind == "f" for a in initial_arrays().values())
    clip = DP.l2_clip / np.sqrt(float_arrays)
    rng = np.random.default_rng([node, len(name)])
    examples = rng.normal(size=(20, array.size))  # this node's 20 patients (this array's part)
    gradients = array.reshape(1, -1) - examples
    norms = np.linalg.norm(gradients, axis=1, keepdims=True)
    clipped = gradients * np.minimum(1.0, clip / np.maximum(norms, 1e-12))
    return (-clipped.sum(axis=0)).reshape(array.shape)


def app(node: int, delta: Delta, audit: Audit | None = None, **mod_options: object) -> ClientApp:
    options: dict[str, object] = {"policy": NodePolicy(allow_semi_honest=True), **mod_options}
    client = ClientApp(mods=[make_secagg_mod(audit=audit, rng=np.random.default_rng(node), **options)])  # type: ignore[arg-type]

    @client.train()
    def train(message: Message, context: Context) -> Message:
        arrays = message.content["arrays"]
        updated = {
            name: Array((a.numpy() + delta(node, name, a.numpy())).astype(a.numpy().dtype))
            for name, a in arrays.items()
        }
        metrics = MetricRecord({"num-examples": WEIGHTS[node]})
        return Message(RecordDict({"arrays": ArrayRecord(updated), "metrics": metrics}), reply_to=message)

    return client


def run(secure: SecAggGrid, rounds: int = 1) -> ArrayRecord:
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    result = strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=rounds,
                            train_config=ConfigRecord({"lr": 0.1}))  # fmt: skip
    return result.arrays


def big_w(node: int, name: str, array: np.ndarray) -> np.ndarray:
    """``w`` moves by 2 (beyond the default clip 0.5), ``b`` by 0.1, ``steps`` by 3 (an integer)."""
    return {"w": np.full(array.shape, 2.0), "b": np.full(array.shape, 0.1), "steps": np.full(array.shape, 3)}[name]


def options(**extra: object) -> SecAggOptions:
    return SecAggOptions(mode="semi-honest", protocol="secagg", stage_timeout=5.0, **extra)  # type: ignore[arg-type]


def test_the_layout_gives_one_segment_per_array_and_integer_arrays_are_exact() -> None:
    _, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in initial_arrays().items()])
    table = layout_table(layout, {"arrays/w": 0.25})
    assert table.segments == (
        Segment("arrays/w", 12, 0.25), Segment("arrays/b", 4, None), Segment("arrays/steps", 1, None, True)
    )
    resolved = table.with_clips({"arrays/b": 1.0})
    assert parse_table(resolved.describe()) == resolved


def test_the_clipped_fraction_is_reported_per_array_with_a_warning_under_a_fixed_clip() -> None:
    grid = FakeGrid({node: app(node, big_w) for node in NODES})
    secure = SecAggGrid(grid, options(clipping="fixed"))
    with pytest.warns(ClippingWarning, match="arrays/w"):
        final = run(secure)
    report = secure.reports[0]
    assert report.clipping is not None
    fractions = report.clipping.fractions()
    assert fractions == {"arrays/w": 1.0, "arrays/b": 0.0, "arrays/steps": 0.0}
    assert report.clipped_fraction == pytest.approx(12 / 17)
    # w was clipped to 0.5; b and the integer buffer are exact (steps: 5 + 3, as an integer)
    np.testing.assert_allclose(final["w"].numpy(), np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4) + 0.5,
                               atol=1e-4)  # fmt: skip
    np.testing.assert_allclose(final["b"].numpy(), 0.1, atol=1e-4)
    assert final["steps"].numpy().tolist() == [8]


def test_the_adaptive_clip_is_the_default_and_follows_the_securely_summed_counts() -> None:
    grid = FakeGrid({node: app(node, big_w) for node in NODES})
    secure = SecAggGrid(grid, options())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingWarning)
        run(secure, rounds=3)
    clips = [r.clipping.table.clips for r in secure.reports if r.clipping is not None]
    assert len(clips) == 3
    assert clips[0]["arrays/w"] == 0.5 and clips[1]["arrays/w"] > 1.3 and clips[2]["arrays/w"] > clips[1]["arrays/w"]
    assert clips[1]["arrays/b"] < 0.5  # nothing clipped: the clip shrinks (slowly)
    assert secure.reports[2].clipped_fraction < secure.reports[0].clipped_fraction


@pytest.mark.parametrize("rebind", [False, True], ids=["record-left", "record-rebound"])
def test_a_split_clip_table_never_yields_a_mixed_aggregate(rebind: bool) -> None:
    audit = Audit()
    grid = FakeGrid({node: app(node, big_w, audit) for node in NODES})
    secure = SecAggGrid(grid, options(clipping="fixed"))

    def rewrite(message: Message) -> None:
        stage, payload = read_stage(message.content)
        if stage != SETUP:
            return
        setup = wire.decode(payload, RoundSetup)
        table = parse_table(setup.segments).with_clips({"arrays/w": 1e300})
        split = dataclasses.replace(setup, segments=table.describe())
        if rebind:
            config = dataclasses.replace(split.masking_config, descriptor=split.descriptor(77).digest())
            split = dataclasses.replace(split, masking=config.record())
        _replace_payload(message, SETUP, wire.encode(split))

    lying_server(grid, rewrite)
    run(secure)
    report = secure.reports[0]
    assert report.skipped_reason is not None and report.aggregate is None
    if not rebind:
        assert all("binds another setup" in report.errors[node] for node in NODES if node != TARGET)


def dp_grid(budgets: Path, audit: Audit | None = None, **mod_options: object) -> tuple[FakeGrid, dict[int, ClientApp]]:
    """The five DP nodes, each keeping its DP budget in its own file under ``budgets`` (the
    default policy takes part in DP rounds only so)."""
    apps = {
        node: app(node, per_example_clipped_delta, audit, noise_source=SeededRandomSource(node.to_bytes(32, "big")),
                  **mod_options)
        for node in NODES
    }  # fmt: skip
    return FakeGrid(apps, dp_state_dir=budgets), apps


def test_a_dp_round_aggregates_noise_the_nodes_added_and_never_the_noise_free_sum(tmp_path: Path) -> None:
    audit = Audit()
    grid, _ = dp_grid(tmp_path, audit)
    secure = SecAggGrid(grid, options(dp=DP))
    run(secure)
    report = secure.reports[0]
    assert report.skipped_reason is None and report.clipping is None
    assert report.epsilon_spent is not None and 0 < report.epsilon_spent <= DP.epsilon
    assert secure.dp is not None and secure.dp.plan is not None
    plan = secure.dp.plan
    # h = n - colluders - tolerated dropouts of the round's guarantee
    assert 1 <= plan.honest < len(NODES)
    # The aggregate is exactly the ring sum of what the nodes encoded (their noised integers) ...
    encodings = audit.of_round(1)
    assert set(encodings) == set(NODES)
    signed_type = np.int32 if report.aggregate.dtype == np.uint32 else np.int64
    total = sum(record.encoded.view(signed_type).astype(np.int64) for record in encodings.values())
    aggregate = report.aggregate.view(signed_type).astype(np.int64)
    assert np.array_equal(aggregate, total)
    # ... and differs from the noise-free sum of the deltas by far more than the rounding (one step a node).
    base = {k: v.numpy() for k, v in initial_arrays().items()}
    deltas = [
        np.concatenate([((base[k] + per_example_clipped_delta(n, k, base[k])).astype(base[k].dtype) - base[k])
                        .astype(np.float64).ravel() for k in base])
        for n in NODES
    ]  # fmt: skip
    noise_free = np.sum(deltas, axis=0) * plan.scale
    assert np.max(np.abs(aggregate - noise_free)) > 10 * len(NODES)


def _split_dp(rebind: bool) -> Callable[[Message], None]:
    def rewrite(message: Message) -> None:
        stage, payload = read_stage(message.content)
        if stage != SETUP:
            return
        setup = wire.decode(payload, RoundSetup)
        params = decode_parameters(setup.dp)
        params["secagg.dp.variance_num"] = 1  # sigma^2 = 1/den: (almost) no noise
        split = dataclasses.replace(setup, dp=encode_parameters(params))
        if rebind:
            config = dataclasses.replace(split.masking_config, descriptor=split.descriptor(77).digest())
            split = dataclasses.replace(split, masking=config.record())
        _replace_payload(message, SETUP, wire.encode(split))

    return rewrite


@pytest.mark.parametrize("rebind", [False, True], ids=["record-left", "record-rebound"])
def test_a_split_dp_value_never_yields_a_mixed_aggregate(tmp_path: Path, rebind: bool) -> None:
    grid, _ = dp_grid(tmp_path)
    secure = SecAggGrid(grid, options(dp=DP))
    lying_server(grid, _split_dp(rebind))
    run(secure)
    report = secure.reports[0]
    assert report.skipped_reason is not None and report.aggregate is None
    others = [report.errors[node] for node in NODES if node != TARGET]
    if rebind:
        assert all("under-noised" in reason or "do not match" in reason for reason in others), others
    else:
        assert all("binds another setup" in reason for reason in others), others


@pytest.mark.parametrize(
    ("policy", "dp", "match"),
    [
        (NodePolicy(allow_semi_honest=True, min_noise_multiplier=1e4), DP, "noise multiplier"),
        (NodePolicy(allow_semi_honest=True, max_dp_epsilon=1.0), DP, "exceeds this node's ceiling 1"),
        (NodePolicy(allow_semi_honest=True, require_dp=True), None, "requires differential privacy"),
    ],
)
def test_the_node_policy_refuses_under_noised_or_noise_free_setups(
    tmp_path: Path, policy: NodePolicy, dp: DPConfig | None, match: str
) -> None:
    if dp is not None:
        grid, _ = dp_grid(tmp_path, policy=policy)
    else:
        grid = FakeGrid({node: app(node, big_w, policy=policy) for node in NODES})
    secure = SecAggGrid(grid, options(dp=dp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingWarning)
        run(secure)
    report = secure.reports[0]
    assert report.aggregate is None
    assert all(match in report.errors[node] for node in NODES), report.errors


def test_a_round_over_the_budget_is_refused_and_the_spend_survives_in_the_state_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "accountant.json"
    grid, _ = dp_grid(tmp_path)
    one_round = dataclasses.replace(DP, rounds=1)
    secure = SecAggGrid(grid, options(dp=one_round, dp_state_file=str(state)))
    run(secure, rounds=2)
    first, second = secure.reports
    assert first.skipped_reason is None and first.epsilon_spent is not None
    assert first.epsilon_spent <= one_round.epsilon
    assert second.skipped_reason is not None and "privacy budget" in second.skipped_reason
    assert state.exists()


def test_a_noised_sum_of_fewer_than_h_contributions_is_refused(tmp_path: Path) -> None:
    grid, _ = dp_grid(tmp_path)
    secure = SecAggGrid(grid, options(dp=DP))
    run(secure)
    assert secure.dp is not None and secure.dp.plan is not None
    plan = secure.dp.plan
    quantization = secure.options.quantization(len(NODES))
    with pytest.raises(InsufficientNoiseError):
        decode_noised(np.zeros(plan.dimension, dtype=np.int64), plan, quantization, plan.honest - 1)


def test_clipping_and_dp_options_are_validated_before_any_round() -> None:
    with pytest.raises(ConfigurationError, match="unknown clipping"):
        SecAggOptions(clipping="sometimes")
    with pytest.raises(ConfigurationError, match="clips do not apply with dp"):
        SecAggOptions(dp=DP, clips={"arrays/w": 1.0})
    with pytest.raises(ConfigurationError, match="dp must be a DPConfig"):
        SecAggOptions(dp={"epsilon": 1.0})  # type: ignore[arg-type]


def test_a_named_starting_clip_is_used_for_that_array() -> None:
    grid = FakeGrid({node: app(node, big_w) for node in NODES})
    secure = SecAggGrid(grid, options(clipping="fixed", clips={"arrays/w": 4.0}))
    final = run(secure)
    report = secure.reports[0]
    assert report.clipping is not None and report.clipping.table.clips["arrays/w"] == 4.0
    assert report.clipped_fraction == 0.0
    np.testing.assert_allclose(final["w"].numpy(), np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4) + 2.0,
                               atol=1e-3)  # fmt: skip


def test_a_node_declaring_more_examples_than_the_dp_range_holds_is_refused_on_its_count_alone(tmp_path: Path) -> None:
    # Prepare: a range sized for 12 examples a node; three nodes report 41 to 80 (their deltas,
    # 20 clipped examples each, would fit: only the public count says the range cannot hold them)
    grid, _ = dp_grid(tmp_path)
    secure = SecAggGrid(grid, options(dp=DP, max_weight=12))

    # Execute
    run(secure)

    # Assert: every node whose count the range cannot hold is refused, by the class of the refusal (its
    # count stays in its log: test_flower_node_data_replies.py)
    assert secure.dp is not None and secure.dp.plan is not None
    plan = secure.dp.plan
    quantization = secure.options.quantization(len(NODES))
    most = (quantization.qmax - noise_room(plan)) // (plan.config.l2_clip * plan.scale)
    over = [node for node in NODES if WEIGHTS[node] > most]
    assert over, (most, WEIGHTS)
    report = secure.reports[0]
    for node in over:
        assert NODE_WEIGHT in report.errors[node], report.errors
    assert all(node not in report.errors for node in NODES if node not in over), report.errors


def test_an_accountant_that_refuses_to_charge_skips_the_round_with_its_reason(tmp_path: Path) -> None:
    # Prepare: the server's accountant over a state file that is rolled back after the first charge
    state = tmp_path / "accountant.json"
    rounds = flower_dp.DPRounds(DP, str(state))
    rounds.plan_round(5, 10, Guarantee(1, 1, lying_server=True), max_weight=10, ring_bits=None)
    assert rounds.charge(1, 5) is None
    state.write_text(state.read_text().replace('"released": 1', '"released": 0'))

    # Execute
    reason = rounds.charge(2, 5)

    # Assert: a reason to skip the round (nothing released), not an exception out of the ServerApp
    assert reason is not None and "accountant refused" in reason, reason


def test_the_node_count_check_holds_at_its_bound_and_refuses_one_past_it(tmp_path: Path) -> None:
    # Prepare: the encoding a server sizes for 12 examples a node (masking and Paillier nodes share the check)
    grid, _ = dp_grid(tmp_path)
    secure = SecAggGrid(grid, options(dp=DP, max_weight=12))
    run(secure)
    assert secure.dp is not None and secure.dp.plan is not None
    plan, quantization = secure.dp.plan, secure.options.quantization(len(NODES))
    most = int((quantization.qmax - noise_room(plan)) // (plan.config.l2_clip * plan.scale))

    # Execute / Assert: the server's own bound passes, the most the range holds passes, one more is refused
    flower_dp.check_node_weight(plan, quantization, 12)
    flower_dp.check_node_weight(plan, quantization, most)
    with pytest.raises(ConfigurationError, match=f"reports {most + 1} examples; .* at most {most}"):
        flower_dp.check_node_weight(plan, quantization, most + 1)
