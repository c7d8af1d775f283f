"""A lying server or a network attacker against one honest client.

Each test drives honest parties to some point with StepRun, then hands one
client a forged, replayed, re-addressed or inconsistent message, and asserts
the specific error class and that nothing forbidden left the client: never an
UnmaskResponse it should not send, and never both shares of one peer over the
whole session.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from secagg import wire
from secagg.errors import (
    AuthenticationError,
    ProtocolError,
    ReplayError,
    SecAggError,
    ThresholdError,
    UnsafeRequestError,
)
from secagg.masking import HARARY, ClientPhase, MaskingConfig, Round
from secagg.masking.messages import (
    AdvertiseKeys,
    ConsistencySignature,
    KeyRoster,
    MaskedInput,
    RosterEntry,
    SealedBox,
    ShareBundle,
    ShareDelivery,
    SignedBy,
    SurvivorList,
    UnmaskRequest,
)
from secagg.masking.session import (
    PAIR_MASK_LABEL,
    SELF_MASK_LABEL,
    harary_order,
    pair_mask_seeds,
    pair_mask_subtracts,
    share_encryption_keys,
)
from secagg.primitives import aead, prg, shamir
from secagg.primitives.randomness import InsecureDeterministicRandom

from .harness import StepRun, active_setup, assert_exact, edit, flip_bit, revealed, unmask_responses

SEMI = MaskingConfig(num_clients=5, threshold=3, vector_length=4, mode="semi-honest")


def semi_run(phase: ClientPhase, seed: int = 1) -> StepRun:
    run = StepRun(SEMI, seed=seed)
    run.run_until(phase)
    return run


def active_run(phase: ClientPhase, num_clients: int = 5, threshold: int = 3, seed: int = 2) -> StepRun:
    config, identities = active_setup(num_clients, threshold)
    run = StepRun(config, identities=identities, seed=seed)
    run.run_until(phase)
    return run


def refuse(run: StepRun, client: int, data: bytes, error: type[SecAggError]) -> SecAggError:
    """Assert that ``client`` refuses ``data`` with exactly ``error`` and sends nothing."""
    state, sent = run.states[client], len(run.sent[client])
    with pytest.raises(SecAggError) as caught:
        run.step(client, data)
    assert type(caught.value) is error, f"expected {error.__name__}, got {caught.type.__name__}: {caught.value}"
    assert run.states[client] is state
    assert len(run.sent[client]) == sent
    return caught.value


def refuses_peers(run: StepRun, client: int, data: bytes, peers: set[int]) -> None:
    """Assert that ``client`` refuses the boxes of ``peers`` alone (spec 12.8, round 2):
    it keeps no share of them, records them, still sends its masked input, reveals
    nothing for them at Unmasking, and the session completes with everybody, exactly."""
    run.pending.pop(client)
    run.uploads[client] = run.step(client, data)
    state = run.states[client]
    assert state.phase > ClientPhase.AWAIT_SHARES
    assert state.refused == tuple(sorted(peers))
    assert not peers & {held.owner for held in state.held}
    result = run.finish()
    assert result.included == frozenset(run.inputs)
    assert_exact(run.config, result.aggregate, run.inputs, result.included)
    (response,) = unmask_responses(run.sent[client][-1:])
    assert not peers & {e.owner for e in (*response.self_mask_shares, *response.mask_key_shares)}
    assert_never_both_shares(run)


def assert_never_both_shares(run: StepRun) -> None:
    """Over every message each client produced, no peer has both shares revealed."""
    for client, messages in run.sent.items():
        self_owners, key_owners = revealed(messages)
        assert not self_owners & key_owners, f"client {client} revealed both shares of {self_owners & key_owners}"


# --- The server asks for both shares of one peer ------------------------------------


@pytest.mark.parametrize("first_omits_peer", [False, True])
def test_second_unmask_request_with_another_survivor_set_is_a_replay(first_omits_peer: bool) -> None:
    # Prepare: the honest request says everyone survived; the lie says client 2 dropped.
    run = semi_run(ClientPhase.AWAIT_UNMASK)
    honest = run.pending[1]
    lie = edit(honest, UnmaskRequest, survivors=(1, 3, 4, 5))
    first, second = (lie, honest) if first_omits_peer else (honest, lie)
    run.step(1, first)
    # Execute / Assert
    refuse(run, 1, second, ReplayError)
    refuse(run, 1, first, ReplayError)  # not even the same request twice
    assert len(unmask_responses(run.sent[1])) == 1
    self_owners, key_owners = revealed(run.sent[1])
    assert (2 in key_owners) == first_omits_peer and (2 in self_owners) != first_omits_peer
    assert_never_both_shares(run)


def test_done_client_holds_no_secret_any_more() -> None:
    # Prepare
    run = semi_run(ClientPhase.AWAIT_UNMASK)
    # Execute
    run.step(1, run.pending[1])
    # Assert: even a transport that mishandles the final state cannot reveal more.
    state = run.states[1]
    assert state.phase == ClientPhase.DONE
    assert state.held == () and state.self_mask_seed == b"" and state.mask_private == bytes(32)


def test_split_view_unmask_request_differs_from_the_signed_survivor_set() -> None:
    """Active mode, n = 7, t = 4: the server shows client 1 the true survivor set
    S1 = 1..7 but shows clients 2..6 S2 = 1..6 (client 7 "dropped"), collects their
    five valid signatures over S2 and asks client 1 to unmask S2, which would make
    it reveal client 7's mask-key share after client 7's input was masked."""
    # Prepare
    run = active_run(ClientPhase.AWAIT_SURVIVORS, num_clients=7, threshold=4)
    run.step(1, run.pending[1])  # client 1 signs S1
    s2 = (1, 2, 3, 4, 5, 6)
    signatures = []
    for client in range(2, 7):
        reply = run.step(client, edit(run.pending[client], SurvivorList, survivors=s2))
        signatures.append(SignedBy(client, wire.decode(reply, ConsistencySignature).signature))
    forged = wire.encode(UnmaskRequest(1, run.session(), s2, tuple(signatures)))
    control = wire.encode(UnmaskRequest(2, run.session(), s2, tuple(signatures)))
    # Execute / Assert: the signatures are genuine (client 2, which signed S2, accepts them) ...
    run.step(2, control)
    # ... but client 1 signed S1 and refuses.
    refuse(run, 1, forged, UnsafeRequestError)
    assert unmask_responses(run.sent[1]) == []
    assert_never_both_shares(run)


def test_unmask_request_before_the_consistency_round_is_refused() -> None:
    # Prepare: active mode; the server skips ConsistencyCheck.
    run = active_run(ClientPhase.AWAIT_SURVIVORS)
    request = wire.encode(UnmaskRequest(1, run.session(), (1, 2, 3, 4, 5), ()))
    # Execute / Assert
    refuse(run, 1, request, ProtocolError)


# --- Survivor lists --------------------------------------------------------------------


def test_fewer_than_t_survivors_announced_semi_honest() -> None:
    run = semi_run(ClientPhase.AWAIT_UNMASK)
    refuse(run, 1, edit(run.pending[1], UnmaskRequest, survivors=(1, 2)), ThresholdError)
    assert unmask_responses(run.sent[1]) == []


def test_fewer_than_t_survivors_announced_active() -> None:
    run = active_run(ClientPhase.AWAIT_SURVIVORS)
    refuse(run, 1, edit(run.pending[1], SurvivorList, survivors=(1, 2)), ThresholdError)


@pytest.mark.parametrize("survivors", [(2, 3, 4, 5), (0, 2, 3, 4), (2, 3, 4, 5, 6)])
def test_survivor_list_omitting_the_client_semi_honest(survivors: tuple[int, ...]) -> None:
    run = semi_run(ClientPhase.AWAIT_UNMASK)
    refuse(run, 1, edit(run.pending[1], UnmaskRequest, survivors=survivors), ProtocolError)


def test_survivor_list_omitting_the_client_active() -> None:
    run = active_run(ClientPhase.AWAIT_SURVIVORS)
    refuse(run, 1, edit(run.pending[1], SurvivorList, survivors=(2, 3, 4, 5)), ProtocolError)


def test_survivor_outside_the_roster_is_refused() -> None:
    run = semi_run(ClientPhase.AWAIT_UNMASK)
    refuse(run, 1, edit(run.pending[1], UnmaskRequest, survivors=(1, 2, 3, 4, 9)), ProtocolError)


def test_semi_honest_request_carrying_signatures_is_refused() -> None:
    run = semi_run(ClientPhase.AWAIT_UNMASK)
    bogus = (SignedBy(2, bytes(64)),)
    refuse(run, 1, edit(run.pending[1], UnmaskRequest, signatures=bogus), ProtocolError)


# --- Active mode: signatures ---------------------------------------------------------


def roster_with(run: StepRun, client: int, peer: int, **changes: object) -> bytes:
    """``client``'s roster with ``peer``'s entry altered."""
    roster = wire.decode(run.pending[client], KeyRoster)
    entries = tuple(dataclasses.replace(e, **changes) if e.client == peer else e for e in roster.entries)
    return wire.encode(dataclasses.replace(roster, entries=entries))


@pytest.mark.parametrize("forgery", ["random", "missing", "substituted key", "other signature", "bit flip"])
def test_forged_roster_signature(forgery: str) -> None:
    # Prepare
    run = active_run(ClientPhase.AWAIT_ROSTER)
    roster = wire.decode(run.pending[1], KeyRoster)
    entry2, entry3 = roster.entries[0], roster.entries[1]  # client 1's roster: its neighbours 2..5
    changes: dict[str, object] = {
        "random": {"signature": InsecureDeterministicRandom(5)(64)},
        "missing": {"signature": b""},
        "substituted key": {"mask_key": entry3.mask_key},  # a man in the middle keeps the old signature
        "other signature": {"signature": entry3.signature},
        "bit flip": {"signature": flip_bit(entry2.signature, 10)},
    }[forgery]
    # Execute
    error = refuse(run, 1, roster_with(run, 1, 2, **changes), AuthenticationError)
    # Assert: says who and what
    assert "client 1" in str(error) and "client 2" in str(error) and "AdvertiseKeys" in str(error)


def test_roster_signed_for_another_round_context() -> None:
    # Prepare: clients 2..5 (and the server) use context B; client 1 was started with context A.
    config, identities = active_setup(5, 3)
    context_a, context_b = b"A" * 32, b"B" * 32
    run = StepRun(config, identities=identities, context=context_b, client_contexts={1: context_a})
    # The server's roster would drop client 1 (its signature fails under context B);
    # build the roster client 1 would need, from every genuine AdvertiseKeys.
    advertised = [wire.decode(run.uploads[c], AdvertiseKeys) for c in sorted(run.uploads) if c != 1]
    entries = tuple(RosterEntry(a.sender, a.encryption_key, a.mask_key, a.signature) for a in advertised)
    roster = wire.encode(KeyRoster(1, entries))
    # Execute
    error = refuse(run, 1, roster, AuthenticationError)
    # Assert
    assert "context" in str(error)


def consistency_request(run: StepRun, signers: range) -> UnmaskRequest:
    """Let ``signers`` sign the honest survivor list; return client 1's honest UnmaskRequest."""
    survivors_message = wire.decode(run.pending[1], SurvivorList)
    signatures = []
    for client in signers:
        reply = run.step(client, run.pending[client])
        signatures.append(SignedBy(client, wire.decode(reply, ConsistencySignature).signature))
    return UnmaskRequest(1, run.session(), survivors_message.survivors, tuple(signatures))


def test_consistency_signatures_fewer_than_t() -> None:
    # Prepare
    run = active_run(ClientPhase.AWAIT_SURVIVORS)
    request = consistency_request(run, range(1, 6))
    short = dataclasses.replace(request, signatures=request.signatures[:2])
    # Execute / Assert
    refuse(run, 1, wire.encode(short), ThresholdError)
    run.step(1, wire.encode(request))  # control: the full request is accepted


@pytest.mark.parametrize("index", [0, 2, 4])
def test_forged_consistency_signature(index: int) -> None:
    # Prepare
    run = active_run(ClientPhase.AWAIT_SURVIVORS)
    request = consistency_request(run, range(1, 6))
    signatures = list(request.signatures)
    signatures[index] = SignedBy(signatures[index].client, flip_bit(signatures[index].signature, 3))
    # Execute
    error = refuse(run, 1, wire.encode(dataclasses.replace(request, signatures=tuple(signatures))), AuthenticationError)
    # Assert
    assert f"client {signatures[index].client}" in str(error)


def test_consistency_signatures_over_another_survivor_set() -> None:
    # Prepare: genuine signatures of clients 2..5, but over the set 2..5.
    run = active_run(ClientPhase.AWAIT_SURVIVORS)
    run.step(1, run.pending[1])
    other = (2, 3, 4, 5)
    signatures = []
    for client in other:
        reply = run.step(client, edit(run.pending[client], SurvivorList, survivors=other))
        signatures.append(SignedBy(client, wire.decode(reply, ConsistencySignature).signature))
    request = UnmaskRequest(1, run.session(), (1, 2, 3, 4, 5), tuple(signatures))
    # Execute / Assert
    refuse(run, 1, wire.encode(request), AuthenticationError)


def test_consistency_signature_from_a_non_survivor() -> None:
    # Prepare: survivors 1..4 (client 5 dropped); client 5's signature is added anyway.
    run = active_run(ClientPhase.AWAIT_SURVIVORS)
    survivors = (1, 2, 3, 4)
    signatures = []
    for client in (1, 2, 3, 5):
        listed = survivors if client != 5 else (1, 2, 3, 4, 5)
        reply = run.step(client, edit(run.pending[client], SurvivorList, survivors=listed))
        signatures.append(SignedBy(client, wire.decode(reply, ConsistencySignature).signature))
    request = UnmaskRequest(1, run.session(), survivors, tuple(signatures))
    # Execute / Assert
    refuse(run, 1, wire.encode(request), ProtocolError)


# --- The roster ------------------------------------------------------------------------------


def test_roster_naming_the_client_itself() -> None:
    # A client is not its own neighbour: a roster that lists it is not the session's graph.
    run = semi_run(ClientPhase.AWAIT_ROSTER)
    roster = wire.decode(run.pending[1], KeyRoster)
    own = dataclasses.replace(roster.entries[0], client=1)
    refuse(run, 1, wire.encode(dataclasses.replace(roster, entries=(own, *roster.entries))), ProtocolError)


def test_harary_roster_carries_only_neighbours() -> None:
    # Prepare: n = 12 on H(4, 12), so client 1 has 4 neighbours and 7 strangers.
    config = MaskingConfig(num_clients=12, threshold=3, vector_length=4, graph=HARARY, degree=4, mode="semi-honest")
    run = StepRun(config, seed=4)
    run.run_until(ClientPhase.AWAIT_ROSTER)
    roster = wire.decode(run.pending[1], KeyRoster)
    neighbours = run.neighbours(1)
    # Assert: the honest server sends exactly the neighbours' keys ...
    assert tuple(entry.client for entry in roster.entries) == neighbours
    # ... and the client refuses a stranger's entry added to them.
    stranger = next(c for c in range(2, 13) if c not in neighbours)
    extra = wire.decode(run.pending[stranger], KeyRoster).entries[0]
    forged = dataclasses.replace(extra, client=stranger)
    entries = tuple(sorted((*roster.entries, forged), key=lambda e: e.client))
    error = refuse(run, 1, wire.encode(dataclasses.replace(roster, entries=entries)), ProtocolError)
    assert f"client {stranger}" in str(error) and "not a neighbour" in str(error)


def test_semi_honest_unmask_request_lists_only_surviving_neighbours() -> None:
    # Prepare: H(4, 12), every client survives.
    config = MaskingConfig(num_clients=12, threshold=3, vector_length=4, graph=HARARY, degree=4, mode="semi-honest")
    run = StepRun(config, seed=5)
    run.run_until(ClientPhase.AWAIT_UNMASK)
    request = wire.decode(run.pending[1], UnmaskRequest)
    neighbours = run.neighbours(1)
    # Assert: O(k) bytes, not the n-client survivor set ...
    assert request.survivors == tuple(sorted((1, *neighbours)))
    # ... and a stranger slipped into it is refused.
    stranger = next(c for c in range(2, 13) if c not in neighbours)
    survivors = tuple(sorted((*request.survivors, stranger)))
    error = refuse(run, 1, edit(run.pending[1], UnmaskRequest, survivors=survivors), ProtocolError)
    assert f"client {stranger}" in str(error)


def test_roster_naming_a_client_outside_the_configuration() -> None:
    run = semi_run(ClientPhase.AWAIT_ROSTER)
    roster = wire.decode(run.pending[1], KeyRoster)
    extra = dataclasses.replace(roster.entries[-1], client=6)
    refuse(run, 1, wire.encode(dataclasses.replace(roster, entries=(*roster.entries, extra))), ProtocolError)


def test_roster_with_fewer_than_t_neighbours() -> None:
    run = semi_run(ClientPhase.AWAIT_ROSTER)
    roster = wire.decode(run.pending[1], KeyRoster)
    # t = 3 with its own seed share: one neighbour is too few, two are enough (spec 12.8)
    refuse(run, 1, wire.encode(dataclasses.replace(roster, entries=roster.entries[:1])), ThresholdError)


# --- Addressing, sessions, rounds, replays ---------------------------------------------


PHASES = [ClientPhase.AWAIT_ROSTER, ClientPhase.AWAIT_SHARES, ClientPhase.AWAIT_UNMASK]
SESSION_PHASES = [ClientPhase.AWAIT_SHARES, ClientPhase.AWAIT_UNMASK]


@pytest.mark.parametrize("phase", PHASES)
def test_message_for_another_recipient(phase: ClientPhase) -> None:
    # Prepare: client 2's genuine message, given to client 1.
    run = semi_run(phase)
    # Execute / Assert
    refuse(run, 1, run.pending[2], ProtocolError)


def test_share_delivery_readdressed_to_the_client() -> None:
    # Prepare: client 2's boxes with the recipient field rewritten to 1 (the roster and
    # the unmask request are the same for every recipient, the deliveries are not).
    run = semi_run(ClientPhase.AWAIT_SHARES)
    readdressed = edit(run.pending[2], ShareDelivery, recipient=1)
    # Execute / Assert: among them is a box "from client 1" itself.
    refuse(run, 1, readdressed, ProtocolError)


@pytest.mark.parametrize("phase", SESSION_PHASES)
@pytest.mark.parametrize("byte", [0, 17, 31])
def test_message_from_another_session(phase: ClientPhase, byte: int) -> None:
    run = semi_run(phase)
    message = wire.decode_any(run.pending[1])
    other = wire.encode(dataclasses.replace(message, session_id=flip_bit(message.session_id, byte, 5)))
    refuse(run, 1, other, ProtocolError)


def test_survivor_list_from_another_session() -> None:
    run = active_run(ClientPhase.AWAIT_SURVIVORS)
    message = wire.decode(run.pending[1], SurvivorList)
    refuse(run, 1, edit(run.pending[1], SurvivorList, session_id=flip_bit(message.session_id, 0)), ProtocolError)


def test_message_from_a_parallel_session() -> None:
    # Prepare: two sessions of the same configuration under different contexts;
    # client 1 of the first gets the ShareDelivery made for client 1 of the second.
    run = StepRun(SEMI, seed=1, context=b"A" * 32)
    parallel = StepRun(SEMI, seed=2, context=b"B" * 32)
    for each in (run, parallel):
        each.run_until(ClientPhase.AWAIT_SHARES)
    # Execute / Assert
    refuse(run, 1, parallel.pending[1], ProtocolError)


def test_message_from_a_session_reusing_the_context() -> None:
    # Prepare: a server that (wrongly) reuses a context gets one session id twice;
    # the boxes are still sealed under the other session's fresh keys.
    run, parallel = semi_run(ClientPhase.AWAIT_SHARES, seed=1), semi_run(ClientPhase.AWAIT_SHARES, seed=2)
    assert run.session() == parallel.session()
    # Execute / Assert: no box opens, fewer than t are left
    refuse(run, 1, parallel.pending[1], ThresholdError)


def test_share_delivery_when_the_roster_is_expected() -> None:
    run, later = semi_run(ClientPhase.AWAIT_ROSTER), semi_run(ClientPhase.AWAIT_SHARES)
    refuse(run, 1, later.pending[1], ProtocolError)


def test_unmask_request_when_shares_are_expected() -> None:
    run = semi_run(ClientPhase.AWAIT_SHARES)
    request = wire.encode(UnmaskRequest(1, run.session(), (1, 2, 3, 4, 5), ()))
    refuse(run, 1, request, ProtocolError)


def test_client_bound_message_types_are_refused() -> None:
    run = semi_run(ClientPhase.AWAIT_ROSTER)
    refuse(run, 1, run.sent[2][0], ProtocolError)  # an AdvertiseKeys


def test_same_roster_twice_is_a_replay() -> None:
    run = semi_run(ClientPhase.AWAIT_ROSTER)
    roster = run.pending[1]
    run.step(1, roster)
    refuse(run, 1, roster, ReplayError)


def test_share_delivery_twice_is_a_replay() -> None:
    run = semi_run(ClientPhase.AWAIT_SHARES)
    delivery = run.pending[1]
    run.step(1, delivery)
    refuse(run, 1, delivery, ReplayError)


# --- Sealed share boxes --------------------------------------------------------------------


def delivery_of(run: StepRun, client: int) -> ShareDelivery:
    return wire.decode(run.pending[client], ShareDelivery)


def with_boxes(delivery: ShareDelivery, boxes: list[SealedBox]) -> bytes:
    return wire.encode(dataclasses.replace(delivery, boxes=tuple(sorted(boxes, key=lambda b: b.peer))))


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
def test_tampered_share_box(where: str) -> None:
    # Prepare
    run = semi_run(ClientPhase.AWAIT_SHARES)
    delivery = delivery_of(run, 1)
    boxes = list(delivery.boxes)
    sealed = boxes[0].sealed
    index = {"nonce": 3, "ciphertext": aead.NONCE_SIZE + 5, "tag": len(sealed) - 1}[where]
    boxes[0] = SealedBox(boxes[0].peer, flip_bit(sealed, index, 6))
    # Execute / Assert: the sender is refused for client 1 alone; only a share is lost
    refuses_peers(run, 1, with_boxes(delivery, boxes), {boxes[0].peer})


def test_truncated_share_box() -> None:
    run = semi_run(ClientPhase.AWAIT_SHARES)
    delivery = delivery_of(run, 1)
    boxes = [SealedBox(delivery.boxes[0].peer, delivery.boxes[0].sealed[:20]), *delivery.boxes[1:]]
    refuses_peers(run, 1, with_boxes(delivery, boxes), {delivery.boxes[0].peer})


def test_share_box_retargeted_to_another_recipient() -> None:
    # Prepare: client 2's box for client 3, delivered to client 1 as client 2's box for 1.
    run = semi_run(ClientPhase.AWAIT_SHARES)
    delivery = delivery_of(run, 1)
    box_for_3 = next(b for b in delivery_of(run, 3).boxes if b.peer == 2)
    boxes = [box_for_3 if b.peer == 2 else b for b in delivery.boxes]
    # Execute / Assert
    refuses_peers(run, 1, with_boxes(delivery, boxes), {2})


def test_share_boxes_with_swapped_senders() -> None:
    run = semi_run(ClientPhase.AWAIT_SHARES)
    delivery = delivery_of(run, 1)
    box2, box3 = (next(b for b in delivery.boxes if b.peer == p) for p in (2, 3))
    boxes = [b for b in delivery.boxes if b.peer not in (2, 3, 5)]
    boxes += [SealedBox(2, box3.sealed), SealedBox(3, box2.sealed)]
    # Both refused: one of three boxes opens, and with the client's own seed share that is fewer than t = 3.
    refuse(run, 1, with_boxes(delivery, boxes), ThresholdError)


def test_share_box_for_another_round() -> None:
    # Prepare: a box correctly keyed for 2 -> 1 but sealed with the associated data of another round.
    run = semi_run(ClientPhase.AWAIT_SHARES)
    sender = run.states[2]
    key = share_encryption_keys(sender.encryption_private, [(1, run.states[1].encryption_public)], run.session(), 2)[0]
    bundle = ShareBundle(2, 1, bytes(33), bytes(33))
    ad = aead.share_associated_data(run.session(), 2, 1, Round.MASKED_INPUT)
    sealed = aead.seal(key, wire.encode(bundle), ad, InsecureDeterministicRandom(3))
    delivery = delivery_of(run, 1)
    boxes = [SealedBox(2, sealed) if b.peer == 2 else b for b in delivery.boxes]
    # Execute / Assert
    refuses_peers(run, 1, with_boxes(delivery, boxes), {2})


@pytest.mark.parametrize(("inner_sender", "inner_recipient"), [(3, 1), (2, 4)])
def test_authentic_share_box_naming_other_parties(inner_sender: int, inner_recipient: int) -> None:
    # Prepare: a box that authenticates for 2 -> 1 but whose bundle names other parties.
    run = semi_run(ClientPhase.AWAIT_SHARES)
    sender = run.states[2]
    key = share_encryption_keys(sender.encryption_private, [(1, run.states[1].encryption_public)], run.session(), 2)[0]
    bundle = ShareBundle(inner_sender, inner_recipient, bytes(33), bytes(33))
    ad = aead.share_associated_data(run.session(), 2, 1, Round.SHARE_KEYS)
    sealed = aead.seal(key, wire.encode(bundle), ad, InsecureDeterministicRandom(3))
    delivery = delivery_of(run, 1)
    boxes = [SealedBox(2, sealed) if b.peer == 2 else b for b in delivery.boxes]
    # Execute / Assert
    refuses_peers(run, 1, with_boxes(delivery, boxes), {2})


def test_fewer_than_t_share_boxes() -> None:
    run = semi_run(ClientPhase.AWAIT_SHARES)
    delivery = delivery_of(run, 1)
    refuse(run, 1, with_boxes(delivery, list(delivery.boxes[:1])), ThresholdError)  # 1 + its own share < t = 3


def test_share_box_from_the_client_itself() -> None:
    run = semi_run(ClientPhase.AWAIT_SHARES)
    delivery = delivery_of(run, 1)
    boxes = [*delivery.boxes, SealedBox(1, delivery.boxes[0].sealed)]
    refuse(run, 1, with_boxes(delivery, boxes), ProtocolError)


def test_share_box_from_a_non_neighbour() -> None:
    # Prepare: Harary graph, k = 4 of n = 9: client 1 has four non-neighbours.
    config = MaskingConfig(num_clients=9, threshold=3, vector_length=4, graph=HARARY, degree=4, mode="semi-honest")
    run = StepRun(config, seed=4)
    run.run_until(ClientPhase.AWAIT_SHARES)
    stranger = min(set(range(2, 10)) - set(run.neighbours(1)))
    delivery = delivery_of(run, 1)
    # A genuine box of the stranger, addressed to one of its own neighbours.
    recipient = run.neighbours(stranger)[0]
    genuine = next(b for b in delivery_of(run, recipient).boxes if b.peer == stranger)
    boxes = [*delivery.boxes, genuine]
    # Execute / Assert
    refuse(run, 1, with_boxes(delivery, boxes), ProtocolError)


# --- The mask set: a survivor list naming neighbours the client did not mask with ----


def _shrunk_mask_set_attack(run: StepRun, victim: int, partners: tuple[int, ...]) -> tuple[bytes, ...]:
    """A lying server (no colluders) against ``victim``, complete graph, active mode.

    It delivers to ``victim`` only the boxes of ``partners`` (t - 1 of them: with the
    victim's self-held share, the threshold), so the victim masks with them alone; every
    other client gets its honest delivery. It then announces one survivor list S that
    leaves the partners out and keeps everyone else (|S| = n - (t - 1) >= t when
    n = 2t - 1, which setup allows: 2t > n + c). Every member of S signs S, so the
    victim sees t valid signatures over the list it signed, and reveals its own seed
    share and the partners' mask-key shares, as the others do. Returns the replies
    (the responses, or whatever was refused)."""
    delivery = delivery_of(run, victim)
    run.pending[victim] = with_boxes(delivery, [b for b in delivery.boxes if b.peer in partners])
    run.to_clients()
    survivors = tuple(c for c in range(1, run.config.num_clients + 1) if c not in partners)
    signatures = []
    for client in survivors:
        data = wire.encode(SurvivorList(client, run.session(), survivors))
        try:
            reply = run.step(client, data)
        except SecAggError:
            continue
        signatures.append(SignedBy(client, wire.decode(reply, ConsistencySignature).signature))
    responses = []
    for signer in signatures:
        try:
            responses.append(run.step(signer.client, wire.encode(
                UnmaskRequest(signer.client, run.session(), survivors, tuple(signatures)))))
        except SecAggError:
            continue
    return tuple(responses)


def _recover_input(
    run: StepRun, victim: int, partners: tuple[int, ...], responses: tuple[bytes, ...]
) -> np.ndarray | None:
    """What the server computes from the victim's masked input and the revealed shares:
    ``x = y - PRG(b) -+ pairwise masks with the partners`` (None if it lacks shares)."""
    t = run.config.threshold
    seed_shares: list[shamir.Share] = []
    key_shares: dict[int, list[shamir.Share]] = {p: [] for p in partners}
    for response in unmask_responses(responses):
        seed_shares += [shamir.Share(response.sender, int.from_bytes(e.share, "big"))
                        for e in response.self_mask_shares if e.owner == victim]
        for e in response.mask_key_shares:
            if e.owner in key_shares:
                key_shares[e.owner].append(shamir.Share(response.sender, int.from_bytes(e.share, "big")))
    if len(seed_shares) < t or any(len(shares) < t for shares in key_shares.values()):
        return None
    masked = next(m for m in (wire.decode_any(d) for d in run.sent[victim]) if isinstance(m, MaskedInput))
    total = np.array(masked.vector.values, dtype=run.config.ring.dtype)
    prg.add_expansion(total, shamir.combine(seed_shares[:t], t), SELF_MASK_LABEL, subtract=True)
    victim_key = run.server.roster[victim].mask_key
    for partner in partners:
        private = shamir.combine(key_shares[partner][:t], t)
        (seed,) = pair_mask_seeds(private, [(victim, victim_key)], run.session(), partner)
        # The victim subtracted the pair's mask if it has the larger id: undo that.
        prg.add_expansion(total, seed, PAIR_MASK_LABEL, subtract=not pair_mask_subtracts(victim, partner))
    return total


def test_survivor_list_naming_neighbours_the_client_did_not_mask_with() -> None:
    """Bonawitz et al.'s U3 subset-of U2 check. Active mode, complete graph, n = 5, t = 3
    (allowed: 2t = 6 > n + c = 5): without it the lying server above recovers client 1's
    input from the protocol's own responses, with no colluder. Client 1 must refuse a
    survivor list that names a neighbour (4, 5) it did not mask with."""
    run = active_run(ClientPhase.AWAIT_SHARES)
    victim, partners = 1, (2, 3)
    responses = _shrunk_mask_set_attack(run, victim, partners)
    recovered = _recover_input(run, victim, partners, responses)
    assert recovered is None or not np.array_equal(recovered, run.inputs[victim]), (
        "the server unmasked client 1's input alone"
    )
    assert unmask_responses(run.sent[victim]) == []
    assert run.states[victim].phase == ClientPhase.AWAIT_SURVIVORS  # it refused the list: nothing signed
    with pytest.raises(UnsafeRequestError, match="client 4"):
        run.step(victim, wire.encode(SurvivorList(victim, run.session(), (1, 4, 5))))
    assert_never_both_shares(run)


def test_harary_two_lists_around_a_shrunk_mask_set() -> None:
    """Active mode, H(6, 14), t = 4 (2t = 8 > k + c = 6), no colluder. The victim u is delivered
    only the boxes of D = its neighbours at positions p-3, p-2, p+2, p+3 (each has at most one
    other member of D among its neighbours). u and D sign S' = D + u; everyone else signs
    S* = all but D. b_u would come from all six of u's neighbours, and each partner's mask key
    from its neighbours outside u and D (at least four). The U3-within-U2 check passes on both
    sides; the victim must refuse S' because fewer than t of each partner's neighbours signed it."""
    config, identities = active_setup(14, 4, graph=HARARY, degree=6)
    run = StepRun(config, identities=identities, seed=7)
    run.run_until(ClientPhase.AWAIT_SHARES)
    victim = 1
    order = harary_order(14, run.session())
    p = order.index(victim)
    partners = tuple(sorted(order[(p + j) % 14] for j in (-3, -2, 2, 3)))
    delivery = delivery_of(run, victim)
    run.pending[victim] = with_boxes(delivery, [b for b in delivery.boxes if b.peer in partners])
    run.to_clients()
    inner = tuple(sorted((victim, *partners)))
    outer = tuple(c for c in range(1, 15) if c not in partners)
    lists = {c: (inner if c in inner else outer) for c in range(1, 15)}
    signatures: dict[tuple[int, ...], list[SignedBy]] = {inner: [], outer: []}
    for client, listed in lists.items():
        reply = run.step(client, wire.encode(SurvivorList(client, run.session(), listed)))
        signatures[listed].append(SignedBy(client, wire.decode(reply, ConsistencySignature).signature))
    responses = []
    for client, listed in lists.items():
        try:
            responses.append(run.step(client, wire.encode(
                UnmaskRequest(client, run.session(), listed, tuple(signatures[listed])))))
        except SecAggError:
            continue
    recovered = _recover_input(run, victim, partners, tuple(responses))
    assert recovered is None or not np.array_equal(recovered, run.inputs[victim]), (
        "the server unmasked client 1's input alone"
    )
    assert unmask_responses(run.sent[victim]) == []
    assert_never_both_shares(run)


@pytest.mark.parametrize("survivors", [(1, 2, 6), (1, 2, 3, 4, 5, 6), (0, 1, 2, 3)])
def test_active_survivor_list_padded_with_ids_outside_the_roster(survivors: tuple[int, ...]) -> None:
    """Active mode (no neighbour filter): a list padded with ids outside 1..n, e.g. two real
    survivors and a ghost reaching t = 3, is refused before anything is signed."""
    run = active_run(ClientPhase.AWAIT_SURVIVORS)
    error = refuse(run, 1, edit(run.pending[1], SurvivorList, survivors=survivors), ProtocolError)
    assert "outside 1..5" in str(error)
    run.step(1, run.pending[1])  # control: the honest list is signed


def test_harary_list_signed_by_t_minus_one_neighbours_of_the_client() -> None:
    """Active mode, H(6, 14), t = 4: every peer signed the full list except three of client
    1's six neighbours. At least t signers in all, every partner endorsed by at least
    t - 1 of its neighbours, but client 1 by exactly t - 1 = 3: refused (the boundary)."""
    config, identities = active_setup(14, 4, graph=HARARY, degree=6)
    run = StepRun(config, identities=identities, seed=7)
    run.run_until(ClientPhase.AWAIT_SURVIVORS)
    silent = run.neighbours(1)[:3]
    request = consistency_request(run, [c for c in range(1, 15) if c not in silent])
    full = consistency_request_signatures(run, silent, request)
    # Execute / Assert
    error = refuse(run, 1, wire.encode(request), ThresholdError)
    assert "signed by 3 neighbours of client 1" in str(error)
    run.step(1, wire.encode(full))  # control: with the three signatures the list is accepted


def consistency_request_signatures(run: StepRun, signers: tuple[int, ...], request: UnmaskRequest) -> UnmaskRequest:
    """``request`` with the signatures of ``signers`` over its survivor list added."""
    extra = [SignedBy(c, wire.decode(run.step(c, run.pending[c]), ConsistencySignature).signature) for c in signers]
    return dataclasses.replace(request, signatures=tuple(sorted((*request.signatures, *extra), key=lambda s: s.client)))
