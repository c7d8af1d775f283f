"""Binding guard, fl_core compression: every option of the rotation and partial-update wrappers
(:class:`~fl_core.rotated.RotatedAggregator`, :class:`~fl_core.compression.SparseAggregator` and
its :class:`~fl_core.compression.CompressionConfig`), and the round's public seed they draw, reaches
the round's bound masking config, and a split of it between two hospitals fails the session for
the hospital that holds the other value.

Introspected like tests/fl_core/test_fl_masking_binding_guard.py: an option added later fails
:func:`test_every_wrapper_option_is_listed` until :data:`SPLITS` says how to vary it, or why it
shapes nothing (with a test that shows it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fl_core.aggregators.base import ClientUpdate
from fl_core.aggregators.masking import MaskingAggregator
from fl_core.aggregators.quantizer import WeightedQuantizer
from fl_core.compression import CompressionConfig, SparseAggregator
from fl_core.rotated import RotatedAggregator
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError
from secagg.masking import ACTIVE, SEMI_HONEST, MaskingConfig
from secagg.primitives.randomness import InsecureDeterministicRandom
from tests.masking.binding_guard import (
    Split,
    assert_listed,
    assert_table_split_fails,
    field_names,
    parameter_names,
    split_cases,
)

MODES = (SEMI_HONEST, ACTIVE)
HOSPITALS = (1, 2, 3, 4, 5)
LENGTH = 32
QUANTIZATION = QuantizationConfig(4.0, 16, len(HOSPITALS), 32, max_weight=100)
UPDATES = [ClientUpdate(h, np.linspace(-1.0, 1.0, LENGTH) * h / 5, 10 * h) for h in HOSPITALS]


def inner(mode: str) -> MaskingAggregator:
    """The masking aggregator under the wrappers (fixed clip: the round's clip is the same for all; one
    named run: each aggregator otherwise draws its own run id)."""
    return MaskingAggregator(WeightedQuantizer(QUANTIZATION), mode=mode, clipping="fixed",
                             random_bytes=InsecureDeterministicRandom(b"hospitals"), run_id=7)  # fmt: skip


SIGNING_KEYS = inner(ACTIVE).session_identities(HOSPITALS)[1]
Wrap = Callable[[MaskingAggregator], RotatedAggregator | SparseAggregator]


def bound(wrap: Wrap, mode: str, seed: int = 0) -> MaskingConfig:
    """The config the round of ``wrap(inner)`` binds, its public randomness from ``seed``."""
    protocol = inner(mode)
    wrapper = wrap(protocol)
    wrapper.aggregate(UPDATES, {}, rng=np.random.default_rng(seed))  # draws the round's seeds and binds them
    length = wrapper.sent_length(LENGTH)
    table = protocol.quantizer.check_table(protocol.schedule.table(length))
    return protocol.round_config(HOSPITALS, length, table, 1)


def unwrapped(mode: str) -> MaskingConfig:
    """The config a round of the masking aggregator alone binds (no rotation, no subset)."""
    protocol = inner(mode)
    return protocol.round_config(HOSPITALS, LENGTH, protocol.quantizer.check_table(protocol.schedule.table(LENGTH)), 1)


def pair(
    base: Wrap,
    other: Wrap,
    seeds: tuple[int, int] = (0, 0),
) -> Callable[[str], tuple[MaskingConfig, MaskingConfig]]:
    return lambda mode: (bound(base, mode, seeds[0]), bound(other, mode, seeds[1]))


def rotated(block: int | None = None) -> Wrap:
    return lambda agg: RotatedAggregator(agg, block=block)


def sparse(**config: Any) -> Wrap:
    return lambda agg: SparseAggregator(agg, CompressionConfig(**config))


SPLITS: dict[str, Split] = {
    "rotated.inner": "the wrapped aggregator: tests/fl_core/test_fl_masking_binding_guard.py",
    "rotated.block": pair(rotated(8), rotated(16)),  # the same padded length (32): only the bound block differs
    "rotated.round seed": pair(rotated(), rotated(), seeds=(0, 1)),
    "sparse.inner": "the wrapped aggregator: tests/fl_core/test_fl_masking_binding_guard.py",
    "sparse.compression": "every field of CompressionConfig: the compression.* entries",
    "compression.fraction": pair(sparse(fraction=0.5), sparse(fraction=0.25)),
    "compression.coordinates": pair(sparse(coordinates=16), sparse(coordinates=15)),
    "compression.bytes_per_parameter": pair(sparse(bytes_per_parameter=2.0), sparse(bytes_per_parameter=1.0)),
    "compression.error_feedback": "what a hospital adds to its own values, not their shape (test_...)",
    "compression.option": "the option's name in error messages only (test_...)",
    "sparse.round seed": pair(sparse(fraction=0.5), sparse(fraction=0.5), seeds=(0, 1)),
    # the wrappers themselves, on or off: one hospital rotates (or sends a subset), the others do not.
    # The same length (32 needs no padding; a fraction of 1 sends every coordinate): only the entries differ
    "rotated (on/off)": lambda mode: (unwrapped(mode), bound(rotated(), mode)),
    "sparse (on/off)": lambda mode: (unwrapped(mode), bound(sparse(fraction=1.0), mode)),
}


def test_every_wrapper_option_is_listed() -> None:
    listed = parameter_names(RotatedAggregator.__init__, "rotated.")
    listed |= parameter_names(SparseAggregator.__init__, "sparse.") | field_names(CompressionConfig, "compression.")
    extra = {"rotated.round seed", "sparse.round seed", "rotated (on/off)", "sparse (on/off)"}
    assert_listed(listed | extra, SPLITS)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value", split_cases(SPLITS))
def test_a_split_between_two_hospitals_fails_the_round(value: str, mode: str) -> None:
    # Execute / Assert: hospital 1 under the other value, the others and the server under the base
    # wrapper's bound config; then the control round under the base alone
    assert_table_split_fails(SPLITS, value, mode, signing_keys=SIGNING_KEYS)


def test_error_feedback_and_the_option_name_shape_no_agreed_value() -> None:
    # error_feedback changes a hospital's own values (it adds its residual), never the subset or its length
    configs = [bound(sparse(fraction=0.5, error_feedback=flag), ACTIVE) for flag in (True, False)]
    configs += [bound(sparse(fraction=0.5, option="--bytes-per-parameter"), ACTIVE)]
    assert configs[0] == configs[1] == configs[2]


@pytest.mark.parametrize(
    "wrap",
    [
        # (the inner one without a residual: one with it cannot sit under a rotation at all, test_fl_rotation.py)
        lambda agg: SparseAggregator(
            RotatedAggregator(sparse(fraction=0.5, error_feedback=False)(agg)), CompressionConfig(fraction=0.5)
        ),
        lambda agg: RotatedAggregator(SparseAggregator(rotated()(agg), CompressionConfig(fraction=0.5))),
    ],
    ids=["sparse-rotated-sparse", "rotated-sparse-rotated"],
)
def test_a_wrapper_of_a_kind_already_under_it_is_refused(wrap: Wrap) -> None:
    # Both wrappers of one kind bind the round's entries under the same prefix, the inner one last, so
    # the outer one's subset or rotation (what every hospital sends first) would be bound by nothing:
    # a hospital given another outer seed would be summed with the others. Refused, as an adjacent pair is
    with pytest.raises(ConfigurationError, match="once"):
        wrap(inner(ACTIVE))
