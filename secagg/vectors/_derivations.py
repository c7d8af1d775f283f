"""Vectors for what the masking protocol derives from a configuration (spec section 12):
the session id, the communication graph, the pairwise masks and their signs, and the
share-encryption keys.
"""

from __future__ import annotations

import numpy as np

from secagg.masking.config import MaskingConfig
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
from secagg.vectors._masking import config_fields, config_from_fields
from secagg.vectors._suite import Suite, deterministic, register

__all__ = ["SUITES"]


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

    def semi_honest(n: int, t: int, **graph: object) -> MaskingConfig:
        return MaskingConfig(num_clients=n, threshold=t, vector_length=8, mode="semi-honest", **graph)  # type: ignore[arg-type]

    groups = [
        _session_group("SecAgg, n = 4", ["Complete"], semi_honest(4, 2)),
        _session_group("SecAgg+, n = 10, k = 4", ["Harary"],
                       semi_honest(10, 3, graph="harary", degree=4)),
        _session_group("SecAgg active, n = 5", ["Complete", "Active"],
                       MaskingConfig(num_clients=5, threshold=3, vector_length=8, mode="active",
                                     identity_keys=identity)),
        _graph_group(semi_honest(4, 2), ["Complete"]),
        _graph_group(semi_honest(6, 2, graph="harary", degree=2),
                     ["Harary"]),
        _graph_group(semi_honest(10, 3, graph="harary", degree=4),
                     ["Harary"]),
        _graph_group(semi_honest(11, 4, graph="harary", degree=6),
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


SUITES = [
    Suite("masking_derivations.json", "masking_derivations_test_schema.json", generate_derivations),
]
