"""Aggregators without cryptography: the baselines every secure run is compared to.

- :class:`PlainAggregator` (``"plain"``): the float weighted mean, as in
  McMahan et al.'s FedAvg. The server sees every update.
- :class:`QuantizedPlainAggregator` (``"plain-quantized"``): the same encoding
  as the secure aggregators (:class:`~fl_core.aggregators.base.WeightedQuantizer`)
  summed in the clear. A secure aggregator given generators in the same state
  must return exactly its result, bit for bit; the tests pin that.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from fl_core.aggregators.base import (
    AggregationResult,
    ClientUpdate,
    DropoutStage,
    check_round,
    mean_of,
    skipped,
    uploaders,
    with_withheld,
)
from fl_core.aggregators.binding import check_lengths, check_models, segments_authority
from fl_core.aggregators.clipping import ClipPolicy, ClipSchedule, clip_policy
from fl_core.aggregators.quantizer import WeightedQuantizer
from secagg._validate import require_instance, require_int
from secagg.segments import SegmentTable

__all__ = ["FLOAT_SIZE", "PlainAggregator", "QuantizedPlainAggregator"]

FLOAT_SIZE = 8
"""Bytes per float64 coordinate (and per sample count) sent in the clear."""


class PlainAggregator:
    """The float weighted mean of the updates that are sent (no protection).

    Every client that does not drop before uploading is included; there is no
    threshold, so a round is skipped only if nobody uploads.
    """

    def __init__(self, *, max_clients: int | None = None) -> None:
        """``max_clients``: the most clients one round may sum (``make_aggregator``'s
        ``num_clients``), refused beyond as every other aggregator refuses it; None: no bound."""
        self.max_clients = None if max_clients is None else require_int("max_clients", max_clients, 1)

    @property
    def name(self) -> str:
        """``"plain"``."""
        return "plain"

    def aggregate(
        self,
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage] | None = None,
        *,
        rng: np.random.Generator,
        segments: SegmentTable | None = None,
        model_digest: bytes | None = None,
    ) -> AggregationResult:
        """``sum n_k u_k / sum n_k`` over the uploading clients, in float64 (nothing is clipped).
        ``rng`` and ``segments`` are unused; clients that trained from another model than the
        round's (``model_digest``), or sent another length than the round's, are refused as the
        secure aggregators refuse them (:func:`~fl_core.aggregators.binding.check_lengths`). More
        updates than ``max_clients`` is a ConfigurationError, in the other aggregators' words."""
        start = time.perf_counter()
        stages = check_round(updates, dropouts, self.max_clients, rng=rng)
        models = check_models(updates, model_digest)
        if models.skipped_reason is not None:
            return skipped(models.skipped_reason, 0.0, time.perf_counter() - start)
        length, models, updates = check_lengths(updates, models)
        sent = uploaders(updates, models.stages(stages))
        # Each uploader sends its float vector and its count; nobody else sends anything.
        bytes_per_client = float(FLOAT_SIZE * (length + 1))
        if not sent:
            return skipped("no client uploaded its update", 0.0, time.perf_counter() - start, models.refused)
        return AggregationResult(
            mean=mean_of(sent),
            included=frozenset(u.client_id for u in sent),
            bytes_per_client=bytes_per_client,
            seconds=time.perf_counter() - start,
            refused=models.refused,
        )


class QuantizedPlainAggregator:
    """The secure aggregators' arithmetic without their cryptography.

    Encodes each uploading client's update exactly as the secure aggregators do
    (withholding, as they do, a client whose update cannot be encoded) and sums the
    encodings in the ring in the clear. Useful as the reference for
    exactness and to measure what quantization alone costs in accuracy.
    """

    def __init__(self, quantizer: WeightedQuantizer, *, clipping: str | ClipPolicy = "adaptive") -> None:
        """``quantizer`` fixes the starting clip, bits, ring and the bounds on clients and samples;
        ``clipping`` how each segment's clip moves between rounds (:mod:`fl_core.aggregators.clipping`)."""
        self.quantizer = require_instance("quantizer", quantizer, WeightedQuantizer)
        self.schedule = ClipSchedule(clip_policy(clipping), quantizer.config.clip)

    @property
    def name(self) -> str:
        """``"plain-quantized"``."""
        return "plain-quantized"

    def aggregate(
        self,
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage] | None = None,
        *,
        rng: np.random.Generator,
        segments: SegmentTable | None = None,
        model_digest: bytes | None = None,
    ) -> AggregationResult:
        """Decoded ring sum of the uploading clients' weighted encodings (clients that trained
        from another model than the round's, or sent another length, refused as the secure
        aggregators refuse them)."""
        start = time.perf_counter()
        stages = check_round(updates, dropouts, self.quantizer.config.num_clients, rng=rng)
        models = check_models(updates, model_digest)
        if models.skipped_reason is not None:
            return skipped(models.skipped_reason, 0.0, time.perf_counter() - start)
        length, models, updates = check_lengths(updates, models, segments_authority(segments))
        stages = models.stages(stages)
        table = self.quantizer.check_table(self.schedule.table(length, segments))
        coded = self.quantizer.encode_round(updates, stages, rng, table)  # withholds what it cannot encode
        encodings, sent = coded.encodings, uploaders(updates, coded.stages)
        encoded = self.quantizer.encoded_length(length, table)
        bytes_per_client = float(self.quantizer.config.ring.packed_size(encoded))
        if not sent:
            return with_withheld(
                skipped("no client uploaded its update", 0.0, time.perf_counter() - start, models.refused),
                coded.withheld,
            )
        total = self.quantizer.ring_sum([encodings[u.client_id] for u in sent])
        decoded = self.quantizer.decode_sum(self.quantizer.integers_of(total), len(sent), table)
        self.schedule.observe(decoded.clipping)
        return AggregationResult(
            mean=decoded.mean,
            included=frozenset(u.client_id for u in sent),
            bytes_per_client=bytes_per_client,
            seconds=time.perf_counter() - start,
            clipping=decoded.clipping,
            refused=models.refused,
            withheld=coded.withheld,
        )
