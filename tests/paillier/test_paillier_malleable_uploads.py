"""One colluding hospital cannot cancel the others' uploads: every upload proves knowledge of its plaintexts.

The attack (a lying server plus ONE colluding hospital, within the computed guarantee of the
default 3-of-4 key: c = 1). The server forwards the honest uploads of hospitals 2 and 3 to the
colluder (hospital 4) before it uploads; the colluder uploads, signed with its own enrolled
identity key, ``Enc(k) * (C_2 * C_3)^-1``: a valid ciphertext vector in Z*_(n^2) whose plaintext is
``k - m_2 - m_3 mod n``. The server asks for the sum of all four uploads: before uploads carried a
proof of plaintext knowledge, every check of a decrypting party passed (four distinct signed uploads
of its session, at least min_contributors, its own upload unchanged, one aggregate), three honest
holders answered, and the sum was ``m_1 + k``: hospital 1's update, which even the honest decoder
returned as "the sum" (k puts the offsets of the cancelled summands back).

Now each upload ends with a proof of knowledge of its plaintexts and randomness, bound to the
session and the client (:mod:`secagg.paillier.plaintext_proofs`); the colluder, which knows neither
m_2 nor the randomness of C_2, can only append a proof it has: hospital 2's, or one of its own
honest upload. Both are refused by the server and by every decrypting party, and the round goes on
without the colluder (one faulty party costs only itself). The colluder adapts to the format: it
appends what follows the ciphertext words of an honest upload (nothing, before the proofs).
"""

from __future__ import annotations

import gmpy2
import numpy as np
import pytest

from secagg import wire
from secagg.errors import AuthenticationError
from secagg.paillier import Client, DecryptingParty, Encryptor, Server, SessionParameters, SlotLayout
from secagg.paillier.messages import DecryptionRequest, EncryptedVector

from .helpers import IDENTITIES, identity_keys, signed_upload, threshold_material

LENGTH = 8
ROSTER = (1, 2, 3, 4)
VICTIM, COLLUDER = 1, 4


def _params() -> SessionParameters:
    material = threshold_material(256, 4, 3)  # the default threshold of four hospitals
    return SessionParameters(
        public=material.public, layout=SlotLayout(16, 4, 256), vector_length=LENGTH, roster=ROSTER,
        min_contributors=3, identity_keys=identity_keys(ROSTER), context=bytes(32),
    )


def _cancelling_upload(params: SessionParameters, honest: list[EncryptedVector], tail: bytes) -> EncryptedVector:
    """The colluder's upload: Enc(k) * (product of ``honest``)^-1, then ``tail`` (the best proof it
    has), signed with its own identity key; k holds (len(honest) + 1) offsets per slot, so the sum
    decodes to the victim's values."""
    key, layout = params.public.key, params.layout
    nsquare, width = key.nsquare, key.ciphertext_bytes
    restore = (len(honest) + 1) * layout.offset
    plaintexts = [sum(restore << (slot * layout.width) for slot in range(LENGTH))]
    words = [int(c) for c in Encryptor(key).encrypt(plaintexts)]
    for upload in honest:
        ciphertexts = key.parse_ciphertexts(upload.ciphertexts[: len(words) * width], "forwarded upload")
        for position, c in enumerate(ciphertexts):
            words[position] = words[position] * int(gmpy2.invert(c, nsquare)) % nsquare
    data = b"".join(word.to_bytes(width, "big") for word in words)
    return signed_upload(params.session_id, COLLUDER, LENGTH, data + tail)


def _proof_of(params: SessionParameters, upload: EncryptedVector) -> bytes:
    """What follows the ciphertext words of ``upload``: its proof (nothing before the proofs)."""
    return upload.ciphertexts[params.num_ciphertexts * params.public.key.ciphertext_bytes :]


@pytest.mark.parametrize("proof", ["hospital 2's proof", "the colluder's own proof"])
def test_one_colluder_cannot_cancel_the_other_uploads_to_isolate_one_hospital(proof: str) -> None:
    # Prepare: the default 4-hospital session (3-of-4 key, min_contributors 3) claims c = 1
    params = _params()
    assert params.guarantee.colluders == 1
    material = threshold_material(256, 4, 3)
    rng = np.random.default_rng(5)
    inputs = {c: rng.integers(-(2**15), 2**15, LENGTH) for c in (1, 2, 3, 4)}
    uploads = {c: Client(params, c, IDENTITIES[c]).upload(inputs[c]) for c in (1, 2, 3)}
    own = Client(params, COLLUDER, IDENTITIES[COLLUDER]).upload(inputs[COLLUDER])
    tail = _proof_of(params, uploads[2] if proof == "hospital 2's proof" else own)
    forged = _cancelling_upload(params, [uploads[2], uploads[3]], tail)
    server = Server(params)
    for client in (1, 2, 3):
        server.receive_upload(wire.encode(uploads[client]))
    # Act / Assert: the server refuses the forged upload, naming the missing proof
    with pytest.raises(AuthenticationError, match="proof of knowledge"):
        server.receive_upload(wire.encode(forged))
    # Assert: a lying server that keeps it anyway gets no partial decryption of a sum holding it
    request = DecryptionRequest(params.session_id, 1, (uploads[1], uploads[2], uploads[3], forged))
    for party in (1, 2, 3):
        holder = DecryptingParty(params, material.shares[party - 1], own_upload=uploads[party].digest)
        lying = DecryptionRequest(params.session_id, party, request.uploads)
        with pytest.raises(AuthenticationError, match="proof of knowledge"):
            holder.respond(wire.encode(lying))
    # Assert: the round goes on without the colluder: the exact sum of the three honest updates
    for party in (1, 2, 3):
        holder = DecryptingParty(params, material.shares[party - 1], own_upload=uploads[party].digest)
        server.receive_partial(holder.respond(server.decryption_request(party)))
    np.testing.assert_array_equal(server.finish(), inputs[1] + inputs[2] + inputs[3])
