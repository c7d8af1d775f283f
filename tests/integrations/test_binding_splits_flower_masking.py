"""Binding guard, Flower masking options: every field of :class:`SecAggOptions` that shapes what a
node sends reaches the masking config the round binds (``MaskingPlan.create``, as the server builds
it: the record, its identity keys and its descriptor), and a split of it between two nodes fails
the masking session for the node that holds the other value.

A node acts on its round's setup alone, and every setup field is bound
(tests/integrations/test_integrations_flower_setup_fields.py); this file closes the step before:
each option, and the round's public compression seed, either changes the bound config (split here,
the session run to its refusal by :func:`~tests.masking.binding_guard.assert_split_fails_the_session`)
or is listed with the reason it shapes nothing a node sends. The options are introspected: one
added later fails :func:`test_every_option_is_listed` until it is listed here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest

pytest.importorskip("flwr")

from secagg.clipping import ClipSchedule, clip_policy
from secagg.dp import DPConfig
from secagg.dp.calibration import NoisePlan
from secagg.errors import ConfigurationError
from secagg.integrations.flower import SecAggOptions
from secagg.integrations.flower import dp as flower_dp
from secagg.integrations.flower._grid import TrainingBatch
from secagg.integrations.flower._masking_plan import MaskingPlan, round_table
from secagg.integrations.flower.compression import RoundCompression
from secagg.integrations.flower.dp import DPRounds
from secagg.integrations.flower.protocol import flatten_arrays
from secagg.masking import ACTIVE, SEMI_HONEST, MaskingConfig
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.segments import ClippingReport
from tests.masking.binding_guard import (
    assert_listed,
    assert_split_fails_the_session,
    field_names,
)
from tests.masking.split_session import IDENTITY_KEYS

from .flower_harness import RUN_ID, initial_arrays

MODES = (SEMI_HONEST, ACTIVE)
NODES = (101, 102, 103, 104, 105)
IDENTITIES = dict(zip(NODES, IDENTITY_KEYS, strict=False))
"""Each node's identity key: the binding guard's, so its sessions' clients sign with them."""
DP = DPConfig(epsilon=1.0, delta=1e-5, rounds=3, l2_clip=1.0)


@pytest.fixture(autouse=True)
def quick_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed sigma^2 for the DP round (the dp-accounting calibration takes a second; the
    binding does not depend on the value)."""

    def calibrated(config: DPConfig, num_clients: int, scale: float, dimension: int) -> NoisePlan:
        return NoisePlan(config, Fraction(2**20), num_clients, dimension, scale)

    monkeypatch.setattr(flower_dp, "calibrated", calibrated)


def batch(nodes: tuple[int, ...]) -> TrainingBatch:
    base, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in initial_arrays().items()])
    return TrainingBatch(
        template=None, message_type="train", server_round=1, training=None, base=base, layout=layout,  # type: ignore[arg-type]
        digest=bytes(32), parameters=b"", node_ids=nodes,
    )  # fmt: skip


def options_of(mode: str, **changes: Any) -> SecAggOptions:
    """The options of ``mode`` for rounds of up to 5 nodes (an explicit threshold is checked against
    that size), with ``changes``."""
    return SecAggOptions(**({"mode": mode, "max_nodes": len(NODES)} | changes))


def bound(
    options: SecAggOptions,
    *,
    seed: bytes = b"round",
    clipped_round: bool = False,
    identities: dict[int, bytes] = IDENTITIES,
) -> MaskingConfig:
    """The masking config the server binds for a round of ``options`` over the nodes of ``identities``
    (:data:`NODES`), its public compression seeds drawn from ``seed``; with ``clipped_round``, the
    second round after one in which half the float coordinates were clipped (the policy moves the clips)."""
    training = batch(tuple(identities))
    schedule = ClipSchedule(clip_policy(options.clipping), options.clip)
    if clipped_round:
        table = round_table(training, options.clips, schedule, None, options.quantization(len(NODES)), False)
        counts = tuple(0 if s.integer else s.length * len(NODES) // 2 for s in table.segments)
        schedule.observe(ClippingReport(table, counts, len(NODES)))
        training = dataclasses.replace(training, server_round=2)
    dp = None if options.dp is None else DPRounds(options.dp)
    compression = RoundCompression.draw(
        training.layout, options.sparsity, options.rotate, InsecureDeterministicRandom(seed)
    )
    return MaskingPlan.create(training, options, RUN_ID, identities, schedule, dp, compression).masking


Split = Callable[[str], tuple[MaskingConfig, MaskingConfig]] | str


def option(name: str, *candidates: Any, **base: Any) -> Callable[[str], tuple[MaskingConfig, MaskingConfig]]:
    """The bound configs of the options ``base`` (in the mode) and of those with the first of
    ``candidates`` for ``name`` that is valid and binds another config."""

    def split(mode: str) -> tuple[MaskingConfig, MaskingConfig]:
        reference = bound(options_of(mode, **base))
        for value in candidates:
            try:
                other = bound(options_of(mode, **(base | {name: value})))
            except ConfigurationError:
                continue
            if other.digest() != reference.digest():
                return reference, other
        raise AssertionError(f"no candidate {name} binds another valid round in {mode} mode")

    return split


def next_round(*policies: Any) -> Callable[[str], tuple[MaskingConfig, MaskingConfig]]:
    def split(mode: str) -> tuple[MaskingConfig, MaskingConfig]:
        first, second = (bound(options_of(mode, clipping=p), clipped_round=True) for p in policies)
        return first, second

    return split


def seeds(mode: str) -> tuple[MaskingConfig, MaskingConfig]:
    """Two rounds whose subsets differ but hold as many coordinates of each array (one segment table):
    only the compression entries tell them apart."""
    options = options_of(mode, sparsity=0.5)
    return bound(options, seed=b"round"), bound(options, seed=b"r3")


SPLITS: dict[str, Split] = {
    "protocol": "the same session up to 100 nodes (both are the complete graph), bound beyond (test_protocol_...)",
    "clip": option("clip", 0.25),
    "bits": option("bits", 12),
    "ring_bits": option("ring_bits", 64),
    "max_weight": option("max_weight", 50),
    "weight_key": option("weight_key", "samples"),
    "threshold": option("threshold", 3, 4, 5),
    "corrupt_fraction": option("corrupt_fraction", 0.0, 0.2, 0.4),
    "dropout_fraction": option("dropout_fraction", 0.2, 0.4, 0.6, protocol="secagg+"),
    "dropout_per_round": option("dropout_per_round", 0.05, 0.1, 0.15, 0.2, 0.24),
    "mode": lambda mode: (bound(options_of(mode)), bound(options_of(SEMI_HONEST if mode == ACTIVE else ACTIVE))),
    "trusted_keys": "the server's check of the nodes' keys; the keys a round uses are bound (the record's)",
    "stage_timeout": "how long the server waits: no value a node sends",
    "poll_interval": "how often the server polls: no value a node sends",
    "max_nodes": "a refusal of a round above it; no value a node sends",
    "clipping": next_round("adaptive", "fixed"),
    "clips": option("clips", {"arrays/w": 0.25}),
    "dp": option("dp", DP),
    "dp_state_file": "where the server keeps its accountant: no value a node sends",
    "sparsity": option("sparsity", 0.5, ("arrays/w",)),
    "rotate": option("rotate", True),
    "run_config": "bound into the round's training parameters before the batch is made "
    "(tests/integrations/test_integrations_flower_run_config.py)",
    "round seed": seeds,
}


def test_every_option_is_listed() -> None:
    assert_listed(field_names(SecAggOptions) | {"round seed"}, SPLITS)


CASES = sorted(name for name, split in SPLITS.items() if not isinstance(split, str))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value", CASES)
def test_an_option_split_between_two_nodes_fails_the_session(value: str, mode: str) -> None:
    # Prepare: the config the server binds under the base options, and under the other value
    split = SPLITS[value]
    assert callable(split)
    base, other = split(mode)
    # Execute / Assert: node 1 under the other value, the others and the server under the base:
    # node 1 is refused at setup or key agreement, no wrong sum; the control completes
    assert_split_fails_the_session(value, base, other)


@pytest.mark.parametrize("mode", MODES)
def test_protocol_is_the_same_session_up_to_100_nodes_and_bound_beyond(mode: str) -> None:
    small = [bound(options_of(mode, protocol=protocol)) for protocol in ("secagg", "secagg+")]
    assert small[0] == small[1]
    many = {node: node.to_bytes(32, "big") for node in range(1000, 1101)}  # 101 nodes, distinct keys
    large = [bound(SecAggOptions(mode=mode, protocol=p), identities=many) for p in ("secagg", "secagg+")]
    assert large[0].graph != large[1].graph and large[0].digest() != large[1].digest()
