"""Flower adapter: lossless records, the secure workflow over an in-process grid, dropouts, refusals."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.serverapp.strategy import FedAvg

from secagg import wire
from secagg.encoding import QuantizationConfig, from_ring
from secagg.errors import ConfigurationError
from secagg.integrations.flower import NodePolicy, SecAggGrid, SecAggOptions
from secagg.integrations.flower._records import read_stage, stage_content
from secagg.integrations.flower.clipping import decode_segmented, encoded_length, layout_table
from secagg.integrations.flower.protocol import (
    MASKED_INPUT,
    SETUP,
    SHARE_KEYS,
    STAGES,
    UNMASK,
    RoundSetup,
    arrays_digest,
    decode_sum,
    encode_update,
    flatten_arrays,
    round_context,
    unflatten_arrays,
)
from secagg.masking import MaskingConfig, Round, run_session
from secagg.segments import SegmentTable
from secagg.wire import encode

from .flower_harness import (
    RUN_ID,
    TRUSTED_KEYS,
    Audit,
    FakeGrid,
    initial_arrays,
    make_app,
    transported,
)

pytestmark = pytest.mark.usefixtures("server_identity")


NODES = (1_000_000_007, 2**63 + 11, 42, 9_999_999_999, 2**64 - 1)  # 64-bit Flower node ids
FAST_TIMEOUT = {"stage_timeout": 0.3, "poll_interval": 0.05}  # silent nodes in-process: no need to wait long
WEIGHTS = dict(zip(NODES, (30, 55, 12, 80, 41), strict=True))


def every_masking_message() -> list[bytes]:
    """One wire message of each type a masking session sends, from a real session with a dropout."""
    config = MaskingConfig.secagg(num_clients=4, vector_length=6, mode="semi-honest")
    session = run_session(config, {c: np.full(6, c, dtype=np.uint32) for c in range(1, 5)}, {2: Round.UNMASKING})
    return [entry.data for entry in session.transcript]


def setup_message() -> bytes:
    config = MaskingConfig.secagg_plus(num_clients=5, vector_length=18, mode="semi-honest")
    quantization = QuantizationConfig(0.5, 16, 5, max_weight=4096)
    table = SegmentTable.flat(16, 0.5).describe()
    return encode(
        RoundSetup.create(3, NODES, config, quantization, "num-examples", bytes(range(32)), RUN_ID, segments=table)
    )


def through_flower(content: RecordDict) -> RecordDict:
    """``content`` after both of Flower's serialisations: protobuf and the object store."""
    proto = recorddict_from_proto(recorddict_to_proto(content))
    carrier = Message(proto, dst_node_id=5, message_type=MessageType.TRAIN)
    return transported(carrier).content


def test_every_wire_message_survives_flower_records_byte_for_byte() -> None:
    # Prepare: every masking message type, the round setup, and the empty payload
    payloads = [*every_masking_message(), setup_message(), b""]
    # Execute
    back = [read_stage(through_flower(stage_content(SHARE_KEYS, data))) for data in payloads]
    # Assert
    assert back == [(SHARE_KEYS, data) for data in payloads]
    assert wire.decode(back[-2][1], RoundSetup).node_ids == tuple(sorted(NODES))


@given(st.binary(max_size=4096), st.sampled_from(STAGES))
def test_any_payload_round_trips_through_records(payload: bytes, stage: str) -> None:
    # Prepare / Execute
    stage_back, payload_back = read_stage(through_flower(stage_content(stage, payload)))
    # Assert
    assert (stage_back, payload_back) == (stage, payload)


def test_round_setup_maps_64_bit_node_ids_to_protocol_ids_in_order() -> None:
    # Prepare
    setup = wire.decode(setup_message(), RoundSetup)
    # Execute
    ids = {node: setup.protocol_id(node) for node in NODES}
    # Assert
    assert sorted(ids.values()) == [1, 2, 3, 4, 5]
    assert [node for node, _ in sorted(ids.items(), key=lambda item: item[1])] == sorted(NODES)
    with pytest.raises(ConfigurationError, match="not among"):
        setup.protocol_id(43)


def test_arrays_flatten_exactly_and_digest_changes_with_any_value() -> None:
    # Prepare
    arrays = [
        ("a", "w", np.array([[1.5, -0.0], [np.inf, 1e-300]], dtype=np.float64)),
        ("a", "h", np.array([0.1, -2.5], dtype=np.float16)),
        ("a", "z", np.array([1 + 2j, -3.5j], dtype=np.complex64)),
        ("b", "n", np.array([2**53, -7], dtype=np.int64)),
        ("b", "m", np.array([True, False])),
    ]
    # Execute
    vector, layout = flatten_arrays(arrays)
    back = unflatten_arrays(vector, layout)
    changed = vector.copy()
    changed[3] = np.nextafter(changed[3], 1)
    # Assert
    for (_, _, original), restored in zip(arrays, back, strict=True):
        assert restored.dtype == original.dtype and restored.shape == original.shape
        assert original.tobytes() == restored.tobytes()
    assert arrays_digest(vector, layout) != arrays_digest(changed, layout)
    with pytest.raises(ConfigurationError, match="beyond 2"):
        flatten_arrays([("b", "n", np.array([2**53 + 1], dtype=np.int64))])


def run_fedavg(grid: SecAggGrid, rounds: int, evaluate: bool = False) -> ArrayRecord:
    strategy = FedAvg(
        fraction_evaluate=1.0 if evaluate else 0.0, min_train_nodes=3, min_available_nodes=3, min_evaluate_nodes=3
    )
    return strategy.start(grid=grid, initial_arrays=initial_arrays(), num_rounds=rounds).arrays


def expected_arrays(
    before: ArrayRecord, audits: dict[int, object], quantization: QuantizationConfig, table: SegmentTable
) -> ArrayRecord:
    """Global + decoded plain ring sum of the included nodes' own encodings, as FedAvg returns it.

    FedAvg multiplies each array by its weight factor (1.0 for the one aggregated
    reply), which keeps float dtypes and turns integer arrays into float64.
    """
    total = quantization.ring.sum([a.encoded for a in audits.values()], next(iter(audits.values())).encoded.shape[0])
    mean, _, _ = decode_segmented(from_ring(total, quantization), table, quantization, len(audits))
    base, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in before.items()])
    arrays = unflatten_arrays(base + mean, layout)
    return ArrayRecord({s.name: Array(np.asarray(a * 1.0)) for s, a in zip(layout.specs, arrays, strict=True)})


@pytest.mark.parametrize("protocol", ["secagg", "secagg+"])
def test_fedavg_rounds_over_the_grid_equal_the_plain_quantized_sum(protocol: str) -> None:
    # Prepare: five nodes with 64-bit ids and different weights; evaluation passes through
    audit = Audit()
    grid = FakeGrid({node: make_app(node, WEIGHTS[node], audit) for node in NODES})
    secure = SecAggGrid(grid, SecAggOptions(protocol=protocol, mode="semi-honest"))
    # Execute
    final = run_fedavg(secure, rounds=2, evaluate=True)
    # Assert: each round's aggregate is the ring sum of exactly the nodes' encodings
    quantization = QuantizationConfig(0.5, 16, len(NODES), max_weight=4096)
    arrays = initial_arrays()
    for report in secure.reports:
        encodings = audit.of_round(report.server_round)
        assert report.included == frozenset(NODES) == frozenset(encodings) and not report.dropped
        plain_sum = quantization.ring.sum([a.encoded for a in encodings.values()], report.aggregate.shape[0])
        assert np.array_equal(report.aggregate, plain_sum)
        assert report.weight_total == sum(WEIGHTS.values())
        assert report.clipping is not None
        arrays = expected_arrays(arrays, encodings, quantization, report.clipping.table)
    for name, array in arrays.items():
        assert final[name].numpy().tobytes() == array.numpy().tobytes(), name
    assert [m.metadata.message_type for m in grid.sent].count(MessageType.EVALUATE) == 2 * len(NODES)


def test_dropouts_in_the_middle_of_the_protocol_are_recovered() -> None:
    # Prepare: node 42's training fails (error reply in masked-input), node 2^64-1 goes silent in unmask
    audit = Audit()
    # Threshold 2 (declaring c = 0, below the default t = 3 of 5 semi-honest nodes, c = 1: every node
    # accepts it by name): each survivor's self-mask seed needs 2 shares from the 3 nodes that answer
    # the unmask stage, its own self-held share included.
    policy = NodePolicy(allow_semi_honest=True, min_colluders=0)
    apps = {node: make_app(node, WEIGHTS[node], audit, failing_rounds=(1,) if node == 42 else (), policy=policy)
            for node in NODES}
    grid = FakeGrid(apps, silent={(2**64 - 1, UNMASK)})
    secure = SecAggGrid(grid, SecAggOptions(mode="semi-honest", protocol="secagg", threshold=2, **FAST_TIMEOUT))
    # Execute
    final = run_fedavg(secure, rounds=1)
    # Assert: 42 is left out, 2^64-1 still counts (it uploaded before going silent)
    report = secure.reports[0]
    assert report.dropped == {42: MASKED_INPUT, 2**64 - 1: UNMASK}
    assert report.included == frozenset(NODES) - {42}
    assert report.weight_total == sum(WEIGHTS.values()) - WEIGHTS[42]
    encodings = {n: a for n, a in audit.of_round(1).items() if n in report.included}
    quantization = QuantizationConfig(0.5, 16, len(NODES), max_weight=4096)
    length = report.aggregate.shape[0]
    assert np.array_equal(report.aggregate, quantization.ring.sum([a.encoded for a in encodings.values()], length))
    assert report.clipping is not None
    expected = expected_arrays(initial_arrays(), encodings, quantization, report.clipping.table)
    assert all(final[k].numpy().tobytes() == v.numpy().tobytes() for k, v in expected.items())


def test_too_many_dropouts_skip_the_round_and_the_model_stays() -> None:
    # Prepare: three of five nodes go silent after sharing keys (the default secagg threshold 3 needs 3 survivors)
    silent = {(node, MASKED_INPUT) for node in NODES[:3]}
    grid = FakeGrid({node: make_app(node, WEIGHTS[node]) for node in NODES}, silent=silent)
    secure = SecAggGrid(grid, SecAggOptions(mode="semi-honest", protocol="secagg", **FAST_TIMEOUT))
    strategy = FedAvg(fraction_evaluate=0.0, min_available_nodes=5)
    # Execute
    replies = secure.send_and_receive(strategy.configure_train(1, initial_arrays(), ConfigRecord(), secure))
    arrays, _ = strategy.aggregate_train(1, replies)
    # Assert: no reply, so the strategy aggregates nothing and keeps its model
    assert list(replies) == [] and arrays is None
    report = secure.reports[0]
    assert report.aggregate is None and report.included == frozenset()
    assert report.skipped_reason is not None and "only 2 clients remain" in report.skipped_reason
    # The reason names the nodes that dropped (by node id), not a node that stayed.
    lost = ", ".join(f"{node} at {MASKED_INPUT}" for node in sorted(NODES[:3]))
    assert report.skipped_reason.startswith(f"round skipped, nodes that dropped: {lost};")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"protocol": "secagg", "threshold": 1}, "threshold must be in 2"),
        ({"bits": 31, "ring_bits": 32}, "could overflow"),
        ({"protocol": "paillier"}, "protocol must be"),
        ({"protocol": "secagg+", "threshold": 3}, "derives its threshold"),
        ({"stage_timeout": 0.0}, "stage_timeout"),
        ({"max_nodes": 2}, "max_nodes"),
    ],
)
def test_unsafe_settings_are_refused_before_anything_is_sent(options: dict[str, object], match: str) -> None:
    # Prepare / Execute / Assert
    with pytest.raises(ConfigurationError, match=match):
        SecAggOptions(**options)  # type: ignore[arg-type]


def test_a_round_with_too_few_nodes_or_overflowing_weights_sends_nothing() -> None:
    # Prepare: two nodes only; and separately 6 nodes for options validated for at most 5
    small = FakeGrid({node: make_app(node, 1) for node in NODES[:2]})
    many = FakeGrid({node: make_app(node, 1) for node in range(1, 7)})
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2)
    # Execute: each round is skipped with the reason before anything is sent (the run goes on)
    few_nodes = SecAggGrid(small, SecAggOptions(trusted_keys=TRUSTED_KEYS))  # active: the default
    strategy.start(grid=few_nodes, initial_arrays=initial_arrays(), num_rounds=1)
    many_nodes = SecAggGrid(many, SecAggOptions(mode="semi-honest", max_nodes=5))
    strategy.start(grid=many_nodes, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert
    for secure, match in ((few_nodes, "at least 3 nodes"), (many_nodes, "at most 5")):
        (report,) = secure.reports
        assert report.skipped_reason is not None and match in report.skipped_reason, report.skipped_reason
    assert small.sent == [] and many.sent == []


def client_context(node: int) -> Context:
    return Context(77, node, {}, RecordDict(), {})


def train_message(node: int, content: RecordDict) -> Message:
    return Message(content, dst_node_id=node, message_type=MessageType.TRAIN)


def test_the_mod_refuses_to_train_outside_a_secure_round() -> None:
    # Prepare: a plain FedAvg training message straight to a node with the mod
    app = make_app(42, 10)
    plain = RecordDict({"arrays": initial_arrays(), "config": ConfigRecord({"server-round": 1})})
    # Execute
    reply = app(train_message(42, plain), client_context(42))
    lenient = make_app(42, 10, allow_plain_train=True)(train_message(42, plain), client_context(42))
    # Assert: refused by default; explicit opt-out trains in the clear
    assert reply.has_error() and "refusing to train outside a secure round" in reply.error.reason
    assert not lenient.has_error() and "arrays" in lenient.content


def setup_for(nodes: tuple[int, ...], table_clip: float = 0.5, **masking: object) -> RoundSetup:
    vector, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in initial_arrays().items()])
    table = layout_table(layout, {name: table_clip for name in layout_table(layout).clips})
    options = {"mode": "semi-honest", **masking}
    config = MaskingConfig.secagg(num_clients=len(nodes), vector_length=encoded_length(table), **options)  # type: ignore[arg-type]
    quantization = QuantizationConfig(0.5, 16, len(nodes), max_weight=4096)
    return RoundSetup.create(1, nodes, config, quantization, "num-examples", arrays_digest(vector, layout), RUN_ID,
                             segments=table.describe())


@pytest.mark.parametrize(
    ("setup", "node", "mod_options", "match"),
    [
        (setup_for((1, 2, 3)), 4, {}, "node 4 is not among"),
        (setup_for((1, 2, 3, 4, 5)), 1, {"min_nodes": 6}, "this node requires 6"),
        (setup_for((1, 2, 3, 4, 5)), 1, {"min_threshold": 4}, "this node requires 4"),
        (setup_for((1, 2, 3, 4, 5)), 1, {"min_colluders": 3}, "this node requires 3"),
        (setup_for((1, 2, 3, 4, 5)), 1, {"max_clip": 0.25}, "exceeds this node's maximum 0.25"),
        (setup_for((1, 2, 3, 4, 5)), 1, {"min_bits": 20}, "this node requires 20"),
    ],
)
def test_the_mod_refuses_rounds_outside_its_policy(
    setup: RoundSetup, node: int, mod_options: dict[str, object], match: str
) -> None:
    # Prepare
    app = make_app(node, 10, policy=NodePolicy(allow_semi_honest=True, **mod_options))  # type: ignore[arg-type]
    # Execute
    reply = app(train_message(node, stage_content(SETUP, encode(setup))), client_context(node))
    # Assert
    assert reply.has_error() and match in reply.error.reason


def test_the_mod_refuses_a_range_above_its_max_clip_though_every_arrays_clip_is_within_it() -> None:
    # Prepare: every array clipped at 0.2, the quantization range 0.5; the node accepts clips up to 0.25
    setup = stage_content(SETUP, encode(setup_for((1, 2, 3, 4, 5), table_clip=0.2)))
    app = make_app(1, 10, policy=NodePolicy(allow_semi_honest=True, max_clip=0.25))
    wider = make_app(1, 10, policy=NodePolicy(allow_semi_honest=True, max_clip=0.5))
    # Execute
    refused = app(train_message(1, setup), client_context(1))
    accepted = wider(train_message(1, setup), client_context(1))
    # Assert
    assert refused.has_error() and "policy: clip 0.5 exceeds this node's maximum 0.25" in refused.error.reason
    assert not accepted.has_error()


def test_the_mod_refuses_one_colluder_fewer_than_its_min_colluders() -> None:
    # Prepare: the round's computed guarantee c; a node asking for c + 1 and one asking for c
    setup = setup_for((1, 2, 3, 4, 5))
    colluders = setup.bound_masking_config(RUN_ID).guarantee.colluders
    content = stage_content(SETUP, encode(setup))
    strict = make_app(1, 10, policy=NodePolicy(allow_semi_honest=True, min_colluders=colluders + 1))
    exact = make_app(1, 10, policy=NodePolicy(allow_semi_honest=True, min_colluders=colluders))
    # Execute
    refused = strict(train_message(1, content), client_context(1))
    accepted = exact(train_message(1, content), client_context(1))
    # Assert
    assert refused.has_error() and f"this node requires {colluders + 1}" in refused.error.reason
    assert not accepted.has_error()


def test_a_node_refuses_semi_honest_rounds_unless_its_policy_asks_for_them() -> None:
    # Prepare: the default policy, and one that opts in by name
    strict = make_app(1, 10, policy=NodePolicy())
    willing = make_app(1, 10, policy=NodePolicy(allow_semi_honest=True))
    setup = stage_content(SETUP, encode(setup_for((1, 2, 3, 4, 5))))
    # Execute
    refused = strict(train_message(1, setup), client_context(1))
    accepted = willing(train_message(1, setup), client_context(1))
    # Assert
    assert refused.has_error() and "accepts active mode only" in refused.error.reason
    assert not accepted.has_error()


def test_the_mod_refuses_a_tampered_setup_and_an_out_of_order_stage() -> None:
    # Prepare: a setup whose threshold 1 the server forged past its own checks, and a stage with no setup
    record = setup_for((1, 2, 3)).masking
    forged = RoundSetup(1, (1, 2, 3), type(record)(**{**record.__dict__, "threshold": 1}), 0x3FE0000000000000, 16, 9,
                        b"num-examples", bytes(32), b"")
    app = make_app(1, 10)
    # Execute
    forged_reply = app(train_message(1, stage_content(SETUP, encode(forged))), client_context(1))
    early_reply = app(train_message(1, stage_content(SHARE_KEYS, every_masking_message()[4])), client_context(1))
    # Assert
    assert forged_reply.has_error() and "threshold must be in 2" in forged_reply.error.reason
    assert early_reply.has_error() and "no secure round in progress" in early_reply.error.reason


def test_the_mod_refuses_to_train_a_model_other_than_the_one_set_up() -> None:
    # Prepare: a lying server sets the round up for one model and sends another for training
    audit = Audit()
    grid = FakeGrid({node: make_app(node, WEIGHTS[node], audit) for node in NODES})
    secure = SecAggGrid(grid, SecAggOptions(mode="semi-honest", protocol="secagg"))
    original = grid.send_and_receive

    def swap_model(messages, *, timeout=None):  # type: ignore[no-untyped-def]
        messages = list(messages)
        for message in messages:
            if "arrays" in message.content and message.metadata.dst_node_id == NODES[0]:
                content = RecordDict(dict(message.content.items()))
                content["arrays"] = ArrayRecord({k: Array(v.numpy() * 0) for k, v in message.content["arrays"].items()})
                message.content = content
        return original(messages, timeout=timeout)

    grid.send_and_receive = swap_model  # type: ignore[method-assign]
    # Execute
    run_fedavg(secure, rounds=1)
    # Assert: that node never trained on the swapped model and dropped out; the rest completed
    assert secure.reports[0].dropped == {NODES[0]: MASKED_INPUT}
    assert "not the one the round was set up for" in secure.reports[0].errors[NODES[0]]
    assert NODES[0] not in audit.of_round(1)


def test_encode_and_decode_are_the_weighted_mean_to_one_quantization_step() -> None:
    # Prepare
    config = QuantizationConfig(0.5, 16, 3, max_weight=100)
    rng = np.random.default_rng(1)
    updates = [rng.uniform(-0.4, 0.4, 50) for _ in range(3)]
    weights = [10, 40, 100]
    # Execute
    total = config.ring.sum([encode_update(u, w, config, rng) for u, w in zip(updates, weights, strict=True)], 51)
    mean, weight_total = decode_sum(total, config, 3)
    # Assert
    exact = sum(w * u for u, w in zip(updates, weights, strict=True)) / sum(weights)
    assert weight_total == 150 and np.max(np.abs(mean - exact)) <= config.step
    assert from_ring(total, config)[-1] == 150
    with pytest.raises(ConfigurationError, match="weight must be"):
        encode_update(updates[0], 101, config, rng)


def test_context_binds_run_round_and_model() -> None:
    # Prepare
    digest = hashlib.sha256(b"model").digest()
    # Execute
    contexts = {round_context(1, 1, digest), round_context(2, 1, digest), round_context(1, 2, digest),
                round_context(1, 1, bytes(32))}
    # Assert
    assert len(contexts) == 4


def test_a_malformed_reply_is_rejected_as_a_dropout_and_the_round_completes() -> None:
    # Prepare: node 42's share-keys reply is replaced by garbage in transit
    audit = Audit()
    grid = FakeGrid({node: make_app(node, WEIGHTS[node], audit) for node in NODES})
    secure = SecAggGrid(grid, SecAggOptions(mode="semi-honest", protocol="secagg"))
    original = grid.send_and_receive

    def corrupt(messages, *, timeout=None):  # type: ignore[no-untyped-def]
        replies = list(original(messages, timeout=timeout))
        for index, reply in enumerate(replies):
            if reply.metadata.src_node_id == 42 and read_stage(reply.content)[0] == SHARE_KEYS:
                garbage = Message(stage_content(SHARE_KEYS, b"SA\x01\x01\x03garbage"), reply_to=messages[0])
                garbage.metadata.__dict__["_src_node_id"] = 42
                replies[index] = garbage
        return replies

    grid.send_and_receive = corrupt  # type: ignore[method-assign]
    # Execute
    run_fedavg(secure, rounds=1)
    # Assert: rejected with the protocol's reason, left out, the others aggregated exactly
    report = secure.reports[0]
    assert report.dropped == {42: SHARE_KEYS} and "EncryptedShares" in report.errors[42]
    assert report.included == frozenset(NODES) - {42}
    quantization = QuantizationConfig(0.5, 16, len(NODES), max_weight=4096)
    encodings = [a.encoded for n, a in audit.of_round(1).items() if n in report.included]
    assert np.array_equal(report.aggregate, quantization.ring.sum(encodings, report.aggregate.shape[0]))


def test_the_options_choose_the_ring_per_round() -> None:
    options = SecAggOptions()
    assert options.quantization(16).ring_bits == 32 and options.masking(16, 4).ring_bits == 32
    assert options.quantization(17).ring_bits == 64 and options.masking(17, 4).ring_bits == 64
    assert SecAggOptions(ring_bits=64).quantization(3).ring_bits == 64


@pytest.mark.parametrize("stage", [SETUP, SHARE_KEYS, MASKED_INPUT, UNMASK])
def test_three_nodes_survive_one_going_silent_at_any_stage(stage: str) -> None:
    # Prepare: three nodes, the default secagg threshold (t = 2: each survivor's seed from the
    # other survivor's share and its own self-held share); the largest node goes silent at `stage`
    nodes = NODES[:3]
    silent_node = max(nodes)
    audit = Audit()
    grid = FakeGrid({node: make_app(node, WEIGHTS[node], audit) for node in nodes}, silent={(silent_node, stage)})
    secure = SecAggGrid(grid, SecAggOptions(mode="semi-honest", protocol="secagg", **FAST_TIMEOUT))
    # Execute
    run_fedavg(secure, rounds=1)
    # Assert: the round completes; the silent node counts only if it uploaded before going silent
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    assert report.dropped == {silent_node: stage}
    uploaded = stage == UNMASK
    assert report.included == frozenset(nodes) - (set() if uploaded else {silent_node})
    encodings = {n: a for n, a in audit.of_round(1).items() if n in report.included}
    quantization = QuantizationConfig(0.5, 16, len(nodes), max_weight=4096)
    length = report.aggregate.shape[0]
    assert np.array_equal(report.aggregate, quantization.ring.sum([a.encoded for a in encodings.values()], length))
