"""An upload (its ciphertexts and the three words of its proof of plaintext knowledge) must fit the
wire's 2^30-byte ciphertext field: a session whose uploads could not be encoded is refused when its
parameters are made, not after every hospital has encrypted and proved its vector (the encoder's
EncodeError, then the server's DecodeError). Tested at the bound and one past it."""

from __future__ import annotations

import pytest

from secagg.errors import ConfigurationError
from secagg.paillier import SessionParameters, SlotLayout
from secagg.paillier.messages import MAX_CIPHERTEXT_DATA
from secagg.paillier.plaintext_proofs import PROOF_WORDS

from .helpers import identity_keys, threshold_material


def _params(vector_length: int) -> SessionParameters:
    material = threshold_material(256, 3, 2)
    return SessionParameters(
        public=material.public, layout=SlotLayout(16, 3, 256), vector_length=vector_length, roster=(1, 2, 3),
        min_contributors=2, identity_keys=identity_keys((1, 2, 3)), context=bytes(32),
    )


def _largest_length() -> int:
    """The longest vector whose upload, proof included, fits the wire's ciphertext field."""
    material = threshold_material(256, 3, 2)
    width = material.public.key.ciphertext_bytes
    slots = SlotLayout(16, 3, 256).slots_per_plaintext
    return (MAX_CIPHERTEXT_DATA // width - PROOF_WORDS) * slots


def test_the_longest_vector_whose_upload_fits_the_wire_is_accepted() -> None:
    # Execute
    params = _params(_largest_length())
    # Assert: its upload is exactly as large as the wire allows, to within one word
    assert MAX_CIPHERTEXT_DATA - params.public.key.ciphertext_bytes < params.upload_data_bytes <= MAX_CIPHERTEXT_DATA


def test_one_value_more_is_refused_when_the_session_is_made() -> None:
    # Prepare: one more value takes one more ciphertext, past the wire's field
    length = _largest_length() + 1
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"upload.*bytes.*wire"):
        _params(length)
