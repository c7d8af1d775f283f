"""Data: splits cover every row once, Dirichlet skews labels, standardisation is local then pooled."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_core import data
from fl_core.aggregators import make_aggregator
from fl_core.data import (
    ClientData,
    Standardiser,
    federated_standardiser,
    load_dataset,
    local_moments,
    make_federation,
    moments_quantization,
    partition_dirichlet,
    partition_iid,
    train_test_split,
)
from secagg.errors import ConfigurationError, ConfigurationTypeError


def label_skew(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean total-variation distance between each part's label mix and the overall mix."""
    classes = np.unique(labels)
    overall = np.array([np.mean(labels == c) for c in classes])
    distances = [0.5 * np.abs(np.array([np.mean(labels[p] == c) for c in classes]) - overall).sum() for p in parts]
    return float(np.mean(distances))


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(50, 400), hospitals=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_iid_partition_covers_every_row_once(rows: int, hospitals: int, seed: int) -> None:
    parts = partition_iid(rows, hospitals, np.random.default_rng(seed))
    assert len(parts) == hospitals
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(rows))
    assert max(p.size for p in parts) - min(p.size for p in parts) <= 1


@settings(max_examples=30, deadline=None)
@given(alpha=st.floats(0.1, 10.0), hospitals=st.integers(2, 6), seed=st.integers(0, 2**32 - 1))
def test_dirichlet_partition_covers_every_row_once(alpha: float, hospitals: int, seed: int) -> None:
    labels = np.random.default_rng(seed).integers(0, 3, size=600)
    parts = partition_dirichlet(labels, hospitals, alpha, np.random.default_rng(seed))
    assert len(parts) == hospitals
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(labels.size))
    assert min(p.size for p in parts) >= 10


def test_dirichlet_small_alpha_skews_labels_more_than_iid() -> None:
    # Prepare: balanced binary labels, the same number of hospitals.
    labels = np.tile([0, 1], 300)
    # Execute: average skew over several draws.
    skew_iid = np.mean([label_skew(labels, partition_iid(labels.size, 5, np.random.default_rng(s))) for s in range(10)])
    skew_small = np.mean(
        [label_skew(labels, partition_dirichlet(labels, 5, 0.5, np.random.default_rng(s))) for s in range(10)]
    )
    skew_large = np.mean(
        [label_skew(labels, partition_dirichlet(labels, 5, 100.0, np.random.default_rng(s))) for s in range(10)]
    )
    # Assert: alpha 0.5 is far more skewed than iid; a huge alpha is close to iid.
    assert skew_small > 0.15
    assert skew_iid < 0.05
    assert skew_large < 0.05


def test_dirichlet_refuses_impossible_requests() -> None:
    labels = np.zeros(30, dtype=np.int64)
    with pytest.raises(ConfigurationError, match="rows each"):
        partition_dirichlet(labels, 5, 0.5, np.random.default_rng(0))
    with pytest.raises(ConfigurationError, match="alpha"):
        partition_dirichlet(np.zeros(100, dtype=np.int64), 2, 0.0, np.random.default_rng(0))


def test_train_test_split_is_stratified_and_disjoint() -> None:
    labels = np.repeat([0, 1, 2], [100, 50, 30])
    train, test = train_test_split(labels, 0.2, np.random.default_rng(3))
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(labels.size))
    assert [int(np.sum(labels[test] == c)) for c in range(3)] == [20, 10, 6]


def test_standardiser_fit_gives_zero_mean_unit_std_and_centres_constant_columns() -> None:
    rng = np.random.default_rng(0)
    features = np.column_stack([rng.normal(5.0, 3.0, 200), rng.normal(-2.0, 0.1, 200), np.full(200, 7.0)])
    scaled = Standardiser.fit(features).apply(features)
    np.testing.assert_allclose(scaled.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(scaled.std(axis=0), [1.0, 1.0, 0.0], atol=1e-12)


def test_local_moments_average_to_pooled_statistics() -> None:
    # Prepare: three sites with different sizes and shifted distributions.
    rng = np.random.default_rng(1)
    sites = [rng.normal(loc, 2.0, size=(size, 4)) for loc, size in ((0.0, 30), (5.0, 80), (-3.0, 15))]
    counts = np.array([s.shape[0] for s in sites], dtype=np.float64)
    # Execute: the count-weighted mean of local moments, as the aggregator computes it.
    pooled_moments = counts @ np.stack([local_moments(s) for s in sites]) / counts.sum()
    standardiser = Standardiser.from_moments(pooled_moments)
    # Assert: identical to fitting on the pooled rows.
    pooled = Standardiser.fit(np.concatenate(sites))
    np.testing.assert_allclose(standardiser.mean, pooled.mean, rtol=1e-12)
    np.testing.assert_allclose(standardiser.std, pooled.std, rtol=1e-10)


@pytest.mark.parametrize("aggregation", ["plain-quantized", "secagg+"])
def test_federated_standardiser_matches_pooled_statistics(aggregation: str) -> None:
    # Prepare: raw features on very different scales, as in the breast-cancer set.
    rng = np.random.default_rng(2)
    scales = np.array([0.01, 1.0, 1000.0])
    clients = [
        ClientData(i, np.abs(rng.normal(1.0, 0.3, size=(n, 3))) * scales, rng.integers(0, 2, size=n))
        for i, n in enumerate((40, 70, 25, 55))
    ]
    options = moments_quantization(4, feature_bound=5000.0, max_samples_per_client=4096)
    aggregator = make_aggregator(aggregation, num_clients=4, **options)
    step = options["clip"] / ((1 << (options["bits"] - 1)) - 1)
    # Execute
    standardiser = federated_standardiser(clients, aggregator, np.random.default_rng(0))
    # Assert: both pooled moments are within one quantization step (about 1e-7 here) of
    # the exact ones, on every scale; the largest feature's std is then exact to 1e-9.
    pooled = np.concatenate([c.features for c in clients])
    np.testing.assert_allclose(standardiser.mean, pooled.mean(axis=0), rtol=0, atol=step)
    second_moment = standardiser.std**2 + standardiser.mean**2
    np.testing.assert_allclose(second_moment, (pooled**2).mean(axis=0), rtol=1e-12, atol=step)
    np.testing.assert_allclose(standardiser.std[2], pooled.std(axis=0)[2], rtol=1e-9)


def test_moments_quantization_uses_the_widest_safe_encoding() -> None:
    options = moments_quantization(5, feature_bound=100.0, max_samples_per_client=4096)
    assert options["ring_bits"] == 64 and options["clip"] == 10_000.0
    qmax = (1 << (options["bits"] - 1)) - 1
    assert 5 * 4096 * qmax <= 2**63 - 1 < 5 * 4096 * (2 * qmax + 1)


def test_client_data_refuses_mismatched_rows() -> None:
    with pytest.raises(ConfigurationError, match="hospital 3"):
        ClientData(3, np.zeros((4, 2)), np.zeros(5, dtype=np.int64))
    with pytest.raises(ConfigurationError, match="no data"):
        ClientData(1, np.zeros((0, 2)), np.zeros(0, dtype=np.int64))


def test_bundled_datasets_load_and_split() -> None:
    pytest.importorskip("sklearn")
    features, labels = load_dataset("breast-cancer")
    assert features.shape == (569, 30) and set(np.unique(labels)) == {0, 1}
    federation = make_federation("digits", 4, partition="iid", rng=np.random.default_rng(0))
    assert len(federation.clients) == 4 and federation.num_classes == 10 and federation.num_features == 64
    total = sum(c.num_samples for c in federation.clients) + federation.test_labels.size
    assert total == 1797
    with pytest.raises(ConfigurationError, match="unknown dataset"):
        load_dataset("mnist")


def test_moments_quantization_stays_within_float64_precision() -> None:
    options = moments_quantization(1, feature_bound=1.0, max_samples_per_client=1)
    assert options["bits"] == 53


NOT_GENERATORS = {
    "legacy RandomState": lambda: np.random.RandomState(0),
    "random.Random": lambda: __import__("random").Random(0),
}
SPLITS = {
    "train_test_split": lambda rng: train_test_split(np.arange(100) % 2, 0.2, rng),
    "partition_iid": lambda rng: partition_iid(100, 4, rng),
    "partition_dirichlet": lambda rng: partition_dirichlet(np.arange(100) % 2, 4, 0.5, rng),
}
NO_GENERATOR = r"^rng must be a numpy\.random\.Generator \(numpy\.random\.default_rng\(\)\), got "


@pytest.mark.parametrize("rng", list(NOT_GENERATORS))
@pytest.mark.parametrize("split", list(SPLITS))
def test_a_split_refuses_an_rng_that_is_no_generator_as_every_rng_is_refused(split: str, rng: str) -> None:
    # A legacy RandomState was taken here while every other rng of the library refuses it
    with pytest.raises(ConfigurationTypeError, match=NO_GENERATOR):
        SPLITS[split](NOT_GENERATORS[rng]())


@pytest.mark.parametrize("rng", list(NOT_GENERATORS))
def test_make_federation_refuses_an_rng_that_is_no_generator_before_loading_the_data(
    rng: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: record every dataset load
    loaded: list[str] = []
    monkeypatch.setattr(data, "load_dataset", lambda name: loaded.append(name) or load_dataset(name))
    # Execute / Assert: the shared check's error, before the data set is loaded
    with pytest.raises(ConfigurationTypeError, match=NO_GENERATOR):
        make_federation("breast-cancer", 3, partition="iid", rng=NOT_GENERATORS[rng]())
    assert loaded == []


def test_a_split_takes_a_generator() -> None:
    # The control: the same calls with a Generator split every row
    for split in SPLITS.values():
        parts = split(np.random.default_rng(0))
        assert sum(part.size for part in parts) == 100
