"""Vectors for Paillier packing (spec section 13.2): slot layouts, pack, unpack with overflow detection."""

from __future__ import annotations

from secagg.paillier.packing import SlotLayout, pack, unpack
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, test_case, vector_file
from secagg.vectors._paillier_common import KEY_BITS, _unwords, _words
from secagg.vectors._suite import deterministic, register

__all__ = ["generate_packing"]


# --- paillier_packing.json -------------------------------------------------------------

PACKING_NOTES = {
    "MinimalSlots": "slot_bits defaults to value_bits + ceil(log2(num_clients)) + 1.",
    "ExplicitSlots": "A slot width wider than the minimum is given explicitly.",
    "Extremes": "Values at -2^(b-1) and 2^(b-1) - 1.",
    "PartialPlaintext": "The last plaintext has unused (zero) slots.",
    "SumOfClients": "The plaintexts are the sum of several clients' packed plaintexts.",
    "ValueOutOfRange": "A value outside [-2^(b-1), 2^(b-1) - 1]: refused (step: pack, EncodeError).",
    "BadLayout": "A layout that could carry between slots or does not fit the key: refused (ConfigurationError).",
    "SlotOverflow": "A decrypted slot is impossible for the number of summands: a slot above "
    "k * (2^b - 1), a guard bit set, a non-zero padding slot or bits above the last slot "
    "(step: unpack, OverflowDetectedError).",
    "BadSummands": "num_summands outside 1..num_clients, or the wrong number of plaintexts (ConfigurationError).",
}


def _layout_fields(layout: SlotLayout) -> Json:
    return {"valueBits": layout.value_bits, "numClients": layout.num_clients, "keyBits": layout.key_bits,
            "slotBits": layout.width}


def _layout(data: Json) -> SlotLayout:
    return SlotLayout(int(data["valueBits"]), int(data["numClients"]), int(data["keyBits"]), int(data["slotBits"]))


def generate_packing() -> Json:
    """paillier_packing.json: slot layouts, pack, unpack with overflow detection."""
    layout_tests = []
    for value_bits, clients, key_bits, slot_bits, flags in (
        (16, 10, 2048, None, ["MinimalSlots"]), (8, 4, KEY_BITS, None, ["MinimalSlots"]),
        (8, 4, KEY_BITS, 16, ["ExplicitSlots"]), (48, 1 << 15, 3072, None, ["MinimalSlots"]),
    ):
        layout = SlotLayout(value_bits, clients, key_bits, slot_bits)
        layout_tests.append(test_case(layout.describe(), flags, "valid", valueBits=value_bits, numClients=clients,
                                      keyBits=key_bits, slotBits=slot_bits, width=layout.width,
                                      headroomBits=layout.headroom_bits, slotsPerPlaintext=layout.slots_per_plaintext,
                                      usedBits=layout.used_bits, plaintextBytes=layout.plaintext_bytes,
                                      offset=layout.offset))
    for value_bits, clients, key_bits, slot_bits, comment in (
        (8, 4, KEY_BITS, 10, "slot narrower than value + headroom + guard"), (1, 4, KEY_BITS, None, "1-bit values"),
        (49, 4, 4096, None, "49-bit values"), (8, 0, KEY_BITS, None, "no clients"),
        (48, 4, 4096, 65, "a 65-bit slot (slot sums are 64-bit words)"),
        (16, 10, 16, None, "a key too small for one slot"),
    ):
        layout_tests.append(test_case(comment, ["BadLayout"], "invalid", valueBits=value_bits, numClients=clients,
                                      keyBits=key_bits, slotBits=slot_bits, error="ConfigurationError"))

    layout = SlotLayout(8, 4, KEY_BITS)
    width = layout.plaintext_bytes
    source = deterministic("paillier/packing")
    vectors = [[(b % 256) - 128 for b in source(15)] for _ in range(3)]
    pack_tests = [
        test_case("15 values over two plaintexts", ["PartialPlaintext"], "valid", values=vectors[0],
                  plaintexts=_words(pack(vectors[0], layout), width)),
        test_case("extremes", ["Extremes"], "valid", values=[-128, 127, 0, -1, 1, 127, -128],
                  plaintexts=_words(pack([-128, 127, 0, -1, 1, 127, -128], layout), width)),
        test_case("128 is out of range", ["ValueOutOfRange"], "invalid", values=[0, 128], error="EncodeError"),
        test_case("-129 is out of range", ["ValueOutOfRange"], "invalid", values=[-129], error="EncodeError"),
    ]
    summed = [sum(column) for column in zip(*(pack(v, layout) for v in vectors), strict=True)]
    totals = [sum(column) for column in zip(*vectors, strict=True)]
    unpack_tests = [
        test_case("sum of 3 clients' plaintexts", ["SumOfClients"], "valid", plaintexts=_words(summed, width),
                  length=15, numSummands=3, values=totals),
        test_case("one client's plaintexts", [], "valid", plaintexts=_words(pack(vectors[0], layout), width),
                  length=15, numSummands=1, values=vectors[0]),
    ]
    guard = 1 << (layout.width - 1)
    bound = layout.max_slot_sum(1)
    top = 1 << layout.used_bits
    single = pack(vectors[0], layout)
    for comment, plaintexts, summands in (
        ("slot 0 holds 2 * (2^8 - 1) for one summand", [single[0] - (single[0] % (1 << layout.width)) + 2 * bound,
                                                         single[1]], 1),
        ("slot 3's guard bit is set", [single[0] | (guard << (3 * layout.width)), single[1]], 1),
        ("padding slot 5 of the second plaintext is not zero", [single[0], single[1] | (1 << (5 * layout.width))], 1),
        ("bits above the last slot", [single[0] + top, single[1]], 1),
    ):
        unpack_tests.append(test_case(comment, ["SlotOverflow"], "invalid", plaintexts=_words(plaintexts, width + 1),
                                      length=15, numSummands=summands, error="OverflowDetectedError"))
    unpack_tests.append(test_case("5 summands for a 4-client layout", ["BadSummands"], "invalid",
                                  plaintexts=_words(summed, width), length=15, numSummands=5,
                                  error="ConfigurationError"))
    unpack_tests.append(test_case("one plaintext for 15 values", ["BadSummands"], "invalid",
                                  plaintexts=_words(summed[:1], width), length=15, numSummands=3,
                                  error="ConfigurationError"))
    return vector_file(
        algorithm="secagg-paillier-packing",
        schema="paillier_packing_test_schema.json",
        header=[
            "Packing signed values into Paillier plaintexts (docs/spec.md, section 13.2): slot i of a plaintext",
            "holds value + 2^(b-1) in bits [i*w, (i+1)*w), w = slot bits; slots per plaintext = floor((|n|-1)/w).",
            "Plaintexts are hex big-endian integers (fixed width in PaillierPackTest).",
        ],
        notes=PACKING_NOTES,
        groups=[
            {"type": "PaillierLayoutTest", "tests": layout_tests},
            {"type": "PaillierPackTest", **_layout_fields(layout), "tests": pack_tests},
            {"type": "PaillierUnpackTest", **_layout_fields(layout), "tests": unpack_tests},
        ],
    )


@register("PaillierLayoutTest")
def check_layout(group: Json, test: Json) -> None:
    """Build the layout; compare every derived size."""
    del group
    slot_bits = test["slotBits"]

    def build() -> SlotLayout:
        return SlotLayout(int(test["valueBits"]), int(test["numClients"]), int(test["keyBits"]),
                          None if slot_bits is None else int(slot_bits))

    if not is_valid(test):
        expect_error(test, build, "SlotLayout")
        return
    layout = build()
    equal("layout", (layout.width, layout.headroom_bits, layout.slots_per_plaintext, layout.used_bits,
                     layout.plaintext_bytes, layout.offset),
          (test["width"], test["headroomBits"], test["slotsPerPlaintext"], test["usedBits"], test["plaintextBytes"],
           test["offset"]))


@register("PaillierPackTest")
def check_pack(group: Json, test: Json) -> None:
    """Pack the values into plaintexts."""
    layout = _layout(group)
    values = [int(v) for v in test["values"]]
    if not is_valid(test):
        expect_error(test, lambda: pack(values, layout), "pack")
        return
    equal("plaintexts", _words(pack(values, layout), layout.plaintext_bytes), test["plaintexts"])


@register("PaillierUnpackTest")
def check_unpack(group: Json, test: Json) -> None:
    """Unpack summed plaintexts, with the overflow checks."""
    layout = _layout(group)
    plaintexts = _unwords(test["plaintexts"])
    length, summands = int(test["length"]), int(test["numSummands"])
    if not is_valid(test):
        expect_error(test, lambda: unpack(plaintexts, layout, length, summands), "unpack")
        return
    equal("values", [int(v) for v in unpack(plaintexts, layout, length, summands)], test["values"])
