"""How the clip of each segment is chosen, round after round: :mod:`secagg.clipping`.

The schedule lives in secagg so that the Flower workflow (which must not import
fl_core) drives its clips by the same rule; this module re-exports it for
fl_core's aggregators.
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
