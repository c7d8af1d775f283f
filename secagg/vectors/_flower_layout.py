"""flower_messages.json's FlowerPaillierLayoutTest group: a Flower Paillier round's packing layout.

docs/spec.md 15.6: the server and every node derive the layout from the
:class:`~secagg.integrations.flower.protocol.PaillierSetup` alone, in the bounded range
of section 13.2 with ``B = max_weight * qmax`` (``qmax = 2^(bits-1) - 1``): values in
``[-B, B]``, offset exactly B, slot ``bitlen(2 n B) + 1`` bits for the setup's n nodes.
Each valid test packs values at the extremes ``+-B``; a value beyond B is refused
(EncodeError), and a B above 2^47 - 1 (more than 48 value bits) refuses the layout.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from secagg import wire
from secagg.integrations.flower.protocol import PaillierSetup
from secagg.paillier.packing import SlotLayout, pack
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, from_hex, test_case
from secagg.vectors._suite import register

__all__ = ["LAYOUT_NOTES", "layout_group"]

LAYOUT_NOTES = {
    "BoundedSlots": "The setup's layout: B = max_weight * qmax, offset B, slot bitlen(2 n B) + 1 (docs/spec.md 15.6); "
    "values at +-B packed into hex big-endian plaintexts of plaintextBytes bytes.",
    "BeyondBound": "A value of B + 1 or -B - 1 in the setup's layout (step: pack, EncodeError).",
    "TooWide": "max_weight * qmax above 2^47 - 1, more than 48 value bits (step: layout, ConfigurationError).",
}


def _bound(setup: PaillierSetup) -> int:
    """B from the setup's fields, as the spec writes it."""
    return setup.max_weight * ((1 << (setup.bits - 1)) - 1)


def _extremes(bound: int, length: int) -> list[int]:
    """``length`` values cycling through B, -B, 0, B - 1, -B + 1, 1, -1."""
    cycle = (bound, -bound, 0, bound - 1, -bound + 1, 1, -1)
    return [cycle[i % len(cycle)] for i in range(length)]


def _fields(setup: PaillierSetup, key_bits: int) -> dict[str, object]:
    return {"setup": wire.encode(setup).hex(), "keyBits": key_bits, "numNodes": len(setup.node_ids)}


def layout_group(paillier: PaillierSetup, dp: PaillierSetup) -> Json:
    """The group for the adapter's Paillier setup ``paillier`` (5 nodes, 16 bits) and its DP form ``dp``."""
    tests = []
    weighted = dataclasses.replace(paillier, max_weight=5000)
    for comment, flags, setup, key_bits in (
        ("16-bit values, max_weight 5000, 5 nodes, 2048-bit key", [], weighted, 2048),
        ("16-bit values, max_weight 4096, 5 nodes, 3072-bit key", [], paillier, 3072),
        ("the DP setup: max_weight 1, 17 values, 2048-bit key", ["DP"], dp, 2048),
    ):
        layout = setup.layout(key_bits)
        bound = _bound(setup)
        assert layout.value_bound == bound and layout.width == (2 * len(setup.node_ids) * bound).bit_length() + 1
        values = _extremes(bound, setup.vector_length)
        plaintexts = [p.to_bytes(layout.plaintext_bytes, "big").hex() for p in pack(values, layout)]
        tests.append(test_case(comment, ["BoundedSlots", *flags], "valid", **_fields(setup, key_bits),
                               valueBound=bound, valueBits=layout.value_bits, offset=layout.offset,
                               valueMax=layout.value_max, slotBits=layout.width,
                               slotsPerPlaintext=layout.slots_per_plaintext, plaintextBytes=layout.plaintext_bytes,
                               values=values, plaintexts=plaintexts))  # fmt: skip
    for comment, setup, value in (("a weighted value of B + 1", weighted, _bound(weighted) + 1),
                                  ("a DP value of -B - 1", dp, -_bound(dp) - 1)):
        values = [value, *_extremes(_bound(setup), setup.vector_length - 1)]
        tests.append(test_case(comment, ["BeyondBound"], "invalid", **_fields(setup, 2048), values=values,
                               error="EncodeError"))
    wide = dataclasses.replace(paillier, bits=40)
    tests.append(test_case("40-bit values, max_weight 4096: B has 51 bits", ["TooWide"], "invalid",
                           **_fields(wide, 2048), error="ConfigurationError"))
    return {"type": "FlowerPaillierLayoutTest", "tests": tests}


@register("FlowerPaillierLayoutTest")
def check_layout(group: Json, test: Json) -> None:
    """Derive the setup's layout; compare it (and B from the spec's formula); pack or require the error."""
    del group
    setup = wire.decode(from_hex(test["setup"]), PaillierSetup)
    key_bits = int(test["keyBits"])
    equal("nodes", len(setup.node_ids), test["numNodes"])
    if "values" not in test:
        expect_error(test, lambda: setup.layout(key_bits), "layout")
        return
    layout = setup.layout(key_bits)
    bound = _bound(setup)
    equal("layout", layout, SlotLayout.bounded(bound, len(setup.node_ids), key_bits))
    values = np.array(test["values"], dtype=np.int64)
    if not is_valid(test):
        expect_error(test, lambda: pack(values, layout), "pack")
        return
    equal("value bound", bound, test["valueBound"])
    equal("slot bits", layout.width, (2 * len(setup.node_ids) * bound).bit_length() + 1)
    got = {"valueBits": layout.value_bits, "offset": layout.offset, "valueMax": layout.value_max,
           "slotBits": layout.width, "slotsPerPlaintext": layout.slots_per_plaintext,
           "plaintextBytes": layout.plaintext_bytes}
    equal("layout fields", got, {key: test[key] for key in got})
    plaintexts = [p.to_bytes(layout.plaintext_bytes, "big").hex() for p in pack(values, layout)]
    equal("plaintexts", plaintexts, test["plaintexts"])
