"""A Paillier round that too few nodes survive ``identify`` is skipped with a reason that says so.

As for SecAggGrid (tests/integrations/test_integrations_flower_identify_skip_reason.py): nodes
whose identity keys are on no trusted list are left out at ``identify``, each with its own reason
in ``RoundReport.errors``, but the round's ``skipped_reason`` was the setup's internal refusal of
the nodes left (the quantization's "num_clients and max_weight must be at least 1", or the slot
layout's), which says nothing of nodes or identities. The reason now counts the nodes left after
``identify`` against the least a Paillier session needs and points at ``errors``, in the same
words as SecAggGrid's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flwr")

from secagg.integrations.flower import PaillierGrid, PaillierOptions
from secagg.integrations.flower.keys import read_public_key, write_identity_key
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey

from .flower_harness import TRUSTED_KEYS, FakeGrid, identity_files, make_app
from .paillier_keys import PASSPHRASE, key_files
from .test_integrations_flower_paillier import NODES, WEIGHTS, run_fedavg

pytestmark = pytest.mark.usefixtures("server_identity")


@pytest.mark.parametrize("with_keys", [0, 1, 2])
def test_a_round_too_few_nodes_survive_identify_names_identify_not_the_setup(
    with_keys: int, tmp_path: Path
) -> None:
    # Prepare: a 3-of-4 key (a session needs 3 nodes); only the first `with_keys` nodes sign with
    # an identity key on the federation's list, the others with a key on nobody's list
    public_path, shares = key_files(tmp_path / "ceremony", 4, 3)
    stray = tmp_path / "stray.key"
    write_identity_key(stray, SigningKey.generate(InsecureDeterministicRandom(b"stray")))
    keyed = NODES[:with_keys]
    apps = {
        node: make_app(node, WEIGHTS[node], paillier=True, key_share_file=share, passphrase=PASSPHRASE,
                       **({} if node in keyed else {"identity_key_file": stray,
                                                    "trusted_keys_file": identity_files(node)[1]}))
        for node, share in zip(NODES, shares, strict=True)
    }
    secure = PaillierGrid(FakeGrid(apps), PaillierOptions(public_key=read_public_key(public_path),
                                                          trusted_keys=TRUSTED_KEYS))

    # Execute
    run_fedavg(secure, rounds=1)

    # Verify: skipped; the stray nodes dropped at identify, each with its own reason; the round's
    # reason says how many nodes identify left, the least a session needs, and where to look
    (report,) = secure.reports
    assert report.aggregate is None and report.included == frozenset()
    assert {node for node, stage in report.dropped.items() if stage == "identify"} == set(NODES) - set(keyed)
    assert all("outside the trusted list" in report.errors[node] for node in set(NODES) - set(keyed))
    reason = report.skipped_reason or ""
    assert "max_weight" not in reason, reason
    assert f"{with_keys} of {len(NODES)} nodes left after identify" in reason, reason
    assert "fewer than a Paillier session needs (at least 3)" in reason and "errors" in reason, reason
