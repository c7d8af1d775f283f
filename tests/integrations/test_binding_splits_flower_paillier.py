"""Binding guard, Flower Paillier options: every field of :class:`PaillierOptions` that shapes what a
node sends reaches the Paillier session the round binds (its setup, as ``PaillierGrid`` builds it,
and the session parameters every party derives from it), and a node holding the other value is
refused: its upload belongs to another session.

As tests/integrations/test_binding_splits_flower_masking.py does for SecAggOptions: each option,
and the round's public compression seed, either changes the session id (split here: node 1 uploads
under the other value and the server, under the base, refuses it; the base upload is the control)
or is listed with the reason it shapes nothing a node sends. The options are introspected: one
added later fails :func:`test_every_option_is_listed` until it is listed here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

pytest.importorskip("flwr")

from secagg.dp import DPConfig
from secagg.dp.calibration import NoisePlan
from secagg.errors import ProtocolError
from secagg.integrations.flower import PaillierGrid, PaillierOptions
from secagg.integrations.flower import dp as flower_dp
from secagg.integrations.flower._grid import TrainingBatch
from secagg.integrations.flower._round_binding import round_context
from secagg.integrations.flower.compression import RoundCompression
from secagg.integrations.flower.protocol import flatten_arrays
from secagg.paillier import Client, Server, SessionParameters, ThresholdPublicKey, deal_threshold_key_from_primes
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.segments import ClippingReport
from tests.masking.binding_guard import assert_listed, field_names
from tests.paillier.helpers import IDENTITIES

from .flower_harness import RUN_ID, FakeGrid, initial_arrays
from .paillier_keys import P_1024, Q_1024, material

NODES = (101, 102, 103, 104, 105)
NODE_KEYS = {node: IDENTITIES[i].public for i, node in enumerate(NODES, start=1)}
TARGET = 1
"""The node (protocol id 1) that holds the other value."""
DP = DPConfig(epsilon=1.0, delta=1e-5, rounds=3, l2_clip=1.0)


@pytest.fixture(autouse=True)
def quick_calibration(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed, generous sigma^2 for the DP round (it buys the budget; the binding does not depend on it)."""

    def calibrated(config: DPConfig, num_clients: int, scale: float, dimension: int) -> NoisePlan:
        return NoisePlan(config, Fraction(2**56), num_clients, dimension, scale)

    monkeypatch.setattr(flower_dp, "calibrated", calibrated)


def public_key() -> ThresholdPublicKey:
    """The federation's key: 4-of-5 (the default threshold for five shares)."""
    return material(len(NODES), 4).public


def batch(server_round: int = 1) -> TrainingBatch:
    base, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in initial_arrays().items()])
    return TrainingBatch(
        template=None, message_type="train", server_round=server_round, training=None, base=base,  # type: ignore[arg-type]
        layout=layout, digest=bytes(32), parameters=b"", node_ids=NODES,
    )  # fmt: skip


def options_of(**changes: Any) -> PaillierOptions:
    fields: dict[str, Any] = {"public_key": public_key(), "trusted_keys": frozenset(NODE_KEYS.values())}
    return PaillierOptions(**(fields | changes))


def session(options: PaillierOptions, *, seed: bytes = b"round", clipped_round: bool = False) -> SessionParameters:
    """The session parameters of a round of ``options`` over :data:`NODES` (its public compression
    seeds drawn from ``seed``), as the server sets it up and every party derives it; with
    ``clipped_round``, the second round after one in which half the float coordinates were clipped."""
    grid = PaillierGrid(FakeGrid({}), options)
    grid.identities = dict(NODE_KEYS)
    training = batch()
    if clipped_round:
        table = options.table(training, len(NODES), grid.schedule)
        counts = tuple(0 if s.integer else s.length * len(NODES) // 2 for s in table.segments)
        grid.schedule.observe(ClippingReport(table, counts, len(NODES)))
        training = batch(server_round=2)
    compression = RoundCompression.draw(
        training.layout, options.sparsity, options.rotate, InsecureDeterministicRandom(seed)
    )
    setup, _, _ = grid._setup(training, compression)
    context = round_context(RUN_ID, setup.server_round, setup.arrays_digest)
    return setup.session_parameters(options.public_key, context, RUN_ID)


Pair = Callable[[], tuple[SessionParameters, SessionParameters]]


def option(**changes: Any) -> Pair:
    return lambda: (session(options_of()), session(options_of(**changes)))


def next_round(*policies: Any) -> Pair:
    return lambda: tuple(session(options_of(clipping=p), clipped_round=True) for p in policies)  # type: ignore[return-value]


def another_dealing() -> ThresholdPublicKey:
    """A 4-of-5 key over the same primes, dealt with other randomness (the same modulus)."""
    return deal_threshold_key_from_primes(
        P_1024, Q_1024, num_parties=len(NODES), threshold=4, random_bytes=InsecureDeterministicRandom(b"other")
    ).public


SPLITS: dict[str, Pair | str] = {
    "public_key": lambda: (session(options_of()), session(options_of(public_key=another_dealing()))),
    "clip": option(clip=0.25),
    "bits": option(bits=12),
    "max_weight": option(max_weight=50),
    "weight_key": option(weight_key="samples"),
    "min_contributors": option(min_contributors=5),
    "colluders": "sizes the default min_contributors (bound) and refuses a key too weak for it (test_colluders_...)",
    "trusted_keys": "the server's check of the nodes' keys; the keys a round uses are bound (its identity keys)",
    "stage_timeout": "how long the server waits: no value a node sends",
    "poll_interval": "how often the server polls: no value a node sends",
    "max_nodes": "a refusal of a round above it; no value a node sends",
    "clipping": next_round("adaptive", "fixed"),
    "clips": option(clips={"arrays/w": 0.25}),
    "sparsity": option(sparsity=0.5),
    "rotate": option(rotate=True),
    "dp": option(dp=DP),
    "dp_state_file": "where the server keeps its accountant: no value a node sends",
    "run_config": "bound into the round's training parameters before the batch is made "
    "(tests/integrations/test_integrations_flower_run_config.py)",
    # two subsets holding as many coordinates of each array (one segment table): only the entries differ
    "round seed": lambda: (session(options_of(sparsity=0.5)), session(options_of(sparsity=0.5), seed=b"r3")),
}


def test_every_option_is_listed() -> None:
    assert_listed(field_names(PaillierOptions) | {"round seed"}, SPLITS)


def upload(params: SessionParameters) -> Any:
    """Node 1's signed upload under ``params``."""
    return Client(params, TARGET, IDENTITIES[TARGET]).upload(np.ones(params.vector_length, dtype=np.int64))


CASES = sorted(name for name, split in SPLITS.items() if not isinstance(split, str))


@pytest.mark.parametrize("value", CASES)
def test_an_option_split_between_two_nodes_refuses_the_odd_nodes_upload(value: str) -> None:
    # Prepare: the session under the base options, and under the other value
    split = SPLITS[value]
    assert callable(split)
    base, other = split()
    assert other.session_id != base.session_id, f"{value} does not reach the session id"
    server = Server(base)
    # Execute / Assert: node 1's upload under the other value is refused, saying why; under the base it is taken
    with pytest.raises(ProtocolError, match=f"upload of client {TARGET} belongs to another session"):
        server.receive_upload(upload(other))
    server.receive_upload(upload(base))
    assert server.included == {TARGET}


def test_colluders_only_sizes_the_default_min_contributors() -> None:
    # Declaring c = 1 for a 4-of-5 key gives min_contributors max(2, t, c + 2) = 4, the default's: one session
    declared = dataclasses.replace(options_of(), colluders=1)
    assert declared.contributors == options_of().contributors
    assert session(declared).session_id == session(options_of()).session_id
