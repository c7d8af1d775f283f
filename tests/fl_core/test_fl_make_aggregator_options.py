"""A misspelt ``make_aggregator`` option is refused with the library's error, listing every option
the aggregation takes: its quantization options too (the list used to name the protocol's only,
so ``clipp=`` read as if ``clip`` were not taken), and for ``paillier`` as for masking (it raised
Python's TypeError from the aggregator's constructor)."""

from __future__ import annotations

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from secagg.dp import DPConfig
from secagg.errors import ConfigurationError, ConfigurationTypeError


@pytest.mark.parametrize("name", ["secagg", "secagg+", "paillier"])
def test_a_misspelt_option_is_a_configuration_error_listing_every_option_taken(name: str) -> None:
    # Execute: refused before any key exists (paillier would otherwise deal one)
    with pytest.raises(ConfigurationError) as refused:
        make_aggregator(name, num_clients=4, clipp=2.0)

    # Verify: names the misspelt option and lists the quantization options beside the protocol's
    message = str(refused.value)
    assert f"aggregation {name!r} does not take ['clipp']" in message, message
    for option in ("clip", "bits", "ring_bits", "max_samples_per_client", "clipping", "run_id"):
        assert f"'{option}'" in message, (option, message)


@pytest.mark.parametrize(
    ("option", "value"),
    [("clip", 2.0), ("bits", 8), ("ring_bits", 64), ("max_samples_per_client", 100), ("clipping", "fixed")],
)
def test_plain_refuses_a_quantization_option_it_would_ignore(option: str, value: object) -> None:
    # Execute: plain sums the float updates as they are; a clip, bits, ring or clipping rule for it
    # would have no effect, so it is refused (the demo refuses the equivalent flags), never hidden
    with pytest.raises(ConfigurationError) as refused:
        make_aggregator("plain", num_clients=4, **{option: value})

    # Verify: the option named, why it has no effect, and where it has one
    message = str(refused.value)
    assert f"aggregation 'plain' does not take {option}" in message, message
    assert "no effect" in message and "plain-quantized" in message, message


def test_plain_still_takes_no_options_and_builds_without_any() -> None:
    # Execute / Verify: the bare plain aggregator is built; a protocol option is refused as before
    assert make_aggregator("plain").name == "plain"
    assert make_aggregator("plain", num_clients=4).name == "plain"
    with pytest.raises(ConfigurationError, match="takes no options"):
        make_aggregator("plain", random_bytes=None)


@pytest.mark.parametrize(
    ("name", "option"),
    [("secagg", "colluders"), ("secagg+", "clipp"), ("paillier", "mode"), ("paillier", "clipp")],
)
def test_with_dp_an_option_the_aggregation_does_not_take_is_refused_as_without(name: str, option: str) -> None:
    # Prepare: a DP aggregator's options go to the same constructors as without DP
    dp = DPConfig(epsilon=1.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2)

    # Execute: another protocol's option (or a misspelt one), refused before any key exists
    with pytest.raises(ConfigurationError) as refused:
        make_aggregator(name, num_clients=5, dimension=3, dp=dp, **{option: 1})

    # Verify: the library's error naming the option and what the aggregation takes, never
    # Python's TypeError from the constructor
    message = str(refused.value)
    assert f"aggregation {name!r} does not take [{option!r}]" in message, message
    assert "noise_source" in message and "ring_bits" in message, message


@pytest.mark.parametrize("ring_bits", [True, 64.0, np.array([64, 32])])
def test_with_dp_a_ring_that_is_no_integer_is_the_librarys_type_error(ring_bits: object) -> None:
    # Prepare: the DP encoding sizes its ring from ring_bits, as the quantizer does without DP
    dp = DPConfig(epsilon=1.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2)

    # Execute / Verify: a bool, a float or an array is a wrong type, named, as
    # without dp; never Python's TypeError/ValueError from the sizing, nor True read as a 1-bit ring
    with pytest.raises(ConfigurationTypeError, match="ring_bits"):
        make_aggregator("plain-quantized", num_clients=4, dimension=3, dp=dp, ring_bits=ring_bits)


@pytest.mark.parametrize("ring_bits", [4, 65])
def test_with_dp_a_ring_width_outside_8_to_64_is_refused_as_such(ring_bits: int) -> None:
    # Execute / Verify: named as the width out of range, not as an encoding that could overflow
    dp = DPConfig(epsilon=1.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2)
    with pytest.raises(ConfigurationError, match=r"ring_bits must be in 8\.\.64"):
        make_aggregator("plain-quantized", num_clients=4, dimension=3, dp=dp, ring_bits=ring_bits)


def test_with_dp_the_ring_names_word_and_smallest_are_taken_and_another_refused_by_name() -> None:
    # Prepare: "word" is the default without dp too (the smaller word ring that fits)
    dp = DPConfig(epsilon=1.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2)
    word = make_aggregator("plain-quantized", num_clients=4, dimension=3, dp=dp, ring_bits="word")
    default = make_aggregator("plain-quantized", num_clients=4, dimension=3, dp=dp)

    # Verify: "word" is the default ring; "smallest" is taken (tests/fl_core/test_fl_dp_smallest_ring.py);
    # another name is a ConfigurationError saying what dp takes
    assert word.inner.quantizer.config == default.inner.quantizer.config  # type: ignore[attr-defined]
    smallest = make_aggregator("plain-quantized", num_clients=4, dimension=3, dp=dp, ring_bits="smallest")
    assert smallest.inner.quantizer.config.ring_bits < word.inner.quantizer.config.ring_bits  # type: ignore[attr-defined]
    for name in ("narrowest", "64"):
        with pytest.raises(ConfigurationError, match="with dp, ring_bits takes"):
            make_aggregator("plain-quantized", num_clients=4, dimension=3, dp=dp, ring_bits=name)
