"""Vectors for the wire format (spec section 11) and every masking message (section 12.7)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from secagg import wire
from secagg.masking.client import client_start
from secagg.masking.config import ACTIVE, MaskingConfig
from secagg.masking.driver import make_identities
from secagg.masking.messages import (
    AdvertiseKeys,
    ConsistencySignature,
    EncryptedShares,
    KeyRoster,
    MaskedInput,
    RosterEntry,
    SealedBox,
    ShareBundle,
    ShareDelivery,
    ShareEntry,
    SignedBy,
    SurvivorList,
    UnmaskRequest,
    UnmaskResponse,
)
from secagg.paillier.keys import key_policy
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, from_hex, test_case, vector_file
from secagg.vectors._suite import Suite, deterministic, register, words
from secagg.vectors._wirejson import message_class, message_from_json, message_to_json

__all__ = ["SUITES", "envelope", "wire_group"]

WIRE_NOTES = {
    "SemiHonest": "The semi-honest form of the message (no signature).",
    "Active": "The active-mode form of the message (with Ed25519 signatures).",
    "Empty": "A list field with zero items.",
    "Ring64": "A ring vector in Z_(2^64).",
    "Truncated": "The last byte is missing (step: decode, DecodeError).",
    "TrailingData": "One byte after the message (step: decode, DecodeError).",
    "BadMagic": "The envelope does not start with 'SA' (DecodeError).",
    "BadVersion": "A wire version other than 1 (DecodeError).",
    "UnknownTag": "A type tag no message has (DecodeError).",
    "WrongType": "A valid message of another type than the one expected (DecodeError).",
    "BadLength": "A length or count prefix that exceeds its limit or the input (DecodeError).",
    "BadSignatureLength": "A signature field that is neither empty nor 64 bytes (DecodeError).",
    "NotSorted": "A list that must be strictly increasing by client id is not (DecodeError).",
    "BothShares": "An UnmaskResponse revealing both the self-mask share and the mask-key share of one client: "
    "refused at decoding (DecodeError).",
    "BadRingSize": "A ring vector whose ring size byte is not 32 or 64 (DecodeError).",
    "BadEnum": "An enumerated field with an undefined value (DecodeError).",
}


def envelope(tag: int, body: bytes, *, version: int = wire.VERSION, magic: bytes = wire.MAGIC) -> bytes:
    """``magic || u8 version || u16be tag || body`` (for hand-built invalid encodings)."""
    return magic + bytes([version]) + tag.to_bytes(2, "big") + body


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


Invalid = tuple[str, Sequence[str], bytes]


def wire_group(message: wire.Message | type[wire.Message], valid: Sequence[tuple[str, Sequence[str], wire.Message]],
               invalid: Sequence[Invalid]) -> Json:
    """A WireMessageTest group: valid messages with fields and bytes, then invalid encodings."""
    cls = message if isinstance(message, type) else type(message)
    tests = [test_case(comment, flags, "valid", fields=message_to_json(msg), encoded=wire.encode(msg).hex())
             for comment, flags, msg in valid]
    first = wire.encode(valid[0][2])
    tests.append(test_case("last byte missing", ["Truncated"], "invalid", encoded=first[:-1].hex(),
                           error="DecodeError"))
    tests.append(test_case("one trailing zero byte", ["TrailingData"], "invalid", encoded=(first + b"\x00").hex(),
                           error="DecodeError"))
    tests += [test_case(comment, flags, "invalid", encoded=data.hex(), error="DecodeError")
              for comment, flags, data in invalid]
    return {"type": "WireMessageTest", "message": cls.__name__, "tag": cls.TAG, "tests": tests}


def _masking_groups() -> list[Json]:
    source = deterministic("wire/masking")

    def draw(size: int) -> bytes:
        return source(size)

    session = draw(32)
    keys = {c: (draw(32), draw(32)) for c in (1, 2, 3)}
    signature = draw(64)
    advertise = AdvertiseKeys(2, keys[2][0], keys[2][1], b"")
    advertise_active = AdvertiseKeys(2, keys[2][0], keys[2][1], signature)
    body = wire.encode(advertise)[5:]
    groups = [wire_group(advertise, [("client 2, semi-honest", ["SemiHonest"], advertise),
                                     ("client 2, active", ["Active"], advertise_active)], [
        ("a 10-byte signature", ["BadSignatureLength"],
         envelope(AdvertiseKeys.TAG, body[:68] + _u32(10) + bytes(10))),
        ("signature length 2^32 - 1", ["BadLength"], envelope(AdvertiseKeys.TAG, body[:68] + b"\xff" * 4)),
    ])]

    entries = tuple(RosterEntry(c, keys[c][0], keys[c][1], b"") for c in (1, 2, 3))
    roster = KeyRoster(2, entries)
    raw_entries = [wire.encode(KeyRoster(2, (entry,)))[13:] for entry in entries]
    groups.append(wire_group(roster, [("three entries for client 2", ["SemiHonest"], roster),
                                      ("no entries", ["Empty"], KeyRoster(1, ()))], [
        ("entries 1, 3, 2", ["NotSorted"],
         envelope(KeyRoster.TAG, _u32(2) + _u32(3) + raw_entries[0] + raw_entries[2] + raw_entries[1])),
        ("entry 1 twice", ["NotSorted"], envelope(KeyRoster.TAG, _u32(2) + _u32(2) + raw_entries[0] * 2)),
        ("count 4 with three entries", ["BadLength"],
         envelope(KeyRoster.TAG, _u32(2) + _u32(4) + b"".join(raw_entries))),
    ]))

    bundle = ShareBundle(1, 3, draw(33), draw(33))
    groups.append(wire_group(bundle, [("shares of client 1 for client 3", [], bundle)], [
        ("a 32-byte share", [], envelope(ShareBundle.TAG, wire.encode(bundle)[5:-1])),
    ]))

    boxes = (SealedBox(2, draw(28 + 80)), SealedBox(3, draw(28 + 80)))
    commitment = draw(32)
    shares = EncryptedShares(1, session, commitment, boxes)
    raw_box = [_u32(box.peer) + _u32(len(box.sealed)) + box.sealed for box in boxes]
    head = _u32(1) + session + commitment
    groups.append(wire_group(shares, [("client 1 to clients 2 and 3", [], shares)], [
        ("boxes for 3, 2", ["NotSorted"], envelope(EncryptedShares.TAG, head + _u32(2) + raw_box[1] + raw_box[0])),
        ("a 1025-byte box", ["BadLength"], envelope(EncryptedShares.TAG, head + _u32(1) + _u32(2) + _u32(1025)
                                                    + bytes(1025))),
        ("a 31-byte commitment (the message ends inside the box list)", ["Truncated"],
         envelope(EncryptedShares.TAG, _u32(1) + session + commitment[:31])),
    ]))

    delivery = ShareDelivery(3, session, (SealedBox(1, boxes[1].sealed), SealedBox(2, draw(108))))
    groups.append(wire_group(delivery, [("boxes from clients 1 and 2 for client 3", [], delivery),
                                        ("no boxes", ["Empty"], ShareDelivery(3, session, ()))], [
        ("box from client 2 twice", ["NotSorted"], envelope(ShareDelivery.TAG, _u32(3) + session + _u32(2)
                                                            + raw_box[0] + raw_box[0])),
    ]))

    vector32 = words("wire/masked/32", 5, 32)
    masked = MaskedInput(3, session, vector32)
    masked_body = wire.encode(masked)[5:]
    groups.append(wire_group(masked, [("5 elements of Z_(2^32)", [], masked),
                                      ("3 elements of Z_(2^64)", ["Ring64"],
                                       MaskedInput(3, session, words("wire/masked/64", 3, 64)))], [
        ("ring size byte 16", ["BadRingSize"], envelope(MaskedInput.TAG, masked_body[:36] + b"\x10"
                                                        + masked_body[37:])),
        ("element count 6 with 5 elements", ["BadLength"], envelope(MaskedInput.TAG, masked_body[:37] + _u32(6)
                                                                    + masked_body[41:])),
    ]))

    survivors = SurvivorList(2, session, (1, 2, 4))
    groups.append(wire_group(survivors, [("survivors 1, 2, 4", ["Active"], survivors)], [
        ("survivors 1, 4, 2", ["NotSorted"], envelope(SurvivorList.TAG, _u32(2) + session + _u32(3) + _u32(1)
                                                      + _u32(4) + _u32(2))),
    ]))

    consistency = ConsistencySignature(4, session, signature)
    groups.append(wire_group(consistency, [("client 4's signature", ["Active"], consistency)], [
        ("a 63-byte signature", ["Truncated"], envelope(ConsistencySignature.TAG, _u32(4) + session + signature[:63])),
    ]))

    signed = (SignedBy(1, draw(64)), SignedBy(2, draw(64)))
    request = UnmaskRequest(1, session, (1, 2, 3), ())
    request_active = UnmaskRequest(1, session, (1, 2, 3), signed)
    raw_signed = [_u32(s.client) + s.signature for s in signed]
    groups.append(wire_group(request, [("semi-honest request", ["SemiHonest", "Empty"], request),
                                       ("active request with two signatures", ["Active"], request_active)], [
        ("signers 2, 1", ["NotSorted"], envelope(UnmaskRequest.TAG, _u32(1) + session + _u32(3) + _u32(1) + _u32(2)
                                                 + _u32(3) + _u32(2) + raw_signed[1] + raw_signed[0])),
    ]))

    share_a, share_b = draw(33), draw(33)
    response = UnmaskResponse(2, session, (ShareEntry(1, share_a), ShareEntry(3, share_b)), (ShareEntry(4, draw(33)),))
    groups.append(wire_group(response, [("self-mask shares of 1 and 3, mask-key share of 4", [], response)], [
        ("both shares of client 3", ["BothShares"],
         envelope(UnmaskResponse.TAG, _u32(2) + session + _u32(1) + _u32(3) + share_a + _u32(1) + _u32(3) + share_b)),
        ("self-mask shares of 3, 1", ["NotSorted"],
         envelope(UnmaskResponse.TAG, _u32(2) + session + _u32(2) + _u32(3) + share_b + _u32(1) + share_a + _u32(0))),
    ]))

    identities, public = make_identities(4, deterministic("wire/identities"))
    config = MaskingConfig.secagg(4, 5, mode=ACTIVE, identity_keys=public)
    state, _ = client_start(config, 2, context=draw(32), identity=identities[2], random_bytes=source)
    encoded_state = wire.encode(state)
    phase_at = len(encoded_state) - (32 * 4 + 4 * 7 + 32 + 1)  # 4 keys, 7 var/list lengths, session id
    groups.append(wire_group(state, [("client 2 after AdvertiseKeys, active mode, n = 4", ["Active"], state)], [
        ("phase 9", ["BadEnum"], encoded_state[:phase_at] + b"\x09" + encoded_state[phase_at + 1:]),
        ("refused peers 3, 1", ["NotSorted"], encoded_state[:-4] + _u32(2) + _u32(3) + _u32(1)),
    ]))
    return groups


def _envelope_group() -> Json:
    valid = wire.encode(SurvivorList(2, bytes(32), (1, 2)))
    cases: list[tuple[str, list[str], bytes, Callable[[bytes], object]]] = [
        ("empty input", ["Truncated"], b"", wire.decode_any),
        ("header only", ["Truncated"], valid[:5], wire.decode_any),
        ("magic 'SB'", ["BadMagic"], b"SB" + valid[2:], wire.decode_any),
        ("version 2", ["BadVersion"], valid[:2] + b"\x02" + valid[3:], wire.decode_any),
        ("version 0", ["BadVersion"], valid[:2] + b"\x00" + valid[3:], wire.decode_any),
        ("tag 0x01ff", ["UnknownTag"], valid[:3] + b"\x01\xff" + valid[5:], wire.decode_any),
        ("tag 0x0000", ["UnknownTag"], valid[:3] + b"\x00\x00" + valid[5:], wire.decode_any),
    ]
    tests = [test_case(comment, flags, "invalid", encoded=data.hex(), error="DecodeError")
             for comment, flags, data, _ in cases]
    tests.append(test_case("a SurvivorList where a KeyRoster is expected", ["WrongType"], "invalid",
                           encoded=valid.hex(), expected="KeyRoster", error="DecodeError"))
    tests.append(test_case("a SurvivorList decoded as any message", [], "valid", encoded=valid.hex(),
                           expected="SurvivorList"))
    return {"type": "WireEnvelopeTest", "tests": tests}


def generate_wire_masking() -> Json:
    """wire_masking.json: the envelope and every masking message, valid and invalid encodings."""
    return vector_file(
        algorithm="secagg-wire-masking",
        schema="wire_test_schema.json",
        header=[
            "Wire encodings (docs/spec.md, section 11) of the masking messages (section 12.7): envelope",
            "'SA' || u8 version (1) || u16be tag || body; integers big-endian; byte strings hex in 'fields';",
            "ring vectors as {ringBits, words: hex of little-endian words}. Valid tests: encoding the fields",
            "gives 'encoded' and decoding 'encoded' gives the fields. Invalid tests: decoding must fail.",
        ],
        notes=WIRE_NOTES,
        groups=[_envelope_group(), *_masking_groups()],
    )


@register("WireMessageTest")
def check_wire_message(group: Json, test: Json) -> None:
    """Encode the fields and decode the bytes (or require DecodeError)."""
    cls = message_class(str(group["message"]))
    equal("tag", cls.TAG, group["tag"])
    data = from_hex(test["encoded"])
    # Paillier test keys are below the 2048-bit floor: their groups decode inside the test switch.
    with key_policy(bool(group.get("testKeySizes", False))):
        if not is_valid(test):
            expect_error(test, lambda: wire.decode(data, cls), "decode")
            return
        equal("encoding", wire.encode(message_from_json(cls, test["fields"])).hex(), test["encoded"])
        equal("decoded fields", message_to_json(wire.decode(data, cls)), test["fields"])


@register("WireEnvelopeTest")
def check_wire_envelope(group: Json, test: Json) -> None:
    """Decode as any message (or as the ``expected`` type)."""
    del group
    data = from_hex(test["encoded"])
    expected = test.get("expected")

    def decode() -> wire.Message:
        return wire.decode(data, message_class(str(expected))) if expected else wire.decode_any(data)

    if not is_valid(test):
        expect_error(test, decode, "decode")
        return
    equal("type", type(decode()).__name__, expected)


SUITES = [Suite("wire_masking.json", "wire_test_schema.json", generate_wire_masking)]
