"""The Keras adapter's weight lists: numpy arrays, named by position or by a mapping's keys, to one
float64 vector and its :class:`WeightsLayout`, and back (:func:`flatten_weights`,
:func:`unflatten_weights`); the layout of a Keras model's weights too
(:func:`secagg.integrations.keras.flatten_model` names them by variable path). The dtype rules
(exact or refused) are :mod:`secagg.integrations._keras_dtypes`'; everything here is re-exported
by :mod:`secagg.integrations.keras`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from secagg.errors import ConfigurationError
from secagg.integrations._keras_dtypes import (
    BOOL,
    COMPLEX,
    INTEGER,
    dtype_kind,
    from_float64,
    resolve_dtype,
    to_float64,
)
from secagg.integrations._layout import ArraySpec, FlatLayout, float_vector, require_layout

__all__ = ["WeightSpec", "WeightsLayout", "flatten_named", "flatten_weights", "unflatten_weights"]

FloatVector = npt.NDArray[np.float64]


@dataclass(frozen=True)
class WeightSpec(ArraySpec):
    """Where one named weight sits in a flat vector (see :class:`~secagg.integrations._layout.ArraySpec`).

    ``name`` is the weight's Keras variable path (``"dense/kernel"``, automatic names
    renumbered: :mod:`secagg.integrations._keras_names`) for a model, its key for a
    mapping, its index in the list (``"0"``, ``"1"``, ...) for a weight list; ``dtype`` its
    numpy dtype name, e.g. ``"float32"`` or ``"bfloat16"``; ``length`` the element
    count, twice that for complex.
    """

    NOUN: ClassVar[str] = "weight"

    def entries_per_element(self) -> int:
        """2 for complex dtypes, else 1 (ConfigurationError for a dtype that cannot be aggregated)."""
        return 2 if dtype_kind(resolve_dtype(self.dtype, self.name), self.name) == COMPLEX else 1

    @property
    def integer(self) -> bool:
        """True for integer (numpy's or ml_dtypes' int4, ...) and boolean dtypes: exact integer segments."""
        return dtype_kind(resolve_dtype(self.dtype, self.name), self.name) in (INTEGER, BOOL)


@dataclass(frozen=True)
class WeightsLayout(FlatLayout):
    """The named weights of a flat vector, back to back from index 0 (see
    :class:`~secagg.integrations._layout.FlatLayout`; :meth:`segments` gives one
    segment per weight, integer weights exact)."""

    NOUN: ClassVar[str] = "weight"

    @property
    def positional(self) -> bool:
        """True if the weights are named by position only (``"0"``, ``"1"``, ...: a weight list's layout)."""
        return self.names == tuple(str(index) for index in range(len(self.specs)))


def flatten_named(named: Sequence[tuple[str, Any]]) -> tuple[FloatVector, WeightsLayout]:
    specs: list[WeightSpec] = []
    pieces: list[FloatVector] = []
    offset = 0
    for name, array in named:
        if not isinstance(array, np.ndarray | np.generic):
            raise ConfigurationError(f"weight {name!r} is a {type(array).__name__}, not a numpy array")
        if isinstance(array, np.ma.MaskedArray):  # np.asarray would keep the masked entries' hidden values
            raise ConfigurationError(f"weight {name!r} is a masked array: fill it (np.ma.filled) or drop the mask")
        values = np.asarray(array)
        kind = dtype_kind(values.dtype, name)
        flat = to_float64(values.reshape(-1), kind, name)
        spec = WeightSpec(name, tuple(int(d) for d in values.shape), values.dtype.name, offset, int(flat.shape[0]))
        specs.append(spec)
        pieces.append(flat)
        offset += spec.length
    layout = WeightsLayout(tuple(specs))
    vector: FloatVector = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float64)
    return vector, layout


def flatten_weights(
    weights: Sequence[Any] | Mapping[str, Any] | npt.NDArray[Any],
) -> tuple[FloatVector, WeightsLayout]:
    """The arrays of ``weights`` in one float64 vector, and the layout.

    ``weights`` is a list (e.g. ``model.get_weights()``; the layout names its arrays
    by position, ``"0"``, ``"1"``, ...) or a mapping of weight names to arrays (the
    layout keeps the names, which are then bound like a model's variable paths).
    Each array in C order, in list (mapping) order. Raises ConfigurationError for a
    name that is not a string, a dtype that cannot be aggregated, an integer beyond
    2^53 in magnitude or a masked array (its masked entries would travel as weights).
    """
    if isinstance(weights, Mapping):
        if not all(isinstance(name, str) for name in weights):
            raise ConfigurationError("weight names must be strings")
        return flatten_named(list(weights.items()))
    if isinstance(weights, np.ndarray | str | bytes) or not isinstance(weights, Sequence):  # a str's items: str
        raise ConfigurationError(f"expected a list of numpy arrays or a mapping of names, got {type(weights).__name__}")
    return flatten_named([(str(index), array) for index, array in enumerate(weights)])


def unflatten_weights(vector: npt.ArrayLike, layout: WeightsLayout) -> list[npt.NDArray[Any]]:
    """New numpy arrays shaped and typed as ``layout`` describes, from ``vector``, in layout order.

    Inverse of :func:`flatten_weights` (and :func:`~secagg.integrations.keras.flatten_model`), bit for bit
    on its output; the list goes straight into ``model.set_weights``. A vector
    that did not come from flattening (an aggregate) is converted with the
    rounding rules in :mod:`secagg.integrations.keras`'s docstring. ConfigurationError for a
    ``vector`` numpy cannot read as one float array of the layout's size (a tensor that requires
    grad or is on another device: detach it and move it to the CPU).
    """
    require_layout(layout)
    values = float_vector(vector, layout)
    out: list[npt.NDArray[Any]] = []
    for spec in layout.specs:
        dtype = resolve_dtype(spec.dtype, spec.name)
        piece = values[spec.offset : spec.offset + spec.length]
        out.append(from_float64(piece, dtype, dtype_kind(dtype, spec.name), spec).reshape(spec.shape))
    return out
