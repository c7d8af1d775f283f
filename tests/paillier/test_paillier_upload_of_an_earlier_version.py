"""An upload without the proof of plaintext knowledge (a sender of the version before the proofs)
is refused saying so.

Since uploads carry the proof's three words, an upload of the earlier format (the ciphertexts
alone) is refused for its size; the refusal said only "has 64 bytes of ciphertexts, expected 256"
(a 256-bit test key, one ciphertext), which leaves the operator of a federation upgraded in part to
find out why. At exactly the size of the ciphertexts alone it now names the missing proof and the
earlier version; one word off that size keeps the plain size refusal."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import DecodeError
from secagg.paillier import Client, SessionParameters, SlotLayout
from secagg.paillier.parameters import check_upload

from .helpers import IDENTITIES, identity_keys, signed_upload, threshold_material

ROSTER = (1, 2, 3, 4)


def _params() -> SessionParameters:
    material = threshold_material(256, 4, 3)
    return SessionParameters(
        public=material.public, layout=SlotLayout(16, 4, 256), vector_length=8, roster=ROSTER,
        min_contributors=3, identity_keys=identity_keys(ROSTER), context=bytes(32),
    )


@pytest.mark.parametrize(("extra_words", "match"), [
    (0, r"no proof of plaintext knowledge.*earlier version"),
    (1, r"has \d+ bytes of ciphertexts, expected \d+$"),
])  # fmt: skip
def test_an_upload_without_its_proof_is_named_as_one_of_an_earlier_version(extra_words: int, match: str) -> None:
    # Prepare: an honest upload cut to its ciphertext words (+ extra_words words), re-signed by its sender
    params = _params()
    honest = Client(params, 2, IDENTITIES[2]).upload(np.arange(8))
    width = params.public.key.ciphertext_bytes
    data = honest.ciphertexts[: params.aggregate_data_bytes + extra_words * width]
    upload = signed_upload(params.session_id, 2, 8, data)

    # Execute / Assert
    with pytest.raises(DecodeError, match=match):
        check_upload(params, upload, "server")
