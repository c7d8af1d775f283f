"""Shared by the PyTorch adapter tests: small modules that hold state the adapter must refuse, and the
model with buffers the binding tests split ``buffers`` over."""

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


def torch_model(step: float = 0.0) -> Any:
    """A model with buffers (BatchNorm's running statistics), its parameters moved by ``step``."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(step)
    return model
