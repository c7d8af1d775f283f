"""Share values that are no field element (>= p), from a malicious peer or in an unmask response.

A peer that seals a bundle holding a share value >= p (it knows k_uv, so the
box authenticates) must not be able to void an honest holder's unmask
response: the holder refuses the sender for itself when it opens the bundle,
as it refuses a box that fails authentication (docs/spec.md 12.8, round 2),
and the server discards one bad share inside an otherwise good response
instead of the whole response.
"""

from __future__ import annotations

import dataclasses

import pytest

from secagg import wire
from secagg.errors import DecodeError
from secagg.masking import ClientPhase, ClientState, MaskingConfig, Round
from secagg.masking.client import HeldShares
from secagg.masking.messages import SealedBox, ShareBundle, ShareDelivery, ShareEntry, UnmaskResponse
from secagg.masking.server import ServerPhase
from secagg.masking.session import share_encryption_keys
from secagg.primitives import aead, shamir
from secagg.primitives.randomness import InsecureDeterministicRandom

from .harness import StepRun, advance_to, assert_exact

SEMI = MaskingConfig(num_clients=5, threshold=3, vector_length=4, mode="semi-honest")
P_BYTES = shamir.PRIME.to_bytes(shamir.VALUE_SIZE, "big")  # the smallest value that is no field element
TOP_BYTES = b"\xff" * shamir.VALUE_SIZE


def resealed_by_peer(run: StepRun, sender: int, recipient: int, **values: bytes) -> bytes:
    """``recipient``'s share delivery in which ``sender``'s box is a bundle the sender
    sealed itself with the pair's real key (it authenticates), holding ``values``."""
    state = run.states[sender]
    key = share_encryption_keys(
        state.encryption_private, [(recipient, run.states[recipient].encryption_public)], run.session(), sender
    )[0]
    fields = {"mask_key_share": bytes(shamir.VALUE_SIZE), "self_mask_share": bytes(shamir.VALUE_SIZE), **values}
    bundle = ShareBundle(sender, recipient, fields["mask_key_share"], fields["self_mask_share"])
    ad = aead.share_associated_data(run.session(), sender, recipient, Round.SHARE_KEYS)
    sealed = aead.seal(key, wire.encode(bundle), ad, InsecureDeterministicRandom(5))
    delivery = wire.decode(run.pending[recipient], ShareDelivery)
    boxes = tuple(SealedBox(sender, sealed) if box.peer == sender else box for box in delivery.boxes)
    return wire.encode(dataclasses.replace(delivery, boxes=boxes))


@pytest.mark.parametrize("field", ["mask_key_share", "self_mask_share"])
@pytest.mark.parametrize("value", [P_BYTES, TOP_BYTES], ids=["p", "2^264-1"])
def test_client_refuses_an_authentic_bundle_holding_a_share_value_at_or_above_p(field: str, value: bytes) -> None:
    # Prepare
    run = StepRun(SEMI, seed=1)
    run.run_until(ClientPhase.AWAIT_SHARES)
    delivery = resealed_by_peer(run, 2, 1, **{field: value})
    # Execute
    run.pending.pop(1)
    run.uploads[1] = run.step(1, delivery)
    # Assert: client 1 keeps nothing of client 2, records it, and the session completes exactly.
    assert run.states[1].refused == (2,) and 2 not in {held.owner for held in run.states[1].held}
    result = run.finish()
    assert result.included == frozenset(run.inputs)
    assert_exact(SEMI, result.aggregate, run.inputs, result.included)


def test_client_accepts_an_authentic_bundle_holding_the_largest_field_element() -> None:
    # p - 1 is a field element: the boundary is exactly p.
    run = StepRun(SEMI, seed=1)
    run.run_until(ClientPhase.AWAIT_SHARES)
    largest = (shamir.PRIME - 1).to_bytes(shamir.VALUE_SIZE, "big")
    run.step(1, resealed_by_peer(run, 2, 1, self_mask_share=largest))
    assert run.states[1].phase == ClientPhase.AWAIT_UNMASK


def test_stored_client_state_holding_a_share_value_at_or_above_p_does_not_parse() -> None:
    # Prepare
    run = StepRun(SEMI, seed=1)
    run.run_until(ClientPhase.AWAIT_UNMASK)
    state = run.states[1]
    good = state.to_bytes()
    held = state.held[0]
    index = good.index(held.mask_key_share)
    corrupted = good[:index] + P_BYTES + good[index + shamir.VALUE_SIZE :]
    # Execute / Assert
    assert ClientState.from_bytes(good) == state
    with pytest.raises(DecodeError):
        ClientState.from_bytes(corrupted)
    with pytest.raises(DecodeError):
        HeldShares(held.owner, held.mask_key_share, TOP_BYTES)


def unmask_responses(config: MaskingConfig, dropped: int) -> StepRun:
    """A seeded session run until the clients' unmask responses are in ``run.uploads``, client
    ``dropped`` having dropped before MaskedInput."""
    run = StepRun(config, seed=7)
    advance_to(run, ServerPhase.COLLECT_MASKED)
    del run.uploads[dropped]
    run.to_server()
    run.to_clients()
    return run


def test_server_discards_one_bad_share_and_keeps_the_rest_of_the_response() -> None:
    """n = 4, t = 2, client 4 drops before MaskedInput. Client 2's self-mask seed is
    held by clients 1 and 3 only: if the server set client 1's whole response aside
    for its bad share of 4's mask key, it could not recover that seed (ThresholdError).
    Discarding only the bad share, it recovers every secret: 4's key from 2 and 3."""
    # Prepare
    config = MaskingConfig(num_clients=4, threshold=2, vector_length=6, mode="semi-honest")
    run = unmask_responses(config, dropped=4)
    response = wire.decode(run.uploads[1], UnmaskResponse)
    assert [entry.owner for entry in response.mask_key_shares] == [4]
    uploads = dict(run.uploads)
    uploads[1] = wire.encode(dataclasses.replace(response, mask_key_shares=(ShareEntry(4, P_BYTES),)))
    # Execute
    run.to_server(uploads)
    # Assert
    assert run.server.result is not None
    assert run.server.result.included == {1, 2, 3}
    assert_exact(config, run.server.result.aggregate, run.inputs, {1, 2, 3})
    ((sender, reason),) = run.server.rejected
    assert sender == 1
    assert "client 1's share of client 4's mask key" in reason and "discarded" in reason


def test_server_records_a_mismatch_and_a_bad_share_in_responder_order() -> None:
    """Spec 12.8: the checks run per accepted responder in increasing id, so client 1's
    discarded share is recorded before client 2's mismatched response, not after it."""
    # Prepare
    config = MaskingConfig(num_clients=5, threshold=2, vector_length=6, mode="semi-honest")
    run = unmask_responses(config, dropped=5)
    uploads = dict(run.uploads)
    first = wire.decode(uploads[1], UnmaskResponse)
    uploads[1] = wire.encode(dataclasses.replace(first, mask_key_shares=(ShareEntry(5, P_BYTES),)))
    second = wire.decode(uploads[2], UnmaskResponse)  # a dropped client's share as a survivor's seed share
    uploads[2] = wire.encode(
        dataclasses.replace(second, self_mask_shares=(ShareEntry(5, b"\x00" * 33),), mask_key_shares=())
    )
    # Execute
    run.to_server(uploads)
    # Assert
    assert run.server.result is not None
    assert run.server.result.included == {1, 2, 3, 4}
    assert [sender for sender, _ in run.server.rejected] == [1, 2]
    assert "discarded" in run.server.rejected[0][1]
    assert "do not match the survivor set" in run.server.rejected[1][1]
