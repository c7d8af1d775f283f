"""A client's refusal of a share box reaches the server's report when the session completes too.

A client refuses a relayed share box that does not open or holds no well-formed bundle
(docs/spec.md 12.8, round 2) for itself and goes on; in round 4 it reveals nothing for that
sender. Before, the server recorded nothing for that omission, so the refusal was in no report
unless the session aborted. Now the server records each delivered sender a responder leaves
out as that responder's claim (receiver, sender): never a rejection (the responder stays in,
its input is summed) and never a proven fact (the sender's box was faulty, the relay corrupted
it, or the responder withholds a share: the server cannot tell which).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from secagg import wire
from secagg.errors import ThresholdError
from secagg.masking import ACTIVE, SEMI_HONEST, MaskingConfig, Round, abort_report, make_identities, run_session
from secagg.masking.driver import SessionResult, Tamper
from secagg.masking.messages import SealedBox, ShareDelivery, UnmaskResponse
from secagg.masking.session import ZERO_CONTEXT
from secagg.primitives.randomness import InsecureDeterministicRandom

from .harness import assert_exact, flip_bit


def _corrupt_box(receiver: int, sender: int) -> Tamper:
    """A relay that flips one bit of ``sender``'s sealed box in ``receiver``'s share delivery."""

    def tamper(round_: Round, direction: str, client: int, data: bytes) -> bytes:
        if (round_, direction, client) != (Round.MASKED_INPUT, "down", receiver):
            return data
        delivery = wire.decode(data, ShareDelivery)
        boxes = tuple(SealedBox(b.peer, flip_bit(b.sealed, 20)) if b.peer == sender else b for b in delivery.boxes)
        return wire.encode(dataclasses.replace(delivery, boxes=boxes))

    return tamper


def _run(mode: str, num_clients: int, tamper: Tamper, dropouts: dict[int, Round] | None = None) -> SessionResult:
    identities, public = make_identities(num_clients, InsecureDeterministicRandom(num_clients))
    config = MaskingConfig.secagg(num_clients, 4, mode=mode, identity_keys=public if mode == ACTIVE else ())
    inputs = {c: np.full(4, 10 * c, dtype=config.ring.dtype) for c in range(1, num_clients + 1)}
    result = run_session(config, inputs, dropouts, context=ZERO_CONTEXT, random_bytes=InsecureDeterministicRandom(3),
                         identities=identities if mode == ACTIVE else None, tamper=tamper)
    assert_exact(config, result.aggregate, inputs, result.included)
    return result


@pytest.mark.parametrize("mode", [SEMI_HONEST, ACTIVE])
def test_a_corrupted_share_box_is_named_in_the_report_of_a_completed_session(mode: str) -> None:
    # Prepare / Act: n = 6; the relay corrupts client 2's box to client 1; the session completes
    result = _run(mode, 6, _corrupt_box(receiver=1, sender=2))

    # Assert: everyone is summed, nobody rejected; the report names (receiver 1, sender 2) as 1's claim
    assert result.included == frozenset(range(1, 7))
    assert result.server_rejected == ()
    assert result.share_refusals == ((1, 2),)


def test_an_honest_session_reports_no_refusal() -> None:
    result = _run(SEMI_HONEST, 5, lambda round_, direction, client, data: data)
    assert result.share_refusals == ()


def test_a_responder_leaving_out_a_share_it_holds_is_recorded_as_its_claim_not_a_fact() -> None:
    # Prepare: client 3 opened every box but leaves client 4's share out of its unmask response
    def tamper(round_: Round, direction: str, client: int, data: bytes) -> bytes:
        if (round_, direction, client) != (Round.UNMASKING, "up", 3):
            return data
        response = wire.decode(data, UnmaskResponse)
        kept = tuple(e for e in response.self_mask_shares if e.owner != 4)
        return wire.encode(dataclasses.replace(response, self_mask_shares=kept))

    # Act
    result = _run(SEMI_HONEST, 6, tamper)

    # Assert: the server cannot tell a withheld share from a refused box: it records 3's word about 4
    assert result.included == frozenset(range(1, 7))
    assert result.share_refusals == ((3, 4),)
    assert result.server_rejected == ()


def test_an_abort_at_unmasking_names_the_refusal_claims_that_cost_shares() -> None:
    # Prepare: n = 4, t = 3 (complete graph, semi-honest). Client 2 refuses client 1's (corrupted)
    # box and client 3 goes silent at Unmasking: client 1's seed has its own share and 4's, 2 < t
    config = MaskingConfig.secagg(4, 4, mode=SEMI_HONEST)
    assert config.threshold == 3
    inputs = {c: np.full(4, c, dtype=config.ring.dtype) for c in range(1, 5)}

    # Act
    with pytest.raises(ThresholdError) as caught:
        run_session(config, inputs, {3: Round.UNMASKING}, context=ZERO_CONTEXT,
                    random_bytes=InsecureDeterministicRandom(3), tamper=_corrupt_box(receiver=2, sender=1))

    # Assert: the abort's message counts 2's claim about 1 beside the dropout; its report records it
    message = str(caught.value)
    assert "client 1" in message and "3 at Unmasking" in message
    assert "Share boxes refused: 1 claim (2 of 1)" in message, message
    assert "unproven" in message.partition("Share boxes refused")[2], message
    report = abort_report(caught.value)
    assert report is not None and report.share_refusals == ((2, 1),), report
