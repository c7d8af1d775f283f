"""How the clip of each segment is chosen, round after round (fl_core and the Flower workflow).

- :class:`FixedClip` (``clipping="fixed"``): every float segment keeps the clip
  it starts with (the quantizer's ``clip``, or the one its segment names).
- :class:`AdaptiveClip` (``clipping="adaptive"``, the default): after each round
  the clip of each float segment moves geometrically toward the value that
  clips a target fraction of its coordinates, driven only by the *securely
  summed* clipped count (Andrew et al., "Differentially Private Learning with
  Adaptive Clipping", NeurIPS 2021)::

      C <- C * exp(-eta * (b - gamma))

  with ``b = 1 - clipped_fraction`` the unclipped fraction of the round and
  ``gamma = 1 - target`` the target quantile. With the defaults (target 0.1%,
  eta = 1) a clip that clips everything grows by up to e = 2.7x per round; a clip
  that clips nothing shrinks by exp(-eta * target) = 0.999x per round (slowly, on
  purpose: a clip too large only coarsens the quantization step, a clip too small
  biases the mean). The clip stays in ``[MIN_CLIP, MAX_CLIP]``.

:class:`ClipSchedule` holds the clips of one aggregator between rounds. The clip
of every segment of a round is in the session's segment table, whose digest the
session descriptor binds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from secagg._validate import require_finite
from secagg.errors import ConfigurationError
from secagg.segments import ClippingReport, Segment, SegmentTable

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

DEFAULT_TARGET_CLIPPED = 0.001
"""Default target of the adaptive clip: at most 0.1% of a segment's coordinates clipped."""
DEFAULT_LEARNING_RATE = 1.0
"""Default eta of the geometric update."""
MIN_CLIP = 1e-9
MAX_CLIP = 1e9
CLIPPING_NAMES = ("adaptive", "fixed")
"""Names accepted by :func:`clip_policy` (and ``make_aggregator(clipping=...)``)."""


@dataclass(frozen=True)
class FixedClip:
    """Keep every segment's starting clip."""

    def next_clip(self, clip: float, clipped_fraction: float) -> float:
        """``clip``, unchanged."""
        return clip


@dataclass(frozen=True)
class AdaptiveClip:
    """Geometric update of each segment's clip toward a target clipped fraction.

    Attributes:
        target: the clipped fraction aimed at (``1 - gamma``), in (0, 1).
        learning_rate: eta > 0.
    """

    target: float = DEFAULT_TARGET_CLIPPED
    learning_rate: float = DEFAULT_LEARNING_RATE

    def __post_init__(self) -> None:
        target = require_finite("target", self.target, 0.0, 1.0)
        rate = require_finite("learning_rate", self.learning_rate, 0.0, 100.0)
        if not 0 < target < 1 or rate <= 0:
            raise ConfigurationError(f"target must be in (0, 1) and learning_rate > 0, got {target}, {rate}")
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "learning_rate", rate)

    def next_clip(self, clip: float, clipped_fraction: float) -> float:
        """``clip * exp(-eta * ((1 - clipped_fraction) - (1 - target)))``, kept in [MIN_CLIP, MAX_CLIP]."""
        unclipped, quantile = 1.0 - clipped_fraction, 1.0 - self.target
        return min(MAX_CLIP, max(MIN_CLIP, clip * math.exp(-self.learning_rate * (unclipped - quantile))))


ClipPolicy = FixedClip | AdaptiveClip


def clip_policy(name: str | ClipPolicy) -> ClipPolicy:
    """The policy called ``name`` (:data:`CLIPPING_NAMES`, defaults), or ``name`` if it already is one."""
    if isinstance(name, (FixedClip, AdaptiveClip)):
        return name
    if name == "adaptive":
        return AdaptiveClip()
    if name == "fixed":
        return FixedClip()
    raise ConfigurationError(f"unknown clipping {name!r}; choose one of {', '.join(CLIPPING_NAMES)}")


class ClipSchedule:
    """The current clip of every segment an aggregator has seen, updated after each round."""

    def __init__(self, policy: ClipPolicy, initial_clip: float) -> None:
        self.policy = policy
        self.initial_clip = initial_clip
        self.clips: dict[str, float] = {}

    def table(self, length: int, segments: SegmentTable | None = None) -> SegmentTable:
        """This round's table: ``segments`` (one flat segment if None) with every float
        segment's clip: the one its segment names (given or discovered, this round), else
        the schedule's current clip, else the initial clip the first time. (A caller with
        *starting* clips passes them only for segments the schedule has not seen yet:
        :meth:`unseen`.)"""
        if segments is None:
            segments = SegmentTable((Segment("", length),))
        if segments.size != length:
            raise ConfigurationError(f"the segments cover {segments.size} coordinates, the updates have {length}")
        return SegmentTable(
            tuple(
                s
                if s.integer or s.clip is not None
                else Segment(s.name, s.length, self.clips.get(s.name, self.initial_clip))
                for s in segments.segments
            )
        )

    def unseen(self, clips: Mapping[str, float] | None) -> dict[str, float]:
        """The starting ``clips`` of segments this schedule has not moved yet (the others
        follow the schedule from the second round on)."""
        return {name: clip for name, clip in (clips or {}).items() if name not in self.clips}

    def observe(self, report: ClippingReport) -> None:
        """Move each float segment's clip by the policy, from the round's securely summed counts."""
        fractions = report.fractions()
        for segment in report.table.segments:
            if segment.clip is not None:
                self.clips[segment.name] = self.policy.next_clip(segment.clip, fractions[segment.name])
