"""What the DP probes read off their runs: averaged iterates, and paired differences.

:func:`averaged_models` gives the last iterate and its averages (tail means, exponential
moving averages: post-processing of released sums, no privacy cost). :func:`paired` compares
a variant with its baseline: every probe runs each variant on the same seeds and, per seed,
the same noise streams as its baseline (common random numbers), so a difference is read per
seed (the mean over the seed's replicates of variant - baseline), then its mean and standard
error over seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["AVERAGES", "averaged_models", "paired"]

Runs = Sequence[float] | npt.NDArray[np.float64]
AVERAGES = ("last", "tail3", "tail5", "tail10", "ema0.5", "ema0.7", "ema0.8", "ema0.9")


def paired(score: Runs, base: Runs, seeds: int) -> str:
    """``score``'s mean accuracy and its paired difference to ``base`` in points, +- the standard
    error over ``seeds`` (both hold seed-major runs: ``seeds`` blocks of equal size)."""
    runs, reference = np.asarray(score, dtype=np.float64), np.asarray(base, dtype=np.float64)
    diffs = (runs - reference).reshape(seeds, -1).mean(axis=1) * 100
    error = statistics.stdev(diffs) / math.sqrt(seeds) if seeds > 1 else float("nan")
    return f"{100 * runs.mean():6.2f}% {diffs.mean():+5.2f} +- {error:4.2f}"


def averaged_models(iterates: Sequence[npt.NDArray[np.float64]]) -> dict[str, npt.NDArray[np.float64]]:
    """The last iterate, tail means and EMAs of the iterates after each step (:data:`AVERAGES`)."""
    steps = list(iterates[1:])
    out = {"last": steps[-1]}
    for count in (3, 5, 10):
        out[f"tail{count}"] = np.mean(steps[-count:], axis=0)
    for beta in (0.5, 0.7, 0.8, 0.9):
        ema = steps[0]
        for vector in steps[1:]:
            ema = beta * ema + (1.0 - beta) * vector
        out[f"ema{beta}"] = ema
    return out
