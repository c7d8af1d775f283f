"""Known-answer tests from the RFCs, run through secagg's own wrappers.

- RFC 7748 section 5.2 (X25519 scalar multiplication, including the iterated
  vector after 1 and 1000 iterations) and section 6.1 (Alice/Bob Diffie-Hellman)
  through :mod:`secagg.primitives.key_agreement`.
- RFC 5869 appendix A, test cases 1-3 (HKDF-SHA256) through
  :func:`secagg.primitives.kdf.hkdf_sha256`.
- RFC 8032 section 7.1, TEST 1 (Ed25519, empty message) through
  :class:`secagg.primitives.signing.SigningKey`.
"""

from __future__ import annotations

import pytest

from secagg.primitives import kdf, key_agreement, signing

# ---------------------------------------------------------------- RFC 7748


RFC7748_SCALAR_MULT = [
    pytest.param(
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        id="5.2-vector-1",
    ),
    pytest.param(
        "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        # the top bit of the last byte is set: X25519 must ignore it.
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        id="5.2-vector-2",
    ),
]

RFC7748_ITERATED_1 = "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079"
RFC7748_ITERATED_1000 = "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51"

RFC7748_ALICE_PRIVATE = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
RFC7748_ALICE_PUBLIC = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
RFC7748_BOB_PRIVATE = "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"
RFC7748_BOB_PUBLIC = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
RFC7748_SHARED = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"


def test_vector_lengths_are_32_bytes() -> None:
    # Prepare
    hex_values = [RFC7748_ITERATED_1, RFC7748_ITERATED_1000, RFC7748_ALICE_PRIVATE, RFC7748_ALICE_PUBLIC,
                  RFC7748_BOB_PRIVATE, RFC7748_BOB_PUBLIC, RFC7748_SHARED]
    hex_values += [str(value) for param in RFC7748_SCALAR_MULT for value in param.values]

    # Execute
    lengths = {len(bytes.fromhex(value)) for value in hex_values}

    # Assert
    assert lengths == {32}


@pytest.mark.parametrize(("scalar", "u_coordinate", "expected"), RFC7748_SCALAR_MULT)
def test_x25519_scalar_multiplication_matches_rfc7748(scalar: str, u_coordinate: str, expected: str) -> None:
    # Execute
    output = key_agreement.exchange(bytes.fromhex(scalar), bytes.fromhex(u_coordinate))

    # Assert
    assert output.hex() == expected


def test_x25519_iterated_vector_after_1_and_1000_iterations() -> None:
    # Prepare: k = u = the base point 9.
    k = u = (9).to_bytes(32, "little")
    after: dict[int, str] = {}

    # Execute
    for iteration in range(1, 1001):
        k, u = key_agreement.exchange(k, u), k
        if iteration in (1, 1000):
            after[iteration] = k.hex()

    # Assert
    assert after == {1: RFC7748_ITERATED_1, 1000: RFC7748_ITERATED_1000}


def test_x25519_diffie_hellman_matches_rfc7748_section_6_1() -> None:
    # Prepare
    alice_private = bytes.fromhex(RFC7748_ALICE_PRIVATE)
    bob_private = bytes.fromhex(RFC7748_BOB_PRIVATE)

    # Execute
    alice_public = key_agreement.public_key_of(alice_private)
    bob_public = key_agreement.public_key_of(bob_private)
    alice_shared = key_agreement.exchange(alice_private, bytes.fromhex(RFC7748_BOB_PUBLIC))
    bob_shared = key_agreement.exchange(bob_private, bytes.fromhex(RFC7748_ALICE_PUBLIC))

    # Assert
    assert alice_public.hex() == RFC7748_ALICE_PUBLIC
    assert bob_public.hex() == RFC7748_BOB_PUBLIC
    assert alice_shared.hex() == RFC7748_SHARED
    assert bob_shared.hex() == RFC7748_SHARED


def test_generate_keypair_uses_the_injected_randomness_as_the_rfc7748_scalar() -> None:
    # Prepare
    alice_private = bytes.fromhex(RFC7748_ALICE_PRIVATE)

    # Execute
    pair = key_agreement.generate_keypair(lambda size: alice_private[:size])

    # Assert
    assert pair.private == alice_private
    assert pair.public.hex() == RFC7748_ALICE_PUBLIC


# ---------------------------------------------------------------- RFC 5869

RFC5869_CASES = [
    pytest.param(
        bytes([0x0B] * 22),
        bytes(range(0x00, 0x0D)),
        bytes(range(0xF0, 0xFA)),
        42,
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        id="A.1-basic",
    ),
    pytest.param(
        bytes(range(0x00, 0x50)),
        bytes(range(0x60, 0xB0)),
        bytes(range(0xB0, 0x100)),
        82,
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
        id="A.2-long-inputs",
    ),
    pytest.param(
        bytes([0x0B] * 22),
        b"",
        b"",
        42,
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        id="A.3-empty-salt-and-info",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "okm"), RFC5869_CASES)
def test_hkdf_sha256_matches_rfc5869(ikm: bytes, salt: bytes, info: bytes, length: int, okm: str) -> None:
    # Prepare: the vector's own sizes, as printed in the RFC.
    assert len(bytes.fromhex(okm)) == length
    assert (len(ikm), len(salt), len(info)) in {(22, 13, 10), (80, 80, 80), (22, 0, 0)}

    # Execute
    output = kdf.hkdf_sha256(ikm, salt, info, length)

    # Assert
    assert output.hex() == okm


# ---------------------------------------------------------------- RFC 8032

RFC8032_TEST1_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_TEST1_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_TEST1_SIGNATURE = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_ed25519_matches_rfc8032_test_1() -> None:
    # Prepare
    seed = bytes.fromhex(RFC8032_TEST1_SEED)
    assert len(bytes.fromhex(RFC8032_TEST1_SIGNATURE)) == signing.SIGNATURE_SIZE

    # Execute
    key = signing.SigningKey.generate(lambda size: seed[:size])
    signature = key.sign(b"")

    # Assert
    assert key.seed == seed
    assert key.public.hex() == RFC8032_TEST1_PUBLIC
    assert signature.hex() == RFC8032_TEST1_SIGNATURE
    signing.verify(bytes.fromhex(RFC8032_TEST1_PUBLIC), bytes.fromhex(RFC8032_TEST1_SIGNATURE), b"")
