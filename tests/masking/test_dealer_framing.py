"""A share off its secret's polynomial is the holder's lie or the owner's bad dealing: the report says both.

Without verifiable secret sharing the server cannot tell a holder that reveals a wrong share from
an owner that dealt it one: the owner knows the pair's box key, so its bundle authenticates. A
malicious owner v that deals honest client 1 a wrong self-mask share (and its other holders good
ones) makes the server's first try fail and a retry succeed, and the server then records client 1
as the holder whose share lies off the polynomial. That record must name v as well, or v's fault
reads as client 1's alone. (The session completes exactly either way: one bad share among t + 1.)
"""

from __future__ import annotations

import dataclasses

from secagg import wire
from secagg.masking import ClientPhase, Round, run_session
from secagg.masking.messages import ShareEntry, UnmaskResponse
from secagg.masking.server_state import without_liars
from secagg.primitives import shamir
from secagg.primitives.randomness import InsecureDeterministicRandom

from .harness import StepRun, assert_exact, random_inputs
from .test_bad_share_values import SEMI, resealed_by_peer

DEALER, FRAMED = 5, 1


def test_a_wrong_share_dealt_by_the_owner_is_reported_with_the_owner_named() -> None:
    # Prepare: n = 5, t = 3; client 5 seals client 1 a well-formed bundle with wrong share values
    run = StepRun(SEMI, seed=1)
    run.run_until(ClientPhase.AWAIT_SHARES)
    run.pending[FRAMED] = resealed_by_peer(run, DEALER, FRAMED)

    # Execute
    result = run.finish()

    # Assert: exact sum of everyone; client 1's record names the dealer and says either may be at fault
    assert result.included == frozenset(run.inputs)
    assert_exact(SEMI, result.aggregate, run.inputs, result.included)
    reasons = [reason for client, reason in run.server.rejected if client == FRAMED]
    assert len(reasons) == 1, run.server.rejected
    assert f"client {DEALER}'s self-mask seed" in reasons[0] and f"client {DEALER} dealt it one" in reasons[0]
    assert [client for client, _ in run.server.rejected] == [FRAMED]


def test_the_in_memory_driver_reports_the_pairs_as_the_server_state_and_an_abort_do() -> None:
    """``run_session``'s result carries the structured pairs (holder, owner, secret) of the shares
    found off their polynomial, as ``ServerState.share_liars`` and an abort's
    ``AbortReport.share_liars`` do: a completed session must not give them only as reason text."""
    # Prepare: n = 5, t = 3; client 1 reveals a wrong share of client 2's self-mask seed (in its first try)
    def lie(round_: Round, direction: str, client: int, data: bytes) -> bytes:
        if (round_, direction, client) != (Round.UNMASKING, "up", FRAMED):
            return data
        response = wire.decode(data, UnmaskResponse)
        entries = tuple(
            ShareEntry(e.owner, ((int.from_bytes(e.share, "big") + 1) % shamir.PRIME).to_bytes(len(e.share), "big"))
            if e.owner == 2 else e
            for e in response.self_mask_shares
        )
        return wire.encode(dataclasses.replace(response, self_mask_shares=entries))

    inputs = random_inputs(SEMI, 4)

    # Execute
    result = run_session(SEMI, inputs, random_bytes=InsecureDeterministicRandom(4), tamper=lie)

    # Assert: exact sum of everyone, and the pair, structured
    assert result.included == frozenset(inputs)
    assert_exact(SEMI, result.aggregate, inputs, result.included)
    assert result.share_liars == ((FRAMED, 2, "self-mask seed"),), result.server_rejected
    assert without_liars(result.server_rejected, result.share_liars) == ()
