"""Ed25519 identity keys (secagg.primitives.signing). The RFC 8032 vector lives
in test_known_answers.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import AuthenticationError, DecodeError
from secagg.primitives import signing
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey

MESSAGE = b"secagg/v1/advertise-keys||payload"


def key(seed: int = 1) -> SigningKey:
    return SigningKey.generate(InsecureDeterministicRandom(seed))


@given(message=st.binary(max_size=300), seed=st.integers(0, 2**32))
def test_sign_then_verify(message: bytes, seed: int) -> None:
    # Prepare
    signer = key(seed)

    # Execute
    signature = signer.sign(message)

    # Assert
    assert len(signature) == signing.SIGNATURE_SIZE
    assert len(signer.public) == signing.PUBLIC_KEY_SIZE
    signing.verify(signer.public, signature, message)


def test_generation_is_deterministic_under_deterministic_randomness() -> None:
    # Execute / Assert
    assert key(5).public == key(5).public
    assert key(5).public != key(6).public


def test_tampered_message_fails() -> None:
    # Prepare
    signer = key()
    signature = signer.sign(MESSAGE)

    # Execute / Assert
    for tampered in (MESSAGE + b"\x00", MESSAGE[:-1], b"X" + MESSAGE[1:], b""):
        with pytest.raises(AuthenticationError):
            signing.verify(signer.public, signature, tampered)


def test_every_single_bit_flip_of_the_signature_fails() -> None:
    # Prepare
    signer = key()
    signature = signer.sign(MESSAGE)

    for position in range(len(signature)):
        tampered = bytearray(signature)
        tampered[position] ^= 0x01

        # Execute / Assert
        with pytest.raises(AuthenticationError):
            signing.verify(signer.public, bytes(tampered), MESSAGE)


def test_another_keys_signature_fails() -> None:
    # Execute / Assert
    with pytest.raises(AuthenticationError):
        signing.verify(key(1).public, key(2).sign(MESSAGE), MESSAGE)


@pytest.mark.parametrize("size", [0, 63, 65])
def test_wrong_signature_size_fails_authentication(size: int) -> None:
    # Execute / Assert
    with pytest.raises(AuthenticationError):
        signing.verify(key().public, bytes(size), MESSAGE)


@pytest.mark.parametrize("size", [0, 31, 33])
def test_wrong_public_key_size_is_a_decode_error(size: int) -> None:
    # Execute / Assert
    with pytest.raises(DecodeError):
        signing.verify(bytes(size), key().sign(MESSAGE), MESSAGE)


@given(public=st.binary(min_size=32, max_size=32))
def test_arbitrary_public_key_bytes_fail_cleanly(public: bytes) -> None:
    # Execute / Assert: invalid points and wrong keys alike are AuthenticationError.
    with pytest.raises(AuthenticationError):
        signing.verify(public, key().sign(MESSAGE), MESSAGE)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_wrong_seed_size_is_a_decode_error(size: int) -> None:
    # Execute / Assert: either at construction or at first use, never a bare ValueError.
    with pytest.raises(DecodeError):
        SigningKey(seed=bytes(size), public=bytes(32)).sign(MESSAGE)


def test_repr_hides_the_seed() -> None:
    # Prepare
    signer = key()

    # Execute
    text = repr(signer)

    # Assert
    assert signer.seed.hex() not in text
    assert signer.public.hex() in text
