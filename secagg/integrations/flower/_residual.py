"""A node's error-feedback residual in ``context.state``: stored, read back, dropped.

The residual is what a node has not sent yet of its compressed updates
(:mod:`~secagg.integrations.flower.compression`, "Error feedback"). It lives in the node's
``context.state`` under :data:`RESIDUAL_KEY`, survives across rounds and never leaves the
node. It is stored with a digest of the model's arrays (records, names, shapes), so a
residual kept for another model is never added to this one's update: it is dropped with a
warning, and so is one holding a NaN or an infinity.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import numpy as np
import numpy.typing as npt
from flwr.app import ConfigRecord, RecordDict

from secagg.errors import ProtocolError
from secagg.integrations.flower.arrays import ArrayLayout

__all__ = ["RESIDUAL_KEY", "keep_residual", "stored_residual"]

LOGGER = logging.getLogger("secagg.flower")
RESIDUAL_KEY = "secagg.residual"
"""Key of the ConfigRecord in ``context.state`` holding the node's error-feedback residual."""
RESIDUAL_LABEL = b"secagg/v1/flower-residual"

FloatVector = npt.NDArray[np.float64]


def _layout_digest(layout: ArrayLayout) -> bytes:
    """The arrays' records, names and shapes (not their dtypes: a strategy may average an integer
    array into floats between rounds, and the residual is float64 either way)."""
    shapes = ArrayLayout(tuple(dataclasses.replace(spec, dtype="<f8") for spec in layout.specs))
    return hashlib.sha256(RESIDUAL_LABEL + shapes.describe()).digest()


def stored_residual(state: RecordDict, layout: ArrayLayout) -> FloatVector | None:
    """The node's residual for a model of ``layout`` (None if it has none, or one of another
    model's layout or holding a NaN or an infinity, which is dropped with a warning);
    ProtocolError if the record is malformed."""
    record = state.get(RESIDUAL_KEY)
    if record is None:
        return None
    if not isinstance(record, ConfigRecord):
        raise ProtocolError("the stored residual is not a ConfigRecord")
    digest, data = record.get("layout"), record.get("residual")
    if not isinstance(digest, bytes) or not isinstance(data, bytes):
        raise ProtocolError("the stored residual is incomplete")
    if digest != _layout_digest(layout):
        LOGGER.warning("the stored residual is for another model's arrays; starting from zero")
        return None
    if len(data) != 8 * layout.size:
        raise ProtocolError(f"the stored residual holds {len(data)} bytes, not {8 * layout.size}")
    residual: FloatVector = np.frombuffer(data, dtype="<f8").astype(np.float64)
    if not np.all(np.isfinite(residual)):  # stored before node_update refused one, or edited
        LOGGER.warning("the stored residual holds NaN or infinite values; starting from zero")
        return None
    return residual


def keep_residual(state: RecordDict, layout: ArrayLayout, residual: FloatVector | None) -> None:
    """Store ``residual`` as the node's (dropped when None or all zero)."""
    if residual is None or not np.any(residual):
        if RESIDUAL_KEY in state:
            del state[RESIDUAL_KEY]
        return
    data = np.ascontiguousarray(residual, dtype="<f8").tobytes()
    state[RESIDUAL_KEY] = ConfigRecord({"layout": _layout_digest(layout), "residual": data})

