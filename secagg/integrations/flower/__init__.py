"""Secure aggregation for Flower apps (Message API, ``flwr`` 1.41).

Two lines switch a Flower app to secure aggregation::

    # ServerApp: wrap the grid the strategy drives
    result = FedAvg().start(grid=SecAggGrid(grid, SecAggOptions(protocol="secagg+")), initial_arrays=arrays)
    # ClientApp: add the mod
    app = ClientApp(mods=[secagg_mod])

- :class:`SecAggGrid` / :class:`SecAggOptions` / :class:`RoundReport`: the
  server-side workflow (:mod:`secagg.integrations.flower.server`).
- :func:`secagg_mod` / :func:`make_secagg_mod` / :class:`AuditRecord`: the
  client-side mod (:mod:`secagg.integrations.flower.client`).
- :mod:`secagg.integrations.flower.protocol`: the stages, the round setup
  message, and the arrays <-> vector mapping (no ``flwr`` needed).

Needs ``pip install 'secagg[flower]'``; importing this package without
``flwr`` raises ConfigurationError with that hint. Masking (SecAgg, SecAgg+)
in semi-honest mode is supported; see docs/integrations.md.
"""

from __future__ import annotations

from secagg.integrations._extras import require

require("flwr", "flower")

from secagg.integrations.flower.client import STATE_KEY, AuditRecord, make_secagg_mod, secagg_mod  # noqa: E402
from secagg.integrations.flower.server import RoundReport, SecAggGrid, SecAggOptions  # noqa: E402

__all__ = ["STATE_KEY", "AuditRecord", "RoundReport", "SecAggGrid", "SecAggOptions", "make_secagg_mod", "secagg_mod"]
