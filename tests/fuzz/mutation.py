"""Structure-aware mutation of wire encodings.

:func:`spans` walks an encoding with the message's own codecs (:mod:`secagg.wire`)
and records where every field, length prefix and count sits, so a mutation can
aim at a field instead of at a random byte: change a length or count prefix to
an edge value, splice a field of another valid message in, truncate at a field
boundary, swap the type tag. :func:`mutate` stacks a few such edits, chosen by
a :class:`random.Random` (hypothesis' ``st.randoms()`` in the unit tests, a
seeded one in the fuzz loops), so every run is reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from secagg import wire
from secagg.errors import SecAggError
from secagg.wire import BigUInt, Bool, Codec, FixedBytes, ListOf, Reader, RingArray, Struct, UInt, VarBytes
from secagg.wire_packed import PackedRingArray

__all__ = ["Span", "mutate", "spans"]

# Length and count prefixes are the fields worth edge values: the decoder must
# bound them against the input and its limits before allocating anything.
LENGTH = "length"
INTEGER = "integer"
DATA = "data"
HEADER = "header"


@dataclass(frozen=True)
class Span:
    """Bytes ``[start, end)`` of one encoded field; ``kind`` says what they hold."""

    start: int
    end: int
    kind: str


class _Walk:
    """Decode with the codecs' layouts, recording spans (stops quietly at the first error)."""

    def __init__(self, data: bytes) -> None:
        self.reader = Reader(data)
        self.out: list[Span] = []

    @property
    def pos(self) -> int:
        return len(self.reader._bytes) - self.reader.remaining

    def take(self, size: int, kind: str) -> bytes:
        start = self.pos
        chunk = self.reader.take(size)
        self.out.append(Span(start, start + size, kind))
        return chunk

    def uint(self, size: int, kind: str) -> int:
        return int.from_bytes(self.take(size, kind), "big")

    def codec(self, codec: Codec[object]) -> None:
        if isinstance(codec, UInt):
            self.uint(codec.size, INTEGER)
        elif isinstance(codec, Bool):
            self.take(1, INTEGER)
        elif isinstance(codec, FixedBytes):
            self.take(codec.size, DATA)
        elif isinstance(codec, VarBytes):
            self.take(self.uint(4, LENGTH), DATA)
        elif isinstance(codec, BigUInt):
            self.take(self.uint(2, LENGTH), DATA)
        elif isinstance(codec, ListOf):
            count = self.uint(4, LENGTH)
            for _ in range(min(count, self.reader.remaining)):
                self.codec(codec.item)
        elif isinstance(codec, RingArray):
            bits = self.uint(1, INTEGER)
            count = self.uint(4, LENGTH)
            self.take(count * (8 if bits == 64 else 4), DATA)
        elif isinstance(codec, PackedRingArray):
            bits = self.uint(1, INTEGER)
            count = self.uint(4, LENGTH)
            self.take((count * bits + 7) // 8, DATA)
        elif isinstance(codec, Struct):
            self.fields(codec.cls)
        else:  # an unknown codec: nothing more can be located
            raise SecAggError(f"no span walker for {type(codec).__name__}")

    def fields(self, cls: type[wire.WireStruct]) -> None:
        for _, codec in cls.wire_fields():
            self.codec(codec)


def spans(data: bytes) -> list[Span]:
    """The spans of ``data`` as far as it parses as an envelope of a registered type."""
    walk = _Walk(data)
    try:
        walk.take(len(wire.MAGIC) + 1, HEADER)
        tag = walk.uint(2, HEADER)
        cls = wire.Message._registry.get(tag)
        if cls is not None:
            walk.fields(cls)
    except SecAggError:
        pass
    return walk.out


_INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)


def _interesting_ints(value: int, size: int, remaining: int) -> list[int]:
    top = (1 << (8 * size)) - 1
    candidates = [0, 1, 2, value - 1, value + 1, value * 2, top, top - 1, top >> 1, (top >> 1) + 1, remaining,
                  remaining + 1, 1 << 20, (1 << 20) + 1, 1 << 30, 32, 64, 33, 65]
    return [c for c in candidates if 0 <= c <= top]


def _flip_bit(data: bytearray, rng: random.Random, spans_: Sequence[Span], donors: Sequence[bytes]) -> None:
    if data:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)


def _set_byte(data: bytearray, rng: random.Random, spans_: Sequence[Span], donors: Sequence[bytes]) -> None:
    if data:
        data[rng.randrange(len(data))] = rng.choice(_INTERESTING_BYTES) if rng.random() < 0.6 else rng.randrange(256)


def _truncate(data: bytearray, rng: random.Random, spans_: Sequence[Span], donors: Sequence[bytes]) -> None:
    if not data:
        return
    cuts = [s.start for s in spans_ if s.kind != HEADER] + [s.end - 1 for s in spans_ if s.end > s.start]
    cut = rng.choice(cuts) if cuts and rng.random() < 0.8 else rng.randrange(len(data))
    del data[max(0, min(cut, len(data) - 1)) :]


def _extend(data: bytearray, rng: random.Random, spans_: Sequence[Span], donors: Sequence[bytes]) -> None:
    if rng.random() < 0.5 and data:
        start = rng.randrange(len(data))
        data += data[start : start + rng.randint(1, 64)]
    else:
        data += rng.randbytes(rng.randint(1, 16))


def _insert_delete(data: bytearray, rng: random.Random, spans_: Sequence[Span], donors: Sequence[bytes]) -> None:
    points = [s.start for s in spans_ if s.kind != HEADER] or [len(data)]
    at = min(rng.choice(points), len(data))
    if rng.random() < 0.5:
        data[at:at] = rng.randbytes(rng.choice((1, 2, 4, 8, 32, 33)))
    else:
        del data[at : at + rng.choice((1, 2, 4, 8, 32, 33))]


def _edit_number(data: bytearray, rng: random.Random, spans_: Sequence[Span], donors: Sequence[bytes]) -> None:
    """Set a length/count prefix (mostly) or an integer field to an edge value."""
    lengths = [s for s in spans_ if s.kind == LENGTH]
    numbers = [s for s in spans_ if s.kind == INTEGER]
    pool = lengths if lengths and (rng.random() < 0.75 or not numbers) else numbers
    if not pool:
        _set_byte(data, rng, spans_, donors)
        return
    span = rng.choice(pool)
    size = span.end - span.start
    if span.end > len(data):
        return
    value = int.from_bytes(data[span.start : span.end], "big")
    new = rng.choice(_interesting_ints(value, size, len(data) - span.end))
    data[span.start : span.end] = new.to_bytes(size, "big")


def _splice(data: bytearray, rng: random.Random, spans_: Sequence[Span], donors: Sequence[bytes]) -> None:
    """Replace one field (prefix and contents) by a field of a donor message."""
    fields = [s for s in spans_ if s.kind != HEADER and s.end <= len(data)]
    if not fields or not donors:
        _flip_bit(data, rng, spans_, donors)
        return
    donor = rng.choice(donors)
    donor_spans = [s for s in spans(donor) if s.kind != HEADER]
    if not donor_spans:
        return
    target = rng.choice(fields)
    source = rng.choice(donor_spans)
    # Widen either side to a run of consecutive fields now and then: whole records move.
    end = target.end if rng.random() < 0.7 else rng.choice([s.end for s in fields if s.end >= target.end])
    source_end = source.end if rng.random() < 0.7 else rng.choice([s.end for s in donor_spans if s.end >= source.end])
    data[target.start : end] = donor[source.start : source_end]


def _duplicate_field(data: bytearray, rng: random.Random, spans_: Sequence[Span], donors: Sequence[bytes]) -> None:
    fields = [s for s in spans_ if s.kind != HEADER and s.end <= len(data)]
    if fields:
        span = rng.choice(fields)
        data[span.end : span.end] = data[span.start : span.end]


def _swap_tag(data: bytearray, rng: random.Random, spans_: Sequence[Span], donors: Sequence[bytes]) -> None:
    if len(data) < 5:
        return
    tags = sorted(wire.Message._registry)
    data[3:5] = rng.choice(tags).to_bytes(2, "big")


def _header(data: bytearray, rng: random.Random, spans_: Sequence[Span], donors: Sequence[bytes]) -> None:
    if len(data) >= 3:
        data[rng.randrange(3)] = rng.randrange(256)


Mutator = Callable[[bytearray, random.Random, Sequence[Span], Sequence[bytes]], None]
MUTATORS: tuple[tuple[Mutator, int], ...] = (
    (_flip_bit, 4),
    (_set_byte, 2),
    (_truncate, 3),
    (_extend, 2),
    (_insert_delete, 2),
    (_edit_number, 5),
    (_splice, 4),
    (_duplicate_field, 1),
    (_swap_tag, 1),
    (_header, 1),
)
_FUNCS = [m for m, _ in MUTATORS]
_WEIGHTS = [w for _, w in MUTATORS]


def mutate(data: bytes, rng: random.Random, donors: Sequence[bytes] = (), *, max_edits: int = 3) -> bytes:
    """``data`` after 1..``max_edits`` structure-aware edits (donors: other valid encodings)."""
    out = bytearray(data)
    for _ in range(rng.randint(1, max_edits)):
        mutator = rng.choices(_FUNCS, _WEIGHTS)[0]
        mutator(out, rng, spans(bytes(out)), donors)
    return bytes(out)
