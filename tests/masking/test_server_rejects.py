"""The server facing bad client messages.

A malformed, mis-sent, foreign-session, replayed or inconsistent client message
costs only its sender: the server records it in ``state.rejected``, treats the
sender as dropped, and the round still completes with the exact sum of the
honest clients' inputs when enough of them remain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from secagg import wire
from secagg.errors import SecAggError
from secagg.masking import ACTIVE, MaskingConfig
from secagg.masking.messages import (
    AdvertiseKeys,
    ConsistencySignature,
    EncryptedShares,
    MaskedInput,
    SealedBox,
    ShareEntry,
    UnmaskResponse,
)
from secagg.masking.server import ServerPhase
from secagg.masking.session import advertise_payload, consistency_payload
from secagg.ring import PackedVector

from .harness import StepRun, active_setup, advance_to, assert_exact, edit, flip_bit

SEMI = MaskingConfig(num_clients=6, threshold=3, vector_length=5, mode="semi-honest")
ACTIVE_CONFIG, IDENTITIES = active_setup(6, 4, vector_length=5)
BAD = 2  # the client whose message goes wrong
Corruption = Callable[[StepRun, bytes], bytes]


def dropped_at(phase: ServerPhase) -> StepRun:
    """A semi-honest run in which client BAD sends nothing for server ``phase`` (the others go on)."""
    run = StepRun(SEMI, seed=3)
    advance_to(run, phase)
    uploads = dict(run.uploads)
    del uploads[BAD]
    run.to_server(uploads)
    run.to_clients()
    return run


def other_session(run: StepRun, data: bytes) -> bytes:
    message = wire.decode_any(data)
    return wire.encode(dataclasses.replace(message, session_id=flip_bit(message.session_id, 7)))  # type: ignore[attr-defined]


def someone_elses(run: StepRun, data: bytes) -> bytes:
    return run.uploads[3]  # client 3's genuine message, arriving on client 2's channel


def previous_message(run: StepRun, data: bytes) -> bytes:
    return run.sent[BAD][-2]  # the client's own message of the previous round, replayed


def missing_box(run: StepRun, data: bytes) -> bytes:
    message = wire.decode(data, EncryptedShares)
    return wire.encode(dataclasses.replace(message, boxes=message.boxes[1:]))


def box_to_itself(run: StepRun, data: bytes) -> bytes:
    message = wire.decode(data, EncryptedShares)
    boxes = sorted((*message.boxes, SealedBox(BAD, message.boxes[0].sealed)), key=lambda b: b.peer)
    return wire.encode(dataclasses.replace(message, boxes=tuple(boxes)))


def short_vector(run: StepRun, data: bytes) -> bytes:
    vector = wire.decode(data, MaskedInput).vector
    return edit(data, MaskedInput, vector=PackedVector(vector.bits, vector.values[:-1]))


def wrong_ring(run: StepRun, data: bytes) -> bytes:
    values = wire.decode(data, MaskedInput).vector.values
    return edit(data, MaskedInput, vector=PackedVector(64, values.astype(np.uint64)))


def wrong_share_type(run: StepRun, data: bytes) -> bytes:
    # Present a survivor's self-mask share as a mask-key share.
    message = wire.decode(data, UnmaskResponse)
    moved = message.self_mask_shares[0]
    return wire.encode(
        dataclasses.replace(
            message,
            self_mask_shares=message.self_mask_shares[1:],
            mask_key_shares=tuple(sorted((*message.mask_key_shares, moved), key=lambda e: e.owner)),
        )
    )


def own_share(run: StepRun, data: bytes) -> bytes:
    # A share of the responder's own mask key, which no client holds (its own seed share,
    # which it does hold on the complete graph, is taken out of the self-mask list).
    message = wire.decode(data, UnmaskResponse)
    seeds = tuple(e for e in message.self_mask_shares if e.owner != BAD)
    keys = sorted((*message.mask_key_shares, ShareEntry(BAD, bytes(33))), key=lambda e: e.owner)
    return wire.encode(dataclasses.replace(message, self_mask_shares=seeds, mask_key_shares=tuple(keys)))


def share_out_of_field(run: StepRun, data: bytes) -> bytes:
    message = wire.decode(data, UnmaskResponse)
    entries = (ShareEntry(message.self_mask_shares[0].owner, b"\xff" * 33), *message.self_mask_shares[1:])
    return wire.encode(dataclasses.replace(message, self_mask_shares=entries))


def forged_advertise_signature(run: StepRun, data: bytes) -> bytes:
    return edit(data, AdvertiseKeys, signature=flip_bit(wire.decode(data, AdvertiseKeys).signature, 1))


def forged_consistency_signature(run: StepRun, data: bytes) -> bytes:
    message = wire.decode(data, ConsistencySignature)
    return edit(data, ConsistencySignature, signature=flip_bit(message.signature, 9))


def signs_another_survivor_set(run: StepRun, data: bytes) -> bytes:
    payload = consistency_payload(run.session(), (1, 2, 3, 4))
    return edit(data, ConsistencySignature, signature=run.identities[BAD].sign(payload))


def advertise_signed_by_another_identity(run: StepRun, data: bytes) -> bytes:
    message = wire.decode(data, AdvertiseKeys)
    payload = advertise_payload(run.config.digest(), run.server.context, BAD, message.encryption_key, message.mask_key)
    return edit(data, AdvertiseKeys, signature=run.identities[3].sign(payload))


def advertise_signed_for_another_session(run: StepRun, data: bytes) -> bytes:
    # The sender's own, valid signature, but over another round context (another session id).
    message = wire.decode(data, AdvertiseKeys)
    payload = advertise_payload(run.config.digest(), b"X" * 32, BAD, message.encryption_key, message.mask_key)
    return edit(data, AdvertiseKeys, signature=run.identities[BAD].sign(payload))


def consistency_signed_for_another_session(run: StepRun, data: bytes) -> bytes:
    # The sender's own, valid signature of this survivor list, but under another session id.
    payload = consistency_payload(flip_bit(run.session(), 0), run.server.survivors)
    return edit(data, ConsistencySignature, signature=run.identities[BAD].sign(payload))


def consistency_signed_by_another_identity(run: StepRun, data: bytes) -> bytes:
    payload = consistency_payload(run.session(), run.server.survivors)
    return edit(data, ConsistencySignature, signature=run.identities[3].sign(payload))


def truncated(run: StepRun, data: bytes) -> bytes:
    return data[:-3]


def wrong_type(run: StepRun, data: bytes) -> bytes:
    return flip_bit(data, 4)  # the low byte of the message tag


SEMI_CASES: list[tuple[ServerPhase, Corruption]] = [
    (ServerPhase.COLLECT_KEYS, truncated),
    (ServerPhase.COLLECT_KEYS, wrong_type),
    (ServerPhase.COLLECT_KEYS, someone_elses),
    (ServerPhase.COLLECT_SHARES, truncated),
    (ServerPhase.COLLECT_SHARES, someone_elses),
    (ServerPhase.COLLECT_SHARES, other_session),
    (ServerPhase.COLLECT_SHARES, previous_message),
    (ServerPhase.COLLECT_SHARES, missing_box),
    (ServerPhase.COLLECT_SHARES, box_to_itself),
    (ServerPhase.COLLECT_MASKED, truncated),
    (ServerPhase.COLLECT_MASKED, someone_elses),
    (ServerPhase.COLLECT_MASKED, other_session),
    (ServerPhase.COLLECT_MASKED, previous_message),
    (ServerPhase.COLLECT_MASKED, short_vector),
    (ServerPhase.COLLECT_MASKED, wrong_ring),
    (ServerPhase.COLLECT_UNMASK, truncated),
    (ServerPhase.COLLECT_UNMASK, someone_elses),
    (ServerPhase.COLLECT_UNMASK, other_session),
    (ServerPhase.COLLECT_UNMASK, previous_message),
    (ServerPhase.COLLECT_UNMASK, wrong_share_type),
    (ServerPhase.COLLECT_UNMASK, own_share),
    (ServerPhase.COLLECT_UNMASK, share_out_of_field),
]
ACTIVE_CASES: list[tuple[ServerPhase, Corruption]] = [
    (ServerPhase.COLLECT_KEYS, forged_advertise_signature),
    (ServerPhase.COLLECT_KEYS, advertise_signed_by_another_identity),
    (ServerPhase.COLLECT_KEYS, advertise_signed_for_another_session),
    (ServerPhase.COLLECT_CONSISTENCY, consistency_signed_for_another_session),
    (ServerPhase.COLLECT_CONSISTENCY, consistency_signed_by_another_identity),
    (ServerPhase.COLLECT_KEYS, someone_elses),
    (ServerPhase.COLLECT_CONSISTENCY, forged_consistency_signature),
    (ServerPhase.COLLECT_CONSISTENCY, signs_another_survivor_set),
    (ServerPhase.COLLECT_CONSISTENCY, other_session),
    (ServerPhase.COLLECT_CONSISTENCY, someone_elses),
    (ServerPhase.COLLECT_UNMASK, wrong_share_type),
]


def case_id(case: tuple[ServerPhase, Corruption]) -> str:
    return f"{case[0].name}-{case[1].__name__}"


def check_rejected_and_exact(run: StepRun, phase: ServerPhase, corrupt: Corruption) -> None:
    # Prepare
    advance_to(run, phase)
    uploads = dict(run.uploads)
    uploads[BAD] = corrupt(run, uploads[BAD])
    # Execute
    run.to_server(uploads)
    result = run.finish()
    # Assert: rejected (not crashed), and the others' sum is exact.
    assert [client for client, _ in run.server.rejected] == [BAD]
    expected = set(range(1, run.config.num_clients + 1))
    if phase < ServerPhase.COLLECT_CONSISTENCY:
        expected.discard(BAD)  # its masked input never counted
    assert result.included == expected
    assert_exact(run.config, result.aggregate, run.inputs, expected)


@pytest.mark.parametrize("case", SEMI_CASES, ids=case_id)
def test_semi_honest_server_rejects_bad_message(case: tuple[ServerPhase, Corruption]) -> None:
    check_rejected_and_exact(StepRun(SEMI, seed=3), *case)


@pytest.mark.parametrize("case", ACTIVE_CASES, ids=case_id)
def test_active_server_rejects_bad_message(case: tuple[ServerPhase, Corruption]) -> None:
    check_rejected_and_exact(StepRun(ACTIVE_CONFIG, identities=IDENTITIES, seed=3), *case)


@pytest.mark.parametrize("phase", [ServerPhase.COLLECT_KEYS, ServerPhase.COLLECT_SHARES, ServerPhase.COLLECT_UNMASK])
def test_message_from_a_client_not_in_the_round(phase: ServerPhase) -> None:
    # Prepare: an id outside the roster (or, later, outside the round) speaks up.
    run = StepRun(SEMI, seed=3)
    advance_to(run, phase)
    uploads = {**run.uploads, 99: run.uploads[1]}
    # Execute
    run.to_server(uploads)
    result = run.finish()
    # Assert
    assert [client for client, _ in run.server.rejected] == [99]
    assert_exact(SEMI, result.aggregate, run.inputs, range(1, 7))


def test_dropped_client_speaking_again_is_rejected() -> None:
    # Prepare: client 2 drops at MaskedInput, then sends an UnmaskResponse anyway.
    run = dropped_at(ServerPhase.COLLECT_MASKED)
    uploads = {**run.uploads, BAD: run.uploads[1]}
    # Execute
    run.to_server(uploads)
    # Assert
    assert run.server.result is not None
    assert [client for client, _ in run.server.rejected] == [BAD]
    assert_exact(SEMI, run.server.result.aggregate, run.inputs, {1, 3, 4, 5, 6})


def test_finished_server_refuses_more_messages() -> None:
    run = StepRun(SEMI, seed=3)
    run.finish()
    with pytest.raises(SecAggError):
        run.to_server({1: run.sent[1][-1]})


# --- Weak keys and lying responders --------------------------------------------------------

SMALL_ORDER_KEY = b"\x01" + bytes(31)  # u = 1, a point of order 4 (u = 0 behaves the same)


@pytest.mark.parametrize("mode", ["semi-honest", ACTIVE])
@pytest.mark.parametrize("field", ["encryption_key", "mask_key"])
def test_small_order_public_key_costs_only_its_sender(mode: str, field: str) -> None:
    """A malicious client advertises a small-order X25519 key (every exchange with
    it gives the all-zero secret) and otherwise follows the protocol. The server
    must reject it as a dropout; instead every honest client aborts with
    ProtocolError when it meets the key (ShareKeys for an encryption key,
    MaskedInput for a mask key), so one client kills the session.

    In active mode the malicious client signs its own bad key, so the signature
    check does not help: the server must validate the key itself.
    """
    # Prepare: client 2 advertises the bad key and keeps it in its own state.
    config, identities = (ACTIVE_CONFIG, IDENTITIES) if mode == ACTIVE else (SEMI, {})
    run = StepRun(config, identities=identities, seed=8)
    message = dataclasses.replace(wire.decode(run.uploads[BAD], AdvertiseKeys), **{field: SMALL_ORDER_KEY})
    if mode == ACTIVE:
        payload = advertise_payload(config.digest(), bytes(32), BAD, message.encryption_key, message.mask_key)
        message = dataclasses.replace(message, signature=identities[BAD].sign(payload))
    run.uploads[BAD] = wire.encode(message)
    public = "encryption_public" if field == "encryption_key" else "mask_public"
    run.states[BAD] = dataclasses.replace(run.states[BAD], **{public: SMALL_ORDER_KEY})
    # Execute
    run.to_server()
    # Assert: rejected at once, and the honest clients complete.
    assert [client for client, _ in run.server.rejected] == [BAD]
    result = run.finish()
    assert_exact(config, result.aggregate, run.inputs, {1, 3, 4, 5, 6})


def corrupted_share_run(share: str) -> tuple[StepRun, dict[int, bytes]]:
    """n = 6, t = 3; client 6 drops at MaskedInput; responder 1 (the lowest index,
    so its share is among the first t the server uses) lies about one share."""
    run = StepRun(SEMI, seed=3)
    advance_to(run, ServerPhase.COLLECT_MASKED)
    masked = {c: m for c, m in run.uploads.items() if c != 6}
    run.to_server(masked)
    run.to_clients()
    uploads = dict(run.uploads)
    response = wire.decode(uploads[1], UnmaskResponse)
    if share == "mask key":
        (entry,) = response.mask_key_shares  # of client 6
        lie = dataclasses.replace(response, mask_key_shares=(ShareEntry(6, flip_bit(entry.share, 32)),))
    else:
        first, *others = response.self_mask_shares  # first: of client 2
        lie = dataclasses.replace(
            response, self_mask_shares=(ShareEntry(first.owner, flip_bit(first.share, 32)), *others)
        )
    uploads[1] = wire.encode(lie)
    return run, uploads


def test_corrupted_mask_key_share_costs_only_the_liar() -> None:
    """The server detects the lie (the recovered key does not match client 6's
    public key) and has four other responders holding shares of it: it must set
    the liar's response aside rather than abort the whole session."""
    # Prepare
    run, uploads = corrupted_share_run("mask key")
    # Execute
    run.to_server(uploads)
    # Assert
    assert run.server.result is not None
    assert [client for client, _ in run.server.rejected] == [1]
    assert_exact(SEMI, run.server.result.aggregate, run.inputs, {1, 2, 3, 4, 5})


def test_corrupted_self_mask_share_never_yields_a_wrong_aggregate() -> None:
    """Client 2's self-mask seed has four shares (clients 1, 3, 4, 5) for t = 3:
    the redundant share exposes the lie. The server may abort or set the liar
    aside, but must not publish a wrong aggregate as if it were exact."""
    # Prepare
    run, uploads = corrupted_share_run("self mask")
    # Execute
    try:
        run.to_server(uploads)
    except SecAggError:
        return
    # Assert
    assert run.server.result is not None
    assert_exact(SEMI, run.server.result.aggregate, run.inputs, run.server.result.included)


def test_server_accepts_a_response_that_leaves_out_a_refused_peer() -> None:
    """A holder that refused a peer's box in round 2 reveals nothing for it (spec 12.8,
    round 4): the server accepts the shorter response and rejects nobody; the peer's
    secret comes from its other holders (n = 5, t = 3: four holders)."""
    run = StepRun(MaskingConfig(num_clients=5, threshold=3, vector_length=4, mode="semi-honest"), seed=3)
    advance_to(run, ServerPhase.COLLECT_UNMASK)
    message = wire.decode(run.uploads[1], UnmaskResponse)
    shorter = dataclasses.replace(message, self_mask_shares=message.self_mask_shares[1:])
    uploads = {**run.uploads, 1: wire.encode(shorter)}
    run.to_server(uploads)
    assert run.server.result is not None and run.server.result.included == frozenset(run.inputs)
    assert run.server.rejected == ()


def test_masked_input_from_a_client_that_never_shared_its_keys_is_rejected() -> None:
    """A client that dropped in ShareKeys (nobody holds its shares) later sends a
    well-formed MaskedInput of its own, with its own id and the session's id. It is
    not in the round: only the sender pays (rejected), the others' sum stays exact.
    Counted, its self-mask could never be removed and it would void the session."""
    # Prepare: client 2 withholds its EncryptedShares.
    run = dropped_at(ServerPhase.COLLECT_SHARES)
    assert BAD not in run.uploads
    zeros = np.zeros(SEMI.vector_length, SEMI.ring.dtype)
    forged = MaskedInput(BAD, run.session(), PackedVector(SEMI.ring_bits, zeros))
    # Execute
    run.to_server({**run.uploads, BAD: wire.encode(forged)})
    result = run.finish()
    # Assert
    assert [(client, reason) for client, reason in run.server.rejected if client == BAD] == [
        (BAD, f"MaskedInput: client {BAD} is not expected in this round")
    ]
    assert result.included == frozenset({1, 3, 4, 5, 6})
    assert_exact(SEMI, result.aggregate, run.inputs, {1, 3, 4, 5, 6})
