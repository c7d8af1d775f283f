"""``noised_encoding``'s ``rounding_rng`` is checked as every other ``rng`` the library takes.

``secagg.dp.encoding.noised_encoding`` is the documented seam for another engine (docs/privacy.md):
it took a legacy ``numpy.random.RandomState``, or any object with a ``random`` method, and
quantized with it, while ``secagg.encoding.quantize``, fl_core's aggregators and the Flower nodes
refuse both with ``secagg._validate.require_rng``'s words. A wrong ``rounding_rng`` is refused
before any noise is drawn (a Generator of any bit generator, a subclass too, is taken).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from secagg.dp import DPConfig, SeededRandomSource
from secagg.dp.encoding import dp_quantization, noised_encoding
from secagg.errors import ConfigurationTypeError

DP = DPConfig(epsilon=3.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2)
PLAN, QUANTIZATION, _ = dp_quantization(DP, num_clients=3, dimension=4, max_samples_per_client=8)
WORDING = r"^rounding_rng must be a numpy\.random\.Generator \(numpy\.random\.default_rng\(\)\), got "


class _Uniforms:
    """A stand-in with a ``random(size)`` method, as the duck-typed check took."""

    def random(self, size: int) -> np.ndarray:
        return np.full(size, 0.5)


class _CountingSource(SeededRandomSource):
    """A seeded noise source that records whether anything was drawn from it."""

    drawn = False

    def random_bytes(self, n: int) -> bytes:
        self.drawn = True
        return super().random_bytes(n)


@pytest.mark.parametrize(
    "rng",
    [np.random.RandomState(0), _Uniforms(), random.Random(0), None],
    ids=["RandomState", "duck-typed", "random.Random", "None"],
)
def test_a_rounding_rng_that_is_no_generator_is_refused_before_any_noise(rng: object) -> None:
    # Prepare: a noise source that tells whether the hospital's noise was drawn
    source = _CountingSource(bytes(32))

    # Execute / Verify: the library's type error, in require_rng's words; no noise drawn
    with pytest.raises(ConfigurationTypeError, match=WORDING):
        noised_encoding(PLAN, QUANTIZATION, np.zeros(4), rng, source)  # type: ignore[arg-type]
    assert not source.drawn


BIT_GENERATORS = [np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937, np.random.Philox, np.random.SFC64]


@pytest.mark.parametrize("bit_generator", BIT_GENERATORS)
def test_a_generator_of_any_bit_generator_is_taken(bit_generator: type[np.random.BitGenerator]) -> None:
    # Execute
    encoded = noised_encoding(
        PLAN, QUANTIZATION, np.zeros(4), np.random.Generator(bit_generator(1)), SeededRandomSource(bytes(32))
    )

    # Verify: an encoding of the plan's dimension within the encoding's range
    assert encoded.shape == (4,) and int(np.max(np.abs(encoded))) <= QUANTIZATION.qmax
