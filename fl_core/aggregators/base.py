"""The seam between FedAvg and the secure layers: one aggregator interface.

FedAvg hands an :class:`Aggregator` the update vectors of the clients sampled in
a round (one :class:`ClientUpdate` each) and says which of them drop out and
when (:class:`DropoutStage`); the aggregator returns the weighted mean of the
updates that made it in (:class:`AggregationResult`). ``plain`` does this in
floats; the secure aggregators do it through a secure *sum*, so the server
learns only totals. Those three types are defined in :mod:`fl_core.aggregators.round_io`
and re-exported here; this module holds the interface and the checks and helpers every
aggregator's round shares.

Weighted mean through a secure sum (:class:`~fl_core.aggregators.quantizer.WeightedQuantizer`):
client k quantizes its update to integers ``q_k`` segment by segment (one clip
per segment, stochastic rounding, see :mod:`secagg.segments`), multiplies them
by its sample count ``n_k`` and appends one count of clipped coordinates per
segment, then ``n_k``::

    e_k = (n_k * q_k[0], ..., n_k * q_k[d-1], c_k[1], ..., c_k[S], n_k)

The ring sum of the ``e_k`` is ``(sum n_k q_k, sum c_k, sum n_k)``; the server
divides and rescales, and reports the clipped fraction
(:attr:`AggregationResult.clipped_fraction`, a
:class:`~secagg.segments.ClippingWarning` above 1% of a segment). Neither a
client's update, its clipped count nor its sample count is revealed, only the
totals. Invariant (no wrap): ``num_clients * max_samples_per_client * qmax
<= 2^(ring_bits - 1) - 1``, checked by :class:`secagg.encoding.QuantizationConfig`
at setup (and ``num_clients * longest segment`` for the counts), so
``decode(sum of encodings) == sum n_k q_k / (scale_s * sum n_k)`` exactly,
whatever the protocol that computed the sum. The clip of each segment follows
:mod:`fl_core.aggregators.clipping` (adaptive by default).

Reproducibility: the rounding randomness of client k is a numpy Generator seeded
from one draw of the round's ``rng`` and k (:func:`client_rounding_rng`). Two
aggregators called with generators in the same state therefore quantize every
client identically, which is what makes a secure run bit-identical to
``plain-quantized`` (:class:`fl_core.aggregators.plain.QuantizedPlainAggregator`).

Writing a new aggregator (e.g. Paillier): take a :class:`WeightedQuantizer`
as the first constructor argument and protocol options as keywords
(:func:`fl_core.aggregators.make_aggregator` calls ``Cls(quantizer, **options)``);
in ``aggregate``, validate with :func:`check_round`, then check the clients' models and
lengths (:func:`~fl_core.aggregators.binding.check_models`, then
:func:`~fl_core.aggregators.binding.check_lengths`: the refused drop at JOIN and go in
``AggregationResult.refused``), bind the round with :meth:`WeightedQuantizer.descriptor`
(``model_digest=``, the ``run_id``), encode with :meth:`WeightedQuantizer.encode_round` (it
withholds at ``UPLOAD`` a client whose update cannot be encoded), sum the :func:`uploaders`
securely, decode (:meth:`WeightedQuantizer.decode`), return :func:`skipped` with the reason
if too few clients remain, and pass the result through :func:`with_withheld`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from fl_core.aggregators.defaults import (
    DEFAULT_BITS,
    DEFAULT_CLIP,
    DEFAULT_MAX_SAMPLES_PER_CLIENT,
    DEFAULT_RING_BITS,
)
from fl_core.aggregators.round_io import MAX_U32, AggregationResult, ClientUpdate, DropoutStage, FloatVector
from secagg._validate import require_mapping, require_rng, require_sequence
from secagg.errors import ConfigurationError
from secagg.masking.server_state import SUMMARY_IDS
from secagg.segments import SegmentTable

__all__ = [
    "DEFAULT_BITS",
    "DEFAULT_CLIP",
    "DEFAULT_MAX_SAMPLES_PER_CLIENT",
    "DEFAULT_RING_BITS",
    "MAX_U32",
    "AggregationResult",
    "Aggregator",
    "ClientUpdate",
    "DropoutStage",
    "FloatVector",
    "check_round",
    "client_rounding_rng",
    "mean_of",
    "skipped",
    "uploaders",
    "with_withheld",
]


@runtime_checkable
class Aggregator(Protocol):
    """Computes the sample-weighted mean of client updates, learning nothing else
    (for the secure implementations).

    Contract of :meth:`aggregate`:

    - ``updates``: every client sampled for the round, with distinct ids. A client
      refused for its model (or, under DP, its DP configuration) is refused for that
      whatever its length; among the others the round's length is decided by authority
      (:func:`fl_core.aggregators.binding.check_lengths`: a DP aggregator's dimension, the
      ``segments`` table, the clients that declare the round's model), and a client of
      another length is refused, with the reason, as one of another model. Lengths that
      disagree with nothing to decide between them raise ConfigurationError for the round.
    - ``dropouts``: client id -> the stage at which it goes silent; clients not
      in the mapping complete the round. Ids must be among ``updates``.
    - ``rng``: the round's non-secret randomness (quantization rounding). Calling
      two aggregators with generators in the same state quantizes identically.
    - ``segments``: how the vector splits into named tensors (one clip and one
      clipped count each; integer segments exact), or ``None`` for one flat
      segment. Segments without a clip take the aggregator's current one.
    - ``model_digest``: the digest of the global model the server sent for the round
      (:func:`fl_core.aggregators.binding.model_digest`), or ``None``: then the model more
      than half of the declaring clients declare (:attr:`ClientUpdate.model_digest`). It is
      bound into the session; a client that declares another is refused, with the reason
      in :attr:`AggregationResult.refused` (:func:`fl_core.aggregators.binding.check_models`).
    - Returns the weighted mean ``sum n_k u_k / sum n_k`` over the included
      clients, or a skipped result (``mean=None``, with the reason) when too few
      clients remain for the protocol to finish. Never raises for a dropout
      pattern nor for one client's model, DP configuration or length (refused: it costs
      only itself); raises ConfigurationError for inputs that break the contract for the
      round (duplicate ids, undecidable lengths, a configuration refused for everyone).
    """

    @property
    def name(self) -> str:
        """Short name, as accepted by :func:`fl_core.aggregators.make_aggregator`."""
        ...

    def aggregate(
        self,
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage] | None = None,
        *,
        rng: np.random.Generator,
        segments: SegmentTable | None = None,
        model_digest: bytes | None = None,
    ) -> AggregationResult:
        """The weighted mean of ``updates`` minus the dropouts and the refused (see the class docstring)."""
        ...


def check_round(
    updates: Sequence[ClientUpdate],
    dropouts: Mapping[int, DropoutStage] | None,
    max_clients: int | None = None,
    *,
    rng: object,
) -> dict[int, DropoutStage]:
    """Validate one round's inputs; return the dropouts as a plain dict.

    Checks: ``rng`` a numpy Generator (ConfigurationTypeError, also where the aggregator draws
    nothing from it: a wrong argument, a legacy ``RandomState`` too, is refused alike by every
    aggregator, not ignored by one), ``dropouts`` a mapping or None,
    at least one update, distinct client ids, every dropout id among the updates
    with a :class:`DropoutStage` value, and (if given) at most ``max_clients`` updates. Raises
    ConfigurationError. Not the lengths: one hospital's length is its own fault unless nothing
    says which length is right (:func:`fl_core.aggregators.binding.check_lengths`, after the models).
    """
    require_rng("rng", rng)  # what every aggregator but plain draws round seeds from
    if dropouts is not None:
        require_mapping("dropouts", dropouts)
    updates = require_sequence("updates", updates)
    if not updates or not all(isinstance(update, ClientUpdate) for update in updates):
        raise ConfigurationError("a round needs at least one client update, each a ClientUpdate")
    ids = [update.client_id for update in updates]
    if len(set(ids)) != len(ids):
        raise ConfigurationError(f"client ids in a round must be distinct, got {sorted(ids)}")
    if max_clients is not None and len(ids) > max_clients:
        raise ConfigurationError(f"{len(ids)} clients in the round, but the aggregator was set up for {max_clients}")
    stages = dict(dropouts or {})
    for client, stage in stages.items():
        if client not in set(ids):
            raise ConfigurationError(f"dropout given for client {client}, which is not in the round")
        if not isinstance(stage, DropoutStage):
            raise ConfigurationError(f"client {client}: dropout stage must be a DropoutStage, got {stage!r}")
    return stages


def uploaders(updates: Sequence[ClientUpdate], dropouts: Mapping[int, DropoutStage]) -> list[ClientUpdate]:
    """The updates that are sent: clients that do not drop, or drop only at FINALIZE."""
    return [u for u in updates if dropouts.get(u.client_id, DropoutStage.FINALIZE) >= DropoutStage.FINALIZE]


def skipped(
    reason: str,
    bytes_per_client: float,
    seconds: float,
    refused: tuple[tuple[int, str], ...] = (),
    errors: Mapping[int, str] | None = None,
) -> AggregationResult:
    """A result for a round that produced no mean, with the reason (and the clients refused, and the
    messages dropped, before it)."""
    return AggregationResult(
        mean=None, included=frozenset(), bytes_per_client=bytes_per_client, seconds=seconds, skipped_reason=reason,
        refused=refused, errors=dict(errors or {}),
    )  # fmt: skip


def with_withheld(result: AggregationResult, withheld: Sequence[tuple[int, str]]) -> AggregationResult:
    """``result`` with the clients ``withheld`` (client id, reason) added to its ``withheld`` (a client
    it names already keeps one entry, both reasons joined), and named in its skipped reason (when it
    was skipped): up to :data:`~secagg.masking.server_state.SUMMARY_IDS` with their reasons, then how
    many more (the reason stays short however many clients there are; ``withheld`` keeps them all)."""
    if not withheld:
        return result
    reason = result.skipped_reason
    if reason is not None:
        named = "; ".join(f"client {client}: {why}" for client, why in withheld[:SUMMARY_IDS])
        if len(withheld) > SUMMARY_IDS:
            named += f"; and {len(withheld) - SUMMARY_IDS} more (every reason is in withheld)"
        reason = f"{reason}; withheld (update not encodable): {named}"
    reasons = dict(result.withheld)
    for client, why in withheld:
        reasons[client] = why if client not in reasons else f"{why}; {reasons[client]}"
    return dataclasses.replace(result, skipped_reason=reason, withheld=tuple(sorted(reasons.items())))


def client_rounding_rng(round_seed: int, client_id: int) -> np.random.Generator:
    """The rounding randomness of ``client_id`` in the round whose seed is ``round_seed``.

    Depends only on the two numbers, not on which other clients take part or in
    which order they are processed.
    """
    return np.random.default_rng([round_seed, client_id])


def mean_of(updates: Sequence[ClientUpdate]) -> FloatVector:
    """The float weighted mean ``sum n_k u_k / sum n_k`` (the plain baseline's arithmetic).

    Finite updates have a finite mean (a convex combination), but ``n_k u_k`` can leave binary64
    on the way: then the mean is taken as ``sum (n_k / sum n_k) u_k``, whose partial sums stay
    within the largest update. ConfigurationError if even that is not finite (never an infinite
    or NaN mean handed back as if it were one)."""
    weights = np.array([u.num_samples for u in updates], dtype=np.float64)
    stacked = np.stack([u.vector for u in updates])
    with np.errstate(over="ignore", invalid="ignore"):
        mean: FloatVector = weights @ stacked / weights.sum()
        if not np.all(np.isfinite(mean)):
            mean = (weights / weights.sum()) @ stacked
    if not np.all(np.isfinite(mean)):
        raise ConfigurationError("the weighted mean of the updates leaves binary64")
    return mean
