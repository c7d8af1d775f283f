"""PNG plots of a suite's results (matplotlib, the ``bench`` extra).

Every axis is labelled with its unit; time axes are logarithmic wherever the
values span decades. A sweep is found in the rows themselves (the rows that
differ only in one parameter), so custom grids plot too.

This module is the entry point: it picks a suite's plots. The plots themselves
are in :mod:`.plots_protocols` (masking, scaling, dropouts, paillier, peers) and
:mod:`.plots_training` (fedavg, dp, compression), on the shared figure kit of
:mod:`.plotkit`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

from .plots_protocols import plot_dropouts, plot_masking, plot_paillier, plot_peers, plot_scaling
from .plots_training import plot_compression, plot_dp, plot_fedavg
from .report import SuiteReport

__all__ = ["available", "plot"]


def available() -> bool:
    """True if matplotlib is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def plot(report: SuiteReport, out: Path) -> list[str]:
    """Write the suite's PNGs into ``out``; returns their file names."""
    importlib.import_module("matplotlib").use("Agg")  # files only, no display
    makers: dict[str, Callable[[SuiteReport, Path], list[str]]] = {
        "masking": plot_masking,
        "scaling": plot_scaling,
        "paillier": plot_paillier,
        "fedavg": plot_fedavg,
        "peers": plot_peers,
        "dropouts": plot_dropouts,
        "dp": plot_dp,
        "compression": plot_compression,
    }
    return makers[report.suite](report, out)
