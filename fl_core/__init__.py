"""fl_core: plain FedAvg that uses secagg only through one aggregator interface.

- :mod:`fl_core.aggregators` — :class:`Aggregator` (the interface) and
  :func:`make_aggregator` for ``plain``, ``plain-quantized``, ``secagg``,
  ``secagg+`` and ``paillier``.
- :mod:`fl_core.fedavg` — :func:`run_fedavg`, the training loop (McMahan et al. 2017).
- :mod:`fl_core.models` — numpy :class:`LogisticRegression` and :class:`MLP`;
  :func:`flatten` / :func:`unflatten` between parameter lists and vectors.
- :mod:`fl_core.data` — the hospital datasets (needs the ``examples`` extra).
- :mod:`fl_core.budget` — a byte budget per parameter that picks the bits, ring,
  rotation (:mod:`fl_core.rotated`) and shared subset (:mod:`fl_core.compression`).
- :mod:`fl_core.demo` — ``secagg demo`` (imported only by the command line).
"""

from __future__ import annotations

from fl_core.aggregators import (
    AggregationResult,
    Aggregator,
    ClientUpdate,
    DropoutStage,
    WeightedQuantizer,
    make_aggregator,
    model_digest,
)
from fl_core.data import ClientData
from fl_core.fedavg import FedAvgConfig, FedAvgResult, RoundRecord, local_sgd, run_fedavg
from fl_core.models import MLP, LogisticRegression, Model, Params, flatten, unflatten

__all__ = [
    "MLP",
    "AggregationResult",
    "Aggregator",
    "ClientData",
    "ClientUpdate",
    "DropoutStage",
    "FedAvgConfig",
    "FedAvgResult",
    "LogisticRegression",
    "Model",
    "Params",
    "RoundRecord",
    "WeightedQuantizer",
    "flatten",
    "local_sgd",
    "make_aggregator",
    "model_digest",
    "run_fedavg",
    "unflatten",
]
