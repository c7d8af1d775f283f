"""Shared by the PyTorch and Keras adapters: build the updates, discover the clips, aggregate.

:func:`aggregate_flat_models` is the body of both adapters' ``aggregate_models``:
it flattens the models with the adapter's own function, withholds a hospital whose
local model's layout (or that of the copy it trained from) differs from the global one's
(it goes silent at ``UPLOAD``, named in ``result.withheld``), builds each hospital's update (local
minus the model it trained from, declaring that model's digest:
:mod:`secagg.integrations._model_binding`) and hands them to
:func:`aggregate_updates` with the global model's digest, so a hospital that
trained from another model is refused in every round of the call; then, when
the caller gave no clip and discovery is on, one secure range-discovery round
(:mod:`secagg.ranges`) through the same aggregator, then the aggregation with
the discovered clip table. The discovery round is an ordinary round of the
aggregator with integer segments only (each hospital's weight 1), so it has
its own round number and its own descriptor (its segment table, whose header
names the buckets); the server learns the federation-wide histogram only.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import numpy.typing as npt

from secagg._validate import is_int, require_int, require_mapping, require_rng, require_sequence
from secagg.errors import ConfigurationError, ConfigurationTypeError, SecAggError
from secagg.integrations._foreign import foreign_reason
from secagg.integrations._layout import FlatLayout
from secagg.integrations._model_binding import FlatModel, bound_digest, declared_update, hidden_difference
from secagg.ranges import RangeDiscovery
from secagg.segments import SegmentTable

if TYPE_CHECKING:
    from fl_core.aggregators.base import AggregationResult, Aggregator, ClientUpdate, DropoutStage

__all__ = [
    "DISCOVERY_RNG_SEED",
    "aggregate_flat_models",
    "aggregate_updates",
    "client_ids_of",
    "discover_clips",
    "new_global",
]

Model = TypeVar("Model")
Layout = TypeVar("Layout", bound=FlatLayout)

DISCOVERY_RNG_SEED = 0
"""Seed of the discovery round's rounding generator: integer segments never use it,
and a fixed one leaves the caller's ``rng`` to the aggregation alone."""


def _listed(name: str, value: object) -> list[object]:
    """``value`` as a list if it is a sequence (not a string) or a one-dimensional numpy array."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return list(value)
    return list(require_sequence(name, value))


def client_ids_of(models: Sequence[object], client_ids: Sequence[int] | None, num_samples: Sequence[int]) -> list[int]:
    """``client_ids`` (default 0..m-1) after checking one id and one sample count per model
    (ConfigurationError for anything but sequences or one-dimensional arrays)."""
    try:
        count = len(_listed("local_models", models))
    except ConfigurationTypeError:
        raise ConfigurationTypeError(
            f"local_models must be a list or tuple with one model per hospital, got {type(models).__name__}: "
            "the call is aggregate_models(global_model, local_models, aggregator, num_samples=..., rng=...)"
        ) from None
    samples = _listed("num_samples", num_samples)
    ids: list[object] = list(range(count)) if client_ids is None else _listed("client_ids", client_ids)
    if len(ids) != count or len(samples) != count:
        raise ConfigurationError(
            f"{count} models need as many client ids and sample counts, got {len(ids)} and {len(samples)}"
        )
    return ids  # type: ignore[return-value]  # ints or refused by ClientUpdate


def _bits(aggregator: Aggregator) -> int | None:
    """The quantizer's bits, or None for an aggregator that does not quantize (``plain``)."""
    quantizer = getattr(aggregator, "quantizer", None)
    config = getattr(quantizer, "config", None)
    bits = getattr(config, "bits", None)
    return bits if isinstance(bits, int) else None


def discover_clips(
    aggregator: Aggregator,
    updates: Sequence[ClientUpdate],
    segments: SegmentTable,
    dropouts: Mapping[int, DropoutStage] | None = None,
    discovery: RangeDiscovery | None = None,
    *,
    model_digest: bytes | None = None,
) -> tuple[dict[str, float], AggregationResult] | None:
    """One secure range-discovery round: the clip of every float segment, and the round's result.

    The round runs through the aggregator under any wrapper (:func:`fl_core.wrapping.innermost`):
    the histogram is summed whole, and a wrapper's state (a sparse round's error-feedback
    residuals) is left to the model's own round. Returns None for an aggregator that does not
    quantize (nothing to clip). The
    result's ``mean`` is the histogram sum divided by the contributors; if the round
    was skipped, the clips are empty. Each histogram declares its update's model digest and the
    round binds ``model_digest``, so a hospital refused for another model adds no histogram.
    """
    bits = _bits(aggregator)
    if bits is None:
        return None
    # Around any wrapper: a sparse one would send a subset of the histogram (and keep the rest
    # in each hospital's error-feedback residual, to be added to its next model update), a
    # rotated one would mix the buckets. The protocol underneath sums the histogram whole.
    aggregator = importlib.import_module("fl_core.wrapping").innermost(aggregator)
    discovery = discovery or RangeDiscovery()
    client_update = importlib.import_module("fl_core.aggregators.base").ClientUpdate
    table = discovery.table(segments, bits)
    histograms = [
        client_update(u.client_id, discovery.encode(u.vector, segments, bits), 1, model_digest=u.model_digest)
        for u in updates
    ]
    result = aggregator.aggregate(
        histograms, dropouts, rng=np.random.default_rng(DISCOVERY_RNG_SEED), segments=table, model_digest=model_digest
    )
    if result.mean is None:
        return {}, result
    contributors = len(result.included)
    summed = discovery.decode(result.mean * contributors, segments, bits, contributors)
    return discovery.clips(summed), result


def aggregate_updates(
    aggregator: Aggregator,
    updates: Sequence[ClientUpdate],
    segments: SegmentTable,
    *,
    rng: np.random.Generator,
    dropouts: Mapping[int, DropoutStage] | None,
    clips: Mapping[str, float] | None,
    discovery: RangeDiscovery | bool | None,
    model_digest: bytes,
) -> tuple[AggregationResult, AggregationResult | None]:
    """The adapters' FedAvg round over the hospitals' updates, bound to the global model's ``model_digest``.

    ``discovery``: ``None`` (default) discovers the clips securely when ``clips`` is
    not given; ``False`` never (the aggregator's own clip); ``True`` or a
    :class:`~secagg.ranges.RangeDiscovery` discovers the clips of the segments
    ``clips`` leaves open. A skipped discovery round skips the aggregation too.
    Returns the aggregation's result and the discovery round's (None if none ran).
    """
    if discovery is None:
        discovery = not clips
    if not isinstance(discovery, bool | RangeDiscovery):
        raise ConfigurationError(f"discovery must be None, a bool or a RangeDiscovery, got {discovery!r}")
    found = None
    if discovery is not False and RangeDiscovery.open_segments(segments):
        found = discover_clips(
            aggregator, updates, segments, dropouts, discovery if isinstance(discovery, RangeDiscovery) else None,
            model_digest=model_digest,
        )  # fmt: skip
        if found is not None:
            discovered, outcome = found
            if outcome.mean is None:
                return outcome, outcome
            segments = segments.with_clips(discovered)
    result = aggregator.aggregate(updates, dropouts, rng=rng, segments=segments, model_digest=model_digest)
    return result, None if found is None else found[1]


def aggregate_flat_models(
    flatten: Callable[[Model], tuple[npt.NDArray[np.float64], Layout]],
    global_model: Model,
    local_models: Sequence[Model],
    aggregator: Aggregator,
    *,
    num_samples: Sequence[int],
    rng: np.random.Generator,
    client_ids: Sequence[int] | None,
    dropouts: Mapping[int, DropoutStage] | None,
    clips: Mapping[str, float] | None,
    discovery: RangeDiscovery | bool | None,
    trained_from: Mapping[int, Model] | None = None,
    logger: logging.Logger,
    hidden: Callable[[Model], FlatModel | None] | None = None,
    frozen: Callable[[Model], FlatModel | None] | None = None,
    local: tuple[str, ...] = (),
) -> tuple[npt.NDArray[np.float64], Layout, AggregationResult, AggregationResult | None]:
    """FedAvg of models through ``aggregator`` once ``flatten`` turns each into a flat vector and its layout.

    A hospital whose local model's layout differs from the global model's in any field (a name,
    so an order, a shape, a dtype, the count), or from that of the copy it trained from, is
    withheld: it goes silent at ``UPLOAD`` (a stand-in of zeros keeps the round's shape, never
    sent), it is named with the first differing array in both results' ``withheld``, and the
    others' mean is the round's without its upload (skipped, with the reason, if too few remain).
    So is a hospital whose model (or the copy it trained from) the adapter cannot flatten, or
    whose update is not finite (NaN or infinite weights): a library error of its own, withheld
    with that reason; or whose model raises a foreign exception while it is read (a module's
    ``named_parameters``, a state dict's lookup, a Keras layer's weights): withheld naming the
    exception's type only, "reading it raised RuntimeError (its message is not reported)": the
    round's report goes to the server, and a foreign text can carry the hospital's shapes and
    values, so it is logged at DEBUG on ``logger`` (the adapter's) instead
    (:func:`~secagg.integrations._foreign.foreign_reason`). ``KeyboardInterrupt``, ``SystemExit``
    and ``MemoryError`` still end the call, and so does any failure of ``global_model`` (the
    caller's own object).
    ``client_ids=None`` (0..m-1 in the call's order) is refused with an aggregator that keeps
    per-hospital residuals (:func:`fl_core.wrapping.keeps_residuals`): those ids would follow the
    list's order, not the hospitals, across calls.
    A global model without segments raises for everyone; a sample count that is not an
    integer (numpy's included) is refused, never truncated. Client k's update is its model
    minus the one it trained from (``trained_from[k]``, by default ``global_model``) and declares
    that model's digest; the rounds bind the global model's digest, so a hospital that trained
    from another model is refused (``result.refused``) and the round goes on without it.
    ``hidden`` (the PyTorch adapter's) gives what a model holds outside its vector (a module's
    non-persistent buffers), bound into every digest (:func:`~secagg.integrations._model_binding.bound_digest`);
    a hospital whose local model holds other such values than the copy it trained from is withheld
    naming the first (:func:`~secagg.integrations._model_binding.hidden_difference`). ``frozen`` (the
    Keras adapter's, under ``trainable_only``) gives what a model holds outside its vector that shapes
    training but may change in it (its non-trainable weights): bound into the global model's digest and
    into that of the model each hospital trained from, never compared with the local model's; ``local``
    (the Keras adapter's ``local_weights``) names the non-trainable weights ``frozen`` leaves out as each
    hospital's own, bound by name into every digest. Returns the global vector,
    its layout, the aggregation's result and the discovery round's
    (:func:`aggregate_updates`).
    """
    require_rng("rng", rng)
    if not callable(getattr(aggregator, "aggregate", None)):  # e.g. its name, "plain"
        raise ConfigurationTypeError(
            f"aggregator must be an fl_core aggregator (fl_core.aggregators.make_aggregator(...)), got "
            f"{type(aggregator).__name__}"
        )
    for name, mapping in (("dropouts", dropouts), ("clips", clips), ("trained_from", trained_from)):
        if mapping is not None:
            require_mapping(name, mapping)
    if client_ids is None and importlib.import_module("fl_core.wrapping").keeps_residuals(aggregator):
        raise ConfigurationError(
            "this aggregator keeps each hospital's error-feedback residual under its client id, and the default "
            "ids (0..m-1 in this call's order) change when a hospital drops out or the order changes: one "
            "hospital's residual would be added to another's update; pass client_ids, the same id for the same "
            "hospital in every call"
        )
    ids = client_ids_of(local_models, client_ids, num_samples)
    outside = sorted(set(trained_from or {}) - set(ids), key=repr)
    if outside:
        raise ConfigurationError(f"trained_from names client {outside[0]!r}, which is not in the round")
    def hidden_of(model: Model) -> FlatModel | None:
        return None if hidden is None else hidden(model)

    def frozen_of(model: Model) -> FlatModel | None:
        return None if frozen is None else frozen(model)

    base, layout = flatten(global_model)
    global_frozen = frozen_of(global_model)
    segments = layout.segments(clips)
    digest = bound_digest((base, layout), hidden_of(global_model), global_frozen, local)
    updates: list[ClientUpdate] = []
    stages, withheld = dict(dropouts or {}), []
    client_update = importlib.import_module("fl_core.aggregators.base").ClientUpdate
    upload = importlib.import_module("fl_core.aggregators.base").DropoutStage.UPLOAD
    for client, model, count in zip(ids, list(local_models), list(num_samples), strict=True):
        if is_int(count) and int(count) == 0:
            raise ConfigurationError(
                f"client {client}: num_samples is 0: a hospital without samples has no weight in the mean; "
                "leave it out of the round (its model, its count and its client id)"
            )
        samples = require_int(f"client {client}: num_samples", count, 1)
        try:  # a model that cannot be flattened, or an update that is not finite, is this hospital's alone
            mine = flatten(model)
            given = trained_from is not None and client in trained_from
            source = trained_from[client] if trained_from is not None and given else global_model
            received = flatten(source) if given else (base, layout)
            pair = (hidden_of(source), hidden_of(model))
            reason = _layout_refusal(mine[1], layout, received[1]) or hidden_difference(pair[1], pair[0])
            if reason is None:
                source_frozen = frozen_of(source) if given else global_frozen
                updates.append(declared_update(
                    client, received, mine, samples, hidden=pair, frozen=source_frozen, local_names=local
                ))  # fmt: skip
                continue
        except SecAggError as exc:
            reason = f"its model cannot be summed: {exc}"
        except MemoryError:
            raise  # the aggregating party's own resources, not this hospital's fault
        except Exception as exc:  # a foreign error reading this hospital's model is its alone
            reason = f"its model cannot be summed: {foreign_reason('reading it', exc, logger=logger, hospital=client)}"
        # Its update cannot be summed with the others': withheld at UPLOAD, as fl_core withholds
        # an update it cannot encode; a stand-in of zeros keeps the round's shape (never sent).
        withheld.append((client, reason))
        stages[client] = min(stages.get(client, upload), upload)
        updates.append(client_update(client, np.zeros(layout.size), samples, model_digest=digest))
    result, found = aggregate_updates(
        aggregator, updates, segments, rng=rng, dropouts=stages if withheld else dropouts, clips=clips,
        discovery=discovery, model_digest=digest,
    )  # fmt: skip
    with_withheld = importlib.import_module("fl_core.aggregators.base").with_withheld
    result = with_withheld(result, withheld)
    found = None if found is None else with_withheld(found, withheld)
    return base, layout, result, found


def _layout_refusal(local: FlatLayout, layout: FlatLayout, received: FlatLayout) -> str | None:
    """Why a hospital's local model (or the copy it trained from) cannot join a round of the
    global ``layout`` (the first differing array), or None if it can."""
    for other, whose, model in (
        (layout, "the global model's", "the global model"),
        (received, "those of the model it trained from", "the model it trained from"),
    ):
        difference = local.first_difference(other, elsewhere=f"in {model}")
        if difference is not None:
            return f"model {layout.NOUN}s differ from {whose} (names, shapes or dtypes): {difference}"
    return None


def new_global(
    base: npt.NDArray[np.float64], mean: npt.NDArray[np.float64], layout: FlatLayout
) -> npt.NDArray[np.float64]:
    """``base + mean``, the new global vector; ConfigurationError naming the array if an entry is
    not finite (the base and the mean are, so the sum overflowed float64: never hidden as inf)."""
    with np.errstate(over="ignore", invalid="ignore"):
        total: npt.NDArray[np.float64] = base + mean
    bad = ~np.isfinite(total)
    if bad.any():
        index = int(np.argmax(bad))
        spec = next(s for s in layout.specs if s.offset <= index < s.offset + s.length)
        raise ConfigurationError(
            f"{spec.NOUN} {spec.name!r}: the new global value {float(base[index])!r} + {float(mean[index])!r} "
            "is not finite (float64 overflow)"
        )
    return total
