"""Secure aggregation for Flower apps (Message API, ``flwr`` 1.41 and 1.42).

A few lines switch a Flower app to secure aggregation::

    # ServerApp: wrap the grid the strategy drives (active mode: with the federation's public key list)
    options = SecAggOptions(protocol="secagg+", trusted_keys=read_trusted_keys("federation.keys"))
    result = FedAvg().start(grid=SecAggGrid(grid, options), initial_arrays=arrays)
    # ClientApp: add the mod
    app = ClientApp(mods=[secagg_mod])

or, for packed threshold Paillier with keys from the federation's ceremony::

    options = PaillierOptions(public_key=key, trusted_keys=read_trusted_keys("federation.keys"))
    result = FedAvg().start(grid=PaillierGrid(grid, options), initial_arrays=arrays)
    app = ClientApp(mods=[paillier_mod])

- :class:`SecAggGrid` / :class:`SecAggOptions` / :class:`RoundReport`: the
  masking workflow, semi-honest or active (:mod:`secagg.integrations.flower.server`).
- :func:`secagg_mod` / :func:`make_secagg_mod` / :class:`AuditRecord`: the
  masking mod (:mod:`secagg.integrations.flower.client`).
- :func:`bound_dp`: in a train handler behind either mod, the DP configuration the round
  binds (its ``l2_clip`` is the clip to train with; :mod:`secagg.integrations.flower.bound_plan`).
- :class:`PaillierGrid` / :class:`PaillierOptions` and :func:`paillier_mod` /
  :func:`make_paillier_mod`: the Paillier pair
  (:mod:`secagg.integrations.flower.paillier_server`,
  :mod:`secagg.integrations.flower.paillier_client`).
- ``SecAggOptions(sparsity=..., rotate=True)`` (and ``PaillierOptions``): shared-seed
  partial updates with error feedback and a per-round rotation, bound in the setup
  (:mod:`secagg.integrations.flower.compression`).
- :mod:`secagg.integrations.flower.protocol` and
  :mod:`secagg.integrations.flower.keys`: the stages, the wire messages, the
  arrays <-> vector mapping and the key files; they need no ``flwr``.

Needs the ``flower`` extra (``pip install -e '.[flower]'`` from the root of a
clone): taking any of the names above without ``flwr`` raises
ConfigurationError with that hint. See docs/integrations.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from secagg.integrations._extras import require

if TYPE_CHECKING:
    from secagg.integrations.flower.bound_plan import bound_dp as bound_dp
    from secagg.integrations.flower.client import STATE_KEY as STATE_KEY
    from secagg.integrations.flower.client import AuditRecord as AuditRecord
    from secagg.integrations.flower.client import make_secagg_mod as make_secagg_mod
    from secagg.integrations.flower.client import secagg_mod as secagg_mod
    from secagg.integrations.flower.paillier_client import make_paillier_mod as make_paillier_mod
    from secagg.integrations.flower.paillier_client import paillier_mod as paillier_mod
    from secagg.integrations.flower.paillier_server import PaillierGrid as PaillierGrid
    from secagg.integrations.flower.paillier_server import PaillierOptions as PaillierOptions
    from secagg.integrations.flower.policy import NodePolicy as NodePolicy
    from secagg.integrations.flower.server import RoundReport as RoundReport
    from secagg.integrations.flower.server import SecAggGrid as SecAggGrid
    from secagg.integrations.flower.server import SecAggOptions as SecAggOptions

_EXPORTS = {
    "STATE_KEY": "client",
    "bound_dp": "bound_plan",
    "AuditRecord": "client",
    "make_secagg_mod": "client",
    "secagg_mod": "client",
    "make_paillier_mod": "paillier_client",
    "NodePolicy": "policy",
    "paillier_mod": "paillier_client",
    "PaillierGrid": "paillier_server",
    "PaillierOptions": "paillier_server",
    "RoundReport": "server",
    "SecAggGrid": "server",
    "SecAggOptions": "server",
}

__all__ = [
    "STATE_KEY",
    "AuditRecord",
    "NodePolicy",
    "PaillierGrid",
    "PaillierOptions",
    "RoundReport",
    "SecAggGrid",
    "SecAggOptions",
    "bound_dp",
    "make_paillier_mod",
    "make_secagg_mod",
    "paillier_mod",
    "secagg_mod",
]


def __getattr__(name: str) -> Any:
    """Import the Flower-dependent names on first use (ConfigurationError without ``flwr``)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require("flwr", "flower")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
