"""The release probe's private statistics: charged to the run's budget, read only from released values."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from secagg_bench import dp_release_probe as probe

from fl_core.aggregators.base import AggregationResult
from fl_core.dp import DPAggregator
from secagg.dp import calibrate

pytest.importorskip("dp_accounting")


def _uncharged_variance(training: DPAggregator) -> float:
    """The rounds' honest noise variance had they been calibrated with no release before them."""
    plan = training.plan
    alone = calibrate(training.config, num_clients=plan.num_clients, scale=plan.scale, dimension=plan.dimension)
    return float(alone.total_variance)


def test_quantile_release_is_charged_before_the_rounds() -> None:
    federation, training, release = probe.quantile_setup(100, 1.0, 0, 0.1, rounds=20)
    assert release.accountant.num_releases == 1
    assert training.plan.preceding == ((release.plan, 1),)
    assert release.config.epsilon == pytest.approx(0.1) and release.config.rounds == 1
    # Its sensitivity is the histogram's: one count per feature per patient.
    assert release.config.l2_clip == pytest.approx(math.sqrt(federation.num_features))
    assert float(training.plan.total_variance) > _uncharged_variance(training)


def test_histogram_rows_have_the_releases_sensitivity_and_quantiles_read_back() -> None:
    rng = np.random.default_rng(0)
    scaled = np.clip(rng.normal(-0.3, 0.2, size=(400, 3)), -1.0, 1.0)
    rows = probe._histogram_rows(scaled, probe.QUANTILE_BINS)
    assert rows.shape == (400, 3 * probe.QUANTILE_BINS)
    assert np.allclose(np.linalg.norm(rows, axis=1), math.sqrt(3))
    median, spread = probe.quantiles_from_release(rows.sum(axis=0), 400.0, probe.QUANTILE_BINS)
    width = 2.0 / probe.QUANTILE_BINS
    assert np.all(np.abs(median - np.median(scaled, axis=0)) < width)
    quartiles = np.quantile(scaled, [0.25, 0.75], axis=0)
    assert np.all(np.abs(spread - (quartiles[1] - quartiles[0]) / 1.349) < width)
    noisy = rows.sum(axis=0) + rng.normal(0.0, 30.0, size=rows.shape[1])  # negative counts included
    median, spread = probe.quantiles_from_release(noisy, 400.0, probe.QUANTILE_BINS)
    assert np.all(np.abs(median) <= 1.0) and np.all((spread >= probe.SCALE_FLOOR) & (spread <= 1.0))


def test_class_moments_start_comes_only_from_the_released_sums(monkeypatch: pytest.MonkeyPatch) -> None:
    released = np.random.default_rng(1).normal(0.0, 50.0, size=3 * 30 + 1)
    released[-1] = 150.0  # the class-1 count coordinate
    seen: list[np.ndarray] = []
    original = DPAggregator.aggregate

    def aggregate(self: DPAggregator, updates: list[object], context: dict[str, object], **kw: object
                  ) -> AggregationResult:  # fmt: skip
        if self.plan.dimension == released.size:  # the release: replaced by a chosen "noised" sum
            seen.append(np.sum([u.vector for u in updates], axis=0))  # type: ignore[attr-defined]
            result = original(self, updates, context, **kw)  # charged as usual
            return dataclasses.replace(result, mean=released.copy())
        return original(self, updates, context, **kw)

    monkeypatch.setattr(DPAggregator, "aggregate", aggregate)
    federation, training, start, release = probe.class_moments_setup(100, 1.0, 0, 0.25, rounds=20)
    total = float(sum(c.num_samples for c in federation.clients))
    _, expected = probe.lda_from_release(released, total, 0.25)
    assert all(np.array_equal(a, b) for a, b in zip(start, expected, strict=True))
    assert training.plan.preceding == ((release.plan, 1),)
    # What the hospitals sent: rows (u, u^2, y u, y) clipped to the recipe's moments clip.
    assert seen and seen[0].size == released.size and np.all(np.isfinite(seen[0]))


def test_lda_from_exact_sums_separates_the_classes() -> None:
    rng = np.random.default_rng(2)
    ones, zeros = rng.normal(0.3, 0.1, size=(100, 4)), rng.normal(-0.3, 0.1, size=(300, 4))
    u = np.vstack([ones, zeros])
    sums = np.concatenate([u.sum(axis=0), (u * u).sum(axis=0), ones.sum(axis=0), [100.0]])
    standardiser, (weights, bias) = probe.lda_from_release(sums, 400.0, 1.0)
    assert np.allclose(standardiser.mean, u.mean(axis=0))
    logits = standardiser.apply(u) @ weights + bias
    assert np.mean(np.argmax(logits, axis=1) == np.r_[np.ones(100), np.zeros(300)]) > 0.95
