"""Binding guard, encoding level: every field of every frozen dataclass that shapes what a client
encodes (or how the sum is decoded) reaches the session descriptor, and a split of it between
two clients fails the masking session for the client that holds the other value.

The classes: :class:`~secagg.descriptor.SessionDescriptor` itself, the quantization
(:class:`~secagg.encoding.QuantizationConfig`), the segment layout
(:class:`~secagg.segments.Segment`, :class:`~secagg.segments.SegmentTable`), the sparsity
subset (:class:`~secagg.sparsity.Subset`), the rotation (:class:`~secagg.rotation.Rotation`),
the range-discovery round (:class:`~secagg.ranges.RangeDiscovery`, through its round's table)
and the DP parameters (:class:`~secagg.dp.DPConfig`, :class:`~secagg.dp.NoisePlan`). For each
class, :data:`TO_DESCRIPTOR` builds the descriptor digest as the library does and
:data:`SPLITS` gives every field (introspected: a new field fails
:func:`test_every_field_is_listed`) another valid value, or an explicit reason why the field
shapes nothing a client sends, with a test that shows it (:data:`NOT_SHAPING`).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from secagg.descriptor import SessionDescriptor
from secagg.dp import DPConfig
from secagg.dp.calibration import NoisePlan
from secagg.dp.encoding import noised_encoding
from secagg.dp.sampler import SeededRandomSource
from secagg.encoding import QuantizationConfig, quantize
from secagg.errors import ConfigurationError
from secagg.masking import ACTIVE, SEMI_HONEST, MaskingConfig
from secagg.ranges import RangeDiscovery
from secagg.rotation import Rotation
from secagg.segments import Segment, SegmentTable
from secagg.sparsity import Subset

from .binding_guard import assert_listed, assert_split_fails_the_session, field_names
from .split_session import assert_honest_completes, keys_for

MODES = (SEMI_HONEST, ACTIVE)
N = 4
QUANTIZATION = QuantizationConfig(0.5, 16, N, 32, max_weight=100)
SEED = bytes(range(32))
LAYOUT = [("a", 5), ("b", 5), ("c", 90)]
OPEN_TABLE = SegmentTable((Segment("a", 6), Segment("steps", 1, integer=True), Segment("b", 3)))
"""A model's table whose float segments name no clip: what a range-discovery round histograms."""


def _bits(value: float) -> int:
    return int.from_bytes(struct.pack(">d", value), "big")


def _descriptor(**parameters: Any) -> bytes:
    return SessionDescriptor.create(
        QUANTIZATION, weight_key="num_samples", server_round=1, parameters=parameters
    ).digest()


def _table_descriptor(table: SegmentTable) -> bytes:
    return SessionDescriptor.create(QUANTIZATION, weight_key="num_samples", layout_digest=table.digest()).digest()


DP = DPConfig(epsilon=1.0, delta=1e-6, rounds=10, l2_clip=1.0)
PLAN = NoisePlan(DP, Fraction(9, 2), num_clients=N, dimension=6, scale=64.0)

# How the library turns each object into the descriptor digest a session binds.
TO_DESCRIPTOR: dict[type, Callable[[Any], bytes]] = {
    SessionDescriptor: lambda d: d.digest(),
    QuantizationConfig: lambda q: SessionDescriptor.create(q, weight_key="num_samples").digest(),
    Segment: lambda s: _table_descriptor(SegmentTable((s, Segment("steps", 1, integer=True)))),
    SegmentTable: _table_descriptor,
    Subset: lambda s: _descriptor(**s.descriptor_parameters()),
    Rotation: lambda r: _descriptor(**r.descriptor_parameters()),
    DPConfig: lambda c: _descriptor(**c.descriptor_parameters()),
    NoisePlan: lambda p: _descriptor(**p.config.descriptor_parameters(p)),
    RangeDiscovery: lambda r: _table_descriptor(r.table(OPEN_TABLE, QUANTIZATION.bits)),
}

BASES: dict[type, Any] = {
    SessionDescriptor: SessionDescriptor.create(
        QUANTIZATION,
        weight_key="num_samples",
        layout_digest=bytes(range(32)),
        model_digest=bytes(range(1, 33)),
        run_id=7,
        server_round=3,
        parameters={"config/lr": 0.1},
    ),
    QuantizationConfig: QUANTIZATION,
    Segment: Segment("a", 6, 0.5),
    SegmentTable: SegmentTable((Segment("a", 6, 0.5),)),
    Subset: Subset.random(SEED, 100, count=5),
    Rotation: Rotation(SEED, 6),
    DPConfig: DP,
    NoisePlan: PLAN,
    RangeDiscovery: RangeDiscovery(),
}
LAYER_SUBSET = Subset.from_layers(LAYOUT, ["a"])

# Every field of every class: the changes that give another valid value (dataclasses.replace
# on the base), a (base, other) pair where the base must differ, or why it shapes nothing.
Change = dict[str, Any] | list[tuple[Any, Callable[[], Any]]] | str
SPLITS: dict[type, dict[str, Change]] = {
    SessionDescriptor: {
        "clip_bits": {"clip_bits": _bits(1e300)},
        "bits": {"bits": 8},
        "ring_bits": {"ring_bits": 64},
        "rounding": "one valid value (stochastic rounding): any other is refused (test_rounding_...)",
        "max_weight": {"max_weight": 101},
        "weight_key": {"weight_key": b"samples"},
        "layout_digest": {"layout_digest": bytes(32)},
        "model_digest": {"model_digest": bytes(32)},
        "run_id": {"run_id": 8},
        "server_round": {"server_round": 4},
        "parameters": {"parameters": SessionDescriptor.create(None, parameters={"config/lr": 0.0}).parameters},
    },
    QuantizationConfig: {
        "clip": {"clip": 0.25},
        "bits": {"bits": 12},
        "num_clients": "sizes the ring only (bound as ring_bits); no encoding depends on it (test_...)",
        "ring_bits": {"ring_bits": 64},
        "max_weight": {"max_weight": 50},
    },
    Segment: {
        "name": {"name": "other"},
        "length": {"length": 7},
        "clip": {"clip": 0.25},
        "integer": {"integer": True, "clip": None},  # an exact segment takes no clip
    },
    SegmentTable: {"segments": {"segments": (Segment("a", 3, 0.5), Segment("b", 3, 0.5))}},
    Subset: {
        "dimension": {"dimension": 101},
        # A seeded subset's indices follow from its seed, dimension and count (others are refused);
        # a layer subset's are bound as such (their digest).
        "indices": [
            (BASES[Subset], lambda: Subset(100, np.arange(5), seed=SEED)),
            (LAYER_SUBSET, lambda: Subset(100, np.arange(1, 6), layers=("a",))),
        ],
        "seed": {"seed": bytes(32), "indices": Subset.random(bytes(32), 100, count=5).indices},
        "layers": [(LAYER_SUBSET, lambda: Subset.from_layers(LAYOUT, ["b"]))],
    },
    Rotation: {"seed": {"seed": bytes(32)}, "dimension": {"dimension": 5}, "block": {"block": 4}},
    DPConfig: {
        "epsilon": {"epsilon": 2.0},
        "delta": {"delta": 1e-7},
        "rounds": {"rounds": 11},
        "l2_clip": {"l2_clip": 0.5},
        "sampling_rate": {"sampling_rate": 0.5},
        "min_honest": {"min_honest": 2},
        "mechanism": "one valid value (distributed-discrete-gaussian): any other is refused (test_mechanism_...)",
    },
    NoisePlan: {
        "config": {"config": dataclasses.replace(DP, epsilon=2.0)},  # and every DPConfig field, above
        "variance": {"variance": Fraction(5)},
        "num_clients": "sizes the ring and the tail bound only: a client adds N_Z(0, variance) (test_...)",
        "dimension": {"dimension": 7},
        "scale": {"scale": 128.0},
        "preceding": {"preceding": ((PLAN, 1),)},
    },
    RangeDiscovery: {
        # Shifted buckets, as many as the base's (so the round's segment lengths are the same):
        # only the header segment's name binds where the boundaries lie.
        "min_exponent": {"min_exponent": -23, "max_exponent": 41},
        "max_exponent": {"max_exponent": 39, "min_exponent": -25},
        "coverage": "the server's choice of the next round's clips (bound there, as clips); no histogram "
        "depends on it (test_range_coverage_shapes_no_histogram)",
    },
}

CASES = [
    (cls, name) for cls, fields in SPLITS.items() for name, how in sorted(fields.items()) if not isinstance(how, str)
]


def test_every_field_is_listed() -> None:
    for cls, fields in SPLITS.items():
        assert_listed(field_names(cls), fields, cls.__name__)
    assert set(SPLITS) == set(TO_DESCRIPTOR) == set(BASES)


def _pairs(cls: type, field: str) -> list[tuple[Any, Any]]:
    """(base, other) for one field, with other None where the other value is refused at construction."""
    how = SPLITS[cls][field]
    if isinstance(how, dict):
        return [(BASES[cls], dataclasses.replace(BASES[cls], **how))]
    assert isinstance(how, list)
    pairs = []
    for base, make in how:
        try:
            pairs.append((base, make()))
        except ConfigurationError:
            pairs.append((base, None))
    return pairs


def _config(mode: str, descriptor: bytes) -> MaskingConfig:
    return MaskingConfig.secagg(N, 2, mode=mode, identity_keys=keys_for(mode, N), descriptor=descriptor)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("cls", "field"), CASES, ids=[f"{c.__name__}.{f}" for c, f in CASES])
def test_a_field_split_between_two_clients_fails_the_session(cls: type, field: str, mode: str) -> None:
    for base, other in _pairs(cls, field):
        if other is None:
            continue  # that other value is refused at construction: nobody can hold it
        # Prepare: the descriptor of the base object and of one with another value of the field
        assert getattr(other, field) is not getattr(base, field)
        digests = TO_DESCRIPTOR[cls](base), TO_DESCRIPTOR[cls](other)
        assert digests[0] != digests[1], f"{cls.__name__}.{field} does not reach the session descriptor"
        # Execute / Assert: client 1 encodes under the other value, the others and the server under
        # the base (the control session: test_the_control_session_completes)
        base_config, other_config = _config(mode, digests[0]), _config(mode, digests[1])
        assert_split_fails_the_session(f"{cls.__name__}.{field}", base_config, other_config, control=False)


@pytest.mark.parametrize("mode", MODES)
def test_the_control_session_completes(mode: str) -> None:
    assert_honest_completes(_config(mode, TO_DESCRIPTOR[SessionDescriptor](BASES[SessionDescriptor])))


# --- the fields that shape nothing a client sends, shown ------------------------------------


def test_rounding_has_one_valid_value() -> None:
    with pytest.raises(ConfigurationError, match="rounding"):
        dataclasses.replace(BASES[SessionDescriptor], rounding=1)


def test_mechanism_has_one_valid_value() -> None:
    with pytest.raises(ConfigurationError, match="mechanism"):
        dataclasses.replace(DP, mechanism="laplace")


def test_the_quantizations_num_clients_shapes_no_encoding() -> None:
    values = np.linspace(-0.6, 0.6, 9)
    small, large = QUANTIZATION, dataclasses.replace(QUANTIZATION, num_clients=2)
    encodings = [quantize(values, q, np.random.default_rng(0)) for q in (small, large)]
    np.testing.assert_array_equal(*encodings)
    assert TO_DESCRIPTOR[QuantizationConfig](small) == TO_DESCRIPTOR[QuantizationConfig](large)


def test_a_noise_plans_num_clients_shapes_no_contribution() -> None:
    quantization = QuantizationConfig(32767 / PLAN.scale, 16, N, 32)  # the plan's scale
    vector = np.linspace(-1.0, 1.0, PLAN.dimension)
    encodings = [
        noised_encoding(plan, quantization, vector, np.random.default_rng(0), SeededRandomSource(SEED))
        for plan in (PLAN, dataclasses.replace(PLAN, num_clients=N + 1))
    ]
    np.testing.assert_array_equal(*encodings)


def test_range_coverage_shapes_no_histogram() -> None:
    values = np.array([0.0, -0.0, 1e-30, 0.3, -2.0, 1e13, 7.0, 0.5, -1e-8, 4.0])
    full, half = RangeDiscovery(), RangeDiscovery(coverage=0.5)
    encodings = [r.encode(values, OPEN_TABLE, QUANTIZATION.bits) for r in (full, half)]
    np.testing.assert_array_equal(*encodings)
    assert TO_DESCRIPTOR[RangeDiscovery](full) == TO_DESCRIPTOR[RangeDiscovery](half)


def test_a_seeded_subset_with_other_indices_is_refused() -> None:
    # The seed binds the indices only if they are the seed's: another list under the same seed is refused
    with pytest.raises(ConfigurationError, match="seed"):
        Subset(100, np.arange(5), seed=SEED)
    same = Subset(100, Subset.random(SEED, 100, count=5).indices.copy(), seed=SEED)
    np.testing.assert_array_equal(same.indices, BASES[Subset].indices)
