"""Distributed differential privacy inside the secure sum.

Each hospital adds a share of exact integer noise to its quantized update
before masking or encryption, so even the unmasked sum is differentially
private per patient. This package holds the configuration (:class:`DPConfig`,
bound into the session descriptor), the noise calibration
(:func:`calibrate` -> :class:`NoisePlan`, distributed discrete Gaussian of
Kairouz, Liu, Steinke 2021), the budget accountant
(:class:`PrivacyAccountant`, persisted, refusing a round that would exceed the
budget), the exact integer sampler (:func:`sample_discrete_gaussian`,
docs/spec.md section 19) and the secret Poisson sample of patients
(:func:`poisson_mask`). Calibration and accounting need the optional ``dp``
extra (``dp-accounting``), imported lazily; docs/privacy.md explains the guarantee.
"""

from __future__ import annotations

from secagg.dp.accountant import PrivacyAccountant, PrivacySpent
from secagg.dp.calibration import NoisePlan, Preceding, calibrate, noise_tail_bound
from secagg.dp.config import MECHANISM_DDG, DPConfig
from secagg.dp.contributors import check_contributors, contributor_shortfall
from secagg.dp.poisson import poisson_mask
from secagg.dp.sampler import (
    RandomSource,
    SeededRandomSource,
    SystemRandomSource,
    discrete_gaussian_pmf,
    sample_discrete_gaussian,
    sample_discrete_laplace,
)

__all__ = [
    "MECHANISM_DDG",
    "DPConfig",
    "NoisePlan",
    "Preceding",
    "PrivacyAccountant",
    "PrivacySpent",
    "RandomSource",
    "SeededRandomSource",
    "SystemRandomSource",
    "calibrate",
    "check_contributors",
    "contributor_shortfall",
    "discrete_gaussian_pmf",
    "noise_tail_bound",
    "poisson_mask",
    "sample_discrete_gaussian",
    "sample_discrete_laplace",
]
