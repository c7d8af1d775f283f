"""A node whose policy requires DP never trains in the clear: ``allow_plain_train`` is refused with it.

``allow_plain_train=True`` passes training messages outside a secure round to the handler, whose
reply (the node's whole update, un-noised) goes back as it is: a release no accountant charges.
A node that declared ``NodePolicy(require_dp=True)`` ("refuse a round without distributed
differential privacy") would make exactly that release for any plain ``train`` message the
server sends, so the two settings together are refused when the mod is built, for masking and
Paillier alike, before any message arrives.
"""

from __future__ import annotations

import pytest

pytest.importorskip("flwr")

from secagg.errors import ConfigurationError
from secagg.integrations.flower import NodePolicy, make_paillier_mod
from secagg.integrations.flower.client import make_secagg_mod


def test_a_masking_node_requiring_dp_refuses_to_train_in_the_clear() -> None:
    # Execute / Assert: the contradiction is refused when the mod is built, naming both settings
    with pytest.raises(ConfigurationError, match=r"require_dp.*allow_plain_train"):
        make_secagg_mod(policy=NodePolicy(require_dp=True), allow_plain_train=True)


def test_a_paillier_node_requiring_dp_refuses_to_train_in_the_clear() -> None:
    # Execute / Assert: the same refusal (no key share is read: it is the settings' own check)
    with pytest.raises(ConfigurationError, match=r"require_dp.*allow_plain_train"):
        make_paillier_mod(policy=NodePolicy(require_dp=True, min_colluders=0), allow_plain_train=True)


@pytest.mark.parametrize("allow_plain_train, require_dp", [(True, False), (False, True), (False, False)])
def test_either_setting_alone_is_still_accepted(allow_plain_train: bool, require_dp: bool) -> None:
    # Execute: each setting on its own builds both mods, as before
    masking = make_secagg_mod(policy=NodePolicy(require_dp=require_dp), allow_plain_train=allow_plain_train)
    paillier = make_paillier_mod(
        policy=NodePolicy(require_dp=require_dp, min_colluders=0), allow_plain_train=allow_plain_train
    )
    # Assert
    assert callable(masking) and callable(paillier)
