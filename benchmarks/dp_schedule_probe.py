"""Probe: would spending the privacy budget unevenly over the rounds help the DP recipe?

Gaussian noise of standard deviation ``sigma_t`` in round t costs zCDP ``rho_t ~ 1 / sigma_t^2``,
so any schedule with ``sum_t 1 / sigma_t^2 = T / sigma^2`` spends what T rounds at ``sigma``
spend (Lee and Kifer, KDD 2018, allocate budget over iterations this way). This probe
compares schedules ``sigma_t = sigma / sqrt(r_t)`` with ``r_t ~ t^power`` (mean 1; power 0 is
the recipe's uniform noise, > 0 spends more of the budget on late rounds) on the **tuning**
seeds (100..109), every schedule on the same noise draws.

A **float stand-in**: the sums are taken in the clear and Gaussian noise of the recipe's
per-step standard deviation (:func:`fl_core.demo_dp.noise_std`, the real plan's, after the real
noised moments release at that epsilon) is added in floats. It measures the schedule's
effect only; the library's rounds all share one noise plan.

``python -m benchmarks.dp_schedule_probe --epsilon 1 3 --powers 0 1 2 -1 --replicates 4``
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

import numpy as np

from fl_core import demo
from fl_core.demo_dp import dp_setup, noise_std
from fl_core.dp import DPAggregator
from fl_core.dp_training import dp_contribution, public_denominator
from fl_core.models import FloatArray, LogisticRegression, accuracy, flatten, unflatten
from secagg._cli_options import MAX_REPEATS, MAX_ROUNDS, MAX_SEED, _integer, _real
from secagg._outputs import run_tool

from .dp_probe_readout import paired
from .dp_recipe_probe import _seeded_factory, demo_run  # the recipe probe's run and seeded noise streams

__all__ = ["main", "schedule_weights", "scheduled_accuracy"]

TUNING_SEEDS = tuple(range(100, 110))
_NOISE = 0x5C4ED


def schedule_weights(power: float, rounds: int) -> FloatArray:
    """``r_t ~ t^power`` for t = 1..rounds, scaled to mean 1 (so the total zCDP is unchanged)."""
    weights: FloatArray = np.arange(1, rounds + 1, dtype=np.float64) ** power
    scaled: FloatArray = weights / weights.mean()
    return scaled


def scheduled_accuracy(seed: int, epsilon: float, replicate: int, power: float, rounds: int = 20) -> float:
    """Held-out accuracy of the recipe with noise ``sigma / sqrt(r_t)`` in round t (float stand-in)."""
    config, raw = demo_run(seed, epsilon, rounds)
    model = LogisticRegression(raw.num_features, raw.num_classes)
    dimension = sum(int(p.size) for p in model.init(np.random.default_rng(0)))
    federation, aggregator = dp_setup(
        config, raw, "plain-quantized", _seeded_factory(f"{seed}|{epsilon}|{replicate}".encode()), dimension,
        np.random.default_rng([seed, demo._STANDARDISE]),
    )  # fmt: skip
    per_step = noise_std(aggregator, federation)
    assert isinstance(aggregator, DPAggregator) and per_step is not None
    fedavg, dp = config.fedavg(), aggregator.config
    weights = schedule_weights(power, rounds)
    denominator = public_denominator([c.num_samples for c in federation.clients], dp)
    noise = np.random.default_rng([seed, replicate, _NOISE])
    params, velocity = model.init(np.random.default_rng(0)), None
    for step in range(1, rounds + 1):
        total = sum(
            dp_contribution(model, params, c, dp, aggregator.quantizer.noise_source)  # a sample's secret source
            for c in federation.clients
        )
        gradient = np.asarray(total) / denominator
        gradient = gradient + noise.normal(size=gradient.shape) * per_step * dp.l2_clip / math.sqrt(weights[step - 1])
        velocity = gradient if velocity is None else gradient + fedavg.server_momentum * velocity
        params = unflatten(flatten(params) - fedavg.learning_rate * velocity, params)
    return accuracy(model, params, federation.test_features, federation.test_labels)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilon", type=_real(0, 1000, include_low=False), nargs="+", default=[1.0, 3.0])
    parser.add_argument("--powers", type=_real(-100, 100), nargs="+", default=[0.0, 1.0, 2.0, -1.0])
    parser.add_argument("--seeds", type=_integer(0, MAX_SEED), nargs="+", default=list(TUNING_SEEDS))
    parser.add_argument("--replicates", type=_integer(1, MAX_REPEATS), default=4)
    parser.add_argument("--rounds", type=_integer(1, MAX_ROUNDS), default=20)
    args = parser.parse_args(argv)
    for epsilon in args.epsilon:
        scores = {
            power: np.array([
                scheduled_accuracy(seed, epsilon, replicate, power, args.rounds)
                for seed in args.seeds
                for replicate in range(args.replicates)
            ])
            for power in args.powers
        }
        base = scores[args.powers[0]]
        print(f"epsilon {epsilon:g}: accuracy, difference to power {args.powers[0]:g} (pp, +- s.e. over seeds)")
        for power, score in scores.items():
            print(f"  power {power:+5.1f}  {paired(score, base, len(args.seeds))}")


if __name__ == "__main__":  # a library error or Ctrl-C: one line, exit code 2 or 130
    raise SystemExit(run_tool("dp_schedule_probe", main))
