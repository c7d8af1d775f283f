"""Vectors for the masking protocol's configuration (spec section 12): the configuration
and its digest, and the SecAgg+ parameter table; with :func:`config_fields` and
:func:`config_from_fields`, a config's JSON form for the other masking vectors.

What the protocol derives from a configuration (session id, graph, pairwise masks,
share keys) is in ``_derivations.py``."""

from __future__ import annotations

from typing import Any

from secagg.errors import ConfigurationError
from secagg.masking.config import MaskingConfig
from secagg.masking.parameters import derive_secagg_plus
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, from_hex, test_case, vector_file
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
    "NarrowRing": "Inputs in Z_(2^b) for b in 8..64 other than 32, 64 (spec section 17); the record's u8 ring bits.",
    "CorruptFraction": "A corrupt fraction > 0 raises the smallest safe threshold.",
    "BadParameter": "A parameter outside its domain (n < 3, vector length 0, unknown graph or mode, "
    "ring size outside 8..64, degree): refused at setup (ConfigurationError).",
    "UnsafeThreshold": "A threshold that corrupt neighbours could reach (complete graph: t <= corrupt + 1, since "
    "a session may complete with t inputs), t < 2, or t > k: refused at setup.",
    "UnsafeActiveThreshold": "In active mode a lying server could split a client's share holders into two groups "
    "that each reach t with the colluders' help: refused.",
    "UnsafeDropouts": "The declared dropouts exceed what the threshold tolerates: refused.",
    "IdentityKeys": "Identity keys missing in active mode, present in semi-honest mode, or not 32 bytes.",
    "UnsafeCut": "Active mode, Harary graph: floor(gamma n) colluders fill two windows of k/2 clients with t - k/2 "
    "each (a lying server's cut releasing an arc's sum) with probability not below 2^-41 (spec 12.6, step 2.5): "
    "refused.",
}


def generate_config() -> Json:
    """masking_config.json: configuration validation, wire record and digest."""
    identity = [deterministic(f"config/identity/{i}")(32) for i in range(5)]
    valid = [
        ("SecAgg, n = 3, t = 2", ["Complete"],
         MaskingConfig(num_clients=3, threshold=2, vector_length=8, mode="semi-honest")),
        ("SecAgg, n = 6, t = 4, degree given as n - 1", ["Complete"],
         MaskingConfig(num_clients=6, threshold=4, vector_length=16, degree=5, mode="semi-honest")),
        ("SecAgg, n = 10, 64-bit ring", ["Complete", "Ring64"],
         MaskingConfig(num_clients=10, threshold=6, vector_length=1000, ring_bits=64, mode="semi-honest")),
        ("SecAgg+, n = 6, k = 4, t = 3", ["Harary"],
         MaskingConfig(num_clients=6, threshold=3, vector_length=8, graph="harary", degree=4, mode="semi-honest")),
        ("SecAgg+, n = 100, k = 12, t = 6, 5% corrupt", ["Harary", "CorruptFraction"],
         MaskingConfig.secagg_plus(100, 10, corrupt_fraction=0.05, dropout_fraction=0.05, complete_up_to=0,
                                   mode="semi-honest")),
        ("SecAgg, n = 10, 20% corrupt", ["Complete", "CorruptFraction"],
         MaskingConfig.secagg(10, 4, corrupt_fraction=0.2, mode="semi-honest")),
        ("SecAgg active, n = 5, t = 3", ["Complete", "Active"],
         MaskingConfig(num_clients=5, threshold=3, vector_length=8, mode="active", identity_keys=tuple(identity))),
    ]
    tests = []

    def add_valid(comment: str, flags: list[str], config: MaskingConfig) -> None:
        fields = config_fields(config)
        if comment.endswith("degree given as n - 1"):
            fields["degree"] = config.num_clients - 1
        elif config.graph == "complete":
            fields["degree"] = 0
        tests.append(test_case(comment, flags, "valid", **fields, effectiveDegree=config.degree,
                               corruptNeighbours=config.corrupt_neighbours, record=_record_hex(config),
                               digest=config.digest().hex()))

    for comment, flags, config in valid:
        add_valid(comment, flags, config)
    base = config_fields(MaskingConfig(num_clients=5, threshold=3, vector_length=8, mode="semi-honest"))
    base["degree"] = 0
    refused: list[tuple[str, str, Json]] = [
        ("n = 2", "BadParameter", {"numClients": 2, "threshold": 2}),
        ("vector length 0", "BadParameter", {"vectorLength": 0}),
        ("graph 'ring'", "BadParameter", {"graph": "ring"}),
        ("mode 'malicious'", "BadParameter", {"mode": "malicious"}),
        ("ring Z_(2^7)", "BadParameter", {"ringBits": 7}),
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
    # Narrow rings last, so that the earlier tcIds are unchanged.
    for bits in (8, 12, 33):
        add_valid(f"SecAgg, n = 5, t = 3, ring Z_(2^{bits})", ["Complete", "NarrowRing"],
                  MaskingConfig(num_clients=5, threshold=3, vector_length=8, ring_bits=bits, mode="semi-honest"))
    tests.append(test_case("ring Z_(2^65)", ["BadParameter"], "invalid", **{**base, "ringBits": 65},
                           error="ConfigurationError"))
    # The connectivity term (spec 12.1): last, so that the earlier tcIds are unchanged.
    add_valid("SecAgg+, n = 200, 10% dropouts, degree 16 (disconnection bound 2^-50.8)", ["Harary"],
              MaskingConfig(num_clients=200, threshold=2, vector_length=8, graph="harary", degree=16,
                            dropout_fraction=0.1, mode="semi-honest"))
    tests.append(test_case(
        "Harary degree 14 for n = 200 with 10% dropouts (disconnection bound 2^-40.6, not below 2^-41)",
        ["BadParameter"], "invalid",
        **{**base, "numClients": 200, "graph": "harary", "degree": 14, "threshold": 2, "dropoutFraction": 0.1},
        error="ConfigurationError",
    ))
    # The declared colluders count among the bad nodes (B = floor(gamma n) + floor(delta n)): last again.
    add_valid("SecAgg+, n = 101, no colluders, 10% dropouts, degree 14 (B = 10 bad nodes < k: no cut)", ["Harary"],
              MaskingConfig(num_clients=101, threshold=6, vector_length=8, graph="harary", degree=14,
                            dropout_fraction=0.1, mode="semi-honest"))
    tests.append(test_case(
        "Harary degree 14 for n = 101 with 5% colluders and 10% dropouts (B = 15: 2^-39.5, not below 2^-41)",
        ["BadParameter"], "invalid",
        **{**base, "numClients": 101, "graph": "harary", "degree": 14, "threshold": 6, "corruptFraction": 0.05,
           "dropoutFraction": 0.1},
        error="ConfigurationError",
    ))
    # A lying server's cut (spec 12.1; 12.6, step 2.5), active mode: last, so that the earlier tcIds are unchanged.
    cut_keys = tuple(deterministic(f"config/cut-identity/{i}")(32) for i in range(206))
    add_valid("SecAgg+ active, n = 206, 5% colluders, no dropouts, k = 12, t = 12 (no cut fits 10 colluders)",
              ["Harary", "Active"],
              MaskingConfig(num_clients=206, threshold=12, vector_length=8, graph="harary", degree=12, mode="active",
                            identity_keys=cut_keys, corrupt_fraction=0.05))
    tests.append(test_case(
        "active Harary n = 206, k = 12, t = 11, 5% colluders (cut bound 2^-35.3, not below 2^-41)",
        ["UnsafeCut"], "invalid",
        **{**base, "numClients": 206, "graph": "harary", "degree": 12, "threshold": 11, "mode": "active",
           "identityKeys": [key.hex() for key in cut_keys], "corruptFraction": 0.05},
        error="ConfigurationError",
    ))
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


# --- secagg_plus_parameters.json -----------------------------------------------------------

PARAMETER_NOTES = {
    "Production": "A case of the production implementation's test suite (graph_parameter_finder_test.cc).",
    "Table": "A row of the table over n and the fractions.",
    "CompleteFallback": "No sparse degree qualifies: the complete graph with its smallest safe threshold.",
    "Infeasible": "corrupt + dropout (semi-honest) or corrupt + 2 dropout (active) exceeds 0.9, or even the "
    "complete graph cannot tolerate the dropouts: refused (ConfigurationError).",
    "BadParameter": "n outside 3..65536 or a fraction outside [0, 1): refused (ConfigurationError).",
    "AdversarialCut": "Active mode at the first n (and the one before it) where the cut term (spec 12.6, step 2.5) "
    "changes the derived (k, t), gamma = 0.05, at delta = 0 and at the default delta ceil(0.4 n)/n.",
}
# (n, corrupt, dropout) for the AdversarialCut rows: the last unchanged n and the first changed one.
CUT_ROWS = [(205, 0.05, 0.0), (206, 0.05, 0.0), (1479, 0.05, 592 / 1479), (1480, 0.05, 592 / 1480)]
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
        if mode == "active":  # last, so that the earlier tcIds are unchanged
            tests += [_parameter_test(n, c, d, mode, "AdversarialCut") for n, c, d in CUT_ROWS]
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
    Suite("secagg_plus_parameters.json", "secagg_plus_parameters_test_schema.json", generate_parameters),
]
