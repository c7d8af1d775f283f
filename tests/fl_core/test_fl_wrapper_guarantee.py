"""The compression and rotation wrappers state the guarantee of the session they run through.

Partial updates (:class:`~fl_core.compression.SparseAggregator`) and the public rotation
(:class:`~fl_core.rotated.RotatedAggregator`) change what each hospital sends, not who can read it:
the inner secure sum runs its session over the round's hospitals, so the guarantee is that
session's. A wrapper must neither drop it (a compressed run printing no protection) nor state the
full roster's where a sampled round runs a smaller session, which tolerates fewer colluders.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fl_core.aggregators import Aggregator, make_aggregator
from fl_core.aggregators.masking import MaskingAggregator
from fl_core.compression import CompressionConfig, SparseAggregator
from fl_core.fedavg import FedAvgConfig, run_fedavg
from fl_core.guarantees import round_guarantee, sampled_guarantee
from fl_core.models import LogisticRegression
from fl_core.rotated import RotatedAggregator
from secagg.primitives.randomness import InsecureDeterministicRandom
from tests.fl_core.conftest import synthetic_clients

EIGHT = (40, 25, 60, 15, 35, 30, 45, 20)
WRAPPERS: dict[str, Callable[[Aggregator], Aggregator]] = {
    "compression": lambda inner: SparseAggregator(inner, CompressionConfig(fraction=0.5)),
    "rotation": RotatedAggregator,
}


@pytest.mark.parametrize("wrap", sorted(WRAPPERS))
def test_a_wrapped_sampled_round_records_its_sessions_guarantee(wrap: str) -> None:
    # Prepare: active secagg over 8 hospitals (t = 6, c = 3, d = 2); C = 0.75 samples 6 (t = 4, c = 1, d = 2)
    inner = make_aggregator("secagg", num_clients=8, random_bytes=InsecureDeterministicRandom(3))
    assert isinstance(inner, MaskingAggregator)
    wrapped = WRAPPERS[wrap](inner)
    full, six = inner.round_guarantee(8), inner.round_guarantee(6)
    assert (full.colluders, six.colluders) == (3, 1)
    # The wrapper states the inner's, full and per round
    assert wrapped.guarantee == full  # type: ignore[attr-defined]
    assert round_guarantee(wrapped, 6) == sampled_guarantee(wrapped, 8, 0.75) == six
    # Execute: two sampled rounds through the wrapper
    clients, test_x, test_y = synthetic_clients(EIGHT)
    config = FedAvgConfig(rounds=2, learning_rate=0.1, client_fraction=0.75, seed=4)
    result = run_fedavg(LogisticRegression(test_x.shape[1]), clients, wrapped, test_x, test_y, config)
    # Assert: each round ran and records its session's guarantee; the run states it, not the roster's
    assert all(r.skipped_reason is None and len(r.sampled) == 6 for r in result.rounds)
    assert [r.guarantee for r in result.rounds] == [six, six]
    assert result.guarantee == six != full
