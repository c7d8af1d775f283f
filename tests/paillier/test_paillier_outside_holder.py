"""A share holder outside the roster (``own_upload=NO_OWN_UPLOAD``) and a lying server.

Such a holder has no own upload to find in a sum, so it decrypts any sum of at least
``min_contributors`` signed, proven uploads of the session (binding rule (e) given up). These tests
attack it with a lying server and c colluding hospitals and find that it gives the server nothing
beyond the stated guarantee, for two reasons the holder needs no roster for:

- every honest holder answers one aggregate per session and the key keeps ``2t > l + c``, where l
  counts every share of the key, inside the roster or not: two aggregates never both reach t;
- the one aggregate decrypted holds at least ``min_contributors >= c + 2`` uploads, so at least two
  honest ones.

One colluder past the guarantee (c = min_contributors - 1), the same search finds the leak, and the
outside holder is what makes it: the tests run it with and without that holder.

The first reason is the holder's memory of its one answer, which ``DecryptingParty`` keeps in the
object only: the last test pins that limit (an outside holder rebuilt for a second request leaks an
update at the stated c; kept for the session, it refuses; rebuilt on its answer journal, it refuses too:
test_paillier_answer_journal.py).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from secagg.errors import ProtocolError, ReplayError, SecAggError
from secagg.paillier import IN_MEMORY_ONLY, NO_OWN_UPLOAD, Client, DecryptingParty, SessionParameters, SlotLayout
from secagg.paillier.messages import DecryptionRequest, EncryptedVector
from secagg.paillier.packing import unpack
from secagg.paillier.threshold import combine_partials
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import IDENTITIES, identity_keys, threshold_material

LENGTH = 4
ROSTER = (1, 2, 3, 4)
OUTSIDE = 5  # holds share 5 of the 4-of-5 key, sends no upload, is not in the roster
HOLDERS = (*ROSTER, OUTSIDE)
MIN_CONTRIBUTORS = 3
THRESHOLD = 4
INPUTS = {k: np.arange(LENGTH, dtype=np.int64) * (k + 2) + 11 * k for k in ROSTER}
SUBSETS = tuple(s for size in range(1, len(ROSTER) + 1) for s in itertools.combinations(ROSTER, size))


def _session() -> tuple[SessionParameters, dict[int, EncryptedVector]]:
    material = threshold_material(256, len(HOLDERS), THRESHOLD)
    params = SessionParameters(
        public=material.public, layout=SlotLayout(16, len(HOLDERS), 256), vector_length=LENGTH, roster=ROSTER,
        min_contributors=MIN_CONTRIBUTORS, identity_keys=identity_keys(ROSTER), context=bytes(32),
    )
    uploads = {
        k: Client(params, k, IDENTITIES[k], random_bytes=InsecureDeterministicRandom(k)).upload(INPUTS[k])
        for k in ROSTER
    }
    return params, uploads


PARAMS, UPLOADS = _session()


def _party(holder: int) -> DecryptingParty:
    """A fresh honest party: a roster hospital checks for its own upload, the outside holder cannot."""
    own = UPLOADS[holder].digest if holder in UPLOADS else NO_OWN_UPLOAD
    share = threshold_material(256, len(HOLDERS), THRESHOLD).shares[holder - 1]
    return DecryptingParty(PARAMS, share, own_upload=own, journal=IN_MEMORY_ONLY)


def _request(holder: int, subset: tuple[int, ...]) -> DecryptionRequest:
    return DecryptionRequest(PARAMS.session_id, holder, tuple(UPLOADS[k] for k in subset))


def _answers(holder: int, subset: tuple[int, ...]) -> bool:
    """Whether an honest ``holder`` answers the lying server's request for the sum of ``subset``."""
    try:
        _party(holder).respond(_request(holder, subset))
    except SecAggError:
        return False
    return True


ELIGIBLE = {holder: tuple(s for s in SUBSETS if _answers(holder, s)) for holder in HOLDERS}


def _leaks(colluders: tuple[int, ...], victim: int, holders: tuple[int, ...]) -> tuple[int, ...] | None:
    """Every strategy of a lying server with ``colluders`` (share holders that answer every request
    and tell the server their inputs): each honest holder answers at most one aggregate of its
    choosing (among those it accepts); a sum reaches t answers with the colluders'. Returns a decrypted
    set whose sums, with the colluders' inputs, give ``victim``'s input alone, or None."""
    honest = [h for h in holders if h not in colluders]
    known = [np.eye(len(ROSTER))[ROSTER.index(c)] for c in colluders if c in ROSTER]
    target = np.eye(len(ROSTER))[ROSTER.index(victim)]
    for choice in itertools.product(*[(None, *ELIGIBLE[h]) for h in honest]):
        counts: dict[tuple[int, ...], int] = {}
        for subset in choice:
            if subset is not None:
                counts[subset] = counts.get(subset, 0) + 1
        decrypted = [s for s, n in counts.items() if n + sum(c in holders for c in colluders) >= THRESHOLD]
        rows = known + [np.isin(ROSTER, s).astype(float) for s in decrypted]
        if rows and np.linalg.matrix_rank(np.vstack(rows)) == np.linalg.matrix_rank(np.vstack([*rows, target])):
            return min(decrypted, key=len) if decrypted else ()
    return None


def test_the_outside_holder_refuses_a_single_upload_and_any_sum_of_too_few() -> None:
    party = _party(OUTSIDE)
    for victim in ROSTER:
        with pytest.raises(ProtocolError, match="at least 3 are required"):
            party.respond(_request(OUTSIDE, (victim,)))
        with pytest.raises(ProtocolError, match="at least 3 are required"):
            party.respond(_request(OUTSIDE, (victim, victim % 4 + 1)))
    assert ELIGIBLE[OUTSIDE] == tuple(s for s in SUBSETS if len(s) >= MIN_CONTRIBUTORS)
    assert all(own in s for own in ROSTER for s in ELIGIBLE[own])  # the roster hospitals keep rule (e)


def test_the_outside_holder_answers_one_aggregate_per_session() -> None:
    party = _party(OUTSIDE)
    first = party.respond(_request(OUTSIDE, (1, 2, 3, 4)))
    assert party.respond(_request(OUTSIDE, (1, 2, 3, 4))) == first  # the same aggregate: the same answer
    with pytest.raises(ReplayError, match="already answered a different aggregate"):
        party.respond(_request(OUTSIDE, (2, 3, 4)))


def test_a_lying_server_with_the_outside_holder_learns_no_update_at_the_guarantee() -> None:
    assert PARAMS.guarantee.colluders == 1  # min(t - 1, min_contributors - 2, 2t - l - 1) = min(3, 1, 2)
    for colluders in itertools.combinations(HOLDERS, PARAMS.guarantee.colluders):  # the outside holder too
        for victim in (k for k in ROSTER if k not in colluders):
            assert _leaks(colluders, victim, HOLDERS) is None, (colluders, victim)


def test_one_colluder_past_the_guarantee_the_outside_holder_leaks_an_update() -> None:
    """c = 2 = min_contributors - 1: hospitals 3 and 4 collude; the outside holder's answer is the
    fourth the sum of {1, 3, 4} needs (hospital 2 refuses it: its upload is not in it)."""
    colluders, victim = (3, 4), 1
    assert _leaks(colluders, victim, HOLDERS) == (1, 3, 4)
    assert _leaks(colluders, victim, ROSTER) is None  # without the outside holder: no leak
    # The attack, run: honest 1 and the outside holder answer once, the colluders answer too.
    partials = {}
    for holder in (1, 3, 4, OUTSIDE):
        answer = _party(holder) if holder not in colluders else DecryptingParty(
            PARAMS, threshold_material(256, len(HOLDERS), THRESHOLD).shares[holder - 1], own_upload=NO_OWN_UPLOAD,
            journal=IN_MEMORY_ONLY,
        )
        partial = answer.respond(_request(holder, (1, 3, 4)))
        partials[holder] = PARAMS.public.key.parse_ciphertexts(partial.values, "test")
    total = unpack(combine_partials(PARAMS.public, partials), PARAMS.layout, LENGTH, 3)
    assert np.array_equal(total - INPUTS[3] - INPUTS[4], INPUTS[victim])


def test_the_limit_an_outside_holder_that_forgets_its_answer_leaks_an_update_at_the_stated_c() -> None:
    """Premise (1) is the holder's memory: ``DecryptingParty`` keeps its one answer in the object.
    An outside holder rebuilt for a second request (restarted, or a service that builds a party per
    request) answers twice, and has no upload record to fail closed on. Over a 5-of-7 key with a
    6-hospital roster and min_contributors 4 (c = 2, bound by 2t - l - 1), colluders 5 and 6 and
    the forgetful holder 7 are three answers to each of two sums that differ in hospital 1's upload;
    two honest hospitals complete each. The same holder kept for the session refuses the second."""
    material = threshold_material(256, 7, 5)
    roster = (1, 2, 3, 4, 5, 6)
    params = SessionParameters(
        public=material.public, layout=SlotLayout(16, len(roster), 256), vector_length=LENGTH, roster=roster,
        min_contributors=4, identity_keys=identity_keys(roster), context=bytes(32),
    )
    assert params.guarantee.colluders == 2  # min(t - 1, min_contributors - 2, 2t - l - 1) = min(4, 2, 2)
    inputs = {k: np.arange(LENGTH, dtype=np.int64) * (k + 3) - 7 * k for k in roster}
    uploads = {
        k: Client(params, k, IDENTITIES[k], random_bytes=InsecureDeterministicRandom(50 + k)).upload(inputs[k])
        for k in roster
    }

    def party(holder: int) -> DecryptingParty:
        honest = holder in (1, 2, 3, 4)  # 5 and 6 collude; 7 holds a share, no upload
        own = uploads[holder].digest if honest else NO_OWN_UPLOAD
        return DecryptingParty(params, material.shares[holder - 1], own_upload=own, journal=IN_MEMORY_ONLY)

    def answer(holder: DecryptingParty, subset: tuple[int, ...]) -> list[Any]:
        request = DecryptionRequest(params.session_id, holder.index, tuple(uploads[k] for k in subset))
        return params.public.key.parse_ciphertexts(holder.respond(request).values, "test")

    every, without_victim = roster, (2, 3, 4, 5, 6)
    outside = party(7)
    first = {h: answer(party(h), every) for h in (1, 2, 5, 6)} | {7: answer(outside, every)}
    # Kept for the session, holder 7 refuses the second sum: it is then 3, 4, 5, 6, one short of t.
    with pytest.raises(ReplayError, match="already answered a different aggregate"):
        answer(outside, without_victim)
    # Rebuilt (the memory lost), it answers again: the second sum reaches t.
    second = {h: answer(party(h), without_victim) for h in (3, 4, 5, 6, 7)}
    sums = [
        unpack(combine_partials(params.public, partials), params.layout, LENGTH, len(subset))
        for partials, subset in ((first, every), (second, without_victim))
    ]
    assert np.array_equal(sums[0] - sums[1], inputs[1])  # hospital 1's update, at the stated c
