"""Vectors for the raw primitives: test randomness, PRG, HKDF, X25519, Shamir, AEAD, Ed25519.

Spec sections (docs/spec.md): 2 (test randomness), 5 (PRG), 6 (HKDF and labels),
7 (X25519), 8 (Shamir), 9 (AEAD), 10 (signature payloads).
"""

from __future__ import annotations

import numpy as np

from secagg import wire
from secagg.masking.messages import Round, ShareBundle
from secagg.masking.session import (
    MASK_KDF_PURPOSE,
    PAIR_MASK_LABEL,
    SELF_MASK_LABEL,
    SHARE_KDF_PURPOSE,
    advertise_payload,
    consistency_payload,
)
from secagg.primitives import aead, kdf, key_agreement, prg, shamir
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey, verify
from secagg.ring import NARROW_MAX_BITS, NARROW_MIN_BITS, NarrowRing, Ring
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, from_hex, ring_from_hex, ring_to_hex, test_case, vector_file
from secagg.vectors._random import ReplayedRandom
from secagg.vectors._suite import Suite, deterministic, register, sha256_hex, words

__all__ = ["SUITES"]

INLINE_OUTPUT_BYTES = 1 << 18  # longer PRG outputs are pinned by their SHA-256


# --- deterministic_random.json ---------------------------------------------------------

RANDOM_NOTES = {
    "IntegerSeed": "The seed is an integer, used as its 8-byte big-endian encoding.",
    "VectorSeed": "The seed the vector generator uses for one case: 'secagg/v1/vectors/' || label.",
    "CrossesBlock": "The draws do not align with the 32-byte SHA-256 blocks.",
}


def generate_random() -> Json:
    """deterministic_random.json: the SHA-256 counter stream used for every vector."""
    cases: list[tuple[str, list[str], bytes, list[int], int | None]] = [
        ("empty seed, one block", [], b"", [32], None),
        ("draws of 1, 31, 33, 12 and 64 bytes", ["CrossesBlock"], b"secagg", [1, 31, 33, 12, 64], None),
        ("integer seed 7", ["IntegerSeed"], (7).to_bytes(8, "big"), [32, 32, 16], 7),
        ("the seed of the prg.json case 'prg/0'", ["VectorSeed"], b"secagg/v1/vectors/prg/0", [32], None),
    ]
    tests = []
    for comment, flags, seed, sizes, integer in cases:
        source = InsecureDeterministicRandom(seed if integer is None else integer)
        fields: Json = {"seed": seed.hex(), "draws": sizes, "outputs": [source(size).hex() for size in sizes]}
        if integer is not None:
            fields["seedInt"] = integer
        tests.append(test_case(comment, flags, "valid", **fields))
    return vector_file(
        algorithm="secagg-test-random",
        schema="deterministic_random_test_schema.json",
        header=[
            "InsecureDeterministicRandom (docs/spec.md, section 2): block i = SHA-256('secagg/v1/test-random'",
            "|| seed || u64be(i)); draws consume the concatenated blocks in order. Test use only, never secret.",
            "Every other vector file records the values it drew, so only this library's own verifier needs it.",
        ],
        notes=RANDOM_NOTES,
        groups=[{"type": "DeterministicRandomTest", "tests": tests}],
    )


@register("DeterministicRandomTest")
def check_random(group: Json, test: Json) -> None:
    """Draw the recorded sizes from the stream; compare each output."""
    del group
    seed = from_hex(test["seed"])
    source = InsecureDeterministicRandom(int(test["seedInt"]) if "seedInt" in test else seed)
    equal("outputs", [source(int(size)).hex() for size in test["draws"]], test["outputs"])


# --- prg.json -----------------------------------------------------------------------------

PRG_NOTES = {
    "ProtocolLabel": "A label the masking protocol uses ('self-mask' or 'pairwise-mask').",
    "PartialBlock": "The output ends inside an AES block (the rest of the block is discarded).",
    "Empty": "Zero elements requested: the output is empty.",
    "LongOutput": "More than 2^18 bytes of keystream (the implementation's chunk size); compared by SHA-256.",
    "Subtract": "The expansion is subtracted from the target (the larger id of a pair subtracts).",
    "BadSeed": "A seed that is not 32 bytes: refused (step: PRG key derivation).",
    "EmptyLabel": "An empty label: refused, every expansion is domain-separated (step: PRG key derivation).",
    "NarrowRing": "Z_(2^b) for b in 8..64 other than 32, 64: the expansion in the container (32-bit words for "
                  "b <= 32, else 64-bit) reduced mod 2^b (spec section 17); output is the hex of the container words.",
    "BadRingSize": "A ring width outside 8..64: refused (step: NarrowRing).",
}


def _prg_key(seed: bytes, label: bytes) -> bytes:
    return kdf.hkdf_sha256(seed, b"", prg.PRG_INFO_PREFIX + label, prg.AES_KEY_SIZE)


def _expand(seed: bytes, label: bytes, length: int, bits: int) -> np.ndarray:
    """The expansion in Z_(2^bits): in the word ring itself, or a narrow ring's container reduced."""
    if bits in (32, 64):
        return prg.expand(seed, label, length, Ring(bits))
    ring = NarrowRing(bits)
    return ring.reduce(prg.expand(seed, label, length, ring.container))


def _prg_test(comment: str, flags: list[str], seed: bytes, label: bytes, bits: int, length: int) -> Json:
    output = _expand(seed, label, length, bits)
    fields: Json = {"seed": seed.hex(), "label": label.hex(), "ringBits": bits, "length": length,
                    "aesKey": _prg_key(seed, label).hex()}
    if length * bits // 8 > INLINE_OUTPUT_BYTES:
        fields["outputSha256"] = sha256_hex(output.tobytes())
    else:
        fields["output"] = ring_to_hex(output)
    return test_case(comment, flags, "valid", **fields)


def generate_prg() -> Json:
    """prg.json: HKDF-derived AES-128 key, CTR keystream from a zero counter, little-endian words."""
    tests = []
    for index, (bits, length, flags) in enumerate(
        [(32, 1, ["PartialBlock"]), (32, 4, []), (32, 5, ["PartialBlock"]), (32, 16, []),
         (64, 1, ["PartialBlock"]), (64, 2, []), (64, 9, ["PartialBlock"]), (32, 0, ["Empty"])]
    ):
        seed = deterministic(f"prg/{index}")(32)
        tests.append(_prg_test(f"{length} elements of Z_(2^{bits})", flags, seed, b"test-label", bits, length))
    for label in (SELF_MASK_LABEL, PAIR_MASK_LABEL):
        seed = deterministic(f"prg/{label.decode()}")(32)
        for bits in (32, 64):
            tests.append(_prg_test(f"label '{label.decode()}', Z_(2^{bits})", ["ProtocolLabel"], seed, label, bits, 12))
    seed = deterministic("prg/long")(32)
    tests.append(_prg_test("70000 elements of Z_(2^32) (280000 bytes of keystream)", ["LongOutput"],
                           seed, PAIR_MASK_LABEL, 32, 70000))
    for size in (31, 33, 0):
        tests.append(test_case(f"{size}-byte seed", ["BadSeed"], "invalid", seed=bytes(range(size)).hex(),
                               label=SELF_MASK_LABEL.hex(), ringBits=32, length=4, error="ConfigurationError"))
    tests.append(test_case("empty label", ["EmptyLabel"], "invalid", seed=bytes(32).hex(), label="", ringBits=32,
                           length=4, error="ConfigurationError"))
    narrow = []
    for bits in (b for b in range(NARROW_MIN_BITS, NARROW_MAX_BITS + 1) if b not in (32, 64)):
        seed = deterministic(f"prg/narrow/{bits}")(32)
        narrow.append(_prg_test(f"9 elements of Z_(2^{bits})", ["NarrowRing"], seed, PAIR_MASK_LABEL, bits, 9))
    for bits in (7, 65):
        narrow.append(test_case(f"Z_(2^{bits})", ["BadRingSize"], "invalid", seed=bytes(32).hex(),
                                label=PAIR_MASK_LABEL.hex(), ringBits=bits, length=4, error="ConfigurationError"))
    mask_tests = []
    for bits in (32, 64):
        ring = Ring(bits)
        for subtract in (False, True):
            seed = deterministic(f"prg/mask/{bits}/{subtract}")(32)
            target = words(f"prg/mask/{bits}/{subtract}/target", 10, bits)
            result = np.array(target, copy=True)
            prg.add_expansion(result, seed, PAIR_MASK_LABEL, subtract=subtract)
            mask_tests.append(test_case(
                f"{'subtract' if subtract else 'add'} a pairwise mask in Z_(2^{ring.bits})",
                ["Subtract"] if subtract else [], "valid", seed=seed.hex(), label=PAIR_MASK_LABEL.hex(),
                ringBits=bits, subtract=subtract, target=ring_to_hex(target), masked=ring_to_hex(result),
            ))
    mask_tests.append(test_case("a 16-byte seed", ["BadSeed"], "invalid", seed=bytes(16).hex(),
                                label=PAIR_MASK_LABEL.hex(), ringBits=32, subtract=False, target="00000000",
                                error="ConfigurationError"))
    return vector_file(
        algorithm="secagg-prg-aes128ctr",
        schema="prg_test_schema.json",
        header=[
            "Mask expansion (docs/spec.md, section 5): aesKey = HKDF-SHA256(ikm=seed, salt='',",
            "info='secagg/v1/prg:' || label, L=16); keystream = AES-128-CTR(aesKey, counter block = 16 zero",
            "bytes, 128-bit big-endian increment); element i = little-endian word i of the keystream.",
            "'label' is hex of the ASCII label. PrgMaskTest: masked = target + expansion (or - when subtract).",
            "The last group: Z_(2^b) for every other b in 8..64, container words reduced mod 2^b (section 17).",
        ],
        notes=PRG_NOTES,
        groups=[{"type": "PrgTest", "tests": tests}, {"type": "PrgMaskTest", "tests": mask_tests},
                {"type": "PrgTest", "tests": narrow}],
    )


@register("PrgTest")
def check_prg(group: Json, test: Json) -> None:
    """Expand the seed; compare the AES key and the elements (or their SHA-256)."""
    del group
    seed, label = from_hex(test["seed"]), from_hex(test["label"])
    bits, length = int(test["ringBits"]), int(test["length"])
    if not is_valid(test):
        expect_error(test, lambda: _expand(seed, label, length, bits), "PRG expansion")
        return
    equal("aesKey", _prg_key(seed, label).hex(), test["aesKey"])
    output = _expand(seed, label, length, bits)
    if "output" in test:
        equal("output", ring_to_hex(output), test["output"])
    else:
        equal("SHA-256 of the output", sha256_hex(output.tobytes()), test["outputSha256"])


@register("PrgMaskTest")
def check_prg_mask(group: Json, test: Json) -> None:
    """Add (or subtract) the expansion into the target in place."""
    del group
    bits = int(test["ringBits"])
    target = ring_from_hex(test["target"], bits)
    seed, label = from_hex(test["seed"]), from_hex(test["label"])
    subtract = bool(test["subtract"])
    if not is_valid(test):
        expect_error(test, lambda: prg.add_expansion(target, seed, label, subtract=subtract), "add_expansion")
        return
    prg.add_expansion(target, seed, label, subtract=subtract)
    equal("masked", ring_to_hex(target), test["masked"])


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
                                    salt="", info=prg_info.hex(), length=16, okm=_prg_key(seed, label).hex()))
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


# --- shamir.json -----------------------------------------------------------------------------

SHAMIR_NOTES = {
    "ProtocolShape": "As in the masking protocol: shares at the neighbours' ids.",
    "LargeIndex": "Evaluation points up to 2^32 - 1.",
    "MaxSecret": "The secret 2^256 - 1 (32 bytes of 0xff).",
    "ExtraShares": "More than t shares: the extra ones are checked against the first t.",
    "BelowThreshold": "Fewer than t shares: refused (step: combine, ConfigurationError).",
    "ForgedShare": "One share was altered: with more than t shares the inconsistency is detected "
    "(step: combine, AuthenticationError).",
    "UndetectedForgery": "Exactly t shares, one altered: Shamir alone cannot notice; the result is a wrong "
    "secret (the protocol checks recovered mask keys against their public keys).",
    "NotASecret": "The shares interpolate to a field element >= 2^256, which is no 32-byte secret "
    "(step: combine, AuthenticationError).",
    "DuplicateIndex": "Two shares or evaluation points with the same index: refused (ConfigurationError).",
    "BadThreshold": "A threshold outside 1..(number of shares): refused (ConfigurationError).",
    "BadSecret": "A secret that is not 32 bytes: refused (ConfigurationError).",
    "BadIndex": "Index 0 (which would be the secret itself) or above 2^32 - 1: refused (split: "
    "ConfigurationError; share decoding: DecodeError).",
    "BadValue": "A share value >= p: not a field element (DecodeError).",
    "BadLength": "A share encoding that is not 37 bytes (DecodeError).",
}


def _share_json(share: shamir.Share) -> Json:
    return {"index": share.index, "value": share.value.to_bytes(shamir.VALUE_SIZE, "big").hex()}


def _share_from_json(item: Json) -> shamir.Share:
    return shamir.Share(int(item["index"]), int.from_bytes(from_hex(item["value"]), "big"))


def _split_test(comment: str, flags: list[str], label: str, secret: bytes, threshold: int, indices: list[int]) -> Json:
    source = deterministic(label)
    randomness = [source(shamir.COEFFICIENT_BYTES) for _ in range(threshold - 1)]
    shares = shamir.split(secret, threshold, indices, ReplayedRandom(randomness))
    return test_case(
        comment, flags, "valid", secret=secret.hex(), threshold=threshold, indices=indices,
        randomness=[r.hex() for r in randomness],
        coefficients=[(int.from_bytes(r, "big") % shamir.PRIME).to_bytes(shamir.VALUE_SIZE, "big").hex()
                      for r in randomness],
        shares=[_share_json(s) for s in shares], encodings=[s.to_bytes().hex() for s in shares],
    )


def generate_shamir() -> Json:
    """shamir.json: split with recorded coefficients, combine, share encoding."""
    secret = deterministic("shamir/secret")(32)
    split_tests = [
        _split_test("2 of 3 at ids 1, 2, 3", [], "shamir/0", secret, 2, [1, 2, 3]),
        _split_test("3 of 5 at a client's neighbours", ["ProtocolShape"], "shamir/1", secret, 3, [2, 3, 4, 5, 6]),
        _split_test("4 of 6, maximal secret", ["MaxSecret"], "shamir/2", b"\xff" * 32, 4, [1, 2, 3, 4, 5, 6]),
        _split_test("2 of 3 at large indices", ["LargeIndex"], "shamir/3", secret, 2,
                    [(1 << 32) - 1, 1 << 31, 65536]),
        _split_test("1 of 2: every share is the secret", [], "shamir/4", secret, 1, [7, 9]),
    ]
    bad_splits: list[tuple[str, list[str], Json, str]] = [
        ("31-byte secret", ["BadSecret"], {"secret": secret[:31].hex(), "threshold": 2, "indices": [1, 2, 3]},
         "ConfigurationError"),
        ("duplicate indices", ["DuplicateIndex"], {"secret": secret.hex(), "threshold": 2, "indices": [1, 2, 2]},
         "ConfigurationError"),
        ("threshold above the share count", ["BadThreshold"],
         {"secret": secret.hex(), "threshold": 4, "indices": [1, 2, 3]}, "ConfigurationError"),
        ("threshold 0", ["BadThreshold"], {"secret": secret.hex(), "threshold": 0, "indices": [1, 2, 3]},
         "ConfigurationError"),
        ("index 0", ["BadIndex"], {"secret": secret.hex(), "threshold": 2, "indices": [0, 1, 2]},
         "ConfigurationError"),
        ("index 2^32", ["BadIndex"], {"secret": secret.hex(), "threshold": 2, "indices": [1, 2, 1 << 32]},
         "ConfigurationError"),
    ]
    for comment, flags, fields, error in bad_splits:
        randomness = [deterministic("shamir/bad")(64).hex() for _ in range(max(0, int(fields["threshold"]) - 1))]
        split_tests.append(test_case(comment, flags, "invalid", **fields, randomness=randomness, error=error))

    shares = shamir.split(secret, 3, [1, 2, 3, 4, 5], deterministic("shamir/combine"))
    forged = shamir.Share(shares[1].index, (shares[1].value + 1) % shamir.PRIME)
    wrong = shamir.combine([shares[0], forged, shares[2]], 3)
    combine_tests = [
        test_case("exactly t = 3 shares", [], "valid", shares=[_share_json(s) for s in shares[:3]], threshold=3,
                  secret=secret.hex()),
        test_case("t = 3 shares given out of order", [], "valid",
                  shares=[_share_json(s) for s in (shares[4], shares[0], shares[2])], threshold=3,
                  secret=secret.hex()),
        test_case("all 5 shares", ["ExtraShares"], "valid", shares=[_share_json(s) for s in shares], threshold=3,
                  secret=secret.hex()),
        test_case("exactly t shares, one forged", ["UndetectedForgery"], "valid",
                  shares=[_share_json(s) for s in (shares[0], forged, shares[2])], threshold=3, secret=wrong.hex()),
        test_case("4 shares, one forged", ["ForgedShare"], "invalid",
                  shares=[_share_json(s) for s in (shares[0], forged, shares[2], shares[3])], threshold=3,
                  error="AuthenticationError"),
        test_case("2 shares for t = 3", ["BelowThreshold"], "invalid",
                  shares=[_share_json(s) for s in shares[:2]], threshold=3, error="ConfigurationError"),
        test_case("the same share twice", ["DuplicateIndex"], "invalid",
                  shares=[_share_json(s) for s in (shares[0], shares[1], shares[1])], threshold=3,
                  error="ConfigurationError"),
    ]
    # Two points on a line through (0, 2^256): the "secret" is a field element but not 32 bytes.
    big = 1 << 256
    line = [shamir.Share(i, (big + 5 * i) % shamir.PRIME) for i in (1, 2)]
    combine_tests.append(test_case("interpolates to 2^256", ["NotASecret"], "invalid",
                                   shares=[_share_json(s) for s in line], threshold=2, error="AuthenticationError"))

    encoding_tests = [
        test_case("share at index 3", [], "valid", encoded=shares[2].to_bytes().hex(), index=3,
                  value=_share_json(shares[2])["value"]),
        test_case("largest index and value", ["LargeIndex"], "valid",
                  encoded=shamir.Share((1 << 32) - 1, shamir.PRIME - 1).to_bytes().hex(), index=(1 << 32) - 1,
                  value=(shamir.PRIME - 1).to_bytes(shamir.VALUE_SIZE, "big").hex()),
        test_case("index 0", ["BadIndex"], "invalid", encoded=(bytes(4) + bytes(33)).hex(), error="DecodeError"),
        test_case("value p", ["BadValue"], "invalid",
                  encoded=((1).to_bytes(4, "big") + shamir.PRIME.to_bytes(33, "big")).hex(), error="DecodeError"),
        test_case("36 bytes", ["BadLength"], "invalid", encoded=shares[2].to_bytes()[:36].hex(), error="DecodeError"),
        test_case("38 bytes", ["BadLength"], "invalid", encoded=(shares[2].to_bytes() + b"\x00").hex(),
                  error="DecodeError"),
    ]
    return vector_file(
        algorithm="secagg-shamir-gf(2^256+297)",
        schema="shamir_test_schema.json",
        header=[
            "Shamir t-of-n sharing of 32-byte secrets over GF(p), p = 2^256 + 297 (docs/spec.md, section 8).",
            "split: f(x) = secret + sum_j c_j x^j (j = 1..t-1), c_j = (64 drawn bytes, big-endian) mod p, listed",
            "in 'randomness' in draw order; share i = (i, f(i)), value as 33 bytes big-endian.",
            "combine: Lagrange interpolation at 0 over the t shares of smallest index; extra shares must agree.",
        ],
        notes=SHAMIR_NOTES,
        groups=[{"type": "ShamirSplitTest", "tests": split_tests},
                {"type": "ShamirCombineTest", "tests": combine_tests},
                {"type": "ShareEncodingTest", "tests": encoding_tests}],
    )


@register("ShamirSplitTest")
def check_shamir_split(group: Json, test: Json) -> None:
    """Split with the recorded coefficient draws; compare coefficients, shares and encodings."""
    del group
    secret, threshold, indices = from_hex(test["secret"]), int(test["threshold"]), [int(i) for i in test["indices"]]
    randomness = ReplayedRandom([from_hex(r) for r in test["randomness"]], "split")
    if not is_valid(test):
        expect_error(test, lambda: shamir.split(secret, threshold, indices, randomness), "split")
        return
    equal("coefficients", [(int.from_bytes(from_hex(r), "big") % shamir.PRIME).to_bytes(33, "big").hex()
                           for r in test["randomness"]], test["coefficients"])
    shares = shamir.split(secret, threshold, indices, randomness)
    randomness.finish()
    equal("shares", [_share_json(s) for s in shares], test["shares"])
    equal("encodings", [s.to_bytes().hex() for s in shares], test["encodings"])
    equal("combine(shares)", shamir.combine(shares, threshold).hex(), test["secret"])


@register("ShamirCombineTest")
def check_shamir_combine(group: Json, test: Json) -> None:
    """Recover the secret from the shares (or the named refusal)."""
    del group
    shares = [_share_from_json(item) for item in test["shares"]]
    threshold = int(test["threshold"])
    if not is_valid(test):
        expect_error(test, lambda: shamir.combine(shares, threshold), "combine")
        return
    equal("secret", shamir.combine(shares, threshold).hex(), test["secret"])


@register("ShareEncodingTest")
def check_share_encoding(group: Json, test: Json) -> None:
    """Parse a 37-byte share; re-encode it."""
    del group
    encoded = from_hex(test["encoded"])
    if not is_valid(test):
        expect_error(test, lambda: shamir.Share.from_bytes(encoded), "share decoding")
        return
    share = shamir.Share.from_bytes(encoded)
    equal("share", _share_json(share), {"index": test["index"], "value": test["value"]})
    equal("re-encoding", share.to_bytes().hex(), test["encoded"])


# --- aead.json ---------------------------------------------------------------------------------

AEAD_NOTES = {
    "ShareBundle": "The plaintext is an encoded ShareBundle, as in round ShareKeys.",
    "EmptyPlaintext": "An empty plaintext (the box is nonce || tag).",
    "ModifiedTag": "One bit of the tag flipped (step: open, AuthenticationError).",
    "ModifiedCiphertext": "One bit of the ciphertext flipped (step: open, AuthenticationError).",
    "WrongAssociatedData": "The box is opened with other associated data (sender and recipient swapped, "
    "another round or another session): AuthenticationError.",
    "Truncated": "Shorter than nonce + tag (step: open, AuthenticationError).",
    "BadKey": "A key that is not 32 bytes: refused (ConfigurationError).",
}


def _aead_fields(key: bytes, session: bytes, sender: int, recipient: int, round_number: int) -> Json:
    return {"key": key.hex(), "sessionId": session.hex(), "sender": sender, "recipient": recipient,
            "round": round_number}


def generate_aead() -> Json:
    """aead.json: AES-256-GCM share boxes with their associated data."""
    tests = []
    source = deterministic("aead")
    key, session = source(32), source(32)
    bundle = wire.encode(ShareBundle(3, 5, source(33), source(33)))
    sealed_boxes = []
    for comment, flags, plaintext in (("a share bundle from 3 to 5", ["ShareBundle"], bundle),
                                      ("empty plaintext", ["EmptyPlaintext"], b"")):
        nonce = source(aead.NONCE_SIZE)
        ad = aead.share_associated_data(session, 3, 5, Round.SHARE_KEYS)
        sealed = aead.seal(key, plaintext, ad, ReplayedRandom([nonce]))
        sealed_boxes.append(sealed)
        tests.append(test_case(comment, flags, "valid", **_aead_fields(key, session, 3, 5, Round.SHARE_KEYS),
                               nonce=nonce.hex(), plaintext=plaintext.hex(), associatedData=ad.hex(),
                               sealed=sealed.hex()))
    sealed = sealed_boxes[0]
    flipped_tag = sealed[:-1] + bytes([sealed[-1] ^ 1])
    flipped_body = sealed[:20] + bytes([sealed[20] ^ 0x80]) + sealed[21:]
    other_session = bytes([session[0] ^ 1]) + session[1:]
    for comment, flags, box, fields in [
        ("tag modified", ["ModifiedTag"], flipped_tag, _aead_fields(key, session, 3, 5, 1)),
        ("ciphertext modified", ["ModifiedCiphertext"], flipped_body, _aead_fields(key, session, 3, 5, 1)),
        ("sender and recipient swapped", ["WrongAssociatedData"], sealed, _aead_fields(key, session, 5, 3, 1)),
        ("round 2 instead of 1", ["WrongAssociatedData"], sealed, _aead_fields(key, session, 3, 5, 2)),
        ("another session", ["WrongAssociatedData"], sealed, _aead_fields(key, other_session, 3, 5, 1)),
        ("27 bytes", ["Truncated"], sealed[:27], _aead_fields(key, session, 3, 5, 1)),
    ]:
        tests.append(test_case(comment, flags, "invalid", **fields, sealed=box.hex(), error="AuthenticationError"))
    tests.append(test_case("16-byte key", ["BadKey"], "invalid", **_aead_fields(key[:16], session, 3, 5, 1),
                           sealed=sealed.hex(), error="ConfigurationError"))
    return vector_file(
        algorithm="secagg-aes256gcm-share-box",
        schema="aead_test_schema.json",
        header=[
            "AES-256-GCM share boxes (docs/spec.md, section 9): sealed = nonce (12) || ciphertext || tag (16),",
            "associatedData = 'secagg/v1/share-bundle' || sessionId || u32be(sender) || u32be(recipient) || u8(round).",
            "Invalid tests give the fields from which the opener builds its associated data.",
        ],
        notes=AEAD_NOTES,
        groups=[{"type": "AeadTest", "tests": tests}],
    )


@register("AeadTest")
def check_aead(group: Json, test: Json) -> None:
    """Build the associated data, seal with the recorded nonce, open."""
    del group
    key, session, sealed = from_hex(test["key"]), from_hex(test["sessionId"]), from_hex(test["sealed"])
    ad = aead.share_associated_data(session, int(test["sender"]), int(test["recipient"]), int(test["round"]))
    if not is_valid(test):
        expect_error(test, lambda: aead.open_sealed(key, sealed, ad), "open")
        return
    equal("associatedData", ad.hex(), test["associatedData"])
    plaintext = from_hex(test["plaintext"])
    equal("sealed", aead.seal(key, plaintext, ad, ReplayedRandom([from_hex(test["nonce"])])).hex(), test["sealed"])
    equal("opened", aead.open_sealed(key, sealed, ad).hex(), test["plaintext"])


# --- signatures.json -------------------------------------------------------------------------

SIGNATURE_NOTES = {
    "Rfc8032": "The identity key is RFC 8032 section 7.1 TEST 1's.",
    "ModifiedSignature": "One bit of the signature flipped (step: verify, AuthenticationError).",
    "OtherContext": "A signature made over another round context or survivor list (step: verify, "
    "AuthenticationError): the model-inconsistency attack active mode stops.",
    "OtherSigner": "A signature by another client's identity key (step: verify, AuthenticationError).",
    "WrongLength": "A signature that is not 64 bytes (AuthenticationError) or a public key that is not "
    "32 bytes (DecodeError).",
}
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")


def _signature_test(comment: str, flags: list[str], result: str, key: SigningKey, payload: bytes,
                    signature: bytes, fields: Json, error: str | None = None) -> Json:
    extra: Json = {"seed": key.seed.hex(), "publicKey": key.public.hex(), **fields, "payload": payload.hex(),
                   "signature": signature.hex()}
    if error is not None:
        extra["error"] = error
    return test_case(comment, flags, result, **extra)


def generate_signatures() -> Json:
    """signatures.json: Ed25519 signatures over the AdvertiseKeys and ConsistencyCheck payloads."""
    source = deterministic("signatures")
    rfc_key = SigningKey.generate(ReplayedRandom([RFC8032_SEED]))
    key, other_key = SigningKey.generate(source), SigningKey.generate(source)
    digest, context, other_context = source(32), source(32), bytes(32)
    enc, mask = source(32), source(32)

    def advertise_fields(ctx: bytes) -> Json:
        return {"configDigest": digest.hex(), "context": ctx.hex(), "client": 4, "encryptionKey": enc.hex(),
                "maskKey": mask.hex()}

    payload = advertise_payload(digest, context, 4, enc, mask)
    signature = key.sign(payload)
    advertise = [
        _signature_test("client 4 signs its keys", [], "valid", key, payload, signature, advertise_fields(context)),
        _signature_test("RFC 8032 TEST 1 key", ["Rfc8032"], "valid", rfc_key, payload, rfc_key.sign(payload),
                        advertise_fields(context)),
        _signature_test("signature flipped", ["ModifiedSignature"], "invalid", key, payload,
                        signature[:5] + bytes([signature[5] ^ 4]) + signature[6:], advertise_fields(context),
                        "AuthenticationError"),
        _signature_test("signed for the zero context, presented with another", ["OtherContext"], "invalid", key,
                        payload, key.sign(advertise_payload(digest, other_context, 4, enc, mask)),
                        advertise_fields(context), "AuthenticationError"),
        _signature_test("signed by client 5's key", ["OtherSigner"], "invalid", key, payload,
                        other_key.sign(payload), advertise_fields(context), "AuthenticationError"),
        _signature_test("63-byte signature", ["WrongLength"], "invalid", key, payload, signature[:63],
                        advertise_fields(context), "AuthenticationError"),
    ]
    session = source(32)
    survivors = [1, 2, 4, 6]
    payload = consistency_payload(session, survivors)
    signature = key.sign(payload)
    fields = {"sessionId": session.hex(), "survivors": survivors}
    consistency = [
        _signature_test("client 4 signs the survivor list", [], "valid", key, payload, signature, fields),
        _signature_test("signature over survivors [1, 2, 4]", ["OtherContext"], "invalid", key, payload,
                        key.sign(consistency_payload(session, [1, 2, 4])), fields, "AuthenticationError"),
        _signature_test("signature flipped", ["ModifiedSignature"], "invalid", key, payload,
                        bytes([signature[0] ^ 1]) + signature[1:], fields, "AuthenticationError"),
    ]
    bad_key = test_case("31-byte public key", ["WrongLength"], "invalid", seed=key.seed.hex(),
                        publicKey=key.public[:31].hex(), **fields, payload=payload.hex(), signature=signature.hex(),
                        error="DecodeError")
    consistency.append(bad_key)
    return vector_file(
        algorithm="secagg-ed25519-payloads",
        schema="signatures_test_schema.json",
        header=[
            "Active mode: Ed25519 (RFC 8032) signatures by the clients' identity keys (docs/spec.md, section 10).",
            "AdvertiseKeys payload = 'secagg/v1/advertise' || configDigest || context || u32be(client) ||",
            "encryptionKey || maskKey. ConsistencyCheck payload = 'secagg/v1/consistency' || sessionId ||",
            "u32be(count) || u32be(id) for each survivor in increasing order. 'seed' is the 32-byte private key.",
        ],
        notes=SIGNATURE_NOTES,
        groups=[{"type": "AdvertiseSignatureTest", "tests": advertise},
                {"type": "ConsistencySignatureTest", "tests": consistency}],
    )


def _check_signature(test: Json, payload: bytes) -> None:
    public, signature = from_hex(test["publicKey"]), from_hex(test["signature"])
    if not is_valid(test):
        equal("payload", payload.hex(), test["payload"])
        expect_error(test, lambda: verify(public, signature, payload), "verify")
        return
    equal("payload", payload.hex(), test["payload"])
    key = SigningKey.generate(ReplayedRandom([from_hex(test["seed"])]))
    equal("publicKey", key.public.hex(), test["publicKey"])
    equal("signature", key.sign(payload).hex(), test["signature"])
    verify(public, signature, payload)


@register("AdvertiseSignatureTest")
def check_advertise_signature(group: Json, test: Json) -> None:
    """Rebuild the AdvertiseKeys payload; sign (Ed25519 is deterministic) and verify."""
    del group
    payload = advertise_payload(from_hex(test["configDigest"]), from_hex(test["context"]), int(test["client"]),
                                from_hex(test["encryptionKey"]), from_hex(test["maskKey"]))
    _check_signature(test, payload)


@register("ConsistencySignatureTest")
def check_consistency_signature(group: Json, test: Json) -> None:
    """Rebuild the ConsistencyCheck payload; sign and verify."""
    del group
    _check_signature(test, consistency_payload(from_hex(test["sessionId"]), [int(i) for i in test["survivors"]]))


SUITES = [
    Suite("deterministic_random.json", "deterministic_random_test_schema.json", generate_random),
    Suite("prg.json", "prg_test_schema.json", generate_prg),
    Suite("hkdf.json", "hkdf_test_schema.json", generate_hkdf),
    Suite("x25519.json", "x25519_test_schema.json", generate_x25519),
    Suite("shamir.json", "shamir_test_schema.json", generate_shamir),
    Suite("aead.json", "aead_test_schema.json", generate_aead),
    Suite("signatures.json", "signatures_test_schema.json", generate_signatures),
]

