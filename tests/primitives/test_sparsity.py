"""Shared-seed subsets: determinism, uniformity, layer subsets, binding entries, error feedback."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.descriptor import SessionDescriptor
from secagg.errors import ConfigurationError
from secagg.primitives import prg
from secagg.ring import RING64
from secagg.sparsity import SUBSET_LABEL, ErrorFeedback, Subset, count_for_fraction, random_indices

SEED = bytes(range(32))


def test_the_subset_is_a_function_of_seed_dimension_and_count_only() -> None:
    first = random_indices(SEED, 1000, 250)
    assert np.array_equal(first, random_indices(SEED, 1000, 250))
    assert first.shape == (250,) and np.all(np.diff(first) > 0) and first[0] >= 0 and first[-1] < 1000
    assert not np.array_equal(first, random_indices(bytes(32), 1000, 250))
    # Nested in the count: the k smallest keys contain the k - 1 smallest.
    assert set(random_indices(SEED, 1000, 100)) <= set(first)


def test_the_subset_is_the_k_smallest_prg_words_read_little_endian() -> None:
    # The spec, re-implemented from the keystream bytes.
    keys = prg.expand(SEED, SUBSET_LABEL, 64, RING64).view(np.uint8).reshape(64, 8)
    words = [int.from_bytes(bytes(row), "little") for row in keys]
    expected = sorted(sorted(range(64), key=lambda i: (words[i], i))[:10])
    assert random_indices(SEED, 64, 10).tolist() == expected


def test_every_coordinate_is_chosen_equally_often_over_seeds() -> None:
    # 2000 seeds, d = 50, k = 10: each coordinate's count is Binomial(2000, 0.2) (mean 400, sd 17.9).
    counts = np.zeros(50)
    for s in range(2000):
        counts[random_indices(s.to_bytes(32, "big"), 50, 10)] += 1
    assert counts.sum() == 20000
    chi2 = float(((counts - 400) ** 2 / 400).sum())
    assert chi2 < 90  # chi-square, 49 degrees of freedom: P(> 90) < 0.001
    assert counts.min() > 400 - 5 * 17.9 and counts.max() < 400 + 5 * 17.9


def test_count_for_fraction_rounds_to_nearest_and_keeps_one() -> None:
    assert count_for_fraction(0.25, 31) == 8
    assert count_for_fraction(1e-9, 31) == 1
    assert count_for_fraction(1.0, 31) == 31
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ConfigurationError, match="fraction"):
            count_for_fraction(bad, 31)


def test_layer_subsets_take_named_tensors_in_vector_order() -> None:
    layout = [("w1", 6), ("b1", 2), ("w2", 4), ("b2", 1)]
    subset = Subset.from_layers(layout, ["b2", "w1"])
    assert subset.indices.tolist() == [0, 1, 2, 3, 4, 5, 12]
    assert subset.layers == ("w1", "b2") and subset.dimension == 13
    assert subset.descriptor_parameters()["secagg.sparsity.layers"] == "w1\nb2"
    with pytest.raises(ConfigurationError, match="not in the layout"):
        Subset.from_layers(layout, ["w3"])


def test_gather_and_scatter_are_inverse_on_the_subset() -> None:
    subset = Subset.random(SEED, 20, fraction=0.3)
    vector = np.arange(20, dtype=np.float64)
    sent = subset.gather(vector)
    assert sent.tolist() == subset.indices.astype(float).tolist()
    assert np.array_equal(subset.scatter(sent)[subset.indices], sent)
    assert np.count_nonzero(subset.scatter(sent + 1)) == 6


def test_every_binding_entry_changes_the_descriptor() -> None:
    base = Subset.random(SEED, 100, count=10)
    variants = [
        Subset.random(bytes(32), 100, count=10),
        Subset.random(SEED, 100, count=11),
        Subset.random(SEED, 101, count=10),
        Subset.from_layers([("a", 50), ("b", 50)], ["a"]),
    ]

    def digest(subset: Subset) -> bytes:
        return SessionDescriptor.create(None, server_round=1, parameters=subset.descriptor_parameters()).digest()

    digests = {digest(base)} | {digest(v) for v in variants}
    assert len(digests) == 5
    assert all(key.startswith("secagg.sparsity.") for key in base.descriptor_parameters())


def test_error_feedback_conserves_mass_exactly_every_round_and_over_rounds() -> None:
    rng = np.random.default_rng(3)
    feedback = ErrorFeedback(40)
    sent_total = np.zeros(40)
    update_total = np.zeros(40)
    for round_ in range(12):
        update = rng.normal(size=40)
        before = feedback.residual.copy()
        subset = Subset.random(round_.to_bytes(32, "big"), 40, fraction=0.25)
        sent, residual = feedback.prepare(update, subset)
        # Coordinate by coordinate, exactly: what is sent plus what is kept is the update plus the old residual.
        assert np.array_equal(subset.scatter(sent) + residual, update + before)
        assert np.all(residual[subset.indices] == 0)
        feedback.commit(residual)
        sent_total += subset.scatter(sent)
        update_total += update
    assert np.allclose(sent_total + feedback.residual, update_total, rtol=0, atol=1e-12)


def test_a_prepared_round_that_is_not_committed_leaves_the_residual() -> None:
    feedback = ErrorFeedback(10)
    subset = Subset.random(SEED, 10, count=3)
    _, residual = feedback.prepare(np.ones(10), subset)
    assert np.all(feedback.residual == 0)
    feedback.commit(residual)
    assert feedback.residual.sum() == 7.0


@pytest.mark.parametrize("kept", [False, True], ids=["in the sent part", "only in the kept part"])
def test_an_update_plus_residual_beyond_binary64_is_refused_whole_and_the_residual_kept(kept: bool) -> None:
    # Prepare: a residual holding 1.5e308 outside the subset; an update adding 1.5e308 there
    subset = Subset.random(SEED, 10, count=3)
    outside = np.setdiff1d(np.arange(10), subset.indices)
    feedback = ErrorFeedback(10)
    feedback.residual[outside] = 1.5e308
    update = np.zeros(10)
    update[outside[:1] if kept else outside] = 1.5e308
    update[subset.indices] = 0.0 if kept else 1.5e308
    feedback.residual[subset.indices] = 0.0 if kept else 1.5e308
    before = feedback.residual.copy()
    # Execute / Assert: refused (never an infinity to send or to keep); the residual as it was
    with pytest.raises(ConfigurationError, match="residual holds NaN or infinite"):
        feedback.prepare(update, subset)
    assert np.array_equal(feedback.residual, before)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: random_indices(SEED, 10, 0), "count"),
        (lambda: random_indices(SEED, 10, 11), "count"),
        (lambda: random_indices(SEED[:16], 10, 3), "seed"),
        (lambda: random_indices(SEED, 0, 1), "dimension"),
        (lambda: Subset.random(SEED, 10), "count or its fraction"),
        (lambda: Subset(10, np.array([3, 3])), "ascending"),
        (lambda: ErrorFeedback(10).prepare(np.ones(9), Subset.random(SEED, 10, count=2)), "dimension"),
    ],
)
def test_bad_arguments_raise_configuration_errors(call: object, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        call()  # type: ignore[operator]
