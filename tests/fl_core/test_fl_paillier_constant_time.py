"""fl_core's Paillier aggregator: hospitals decrypt in constant time unless told otherwise, by name.

``PaillierAggregator`` (and ``make_aggregator("paillier")``) default to the library's
``DEFAULT_CONSTANT_TIME``: every exponentiation with a key share goes through GMP's
``powmod_sec``; ``constant_time=False`` opts out (sliding windows: timing and cache side
channels on the shares). The mean is the same either way. The library's own roles:
tests/paillier/test_paillier_constant_time_default.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, make_aggregator
from fl_core.aggregators.paillier import PaillierAggregator
from fl_core.aggregators.quantizer import WeightedQuantizer
from secagg.paillier import insecure_key_sizes_for_testing
from secagg.primitives.randomness import InsecureDeterministicRandom
from tests.paillier.helpers import Exponentiations, threshold_material

pytestmark = pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")

HOSPITALS = (1, 2, 3)
MATERIAL = threshold_material(256, len(HOSPITALS), 2)


@pytest.fixture(autouse=True)
def _small_keys() -> Iterator[None]:
    with insecure_key_sizes_for_testing():
        yield


def updates() -> list[ClientUpdate]:
    return [ClientUpdate(h, np.full(4, 0.01 * h), 10) for h in HOSPITALS]


def aggregator(**options: bool) -> PaillierAggregator:
    return PaillierAggregator(
        WeightedQuantizer.create(len(HOSPITALS)), insecure_small_key=True, key_material=MATERIAL, threshold=2,
        random_bytes=InsecureDeterministicRandom(b"constant-time"), **options,
    )  # fmt: skip


@pytest.mark.parametrize("options", [{}, {"constant_time": False}], ids=["default", "constant_time=False"])
def test_hospitals_decrypt_in_constant_time_unless_opted_out(
    options: dict[str, bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    agg = aggregator(**options)
    powers = Exponentiations(monkeypatch)
    # Execute
    result = agg.aggregate(updates(), rng=np.random.default_rng(1))
    # Assert: the round is summed; the aggregator says which, and the hospitals did what it says
    assert result.mean is not None and result.included == frozenset(HOSPITALS)
    if options:
        powers.assert_sliding_only()
    else:
        used = [s for s in MATERIAL.shares if s.exponent in powers.silent]
        assert len(used) >= 2, "fewer than t hospitals decrypted in constant time"
        powers.assert_silent(*(s.exponent for s in used), *(s.proof_secret for s in used))
    assert agg.constant_time is not bool(options)


def test_the_factory_takes_the_same_default() -> None:
    # Execute
    agg = make_aggregator(
        "paillier", num_clients=len(HOSPITALS), insecure_small_key=True, key_material=MATERIAL, threshold=2
    )
    opted_out = make_aggregator(
        "paillier", num_clients=len(HOSPITALS), insecure_small_key=True, key_material=MATERIAL, threshold=2,
        constant_time=False,
    )  # fmt: skip
    # Assert
    assert isinstance(agg, PaillierAggregator) and agg.constant_time is True
    assert isinstance(opted_out, PaillierAggregator) and opted_out.constant_time is False
