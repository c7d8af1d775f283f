"""The DP plan and encoding the fl_core binding guards (masking and Paillier) split field by field:
5 hospitals, 6 values."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from fl_core.dp import DPQuantizer
from secagg.dp import DPConfig
from secagg.dp.calibration import NoisePlan
from secagg.dp.sampler import SeededRandomSource
from secagg.encoding import QuantizationConfig

HOSPITALS = (1, 2, 3, 4, 5)
LENGTH = 6

PLAN = NoisePlan(
    DPConfig(epsilon=1.0, delta=1e-6, rounds=10, l2_clip=1.0), Fraction(9, 2), len(HOSPITALS), LENGTH, 64.0
)


def dp_quantizer(**changes: Any) -> DPQuantizer:
    """A DP encoding of :data:`PLAN` (scale 64: 16 bits over a range of 32767 / 64), with ``changes``."""
    quantization = QuantizationConfig(32767 / PLAN.scale, 16, len(HOSPITALS), 32)
    fields: dict[str, Any] = {
        "plan": PLAN,
        "tail_bound": 1000,
        "noise_source": SeededRandomSource(bytes(32)),
        "max_patients": None,
    }
    return DPQuantizer(quantization, **(fields | changes))
