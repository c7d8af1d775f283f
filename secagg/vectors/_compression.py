"""Vectors for the compression primitives: bit packing and the Walsh-Hadamard rotation.

Spec sections (docs/spec.md): 17 (bit packing and narrow rings), 18 (rotation).
Float vectors are the hex of their IEEE-754 binary64 values, little-endian, 8
bytes each: the rotation is specified operation by operation, so a conforming
implementation reproduces every double bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from secagg import bitpack, rotation
from secagg.descriptor import encode_parameters
from secagg.primitives import prg
from secagg.ring import RING32
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, VectorError, from_hex, test_case, vector_file
from secagg.vectors._suite import Suite, deterministic, register, sha256_hex, uniforms, words

__all__ = ["SUITES"]

INLINE_DOUBLES = 1024
"""Rotated vectors longer than this are pinned by the SHA-256 of their bytes."""


def _u64_hex(values: np.ndarray) -> str:
    return np.ascontiguousarray(values, dtype="<u8").tobytes().hex()


def _u64_from_hex(text: str) -> np.ndarray:
    data = from_hex(text)
    if len(data) % 8:
        raise VectorError(f"{len(data)} bytes is not a whole number of u64 words")
    values: np.ndarray = np.frombuffer(data, dtype="<u8").copy()
    return values


def _doubles_hex(values: np.ndarray) -> str:
    return np.ascontiguousarray(values, dtype="<f8").tobytes().hex()


def _doubles_from_hex(text: str) -> np.ndarray:
    data = from_hex(text)
    if len(data) % 8:
        raise VectorError(f"{len(data)} bytes is not a whole number of doubles")
    values: np.ndarray = np.frombuffer(data, dtype="<f8").copy()
    return values


# --- bitpack.json ---------------------------------------------------------------------------

BITPACK_NOTES = {
    "Extremes": "The values include 0 and 2^b - 1 (every bit of a value set).",
    "WholeBytes": "b is a multiple of 8: the packing is the low b/8 bytes of each little-endian word.",
    "Padding": "d * b is not a multiple of 8: the last byte has 8 - (d * b mod 8) zero padding bits.",
    "Empty": "No values: the packing is empty.",
    "TooWide": "A value >= 2^b: refused (step: pack, EncodeError).",
    "BadWidth": "b outside 1..64: refused (step: pack or unpack, ConfigurationError).",
    "WrongLength": "The packing is not exactly ceil(d * b / 8) bytes: refused (step: unpack, DecodeError).",
    "NonzeroPadding": "A padding bit is set: refused (step: unpack, DecodeError); every vector has one packing.",
}


def _narrow(label: str, count: int, bits: int) -> np.ndarray:
    values = words(label, count, 64)
    return values & np.uint64((1 << bits) - 1) if bits < 64 else values


def generate_bitpack() -> Json:
    """bitpack.json: 13 values at every width 1..64, the empty vector, and the refusals."""
    tests = []
    for bits in range(1, 65):
        values = _narrow(f"bitpack/{bits}", 13, bits)
        values[0], values[1] = 0, (1 << bits) - 1
        flags = ["Extremes", "WholeBytes" if bits % 8 == 0 else "Padding"]
        packed = bitpack.pack(values, bits)
        tests.append(
            test_case(
                f"13 values of {bits} bits",
                flags,
                "valid",
                bits=bits,
                length=13,
                values=_u64_hex(values),
                packed=packed.hex(),
            )
        )
    tests.append(test_case("no values of 12 bits", ["Empty"], "valid", bits=12, length=0, values="", packed=""))
    for bits in (1, 12, 63):
        too_wide = np.array([0, 1 << bits], dtype=np.uint64)
        tests.append(
            test_case(
                f"a value of {bits + 1} bits packed to {bits}",
                ["TooWide"],
                "invalid",
                bits=bits,
                length=2,
                values=_u64_hex(too_wide),
                error="EncodeError",
            )
        )
    for bits in (0, 65):
        tests.append(
            test_case(
                f"width {bits}",
                ["BadWidth"],
                "invalid",
                bits=bits,
                length=1,
                values=_u64_hex(np.zeros(1, dtype=np.uint64)),
                error="ConfigurationError",
            )
        )
    unpack_tests = []
    for comment, bits, length, forged in [
        ("3 values of 5 bits in 1 byte (need 2)", 5, 3, "00"),
        ("3 values of 5 bits in 3 bytes (need 2)", 5, 3, "000000"),
        ("8 values of 8 bits in 9 bytes", 8, 8, "00" * 9),
        ("0 values in 1 byte", 12, 0, "00"),
    ]:
        unpack_tests.append(
            test_case(comment, ["WrongLength"], "invalid", bits=bits, length=length, packed=forged, error="DecodeError")
        )
    for comment, bits, length, forged in [
        ("3 values of 5 bits, padding bit 15 set", 5, 3, "0080"),
        ("1 value of 1 bit, padding bit 1 set", 1, 1, "02"),
        ("1 value of 12 bits, padding bit 12 set", 12, 1, "0010"),
        ("5 values of 63 bits, padding bit 319 set", 63, 5, "00" * 39 + "80"),
    ]:
        unpack_tests.append(
            test_case(
                comment, ["NonzeroPadding"], "invalid", bits=bits, length=length, packed=forged, error="DecodeError"
            )
        )
    unpack_tests.append(
        test_case("width 65", ["BadWidth"], "invalid", bits=65, length=1, packed="00" * 9, error="ConfigurationError")
    )
    return vector_file(
        algorithm="secagg-bitpack",
        schema="bitpack_test_schema.json",
        header=[
            "Bit packing of d unsigned b-bit values into ceil(d * b / 8) bytes (docs/spec.md, section 17).",
            "Bit j of value i is bit (i * b + j) mod 8 of byte floor((i * b + j) / 8); padding bits are zero.",
            "'values' is the hex of the values as little-endian u64 words, whatever b is.",
        ],
        notes=BITPACK_NOTES,
        groups=[{"type": "BitPackTest", "tests": tests}, {"type": "BitUnpackTest", "tests": unpack_tests}],
    )


@register("BitPackTest")
def check_bitpack(group: Json, test: Json) -> None:
    """Pack the values; unpack the packing back to them."""
    del group
    bits, length = int(test["bits"]), int(test["length"])
    values = _u64_from_hex(test["values"])
    equal("number of values", values.shape[0], length)
    if not is_valid(test):
        expect_error(test, lambda: bitpack.pack(values, bits), "pack")
        return
    packed = bitpack.pack(values, bits)
    equal("packed", packed.hex(), test["packed"])
    equal("unpacked", _u64_hex(bitpack.unpack(from_hex(test["packed"]), length, bits)), test["values"])


@register("BitUnpackTest")
def check_bitunpack(group: Json, test: Json) -> None:
    """Unpacking must refuse the bytes."""
    del group
    bits, length, packed = int(test["bits"]), int(test["length"]), from_hex(test["packed"])
    if is_valid(test):
        raise VectorError("BitUnpackTest holds refusals only")
    expect_error(test, lambda: bitpack.unpack(packed, length, bits), "unpack")


# --- rotation.json --------------------------------------------------------------------------

ROTATION_NOTES = {
    "OneBlock": "The default block: the next power of two >= d, one block.",
    "Blocks": "An explicit block size B < D: each block of B coordinates is rotated alone.",
    "Padding": "d is not a multiple of the block: the input is padded with zeros.",
    "Spike": "All the input's energy in one coordinate; the rotation spreads it evenly.",
    "OddStages": "log2(B) is odd: the normalisation is 2^-(k-1)/2 times the double nearest to 1/sqrt(2).",
    "LongOutput": "The output is pinned by the SHA-256 of its little-endian doubles.",
    "BadSeed": "A seed that is not 32 bytes: refused (step: Rotation, ConfigurationError).",
    "BadBlock": "A block that is not a power of two: refused (step: Rotation, ConfigurationError).",
    "BadDimension": "A dimension of 0: refused (step: Rotation, ConfigurationError).",
}


def _rotation_input(label: str, d: int) -> np.ndarray:
    """Doubles in (-8, 8) with exact binary expansions: (u - 0.5) * 16 for the stream's uniforms u."""
    return (np.array(uniforms(label, d)) - 0.5) * 16.0


def _rotation_test(comment: str, flags: list[str], seed: bytes, x: np.ndarray, block: int | None) -> Json:
    rot = rotation.Rotation(seed, x.shape[0], block)
    size = rot.padded_dimension
    y = rot.forward(x)
    back = rot.inverse(y)
    fields: Json = {
        "seed": seed.hex(),
        "dimension": x.shape[0],
        "block": block,
        "paddedDimension": size,
        "signStream": prg.expand(seed, rotation.SIGN_LABEL, (size + 31) // 32, RING32)
        .tobytes()[: (size + 7) // 8]
        .hex(),
        "parameters": encode_parameters(rot.descriptor_parameters()).hex(),
        "input": _doubles_hex(x),
    }
    if size <= INLINE_DOUBLES:
        fields.update(output=_doubles_hex(y), inverse=_doubles_hex(back))
    else:
        flags = [*flags, "LongOutput"]
        fields.update(outputSha256=sha256_hex(_doubles_bytes(y)), inverseSha256=sha256_hex(_doubles_bytes(back)))
    return test_case(comment, flags, "valid", **fields)


def _doubles_bytes(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def generate_rotation() -> Json:
    """rotation.json: forward and inverse rotations bit for bit, and refused parameters."""
    seed = deterministic("rotation/seed")(32)
    tests = []
    for d, block, flags in [
        (1, None, ["OneBlock"]),
        (3, None, ["OneBlock", "Padding"]),
        (8, None, ["OneBlock", "OddStages"]),
        (100, None, ["OneBlock", "Padding", "OddStages"]),
        (1000, None, ["OneBlock", "Padding"]),
        (1000, 64, ["Blocks", "Padding"]),
        (5000, 1 << 12, ["Blocks", "Padding"]),
        (5000, None, ["OneBlock", "Padding", "OddStages"]),
    ]:
        x = _rotation_input(f"rotation/{d}/{block}", d)
        comment = f"d = {d}, " + ("one block" if block is None else f"blocks of {block}")
        tests.append(_rotation_test(comment, flags, seed, x, block))
    spike = np.zeros(300)
    spike[17] = 3.0
    tests.append(_rotation_test("d = 300, one spike", ["OneBlock", "Padding", "Spike"], seed, spike, None))
    for comment, flags, bad_seed, d, block in [
        ("a 31-byte seed", ["BadSeed"], seed[:31], 8, None),
        ("block 48", ["BadBlock"], seed, 100, 48),
        ("dimension 0", ["BadDimension"], seed, 0, None),
    ]:
        tests.append(
            test_case(
                comment, flags, "invalid", seed=bad_seed.hex(), dimension=d, block=block, error="ConfigurationError"
            )
        )
    return vector_file(
        algorithm="secagg-rotation-walsh-hadamard",
        schema="rotation_test_schema.json",
        header=[
            "Randomized Walsh-Hadamard rotation (docs/spec.md, section 18): zero padding to blocks of B,",
            "signs from the PRG under the label 'secagg/v1/rotation', Sylvester butterflies h = 1, 2, ..., B/2,",
            "then the double nearest to 1/sqrt(B). Vectors of doubles are the hex of little-endian binary64",
            "values and must match bit for bit. 'signStream' is the first ceil(D/8) bytes of the sign expansion;",
            "'parameters' is encode_parameters(descriptor parameters) (section 16). 'block' null: the default.",
        ],
        notes=ROTATION_NOTES,
        groups=[{"type": "RotationTest", "tests": tests}],
    )


@register("RotationTest")
def check_rotation(group: Json, test: Json) -> None:
    """Rotate the input, compare the doubles; invert the rotation, compare again."""
    del group
    seed, d = from_hex(test["seed"]), int(test["dimension"])
    block = None if test["block"] is None else int(test["block"])
    make: Callable[[], rotation.Rotation] = lambda: rotation.Rotation(seed, d, block)  # noqa: E731
    if not is_valid(test):
        expect_error(test, make, "Rotation")
        return
    rot = make()
    equal("paddedDimension", rot.padded_dimension, test["paddedDimension"])
    size = rot.padded_dimension
    stream = prg.expand(seed, rotation.SIGN_LABEL, (size + 31) // 32, RING32).tobytes()[: (size + 7) // 8]
    equal("signStream", stream.hex(), test["signStream"])
    equal("parameters", encode_parameters(rot.descriptor_parameters()).hex(), test["parameters"])
    y = rot.forward(_doubles_from_hex(test["input"]))
    if "output" in test:
        equal("output", _doubles_hex(y), test["output"])
        equal("inverse", _doubles_hex(rot.inverse(_doubles_from_hex(test["output"]))), test["inverse"])
    else:
        equal("SHA-256 of the output", sha256_hex(_doubles_bytes(y)), test["outputSha256"])
        equal("SHA-256 of the inverse", sha256_hex(_doubles_bytes(rot.inverse(y))), test["inverseSha256"])


SUITES = [
    Suite("bitpack.json", "bitpack_test_schema.json", generate_bitpack),
    Suite("rotation.json", "rotation_test_schema.json", generate_rotation),
]
