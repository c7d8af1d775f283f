"""Vectors for what binds a session and what a masking client refuses before it sends anything.

- ``masking_defaults.json``: the default SecAgg thresholds (spec 12.1) for n = 3..25, both modes;
- ``descriptor.json``: the session descriptor and its training parameters (spec 16);
- ``masking_client.json``: the stored client state (spec 12.11) and client-side refusals (spec 12.8);

The Paillier session and key-storage vectors are in ``_paillier_bindings.py``.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from typing import Any

from secagg import wire
from secagg.descriptor import SessionDescriptor, encode_parameters
from secagg.masking.client import ClientState, HeldShares, client_start, client_step
from secagg.masking.config import ACTIVE, SEMI_HONEST, MaskingConfig
from secagg.masking.messages import KeyRoster, RosterEntry, ShareDelivery
from secagg.masking.parameters import default_dropout_target
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, VectorError, from_hex, test_case, vector_file
from secagg.vectors._random import RecordingRandom, ReplayedRandom
from secagg.vectors._suite import Suite, deterministic, register

__all__ = ["SUITES"]


def _float_bits(value: float) -> int:
    return int.from_bytes(struct.pack(">d", value), "big")


def _fixed_keys(n: int) -> tuple[bytes, ...]:
    """Stand-in identity keys for configurations that only check their length (u32 index, zero-padded)."""
    return tuple(i.to_bytes(32, "big") for i in range(1, n + 1))


# --- masking_defaults.json --------------------------------------------------------------------

DEFAULTS_NOTES = {
    "SemiHonest": "Semi-honest mode: t = max(2, c + 2).",
    "Active": "Active mode: t = max(2, c + 2, floor((n + c)/2) + 1); identity keys are placeholders "
    "(u32(i) zero-padded to 32 bytes): only their count matters here.",
    "LargeFederation": "n >= 20: the default dropout target is ceil(0.4 n) (10% of n at each of four rounds).",
    "TargetMissed": "No c reaches the dropout target: c = 0 and the guarantee tolerates fewer dropouts.",
    "BadSize": "n outside 3..65536: refused (step: MaskingConfig.secagg, ConfigurationError).",
}


def _defaults_config(n: int, mode: str) -> MaskingConfig:
    keys = _fixed_keys(n) if mode == ACTIVE else ()
    return MaskingConfig.secagg(n, 1, mode=mode, identity_keys=keys)


def generate_defaults() -> Json:
    """masking_defaults.json: MaskingConfig.secagg's default c and t, and the computed guarantee."""
    groups = []
    for mode in (SEMI_HONEST, ACTIVE):
        tests = []
        for n in range(3, 26):
            config = _defaults_config(n, mode)
            guarantee = config.guarantee
            flags = ["Active" if mode == ACTIVE else "SemiHonest"]
            if n >= 20:
                flags.append("LargeFederation")
            if guarantee.dropouts < default_dropout_target(n):
                flags.append("TargetMissed")
            tests.append(test_case(f"n = {n}", flags, "valid", numClients=n, dropoutTarget=default_dropout_target(n),
                                   colluders=config.colluders, threshold=config.threshold,
                                   guaranteeColluders=guarantee.colluders, guaranteeDropouts=guarantee.dropouts,
                                   configDigest=config.digest().hex()))
        for n in (2, 65537):
            tests.append(test_case(f"n = {n}", ["BadSize"], "invalid", numClients=n, error="ConfigurationError"))
        groups.append({"type": "MaskingDefaultsTest", "mode": mode, "vectorLength": 1, "tests": tests})
    return vector_file(
        algorithm="secagg-masking-defaults",
        schema="masking_defaults_test_schema.json",
        header=["MaskingConfig.secagg defaults (docs/spec.md, section 12.1): the default colluders c, threshold t,",
                "the computed guarantee (colluders, dropouts) and the config digest (d = 1, no descriptor),",
                "for n = 3..25 in both modes; sizes outside 3..65536 are refused."],
        notes=DEFAULTS_NOTES,
        groups=groups,
    )


@register("MaskingDefaultsTest")
def check_defaults(group: Json, test: Json) -> None:
    """Build the default configuration; compare c, t, the guarantee and the digest."""
    n, mode = int(test["numClients"]), str(group["mode"])
    if not is_valid(test):
        expect_error(test, lambda: _defaults_config(n, mode), "MaskingConfig.secagg")
        return
    config = _defaults_config(n, mode)
    equal("dropout target", default_dropout_target(n), test["dropoutTarget"])
    equal("colluders", config.colluders, test["colluders"])
    equal("threshold", config.threshold, test["threshold"])
    equal("guarantee colluders", config.guarantee.colluders, test["guaranteeColluders"])
    equal("guarantee dropouts", config.guarantee.dropouts, test["guaranteeDropouts"])
    equal("config digest", config.digest().hex(), test["configDigest"])


# --- descriptor.json --------------------------------------------------------------------------

DESCRIPTOR_NOTES = {
    "AllTypes": "One parameter of each type (bool, int, float, str, bytes), given unsorted.",
    "NonAscii": "Names sorted by their UTF-8 bytes, not by code point order of another encoding.",
    "Empty": "No parameters: the empty string.",
    "NaN": "A NaN float: refused (step: encode_parameters, ConfigurationError).",
    "ListValue": "A list value: refused (step: encode_parameters, ConfigurationError).",
    "Oversized": "Parameters encoding to more than 2^20 bytes: refused (step: encode_parameters, "
    "ConfigurationError). The value is `zeros`: that many zero bytes.",
    "IntRange": "An integer outside the signed 64-bit range: refused (step: encode_parameters, ConfigurationError).",
    "NoQuantization": "clip, bits, ring and max_weight all 0 (raw ring vectors).",
    "BadRounding": "A record with rounding code 1: refused (step: decode, DecodeError).",
    "BadUtf8": "A weight key that is not UTF-8: refused (step: decode, DecodeError).",
}


def _param_json(name: str, value: Any) -> Json:
    if isinstance(value, bool):
        return {"name": name, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"name": name, "type": "int", "value": value}
    if isinstance(value, float):
        text = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return {"name": name, "type": "float", "value": value if math.isfinite(value) else text}
    if isinstance(value, str):
        return {"name": name, "type": "str", "value": value}
    if isinstance(value, bytes):
        return {"name": name, "type": "bytes", "value": value.hex()}
    if isinstance(value, list):
        return {"name": name, "type": "list", "value": value}
    raise VectorError(f"no JSON form for parameter {name}")


def _param_value(item: Json) -> Any:
    kind, value = item["type"], item["value"]
    if kind == "float":
        return float(value)
    if kind == "bytes":
        return from_hex(value)
    if kind == "zeros":
        return bytes(int(value))
    return value


def _parameters(items: list[Json]) -> dict[str, Any]:
    return {str(item["name"]): _param_value(item) for item in items}


def _descriptor_fields(d: SessionDescriptor) -> Json:
    return {"clipBits": d.clip_bits, "bits": d.bits, "ringBits": d.ring_bits, "rounding": d.rounding,
            "maxWeight": d.max_weight, "weightKey": d.weight_key.hex(), "layoutDigest": d.layout_digest.hex(),
            "modelDigest": d.model_digest.hex(), "runId": d.run_id, "serverRound": d.server_round,
            "parameters": d.parameters.hex()}


def generate_descriptor() -> Json:
    """descriptor.json: encode_parameters, descriptor records and digests, refusals."""
    param_cases: list[tuple[str, list[str], dict[str, Any] | list[Json]]] = [
        ("no parameters", ["Empty"], {}),
        ("one of each type", ["AllTypes"], {"lr": 0.1, "local-epochs": 2, "shuffle": True, "optimizer": "sgd",
                                             "salt": b"\x00\xff", "momentum": -0.0}),
        ("Flower record/key names, non-ASCII", ["NonAscii"], {"config/é": 1, "config/z": -1, "config/ä": 2**63 - 1,
                                                              "config/a": -(2**63), "config/inf": math.inf}),
    ]
    tests = []
    for comment, flags, params in param_cases:
        assert isinstance(params, dict)
        tests.append(test_case(comment, flags, "valid", parameters=[_param_json(k, v) for k, v in params.items()],
                               encoded=encode_parameters(params).hex()))
    tests.append(test_case("a NaN learning rate", ["NaN"], "invalid",
                           parameters=[_param_json("lr", math.nan)], error="ConfigurationError"))
    tests.append(test_case("a list value", ["ListValue"], "invalid",
                           parameters=[_param_json("layers", [1, 2])], error="ConfigurationError"))
    tests.append(test_case("2^63 does not fit", ["IntRange"], "invalid",
                           parameters=[_param_json("steps", 2**63)], error="ConfigurationError"))
    tests.append(test_case("a 2^20-byte value (with its header: over 2^20 bytes)", ["Oversized"], "invalid",
                           parameters=[{"name": "blob", "type": "zeros", "value": 1 << 20}],
                           error="ConfigurationError"))
    draw = deterministic("descriptor/digests")
    descriptors = [
        ("raw ring vectors", ["NoQuantization"],
         SessionDescriptor(0, 0, 0, 0, 0, b"", bytes(32), bytes(32), 0, 0, b"")),
        ("clip 0.5, 16 bits, ring 32, max weight 4096, round 3 of run 77", [],
         SessionDescriptor(_float_bits(0.5),
                           16, 32, 0, 4096, b"num-examples", draw(32), draw(32), 77, 3,
                           encode_parameters({"config/lr": 0.1, "config/local-epochs": 1}))),
        ("clip 1e300, 53 bits, ring 64, run 2^64 - 1, round 2^32 - 1", [],
         SessionDescriptor(_float_bits(1e300), 53, 64, 0, 1,
                           "poids-é".encode(), draw(32), draw(32), 2**64 - 1, 2**32 - 1, b"")),
    ]
    record_tests = [test_case(comment, flags, "valid", fields=_descriptor_fields(d), record=wire.encode(d).hex(),
                              digest=d.digest().hex()) for comment, flags, d in descriptors]
    good = wire.encode(descriptors[1][2])
    record_tests.append(test_case("rounding code 1", ["BadRounding"], "invalid",
                                  record=(good[:15] + b"\x01" + good[16:]).hex(), error="DecodeError"))
    bad_key = good[:20] + b"\x00\x00\x00\x02\xc3\x28" + good[20 + 4 + 12:]
    record_tests.append(test_case("weight key 0xc3 0x28", ["BadUtf8"], "invalid", record=bad_key.hex(),
                                  error="DecodeError"))
    return vector_file(
        algorithm="secagg-session-descriptor",
        schema="descriptor_test_schema.json",
        header=["The session descriptor (docs/spec.md, section 16): the canonical encoding of training",
                "parameters, descriptor records (tag 0x0120, envelope included) and their digests",
                "SHA-256(\"secagg/v1/descriptor\" || record body), and the values that cannot be bound."],
        notes=DESCRIPTOR_NOTES,
        groups=[{"type": "DescriptorParametersTest", "tests": tests},
                {"type": "DescriptorRecordTest", "tests": record_tests}],
    )


@register("DescriptorParametersTest")
def check_parameters(group: Json, test: Json) -> None:
    """encode_parameters of the listed parameters (or the refusal)."""
    del group
    params = _parameters(test["parameters"])
    if not is_valid(test):
        expect_error(test, lambda: encode_parameters(params), "encode_parameters")
        return
    equal("encoded parameters", encode_parameters(params).hex(), test["encoded"])


@register("DescriptorRecordTest")
def check_descriptor(group: Json, test: Json) -> None:
    """Encode the fields, compare the record and digest; decode it back (or require the decode error)."""
    del group
    data = from_hex(test["record"])
    if not is_valid(test):
        expect_error(test, lambda: wire.decode(data, SessionDescriptor), "decode")
        return
    f = test["fields"]
    descriptor = SessionDescriptor(f["clipBits"], f["bits"], f["ringBits"], f["rounding"], f["maxWeight"],
                                   from_hex(f["weightKey"]), from_hex(f["layoutDigest"]), from_hex(f["modelDigest"]),
                                   f["runId"], f["serverRound"], from_hex(f["parameters"]))
    equal("record", wire.encode(descriptor).hex(), test["record"])
    equal("digest", descriptor.digest().hex(), test["digest"])
    equal("decoded", wire.decode(data, SessionDescriptor), descriptor)



# --- masking_client.json ----------------------------------------------------------------------

CLIENT_NOTES = {
    "RoundTrip": "client_start with the recorded draws (encryption key, then mask key): the AdvertiseKeys and "
    "the stored ClientState (tag 0x0180) it returns; decoding the state and encoding it again gives the same bytes.",
    "BadPhase": "A stored state with phase 6 (step: decode, DecodeError).",
    "BadSessionLength": "A stored session id of 5 bytes (step: decode, DecodeError).",
    "RefusedHeld": "A stored state that holds shares of a peer it lists as refused (step: decode, DecodeError).",
    "BadGraphCode": "A stored config record with graph code 7: decodes; the next step refuses it "
    "(step: client_step, ConfigurationError).",
    "BadClientId": "A client id outside 1..n (step: client_start, ConfigurationError).",
    "BadContext": "A context of other than 32 bytes (step: client_start, ConfigurationError).",
    "WrongRecipient": "A KeyRoster addressed to another client (step: client_step, ProtocolError).",
    "SelfInRoster": "A KeyRoster naming the client itself (step: client_step, ProtocolError).",
    "FewNeighbours": "A KeyRoster with fewer than t entries (step: client_step, ThresholdError).",
    "WrongRound": "A ShareDelivery while the roster is awaited (step: client_step, ProtocolError).",
    "Garbage": "Bytes that are no message (step: client_step, DecodeError).",
}


def _client_config() -> MaskingConfig:
    return MaskingConfig.secagg(4, 3, mode="semi-honest")


def generate_client() -> Json:
    """masking_client.json: the stored client state and refusals of the masking client."""
    config = _client_config()
    context = deterministic("bindings/client/context")(32)
    source = RecordingRandom(deterministic("bindings/client/1"))
    state, advertise = client_start(config, 1, context=context, random_bytes=source)
    draws = source.take()
    encoded = state.to_bytes()
    base = {"numClients": 4, "vectorLength": 3, "context": context.hex()}
    tests = [test_case("client 1 of 4 after AdvertiseKeys", ["RoundTrip"], "valid", step="start", client=1,
                       draws=[d.hex() for d in draws], advertise=advertise.hex(), state=encoded.hex(), **base)]
    phase_at = len(encoded) - (32 * 4 + 4 + 32 + 4 + 0 + 4 + 0 + 4 * 4) - 1  # phase byte: before the four keys
    assert encoded[phase_at] == 1
    tests.append(test_case("phase 6", ["BadPhase"], "invalid", step="decode",
                           state=(encoded[:phase_at] + b"\x06" + encoded[phase_at + 1:]).hex(), error="DecodeError"))
    session_at = phase_at + 1 + 4 * 32
    bad_session = encoded[:session_at] + (5).to_bytes(4, "big") + encoded[session_at + 4:session_at + 9] \
        + encoded[session_at + 36:]
    tests.append(test_case("session id of 5 bytes", ["BadSessionLength"], "invalid", step="decode",
                           state=bad_session.hex(), error="DecodeError"))
    holding = dataclasses.replace(state, held=(HeldShares(2, bytes(33), bytes(33)),)).to_bytes()
    tests.append(test_case("holds shares of client 2 and lists it as refused", ["RefusedHeld"], "invalid",
                           step="decode", state=(holding[:-4] + (1).to_bytes(4, "big") + (2).to_bytes(4, "big")).hex(),
                           error="DecodeError"))
    graph = ClientState(**{**{f.name: getattr(state, f.name) for f in dataclasses.fields(state)},
                           "config": dataclasses.replace(state.config, graph=7)})
    roster = KeyRoster(1, tuple(RosterEntry(c, bytes([c]) * 32, bytes([c]) * 32, b"") for c in (2, 3, 4)))
    tests.append(test_case("graph code 7, then a roster", ["BadGraphCode"], "invalid", step="step",
                           state=graph.to_bytes().hex(), inbound=wire.encode(roster).hex(), error="ConfigurationError"))
    for comment, flags, client, ctx in (("client 0", ["BadClientId"], 0, context), ("client 5 of 4", ["BadClientId"],
                                        5, context), ("31-byte context", ["BadContext"], 1, context[:31])):
        tests.append(test_case(comment, flags, "invalid", step="start", client=client, draws=[], **{**base,
                               "context": ctx.hex()}, error="ConfigurationError"))
    entries = roster.entries
    for comment, flags, message, error in (
        ("roster for client 2", ["WrongRecipient"], KeyRoster(2, entries), "ProtocolError"),
        ("roster naming client 1 itself", ["SelfInRoster"],
         KeyRoster(1, (RosterEntry(1, bytes([1]) * 32, bytes([1]) * 32, b""), *entries)), "ProtocolError"),
        ("one neighbour, t = 2", ["FewNeighbours"], KeyRoster(1, entries[:1]), "ThresholdError"),
        ("a share delivery first", ["WrongRound"], ShareDelivery(1, state.session, ()), "ProtocolError"),
    ):
        tests.append(test_case(comment, flags, "invalid", step="step", state=encoded.hex(),
                               inbound=wire.encode(message).hex(), error=error))
    tests.append(test_case("garbage", ["Garbage"], "invalid", step="step", state=encoded.hex(),
                           inbound=b"SB\x01\x01\x02".hex(), error="DecodeError"))
    return vector_file(
        algorithm="secagg-masking-client",
        schema="masking_client_test_schema.json",
        header=["The masking client (docs/spec.md, sections 12.8 and 12.11): the stored ClientState after",
                "client_start with recorded draws (SecAgg defaults, n = 4, t = 2, d = 3), its decoding refusals, and",
                "messages the client refuses before it draws anything."],
        notes=CLIENT_NOTES,
        groups=[{"type": "MaskingClientTest", "tests": tests}],
    )


@register("MaskingClientTest")
def check_client(group: Json, test: Json) -> None:
    """client_start from the recorded draws, state decoding, or the refusal of the named step."""
    del group
    if test["step"] == "start":
        config = MaskingConfig.secagg(int(test["numClients"]), int(test["vectorLength"]), mode="semi-honest")
        source = ReplayedRandom([from_hex(d) for d in test["draws"]], "client")
        context, client = from_hex(test["context"]), int(test["client"])
        if not is_valid(test):
            expect_error(test, lambda: client_start(config, client, context=context, random_bytes=source), "start")
            return
        state, advertise = client_start(config, client, context=context, random_bytes=source)
        source.finish()
        equal("advertise", advertise.hex(), test["advertise"])
        equal("state", state.to_bytes().hex(), test["state"])
        equal("state round trip", ClientState.from_bytes(from_hex(test["state"])).to_bytes().hex(), test["state"])
        return
    data = from_hex(test["state"])
    if test["step"] == "decode":
        expect_error(test, lambda: ClientState.from_bytes(data), "decode")
        return
    state = ClientState.from_bytes(data)
    expect_error(test, lambda: client_step(state, from_hex(test["inbound"]), random_bytes=deterministic("unused")),
                 "client_step")


SUITES = [
    Suite("masking_defaults.json", "masking_defaults_test_schema.json", generate_defaults),
    Suite("descriptor.json", "descriptor_test_schema.json", generate_descriptor),
    Suite("masking_client.json", "masking_client_test_schema.json", generate_client),
]
