"""An aborted session records its rejections in the same structured fields as a completed one.

A completed session lists each message the server rejected in ``SessionResult.server_rejected``
and each share-box refusal claim in ``SessionResult.share_refusals``. An aborting step returns no
state, so before this its own rejections (and the claims of an aborting Unmasking step) were only
sentences inside the error's message, each claim about 250 bytes, once per claim. Now the error
carries an :class:`~secagg.masking.AbortReport` (``abort_report(error)``): who went missing at which
round, every rejection with the record a completed session would hold, and every claim; the message
stays a short summary with counts and ids.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from secagg import wire
from secagg.errors import AuthenticationError, SecAggError, ThresholdError
from secagg.masking import (
    ACTIVE,
    SEMI_HONEST,
    AbortReport,
    MaskingConfig,
    Round,
    SessionResult,
    abort_report,
    make_identities,
    run_session,
)
from secagg.masking.driver import Tamper
from secagg.masking.messages import SealedBox, ShareDelivery, ShareEntry, UnmaskResponse
from secagg.masking.server_state import SUMMARY_IDS
from secagg.masking.session import ZERO_CONTEXT
from secagg.primitives import shamir
from secagg.primitives.randomness import InsecureDeterministicRandom

from .harness import flip_bit, truncate_4_and_lie_about_1s_seed

EXPECTED = {
    Round.ADVERTISE_KEYS: "AdvertiseKeys: ",
    Round.SHARE_KEYS: "EncryptedShares: ",
    Round.MASKED_INPUT: "MaskedInput: ",
    Round.CONSISTENCY_CHECK: "ConsistencySignature: ",
    Round.UNMASKING: "UnmaskResponse: ",
}
STAGE = {
    Round.ADVERTISE_KEYS: "AdvertiseKeys",
    Round.SHARE_KEYS: "ShareKeys",
    Round.MASKED_INPUT: "MaskedInputCollection",
    Round.CONSISTENCY_CHECK: "ConsistencyCheck",
    Round.UNMASKING: "Unmasking",
}
CASES = [(mode, at) for mode in (SEMI_HONEST, ACTIVE) for at in EXPECTED
         if mode == ACTIVE or at != Round.CONSISTENCY_CHECK]


def _report(error: SecAggError) -> AbortReport:
    report = abort_report(error)
    assert report is not None, error
    return report


def _session(mode: str, num_clients: int, tamper: Tamper, dropouts: dict[int, Round] | None = None) -> SessionResult:
    identities, public = make_identities(num_clients, InsecureDeterministicRandom(num_clients))
    config = MaskingConfig.secagg(num_clients, 4, mode=mode, identity_keys=public if mode == ACTIVE else ())
    inputs = {c: np.full(4, c, dtype=config.ring.dtype) for c in range(1, num_clients + 1)}
    return run_session(config, inputs, dropouts, context=ZERO_CONTEXT, random_bytes=InsecureDeterministicRandom(3),
                       identities=identities if mode == ACTIVE else None, tamper=tamper)


def _truncate(at: Round, hostile: int) -> Tamper:
    def tamper(round_: Round, direction: str, client: int, data: bytes) -> bytes:
        return data[:-3] if (round_, direction, client) == (at, "up", hostile) else data

    return tamper


@pytest.mark.parametrize(("mode", "at"), CASES)
def test_the_aborting_rounds_rejection_is_recorded_as_a_completed_session_records_it(mode: str, at: Round) -> None:
    # Prepare: n = 3, t = 2. Without a dropout, client 2's truncated message of round `at` is rejected
    # and the session completes: that is the record a completed session holds
    completed = _session(mode, 3, _truncate(at, 2))
    assert [client for client, _ in completed.server_rejected] == [2]

    # Act: the same, and client 3 goes silent in that round: 1 < t remain
    with pytest.raises(ThresholdError) as caught:
        _session(mode, 3, _truncate(at, 2), {3: at})

    # Assert: the abort's record holds the very same rejection, and who went missing where
    report = _report(caught.value)
    assert report.round_name == STAGE[at]
    assert report.server_rejected == completed.server_rejected
    assert report.server_rejected[0][1].startswith(EXPECTED[at])
    assert dict(report.dropped) == {2: STAGE[at], 3: STAGE[at]}
    assert report.share_refusals == ()
    # The message names client 2 as rejected, without repeating the reason
    message = str(caught.value)
    assert "Rejected: 1 client (2 at " in message, message
    assert report.server_rejected[0][1] not in message, message


def test_a_rejection_of_an_earlier_round_stays_in_the_record_when_a_later_round_aborts() -> None:
    # Prepare / Act: n = 4, t = 3: client 4's AdvertiseKeys is rejected (3 go on), then client 3
    # goes silent at MaskedInputCollection: 2 < t remain
    with pytest.raises(ThresholdError) as caught:
        _session(SEMI_HONEST, 4, _truncate(Round.ADVERTISE_KEYS, 4), {3: Round.MASKED_INPUT})

    # Assert
    report = _report(caught.value)
    assert report.round_name == "MaskedInputCollection"
    assert [client for client, _ in report.server_rejected] == [4]
    assert report.server_rejected[0][1].startswith("AdvertiseKeys: ")
    assert dict(report.dropped) == {4: "AdvertiseKeys", 3: "MaskedInputCollection"}


def test_an_unrecoverable_secret_records_the_rejections_of_that_step() -> None:
    # Prepare: n = 4, t = 3. At Unmasking client 4's response is truncated (rejected) and client 2
    # reveals a wrong share of client 1's self-mask seed, which then has exactly t shares
    tamper = truncate_4_and_lie_about_1s_seed

    # Act
    with pytest.raises(AuthenticationError) as caught:
        _session(SEMI_HONEST, 4, tamper)

    # Assert: 4's rejection is recorded with its reason; 4 went missing at Unmasking
    report = _report(caught.value)
    assert report.round_name == "Unmasking"
    assert [client for client, _ in report.server_rejected] == [4]
    assert report.server_rejected[0][1].startswith("UnmaskResponse: ")
    assert dict(report.dropped) == {4: "Unmasking"}


def _corrupt_boxes(sender: int, receivers: tuple[int, ...]) -> Tamper:
    """A relay that flips one bit of ``sender``'s sealed box in each of ``receivers``' deliveries."""

    def tamper(round_: Round, direction: str, client: int, data: bytes) -> bytes:
        if (round_, direction) != (Round.MASKED_INPUT, "down") or client not in receivers:
            return data
        delivery = wire.decode(data, ShareDelivery)
        boxes = tuple(SealedBox(b.peer, flip_bit(b.sealed, 20)) if b.peer == sender else b for b in delivery.boxes)
        return wire.encode(dataclasses.replace(delivery, boxes=boxes))

    return tamper


def test_the_refusal_claims_of_an_aborting_unmask_step_are_recorded_and_only_counted_in_the_message() -> None:
    # Prepare / Act: n = 5, t = 3. The relay corrupts client 1's boxes to 2, 3 and 4: they refuse them,
    # so client 1's seed has 2 shares (its own and 5's) < t, and the session aborts with nobody missing
    with pytest.raises(ThresholdError) as caught:
        _session(SEMI_HONEST, 5, _corrupt_boxes(1, (2, 3, 4)))

    # Assert: both claims in the record, as a completed session records them; the message counts
    # them and names the pairs, without the claim sentence once per claim
    report = _report(caught.value)
    assert report.share_refusals == ((2, 1), (3, 1), (4, 1))
    assert report.server_rejected == () and dict(report.dropped) == {}
    message = str(caught.value)
    assert "says it refused" not in message, message
    assert "3 claims (2 of 1, 3 of 1, 4 of 1)" in message, message


@pytest.mark.parametrize("rejected", [SUMMARY_IDS, SUMMARY_IDS + 1])
def test_the_message_names_at_most_ten_rejected_clients_and_counts_the_rest(rejected: int) -> None:
    # Prepare / Act: n = 14, t = 6 (semi-honest default); the last `rejected` clients (10 or 11)
    # send a truncated AdvertiseKeys: 4 or 3 remain
    hostile = range(15 - rejected, 15)

    def tamper(round_: Round, direction: str, client: int, data: bytes) -> bytes:
        return data[:-3] if (round_, direction) == (Round.ADVERTISE_KEYS, "up") and client in hostile else data

    with pytest.raises(ThresholdError) as caught:
        _session(SEMI_HONEST, 14, tamper)

    # Assert: every rejection in the record; the message names ten, then counts the rest
    report = _report(caught.value)
    assert [client for client, _ in report.server_rejected] == list(hostile)
    named = ", ".join(f"{client} at AdvertiseKeys" for client in list(hostile)[:SUMMARY_IDS])
    more = "" if rejected == SUMMARY_IDS else " and 1 more"
    assert f"Rejected: {rejected} clients ({named}{more}); " in str(caught.value), str(caught.value)


def test_a_client_that_aborted_itself_is_in_the_record_as_a_completed_session_has_it() -> None:
    # Prepare: the relay gives client 2 a share delivery of another session (2 refuses it and
    # aborts) and client 3 goes silent at MaskedInput: n = 3, t = 2, 1 remains
    def tamper(round_: Round, direction: str, client: int, data: bytes) -> bytes:
        if (round_, direction, client) != (Round.MASKED_INPUT, "down", 2):
            return data
        delivery = wire.decode(data, ShareDelivery)
        return wire.encode(dataclasses.replace(delivery, session_id=bytes(32)))

    completed = _session(SEMI_HONEST, 3, tamper)  # without the dropout: 2's error is in client_errors
    assert set(completed.client_errors) == {2}

    # Act
    with pytest.raises(ThresholdError) as caught:
        _session(SEMI_HONEST, 3, tamper, {3: Round.MASKED_INPUT})

    # Assert: the driver's record of 2's own abort, as the completed session's
    report = _report(caught.value)
    assert set(report.client_errors) == {2}, report
    assert str(report.client_errors[2]) == str(completed.client_errors[2])
    assert dict(report.dropped) == {2: "MaskedInputCollection", 3: "MaskedInputCollection"}


def _lie_about(holder: int, owner: int) -> Tamper:
    """``holder`` reveals a wrong share of ``owner``'s self-mask seed at Unmasking."""

    def tamper(round_: Round, direction: str, client: int, data: bytes) -> bytes:
        if (round_, direction, client) != (Round.UNMASKING, "up", holder):
            return data
        response = wire.decode(data, UnmaskResponse)
        lie = tuple(
            ShareEntry(e.owner, ((int.from_bytes(e.share, "big") + 1) % shamir.PRIME).to_bytes(len(e.share), "big"))
            if e.owner == owner else e
            for e in response.self_mask_shares
        )
        return wire.encode(dataclasses.replace(response, self_mask_shares=lie))

    return tamper


def test_a_liar_outvoted_before_an_unmask_step_aborts_is_recorded_as_a_completed_session_records_it() -> None:
    # Prepare: n = 5, t = 3. Client 2 reveals a wrong share of client 1's seed (5 shares: outvoted,
    # 2 recorded as a liar): that is the record a completed session holds
    completed = _session(SEMI_HONEST, 5, _lie_about(2, 1))
    assert [client for client, _ in completed.server_rejected] == [2]
    lie, corrupt = _lie_about(2, 1), _corrupt_boxes(3, (1, 2, 4))

    def both(round_: Round, direction: str, client: int, data: bytes) -> bytes:
        return corrupt(round_, direction, client, lie(round_, direction, client, data))

    # Act: the same, and the relay corrupts client 3's boxes to 1, 2 and 4: after client 1's seed is
    # recovered (2 outvoted), client 3's has 2 shares < t and the session aborts
    with pytest.raises(ThresholdError) as caught:
        _session(SEMI_HONEST, 5, both)

    # Assert: the liar the step found before it aborted is in the record, as the completed session's
    report = _report(caught.value)
    assert report.server_rejected == completed.server_rejected, report
    assert report.share_refusals == ((1, 3), (2, 3), (4, 3))
    # The summary names 2 as a share liar, apart from the rejected (its response was used, its input
    # is in the sum, and it or the owner lied: spec 12.9), as Flower's report does not count it dropped
    message = str(caught.value)
    assert "Rejected:" not in message, message
    assert "Named as share liars: 1 client (2 about 1's self-mask seed): the holder revealed a wrong share or " \
        "the owner dealt it one (spec 12.9)" in message, message


@pytest.mark.parametrize("silent", [SUMMARY_IDS, SUMMARY_IDS + 1])
def test_the_message_names_at_most_ten_dropped_clients_per_round_and_counts_the_rest(silent: int) -> None:
    # Prepare / Act: n = 14, t = 6 (semi-honest default); the last `silent` clients (10 or 11) never
    # advertise keys: 4 or 3 remain
    gone = list(range(15 - silent, 15))
    with pytest.raises(ThresholdError) as caught:
        _session(SEMI_HONEST, 14, lambda r, d, c, data: data, dict.fromkeys(gone, Round.ADVERTISE_KEYS))

    # Assert: every one in the record; the message names ten per round, then counts the rest
    report = _report(caught.value)
    assert dict(report.dropped) == dict.fromkeys(gone, "AdvertiseKeys")
    more = "" if silent == SUMMARY_IDS else " and 1 more"
    named = ", ".join(map(str, gone[:SUMMARY_IDS]))
    assert f"Clients that dropped: {named}{more} at AdvertiseKeys." in str(caught.value), str(caught.value)
