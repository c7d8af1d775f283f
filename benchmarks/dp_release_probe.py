"""Probe: private statistics released inside the budget before the DP rounds, and local steps.

Issue 15's last three ideas, each against the recipe on the **tuning** seeds (100..109) by default:

- **private robust scaling** (``quantiles S``, :func:`quantile_setup`): instead of the moments
  release, each hospital contributes, per feature, a one-hot histogram of its patients' public-scaled
  values over ``bins`` equal bins of ``[-1, 1]`` (one patient adds one count per feature: L2
  sensitivity ``sqrt(d)``), noised as a ``(S epsilon, delta)`` release; the server reads each
  feature's median and interquartile range off the noised cumulative counts and standardises with
  them (scale ``IQR / 1.349``, floored);
- a **private linear-discriminant start** (``class moments LDA A``, :func:`class_moments_setup`): the
  moments release (same share, same L2 clip) also carries the class-1 patients' feature sums and a
  count (each row ``(u, u^2, y u, y c)`` clipped as the recipe's ``(u, u^2)``), and the rounds start
  from ``A`` times the diagonal-LDA model computed **only from the released, noised sums**
  (:func:`lda_from_release`) instead of zero;
- **local steps within the 20 rounds** (``K local steps lr L``: :func:`dp_recipe_probe.local_contribution`,
  each round's contribution the mean of K clipped full-batch gradients along K local steps).

Every release is charged: the training aggregator is calibrated after it in one Renyi account
(``preceding``, as :func:`fl_core.demo_dp.dp_setup` does), so the release and the 20 rounds spend the
declared ``(epsilon, delta)`` together; the recipe's own moments release is not used (nor charged) by
the first two. Noise from :func:`dp_recipe_probe._seeded_factory` streams per (seed, epsilon,
replicate), as the other probes.

``python -m benchmarks.dp_release_probe --epsilon 1 3 --replicates 3 --variants NAME ...``
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from fl_core import demo
from fl_core.aggregators.base import Aggregator, ClientUpdate
from fl_core.data import Federation, Standardiser
from fl_core.demo_config import DemoConfig
from fl_core.dp import DPAggregator
from fl_core.dp_moments import VARIANCE_FLOOR, _scaled
from fl_core.dp_presets import DP_TRAINING, default_min_honest, dp_config
from fl_core.dp_training import public_denominator
from fl_core.fedavg import _AGGREGATE
from fl_core.models import FloatArray, LogisticRegression, accuracy, flatten, unflatten
from fl_core.public_scaling import public_scaler
from secagg._outputs import run_tool
from secagg.dp import DPConfig

from .dp_optimizer_probe import OptVariant, _State, run, server_step
from .dp_probe_readout import paired
from .dp_recipe_probe import Variant, _seeded_factory, demo_run, probe_parser, trajectory

__all__ = [
    "QUANTILE_BINS", "VARIANTS", "ReleaseVariant", "class_moments_setup", "lda_from_release", "main",
    "quantile_setup", "quantiles_from_release", "release_run",
]  # fmt: skip

QUANTILE_BINS = 16
"""Equal bins of the public-scaled range ``[-1, 1]`` per feature in the quantile release."""
SCALE_FLOOR = 0.05
"""Smallest scale (public-scaled units) the released interquartile range may give."""
COUNT_WEIGHT = 1.0
"""The count coordinate's value in a class-1 patient's row of the class-moments release."""


@dataclasses.dataclass(frozen=True)
class ReleaseVariant:
    """One of this probe's changes: a release before the rounds, or local steps."""

    name: str
    kind: str  # "quantiles", "class-moments" or "local-steps"
    share: float = 0.2  # the release's share of epsilon
    alpha: float = 0.0  # the LDA start's multiplier (0: start from zero, the release only rescales)
    bins: int = QUANTILE_BINS  # the quantile release's bins per feature
    local_steps: int = 1
    learning_rate: float = 4.0


VARIANTS = (
    ReleaseVariant("quantiles 0.1", "quantiles", share=0.1),
    ReleaseVariant("quantiles 0.2", "quantiles", share=0.2),
    ReleaseVariant("quantiles 0.2 8 bins", "quantiles", share=0.2, bins=8),
    ReleaseVariant("class moments", "class-moments"),
    *(ReleaseVariant(f"class moments LDA {a:g}", "class-moments", alpha=a) for a in (0.15, 0.25, 0.5)),
    *(
        ReleaseVariant(f"{k} local steps lr {lr:g}", "local-steps", local_steps=k, learning_rate=lr)
        for k, lr in ((2, 4.0), (2, 6.0), (4, 6.0), (4, 8.0))
    ),
)


def _histogram_rows(scaled: FloatArray, bins: int) -> FloatArray:
    """Each patient's one-hot bin per feature, flattened feature-major (``d * bins`` coordinates)."""
    index = np.clip(np.floor((scaled + 1.0) / 2.0 * bins).astype(np.int64), 0, bins - 1)
    rows = np.zeros((scaled.shape[0], scaled.shape[1], bins))
    np.put_along_axis(rows, index[:, :, None], 1.0, axis=2)
    return rows.reshape(scaled.shape[0], -1)


def quantiles_from_release(counts: FloatArray, total: float, bins: int) -> tuple[FloatArray, FloatArray]:
    """Per-feature median and ``IQR / 1.349`` (public-scaled units) from the noised histogram ``counts``
    (``d * bins``, feature-major) and the public total: negative counts set to zero, the cumulative
    counts made monotone and read at ``total / 4, / 2, 3 / 4`` by linear interpolation inside a bin."""
    grid = np.linspace(-1.0, 1.0, bins + 1)
    cumulative = np.maximum.accumulate(np.cumsum(np.maximum(counts.reshape(-1, bins), 0.0), axis=1), axis=1)
    cumulative = np.hstack([np.zeros((cumulative.shape[0], 1)), cumulative])

    def at(fraction: float) -> FloatArray:
        values = [np.interp(fraction * total, row + 1e-9 * np.arange(bins + 1), grid) for row in cumulative]
        return np.asarray(values, dtype=np.float64)

    median, spread = at(0.5), (at(0.75) - at(0.25)) / 1.349
    return median, np.clip(spread, SCALE_FLOOR, 1.0)


def _release(aggregator: Aggregator, federation: Federation, rows: dict[int, FloatArray],
             rng: np.random.Generator) -> FloatArray:  # fmt: skip
    updates = [ClientUpdate(c.client_id, rows[c.client_id].sum(axis=0), c.num_samples) for c in federation.clients]
    result = aggregator.aggregate(updates, {}, rng=rng)
    assert result.mean is not None, result.skipped_reason
    return np.asarray(result.mean, dtype=np.float64)


def _training(config: DemoConfig, factory: Callable[..., Aggregator], dimension: int,
              release: DPAggregator) -> DPAggregator:  # fmt: skip
    """The rounds' aggregator, calibrated after every release ``release`` made, in one Renyi account."""
    assert config.dp_epsilon is not None
    made = release.accountant.num_releases
    training = factory(
        "plain-quantized", config, dimension=dimension, max_samples_per_client=config.max_samples_per_client,
        size_honest=True, preceding=((release.plan, made),),
        dp=dp_config(config.dataset, config.dp_epsilon, rounds=config.rounds, hospitals=config.hospitals,
                     delta=config.dp_delta),
    )  # fmt: skip
    assert isinstance(training, DPAggregator)
    return training


def quantile_setup(seed: int, epsilon: float, replicate: int, share: float, rounds: int = 20,
                   bins: int = QUANTILE_BINS) -> tuple[Federation, DPAggregator, DPAggregator]:  # fmt: skip
    """The federation standardised by released medians and IQRs, the training aggregator and the release's."""
    config, raw = demo_run(seed, epsilon, rounds)
    d, factory = raw.num_features, _seeded_factory(f"{seed}|{epsilon}|{replicate}|quantiles".encode())
    dp = DPConfig(epsilon=share * epsilon, delta=config.dp_delta, rounds=1, l2_clip=math.sqrt(d),
                  min_honest=default_min_honest(config.hospitals))  # fmt: skip
    release = factory("plain-quantized", config, dp=dp, dimension=d * bins,
                      max_samples_per_client=config.max_samples_per_client, size_honest=True)  # fmt: skip
    assert isinstance(release, DPAggregator)
    rows = {c.client_id: _histogram_rows(_scaled(config.dataset, c.features), bins) for c in raw.clients}
    counts = _release(release, raw, rows, np.random.default_rng([seed, demo._STANDARDISE]))
    median, spread = quantiles_from_release(counts, float(sum(c.num_samples for c in raw.clients)), bins)
    public = public_scaler(config.dataset, d)
    standardiser = Standardiser(public.mean + public.std * median, public.std * spread)
    return raw.standardised(standardiser), _training(config, factory, 2 * (d + 1), release), release


def lda_from_release(sums: FloatArray, total: float, alpha: float, count_weight: float = COUNT_WEIGHT
                     ) -> tuple[Standardiser, list[FloatArray]]:  # fmt: skip
    """From the released ``(sum u, sum u^2, sum_{y=1} u, c n_1)`` (public-scaled units) and the public
    total only: the moments standardiser's centre and scale (as :func:`fl_core.dp_moments.release_moments`,
    in public-scaled units) and ``alpha`` times the diagonal-LDA start in the standardised units
    (``w = m_1 - m_0`` per unit variance, ``b = -w . (m_1 + m_0) / 2 + log(n_1 / n_0)``, as two logits)."""
    d = (sums.size - 1) // 3
    first, second, ones = sums[:d] / total, sums[d : 2 * d] / total, sums[2 * d : 3 * d]
    mean = np.clip(first, -1.0, 1.0)
    variance = np.clip(second - mean * mean, VARIANCE_FLOOR, 1.0)
    n1 = float(np.clip(sums[3 * d] / count_weight, 1.0, total - 1.0))
    m1 = (np.clip(ones / n1, -1.0, 1.0) - mean) / np.sqrt(variance)
    m0 = (np.clip((sums[:d] - ones) / (total - n1), -1.0, 1.0) - mean) / np.sqrt(variance)
    weights = m1 - m0
    bias = -float(weights @ (m1 + m0)) / 2.0 + math.log(n1 / (total - n1))
    start = [alpha * np.stack([-weights / 2.0, weights / 2.0], axis=1), alpha * np.array([-bias / 2.0, bias / 2.0])]
    return Standardiser(mean, np.sqrt(variance)), start


def class_moments_setup(seed: int, epsilon: float, replicate: int, alpha: float, rounds: int = 20
                        ) -> tuple[Federation, DPAggregator, list[FloatArray], DPAggregator]:  # fmt: skip
    """The moments release with the class-1 sums and count added (the recipe's share and L2 clip), the
    federation standardised from it, the training aggregator, the start and the release's aggregator."""
    config, raw = demo_run(seed, epsilon, rounds)
    assert config.dp_epsilon is not None
    d, factory = raw.num_features, _seeded_factory(f"{seed}|{epsilon}|{replicate}".encode())
    clip = DP_TRAINING[config.dataset].moments_clip_share * math.sqrt(2.0 * d)
    dp = DPConfig(epsilon=config.dp_moments_share * epsilon, delta=config.dp_delta, rounds=1, l2_clip=clip,
                  min_honest=default_min_honest(config.hospitals))  # fmt: skip
    release = factory("plain-quantized", config, dp=dp, dimension=3 * d + 1,
                      max_samples_per_client=config.max_samples_per_client, size_honest=True)  # fmt: skip
    assert isinstance(release, DPAggregator)
    rows: dict[int, FloatArray] = {}
    for c in raw.clients:
        u, y = _scaled(config.dataset, c.features), (c.labels == 1).astype(np.float64)[:, None]
        full = np.hstack([u, u * u, y * u, y * COUNT_WEIGHT])
        norms = np.linalg.norm(full, axis=1, keepdims=True)
        rows[c.client_id] = full * np.minimum(1.0, clip / np.maximum(norms, 1e-300))
    sums = _release(release, raw, rows, np.random.default_rng([seed, demo._STANDARDISE]))
    scaled, start = lda_from_release(sums, float(sum(c.num_samples for c in raw.clients)), alpha)
    public = public_scaler(config.dataset, d)
    standardiser = Standardiser(public.mean + public.std * scaled.mean, public.std * scaled.std)
    return raw.standardised(standardiser), _training(config, factory, 2 * (d + 1), release), start, release


def release_run(seed: int, epsilon: float, replicate: int, variant: ReleaseVariant, rounds: int = 20) -> float:
    """Held-out accuracy of ``variant`` after ``rounds`` rounds (the recipe's server step otherwise)."""
    if variant.kind == "local-steps":
        recipe_variant = Variant(variant.name, learning_rate=variant.learning_rate, local_steps=variant.local_steps)
        model, iterates, federation = trajectory(seed, epsilon, replicate, recipe_variant, rounds)
        params = unflatten(iterates[-1], model.init(np.random.default_rng(0)))
        return accuracy(model, params, federation.test_features, federation.test_labels)
    start: list[FloatArray] | None = None
    if variant.kind == "quantiles":
        federation, aggregator, _ = quantile_setup(seed, epsilon, replicate, variant.share, rounds, variant.bins)
    elif variant.kind == "class-moments":
        federation, aggregator, start, _ = class_moments_setup(seed, epsilon, replicate, variant.alpha, rounds)
    else:
        raise ValueError(f"unknown kind {variant.kind!r}")
    model = demo._model(demo_run(seed, epsilon, rounds)[0], federation)
    assert isinstance(model, LogisticRegression)
    params = start if start is not None else model.init(np.random.default_rng(0))
    clip = aggregator.config.l2_clip
    denominator = public_denominator([c.num_samples for c in federation.clients], aggregator.config)
    state, step_rule = _State(), OptVariant("recipe", learning_rate=variant.learning_rate)
    for step in range(1, rounds + 1):
        updates = [
            ClientUpdate(c.client_id, flatten(model.clipped_gradient_sum(params, c.features, c.labels, clip)),
                         c.num_samples)
            for c in federation.clients
        ]  # fmt: skip
        result = aggregator.aggregate(updates, {}, rng=np.random.default_rng([seed, _AGGREGATE, step]))
        assert result.mean is not None, result.skipped_reason
        moved = server_step(step_rule, flatten(params), np.asarray(result.mean) / denominator, state)
        params = unflatten(moved, params)
    return accuracy(model, params, federation.test_features, federation.test_labels)


def main(argv: Sequence[str] | None = None) -> None:
    parser = probe_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    known = {v.name: v for v in VARIANTS}
    unknown = set(args.variants or ()) - set(known)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {sorted(known)}")
    chosen = [known[name] for name in args.variants or known]
    seeds, runs = len(args.seeds), [(s, r) for s in args.seeds for r in range(args.replicates)]
    for epsilon in args.epsilon:
        base = np.array([run(s, epsilon, r, OptVariant("recipe"), args.rounds) for s, r in runs])
        print(f"epsilon {epsilon:g}: accuracy, difference to recipe (pp, +- s.e. over {seeds} seeds)")
        print(f"  {'recipe':24s} {paired(base, base, seeds)}", flush=True)
        for variant in chosen:
            score = np.array([release_run(s, epsilon, r, variant, args.rounds) for s, r in runs])
            print(f"  {variant.name:24s} {paired(score, base, seeds)}", flush=True)


if __name__ == "__main__":  # a library error or Ctrl-C: one line, exit code 2 or 130
    raise SystemExit(run_tool("dp_release_probe", main))
