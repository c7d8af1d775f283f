"""What binds the PyTorch and Keras adapters' rounds to the global model they hand out.

- :func:`layout_digest`: the 32-byte digest of a flat model (a vector and its
  :class:`~secagg.integrations._layout.FlatLayout`): every array's name (a state-dict key, a
  Keras variable path, a weight list's position), dtype and shape, then the values, so two
  models differ in their digest exactly when their layouts or their values differ (a NaN
  counts as one value, whatever its payload bits).
- :func:`bound_digest`: :func:`layout_digest`, extended by what a PyTorch module holds outside
  its state dict that its forward pass reads: its non-persistent buffers (a mask, a scale; not
  summed, so bound: two hospitals whose models differ only there must not share a digest). A model
  without any (a state dict, a Keras model, most modules) keeps its :func:`layout_digest`, so a
  module and its state dict are one digest exactly when the state dict holds all the module's values.
  Its ``frozen`` values are those a model holds outside its vector that shape training but may
  change in it, so they are bound in the model a hospital trained from and never compared with its
  local model's: a Keras model's non-trainable weights when only the trainable ones are summed (a
  frozen backbone's kernels, batch-norm statistics). Its ``local`` names are the non-trainable
  weights each hospital keeps as its own (the Keras adapter's ``local_weights``): left out of
  ``frozen`` and bound by name, so a hospital that keeps another set declares another digest.
- :func:`declared_update`: a hospital's :class:`~fl_core.aggregators.base.ClientUpdate` built
  from the flat model it received and the flat model it trained from it: local minus received,
  declaring the received model's digest. The aggregation passes the digest of the global model
  the server handed out (``Aggregator.aggregate(..., model_digest=...)``), so a hospital that
  trained from another model (a stale copy, a substituted one) is refused with its reason in
  ``result.refused`` and the round goes on without it
  (:func:`fl_core.aggregators.binding.check_models`).
"""

from __future__ import annotations

import hashlib
import importlib
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from secagg.errors import ConfigurationError
from secagg.integrations._layout import FlatLayout, require_layout

if TYPE_CHECKING:
    from fl_core.aggregators.base import ClientUpdate

__all__ = ["FlatModel", "bound_digest", "declared_update", "hidden_difference", "layout_digest"]

FlatModel = tuple[npt.NDArray[np.float64], FlatLayout]
"""A model as the adapters flatten it: its float64 vector and its layout."""

_DOMAIN = b"secagg/v1/adapter-model"
_HIDDEN_DOMAIN = b"secagg/v1/adapter-model-hidden"
_FROZEN_DOMAIN = b"secagg/v1/adapter-model-frozen"
_LOCAL_DOMAIN = b"secagg/v1/adapter-model-local"


def _field(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def layout_digest(vector: npt.NDArray[np.float64], layout: FlatLayout) -> bytes:
    """SHA-256 of the layout (the adapter's noun, then each array's name, dtype and shape) and the
    vector's little-endian float64 values (NaNs made one value); ConfigurationError if the vector
    does not fit the layout."""
    require_layout(layout)
    if not isinstance(vector, np.ndarray) or vector.ndim != 1 or vector.shape[0] != layout.size:
        raise ConfigurationError(f"a model vector must have the layout's {layout.size} entries")
    digest = hashlib.sha256(_DOMAIN + _field(layout.NOUN.encode()) + len(layout.specs).to_bytes(4, "big"))
    for spec in layout.specs:
        digest.update(_field(spec.name.encode()) + _field(spec.dtype.encode()) + len(spec.shape).to_bytes(4, "big"))
        digest.update(b"".join(dim.to_bytes(8, "big") for dim in spec.shape))
    values = np.ascontiguousarray(vector, dtype="<f8")
    nan = np.isnan(values)
    if nan.any():
        values = np.where(nan, np.nan, values).astype("<f8")
    digest.update(values.tobytes())
    return digest.digest()


def bound_digest(
    model: FlatModel, hidden: FlatModel | None = None, frozen: FlatModel | None = None, local: tuple[str, ...] = ()
) -> bytes:
    """The digest a round binds for ``model``: its :func:`layout_digest` if ``hidden`` (the values the
    model holds outside its flat vector: a PyTorch module's non-persistent buffers) is None or empty,
    else SHA-256 of a domain label, that digest and ``hidden``'s :func:`layout_digest` (names,
    dtypes, shapes, values); then, if ``frozen`` (a Keras model's non-trainable weights when only the
    trainable ones are summed) is neither None nor empty, SHA-256 of another label, that digest and
    ``frozen``'s :func:`layout_digest`; then, if ``local`` (the names of the non-trainable weights
    each hospital keeps as its own, left out of ``frozen``) is not empty, SHA-256 of a third label,
    that digest, the count and each name (length-prefixed, in the given order: the caller sorts)."""
    digest = layout_digest(*model)
    if hidden is not None and hidden[1].specs:
        digest = hashlib.sha256(_HIDDEN_DOMAIN + digest + layout_digest(*hidden)).digest()
    if frozen is not None and frozen[1].specs:
        digest = hashlib.sha256(_FROZEN_DOMAIN + digest + layout_digest(*frozen)).digest()
    if local:
        names = b"".join(_field(name.encode()) for name in local)
        digest = hashlib.sha256(_LOCAL_DOMAIN + digest + len(local).to_bytes(4, "big") + names).digest()
    return digest


def hidden_difference(local: FlatModel | None, received: FlatModel | None) -> str | None:
    """Why a hospital's local model cannot be summed with the model it trained from although their
    layouts agree: the first PyTorch non-persistent buffer (by name, dtype, shape or value) that
    differs between them (never trained nor summed, so the two must hold the same), or None."""
    if local is None or received is None:  # None: no hidden values (a Keras model's, a state dict's)
        other = local if received is None else received
        if other is None or not other[1].specs:
            return None
        return "its model's non-persistent buffers differ from those of the model it trained from: one has none"
    (values, layout), (theirs, their_layout) = local, received
    difference = layout.first_difference(their_layout, elsewhere="in the model it trained from")
    if difference is not None:
        return f"its model's non-persistent buffers differ from those of the model it trained from: {difference}"
    for spec in layout.specs:
        part = slice(spec.offset, spec.offset + spec.length)
        if not np.array_equal(values[part], theirs[part], equal_nan=True):
            return (
                f"its model's non-persistent buffer {spec.name!r} holds other values than in the model it trained "
                "from: such a buffer (in no state dict) is neither trained nor summed, so every hospital's model "
                "must hold the global model's"
            )
    return None


def declared_update(
    client: int,
    received: FlatModel,
    local: FlatModel,
    num_samples: int,
    *,
    hidden: tuple[FlatModel | None, FlatModel | None] = (None, None),
    frozen: FlatModel | None = None,
    local_names: tuple[str, ...] = (),
) -> ClientUpdate:
    """Client ``client``'s update: ``local`` minus ``received``, weighted by ``num_samples``,
    declaring the :func:`bound_digest` of ``received`` (the model it trained from) with
    ``hidden[0]``, the values it holds outside its vector (``hidden[1]``: the local model's), and
    ``frozen``, the received model's values bound but not summed nor compared with the local model's,
    and ``local_names``, the names of the weights kept out of ``frozen`` as each hospital's own.

    ConfigurationError naming the client if the two layouts differ (a name, so an order, a
    shape, a dtype, the count), if their hidden values differ (:func:`hidden_difference`) or for
    a sample count that is not an integer >= 1."""
    (base, layout), (vector, local_layout) = received, local
    difference = local_layout.first_difference(layout, elsewhere="in the model it trained from")
    if difference is not None:
        raise ConfigurationError(
            f"client {client}: model {layout.NOUN}s differ from those of the model it trained from (names, shapes "
            f"or dtypes): {difference}"
        )
    hidden_reason = hidden_difference(hidden[1], hidden[0])
    if hidden_reason is not None:
        raise ConfigurationError(f"client {client}: {hidden_reason}")
    client_update = importlib.import_module("fl_core.aggregators.base").ClientUpdate
    digest = bound_digest(received, hidden[0], frozen, local_names)
    update: ClientUpdate = client_update(client, vector - base, num_samples, model_digest=digest)
    return update
