"""Probe: the DP recipe's server optimiser, feature clipping and moments share, paired on the tuning seeds.

Issue 15's breast-cancer targets are not met, and the recipe's 20 noise-free steps already
sit below them (docs/benchmarks.md). This probe measures, on the **tuning** seeds (100..109),
changes that cost no privacy, each against the recipe on the same noise
(:func:`dp_recipe_probe._seeded_factory` streams, as the recipe probe):

- the server's step on the released mean gradient (post-processing): heavy-ball momentum (the
  recipe), Nesterov momentum, steps of a fixed length (``normalised``), Adam and Adagrad
  per-coordinate steps, optionally with the noise's expected share of their second moments
  removed (``noise_floor``: the per-coordinate noise variance of the released mean is public,
  :func:`fl_core.demo_dp.noise_std`), a larger first step (``first_step``) and an exponential
  moving average of the iterates (``ema``);
- steps preconditioned by the inverse of the logistic loss's quadratic upper bound
  ``X~^T X~ / (4 N) + ridge I`` (``exact_newton_ridge``; Ganesh et al., NeurIPS 2023, "QU"), from the
  **exact** pooled second moments: a diagnostic that leaks, an upper bound for a noised release of them;
- **feature clipping** (``feature_clip`` B): each patient's standardised features clipped to L2
  norm B (a per-record map with public constants, applied to the test patients too: it is part
  of the model), and the *unclipped* logistic gradient, whose norm is then at most
  ``sqrt(2 (B^2 + 1))`` (two logits, one bias), scaled by ``clip / sqrt(2 (B^2 + 1))`` so the
  sensitivity stays the recipe's clip and the same aggregator noises it; ``grad_clip`` keeps the
  recipe's per-example clipping on top;
- a **start** (``warm_start`` alpha) from alpha times the diagonal linear-discriminant model of the
  **exact** pooled class-wise means and within-class variances of the released scaling's features
  (:func:`lda_start`): a diagnostic that leaks, an upper bound for a start from class-wise sums, which
  the moments release could carry at its own sensitivity (each patient adds to one class's sums);
- the moments release's share of epsilon (``moments_share``; the rounds are recalibrated after it
  in the same Renyi account, as :func:`fl_core.demo_dp.dp_setup` does).
- **several releases per round** (``releases`` K): K secure sums of the full-batch clipped gradient per
  round, the server stepping after each, the noise calibrated for ``rounds * K`` releases (:func:`run`);
- **combinations** (:data:`COMBINED_WITH`): the recipe probe's two-stage moments release and
  "mean+worst" feature subset (``scaling``, ``features``; :func:`dp_recipe_probe.scaled_setup`, the
  same noise streams) with the recipe's step, EMA 0.5, step 6 or noise-corrected Adam, for a preset
  chosen per epsilon;
- the released gradient's **antisymmetric part** (``antisymmetric``, :func:`antisymmetric_part`;
  post-processing), the recipe probe's square-root transforms (``sqrt``, ``sqrt area``) and each scaled
  feature **clamped** to ``[-c, c]`` (``feature_clamp``, a per-record map with a public constant).

``--closed-form`` instead prints :func:`closed_forms` (non-private references for a closed-form start).
``--noise-free`` replaces the training's noised sum by the exact one (a diagnostic: the 20-step
ceiling of each variant on the scaling released at that epsilon).

``python -m benchmarks.dp_optimizer_probe --epsilon 1 3 --replicates 3 --variants NAME ...``
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import statistics
from collections.abc import Sequence

import numpy as np

from fl_core.aggregators.base import ClientUpdate
from fl_core.data import ClientData, Federation, Standardiser
from fl_core.demo_dp import noise_std
from fl_core.dp_training import public_denominator
from fl_core.fedavg import _AGGREGATE
from fl_core.models import FloatArray, LogisticRegression, accuracy, flatten, unflatten
from secagg._outputs import run_tool

from .dp_optimizer_variants import COMBINED_WITH, OPTIMIZERS, VARIANTS, OptVariant
from .dp_probe_readout import paired
from .dp_recipe_probe import demo_run, probe_parser, scaled_setup

__all__ = [
    "CLOSED_FORMS",
    "COMBINED_WITH",
    "OPTIMIZERS",
    "VARIANTS",
    "OptVariant",
    "antisymmetric_part",
    "clip_rows",
    "closed_forms",
    "contribution",
    "lda_start",
    "run",
    "server_step",
    "trained",
]

TUNING_SEEDS = tuple(range(100, 110))

def clip_rows(features: FloatArray, bound: float) -> FloatArray:
    """Each row scaled to L2 norm at most ``bound`` (a per-record map with a public constant)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    clipped: FloatArray = features * np.minimum(1.0, bound / np.maximum(norms, 1e-300))
    return clipped


def contribution(model: LogisticRegression, params: list[FloatArray], data: ClientData, clip: float,
                 variant: OptVariant) -> FloatArray:  # fmt: skip
    """A hospital's sum of per-patient gradients whose norms are each at most ``clip``.

    With ``feature_clip`` and no ``grad_clip``: every ``||[x, 1]|| <= sqrt(B^2 + 1)`` and the two
    logits' gradient ``d`` has ``||d|| <= sqrt(2)``, so the unclipped gradient's norm is at most
    ``sqrt(2 (B^2 + 1))`` and the scaled one at most ``clip`` (the clip below never binds)."""
    if variant.feature_clip is None or variant.grad_clip:
        return flatten(model.clipped_gradient_sum(params, data.features, data.labels, clip))
    bound = math.sqrt(2.0 * (variant.feature_clip**2 + 1.0))
    total = model.clipped_gradient_sum(params, data.features, data.labels, bound * (1.0 + 1e-9))
    return flatten(total) * (clip / bound)


@dataclasses.dataclass
class _State:
    noise_variance: float = 0.0  # of the released mean gradient, per coordinate (public: the noise plan's)
    first: FloatArray | None = None
    second: FloatArray | None = None
    noise_in_second: float = 0.0  # the noise's expected share of ``second``


def server_step(variant: OptVariant, params: FloatArray, gradient: FloatArray, state: _State) -> FloatArray:
    """``params`` moved against the released mean ``gradient`` (post-processing only)."""
    rate, beta = variant.learning_rate, variant.momentum
    first = np.zeros_like(gradient) if state.first is None else state.first
    if variant.optimizer == "heavy-ball":  # the recipe (fl_core.server_opt "sgd")
        state.first = gradient + beta * first
        return params - rate * state.first
    if variant.optimizer == "nesterov":
        state.first = gradient + beta * first
        return params - rate * (gradient + beta * state.first)
    if variant.optimizer == "normalised":  # heavy ball, every step of length ``rate``
        state.first = gradient + beta * first
        return params - rate * state.first / max(float(np.linalg.norm(state.first)), 1e-300)
    second = np.zeros_like(gradient) if state.second is None else state.second
    if variant.optimizer == "adam":  # FedAdam, no bias correction (fl_core.server_opt "adam")
        state.first = beta * first + (1.0 - beta) * gradient
        state.second = variant.beta2 * second + (1.0 - variant.beta2) * gradient * gradient
        state.noise_in_second = variant.beta2 * state.noise_in_second + (1.0 - variant.beta2) * state.noise_variance
    elif variant.optimizer == "adagrad":  # FedAdagrad (Reddi et al., 2021)
        state.first = beta * first + (1.0 - beta) * gradient
        state.second = second + gradient * gradient
        state.noise_in_second += state.noise_variance
    else:
        raise ValueError(f"unknown optimizer {variant.optimizer!r}")
    second = state.second
    if variant.noise_floor is not None:  # the noise's expected share removed, floored at a share of it
        second = np.maximum(second - state.noise_in_second, variant.noise_floor * state.noise_in_second)
    moved: FloatArray = params - rate * state.first / (np.sqrt(second) + variant.tau)
    return moved


def antisymmetric_part(gradient: FloatArray, classes: int = 2) -> FloatArray:
    """The released mean gradient with each row of its logits' coordinates centred (post-processing).

    A softmax model's per-example logit gradient ``p - onehot(y)`` sums to zero over the classes, and so
    does every clipped multiple of it: each weight row and the bias of the exact sum lie in the
    zero-sum subspace. The noise does not; projecting onto that subspace removes its component outside
    (with two classes half its variance) and leaves the signal unchanged. Flat layout ``[W (d x k), b (k)]``,
    row-major, so consecutive blocks of ``classes`` coordinates are one row."""
    rows = gradient.reshape(-1, classes)
    centred: FloatArray = (rows - rows.mean(axis=1, keepdims=True)).ravel()
    return centred


def _quadratic_bound_inverse(federation: Federation, ridge: float) -> FloatArray:
    """``(X~^T X~ / (4 N) + ridge I)^-1`` over the pooled training patients, ``X~ = [X, 1]``: the inverse of
    the logistic loss's quadratic upper bound (Ganesh et al., NeurIPS 2023, "QU"). A **diagnostic that
    leaks** (exact second moments): it bounds what a released, noised version could give."""
    rows = np.concatenate([np.hstack([c.features, np.ones((c.num_samples, 1))]) for c in federation.clients])
    bound = rows.T @ rows / (4.0 * rows.shape[0]) + ridge * np.eye(rows.shape[1])
    inverse: FloatArray = np.linalg.inv(bound)
    return inverse


def _preconditioned(gradient: FloatArray, inverse: FloatArray) -> FloatArray:
    """``inverse`` applied to each logit's ``(weights, bias)`` gradient (flat layout ``[W (d x k), b (k)]``)."""
    features, classes = inverse.shape[0] - 1, (gradient.size) // inverse.shape[0]
    stacked = np.vstack([gradient[: features * classes].reshape(features, classes), gradient[features * classes :]])
    moved = inverse @ stacked
    flat: FloatArray = np.concatenate([moved[:features].ravel(), moved[features]])
    return flat


def lda_start(federation: Federation, alpha: float) -> list[FloatArray]:
    """``alpha`` times the diagonal LDA model of the pooled training patients (``w = (m1 - m0) / v``,
    ``b = -w . (m1 + m0) / 2 + log(n1 / n0)``, ``v`` the mean of the two within-class variances), as the
    two logits ``[-w / 2, w / 2]``: the exact class-wise moments **leak** (a diagnostic only)."""
    features = np.concatenate([c.features for c in federation.clients])
    labels = np.concatenate([c.labels for c in federation.clients])
    ones, zeros = features[labels == 1], features[labels == 0]
    variance = 0.5 * (ones.var(axis=0) + zeros.var(axis=0)) + 1e-3
    weights = (ones.mean(axis=0) - zeros.mean(axis=0)) / variance
    bias = -weights @ (ones.mean(axis=0) + zeros.mean(axis=0)) / 2.0 + math.log(len(ones) / len(zeros))
    return [alpha * np.stack([-weights / 2.0, weights / 2.0], axis=1), alpha * np.array([-bias / 2.0, bias / 2.0])]


def _clamped(federation: Federation, bound: float | None) -> Federation:
    """Every scaled feature clamped to ``[-bound, bound]``, the test patients' too (a per-record map)."""
    if bound is None:
        return federation
    clients = tuple(dataclasses.replace(c, features=np.clip(c.features, -bound, bound)) for c in federation.clients)
    return dataclasses.replace(
        federation, clients=clients, test_features=np.clip(federation.test_features, -bound, bound)
    )


def _clipped(federation: Federation, bound: float | None) -> Federation:
    if bound is None:
        return federation
    clients = tuple(dataclasses.replace(c, features=clip_rows(c.features, bound)) for c in federation.clients)
    return dataclasses.replace(federation, clients=clients, test_features=clip_rows(federation.test_features, bound))


def run(seed: int, epsilon: float, replicate: int, variant: OptVariant, rounds: int = 20,
        noise_free: bool = False) -> float:  # fmt: skip
    """Held-out accuracy after ``rounds`` rounds of ``variant`` (the recipe's noise streams)."""
    model, params, federation = trained(seed, epsilon, replicate, variant, rounds, noise_free)
    return accuracy(model, params, federation.test_features, federation.test_labels)


def trained(seed: int, epsilon: float, replicate: int, variant: OptVariant, rounds: int = 20,
            noise_free: bool = False) -> tuple[LogisticRegression, list[FloatArray], Federation]:  # fmt: skip
    """The model, its parameters after ``rounds`` rounds of ``variant`` and the (clipped) federation.

    ``variant.releases`` = K: each round makes K releases, the noise calibrated for ``rounds * K`` of them
    after the moments release (:func:`fl_core.demo_dp.dp_setup` with ``rounds * K`` rounds); the training
    noise then has another variance, so only the moments release is paired with the recipe's."""
    steps = rounds * variant.releases
    _, model, federation, aggregator = scaled_setup(
        seed, epsilon, replicate, steps, variant.features, variant.scaling, variant.moments_share
    )
    assert isinstance(model, LogisticRegression)
    federation = _clipped(_clamped(federation, variant.feature_clamp), variant.feature_clip)
    clip = aggregator.config.l2_clip
    denominator = public_denominator([c.num_samples for c in federation.clients], aggregator.config)
    per_step = noise_std(aggregator, federation)
    assert per_step is not None
    start = None if variant.warm_start is None else lda_start(federation, variant.warm_start)
    kept = (model.num_classes - 1) / model.num_classes if variant.antisymmetric else 1.0  # noise variance kept
    params, state = start or model.init(np.random.default_rng(0)), _State(kept * (per_step * clip) ** 2)
    average: FloatArray | None = None  # EMA of the iterates after each step (post-processing)
    inverse = (
        None if variant.exact_newton_ridge is None else _quadratic_bound_inverse(federation, variant.exact_newton_ridge)
    )
    for step in range(1, steps + 1):
        contributions = [contribution(model, params, c, clip, variant) for c in federation.clients]
        if noise_free:
            total = np.sum(contributions, axis=0)
        else:
            updates = [
                ClientUpdate(c.client_id, v, c.num_samples)
                for c, v in zip(federation.clients, contributions, strict=True)
            ]
            result = aggregator.aggregate(updates, {}, rng=np.random.default_rng([seed, _AGGREGATE, step]))
            assert result.mean is not None, result.skipped_reason
            total = np.asarray(result.mean)
        gradient = total / denominator * (variant.first_step if step == 1 else 1.0)
        if variant.antisymmetric:
            gradient = antisymmetric_part(gradient, model.num_classes)
        if inverse is not None:
            gradient = _preconditioned(gradient, inverse)
        moved = server_step(variant, flatten(params), gradient, state)
        if variant.ema is not None:
            average = moved if average is None else variant.ema * average + (1.0 - variant.ema) * moved
        params = unflatten(moved, params)
    if average is not None:
        params = unflatten(average, params)
    return model, params, federation


CLOSED_FORMS = ("ridge", "lda", "gaussian-nb")


def closed_forms(seeds: Sequence[int]) -> dict[str, list[float]]:
    """Held-out accuracy of closed-form linear classifiers fitted, without privacy, on the pooled
    training data standardised exactly: what a start (or a one-shot model) computed from released
    class-wise sums and second moments could reach at best (an upper reference)."""
    linear_model = importlib.import_module("sklearn.linear_model")
    discriminant = importlib.import_module("sklearn.discriminant_analysis")
    naive_bayes = importlib.import_module("sklearn.naive_bayes")
    scores: dict[str, list[float]] = {name: [] for name in CLOSED_FORMS}
    for seed in seeds:
        _, raw = demo_run(seed, 1.0, 1)
        features, labels = raw.pooled()
        scaler = Standardiser.fit(features)
        fits = (linear_model.RidgeClassifier(), discriminant.LinearDiscriminantAnalysis(), naive_bayes.GaussianNB())
        for name, fitted in zip(CLOSED_FORMS, fits, strict=True):
            fitted.fit(scaler.apply(features), labels)
            scores[name].append(float(fitted.score(scaler.apply(raw.test_features), raw.test_labels)))
    return scores


def main(argv: Sequence[str] | None = None) -> None:
    parser = probe_parser(__doc__.splitlines()[0])
    parser.add_argument("--noise-free", action="store_true", help="exact training sums (a diagnostic)")
    parser.add_argument("--closed-form", action="store_true", help="instead: non-private closed-form classifiers")
    args = parser.parse_args(argv)
    if args.closed_form:
        for name, accuracies in closed_forms(args.seeds).items():
            print(f"{name}: {100 * statistics.fmean(accuracies):6.2f}% (min {100 * min(accuracies):.2f}%)")
        return
    chosen = [v for v in VARIANTS if args.variants is None or v.name in ("recipe", *args.variants)]
    unknown = set(args.variants or ()) - {v.name for v in VARIANTS}
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {[v.name for v in VARIANTS]}")
    seeds = len(args.seeds)
    for epsilon in args.epsilon:
        scores = {
            v.name: np.array(
                [
                    run(seed, epsilon, replicate, v, args.rounds, args.noise_free)
                    for seed in args.seeds
                    for replicate in range(args.replicates)
                ]
            )
            for v in chosen
        }
        mode = "noise-free training, " if args.noise_free else ""
        print(f"epsilon {epsilon:g} ({mode}release at this epsilon): accuracy, difference to recipe "
              f"(pp, +- s.e. over {seeds} seeds)")  # fmt: skip
        for name, score in scores.items():
            print(f"  {name:24s} {paired(score, scores['recipe'], seeds)}", flush=True)


if __name__ == "__main__":  # a library error or Ctrl-C: one line, exit code 2 or 130
    raise SystemExit(run_tool("dp_optimizer_probe", main))
