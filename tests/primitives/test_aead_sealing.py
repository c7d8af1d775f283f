"""AES-256-GCM share boxes (secagg.primitives.aead): round trip, and every kind of
tampering, context change, wrong key or truncation fails authentication."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import AuthenticationError, ConfigurationError, SecAggError
from secagg.primitives import aead
from secagg.primitives.randomness import InsecureDeterministicRandom

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SESSION = b"session-0001"
PLAINTEXT = b"mask-key share || self-mask share"
AD = aead.share_associated_data(SESSION, 3, 7, 2)


def sealed_box() -> bytes:
    return aead.seal(KEY, PLAINTEXT, AD, InsecureDeterministicRandom(1))


def test_associated_data_layout_is_exact() -> None:
    # Execute
    ad = aead.share_associated_data(b"\x01\x02", 0x0A0B0C0D, 7, 0xFE)

    # Assert
    assert ad == b"secagg/v1/share-bundle" + b"\x01\x02" + b"\x0a\x0b\x0c\x0d" + b"\x00\x00\x00\x07" + b"\xfe"


@given(key=st.binary(min_size=32, max_size=32), plaintext=st.binary(max_size=200), ad=st.binary(max_size=64),
       seed=st.integers(0, 2**32))
def test_seal_then_open_round_trips(key: bytes, plaintext: bytes, ad: bytes, seed: int) -> None:
    # Execute
    box = aead.seal(key, plaintext, ad, InsecureDeterministicRandom(seed))

    # Assert
    assert len(box) == len(plaintext) + aead.OVERHEAD
    assert aead.open_sealed(key, box, ad) == plaintext


def test_nonce_comes_from_the_injected_randomness() -> None:
    # Execute
    box = sealed_box()

    # Assert
    assert box[: aead.NONCE_SIZE] == InsecureDeterministicRandom(1)(aead.NONCE_SIZE)


def test_two_seals_of_the_same_plaintext_differ() -> None:
    # Execute
    first, second = aead.seal(KEY, PLAINTEXT, AD), aead.seal(KEY, PLAINTEXT, AD)

    # Assert
    assert first != second


def test_every_single_bit_flip_fails_authentication() -> None:
    # Prepare
    box = sealed_box()

    for position in range(len(box)):
        for bit in (0, 7):
            tampered = bytearray(box)
            tampered[position] ^= 1 << bit

            # Execute / Assert: nonce, ciphertext and tag bytes alike.
            with pytest.raises(AuthenticationError):
                aead.open_sealed(KEY, bytes(tampered), AD)


@pytest.mark.parametrize(
    "other_ad",
    [
        pytest.param(aead.share_associated_data(b"session-0002", 3, 7, 2), id="session"),
        pytest.param(aead.share_associated_data(SESSION, 4, 7, 2), id="sender"),
        pytest.param(aead.share_associated_data(SESSION, 3, 8, 2), id="recipient"),
        pytest.param(aead.share_associated_data(SESSION, 3, 7, 3), id="round"),
        pytest.param(aead.share_associated_data(SESSION, 7, 3, 2), id="sender-recipient-swapped"),
        pytest.param(b"", id="empty"),
    ],
)
def test_other_associated_data_fails_authentication(other_ad: bytes) -> None:
    # Prepare
    box = sealed_box()

    # Execute / Assert
    assert other_ad != AD
    with pytest.raises(AuthenticationError):
        aead.open_sealed(KEY, box, other_ad)


def test_wrong_key_fails_authentication() -> None:
    # Prepare
    box = sealed_box()

    # Execute / Assert
    with pytest.raises(AuthenticationError):
        aead.open_sealed(OTHER_KEY, box, AD)


def test_every_truncation_fails_authentication() -> None:
    # Prepare
    box = sealed_box()

    for length in range(len(box)):
        # Execute / Assert
        with pytest.raises(AuthenticationError):
            aead.open_sealed(KEY, box[:length], AD)


def test_appended_bytes_fail_authentication() -> None:
    # Execute / Assert
    with pytest.raises(AuthenticationError):
        aead.open_sealed(KEY, sealed_box() + b"\x00", AD)


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_wrong_key_size_is_refused(size: int) -> None:
    # Execute / Assert
    with pytest.raises(ConfigurationError):
        aead.seal(bytes(size), PLAINTEXT, AD)
    with pytest.raises(ConfigurationError):
        aead.open_sealed(bytes(size), sealed_box(), AD)


@pytest.mark.parametrize(
    ("sender", "recipient", "round_number"),
    [(-1, 1, 1), (1 << 32, 1, 1), (1, 1 << 32, 1), (1, 1, 256), (1, 1, -1)],
)
def test_associated_data_refuses_ids_outside_their_width(sender: int, recipient: int, round_number: int) -> None:
    # Execute / Assert: a library error, not a bare OverflowError.
    with pytest.raises(SecAggError):
        aead.share_associated_data(SESSION, sender, recipient, round_number)
