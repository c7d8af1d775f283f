"""Vectors for key derivation and key agreement: HKDF and its labels, X25519.

Spec sections (docs/spec.md): 6 (HKDF and labels, the pairwise and share keys), 7 (X25519).
"""

from __future__ import annotations

from secagg.masking.session import MASK_KDF_PURPOSE, PAIR_MASK_LABEL, SELF_MASK_LABEL, SHARE_KDF_PURPOSE
from secagg.primitives import kdf, key_agreement, prg
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, from_hex, test_case, vector_file
from secagg.vectors._primitives import prg_key
from secagg.vectors._suite import Suite, deterministic, register

__all__ = ["SUITES"]


# --- hkdf.json ------------------------------------------------------------------------------

HKDF_NOTES = {
    "Rfc5869": "RFC 5869 appendix A test case (HKDF-SHA256).",
    "ProtocolLabel": "A purpose label the masking protocol uses.",
    "PrgLabel": "The PRG key derivation: empty salt, info 'secagg/v1/prg:' || label, 16 bytes.",
    "SwappedParties": "The party ids in the other order: the info string (hence the key) is the same.",
    "BadLength": "An output length outside 1..8160: refused (step: HKDF).",
    "BadLabel": "An empty purpose or one containing '/': refused (step: info string).",
    "BadPartyId": "A party id outside 0..2^32-1: refused (step: info string).",
}


def generate_hkdf() -> Json:
    """hkdf.json: HKDF-SHA256, the info strings and every derived key label."""
    rfc = [
        ("0b" * 22, "000102030405060708090a0b0c", "f0f1f2f3f4f5f6f7f8f9", 42),
        (bytes(range(0x00, 0x50)).hex(), bytes(range(0x60, 0xB0)).hex(), bytes(range(0xB0, 0x100)).hex(), 82),
        ("0b" * 22, "", "", 42),
    ]
    hkdf_tests = []
    for number, (ikm, salt, info, length) in enumerate(rfc, start=1):
        okm = kdf.hkdf_sha256(bytes.fromhex(ikm), bytes.fromhex(salt), bytes.fromhex(info), length)
        hkdf_tests.append(test_case(f"RFC 5869 A.{number}", ["Rfc5869"], "valid", ikm=ikm, salt=salt, info=info,
                                    length=length, okm=okm.hex()))
    for label in (SELF_MASK_LABEL, PAIR_MASK_LABEL):
        seed = deterministic(f"hkdf/prg/{label.decode()}")(32)
        prg_info = prg.PRG_INFO_PREFIX + label
        hkdf_tests.append(test_case(f"PRG key for label '{label.decode()}'", ["PrgLabel"], "valid", ikm=seed.hex(),
                                    salt="", info=prg_info.hex(), length=16, okm=prg_key(seed, label).hex()))
    for length in (0, kdf.MAX_OUTPUT + 1):
        hkdf_tests.append(test_case(f"output length {length}", ["BadLength"], "invalid", ikm="00" * 32, salt="",
                                    info="", length=length, error="ConfigurationError"))
    info_tests = []
    for purpose, a, b, flags in [
        (MASK_KDF_PURPOSE, 3, 7, ["ProtocolLabel"]), (SHARE_KDF_PURPOSE, 3, 7, ["ProtocolLabel"]),
        (MASK_KDF_PURPOSE, 7, 3, ["ProtocolLabel", "SwappedParties"]), (b"x", 0, (1 << 32) - 1, []),
    ]:
        info_tests.append(test_case(f"'{purpose.decode()}' for parties {a} and {b}", flags, "valid",
                                    purpose=purpose.hex(), partyA=a, partyB=b,
                                    info=kdf.info_string(purpose, a, b).hex()))
    for purpose, a, b, flag in [(b"", 1, 2, "BadLabel"), (b"pairwise/mask", 1, 2, "BadLabel"),
                                (MASK_KDF_PURPOSE, 1, 1 << 32, "BadPartyId"), (MASK_KDF_PURPOSE, -1, 2, "BadPartyId")]:
        info_tests.append(test_case(f"purpose {purpose!r}, parties {a} and {b}", [flag], "invalid",
                                    purpose=purpose.hex(), partyA=a, partyB=b, error="ConfigurationError"))
    pair_tests = []
    for index, (purpose, a, b) in enumerate([(MASK_KDF_PURPOSE, 1, 2), (SHARE_KDF_PURPOSE, 1, 2),
                                             (MASK_KDF_PURPOSE, 2, 1), (SHARE_KDF_PURPOSE, 5, 3)]):
        source = deterministic(f"hkdf/pair/{index // 2}")
        secret, session = source(32), source(32)
        flags = ["ProtocolLabel"] + (["SwappedParties"] if a > b else [])
        pair_tests.append(test_case(
            f"'{purpose.decode()}' key of clients {a} and {b}", flags, "valid", sharedSecret=secret.hex(),
            sessionId=session.hex(), purpose=purpose.hex(), partyA=a, partyB=b, length=32,
            info=kdf.info_string(purpose, a, b).hex(), key=kdf.derive_pair_key(secret, session, purpose, a, b).hex(),
        ))
    pair_tests.append(test_case("a purpose with '/'", ["BadLabel"], "invalid", sharedSecret="00" * 32,
                                sessionId="00" * 32, purpose=b"a/b".hex(), partyA=1, partyB=2, length=32,
                                error="ConfigurationError"))
    return vector_file(
        algorithm="secagg-hkdf-sha256",
        schema="hkdf_test_schema.json",
        header=[
            "HKDF-SHA256 (RFC 5869) and the protocol's info strings (docs/spec.md, section 6):",
            "info = 'secagg/v1/' || purpose || '/' || u32be(min(a, b)) || u32be(max(a, b)); pair keys use",
            "salt = session id. Byte strings (purpose, ikm, salt, info) are hex.",
        ],
        notes=HKDF_NOTES,
        groups=[{"type": "HkdfTest", "tests": hkdf_tests}, {"type": "HkdfInfoTest", "tests": info_tests},
                {"type": "PairKeyTest", "tests": pair_tests}],
    )


@register("HkdfTest")
def check_hkdf(group: Json, test: Json) -> None:
    """RFC 5869 HKDF-SHA256 of (ikm, salt, info, length)."""
    del group
    ikm, salt, info, length = from_hex(test["ikm"]), from_hex(test["salt"]), from_hex(test["info"]), int(test["length"])
    if not is_valid(test):
        expect_error(test, lambda: kdf.hkdf_sha256(ikm, salt, info, length), "HKDF")
        return
    equal("okm", kdf.hkdf_sha256(ikm, salt, info, length).hex(), test["okm"])


@register("HkdfInfoTest")
def check_hkdf_info(group: Json, test: Json) -> None:
    """The info string of (purpose, party a, party b)."""
    del group
    purpose, a, b = from_hex(test["purpose"]), int(test["partyA"]), int(test["partyB"])
    if not is_valid(test):
        expect_error(test, lambda: kdf.info_string(purpose, a, b), "info string")
        return
    equal("info", kdf.info_string(purpose, a, b).hex(), test["info"])


@register("PairKeyTest")
def check_pair_key(group: Json, test: Json) -> None:
    """The pair key: HKDF(shared secret, salt = session id, info string)."""
    del group
    secret, session, purpose = from_hex(test["sharedSecret"]), from_hex(test["sessionId"]), from_hex(test["purpose"])
    a, b, length = int(test["partyA"]), int(test["partyB"]), int(test["length"])
    if not is_valid(test):
        expect_error(test, lambda: kdf.derive_pair_key(secret, session, purpose, a, b, length), "pair key")
        return
    equal("info", kdf.info_string(purpose, a, b).hex(), test["info"])
    equal("key", kdf.derive_pair_key(secret, session, purpose, a, b, length).hex(), test["key"])


# --- x25519.json ------------------------------------------------------------------------------

X25519_NOTES = {
    "Rfc7748": "RFC 7748 section 6.1 (Alice and Bob).",
    "Random": "Key pairs from the generator's stream (the private key is the 32 drawn bytes).",
    "HighBitSet": "The peer's u-coordinate has bit 255 set, which X25519 ignores (RFC 7748 section 5).",
    "NonCanonical": "The peer's u-coordinate is >= 2^255 - 19; X25519 reduces it mod p.",
    "SmallOrder": "The peer key has small order, so the shared secret is all zero: refused "
    "(step: key agreement, ProtocolError).",
    "WrongLength": "A key that is not 32 bytes: refused (step: key agreement, DecodeError).",
}
SMALL_ORDER_POINTS = [
    ("0", "00" * 32),
    ("1", "01" + "00" * 31),
    ("a point of order 8", "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    ("a point of order 8", "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    ("p - 1", "ec" + "ff" * 30 + "7f"),
    ("p", "ed" + "ff" * 30 + "7f"),
    ("p + 1", "ee" + "ff" * 30 + "7f"),
]


def _x25519_test(comment: str, flags: list[str], private: bytes, peer: bytes) -> Json:
    return test_case(comment, flags, "valid", private=private.hex(), public=key_agreement.public_key_of(private).hex(),
                     peerPublic=peer.hex(), shared=key_agreement.exchange(private, peer).hex())


def generate_x25519() -> Json:
    """x25519.json: public keys from private keys, shared secrets, refused peer keys."""
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    bob = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    tests = [
        _x25519_test("RFC 7748: Alice with Bob's public key", ["Rfc7748"], alice, key_agreement.public_key_of(bob)),
        _x25519_test("RFC 7748: Bob with Alice's public key", ["Rfc7748"], bob, key_agreement.public_key_of(alice)),
    ]
    for index in range(3):
        source = deterministic(f"x25519/{index}")
        mine, theirs = key_agreement.generate_keypair(source), key_agreement.generate_keypair(source)
        tests.append(_x25519_test("generated key pairs", ["Random"], mine.private, theirs.public))
    base = (9).to_bytes(32, "little")
    tests.append(_x25519_test("peer key 9 with bit 255 set", ["HighBitSet"], alice, base[:31] + b"\x80"))
    tests.append(_x25519_test("peer key p + 9", ["NonCanonical"], alice, ((1 << 255) - 19 + 9).to_bytes(32, "little")))
    for name, point in SMALL_ORDER_POINTS:
        tests.append(test_case(f"peer key {name}", ["SmallOrder"], "invalid", private=alice.hex(), peerPublic=point,
                               error="ProtocolError"))
    tests.append(test_case("31-byte peer key", ["WrongLength"], "invalid", private=alice.hex(),
                           peerPublic="09" + "00" * 30, error="DecodeError"))
    tests.append(test_case("33-byte private key", ["WrongLength"], "invalid", private=alice.hex() + "00",
                           peerPublic=base.hex(), error="DecodeError"))
    return vector_file(
        algorithm="secagg-x25519",
        schema="x25519_test_schema.json",
        header=[
            "X25519 key agreement (RFC 7748; docs/spec.md, section 7). 'private' is the raw 32-byte scalar",
            "(clamped by X25519 itself), 'public' = X25519(private, 9), 'shared' = X25519(private, peerPublic).",
            "A shared secret of 32 zero bytes is refused.",
        ],
        notes=X25519_NOTES,
        groups=[{"type": "X25519Test", "tests": tests}],
    )


@register("X25519Test")
def check_x25519(group: Json, test: Json) -> None:
    """Public key of the private key, and the shared secret with the peer key."""
    del group
    private, peer = from_hex(test["private"]), from_hex(test["peerPublic"])
    if not is_valid(test):
        expect_error(test, lambda: key_agreement.exchange(private, peer), "key agreement")
        return
    equal("public", key_agreement.public_key_of(private).hex(), test["public"])
    equal("shared", key_agreement.exchange(private, peer).hex(), test["shared"])


SUITES = [
    Suite("hkdf.json", "hkdf_test_schema.json", generate_hkdf),
    Suite("x25519.json", "x25519_test_schema.json", generate_x25519),
]
