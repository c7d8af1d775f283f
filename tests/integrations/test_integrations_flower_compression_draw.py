"""A round's public compression draw never ends the run; a rotation that can never apply is refused.

``rotate=True`` rotates the *float* coordinates a round sends. A random subset (``sparsity=<fraction>``)
of a model that holds integer arrays can draw only integer coordinates: that round has nothing to
rotate, and is sent exact and unrotated (its setup binds no rotation), instead of raising out of the
ServerApp. A model (or a named-array subset) with no float coordinate at all could never rotate
anything: refused at its first round, before anything is sent, whatever the draw. So is a clip
table whose counts some draw could overflow (checked at the longest segment any draw can give).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg

from secagg.descriptor import decode_parameters
from secagg.errors import ConfigurationError
from secagg.integrations.flower import NodePolicy, PaillierGrid, PaillierOptions, SecAggGrid, SecAggOptions
from secagg.integrations.flower._masking_plan import bound_table
from secagg.integrations.flower.clipping import layout_table
from secagg.integrations.flower.compression import ROTATED, RoundCompression
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import ENCRYPT, flatten_arrays
from secagg.sparsity import Subset

from .flower_harness import (
    TRUSTED_KEYS,
    FakeGrid,
    initial_arrays,
    make_app,
)
from .paillier_keys import PASSPHRASE, key_files
from .test_integrations_flower_compression import NODES, masking_grid, paillier_grid, setups

STEPS = 16
"""The integer array's length: with one float coordinate, a one-coordinate subset is integer-only 16 times in 17."""
FRACTION = 0.05  # 17 coordinates: k = 1


pytestmark = pytest.mark.usefixtures("server_identity")


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


@pytest.mark.slow  # a heavy Flower round: CI runs it in the slow suite, beside the default suite
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


# --- the clip table: checked for every draw, at the first round --------------------------------------
# A random subset's segments differ from round to round (an array holds more or fewer of the k
# coordinates; the rotated segment is padded to the next power of two of the floats drawn), so a
# table fit for one draw may overflow for another. The round checks the longest segment any draw
# can give (an array of n values: min(n, k); rotated: one block of min(floats, k)): a setting that
# some draw would overflow is refused at the first round, whatever the draw; none ends a later round.


def table_grid(
    weight_cap: int, bits: int, paillier_path: Path | None = None, **options: object
) -> tuple[FakeGrid, SecAggGrid | PaillierGrid]:
    """Five nodes of weight 1 on :func:`model`'s arrays, under ``max_weight=weight_cap`` and ``bits``."""
    if paillier_path is None:
        grid = FakeGrid({node: make_app(node, 1) for node in NODES})
        settings = {"mode": "semi-honest", "stage_timeout": 5.0, "clipping": "fixed", "clip": 2.0}
        return grid, SecAggGrid(grid, SecAggOptions(max_weight=weight_cap, bits=bits, **settings, **options))  # type: ignore[arg-type]
    public_path, shares = key_files(paillier_path / "ceremony", len(NODES), 3)
    grid = FakeGrid({node: make_app(node, 1, paillier=True, key_share_file=share, passphrase=PASSPHRASE,
                                    policy=NodePolicy(min_colluders=0))
                     for node, share in zip(NODES, shares, strict=True)})  # fmt: skip
    secure = PaillierGrid(grid, PaillierOptions(public_key=read_public_key(public_path), stage_timeout=5.0,
                                                trusted_keys=TRUSTED_KEYS, clipping="fixed", clip=2.0, colluders=0,
                                                max_weight=weight_cap, bits=bits, **options))  # type: ignore[arg-type]  # fmt: skip
    return grid, secure


def integer_seed(count: int) -> bytes:
    """A subset seed whose ``count`` coordinates of the model include the float weight (a lucky draw:
    at most count - 1 of the integer counter's 16 values in its segment)."""
    for counter in range(1000):
        seed = hashlib.sha256(b"lucky" + counter.to_bytes(4, "big")).digest()
        if Subset.random(seed, 1 + STEPS, count=count).indices[0] == 0:
            return seed
    raise AssertionError("no such seed")


@pytest.mark.parametrize("paillier", [False, True], ids=["masking", "paillier"])
def test_a_table_some_draw_would_overflow_is_refused_at_the_first_round_whatever_the_draw(
    paillier: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: B = max_weight * qmax = 15 (bits 5); k = 16 of 17: a draw of the 16 integer values
    # would put 16 counts in one segment (over B), this round's lucky draw puts 15 (at B)
    fraction = 16 / 17
    draw_with(monkeypatch, seeded(integer_seed(16)))
    grid, secure = table_grid(1, 5, tmp_path if paillier else None, sparsity=fraction)
    # Execute / Assert: refused before anything is sent, naming the longest segment a draw can give
    with pytest.raises(ConfigurationError, match=r"16 values could overflow.*a round's random subset"):
        run(secure, rounds=1)
    assert grid.sent == []


@pytest.mark.parametrize("paillier", [False, True], ids=["masking", "paillier"])
def test_a_table_every_draw_fits_runs_with_an_unlucky_draw_at_the_bound(
    paillier: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: k = 15 of 17, B = 15: the worst draw (15 integer values in one segment) is at the bound
    fraction = 15 / 17
    unlucky = next(s for s in (hashlib.sha256(bytes([c])).digest() for c in range(256))
                   if Subset.random(s, 1 + STEPS, count=15).indices[0] > 0)  # fmt: skip
    draw_with(monkeypatch, seeded(unlucky))
    _, secure = table_grid(1, 5, tmp_path if paillier else None, sparsity=fraction)
    # Execute
    run(secure, rounds=1)
    # Assert: the round aggregated every node
    report = secure.reports[0]
    assert report.skipped_reason is None and report.included == frozenset(NODES), report.skipped_reason


def test_the_rotated_segment_is_checked_at_the_largest_block_a_draw_can_give() -> None:
    # 16 floats and one integer, k = 9: the floats drawn are 8 (block 8) or 9 (block 16)
    arrays = flatten_arrays([("arrays", name, a.numpy()) for name, a in initial_arrays().items()])[1]
    drawn = RoundCompression.draw(arrays, 0.5, True, seeded(integer_seed_of(arrays, 9), bytes(32)))
    assert drawn is not None and drawn.rotation is not None and drawn.rotation.padded_dimension == 8
    bound = bound_table(layout_table(arrays), drawn, True)
    assert [(s.name, s.length) for s in bound.segments] == [(ROTATED, 16), ("arrays/steps", 1)]
    # A round that drew no float (no rotation this round) is checked at that block all the same
    ints_only = RoundCompression.draw(layout(), FRACTION, True, seeded(seed_drawing(floats=False)))
    assert ints_only is not None and ints_only.rotation is None
    assert [(s.name, s.length) for s in bound_table(layout_table(layout()), ints_only, True).segments] == [
        (ROTATED, 1), ("arrays/steps", 1)]


def integer_seed_of(arrays, count: int) -> bytes:  # type: ignore[no-untyped-def]
    """A seed whose subset of ``count`` holds the last (integer) coordinate."""
    for counter in range(1000):
        seed = hashlib.sha256(b"int" + counter.to_bytes(4, "big")).digest()
        if Subset.random(seed, arrays.size, count=count).indices[-1] == arrays.size - 1:
            return seed
    raise AssertionError("no such seed")
