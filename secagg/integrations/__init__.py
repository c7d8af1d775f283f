"""Adapters that put secagg under other machine-learning stacks.

Each adapter lives in its own module and imports its optional dependency only
when one of its functions is called, so ``import secagg`` never needs them and
the core never imports this package:

- :mod:`secagg.integrations.torch` — PyTorch: flatten a model's parameters or a
  ``state_dict`` into one float64 vector and back (dtypes and shapes exact), and
  aggregate the updates of several models through any aggregator
  (``pip install -e '.[torch]'`` from the root of a clone).
- :mod:`secagg.integrations.keras` — Keras 3: the same for a model's weights
  (``get_weights()``, a list of numpy arrays, any backend) and for a model in
  place (``pip install -e '.[keras]'`` from the root of a clone).
- :mod:`secagg.integrations.flower` — Flower (``flwr``, Message API):
  :class:`~secagg.integrations.flower.SecAggGrid`, the server-side workflow that
  runs a masking session under any Flower strategy, and
  :func:`~secagg.integrations.flower.secagg_mod`, the client-side mod
  (``pip install -e '.[flower]'`` from the root of a clone).

A missing extra raises :class:`~secagg.errors.ConfigurationError` naming the
``pip install`` line that provides it.
"""

from __future__ import annotations

__all__: list[str] = []
