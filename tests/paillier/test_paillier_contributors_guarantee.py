"""A Paillier round of fewer hospitals than ``min_contributors`` has no guarantee, not a negative d.

Key-share holders decrypt only sums of at least ``min_contributors`` uploads, so a round of fewer
hospitals never releases a sum: like one of fewer than t hospitals
(tests/paillier/test_paillier_roster_guarantee.py), it is refused, never stated as "completes with
up to -1 dropouts". At ``num_clients = min_contributors`` (the bound) d is 0; one hospital fewer is
refused, for a threshold key, a single key and Flower's :meth:`PaillierOptions.guarantee`.
"""

from __future__ import annotations

import pytest

from secagg.errors import ConfigurationError
from secagg.paillier.parameters import threshold_guarantee


@pytest.mark.parametrize(("parties", "threshold", "contributors"), [(5, 4, 5), (4, 3, 4), (1, 1, 4)])
def test_a_round_of_min_contributors_hospitals_survives_no_dropout_and_one_fewer_is_refused(
    parties: int, threshold: int, contributors: int
) -> None:
    # At the bound: exactly min_contributors hospitals, every one must upload
    at_bound = threshold_guarantee(parties, threshold, contributors, contributors)
    assert at_bound.dropouts == 0 and "completes with up to 0 dropouts" in str(at_bound)
    # One past it: one hospital fewer never reaches min_contributors uploads
    with pytest.raises(ConfigurationError, match=f"never.*{contributors} uploads"):
        threshold_guarantee(parties, threshold, contributors - 1, contributors)


def test_flower_states_no_guarantee_for_a_round_below_min_contributors() -> None:
    pytest.importorskip("flwr")
    from secagg.integrations.flower import PaillierOptions  # noqa: PLC0415 (optional extra)
    from tests.integrations.paillier_keys import material  # noqa: PLC0415 (a 2048-bit test key)

    options = PaillierOptions(public_key=material(5, 4).public, min_contributors=5)
    assert options.guarantee(5).dropouts == 0
    with pytest.raises(ConfigurationError, match="never"):
        options.guarantee(4)


@pytest.mark.parametrize("colluders", [None, 2])
def test_flower_options_refuse_min_contributors_above_the_key_s_shares(colluders: int | None) -> None:
    # Every node holds one share, so no round has more nodes than the key has shares: min_contributors
    # above them means every round is skipped. At the bound (5 of 5 shares) the options are taken; one
    # past it they are refused when made, whether or not the colluders are named (the named opt-in
    # skipped the default checks that happened to catch it)
    pytest.importorskip("flwr")
    from secagg.integrations.flower import PaillierOptions  # noqa: PLC0415 (optional extra)
    from tests.integrations.paillier_keys import material  # noqa: PLC0415 (a 2048-bit test key)

    public = material(5, 4).public
    assert PaillierOptions(public_key=public, min_contributors=5, colluders=colluders).fewest_nodes == 5
    with pytest.raises(ConfigurationError, match="min_contributors 6 is above the key's 5 shares"):
        PaillierOptions(public_key=public, min_contributors=6, colluders=colluders)
