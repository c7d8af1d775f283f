"""Vectors for secret sharing and the sealing of shares: Shamir over the 256-bit prime, AEAD.

Spec sections (docs/spec.md): 8 (Shamir), 9 (AEAD).
"""

from __future__ import annotations

from secagg import wire
from secagg.masking.messages import Round, ShareBundle
from secagg.primitives import aead, shamir
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, from_hex, test_case, vector_file
from secagg.vectors._random import ReplayedRandom
from secagg.vectors._suite import Suite, deterministic, register

__all__ = ["SUITES"]


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


SUITES = [
    Suite("shamir.json", "shamir_test_schema.json", generate_shamir),
    Suite("aead.json", "aead_test_schema.json", generate_aead),
]
