"""Paillier slot width against the narrow ring (issue 16): bytes per value before and after.

Before issue 16 the ``paillier`` aggregator packed its weighted encodings
(``|w q| <= W q``) in the bit range of ``v = bitlen(W q) + 1`` value bits
(offset ``2^(v-1)``); now it packs them in the bounded range ``[-W q, W q]``
(offset exactly ``W q``, :meth:`secagg.paillier.SlotLayout.bounded`). This prints
the Markdown table of docs/paillier.md ("Slot width against the narrow ring")
from the layouts alone (no key, no encryption)::

    PYTHONPATH=. python -m benchmarks.paillier_slots
"""

from __future__ import annotations

from secagg._outputs import run_tool
from secagg.encoding import smallest_ring_bits
from secagg.paillier.packing import SlotLayout

__all__ = ["CASES", "main", "table"]

CASES = ((8, 1, 10), (16, 1, 10), (16, 1, 100), (16, 100, 10), (16, 5000, 10), (12, 300, 17))
"""(quantization bits, weight bound W, clients N) of the table's rows."""


def _cell(layout: SlotLayout, ring: int, ciphertext_bytes: int) -> str:
    return (f"{layout.width} (b + {layout.width - ring}), {layout.slots_per_plaintext}, "
            f"{ciphertext_bytes / layout.slots_per_plaintext:.2f}")


def table(key_bits: int = 2048) -> list[str]:
    """The table's lines: per row the ring b, the slot before and after, ciphertexts per 10^6 values."""
    ciphertext_bytes = 2 * ((key_bits + 7) // 8)
    lines = [
        "| bits | W | N | ring b | before: w, slots, bytes/value | after: w, slots, bytes/value "
        "| ciphertexts per 10^6 values before -> after | masking b / 8 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for bits, weight, clients in CASES:
        bound = weight * ((1 << (bits - 1)) - 1)
        ring = smallest_ring_bits(bits, clients, weight)
        before = SlotLayout(bound.bit_length() + 1, clients, key_bits)
        after = SlotLayout.bounded(bound, clients, key_bits)
        lines.append(
            f"| {bits} | {weight} | {clients} | {ring} | {_cell(before, ring, ciphertext_bytes)} "
            f"| {_cell(after, ring, ciphertext_bytes)} "
            f"| {before.num_plaintexts(10**6):,} -> {after.num_plaintexts(10**6):,} | {ring / 8:.2f} |"
        )
    return lines


def main() -> None:
    """Print the table for a 2048-bit key."""
    print("\n".join(table()))


if __name__ == "__main__":  # a library error or Ctrl-C: one line, exit code 2 or 130
    raise SystemExit(run_tool("paillier_slots", main))
