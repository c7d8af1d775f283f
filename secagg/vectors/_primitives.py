"""Vectors for the generator's randomness and the PRG: the documented SHA-256 test stream
and the AES-CTR mask expansion.

Spec sections (docs/spec.md): 2 (test randomness), 5 (PRG). The other primitives'
vectors are in ``_keys.py`` (HKDF, X25519), ``_sharing.py`` (Shamir, AEAD) and
``_signatures.py`` (Ed25519).
"""

from __future__ import annotations

import numpy as np

from secagg.masking.session import (
    PAIR_MASK_LABEL,
    SELF_MASK_LABEL,
)
from secagg.primitives import kdf, prg
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.ring import NARROW_MAX_BITS, NARROW_MIN_BITS, NarrowRing, Ring
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, from_hex, ring_from_hex, ring_to_hex, test_case, vector_file
from secagg.vectors._suite import Suite, deterministic, register, sha256_hex, words

__all__ = ["SUITES", "prg_key"]

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


def prg_key(seed: bytes, label: bytes) -> bytes:
    """The AES key the PRG derives from ``seed`` for ``label`` (HKDF-SHA256, spec 5)."""
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
                    "aesKey": prg_key(seed, label).hex()}
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
    equal("aesKey", prg_key(seed, label).hex(), test["aesKey"])
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


SUITES = [
    Suite("deterministic_random.json", "deterministic_random_test_schema.json", generate_random),
    Suite("prg.json", "prg_test_schema.json", generate_prg),
]

