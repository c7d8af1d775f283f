"""PyTorch DP: a hospital's Poisson sample comes from a secagg.dp random source, not a numpy Generator.

``dp_contribution`` / ``dp_update`` took the caller's ``np.random.Generator`` for the sample, and
``run_dp_round`` its ``rng`` (which docs suggested seeding): PCG64 is not a CSPRNG, and a seeded
Generator made the sample follow from its seed, while the amplification bound holds only for a
sample nobody but the hospital can predict. They take the sample's ``source`` (a
:class:`~secagg.dp.RandomSource`, the OS CSPRNG when None); ``run_dp_round`` samples from the DP
aggregator's noise source, its ``rng`` driving the aggregator's stochastic rounding only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from fl_core.dp import DPAggregator
from secagg.dp import DPConfig, SeededRandomSource, poisson_mask
from secagg.errors import ConfigurationError
from tests.dp.poisson_recorder import record_poisson_masks

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

DP = DPConfig(epsilon=8.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=2, sampling_rate=0.5)
SEED, OTHER = bytes(32), bytes([1]) * 32


def _loss(output: object, target: object) -> object:
    return torch.nn.functional.cross_entropy(output, target)


def _model() -> Any:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 2).double()


def _data(seed: int = 3, rows: int = 40) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(size=(rows, 4))), torch.from_numpy(rng.integers(0, 2, size=rows))


def test_a_contribution_sums_the_rows_its_source_samples() -> None:
    model, (x, y) = _model(), _data()
    mask = torch.from_numpy(poisson_mask(40, 0.5, SeededRandomSource(SEED)))
    expected = torch_dp.clipped_gradient_sum(model, _loss, x[mask], y[mask], 1.0)
    seeded = torch_dp.dp_contribution(model, _loss, x, y, DP, source=SeededRandomSource(SEED))
    np.testing.assert_array_equal(seeded, expected)
    again = torch_dp.dp_update(1, model, _loss, x, y, DP, source=SeededRandomSource(SEED))
    np.testing.assert_array_equal(again.vector, expected)
    other = torch_dp.dp_contribution(model, _loss, x, y, DP, source=SeededRandomSource(OTHER))
    assert not np.array_equal(seeded, other)


@pytest.mark.parametrize("call", ["dp_contribution", "dp_update"])
def test_a_numpy_generator_for_the_sample_is_refused(call: str) -> None:
    # The old positional rng: a clear library error, never a silent (predictable) sample.
    model, (x, y) = _model(), _data()
    args = (model, _loss, x, y, DP, np.random.default_rng(0))
    with pytest.raises(ConfigurationError, match="random_bytes"):
        if call == "dp_update":
            torch_dp.dp_update(1, *args)
        else:
            torch_dp.dp_contribution(*args)


def _round_samples(
    noise_seed: bytes, rng_seed: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[bool], list[object]]:
    """The Poisson masks one run_dp_round draws (5 hospitals), and the sources it drew them from."""
    drawn, sources = record_poisson_masks(monkeypatch, torch_dp)
    noise = SeededRandomSource(noise_seed)
    aggregator = make_aggregator(
        "plain-quantized", num_clients=5, dp=DP, dimension=10, max_samples_per_client=64, noise_source=noise
    )
    assert isinstance(aggregator, DPAggregator)
    hospitals = [(h, *_data(h)) for h in range(1, 6)]
    result = torch_dp.run_dp_round(
        _model(), hospitals, _loss, aggregator, learning_rate=1.0, denominator=100.0,
        rng=np.random.default_rng(rng_seed),
    )  # fmt: skip
    assert result.mean is not None
    assert all(source is noise for source in sources)
    return [bool(v) for mask in drawn for v in mask], sources


def test_run_dp_round_samples_from_the_aggregators_noise_source(monkeypatch: pytest.MonkeyPatch) -> None:
    first, sources = _round_samples(SEED, 0, monkeypatch)
    assert len(first) == 200 and len(sources) == 5
    assert first == _round_samples(SEED, 1, monkeypatch)[0]  # the rng no longer determines it
    assert first != _round_samples(OTHER, 0, monkeypatch)[0]  # the noise source does (equal w.p. 2^-200)


class _Broken:
    """A noise source that returns fewer bytes than asked (a misconfigured stand-in)."""

    def random_bytes(self, n: int) -> bytes:
        return bytes(n // 2)


@pytest.mark.parametrize("rate", [0.5, None])
def test_a_failing_noise_source_ends_the_round_as_the_callers_error_sampled_or_not(rate: float | None) -> None:
    # Prepare: the aggregator's noise source is the caller's own, shared by every hospital's sample
    # and by the noise: its failure is no hospital's, whether it fails drawing a sample or the noise
    dp = DPConfig(epsilon=8.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=2, sampling_rate=rate)
    aggregator = make_aggregator(
        "plain-quantized", num_clients=5, dp=dp, dimension=10, max_samples_per_client=64, noise_source=_Broken()
    )
    assert isinstance(aggregator, DPAggregator)
    hospitals = [(h, *_data(h)) for h in range(1, 6)]
    # Execute / Assert: raised, not every hospital withheld and the round skipped; nothing charged
    with pytest.raises(ConfigurationError, match="random source returned"):
        torch_dp.run_dp_round(
            _model(), hospitals, _loss, aggregator, learning_rate=1.0, denominator=100.0,
            rng=np.random.default_rng(0),
        )  # fmt: skip
    assert aggregator.accountant.num_releases == 0


def test_a_hospital_whose_data_has_no_rows_count_is_still_withheld_alone() -> None:
    # Prepare: one hospital's inputs cannot say how many rows they hold (its data's fault, not the source's)
    class NoShape:
        @property
        def shape(self) -> tuple[int, ...]:
            raise RuntimeError("no shape")

    aggregator = make_aggregator(
        "plain-quantized", num_clients=5, dp=DP, dimension=10, max_samples_per_client=64,
        noise_source=SeededRandomSource(SEED),
    )  # fmt: skip
    hospitals: list[tuple[int, Any, Any]] = [(h, *_data(h)) for h in range(1, 6)]
    hospitals[0] = (1, NoShape(), hospitals[0][2])
    # Execute
    result = torch_dp.run_dp_round(
        _model(), hospitals, _loss, aggregator, learning_rate=1.0, denominator=100.0, rng=np.random.default_rng(0)
    )
    # Assert: that hospital alone withheld, in the library's words (not a tensor: refused before its
    # shape is read); the others' round released
    assert [client for client, _ in result.withheld] == [1]
    assert "inputs must be a torch.Tensor" in result.withheld[0][1]
    assert result.mean is not None
