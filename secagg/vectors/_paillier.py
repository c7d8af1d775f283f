"""Vectors for packed threshold Paillier (spec section 13): slot layout and packing,
encryption with recorded randomness, ciphertext range checks, threshold dealing,
partial decryption, proofs of correct decryption, combination, and the wire
encodings of keys and session messages.

Every key here is a small **insecure** test key (128-bit modulus, 64-bit safe
primes) built inside :func:`~secagg.paillier.keys.insecure_key_sizes_for_testing`;
the verifier enters the same context. The arithmetic is the same at any size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gmpy2

from secagg import wire
from secagg.errors import AuthenticationError
from secagg.paillier.ceremony import (
    deal_threshold_key_from_primes,
    generate_safe_primes,
    single_key_from_primes,
)
from secagg.paillier.encryption import Encryptor, Obfuscation, add_ciphertext_vectors
from secagg.paillier.keys import KeyShare, PrivateKey, PublicKey, ThresholdPublicKey, insecure_key_sizes_for_testing
from secagg.paillier.messages import DecryptionRequest, EncryptedVector, PartialDecryption, aggregate_digest
from secagg.paillier.packing import SlotLayout, pack, unpack
from secagg.paillier.proofs import DecryptionProof, batch, batch_seed, prove, verify
from secagg.paillier.storage import ProtectedSecret
from secagg.paillier.threshold import combine_partials, lagrange_exponents, partial_decrypt, single_key_partial_decrypt
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, VectorError, from_hex, test_case, vector_file
from secagg.vectors._random import RecordingRandom, ReplayedRandom
from secagg.vectors._suite import Suite, deterministic, register
from secagg.vectors._wire import WIRE_NOTES, envelope, wire_group

__all__ = ["SUITES"]

KEY_BITS = 128


def _big(value: Any) -> str:
    number = int(value)
    return number.to_bytes((number.bit_length() + 7) // 8, "big").hex()


def _unbig(text: str) -> int:
    return int.from_bytes(from_hex(text), "big")


def _words(values: Sequence[Any], width: int) -> list[str]:
    return [int(v).to_bytes(width, "big").hex() for v in values]


def _unwords(items: Sequence[str]) -> list[int]:
    return [int.from_bytes(from_hex(item), "big") for item in items]


def _primes(label: str, bits: int = KEY_BITS // 2) -> tuple[int, int]:
    p, q = generate_safe_primes(bits, 2, random_bytes=deterministic(label))
    return min(p, q), max(p, q)


# --- paillier_packing.json -------------------------------------------------------------

PACKING_NOTES = {
    "MinimalSlots": "slot_bits defaults to value_bits + ceil(log2(num_clients)) + 1.",
    "ExplicitSlots": "A slot width wider than the minimum is given explicitly.",
    "Extremes": "Values at -2^(b-1) and 2^(b-1) - 1.",
    "PartialPlaintext": "The last plaintext has unused (zero) slots.",
    "SumOfClients": "The plaintexts are the sum of several clients' packed plaintexts.",
    "ValueOutOfRange": "A value outside [-2^(b-1), 2^(b-1) - 1]: refused (step: pack, EncodeError).",
    "BadLayout": "A layout that could carry between slots or does not fit the key: refused (ConfigurationError).",
    "SlotOverflow": "A decrypted slot is impossible for the number of summands: a slot above "
    "k * (2^b - 1), a guard bit set, a non-zero padding slot or bits above the last slot "
    "(step: unpack, OverflowDetectedError).",
    "BadSummands": "num_summands outside 1..num_clients, or the wrong number of plaintexts (ConfigurationError).",
}


def _layout_fields(layout: SlotLayout) -> Json:
    return {"valueBits": layout.value_bits, "numClients": layout.num_clients, "keyBits": layout.key_bits,
            "slotBits": layout.width}


def _layout(data: Json) -> SlotLayout:
    return SlotLayout(int(data["valueBits"]), int(data["numClients"]), int(data["keyBits"]), int(data["slotBits"]))


def generate_packing() -> Json:
    """paillier_packing.json: slot layouts, pack, unpack with overflow detection."""
    layout_tests = []
    for value_bits, clients, key_bits, slot_bits, flags in (
        (16, 10, 2048, None, ["MinimalSlots"]), (8, 4, KEY_BITS, None, ["MinimalSlots"]),
        (8, 4, KEY_BITS, 16, ["ExplicitSlots"]), (48, 1 << 15, 3072, None, ["MinimalSlots"]),
    ):
        layout = SlotLayout(value_bits, clients, key_bits, slot_bits)
        layout_tests.append(test_case(layout.describe(), flags, "valid", valueBits=value_bits, numClients=clients,
                                      keyBits=key_bits, slotBits=slot_bits, width=layout.width,
                                      headroomBits=layout.headroom_bits, slotsPerPlaintext=layout.slots_per_plaintext,
                                      usedBits=layout.used_bits, plaintextBytes=layout.plaintext_bytes,
                                      offset=layout.offset))
    for value_bits, clients, key_bits, slot_bits, comment in (
        (8, 4, KEY_BITS, 10, "slot narrower than value + headroom + guard"), (1, 4, KEY_BITS, None, "1-bit values"),
        (49, 4, 4096, None, "49-bit values"), (8, 0, KEY_BITS, None, "no clients"),
        (48, 4, 4096, 65, "a 65-bit slot (slot sums are 64-bit words)"),
        (16, 10, 16, None, "a key too small for one slot"),
    ):
        layout_tests.append(test_case(comment, ["BadLayout"], "invalid", valueBits=value_bits, numClients=clients,
                                      keyBits=key_bits, slotBits=slot_bits, error="ConfigurationError"))

    layout = SlotLayout(8, 4, KEY_BITS)
    width = layout.plaintext_bytes
    source = deterministic("paillier/packing")
    vectors = [[(b % 256) - 128 for b in source(15)] for _ in range(3)]
    pack_tests = [
        test_case("15 values over two plaintexts", ["PartialPlaintext"], "valid", values=vectors[0],
                  plaintexts=_words(pack(vectors[0], layout), width)),
        test_case("extremes", ["Extremes"], "valid", values=[-128, 127, 0, -1, 1, 127, -128],
                  plaintexts=_words(pack([-128, 127, 0, -1, 1, 127, -128], layout), width)),
        test_case("128 is out of range", ["ValueOutOfRange"], "invalid", values=[0, 128], error="EncodeError"),
        test_case("-129 is out of range", ["ValueOutOfRange"], "invalid", values=[-129], error="EncodeError"),
    ]
    summed = [sum(column) for column in zip(*(pack(v, layout) for v in vectors), strict=True)]
    totals = [sum(column) for column in zip(*vectors, strict=True)]
    unpack_tests = [
        test_case("sum of 3 clients' plaintexts", ["SumOfClients"], "valid", plaintexts=_words(summed, width),
                  length=15, numSummands=3, values=totals),
        test_case("one client's plaintexts", [], "valid", plaintexts=_words(pack(vectors[0], layout), width),
                  length=15, numSummands=1, values=vectors[0]),
    ]
    guard = 1 << (layout.width - 1)
    bound = layout.max_slot_sum(1)
    top = 1 << layout.used_bits
    single = pack(vectors[0], layout)
    for comment, plaintexts, summands in (
        ("slot 0 holds 2 * (2^8 - 1) for one summand", [single[0] - (single[0] % (1 << layout.width)) + 2 * bound,
                                                         single[1]], 1),
        ("slot 3's guard bit is set", [single[0] | (guard << (3 * layout.width)), single[1]], 1),
        ("padding slot 5 of the second plaintext is not zero", [single[0], single[1] | (1 << (5 * layout.width))], 1),
        ("bits above the last slot", [single[0] + top, single[1]], 1),
    ):
        unpack_tests.append(test_case(comment, ["SlotOverflow"], "invalid", plaintexts=_words(plaintexts, width + 1),
                                      length=15, numSummands=summands, error="OverflowDetectedError"))
    unpack_tests.append(test_case("5 summands for a 4-client layout", ["BadSummands"], "invalid",
                                  plaintexts=_words(summed, width), length=15, numSummands=5,
                                  error="ConfigurationError"))
    unpack_tests.append(test_case("one plaintext for 15 values", ["BadSummands"], "invalid",
                                  plaintexts=_words(summed[:1], width), length=15, numSummands=3,
                                  error="ConfigurationError"))
    return vector_file(
        algorithm="secagg-paillier-packing",
        schema="paillier_packing_test_schema.json",
        header=[
            "Packing signed values into Paillier plaintexts (docs/spec.md, section 13.2): slot i of a plaintext",
            "holds value + 2^(b-1) in bits [i*w, (i+1)*w), w = slot bits; slots per plaintext = floor((|n|-1)/w).",
            "Plaintexts are hex big-endian integers (fixed width in PaillierPackTest).",
        ],
        notes=PACKING_NOTES,
        groups=[
            {"type": "PaillierLayoutTest", "tests": layout_tests},
            {"type": "PaillierPackTest", **_layout_fields(layout), "tests": pack_tests},
            {"type": "PaillierUnpackTest", **_layout_fields(layout), "tests": unpack_tests},
        ],
    )


@register("PaillierLayoutTest")
def check_layout(group: Json, test: Json) -> None:
    """Build the layout; compare every derived size."""
    del group
    slot_bits = test["slotBits"]

    def build() -> SlotLayout:
        return SlotLayout(int(test["valueBits"]), int(test["numClients"]), int(test["keyBits"]),
                          None if slot_bits is None else int(slot_bits))

    if not is_valid(test):
        expect_error(test, build, "SlotLayout")
        return
    layout = build()
    equal("layout", (layout.width, layout.headroom_bits, layout.slots_per_plaintext, layout.used_bits,
                     layout.plaintext_bytes, layout.offset),
          (test["width"], test["headroomBits"], test["slotsPerPlaintext"], test["usedBits"], test["plaintextBytes"],
           test["offset"]))


@register("PaillierPackTest")
def check_pack(group: Json, test: Json) -> None:
    """Pack the values into plaintexts."""
    layout = _layout(group)
    values = [int(v) for v in test["values"]]
    if not is_valid(test):
        expect_error(test, lambda: pack(values, layout), "pack")
        return
    equal("plaintexts", _words(pack(values, layout), layout.plaintext_bytes), test["plaintexts"])


@register("PaillierUnpackTest")
def check_unpack(group: Json, test: Json) -> None:
    """Unpack summed plaintexts, with the overflow checks."""
    layout = _layout(group)
    plaintexts = _unwords(test["plaintexts"])
    length, summands = int(test["length"]), int(test["numSummands"])
    if not is_valid(test):
        expect_error(test, lambda: unpack(plaintexts, layout, length, summands), "unpack")
        return
    equal("values", [int(v) for v in unpack(plaintexts, layout, length, summands)], test["values"])


# --- paillier_encryption.json ------------------------------------------------------------

ENCRYPTION_NOTES = {
    "Textbook": "Obfuscator r^n mod n^2, r = (drawn integer mod (n - 1)) + 1.",
    "Djn": "Obfuscator h^alpha mod n^2 with a short exponent alpha (Damgard-Jurik-Nielsen).",
    "TwoChunks": "More than 32 ciphertexts: the second chunk uses the PRG label of chunk 1.",
    "PlaintextOutOfRange": "A plaintext outside [0, n): refused (step: encrypt, EncodeError).",
    "CiphertextOutOfRange": "A ciphertext word of 0, >= n^2, sharing a factor with n, or a blob that is not a "
    "whole number of words: refused on receipt (step: parse ciphertexts, DecodeError).",
    "Aggregation": "The component-wise product mod n^2 of ciphertext vectors encrypts the sum.",
}


def _djn_base(n: int, draws: Sequence[bytes]) -> int:
    """h = (n - x^2 mod n)^n mod n^2 for x, the first draw (mod n) that is a unit mod n (spec 13.3)."""
    for draw in draws:
        x = int.from_bytes(draw, "big") % n
        if x != 0 and gmpy2.gcd(x, n) == 1:
            return int(gmpy2.powmod(n - x * x % n, n, n * n))
    raise VectorError("no recorded draw gives a DJN base")


def _encryption_group(label: str, mode: Obfuscation, count: int, flags: list[str]) -> Json:
    with insecure_key_sizes_for_testing():
        p, q = _primes("paillier/key")
        key = PublicKey(p * q)
        source = RecordingRandom(deterministic(label))
        encryptor = Encryptor(key, obfuscation=mode, random_bytes=source)
        base_draws = source.take()
        plaintexts = [int.from_bytes(deterministic(f"{label}/m")(key.plaintext_bytes + 8), "big") % key.n
                      for _ in range(count)]
        ciphertexts = encryptor.encrypt(plaintexts)
        (seed,) = source.take()
    width = key.ciphertext_bytes
    obfuscators = [c * pow(1 + m * key.n, -1, key.nsquare) % key.nsquare for m, c in zip(plaintexts, ciphertexts,
                                                                                            strict=True)]
    tests = [test_case(f"{count} plaintexts", flags, "valid", baseDraws=[d.hex() for d in base_draws],
                       seed=seed.hex(), plaintexts=_words(plaintexts, key.plaintext_bytes),
                       obfuscators=_words(obfuscators, width), ciphertexts=_words(ciphertexts, width))]
    tests.append(test_case("plaintext n", ["PlaintextOutOfRange"], "invalid", baseDraws=[d.hex() for d in base_draws],
                           seed=seed.hex(), plaintexts=_words([1, key.n], key.plaintext_bytes + 1),
                           error="EncodeError"))
    djn = {"djnBase": _big(_djn_base(key.n, base_draws))} if mode is Obfuscation.DJN else {}
    return {"type": "PaillierEncryptionTest", "n": _big(key.n), "obfuscation": mode.value, **djn, "tests": tests}


def _ciphertext_checks() -> list[Json]:
    with insecure_key_sizes_for_testing():
        p, q = _primes("paillier/key")
        key = PublicKey(p * q)
    width = key.ciphertext_bytes
    good = [2, key.nsquare - 1, 1]
    tests = [test_case("1, 2 and n^2 - 1", [], "valid", blob="".join(_words(good, width)), values=_words(good, width))]
    for comment, values in (("0", [0]), ("n^2", [key.nsquare]), ("p * 3", [p * 3]), ("q, after a valid word", [5, q])):
        tests.append(test_case(f"ciphertext {comment}", ["CiphertextOutOfRange"], "invalid",
                               blob="".join(_words(values, width)), error="DecodeError"))
    tests.append(test_case("a blob one byte short of two words", ["CiphertextOutOfRange"], "invalid",
                           blob="".join(_words([2, 3], width))[:-2], error="DecodeError"))
    vectors = [[int.from_bytes(deterministic(f"paillier/add/{i}/{j}")(width), "big") % key.nsquare for j in range(3)]
               for i in range(3)]
    product = add_ciphertext_vectors(key, vectors)
    aggregation = [
        test_case("three vectors of 3 ciphertexts", ["Aggregation"], "valid",
                  vectors=[_words(v, width) for v in vectors], product=_words(product, width)),
        test_case("vectors of 3 and 2 ciphertexts", [], "invalid",
                  vectors=[_words(vectors[0], width), _words(vectors[1][:2], width)], error="ConfigurationError"),
    ]
    return [{"type": "PaillierCiphertextTest", "n": _big(key.n), "tests": tests},
            {"type": "PaillierAdditionTest", "n": _big(key.n), "tests": aggregation}]


def generate_encryption() -> Json:
    """paillier_encryption.json: encryption with recorded randomness; ciphertext checks; aggregation."""
    return vector_file(
        algorithm="secagg-paillier-encryption",
        schema="paillier_encryption_test_schema.json",
        header=[
            "Paillier encryption c = (1 + m n) * rho mod n^2 with g = n + 1 (docs/spec.md, section 13.3).",
            "The obfuscators rho are expanded from the recorded 32-byte 'seed' (AES-128-CTR, label",
            "'paillier-obfuscator/' || u64be(chunk)); DJN also records the draws of its base x ('baseDraws').",
            "Integers are hex big-endian, fixed width (plaintexts ceil(|n|/8) bytes, ciphertexts twice that).",
            "INSECURE 128-bit test keys.",
        ],
        notes=ENCRYPTION_NOTES,
        groups=[
            _encryption_group("paillier/encrypt/textbook", Obfuscation.TEXTBOOK, 5, ["Textbook"]),
            _encryption_group("paillier/encrypt/textbook-long", Obfuscation.TEXTBOOK, 34, ["Textbook", "TwoChunks"]),
            _encryption_group("paillier/encrypt/djn", Obfuscation.DJN, 5, ["Djn"]),
            *_ciphertext_checks(),
        ],
    )


@register("PaillierEncryptionTest")
def check_encryption(group: Json, test: Json) -> None:
    """Encrypt with the recorded draws; compare obfuscators and ciphertexts."""
    mode = Obfuscation(group["obfuscation"])
    with insecure_key_sizes_for_testing():
        key = PublicKey(_unbig(group["n"]))
        source = ReplayedRandom([from_hex(d) for d in test["baseDraws"]], "encryptor")
        encryptor = Encryptor(key, obfuscation=mode, random_bytes=source)
        if mode is Obfuscation.DJN:
            equal("djnBase", _big(_djn_base(key.n, [from_hex(d) for d in test["baseDraws"]])), group["djnBase"])
        source.extend([from_hex(test["seed"])])
        plaintexts = _unwords(test["plaintexts"])
        if not is_valid(test):
            expect_error(test, lambda: encryptor.encrypt(plaintexts), "encrypt")
            return
        ciphertexts = encryptor.encrypt(plaintexts)
        source.finish()
    width = key.ciphertext_bytes
    equal("ciphertexts", _words(ciphertexts, width), test["ciphertexts"])
    expected = [(1 + m * key.n) * rho % key.nsquare for m, rho in zip(plaintexts, _unwords(test["obfuscators"]),
                                                                       strict=True)]
    equal("(1 + m n) * obfuscator", _words(expected, width), test["ciphertexts"])


@register("PaillierAdditionTest")
def check_addition(group: Json, test: Json) -> None:
    """Multiply ciphertext vectors component-wise mod n^2."""
    with insecure_key_sizes_for_testing():
        key = PublicKey(_unbig(group["n"]))
    vectors = [_unwords(v) for v in test["vectors"]]
    if not is_valid(test):
        expect_error(test, lambda: add_ciphertext_vectors(key, vectors), "add ciphertext vectors")
        return
    equal("product", _words(add_ciphertext_vectors(key, vectors), key.ciphertext_bytes), test["product"])


@register("PaillierCiphertextTest")
def check_ciphertexts(group: Json, test: Json) -> None:
    """Parse and range-check a ciphertext blob."""
    with insecure_key_sizes_for_testing():
        key = PublicKey(_unbig(group["n"]))
    width = key.ciphertext_bytes
    blob = from_hex(test["blob"])
    if not is_valid(test):
        expect_error(test, lambda: key.parse_ciphertexts(blob, "vector"), "parse ciphertexts")
        return
    equal("values", _words(key.parse_ciphertexts(blob, "vector"), width), test["values"])


# --- paillier_threshold.json -------------------------------------------------------------

THRESHOLD_NOTES = {
    "SingleKey": "The single-key mode: t = l = 1, the key holder knows p and q.",
    "AllParties": "Every party answers; the t of lowest index are combined.",
    "OtherSubset": "A subset other than the lowest indices is combined.",
    "BelowThreshold": "Fewer than t partial decryptions: refused (step: combine, ThresholdError).",
    "ForgedPartial": "One partial decryption was altered: the combination is not 1 mod n (step: combine, "
    "AuthenticationError), and its proof does not verify.",
    "BadProof": "A proof whose challenge or response was altered, or made for another aggregate: refused "
    "(step: verify proof, AuthenticationError).",
    "NotSafePrimes": "Threshold dealing from primes that are not safe primes: refused (ConfigurationError).",
    "ForgedShare": "A key share that does not match its verification key: refused (AuthenticationError).",
}


def _deal_group(label: str, t: int, parties: int) -> tuple[Json, ThresholdPublicKey, list[KeyShare]]:
    with insecure_key_sizes_for_testing():
        p, q = _primes("paillier/key")
        source = RecordingRandom(deterministic(label))
        material = deal_threshold_key_from_primes(p, q, num_parties=parties, threshold=t, random_bytes=source,
                                                  insecure_for_testing=True)
    public, shares = material.public, list(material.shares)
    test = test_case(f"{t}-of-{parties} key", [], "valid", p=_big(p), q=_big(q), threshold=t, numParties=parties,
                     randomness=[d.hex() for d in source.take()], n=_big(public.key.n),
                     verificationBase=_big(public.verification_base),
                     secrets=[_big(s.secret) for s in shares],
                     verificationKeys=[_big(v) for v in public.verification_keys],
                     publicKey=wire.encode(public).hex(), keyShares=[wire.encode(s).hex() for s in shares])
    return test, public, shares


def _partial_tests(public: ThresholdPublicKey, secrets: Sequence[KeyShare | PrivateKey], label: str) -> list[Json]:
    key = public.key
    width = key.ciphertext_bytes
    with insecure_key_sizes_for_testing():
        encryptor = Encryptor(key, random_bytes=deterministic(f"{label}/encrypt"))
        messages = [int.from_bytes(deterministic(f"{label}/m/{j}")(8), "big") for j in range(4)]
        ciphertexts = encryptor.encrypt(messages)
    partials = {}
    for secret in secrets:
        if isinstance(secret, PrivateKey):
            partials[1] = single_key_partial_decrypt(secret, ciphertexts)
        else:
            partials[secret.index] = partial_decrypt(secret, ciphertexts)
    t = public.threshold
    subsets = [sorted(partials)[:t]]
    if len(partials) > t:
        subsets.append(sorted(partials)[-t:])
    tests = []
    for number, subset in enumerate(subsets):
        chosen = {i: partials[i] for i in subset}
        tests.append(test_case(
            f"combine parties {subset}", ["SingleKey"] if public.single_key else
            (["AllParties"] if number == 0 else ["OtherSubset"]), "valid", ciphertexts=_words(ciphertexts, width),
            partials=[{"party": i, "values": _words(v, width)} for i, v in sorted(partials.items())], combine=subset,
            exponents=[str(lagrange_exponents(subset, public.delta)[i]) for i in subset],
            plaintexts=_words(combine_partials(public, chosen), key.plaintext_bytes)))
    if t > 1:
        below = sorted(partials)[: t - 1]
        tests.append(test_case(f"only parties {below}", ["BelowThreshold"], "invalid",
                               ciphertexts=_words(ciphertexts, width),
                               partials=[{"party": i, "values": _words(partials[i], width)} for i in below],
                               combine=below, error="ThresholdError"))
    forged = {i: list(v) for i, v in partials.items()}
    first = sorted(forged)[0]
    forged[first][1] = forged[first][1] * 2 % key.nsquare
    subset = sorted(forged)[:t]
    tests.append(test_case(f"party {first}'s second value times 2", ["ForgedPartial"], "invalid",
                           ciphertexts=_words(ciphertexts, width),
                           partials=[{"party": i, "values": _words(forged[i], width)} for i in subset],
                           combine=subset, error="AuthenticationError"))
    return tests


def _proof_tests(public: ThresholdPublicKey, shares: Sequence[KeyShare], label: str) -> list[Json]:
    key = public.key
    width = key.ciphertext_bytes
    source = deterministic(label)
    session, digest = source(32), source(32)
    with insecure_key_sizes_for_testing():
        aggregate = Encryptor(key, random_bytes=source).encrypt([3, 5, 7])
    tests = []
    for share in shares[:2]:
        values = partial_decrypt(share, aggregate)
        data = b"".join(int(v).to_bytes(width, "big") for v in values)
        seed = batch_seed(session, digest, share.index, data)
        batched, batched_partial = batch(public, aggregate, seed), batch(public, values, seed)
        recorder = RecordingRandom(source)
        proof = prove(public, share.index, share.proof_secret, session + digest, batched, recorder)
        fields = {"party": share.index, "sessionId": session.hex(), "aggregateDigest": digest.hex(),
                  "aggregate": _words(aggregate, width), "partial": _words(values, width)}
        tests.append(test_case(f"party {share.index}", [], "valid", **fields, batchSeed=seed.hex(),
                               batched=_big(batched), batchedPartial=_big(batched_partial),
                               randomness=recorder.take()[0].hex(), challenge=proof.challenge.hex(),
                               response=_big(proof.response)))
        if share.index == shares[0].index:
            bad = [
                ("challenge altered", bytes([proof.challenge[0] ^ 1]) + proof.challenge[1:], proof.response, fields),
                ("response + 1", proof.challenge, proof.response + 1, fields),
                ("proof presented for another aggregate digest", proof.challenge, proof.response,
                 {**fields, "aggregateDigest": bytes(32).hex()}),
            ]
            for comment, challenge, response, bad_fields in bad:
                tests.append(test_case(comment, ["BadProof"], "invalid", **bad_fields, challenge=challenge.hex(),
                                       response=_big(response), error="AuthenticationError"))
    return tests


def generate_threshold() -> Json:
    """paillier_threshold.json: dealing, partial decryption, proofs, combination."""
    deal_2of3, public, shares = _deal_group("paillier/deal/2of3", 2, 3)
    deal_3of4, public4, shares4 = _deal_group("paillier/deal/3of4", 3, 4)
    with insecure_key_sizes_for_testing():
        p, q = _primes("paillier/key")
        single = single_key_from_primes(p, q, random_bytes=deterministic("paillier/single"), insecure_for_testing=True)
        bad_primes = [test_case("p - 2 is not a safe prime", ["NotSafePrimes"], "invalid", p=_big(p - 2), q=_big(q),
                                threshold=2, numParties=3, randomness=[], error="ConfigurationError")]
    forged_share = test_case("party 2's secret + 1", ["ForgedShare"], "invalid",
                             publicKey=wire.encode(public).hex(), index=2, secret=_big(shares[1].secret + 1),
                             error="AuthenticationError")
    return vector_file(
        algorithm="secagg-paillier-threshold",
        schema="paillier_threshold_test_schema.json",
        header=[
            "Threshold Paillier (docs/spec.md, sections 13.5-13.8): dealing from safe primes with recorded",
            "randomness, partial decryptions c^(2 Delta s_i) mod n^2, batched proofs of correct decryption, and",
            "Shoup's combination over the t parties of lowest index. Integers are hex big-endian (values of",
            "vectors fixed width; exponents of the combination as decimal strings, they may be negative).",
            "INSECURE 128-bit test keys.",
        ],
        notes=THRESHOLD_NOTES,
        groups=[
            {"type": "ThresholdDealTest", "tests": [deal_2of3, deal_3of4, *bad_primes]},
            {"type": "KeyShareTest", "tests": [
                test_case("party 2's share", [], "valid", publicKey=wire.encode(public).hex(), index=2,
                          secret=_big(shares[1].secret)), forged_share]},
            {"type": "PartialDecryptionTest", "publicKey": wire.encode(public).hex(),
             "keyShares": [wire.encode(s).hex() for s in shares],
             "tests": _partial_tests(public, shares, "paillier/partial/2of3")},
            {"type": "PartialDecryptionTest", "publicKey": wire.encode(public4).hex(),
             "keyShares": [wire.encode(s).hex() for s in shares4],
             "tests": _partial_tests(public4, shares4, "paillier/partial/3of4")},
            {"type": "PartialDecryptionTest", "publicKey": wire.encode(single.public).hex(),
             "keyShares": [wire.encode(single.private).hex()],
             "tests": _partial_tests(single.public, [single.private], "paillier/partial/single")},
            {"type": "DecryptionProofTest", "publicKey": wire.encode(public).hex(),
             "keyShares": [wire.encode(s).hex() for s in shares],
             "tests": _proof_tests(public, shares, "paillier/proof")},
        ],
    )


@register("ThresholdDealTest")
def check_deal(group: Json, test: Json) -> None:
    """Deal shares from the primes with the recorded draws; compare every value and encoding."""
    del group
    p, q, t, parties = _unbig(test["p"]), _unbig(test["q"]), int(test["threshold"]), int(test["numParties"])
    source = ReplayedRandom([from_hex(d) for d in test["randomness"]], "dealer")
    with insecure_key_sizes_for_testing():
        if not is_valid(test):
            expect_error(test, lambda: deal_threshold_key_from_primes(
                p, q, num_parties=parties, threshold=t, random_bytes=source, insecure_for_testing=True), "deal")
            return
        material = deal_threshold_key_from_primes(p, q, num_parties=parties, threshold=t, random_bytes=source,
                                                  insecure_for_testing=True)
    source.finish()
    public = material.public
    equal("n", _big(public.key.n), test["n"])
    equal("verificationBase", _big(public.verification_base), test["verificationBase"])
    equal("secrets", [_big(s.secret) for s in material.shares], test["secrets"])
    equal("verificationKeys", [_big(v) for v in public.verification_keys], test["verificationKeys"])
    equal("publicKey", wire.encode(public).hex(), test["publicKey"])
    equal("keyShares", [wire.encode(s).hex() for s in material.shares], test["keyShares"])


@register("KeyShareTest")
def check_key_share(group: Json, test: Json) -> None:
    """Build a key share; it must match its verification key."""
    del group
    with insecure_key_sizes_for_testing():
        public = wire.decode(from_hex(test["publicKey"]), ThresholdPublicKey)
        index, secret = int(test["index"]), _unbig(test["secret"])
        if not is_valid(test):
            expect_error(test, lambda: KeyShare(public, index, secret), "KeyShare")
            return
        KeyShare(public, index, secret)


def _secrets(group: Json) -> tuple[ThresholdPublicKey, dict[int, KeyShare | PrivateKey]]:
    public = wire.decode(from_hex(group["publicKey"]), ThresholdPublicKey)
    secrets: dict[int, KeyShare | PrivateKey] = {}
    for encoded in group["keyShares"]:
        secret = wire.decode_any(from_hex(encoded))
        if isinstance(secret, KeyShare):
            secrets[secret.index] = secret
        elif isinstance(secret, PrivateKey):
            secrets[1] = secret
        else:
            raise VectorError(f"{type(secret).__name__} is not key material")
    return public, secrets


@register("PartialDecryptionTest")
def check_partial(group: Json, test: Json) -> None:
    """Each party's partial decryption, then the combination of the chosen parties."""
    with insecure_key_sizes_for_testing():
        public, secrets = _secrets(group)
        ciphertexts = _unwords(test["ciphertexts"])
        width = public.key.ciphertext_bytes
        given = {int(item["party"]): _unwords(item["values"]) for item in test["partials"]}
        chosen = {party: given[party] for party in test["combine"]}
        if not is_valid(test):
            expect_error(test, lambda: combine_partials(public, chosen), "combine")
            return
        for party, values in given.items():
            secret = secrets[party]
            mine = (single_key_partial_decrypt(secret, ciphertexts) if isinstance(secret, PrivateKey)
                    else partial_decrypt(secret, ciphertexts))
            equal(f"partial decryption of party {party}", _words(mine, width), _words(values, width))
        equal("exponents", [str(e) for e in lagrange_exponents(list(test["combine"]), public.delta).values()],
              test["exponents"])
        equal("plaintexts", _words(combine_partials(public, chosen), public.key.plaintext_bytes), test["plaintexts"])


@register("DecryptionProofTest")
def check_proof(group: Json, test: Json) -> None:
    """Batch the vectors, rebuild the proof from the recorded randomness, verify it."""
    with insecure_key_sizes_for_testing():
        public, secrets = _secrets(group)
    party = int(test["party"])
    session, digest = from_hex(test["sessionId"]), from_hex(test["aggregateDigest"])
    width = public.key.ciphertext_bytes
    aggregate, values = _unwords(test["aggregate"]), _unwords(test["partial"])
    data = b"".join(v.to_bytes(width, "big") for v in values)
    seed = batch_seed(session, digest, party, data)
    batched, batched_partial = batch(public, aggregate, seed), batch(public, values, seed)
    proof = DecryptionProof(from_hex(test["challenge"]), _unbig(test["response"]))

    def check() -> None:
        if not verify(public, party, session + digest, batched, batched_partial, proof):
            raise AuthenticationError(f"proof of party {party} does not verify")

    if not is_valid(test):
        expect_error(test, check, "verify proof")
        return
    equal("batchSeed", seed.hex(), test["batchSeed"])
    equal("batched", (_big(batched), _big(batched_partial)), (test["batched"], test["batchedPartial"]))
    secret = secrets[party]
    rebuilt = prove(public, party, secret.proof_secret, session + digest, batched,
                    ReplayedRandom([from_hex(test["randomness"])], f"party {party}"))
    equal("proof", (rebuilt.challenge.hex(), _big(rebuilt.response)), (test["challenge"], test["response"]))
    check()


# --- wire_paillier.json -------------------------------------------------------------------

PAILLIER_WIRE_NOTES = {
    **WIRE_NOTES,
    "TestKeySize": "Decoded with the insecure test key sizes allowed (group field testKeySizes).",
    "KeyPolicy": "A modulus below 2048 bits decoded without the test switch: refused (DecodeError).",
    "NonCanonical": "A big integer with a leading zero byte (DecodeError).",
    "BadKey": "Key material violating its invariants (even or square modulus, bad threshold, share that "
    "does not match its verification key): refused at decoding (DecodeError).",
}


def _paillier_wire_groups() -> list[Json]:
    with insecure_key_sizes_for_testing():
        p, q = _primes("paillier/key")
        material = deal_threshold_key_from_primes(p, q, num_parties=3, threshold=2,
                                                  random_bytes=deterministic("paillier/wire/deal"),
                                                  insecure_for_testing=True)
        single = single_key_from_primes(p, q, random_bytes=deterministic("paillier/wire/single"),
                                        insecure_for_testing=True)
    public, share = material.public, material.shares[0]
    key = public.key
    n_bytes = key.n.to_bytes(key.plaintext_bytes, "big")
    source = deterministic("paillier/wire")
    session = source(32)
    upload = EncryptedVector(session, 7, 10, source(2 * key.ciphertext_bytes), source(64))
    upload2 = EncryptedVector(session, 9, 10, source(2 * key.ciphertext_bytes), source(64))
    request = DecryptionRequest(session, 2, (upload, upload2))
    proof = DecryptionProof(source(16), int.from_bytes(source(40), "big"))
    partial = PartialDecryption(session, 2, aggregate_digest(session, [upload, upload2]),
                                source(2 * key.ciphertext_bytes), proof)
    protected = ProtectedSecret(17, 8, 1, source(16), source(100))
    even = key.n + 1
    groups = [
        wire_group(key, [("128-bit test key", ["TestKeySize"], key)], [
            ("leading zero byte in n", ["NonCanonical"],
             envelope(PublicKey.TAG, (len(n_bytes) + 1).to_bytes(2, "big") + b"\x00" + n_bytes)),
            ("even modulus", ["BadKey"], envelope(PublicKey.TAG, len(n_bytes).to_bytes(2, "big")
                                                  + even.to_bytes(len(n_bytes), "big"))),
        ]),
        wire_group(public, [("2-of-3 parameters", ["TestKeySize"], public),
                            ("single-key parameters", ["TestKeySize"], single.public)], [
            ("threshold 4 of 3 parties", ["BadKey"], _with_threshold(public, 4)),
        ]),
        wire_group(share, [("party 1's share", ["TestKeySize"], share)], [
            ("secret + 1 (does not match v_1)", ["BadKey"], _forged_share_bytes(share)),
        ]),
        wire_group(single.private, [("single-key private key", ["TestKeySize"], single.private)], []),
        wire_group(protected, [("a protected secret (scrypt 2^17, r 8, p 1)", [], protected)], [
            ("scrypt log2(N) 23", ["BadKey"], wire.encode(protected)[:5] + b"\x17" + wire.encode(protected)[6:]),
        ]),
        wire_group(upload, [("client 7, 10 values in 2 ciphertexts", [], upload)], []),
        wire_group(request, [("two uploads for party 2", [], request)], []),
        wire_group(partial, [("party 2's answer", [], partial)], [
            ("a 15-byte challenge", ["Truncated"], wire.encode(partial)[:-(2 + 40 + 1)]),
        ]),
    ]
    for group in groups:
        group["testKeySizes"] = group["message"] in ("PublicKey", "ThresholdPublicKey", "KeyShare", "PrivateKey")
    groups[0]["tests"].append(test_case("the 128-bit key without the test switch", ["KeyPolicy"], "invalid",
                                        encoded=wire.encode(key).hex(), error="DecodeError"))
    policy = {"type": "WireMessageTest", "message": "PublicKey", "tag": PublicKey.TAG, "testKeySizes": False,
              "tests": [groups[0]["tests"].pop()]}
    return [*groups, policy]


def _with_threshold(public: ThresholdPublicKey, threshold: int) -> bytes:
    """The encoding of ``public`` with its u16 threshold replaced (after the envelope and the modulus)."""
    body = wire.encode(public)
    at = 5 + 2 + public.key.plaintext_bytes
    return body[:at] + threshold.to_bytes(2, "big") + body[at + 2 :]


def _forged_share_bytes(share: KeyShare) -> bytes:
    body = wire.encode(share)
    secret = share.secret.to_bytes((share.secret.bit_length() + 7) // 8, "big")
    forged = (share.secret + 1).to_bytes(len(secret), "big")
    assert body.endswith(secret)
    return body[: -len(secret)] + forged


def generate_wire_paillier() -> Json:
    """wire_paillier.json: Paillier keys, protected secrets and session messages."""
    return vector_file(
        algorithm="secagg-wire-paillier",
        schema="wire_test_schema.json",
        header=[
            "Wire encodings (docs/spec.md, section 11) of the Paillier keys and messages (section 13.1, 13.9).",
            "Big integers are u16 length + minimal big-endian bytes; in 'fields' they are hex of the minimal",
            "big-endian bytes. Groups with testKeySizes decode inside the insecure test-key switch.",
        ],
        notes=PAILLIER_WIRE_NOTES,
        groups=_paillier_wire_groups(),
    )


SUITES = [
    Suite("paillier_packing.json", "paillier_packing_test_schema.json", generate_packing),
    Suite("paillier_encryption.json", "paillier_encryption_test_schema.json", generate_encryption),
    Suite("paillier_threshold.json", "paillier_threshold_test_schema.json", generate_threshold),
    Suite("wire_paillier.json", "wire_test_schema.json", generate_wire_paillier),
]
