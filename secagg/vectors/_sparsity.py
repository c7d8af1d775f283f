"""Vectors for shared-seed partial updates: the subset a seed selects, layer subsets, and their binding.

Spec section (docs/spec.md): 20 (sparsity).
"""

from __future__ import annotations

import hashlib

import numpy as np

from secagg.descriptor import encode_parameters
from secagg.primitives import prg
from secagg.ring import RING64
from secagg.sparsity import SUBSET_LABEL, Subset, random_indices
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, from_hex, test_case, vector_file
from secagg.vectors._suite import Suite, deterministic, register

__all__ = ["SUITES"]

INLINE_DIMENSION = 64
"""Subsets of up to this many coordinates list their keys and indices; larger ones are pinned by SHA-256."""

NOTES = {
    "AllCoordinates": "k = d: every coordinate is sent (no keystream is needed).",
    "OneCoordinate": "k = 1: the index of the smallest key.",
    "Large": "d too large to list: the indices are pinned by the SHA-256 of their little-endian u32 words.",
    "BadSeed": "The seed is not 32 bytes.",
    "BadCount": "k is 0 or larger than d.",
    "BadDimension": "d is 0.",
    "UnknownLayer": "A named layer is not in the layout.",
    "DuplicateLayer": "The layout names a layer twice.",
    "Reordered": "The layers are named in another order than the layout's; the subset is the same.",
}


def _digest(indices: np.ndarray) -> str:
    return hashlib.sha256(indices.astype("<u4").tobytes()).hexdigest()


def _random_test(comment: str, flags: list[str], seed: bytes, dimension: int, count: int) -> Json:
    subset = Subset.random(seed, dimension, count=count)
    fields: Json = {
        "seed": seed.hex(),
        "dimension": dimension,
        "count": count,
        "parameters": encode_parameters(subset.descriptor_parameters()).hex(),
    }
    if dimension <= INLINE_DIMENSION:
        fields["keys"] = prg.expand(seed, SUBSET_LABEL, dimension, RING64).astype("<u8").tobytes().hex()
        fields["indices"] = [int(i) for i in subset.indices]
    else:
        fields["indicesSha256"] = _digest(subset.indices)
    return test_case(comment, flags, "valid", **fields)


def generate_sparsity() -> Json:
    """sparsity.json: random subsets from a seed, layer subsets, their descriptor parameters."""
    random_tests = []
    for index, (dimension, count, flags) in enumerate(
        [(10, 3, []), (31, 7, []), (64, 16, []), (20, 1, ["OneCoordinate"]), (12, 12, ["AllCoordinates"]),
         (100_000, 25_000, ["Large"])]
    ):  # fmt: skip
        seed = deterministic(f"sparsity/{index}")(32)
        random_tests.append(_random_test(f"k = {count} of d = {dimension}", flags, seed, dimension, count))
    seed = deterministic("sparsity/bad")(32)
    for comment, flags, bad_seed, dimension, count in [
        ("31-byte seed", ["BadSeed"], seed[:31], 10, 3),
        ("k = 0", ["BadCount"], seed, 10, 0),
        ("k = d + 1", ["BadCount"], seed, 10, 11),
        ("d = 0", ["BadDimension"], seed, 0, 1),
    ]:
        random_tests.append(test_case(comment, flags, "invalid", seed=bad_seed.hex(), dimension=dimension,
                                      count=count, error="ConfigurationError"))  # fmt: skip
    shapes: list[tuple[str, int]] = [
        ("dense1.weight", 12),
        ("dense1.bias", 4),
        ("dense2.weight", 8),
        ("dense2.bias", 2),
    ]
    layout = [[name, size] for name, size in shapes]
    layer_tests = []
    for comment, flags, names in [
        ("one layer", [], ["dense2.weight"]),
        ("two layers named out of order", ["Reordered"], ["dense2.bias", "dense1.weight"]),
    ]:
        subset = Subset.from_layers(shapes, names)
        bound = encode_parameters(subset.descriptor_parameters()).hex()
        layer_tests.append(test_case(
            comment, flags, "valid", layout=layout, names=names, dimension=subset.dimension,
            indices=[int(i) for i in subset.indices], parameters=bound,
        ))  # fmt: skip
    layer_tests.append(test_case("unknown layer", ["UnknownLayer"], "invalid", layout=layout, names=["dense3.bias"],
                                 error="ConfigurationError"))  # fmt: skip
    layer_tests.append(test_case("a layer named twice in the layout", ["DuplicateLayer"], "invalid",
                                 layout=[["a", 2], ["a", 3]], names=["a"], error="ConfigurationError"))  # fmt: skip
    return vector_file(
        algorithm="secagg-sparsity",
        schema="sparsity_test_schema.json",
        header=[
            "Shared-seed partial updates (docs/spec.md, section 20): keys = the PRG expansion of the 32-byte seed",
            "under the label 'secagg/v1/sparsity' read as d little-endian u64 words (section 5); the subset is the",
            "k indices with the smallest (key, index) pairs, ascending. 'parameters' is encode_parameters (section",
            "16) of the subset's 'secagg.sparsity.*' descriptor entries. Layer subsets: the index ranges of the",
            "named tensors of the layout [name, size] (consecutive in layout order), ascending.",
        ],
        notes=NOTES,
        groups=[
            {"type": "SparsitySubsetTest", "tests": random_tests},
            {"type": "SparsityLayerTest", "tests": layer_tests},
        ],
    )


@register("SparsitySubsetTest")
def check_subset(group: Json, test: Json) -> None:
    """Select the subset; compare keys, indices (or their SHA-256) and the bound parameters."""
    del group
    seed, dimension, count = from_hex(test["seed"]), int(test["dimension"]), int(test["count"])
    if not is_valid(test):
        expect_error(test, lambda: random_indices(seed, dimension, count), "subset selection")
        return
    subset = Subset.random(seed, dimension, count=count)
    if "keys" in test:
        keys = prg.expand(seed, SUBSET_LABEL, dimension, RING64).astype("<u8").tobytes().hex()
        equal("keys", keys, test["keys"])
        equal("indices", [int(i) for i in subset.indices], test["indices"])
    else:
        equal("indicesSha256", _digest(subset.indices), test["indicesSha256"])
    equal("parameters", encode_parameters(subset.descriptor_parameters()).hex(), test["parameters"])


@register("SparsityLayerTest")
def check_layers(group: Json, test: Json) -> None:
    """Build the layer subset; compare dimension, indices and the bound parameters."""
    del group
    layout = [(str(name), int(size)) for name, size in test["layout"]]
    names = [str(name) for name in test["names"]]
    if not is_valid(test):
        expect_error(test, lambda: Subset.from_layers(layout, names), "layer subset")
        return
    subset = Subset.from_layers(layout, names)
    equal("dimension", subset.dimension, test["dimension"])
    equal("indices", [int(i) for i in subset.indices], test["indices"])
    equal("parameters", encode_parameters(subset.descriptor_parameters()).hex(), test["parameters"])


SUITES = [Suite("sparsity.json", "sparsity_test_schema.json", generate_sparsity)]
