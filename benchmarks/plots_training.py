"""Plots of the training suites: what secure aggregation does to a federated run.

``fedavg`` (each aggregation of the FedAvg demo), ``dp`` (accuracy against the
privacy budget) and ``compression`` (bytes and accuracy of compressed updates).
"""

from __future__ import annotations

from pathlib import Path

from .plotkit import label_bars, new_figure, save
from .report import SuiteReport

__all__ = ["plot_compression", "plot_dp", "plot_fedavg"]


# --- fedavg ----------------------------------------------------------------------------------


def plot_fedavg(report: SuiteReport, out: Path) -> list[str]:
    """fedavg_rounds.png: each aggregation of the FedAvg demo."""
    datasets = list(dict.fromkeys(r["params"]["dataset"] for r in report.results))
    aggregations = list(dict.fromkeys(r["params"]["aggregation"] for r in report.results))
    figure, (time_ax, bytes_ax) = new_figure()
    width = 0.8 / max(1, len(aggregations))
    for i, aggregation in enumerate(aggregations):
        rows = {r["params"]["dataset"]: r for r in report.results if r["params"]["aggregation"] == aggregation}
        xs = [j + i * width for j in range(len(datasets))]
        seconds = [rows[d]["metrics"]["round_s"] if d in rows else 0 for d in datasets]
        sent = [(rows[d]["metrics"]["bytes_per_hospital"] or 0) if d in rows else 0 for d in datasets]
        label_bars(time_ax, time_ax.bar(xs, seconds, width, label=aggregation), "s")
        label_bars(bytes_ax, bytes_ax.bar(xs, sent, width, label=aggregation), "bytes")
    for ax, ylabel, scale in (
        (time_ax, "time per round: local training + aggregation (s)", "log"),
        (bytes_ax, "bytes sent per hospital per round", "log"),
    ):
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(datasets))])
        ax.set_xticklabels([f"{d}\n(d = {_dim(report, d):,} parameters)" for d in datasets])
        ax.set(yscale=scale, ylabel=ylabel)
        ax.margins(y=0.15)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    hospitals = report.results[0]["params"]["hospitals"]
    return [save(figure, out, "fedavg_rounds.png", f"FedAvg demo: {hospitals} hospitals, each aggregation")]


def _dim(report: SuiteReport, dataset: str) -> int:
    return int(next(r["params"]["dim"] for r in report.results if r["params"]["dataset"] == dataset))


# --- dp ---------------------------------------------------------------------------------------


def plot_dp(report: SuiteReport, out: Path) -> list[str]:
    """dp_accuracy.png: held-out accuracy against epsilon, with the no-DP baseline."""
    rows = [r for r in report.results if "accuracy_mean" in r["metrics"]]
    datasets = list(dict.fromkeys(r["params"]["dataset"] for r in rows))
    if not datasets:
        return []
    figure, ax = new_figure(1)
    for index, dataset in enumerate(datasets):
        color = f"C{index}"
        private = sorted(
            (r for r in rows if r["params"]["dataset"] == dataset and r["params"]["epsilon"] is not None),
            key=lambda r: r["params"]["epsilon"],
        )
        if private:
            ax.errorbar(
                [r["params"]["epsilon"] for r in private],
                [100 * r["metrics"]["accuracy_mean"] for r in private],
                yerr=[100 * r["metrics"]["accuracy_std"] for r in private],
                marker="o", capsize=3, color=color, label=f"{dataset}, distributed DP (mean +- std)",
            )  # fmt: skip
        for r in rows:
            if r["params"]["dataset"] == dataset and r["params"]["epsilon"] is None:
                ax.axhline(100 * r["metrics"]["accuracy_mean"], color=color, linestyle="--",
                           label=f"{dataset}, no DP")  # fmt: skip
    first = rows[0]["params"]
    ax.set(xscale="log", xlabel="epsilon per patient over the run (delta = 1e-5)", ylabel="held-out accuracy (%)")
    budgets = sorted({r["params"]["epsilon"] for r in rows if r["params"]["epsilon"] is not None})
    ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
    ax.minorticks_off()
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    title = (
        f"Accuracy against epsilon: {first['hospitals']} hospitals, {first['rounds']} rounds, "
        f"{first['seeds']} seeds, noise sized for h = n - 1"
    )
    return [save(figure, out, "dp_accuracy.png", title)]


# --- compression -----------------------------------------------------------------------------


def plot_compression(report: SuiteReport, out: Path) -> list[str]:
    """compression_bytes_accuracy.png: bytes and accuracy of compressed updates."""
    rows = [row for row in report.results if "dataset" in row["params"]]  # the rotation row is in the table
    datasets = list(dict.fromkeys(row["params"]["dataset"] for row in rows))
    figure, (accuracy, sizes) = new_figure(2)
    markers = "osD^v<>"
    for index, dataset in enumerate(datasets):
        mine = [row for row in rows if row["params"]["dataset"] == dataset]
        kinds = sorted({(row["params"]["bits"], bool(row["params"].get("rotate"))) for row in mine}, reverse=True)
        for bits, rotated in kinds:
            series = sorted(
                (
                    row
                    for row in mine
                    if (row["params"]["bits"], bool(row["params"].get("rotate"))) == (bits, rotated)
                    and row["metrics"]["gap_pp"] is not None
                ),
                key=lambda row: row["metrics"]["protected_bytes_per_parameter"],
            )
            if not series:
                continue
            xs = [row["metrics"]["protected_bytes_per_parameter"] for row in series]
            ys = [row["metrics"]["gap_pp"] for row in series]
            spread = [100 * row["metrics"]["accuracy_std"] for row in series]
            accuracy.errorbar(
                xs, ys, yerr=spread, marker=markers[index % len(markers)], capsize=3,
                label=f"{dataset}, {bits}-bit quantization" + (", rotated, smallest ring (budget)" if rotated else ""),
            )  # fmt: skip
        sent = sorted(mine, key=lambda row: row["params"]["fraction"])
        sizes.plot(
            [100 * row["params"]["fraction"] for row in sent],
            [row["metrics"]["total_bytes_per_parameter"] for row in sent],
            markers[index % len(markers)] + "-", color=f"C{index}",
            label=f"{dataset}: total, protocol messages included",
        )  # fmt: skip
        sizes.plot(
            [100 * row["params"]["fraction"] for row in sent],
            [row["metrics"]["protected_bytes_per_parameter"] for row in sent],
            markers[index % len(markers)] + "--", color=f"C{index}",
            label=f"{dataset}: protected update (masked vector)",
        )  # fmt: skip
    accuracy.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    accuracy.axhline(-0.5, color="grey", linestyle=":", linewidth=1, label="target: <= 1 B/param, >= -0.5 pp")
    accuracy.set(
        xlabel="protected update, bytes per parameter per hospital per round",
        ylabel="accuracy - uncompressed secure run (pp, mean; bars: sd)",
    )
    accuracy.grid(True, alpha=0.3)
    accuracy.legend(fontsize=7)
    sizes.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    sizes.set(
        yscale="log", xlabel="coordinates sent per round (%)", ylabel="bytes per parameter per hospital per round"
    )
    sizes.grid(True, which="both", alpha=0.3)
    sizes.legend(fontsize=7)
    title = "Compression in the secure sum (bits, ring, rotation, partial updates): bytes and accuracy"
    return [save(figure, out, "compression_bytes_accuracy.png", title)]
