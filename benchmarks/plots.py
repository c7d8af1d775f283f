"""PNG plots of a suite's results (matplotlib, the ``bench`` extra).

Every axis is labelled with its unit; time axes are logarithmic wherever the
values span decades. A sweep is found in the rows themselves (the rows that
differ only in one parameter), so custom grids plot too.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .common import format_value
from .report import Row, SuiteReport
from .scaling import affine_fit, fit_log

__all__ = ["available", "plot"]

DPI = 100
WIDE = (10.0, 4.2)
GRAPH_LABELS = {"complete": "SecAgg (complete graph)", "harary": "SecAgg+ (Harary graph)"}
GRAPH_COLOURS = {"complete": "tab:red", "harary": "tab:blue"}


def available() -> bool:
    """True if matplotlib is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def plot(report: SuiteReport, out: Path) -> list[str]:
    """Write the suite's PNGs into ``out``; returns their file names."""
    importlib.import_module("matplotlib").use("Agg")  # files only, no display
    makers: dict[str, Callable[[SuiteReport, Path], list[str]]] = {
        "masking": _masking,
        "scaling": _scaling,
        "paillier": _paillier,
        "fedavg": _fedavg,
        "peers": _peers,
        "dropouts": _dropouts,
        "dp": _dp,
        "compression": _compression,
    }
    return makers[report.suite](report, out)


def _pyplot() -> Any:
    return importlib.import_module("matplotlib.pyplot")


def _figure(columns: int = 2, ratios: Sequence[float] | None = None) -> tuple[Any, Any]:
    figure, axes = _pyplot().subplots(
        1, columns, figsize=WIDE if columns > 1 else (8.6, 4.2), dpi=DPI, gridspec_kw={"width_ratios": ratios}
    )
    return figure, axes


def _label_bars(ax: Any, bars: Any, unit: str) -> None:
    ax.bar_label(bars, labels=[format_value(bar.get_height(), unit) for bar in bars], fontsize=7, padding=2)


def _save(figure: Any, out: Path, name: str, title: str) -> str:
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(out / name, dpi=DPI, bbox_inches="tight")  # keeps legends placed outside the axes
    _pyplot().close(figure)
    return name


def _sweep(
    rows: Sequence[Row], axis: str, keys: Sequence[str], series: str
) -> tuple[dict[str, Any], dict[Any, list[Row]]]:
    """The largest group of rows that share every param in ``keys`` but ``axis`` and
    ``series``: ``(fixed params, {series value: rows sorted by axis})``."""
    groups: dict[tuple[Any, ...], dict[Any, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        p = row["params"]
        fixed = tuple(p.get(k) for k in keys if k not in (axis, series))
        groups[fixed][p.get(series)].append(row)
    best: tuple[tuple[Any, ...], dict[Any, list[Row]]] | None = None
    best_width = 1
    for fixed, by_series in groups.items():
        width = max(len({r["params"][axis] for r in rs}) for rs in by_series.values())
        if width > best_width:
            best, best_width = (fixed, by_series), width
    if best is None:
        return {}, {}
    names = [k for k in keys if k not in (axis, series)]
    return dict(zip(names, best[0], strict=True)), {
        s: sorted(rs, key=lambda r: r["params"][axis]) for s, rs in best[1].items() if len(rs) >= 2
    }


def _values(rows: Sequence[Row], source: str, key: str) -> list[Any]:
    return [row[source][key] for row in rows]


# --- masking ---------------------------------------------------------------------------------

_MASKING_KEYS = ("clients", "dim", "requested_graph", "dropout")


def _masking(report: SuiteReport, out: Path) -> list[str]:
    names = []
    fixed, by_graph = _sweep(report.results, "dim", _MASKING_KEYS, "requested_graph")
    if by_graph:
        names.append(
            _masking_panel(
                out,
                "masking_time_vs_dim.png",
                by_graph,
                "dim",
                "vector length d (32-bit words)",
                f"Masking time vs d: n = {fixed['clients']}, {fixed['dropout']:.0%} dropout",
                log_x=True,
            )
        )
    fixed, by_graph = _sweep(report.results, "dropout", _MASKING_KEYS, "requested_graph")
    if by_graph:
        names.append(
            _masking_panel(
                out,
                "masking_time_vs_dropout.png",
                by_graph,
                "dropout",
                "dropout rate (%)",
                f"Masking time vs dropout: n = {fixed['clients']}, d = {fixed['dim']:,}",
                log_x=False,
            )
        )
    return names


def _masking_panel(
    out: Path, name: str, by_graph: dict[Any, list[Row]], axis: str, xlabel: str, title: str, *, log_x: bool
) -> str:
    figure, (client, server) = _figure()
    scale = 100.0 if axis == "dropout" else 1.0
    for graph, rows in sorted(by_graph.items()):
        xs = [x * scale for x in _values(rows, "params", axis)]
        colour = GRAPH_COLOURS.get(graph, "black")
        k = "/".join(sorted({str(v) for v in _values(rows, "params", "degree")}, key=int))
        client.plot(
            xs,
            _values(rows, "metrics", "client_mask_s"),
            "o-",
            color=colour,
            label=f"{GRAPH_LABELS.get(graph, graph)}, k = {k}",
        )
        client.plot(
            xs,
            _values(rows, "metrics", "floor_client_s"),
            "--",
            color=colour,
            alpha=0.6,
            label="floor: (k + 1) AES-CTR expansions + adds",
        )
        server.plot(xs, _values(rows, "metrics", "server_unmask_s"), "o-", color=colour, label=GRAPH_LABELS.get(graph))
        server.plot(
            xs,
            _values(rows, "metrics", "floor_server_s"),
            "--",
            color=colour,
            alpha=0.6,
            label="floor: regenerated masks + n adds",
        )
    for ax, what in ((client, "client: masked-input step (s)"), (server, "server: unmasking (s)")):
        ax.set_yscale("log")
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return _save(figure, out, name, title)


# --- scaling ---------------------------------------------------------------------------------


def _series(report: SuiteReport, graph: str) -> list[Row]:
    rows = [r for r in report.results if r["params"]["requested_graph"] == graph]
    return sorted(rows, key=lambda r: r["params"]["clients"])


def _scaling(report: SuiteReport, out: Path) -> list[str]:
    figure, (cost, degree) = _figure()
    dim = report.results[0]["params"]["dim"]
    for graph in ("complete", "harary"):
        rows = _series(report, graph)
        if not rows:
            continue
        n = _values(rows, "params", "clients")
        seconds = _values(rows, "metrics", "client_total_s")
        colour = GRAPH_COLOURS[graph]
        cost.plot(n, seconds, "o-", color=colour, label=GRAPH_LABELS[graph])
        degree.plot(n, _values(rows, "params", "degree"), "o-", color=colour, label=GRAPH_LABELS[graph])
        if graph == "harary" and len(n) >= 2:
            a, r2 = fit_log(n, seconds)
            grid = _log_grid(min(n), max(n))
            cost.plot(
                grid,
                [a * math.log2(v) for v in grid],
                ":",
                color="black",
                label=f"reference a log2 n (least squares, R² = {r2:.2f})",
            )
            degrees = _values(rows, "params", "degree")
            affine = affine_fit([float(k) for k in degrees], seconds)
            if affine is not None:
                fixed, per_neighbour = affine
                cost.plot(
                    n,
                    [fixed + per_neighbour * k for k in degrees],
                    "--",
                    color="green",
                    label=f"fit {fixed * 1e3:.2f} ms + {per_neighbour * 1e6:.0f} µs per neighbour",
                )
        if graph == "complete" and len(n) >= 2:
            grid = _log_grid(min(n), max(n))
            cost.plot(grid, [seconds[0] * v / n[0] for v in grid], ":", color="grey", label="reference ∝ n")
    cost.set(xscale="log", yscale="log", xlabel="clients n", ylabel="per-client compute per aggregation (s)")
    degree.set(xscale="log", yscale="log", xlabel="clients n", ylabel="neighbours per client k")
    for ax in (cost, degree):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    names = [_save(figure, out, "scaling_loglog.png", f"Per-client cost vs n, d = {dim:,} (log-log)")]
    figure, (server, traffic) = _figure()
    for graph in ("complete", "harary"):
        rows = _series(report, graph)
        if not rows:
            continue
        n, colour = _values(rows, "params", "clients"), GRAPH_COLOURS[graph]
        server.plot(n, _values(rows, "metrics", "server_unmask_s"), "o-", color=colour, label=GRAPH_LABELS[graph])
        traffic.plot(
            n,
            _values(rows, "metrics", "bytes_per_client_upload"),
            "o-",
            color=colour,
            label=f"{GRAPH_LABELS[graph]}: sent",
        )
        traffic.plot(
            n,
            _values(rows, "metrics", "bytes_per_client_download"),
            "s--",
            color=colour,
            label=f"{GRAPH_LABELS[graph]}: received",
        )
    traffic.axhline(4 * dim, color="black", linestyle=":", label="float32 update in the clear")
    server.set(xscale="log", yscale="log", xlabel="clients n", ylabel="server unmasking (s)")
    traffic.set(xscale="log", yscale="log", xlabel="clients n", ylabel="bytes per client per aggregation")
    for ax in (server, traffic):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    names.append(_save(figure, out, "scaling_server_bytes.png", f"Server time and traffic vs n, d = {dim:,}"))
    return names


def _log_grid(low: float, high: float, points: int = 50) -> list[float]:
    return [low * (high / low) ** (i / (points - 1)) for i in range(points)]


# --- paillier --------------------------------------------------------------------------------

_PAILLIER_KEYS = ("key_bits", "clients", "dim", "obfuscation", "workers")
_PAILLIER_LINES = (
    ("encrypt_s", "o-", "ours: pack + encrypt, per client"),
    ("floor_encrypt_s", "--", "floor: ciphertexts x powmod(r, n, n²), one core"),
    ("naive_phe_encrypt_s", "x:", "phe: one ciphertext per value"),
    ("partial_decrypt_s", "s-", "ours: partial decryption, per party"),
    ("decrypt_s", "^-", "ours: server combine + unpack"),
)


def _paillier(report: SuiteReport, out: Path) -> list[str]:
    names = []
    for axis, label, log_x in (
        ("dim", "vector length d (16-bit values)", True),
        ("key_bits", "modulus n (bits)", False),
        ("clients", "clients n", False),
    ):
        fixed, by_series = _sweep(report.results, axis, _PAILLIER_KEYS, "obfuscation")
        if not by_series:
            continue
        figure, ax = _figure(1)
        for obfuscation, rows in sorted(by_series.items()):
            xs = _values(rows, "params", axis)
            for key, style, text in _PAILLIER_LINES:
                if key in ("naive_phe_encrypt_s", "floor_encrypt_s") and len(by_series) > 1 and obfuscation != "djn":
                    continue
                ax.plot(xs, _values(rows, "metrics", key), style, label=f"{text} [{obfuscation}]")
        ax.set(yscale="log", xlabel=label, ylabel="seconds")
        if log_x:
            ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        labels = {"key_bits": "key bits", "clients": "clients", "dim": "d", "workers": "processes"}
        where = ", ".join(f"{labels.get(k, k)} = {v:,}" for k, v in fixed.items() if k != axis)
        title = {"dim": "d", "key_bits": "key size", "clients": "clients"}[axis]
        names.append(_save(figure, out, f"paillier_time_vs_{axis}.png", f"Paillier time vs {title}: {where}"))
    return names


# --- fedavg ----------------------------------------------------------------------------------


def _fedavg(report: SuiteReport, out: Path) -> list[str]:
    datasets = list(dict.fromkeys(r["params"]["dataset"] for r in report.results))
    aggregations = list(dict.fromkeys(r["params"]["aggregation"] for r in report.results))
    figure, (time_ax, bytes_ax) = _figure()
    width = 0.8 / max(1, len(aggregations))
    for i, aggregation in enumerate(aggregations):
        rows = {r["params"]["dataset"]: r for r in report.results if r["params"]["aggregation"] == aggregation}
        xs = [j + i * width for j in range(len(datasets))]
        seconds = [rows[d]["metrics"]["round_s"] if d in rows else 0 for d in datasets]
        sent = [(rows[d]["metrics"]["bytes_per_hospital"] or 0) if d in rows else 0 for d in datasets]
        _label_bars(time_ax, time_ax.bar(xs, seconds, width, label=aggregation), "s")
        _label_bars(bytes_ax, bytes_ax.bar(xs, sent, width, label=aggregation), "bytes")
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
    return [_save(figure, out, "fedavg_rounds.png", f"FedAvg demo: {hospitals} hospitals, each aggregation")]


def _dim(report: SuiteReport, dataset: str) -> int:
    return int(next(r["params"]["dim"] for r in report.results if r["params"]["dataset"] == dataset))


# --- peers -----------------------------------------------------------------------------------


def _peers(report: SuiteReport, out: Path) -> list[str]:
    flower = [r for r in report.results if r["params"]["peer"].startswith("Flower")]
    phe_rows = [r for r in report.results if not r["params"]["peer"].startswith("Flower")]
    figure, (left, right) = _figure(ratios=(1.7, 1.0))
    if flower:
        dim = max(r["params"]["dim"] for r in flower)
        rows = [r for r in flower if r["params"]["dim"] == dim]
        labels = [f"{r['params']['role']}: {r['params']['component']}" for r in rows]
        ys = list(range(len(rows)))
        left.barh([y + 0.2 for y in ys], _values(rows, "metrics", "ours_s"), 0.4, label="secagg (ours)")
        left.barh([y - 0.2 for y in ys], _values(rows, "metrics", "peer_s"), 0.4, label=rows[0]["params"]["peer"])
        left.set_yticks(ys)
        left.set_yticklabels(labels, fontsize=7)
        left.invert_yaxis()
        left.set(
            xscale="log",
            xlabel="seconds (client rows: one client)",
            title=f"n = {rows[0]['params']['clients']}, d = {dim:,}, k = {rows[0]['params']['degree']}",
        )
        left.grid(True, axis="x", which="both", alpha=0.3)
        left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    else:
        left.text(0.5, 0.5, "Flower not installed", ha="center", va="center")
        left.set_axis_off()
    if phe_rows:
        row = phe_rows[-1]
        bars = right.bar([0, 1], [row["metrics"]["ours_s"], row["metrics"]["peer_s"]], color=["tab:blue", "tab:orange"])
        _label_bars(right, bars, "s")
        right.margins(y=0.2)
        right.set_xticks([0, 1])
        right.set_xticklabels(["secagg packed\n(DJN)", "phe per value"])
        right.set(
            yscale="log",
            ylabel="seconds to encrypt one client's vector",
            title=f"Paillier {row['params']['key_bits']}-bit, d = {row['params']['dim']:,}",
        )
        right.grid(True, axis="y", which="both", alpha=0.3)
    return [_save(figure, out, "peers_comparison.png", "Same work, same run: ours vs peers")]


# --- dropouts --------------------------------------------------------------------------------


def _dropouts(report: SuiteReport, out: Path) -> list[str]:
    rows = report.results
    sizes = sorted({row["params"]["clients"] for row in rows})
    modes = sorted({row["params"]["mode"] for row in rows})
    figure, (rates, costs) = _figure(2)
    width = 0.8 / max(1, len(modes))
    for index, mode in enumerate(modes):
        by_n = {row["params"]["clients"]: row["metrics"] for row in rows if row["params"]["mode"] == mode}
        xs = [i + (index - (len(modes) - 1) / 2) * width for i in range(len(sizes))]
        completed = [100 * by_n[n]["completion_rate"] if n in by_n else 0.0 for n in sizes]
        _label_bars(rates, rates.bar(xs, completed, width, label=mode), "str")
        costs.plot(sizes, [by_n[n]["seconds_per_session"] if n in by_n else None for n in sizes], "o-", label=mode)
    rates.axhline(99, color="grey", linestyle=":", linewidth=1, label="99% (10% per stage target)")
    rates.set(
        xticks=range(len(sizes)),
        xticklabels=[str(n) for n in sizes],
        xlabel="hospitals n",
        ylabel="sessions completed exactly (%)",
        ylim=(0, 110),
    )
    rates.legend(fontsize=7, loc="lower right")
    costs.set(xscale="log", yscale="log", xlabel="hospitals n", ylabel="seconds per simulated session")
    costs.grid(True, which="both", alpha=0.3)
    costs.legend(fontsize=7)
    title = "Default configurations under dropouts (one at any round for n <= 10; 10% of n per stage above)"
    return [_save(figure, out, "dropouts_completion.png", title)]
# --- dp ---------------------------------------------------------------------------------------


def _dp(report: SuiteReport, out: Path) -> list[str]:
    rows = [r for r in report.results if "accuracy_mean" in r["metrics"]]
    datasets = list(dict.fromkeys(r["params"]["dataset"] for r in rows))
    if not datasets:
        return []
    figure, ax = _figure(1)
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
    return [_save(figure, out, "dp_accuracy.png", title)]


# --- compression -----------------------------------------------------------------------------


def _compression(report: SuiteReport, out: Path) -> list[str]:
    rows = [row for row in report.results if "dataset" in row["params"]]  # the rotation row is in the table
    datasets = list(dict.fromkeys(row["params"]["dataset"] for row in rows))
    figure, (accuracy, sizes) = _figure(2)
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
    return [_save(figure, out, "compression_bytes_accuracy.png", title)]
