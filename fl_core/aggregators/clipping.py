"""How the clip of each segment is chosen, round after round: :mod:`secagg.clipping`.

The schedule lives in secagg so that the Flower workflow (which must not import
fl_core) drives its clips by the same rule. This module only re-exports it, and
is kept on purpose: ``fl_core.aggregators.clipping`` is the documented import
path (docs/fedavg.md, docs/privacy.md, CHANGELOG.md, the aggregators' docstrings)
and fl_core's aggregators (plain, masking, paillier) and tests import from it.
"""

from __future__ import annotations

from secagg.clipping import (
    CLIPPING_NAMES,
    DEFAULT_LEARNING_RATE,
    DEFAULT_TARGET_CLIPPED,
    MAX_CLIP,
    MIN_CLIP,
    AdaptiveClip,
    ClipPolicy,
    ClipSchedule,
    FixedClip,
    clip_policy,
)

__all__ = [
    "CLIPPING_NAMES",
    "DEFAULT_LEARNING_RATE",
    "DEFAULT_TARGET_CLIPPED",
    "MAX_CLIP",
    "MIN_CLIP",
    "AdaptiveClip",
    "ClipPolicy",
    "ClipSchedule",
    "FixedClip",
    "clip_policy",
]
