"""Vectors for quantization and decoding (spec section 3) and ring arithmetic (section 4)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from secagg.encoding import MAX_BITS, QuantizationConfig, dequantize, from_ring, quantize_to_integers, to_ring
from secagg.ring import NarrowRing, Ring
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, VectorError, ring_from_hex, ring_to_hex, test_case, vector_file
from secagg.vectors._suite import Suite, register, uniforms, words

__all__ = ["SUITES"]

_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _json_float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float(value)


def _parse_float(value: Any) -> float:
    if isinstance(value, str):
        if value not in _NON_FINITE:
            raise VectorError(f"unknown float literal {value!r}")
        return _NON_FINITE[value]
    return float(value)


class _RecordedUniforms(np.random.Generator):
    """A numpy Generator whose ``random(size)`` returns the recorded draws (a subclass, so the
    library's one ``rng`` check, which refuses every other object, takes it)."""

    def __init__(self, draws: Sequence[float]) -> None:
        super().__init__(np.random.PCG64(0))  # never drawn from: random() is replaced below
        self._draws = np.array(draws, dtype=np.float64)

    def random(self, size: int) -> np.ndarray:  # type: ignore[override]
        if size != self._draws.shape[0]:
            raise VectorError(f"quantization drew {size} uniforms, the vector records {self._draws.shape[0]}")
        return self._draws


def _config(params: Json) -> QuantizationConfig:
    return QuantizationConfig(
        clip=float(params["clip"]),
        bits=int(params["bits"]),
        num_clients=int(params["numClients"]),
        ring_bits=int(params["ringBits"]),
        max_weight=int(params["maxWeight"]),
    )


def _config_fields(config: QuantizationConfig) -> Json:
    return {
        "clip": config.clip,
        "bits": config.bits,
        "numClients": config.num_clients,
        "ringBits": config.ring_bits,
        "maxWeight": config.max_weight,
    }


# --- quantization.json ---------------------------------------------------------------

QUANT_NOTES = {
    "Clipped": "Some values lie outside [-clip, clip] and are clipped before scaling.",
    "Boundary": "Values at 0, at +-clip, or on an exact quantization step (fractional part 0).",
    "Random": "Values drawn uniformly from [-1.5 clip, 1.5 clip] by the generator.",
    "NonFinite": "A NaN or infinite input: quantization must refuse it (step: quantize).",
    "RingOverflow": "num_clients * max_weight * qmax exceeds 2^(ring_bits-1) - 1: the configuration "
    "must be refused at setup (step: QuantizationConfig).",
    "BadParameter": "A parameter outside its domain (bits, clip, ring size, counts): refused at setup.",
    "MaximalSetting": "The largest setting that is still accepted for its ring.",
    "SumOutOfRange": "A decoded coordinate exceeds num_summands * max_weight * qmax: decoding must "
    "raise OverflowDetectedError (step: dequantize).",
    "Weighted": "A weighted sum decoded as a mean (weight_total > 1).",
    "BadSummands": "num_summands outside 1..num_clients or weight_total < 1: refused (step: dequantize).",
}

_QUANT_CONFIGS = [
    QuantizationConfig(clip=1.0, bits=16, num_clients=10),
    QuantizationConfig(clip=0.1, bits=8, num_clients=100),
    QuantizationConfig(clip=3.5, bits=24, num_clients=100, max_weight=2),
    QuantizationConfig(clip=1.0, bits=32, num_clients=1000, ring_bits=64, max_weight=1000),
]


def _quantization_group(index: int, config: QuantizationConfig) -> Json:
    clip, step = config.clip, config.step
    cases: list[tuple[str, list[str], list[float]]] = [
        ("zero, +-clip, exact steps and half steps", ["Boundary"],
         [0.0, clip, -clip, step, -step, 2.5 * step, -2.5 * step, clip - step / 2]),
        ("values outside [-clip, clip] are clipped", ["Clipped"],
         [2 * clip, -3 * clip, 1e300, -1e300, clip * 1.0000001, 0.5 * clip, -0.25 * clip, 1e-300]),
    ]
    for repeat in range(2):
        label = f"quantization/{index}/{repeat}"
        values = [(2 * u - 1) * 1.5 * clip for u in uniforms(label + "/values", 12)]
        cases.append(("uniform values in [-1.5 clip, 1.5 clip]", ["Random"], values))
    tests = []
    for number, (comment, flags, values) in enumerate(cases):
        draws = uniforms(f"quantization/{index}/{number}/rounding", len(values))
        with np.errstate(over="ignore"):
            integers = quantize_to_integers(values, config, _RecordedUniforms(draws))
        tests.append(test_case(
            comment, flags, "valid", values=values, uniforms=draws,
            integers=[int(v) for v in integers], encoded=ring_to_hex(to_ring(integers, config)),
        ))
    for literal in ("NaN", "Infinity", "-Infinity"):
        literal_values: list[float | str] = [0.5 * clip, _json_float(_NON_FINITE[literal]), 0.0]
        tests.append(test_case(
            f"{literal} among the inputs is refused", ["NonFinite"], "invalid",
            values=literal_values, uniforms=uniforms(f"quantization/{index}/{literal}", 3), error="ConfigurationError",
        ))
    return {
        "type": "QuantizationTest",
        **_config_fields(config),
        "qmax": config.qmax,
        "scale": config.scale,
        "tests": tests,
    }


def _config_tests() -> Json:
    n16 = ((1 << 31) - 1) // ((1 << 15) - 1)  # most clients for 16-bit values in Z_(2^32)
    w20 = ((1 << 31) - 1) // (1024 * ((1 << 19) - 1))  # largest weight for 20-bit values, 1024 clients
    accepted = [
        (QuantizationConfig(clip=1.0, bits=16, num_clients=n16), "largest n for 16-bit values in Z_(2^32)"),
        (QuantizationConfig(clip=2.0, bits=32, num_clients=1), "widest value for one client in Z_(2^32)"),
        (QuantizationConfig(clip=0.5, bits=MAX_BITS, num_clients=1024, ring_bits=64),
         "widest value (53 bits, float64 precision) in Z_(2^64)"),
        (QuantizationConfig(clip=1.0, bits=20, num_clients=1024, ring_bits=32, max_weight=w20),
         "largest weight for 20-bit values, 1024 clients"),
    ]
    tests = [
        test_case(comment, ["MaximalSetting"], "valid", **_config_fields(config),
                  qmax=config.qmax, limit=config.limit, scale=config.scale)
        for config, comment in accepted
    ]
    refused: list[tuple[Json, str, str]] = [
        ({"clip": 1.0, "bits": 16, "numClients": n16 + 1, "ringBits": 32, "maxWeight": 1},
         "one client more than fits", "RingOverflow"),
        ({"clip": 1.0, "bits": 20, "numClients": 1024, "ringBits": 32, "maxWeight": w20 + 1},
         "one weight unit more than fits", "RingOverflow"),
        ({"clip": 1.0, "bits": 2, "numClients": (1 << 63) - 1, "ringBits": 64, "maxWeight": 2},
         "the sum bound itself exceeds 2^63", "RingOverflow"),
        ({"clip": 1.0, "bits": 32, "numClients": 2, "ringBits": 32, "maxWeight": 1},
         "two 32-bit values overflow Z_(2^32)", "RingOverflow"),
        ({"clip": 1.0, "bits": MAX_BITS + 1, "numClients": 1, "ringBits": 64, "maxWeight": 1},
         "54 bits exceed float64 precision", "BadParameter"),
        ({"clip": 1.0, "bits": 1, "numClients": 1, "ringBits": 32, "maxWeight": 1}, "bits below 2", "BadParameter"),
        ({"clip": 0.0, "bits": 16, "numClients": 10, "ringBits": 32, "maxWeight": 1}, "clip is zero", "BadParameter"),
        ({"clip": -1.0, "bits": 16, "numClients": 10, "ringBits": 32, "maxWeight": 1}, "negative clip", "BadParameter"),
        ({"clip": 1.0, "bits": 16, "numClients": 10, "ringBits": 16, "maxWeight": 1}, "ring Z_(2^16)", "BadParameter"),
        ({"clip": 1.0, "bits": 16, "numClients": 0, "ringBits": 32, "maxWeight": 1}, "no clients", "BadParameter"),
        ({"clip": 1.0, "bits": 16, "numClients": 10, "ringBits": 32, "maxWeight": 0}, "weight 0", "BadParameter"),
    ]
    for params, comment, flag in refused:
        tests.append(test_case(comment, [flag], "invalid", **params, error="ConfigurationError"))
    return {"type": "QuantizationConfigTest", "tests": tests}


def _dequantization_group(config: QuantizationConfig, label: str) -> Json:
    n = min(config.num_clients, 5)
    d = 10
    parts = []
    for client in range(n):
        draws = uniforms(f"{label}/{client}/values", d)
        rounding = _RecordedUniforms(uniforms(f"{label}/{client}/rounding", d))
        parts.append(quantize_to_integers([(2 * u - 1) * config.clip for u in draws], config, rounding))
    total = np.sum(parts, axis=0)
    encoded = to_ring(total, config)
    tests = [
        test_case(f"sum of {n} quantized vectors", [], "valid", encoded=ring_to_hex(encoded), numSummands=n,
                  weightTotal=1, integers=[int(v) for v in total],
                  values=[float(v) for v in dequantize(encoded, config, n, 1)]),
        test_case(f"the same sum decoded as a mean over weight {3 * n}", ["Weighted"], "valid",
                  encoded=ring_to_hex(encoded), numSummands=n, weightTotal=3 * n, integers=[int(v) for v in total],
                  values=[float(v) for v in dequantize(encoded, config, n, 3 * n)]),
    ]
    bound = n * config.max_weight * config.qmax
    edge = np.array([bound, -bound, 0, 1, -1], dtype=np.int64)
    tests.append(test_case("coordinates at +-num_summands * max_weight * qmax", ["Boundary"], "valid",
                           encoded=ring_to_hex(to_ring(edge, config)), numSummands=n, weightTotal=1,
                           integers=[int(v) for v in edge],
                           values=[float(v) for v in dequantize(to_ring(edge, config), config, n, 1)]))
    for value, comment in ((bound + 1, "one above the bound"), (-bound - 1, "one below minus the bound"),
                           (-(1 << (config.ring_bits - 1)), "the most negative ring element")):
        bad = to_ring(np.array([0, value, 1], dtype=np.int64), config)
        tests.append(test_case(comment, ["SumOutOfRange"], "invalid", encoded=ring_to_hex(bad), numSummands=n,
                               weightTotal=1, error="OverflowDetectedError"))
    bad_counts = ((0, 1, "zero summands"), (config.num_clients + 1, 1, "more summands than clients"),
                  (1, 0, "weight total 0"))
    for summands, weight, comment in bad_counts:
        tests.append(test_case(comment, ["BadSummands"], "invalid", encoded=ring_to_hex(encoded),
                               numSummands=summands, weightTotal=weight, error="ConfigurationError"))
    return {"type": "DequantizationTest", **_config_fields(config), "qmax": config.qmax, "scale": config.scale,
            "tests": tests}


def generate_quantization() -> Json:
    """quantization.json: stochastic rounding, two's complement encoding, decoding."""
    groups = [_quantization_group(i, config) for i, config in enumerate(_QUANT_CONFIGS)]
    groups.append(_config_tests())
    groups.append(_dequantization_group(_QUANT_CONFIGS[0], "dequantization/0"))
    groups.append(_dequantization_group(_QUANT_CONFIGS[3], "dequantization/1"))
    return vector_file(
        algorithm="secagg-quantization",
        schema="quantization_test_schema.json",
        header=[
            "Quantization of floats into Z_(2^32) / Z_(2^64) and decoding of sums (docs/spec.md, section 3).",
            "The stochastic-rounding draws are recorded in 'uniforms' (one double in [0, 1) per value):",
            "q = floor(s) + [u < s - floor(s)] with s = clamp(x * scale, -qmax, qmax).",
            "'encoded' is the two's-complement ring vector as little-endian words.",
        ],
        notes=QUANT_NOTES,
        groups=groups,
    )


@register("QuantizationTest")
def check_quantization(group: Json, test: Json) -> None:
    """Re-quantize the values with the recorded uniforms; compare integers and encoding."""
    config = _config(group)
    equal("qmax", config.qmax, group["qmax"])
    equal("scale", config.scale, group["scale"])
    values = [_parse_float(v) for v in test["values"]]
    rng = _RecordedUniforms([float(u) for u in test["uniforms"]])
    if not is_valid(test):
        expect_error(test, lambda: quantize_to_integers(values, config, rng), "quantize")
        return
    with np.errstate(over="ignore"):  # x * scale may overflow to inf for huge inputs; it is clipped to qmax
        integers = quantize_to_integers(values, config, rng)
    equal("integers", [int(v) for v in integers], test["integers"])
    encoded = to_ring(integers, config)
    equal("encoded", ring_to_hex(encoded), test["encoded"])
    equal("from_ring(encoded)", [int(v) for v in from_ring(ring_from_hex(test["encoded"], config.ring_bits), config)],
          test["integers"])


@register("QuantizationConfigTest")
def check_quantization_config(group: Json, test: Json) -> None:
    """Build the configuration: accepted with the recorded qmax/limit/scale, or refused."""
    del group
    if not is_valid(test):
        expect_error(test, lambda: _config(test), "QuantizationConfig")
        return
    config = _config(test)
    equal("qmax", config.qmax, test["qmax"])
    equal("limit", config.limit, test["limit"])
    equal("scale", config.scale, test["scale"])


@register("DequantizationTest")
def check_dequantization(group: Json, test: Json) -> None:
    """Decode the ring sum: the signed integers and the floats, or the named refusal."""
    config = _config(group)
    encoded = ring_from_hex(test["encoded"], config.ring_bits)
    summands, weight = int(test["numSummands"]), int(test["weightTotal"])
    if not is_valid(test):
        expect_error(test, lambda: dequantize(encoded, config, summands, weight), "dequantize")
        return
    equal("integers", [int(v) for v in from_ring(encoded, config)], test["integers"])
    equal("values", [float(v) for v in dequantize(encoded, config, summands, weight)], test["values"])


# --- ring.json -------------------------------------------------------------------------

RING_NOTES = {
    "Wrap": "The sum or difference wraps around 2^bits.",
    "Random": "Uniform words from the generator's stream.",
    "UnsupportedRing": "A ring other than Z_(2^b), b in 8..64: refused (step: Ring, NarrowRing).",
    "NarrowRing": "Z_(2^b) for b in 8..64 other than 32, 64 (spec section 17): elements in 32-bit words for "
    "b <= 32, else 64-bit, every value < 2^b; sum and difference computed in the words, then reduced mod 2^b.",
    "NotAnElement": "An input value >= 2^b: not an element of the narrow ring, refused (step: NarrowRing.check).",
    "LengthMismatch": "Vectors of different lengths cannot be added (step: Ring.sum).",
}


def _ring(bits: int) -> Ring | NarrowRing:
    """The word ring Z_(2^32) or Z_(2^64), else the narrow ring Z_(2^bits) (ConfigurationError outside 8..64)."""
    return Ring(bits) if bits in (32, 64) else NarrowRing(bits)


def _ring_arithmetic(bits: int, a: np.ndarray, b: np.ndarray) -> tuple[str, str]:
    ring = _ring(bits)
    total = ring.sum([a, b], a.shape[0])
    difference = a - ring.check(b, a.shape[0])
    if isinstance(ring, NarrowRing):
        ring.reduce(difference)
    return ring_to_hex(total), ring_to_hex(difference)


def _ring_test(comment: str, flags: list[str], bits: int, a: np.ndarray, b: np.ndarray) -> Json:
    total, difference = _ring_arithmetic(bits, a, b)
    return test_case(comment, flags, "valid", ringBits=bits, a=ring_to_hex(a), b=ring_to_hex(b),
                     sum=total, difference=difference)


def generate_ring() -> Json:
    """ring.json: element encoding and vector addition/subtraction in Z_(2^32), Z_(2^64)."""
    tests = []
    for bits in (32, 64):
        ring = Ring(bits)
        top = ring.modulus - 1
        a = np.array([top, 1 << (bits - 1), 0, 1, top, 12345], dtype=ring.dtype)
        b = np.array([1, 1 << (bits - 1), 1, top, top, 54321], dtype=ring.dtype)
        tests.append(_ring_test(f"carries and borrows in Z_(2^{bits})", ["Wrap"], bits, a, b))
        tests.append(_ring_test(f"uniform elements of Z_(2^{bits})", ["Random"], bits,
                                words(f"ring/{bits}/a", 12, bits), words(f"ring/{bits}/b", 12, bits)))
    tests.append(test_case("Z_(2^7) is not supported", ["UnsupportedRing"], "invalid", ringBits=7,
                           a="0100", b="0200", error="ConfigurationError"))
    tests.append(test_case("vectors of 2 and 3 elements", ["LengthMismatch"], "invalid", ringBits=32,
                           a="0100000002000000", b="010000000200000003000000", error="ConfigurationError"))
    for bits in (8, 12, 33):  # narrow rings last, so that the earlier tcIds are unchanged
        narrow = NarrowRing(bits)
        top, half = narrow.modulus - 1, 1 << (bits - 1)
        a = np.array([top, half, 0, 1, top, 123], dtype=narrow.dtype)
        b = np.array([1, half, 1, top, top, 45], dtype=narrow.dtype)
        tests.append(_ring_test(f"carries and borrows in Z_(2^{bits})", ["Wrap", "NarrowRing"], bits, a, b))
        container = narrow.container.bits
        tests.append(_ring_test(f"uniform elements of Z_(2^{bits})", ["Random", "NarrowRing"], bits,
                                narrow.reduce(words(f"ring/narrow/{bits}/a", 12, container)),
                                narrow.reduce(words(f"ring/narrow/{bits}/b", 12, container))))
    tests.append(test_case("4096 is not an element of Z_(2^12)", ["NarrowRing", "NotAnElement"], "invalid",
                           ringBits=12, a="00100000", b="01000000", error="ConfigurationError"))
    tests.append(test_case("Z_(2^65) is not supported", ["UnsupportedRing"], "invalid", ringBits=65,
                           a="0100", b="0200", error="ConfigurationError"))
    return vector_file(
        algorithm="secagg-ring",
        schema="ring_test_schema.json",
        header=[
            "Vector addition and subtraction in Z_(2^32) and Z_(2^64) (docs/spec.md, section 4), and in",
            "narrow rings Z_(2^b) (section 17). Every vector is the hex of its elements as little-endian",
            "words (4 or 8 bytes each; a narrow ring's elements in 32-bit words for b <= 32, else 64-bit).",
        ],
        notes=RING_NOTES,
        groups=[{"type": "RingArithmeticTest", "tests": tests}],
    )


@register("RingArithmeticTest")
def check_ring(group: Json, test: Json) -> None:
    """Add and subtract the two vectors in the ring."""
    del group
    bits = int(test["ringBits"])

    def compute() -> tuple[str, str]:
        ring = _ring(bits)
        words_of = ring.bits if isinstance(ring, Ring) else ring.container.bits
        a = ring.check(ring_from_hex(test["a"], words_of))
        b = ring.check(ring_from_hex(test["b"], words_of))
        return _ring_arithmetic(bits, a, b)

    if not is_valid(test):
        expect_error(test, compute, "ring arithmetic")
        return
    total, difference = compute()
    equal("sum", total, test["sum"])
    equal("difference", difference, test["difference"])


SUITES = [
    Suite("quantization.json", "quantization_test_schema.json", generate_quantization),
    Suite("ring.json", "ring_test_schema.json", generate_ring),
]
