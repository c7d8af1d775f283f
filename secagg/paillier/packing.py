"""Packing many quantized values into one Paillier plaintext (after BatchCrypt, ATC 2020).

A plaintext is cut into ``slots_per_plaintext`` slots of ``slot_bits`` bits,
slot 0 in the least significant bits. A signed value v in
``[value_min, value_max] = [-offset, value_max]`` is stored as ``u = v + offset``,
so ``0 <= u <= span = offset + value_max``. Two ranges exist:

* the *bit range* of b-bit values (b = ``value_bits``, no ``value_bound``):
  ``[-2^(b-1), 2^(b-1) - 1]``, offset ``2^(b-1)``, span ``2^b - 1``;
* the *bounded range* of values with ``|v| <= B`` (``value_bound`` B, with
  ``value_bits = bitlen(B) + 1``): ``[-B, B]``, offset B, span 2B. Weighted
  encodings (``|w q| <= W q``) use it with B = W q: the offset is exactly the
  bound, not B rounded up to a power of two.

Adding the plaintexts of k clients adds slot by slot, and no slot carries into
the next as long as every slot sum stays below ``2^slot_bits``. The minimal
layout guarantees that with one guard bit::

    slot_bits = bitlen(num_clients * span) + 1
    k * span <= num_clients * span < 2^(slot_bits - 1)    for k <= num_clients

so an honest sum never sets a slot's top (guard) bit, and even 2 * num_clients
in-range summands (below ``2^slot_bits``) never carry into the next slot: a
slot holds their exact sum. Decoding subtracts ``k * offset`` and raises
:class:`~secagg.errors.OverflowDetectedError` when a slot is above
``k * span``, a guard bit is set, a padding slot is not zero, or the plaintext
has bits above the last slot: each means more or larger summands than
declared, so the output would otherwise be garbage. (A summand at
``value_min`` adds 0 to a slot, so extra summands that all sit at the bottom of
the range are invisible to any check: they add nothing.)

For the bounded range, ``bitlen(2 N B) = bitlen(N B) + 1``, so a slot is
exactly one bit wider than the smallest narrow ring that holds the signed sum
(``N B <= 2^(r-1) - 1``, :func:`secagg.encoding.smallest_ring_bits`): r + 1.
For the bit range the formula gives the historical
``b + ceil(log2(num_clients)) + 1`` whenever ``b >= ceil(log2(num_clients))``.

The slots fill at most ``key_bits - 1`` bits, so every plaintext and every sum
of at most ``num_clients`` of them is below 2^(key_bits - 1) <= n: no reduction
mod n ever happens.

Worked example (docs/paillier.md): 16-bit values, 10 clients, 2048-bit key ->
slot 21 bits, 97 slots (2037 bits) per plaintext, and a 512-byte ciphertext
carries 97 values: 5.28 bytes per value.

Packing and unpacking are vectorised: values become 64-bit words, then bits
(numpy ``unpackbits``), are regrouped into slot-width rows and packed back into
one little-endian byte string per plaintext, which ``int.from_bytes`` reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gmpy2
import numpy as np
import numpy.typing as npt

from secagg._validate import check_fields, is_int, require_instance, require_int, require_sequence
from secagg.errors import ConfigurationError, ConfigurationTypeError, EncodeError, OverflowDetectedError
from secagg.paillier.keys import MAX_KEY_BITS

__all__ = ["MAX_CLIENTS", "MAX_SLOT_BITS", "MAX_VALUE_BITS", "SlotLayout", "minimal_slot_bits", "pack", "unpack"]

MAX_VALUE_BITS = 48
"""Widest value accepted (values travel as int64 on the way in)."""

MAX_SLOT_BITS = 64
"""Widest slot: slot sums are decoded as uint64 words."""

MAX_CLIENTS = 1 << 15
"""Most summands a layout is declared for."""

MAX_VALUES = (1 << 32) - 1
"""Longest vector a layout packs (the wire format's u32 length)."""

IntArray = npt.NDArray[np.int64]


def minimal_slot_bits(span: int, num_clients: int) -> int:
    """bitlen(num_clients * span) + 1: the exact sum of num_clients slot contents in [0, span], plus a guard bit."""
    return (num_clients * span).bit_length() + 1


@dataclass(frozen=True)
class SlotLayout:
    """Where values sit in a plaintext, computed from (value_bits, num_clients, key_bits, value_bound).

    Attributes:
        value_bits: b, bits of one signed value (int64 words on the way in).
        num_clients: most plaintexts that will be summed before decoding.
        key_bits: bits of the modulus n.
        slot_bits: bits per slot; ``None`` (the default) computes the minimum
            ``bitlen(num_clients * span) + 1``. A smaller explicit value is
            refused: such a layout could carry between slots.
        value_bound: ``None`` for the bit range ``[-2^(b-1), 2^(b-1) - 1]``;
            else B >= 1, the range is ``[-B, B]`` with offset B, and
            ``value_bits`` must be ``bitlen(B) + 1``.
    """

    value_bits: int
    num_clients: int
    key_bits: int
    slot_bits: int | None = None
    value_bound: int | None = None

    def __post_init__(self) -> None:
        check_fields(self, ints=("value_bits", "num_clients", "key_bits"), optional_ints=("slot_bits", "value_bound"))
        if not 2 <= self.key_bits <= MAX_KEY_BITS:
            raise ConfigurationError(f"slot layout: key_bits must be in 2..{MAX_KEY_BITS}, got {self.key_bits}")
        if not 2 <= self.value_bits <= MAX_VALUE_BITS:
            raise ConfigurationError(f"slot layout: value_bits must be in 2..{MAX_VALUE_BITS}, got {self.value_bits}")
        if not 1 <= self.num_clients <= MAX_CLIENTS:
            raise ConfigurationError(f"slot layout: num_clients must be in 1..{MAX_CLIENTS}, got {self.num_clients}")
        if self.value_bound is not None and (
            self.value_bound < 1 or self.value_bound.bit_length() + 1 != self.value_bits
        ):
            raise ConfigurationError(
                f"slot layout: value_bound must be at least 1 with value_bits = bitlen(value_bound) + 1, got "
                f"value_bound {self.value_bound} with value_bits {self.value_bits}"
            )
        required = self.minimal_width
        if self.slot_bits is None:
            object.__setattr__(self, "slot_bits", required)
        elif self.slot_bits < required:
            raise ConfigurationError(
                f"slot layout could carry between slots: {self.num_clients} summands of values in "
                f"[{self.value_min}, {self.value_max}] need {required} bits per slot "
                f"(bitlen({self.num_clients} x {self.span}) + 1 guard), got {self.slot_bits}"
            )
        if self.width > MAX_SLOT_BITS:
            raise ConfigurationError(f"slot layout: {self.width}-bit slots exceed {MAX_SLOT_BITS} bits")
        if self.slots_per_plaintext < 1:
            raise ConfigurationError(
                f"slot layout: a {self.key_bits}-bit key cannot hold one {self.width}-bit slot"
            )

    @classmethod
    def bounded(cls, value_bound: int, num_clients: int, key_bits: int, slot_bits: int | None = None) -> SlotLayout:
        """The layout of values with ``|v| <= value_bound`` (offset exactly ``value_bound``)."""
        bound = require_int("value_bound", value_bound, 1, (1 << (MAX_VALUE_BITS - 1)) - 1)
        return cls(bound.bit_length() + 1, num_clients, key_bits, slot_bits, bound)

    @property
    def width(self) -> int:
        """Bits per slot (``slot_bits`` after defaulting)."""
        assert self.slot_bits is not None  # set in __post_init__
        return self.slot_bits

    @property
    def minimal_width(self) -> int:
        """bitlen(num_clients * span) + 1: the narrowest slot that holds an honest sum and a guard bit."""
        return minimal_slot_bits(self.span, self.num_clients)

    @property
    def headroom_bits(self) -> int:
        """Bits an honest sum needs beyond value_bits: ``minimal_width - 1 - value_bits``
        (ceil(log2(num_clients)) for the bit range when value_bits >= that; at most that for a bound)."""
        return self.minimal_width - 1 - self.value_bits

    @property
    def offset(self) -> int:
        """Added to every value so that slots hold non-negative numbers: value_bound, else 2^(b-1)."""
        return self.value_bound if self.value_bound is not None else 1 << (self.value_bits - 1)

    @property
    def value_min(self) -> int:
        """Smallest packable value, -offset."""
        return -self.offset

    @property
    def value_max(self) -> int:
        """Largest packable value: value_bound, else 2^(b-1) - 1."""
        return self.value_bound if self.value_bound is not None else self.offset - 1

    @property
    def span(self) -> int:
        """Largest slot content of one summand, offset + value_max: 2B, else 2^b - 1."""
        return self.offset + self.value_max

    @property
    def slots_per_plaintext(self) -> int:
        """floor((key_bits - 1) / slot_bits): plaintexts stay below 2^(key_bits-1) <= n."""
        return (self.key_bits - 1) // self.width

    @property
    def used_bits(self) -> int:
        """Bits of a plaintext that carry slots."""
        return self.slots_per_plaintext * self.width

    @property
    def plaintext_bytes(self) -> int:
        """Bytes holding the used bits of one plaintext."""
        return (self.used_bits + 7) // 8

    def num_plaintexts(self, length: int) -> int:
        """Plaintexts (hence ciphertexts) needed for ``length`` values."""
        require_int("vector length", length, 0, MAX_VALUES)
        return -(-length // self.slots_per_plaintext)

    def max_slot_sum(self, num_summands: int) -> int:
        """Largest honest slot sum of ``num_summands`` plaintexts: k * span."""
        require_int("num_summands", num_summands, 1, self.num_clients)
        return num_summands * self.span

    def describe(self) -> str:
        """One line for logs and docs."""
        if self.value_bound is not None:
            return (
                f"values in [-{self.value_bound}, {self.value_bound}], {self.num_clients} clients: {self.width}-bit "
                f"slots (bitlen({self.num_clients} x {self.span}) + 1 guard), "
                f"{self.slots_per_plaintext} slots per {self.key_bits}-bit plaintext"
            )
        return (
            f"{self.value_bits}-bit values, {self.num_clients} clients: {self.width}-bit slots "
            f"({self.value_bits} value + {self.headroom_bits} headroom + 1 guard), "
            f"{self.slots_per_plaintext} slots per {self.key_bits}-bit plaintext"
        )


def pack(values: npt.ArrayLike, layout: SlotLayout) -> list[int]:
    """The plaintexts holding ``values`` (a 1-D integer array), slot 0 first.

    Each value must lie in ``[layout.value_min, layout.value_max]``, else
    EncodeError. The last plaintext's unused slots are zero (not offset zeros).
    """
    require_instance("layout", layout, SlotLayout)
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise EncodeError("values to pack must be a one-dimensional integer array")
    if array.size and (int(array.min()) < layout.value_min or int(array.max()) > layout.value_max):
        raise EncodeError(
            f"values must lie in [{layout.value_min}, {layout.value_max}] for this slot layout, "
            f"got [{int(array.min())}, {int(array.max())}]"
        )
    count = layout.num_plaintexts(array.shape[0])
    slots = layout.slots_per_plaintext
    words = np.zeros(count * slots, dtype="<u8")
    words[: array.shape[0]] = (array.astype(np.int64) + layout.offset).astype(np.uint64)
    # Bits of each word, least significant first; keep the slot's width.
    low_bytes = words.view(np.uint8).reshape(-1, 8)[:, : (layout.width + 7) // 8]
    bits = np.unpackbits(low_bytes, axis=1, bitorder="little")[:, : layout.width]
    rows = np.zeros((count, 8 * layout.plaintext_bytes), dtype=np.uint8)
    rows[:, : layout.used_bits] = bits.reshape(count, layout.used_bits)
    buffer = np.packbits(rows, axis=1, bitorder="little").tobytes()
    size = layout.plaintext_bytes
    return [int.from_bytes(buffer[i : i + size], "little") for i in range(0, len(buffer), size)]


def unpack(plaintexts: list[Any], layout: SlotLayout, length: int, num_summands: int) -> IntArray:
    """The exact sums of ``num_summands`` packed vectors of ``length`` values.

    ``plaintexts`` is the decrypted sum of that many :func:`pack` outputs.
    Raises OverflowDetectedError if any slot is impossible for that many honest
    summands (see the module docstring): never returns a wrapped value.
    """
    require_instance("layout", layout, SlotLayout)
    num_summands = require_int("num_summands", num_summands, 1, layout.num_clients)
    plaintexts = list(require_sequence("plaintexts", plaintexts))
    # Decrypted plaintexts are gmpy2 integers; anything else that is not an integer is refused.
    if any(not (is_int(plaintext) or isinstance(plaintext, gmpy2.mpz)) for plaintext in plaintexts):
        raise ConfigurationTypeError("plaintexts must be integers")
    count = layout.num_plaintexts(length)
    if len(plaintexts) != count:
        raise ConfigurationError(f"{length} values need {count} plaintexts, got {len(plaintexts)}")
    size = layout.plaintext_bytes
    limit = 1 << layout.used_bits
    for position, plaintext in enumerate(plaintexts):
        if not 0 <= plaintext < limit:
            raise OverflowDetectedError(
                f"plaintext {position} has bits above its last slot: the sum overflowed or was reduced mod n"
            )
    buffer = b"".join(int(plaintext).to_bytes(size, "little") for plaintext in plaintexts)
    rows = np.unpackbits(np.frombuffer(buffer, dtype=np.uint8).reshape(count, size), axis=1, bitorder="little")
    bits = np.zeros((count * layout.slots_per_plaintext, 64), dtype=np.uint8)
    bits[:, : layout.width] = rows[:, : layout.used_bits].reshape(-1, layout.width)
    sums = np.packbits(bits, axis=1, bitorder="little").view("<u8").ravel()
    if np.any(sums[length:]):
        raise OverflowDetectedError("a padding slot is not zero: the aggregate is not a sum of packed vectors")
    sums = sums[:length]
    guard = np.uint64(1 << (layout.width - 1))
    if np.any(sums & guard):
        raise OverflowDetectedError(
            f"a slot's guard bit is set: more than {layout.num_clients} summands or wider values"
        )
    bound = layout.max_slot_sum(num_summands)
    if sums.size and int(sums.max()) > bound:
        position = int(np.argmax(sums > bound))
        raise OverflowDetectedError(
            f"slot {position} holds {int(sums[position])}, more than {num_summands} summands of "
            f"values in [{layout.value_min}, {layout.value_max}] can reach ({bound})"
        )
    result: IntArray = sums.astype(np.int64) - np.int64(num_summands * layout.offset)
    return result
