"""Vectors for the masking protocol's derivations (spec section 12): configuration and its
digest, session id, communication graph, pairwise masks and their signs, share keys,
and the SecAgg+ parameter table."""

from __future__ import annotations

from typing import Any

import numpy as np

from secagg.errors import ConfigurationError
from secagg.masking.config import MaskingConfig
from secagg.masking.parameters import derive_secagg_plus
from secagg.masking.session import (
    PAIR_MASK_LABEL,
    graph_neighbours,
    harary_order,
    pair_mask_seeds,
    pair_mask_subtracts,
    session_id,
    share_encryption_keys,
)
from secagg.primitives import key_agreement, prg
from secagg.ring import Ring
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, from_hex, ring_to_hex, test_case, vector_file
from secagg.vectors._suite import Suite, deterministic, register

__all__ = ["SUITES", "config_fields", "config_from_fields"]

_CONFIG_KEYS = ("numClients", "threshold", "vectorLength", "graph", "degree", "ringBits", "mode", "identityKeys",
                "corruptFraction", "dropoutFraction")


def config_fields(config: MaskingConfig) -> Json:
    """The parameters of a masking configuration as JSON."""
    return {
        "numClients": config.num_clients,
        "threshold": config.threshold,
        "vectorLength": config.vector_length,
        "graph": config.graph,
        "degree": config.degree,
        "ringBits": config.ring_bits,
        "mode": config.mode,
        "identityKeys": [key.hex() for key in config.identity_keys],
        "corruptFraction": config.corrupt_fraction,
        "dropoutFraction": config.dropout_fraction,
    }


def config_from_fields(data: Json) -> MaskingConfig:
    """A masking configuration from its JSON parameters (validated by MaskingConfig)."""
    return MaskingConfig(
        num_clients=int(data["numClients"]),
        threshold=int(data["threshold"]),
        vector_length=int(data["vectorLength"]),
        graph=str(data["graph"]),
        degree=int(data["degree"]),
        ring_bits=int(data["ringBits"]),
        mode=str(data["mode"]),
        identity_keys=tuple(from_hex(key) for key in data["identityKeys"]),
        corrupt_fraction=float(data["corruptFraction"]),
        dropout_fraction=float(data["dropoutFraction"]),
    )


def _record_hex(config: MaskingConfig) -> str:
    out: list[Any] = []
    config.record()._encode_body(out)
    return b"".join(bytes(part) for part in out).hex()


# --- masking_config.json ------------------------------------------------------------------

CONFIG_NOTES = {
    "Complete": "The complete graph (SecAgg): degree n - 1 (a degree of 0 in the input means n - 1).",
    "Harary": "A Harary graph (SecAgg+) of even degree k.",
    "Active": "Active mode: identity keys in the record; 2t > n + corrupt (complete: n - 1 holders plus the "
    "owner's self-held seed share) or k + corrupt neighbours (Harary).",
    "Ring64": "Inputs in Z_(2^64).",
    "CorruptFraction": "A corrupt fraction > 0 raises the smallest safe threshold.",
    "BadParameter": "A parameter outside its domain (n < 3, vector length 0, unknown graph or mode, ring size, "
    "degree): refused at setup (ConfigurationError).",
    "UnsafeThreshold": "A threshold that corrupt neighbours could reach (complete graph: t <= corrupt + 1, since "
    "a session may complete with t inputs), t < 2, or t > k: refused at setup.",
    "UnsafeActiveThreshold": "In active mode a lying server could split a client's share holders into two groups "
    "that each reach t with the colluders' help: refused.",
    "UnsafeDropouts": "The declared dropouts exceed what the threshold tolerates: refused.",
    "IdentityKeys": "Identity keys missing in active mode, present in semi-honest mode, or not 32 bytes.",
}


def generate_config() -> Json:
    """masking_config.json: configuration validation, wire record and digest."""
    identity = [deterministic(f"config/identity/{i}")(32) for i in range(5)]
    valid = [
        ("SecAgg, n = 3, t = 2", ["Complete"], MaskingConfig(num_clients=3, threshold=2, vector_length=8)),
        ("SecAgg, n = 6, t = 4, degree given as n - 1", ["Complete"],
         MaskingConfig(num_clients=6, threshold=4, vector_length=16, degree=5)),
        ("SecAgg, n = 10, 64-bit ring", ["Complete", "Ring64"],
         MaskingConfig(num_clients=10, threshold=6, vector_length=1000, ring_bits=64)),
        ("SecAgg+, n = 6, k = 4, t = 3", ["Harary"],
         MaskingConfig(num_clients=6, threshold=3, vector_length=8, graph="harary", degree=4)),
        ("SecAgg+, n = 100, k = 12, t = 6, 5% corrupt", ["Harary", "CorruptFraction"],
         MaskingConfig.secagg_plus(100, 10, corrupt_fraction=0.05, dropout_fraction=0.05, complete_up_to=0)),
        ("SecAgg, n = 10, 20% corrupt", ["Complete", "CorruptFraction"],
         MaskingConfig.secagg(10, 4, corrupt_fraction=0.2)),
        ("SecAgg active, n = 5, t = 3", ["Complete", "Active"],
         MaskingConfig(num_clients=5, threshold=3, vector_length=8, mode="active", identity_keys=tuple(identity))),
    ]
    tests = []
    for comment, flags, config in valid:
        fields = config_fields(config)
        if comment.endswith("degree given as n - 1"):
            fields["degree"] = config.num_clients - 1
        elif config.graph == "complete":
            fields["degree"] = 0
        tests.append(test_case(comment, flags, "valid", **fields, effectiveDegree=config.degree,
                               corruptNeighbours=config.corrupt_neighbours, record=_record_hex(config),
                               digest=config.digest().hex()))
    base = config_fields(MaskingConfig(num_clients=5, threshold=3, vector_length=8))
    base["degree"] = 0
    refused: list[tuple[str, str, Json]] = [
        ("n = 2", "BadParameter", {"numClients": 2, "threshold": 2}),
        ("vector length 0", "BadParameter", {"vectorLength": 0}),
        ("graph 'ring'", "BadParameter", {"graph": "ring"}),
        ("mode 'malicious'", "BadParameter", {"mode": "malicious"}),
        ("ring Z_(2^16)", "BadParameter", {"ringBits": 16}),
        ("complete graph with degree 2", "BadParameter", {"degree": 2}),
        ("Harary graph of odd degree 3", "BadParameter", {"graph": "harary", "degree": 3, "threshold": 2}),
        ("Harary graph of degree n = 5", "BadParameter", {"graph": "harary", "degree": 6, "threshold": 2}),
        ("t = 1", "UnsafeThreshold", {"threshold": 1}),
        ("t = 5 > k = 4", "UnsafeThreshold", {"threshold": 5}),
        ("t = 2 with 40% corrupt (2 corrupt clients)", "UnsafeThreshold", {"threshold": 2, "corruptFraction": 0.4}),
        ("t = 2 with 20% corrupt (1 corrupt client; a sum of t = 2 inputs)", "UnsafeThreshold",
         {"threshold": 2, "corruptFraction": 0.2}),
        ("active, n = 4, t = 2, no colluder (2t = n + c)", "UnsafeActiveThreshold",
         {"numClients": 4, "threshold": 2, "mode": "active", "identityKeys": [k.hex() for k in identity[:4]]}),
        ("t = 4 of n = 5 tolerates 1 dropout, 2 declared", "UnsafeDropouts",
         {"threshold": 4, "dropoutFraction": 0.4}),
        ("active without identity keys", "IdentityKeys", {"mode": "active"}),
        ("semi-honest with identity keys", "IdentityKeys", {"identityKeys": [k.hex() for k in identity]}),
        ("a 31-byte identity key", "IdentityKeys",
         {"mode": "active", "identityKeys": [k.hex() for k in identity[:4]] + [identity[4][:31].hex()]}),
    ]
    for comment, flag, changes in refused:
        tests.append(test_case(comment, [flag], "invalid", **{**base, **changes}, error="ConfigurationError"))
    return vector_file(
        algorithm="secagg-masking-config",
        schema="masking_config_test_schema.json",
        header=[
            "Masking configurations (docs/spec.md, section 12.1): validation, the wire record",
            "u32 n || u32 t || u32 k || u32 d || u8 graph (0 complete, 1 harary) || u8 mode (0 semi-honest,",
            "1 active) || u8 ring bits || u32 count || 32-byte identity keys, and",
            "digest = SHA-256('secagg/v1/config' || record).",
        ],
        notes=CONFIG_NOTES,
        groups=[{"type": "MaskingConfigTest", "tests": tests}],
    )


@register("MaskingConfigTest")
def check_config(group: Json, test: Json) -> None:
    """Validate the configuration; compare degree, corrupt neighbours, record and digest."""
    del group
    if not is_valid(test):
        expect_error(test, lambda: config_from_fields(test), "MaskingConfig")
        return
    config = config_from_fields(test)
    equal("effectiveDegree", config.degree, test["effectiveDegree"])
    equal("corruptNeighbours", config.corrupt_neighbours, test["corruptNeighbours"])
    equal("record", _record_hex(config), test["record"])
    equal("digest", config.digest().hex(), test["digest"])


# --- masking_derivations.json ------------------------------------------------------------

DERIVATION_NOTES = {
    "Complete": "The complete graph: every other client is a neighbour.",
    "Harary": "A Harary graph H(k, n) on the session's permutation of the ids.",
    "Active": "Active mode: the identity keys are part of the config digest, hence of the session id.",
    "BadContext": "A round context that is not 32 bytes: refused (ConfigurationError).",
    "BadSessionId": "A session id that is not 32 bytes: refused (ConfigurationError).",
    "SignConvention": "The smaller id adds PRG(seed), the larger subtracts it: the pair's masks cancel.",
    "SmallOrder": "A peer mask key of small order: the pairwise seed cannot be derived (ProtocolError).",
}


def _session_group(comment: str, flags: list[str], config: MaskingConfig) -> Json:
    context = deterministic(f"derivations/context/{comment}")(32)
    session = session_id(config, context)
    tests = [test_case(comment, flags, "valid", context=context.hex(), sessionId=session.hex())]
    tests.append(test_case("a 31-byte context", ["BadContext"], "invalid", context=context[:31].hex(),
                           error="ConfigurationError"))
    return {"type": "SessionIdTest", **config_fields(config), "configDigest": config.digest().hex(), "tests": tests}


def _graph_group(config: MaskingConfig, flags: list[str]) -> Json:
    tests = []
    for index in range(2):
        session = deterministic(f"derivations/graph/{config.num_clients}/{config.degree}/{index}")(32)
        fields: Json = {"sessionId": session.hex()}
        if config.graph == "harary":
            fields["order"] = list(harary_order(config.num_clients, session))
        fields["neighbours"] = [list(graph_neighbours(config, session, c)) for c in range(1, config.num_clients + 1)]
        tests.append(test_case(f"graph of session {index}", flags, "valid", **fields))
    tests.append(test_case("a 16-byte session id", ["BadSessionId"], "invalid", sessionId="00" * 16,
                           error="ConfigurationError"))
    return {"type": "GraphTest", **config_fields(config), "tests": tests}


def _pairwise_tests() -> list[Json]:
    tests = []
    for index, (u, v, bits) in enumerate([(1, 2, 32), (5, 3, 32), (2, 7, 64)]):
        source = deterministic(f"derivations/pairwise/{index}")
        key_u, key_v = key_agreement.generate_keypair(source), key_agreement.generate_keypair(source)
        session = source(32)
        seed = pair_mask_seeds(key_u.private, [(v, key_v.public)], session, u)[0]
        ring = Ring(bits)
        mask = prg.expand(seed, PAIR_MASK_LABEL, 6, ring)
        mask_u = (ring.zeros(6) - mask) if pair_mask_subtracts(u, v) else mask
        mask_v = (ring.zeros(6) - mask) if pair_mask_subtracts(v, u) else mask
        tests.append(test_case(
            f"clients {u} and {v}, Z_(2^{bits})", ["SignConvention"], "valid", clientU=u, clientV=v,
            maskPrivateU=key_u.private.hex(), maskPublicU=key_u.public.hex(), maskPrivateV=key_v.private.hex(),
            maskPublicV=key_v.public.hex(), sessionId=session.hex(), ringBits=bits, length=6, seed=seed.hex(),
            maskU=ring_to_hex(mask_u), maskV=ring_to_hex(mask_v),
        ))
    source = deterministic("derivations/pairwise/bad")
    key_u = key_agreement.generate_keypair(source)
    tests.append(test_case("client 2's mask key is the point 0", ["SmallOrder"], "invalid", clientU=1, clientV=2,
                           maskPrivateU=key_u.private.hex(), maskPublicU=key_u.public.hex(), maskPrivateV="",
                           maskPublicV="00" * 32, sessionId=source(32).hex(), ringBits=32, length=6,
                           error="ProtocolError"))
    return tests


def _share_key_tests() -> list[Json]:
    tests = []
    for index, (u, v) in enumerate([(1, 2), (6, 4)]):
        source = deterministic(f"derivations/share-key/{index}")
        key_u, key_v = key_agreement.generate_keypair(source), key_agreement.generate_keypair(source)
        session = source(32)
        key = share_encryption_keys(key_u.private, [(v, key_v.public)], session, u)[0]
        tests.append(test_case(f"share key of clients {u} and {v}", [], "valid", clientU=u, clientV=v,
                               encryptionPrivateU=key_u.private.hex(), encryptionPublicU=key_u.public.hex(),
                               encryptionPrivateV=key_v.private.hex(), encryptionPublicV=key_v.public.hex(),
                               sessionId=session.hex(), key=key.hex()))
    tests.append(test_case("a 31-byte peer key", [], "invalid", clientU=1, clientV=2,
                           encryptionPrivateU="11" * 32, encryptionPublicU="", encryptionPrivateV="",
                           encryptionPublicV="09" * 31, sessionId="00" * 32, error="DecodeError"))
    return tests


def generate_derivations() -> Json:
    """masking_derivations.json: session id, graph, pairwise masks, share keys."""
    identity = tuple(deterministic(f"derivations/identity/{i}")(32) for i in range(5))
    groups = [
        _session_group("SecAgg, n = 4", ["Complete"], MaskingConfig(num_clients=4, threshold=2, vector_length=8)),
        _session_group("SecAgg+, n = 10, k = 4", ["Harary"],
                       MaskingConfig(num_clients=10, threshold=3, vector_length=8, graph="harary", degree=4)),
        _session_group("SecAgg active, n = 5", ["Complete", "Active"],
                       MaskingConfig(num_clients=5, threshold=3, vector_length=8, mode="active",
                                     identity_keys=identity)),
        _graph_group(MaskingConfig(num_clients=4, threshold=2, vector_length=8), ["Complete"]),
        _graph_group(MaskingConfig(num_clients=6, threshold=2, vector_length=8, graph="harary", degree=2),
                     ["Harary"]),
        _graph_group(MaskingConfig(num_clients=10, threshold=3, vector_length=8, graph="harary", degree=4),
                     ["Harary"]),
        _graph_group(MaskingConfig(num_clients=11, threshold=4, vector_length=8, graph="harary", degree=6),
                     ["Harary"]),
        {"type": "PairwiseMaskTest", "tests": _pairwise_tests()},
        {"type": "ShareKeyTest", "tests": _share_key_tests()},
    ]
    return vector_file(
        algorithm="secagg-masking-derivations",
        schema="masking_derivations_test_schema.json",
        header=[
            "Values both ends of the masking protocol derive (docs/spec.md, sections 12.2-12.5):",
            "session id = SHA-256('secagg/v1/session' || config digest || context); the graph (Harary",
            "order: client ids by their position under the session's cycle-walking Feistel permutation,",
            "docs/spec.md 12.3); pairwise mask seeds and signs; share keys.",
        ],
        notes=DERIVATION_NOTES,
        groups=groups,
    )


@register("SessionIdTest")
def check_session_id(group: Json, test: Json) -> None:
    """Hash the config digest and the context into the session id."""
    config = config_from_fields(group)
    equal("configDigest", config.digest().hex(), group["configDigest"])
    context = from_hex(test["context"])
    if not is_valid(test):
        expect_error(test, lambda: session_id(config, context), "session id")
        return
    equal("sessionId", session_id(config, context).hex(), test["sessionId"])


@register("GraphTest")
def check_graph(group: Json, test: Json) -> None:
    """Every client's neighbours (and, for Harary, the permutation)."""
    config = config_from_fields(group)
    session = from_hex(test["sessionId"])
    clients = range(1, config.num_clients + 1)
    if not is_valid(test):
        expect_error(test, lambda: [graph_neighbours(config, session, c) for c in clients], "graph")
        return
    if config.graph == "harary":
        equal("order", list(harary_order(config.num_clients, session)), test["order"])
    equal("neighbours", [list(graph_neighbours(config, session, c)) for c in clients], test["neighbours"])


@register("PairwiseMaskTest")
def check_pairwise_mask(group: Json, test: Json) -> None:
    """Both ends derive the same seed; their signed masks cancel."""
    del group
    u, v = int(test["clientU"]), int(test["clientV"])
    session = from_hex(test["sessionId"])
    private_u, public_v = from_hex(test["maskPrivateU"]), from_hex(test["maskPublicV"])
    if not is_valid(test):
        expect_error(test, lambda: pair_mask_seeds(private_u, [(v, public_v)], session, u), "pairwise seed")
        return
    seed_u = pair_mask_seeds(private_u, [(v, public_v)], session, u)[0]
    seed_v = pair_mask_seeds(from_hex(test["maskPrivateV"]), [(u, from_hex(test["maskPublicU"]))], session, v)[0]
    equal("seed (client u)", seed_u.hex(), test["seed"])
    equal("seed (client v)", seed_v.hex(), test["seed"])
    ring = Ring(int(test["ringBits"]))
    length = int(test["length"])
    for who, me, peer, expected in (("maskU", u, v, test["maskU"]), ("maskV", v, u, test["maskV"])):
        mask = ring.zeros(length)
        prg.add_expansion(mask, seed_u, PAIR_MASK_LABEL, subtract=pair_mask_subtracts(me, peer))
        equal(who, ring_to_hex(mask), expected)
    total = ring.zeros(length)
    prg.add_expansion(total, seed_u, PAIR_MASK_LABEL)
    prg.add_expansion(total, seed_v, PAIR_MASK_LABEL, subtract=True)
    equal("maskU + maskV", bool(np.all(total == 0)), True)


@register("ShareKeyTest")
def check_share_key(group: Json, test: Json) -> None:
    """Both ends derive the same AES-256-GCM key for their share boxes."""
    del group
    u, v = int(test["clientU"]), int(test["clientV"])
    session = from_hex(test["sessionId"])
    private_u, public_v = from_hex(test["encryptionPrivateU"]), from_hex(test["encryptionPublicV"])
    if not is_valid(test):
        expect_error(test, lambda: share_encryption_keys(private_u, [(v, public_v)], session, u), "share key")
        return
    key_u = share_encryption_keys(private_u, [(v, public_v)], session, u)[0]
    key_v = share_encryption_keys(from_hex(test["encryptionPrivateV"]), [(u, from_hex(test["encryptionPublicU"]))],
                                  session, v)[0]
    equal("key (client u)", key_u.hex(), test["key"])
    equal("key (client v)", key_v.hex(), test["key"])


# --- secagg_plus_parameters.json -----------------------------------------------------------

PARAMETER_NOTES = {
    "Production": "A case of the production implementation's test suite (graph_parameter_finder_test.cc).",
    "Table": "A row of the table over n and the fractions.",
    "CompleteFallback": "No sparse degree qualifies: the complete graph with its smallest safe threshold.",
    "Infeasible": "corrupt + dropout (semi-honest) or corrupt + 2 dropout (active) exceeds 0.9, or even the "
    "complete graph cannot tolerate the dropouts: refused (ConfigurationError).",
    "BadParameter": "n outside 3..65536 or a fraction outside [0, 1): refused (ConfigurationError).",
}
PRODUCTION = {
    "semi-honest": [(10, 0.05, 0.05), (100, 0.05, 0.05), (1000, 0.05, 0.05), (10000, 0.05, 0.05),
                    (1000, 0.05, 0.33), (100, 0.05, 0.33), (1000, 0.33, 0.05), (1000, 0.33, 0.33), (10, 0.33, 0.33),
                    (100, 0.45, 0.45), (1000, 0.0, 0.33), (100, 0.33, 0.0)],
    "active": [(100, 0.05, 0.05), (1000, 0.05, 0.05), (10000, 0.05, 0.05), (1000, 0.05, 0.33), (10, 0.05, 0.33),
               (1000, 0.33, 0.05), (100, 0.3, 0.3), (1000, 0.0, 0.33), (100, 0.33, 0.0)],
}
TABLE_N = [3, 4, 5, 6, 8, 10, 16, 20, 32, 50, 64, 100, 128, 200, 500, 1000]
TABLE_FRACTIONS = [(0.0, 0.1), (0.05, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.2)]


def _parameter_test(n: int, corrupt: float, dropout: float, mode: str, flag: str) -> Json:
    try:
        params = derive_secagg_plus(n, corrupt, dropout, active=mode == "active")
    except ConfigurationError:
        return test_case(f"n = {n}, corrupt {corrupt}, dropout {dropout}", [flag, "Infeasible"], "invalid",
                         numClients=n, corruptFraction=corrupt, dropoutFraction=dropout, error="ConfigurationError")
    flags = [flag] + (["CompleteFallback"] if params.complete else [])
    return test_case(f"n = {n}, corrupt {corrupt}, dropout {dropout}", flags, "valid", numClients=n,
                     corruptFraction=corrupt, dropoutFraction=dropout, degree=params.degree,
                     threshold=params.threshold, graph="complete" if params.complete else "harary")


def generate_parameters() -> Json:
    """secagg_plus_parameters.json: (k, t) for (n, corrupt, dropout, mode)."""
    groups = []
    for mode in ("semi-honest", "active"):
        tests = [_parameter_test(n, c, d, mode, "Production") for n, c, d in PRODUCTION[mode]]
        tests += [_parameter_test(n, c, d, mode, "Table") for n in TABLE_N for c, d in TABLE_FRACTIONS]
        tests += [_parameter_test(n, c, d, mode, "Table") for n, c, d in ((1000, 0.5, 0.5), (200, 0.3, 0.3))]
        for n, c, d in ((2, 0.05, 0.05), (100, 1.0, 0.0), (100, 0.05, -0.1)):
            tests.append(test_case(f"n = {n}, corrupt {c}, dropout {d}", ["BadParameter"], "invalid", numClients=n,
                                   corruptFraction=c, dropoutFraction=d, error="ConfigurationError"))
        groups.append({"type": "SecAggPlusParametersTest", "mode": mode, "securityParameter": 40,
                       "correctnessParameter": 20, "tests": tests})
    return vector_file(
        algorithm="secagg-plus-parameters",
        schema="secagg_plus_parameters_test_schema.json",
        header=[
            "SecAgg+ graph degree k and threshold t from n, the corrupt and dropout fractions and the mode",
            "(docs/spec.md, section 12.6; sigma = 40, eta = 20). graph 'complete' means no sparse k < n - 1",
            "qualified and the complete graph (k = n - 1) is used with its smallest safe threshold.",
        ],
        notes=PARAMETER_NOTES,
        groups=groups,
    )


@register("SecAggPlusParametersTest")
def check_parameters(group: Json, test: Json) -> None:
    """Derive (k, t) and the graph kind."""
    n, corrupt, dropout = int(test["numClients"]), float(test["corruptFraction"]), float(test["dropoutFraction"])
    active = group["mode"] == "active"
    if not is_valid(test):
        expect_error(test, lambda: derive_secagg_plus(n, corrupt, dropout, active=active), "derive_secagg_plus")
        return
    params = derive_secagg_plus(n, corrupt, dropout, active=active)
    equal("(degree, threshold, graph)", (params.degree, params.threshold, "complete" if params.complete else "harary"),
          (test["degree"], test["threshold"], test["graph"]))


SUITES = [
    Suite("masking_config.json", "masking_config_test_schema.json", generate_config),
    Suite("masking_derivations.json", "masking_derivations_test_schema.json", generate_derivations),
    Suite("secagg_plus_parameters.json", "secagg_plus_parameters_test_schema.json", generate_parameters),
]
