"""A finished client's state opens nothing: not even the share boxes the server relayed to it.

After Unmasking a client forgets its secrets (spec 12.11), so that a transport that stores the
final state, and loses it, reveals nothing more. It used to keep its X25519 *encryption* private
key. The server relayed every share box and may keep them: with that key it re-derives k_vu and
opens the boxes sent to the client, i.e. both shares (mask key and self-mask seed) of every peer,
the pair an honest client never reveals together. t such states give a survivor's two secrets and
with its masked input its input: a double request answered after the fact.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg import wire
from secagg.errors import SecAggError
from secagg.masking import HARARY, ClientPhase, MaskingConfig, Round
from secagg.masking.messages import MaskedInput, ShareBundle, ShareDelivery
from secagg.masking.session import (
    PAIR_MASK_LABEL,
    SELF_MASK_LABEL,
    pair_mask_seeds,
    pair_mask_subtracts,
    share_encryption_keys,
)
from secagg.primitives import aead, prg, shamir
from secagg.primitives.key_agreement import KEY_SIZE

from .harness import StepRun, active_setup
from .test_lying_server import SEMI

VICTIM = 1
HARARY_SEMI = MaskingConfig(num_clients=8, threshold=3, vector_length=4, graph=HARARY, degree=4, mode="semi-honest")


def _open_with_final_state(run: StepRun, deliveries: dict[int, bytes], holder: int) -> ShareBundle | None:
    """What the server makes of ``holder``'s final state and the box of VICTIM it relayed to it."""
    state = run.states[holder]
    box = next(b for b in wire.decode(deliveries[holder], ShareDelivery).boxes if b.peer == VICTIM)
    try:
        (key,) = share_encryption_keys(
            state.encryption_private, [(VICTIM, run.states[VICTIM].encryption_public)], state.session, holder
        )
        ad = aead.share_associated_data(state.session, VICTIM, holder, Round.SHARE_KEYS)
        return wire.decode(aead.open_sealed(key, box.sealed, ad), ShareBundle)
    except SecAggError:
        return None


def _run(setup: str) -> StepRun:
    if setup == "active":
        config, identities = active_setup(5, 3)
        return StepRun(config, identities=identities, seed=4)
    return StepRun(HARARY_SEMI if setup == "harary" else SEMI, seed=4)


@pytest.mark.parametrize("setup", ["semi-honest", "active", "harary"])
def test_finished_states_and_the_relayed_boxes_do_not_give_a_survivors_input(setup: str) -> None:
    # Prepare: n = 5, t = 3 (complete graph, both modes) or n = 8, k = 4, t = 3 (Harary); an honest session
    run = _run(setup)
    config = run.config
    run.run_until(ClientPhase.AWAIT_SHARES)
    deliveries = dict(run.pending)  # the ShareDelivery each client got: the server keeps them
    run.finish()
    masked = wire.decode(run.sent[VICTIM][2], MaskedInput).vector.values.astype(config.ring.dtype)
    holders = list(run.neighbours(VICTIM))[: config.threshold]

    # Execute: the server obtains the finished states of t holders of the victim's shares
    assert all(run.states[h].phase == ClientPhase.DONE for h in holders)
    bundles = [_open_with_final_state(run, deliveries, h) for h in holders]

    # Assert: no box opens (before: all t did, and gave the victim's input, as below)
    opened = [(h, b) for h, b in zip(holders, bundles, strict=True) if b is not None]
    if len(opened) >= config.threshold:
        t = config.threshold
        seed = shamir.combine([shamir.Share(h, int.from_bytes(b.self_mask_share, "big")) for h, b in opened], t)
        key = shamir.combine([shamir.Share(h, int.from_bytes(b.mask_key_share, "big")) for h, b in opened], t)
        vector = masked.copy()
        prg.add_expansion(vector, seed, SELF_MASK_LABEL, subtract=True)
        peers = [(p, run.server.roster[p].mask_key) for p in run.neighbours(VICTIM)]
        for (peer, _), pair_seed in zip(peers, pair_mask_seeds(key, peers, run.session(), VICTIM), strict=True):
            prg.add_expansion(vector, pair_seed, PAIR_MASK_LABEL, subtract=not pair_mask_subtracts(VICTIM, peer))
        leaked = np.array_equal(vector, run.inputs[VICTIM])
        raise AssertionError(f"finished states opened {len(opened)} boxes; victim's input recovered: {leaked}")
    assert opened == []
    assert all(run.states[h].encryption_private == bytes(KEY_SIZE) for h in holders)
