"""Paillier's sum-size bound, c <= min_contributors - 2, attacked through real uploads and decryptions.

A decrypting party answers only for a sum of at least ``min_contributors`` (m) genuine uploads of its
session holding its own (the single-key holder, which uploads nothing, checks the count only). The
smallest sum a lying server can have decrypted therefore holds m uploads. The server keeps only the
victim's and the colluders' uploads (it claims the other hospitals' never arrived) and asks the key
holders among them to decrypt:

- one past the bound, c + 1 = m - 1 colluders: the decrypted sum less their own uploads is the
  victim's upload, exactly (the bound is tight, not just conservative);
- at the bound, c colluders: the sum of their uploads and the victim's (m - 1 uploads) is refused by
  every party asked, and the smallest sum they reach (the victim, one other honest hospital and the c
  colluders) leaves, less the colluders' uploads, the sum of two honest uploads, which is neither.

Only shapes whose guarantee is bound by m - 2 (alone or tied with the split of
tests/paillier/test_paillier_guarantee.py) and whose t <= m (the m uploaders can supply t partial
decryptions) are attacked here; the others are the split's.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import ProtocolError
from secagg.paillier import (
    IN_MEMORY_ONLY,
    NO_OWN_UPLOAD,
    Client,
    DecryptingParty,
    Server,
    SessionParameters,
    SlotLayout,
)
from secagg.paillier.ceremony import SingleKeyMaterial, ThresholdKeyMaterial
from secagg.paillier.messages import DecryptionRequest, EncryptedVector
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import IDENTITIES, identity_keys, single_material, threshold_material

LENGTH = 4
VICTIM = 1
Material = ThresholdKeyMaterial | SingleKeyMaterial


def _params(material: Material, hospitals: int, min_contributors: int) -> SessionParameters:
    roster = tuple(range(1, hospitals + 1))
    return SessionParameters(
        public=material.public, layout=SlotLayout(16, hospitals, material.public.key.key_bits), vector_length=LENGTH,
        roster=roster, min_contributors=min_contributors, identity_keys=identity_keys(roster), context=bytes(32),
    )  # fmt: skip


def _inputs(hospitals: int) -> dict[int, np.ndarray]:
    return {k: np.arange(LENGTH, dtype=np.int64) * (2 * k + 1) - 5 * k for k in range(1, hospitals + 1)}


def _uploads(params: SessionParameters, inputs: dict[int, np.ndarray]) -> dict[int, EncryptedVector]:
    return {
        k: Client(params, k, IDENTITIES[k], random_bytes=InsecureDeterministicRandom(k)).upload(vector)
        for k, vector in inputs.items()
    }


def _party(material: Material, params: SessionParameters, k: int, upload: EncryptedVector) -> DecryptingParty:
    """Hospital k's decrypting party (threshold), or the single key holder (which sent no upload)."""
    if isinstance(material, SingleKeyMaterial):
        return DecryptingParty(params, material.private, own_upload=NO_OWN_UPLOAD, journal=IN_MEMORY_ONLY)
    return DecryptingParty(params, material.shares[k - 1], own_upload=upload.digest)


def _decrypt(material: Material, params: SessionParameters, uploads: dict[int, EncryptedVector],
             members: list[int]) -> np.ndarray:
    """The lying server's sum of ``members``' uploads only, decrypted by the members' key shares (or
    the key holder); ProtocolError from a party that refuses it."""
    server = Server(params)
    for k in members:
        server.receive_upload(uploads[k])
    holders = [1] if isinstance(material, SingleKeyMaterial) else members[: params.public.threshold]
    for k in holders:
        request = DecryptionRequest(params.session_id, k, tuple(uploads[j] for j in sorted(members)))
        answer = _party(material, params, k, uploads[k]).respond(request)
        assert server.decryption_request(k) == request  # the request the server's own state sends
        server.receive_partial(answer)
    return server.finish()


SHAPES = [
    # (mode, hospitals, t, m): single-key at every m; threshold at the defaults of 3..5 hospitals
    # (t = m, the split tied with m - 2) and t = l = m (m - 2 alone binds)
    *(("single", n, 1, m) for n in (3, 4, 5, 6) for m in range(2, n + 1)),
    ("threshold", 3, 2, 2), ("threshold", 4, 3, 3), ("threshold", 5, 4, 4),
    ("threshold", 4, 4, 4), ("threshold", 5, 5, 5),
]


@pytest.mark.parametrize(("mode", "hospitals", "t", "m"), SHAPES, ids=str)
def test_c_colluders_leave_two_honest_uploads_in_the_smallest_sum_and_c_plus_one_read_the_victims(
    mode: str, hospitals: int, t: int, m: int
) -> None:
    # Prepare: the key and the session; the computed guarantee is bound by m - 2 here
    material = single_material(256) if mode == "single" else threshold_material(256, hospitals, t)
    params = _params(material, hospitals, m)
    c = params.guarantee.colluders
    assert c == m - 2
    inputs = _inputs(hospitals)
    uploads = _uploads(params, inputs)
    colluders = list(range(hospitals - c, hospitals + 1))  # c + 1 of them: the last c + 1 hospitals
    assert VICTIM not in colluders
    # One past the bound: the victim and c + 1 colluders make a sum of m; less theirs, it is the victim's
    total = _decrypt(material, params, uploads, [VICTIM, *colluders])
    residue = total - np.sum([inputs[k] for k in colluders], axis=0)
    np.testing.assert_array_equal(residue, inputs[VICTIM])
    # At the bound: c colluders and the victim are one upload short; every party asked refuses
    at_bound = colluders[1:]
    assert len(at_bound) == c
    with pytest.raises(ProtocolError, match="refusing to decrypt a sum of"):
        _decrypt(material, params, uploads, [VICTIM, *at_bound])
    # ... the smallest sum they can have decrypted holds a second honest upload: the residue is both
    other = 2
    assert other not in at_bound
    total = _decrypt(material, params, uploads, [VICTIM, other, *at_bound])
    residue = total - np.sum([inputs[k] for k in at_bound], axis=0)
    np.testing.assert_array_equal(residue, inputs[VICTIM] + inputs[other])
    assert not any(np.array_equal(residue, inputs[k]) for k in (VICTIM, other))
