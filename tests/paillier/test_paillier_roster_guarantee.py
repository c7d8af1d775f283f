"""A session's dropouts are bounded by who decrypts it: its roster's hospitals, not every key share.

A threshold party decrypts only a sum that holds its own upload (binding rule (e) of
:mod:`secagg.paillier.protocol`), so the parties that can decrypt a session's sum are its own
hospitals: a session of n < l hospitals under a t-of-l key reaches t answers with at most n - t of
them gone, not the l - t the key alone allows. The stated d is attacked at its bound (the session
completes with the exact sum) and one past it (refused with ThresholdError, never a wrong sum).
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg import wire
from secagg.errors import ConfigurationError, ThresholdError
from secagg.paillier import Client, DecryptingParty, Server, SessionParameters, SlotLayout
from secagg.paillier.parameters import threshold_guarantee

from .helpers import IDENTITIES, identity_keys, threshold_material

LENGTH = 4


def _session(roster: tuple[int, ...], min_contributors: int) -> tuple[SessionParameters, object]:
    material = threshold_material(256, 5, 3)  # a 3-of-5 key; hospital i holds share i
    params = SessionParameters(
        public=material.public, layout=SlotLayout(16, 5, 256), vector_length=LENGTH, roster=roster,
        min_contributors=min_contributors, identity_keys=identity_keys(roster), context=bytes(32),
    )
    return params, material


def _run(roster: tuple[int, ...], min_contributors: int, dropped: int) -> tuple[np.ndarray, np.ndarray]:
    """Every roster hospital uploads; the first ``dropped`` of them then go silent (no partial
    decryption). Returns (the decrypted sum, the true sum of the uploads)."""
    params, material = _session(roster, min_contributors)
    server = Server(params)
    vectors = {c: np.arange(LENGTH, dtype=np.int64) * c - 3 for c in roster}
    digests = {}
    for client in roster:
        sender = Client(params, client, IDENTITIES[client])
        server.receive_upload(wire.encode(sender.upload(vectors[client])))
        assert sender.upload_digest is not None
        digests[client] = sender.upload_digest
    for client in roster[dropped:]:
        party = DecryptingParty(params, material.shares[client - 1], own_upload=digests[client])  # type: ignore[attr-defined]
        server.receive_partial(wire.encode(party.respond(wire.encode(server.decryption_request(client)))))
    return server.finish(), np.sum(list(vectors.values()), axis=0)


def test_a_session_of_fewer_hospitals_than_shares_states_n_minus_t_dropouts() -> None:
    # 4 of the key's 5 share holders, min_contributors 2: the key alone would allow l - t = 2
    params, _ = _session((1, 2, 3, 4), 2)
    assert params.guarantee.dropouts == 1  # n - t = 4 - 3
    assert "completes with up to 1 dropout" in str(params.guarantee)
    full, _ = _session((1, 2, 3, 4, 5), 2)
    assert full.guarantee.dropouts == 2  # a full roster: l - t, as before


def test_the_session_completes_with_its_stated_dropouts() -> None:
    params, _ = _session((1, 2, 3, 4), 2)
    aggregate, expected = _run((1, 2, 3, 4), 2, params.guarantee.dropouts)
    assert np.array_equal(aggregate, expected)


def test_one_dropout_past_the_stated_bound_is_refused_never_a_wrong_sum() -> None:
    params, _ = _session((1, 2, 3, 4), 2)
    with pytest.raises(ThresholdError):
        _run((1, 2, 3, 4), 2, params.guarantee.dropouts + 1)


def test_a_session_of_fewer_hospitals_than_t_has_no_guarantee() -> None:
    # 2 hospitals under a 3-of-5 key: its own hospitals never reach t partial decryptions
    with pytest.raises(ConfigurationError, match="never"):
        threshold_guarantee(5, 3, 2, 2)
    with pytest.raises(ConfigurationError, match="never"):
        _session((1, 2), 2)


@pytest.mark.parametrize(("parties", "threshold", "clients", "contributors", "dropouts"), [
    (5, 3, 5, 2, 2),  # full roster: l - t
    (5, 3, 4, 2, 1),  # n - t
    (5, 3, 3, 2, 0),  # n - t
    (5, 3, 4, 4, 0),  # n - min_contributors
    (7, 4, 6, 3, 2),  # n - t
    (1, 1, 6, 3, 3),  # single key: the key holder is not a hospital, n - min_contributors
])
def test_stated_dropouts_are_the_least_of_the_three_bounds(
    parties: int, threshold: int, clients: int, contributors: int, dropouts: int
) -> None:
    assert threshold_guarantee(parties, threshold, clients, contributors).dropouts == dropouts
