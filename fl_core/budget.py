"""A byte budget per parameter: one compression option, and the rule that meets it.

``bytes_per_parameter = B`` bounds each hospital's *protected update* per round (the
masked vector, or the Paillier ciphertexts, with the encoding's clipped count and sample
count) to ``B * d`` bytes, d the model's parameter count. :func:`choose` turns B into the
four values that shape a contribution, by one deterministic rule:

1. **Fewer bits before fewer coordinates.** For quantization bits q = 16, 15, ..., 8
   (:data:`MAX_BITS` down to :data:`MIN_BITS`) the ring is the smallest Z_(2^b) the
   overflow rule allows for q, the n hospitals and the sample bound w
   (:func:`secagg.encoding.smallest_ring_bits`: b is about q + log2(n w) + 1), widened
   if need be to hold the clipped count of the flat segment sent (n times its length, up
   to the padded length: ``bitlen(n D) + 1`` bits, which matters from about a million
   parameters), and the first q at which *every* coordinate fits is taken.
2. **Rotation when bits are low.** Below :data:`ROTATE_BELOW_BITS` (16) the update is
   rotated before quantization (:mod:`fl_core.rotated`): the rotation spreads a few
   large coordinates over all of them, which is what makes few bits usable. The block
   is :func:`rotation_block` when every coordinate is sent (one block unless that pads
   by more than :data:`MAX_ROTATION_OVERHEAD`; the padding is sent, so it is counted).
3. **Then sparsity.** If not even 8 bits fit every coordinate: 8 bits, rotated, and
   the largest shared subset of coordinates that fits (:mod:`fl_core.compression`:
   a public seeded subset per round, error feedback), rounded down to whole rotation
   blocks of :func:`subset_block` (no padding; at most an eighth fewer coordinates, for
   blocks as large as possible). With Paillier the segment sent must also fit the packing
   slot's bound (its clipped count is packed as a value: at most ``max_samples_per_client *
   qmax`` coordinates, 520,192 at 8 bits and 4,096 samples), which caps the subset of a
   model from about half a million parameters.
4. If not even one coordinate fits at 8 bits: ConfigurationError naming the option.

Why the floor at 8 bits: at 8 bits one quantization step is clip / 127; below it the
rounding noise of a coordinate approaches its value, while the ring (b = q + ~16 for 5
hospitals of up to 4,096 samples) shrinks by one bit per bit dropped, so each bit below 8
buys less than 5% more coordinates. The sample bound is the user's (``max_samples_per_client``):
a smaller public bound narrows the ring and sends more coordinates for the same budget.

Every chosen value is bound in the round's session descriptor by the aggregator that
applies it: bits and ring in the quantization, the rotation's seed, dimension and block
under ``secagg.rotation.*``, the subset's seed, dimension and count under
``secagg.sparsity.*``. The budget itself shapes nothing beyond them.

Bytes (:func:`protected_bytes`): ``ceil(b * values / 8)`` for masking and
``plain-quantized`` (bit-packed, as MaskedInput carries it); for Paillier, whole
ciphertexts of packed slots (:func:`fl_core.aggregators.paillier.packing_layout`; a
3072-bit key's ciphertext is 768 bytes, so a small model cannot meet a small budget and
is refused). ``plain`` protects nothing and takes no budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fl_core.aggregators import make_aggregator
from fl_core.aggregators.base import DEFAULT_BITS, DEFAULT_CLIP, DEFAULT_MAX_SAMPLES_PER_CLIENT, Aggregator
from fl_core.aggregators.paillier_import import paillier_module
from fl_core.aggregators.quantizer import WeightedQuantizer
from fl_core.compression import CompressionConfig, SparseAggregator
from fl_core.rotated import RotatedAggregator
from secagg._validate import require_int
from secagg.encoding import QuantizationConfig, smallest_ring_bits
from secagg.errors import ConfigurationError

__all__ = [
    "BUDGET_AGGREGATIONS",
    "MAX_BITS",
    "MAX_ROTATION_OVERHEAD",
    "MIN_BITS",
    "ROTATE_BELOW_BITS",
    "BudgetChoice",
    "budget_aggregator",
    "choose",
    "protected_bytes",
    "rotation_block",
    "subset_block",
]

MAX_BITS = DEFAULT_BITS
"""The bits a budget starts from (the uncompressed default)."""
MIN_BITS = 8
"""The fewest quantization bits a budget goes down to before it sends fewer coordinates."""
ROTATE_BELOW_BITS = DEFAULT_BITS
"""Below this many bits the update is rotated before quantization."""
MAX_ROTATION_OVERHEAD = 0.125
"""What the rotation's blocks may cost, as a share of the coordinates: padding sent when every
coordinate is (:func:`rotation_block`), or coordinates left for a later round when a subset is
(:func:`subset_block`). Larger blocks mix more coordinates; this bounds what that costs."""
BUDGET_AGGREGATIONS = ("plain-quantized", "secagg", "secagg+", "paillier")
"""The aggregations a byte budget applies to (``plain`` sends float64 updates, unprotected)."""


def rotation_block(length: int) -> int:
    """The rotation block when all ``length`` coordinates are sent: the largest power of two B <=
    the next power of two of ``length`` whose padding, ``ceil(length / B) * B - length``, is at
    most :data:`MAX_ROTATION_OVERHEAD` of ``length`` (one block when that pads little enough)."""
    length = require_int("rotation length", length, 1)
    block = 1 << (length - 1).bit_length()
    while block > 1 and -(-length // block) * block - length > MAX_ROTATION_OVERHEAD * length:
        block //= 2
    return block


def subset_block(count: int) -> int:
    """The rotation block when a budget sends at most ``count`` of the coordinates: the largest
    power of two B <= ``count`` such that ``floor(count / B) * B`` (the coordinates then sent,
    in whole blocks, no padding) is at least ``1 - MAX_ROTATION_OVERHEAD`` of ``count``."""
    count = require_int("subset size", count, 1)
    block = 1 << (count.bit_length() - 1)
    while block > 1 and count // block * block < (1 - MAX_ROTATION_OVERHEAD) * count:
        block //= 2
    return block


def _sent(count: int, block: int | None) -> int:
    """Coordinates quantized when ``count`` are sent: padded to whole rotation blocks, if rotated."""
    return count if block is None else -(-count // block) * block


Cost = Callable[[int], int]
"""Bytes of a protected update of so many encoded values, for one (bits, ring)."""


def protected_bytes(
    aggregation: str, bits: int, ring_bits: int, *, num_clients: int, max_samples_per_client: int, key_bits: int
) -> Cost:
    """The cost of ``values`` encoded values for ``aggregation`` at these bits and ring (see the
    module docstring); ``key_bits`` is used by Paillier only."""
    if aggregation != "paillier":
        return lambda values: -(-ring_bits * values // 8)
    paillier = paillier_module()  # gmpy2, phe: only for Paillier (the library's error if missing)
    config = QuantizationConfig(DEFAULT_CLIP, bits, num_clients, ring_bits, max_weight=max_samples_per_client)
    layout, split = paillier.packing_layout(config, num_clients, key_bits)
    width = int(paillier.ciphertext_bytes(key_bits))
    return lambda values: int(layout.num_plaintexts(2 * values if split else values)) * width


@dataclass(frozen=True)
class BudgetChoice:
    """What a byte budget chose for a ``dimension``-parameter model (:func:`choose`).

    Attributes:
        bytes_per_parameter: the budget.
        dimension: d, the model's parameter count.
        bits: quantization bits per coordinate (sign included).
        ring_bits: the ring Z_(2^b) the encodings are summed in.
        rotate: whether updates are rotated before quantization.
        block: the rotation's block size (None without rotation).
        count: coordinates sent per round (d: all of them).
        protected_bytes: bytes of one hospital's protected update per round.
    """

    bytes_per_parameter: float
    dimension: int
    bits: int
    ring_bits: int
    rotate: bool
    block: int | None
    count: int
    protected_bytes: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= self.dimension:
            raise ConfigurationError(f"a budget sends 1..{self.dimension} coordinates, got {self.count}")
        if self.rotate != (self.block is not None):
            raise ConfigurationError("a rotated choice has a block, an unrotated one none")
        if self.protected_bytes > self.bytes_per_parameter * self.dimension:
            raise ConfigurationError(
                f"{self.protected_bytes} bytes exceed the budget of {self.bytes_per_parameter:g} x {self.dimension}"
            )

    @property
    def fraction(self) -> float:
        """The share of coordinates sent per round."""
        return self.count / self.dimension

    @property
    def protected_bytes_per_parameter(self) -> float:
        """:attr:`protected_bytes` / d."""
        return self.protected_bytes / self.dimension

    def describe(self) -> str:
        """One line: the bits, the ring, the rotation and the coordinates sent."""
        rotation = f"rotated (blocks of {self.block})" if self.rotate else "not rotated"
        return (
            f"{self.bits} bits in Z_(2^{self.ring_bits}), {rotation}, {self.count:,} of {self.dimension:,} "
            f"coordinates per round ({self.fraction:.1%})"
        )

    def wrap(self, aggregator: Aggregator) -> Aggregator:
        """``aggregator`` (built with :attr:`bits` and :attr:`ring_bits`) with the rotation and the
        partial updates of this choice around it."""
        quantizer = getattr(aggregator, "quantizer", None)
        if not isinstance(quantizer, WeightedQuantizer) or (quantizer.config.bits, quantizer.config.ring_bits) != (
            self.bits,
            self.ring_bits,
        ):
            raise ConfigurationError(
                f"the budget chose {self.bits} bits in Z_(2^{self.ring_bits}); build the aggregator with them"
            )
        if self.rotate:
            aggregator = RotatedAggregator(aggregator, block=self.block)
        if self.count < self.dimension:
            aggregator = SparseAggregator(aggregator, CompressionConfig(coordinates=self.count))
        return aggregator

    def as_dict(self) -> dict[str, Any]:
        """The choice, JSON-ready."""
        return {
            "bytes_per_parameter": self.bytes_per_parameter,
            "dimension": self.dimension,
            "bits": self.bits,
            "ring_bits": self.ring_bits,
            "rotate": self.rotate,
            "block": self.block,
            "count": self.count,
            "fraction": self.fraction,
            "protected_bytes": self.protected_bytes,
            "protected_bytes_per_parameter": self.protected_bytes_per_parameter,
        }


def choose(
    bytes_per_parameter: float,
    dimension: int,
    *,
    aggregation: str,
    num_clients: int,
    max_samples_per_client: int = DEFAULT_MAX_SAMPLES_PER_CLIENT,
    key_bits: int = 0,
    option: str = "bytes_per_parameter",
) -> BudgetChoice:
    """The bits, ring, rotation and coordinates that meet ``bytes_per_parameter`` (module docstring).

    ``key_bits`` is the Paillier key size (required for ``paillier``); ``option`` names the
    budget in errors, as the user typed it. Raises ConfigurationError for a budget that is
    not a positive number, an aggregation without a protected update, or a budget not even
    one coordinate fits."""
    budget = bytes_per_parameter
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not math.isfinite(budget) or budget <= 0:
        raise ConfigurationError(f"{option} must be a positive number of bytes, got {budget!r}")
    if aggregation not in BUDGET_AGGREGATIONS:
        raise ConfigurationError(
            f"{option} applies to the quantized aggregations ({', '.join(BUDGET_AGGREGATIONS)}); "
            f"{aggregation!r} has no protected update to fit"
        )
    if aggregation == "paillier" and key_bits <= 0:
        raise ConfigurationError(f"{option} with paillier needs the key size (key_bits) to size the ciphertexts")
    dimension = require_int("model dimension", dimension, 1)
    allowed = budget * dimension
    for bits in range(MAX_BITS, MIN_BITS - 1, -1):
        rotate = bits < ROTATE_BELOW_BITS
        block = rotation_block(dimension) if rotate else None
        # The ring holds the values and the one flat segment's clipped count (n times its length:
        # at most the full padded length, whatever subset is sent), else every round refuses the table.
        counts_bits = (num_clients * _sent(dimension, block)).bit_length() + 1
        ring_bits = max(smallest_ring_bits(bits, num_clients, max_samples_per_client), counts_bits)
        cost = protected_bytes(
            aggregation, bits, ring_bits, num_clients=num_clients, max_samples_per_client=max_samples_per_client,
            key_bits=key_bits,
        )  # fmt: skip
        encoded = WeightedQuantizer.create(
            num_clients, bits=bits, ring_bits=ring_bits, max_samples_per_client=max_samples_per_client
        ).encoded_length
        # Paillier: a segment's clipped count must also fit the packing slot (max_weight * qmax values).
        longest = max_samples_per_client * ((1 << (bits - 1)) - 1) if aggregation == "paillier" else None
        full = cost(encoded(_sent(dimension, block)))
        fits = full <= allowed and (longest is None or _sent(dimension, block) <= longest)
        if fits or bits == MIN_BITS:
            break
    count = dimension
    if not fits:
        most = dimension if longest is None else min(dimension, longest)
        count, block = _largest_count(lambda sent: cost(encoded(sent)), allowed, most, rotate)
    if count == 0:
        smallest = cost(encoded(1))
        raise ConfigurationError(
            f"{option} {budget:g} cannot be met with {aggregation}: even one coordinate at {MIN_BITS} bits in "
            f"Z_(2^{ring_bits}) (with the encoding's counts) takes {smallest:,} bytes, {smallest / dimension:.3g} "
            f"bytes per parameter of this {dimension:,}-parameter model; allow at least that, or use another "
            "aggregation"
        )
    return BudgetChoice(
        bytes_per_parameter=float(budget),
        dimension=dimension,
        bits=bits,
        ring_bits=ring_bits,
        rotate=rotate,
        block=block,
        count=count,
        protected_bytes=cost(encoded(_sent(count, block))),
    )


def _largest_count(size: Callable[[int], int], allowed: float, dimension: int, rotate: bool) -> tuple[int, int | None]:
    """The largest k in 1..dimension whose protected update, ``size(k)``, fits ``allowed`` (the size
    grows with k, so it is bisected); rotated, rounded down to a whole number of
    :func:`subset_block` blocks, so that no padding is sent. Returns k (0 if not even one
    coordinate fits) and the rotation block (None unrotated)."""
    low, high = 0, dimension
    while low < high:
        middle = (low + high + 1) // 2
        if size(middle) <= allowed:
            low = middle
        else:
            high = middle - 1
    if not rotate or low == 0:
        return low, None
    block = subset_block(low)
    return low // block * block, block


def budget_aggregator(
    name: str,
    bytes_per_parameter: float,
    dimension: int,
    *,
    num_clients: int,
    max_samples_per_client: int = DEFAULT_MAX_SAMPLES_PER_CLIENT,
    option: str = "bytes_per_parameter",
    **options: Any,
) -> tuple[Aggregator, BudgetChoice]:
    """Aggregator ``name`` for a ``dimension``-parameter model whose protected update fits
    ``bytes_per_parameter``, and what the budget chose. ``options`` go to
    :func:`fl_core.aggregators.make_aggregator` (``clip``, ``clipping`` and the protocol's;
    not ``bits`` or ``ring_bits``, which the budget picks)."""
    given = sorted({"bits", "ring_bits"} & set(options))
    if given:
        raise ConfigurationError(f"{option} picks bits and ring_bits; do not give {', '.join(given)}")
    key_bits = 0
    if name == "paillier":
        paillier = paillier_module()  # gmpy2, phe: only for Paillier (the library's error if missing)
        default = paillier.INSECURE_KEY_BITS if options.get("insecure_small_key") else paillier.DEFAULT_KEY_BITS
        key_bits = int(options.get("key_bits") or default)
    choice = choose(
        bytes_per_parameter, dimension, aggregation=name, num_clients=num_clients,
        max_samples_per_client=max_samples_per_client, key_bits=key_bits, option=option,
    )  # fmt: skip
    inner = make_aggregator(
        name, num_clients=num_clients, bits=choice.bits, ring_bits=choice.ring_bits,
        max_samples_per_client=max_samples_per_client, **options,
    )  # fmt: skip
    return choice.wrap(inner), choice
