"""Aggregators around another aggregator: what the rotation and the partial updates share.

:class:`RotatedAggregator` (:mod:`fl_core.rotated`) and :class:`SparseAggregator`
(:mod:`fl_core.compression`) each change what hospitals send and hand the result to an
inner aggregator. Both keep the inner aggregator's ``name`` and ``guarantee`` (what they
add is public: a seed, a subset, a rotation), reach the inner aggregator's quantizer
(through any number of wrappers), and bind their round's entries into the session
descriptor that quantizer describes. :class:`WrappingAggregator` is that shared part.

One faulty hospital costs only itself: a hospital whose update the wrapper cannot turn into
what it sends (its rotation, or its update plus its residual, leaves binary64) is *withheld*
(:meth:`WrappingAggregator.hand_on`): it goes silent at ``UPLOAD`` (or at its earlier stage),
a stand-in of zeros keeps the round's shape (never sent, never summed), and the result names it
with the reason (:attr:`~fl_core.aggregators.base.AggregationResult.withheld`). The others'
mean is what the round without it gives, bit for bit; a round left with too few hospitals for
the protocol is skipped with the protocol's reason, which then names the withheld hospitals.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from fl_core.aggregators.base import (
    AggregationResult,
    Aggregator,
    ClientUpdate,
    DropoutStage,
    FloatVector,
    with_withheld,
)
from fl_core.aggregators.binding import ModelCheck, check_lengths, segments_authority
from secagg.descriptor import Parameter
from secagg.errors import ConfigurationError, ConfigurationTypeError
from secagg.segments import SegmentTable

__all__ = ["Screened", "Withheld", "WrappingAggregator", "innermost", "keeps_residuals"]

Withheld = tuple[tuple[int, str], ...]
"""(client id, reason) of the hospitals a round withholds."""


@dataclass(frozen=True)
class Screened:
    """A wrapped round's hospitals after the length check (:func:`~fl_core.aggregators.binding.check_lengths`).

    Attributes:
        dimension: the round's update length, decided by authority.
        updates: the updates, a stand-in (zeros of ``dimension``) for every refused hospital.
        refused: every refused hospital (another model or another length): never transformed,
            its residual untouched.
        by_length: (client id, reason) of those refused for their length alone, which the inner
            aggregator (handed stand-ins) cannot see: they join its result's ``refused``.
    """

    dimension: int
    updates: list[ClientUpdate]
    refused: frozenset[int]
    by_length: Withheld

    @classmethod
    def of(cls, updates: Sequence[ClientUpdate], models: ModelCheck, segments: SegmentTable | None) -> Screened:
        """The round's hospitals screened for their length (the server's ``segments`` an authority)."""
        dimension, screened, shaped = check_lengths(updates, models, segments_authority(segments))
        by_length = tuple(entry for entry in screened.refused if entry not in models.refused)
        return cls(dimension, shaped, frozenset(client for client, _ in screened.refused), by_length)

    def stages(self, stages: Mapping[int, DropoutStage]) -> dict[int, DropoutStage]:
        """``stages`` with every hospital refused for its length dropping at ``JOIN``."""
        return {**stages, **{client: DropoutStage.JOIN for client, _ in self.by_length}}

    def reported(self, result: AggregationResult) -> AggregationResult:
        """The inner ``result`` with the hospitals refused for their length in its ``refused``."""
        return replace(result, refused=tuple(sorted((*result.refused, *self.by_length))))


class WrappingAggregator:
    """The shared part of an aggregator that wraps ``inner``.

    Subclasses set :attr:`KIND` (a participle: "an aggregator is {KIND} once") and call
    :meth:`bind` with their round's descriptor entries before the inner aggregator runs. A wrapper
    whose ``inner`` holds one of its own class at any depth (another wrapper between them or not)
    is refused (ConfigurationError): both would bind under one prefix, the innermost last, so the
    outer round's draw would be bound by nothing; so is an ``inner`` whose quantizer is a DP one.
    """

    KIND: ClassVar[str] = "wrapped"
    inner: Aggregator

    def __init__(self, inner: Aggregator) -> None:
        if not isinstance(inner, Aggregator):  # a Protocol: require_instance takes concrete classes only
            raise ConfigurationTypeError(
                f"inner must be an fl_core Aggregator (make_aggregator(...)), got {type(inner).__name__}"
            )
        below: Aggregator = inner
        while isinstance(below, WrappingAggregator):  # anywhere under it: each binds under one prefix,
            if isinstance(below, type(self)):  # the innermost last, so the outer draw would be unbound
                raise ConfigurationError(f"an aggregator is {self.KIND} once")
            below = below.inner
        dp_quantizer = importlib.import_module("fl_core.dp").DPQuantizer  # lazily: fl_core.dp imports this module
        if isinstance(getattr(inner, "quantizer", None), dp_quantizer):
            # Refused as the Flower adapter (compression.check_options) and the demo refuse it.
            raise ConfigurationError(
                f"a DP aggregator cannot be {self.KIND}: a DP round sends every coordinate, noised, in the model's "
                "own basis (a residual would carry patient data past the accountant, and a rotation's padding "
                "changes the sensitivity the noise is calibrated for)"
            )
        self.inner = inner

    @property
    def name(self) -> str:
        """The inner aggregator's name."""
        return self.inner.name

    @property
    def guarantee(self) -> Any:
        """The inner aggregator's guarantee (what a wrapper adds is public and does not change it)."""
        return getattr(self.inner, "guarantee", None)

    @property
    def quantizer(self) -> Any:
        """The inner aggregator's quantizer, None for ``plain`` (so a wrapper around this one binds too)."""
        return getattr(self.inner, "quantizer", None)

    @quantizer.setter
    def quantizer(self, value: Any) -> None:
        self.inner.quantizer = value  # type: ignore[attr-defined]

    def keeps_residuals(self) -> bool:
        """Whether this wrapper, or one under it, keeps state per hospital between rounds (an
        error-feedback residual under each client id): here what the wrappers under it say."""
        return isinstance(self.inner, WrappingAggregator) and self.inner.keeps_residuals()

    def own_length(self, length: int) -> int:
        """The length of the vectors this wrapper hands on for ``length``-long inputs (the same here)."""
        return length

    def sent_length(self, length: int) -> int:
        """How many coordinates the aggregator under every wrapper quantizes for ``length``-long inputs."""
        inner, handed_on = self.inner, self.own_length(length)
        return inner.sent_length(handed_on) if isinstance(inner, WrappingAggregator) else handed_on

    def check_segments(self, segments: SegmentTable) -> None:
        """ConfigurationError if no round of this wrapper can take a table of ``segments``' shape: here
        what the wrappers under it say (:class:`~fl_core.rotated.RotatedAggregator` takes one float segment)."""
        if isinstance(self.inner, WrappingAggregator):
            self.inner.check_segments(segments)

    def bind(self, prefix: str, entries: Mapping[str, Parameter]) -> None:
        """Replace the quantizer's bound entries under ``prefix`` by ``entries`` (others are kept).

        Every entry's name must start with ``prefix``. Nothing is bound without a quantizer
        (``plain``: there is no session)."""
        quantizer = self.quantizer
        if quantizer is None:
            return
        if any(not name.startswith(prefix) for name in entries):
            raise ConfigurationError(f"descriptor entries of a {self.KIND} round must start with {prefix!r}")
        kept = tuple((name, value) for name, value in quantizer.parameters if not name.startswith(prefix))
        self.quantizer = replace(quantizer, parameters=kept + tuple(sorted(entries.items())))

    @staticmethod
    def hand_on(
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage],
        length: int,
        transform: Callable[[ClientUpdate], FloatVector],
    ) -> tuple[list[ClientUpdate], dict[int, DropoutStage], Withheld]:
        """What the inner aggregator gets: each update's ``transform`` (``length`` values), the
        dropouts, and the hospitals withheld, with the reason.

        ``transform`` gets a valid update of the round (finite, of the round's length), so a
        ConfigurationError it raises, or a vector that is not a finite update, is that hospital's
        alone: it is withheld (see the module docstring), a stand-in of zeros in its place."""
        stages = dict(dropouts)
        handed: list[ClientUpdate] = []
        withheld: list[tuple[int, str]] = []
        for update in updates:
            try:
                handed.append(replace(update, vector=transform(update)))
            except ConfigurationError as exc:
                withheld.append((update.client_id, str(exc)))
                stages[update.client_id] = min(stages.get(update.client_id, DropoutStage.UPLOAD), DropoutStage.UPLOAD)
                handed.append(replace(update, vector=np.zeros(length)))
        return handed, stages, tuple(withheld)

    def unmodelled(
        self,
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage],
        *,
        rng: np.random.Generator,
        segments: SegmentTable | None,
        start: float,
    ) -> AggregationResult:
        """The round when no model is the round's (:attr:`~fl_core.aggregators.binding.ModelCheck.skipped_reason`):
        handed to the inner aggregator as it came (nothing transformed, nothing bound, no residual
        touched), which skips it as the bare round is skipped, with the same reason, whatever the
        updates' lengths (they would otherwise raise for the round)."""
        if segments is None:  # (an Aggregator's segments are optional)
            result = self.inner.aggregate(updates, dropouts, rng=rng, model_digest=None)
        else:
            result = self.inner.aggregate(updates, dropouts, rng=rng, segments=segments, model_digest=None)
        return replace(result, seconds=time.perf_counter() - start)

    @staticmethod
    def report(
        result: AggregationResult, withheld: Withheld, mean: FloatVector | None, start: float
    ) -> AggregationResult:
        """The inner ``result`` with ``mean`` (None when it was skipped), this wrapper's ``withheld``
        added (and named in a skipped round's reason) and the seconds since ``start``."""
        named = with_withheld(result, withheld)
        return replace(named, mean=mean, seconds=time.perf_counter() - start)


def keeps_residuals(aggregator: Aggregator) -> bool:
    """Whether ``aggregator`` keeps state per hospital between rounds under each client id (a
    :class:`~fl_core.compression.SparseAggregator` with error feedback, at any depth): its callers
    must give every hospital the same client id in every round, or one hospital's residual is
    added to another's update."""
    return isinstance(aggregator, WrappingAggregator) and aggregator.keeps_residuals()


def innermost(aggregator: Aggregator) -> Aggregator:
    """The aggregator under every wrapper (the one that runs the protocol)."""
    while isinstance(aggregator, WrappingAggregator):
        aggregator = aggregator.inner
    return aggregator
