"""Vectors for what binds a session and what a party refuses before it sends anything.

- ``masking_defaults.json``: the default SecAgg thresholds (spec 12.1) for n = 3..25, both modes;
- ``descriptor.json``: the session descriptor and its training parameters (spec 16);
- ``masking_client.json``: the stored client state (spec 12.11) and client-side refusals (spec 12.8);
- ``paillier_session.json``: Paillier session ids, signed uploads and their acceptance (spec 13.9);
- ``paillier_storage.json``: a key share sealed under a passphrase, the KDF floor and ceiling (spec 13.10),
  and single-key dealing (spec 13.5).
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
from secagg.paillier.ceremony import deal_threshold_key_from_primes, single_key_from_primes
from secagg.paillier.keys import KeyShare, PrivateKey, ThresholdPublicKey, insecure_key_sizes_for_testing
from secagg.paillier.messages import DecryptionRequest, EncryptedVector, PartialDecryption, upload_payload
from secagg.paillier.packing import SlotLayout
from secagg.paillier.protocol import Client, DecryptingParty, Server, SessionParameters
from secagg.paillier.storage import protect, unprotect
from secagg.primitives.signing import SigningKey
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, VectorError, from_hex, test_case, vector_file
from secagg.vectors._paillier import _big, _primes
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



# --- paillier_session.json --------------------------------------------------------------------

SESSION_NOTES = {
    "SessionId": "The session id of these parameters (spec 13.9), identity keys and descriptor included.",
    "SignedUpload": "Uploads signed over upload_payload with deterministic Ed25519 identity seeds; the "
    "server accepts them and decrypting party 1 answers their product.",
    "Unsigned": "An upload whose signature is 64 zero bytes (step: server, AuthenticationError).",
    "WrongSigner": "Client 1's upload signed with client 2's identity key (step: server, AuthenticationError).",
    "OutsideRoster": "An upload from client 9, not on the roster (step: server, ProtocolError).",
    "SecondUpload": "A second upload from one client (step: server, ReplayError).",
    "TooFew": "A request with fewer than min_contributors uploads (step: party, ProtocolError).",
    "OwnMissing": "A request without the party's own upload (step: party, ProtocolError).",
    "Repeated": "A request that repeats a client's upload (step: party, ReplayError).",
    "PartyUnsigned": "A request whose second upload carries no valid signature: the decrypting party refuses "
    "it even though its own upload is present (step: party, AuthenticationError).",
    "PartyWrongSigner": "A request with an upload signed by another enrolled hospital than its client "
    "(step: party, AuthenticationError).",
    "Unsorted": "A request whose uploads are not in client order: accepted; the digest sorts them.",
}
SESSION_ROSTER = (1, 2, 3)


def _paillier_material() -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
    with insecure_key_sizes_for_testing():
        p, q = _primes("paillier/key")
        material = deal_threshold_key_from_primes(p, q, num_parties=3, threshold=2,
                                                  random_bytes=deterministic("bindings/paillier/deal"),
                                                  insecure_for_testing=True)
    return material.public, material.shares


def _key_from_seed(seed: bytes) -> SigningKey:
    def source(size: int) -> bytes:
        del size
        return seed

    return SigningKey.generate(source)


def _session_params(group: Json) -> SessionParameters:
    public = wire.decode(from_hex(group["publicKey"]), ThresholdPublicKey)
    seeds = [from_hex(seed) for seed in group["identitySeeds"]]
    return SessionParameters(
        public=public, layout=SlotLayout(group["valueBits"], group["layoutClients"], public.key.key_bits),
        vector_length=group["vectorLength"], roster=tuple(group["roster"]), min_contributors=group["minContributors"],
        identity_keys=tuple(_key_from_seed(seed).public for seed in seeds),
        context=from_hex(group["context"]), descriptor=from_hex(group["descriptor"]))


def generate_paillier_session() -> Json:
    """paillier_session.json: session ids, signed uploads, acceptance and refusals."""
    public, shares = _paillier_material()
    draw = deterministic("bindings/paillier/session")
    identities = {c: SigningKey.generate(draw) for c in SESSION_ROSTER}
    group: Json = {"type": "PaillierSessionTest", "publicKey": wire.encode(public).hex(),
                   "keyShare1": wire.encode(shares[0]).hex(), "valueBits": 8, "layoutClients": 3, "vectorLength": 4,
                   "roster": list(SESSION_ROSTER), "minContributors": 2,
                   "identitySeeds": [identities[c].seed.hex() for c in SESSION_ROSTER],
                   "context": draw(32).hex(), "descriptor": draw(32).hex()}
    with insecure_key_sizes_for_testing():
        params = _session_params(group)
        uploads = {}
        for client in SESSION_ROSTER:
            sender = Client(params, client, identities[client], random_bytes=deterministic(f"bindings/upload/{client}"))
            uploads[client] = sender.upload([client, -client, 0, 127])
        stranger = SigningKey.generate(draw)
        outside = EncryptedVector(params.session_id, 9, 4, uploads[1].ciphertexts,
                                  stranger.sign(upload_payload(params.session_id, 9, 4, uploads[1].ciphertexts)))
    enc = {c: wire.encode(u).hex() for c, u in uploads.items()}
    unsigned = dataclasses.replace(uploads[1], signature=bytes(64))
    wrong = dataclasses.replace(uploads[1], signature=identities[2].sign(uploads[1].payload))
    tests = [test_case("three signed uploads, party 1 answers", ["SessionId", "SignedUpload"], "valid", step="party",
                       uploads=[enc[1], enc[2], enc[3]], ownUpload=enc[1], sessionId=params.session_id.hex(),
                       payloads=[uploads[c].payload.hex() for c in SESSION_ROSTER],
                       aggregateDigest=_aggregate(group, [enc[1], enc[2], enc[3]], enc[1])),
             test_case("uploads in the order 3, 1", ["SignedUpload", "Unsorted"], "valid", step="party",
                       uploads=[enc[3], enc[1]], ownUpload=enc[1], sessionId=params.session_id.hex(),
                       aggregateDigest=_aggregate(group, [enc[3], enc[1]], enc[1])),
             test_case("unsigned upload", ["Unsigned"], "invalid", step="server",
                       uploads=[enc[2], wire.encode(unsigned).hex()], error="AuthenticationError"),
             test_case("client 1's upload signed by client 2", ["WrongSigner"], "invalid", step="server",
                       uploads=[wire.encode(wrong).hex()], error="AuthenticationError"),
             test_case("upload from client 9", ["OutsideRoster"], "invalid", step="server",
                       uploads=[wire.encode(outside).hex()], error="ProtocolError"),
             test_case("client 2 uploads twice", ["SecondUpload"], "invalid", step="server",
                       uploads=[enc[2], enc[2]], error="ReplayError"),
             test_case("one upload, min_contributors 2", ["TooFew"], "invalid", step="party", uploads=[enc[1]],
                       ownUpload=enc[1], error="ProtocolError"),
             test_case("party 1's own upload left out", ["OwnMissing"], "invalid", step="party",
                       uploads=[enc[2], enc[3]], ownUpload=enc[1], error="ProtocolError"),
             test_case("client 2's upload twice", ["Repeated"], "invalid", step="party",
                       uploads=[enc[1], enc[2], enc[2]], ownUpload=enc[1], error="ReplayError"),
             test_case("the server's own upload in client 3's name, unsigned", ["PartyUnsigned"], "invalid",
                       step="party", uploads=[enc[1], wire.encode(dataclasses.replace(uploads[3], signature=bytes(64)))
                                              .hex()], ownUpload=enc[1], error="AuthenticationError"),
             test_case("client 3's upload signed by client 2", ["PartyWrongSigner"], "invalid", step="party",
                       uploads=[enc[1], wire.encode(dataclasses.replace(
                           uploads[3], signature=identities[2].sign(uploads[3].payload))).hex()],
                       ownUpload=enc[1], error="AuthenticationError")]
    group["tests"] = tests
    return vector_file(
        algorithm="secagg-paillier-session",
        schema="paillier_session_test_schema.json",
        header=["Paillier session binding (docs/spec.md, section 13.9): the session id over the key fingerprint,",
                "layout, length, min_contributors, context, descriptor and the roster's identity keys; uploads",
                "signed over upload_payload; what the server and a decrypting party accept and refuse.",
                "128-bit insecure test key (2-of-3); party 1 holds keyShare1 and uploaded as client 1."],
        notes=SESSION_NOTES,
        groups=[group],
    )


def _aggregate(group: Json, uploads: list[str], own: str) -> str:
    with insecure_key_sizes_for_testing():
        return _party_answer(group, uploads, own).aggregate_digest.hex()


def _party_answer(group: Json, uploads: list[str], own: str) -> PartialDecryption:
    params = _session_params(group)
    share = wire.decode(from_hex(group["keyShare1"]), KeyShare)
    own_digest = wire.decode(from_hex(own), EncryptedVector).digest
    party = DecryptingParty(params, share, own_upload=own_digest, random_bytes=deterministic("bindings/proof"))
    request = DecryptionRequest(params.session_id, 1, tuple(wire.decode(from_hex(u), EncryptedVector) for u in uploads))
    return party.respond(wire.encode(request))


@register("PaillierSessionTest")
def check_paillier_session(group: Json, test: Json) -> None:
    """Recompute the session id and payloads; replay the uploads into a server or a party."""
    with insecure_key_sizes_for_testing():
        params = _session_params(group)
        if "sessionId" in test:
            equal("session id", params.session_id.hex(), test["sessionId"])
        for index, payload in enumerate(test.get("payloads", [])):
            upload = wire.decode(from_hex(test["uploads"][index]), EncryptedVector)
            equal("upload payload", upload.payload.hex(), payload)
            seed = from_hex(group["identitySeeds"][params.roster.index(upload.client)])
            equal("signature", _key_from_seed(seed).sign(from_hex(payload)).hex(),
                  upload.signature.hex())
        if test["step"] == "server":
            server = Server(params)

            def receive() -> None:
                for data in test["uploads"]:
                    server.receive_upload(from_hex(data))

            if is_valid(test):
                receive()
            else:
                expect_error(test, receive, "server")
            return
        if not is_valid(test):
            expect_error(test, lambda: _party_answer(group, test["uploads"], test["ownUpload"]), "party")
            return
        server = Server(params)
        for data in test["uploads"]:
            server.receive_upload(from_hex(data))
        answer = _party_answer(group, test["uploads"], test["ownUpload"])
        equal("aggregate digest", answer.aggregate_digest.hex(), test["aggregateDigest"])


# --- paillier_storage.json --------------------------------------------------------------------

STORAGE_NOTES = {
    "Sealed": "A key share sealed with scrypt (log_n, r, p), the recorded salt (16 bytes) and AES-GCM nonce "
    "(12 bytes), drawn in that order.",
    "UnicodePassphrase": "A text passphrase: UTF-8 into scrypt, its length counted in code points.",
    "WrongPassphrase": "Opened with another passphrase (step: unprotect, AuthenticationError).",
    "ShortPassphrase": "A passphrase under 12 characters (step: protect, ConfigurationError).",
    "BelowFloor": "scrypt cost under the writing floor log_n 15, r 8 (step: protect, ConfigurationError).",
    "AboveCeiling": "128 r 2^log_n p above 2^28 bytes: refused when writing (step: protect, ConfigurationError) "
    "and when reading (step: unprotect, DecodeError, before any scrypt).",
    "SingleKey": "Single-key dealing from primes p < q: the draws of v (spec 13.5), the public and private key.",
    "BadPrimes": "Equal or composite primes (step: single_key_from_primes, ConfigurationError).",
}


def generate_storage() -> Json:
    """paillier_storage.json: a sealed key share, KDF floor and ceiling, single-key dealing."""
    _, shares = _paillier_material()
    share = wire.encode(shares[0]).hex()
    tests = []
    with insecure_key_sizes_for_testing():
        for comment, flags, passphrase, log_n, r, p in (
            ("ASCII passphrase, scrypt 2^15, r 8, p 1 (the floor)", ["Sealed"], "correct horse battery", 15, 8, 1),
            ("12 code points (16 UTF-8 bytes), scrypt 2^15, r 8, p 2", ["Sealed", "UnicodePassphrase"],
             "pässwörd-ünï", 15, 8, 2),
        ):
            source = RecordingRandom(deterministic(f"bindings/storage/{p}"))
            sealed = protect(shares[0], passphrase, scrypt_log_n=log_n, scrypt_r=r, scrypt_p=p, random_bytes=source)
            salt, nonce = source.take()
            tests.append(test_case(comment, flags, "valid", step="protect", passphrase=passphrase, scryptLogN=log_n,
                                   scryptR=r, scryptP=p, salt=salt.hex(), nonce=nonce.hex(), keyShare=share,
                                   protected=sealed.hex()))
    first = tests[0]
    tests.append(test_case("wrong passphrase", ["WrongPassphrase"], "invalid", step="unprotect",
                           passphrase="correct horse battery!", protected=first["protected"],  # noqa: S106 (a published test passphrase)
                           error="AuthenticationError"))
    header = from_hex(first["protected"])
    tests.append(test_case("header log_n 19, r 8 (512 MiB)", ["AboveCeiling"], "invalid", step="unprotect",
                           passphrase="correct horse battery", protected=(header[:5] + b"\x13" + header[6:]).hex(),  # noqa: S106 (a published test passphrase)
                           error="DecodeError"))
    for comment, flags, passphrase, log_n, r, p in (
        ("11 characters", ["ShortPassphrase"], "abcdefghijk", 15, 8, 1),
        ("11 code points, 13 bytes", ["ShortPassphrase", "UnicodePassphrase"], "äbcdéfghijk", 15, 8, 1),
        ("log_n 14, r 8", ["BelowFloor"], "correct horse battery", 14, 8, 1),
        ("log_n 15, r 7", ["BelowFloor"], "correct horse battery", 15, 7, 1),
        ("log_n 19, r 8, p 1", ["AboveCeiling"], "correct horse battery", 19, 8, 1),
    ):
        tests.append(test_case(comment, flags, "invalid", step="protect", passphrase=passphrase, scryptLogN=log_n,
                               scryptR=r, scryptP=p, keyShare=share, error="ConfigurationError"))
    with insecure_key_sizes_for_testing():
        p_, q_ = _primes("bindings/single")
        source = RecordingRandom(deterministic("bindings/single/deal"))
        single = single_key_from_primes(p_, q_, random_bytes=source, insecure_for_testing=True)
    deal = [test_case("single key from two 64-bit primes", ["SingleKey"], "valid", p=_big(p_), q=_big(q_),
                      randomness=[d.hex() for d in source.take()], publicKey=wire.encode(single.public).hex(),
                      privateKey=wire.encode(single.private).hex()),
            test_case("p = q", ["BadPrimes"], "invalid", p=_big(p_), q=_big(p_), error="ConfigurationError"),
            test_case("q composite", ["BadPrimes"], "invalid", p=_big(p_), q=_big(q_ * 3), error="ConfigurationError")]
    return vector_file(
        algorithm="secagg-paillier-storage",
        schema="paillier_storage_test_schema.json",
        header=["Key storage (docs/spec.md, section 13.10): a ProtectedSecret sealing a 128-bit test key share",
                "under a passphrase with recorded salt and nonce; the writing floor and the reading ceiling.",
                "Single-key dealing from given primes (section 13.5, 128-bit insecure test key)."],
        notes=STORAGE_NOTES,
        groups=[{"type": "ProtectedSecretTest", "tests": tests}, {"type": "SingleKeyDealTest", "tests": deal}],
    )


@register("ProtectedSecretTest")
def check_protected(group: Json, test: Json) -> None:
    """Seal with the recorded salt and nonce and open again; or require the refusal."""
    del group
    with insecure_key_sizes_for_testing():
        if test["step"] == "unprotect":
            expect_error(test, lambda: unprotect(from_hex(test["protected"]), test["passphrase"]), "unprotect")
            return
        share = wire.decode(from_hex(test["keyShare"]), KeyShare)
        log_n, r, p = test["scryptLogN"], test["scryptR"], test["scryptP"]
        if not is_valid(test):
            expect_error(test, lambda: protect(share, test["passphrase"], scrypt_log_n=log_n, scrypt_r=r, scrypt_p=p,
                                               random_bytes=deterministic("unused")), "protect")
            return
        source = ReplayedRandom([from_hex(test["salt"]), from_hex(test["nonce"])], "protect")
        sealed = protect(share, test["passphrase"], scrypt_log_n=log_n, scrypt_r=r, scrypt_p=p, random_bytes=source)
        source.finish()
        equal("protected secret", sealed.hex(), test["protected"])
        equal("opened", wire.encode(unprotect(sealed, test["passphrase"])).hex(), test["keyShare"])


@register("SingleKeyDealTest")
def check_single_deal(group: Json, test: Json) -> None:
    """Deal the single key from p, q and the recorded draws of v."""
    del group
    p, q = int.from_bytes(from_hex(test["p"]), "big"), int.from_bytes(from_hex(test["q"]), "big")
    with insecure_key_sizes_for_testing():
        if not is_valid(test):
            expect_error(test, lambda: single_key_from_primes(p, q, random_bytes=deterministic("unused"),
                                                              insecure_for_testing=True), "deal")
            return
        source = ReplayedRandom([from_hex(d) for d in test["randomness"]], "dealer")
        material = single_key_from_primes(p, q, random_bytes=source, insecure_for_testing=True)
        source.finish()
        equal("public key", wire.encode(material.public).hex(), test["publicKey"])
        equal("private key", wire.encode(material.private).hex(), test["privateKey"])
        equal("decoded", wire.decode(from_hex(test["privateKey"]), PrivateKey), material.private)


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
    return MaskingConfig.secagg(4, 3)


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
        config = MaskingConfig.secagg(int(test["numClients"]), int(test["vectorLength"]))
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
    Suite("paillier_session.json", "paillier_session_test_schema.json", generate_paillier_session),
    Suite("paillier_storage.json", "paillier_storage_test_schema.json", generate_storage),
    Suite("masking_client.json", "masking_client_test_schema.json", generate_client),
]
