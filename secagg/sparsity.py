"""Shared-seed partial updates: every hospital sends the same public subset of coordinates.

Why: a masked update costs a ring element per coordinate. Sending only a subset cuts
that in proportion, but the pairwise masks only cancel if every hospital masks the
*same* coordinates in the same order. So the subset is public: drawn from the round's
public seed (or named tensors of the model), bound into the session descriptor, and
identical for every hospital. What a hospital does not send is kept locally as a
residual (:class:`ErrorFeedback`) and added to its next update, so no coordinate is
starved: it is sent, late, when the subset next covers it.

Construction of a random subset (docs/spec.md, "Sparsity"), for a public 32-byte seed,
a dimension d and a count k (1 <= k <= d):

1. expand the seed with the PRG (:mod:`secagg.primitives.prg`) under the label
   :data:`SUBSET_LABEL` into d little-endian unsigned 64-bit words w_0 .. w_(d-1)
   (8 d bytes of AES-128-CTR keystream);
2. the subset is the k indices i with the smallest keys (w_i, i), compared as
   pairs (ties in w broken by the smaller index), listed in ascending index order.

Ranking i.i.d. uniform keys gives every k-subset the same probability (a tie has
probability below d^2 / 2^65 and is broken deterministically). The cost is one
keystream of 8 d bytes and one sort, no Python loop over coordinates.

A layer subset (:meth:`Subset.from_layers`) is the union of the index ranges of
named tensors in a layout ``[(name, size), ...]`` (consecutive in the flattened
vector), in ascending order.

Binding: :meth:`Subset.descriptor_parameters` gives the entries, prefixed
:data:`PARAMETER_PREFIX`, that go into the round's
:class:`~secagg.descriptor.SessionDescriptor` ``parameters``. A hospital given another
seed, count, dimension or layer set is in another session: its masks never meet
the others'.

Error feedback (Seide et al. 2014; Karimireddy et al., ICML 2019): hospital k holds
``e_k`` (zero at first). Each round it forms ``c = u + e_k``, sends ``c[S]`` and,
once its contribution is in the aggregate, sets ``e_k = c`` with the coordinates in
S zeroed. So ``scatter(sent) + e_k_new == u + e_k_old`` coordinate by coordinate,
exactly: no mass is lost, only delayed. ``e_k`` never leaves the hospital.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from secagg._validate import require_bytes
from secagg.errors import ConfigurationError
from secagg.primitives import prg
from secagg.ring import RING64
from secagg.segments import Segment, SegmentTable

__all__ = [
    "MAX_DIMENSION",
    "PARAMETER_PREFIX",
    "SEED_SIZE",
    "SUBSET_LABEL",
    "ErrorFeedback",
    "Subset",
    "count_for_fraction",
    "random_indices",
    "restrict",
]

SEED_SIZE = prg.SEED_SIZE
SUBSET_LABEL = b"secagg/v1/sparsity"
"""The PRG label of the subset keys (domain separation from every mask and the rotation)."""
PARAMETER_PREFIX = "secagg.sparsity."
"""Prefix of the subset's entries in the session descriptor's bound parameters."""
RANDOM_SELECTION = "random/v1"
LAYER_SELECTION = "layers/v1"
MAX_DIMENSION = prg.MAX_LENGTH
MAX_LAYER_NAME_BYTES = 1024

FloatVector = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int64]


def _check_dimension(dimension: int) -> int:
    if isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= MAX_DIMENSION:
        raise ConfigurationError(f"sparsity dimension must be an int in 1..{MAX_DIMENSION}, got {dimension!r}")
    return dimension


def count_for_fraction(fraction: float, dimension: int) -> int:
    """k for a fraction of d coordinates: the nearest integer to ``fraction * d``, at least 1.

    Raises ConfigurationError unless ``0 < fraction <= 1``.
    """
    _check_dimension(dimension)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 < fraction <= 1.0:
        raise ConfigurationError(f"sparsity fraction must be in (0, 1], got {fraction!r}")
    return max(1, min(dimension, math.floor(fraction * dimension + 0.5)))


def random_indices(seed: bytes, dimension: int, count: int) -> IndexArray:
    """The k = ``count`` indices of the random subset of ``seed`` (module docstring), ascending."""
    seed = require_bytes("sparsity seed", seed, SEED_SIZE)
    _check_dimension(dimension)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= dimension:
        raise ConfigurationError(f"sparsity count must be an int in 1..{dimension}, got {count!r}")
    if count == dimension:
        return np.arange(dimension, dtype=np.int64)
    keys = prg.expand(seed, SUBSET_LABEL, dimension, RING64)
    # A stable sort orders equal keys by index: exactly the (w_i, i) order of the spec.
    chosen = np.argsort(keys, kind="stable")[:count]
    indices: IndexArray = np.sort(chosen).astype(np.int64)
    return indices


@lru_cache(maxsize=2)
def _seeded_indices(seed: bytes, dimension: int, count: int) -> IndexArray:
    """:func:`random_indices`, read-only and remembered: :meth:`Subset.random` draws them and
    the subset's own check compares against them, one expansion for both."""
    indices = random_indices(seed, dimension, count)
    indices.setflags(write=False)
    return indices


@dataclass(frozen=True)
class Subset:
    """The coordinates every hospital sends in one round.

    Build with :meth:`random` (a seeded random subset) or :meth:`from_layers` (named
    tensors). ``indices`` are ascending int64 positions in the flattened update.
    """

    dimension: int
    indices: IndexArray = field(repr=False)
    seed: bytes | None = None
    layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_dimension(self.dimension)
        indices = np.asarray(self.indices)
        if indices.ndim != 1 or indices.shape[0] == 0 or indices.dtype.kind not in "iu":
            raise ConfigurationError("a subset's indices must be a non-empty one-dimensional integer array")
        if int(indices[0]) < 0 or int(indices[-1]) >= self.dimension or np.any(np.diff(indices) <= 0):
            raise ConfigurationError(f"a subset's indices must be strictly ascending in 0..{self.dimension - 1}")
        if (self.seed is None) == (not self.layers):
            raise ConfigurationError("a subset comes from a seed or from layer names, exactly one of them")
        frozen = indices.astype(np.int64, copy=True)
        frozen.setflags(write=False)
        if self.seed is not None:
            seed = require_bytes("sparsity seed", self.seed, SEED_SIZE)
            if not np.array_equal(frozen, _seeded_indices(seed, self.dimension, frozen.shape[0])):
                raise ConfigurationError(
                    f"a seeded subset's indices must be those its seed selects ({frozen.shape[0]} of "
                    f"{self.dimension}): the descriptor binds the seed, dimension and count, not other indices"
                )
            object.__setattr__(self, "seed", seed)
        object.__setattr__(self, "indices", frozen)

    @classmethod
    def random(cls, seed: bytes, dimension: int, *, count: int | None = None, fraction: float | None = None) -> Subset:
        """The random subset of ``count`` (or ``fraction`` of ``dimension``) coordinates drawn from ``seed``."""
        if (count is None) == (fraction is None):
            raise ConfigurationError("give the subset's count or its fraction, exactly one")
        k = count if count is not None else count_for_fraction(float(fraction or 0.0), dimension)
        seed = require_bytes("sparsity seed", seed, SEED_SIZE)
        return cls(dimension, _seeded_indices(seed, _check_dimension(dimension), k), seed=seed)

    @classmethod
    def from_layers(cls, layout: Sequence[tuple[str, int]], names: Sequence[str]) -> Subset:
        """The coordinates of the tensors ``names`` in ``layout`` (``[(name, size), ...]`` in flattening order)."""
        offsets: dict[str, tuple[int, int]] = {}
        position = 0
        for name, size in layout:
            if not isinstance(name, str) or not name or name in offsets:
                raise ConfigurationError(f"layout names must be distinct non-empty strings, got {name!r}")
            if len(name.encode("utf-8")) > MAX_LAYER_NAME_BYTES or "\n" in name:
                raise ConfigurationError(f"layer name {name!r} is too long or holds a newline")
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ConfigurationError(f"layer {name!r}: size must be a positive int, got {size!r}")
            offsets[name] = (position, size)
            position += size
        chosen = tuple(dict.fromkeys(names))
        if not chosen:
            raise ConfigurationError("name at least one layer to send")
        unknown = [name for name in chosen if name not in offsets]
        if unknown:
            raise ConfigurationError(f"layers {unknown} are not in the layout; it has {list(offsets)}")
        ordered = sorted(chosen, key=lambda name: offsets[name][0])
        indices = np.concatenate([np.arange(o, o + s, dtype=np.int64) for o, s in (offsets[n] for n in ordered)])
        return cls(_check_dimension(position), indices, layers=tuple(ordered))

    @property
    def count(self) -> int:
        """k, the number of coordinates sent."""
        return int(self.indices.shape[0])

    @property
    def fraction(self) -> float:
        """k / d."""
        return self.count / self.dimension

    def gather(self, vector: npt.ArrayLike) -> FloatVector:
        """The subset's coordinates of a full-length vector (what a hospital sends)."""
        full = self._vector(vector, self.dimension, "vector")
        sent: FloatVector = full[self.indices].copy()
        return sent

    def scatter(self, values: npt.ArrayLike) -> FloatVector:
        """A full-length vector holding ``values`` at the subset's coordinates, zero elsewhere
        (how the server places the aggregated mean)."""
        short = self._vector(values, self.count, "subset values")
        full: FloatVector = np.zeros(self.dimension, dtype=np.float64)
        full[self.indices] = short
        return full

    def indices_digest(self) -> bytes:
        """SHA-256 of the indices as little-endian u32 words: the subset itself, whatever made it."""
        return hashlib.sha256(self.indices.astype("<u4").tobytes()).digest()

    def descriptor_parameters(self) -> dict[str, int | bytes | str]:
        """The entries that bind this subset in the session descriptor's parameters.

        Random subsets: ``selection`` = ``"random/v1"``, the ``seed``, ``dimension`` and
        ``count`` (the indices follow from them). Layer subsets: ``selection`` =
        ``"layers/v1"``, the ``layers`` (names joined by newlines, in vector order),
        ``dimension``, ``count`` and ``indices`` (:meth:`indices_digest`, which also pins
        the layout's offsets).
        """
        p = PARAMETER_PREFIX
        entries: dict[str, int | bytes | str] = {p + "dimension": self.dimension, p + "count": self.count}
        if self.seed is not None:
            return {p + "selection": RANDOM_SELECTION, p + "seed": self.seed, **entries}
        return {
            p + "selection": LAYER_SELECTION,
            p + "layers": "\n".join(self.layers),
            p + "indices": self.indices_digest(),
            **entries,
        }

    @staticmethod
    def _vector(values: npt.ArrayLike, length: int, what: str) -> FloatVector:
        vector = np.asarray(values, dtype=np.float64)
        if vector.ndim != 1 or vector.shape[0] != length:
            raise ConfigurationError(f"sparsity: {what} must be one-dimensional of length {length}, got {vector.shape}")
        return vector


class ErrorFeedback:
    """One hospital's residual: what it has not sent yet (never leaves the hospital).

    Two steps per round, so a round the hospital's contribution does not make leaves
    the residual as it was: :meth:`prepare` gives the values to send and the residual
    that would follow; :meth:`commit` keeps that residual once the contribution is in
    the aggregate.
    """

    def __init__(self, dimension: int) -> None:
        self.dimension = _check_dimension(dimension)
        self.residual: FloatVector = np.zeros(dimension, dtype=np.float64)

    def prepare(self, update: npt.ArrayLike, subset: Subset) -> tuple[FloatVector, FloatVector]:
        """``(sent, residual)``: ``c = update + residual``; ``sent = c[S]``; the new residual is
        ``c`` with S zeroed. ``scatter(sent) + residual == c`` exactly.

        ConfigurationError if ``c`` holds a NaN or an infinity (a sum beyond binary64 included):
        refused whole, sent part and kept part alike (an infinity kept would be sent, and refused,
        in every later round that covers it); the residual is unchanged."""
        if subset.dimension != self.dimension:
            raise ConfigurationError(f"subset of dimension {subset.dimension} for a residual of {self.dimension}")
        with np.errstate(over="ignore", invalid="ignore"):  # refused below
            corrected = Subset._vector(update, self.dimension, "update") + self.residual
        if not np.all(np.isfinite(corrected)):
            raise ConfigurationError(
                "sparsity: the update plus the residual holds NaN or infinite values (a sum beyond binary64 "
                "included): refused whole, the residual unchanged"
            )
        sent: FloatVector = corrected[subset.indices].copy()
        corrected[subset.indices] = 0.0
        return sent, corrected

    def commit(self, residual: FloatVector) -> None:
        """Keep ``residual`` (from :meth:`prepare`) once the round's aggregate holds the sent values."""
        self.residual = Subset._vector(residual, self.dimension, "residual").copy()


def restrict(table: SegmentTable, subset: Subset) -> SegmentTable:
    """The segments of ``table`` over the coordinates of ``subset`` (segments with none left out):
    each keeps its name, clip and kind, with the count of its coordinates the subset holds."""
    if table.size != subset.dimension:
        raise ConfigurationError(f"the segments cover {table.size} coordinates, the subset {subset.dimension}")
    kept = []
    for segment, part in table.slices():
        inside = int(np.count_nonzero((subset.indices >= part.start) & (subset.indices < part.stop)))
        if inside:
            kept.append(Segment(segment.name, inside, segment.clip, segment.integer))
    return SegmentTable(tuple(kept))
