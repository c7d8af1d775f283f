"""A round's public compression draw never ends the run; a rotation that can never apply is refused.

``rotate=True`` rotates the *float* coordinates a round sends. A random subset (``sparsity=<fraction>``)
of a model that holds integer arrays can draw only integer coordinates: that round has nothing to
rotate, and is sent exact and unrotated (its setup binds no rotation), instead of raising out of the
ServerApp. A model (or a named-array subset) with no float coordinate at all could never rotate
anything: refused at its first round, before anything is sent, whatever the draw.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg

from secagg.descriptor import decode_parameters
from secagg.errors import ConfigurationError
from secagg.integrations.flower import PaillierGrid, SecAggGrid
from secagg.integrations.flower.clipping import layout_table
from secagg.integrations.flower.compression import RoundCompression
from secagg.integrations.flower.protocol import ENCRYPT, flatten_arrays
from secagg.sparsity import Subset

from .flower_harness import restore_task_identity, set_task_identity
from .test_integrations_flower_compression import NODES, masking_grid, paillier_grid, setups

STEPS = 16
"""The integer array's length: with one float coordinate, a one-coordinate subset is integer-only 16 times in 17."""
FRACTION = 0.05  # 17 coordinates: k = 1


@pytest.fixture(autouse=True)
def server_identity() -> Iterator[None]:
    previous = set_task_identity()
    yield
    restore_task_identity(previous)


def model() -> ArrayRecord:
    """One float weight and a 16-value int64 counter (names the compression tests' nodes train)."""
    return ArrayRecord({"w": Array(np.array([0.5])), "steps": Array(np.arange(STEPS, dtype=np.int64))})


def layout():  # type: ignore[no-untyped-def]
    return flatten_arrays([("arrays", name, a.numpy()) for name, a in model().items()])[1]


def seed_drawing(floats: bool) -> bytes:
    """The first 32-byte seed (SHA-256 of a counter) whose one-coordinate subset of the model is
    the float weight (``floats``) or an integer coordinate."""
    for counter in range(1000):
        seed = hashlib.sha256(counter.to_bytes(4, "big")).digest()
        if (Subset.random(seed, 1 + STEPS, fraction=FRACTION).indices[0] == 0) == floats:
            return seed
    raise AssertionError("no such seed")


def seeded(*seeds: bytes) -> Callable[[int], bytes]:
    """A random_bytes handing out ``seeds`` in order (then zero seeds)."""
    queue = list(seeds)
    return lambda n: queue.pop(0) if queue else bytes(n)


def draw_with(monkeypatch: pytest.MonkeyPatch, random_bytes: Callable[[int], bytes]) -> None:
    """Make the server's per-round draws use ``random_bytes``."""
    original = RoundCompression.draw.__func__  # type: ignore[attr-defined]

    def draw(cls, layout, sparsity, rotate, random_bytes_=None):  # type: ignore[no-untyped-def]
        return original(cls, layout, sparsity, rotate, random_bytes)

    monkeypatch.setattr(RoundCompression, "draw", classmethod(draw))


def run(secure: SecAggGrid | PaillierGrid, rounds: int) -> ArrayRecord:
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    return strategy.start(grid=secure, initial_arrays=model(), num_rounds=rounds,
                          train_config=ConfigRecord({"lr": 0.1})).arrays  # fmt: skip


# --- the draw -------------------------------------------------------------------------------------


def test_a_random_subset_that_draws_no_float_coordinate_is_sent_unrotated() -> None:
    # Prepare: a subset seed whose one coordinate is an integer one
    arrays = layout()
    # Execute
    compression = RoundCompression.draw(arrays, FRACTION, True, seeded(seed_drawing(floats=False)))
    # Assert: the subset, no rotation (nothing to rotate), and the integer segment sent exact
    assert compression is not None and compression.subset is not None and compression.rotation is None
    assert compression.subset.indices[0] > 0 and compression.float_count(arrays) == 0
    assert not any(name.startswith("secagg.rotation.") for name in decode_parameters(compression.parameters()))
    table = compression.table(layout_table(arrays))
    assert [(s.name, s.length, s.integer) for s in table.segments] == [("arrays/steps", 1, True)]
    update = np.concatenate([[0.25], np.arange(STEPS, dtype=np.float64)])
    assert np.array_equal(compression.expand(compression.compress(update, arrays), arrays),
                          np.where(np.arange(1 + STEPS) == compression.subset.indices[0], update, 0.0))  # fmt: skip
    # ... and read back by a node as the same compression
    assert RoundCompression.read(compression.parameters(), arrays) == compression


def test_a_random_subset_holding_a_float_coordinate_is_still_rotated() -> None:
    compression = RoundCompression.draw(layout(), FRACTION, True, seeded(seed_drawing(floats=True), bytes(range(32))))
    assert compression is not None and compression.rotation is not None and compression.rotation.dimension == 1


@pytest.mark.parametrize("sparsity", [None, FRACTION, 1.0, ("arrays/steps",)], ids=["all", "fraction", "one", "named"])
def test_rotating_a_model_without_float_coordinates_is_refused_whatever_the_draw(sparsity: object) -> None:
    # A model of integer arrays only (or a named subset of them): no round would ever have a float to rotate
    ints = flatten_arrays([("arrays", "steps", np.arange(STEPS, dtype=np.int64)),
                           ("arrays", "flags", np.ones(3, dtype=np.bool_))])[1]  # fmt: skip
    named = layout()
    for arrays in (ints, named) if sparsity == ("arrays/steps",) else (ints,):
        for counter in range(4):  # several draws: the refusal is not luck
            random_bytes = seeded(hashlib.sha256(bytes([counter])).digest())
            with pytest.raises(ConfigurationError, match="hold no float coordinate"):
                RoundCompression.draw(arrays, sparsity, True, random_bytes)  # type: ignore[arg-type]


# --- the run goes on ------------------------------------------------------------------------------


def test_a_masking_round_whose_subset_draws_only_integers_runs_unrotated_and_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: round 1 draws an integer coordinate, round 2 the float weight (rotated)
    draw_with(monkeypatch, seeded(seed_drawing(floats=False), seed_drawing(floats=True), bytes(range(32))))
    grid, secure = masking_grid(sparsity=FRACTION, rotate=True)
    # Execute
    final = run(secure, rounds=2)
    # Assert: both rounds aggregated every node; round 1 bound no rotation, round 2 one
    assert [r.skipped_reason for r in secure.reports] == [None, None]
    assert all(r.included == frozenset(NODES) for r in secure.reports)
    first, second = (decode_parameters(setups(grid)[r].compression) for r in (1, 2))
    assert not any(name.startswith("secagg.rotation.") for name in first)
    assert second["secagg.rotation.dimension"] == 1
    # The integer coordinate round 1 sent moved by exactly one step (each node adds 1)
    index = int(Subset.random(seed_drawing(floats=False), 1 + STEPS, fraction=FRACTION).indices[0]) - 1
    steps = final["steps"].numpy().reshape(-1)
    assert steps[index] == index + 1


def test_a_paillier_round_whose_subset_draws_only_integers_runs_unrotated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    draw_with(monkeypatch, seeded(seed_drawing(floats=False)))
    grid, secure = paillier_grid(tmp_path, sparsity=FRACTION, rotate=True)
    # Execute
    run(secure, rounds=1)
    # Assert: the round aggregated every node with no rotation bound
    report = secure.reports[0]
    assert report.skipped_reason is None and report.included == frozenset(NODES), report.skipped_reason
    entries = decode_parameters(setups(grid, ENCRYPT)[1].compression)
    assert entries and not any(name.startswith("secagg.rotation.") for name in entries)
