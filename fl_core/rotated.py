"""Random rotation before quantization: every hospital rotates, the server rotates back.

:class:`RotatedAggregator` wraps any aggregator of :mod:`fl_core.aggregators`. Each
round it draws a public 32-byte seed from the round's public randomness (the ``rng``
FedAvg passes, the same for every hospital), and every hospital sends
``R x`` instead of its update ``x``, where ``R`` is the randomized Walsh-Hadamard
rotation of that seed (:class:`secagg.rotation.Rotation`, spec section 18: random
signs, then the normalised Hadamard transform, after zero-padding to a power of
two). The inner aggregator quantizes and sums the rotated vectors as it sums any
vector; since ``R`` is linear and orthogonal, the server applies ``R^-1 = R^T`` to
the mean and drops the padding.

Why: the rotation spreads an update's energy evenly over the coordinates, so a
few large coordinates no longer set the clip for all of them, and fewer
quantization bits lose less (the reason docs/compression.md gives for rotating
before narrow rings). The round's rotation (seed, dimension, block) changes what
hospitals send, so it is bound into that round's session descriptor under
``secagg.rotation.*`` (the inner aggregator's quantizer carries the entries): a
server that gave two hospitals different seeds puts them in different sessions.

Exactness: the secure sum of the rotated encodings is bit-exact as always; the
mean is exact up to quantization in the rotated basis, and the rotation preserves
the L2 norm, so the error of the un-rotated mean is at most one quantization step
times sqrt(D) in L2 (D the padded dimension), like the error before rotation.
Per-tensor segments do not survive a rotation (it mixes all coordinates): a
rotated round is one flat float segment (a table of one float segment keeps its name
and clip over the padded length), and a table of several segments, or of an exact
integer segment, is refused.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from fl_core.aggregators.base import AggregationResult, Aggregator, ClientUpdate, DropoutStage, check_round
from fl_core.aggregators.binding import check_models
from fl_core.compression import SparseAggregator
from fl_core.wrapping import Screened, WrappingAggregator
from secagg.errors import ConfigurationError
from secagg.rotation import PARAMETER_PREFIX, SEED_SIZE, Rotation, largest_block
from secagg.segments import Segment, SegmentTable

__all__ = ["RotatedAggregator"]


class RotatedAggregator(WrappingAggregator):
    """``inner`` summing each round's updates in a public random rotation (module docstring).

    ``block`` is the rotation's block size (None: one block, the next power of two): a power of
    two in 1..2^32 (else refused here), and at most one block of the values rotated (else each
    round, and :meth:`own_length`, refuses it: :meth:`rotation`). A rotation applies once: an
    ``inner`` holding a :class:`RotatedAggregator` at any depth is refused, and so is one holding a
    :class:`~fl_core.compression.SparseAggregator` with error feedback (its residuals would be kept
    in one round's rotated basis and added in another's: wrap the other way,
    ``SparseAggregator(RotatedAggregator(inner), ...)``).
    ``name``, ``guarantee`` and ``quantizer`` are the inner aggregator's
    (:class:`~fl_core.wrapping.WrappingAggregator`); ``last_rotation`` is the rotation of
    the latest round (public).
    """

    KIND = "rotated"

    def __init__(self, inner: Aggregator, *, block: int | None = None) -> None:
        super().__init__(inner)
        below: Aggregator = inner
        while isinstance(below, WrappingAggregator):
            if isinstance(below, SparseAggregator) and below.compression.error_feedback:
                raise ConfigurationError(
                    "partial updates with error feedback cannot sit under a rotation: each hospital's residual "
                    "would be kept in one round's rotated basis and added in the next round's, another one "
                    "(delivering other values than those held back); put the rotation inside: "
                    "SparseAggregator(RotatedAggregator(inner), ...)"
                )
            below = below.inner
        if block is not None:  # a power of two in 1..2^32, or refused now rather than at the first round
            Rotation(bytes(SEED_SIZE), 1, block)
        self.block = block
        self.last_rotation: Rotation | None = None

    def rotation(self, seed: bytes, dimension: int) -> Rotation:
        """The rotation of ``seed`` for ``dimension`` values in this aggregator's blocks;
        ConfigurationError if the block exceeds one block of them (:func:`~secagg.rotation.largest_block`):
        it would add only padding (``block=2**30`` pads a 64-value model's updates to 8 GiB each)."""
        if self.block is not None and self.block > largest_block(dimension):
            raise ConfigurationError(
                f"rotation block {self.block} exceeds one block ({largest_block(dimension)}) of the {dimension} "
                "values rotated: a larger block adds only padding; give a block of at most that, or None (one block)"
            )
        return Rotation(seed, dimension, self.block)

    def check_segments(self, segments: SegmentTable) -> None:
        """ConfigurationError unless ``segments`` is one float segment: the rotation mixes every coordinate."""
        if len(segments.segments) > 1 or segments.segments[0].integer:
            raise ConfigurationError(
                "a rotated round is one flat float segment: the rotation mixes every coordinate, so per-tensor "
                "ranges and exact integer segments do not apply (aggregate without rotation to keep them)"
            )

    def own_length(self, length: int) -> int:
        """The rotation's padded dimension for ``length``-long updates (what is quantized and sent)."""
        return self.rotation(bytes(SEED_SIZE), length).padded_dimension

    def aggregate(
        self,
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage] | None = None,
        *,
        rng: np.random.Generator,
        segments: SegmentTable | None = None,
        model_digest: bytes | None = None,
    ) -> AggregationResult:
        """The inner aggregator's mean of the rotated updates, rotated back. A hospital whose
        rotation overflows binary64 is withheld (:meth:`WrappingAggregator.hand_on`). The round's
        dimension is decided by authority (:func:`~fl_core.aggregators.binding.check_lengths`): a
        hospital of another length is refused (a stand-in handed on); one of another model is
        handed on as a stand-in for the inner aggregator to refuse."""
        start = time.perf_counter()
        stages = check_round(updates, dropouts, rng=rng)
        if segments is not None:
            self.check_segments(segments)
        models = check_models(updates, model_digest)
        if models.skipped_reason is not None:  # no model is the round's: skipped as the bare round is
            return self.unmodelled(updates, stages, rng=rng, segments=segments, start=start)
        screened = Screened.of(updates, models, segments)
        dimension, updates, refused = screened.dimension, screened.updates, screened.refused
        stages = screened.stages(stages)
        rotation = self.rotation(rng.bytes(SEED_SIZE), dimension)
        self.last_rotation = rotation
        self.bind(PARAMETER_PREFIX, rotation.descriptor_parameters())
        # A finite update of the round's length can only fail to rotate by overflowing: withheld.
        rotated, stages, withheld = self.hand_on(
            updates,
            stages,
            rotation.padded_dimension,
            lambda u: np.zeros(rotation.padded_dimension) if u.client_id in refused else rotation.forward(u.vector),
        )
        if segments is None:
            result = self.inner.aggregate(rotated, stages, rng=rng, model_digest=model_digest)
        else:  # its name and clip, over the padded length
            only = segments.segments[0]
            flat = SegmentTable((Segment(only.name, rotation.padded_dimension, only.clip),))
            result = self.inner.aggregate(rotated, stages, rng=rng, segments=flat, model_digest=model_digest)
        result = screened.reported(result)
        mean = None if result.mean is None else rotation.inverse(result.mean)
        return self.report(result, withheld, mean, start)
