"""A legacy ``numpy.random.RandomState`` is refused alike wherever the library takes an ``rng``.

fl_core's aggregators refused it (ConfigurationTypeError naming ``rng``) while
``secagg.encoding.quantize`` / ``quantize_to_integers``, ``secagg.segments.quantize_segments``
and the Flower nodes' ``rng`` took it (anything with a ``random`` method passed): one check,
``secagg._validate.require_rng``, now serves every one of them, with one wording.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, make_aggregator
from secagg.encoding import QuantizationConfig, quantize, quantize_to_integers
from secagg.errors import ConfigurationTypeError
from secagg.segments import Segment, SegmentTable, quantize_segments

CONFIG = QuantizationConfig(clip=1.0, bits=16, num_clients=3)
WORDING = r"rng must be a numpy\.random\.Generator \(numpy\.random\.default_rng\(\)\), got RandomState"


def _flower_mod(factory: str) -> Callable[[object], object]:
    """``make_secagg_mod`` / ``make_paillier_mod`` (the node's rng is checked at construction)."""

    def build(rng: object) -> object:
        pytest.importorskip("flwr")
        flower = pytest.importorskip("secagg.integrations.flower")
        return getattr(flower, factory)(rng=rng)

    return build


def _fl_core(rng: object) -> object:
    updates = [ClientUpdate(1, np.zeros(2), 1), ClientUpdate(2, np.ones(2), 1)]
    return make_aggregator("plain").aggregate(updates, rng=rng)  # type: ignore[arg-type]


ENTRY_POINTS: dict[str, Callable[[object], object]] = {
    "encoding.quantize": lambda rng: quantize([0.1, 0.2], CONFIG, rng),  # type: ignore[arg-type]
    "encoding.quantize_to_integers": lambda rng: quantize_to_integers([0.1], CONFIG, rng),  # type: ignore[arg-type]
    "segments.quantize_segments": lambda rng: quantize_segments(
        [0.1, 0.2], SegmentTable((Segment("w", 2, 1.0),)), 16, rng  # type: ignore[arg-type]
    ),
    "flower.make_secagg_mod": _flower_mod("make_secagg_mod"),
    "flower.make_paillier_mod": _flower_mod("make_paillier_mod"),
    "fl_core.aggregate": _fl_core,
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_legacy_random_state_is_refused_with_one_wording_everywhere(entry: str) -> None:
    # Execute / Verify: the library's type error, the same words at every entry point
    with pytest.raises(ConfigurationTypeError, match=WORDING):
        ENTRY_POINTS[entry](np.random.RandomState(0))


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_an_object_with_only_a_random_method_is_refused_too(entry: str) -> None:
    # Prepare: a stand-in with a random(size) method, which the duck-typed check let through
    class Uniforms:
        def random(self, size: int) -> np.ndarray:
            return np.full(size, 0.5)

    # Execute / Verify
    with pytest.raises(ConfigurationTypeError, match=r"rng must be a numpy\.random\.Generator"):
        ENTRY_POINTS[entry](Uniforms())


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_a_numpy_generator_is_taken_at_every_entry_point(entry: str) -> None:
    # Execute / Verify: the check refuses the legacy API, not the Generator every entry point documents
    assert ENTRY_POINTS[entry](np.random.default_rng(0)) is not None
