"""Feature scaling from declared public ranges: DP mode's ``public-ranges`` scaling (no release),
and the clipping ranges of the noised moments release (:mod:`fl_core.dp_moments`, the default).

The ordinary demo standardises with pooled means and variances summed securely before
training. That sum is an un-noised, data-dependent release, outside any DP guarantee. In
DP mode the demo uses instead the per-feature ranges a data dictionary declares: every
hospital (and the test site) maps each feature's public range ``[low, high]`` affinely
onto ``[-1, 1]``, locally, from constants known before any data is seen. The server learns
nothing from this step, so the DP guarantee (the training rounds) covers everything the
server learns.

Breast cancer: all 30 features are non-negative by definition (lengths, areas, ratios,
counts), so ``low = 0``; ``high`` is the maximum listed in the data set's published
description (UCI WDBC, scikit-learn's ``DESCR``, "Summary Statistics"), rounded **up** to
two significant digits. Those maxima were published with the data; a deployment should
take its ranges from clinical references or the instrument's specification, never from
its own patients. Digits: pixel intensities in ``0..16`` by construction. A value outside
its range is not clipped (scaling is local and public; the per-example gradient clip
bounds every patient's influence whatever the feature values).
"""

from __future__ import annotations

import numpy as np

from fl_core.data import Standardiser
from secagg.errors import ConfigurationError

__all__ = ["PUBLIC_FEATURE_RANGES", "public_scaler"]

_BREAST_CANCER_HIGH = (
    # mean: radius, texture, perimeter, area, smoothness, compactness, concavity,
    # concave points, symmetry, fractal dimension; then their standard errors; then "worst".
    29.0, 40.0, 190.0, 2600.0, 0.17, 0.35, 0.43, 0.21, 0.31, 0.098,
    2.9, 4.9, 22.0, 550.0, 0.032, 0.14, 0.4, 0.053, 0.079, 0.03,
    37.0, 50.0, 260.0, 4300.0, 0.23, 1.1, 1.3, 0.3, 0.67, 0.21,
)  # fmt: skip

PUBLIC_FEATURE_RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "breast-cancer": tuple((0.0, high) for high in _BREAST_CANCER_HIGH),
    "digits": ((0.0, 16.0),) * 64,
}
"""Declared public ``(low, high)`` per feature, per data set (see the module docstring)."""


def public_scaler(dataset: str, num_features: int) -> Standardiser:
    """The :class:`Standardiser` mapping each feature's public range onto ``[-1, 1]``:
    ``(x - (low + high) / 2) / ((high - low) / 2)``. Depends on no data."""
    if dataset not in PUBLIC_FEATURE_RANGES:
        raise ConfigurationError(f"no declared public feature ranges for dataset {dataset!r}")
    ranges = np.asarray(PUBLIC_FEATURE_RANGES[dataset], dtype=np.float64)
    if ranges.shape != (num_features, 2):
        raise ConfigurationError(f"{dataset!r} declares {ranges.shape[0]} feature ranges, the data have {num_features}")
    low, high = ranges[:, 0], ranges[:, 1]
    return Standardiser((low + high) / 2.0, (high - low) / 2.0)
