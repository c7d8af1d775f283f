"""PyTorch DP: a hospital's contribution declares the DP configuration it was clipped and sampled under.

``dp_update(..., dp, ...)`` clips every example's gradient to ``dp.l2_clip`` and samples with
``dp.sampling_rate``: both shape what the hospital sends, and the noise the round adds is sized
for the aggregator's. A hospital that computed under another configuration (a clip 100 times
the declared one: one patient moves its contribution 100 times as far as the noise covers)
would otherwise be summed silently. It declares ``dp.digest()``; the DP aggregator refuses an
update declaring another configuration than its own, with the reason, before the round is
charged, and the round goes on for the others.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from fl_core.aggregators.base import ClientUpdate
from fl_core.dp import DPAggregator
from secagg.dp import DPConfig, SeededRandomSource
from secagg.errors import ConfigurationError

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

HOSPITALS = (1, 2, 3, 4, 5)
DP = DPConfig(epsilon=8.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=2)


def _loss(output: object, target: object) -> object:
    return torch.nn.functional.cross_entropy(output, target)


def _setup() -> tuple[object, DPAggregator, dict[int, tuple[object, object]]]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2).double()
    aggregator = make_aggregator("secagg", num_clients=5, dp=DP, dimension=10, max_samples_per_client=64)
    assert isinstance(aggregator, DPAggregator)
    rng = np.random.default_rng(3)
    data = {h: (torch.from_numpy(rng.normal(size=(20, 4))), torch.from_numpy(rng.integers(0, 2, size=20)))
            for h in HOSPITALS}
    return model, aggregator, data


def _round(other: DPConfig) -> tuple[object, tuple[tuple[int, str], ...], float]:
    """Hospital 1 computes under ``other``, the others under the aggregator's configuration."""
    model, aggregator, data = _setup()
    sample = SeededRandomSource(bytes(32))
    updates = [
        torch_dp.dp_update(h, model, _loss, *data[h], other if h == 1 else aggregator.config, sample) for h in HOSPITALS
    ]
    digest = torch_dp.model_digest(model, buffers=True)
    result = aggregator.aggregate(updates, rng=np.random.default_rng(4), model_digest=digest)
    return result, result.refused, aggregator.spent()[0]


@pytest.mark.parametrize(
    "other",
    [dataclasses.replace(DP, l2_clip=100.0), dataclasses.replace(DP, sampling_rate=0.5)],
    ids=["l2_clip", "sampling_rate"],
)
def test_a_hospital_under_another_dp_configuration_is_refused_with_the_reason(other: DPConfig) -> None:
    # Execute
    result, refused, _ = _round(other)
    # Assert: hospital 1 is refused by name and reason; the round goes on for the four others
    assert [client for client, _ in refused] == [1], refused
    assert "DP configuration" in refused[0][1]
    assert result.mean is not None and result.included == frozenset(HOSPITALS[1:])


def test_hospitals_under_the_aggregators_dp_configuration_are_all_included() -> None:
    # Execute: the control, every hospital under the declared configuration
    result, refused, spent = _round(DP)
    # Assert
    assert refused == () and result.included == frozenset(HOSPITALS)
    assert spent > 0


def test_a_malformed_dp_digest_is_refused_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="dp_digest"):
        ClientUpdate(1, np.zeros(3), 1, dp_digest=b"short")
