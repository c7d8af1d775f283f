"""Vectors for the exact noise sampler (docs/spec.md, section 19): dp_sampler.json.

Each case records the 32-byte seed of the sampler stream, the parameter as an
exact rational string ("p" or "p/q"), the outputs and how many stream bytes the
call consumed, so a second implementation can find the first byte it disagrees on.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

from secagg.dp.sampler import SeededRandomSource, sample_discrete_gaussian, sample_discrete_laplace
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, VectorError, from_hex, test_case, vector_file
from secagg.vectors._suite import Suite, deterministic, register

__all__ = ["SUITES"]

SAMPLES = 64
STREAM_BYTES = 48

NOTES = {
    "SmallSigma": "sigma^2 below 1: most samples are 0.",
    "RationalSigma": "sigma^2 (or the scale) is a fraction p/q with q > 1.",
    "LargeSigma": "d = 2pqt^2 exceeds 2^64: the draws of phase G2 take two or more words.",
    "BadParameter": "sigma^2 or the scale is zero, negative or above its maximum: refused (step: parameters).",
    "FloatParameter": "a float parameter: refused, a float must be converted to a Fraction explicitly.",
    "BadSeed": "a seed that is not 32 bytes: refused (step: sampler stream).",
}


class _Counting:
    """A sampler stream that counts the bytes the sampler takes."""

    def __init__(self, seed: bytes) -> None:
        self.inner = SeededRandomSource(seed)
        self.consumed = 0

    def random_bytes(self, n: int) -> bytes:
        self.consumed += n
        return self.inner.random_bytes(n)


def _parse(text: str) -> Fraction:
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError) as exc:
        raise VectorError(f"not a rational: {text!r}") from exc


Sampler = Callable[[Any, int, Any], Any]


def _case(kind: str, sampler: Sampler, value: Fraction, flags: list[str]) -> Json:
    seed = deterministic(f"dp-sampler/{kind}/{value}")(32)
    source = _Counting(seed)
    output = sampler(value, SAMPLES, source).tolist()
    return test_case(
        f"{kind}, {value}",
        flags,
        "valid",
        seed=seed.hex(),
        parameter=str(value),
        size=SAMPLES,
        output=output,
        bytesConsumed=source.consumed,
    )


def _refusal(kind: str, parameter: str, flags: list[str]) -> Json:
    error = "ConfigurationTypeError" if "FloatParameter" in flags else "ConfigurationError"
    fields: Json = {"seed": bytes(32).hex(), "parameter": parameter, "size": 1, "error": error}
    return test_case(f"{kind}, parameter {parameter}", flags, "invalid", **fields)


def generate_dp() -> Json:
    """dp_sampler.json: stream, discrete Gaussian and discrete Laplace cases."""
    seed = deterministic("dp-sampler/stream")(32)
    stream = [
        test_case(
            "first bytes of the sampler stream",
            [],
            "valid",
            seed=seed.hex(),
            size=STREAM_BYTES,
            output=SeededRandomSource(seed).random_bytes(STREAM_BYTES).hex(),
        ),
        test_case(
            "a 31-byte seed",
            ["BadSeed"],
            "invalid",
            seed=bytes(31).hex(),
            size=1,
            output="",
            error="ConfigurationError",
        ),
    ]
    gaussian = [
        _case("gaussian", sample_discrete_gaussian, Fraction(1, 2), ["SmallSigma", "RationalSigma"]),
        _case("gaussian", sample_discrete_gaussian, Fraction(1), []),
        _case("gaussian", sample_discrete_gaussian, Fraction(3), []),
        _case("gaussian", sample_discrete_gaussian, Fraction(100), []),
        _case("gaussian", sample_discrete_gaussian, Fraction(10**6), []),
        _case("gaussian", sample_discrete_gaussian, Fraction(2**40), ["LargeSigma"]),
        _case("gaussian", sample_discrete_gaussian, Fraction(10**13, 7), ["LargeSigma", "RationalSigma"]),
        _refusal("gaussian", "0", ["BadParameter"]),
        _refusal("gaussian", "-1/2", ["BadParameter"]),
        _refusal("gaussian", str(2**60 + 1), ["BadParameter"]),
        _refusal("gaussian", "1.5", ["FloatParameter"]),
    ]
    laplace = [
        _case("laplace", sample_discrete_laplace, Fraction(1), []),
        _case("laplace", sample_discrete_laplace, Fraction(7, 3), ["RationalSigma"]),
        _case("laplace", sample_discrete_laplace, Fraction(10), []),
        _refusal("laplace", "0", ["BadParameter"]),
        _refusal("laplace", "2.5", ["FloatParameter"]),
    ]
    return vector_file(
        algorithm="secagg-dp-sampler",
        schema="dp_sampler_test_schema.json",
        header=[
            "Exact discrete Gaussian and discrete Laplace sampling (docs/spec.md, section 19) from the stream",
            "AES-128-CTR(HKDF-SHA256(seed, info='secagg/v1/prg:dp-sampler')). 'parameter' is sigma^2",
            "(DiscreteGaussianTest) or the scale (DiscreteLaplaceTest) as an exact rational 'p' or 'p/q';",
            "a parameter with a '.' is passed as a float and must be refused. bytesConsumed counts the stream",
            "bytes the call read.",
        ],
        notes=NOTES,
        groups=[
            {"type": "DpSamplerStreamTest", "tests": stream},
            {"type": "DiscreteGaussianTest", "tests": gaussian},
            {"type": "DiscreteLaplaceTest", "tests": laplace},
        ],
    )


@register("DpSamplerStreamTest")
def check_stream(group: Json, test: Json) -> None:
    """The first bytes of the sampler stream."""
    del group
    seed = from_hex(test["seed"])
    if not is_valid(test):
        expect_error(test, lambda: SeededRandomSource(seed), "sampler stream")
        return
    equal("output", SeededRandomSource(seed).random_bytes(int(test["size"])).hex(), test["output"])


def _check(sampler: Sampler, test: Json) -> None:
    text = str(test["parameter"])
    value: Fraction | float = float(text) if "." in text else _parse(text)
    source = _Counting(from_hex(test["seed"]))
    if not is_valid(test):
        expect_error(test, lambda: sampler(value, int(test["size"]), source), "parameters")
        return
    equal("output", sampler(value, int(test["size"]), source).tolist(), test["output"])
    equal("bytesConsumed", source.consumed, test["bytesConsumed"])


@register("DiscreteGaussianTest")
def check_gaussian(group: Json, test: Json) -> None:
    """Sample N_Z(0, sigma^2) from the seed's stream; compare outputs and bytes consumed."""
    del group
    _check(sample_discrete_gaussian, test)


@register("DiscreteLaplaceTest")
def check_laplace(group: Json, test: Json) -> None:
    """Sample the discrete Laplace from the seed's stream; compare outputs and bytes consumed."""
    del group
    _check(sample_discrete_laplace, test)


SUITES = [Suite("dp_sampler.json", "dp_sampler_test_schema.json", generate_dp)]
