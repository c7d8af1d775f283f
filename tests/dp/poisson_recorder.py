"""Records every Poisson mask a module draws through ``secagg.dp.poisson_mask``, and its source."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest

from secagg.dp import RandomSource, poisson_mask


def record_poisson_masks(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType
) -> tuple[list[npt.NDArray[np.bool_]], list[object]]:
    """Patches ``module.poisson_mask`` to draw as before and to append each mask and the source it
    was drawn from to the two lists returned (filled as the module samples)."""
    drawn: list[npt.NDArray[np.bool_]] = []
    sources: list[object] = []

    def record(num_rows: int, rate: float | None, source: RandomSource | None = None) -> npt.NDArray[np.bool_]:
        mask = poisson_mask(num_rows, rate, source)
        drawn.append(mask)
        sources.append(source)
        return mask

    monkeypatch.setattr(module, "poisson_mask", record)
    return drawn, sources
