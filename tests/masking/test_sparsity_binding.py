"""A split of the sparsity subset between hospitals never yields a mixed aggregate.

A server that gave one hospital another subset seed (or count, or dimension) than the
others would have it mask other coordinates: the masks would not cancel, or worse, the
server would learn that hospital's coordinates in a sum with zeros. The subset is bound
in the session descriptor, so that hospital is in another session.
"""

from __future__ import annotations

import pytest

from secagg.descriptor import SessionDescriptor
from secagg.masking import ACTIVE, SEMI_HONEST
from secagg.sparsity import Subset

from .test_session_binding import LENGTH, QUANTIZATION, N, _config, _run

TRUE = Subset.random(bytes(range(32)), 100, count=LENGTH - 1)
SPLITS = {
    "seed": Subset.random(bytes(32), 100, count=LENGTH - 1),
    "dimension": Subset.random(bytes(range(32)), 101, count=LENGTH - 1),
    "layers": Subset.from_layers([("a", LENGTH - 1), ("b", 95)], ["a"]),
}


def _descriptor(subset: Subset) -> bytes:
    return SessionDescriptor.create(
        QUANTIZATION, weight_key="num_samples", server_round=1, parameters=subset.descriptor_parameters()
    ).digest()


@pytest.mark.parametrize("mode", [SEMI_HONEST, ACTIVE])
@pytest.mark.parametrize("split", sorted(SPLITS))
def test_a_split_subset_never_mixes_contributions(mode: str, split: str) -> None:
    # Prepare: hospital 1 gets the true subset, the other four another one (same length of vector)
    other = _descriptor(SPLITS[split])
    assert other != _descriptor(TRUE)
    configs = {1: _config(mode, _descriptor(TRUE))} | {c: _config(mode, other) for c in range(2, N + 1)}
    # Execute: the server runs the others' session
    outcome = _run(configs, _config(mode, other))
    # Assert: hospital 1 is never in their aggregate; with one subset for all, everyone is
    assert outcome is None or 1 not in outcome[0]
    honest = _run({c: _config(mode, _descriptor(TRUE)) for c in range(1, N + 1)}, _config(mode, _descriptor(TRUE)))
    assert honest is not None and honest[0] == frozenset(range(1, N + 1))
