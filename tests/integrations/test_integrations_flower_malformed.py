"""Malformed Flower records from one party cost only that party.

A node's reply whose payload array is empty, zip bytes, a valid ``.npz``, an
object array, of the wrong dtype or shape, or missing altogether is dropped
with a reason in the round's report, and the round completes for the others
(masking and Paillier). The node mods answer such server messages, and
malformed model arrays, with an error reply instead of raising.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MessageType, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode, SType
from flwr.serverapp.strategy import FedAvg

from secagg import wire
from secagg.encoding import QuantizationConfig
from secagg.errors import DecodeError
from secagg.integrations.flower import (
    PaillierGrid,
    PaillierOptions,
    RoundReport,
    SecAggGrid,
    SecAggOptions,
    make_paillier_mod,
    make_secagg_mod,
)
from secagg.integrations.flower._grid import MAX_REASON_CHARS, reported_reason
from secagg.integrations.flower._paillier_setup import PaillierUpload
from secagg.integrations.flower._records import (
    PAYLOAD_RECORD,
    STAGE_RECORD,
    model_arrays,
    read_stage,
    stage_content,
)
from secagg.integrations.flower.clipping import encoded_length, layout_table
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import (
    DECRYPT,
    ENCRYPT,
    MASKED_INPUT,
    SETUP,
    SHARE_KEYS,
    UNMASK,
    PaillierSetup,
    arrays_digest,
    flatten_arrays,
)
from secagg.masking.messages import EncryptedShares, MaskedInput
from secagg.ring import PackedVector

from .flower_harness import (
    TRUSTED_KEYS,
    Audit,
    FakeGrid,
    identity_files,
    initial_arrays,
    make_app,
    node_identity_key,
    transported,
)
from .paillier_keys import PASSPHRASE

NODES = (1_000_000_007, 2**63 + 11, 42, 9_999_999_999, 2**64 - 1)
WEIGHTS = dict(zip(NODES, (30, 55, 12, 80, 41), strict=True))
PAILLIER_NODES = NODES[:4]
FAULTY = 42


pytestmark = pytest.mark.usefixtures("server_identity")


# --- malformed records -------------------------------------------------------------------


def raw_array(data: bytes) -> Array:
    """An Array claiming to be a uint8 numpy array, whatever ``data`` holds."""
    return Array(dtype="uint8", shape=(len(data),), stype=SType.NUMPY, data=data)


def npy(header: str, body: bytes = b"") -> bytes:
    """.npy format 1.0 bytes with a hand-written header."""
    encoded = header.encode("latin1")
    return b"\x93NUMPY\x01\x00" + len(encoded).to_bytes(2, "little") + encoded + body


def npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, payload=np.arange(4, dtype=np.uint8))
    return buffer.getvalue()


MALFORMED_ARRAYS: dict[str, Callable[[], Array]] = {
    "empty": lambda: raw_array(b""),
    "zip": lambda: raw_array(b"PK\x03\x04" + bytes(26)),
    "npz": lambda: raw_array(npz()),
    "object": lambda: raw_array(npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", bytes(16))),
    "wrong-dtype": lambda: Array(np.arange(4, dtype=np.int32)),
    "wrong-ndim": lambda: Array(np.zeros((2, 3), dtype=np.uint8)),
    "unbalanced-header": lambda: raw_array(npy("{'descr': '<u1', 'shape': ((")),
    "huge-shape": lambda: raw_array(npy("{'descr': '<u1', 'fortran_order': False, 'shape': (1099511627776,), }")),
}
"""A payload array that is not one complete, one-dimensional uint8 .npy array."""


def malformed_content(kind: str, stage: str) -> RecordDict:
    """Stage records whose payload is malformed in the way ``kind`` names ("missing": no payload record)."""
    content = RecordDict({STAGE_RECORD: ConfigRecord({"stage": stage})})
    if kind != "missing":
        content[PAYLOAD_RECORD] = ArrayRecord({"payload": MALFORMED_ARRAYS[kind]()})
    return content


KINDS = [*MALFORMED_ARRAYS, "missing"]


def test_every_malformed_payload_is_a_decode_error_even_after_transport() -> None:
    for kind in KINDS:
        content = transported(Message(malformed_content(kind, SETUP), dst_node_id=5,
                                      message_type=MessageType.TRAIN)).content
        with pytest.raises(DecodeError):
            read_stage(content)


@pytest.mark.parametrize("kind", list(MALFORMED_ARRAYS))
def test_malformed_model_arrays_are_a_decode_error(kind: str) -> None:
    content = RecordDict({"arrays": ArrayRecord({"w": MALFORMED_ARRAYS[kind]()})})
    if kind.startswith("wrong"):  # a well-formed array: model arrays may have any dtype and shape
        assert model_arrays(content)[0][2].shape in {(4,), (2, 3)}
        return
    with pytest.raises(DecodeError):
        model_arrays(content)


def rewrite_reply(grid: FakeGrid, node: int, stage: str, change: Callable[[RecordDict], RecordDict]) -> None:
    """Make ``node``'s reply in ``stage`` carry ``change(its content)`` instead (as delivered after transport)."""

    def corrupt(reply: Message) -> list[Message]:
        if not replied(reply, node, stage):
            return [reply]
        forged = Message(change(reply.content), reply_to=instruction_of(grid, reply))
        forged.metadata.__dict__["_src_node_id"] = node
        return [transported(forged)]

    change_pulls(grid, corrupt)


def replace_reply(grid: FakeGrid, node: int, stage: str, content: RecordDict) -> None:
    """Make ``node``'s reply in ``stage`` carry ``content`` instead (as delivered after transport)."""
    rewrite_reply(grid, node, stage, lambda _: content)


# --- one node's malformed reply: the round completes for the others ------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_malformed_reply_in_a_masking_round_drops_only_that_node(kind: str) -> None:
    # Prepare: node 42's share-keys reply carries a malformed payload
    audit = Audit()
    grid = FakeGrid({node: make_app(node, WEIGHTS[node], audit) for node in NODES})
    secure = SecAggGrid(grid, SecAggOptions(mode="semi-honest", protocol="secagg"))
    replace_reply(grid, FAULTY, SHARE_KEYS, malformed_content(kind, SHARE_KEYS))
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    # Execute
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert: dropped with the decoder's reason; the others aggregated exactly
    report = secure.reports[0]
    assert report.skipped_reason is None
    assert report.dropped == {FAULTY: SHARE_KEYS}
    assert "payload" in report.errors[FAULTY] or "secagg stage" in report.errors[FAULTY]
    assert report.included == frozenset(NODES) - {FAULTY}
    quantization = QuantizationConfig(0.5, 16, len(NODES), max_weight=4096)
    encodings = [a.encoded for n, a in audit.of_round(1).items() if n in report.included]
    assert np.array_equal(report.aggregate, quantization.ring.sum(encodings, report.aggregate.shape[0]))


def paillier_apps(shares: list[Path], audit: Audit) -> dict[int, object]:
    return {
        node: make_app(node, WEIGHTS[node], audit, paillier=True, key_share_file=share, passphrase=PASSPHRASE)
        for node, share in zip(PAILLIER_NODES, shares, strict=True)
    }


@pytest.mark.parametrize("kind", KINDS)
def test_a_malformed_upload_in_a_paillier_round_drops_only_that_node(
    kind: str, paillier_keys: tuple[Path, list[Path]]
) -> None:
    # Prepare: node 42's encrypted upload carries a malformed payload
    public_path, shares = paillier_keys
    audit = Audit()
    grid = FakeGrid(paillier_apps(shares, audit))  # type: ignore[arg-type]
    secure = PaillierGrid(grid, PaillierOptions(trusted_keys=TRUSTED_KEYS, public_key=read_public_key(public_path)))
    replace_reply(grid, FAULTY, ENCRYPT, malformed_content(kind, ENCRYPT))
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2)
    # Execute
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert: left out with the reason; the other three are decrypted exactly
    report = secure.reports[0]
    assert report.skipped_reason is None
    assert report.dropped == {FAULTY: ENCRYPT}
    assert "payload" in report.errors[FAULTY] or "secagg stage" in report.errors[FAULTY]
    assert report.included == frozenset(PAILLIER_NODES) - {FAULTY}
    plain = np.sum([a.encoded for n, a in audit.of_round(1).items() if n in report.included], axis=0)
    assert report.aggregate is not None and np.array_equal(report.aggregate, plain)


# --- the mods answer malformed server messages with an error reply ------------------------


def must_not_train(message: Message, context: Context) -> Message:
    raise AssertionError("the train handler must not run for a malformed message")


def mods(shares: list[Path]) -> dict[str, object]:
    return {
        "masking": make_secagg_mod(),
        "paillier": make_paillier_mod(key_share_file=shares[0], passphrase=PASSPHRASE,
                          identity_key_file=identity_files(PAILLIER_NODES[0])[0],
            trusted_keys_file=identity_files(PAILLIER_NODES[0])[1]),
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mod_name", ["masking", "paillier"])
def test_the_mods_answer_a_malformed_stage_message_with_an_error(
    kind: str, mod_name: str, paillier_keys: tuple[Path, list[Path]]
) -> None:
    # Prepare
    mod = mods(paillier_keys[1])[mod_name]
    stage = SETUP if mod_name == "masking" else ENCRYPT
    message = Message(malformed_content(kind, stage), dst_node_id=PAILLIER_NODES[0], message_type=MessageType.TRAIN)
    # Execute
    reply = mod(transported(message), Context(77, PAILLIER_NODES[0], {}, RecordDict(), {}), must_not_train)  # type: ignore[operator]
    # Assert
    assert reply.has_error() and reply.error.reason.startswith("secagg: node")


def test_the_paillier_mod_answers_malformed_model_arrays_with_an_error(
    paillier_keys: tuple[Path, list[Path]],
) -> None:
    # Prepare: a valid setup for this node's key, but the model's arrays are an empty payload
    public_path, shares = paillier_keys
    vector, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in initial_arrays().items()])
    quantization = QuantizationConfig(0.5, 16, len(PAILLIER_NODES), ring_bits=64, max_weight=4096)
    table = layout_table(layout).with_clips({"arrays/w": 0.5, "arrays/b": 0.5})
    setup = PaillierSetup.create(1, PAILLIER_NODES, read_public_key(public_path), 3, quantization,
                                 encoded_length(table), "num-examples", arrays_digest(vector, layout),
                                 [node_identity_key(n).public for n in PAILLIER_NODES], segments=table.describe())
    node = PAILLIER_NODES[0]
    content = RecordDict({"arrays": ArrayRecord({"w": raw_array(b"")}), "config": ConfigRecord({"server-round": 1}),
                          STAGE_RECORD: ConfigRecord({"stage": ENCRYPT}),
                          PAYLOAD_RECORD: ArrayRecord({"payload": Array(np.frombuffer(wire.encode(setup), np.uint8))})})
    message = Message(content, dst_node_id=node, message_type=MessageType.TRAIN)
    # Execute
    reply = mods(shares)["paillier"](transported(message), Context(77, node, {}, RecordDict(), {}), must_not_train)  # type: ignore[operator]
    # Assert
    assert reply.has_error() and "array arrays/w is not .npy data" in reply.error.reason


def test_a_node_sent_malformed_model_arrays_answers_with_an_error_and_the_round_completes() -> None:
    # Prepare: the server sends node 42 an unreadable model in the masked-input stage
    audit = Audit()
    grid = FakeGrid({node: make_app(node, WEIGHTS[node], audit) for node in NODES})
    secure = SecAggGrid(grid, SecAggOptions(mode="semi-honest", protocol="secagg"))
    original = grid.send_and_receive

    def break_model(messages, *, timeout=None):  # type: ignore[no-untyped-def]
        messages = list(messages)
        for message in messages:
            if "arrays" in message.content and message.metadata.dst_node_id == FAULTY:
                content = RecordDict(dict(message.content.items()))
                content["arrays"] = ArrayRecord({"w": raw_array(npz())})
                message.content = content
        return original(messages, timeout=timeout)

    grid.send_and_receive = break_model  # type: ignore[method-assign]
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    # Execute
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert: the node refused with the mod's own reason (not a crash) and the rest completed
    report = secure.reports[0]
    assert report.dropped == {FAULTY: MASKED_INPUT}
    expected = f"secagg: node {FAULTY}: refused (malformed message): array arrays/w is not .npy data"
    assert report.errors[FAULTY].startswith(expected), report.errors[FAULTY]
    assert report.included == frozenset(NODES) - {FAULTY} and report.skipped_reason is None


# --- one node lies about its key-share index ------------------------------------------------


def test_a_node_claiming_another_nodes_key_share_costs_only_itself(
    paillier_keys: tuple[Path, list[Path]],
) -> None:
    """The key-share index in a PaillierUpload is the node's word, outside its signed upload.
    Node 42 (the smallest id, so first in the server's order) claims share 1, which node
    1_000_000_007 holds. Only a holder of share 1 can prove a partial decryption for it, so
    the server must ask both claimants and keep the answer whose proof verifies: the honest
    holder decrypts, 42 is named with a reason, and the 3-of-4 key still gets three answers."""
    public_path, shares = paillier_keys
    audit = Audit()
    grid = FakeGrid(paillier_apps(shares, audit))  # type: ignore[arg-type]
    secure = PaillierGrid(grid, PaillierOptions(trusted_keys=TRUSTED_KEYS, public_key=read_public_key(public_path)))
    honest = PAILLIER_NODES[0]  # holds share 1 (paillier_apps: shares in node order)

    def claim_share_1(content: RecordDict) -> RecordDict:
        lie = dataclasses.replace(wire.decode(read_stage(content)[1], PaillierUpload), party=1)
        return stage_content(ENCRYPT, wire.encode(lie), content)

    rewrite_reply(grid, FAULTY, ENCRYPT, claim_share_1)
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2)
    # Execute
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert: the honest holder is not blamed, the liar is, and the sum of every upload is exact
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    assert honest not in report.errors, report.errors
    assert FAULTY in report.errors
    assert report.included == frozenset(PAILLIER_NODES)
    plain = np.sum([a.encoded for n, a in audit.of_round(1).items() if n in report.included], axis=0)
    assert report.aggregate is not None and np.array_equal(report.aggregate, plain)


# --- a fault the server sees only at Unmasking ----------------------------------------------


def test_a_wrong_self_mask_commitment_skips_the_round_naming_its_node() -> None:
    """Node 42 sends a well-formed ShareKeys reply whose self-mask commitment is not its seed's
    (spec 12.9, "Limits": the server cannot check it before Unmasking, nor then drop 42's input).
    The round cannot be unmasked, but it must end as a skipped round naming node 42 with the
    reason, like a round below the threshold; the strategy goes on to its next round."""
    audit = Audit()
    grid = FakeGrid({node: make_app(node, WEIGHTS[node], audit) for node in NODES})
    secure = SecAggGrid(grid, SecAggOptions(mode="semi-honest", protocol="secagg"))

    def wrong_commitment(content: RecordDict) -> RecordDict:
        lie = dataclasses.replace(wire.decode(read_stage(content)[1], EncryptedShares), self_mask_commitment=bytes(32))
        return stage_content(SHARE_KEYS, wire.encode(lie), content)

    rewrite_reply(grid, FAULTY, SHARE_KEYS, wrong_commitment)
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    # Execute: two rounds, both with the lying node
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=2)
    # Assert: the round is skipped with a reason naming node 42 (protocol id 1: the smallest node
    # id, spelled out in the reason); nothing else is blamed. The strategy goes on with the same
    # model, which every node refuses: its masked input left in round 1 (one sum per model)
    assert len(secure.reports) == 2
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None
    assert report.node_ids[0] == FAULTY
    assert "client 1's self-mask seed" in report.skipped_reason, report.skipped_reason
    assert "committed value" in report.skipped_reason and f"are nodes [{FAULTY}," in report.skipped_reason
    assert set(report.errors) <= {FAULTY}, report.errors
    assert_refused_as_a_model_already_summed(secure.reports[1])


def assert_refused_as_a_model_already_summed(report: RoundReport) -> None:
    """``report``'s round resent the previous round's model, which every node contributed for."""
    assert report.aggregate is None and report.skipped_reason is not None
    assert set(report.errors) == set(report.node_ids), report.errors
    assert all("already sent a contribution for this model" in reason for reason in report.errors.values())


# --- replies beyond one per request: extra, foreign, or from the SuperLink ------------------


def change_pulls(grid: FakeGrid, change: Callable[[Message], list[Message]]) -> None:
    """Make each reply the server pulls from ``grid`` arrive as ``change(reply)`` instead (several
    replies, none, or others): what a faulty node or transport could deliver for one request."""
    original = grid.pull_messages

    def pull(message_ids):  # type: ignore[no-untyped-def]
        return [delivered for reply in original(message_ids) for delivered in change(reply)]

    grid.pull_messages = pull  # type: ignore[method-assign]


def instruction_of(grid: FakeGrid, reply: Message) -> Message:
    """The message ``reply`` answers (as the server sent it)."""
    return next(m for m in grid.sent if m.metadata.message_id == reply.metadata.reply_to_message_id)


def error_from(grid: FakeGrid, reply: Message, reason: str, src_node_id: int | None = None) -> Message:
    """An error reply to the request ``reply`` answers (from ``src_node_id`` if given, e.g. the SuperLink)."""
    error = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason),
                    reply_to=instruction_of(grid, reply))
    if src_node_id is not None:
        error.metadata.__dict__["_src_node_id"] = src_node_id
    return transported(error)


def replied(reply: Message, node: int, stage: str) -> bool:
    return reply.metadata.src_node_id == node and not reply.has_error() and read_stage(reply.content)[0] == stage


SECOND_REPLIES = {
    "a good reply, then an error": lambda grid, reply: [reply, error_from(grid, reply, "second thoughts")],
    "an error, then a good reply": lambda grid, reply: [error_from(grid, reply, "first thoughts"), reply],
    "the same reply twice": lambda grid, reply: [reply, transported(reply)],
}


def masking_round(
    mode: str = "semi-honest", protocol: str = "secagg", **options: float
) -> tuple[FakeGrid, SecAggGrid, Audit]:
    audit = Audit()
    grid = FakeGrid({node: make_app(node, WEIGHTS[node], audit, **identity_options(node, mode)) for node in NODES})
    settings: dict[str, object] = {"mode": mode, "protocol": protocol, **options}
    if mode == "active":
        settings["trusted_keys"] = TRUSTED_KEYS
    return grid, SecAggGrid(grid, SecAggOptions(**settings)), audit  # type: ignore[arg-type]


def identity_options(node: int, mode: str) -> dict[str, object]:
    if mode != "active":
        return {}
    key_file, trusted_file = identity_files(node)
    return {"identity_key_file": key_file, "trusted_keys_file": trusted_file}


def assert_exact_masking_sum(report: RoundReport, audit: Audit) -> None:
    quantization = QuantizationConfig(0.5, 16, len(report.node_ids), max_weight=4096)
    encodings = [a.encoded for n, a in audit.of_round(report.server_round).items() if n in report.included]
    assert report.aggregate is not None
    assert np.array_equal(report.aggregate, quantization.ring.sum(encodings, report.aggregate.shape[0]))


@pytest.mark.parametrize("second", list(SECOND_REPLIES))
@pytest.mark.parametrize(("mode", "stage"), [("semi-honest", SETUP), ("semi-honest", SHARE_KEYS),
                                             ("semi-honest", MASKED_INPUT), ("active", MASKED_INPUT)])
def test_a_node_answering_one_masking_request_twice_is_dropped_in_that_stage(
    second: str, mode: str, stage: str
) -> None:
    """A node answers each request once (the SuperLink stores one reply per message). Two answers
    to one request make the node faulty: it is a dropout of that stage with the reason, never both
    aggregated and named in the errors; its answers are set aside before the protocol sees them, so
    it is a plain dropout (its pairwise masks are recovered, its self-mask seed never revealed)."""
    grid, secure, audit = masking_round(mode)
    change_pulls(grid, lambda reply: SECOND_REPLIES[second](grid, reply) if replied(reply, FAULTY, stage) else [reply])
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    # Execute
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    assert report.dropped == {FAULTY: stage}, (report.dropped, report.errors)
    assert "more than one reply" in report.errors[FAULTY], report.errors
    assert set(report.errors) == {FAULTY}
    assert report.included == frozenset(NODES) - {FAULTY}
    assert_exact_masking_sum(report, audit)


@pytest.mark.parametrize("second", list(SECOND_REPLIES))
@pytest.mark.parametrize("stage", [ENCRYPT, DECRYPT])
def test_a_node_answering_one_paillier_request_twice_is_dropped_in_that_stage(
    second: str, stage: str, paillier_keys: tuple[Path, list[Path]]
) -> None:
    """As for masking: two answers to one request drop the node from that stage with the reason.
    Dropped in ``decrypt``, its upload still counts (the 3-of-4 key gets three partials)."""
    public_path, shares = paillier_keys
    audit = Audit()
    grid = FakeGrid(paillier_apps(shares, audit))  # type: ignore[arg-type]
    secure = PaillierGrid(grid, PaillierOptions(trusted_keys=TRUSTED_KEYS, public_key=read_public_key(public_path)))
    change_pulls(grid, lambda reply: SECOND_REPLIES[second](grid, reply) if replied(reply, FAULTY, stage) else [reply])
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2)
    # Execute
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    assert report.dropped == {FAULTY: stage}, (report.dropped, report.errors)
    assert "more than one reply" in report.errors[FAULTY] and set(report.errors) == {FAULTY}
    uploaded = frozenset(PAILLIER_NODES) - ({FAULTY} if stage == ENCRYPT else set())
    assert report.included == uploaded
    plain = np.sum([a.encoded for n, a in audit.of_round(1).items() if n in report.included], axis=0)
    assert report.aggregate is not None and np.array_equal(report.aggregate, plain)


def test_a_superlink_error_reply_names_the_node_it_is_about() -> None:
    """When a node goes offline mid-round the SuperLink answers its request itself: an error reply
    from the SuperLink's node id, replying to the request. The node is a dropout of that stage and
    the SuperLink's reason is the report's error for it."""
    grid, secure, audit = masking_round()
    change_pulls(grid, lambda reply: [error_from(grid, reply, "node offline", SUPERLINK_NODE_ID)]
                 if replied(reply, FAULTY, SHARE_KEYS) else [reply])
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    # Execute
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert
    report = secure.reports[0]
    assert report.dropped == {FAULTY: SHARE_KEYS} and report.errors == {FAULTY: "node offline"}, report.errors
    assert report.included == frozenset(NODES) - {FAULTY}
    assert_exact_masking_sum(report, audit)


@pytest.mark.parametrize("stage", [SHARE_KEYS, MASKED_INPUT])
def test_a_reply_carrying_another_nodes_id_costs_that_node_nothing(stage: str) -> None:
    """Node 42's reply arrives under another node's id (a node id the SuperLink would refuse, as it
    checks the sender against the request's destination). It is nobody's answer: the other node
    keeps its own reply and is aggregated; 42, with no reply of its own, is a dropout."""
    grid, secure, audit = masking_round(stage_timeout=0.3, poll_interval=0.05)
    other = NODES[0]

    def as_other(reply: Message) -> list[Message]:
        if not replied(reply, FAULTY, stage):
            return [reply]
        reply.metadata.__dict__["_src_node_id"] = other
        return [reply]

    change_pulls(grid, as_other)
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    # Execute
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    assert report.dropped == {FAULTY: stage}, (report.dropped, report.errors)
    assert set(report.errors) <= {FAULTY}, report.errors
    assert report.included == frozenset(NODES) - {FAULTY}
    assert_exact_masking_sum(report, audit)


def test_a_reply_to_a_request_of_another_stage_or_round_is_not_counted() -> None:
    """A reply answering a request the current stage did not send (a late reply of an earlier stage
    or round, delivered again) belongs to no request of this stage: it neither replaces nor
    duplicates the node's current answer, and costs nobody anything."""
    grid, secure, audit = masking_round()
    earlier: list[Message] = []

    def replay(reply: Message) -> list[Message]:
        if reply.metadata.src_node_id != FAULTY or reply.has_error():
            return [reply]
        delivered = [reply, *earlier]
        earlier.append(transported(reply))
        return delivered

    change_pulls(grid, replay)
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    # Execute: two rounds, each stage also delivers every earlier reply of node 42
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=2)
    # Assert: every node aggregated in both rounds, nobody blamed
    for report in secure.reports:
        assert report.skipped_reason is None, report.skipped_reason
        assert report.dropped == {} and report.errors == {}, (report.dropped, report.errors)
        assert report.included == frozenset(NODES)
        assert_exact_masking_sum(report, audit)


@pytest.mark.parametrize("mode", ["semi-honest", "active"])
def test_a_rejected_unmask_reply_makes_its_node_a_dropout_of_unmask(mode: str) -> None:
    """A node whose unmask reply the protocol rejects is reported like one whose unmask reply is
    missing: a dropout of ``unmask`` (its input, accepted earlier, still counts), with the reason."""
    grid, secure, audit = masking_round(mode)
    replace_reply(grid, FAULTY, UNMASK, stage_content(UNMASK, b"SA\x01\x01\x03garbage"))
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    # Execute
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    assert report.dropped == {FAULTY: UNMASK}, (report.dropped, report.errors)
    assert set(report.errors) == {FAULTY}
    assert report.included == frozenset(NODES)
    assert_exact_masking_sum(report, audit)


@pytest.mark.parametrize("stage", [SHARE_KEYS, MASKED_INPUT])
def test_a_reply_naming_another_nodes_request_costs_that_node_nothing(stage: str) -> None:
    """Node 42's reply names another node's request (``reply_to_message_id``; the SuperLink would
    refuse it, as the request was not sent to 42). It is nobody's answer: the other node's own
    reply counts and it is aggregated, unblamed; 42, with no answer to its own request, is a dropout."""
    grid, secure, audit = masking_round(stage_timeout=0.3, poll_interval=0.05)
    other = NODES[0]

    def misdirected(reply: Message) -> list[Message]:
        if replied(reply, FAULTY, stage):
            request = next(m for m in reversed(grid.sent) if m.metadata.dst_node_id == other)
            reply.metadata.__dict__["_reply_to_message_id"] = request.metadata.message_id
        return [reply]

    change_pulls(grid, misdirected)
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    # Execute
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    assert report.dropped == {FAULTY: stage}, (report.dropped, report.errors)
    assert other not in report.errors, report.errors
    assert report.included == frozenset(NODES) - {FAULTY}
    assert_exact_masking_sum(report, audit)


# --- an input the server can judge only in the sum -------------------------------------------


@pytest.mark.parametrize("mode", ["semi-honest", "active"])
def test_an_impossible_masked_input_skips_the_round_instead_of_raising_into_flower(mode: str) -> None:
    """Node 42 adds 2^20 to the weight slot of its masked input (masks cancel in the sum, so the
    sum carries it: a weight total no round of these nodes can reach). The server sees only the
    sum, so it cannot leave 42 out; but the round ends as a skipped round with the reason, the
    strategy keeps its model and goes on, instead of the decoder's error reaching Flower."""
    grid, secure, _ = masking_round(mode)

    def heavier(content: RecordDict) -> RecordDict:
        masked = wire.decode(read_stage(content)[1], MaskedInput)
        values = masked.vector.values.copy()
        values[-1] = (int(values[-1]) + (1 << 20)) % (1 << masked.vector.bits)
        lie = dataclasses.replace(masked, vector=PackedVector(masked.vector.bits, values))
        return stage_content(MASKED_INPUT, wire.encode(lie), content)

    rewrite_reply(grid, FAULTY, MASKED_INPUT, heavier)
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    # Execute: two rounds, 42 lies in the first (the second resends its model, which the nodes refuse)
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=2)
    # Assert
    assert len(secure.reports) == 2
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None
    assert "weight total" in report.skipped_reason, report.skipped_reason
    assert_refused_as_a_model_already_summed(secure.reports[1])


def test_an_error_reply_without_a_reason_is_reported_with_its_code() -> None:
    """An error reply whose reason is empty still gives the node a reason in the report: its code."""
    grid, secure, audit = masking_round()
    change_pulls(grid, lambda reply: [error_from(grid, reply, "")] if replied(reply, FAULTY, SHARE_KEYS) else [reply])
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    # Execute
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert
    report = secure.reports[0]
    assert report.dropped == {FAULTY: SHARE_KEYS}
    assert report.errors[FAULTY] == f"error reply with no reason (code {ErrorCode.CLIENT_APP_RAISED_EXCEPTION})"
    assert report.included == frozenset(NODES) - {FAULTY}
    assert_exact_masking_sum(report, audit)


REASON_CHARS = MAX_REASON_CHARS  # 1000: the most characters of a node's own error reason a report keeps


# The forged prefix escapes to 6 more characters ("\\n" and "\\u202e"): REASON_CHARS - 6 characters
# escape to exactly the bound, one more goes past it.
@pytest.mark.parametrize("length", [REASON_CHARS - 6, REASON_CHARS - 5, 1 << 20])
def test_a_hostile_error_reason_is_reported_escaped_and_cut_and_the_round_goes_on(
    length: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A node's error reason is its own text: a forged log line after a newline, a right-to-left
    override, a megabyte. The report and the log keep it on one line, escaped, at most REASON_CHARS
    characters of the escaped text (the bound kept whole, one past cut), and the round goes on
    without that node."""
    grid, secure, audit = masking_round()
    forged = "x\nINFO secagg.flower: secure round 1: 5 of 5 nodes aggregated\u202e"
    reason = (forged + "y" * length)[:length]
    change_pulls(grid, lambda reply: [error_from(grid, reply, reason)] if replied(reply, FAULTY, SHARE_KEYS)
                 else [reply])
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    # Execute
    with caplog.at_level("INFO", logger="secagg.flower"):
        strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert: the node is a dropout with its reason, escaped (one printable line), whole up to the
    # bound and cut past it, saying how long it was; the others are summed exactly
    report = secure.reports[0]
    assert report.dropped == {FAULTY: SHARE_KEYS}
    kept = report.errors[FAULTY]
    assert kept.isprintable() and "\n" not in kept and "\u202e" not in kept, kept[:200]
    assert kept.startswith("x\\nINFO secagg.flower: secure round 1"), kept[:200]
    escaped = reason.replace("\n", "\\n").replace("\u202e", "\\u202e")
    if len(escaped) <= REASON_CHARS:
        assert kept == escaped
    else:
        assert kept.startswith(escaped[:REASON_CHARS - 20]) and len(kept) < REASON_CHARS + 80, len(kept)
        assert f"(cut: {length} characters)" in kept, kept[-80:]
    assert report.included == frozenset(NODES) - {FAULTY}
    assert_exact_masking_sum(report, audit)
    assert all("\n" not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("char", ["\x00", "\u202e", "\U0010ffff"])
def test_an_error_reason_of_escaped_characters_is_cut_at_the_bound_after_escaping(char: str) -> None:
    """Escaping lengthens a character up to tenfold (``\\U0010ffff``): the bound applies to the text
    the report keeps, so a reason of REASON_CHARS unprintable characters cannot grow it tenfold."""
    # Execute
    kept = reported_reason(char * REASON_CHARS)
    # Assert: cut within the bound (no escape split), saying how long the node's text was
    assert len(kept) < REASON_CHARS + 40, len(kept)
    body = kept.split("... (cut: ")[0]
    escape = char.encode("unicode_escape").decode("ascii")
    assert len(body) <= REASON_CHARS and body == escape * (len(body) // len(escape))
    assert kept.endswith(f"(cut: {REASON_CHARS} characters)"), kept[-60:]
