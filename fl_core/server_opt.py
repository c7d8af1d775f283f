"""The server's step on the noised mean gradient of a DP round (post-processing, no privacy cost).

Everything here reads only the released noised sums and public constants, so by the
post-processing property of differential privacy it costs no budget (Reddi et al., ICLR
2021, "Adaptive Federated Optimization": server momentum and Adam on the aggregate).

- ``sgd``: ``w <- w - lr (g + beta v)`` with heavy-ball momentum ``beta`` (0: plain step);
- ``adam``: ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
  ``w <- w - lr m / (sqrt(v) + tau)`` (FedAdam; no bias correction, as Reddi et al.).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fl_core.models import FloatArray
from secagg.errors import ConfigurationError

__all__ = ["SERVER_OPTIMIZERS", "ServerOptimizer"]

SERVER_OPTIMIZERS = ("sgd", "adam")


@dataclass
class ServerOptimizer:
    """State of the server's optimiser over one run; :meth:`step` returns the new parameters."""

    kind: str = "sgd"
    learning_rate: float = 1.0
    momentum: float = 0.0
    beta2: float = 0.99
    tau: float = 1e-3
    _first: FloatArray | None = field(default=None, init=False, repr=False)
    _second: FloatArray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in SERVER_OPTIMIZERS:
            raise ConfigurationError(f"server optimizer must be one of {SERVER_OPTIMIZERS}, got {self.kind!r}")
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigurationError(f"server learning rate must be positive, got {self.learning_rate}")
        if not (0.0 <= self.momentum < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ConfigurationError(f"momentum and beta2 must be in [0, 1), got {self.momentum}, {self.beta2}")
        if not (np.isfinite(self.tau) and self.tau > 0):
            raise ConfigurationError(f"tau must be positive, got {self.tau}")

    def step(self, params: FloatArray, gradient: FloatArray) -> FloatArray:
        """``params`` moved against the noised mean ``gradient`` (flat vectors)."""
        first = np.zeros_like(gradient) if self._first is None else self._first
        if self.kind == "sgd":
            self._first = gradient + self.momentum * first
            moved: FloatArray = params - self.learning_rate * self._first
            return moved
        second = np.zeros_like(gradient) if self._second is None else self._second
        self._first = self.momentum * first + (1.0 - self.momentum) * gradient
        self._second = self.beta2 * second + (1.0 - self.beta2) * gradient * gradient
        adapted: FloatArray = params - self.learning_rate * self._first / (np.sqrt(self._second) + self.tau)
        return adapted
