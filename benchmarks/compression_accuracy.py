"""The accuracy and bytes sweep of suite ``compression`` (:mod:`secagg_bench.compression` runs it).

Issue 16's targets, on the hospital demo (:func:`fl_core.demo.run_demo`: 5 hospitals,
Dirichlet(0.5) label skew, the demo's local training), for each data set and each
setting, over several seeds. A setting is fixed quantization bits in the word ring,
uncompressed or with a fixed share of coordinates (the shared-seed partial updates of
:mod:`fl_core.compression`), or a byte budget, which picks the bits, the ring, the
rotation and the share itself (:mod:`fl_core.budget`):

- **protected update**: bytes of one hospital's masked vector per round (the sample
  count included), divided by the model's parameter count d;
- **total**: bytes a hospital sends per round with every protocol message (keys,
  shares, unmasking), mean over rounds and seeds, also per parameter;
- **accuracy**: final held-out accuracy, mean and standard deviation over the seeds, and
  the gap to the uncompressed secure run (same data set and seeds; the default 16 bits,
  or the row's own bits for fixed settings at other bits) in percentage points;
- **exact**: for every seed the same run through ``plain-quantized`` (the same
  compressed encodings summed in the clear) ends in a bit-identical model, and
  includes the same hospitals every round.

Bits per coordinate on the wire are the ring's, bit-packed: 32 in the word ring of the
fixed settings, b of the smallest ring Z_(2^b) a budget picks.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fl_core.aggregators import DEFAULT_BITS, WeightedQuantizer
from fl_core.data import make_federation
from fl_core.demo import DemoConfig, DemoReport, _model, run_demo
from fl_core.demo_compression import budget_choice
from fl_core.demo_config import TEST_FRACTION
from secagg.errors import ConfigurationError

from .report import Column, Row, Target

__all__ = [
    "BUDGET", "COLUMNS", "MAX_GAP_PP", "METRIC_NOTES", "accuracy_row", "budget_problem", "relate", "settings", "targets"
]

BUDGET = 1.0
"""Issue 16: the protected update takes at most this many bytes per parameter per hospital per round..."""
MAX_GAP_PP = 0.5
"""...at most this many percentage points below the uncompressed secure run (mean over the seeds)."""

COLUMNS = (
    Column("dataset", "params", "dataset"),
    Column("d", "params", "dim", "int"),
    Column("bits", "params", "bits", "int"),
    Column("ring", "params", "ring_bits", "int"),
    Column("rotated", "params", "rotate"),
    Column("setting", "params", "setting"),
    Column("sent", "params", "fraction", "pct"),
    Column("protected B/param", "metrics", "protected_bytes_per_parameter", "f3"),
    Column("total/hospital/round", "metrics", "total_bytes_per_hospital", "bytes"),
    Column("total B/param", "metrics", "total_bytes_per_parameter", "f3"),
    Column("accuracy", "metrics", "accuracy_mean", "acc"),
    Column("sd", "metrics", "accuracy_std", "acc"),
    Column("gap pp", "metrics", "gap_pp", "f3"),
    Column("exact", "metrics", "exact"),
)

METRIC_NOTES = {
    "protected_bytes": "bytes of one hospital's masked vector per round (coordinates sent + the sample count)",
    "protected_bytes_per_parameter": "protected_bytes / d",
    "total_bytes_per_hospital": "bytes a hospital sends per round, every protocol message, mean over rounds and seeds",
    "total_bytes_per_parameter": "total_bytes_per_hospital / d",
    "accuracy_mean": "final held-out accuracy, mean over the seeds",
    "accuracy_std": "final held-out accuracy, population standard deviation over the seeds",
    "accuracy_min": "lowest final accuracy over the seeds",
    "accuracy_max": "highest final accuracy over the seeds",
    "gap_pp": "100 x (accuracy_mean - the uncompressed secure run's accuracy_mean), same data set and seeds, "
    "16 bits (a fixed setting at other bits: its own bits)",
    "exact": "every seed: the secure run's final model bit-identical to the in-the-clear sum of the same encodings",
    "seconds_per_run": "mean wall seconds of one secure run (training, aggregation, evaluation)",
}


def settings(options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every setting of the grid: for each bits, uncompressed and each sparsity; then each budget
    (which picks its own bits: ``bits`` None)."""
    grid: list[dict[str, Any]] = []
    for bits in options["bits"]:
        grid.append({"bits": bits, "setting": "uncompressed", "sparsity": None, "bytes_per_parameter": None})
        for fraction in options["sparsity"]:
            grid.append({"bits": bits, "setting": f"sparsity {fraction:g}", "sparsity": fraction,
                         "bytes_per_parameter": None})  # fmt: skip
    for budget in options["bytes_per_parameter"]:
        grid.append({"bits": None, "setting": f"budget {budget:g} B/param", "sparsity": None,
                     "bytes_per_parameter": budget})  # fmt: skip
    return grid


def _demo(dataset: str, aggregation: str, setting: Mapping[str, Any], seed: int, rounds: int) -> DemoReport:
    config = DemoConfig(
        aggregation=aggregation, dataset=dataset, seed=seed, rounds=rounds, compare=False,
        bits=setting["bits"] or DEFAULT_BITS, sparsity=setting["sparsity"],
        bytes_per_parameter=setting["bytes_per_parameter"],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return run_demo(config)


def budget_problem(dataset: str, aggregation: str, budget: float) -> str | None:
    """Why the demo refuses ``--bytes-per-parameter budget`` on ``dataset`` through ``aggregation``
    (its own check, :func:`fl_core.demo_compression.budget_choice`, on the model it trains), or None."""
    config = DemoConfig(aggregation=aggregation, dataset=dataset, compare=False, bytes_per_parameter=budget)
    raw = make_federation(dataset, config.hospitals, test_fraction=TEST_FRACTION, rng=np.random.default_rng(0))
    dimension = sum(int(p.size) for p in _model(config, raw).init(np.random.default_rng(0)))
    try:
        budget_choice(config, dimension, "--bytes-per-parameter")
    except ConfigurationError as exc:
        return str(exc)
    return None


def _same(secure: DemoReport, clear: DemoReport) -> bool:
    """Bit-identical final models and the same hospitals included in every round."""
    models = all(np.array_equal(a, b) for a, b in zip(secure.result.params, clear.result.params, strict=True))
    rounds = [r.included for r in secure.result.rounds] == [r.included for r in clear.result.rounds]
    return models and rounds


def accuracy_row(dataset: str, aggregation: str, setting: Mapping[str, Any], seeds: int, rounds: int) -> Row:
    accuracies: list[float] = []
    totals: list[float] = []
    seconds: list[float] = []
    exact = True
    report: DemoReport | None = None
    for seed in range(seeds):
        began = time.perf_counter()
        report = _demo(dataset, aggregation, setting, seed, rounds)
        seconds.append(time.perf_counter() - began)
        accuracies.append(report.final_accuracy)
        totals.extend(r.bytes_per_client for r in report.result.rounds if r.skipped_reason is None)
        exact = exact and _same(report, _demo(dataset, "plain-quantized", setting, seed, rounds))
    assert report is not None
    dim = sum(int(p.size) for p in report.result.params)
    compression = report.compression
    choice = None if compression is None else compression["choice"]
    count = dim if compression is None else int(compression["count"])
    bits, ring_bits = (report.config.bits, report.config.ring_bits) if choice is None else (
        choice["bits"], choice["ring_bits"])  # fmt: skip
    quantizer = WeightedQuantizer.create(
        report.config.hospitals, clip=report.config.clip, bits=report.config.bits, ring_bits=report.config.ring_bits
    )
    protected = (
        report.config.ring_bits * quantizer.encoded_length(dim) // 8
        if compression is None
        else int(compression["protected_bytes"])
    )
    total = statistics.fmean(totals) if totals else None
    return {
        "params": {
            "dataset": dataset,
            "aggregation": aggregation,
            "dim": dim,
            "bits": bits,
            "ring_bits": ring_bits,
            "rotate": choice is not None and bool(choice["rotate"]),
            "block": None if choice is None else choice["block"],
            "setting": setting["setting"],
            "sparsity": setting["sparsity"],
            "bytes_per_parameter": setting["bytes_per_parameter"],
            "coordinates_sent": count,
            "fraction": count / dim,
            "seeds": seeds,
            "rounds": rounds,
        },
        "metrics": {
            "protected_bytes": protected,
            "protected_bytes_per_parameter": protected / dim,
            "total_bytes_per_hospital": total,
            "total_bytes_per_parameter": None if total is None else total / dim,
            "accuracy_mean": statistics.fmean(accuracies),
            "accuracy_std": statistics.pstdev(accuracies),
            "accuracy_min": min(accuracies),
            "accuracy_max": max(accuracies),
            "gap_pp": None,
            "exact": exact,
            "seconds_per_run": statistics.fmean(seconds),
        },
    }


def relate(row: Row, earlier: Sequence[Row]) -> None:
    """The gap to the uncompressed row of the same data set (measured before it; 0 for itself): at
    16 bits for a budget (the uncompressed secure run), at the row's own bits for a fixed setting."""
    params = row["params"]
    if params["setting"] == "uncompressed":
        row["metrics"]["gap_pp"] = 0.0
        return
    bits = DEFAULT_BITS if params.get("bytes_per_parameter") is not None else params["bits"]
    for other in earlier:
        p = other["params"]
        if (p.get("dataset"), p["bits"], p["setting"]) == (params["dataset"], bits, "uncompressed"):
            row["metrics"]["gap_pp"] = 100 * (row["metrics"]["accuracy_mean"] - other["metrics"]["accuracy_mean"])


def targets(results: Sequence[Row]) -> list[Target]:
    """Issue 16, per data set: the best setting within the budget stays within 0.5 pp; every sum exact;
    the total bytes per hospital per round reported beside it."""
    found: list[Target] = []
    for dataset in dict.fromkeys(r["params"]["dataset"] for r in results if "dataset" in r["params"]):
        rows = [r for r in results if r["params"].get("dataset") == dataset]
        within = [
            r for r in rows
            if r["metrics"]["protected_bytes_per_parameter"] <= BUDGET and r["metrics"]["gap_pp"] is not None
        ]  # fmt: skip
        best = max(within, key=lambda r: r["metrics"]["gap_pp"], default=None)
        where = {"dataset": dataset} | ({} if best is None else {"setting": best["params"]["setting"],
                                                                "bits": best["params"]["bits"]})  # fmt: skip
        found.append(
            Target(
                f"{dataset}: protected update <= {BUDGET:g} byte/parameter, accuracy gap (pp)",
                f"mean accuracy minus the uncompressed secure run's, in pp, of the best setting whose masked vector "
                f"takes <= {BUDGET:g} byte per parameter per hospital per round"
                + ("" if best is not None else " (no setting within the budget was run)"),
                None if best is None else best["metrics"]["gap_pp"],
                -MAX_GAP_PP,
                ">=",
                where,
            )
        )
        if best is not None:
            found.append(
                Target(
                    f"{dataset}: total bytes per hospital per round at that setting",
                    "every protocol message included (keys, shares, unmasking), per parameter",
                    best["metrics"]["total_bytes_per_parameter"],
                    None,
                    "report",
                    where,
                )
            )
        found.append(
            Target(
                f"{dataset}: secure sums bit-exact against the plain sum of the same compressed encodings",
                "1 if every run's model equals the in-the-clear run's bit for bit, else 0",
                float(all(r["metrics"]["exact"] for r in rows)),
                1.0,
                ">=",
                {"dataset": dataset},
            )
        )
    return found
