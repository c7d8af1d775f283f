"""The DP recipe probe's loop is the library's: with the recipe it reproduces run_fedavg."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from secagg_bench import dp_optimizer_probe as optimizers
from secagg_bench import dp_recipe_probe as probe
from secagg_bench import dp_schedule_probe as schedule

from fl_core import demo
from fl_core.data import ClientData, Standardiser, make_federation
from fl_core.demo_config import TEST_FRACTION, DemoConfig
from fl_core.demo_dp import dp_setup
from fl_core.dp_presets import dp_config
from fl_core.dp_training import dp_contribution
from fl_core.fedavg import run_fedavg
from fl_core.models import LogisticRegression, accuracy, flatten, unflatten
from fl_core.server_opt import ServerOptimizer
from secagg.dp import calibrate

pytest.importorskip("dp_accounting")


def test_recipe_trajectory_is_run_fedavg() -> None:
    seed, epsilon, rounds = 100, 1.0, 3
    model, iterates, _ = probe.trajectory(seed, epsilon, 0, probe.Variant("recipe"), rounds)
    config = DemoConfig(
        aggregation="plain-quantized", hospitals=5, rounds=rounds, dataset="breast-cancer", seed=seed,
        compare=False, dp_epsilon=epsilon,
    )  # fmt: skip
    raw = make_federation(
        config.dataset, 5, partition=config.partition, alpha=config.alpha, test_fraction=TEST_FRACTION,
        rng=np.random.default_rng([seed, demo._SPLIT]),
    )  # fmt: skip
    federation, aggregator = dp_setup(
        config, raw, "plain-quantized", probe._seeded_factory(f"{seed}|{epsilon}|0".encode()), iterates[0].size,
        np.random.default_rng([seed, demo._STANDARDISE]),
    )  # fmt: skip
    result = run_fedavg(
        model, federation.clients, aggregator, federation.test_features, federation.test_labels, config.fedavg()
    )
    assert np.array_equal(flatten(result.params), iterates[-1])


def test_averages_and_schedules() -> None:
    iterates = [np.full(2, float(i)) for i in range(11)]  # initial, then 10 steps
    averaged = probe.averaged_models(iterates)
    assert set(averaged) == set(probe.AVERAGES)
    assert averaged["last"].tolist() == [10.0, 10.0]
    assert averaged["tail3"].tolist() == [9.0, 9.0]
    assert averaged["ema0.5"][0] == pytest.approx(sum(0.5 * 0.5 ** (10 - i) * i for i in range(2, 11)) + 0.5**9)
    assert probe._schedule("cos", 1, 20) == pytest.approx(1.0)
    assert probe._schedule("cos", 20, 20) == pytest.approx(0.1)
    assert [probe._schedule("step", s, 20) for s in (10, 11, 15, 16)] == [1.0, 0.5, 0.5, 0.25]


def test_one_local_step_is_the_recipe_contribution() -> None:
    """local_contribution with one step is dp_contribution; with more it moves along the way."""
    raw = make_federation("breast-cancer", 5, partition="dirichlet", alpha=0.5, test_fraction=TEST_FRACTION,
                          rng=np.random.default_rng([100, demo._SPLIT]))  # fmt: skip
    pooled = Standardiser.fit(np.concatenate([c.features for c in raw.clients]))
    client = raw.standardised(pooled).clients[0]
    model = LogisticRegression(client.features.shape[1], 2)
    params = [np.full_like(p, 0.01) for p in model.init(np.random.default_rng(0))]
    dp = dp_config("breast-cancer", 1.0, rounds=1, hospitals=5)
    one = probe.local_contribution(model, params, client, dp.l2_clip, 1, 0.5)
    assert dp.sampling_rate is None  # every patient: the sample draws nothing from its source
    assert np.array_equal(one, dp_contribution(model, params, client, dp))
    many = probe.local_contribution(model, params, client, dp.l2_clip, 8, 0.05)
    assert not np.allclose(many, one)
    # each step's clipped sum is at most num_samples * clip in L2, and so is their mean
    assert np.linalg.norm(many) <= client.num_samples * dp.l2_clip + 1e-9


def test_noise_schedules_spend_the_same_budget() -> None:
    """sum_t 1 / sigma_t^2 is T / sigma^2 for every power; power 0 is uniform; > 0 favours late rounds."""
    for power in (-1.0, 0.0, 1.0, 2.0):
        weights = schedule.schedule_weights(power, 20)
        assert weights.sum() == pytest.approx(20.0)
    assert np.allclose(schedule.schedule_weights(0.0, 20), 1.0)
    assert schedule.schedule_weights(1.0, 20)[-1] > schedule.schedule_weights(1.0, 20)[0]


def test_uniform_schedule_accuracy_is_reproducible() -> None:
    once = schedule.scheduled_accuracy(100, 3.0, 0, 0.0, rounds=3)
    assert once == schedule.scheduled_accuracy(100, 3.0, 0, 0.0, rounds=3)
    assert 0.5 < once <= 1.0


def test_ceiling_at_c_1_is_the_demos_centralised_comparison() -> None:
    seed = 3
    config, raw = probe.demo_run(seed, 1.0, 1)
    expected, _ = demo._centralized(config, raw)
    assert probe.ceiling([seed], [1.0]) == {1.0: [pytest.approx(expected)]}


def test_feature_subsets_keep_their_public_ranges() -> None:
    _, raw = probe.demo_run(100, 1.0, 1)
    kept, ranges = probe._transformed(raw, "mean+worst")
    assert ranges is not None and len(ranges) == kept.num_features == 20
    assert np.array_equal(kept.test_features, raw.test_features[:, list(probe.COLUMNS["mean+worst"])])
    full = probe.PUBLIC_FEATURE_RANGES["breast-cancer"]
    assert ranges[10] == full[20]


def test_optimizer_probe_recipe_is_the_recipe_probe() -> None:
    """The optimiser probe's recipe sees the recipe probe's noise and ends on the same model."""
    model, iterates, federation = probe.trajectory(100, 3.0, 0, probe.Variant("recipe"), 3)
    template = model.init(np.random.default_rng(0))
    expected = accuracy(model, unflatten(iterates[-1], template), federation.test_features, federation.test_labels)
    assert optimizers.run(100, 3.0, 0, optimizers.VARIANTS[0], rounds=3) == expected


def test_feature_clipped_gradients_keep_the_recipes_sensitivity() -> None:
    """Features clipped to B, the unclipped gradient scaled by clip / sqrt(2 (B^2 + 1)): each patient's
    term is at most the clip, and it is the true logistic gradient (the recipe's clip is not applied)."""
    rng = np.random.default_rng(1)
    features = optimizers.clip_rows(rng.normal(scale=3.0, size=(40, 30)), 2.0)
    assert np.linalg.norm(features, axis=1).max() <= 2.0 + 1e-12
    labels = rng.integers(0, 2, size=40)
    model = LogisticRegression(30, 2)
    params = [rng.normal(size=(30, 2)), rng.normal(size=2)]
    variant = optimizers.OptVariant("f", feature_clip=2.0, grad_clip=False)
    terms = [
        optimizers.contribution(model, params, ClientData(0, features[i : i + 1], labels[i : i + 1]), 0.5, variant)
        for i in range(40)
    ]
    assert max(np.linalg.norm(t) for t in terms) <= 0.5 + 1e-12
    _, gradient = model.loss_and_grad(params, features[:1], labels[:1])
    assert np.allclose(terms[0], flatten(gradient) * 0.5 / np.sqrt(2.0 * 5.0))


def test_server_steps_match_the_library_optimisers() -> None:
    rng = np.random.default_rng(2)
    gradients = [rng.normal(size=4) for _ in range(3)]
    for kind, variant in (
        ("sgd", optimizers.OptVariant("hb", learning_rate=0.7, momentum=0.5)),
        ("adam", optimizers.OptVariant("a", optimizer="adam", learning_rate=0.1, momentum=0.9)),
    ):
        library = ServerOptimizer(kind, learning_rate=variant.learning_rate, momentum=variant.momentum)
        ours, theirs, state = np.zeros(4), np.zeros(4), optimizers._State()
        for g in gradients:
            ours, theirs = optimizers.server_step(variant, ours, g, state), library.step(theirs, g)
        assert np.allclose(ours, theirs)
    adagrad = optimizers.OptVariant("g", optimizer="adagrad", learning_rate=1.0, momentum=0.0, tau=0.0)
    state = optimizers._State()
    first = optimizers.server_step(adagrad, np.zeros(4), gradients[0], state)
    assert np.allclose(first, -np.sign(gradients[0]))  # g / sqrt(g^2)
    # the noise's expected share is removed, floored at noise_floor times it
    corrected = dataclasses.replace(adagrad, noise_floor=1.0)
    state = optimizers._State(noise_variance=100.0)
    moved = optimizers.server_step(corrected, np.zeros(2), np.array([20.0, 0.5]), state)
    assert np.allclose(moved, [-20.0 / np.sqrt(300.0), -0.5 / 10.0])  # 400 - 100; 0.25 - 100 floored at 100


def test_closed_form_references_fit_the_standardised_data() -> None:
    scores = optimizers.closed_forms([100])
    assert set(scores) == set(optimizers.CLOSED_FORMS)
    assert all(0.85 < values[0] <= 1.0 for values in scores.values())


def test_preconditioner_acts_on_each_logits_weights_and_bias() -> None:
    """Flat layout [W (d x k), b (k)]: row j of W and the bias are scaled by the inverse's j-th and last diagonal."""
    weights, bias = np.arange(6.0).reshape(3, 2), np.array([10.0, 20.0])
    inverse = np.diag([1.0, 2.0, 3.0, 4.0])
    moved = optimizers._preconditioned(np.concatenate([weights.ravel(), bias]), inverse)
    assert moved.tolist() == [0.0, 1.0, 4.0, 6.0, 12.0, 15.0, 40.0, 80.0]


def test_combined_variants_parse_into_their_parts() -> None:
    """``--variants`` names of the combinations: the recipe probe's scaling / features with a server step."""
    named = {v.name: v for v in optimizers.VARIANTS}
    assert len(named) == len(optimizers.VARIANTS)
    both = named["two-stage adam 0.05 b1 0 noise-corrected 1 ema0.5"]
    assert (both.scaling, both.features, both.optimizer) == ("two-stage", "none", "adam")
    assert (both.learning_rate, both.momentum, both.noise_floor, both.ema) == (0.05, 0.0, 1.0, 0.5)
    worst = named["mean+worst ema0.5"]
    assert (worst.features, worst.scaling, worst.optimizer, worst.learning_rate, worst.ema) == (
        "mean+worst", "release", "heavy-ball", 4.0, 0.5,
    )  # fmt: skip
    assert dataclasses.replace(named["two-stage"], name="recipe", scaling="release") == named["recipe"]
    mixed = named["two-stage mean+worst lr6"]
    assert (mixed.scaling, mixed.features, mixed.learning_rate) == ("two-stage", "mean+worst", 6.0)
    with pytest.raises(SystemExit):
        optimizers.main(["--variants", "two-stage adam", "--seeds", "100"])


@pytest.mark.parametrize(("name", "variant"), [("two-stage", "two-stage release"), ("mean+worst", "mean+worst")])
def test_combined_scaling_and_features_see_the_recipe_probes_noise(name: str, variant: str) -> None:
    """The optimiser probe's two-stage and feature-subset runs end where the recipe probe's do (same noise)."""
    chosen = {v.name: v for v in probe.VARIANTS}[variant]
    model, iterates, federation = probe.trajectory(101, 1.0, 1, chosen, 3)
    template = model.init(np.random.default_rng(0))
    expected = accuracy(model, unflatten(iterates[-1], template), federation.test_features, federation.test_labels)
    combined = {v.name: v for v in optimizers.VARIANTS}[name]
    assert optimizers.run(101, 1.0, 1, combined, rounds=3) == expected


def test_two_stage_release_of_a_feature_subset_uses_its_ranges() -> None:
    _, _, federation, aggregator = probe.scaled_setup(100, 3.0, 0, 2, "mean+worst", "two-stage")
    assert federation.num_features == 20 and len(aggregator.plan.preceding) == 2  # means, then squares
    assert np.all(np.isfinite(federation.test_features))
    with pytest.raises(ValueError, match="unknown scaling"):
        probe.scaled_setup(100, 3.0, 0, 2, scaling="pooled")


def test_releases_per_round_recalibrate_for_every_release() -> None:
    """K releases per round: the training's noise is calibrated for rounds x K releases after the recipe's
    moments release, in one Renyi account, and spends the same epsilon; the run makes rounds x K steps."""
    rounds, epsilon = 3, 1.0
    recipe = probe.scaled_setup(100, epsilon, 0, rounds)[3].plan
    twice = probe.scaled_setup(100, epsilon, 0, 2 * rounds)[3].plan
    assert (recipe.config.rounds, twice.config.rounds) == (rounds, 2 * rounds)
    assert twice.preceding == recipe.preceding and len(twice.preceding) == 1  # the same moments release
    assert calibrate(twice.config, num_clients=5, scale=twice.scale, dimension=twice.dimension,
                     preceding=twice.preceding) == twice  # fmt: skip
    assert twice.spent_after(2 * rounds)[0] <= epsilon < twice.spent_after(2 * rounds + 1)[0]
    assert twice.variance / twice.scale**2 > 1.5 * recipe.variance / recipe.scale**2  # about twice the noise variance
    named = {v.name: v for v in optimizers.VARIANTS}
    two = named["2 releases/round"]
    assert (two.releases, two.learning_rate, two.momentum) == (2, 4.0, 0.5)
    # two releases per round over 3 rounds are the recipe's loop over 6 rounds (same plan, same noise)
    final = {
        (k, r): flatten(optimizers.trained(100, epsilon, 0, dataclasses.replace(two, releases=k), rounds=r)[1])
        for k, r in ((2, rounds), (1, 2 * rounds), (1, rounds))
    }
    assert np.array_equal(final[2, rounds], final[1, 2 * rounds])
    assert not np.allclose(final[1, rounds], final[1, 2 * rounds])
    recipe_final = flatten(optimizers.trained(100, epsilon, 0, named["recipe"], rounds)[1])
    assert np.array_equal(recipe_final, final[1, rounds])  # one release per round is the recipe, bit for bit


def test_lda_start_is_the_discriminant_of_the_class_moments() -> None:
    """Two well-separated classes: the start classifies them; its logits are the closed form scaled by alpha."""
    rng = np.random.default_rng(0)
    features = np.vstack([rng.normal(-1.0, 0.3, (40, 3)), rng.normal(1.0, 0.3, (60, 3))])
    labels = np.repeat([0, 1], [40, 60])
    _, raw = probe.demo_run(100, 1.0, 1)
    federation = dataclasses.replace(raw, clients=(ClientData(0, features, labels),))
    half, full = optimizers.lda_start(federation, 0.5), optimizers.lda_start(federation, 1.0)
    model = LogisticRegression(3, 2)
    assert accuracy(model, full, features, labels) == 1.0
    np.testing.assert_allclose(flatten(half), 0.5 * flatten(full))
    weights = full[0][:, 1] - full[0][:, 0]
    variance = 0.5 * (features[:40].var(axis=0) + features[40:].var(axis=0)) + 1e-3
    np.testing.assert_allclose(weights, (features[40:].mean(axis=0) - features[:40].mean(axis=0)) / variance)
    assert full[1][1] - full[1][0] == pytest.approx(
        -weights @ (features[40:].mean(axis=0) + features[:40].mean(axis=0)) / 2 + np.log(60 / 40)
    )


def test_antisymmetric_part_keeps_the_signal_and_the_two_class_decision() -> None:
    """The two logits' clipped gradients are exact negatives, so the projection leaves the exact sum as it
    is and removes the noise's symmetric part; with heavy-ball steps the logit difference, hence every
    prediction, is unchanged (why "antisym" scores exactly the recipe)."""
    raw = make_federation("breast-cancer", 5, partition="dirichlet", alpha=0.5, test_fraction=TEST_FRACTION,
                          rng=np.random.default_rng([100, demo._SPLIT]))  # fmt: skip
    client = raw.standardised(Standardiser.fit(np.concatenate([c.features for c in raw.clients]))).clients[0]
    model = LogisticRegression(client.features.shape[1], 2)
    rng = np.random.default_rng(2)
    params = [rng.normal(size=(30, 2)), rng.normal(size=2)]
    exact = flatten(model.clipped_gradient_sum(params, client.features, client.labels, 0.5))
    assert np.allclose(optimizers.antisymmetric_part(exact), exact)
    noise = rng.normal(size=exact.size)
    projected = optimizers.antisymmetric_part(exact + noise)
    assert np.allclose(projected.reshape(-1, 2).sum(axis=1), 0.0)
    assert not np.allclose(projected, exact + noise)
    moved = [optimizers.server_step(optimizers.OptVariant("hb"), np.zeros(exact.size), g, optimizers._State())
             for g in (exact + noise, projected)]  # fmt: skip
    differences = [np.diff(m.reshape(-1, 2), axis=1) for m in moved]
    assert np.allclose(differences[0], differences[1])


def test_square_rooted_areas_and_their_ranges() -> None:
    """"sqrt-area" takes the square root of the three area columns and of their public highs, nothing else."""
    _, raw = probe.demo_run(100, 1.0, 1)
    moved, ranges = probe._transformed(raw, "sqrt-area")
    full = probe.PUBLIC_FEATURE_RANGES["breast-cancer"]
    assert ranges is not None and len(ranges) == 30
    area = list(probe.AREA_COLUMNS)
    others = [i for i in range(30) if i not in area]
    assert np.allclose(moved.test_features[:, area], np.sqrt(raw.test_features[:, area]))
    assert np.array_equal(moved.test_features[:, others], raw.test_features[:, others])
    assert [ranges[i][1] for i in area] == pytest.approx([np.sqrt(full[i][1]) for i in area])
    assert [ranges[i] for i in others] == [full[i] for i in others]


def test_clamped_features_bound_every_patient_the_test_patients_too() -> None:
    named = {v.name: v for v in optimizers.VARIANTS}
    _, _, federation = optimizers.trained(100, 1.0, 0, named["clamp 1"], rounds=1)
    for features in (*(c.features for c in federation.clients), federation.test_features):
        assert np.abs(features).max() <= 1.0
    _, _, unclamped = optimizers.trained(100, 1.0, 0, named["recipe"], rounds=1)
    assert np.abs(unclamped.test_features).max() > 1.0
