"""One hostile reply, stage by stage: it costs only its node (the server side of the Flower grids).

A table of hostile variants of one node's reply (:data:`RECORD_VARIANTS`: the Flower records
around the payload; :data:`BYTE_VARIANTS`: the wire payload itself, including another node's
reply, a reply of an earlier round and a message of another type) is fed to the server in each
stage of a masking round (both modes) and a Paillier round while the other nodes stay honest.
For each the round must complete, the node is a dropout of that stage with a reason in the
report, nobody else is blamed, and the sum is exactly that of the included nodes (a node
dropped at ``unmask`` or ``decrypt`` uploaded already: its input still counts). The readers the
grids call are checked first, in isolation: they raise only the library's own errors.

The fixtures and helpers are those of ``test_integrations_flower_malformed`` (which holds the
hand-written cases: malformed ``.npy`` bytes, two replies, foreign senders, error reasons).
"""

from __future__ import annotations

import dataclasses
import io
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.constant import SType
from flwr.serverapp.strategy import FedAvg

from secagg import wire
from secagg.errors import SecAggError
from secagg.integrations.flower import PaillierGrid, PaillierOptions, RoundReport
from secagg.integrations.flower._grid import _payload
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
    STAGES,
    UNMASK,
)
from secagg.masking.messages import EncryptedShares, SealedBox, ShareEntry, UnmaskResponse
from secagg.primitives import shamir

from .flower_harness import TRUSTED_KEYS, Audit, FakeGrid, initial_arrays, transported
from .test_integrations_flower_malformed import (
    FAULTY,
    NODES,
    PAILLIER_NODES,
    assert_exact_masking_sum,
    change_pulls,
    error_from,
    instruction_of,
    masking_round,
    paillier_apps,
    replied,
)

pytestmark = pytest.mark.usefixtures("server_identity")


# --- the variants ---------------------------------------------------------------------------


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def raw(data: bytes) -> Array:
    return Array(dtype="uint8", shape=(len(data),), stype=SType.NUMPY, data=data)


def payload_of(content: RecordDict) -> bytes:
    return read_stage(content)[1]


def with_payload_array(content: RecordDict, array: Array, name: str = "payload") -> RecordDict:
    changed = RecordDict(dict(content.items()))
    changed[PAYLOAD_RECORD] = ArrayRecord({name: array})
    return changed


def with_record(content: RecordDict, key: str, record: object) -> RecordDict:
    changed = RecordDict(dict(content.items()))
    changed[key] = record  # type: ignore[assignment]
    return changed


RECORD_VARIANTS: dict[str, Callable[[RecordDict], RecordDict]] = {
    "float16": lambda c: with_payload_array(c, Array(np.zeros(8, dtype=np.float16))),
    "big-endian-u4": lambda c: with_payload_array(c, Array(np.zeros(8, dtype=">u4"))),
    "structured": lambda c: with_payload_array(c, raw(npy_bytes(np.zeros(4, dtype=[("a", "u1"), ("b", "<u4")])))),
    "structured-u1": lambda c: with_payload_array(c, raw(npy_bytes(np.zeros(4, dtype=[("a", "u1")])))),
    "ndim-0": lambda c: with_payload_array(c, Array(np.array(7, dtype=np.uint8))),
    "fortran-2d": lambda c: with_payload_array(c, Array(np.asfortranarray(np.zeros((2, 3), dtype=np.uint8)))),
    "npy-2.0": lambda c: with_payload_array(c, raw(b"\x93NUMPY\x02\x00" + (1 << 31).to_bytes(4, "little"))),
    "npy-3.0-huge": lambda c: with_payload_array(c, raw(b"\x93NUMPY\x03\x00" + (1 << 31).to_bytes(4, "little"))),
    "other-stype": lambda c: with_payload_array(c, Array(dtype="uint8", shape=(3,), stype="torch.raw", data=b"abc")),
    "renamed-array": lambda c: with_payload_array(c, Array(np.frombuffer(payload_of(c), np.uint8)), "payloadx"),
    "extra-array": lambda c: with_record(c, PAYLOAD_RECORD, ArrayRecord(
        {"payload": Array(np.frombuffer(payload_of(c), np.uint8)), "extra": Array(np.zeros(2, np.uint8))})),
    "extra-record": lambda c: with_record(c, "extra", ConfigRecord({"x": 1})),
    "metric-record": lambda c: with_record(c, "metrics", MetricRecord({"num-examples": 10**9})),
    "extra-stage-key": lambda c: with_record(c, STAGE_RECORD, ConfigRecord({"stage": read_stage(c)[0], "x": 1})),
    "stage-not-text": lambda c: with_record(c, STAGE_RECORD, ConfigRecord({"stage": 5})),
    "other-stage-name": lambda c: with_record(
        c, STAGE_RECORD, ConfigRecord({"stage": DECRYPT if read_stage(c)[0] != DECRYPT else SETUP})),
    "stage-record-as-array": lambda c: with_record(c, STAGE_RECORD, ArrayRecord({"stage": raw(b"x")})),
    "no-stage-record": lambda c: RecordDict({PAYLOAD_RECORD: c[PAYLOAD_RECORD]}),
    "empty-content": lambda c: RecordDict(),
    "oversize": lambda c: with_payload_array(c, Array(np.zeros(len(payload_of(c)) + (1 << 20), np.uint8))),
    "huge-declared-shape": lambda c: with_payload_array(
        c, raw(npy_bytes(np.zeros(1, np.uint8)).replace(b"(1,)", b"(1099511627776,)"))),
}
"""A reply's records changed around (or instead of) its payload."""

BYTE_VARIANTS: dict[str, Callable[[bytes], bytes]] = {
    "empty-bytes": lambda p: b"",
    "header-only": lambda p: p[: wire.HEADER_SIZE],
    "truncated": lambda p: p[: len(p) // 2],
    "one-byte-short": lambda p: p[:-1],
    "trailing-byte": lambda p: p + b"\x00",
    "other-version": lambda p: p[:2] + bytes([p[2] + 1]) + p[3:],
    "other-type": lambda p: p[:3] + bytes([p[3] ^ 0x01, p[4] ^ 0x01]) + p[5:],
    "all-ones-body": lambda p: p[: wire.HEADER_SIZE] + b"\xff" * (len(p) - wire.HEADER_SIZE),
    "huge-counts": lambda p: p[: wire.HEADER_SIZE] + b"\xff" * min(64, len(p) - wire.HEADER_SIZE)
    + p[wire.HEADER_SIZE + 64:],
}
"""The node's honest payload changed (its records otherwise honest)."""


# --- the readers, alone: only the library's own errors --------------------------------------


@pytest.mark.parametrize("variant", list(RECORD_VARIANTS))
@pytest.mark.parametrize("stage", [SETUP, UNMASK, ENCRYPT])
def test_a_hostile_reply_record_is_refused_with_the_librarys_own_error(variant: str, stage: str) -> None:
    honest = stage_content(stage, wire.MAGIC + bytes(64))
    request = Message(RecordDict(), dst_node_id=FAULTY, message_type="train")
    reply = transported(Message(RECORD_VARIANTS[variant](honest), reply_to=request))
    with pytest.raises(SecAggError):
        _payload(stage, [reply], 1024)


def test_every_stage_is_a_stage_the_variants_know() -> None:
    assert {SETUP, SHARE_KEYS, MASKED_INPUT, CONSISTENCY_CHECK, UNMASK, ENCRYPT, DECRYPT} <= set(STAGES)


# --- whole rounds ---------------------------------------------------------------------------


def hostile(grid: FakeGrid, stage: str, change: Callable[[RecordDict], RecordDict]) -> None:
    """Node FAULTY's reply in ``stage`` (every round) arrives as ``change(its content)``."""

    def corrupt(reply: Message) -> list[Message]:
        if reply.metadata.src_node_id != FAULTY or reply.has_error() or read_stage(reply.content)[0] != stage:
            return [reply]
        forged = Message(change(reply.content), reply_to=instruction_of(grid, reply))
        forged.metadata.__dict__["_src_node_id"] = FAULTY
        return [transported(forged)]

    change_pulls(grid, corrupt)


def bytes_change(stage: str, variant: str) -> Callable[[RecordDict], RecordDict]:
    return lambda content: stage_content(stage, BYTE_VARIANTS[variant](payload_of(content)))


MASKING_CASES = (
    [("semi-honest", stage, f"bytes:{v}") for stage in (SETUP, SHARE_KEYS, MASKED_INPUT, UNMASK) for v in BYTE_VARIANTS]
    + [("semi-honest", SHARE_KEYS, f"records:{v}") for v in RECORD_VARIANTS]
    + [("active", stage, f"bytes:{v}") for stage in (IDENTIFY, SETUP, CONSISTENCY_CHECK)
       for v in ("trailing-byte", "other-type", "all-ones-body")]
)


def finish_round(secure: object, rounds: int = 1) -> None:
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=rounds)


def assert_costs_only_the_faulty_node(
    report: RoundReport, stage: str, uploaded_before: bool, everyone: tuple[int, ...]
) -> None:
    """The round completed; FAULTY alone is a dropout of ``stage``, with a reason; the others are
    included (FAULTY too if it ``uploaded_before`` the stage)."""
    assert report.skipped_reason is None, report.skipped_reason
    assert report.dropped == {FAULTY: stage}, (report.dropped, report.errors)
    assert set(report.errors) == {FAULTY} and report.errors[FAULTY], report.errors
    assert report.included == frozenset(everyone) - (set() if uploaded_before else {FAULTY})


@pytest.mark.parametrize(("mode", "stage", "case"), MASKING_CASES)
def test_one_hostile_masking_reply_costs_only_its_node(mode: str, stage: str, case: str) -> None:
    grid, secure, audit = masking_round(mode)
    kind, variant = case.split(":")
    hostile(grid, stage, bytes_change(stage, variant) if kind == "bytes" else RECORD_VARIANTS[variant])
    # Execute
    finish_round(secure)
    # Assert
    report = secure.reports[0]  # an input masked before consistency-check still counts
    assert_costs_only_the_faulty_node(report, stage, stage in {CONSISTENCY_CHECK, UNMASK}, NODES)
    assert_exact_masking_sum(report, audit)


def copy_into(grid: FakeGrid, stage: str, source: str) -> None:
    """Node FAULTY's reply in ``stage`` carries the payload ``source`` names instead: another node's
    reply in this stage (``"another node"``) or its own reply of this stage one round earlier
    (``"last round"``; its honest reply in the first round)."""
    seen: dict[tuple[int, int, str], bytes] = {}
    original = grid.pull_messages

    def pull(message_ids):  # type: ignore[no-untyped-def]
        replies = list(original(message_ids))
        for reply in replies:  # first every honest payload of this pull, then the copy
            if not reply.has_error():
                group = int(instruction_of(grid, reply).metadata.group_id)
                seen[(group, reply.metadata.src_node_id, read_stage(reply.content)[0])] = payload_of(reply.content)
        return [copied(reply) for reply in replies]

    def copied(reply: Message) -> Message:
        if reply.metadata.src_node_id != FAULTY or reply.has_error() or read_stage(reply.content)[0] != stage:
            return reply
        group = int(instruction_of(grid, reply).metadata.group_id)
        key = (group, NODES[0], stage) if source == "another node" else (group - 1, FAULTY, stage)
        if key not in seen:
            return reply
        forged = Message(stage_content(stage, seen[key]), reply_to=instruction_of(grid, reply))
        forged.metadata.__dict__["_src_node_id"] = FAULTY
        return transported(forged)

    grid.pull_messages = pull  # type: ignore[method-assign]


COPY_CASES = (
    [("semi-honest", stage, source) for stage in (SHARE_KEYS, MASKED_INPUT, UNMASK)
     for source in ("another node", "last round")]
    + [("semi-honest", SETUP, "another node")]
    + [("active", stage, source) for stage in (SETUP, CONSISTENCY_CHECK) for source in ("another node", "last round")]
)


@pytest.mark.parametrize(("mode", "stage", "source"), COPY_CASES)
def test_a_masking_reply_copied_from_elsewhere_costs_only_its_node(mode: str, stage: str, source: str) -> None:
    """Node FAULTY answers with the payload another node sent in this stage (a duplicate of that
    node's message), or with its own payload of the same stage one round earlier (a replay into a
    new session): refused as that node's or another session's message."""
    grid, secure, audit = masking_round(mode)
    copy_into(grid, stage, source)
    # Execute: two rounds (the second replays the first's payload)
    finish_round(secure, rounds=2)
    # Assert
    report = secure.reports[1]
    assert_costs_only_the_faulty_node(report, stage, stage in {CONSISTENCY_CHECK, UNMASK}, NODES)
    assert_exact_masking_sum(report, audit)


def test_a_replayed_semi_honest_key_advertisement_is_the_garbage_box_limit() -> None:
    """The limit (docs/spec.md 12.9, "Limits"; tests/fuzz/test_one_client_costs_only_itself.py): a
    semi-honest AdvertiseKeys is unsigned, so node FAULTY's keys of the last round are accepted
    again; its peers then refuse every box it seals with its fresh keys, and the round, unable to
    recover its mask key, is skipped naming it (active mode signs the keys for the session: the
    replay is refused at setup, :func:`test_a_masking_reply_copied_from_elsewhere_costs_only_its_node`)."""
    grid, secure, _ = masking_round()
    copy_into(grid, SETUP, "last round")
    # Execute
    finish_round(secure, rounds=2)
    # Assert: the round is skipped, the reason names the node (protocol id 1: the smallest node id)
    report = secure.reports[1]
    assert report.aggregate is None and report.skipped_reason is not None
    assert report.node_ids[0] == FAULTY and "mask key of client 1" in report.skipped_reason, report.skipped_reason
    assert set(report.errors) <= {FAULTY}, report.errors


PAILLIER_CASES = [
    (ENCRYPT, "bytes:trailing-byte"), (ENCRYPT, "bytes:other-type"), (ENCRYPT, "bytes:all-ones-body"),
    (ENCRYPT, "bytes:huge-counts"), (ENCRYPT, "records:big-endian-u4"),
    (DECRYPT, "bytes:trailing-byte"), (DECRYPT, "bytes:one-byte-short"), (DECRYPT, "bytes:all-ones-body"),
    (DECRYPT, "bytes:other-type"), (DECRYPT, "records:extra-record"),
]


@pytest.mark.parametrize(("stage", "case"), PAILLIER_CASES)
def test_one_hostile_paillier_reply_costs_only_its_node(
    stage: str, case: str, paillier_keys: tuple[Path, list[Path]]
) -> None:
    public_path, shares = paillier_keys
    audit = Audit()
    grid = FakeGrid(paillier_apps(shares, audit))  # type: ignore[arg-type]
    secure = PaillierGrid(grid, PaillierOptions(trusted_keys=TRUSTED_KEYS, public_key=read_public_key(public_path)))
    kind, variant = case.split(":")
    hostile(grid, stage, bytes_change(stage, variant) if kind == "bytes" else RECORD_VARIANTS[variant])
    # Execute
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2)
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    # Assert
    report = secure.reports[0]
    assert_costs_only_the_faulty_node(report, stage, stage == DECRYPT, PAILLIER_NODES)
    plain = np.sum([a.encoded for n, a in audit.of_round(1).items() if n in report.included], axis=0)
    assert report.aggregate is not None and np.array_equal(report.aggregate, plain)


# --- a share off its polynomial: the holder's or the owner's fault ---------------------------


def test_a_share_off_its_polynomial_names_holder_and_owner_and_drops_neither() -> None:
    """Node FAULTY (protocol id 1, so in the first try of every secret) reveals a wrong share of
    node OWNER's self-mask seed (protocol id 2). One wrong share among t + 1 is outvoted: the round
    completes with every node, exactly. Without verifiable secret sharing the server cannot tell a
    holder's lie from a wrong share its owner dealt it (docs/spec.md 12.9), so the report names
    both nodes, each with the reason in node ids, and records neither as a dropout: the holder's
    reply was accepted and used, the owner's input is in the sum (a malicious owner must not be
    able to make an honest holder look like a dropout)."""
    grid, secure, audit = masking_round()
    owner = sorted(NODES)[1]
    assert sorted(NODES)[0] == FAULTY

    def wrong_share(content: RecordDict) -> RecordDict:
        honest = wire.decode(payload_of(content), UnmaskResponse)
        entries = tuple(
            ShareEntry(e.owner, ((int.from_bytes(e.share, "big") + 1) % shamir.PRIME).to_bytes(len(e.share), "big"))
            if e.owner == 2 else e
            for e in honest.self_mask_shares
        )
        assert entries != honest.self_mask_shares
        return stage_content(UNMASK, wire.encode(dataclasses.replace(honest, self_mask_shares=entries)))

    hostile(grid, UNMASK, wrong_share)
    # Execute
    finish_round(secure)
    # Assert
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    assert report.included == frozenset(NODES)
    assert_exact_masking_sum(report, audit)
    assert report.dropped == {}, (report.dropped, report.errors)
    assert set(report.errors) == {FAULTY, owner}, report.errors
    for reason in report.errors.values():
        assert f"node {FAULTY}" in reason and f"node {owner}" in reason, reason
        assert "self-mask seed" in reason, reason


def test_an_aborted_round_names_a_caught_share_liars_holder_and_owner_and_drops_neither() -> None:
    """As above, but the round then aborts: node FAULTY lies about the seed of protocol id 2 (caught)
    and, with protocol id 3, about the seed of protocol id 5 (two liars among t + 1). The skipped
    round's report names FAULTY and the first owner as the completed round does, no dropout."""
    grid, secure, _ = masking_round()
    nodes = sorted(NODES)
    original = grid.pull_messages

    def lie(reply: Message, owners: set[int], delta: int) -> Message:
        honest = wire.decode(payload_of(reply.content), UnmaskResponse)
        entries = tuple(
            ShareEntry(e.owner, ((int.from_bytes(e.share, "big") + delta) % shamir.PRIME).to_bytes(len(e.share), "big"))
            if e.owner in owners else e
            for e in honest.self_mask_shares
        )
        forged = Message(stage_content(UNMASK, wire.encode(dataclasses.replace(honest, self_mask_shares=entries))),
                         reply_to=instruction_of(grid, reply))
        forged.metadata.__dict__["_src_node_id"] = reply.metadata.src_node_id
        return transported(forged)

    def pull(message_ids):  # type: ignore[no-untyped-def]
        # Off by 1 and by 2: two lies off by the same amount can cancel in a basis (Lagrange weights 2, -2).
        lies = {nodes[0]: ({2, 5}, 1), nodes[2]: ({5}, 2)}
        return [lie(r, *lies[r.metadata.src_node_id])
                if r.metadata.src_node_id in lies and not r.has_error() and read_stage(r.content)[0] == UNMASK else r
                for r in original(message_ids)]

    grid.pull_messages = pull  # type: ignore[method-assign]
    # Execute
    finish_round(secure)
    # Assert
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None, (report.errors, report.dropped)
    assert report.dropped == {}, (report.dropped, report.errors)
    assert "rejected by the protocol" not in report.skipped_reason, report.skipped_reason  # nobody is
    assert set(report.errors) == {FAULTY, nodes[1]}, report.errors
    assert all(f"node {FAULTY}" in reason and f"node {nodes[1]}" in reason for reason in report.errors.values())



def test_naming_a_dropped_owner_keeps_the_reason_it_dropped() -> None:
    """The owner named for a share off its polynomial may have dropped earlier with a reason of its
    own (here: an error reply at masked-input). Naming it must add to that reason, not replace it:
    the report keeps why the node dropped (its input does not count) and why it is named."""
    grid, secure, audit = masking_round()
    owner = sorted(NODES)[1]  # protocol id 2; FAULTY is protocol id 1, in every secret's first try

    def change(reply: Message) -> list[Message]:
        if replied(reply, owner, MASKED_INPUT):
            return [error_from(grid, reply, "the owner's own reason")]
        if not replied(reply, FAULTY, UNMASK):
            return [reply]
        honest = wire.decode(payload_of(reply.content), UnmaskResponse)
        entries = tuple(
            ShareEntry(e.owner, ((int.from_bytes(e.share, "big") + 1) % shamir.PRIME).to_bytes(33, "big"))
            if e.owner == 2 else e
            for e in honest.mask_key_shares
        )
        assert entries != honest.mask_key_shares
        lie = wire.encode(dataclasses.replace(honest, mask_key_shares=entries))
        forged = Message(stage_content(UNMASK, lie), reply_to=instruction_of(grid, reply))
        forged.metadata.__dict__["_src_node_id"] = FAULTY
        return [transported(forged)]

    change_pulls(grid, change)
    # Execute
    finish_round(secure)
    # Assert
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    assert report.dropped == {owner: MASKED_INPUT}, (report.dropped, report.errors)
    assert report.included == frozenset(NODES) - {owner}
    assert_exact_masking_sum(report, audit)
    assert set(report.errors) == {FAULTY, owner}, report.errors
    assert "the owner's own reason" in report.errors[owner], report.errors
    assert "mask key" in report.errors[owner] and f"node {FAULTY}" in report.errors[owner], report.errors

# --- a share box of another size than a sealed bundle's -----------------------------------------


@pytest.mark.parametrize("size", ["all in one box", "one byte long, one short"])
def test_a_share_box_larger_than_a_sealed_bundle_costs_only_its_sender(size: str) -> None:
    """Every sealed box holds one ShareBundle of fixed size, so an honest box has one size. Node
    FAULTY's share-keys reply, within its stage's limit, has a larger box ("all in one box": one
    box as large as its limit allows, the others empty). The server relays each box to its
    recipient inside that node's ShareDelivery, which a node checks against the stage's limit: a
    box larger than a sealed bundle must not make an honest recipient's delivery oversize (it
    would drop that node, and here abort the round). The sender alone is left out, at
    share-keys, with the reason."""
    grid, secure, audit = masking_round()

    def resized(content: RecordDict) -> RecordDict:
        honest = wire.decode(payload_of(content), EncryptedShares)
        sealed = len(honest.boxes[0].sealed)
        if size == "all in one box":
            room = sum(len(box.sealed) for box in honest.boxes)
            sizes = [room] + [0] * (len(honest.boxes) - 1)
        else:  # the reply's size unchanged
            sizes = [sealed + 1, sealed - 1] + [sealed] * (len(honest.boxes) - 2)
        boxes = tuple(SealedBox(box.peer, (box.sealed * 9)[:n]) for box, n in zip(honest.boxes, sizes, strict=True))
        return stage_content(SHARE_KEYS, wire.encode(dataclasses.replace(honest, boxes=boxes)))

    hostile(grid, SHARE_KEYS, resized)
    # Execute
    finish_round(secure)
    # Assert
    report = secure.reports[0]
    assert_costs_only_the_faulty_node(report, SHARE_KEYS, False, NODES)
    assert "box" in report.errors[FAULTY], report.errors
    assert report.share_refusals == {}, report.share_refusals
    assert_exact_masking_sum(report, audit)


def test_a_share_box_smaller_than_a_sealed_bundle_is_refused_by_its_recipient_alone() -> None:
    """A smaller box cannot make a delivery oversize: it is relayed, and its recipient refuses it as
    any box that does not open (spec 12.8, the vectors' garbage boxes of zero bytes): a refusal
    claim, and the round completes with every node (FAULTY's seed from its other holders)."""
    grid, secure, audit = masking_round()

    def shorter(content: RecordDict) -> RecordDict:
        honest = wire.decode(payload_of(content), EncryptedShares)
        first = honest.boxes[0]
        boxes = (SealedBox(first.peer, first.sealed[:-1]), *honest.boxes[1:])
        return stage_content(SHARE_KEYS, wire.encode(dataclasses.replace(honest, boxes=boxes)))

    hostile(grid, SHARE_KEYS, shorter)
    # Execute
    finish_round(secure)
    # Assert
    report = secure.reports[0]
    assert report.skipped_reason is None, report.skipped_reason
    assert report.included == frozenset(NODES) and report.dropped == {}, (report.dropped, report.errors)
    assert list(report.share_refusals) == [(sorted(NODES)[1], FAULTY)], report.share_refusals
    assert_exact_masking_sum(report, audit)


@pytest.mark.parametrize("variant", ["huge-declared-shape", "npy-2.0", "npy-3.0-huge", "oversize"])
def test_a_huge_declared_reply_is_refused_before_anything_of_its_size_is_allocated(variant: str) -> None:
    """Sizes a reply declares (a .npy shape of 2^40 bytes, a header length of 2^31) or carries past
    the stage's limit are checked before loading: refusing it allocates little beyond the bytes
    the transport already delivered (measured with tracemalloc, not timed)."""
    honest = stage_content(UNMASK, wire.MAGIC + bytes(64))
    request = Message(RecordDict(), dst_node_id=FAULTY, message_type="train")
    reply = transported(Message(RECORD_VARIANTS[variant](honest), reply_to=request))
    delivered = len(reply.content[PAYLOAD_RECORD]["payload"].data)
    tracemalloc.start()
    try:
        with pytest.raises(SecAggError):
            _payload(UNMASK, [reply], 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < delivered + (1 << 16), (peak, delivered)
