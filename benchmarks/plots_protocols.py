"""Plots of the protocol suites: what secure aggregation costs, ours and the peers'.

``masking`` (time against d and the dropout rate), ``scaling`` (per-client cost against n
with the fitted laws), ``dropouts`` (completion and cost under dropouts), ``paillier``
(time against d, the key size and n) and ``peers`` (the same work through Flower's
SecAgg+ and phe).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .plotkit import GRAPH_COLOURS, GRAPH_LABELS, label_bars, new_figure, save, sweep, values
from .report import Row, SuiteReport
from .scaling import affine_fit, fit_log

__all__ = ["plot_dropouts", "plot_masking", "plot_paillier", "plot_peers", "plot_scaling"]


# --- masking ---------------------------------------------------------------------------------

_MASKING_KEYS = ("clients", "dim", "requested_graph", "dropout")


def plot_masking(report: SuiteReport, out: Path) -> list[str]:
    """masking_time_vs_{dim,dropout}.png: client and server time against d and the dropout rate, with floors."""
    names = []
    fixed, by_graph = sweep(report.results, "dim", _MASKING_KEYS, "requested_graph")
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
    fixed, by_graph = sweep(report.results, "dropout", _MASKING_KEYS, "requested_graph")
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
    figure, (client, server) = new_figure()
    scale = 100.0 if axis == "dropout" else 1.0
    for graph, rows in sorted(by_graph.items()):
        xs = [x * scale for x in values(rows, "params", axis)]
        colour = GRAPH_COLOURS.get(graph, "black")
        k = "/".join(sorted({str(v) for v in values(rows, "params", "degree")}, key=int))
        client.plot(
            xs,
            values(rows, "metrics", "client_mask_s"),
            "o-",
            color=colour,
            label=f"{GRAPH_LABELS.get(graph, graph)}, k = {k}",
        )
        client.plot(
            xs,
            values(rows, "metrics", "floor_client_s"),
            "--",
            color=colour,
            alpha=0.6,
            label="floor: (k + 1) AES-CTR expansions + adds",
        )
        server.plot(xs, values(rows, "metrics", "server_unmask_s"), "o-", color=colour, label=GRAPH_LABELS.get(graph))
        server.plot(
            xs,
            values(rows, "metrics", "floor_server_s"),
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
    return save(figure, out, name, title)


# --- scaling ---------------------------------------------------------------------------------


def _series(report: SuiteReport, graph: str) -> list[Row]:
    rows = [r for r in report.results if r["params"]["requested_graph"] == graph]
    return sorted(rows, key=lambda r: r["params"]["clients"])


def plot_scaling(report: SuiteReport, out: Path) -> list[str]:
    """scaling_*.png: per-client cost against n (log-log, with the fitted laws), server time and traffic."""
    figure, (cost, degree) = new_figure()
    dim = report.results[0]["params"]["dim"]
    for graph in ("complete", "harary"):
        rows = _series(report, graph)
        if not rows:
            continue
        n = values(rows, "params", "clients")
        seconds = values(rows, "metrics", "client_total_s")
        colour = GRAPH_COLOURS[graph]
        cost.plot(n, seconds, "o-", color=colour, label=GRAPH_LABELS[graph])
        degree.plot(n, values(rows, "params", "degree"), "o-", color=colour, label=GRAPH_LABELS[graph])
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
            degrees = values(rows, "params", "degree")
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
    names = [save(figure, out, "scaling_loglog.png", f"Per-client cost vs n, d = {dim:,} (log-log)")]
    figure, (server, traffic) = new_figure()
    for graph in ("complete", "harary"):
        rows = _series(report, graph)
        if not rows:
            continue
        n, colour = values(rows, "params", "clients"), GRAPH_COLOURS[graph]
        server.plot(n, values(rows, "metrics", "server_unmask_s"), "o-", color=colour, label=GRAPH_LABELS[graph])
        traffic.plot(
            n,
            values(rows, "metrics", "bytes_per_client_upload"),
            "o-",
            color=colour,
            label=f"{GRAPH_LABELS[graph]}: sent",
        )
        traffic.plot(
            n,
            values(rows, "metrics", "bytes_per_client_download"),
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
    names.append(save(figure, out, "scaling_server_bytes.png", f"Server time and traffic vs n, d = {dim:,}"))
    return names


def _log_grid(low: float, high: float, points: int = 50) -> list[float]:
    return [low * (high / low) ** (i / (points - 1)) for i in range(points)]


# --- dropouts --------------------------------------------------------------------------------


def plot_dropouts(report: SuiteReport, out: Path) -> list[str]:
    """dropouts_completion.png: completion rate and cost under dropouts."""
    rows = report.results
    sizes = sorted({row["params"]["clients"] for row in rows})
    modes = sorted({row["params"]["mode"] for row in rows})
    figure, (rates, costs) = new_figure(2)
    width = 0.8 / max(1, len(modes))
    for index, mode in enumerate(modes):
        by_n = {row["params"]["clients"]: row["metrics"] for row in rows if row["params"]["mode"] == mode}
        xs = [i + (index - (len(modes) - 1) / 2) * width for i in range(len(sizes))]
        completed = [100 * by_n[n]["completion_rate"] if n in by_n else 0.0 for n in sizes]
        label_bars(rates, rates.bar(xs, completed, width, label=mode), "str")
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
    return [save(figure, out, "dropouts_completion.png", title)]


# --- paillier --------------------------------------------------------------------------------

_PAILLIER_KEYS = ("key_bits", "clients", "dim", "obfuscation", "workers")
_PAILLIER_LINES = (
    ("encrypt_s", "o-", "ours: pack + encrypt, per client"),
    ("floor_encrypt_s", "--", "floor: ciphertexts x powmod(r, n, n²), one core"),
    ("naive_phe_encrypt_s", "x:", "phe: one ciphertext per value"),
    ("partial_decrypt_s", "s-", "ours: partial decryption, per party"),
    ("decrypt_s", "^-", "ours: server combine + unpack"),
)


def plot_paillier(report: SuiteReport, out: Path) -> list[str]:
    """paillier_time_vs_*.png: Paillier time against d, the key size and n."""
    names = []
    for axis, label, log_x in (
        ("dim", "vector length d (16-bit values)", True),
        ("key_bits", "modulus n (bits)", False),
        ("clients", "clients n", False),
    ):
        fixed, by_series = sweep(report.results, axis, _PAILLIER_KEYS, "obfuscation")
        if not by_series:
            continue
        figure, ax = new_figure(1)
        for obfuscation, rows in sorted(by_series.items()):
            xs = values(rows, "params", axis)
            for key, style, text in _PAILLIER_LINES:
                if key in ("naive_phe_encrypt_s", "floor_encrypt_s") and len(by_series) > 1 and obfuscation != "djn":
                    continue
                ax.plot(xs, values(rows, "metrics", key), style, label=f"{text} [{obfuscation}]")
        ax.set(yscale="log", xlabel=label, ylabel="seconds")
        if log_x:
            ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        labels = {"key_bits": "key bits", "clients": "clients", "dim": "d", "workers": "processes"}
        where = ", ".join(f"{labels.get(k, k)} = {v:,}" for k, v in fixed.items() if k != axis)
        title = {"dim": "d", "key_bits": "key size", "clients": "clients"}[axis]
        names.append(save(figure, out, f"paillier_time_vs_{axis}.png", f"Paillier time vs {title}: {where}"))
    return names


# --- peers -----------------------------------------------------------------------------------


def plot_peers(report: SuiteReport, out: Path) -> list[str]:
    """peers_comparison.png: the same work through our protocols and the peers'."""
    flower = [r for r in report.results if r["params"]["peer"].startswith("Flower")]
    phe_rows = [r for r in report.results if not r["params"]["peer"].startswith("Flower")]
    figure, (left, right) = new_figure(ratios=(1.7, 1.0))
    if flower:
        dim = max(r["params"]["dim"] for r in flower)
        rows = [r for r in flower if r["params"]["dim"] == dim]
        labels = [f"{r['params']['role']}: {r['params']['component']}" for r in rows]
        ys = list(range(len(rows)))
        left.barh([y + 0.2 for y in ys], values(rows, "metrics", "ours_s"), 0.4, label="secagg (ours)")
        left.barh([y - 0.2 for y in ys], values(rows, "metrics", "peer_s"), 0.4, label=rows[0]["params"]["peer"])
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
        label_bars(right, bars, "s")
        right.margins(y=0.2)
        right.set_xticks([0, 1])
        right.set_xticklabels(["secagg packed\n(DJN)", "phe per value"])
        right.set(
            yscale="log",
            ylabel="seconds to encrypt one client's vector",
            title=f"Paillier {row['params']['key_bits']}-bit, d = {row['params']['dim']:,}",
        )
        right.grid(True, axis="y", which="both", alpha=0.3)
    return [save(figure, out, "peers_comparison.png", "Same work, same run: ours vs peers")]
