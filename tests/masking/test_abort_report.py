"""An aborted session's report names every client the server rejected, and why.

A malformed or hostile message makes its sender a dropout of that round, with the reason in
``ServerState.rejected``. When the round then falls below the threshold the step raises
ThresholdError and that state is never returned. Before, the error's message listed the rejected
client only among those that "dropped", so a hostile message and a silent client read the same,
and the reason was lost. Then the message ended with each rejected client and its reason; now it
names each rejected client once with the message rejected (``Rejected: 1 client (2 at
MaskedInput)``), and the reasons, this step's and earlier ones, are in the error's
:class:`~secagg.masking.AbortReport` (tests/masking/test_abort_record.py checks it field by field).
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import AuthenticationError, ThresholdError
from secagg.masking import ACTIVE, SEMI_HONEST, MaskingConfig, Round, abort_report, make_identities, run_session
from secagg.masking.session import ZERO_CONTEXT
from secagg.primitives.randomness import InsecureDeterministicRandom

from .harness import truncate_4_and_lie_about_1s_seed

# The message type the server expects in each round: the rejection reason starts with it.
EXPECTED = {
    Round.ADVERTISE_KEYS: "AdvertiseKeys",
    Round.SHARE_KEYS: "EncryptedShares",
    Round.MASKED_INPUT: "MaskedInput",
    Round.CONSISTENCY_CHECK: "ConsistencySignature",
    Round.UNMASKING: "UnmaskResponse",
}


def _abort(mode: str, num_clients: int, hostile: int, at: Round, dropouts: dict[int, Round]) -> tuple[str, str]:
    """Run a session in which ``hostile`` sends a truncated message at round ``at`` and ``dropouts``
    go silent; it must abort: return the ThresholdError's message and its report's rejections,
    one ``client N (reason)`` each."""
    identities, public = make_identities(num_clients, InsecureDeterministicRandom(num_clients))
    config = MaskingConfig.secagg(num_clients, 4, mode=mode, identity_keys=public if mode == ACTIVE else ())
    inputs = {c: np.full(4, c, dtype=config.ring.dtype) for c in range(1, num_clients + 1)}

    def tamper(round_: Round, direction: str, client: int, data: bytes) -> bytes:
        return data[:-3] if (round_, direction, client) == (at, "up", hostile) else data

    with pytest.raises(ThresholdError) as caught:
        run_session(config, inputs, dropouts, context=ZERO_CONTEXT, identities=identities if mode == ACTIVE else None,
                    random_bytes=InsecureDeterministicRandom(3), tamper=tamper)
    report = abort_report(caught.value)
    assert report is not None
    return str(caught.value), "; ".join(f"client {client} ({reason})" for client, reason in report.server_rejected)


@pytest.mark.parametrize(("mode", "at"), [(mode, at) for mode in (SEMI_HONEST, ACTIVE) for at in EXPECTED
                                          if mode == ACTIVE or at != Round.CONSISTENCY_CHECK])
def test_a_message_rejected_in_the_aborting_round_is_named_with_its_reason(mode: str, at: Round) -> None:
    # Prepare / Act: n = 3, t = 2: client 2's message of round `at` is truncated and client 3 goes silent there
    message, rejected = _abort(mode, 3, hostile=2, at=at, dropouts={3: at})

    # Assert: the report says client 2 was rejected, at which message, and why; client 3 only dropped
    assert f"Rejected: 1 client (2 at {EXPECTED[at]})" in message, message
    assert f"client 2 ({EXPECTED[at]}: " in rejected, rejected
    assert "DecodeError" in rejected or "truncated" in rejected or "bytes" in rejected, rejected
    assert "client 3" not in rejected, rejected


def test_a_message_rejected_in_an_earlier_round_is_named_when_a_later_round_aborts() -> None:
    # Prepare / Act: n = 4, t = 3 (semi-honest default): client 4's AdvertiseKeys is truncated (the
    # session goes on with 3), then client 3 goes silent at MaskedInputCollection: 2 < t remain
    message, rejected = _abort(SEMI_HONEST, 4, hostile=4, at=Round.ADVERTISE_KEYS, dropouts={3: Round.MASKED_INPUT})

    # Assert
    assert "after MaskedInputCollection" in message
    assert "Rejected: 1 client (4 at AdvertiseKeys)" in message, message
    assert "client 4 (AdvertiseKeys: " in rejected, rejected
    assert "client 3" not in rejected, rejected


def test_an_unrecoverable_secret_names_the_clients_rejected_in_that_step() -> None:
    # Prepare: n = 4, t = 3 (semi-honest default). At Unmasking client 4's response is truncated
    # (rejected) and client 2 reveals a wrong share of client 1's self-mask seed, which then has
    # exactly t shares (its own, 2's and 3's): no t of them reconstruct its commitment
    config = MaskingConfig.secagg(4, 4, mode=SEMI_HONEST)
    assert config.threshold == 3
    inputs = {c: np.full(4, c, dtype=config.ring.dtype) for c in range(1, 5)}

    tamper = truncate_4_and_lie_about_1s_seed

    # Act
    with pytest.raises(AuthenticationError) as caught:
        run_session(config, inputs, context=ZERO_CONTEXT, random_bytes=InsecureDeterministicRandom(3), tamper=tamper)

    # Assert: whose secret failed, and the step's rejection with its reason
    message = str(caught.value)
    assert "client 1's self-mask seed" in message
    assert "Rejected: 1 client (4 at UnmaskResponse)" in message, message
    report = abort_report(caught.value)
    assert report is not None and [c for c, _ in report.server_rejected] == [4], report
    assert report.server_rejected[0][1].startswith("UnmaskResponse: "), report
