"""The model's arrays as one float64 vector, and the digest that binds them (docs/spec.md, section 15.3).

:func:`flatten_arrays` maps the ``(record key, array name, ndarray)`` triples of a
Flower message to one float64 vector and its :class:`ArrayLayout`;
:func:`unflatten_arrays` is the inverse; :func:`arrays_digest` hashes both. Exact
for numpy's float, complex, bool and integer dtypes up to 2^53. Needs no ``flwr``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from secagg._validate import exact_float64, require_instance
from secagg.errors import ConfigurationError

__all__ = ["ArrayLayout", "ArraySpec", "arrays_digest", "flatten_arrays", "unflatten_arrays"]


@dataclass(frozen=True)
class ArraySpec:
    """One named array of a model: ``record`` (the ArrayRecord's key), ``name``, dtype and shape."""

    record: str
    name: str
    dtype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in self.shape):
            raise ConfigurationError(f"array {self.record}/{self.name}: shape must be non-negative ints")
        try:
            np.dtype(self.dtype)
        except TypeError as exc:
            raise ConfigurationError(f"array {self.record}/{self.name}: unknown dtype {self.dtype!r}") from exc

    @property
    def length(self) -> int:
        """Vector entries: the element count (twice that for complex dtypes)."""
        count = math.prod(self.shape)
        return 2 * count if np.dtype(self.dtype).kind == "c" else count


@dataclass(frozen=True)
class ArrayLayout:
    """The arrays of a model in vector order; :attr:`size` is the vector's length."""

    specs: tuple[ArraySpec, ...]

    @property
    def size(self) -> int:
        """Length of the flat vector."""
        return sum(spec.length for spec in self.specs)

    def describe(self) -> bytes:
        """A canonical byte description (for :func:`arrays_digest`)."""
        out = bytearray()
        for spec in self.specs:
            for text in (spec.record, spec.name, spec.dtype):
                data = text.encode("utf-8")
                out += len(data).to_bytes(4, "big") + data
            out += len(spec.shape).to_bytes(4, "big") + b"".join(d.to_bytes(8, "big") for d in spec.shape)
        return bytes(out)


def flatten_arrays(arrays: Sequence[tuple[str, str, npt.NDArray[Any]]]) -> tuple[npt.NDArray[np.float64], ArrayLayout]:
    """``(record key, array name, ndarray)`` triples as one float64 vector (C order, in sequence order).

    Exact for float16/32/64, complex64/128 (real then imaginary part), bool and
    integers up to 2^53 in magnitude; other dtypes raise ConfigurationError.
    """
    specs, pieces = [], []
    for record, name, array in arrays:
        kind = array.dtype.kind
        who = f"array {record}/{name}"
        if kind == "c" and array.dtype.itemsize <= 16:
            piece = np.ascontiguousarray(array).reshape(-1).view(array.real.dtype).astype(np.float64)
        else:
            real = exact_float64(who, array)  # exact, or refused (integers beyond 2^53)
            if real is None:
                raise ConfigurationError(f"{who}: dtype {array.dtype} cannot be aggregated")
            piece = real
        specs.append(ArraySpec(record, name, array.dtype.str, tuple(int(d) for d in array.shape)))
        pieces.append(piece)
    vector = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float64)
    return vector, ArrayLayout(tuple(specs))


def unflatten_arrays(vector: npt.NDArray[np.float64], layout: ArrayLayout) -> list[npt.NDArray[Any]]:
    """Arrays shaped and typed as ``layout`` says, from ``vector`` (inverse of :func:`flatten_arrays`).

    Floats are rounded to their dtype; integers are rounded half to even and
    refused if out of range; bools are ``value != 0`` after rounding.
    """
    require_instance("layout", layout, ArrayLayout)
    if not isinstance(vector, np.ndarray) or vector.ndim != 1 or vector.shape[0] != layout.size:
        raise ConfigurationError(f"vector does not fit arrays of {layout.size} values")
    arrays: list[npt.NDArray[Any]] = []
    offset = 0
    for spec in layout.specs:
        piece = vector[offset : offset + spec.length]
        offset += spec.length
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "c":
            array = piece.astype(dtype.type(0).real.dtype).view(dtype)
        elif dtype.kind == "f":
            array = piece.astype(dtype)
        elif not np.all(np.isfinite(piece)):  # NaN would cast to an arbitrary integer
            raise ConfigurationError(f"array {spec.record}/{spec.name}: NaN or infinity for {dtype}")
        elif dtype.kind == "b":
            array = np.rint(piece) != 0
        else:
            rounded = np.rint(piece)
            info = np.iinfo(dtype)
            if rounded.size and (rounded.min() < info.min or rounded.max() > info.max):
                raise ConfigurationError(f"array {spec.record}/{spec.name}: values fall outside {dtype}")
            array = rounded.astype(dtype)
        arrays.append(array.reshape(spec.shape))
    return arrays


def arrays_digest(vector: npt.NDArray[np.float64], layout: ArrayLayout) -> bytes:
    """SHA-256 of the layout description and the vector's little-endian float64 bytes."""
    digest = hashlib.sha256(b"secagg/v1/flower-arrays" + layout.describe())
    digest.update(np.ascontiguousarray(vector, dtype="<f8").tobytes())
    return digest.digest()
