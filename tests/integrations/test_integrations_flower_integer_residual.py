"""Error feedback over Flower keeps no residual for integer arrays.

An integer array is an exact segment: its value must be a whole number within +-qmax, or the
node refuses the round. A residual for it would be a backlog of unsent whole-number changes: a
step counter rising by 50 per round, left out of a few random subsets, soon exceeds qmax at
bits=8, and the node then refuses every round that draws it, for good (the refusal keeps the
residual, which the next round grows). So a node keeps its float coordinates' residual only:
an integer coordinate not sent this round stays at the global value (as every coordinate does
without error feedback), and each round sends its own change, exact."""

from __future__ import annotations

import numpy as np
from flwr.app import RecordDict

from secagg.integrations.flower.compression import (
    RoundCompression,
    keep_residual,
    node_update,
    stored_residual,
)
from secagg.sparsity import Subset

from .test_integrations_flower_compression import SIZE, layout

ARRAYS = [("arrays/w", 12), ("arrays/b", 4), ("arrays/steps", 1)]
STEP = 50


def _round(names: tuple[str, ...]) -> bytes:
    return RoundCompression(SIZE, Subset.from_layers(ARRAYS, names)).parameters()


def _delta() -> np.ndarray:
    delta = np.full(SIZE, 0.01)
    delta[-1] = STEP  # the int64 step counter's change
    return delta


def test_an_unsent_integer_change_is_not_kept_so_a_counter_never_outgrows_its_range() -> None:
    # Prepare: five rounds that leave the counter (and "b") out, each node update kept as a node keeps it
    _, arrays_layout = layout()
    state = RecordDict()
    for _ in range(5):
        update = node_update(_round(("arrays/w",)), _delta(), arrays_layout, state)
        keep_residual(state, arrays_layout, update.residual)
    # Execute: a round that sends every array
    last = node_update(_round(("arrays/w", "arrays/b", "arrays/steps")), _delta(), arrays_layout, state)
    # Assert: the counter sends this round's change alone (250 more would exceed qmax = 127 at bits=8,
    # and did in every later round that drew it); the float arrays' backlog is still delivered
    assert last.values[-1] == STEP
    np.testing.assert_allclose(last.values[12:16], 6 * 0.01)
    assert last.residual is not None and not np.any(last.residual)


def test_a_stored_residual_for_an_integer_array_is_not_added() -> None:
    # Prepare: a residual an older node kept for the counter (or one kept while the array was float:
    # a strategy may average an integer array into floats between rounds)
    _, arrays_layout = layout()
    state = RecordDict()
    held = np.full(SIZE, 0.02)
    held[-1] = 200.0
    keep_residual(state, arrays_layout, held)
    # Execute: a round that leaves "b" out
    update = node_update(_round(("arrays/w", "arrays/steps")), _delta(), arrays_layout, state)
    # Assert: the counter sends its change alone; "w" sends its change plus its residual; "b" keeps both
    assert update.values[-1] == STEP
    np.testing.assert_allclose(update.values[:12], 0.03)
    assert update.residual is not None
    np.testing.assert_allclose(update.residual[12:16], 0.03)
    assert not np.any(update.residual[:12]) and update.residual[-1] == 0.0
    keep_residual(state, arrays_layout, update.residual)
    kept = stored_residual(state, arrays_layout)
    assert kept is not None and kept[-1] == 0.0
