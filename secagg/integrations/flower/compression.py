"""Compression in Flower rounds: a public subset of coordinates, a random rotation, error feedback.

``SecAggOptions(sparsity=..., rotate=True)`` (and the same options of ``PaillierOptions``)
make each secure round send less, or send it in a basis that quantizes better:

- **Subset** (``sparsity=0.25``: a random quarter of the coordinates, drawn afresh each
  round from a public 32-byte seed, :meth:`secagg.sparsity.Subset.random`; or
  ``sparsity=("arrays/fc.weight", ...)``: the named arrays, ``"<record>/<array>"`` as
  for clips, :meth:`~secagg.sparsity.Subset.from_layers`). Every node sends the same
  coordinates, in ascending order, so the masks (or the Paillier slots) line up.
- **Rotation** (``rotate=True``): the randomized Walsh-Hadamard rotation of a fresh
  public per-round seed (:class:`secagg.rotation.Rotation`, one block) applied to the
  *float* coordinates sent; the server applies the inverse to their sum. A round whose
  random subset holds no float coordinate is sent without one (nothing to rotate; the
  setup binds none); a model or named-array subset with none at all is refused
  (:meth:`RoundCompression.draw`).
- **Error feedback**: each node adds its residual (what it has not sent yet) to its
  update and keeps, as its new residual, the corrected update with the coordinates
  sent set to zero (:class:`secagg.sparsity.ErrorFeedback`'s rule). The residual lives in
  the node's ``context.state`` under :data:`RESIDUAL_KEY`, survives across rounds, and
  never leaves the node (:mod:`~secagg.integrations.flower._residual` keeps it). It covers
  the float arrays only: an integer or bool array is an exact segment (a whole number
  within ``+-qmax`` or the round is refused), and a backlog of its unsent changes (a step
  counter rising by 50 a round, left out of a few random subsets) would soon exceed
  ``qmax`` and have the node refuse every round that draws it, for good. An integer
  coordinate not sent this round stays at the global value, as every coordinate does
  without error feedback; each round sends its own change, exact.

:class:`RoundCompression` is one round's choice. Its :meth:`~RoundCompression.parameters`
(the ``secagg.sparsity.*`` and ``secagg.rotation.*`` entries) travel in the setup's
``compression`` field and enter the round descriptor's parameters, so a node given
another seed, fraction, layer set or rotation is in another session.

A node's contribution is built in this order (docs/spec.md, section 15.8): ``c = delta
+ residual`` (the residual zero at integer coordinates); ``v = c[S]`` (all of ``c``
without a subset); with the rotation, ``v`` becomes ``(R v_float, v_integer)``: the
rotated float coordinates (padded length D), then the integer ones unchanged; then the
segmented encoding ``(w q(v), counts, w)``.

Segments (clip tables and clipped counts): the round's table is the model's table
(one segment per array) restricted to the subset (:func:`secagg.sparsity.restrict`: each
array keeps its name, clip and kind over its coordinates sent; arrays with none sent
are left out). With the rotation, which mixes every float coordinate, the float
segments become one segment named :data:`ROTATED` of length D with its own clip
(adaptive like the arrays' clips), followed by the integer segments, still exact.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from flwr.app import RecordDict

from secagg.descriptor import Parameter, decode_parameters, encode_parameters
from secagg.errors import ConfigurationError, DecodeError, ProtocolError
from secagg.integrations.flower._residual import RESIDUAL_KEY, keep_residual, stored_residual
from secagg.integrations.flower.arrays import ArrayLayout
from secagg.integrations.flower.clipping import encoded_length, layout_table, segment_name
from secagg.rotation import PARAMETER_PREFIX as ROTATION_PREFIX
from secagg.rotation import SEED_SIZE as ROTATION_SEED_SIZE
from secagg.rotation import Rotation, largest_block
from secagg.segments import Segment, SegmentTable
from secagg.sparsity import PARAMETER_PREFIX as SPARSITY_PREFIX
from secagg.sparsity import SEED_SIZE as SUBSET_SEED_SIZE
from secagg.sparsity import Subset, count_for_fraction, restrict

__all__ = [
    "RESIDUAL_KEY",
    "ROTATED",
    "NodeUpdate",
    "RoundCompression",
    "check_compressed_model",
    "check_options",
    "keep_residual",
    "node_update",
    "stored_residual",
]

ROTATED = "rotated"
"""Name of the one float segment of a rotated round (array segments always hold a ``/``)."""

FloatVector = npt.NDArray[np.float64]
Sparsity = float | tuple[str, ...] | None


def check_options(sparsity: object, rotate: object, dp: bool) -> Sparsity:
    """``sparsity`` normalised (a float fraction in (0, 1], a tuple of array names, or None);
    ConfigurationError naming the option that is unfit, or ``dp=`` with either option."""
    if not isinstance(rotate, bool):
        raise ConfigurationError(f"rotate must be True or False, got {rotate!r}")
    normalised: Sparsity
    if sparsity is None:
        normalised = None
    elif isinstance(sparsity, str | bytes):
        raise ConfigurationError(f"sparsity: give a fraction or a sequence of array names, got the string {sparsity!r}")
    elif isinstance(sparsity, int | float) and not isinstance(sparsity, bool):
        count_for_fraction(float(sparsity), 1)  # the range check: 0 < fraction <= 1
        normalised = float(sparsity)
    elif isinstance(sparsity, Sequence) and sparsity and all(isinstance(n, str) and n for n in sparsity):
        normalised = tuple(dict.fromkeys(sparsity))
    else:
        raise ConfigurationError(
            f"sparsity must be a fraction in (0, 1] or a non-empty sequence of array names, got {sparsity!r}"
        )
    if dp and (normalised is not None or rotate):
        raise ConfigurationError(
            "sparsity= and rotate= do not apply with dp=: a DP round sends every coordinate, noised, in the "
            "model's own basis (the residual would carry patient data past the accountant, and the rotation "
            "changes the rounding term of the sensitivity); drop dp= or the compression options"
        )
    return normalised


def _array_sizes(layout: ArrayLayout) -> list[tuple[str, int]]:
    return [(segment_name(s.record, s.name), s.length) for s in layout.specs if s.length]


def _integer_mask(layout: ArrayLayout) -> npt.NDArray[np.bool_]:
    """True at the coordinates of integer and bool arrays (exact integer segments)."""
    pieces = [np.full(s.length, np.dtype(s.dtype).kind in "iub") for s in layout.specs]
    mask: npt.NDArray[np.bool_] = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.bool_)
    return mask


@dataclass(frozen=True)
class RoundCompression:
    """One round's public compression: the subset sent (None: every coordinate) and the
    rotation of the float coordinates sent (None: no rotation), for a ``dimension``-value model."""

    dimension: int
    subset: Subset | None = None
    rotation: Rotation | None = None

    @classmethod
    def draw(
        cls,
        layout: ArrayLayout,
        sparsity: float | Sequence[str] | None,
        rotate: bool,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> RoundCompression | None:
        """This round's compression from fresh public seeds (None if neither option is on;
        ``sparsity`` as :func:`check_options` returns it).

        ConfigurationError if a named array is not in the model, or with ``rotate`` if no round
        could ever send a float coordinate (the model has none, or the named arrays hold none):
        a setting that can never work, refused whatever the draw. A random subset that happens to
        draw only integer coordinates has nothing to rotate *this* round: the round is sent
        without a rotation (its parameters name none, so every node's session is bound to that),
        its integer coordinates exact as in any round; the next round draws afresh. The rotation
        only spreads the quantization error of float coordinates, so nothing is lost.
        """
        if sparsity is None and not rotate:
            return None
        subset = None
        if isinstance(sparsity, float):
            subset = Subset.random(random_bytes(SUBSET_SEED_SIZE), layout.size, fraction=sparsity)
        elif sparsity is not None:
            subset = Subset.from_layers(_array_sizes(layout), tuple(sparsity))
        rotation = None
        if rotate:
            floats = cls(layout.size, subset).float_count(layout)
            if floats == 0 and (not isinstance(sparsity, float) or bool(np.all(_integer_mask(layout)))):
                raise ConfigurationError(
                    "rotate=True, but the model's arrays sent hold no float coordinate: no round would have "
                    "anything to rotate (the rotation applies to float arrays; integer and bool ones are sent "
                    "exact); drop rotate=True or send float arrays"
                )
            if floats:  # else: this round's random subset drew only integer coordinates (docstring)
                rotation = Rotation(random_bytes(ROTATION_SEED_SIZE), floats)
        return cls(layout.size, subset, rotation)

    def parameters(self) -> bytes:
        """The bound bytes: :func:`encode_parameters` of the subset's and the rotation's entries."""
        entries: dict[str, Parameter] = {}
        if self.subset is not None:
            entries.update(self.subset.descriptor_parameters())
        if self.rotation is not None:
            entries.update(self.rotation.descriptor_parameters())
        return encode_parameters(entries)

    @classmethod
    def read(cls, data: bytes, layout: ArrayLayout) -> RoundCompression | None:
        """The compression the bound bytes ``data`` name, rebuilt for this node's model (None if empty).

        DecodeError unless ``data`` is exactly such entries; ProtocolError if they do not
        describe this model (its dimension, its arrays, its float coordinates sent), or if the
        rotation's block exceeds one block of them (the next power of two: all else is padding).
        """
        if not data:
            return None
        entries = check_entries(data)
        sparse = {k: v for k, v in entries.items() if k.startswith(SPARSITY_PREFIX)}
        rotated = {k: v for k, v in entries.items() if k.startswith(ROTATION_PREFIX)}
        try:
            subset = _read_subset(sparse, layout) if sparse else None
            rotation = None
            if rotated:
                seed, dimension = rotated.get(ROTATION_PREFIX + "seed"), rotated.get(ROTATION_PREFIX + "dimension")
                block = rotated.get(ROTATION_PREFIX + "block")
                if not isinstance(seed, bytes) or type(dimension) is not int or type(block) is not int:
                    raise DecodeError("the rotation's seed, dimension or block is missing or mistyped")
                rotation = Rotation(seed, dimension, block)
        except ConfigurationError as exc:
            raise DecodeError(f"compression parameters: {exc}") from exc
        if subset is not None and subset.descriptor_parameters() != sparse:
            raise ProtocolError("the round's subset does not describe this model's arrays")
        if rotation is not None and rotation.descriptor_parameters() != rotated:
            raise DecodeError("the round's rotation entries are not a rotation's")
        compression = cls(layout.size, subset, rotation)
        if rotation is not None and rotation.dimension != compression.float_count(layout):
            raise ProtocolError(
                f"the rotation is for {rotation.dimension} values; this model sends {compression.float_count(layout)}"
            )
        if rotation is not None and rotation.block_size > largest_block(rotation.dimension):
            raise ProtocolError(  # only padding: D up to 2^32 zeros rotated, encoded and masked
                f"the rotation's block {rotation.block_size} exceeds one block of {rotation.dimension} values"
            )
        if compression.parameters() != bytes(data):
            raise DecodeError("compression parameters are not in canonical form")
        return compression

    @property
    def sent(self) -> int:
        """k, the coordinates of the model sent (before the rotation's padding)."""
        return self.dimension if self.subset is None else self.subset.count

    def float_count(self, layout: ArrayLayout) -> int:
        """How many of the coordinates sent are float (the rotation's dimension)."""
        return int(np.count_nonzero(~self._sent_integer(layout)))

    def _sent_integer(self, layout: ArrayLayout) -> npt.NDArray[np.bool_]:
        if layout.size != self.dimension:
            raise ProtocolError(f"the round's compression is for {self.dimension} values, the model has {layout.size}")
        mask = _integer_mask(layout)
        return mask if self.subset is None else mask[self.subset.indices]

    def table(self, full: SegmentTable) -> SegmentTable:
        """The round's segments from the model's (module docstring): restricted to the subset;
        with the rotation, one :data:`ROTATED` segment (clip None: the schedule's) then the integer ones."""
        restricted = full if self.subset is None else restrict(full, self.subset)
        if self.rotation is None:
            return restricted
        integers = tuple(s for s in restricted.segments if s.integer)
        return SegmentTable((Segment(ROTATED, self.rotation.padded_dimension), *integers))

    def compress(self, corrected: FloatVector, layout: ArrayLayout) -> FloatVector:
        """What a node encodes: ``corrected[S]``, rotated floats first if the round rotates."""
        integer = self._sent_integer(layout)
        sent = corrected if self.subset is None else corrected[self.subset.indices]
        if self.rotation is None:
            out: FloatVector = np.array(sent, dtype=np.float64)
            return out
        return np.concatenate([self.rotation.forward(sent[~integer]), sent[integer]])

    def expand(self, values: FloatVector, layout: ArrayLayout) -> FloatVector:
        """The full-length vector of a decoded mean of :meth:`compress` outputs: the rotation
        undone on the float part, the subset scattered back (zeros elsewhere)."""
        sent = values
        if self.rotation is not None:
            integer = self._sent_integer(layout)
            padded = self.rotation.padded_dimension
            if values.shape != (padded + int(np.count_nonzero(integer)),):
                raise ConfigurationError(f"a rotated mean has {padded} rotated values and the integer ones")
            sent = np.empty(self.sent, dtype=np.float64)
            sent[~integer] = self.rotation.inverse(values[:padded])
            sent[integer] = values[padded:]
        return sent if self.subset is None else self.subset.scatter(sent)


def check_entries(data: bytes) -> dict[str, Parameter]:
    """The decoded entries of a setup's ``compression`` field; DecodeError unless every name is a
    ``secagg.sparsity.*`` or ``secagg.rotation.*`` one (what a node checks before it trains)."""
    entries = decode_parameters(data)
    foreign = [name for name in entries if not name.startswith((SPARSITY_PREFIX, ROTATION_PREFIX))]
    if foreign or not entries:
        raise DecodeError(f"compression parameters hold names other than the subset's and the rotation's: {foreign}")
    return entries


def _read_subset(entries: dict[str, Parameter], layout: ArrayLayout) -> Subset:
    selection = entries.get(SPARSITY_PREFIX + "selection")
    if selection == "random/v1":
        seed, count = entries.get(SPARSITY_PREFIX + "seed"), entries.get(SPARSITY_PREFIX + "count")
        dimension = entries.get(SPARSITY_PREFIX + "dimension")
        if not isinstance(seed, bytes) or type(count) is not int or type(dimension) is not int:
            raise DecodeError("the subset's seed, dimension or count is missing or mistyped")
        if dimension != layout.size:
            raise ProtocolError(f"the round's subset is for {dimension} values, the model has {layout.size}")
        return Subset.random(seed, dimension, count=count)
    if selection == "layers/v1":
        layers = entries.get(SPARSITY_PREFIX + "layers")
        if not isinstance(layers, str):
            raise DecodeError("the subset's layer names are missing or mistyped")
        try:
            return Subset.from_layers(_array_sizes(layout), layers.split("\n"))
        except ConfigurationError as exc:
            raise ProtocolError(f"the round's layers do not fit this model: {exc}") from exc
    raise DecodeError(f"unknown subset selection {selection!r}")


def check_compressed_model(
    table: SegmentTable, layout: ArrayLayout, compression: RoundCompression | None, vector_length: int
) -> None:
    """ProtocolError unless ``table`` has the segments (names, lengths, kinds; not the clips) that
    ``compression`` makes of this model's arrays, and its contributions ``vector_length`` values."""
    expected = layout_table(layout)
    if compression is not None:
        expected = compression.table(expected)
    shape = [(s.name, s.length, s.integer) for s in expected.segments]
    if [(s.name, s.length, s.integer) for s in table.segments] != shape:
        raise ProtocolError("the round's clip table does not describe this model's arrays as compressed")
    if encoded_length(table) != vector_length:
        raise ProtocolError(f"the session is for {vector_length} values, the clip table gives {encoded_length(table)}")


@dataclass(frozen=True)
class NodeUpdate:
    """What a node encodes this round, and the residual it keeps once that has been sent."""

    values: FloatVector
    compression: RoundCompression | None
    residual: FloatVector | None


def node_update(data: bytes, delta: FloatVector, layout: ArrayLayout, state: RecordDict) -> NodeUpdate:
    """The node's values to encode for the setup's ``compression`` bytes ``data``: its update plus
    its stored residual, compressed; the new residual is that sum with the coordinates sent zeroed
    (None when everything was sent), and zero at the coordinates of integer and bool arrays, whose
    stored residual is not added either (module docstring). Without compression and residual:
    ``delta`` itself.

    ConfigurationError if the update plus the residual holds a NaN or an infinity (an overflow of
    the sum included): refused whole, as an uncompressed update is, before any of it is kept (an
    unsent one would otherwise sit in the residual and be refused in every round that sends it)."""
    compression = RoundCompression.read(data, layout)
    residual = stored_residual(state, layout)
    integer = _integer_mask(layout)
    if residual is not None:  # one kept by an older node, or while the array was float: not added
        residual = np.where(integer, 0.0, residual)
    with np.errstate(over="ignore", invalid="ignore"):
        corrected = delta if residual is None else delta + residual
    if not np.all(np.isfinite(corrected)):
        raise ConfigurationError("the update plus the stored residual holds NaN or infinite values: refused whole")
    if compression is None:
        return NodeUpdate(corrected, None, None)
    kept = None
    if compression.subset is not None:
        kept = corrected.copy()
        kept[compression.subset.indices] = 0.0
        kept[integer] = 0.0  # no residual for integer arrays (module docstring)
    return NodeUpdate(compression.compress(corrected, layout), compression, kept)
