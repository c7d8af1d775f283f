"""A Flower Paillier round of fewer nodes than the key has shares reports the dropouts it survives.

Only the round's own nodes decrypt its sum (each checks that it holds its own upload), so a round of
n = 4 nodes under a 3-of-5 key survives n - t = 1 dropout, not the key's l - t = 2: its
:attr:`RoundReport.guarantee` says 1, the round completes with one node silent in ``decrypt`` (the
bound) and is skipped with two (one past it), never with a wrong sum.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.serverapp.strategy import FedAvg

from secagg.integrations.flower import NodePolicy, PaillierGrid, PaillierOptions
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import DECRYPT

from .flower_harness import TRUSTED_KEYS, Audit, FakeGrid, initial_arrays, make_app
from .paillier_keys import PASSPHRASE, key_files

NODES = (1_000_000_007, 2**63 + 11, 42, 9_999_999_999)
WEIGHTS = dict(zip(NODES, (30, 55, 12, 80), strict=True))

pytestmark = pytest.mark.usefixtures("server_identity")


def _round(tmp_path: Path, silent: tuple[int, ...]) -> tuple[object, Audit]:
    """One round of the four nodes under a 3-of-5 key (shares 1..4; share 5 is in no round),
    min_contributors 2, colluders 0 by name; the ``silent`` nodes upload, then never decrypt."""
    public_path, shares = key_files(tmp_path / "ceremony", 5, 3)
    audit = Audit()
    apps = {
        node: make_app(node, WEIGHTS[node], audit, paillier=True, key_share_file=share, passphrase=PASSPHRASE,
                       policy=NodePolicy(min_colluders=0))
        for node, share in zip(NODES, shares, strict=False)
    }
    grid = FakeGrid(apps, silent={(node, DECRYPT) for node in silent})
    options = PaillierOptions(public_key=read_public_key(public_path), min_contributors=2, colluders=0,
                              trusted_keys=TRUSTED_KEYS, stage_timeout=0.3, poll_interval=0.05)
    secure = PaillierGrid(grid, options)
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=4, min_available_nodes=4)
    strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1)
    return secure.reports[0], audit


def test_the_round_completes_at_its_stated_dropouts(tmp_path: Path) -> None:
    report, audit = _round(tmp_path, silent=(42,))
    assert report.guarantee is not None and report.guarantee.dropouts == 1  # n - t, not l - t = 2
    assert report.aggregate is not None and report.included == frozenset(NODES)
    assert np.array_equal(report.aggregate, np.sum([a.encoded for a in audit.of_round(1).values()], axis=0))


def test_one_dropout_past_the_stated_bound_skips_the_round(tmp_path: Path) -> None:
    report, _ = _round(tmp_path, silent=(42, NODES[0]))
    assert report.guarantee is not None and report.guarantee.dropouts == 1
    assert report.aggregate is None
    assert report.skipped_reason is not None and "3 are needed" in report.skipped_reason
