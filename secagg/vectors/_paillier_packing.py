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
    "MinimalSlots": "slot_bits defaults to bitlen(num_clients * span) + 1 (span = offset + value_max): "
    "value_bits + ceil(log2(num_clients)) + 1 for the bit range when value_bits >= ceil(log2(num_clients)).",
    "ExplicitSlots": "A slot width wider than the minimum is given explicitly.",
    "Extremes": "Values at the ends of the range: -2^(b-1) and 2^(b-1) - 1, or -B and B.",
    "PartialPlaintext": "The last plaintext has unused (zero) slots.",
    "SumOfClients": "The plaintexts are the sum of several clients' packed plaintexts.",
    "ValueOutOfRange": "A value outside [value_min, value_max]: refused (step: pack, EncodeError).",
    "BadLayout": "A layout that could carry between slots, does not fit the key, or whose value_bound does not "
    "match value_bits: refused (ConfigurationError).",
    "SlotOverflow": "A decrypted slot is impossible for the number of summands: a slot above "
    "k * span, a guard bit set, a non-zero padding slot or bits above the last slot "
    "(step: unpack, OverflowDetectedError).",
    "BadSummands": "num_summands outside 1..num_clients, or the wrong number of plaintexts (ConfigurationError).",
    "BoundedRange": "A layout with value_bound B: values in [-B, B], offset exactly B, span 2B "
    "(slot bitlen(2 N B) + 1: one bit above the smallest narrow ring of the signed sum).",
    "ExtraSummands": "More summands than declared, all at value_max, decoded as the declared count "
    "(step: unpack, OverflowDetectedError).",
}


def _layout_fields(layout: SlotLayout) -> Json:
    bound = {} if layout.value_bound is None else {"valueBound": layout.value_bound}
    return {"valueBits": layout.value_bits, "numClients": layout.num_clients, "keyBits": layout.key_bits,
            "slotBits": layout.width, **bound}


def _layout(data: Json) -> SlotLayout:
    bound = data.get("valueBound")
    return SlotLayout(int(data["valueBits"]), int(data["numClients"]), int(data["keyBits"]), int(data["slotBits"]),
                      None if bound is None else int(bound))


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
            "holds value + offset in bits [i*w, (i+1)*w), w = slot bits; slots per plaintext = floor((|n|-1)/w).",
            "offset = 2^(b-1) (bit range) or valueBound B (bounded range [-B, B], the last three groups).",
            "Plaintexts are hex big-endian integers (fixed width in PaillierPackTest).",
        ],
        notes=PACKING_NOTES,
        groups=[
            {"type": "PaillierLayoutTest", "tests": layout_tests},
            {"type": "PaillierPackTest", **_layout_fields(layout), "tests": pack_tests},
            {"type": "PaillierUnpackTest", **_layout_fields(layout), "tests": unpack_tests},
            *_bounded_groups(),
        ],
    )


def _layout_test(layout: SlotLayout, flags: list[str], slot_bits: int | None) -> Json:
    bound = {} if layout.value_bound is None else {"valueBound": layout.value_bound, "valueMax": layout.value_max,
                                                   "span": layout.span}
    return test_case(layout.describe(), flags, "valid", valueBits=layout.value_bits, numClients=layout.num_clients,
                     keyBits=layout.key_bits, slotBits=slot_bits, **bound, width=layout.width,
                     headroomBits=layout.headroom_bits, slotsPerPlaintext=layout.slots_per_plaintext,
                     usedBits=layout.used_bits, plaintextBytes=layout.plaintext_bytes, offset=layout.offset)


def _bounded_groups() -> list[Json]:
    """The bounded range [-B, B] (offset exactly B), appended after the bit-range groups."""
    layouts = [
        (SlotLayout.bounded(5000 * 32767, 10, 2048), ["BoundedRange", "MinimalSlots"], None),
        (SlotLayout.bounded(100 * 32767, 10, 2048), ["BoundedRange", "MinimalSlots"], None),
        (SlotLayout.bounded(5, 3, KEY_BITS), ["BoundedRange", "MinimalSlots"], None),
        (SlotLayout.bounded(1, 1, KEY_BITS), ["BoundedRange", "MinimalSlots"], None),
        (SlotLayout.bounded(5, 3, KEY_BITS, 8), ["BoundedRange", "ExplicitSlots"], 8),
        (SlotLayout(2, 5, KEY_BITS), ["MinimalSlots"], None),
    ]
    layout_tests = [_layout_test(layout, flags, slot_bits) for layout, flags, slot_bits in layouts]
    for value_bits, clients, slot_bits, bound, comment in (
        (5, 3, None, 5, "value_bound 5 with 5 value bits (bitlen(5) + 1 = 4)"),
        (2, 3, None, 0, "value_bound 0"),
        (4, 3, 5, 5, "a 5-bit slot for 3 summands in [-5, 5] (needs bitlen(30) + 1 = 6)"),
    ):
        layout_tests.append(test_case(comment, ["BoundedRange", "BadLayout"], "invalid", valueBits=value_bits,
                                      numClients=clients, keyBits=KEY_BITS, slotBits=slot_bits, valueBound=bound,
                                      error="ConfigurationError"))
    layout = SlotLayout.bounded(5, 3, KEY_BITS)
    width = layout.plaintext_bytes
    source = deterministic("paillier/packing/bounded")
    vectors = [[(b % 11) - 5 for b in source(25)] for _ in range(3)]
    extremes = [-5, 5, 0, -1, 1, 5, -5]
    pack_tests = [
        test_case("25 values over two plaintexts", ["BoundedRange", "PartialPlaintext"], "valid", values=vectors[0],
                  plaintexts=_words(pack(vectors[0], layout), width)),
        test_case("extremes", ["BoundedRange", "Extremes"], "valid", values=extremes,
                  plaintexts=_words(pack(extremes, layout), width)),
        test_case("6 is out of range", ["BoundedRange", "ValueOutOfRange"], "invalid", values=[0, 6],
                  error="EncodeError"),
        test_case("-6 is out of range", ["BoundedRange", "ValueOutOfRange"], "invalid", values=[-6],
                  error="EncodeError"),
    ]
    summed = [sum(column) for column in zip(*(pack(v, layout) for v in vectors), strict=True)]
    totals = [sum(column) for column in zip(*vectors, strict=True)]
    top = pack([5] * 25, layout)
    bottom = pack([-5] * 25, layout)
    unpack_tests = [
        test_case("sum of 3 clients' plaintexts", ["BoundedRange", "SumOfClients"], "valid",
                  plaintexts=_words(summed, width), length=25, numSummands=3, values=totals),
        test_case("3 summands all at 5", ["BoundedRange", "Extremes"], "valid", plaintexts=_words(
                  [3 * p for p in top], width), length=25, numSummands=3, values=[15] * 25),
        test_case("3 summands all at -5", ["BoundedRange", "Extremes"], "valid", plaintexts=_words(
                  [3 * p for p in bottom], width), length=25, numSummands=3, values=[-15] * 25),
        test_case("4 summands all at 5 decoded as 3", ["BoundedRange", "ExtraSummands"], "invalid",
                  plaintexts=_words([4 * p for p in top], width), length=25, numSummands=3,
                  error="OverflowDetectedError"),
        test_case("slot 0 holds 11 = 2B + 1 for one summand", ["BoundedRange", "SlotOverflow"], "invalid",
                  plaintexts=_words([bottom[0] + 11, bottom[1]], width), length=25, numSummands=1,
                  error="OverflowDetectedError"),
    ]
    return [
        {"type": "PaillierLayoutTest", "tests": layout_tests},
        {"type": "PaillierPackTest", **_layout_fields(layout), "tests": pack_tests},
        {"type": "PaillierUnpackTest", **_layout_fields(layout), "tests": unpack_tests},
    ]


@register("PaillierLayoutTest")
def check_layout(group: Json, test: Json) -> None:
    """Build the layout; compare every derived size."""
    del group
    slot_bits, bound = test["slotBits"], test.get("valueBound")

    def build() -> SlotLayout:
        return SlotLayout(int(test["valueBits"]), int(test["numClients"]), int(test["keyBits"]),
                          None if slot_bits is None else int(slot_bits), None if bound is None else int(bound))

    if not is_valid(test):
        expect_error(test, build, "SlotLayout")
        return
    layout = build()
    equal("layout", (layout.width, layout.headroom_bits, layout.slots_per_plaintext, layout.used_bits,
                     layout.plaintext_bytes, layout.offset),
          (test["width"], test["headroomBits"], test["slotsPerPlaintext"], test["usedBits"], test["plaintextBytes"],
           test["offset"]))
    if bound is not None:
        equal("range", (layout.value_max, layout.span), (test["valueMax"], test["span"]))


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
