"""X25519 key agreement (secagg.primitives.key_agreement). The RFC 7748 vectors
live in test_known_answers.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import DecodeError, ProtocolError
from secagg.primitives import key_agreement
from secagg.primitives.randomness import InsecureDeterministicRandom

# Points of small order on Curve25519 (and its twist) in their canonical or
# non-canonical encodings: X25519 with any scalar gives the all-zero secret.
SMALL_ORDER_POINTS = [
    pytest.param(bytes(32), id="zero"),
    pytest.param((1).to_bytes(32, "little"), id="one"),
    pytest.param(((1 << 255) - 19 - 1).to_bytes(32, "little"), id="p-minus-1"),
    pytest.param(((1 << 255) - 19).to_bytes(32, "little"), id="p"),
    pytest.param(bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), id="order-8"),
]


@given(seed_a=st.integers(0, 2**32), seed_b=st.integers(0, 2**32))
def test_exchange_is_symmetric(seed_a: int, seed_b: int) -> None:
    # Prepare
    alice = key_agreement.generate_keypair(InsecureDeterministicRandom(seed_a))
    bob = key_agreement.generate_keypair(InsecureDeterministicRandom(b"bob" + seed_b.to_bytes(8, "big")))

    # Execute
    alice_secret = key_agreement.exchange(alice.private, bob.public)
    bob_secret = key_agreement.exchange(bob.private, alice.public)

    # Assert
    assert alice_secret == bob_secret
    assert len(alice_secret) == key_agreement.KEY_SIZE


def test_exchange_many_equals_repeated_exchange() -> None:
    # Prepare
    me = key_agreement.generate_keypair(InsecureDeterministicRandom(0))
    peers = [key_agreement.generate_keypair(InsecureDeterministicRandom(i)).public for i in range(1, 5)]

    # Execute
    many = key_agreement.exchange_many(me.private, peers)

    # Assert
    assert many == [key_agreement.exchange(me.private, peer) for peer in peers]
    assert len(set(many)) == len(peers)


@pytest.mark.parametrize("point", SMALL_ORDER_POINTS)
def test_small_order_public_key_is_a_protocol_error(point: bytes) -> None:
    # Prepare
    me = key_agreement.generate_keypair(InsecureDeterministicRandom(0))

    # Execute / Assert
    with pytest.raises(ProtocolError):
        key_agreement.exchange(me.private, point)


def test_one_small_order_key_fails_the_whole_batch() -> None:
    # Prepare
    me = key_agreement.generate_keypair(InsecureDeterministicRandom(0))
    good = key_agreement.generate_keypair(InsecureDeterministicRandom(1)).public

    # Execute / Assert
    with pytest.raises(ProtocolError):
        key_agreement.exchange_many(me.private, [good, bytes(32)])


@pytest.mark.parametrize("size", [0, 31, 33])
def test_wrong_sizes_are_decode_errors(size: int) -> None:
    # Prepare
    me = key_agreement.generate_keypair(InsecureDeterministicRandom(0))

    # Execute / Assert
    with pytest.raises(DecodeError):
        key_agreement.public_key_of(bytes(size))
    with pytest.raises(DecodeError):
        key_agreement.exchange(bytes(size), me.public)
    with pytest.raises(DecodeError):
        key_agreement.exchange(me.private, bytes(size))
    with pytest.raises(DecodeError):
        key_agreement.exchange_many(me.private, [me.public, bytes(size)])


def test_generate_keypair_is_deterministic_and_consistent() -> None:
    # Execute
    first = key_agreement.generate_keypair(InsecureDeterministicRandom(3))
    second = key_agreement.generate_keypair(InsecureDeterministicRandom(3))

    # Assert
    assert first == second
    assert first.public == key_agreement.public_key_of(first.private)


def test_keypair_repr_hides_the_private_key() -> None:
    # Prepare
    pair = key_agreement.generate_keypair(InsecureDeterministicRandom(3))

    # Execute
    text = repr(pair)

    # Assert
    assert pair.private.hex() not in text
    assert pair.public.hex() in text
