"""Shared by the PyTorch adapter tests: small modules that hold state the adapter must refuse."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")


class WithExtraState(torch.nn.Linear):  # type: ignore[misc]
    """A Linear(3, 2) with extra state (a dict in its state dict, not a tensor)."""

    def __init__(self) -> None:
        super().__init__(3, 2)
        self.threshold = 0.5

    def get_extra_state(self) -> Any:
        return {"threshold": self.threshold}

    def set_extra_state(self, state: Any) -> None:
        self.threshold = state["threshold"]
