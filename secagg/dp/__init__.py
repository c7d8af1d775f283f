"""Distributed differential privacy: exact integer noise added inside the secure sum.

Each hospital adds its share of integer noise to its quantized update before
masking or encryption, so the server only ever holds a noised sum. This package
holds the exact sampler (docs/spec.md, section 17); calibration and accounting
live beside it.
"""

from secagg.dp.sampler import (
    RandomSource,
    SeededRandomSource,
    SystemRandomSource,
    discrete_gaussian_pmf,
    sample_discrete_gaussian,
    sample_discrete_laplace,
)

__all__ = [
    "RandomSource",
    "SeededRandomSource",
    "SystemRandomSource",
    "discrete_gaussian_pmf",
    "sample_discrete_gaussian",
    "sample_discrete_laplace",
]
