"""Review of the DP round's checks before the charge: what the round will lack is found before it
is charged, and a hospital's noise drawn before the charge is the noise it sends (edge cases).

A DP round over a secure sum is charged to the accountant before anything is sent; a round that
the protocol would then skip for what is already known before the charge (the withheld, the
refused, the noise beyond its room) must be skipped uncharged instead (never charged for nothing).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, make_aggregator
from fl_core.dp import DPAggregator
from secagg.dp import DPConfig, SeededRandomSource
from secagg.paillier import insecure_key_sizes_for_testing
from secagg.primitives.randomness import InsecureDeterministicRandom
from tests.paillier.helpers import threshold_material

LENGTH = 6

@pytest.fixture(autouse=True)
def _small_keys_allowed() -> Iterator[None]:
    with insecure_key_sizes_for_testing():
        yield


def config(min_honest: int) -> DPConfig:
    return DPConfig(epsilon=3.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=min_honest)


def updates(hospitals: Collection[int], patients: dict[int, int] | None = None) -> list[ClientUpdate]:
    rng = np.random.default_rng(3)
    return [ClientUpdate(h, rng.normal(0, 1.0, LENGTH), (patients or {}).get(h, 10 * h)) for h in hospitals]


def paillier_3_of_4(min_contributors: int) -> DPAggregator:
    # A 3-of-4 key: t = 3 hospitals must decrypt; h = 2 (its floor with min_contributors 2).
    with pytest.warns(UserWarning, match="NOT secure"):
        built = make_aggregator(
            "paillier", num_clients=4, dp=config(2), dimension=LENGTH, max_samples_per_client=100,
            noise_source=SeededRandomSource(bytes(32)), insecure_small_key=True, threshold=3,
            min_contributors=min_contributors, key_material=threshold_material(512, 4, 3),
            random_bytes=InsecureDeterministicRandom(b"precharge"),
        )  # fmt: skip
    assert isinstance(built, DPAggregator)
    return built


def test_dp_paillier_withheld_hospitals_below_its_decryption_threshold_skip_the_round_uncharged() -> None:
    # Prepare: min_contributors 2 < t = 3; hospitals 2 and 4 declare 101 > 100 patients (withheld):
    # 2 upload (>= h and >= min_contributors), but a hospital decrypts only a sum holding its own
    # upload, so 2 < t can decrypt: the session can release nothing
    aggregator = paillier_3_of_4(min_contributors=2)
    # Execute
    result = aggregator.aggregate(updates((1, 2, 3, 4), {2: 101, 4: 101}), {}, rng=np.random.default_rng(5))
    # Assert: skipped, both named, and not charged (before: charged, then skipped by the session)
    assert result.mean is None and [c for c, _ in result.withheld] == [2, 4]
    assert aggregator.accountant.num_releases == 0 and aggregator.spent()[0] == 0.0
    # Assert: one withheld leaves 3 = t uploaders: released, charged once
    released = aggregator.aggregate(updates((1, 2, 3, 4), {2: 101}), {}, rng=np.random.default_rng(5))
    assert released.mean is not None and released.included == frozenset({1, 3, 4})
    assert aggregator.accountant.num_releases == 1
