"""The Paillier mod decrypts in constant time unless the node opts out, by name.

``make_paillier_mod()`` takes the library's ``DEFAULT_CONSTANT_TIME``: the node raises its key
share (the partial decryption and the proof) with GMP's ``powmod_sec``;
``make_paillier_mod(constant_time=False)`` opts out (sliding windows: a co-located attacker's
timing and cache side channels on the share). The round is decrypted exactly either way.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flwr")

from secagg.integrations.flower import PaillierGrid, PaillierOptions
from secagg.integrations.flower.keys import read_public_key
from tests.paillier.helpers import Exponentiations

from .flower_harness import TRUSTED_KEYS, Audit, FakeGrid, make_app
from .paillier_keys import PASSPHRASE, material
from .test_integrations_flower_limits import run
from .test_integrations_flower_malformed import PAILLIER_NODES, WEIGHTS

pytestmark = pytest.mark.usefixtures("server_identity")


@pytest.mark.parametrize("options", [{}, {"constant_time": False}], ids=["default", "constant_time=False"])
def test_the_nodes_decrypt_in_constant_time_unless_opted_out(
    options: dict[str, bool], paillier_keys: tuple[Path, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the four nodes of the 3-of-4 key, each with the mod's default (or the opt-out)
    public_path, shares = paillier_keys
    audit = Audit()
    grid = FakeGrid({
        node: make_app(node, WEIGHTS[node], audit, paillier=True, key_share_file=share, passphrase=PASSPHRASE,
                       **options)
        for node, share in zip(PAILLIER_NODES, shares, strict=True)
    })  # fmt: skip
    secure = PaillierGrid(grid, PaillierOptions(trusted_keys=TRUSTED_KEYS, public_key=read_public_key(public_path)))
    powers = Exponentiations(monkeypatch)
    # Execute
    run(secure)
    # Assert: the round is decrypted; the t nodes that answered raised their shares as the mod says
    assert secure.reports[0].skipped_reason is None and len(secure.reports[0].included) == len(PAILLIER_NODES)
    # (a node's share is checked against its verification key, v^(Delta * s_i), in constant time
    # on every load whatever the option: tests/paillier/test_paillier_constant_time_default.py)
    used = [s for s in material(4, 3).shares if s.exponent in powers.silent + powers.sliding]
    assert len(used) >= 3, "fewer than t nodes decrypted"
    if options:
        powers.assert_sliding(*(s.exponent for s in used))
    else:
        powers.assert_silent(*(s.exponent for s in used), *(s.proof_secret for s in used))
