"""Vectors for the Flower adapter's messages and derivations (docs/spec.md, last section).

- the wire encodings of RoundSetup (0x0701), PaillierSetup (0x0702),
  IdentityAnnouncement (0x0703) and PaillierUpload (0x0704), valid and invalid;
- node ids -> protocol ids, and the round context;
- a model's arrays -> the float64 vector, the layout description and the digest;
- the update encoding ``(w * q(delta), w)`` and its decoding (inputs on the
  quantization grid, so stochastic rounding is exact whatever its randomness);
- identity announcements: the signed payload and its checks;
- a Paillier setup's packing layout (bounded range, B = max_weight * qmax) and values
  packed at +-B (:mod:`secagg.vectors._flower_layout`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from secagg import wire
from secagg.descriptor import decode_parameters, encode_parameters
from secagg.encoding import QuantizationConfig, to_ring
from secagg.integrations.flower.protocol import (
    IdentityAnnouncement,
    PaillierSetup,
    PaillierUpload,
    RoundSetup,
    arrays_digest,
    decode_integers,
    encode_integers,
    flatten_arrays,
    identity_payload,
    round_context,
)
from secagg.masking.config import ACTIVE, MaskingConfig
from secagg.masking.driver import make_identities
from secagg.paillier.messages import EncryptedVector
from secagg.primitives.signing import SigningKey
from secagg.rotation import Rotation
from secagg.segments import Segment, SegmentTable
from secagg.sparsity import Subset
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._flower_layout import LAYOUT_NOTES, layout_group
from secagg.vectors._format import Json, from_hex, ring_to_hex, test_case, vector_file
from secagg.vectors._suite import Suite, deterministic, register
from secagg.vectors._wire import WIRE_NOTES, envelope, wire_group

__all__ = ["SUITES"]

NOTES = {
    **LAYOUT_NOTES,
    **{key: WIRE_NOTES[key] for key in ("SemiHonest", "Active", "Truncated", "TrailingData", "NotSorted")},
    "BadUtf8": "A weight key or message type that is not UTF-8 (DecodeError).",
    "MessageType": "A PaillierSetup naming its round's message type other than plain train (message_type, "
    "UTF-8; section 15.1), or one whose message type is not UTF-8.",
    "BadCount": "A count that contradicts another field (DecodeError).",
    "DP": "A distributed-DP round: secagg.dp.* parameters in dp, no segment table, no weight (docs/spec.md 15.7).",
    "SegmentsWithDp": "Both a segment table and DP parameters: a DP round clips nothing (DecodeError).",
    "Outside": "A node id that is not in the round (step: protocol id, ConfigurationError).",
    "BadWeight": "A weight outside 1..max_weight (step: encode, ConfigurationError).",
    "ImpossibleSum": "A sum no honest nodes can produce (step: decode, OverflowDetectedError).",
    "WrongNode": "An announcement checked for another node id (step: verify, ProtocolError).",
    "WrongRun": "An announcement checked in another run (step: verify, AuthenticationError).",
    "Compressed": "A round sending a seeded random subset of 9 of the 17 values, rotated (16 padded values, "
    "one 'rotated' segment): the subset and rotation entries in compression enter the descriptor (section 15.8).",
    "Bound": "A RoundSetup whose masking record carries the digest of the setup's own descriptor for this run.",
    "OtherDescriptor": "A masking record bound to another descriptor (another run, or the all-zero digest): "
    "refused (step: bound_masking_config, ConfigurationError).",
}
RUN_ID = 77
NODE_IDS = (42, 1_000_000_007, 9_999_999_999, 2**63 + 11, 2**64 - 1)
# bits = 8 and clip = 127/64 make the scale exactly 64: inputs k/64 quantize to k exactly.
GRID_CLIP, GRID_BITS = 127 / 64, 8


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def _setup_messages() -> tuple[RoundSetup, RoundSetup, PaillierSetup]:
    draw = deterministic("flower/setup")
    digest = draw(32)
    quantization = QuantizationConfig(0.5, 16, 5, max_weight=4096)
    parameters = encode_parameters({"config/lr": 0.1, "config/local-epochs": 1, "config/server-round": 3})
    semi_config = MaskingConfig.secagg_plus(5, 19, dropout_fraction=0.1, complete_up_to=0, mode="semi-honest")
    table = SegmentTable.flat(17, 0.5).describe()  # 17 values, one clipped count, the weight: 19
    semi = RoundSetup.create(
        3, NODE_IDS, semi_config, quantization, "num-examples", digest, RUN_ID, parameters, segments=table
    )
    _, keys = make_identities(5, deterministic("flower/identities"))
    active_config = MaskingConfig.secagg(5, 19, mode=ACTIVE, identity_keys=keys)
    active = RoundSetup.create(
        3, NODE_IDS, active_config, quantization, "num-examples", digest, RUN_ID, parameters, segments=table
    )
    paillier = PaillierSetup(
        server_round=3, node_ids=NODE_IDS, key_fingerprint=draw(32), min_contributors=2, vector_length=19,
        clip_bits=int.from_bytes(np.float64(0.5).tobytes()[::-1], "big"), bits=16, max_weight=4096,
        weight_key=b"num-examples", arrays_digest=digest, identity_keys=keys, parameters=parameters, segments=table,
    )
    return semi, active, paillier


def _compressed_setup() -> RoundSetup:
    """A semi-honest round of a 17-value model (all float) sending 9 values, rotated: 16 padded values,
    one clipped count, the weight."""
    draw = deterministic("flower/compressed")
    digest = draw(32)
    subset = Subset.random(draw(32), 17, count=9)
    rotation = Rotation(draw(32), 9)
    compression = encode_parameters({**subset.descriptor_parameters(), **rotation.descriptor_parameters()})
    quantization = QuantizationConfig(0.5, 16, 5, max_weight=4096)
    table = SegmentTable((Segment("rotated", rotation.padded_dimension, 0.5),)).describe()
    config = MaskingConfig.secagg_plus(5, 18, dropout_fraction=0.1, complete_up_to=0, mode="semi-honest")
    parameters = encode_parameters({"config/lr": 0.1, "config/server-round": 4})
    return RoundSetup.create(4, NODE_IDS, config, quantization, "num-examples", digest, RUN_ID, parameters,
                             segments=table, compression=compression)
def _paillier_dp(paillier: PaillierSetup) -> PaillierSetup:
    """A DP Paillier setup: the 17 values only (no clipped count, no weight), ``max_weight`` 1, and
    ``secagg.dp.*`` parameters (the wire form only: a node also checks them against the plan)."""
    dp = encode_parameters({"secagg.dp.epsilon": 2.0, "secagg.dp.delta": 1e-5, "secagg.dp.rounds": 2,
                            "secagg.dp.variance_num": 1234567, "secagg.dp.variance_den": 8})  # fmt: skip
    return dataclasses.replace(paillier, vector_length=17, max_weight=1, segments=b"", dp=dp)


def _wire_groups() -> list[Json]:
    semi, active, paillier = _setup_messages()
    semi_body = wire.encode(semi)[5:]
    ids_body = _u32(5) + b"".join(node.to_bytes(8, "big") for node in NODE_IDS)
    swapped = _u32(5) + b"".join(node.to_bytes(8, "big") for node in (NODE_IDS[1], NODE_IDS[0], *NODE_IDS[2:]))
    groups = [wire_group(RoundSetup, [("SecAgg+ round of 5 nodes", ["SemiHonest"], semi),
                                      ("active SecAgg round of 5 nodes", ["Active"], active)], [
        ("node ids not increasing", ["NotSorted"], envelope(RoundSetup.TAG, semi_body[:4] + swapped
                                                            + semi_body[4 + len(ids_body):])),
    ])]
    encoded = wire.encode(paillier)
    type_bytes = 4 + len(paillier.message_type)  # the last field
    suffix = (32 + 4 + 32 * len(paillier.identity_keys) + 4 + len(paillier.parameters) + 4 + len(paillier.segments)
              + 4 + len(paillier.compression) + 4 + len(paillier.dp) + type_bytes)
    bad_key = encoded[:-suffix - 4 - 12] + _u32(12) + b"num-\xffxamples" + encoded[-suffix:]
    bad_type = encoded[:-type_bytes] + _u32(10) + b"train.\xffro"
    paillier_body = wire.encode(paillier)[5:]
    head = 4 + len(ids_body) + 32
    dp_setup = _paillier_dp(paillier)
    both = (encoded[:-type_bytes - 4] + _u32(len(dp_setup.dp)) + dp_setup.dp  # segments and dp
            + encoded[-type_bytes:])
    action = dataclasses.replace(paillier, message_type=b"train.zero")
    groups.append(wire_group(PaillierSetup, [("Paillier round of 5 nodes", [], paillier),
                                             ("DP Paillier round of 5 nodes", ["DP"], dp_setup),
                                             ("Paillier round of 5 nodes, train.zero messages", ["MessageType"],
                                              action)], [
        ("weight key not UTF-8", ["BadUtf8"], bad_key),
        ("message type not UTF-8", ["BadUtf8", "MessageType"], bad_type),
        ("min_contributors 6 of 5 nodes", ["BadCount"], envelope(PaillierSetup.TAG, paillier_body[:head] + _u32(6)
                                                                  + paillier_body[head + 4:])),
        ("a segment table and DP parameters", ["DP", "SegmentsWithDp"], both),
    ]))
    identity = SigningKey.generate(deterministic("flower/identity"))
    announcement = IdentityAnnouncement.create(identity, 77, NODE_IDS[1])
    groups.append(wire_group(IdentityAnnouncement, [("node 1000000007 in run 77", ["Active"], announcement)], []))
    draw = deterministic("flower/upload")
    upload = PaillierUpload(party=3, upload=EncryptedVector(draw(32), 2, 19, draw(2 * 256), draw(64)))
    upload_body = wire.encode(upload)[5:]
    groups.append(wire_group(PaillierUpload, [("key share 3, client 2, one 2048-bit ciphertext", [], upload)], [
        ("key share index 0", ["BadCount"], envelope(PaillierUpload.TAG, b"\x00\x00" + upload_body[2:])),
    ]))
    return groups


def _round_group() -> Json:
    draw = deterministic("flower/round")
    tests = []
    for run_id, server_round in ((1, 1), (77, 3), (2**63 + 5, 2**32 - 1)):
        digest = draw(32)
        tests.append(test_case(f"run {run_id}, round {server_round}", [], "valid", runId=run_id,
                               serverRound=server_round, arraysDigest=digest.hex(), nodeIds=list(NODE_IDS),
                               protocolIds=list(range(1, len(NODE_IDS) + 1)),
                               context=round_context(run_id, server_round, digest).hex()))
    tests.append(test_case("node 43 is not in the round", ["Outside"], "invalid", runId=1, serverRound=1,
                           arraysDigest=bytes(32).hex(), nodeIds=list(NODE_IDS), node=43, error="ConfigurationError"))
    return {"type": "FlowerRoundTest", "tests": tests}


def _array_cases() -> list[tuple[str, list[tuple[str, str, np.ndarray]]]]:
    return [
        ("float32 weights and a float64 bias", [("arrays", "w", np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)),
                                                ("arrays", "b", np.array([0.25, -0.5]))]),
        ("complex64, int64, bool and float16 in two records",
         [("a", "z", np.array([1 + 2j, -3.5j], dtype=np.complex64)), ("a", "n", np.array([2**53, -7], dtype=np.int64)),
          ("b", "m", np.array([True, False])), ("b", "h", np.array([[0.1, -2.5]], dtype=np.float16))]),
    ]


def _arrays_group() -> Json:
    tests = []
    for comment, arrays in _array_cases():
        vector, layout = flatten_arrays(arrays)
        tests.append(test_case(comment, [], "valid", arrays=[
            {"record": r, "name": n, "dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes().hex()}
            for r, n, a in arrays
        ], vector=vector.astype("<f8").tobytes().hex(), layout=layout.describe().hex(),
            digest=arrays_digest(vector, layout).hex()))
    return {"type": "FlowerArraysTest", "tests": tests}


def _encoding_group() -> Json:
    config = {"clip": GRID_CLIP, "bits": GRID_BITS, "numClients": 3, "maxWeight": 100}
    quantization = QuantizationConfig(GRID_CLIP, GRID_BITS, 3, max_weight=100)
    deltas = [[k / 64 for k in (-127, -1, 0, 1, 64, 127)], [k / 64 for k in (5, -5, 100, -100, 3, 0)],
              [k / 64 for k in (200, -300, 2, 2, 2, 2)]]  # the last is clipped to +-127
    weights = [10, 40, 100]
    rng = np.random.default_rng(0)
    encodings = [encode_integers(np.array(d), w, quantization, rng) for d, w in zip(deltas, weights, strict=True)]
    total = np.sum(encodings, axis=0)
    mean, weight_total = decode_integers(total, quantization, 3)
    tests = [test_case("three nodes, weights 10, 40, 100", [], "valid", deltas=deltas, weights=weights,
                       encodings=[[int(v) for v in e] for e in encodings],
                       ring32=[ring_to_hex(to_ring(e, quantization)) for e in encodings],
                       sum=[int(v) for v in total], mean=[float(v) for v in mean], weightTotal=weight_total)]
    tests.append(test_case("weight 0", ["BadWeight"], "invalid", deltas=[deltas[0]], weights=[0],
                           error="ConfigurationError"))
    tests.append(test_case("weight 101 above max_weight 100", ["BadWeight"], "invalid", deltas=[deltas[0]],
                           weights=[101], error="ConfigurationError"))
    impossible = [int(v) for v in total[:-1]] + [301]
    tests.append(test_case("a weight total of 301 from 3 nodes of weight <= 100", ["ImpossibleSum"], "invalid",
                           sum=impossible, summands=3, error="OverflowDetectedError"))
    return {"type": "FlowerEncodingTest", "config": config, "tests": tests}


def _identity_group() -> Json:
    identity = SigningKey.generate(deterministic("flower/identity"))
    node = NODE_IDS[1]
    announcement = wire.encode(IdentityAnnouncement.create(identity, 77, node))
    base = {"seed": identity.seed.hex(), "publicKey": identity.public.hex(), "announcement": announcement.hex()}
    return {"type": "FlowerIdentityTest", "tests": [
        test_case("node 1000000007 in run 77", ["Active"], "valid", runId=77, nodeId=node,
                  payload=identity_payload(77, node, identity.public).hex(), **base),
        test_case("checked for node 42", ["WrongNode"], "invalid", runId=77, nodeId=42, error="ProtocolError",
                  **base),
        test_case("checked in run 78", ["WrongRun"], "invalid", runId=78, nodeId=node, error="AuthenticationError",
                  **base),
    ]}


def _binding_group() -> Json:
    semi, active, _ = _setup_messages()
    compressed = _compressed_setup()
    entries = {**decode_parameters(compressed.compression), "secagg.sparsity.seed": bytes(32)}
    other_seed = dataclasses.replace(compressed, compression=encode_parameters(entries))
    unbound = dataclasses.replace(semi, masking=dataclasses.replace(semi.masking, descriptor=bytes(32)))
    tests = [test_case(comment, ["Bound", *flags], "valid", setup=wire.encode(setup).hex(), runId=RUN_ID,
                       descriptorDigest=setup.descriptor(RUN_ID).digest().hex(),
                       configDigest=setup.bound_masking_config(RUN_ID).digest().hex())
             for comment, flags, setup in (("SecAgg+ setup, run 77", ["SemiHonest"], semi),
                                           ("active setup, run 77", ["Active"], active),
                                           ("compressed setup, run 77", ["Compressed"], compressed))]
    tests.append(test_case("the run-77 setup checked in run 78", ["OtherDescriptor"], "invalid",
                           setup=wire.encode(semi).hex(), runId=RUN_ID + 1, error="ConfigurationError"))
    tests.append(test_case("a record naming the all-zero descriptor", ["OtherDescriptor"], "invalid",
                           setup=wire.encode(unbound).hex(), runId=RUN_ID, error="ConfigurationError"))
    tests.append(test_case("the compressed setup with another subset seed, record left", ["OtherDescriptor",
                           "Compressed"], "invalid", setup=wire.encode(other_seed).hex(), runId=RUN_ID,
                           error="ConfigurationError"))  # fmt: skip
    return {"type": "FlowerBindingTest", "tests": tests}


def _layout_group() -> Json:
    _, _, paillier = _setup_messages()
    return layout_group(paillier, _paillier_dp(paillier))


def generate_flower() -> Json:
    """flower_messages.json: the Flower adapter's wire messages, round mapping, arrays and encoding."""
    return vector_file(
        algorithm="secagg-flower-adapter",
        schema="flower_messages_test_schema.json",
        header=[
            "The Flower adapter (docs/spec.md, last section): wire encodings of RoundSetup, PaillierSetup,",
            "IdentityAnnouncement and PaillierUpload; node id -> protocol id and the round context; a model's",
            "arrays -> float64 vector, layout description and digest; the update encoding (w * q(delta), w) and",
            "its decoding; identity announcements; a Paillier setup's packing layout (docs/spec.md 15.6) with",
            "values packed at +-B. Encoding inputs lie on the quantization grid (clip 127/64,",
            "8 bits: scale 64), so stochastic rounding is exact whatever its randomness.",
        ],
        notes=NOTES,
        groups=[*_wire_groups(), _round_group(), _arrays_group(), _encoding_group(), _identity_group(),
                _binding_group(), wire_group(RoundSetup, [("SecAgg+ round sending a rotated subset",
                                                           ["SemiHonest", "Compressed"], _compressed_setup())], []),
                _layout_group()],
    )


@register("FlowerRoundTest")
def check_round(group: Json, test: Json) -> None:
    """Protocol ids are positions in the sorted node ids plus one; the context is SHA-256 of the spec's bytes."""
    del group
    node_ids = tuple(int(n) for n in test["nodeIds"])
    keys = tuple(index.to_bytes(32, "big") for index in range(1, len(node_ids) + 1))
    setup = PaillierSetup(int(test["serverRound"]), node_ids, bytes(32), 2, 2, 0, 2, 1, b"w",
                          from_hex(test["arraysDigest"]), keys, b"")
    if not is_valid(test):
        expect_error(test, lambda: setup.protocol_id(int(test["node"])), "protocol id")
        return
    equal("protocol ids", [setup.protocol_id(n) for n in node_ids], test["protocolIds"])
    context = round_context(int(test["runId"]), int(test["serverRound"]), from_hex(test["arraysDigest"]))
    equal("context", context.hex(), test["context"])


@register("FlowerArraysTest")
def check_arrays(group: Json, test: Json) -> None:
    """Flatten the arrays; compare the vector, the layout description and the digest."""
    del group
    arrays = [(a["record"], a["name"], np.frombuffer(from_hex(a["data"]), dtype=a["dtype"]).reshape(a["shape"]))
              for a in test["arrays"]]
    vector, layout = flatten_arrays(arrays)
    equal("vector", vector.astype("<f8").tobytes().hex(), test["vector"])
    equal("layout", layout.describe().hex(), test["layout"])
    equal("digest", arrays_digest(vector, layout).hex(), test["digest"])


@register("FlowerEncodingTest")
def check_encoding(group: Json, test: Json) -> None:
    """Encode each node's delta and weight; sum; decode the weighted mean (or require the error)."""
    config = group["config"]
    quantization = QuantizationConfig(config["clip"], config["bits"], config["numClients"],
                                      max_weight=config["maxWeight"])
    rng = np.random.default_rng(0)
    if "sum" in test and "deltas" not in test:
        total = np.array(test["sum"], dtype=np.int64)
        expect_error(test, lambda: decode_integers(total, quantization, int(test["summands"])), "decode")
        return
    pairs = list(zip(test["deltas"], test["weights"], strict=True))
    if not is_valid(test):
        expect_error(test, lambda: [encode_integers(np.array(d), w, quantization, rng) for d, w in pairs], "encode")
        return
    encodings = [encode_integers(np.array(d, dtype=np.float64), int(w), quantization, rng) for d, w in pairs]
    equal("encodings", [[int(v) for v in e] for e in encodings], test["encodings"])
    equal("ring words", [ring_to_hex(to_ring(e, quantization)) for e in encodings], test["ring32"])
    total = np.sum(encodings, axis=0)
    equal("sum", [int(v) for v in total], test["sum"])
    mean, weight_total = decode_integers(total, quantization, len(encodings))
    equal("mean", [float(v) for v in mean], test["mean"])
    equal("weight total", weight_total, test["weightTotal"])


@register("FlowerIdentityTest")
def check_identity(group: Json, test: Json) -> None:
    """The key from the seed, the signed payload, the announcement's encoding and its check."""
    del group
    seed = from_hex(test["seed"])
    identity = SigningKey.generate(lambda size: seed)
    equal("public key", identity.public.hex(), test["publicKey"])
    announcement = wire.decode(from_hex(test["announcement"]), IdentityAnnouncement)
    if not is_valid(test):
        expect_error(test, lambda: announcement.verify(int(test["runId"]), int(test["nodeId"])), "verify")
        return
    equal("payload", identity_payload(int(test["runId"]), int(test["nodeId"]), identity.public).hex(),
          test["payload"])
    created = IdentityAnnouncement.create(identity, int(test["runId"]), int(test["nodeId"]))
    equal("announcement", wire.encode(created).hex(), test["announcement"])
    announcement.verify(int(test["runId"]), int(test["nodeId"]))


@register("FlowerBindingTest")
def check_binding(group: Json, test: Json) -> None:
    """RoundSetup.bound_masking_config: the record must bind the setup's own descriptor in this run."""
    del group
    setup = wire.decode(from_hex(test["setup"]), RoundSetup)
    run_id = int(test["runId"])
    if not is_valid(test):
        expect_error(test, lambda: setup.bound_masking_config(run_id), "bound_masking_config")
        return
    equal("descriptor digest", setup.descriptor(run_id).digest().hex(), test["descriptorDigest"])
    equal("config digest", setup.bound_masking_config(run_id).digest().hex(), test["configDigest"])


SUITES = [Suite("flower_messages.json", "flower_messages_test_schema.json", generate_flower)]
