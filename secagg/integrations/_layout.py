"""The flat layout shared by the PyTorch and Keras adapters: named arrays back to back.

Both adapters turn a model into one float64 vector and remember where each named
array sits (:class:`ArraySpec`, :class:`FlatLayout`); PyTorch names are
state-dict keys, Keras names are variable paths. The layout also gives the
vector's *segments* (:meth:`FlatLayout.segments`): one per non-empty array, so
that every tensor gets its own clip and its own clipped count in the secure sum
(:mod:`secagg.segments`). Integer and boolean arrays (``num_batches_tracked``,
masks, counters) become *integer* segments, aggregated exactly (scale 1, no
clip); an update of one of them that is not a whole number within
``+-(2^(bits-1) - 1)`` is refused, never clipped.

:func:`check_cast` is the adapters' guard when a vector goes back to a narrower
floating dtype: rounding is fine, but a value the dtype cannot hold (beyond its
range, an infinity or NaN it has no code for, a sign an unsigned format lacks) is
refused instead of becoming inf, NaN or the largest value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from secagg.errors import ConfigurationError
from secagg.segments import Segment, SegmentTable

__all__ = ["ArraySpec", "FlatLayout", "check_cast", "float_vector", "require_layout"]


@dataclass(frozen=True)
class ArraySpec:
    """Where one named array sits in a flat vector.

    Attributes:
        name: the array's name (unique in its layout).
        shape: its shape.
        dtype: its dtype name (the framework's, without a module prefix).
        offset: index of its first entry in the vector.
        length: number of vector entries: the element count, twice that for
            two-entry dtypes (complex; PyTorch's packed ``float4_e2m1fn_x2``).
    """

    NOUN: ClassVar[str] = "array"
    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int
    length: int

    def __post_init__(self) -> None:
        noun = self.NOUN
        if not isinstance(self.name, str):
            raise ConfigurationError(f"{noun} name must be a string, got {self.name!r}")
        if not self.name.isascii():  # the model digest hashes names as UTF-8, which has no lone surrogate
            try:
                self.name.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ConfigurationError(
                    f"{noun} name {self.name!r} is not valid Unicode (a lone surrogate, as decoding bytes that "
                    "are not UTF-8 leaves): the model digest names each tensor in UTF-8; rename it"
                ) from exc
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in self.shape):
            raise ConfigurationError(f"{noun} {self.name!r}: shape must be non-negative ints, got {self.shape}")
        if self.offset < 0:
            raise ConfigurationError(f"{noun} {self.name!r}: offset must be non-negative, got {self.offset}")
        if self.length != self.entries_per_element() * math.prod(self.shape):
            raise ConfigurationError(
                f"{noun} {self.name!r}: {self.length} entries do not fit shape {self.shape} of {self.dtype}"
            )

    def entries_per_element(self) -> int:
        """Vector entries per element of the dtype (1; adapters override for two-entry dtypes)."""
        return 1

    @property
    def integer(self) -> bool:
        """True for an integer or boolean dtype: aggregated as an exact integer segment."""
        return self.dtype == "bool" or self.dtype.startswith(("int", "uint"))


_SHOWN = 80
"""How many characters of an untrusted name's repr a message shows."""


def _shown(name: object) -> str:
    """``repr(name)`` (control characters escaped), cut to :data:`_SHOWN` characters."""
    text = repr(name)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


@dataclass(frozen=True)
class FlatLayout:
    """The named arrays of a flat vector, back to back from index 0.

    Invariant: names are unique and ``specs[i + 1].offset == specs[i].offset +
    specs[i].length``; :attr:`size` is the vector's length.
    """

    NOUN: ClassVar[str] = "array"
    specs: tuple[ArraySpec, ...]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for spec in self.specs:
            if spec.name in seen:
                # A hospital's name is untrusted: escaped (repr) and cut, so a report stays readable and short.
                raise ConfigurationError(
                    f"{self.NOUN} names in a layout must be unique: {_shown(spec.name)} appears twice "
                    f"(give the {self.NOUN}s distinct names)"
                )
            seen.add(spec.name)
        offset = 0
        for spec in self.specs:
            if spec.offset != offset:
                raise ConfigurationError(f"{self.NOUN} {spec.name!r} starts at {spec.offset}, expected {offset}")
            offset += spec.length

    @property
    def size(self) -> int:
        """Length of the flat vector."""
        return self.specs[-1].offset + self.specs[-1].length if self.specs else 0

    @property
    def names(self) -> tuple[str, ...]:
        """The array names in vector order."""
        return tuple(spec.name for spec in self.specs)

    def first_difference(self, other: FlatLayout, where: str = "here", elsewhere: str = "there") -> str | None:
        """None if ``other`` is this layout; otherwise the first difference, for a message:
        ``"weight 0 is 'b/kernel' here, 'a/kernel' in the global model"`` (``where`` names
        this layout, ``elsewhere`` the other). Names are compared first, then shapes and
        dtypes, then the count."""
        if self == other:
            return None
        noun = self.NOUN
        for index, (mine, theirs) in enumerate(zip(self.specs, other.specs, strict=False)):
            if mine.name != theirs.name:
                return f"{noun} {index} is {mine.name!r} {where}, {theirs.name!r} {elsewhere}"
            if (mine.shape, mine.dtype, mine.length) != (theirs.shape, theirs.dtype, theirs.length):
                return (
                    f"{noun} {index} ({mine.name!r}) is {mine.dtype} {mine.shape} {where}, "
                    f"{theirs.dtype} {theirs.shape} {elsewhere}"
                )
        return f"{len(self.specs)} {noun}s {where}, {len(other.specs)} {elsewhere}"

    def segments(self, clips: Mapping[str, float] | None = None) -> SegmentTable:
        """One segment per non-empty array, in vector order: integer arrays exact, float
        arrays with the clip ``clips`` names (or none yet: the aggregator's clip).

        Raises ConfigurationError for a clip given to an unknown or integer array."""
        clips = dict(clips or {})
        floats = {spec.name for spec in self.specs if not spec.integer}
        unknown = sorted(set(clips) - floats)
        if unknown:
            raise ConfigurationError(f"clip given for {unknown[0]!r}, which is not a floating {self.NOUN} here")
        segments = tuple(
            Segment(spec.name, spec.length, clips.get(spec.name), spec.integer) for spec in self.specs if spec.length
        )
        if not segments:
            raise ConfigurationError(
                f"the global model holds no values to aggregate: it has no {self.NOUN} with an entry "
                f"(an empty model, or only empty {self.NOUN}s); build the model, and give it its "
                f"{self.NOUN}s, before aggregating (a layout without any {self.NOUN} entries has no segments)"
            )
        return SegmentTable(segments)


def check_cast(
    spec: ArraySpec, wanted: npt.NDArray[np.float64], got: npt.NDArray[Any], largest: float, below_largest: float
) -> None:
    """Refuse a conversion of ``wanted`` to ``spec``'s dtype that did more than round.

    ``got`` is the converted values read back as float64; ``largest`` and ``below_largest``
    are the dtype's largest finite value and the one just below it (their difference is a
    unit in the last place at the top of the range; finfo's eps is not used, torch's is
    wrong for float8_e5m2fnuz). A finite value must come back finite, without a change of
    sign (zero is fine: underflow) and within half that unit, or the conversion overflowed
    to an infinity, made a NaN or saturated at the largest value. An infinity must come
    back as itself and a NaN as a NaN (formats without them change them). Raises
    ConfigurationError naming the array, the value and what it would have become.
    """
    got = np.asarray(got, dtype=np.float64)
    half_ulp = (largest - below_largest) / 2
    with np.errstate(all="ignore"):
        finite = np.isfinite(wanted)
        bad = finite & (~np.isfinite(got) | (wanted * got < 0) | (np.abs(got - wanted) > half_ulp))
        bad |= np.isinf(wanted) & (got != wanted)
        bad |= np.isnan(wanted) & ~np.isnan(got)
    if bad.any():
        index = int(np.argmax(bad))
        raise ConfigurationError(
            f"{spec.NOUN} {spec.name!r}: {float(wanted[index])!r} does not fit {spec.dtype} (largest finite "
            f"{largest:g}); it would become {float(got[index])!r}"
        )


def float_vector(vector: object, layout: FlatLayout) -> npt.NDArray[np.float64]:
    """``vector`` as a one-dimensional float64 array of ``layout.size`` entries; ConfigurationError for
    anything else, and for an object numpy cannot read (a tensor that requires grad, one on another
    device): its own error is not the library's."""
    try:
        values = np.asarray(vector)
    except MemoryError:
        raise  # this party's own resources, not the vector's fault
    except Exception as exc:  # any foreign error reading an untrusted vector is refused in the library's words
        raise ConfigurationError(
            f"expected a one-dimensional float vector, got a {type(vector).__name__} numpy cannot read "
            "(detach a tensor and move it to the CPU first)"
        ) from exc
    if values.ndim != 1 or values.dtype.kind != "f":
        raise ConfigurationError(f"expected a one-dimensional float vector, got {values.dtype} of shape {values.shape}")
    if values.shape[0] != layout.size:
        raise ConfigurationError(f"vector has {values.shape[0]} entries, the layout needs {layout.size}")
    converted: npt.NDArray[np.float64] = values.astype(np.float64, copy=False)
    return converted


def require_layout(layout: object) -> FlatLayout:
    """``layout`` if it is a :class:`FlatLayout` (either adapter's); ConfigurationError otherwise."""
    if not isinstance(layout, FlatLayout):
        raise ConfigurationError(f"expected a layout from flattening, got {type(layout).__name__}")
    return layout
