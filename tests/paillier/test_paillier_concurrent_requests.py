"""One DecryptingParty object answering two requests at once still answers one aggregate per session.

The object's memory of its answer was checked before the work and set after it, so a request arriving
from another thread while the first was being answered (a threaded service sharing one party, a
hospital's object kept for the session) passed the check too and got a second aggregate answered:
two sums that differ in one upload. A request that arrives while another is being answered is now
refused (ProtocolError: retry it), never waited on nor answered alongside.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from secagg.errors import ProtocolError, SecAggError
from secagg.paillier import IN_MEMORY_ONLY, NO_OWN_UPLOAD, DecryptingParty, _decrypting_party

from .helpers import threshold_material
from .test_paillier_answer_journal import EVERY, HOLDER, PARAMS, UPLOADS, WITHOUT_VICTIM, _request

SHARES = threshold_material(256, 7, 5).shares


@pytest.mark.parametrize("holder", [HOLDER, 2], ids=["no own upload, in memory only", "a hospital"])
def test_a_request_arriving_while_another_is_answered_is_refused(
    holder: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = NO_OWN_UPLOAD if holder == HOLDER else UPLOADS[holder].digest
    party = DecryptingParty(PARAMS, SHARES[holder - 1], own_upload=own, journal=IN_MEMORY_ONLY)
    real_check = _decrypting_party.check_upload
    outcome: list[Any] = []
    started: list[bool] = []

    def second_request() -> None:
        try:
            outcome.append(party.respond(_request(holder, WITHOUT_VICTIM)))
        except SecAggError as refusal:
            outcome.append(refusal)

    def check_upload(*args: Any, **kwargs: Any) -> Any:
        if not started:  # the first request is being answered: a second arrives from another thread
            started.append(True)
            thread = threading.Thread(target=second_request)
            thread.start()
            thread.join()
        return real_check(*args, **kwargs)

    monkeypatch.setattr(_decrypting_party, "check_upload", check_upload)
    first = party.respond(_request(holder, EVERY))
    (second,) = outcome
    assert isinstance(second, ProtocolError), f"a second aggregate was answered: {second!r}"
    assert "being answered" in str(second)
    monkeypatch.undo()
    assert party.respond(_request(holder, EVERY)) is first  # the same request again: the same answer
