"""Vectors for the exact noise sampler and the Poisson sample of patients (docs/spec.md,
sections 19 and 19.6): dp_sampler.json.

Each case records the 32-byte seed of the sampler stream, the parameter as an
exact rational string ("p" or "p/q"), the outputs and how many stream bytes the
call consumed, so a second implementation can find the first byte it disagrees on.
A Poisson case's rate is a binary64 value written as its exact rational; ``offset``
stream bytes are read and discarded before the call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from secagg.dp.poisson import inclusion_bound, poisson_mask
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
    "NoSampling": "rate absent (no sampling) or 1: every row is included and no byte is drawn.",
    "InexactThreshold": "rate * 2^53 is not an integer: the threshold is its floor (probability just below the rate).",
    "TinyRate": "rate * 2^53 is below 1: the threshold is 0 and no row is included, though every word is drawn.",
    "StreamOffset": "the stream has been read before the call: the words start at the offset, not at a word boundary.",
    "RateOnDraw": "the rate puts a row's 53-bit k on floor(rate * 2^53): that row is out (k < threshold is strict).",
    "NoRows": "zero rows: an empty sample, no byte drawn.",
    "BadRate": "a rate outside (0, 1]: refused (step: parameters).",
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


def _rate_text(rate: float) -> str:
    """The binary64 ``rate`` as its exact rational "p/q" (q a power of two; "p" if whole)."""
    return str(Fraction(rate))


def _poisson_seed(name: str) -> bytes:
    return deterministic(f"dp-sampler/poisson/{name}")(32)


def _poisson(comment: str, rate: float | None, size: int, flags: list[str], offset: int = 0, seed: str = "") -> Json:
    key = _poisson_seed(seed or comment)
    source = _Counting(key)
    source.random_bytes(offset)
    source.consumed = 0
    mask = poisson_mask(size, rate, source)
    fields: Json = {"seed": key.hex(), "offset": offset, "size": size}
    if rate is not None:
        fields["rate"] = _rate_text(rate)
        if rate != 1.0:
            fields["threshold"] = inclusion_bound(rate)
    fields["output"] = "".join("1" if row else "0" for row in mask.tolist())
    fields["bytesConsumed"] = source.consumed
    return test_case(comment, flags, "valid", **fields)


def _edge_rates(seed: str, size: int) -> tuple[float, float]:
    """Rates that put a row of ``seed``'s sample on the threshold: with k the top 53 bits of the
    first word below 2^63 (k < 2^52, k > 0), k / 2^53 (threshold k: that row is out, k < k fails)
    and (k + 1/2) / 2^53 (threshold k again: out, though k / 2^53 < rate holds)."""
    data = SeededRandomSource(_poisson_seed(seed)).random_bytes(8 * size)
    ks = [int.from_bytes(data[at : at + 8], "little") >> 11 for at in range(0, len(data), 8)]
    k = next(k for k in ks if 0 < k < 1 << 52)
    return k / 2.0**53, (2 * k + 1) / 2.0**54


def _poisson_refusal(rate: str) -> Json:
    fields: Json = {"seed": bytes(32).hex(), "offset": 0, "size": 1, "rate": rate, "error": "ConfigurationError"}
    return test_case(f"rate {rate}", ["BadRate"], "invalid", **fields)


def _poisson_cases() -> list[Json]:
    at_draw, half_step = _edge_rates("rate on a row's draw", 16)
    return [
        _poisson("no sampling", None, 16, ["NoSampling"]),
        _poisson("rate 1", 1.0, 16, ["NoSampling"]),
        _poisson("rate 1/2", 0.5, 64, []),
        _poisson("rate 3/4", 0.75, 64, []),
        _poisson("rate 0.1", 0.1, 64, ["InexactThreshold"]),
        _poisson("rate 0.3", 0.3, 128, ["InexactThreshold"]),
        _poisson("rate 2^-60", 2.0**-60, 32, ["TinyRate"]),
        _poisson("rate on a row's draw", at_draw, 16, ["RateOnDraw"]),
        _poisson("rate half a step above a row's draw", half_step, 16, ["RateOnDraw", "InexactThreshold"],
                 seed="rate on a row's draw"),
        _poisson("rate 1/2 after 3 stream bytes", 0.5, 64, ["StreamOffset"], offset=3, seed="rate 1/2"),
        _poisson("rate 0.1 after 1000 stream bytes", 0.1, 64, ["StreamOffset", "InexactThreshold"], offset=1000,
                 seed="rate 0.1"),
        _poisson("zero rows", 0.5, 0, ["NoRows"]),
        _poisson_refusal("0"),
        _poisson_refusal("-1/2"),
        _poisson_refusal("3/2"),
    ]


def generate_dp() -> Json:
    """dp_sampler.json: stream, discrete Gaussian, discrete Laplace and Poisson sample cases."""
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
            "bytes the call read. PoissonSampleTest (section 19.6): 'offset' stream bytes are discarded first;",
            "'rate' is the binary64 sampling rate as its exact rational (absent: no sampling), 'threshold' is",
            "floor(rate * 2^53) and 'output' has one character per row, '1' if the row is included.",
        ],
        notes=NOTES,
        groups=[
            {"type": "DpSamplerStreamTest", "tests": stream},
            {"type": "DiscreteGaussianTest", "tests": gaussian},
            {"type": "DiscreteLaplaceTest", "tests": laplace},
            {"type": "PoissonSampleTest", "tests": _poisson_cases()},
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


def _binary64(text: str) -> float:
    """The rate ``text`` ("p" or "p/q") as the binary64 value it must equal exactly."""
    value = _parse(text)
    try:
        rate = float(value)
    except OverflowError:  # beyond binary64's range
        rate = math.nan
    if not math.isfinite(rate) or Fraction(rate) != value:
        raise VectorError(f"rate {text} is not a binary64 value")
    return rate


@register("PoissonSampleTest")
def check_poisson(group: Json, test: Json) -> None:
    """Discard ``offset`` stream bytes, draw the Poisson sample; compare mask, threshold and bytes consumed."""
    del group
    source = _Counting(from_hex(test["seed"]))
    source.random_bytes(int(test["offset"]))
    source.consumed = 0
    rate = None if "rate" not in test else _binary64(str(test["rate"]))
    if not is_valid(test):
        expect_error(test, lambda: poisson_mask(int(test["size"]), rate, source), "parameters")
        return
    mask = poisson_mask(int(test["size"]), rate, source)
    equal("output", "".join("1" if row else "0" for row in mask.tolist()), test["output"])
    equal("bytesConsumed", source.consumed, test["bytesConsumed"])
    if "threshold" in test:
        equal("threshold", inclusion_bound(_binary64(str(test["rate"]))), test["threshold"])


SUITES = [Suite("dp_sampler.json", "dp_sampler_test_schema.json", generate_dp)]
