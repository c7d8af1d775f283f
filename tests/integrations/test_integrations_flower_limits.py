"""Untrusted message sizes: what an honest message of a stage can weigh, both ends refuse more.

A node's reply larger than any honest reply of its stage (the round's vector length, ring,
node count and Paillier ciphertext count fix that size), or carrying records beside the stage
records, costs only that node: it is a dropout of that stage with the reason in the round's
report, and its payload is never loaded (``np.load``) or decoded. A node refuses a server
message larger than any honest one of its stage, or one with records beside the stage records
(outside the training stages, which carry the strategy's content), with an error reply.

Every test checks, through a spy on Flower's ``Array.numpy`` (what ``np.load``s an array),
that no oversized payload was loaded anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from secagg import wire
from secagg.integrations.flower import PaillierGrid, PaillierOptions, make_paillier_mod, make_secagg_mod
from secagg.integrations.flower._limits import (
    PAILLIER_SETUP_LIMIT,
    masking_message_limit,
    masking_reply_limit,
    paillier_reply_limit,
    paillier_request_limit,
)
from secagg.integrations.flower._records import PAYLOAD_RECORD, STAGE_RECORD, read_stage, stage_content
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import (
    CONSISTENCY_CHECK,
    DECRYPT,
    ENCRYPT,
    IDENTIFY,
    MASKED_INPUT,
    SETUP,
    SHARE_KEYS,
    UNMASK,
    RoundSetup,
)

from .flower_harness import (
    TRUSTED_KEYS,
    Audit,
    FakeGrid,
    identity_files,
    initial_arrays,
    stage_of,
    transported,
)
from .paillier_keys import PASSPHRASE
from .test_integrations_flower_malformed import (
    FAULTY,
    NODES,
    PAILLIER_NODES,
    assert_exact_masking_sum,
    change_pulls,
    masking_round,
    paillier_apps,
    rewrite_reply,
)

PAD = 1 << 20
"""Bytes added to a payload: far more than any honest message of these small rounds."""
HUGE_SETUP = 16 << 20
"""A setup payload beyond any honest setup (65536 nodes, every parameter field full)."""


pytestmark = pytest.mark.usefixtures("server_identity")


def padded(stage: str) -> Callable[[RecordDict], RecordDict]:
    """The content with its payload followed by PAD zero bytes (the training records, if any, kept)."""

    def change(content: RecordDict) -> RecordDict:
        payload = read_stage(content)[1]
        base = RecordDict({k: r for k, r in content.items() if k not in (STAGE_RECORD, PAYLOAD_RECORD)})
        return stage_content(stage, payload + bytes(PAD), base)

    return change


def with_extra(extra: str) -> Callable[[RecordDict], RecordDict]:
    """The content with one more record (or one more key in the stage record)."""

    def change(content: RecordDict) -> RecordDict:
        changed = RecordDict(dict(content.items()))
        if extra == "config-record":
            changed["notes"] = ConfigRecord({"text": "x" * 100_000})
        elif extra == "array-record":
            changed["arrays"] = ArrayRecord({"w": Array(np.zeros(1000))})
        elif extra == "metric-record":  # e.g. a train handler's metrics, passed on
            changed["metrics"] = MetricRecord({"num-examples": 30, "train-loss": [0.5] * 100_000})
        else:  # a second key in the stage record
            changed[STAGE_RECORD] = ConfigRecord({**content[STAGE_RECORD], "note": "x" * 100_000})
        return changed

    return change


EXTRAS = ["config-record", "array-record", "metric-record", "stage-key"]
AFTER_INPUT = (CONSISTENCY_CHECK, UNMASK)
"""Stages after the masked input: a node lost there still has its input in the sum."""


def run(secure: object, rounds: int = 1) -> None:
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2)
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=rounds)  # type: ignore[arg-type]


# --- the server: oversized or extra-record replies --------------------------------------------


@pytest.mark.parametrize(
    ("mode", "stage"),
    [("semi-honest", SETUP), ("semi-honest", SHARE_KEYS), ("semi-honest", MASKED_INPUT), ("semi-honest", UNMASK),
     ("active", IDENTIFY), ("active", CONSISTENCY_CHECK), ("active", UNMASK)],
)
def test_an_oversized_masking_reply_is_a_dropout_and_never_loaded(mode: str, stage: str, loaded: list[int]) -> None:
    # Prepare: node 42's reply in ``stage`` is its honest payload plus 1 MiB
    grid, secure, audit = masking_round(mode)
    rewrite_reply(grid, FAULTY, stage, padded(stage))
    # Execute
    run(secure)
    # Assert: a dropout of that stage with the size in the reason; the others summed exactly
    assert max(loaded) < PAD, "an oversized payload was loaded"
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    assert report.dropped == {FAULTY: stage}, (report.dropped, report.errors)
    assert "an honest" in report.errors[FAULTY] and "bytes" in report.errors[FAULTY], report.errors
    assert report.included == frozenset(NODES) - ({FAULTY} if stage not in AFTER_INPUT else set())
    assert_exact_masking_sum(report, audit)


@pytest.mark.parametrize("extra", EXTRAS)
@pytest.mark.parametrize("stage", [SHARE_KEYS, MASKED_INPUT])
def test_a_masking_reply_with_records_beside_the_stage_records_is_a_dropout(stage: str, extra: str) -> None:
    grid, secure, audit = masking_round()
    rewrite_reply(grid, FAULTY, stage, with_extra(extra))
    # Execute
    run(secure)
    # Assert
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    assert report.dropped == {FAULTY: stage}, (report.dropped, report.errors)
    assert "record" in report.errors[FAULTY] or "key" in report.errors[FAULTY], report.errors
    assert report.included == frozenset(NODES) - {FAULTY}
    assert_exact_masking_sum(report, audit)


def test_a_reply_with_many_long_named_records_is_a_dropout_with_a_short_reason() -> None:
    grid, secure, audit = masking_round()

    def many(content: RecordDict) -> RecordDict:
        changed = RecordDict(dict(content.items()))
        for index in range(1000):
            changed["x" * 1000 + str(index)] = ConfigRecord({"v": index})
        return changed

    rewrite_reply(grid, FAULTY, SHARE_KEYS, many)
    # Execute
    run(secure)
    # Assert: named with the count, the names cut short
    report = secure.reports[0]
    assert report.dropped == {FAULTY: SHARE_KEYS}, (report.dropped, report.errors)
    assert "1000 records beside" in report.errors[FAULTY] and len(report.errors[FAULTY]) < 300, report.errors
    assert report.included == frozenset(NODES) - {FAULTY}
    assert_exact_masking_sum(report, audit)


def paillier_round(paillier_keys: tuple[Path, list[Path]]) -> tuple[FakeGrid, PaillierGrid, Audit]:
    public_path, shares = paillier_keys
    audit = Audit()
    grid = FakeGrid(paillier_apps(shares, audit))  # type: ignore[arg-type]
    secure = PaillierGrid(grid, PaillierOptions(trusted_keys=TRUSTED_KEYS, public_key=read_public_key(public_path)))
    return grid, secure, audit


@pytest.mark.parametrize("change", ["padded", *EXTRAS])
@pytest.mark.parametrize("stage", [ENCRYPT, DECRYPT])
def test_an_oversized_or_extra_record_paillier_reply_is_a_dropout(
    stage: str, change: str, paillier_keys: tuple[Path, list[Path]], loaded: list[int]
) -> None:
    grid, secure, audit = paillier_round(paillier_keys)
    rewrite_reply(grid, FAULTY, stage, padded(stage) if change == "padded" else with_extra(change))
    # Execute
    run(secure)
    # Assert: dropped there (its upload still counts if it is dropped at decrypt: 3 partials remain)
    assert max(loaded) < PAD, "an oversized payload was loaded"
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    assert report.dropped == {FAULTY: stage}, (report.dropped, report.errors)
    reason = report.errors[FAULTY]
    assert ("an honest" in reason) if change == "padded" else ("record" in reason or "key" in reason), reason
    assert report.included == frozenset(PAILLIER_NODES) - ({FAULTY} if stage == ENCRYPT else set())
    plain = np.sum([a.encoded for n, a in audit.of_round(1).items() if n in report.included], axis=0)
    assert report.aggregate is not None and np.array_equal(report.aggregate, plain)


# --- the nodes: oversized or extra-record server messages -------------------------------------


def change_downlink(grid: FakeGrid, node: int, stage: str, change: Callable[[RecordDict], RecordDict]) -> None:
    """Make the server's ``stage`` message to ``node`` carry ``change(its content)``."""
    original = grid.send_and_receive

    def send(messages, *, timeout=None):  # type: ignore[no-untyped-def]
        messages = list(messages)
        for message in messages:
            if message.metadata.dst_node_id == node and stage_of(message) == stage:
                message.content = change(message.content)
        return original(messages, timeout=timeout)

    grid.send_and_receive = send  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("mode", "stage"),
    [("semi-honest", SHARE_KEYS), ("semi-honest", MASKED_INPUT), ("semi-honest", UNMASK),
     ("active", CONSISTENCY_CHECK), ("active", IDENTIFY)],
)
def test_a_node_refuses_an_oversized_masking_message(mode: str, stage: str, loaded: list[int]) -> None:
    grid, secure, audit = masking_round(mode)
    change_downlink(grid, FAULTY, stage, padded(stage))
    # Execute
    run(secure)
    # Assert: node 42 refused with the size; the round went on without it
    assert max(loaded) < PAD, "an oversized payload was loaded"
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    assert report.dropped == {FAULTY: stage}, (report.dropped, report.errors)
    assert report.errors[FAULTY].startswith(f"secagg: node {FAULTY}:") and "an honest" in report.errors[FAULTY]
    assert report.included == frozenset(NODES) - ({FAULTY} if stage not in AFTER_INPUT else set())
    assert_exact_masking_sum(report, audit)


@pytest.mark.parametrize("extra", EXTRAS)
@pytest.mark.parametrize("stage", [SHARE_KEYS, UNMASK])
def test_a_node_refuses_records_beside_the_stage_records_outside_training(stage: str, extra: str) -> None:
    grid, secure, audit = masking_round()
    change_downlink(grid, FAULTY, stage, with_extra(extra))
    # Execute
    run(secure)
    # Assert
    report = secure.reports[0]
    assert report.dropped == {FAULTY: stage}, (report.dropped, report.errors)
    assert report.errors[FAULTY].startswith(f"secagg: node {FAULTY}:"), report.errors
    assert report.included == frozenset(NODES) - ({FAULTY} if stage not in AFTER_INPUT else set())
    assert_exact_masking_sum(report, audit)


def test_a_node_refuses_an_oversized_paillier_decryption_request(
    paillier_keys: tuple[Path, list[Path]], loaded: list[int]
) -> None:
    grid, secure, _ = paillier_round(paillier_keys)
    change_downlink(grid, FAULTY, DECRYPT, padded(DECRYPT))
    # Execute
    run(secure)
    # Assert: 42 refused to decrypt; its upload counts, three partials decrypt the sum
    assert max(loaded) < PAD, "an oversized payload was loaded"
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    assert report.dropped == {FAULTY: DECRYPT}, (report.dropped, report.errors)
    assert "an honest" in report.errors[FAULTY], report.errors
    assert report.included == frozenset(PAILLIER_NODES)


@pytest.mark.parametrize("mod_name", ["masking", "paillier"])
def test_a_node_refuses_a_setup_beyond_any_honest_setup(
    mod_name: str, paillier_keys: tuple[Path, list[Path]], loaded: list[int]
) -> None:
    node = PAILLIER_NODES[0]
    key_file, trusted_file = identity_files(node)
    if mod_name == "masking":
        mod, stage = make_secagg_mod(identity_key_file=key_file, trusted_keys_file=trusted_file), SETUP
    else:
        mod = make_paillier_mod(key_share_file=paillier_keys[1][0], passphrase=PASSPHRASE,
                                identity_key_file=key_file, trusted_keys_file=trusted_file)
        stage = ENCRYPT
    message = Message(stage_content(stage, b"SA" + bytes(HUGE_SETUP)), dst_node_id=node,
                      message_type=MessageType.TRAIN)
    # Execute
    reply = mod(transported(message), Context(77, node, {}, RecordDict(), {}), lambda m, c: m)  # type: ignore[arg-type,return-value]
    # Assert
    assert not loaded or max(loaded) < HUGE_SETUP, "the oversized setup was loaded"
    assert reply.has_error() and reply.error.reason.startswith(f"secagg: node {node}:"), reply.error.reason
    assert "an honest" in reply.error.reason, reply.error.reason


# --- the limits are the honest sizes ------------------------------------------------------------


def test_the_reply_limits_are_the_honest_reply_sizes_of_a_complete_graph_round() -> None:
    """Every honest reply of an active round on the complete graph is within its stage's limit, and
    the fixed-size ones (and share-keys: a box for each of the n - 1 peers) are exactly at it."""
    grid, secure, _ = masking_round("active")
    sizes: dict[str, set[int]] = {}

    def record(reply: Message) -> list[Message]:
        if not reply.has_error():
            stage, payload = read_stage(reply.content)
            sizes.setdefault(stage, set()).add(len(payload))
        return [reply]

    change_pulls(grid, record)
    # Execute
    run(secure)
    # Assert
    report = secure.reports[0]
    assert report.dropped == {} and report.skipped_reason is None
    setup = next(m for m in grid.sent if stage_of(m) == SETUP)
    masking = wire.decode(read_stage(setup.content)[1], RoundSetup).masking
    limits = {stage: masking_reply_limit(stage, len(NODES), masking.vector_length, masking.ring_bits)
              for stage in sizes}
    for stage in (IDENTIFY, SETUP, SHARE_KEYS, MASKED_INPUT, CONSISTENCY_CHECK):
        assert sizes[stage] == {limits[stage]}, (stage, sizes[stage], limits[stage])
    assert max(sizes[UNMASK]) <= limits[UNMASK]


def test_one_byte_past_the_honest_masked_input_is_refused_with_the_size() -> None:
    grid, secure, audit = masking_round()

    def one_more(content: RecordDict) -> RecordDict:
        return stage_content(MASKED_INPUT, read_stage(content)[1] + b"\x00")

    rewrite_reply(grid, FAULTY, MASKED_INPUT, one_more)
    # Execute
    run(secure)
    # Assert
    report = secure.reports[0]
    assert report.dropped == {FAULTY: MASKED_INPUT}, (report.dropped, report.errors)
    assert "exceeds" in report.errors[FAULTY] and "an honest" in report.errors[FAULTY], report.errors
    assert report.included == frozenset(NODES) - {FAULTY}
    assert_exact_masking_sum(report, audit)


def test_the_message_limits_are_the_honest_server_message_sizes_of_a_complete_graph_round() -> None:
    """Every server message of an active round on the complete graph is within its stage's limit
    (the node's check), and after the setup each is exactly at it: n - 1 roster entries, n - 1 boxes,
    n survivors, n survivors with n signatures."""
    grid, secure, _ = masking_round("active")
    # Execute
    run(secure)
    # Assert
    assert secure.reports[0].dropped == {}
    sizes: dict[str, set[int]] = {}
    for message in grid.sent:
        stage, payload = read_stage(message.content)
        sizes.setdefault(stage, set()).add(len(payload))
    assert max(sizes[SETUP]) <= masking_message_limit(SETUP, len(NODES))
    assert sizes[IDENTIFY] == {0}
    for stage in (SHARE_KEYS, MASKED_INPUT, CONSISTENCY_CHECK, UNMASK):
        assert sizes[stage] == {masking_message_limit(stage, len(NODES))}, (stage, sizes[stage])


def test_the_paillier_limits_are_the_honest_sizes(paillier_keys: tuple[Path, list[Path]]) -> None:
    """An upload is exactly at its limit, a partial decryption within it, and a decryption request
    (every node's upload) exactly at the node's limit."""
    grid, secure, _ = paillier_round(paillier_keys)
    replies: dict[str, set[int]] = {}

    def record(reply: Message) -> list[Message]:
        if not reply.has_error():
            stage, payload = read_stage(reply.content)
            replies.setdefault(stage, set()).add(len(payload))
        return [reply]

    change_pulls(grid, record)
    # Execute
    run(secure)
    # Assert
    assert secure.reports[0].dropped == {} and secure.reports[0].skipped_reason is None
    requests = {len(read_stage(m.content)[1]) for m in grid.sent if stage_of(m) == DECRYPT}
    (upload,) = replies[ENCRYPT]
    data_bytes = upload - paillier_reply_limit(ENCRYPT, 0)
    assert data_bytes > 0 and max(replies[DECRYPT]) <= paillier_reply_limit(DECRYPT, data_bytes)
    assert requests == {paillier_request_limit(len(PAILLIER_NODES), data_bytes)}
    setups = {len(read_stage(m.content)[1]) for m in grid.sent if stage_of(m) == ENCRYPT}
    assert max(setups) <= PAILLIER_SETUP_LIMIT
