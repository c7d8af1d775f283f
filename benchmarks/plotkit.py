"""The figure kit the benchmark plots share (matplotlib, the ``bench`` extra).

Figure size and resolution, the graph names and colours, a figure with one or
two panels, bar labels with units, saving a titled figure, and :func:`sweep`,
which finds a one-parameter sweep in a suite's rows, so custom grids plot too.

Every plot a suite writes has a name declared in :data:`PLOT_NAMES` (:func:`save` refuses
another) and carries :data:`PLOT_SOFTWARE` as its PNG ``Software`` text: ``secagg bench --out
DIR`` replaces a file at one of those names only if it carries that mark or the suite's report
beside it lists it (:mod:`secagg._cli_bench_out`), never a picture of the user's.
"""

from __future__ import annotations

import importlib
import io
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from secagg._cli_bench_out import PLOT_SOFTWARE
from secagg._outputs import write_output

from .common import format_value
from .report import Row

__all__ = [
    "DPI",
    "GRAPH_COLOURS",
    "GRAPH_LABELS",
    "PLOT_NAMES",
    "PLOT_SOFTWARE",
    "WIDE",
    "label_bars",
    "new_figure",
    "pyplot",
    "save",
    "sweep",
    "values",
]

DPI = 100
WIDE = (10.0, 4.2)
GRAPH_LABELS = {"complete": "SecAgg (complete graph)", "harary": "SecAgg+ (Harary graph)"}
GRAPH_COLOURS = {"complete": "tab:red", "harary": "tab:blue"}
PLOT_NAMES: dict[str, tuple[str, ...]] = {
    "masking": ("masking_time_vs_dim.png", "masking_time_vs_dropout.png"),
    "scaling": ("scaling_loglog.png", "scaling_server_bytes.png"),
    "paillier": ("paillier_time_vs_dim.png", "paillier_time_vs_key_bits.png", "paillier_time_vs_clients.png"),
    "fedavg": ("fedavg_rounds.png",),
    "peers": ("peers_comparison.png",),
    "dropouts": ("dropouts_completion.png",),
    "dp": ("dp_accuracy.png",),
    "compression": ("compression_bytes_accuracy.png",),
}
"""Every file name a suite's plots may have in ``--out DIR``: what a run may replace there."""


def pyplot() -> Any:
    """matplotlib.pyplot, imported on first use (matplotlib is optional)."""
    return importlib.import_module("matplotlib.pyplot")


def new_figure(columns: int = 2, ratios: Sequence[float] | None = None) -> tuple[Any, Any]:
    """A figure of ``columns`` panels side by side (``ratios``: their relative widths)."""
    figure, axes = pyplot().subplots(
        1, columns, figsize=WIDE if columns > 1 else (8.6, 4.2), dpi=DPI, gridspec_kw={"width_ratios": ratios}
    )
    return figure, axes


def label_bars(ax: Any, bars: Any, unit: str) -> None:
    """Write each bar's height, with its unit, above it."""
    ax.bar_label(bars, labels=[format_value(bar.get_height(), unit) for bar in bars], fontsize=7, padding=2)


def save(figure: Any, out: Path, name: str, title: str) -> str:
    """Title, lay out and write ``figure`` as ``out/name``, then close it; returns ``name``.
    ValueError if ``name`` is not in :data:`PLOT_NAMES` (``--out``'s check would not know it)."""
    if not any(name in names for names in PLOT_NAMES.values()):
        raise ValueError(f"plot name {name!r} is not declared in PLOT_NAMES")
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(  # bbox "tight" keeps legends placed outside the axes
        image, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": PLOT_SOFTWARE}
    )
    pyplot().close(figure)
    write_output(out / name, "benchmark plot", image.getvalue())  # atomically, as the reports
    return name


def sweep(
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


def values(rows: Sequence[Row], source: str, key: str) -> list[Any]:
    """``row[source][key]`` for each row (``source``: ``"params"`` or ``"metrics"``)."""
    return [row[source][key] for row in rows]
