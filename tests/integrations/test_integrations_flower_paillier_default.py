"""PaillierOptions' default follows the library's default threshold; fewer colluders only by name.

``secagg.paillier.parameters.default_threshold`` (PaillierConfig, fl_core's ``paillier``
aggregator) makes the active masking default's trade-off: 5 key shares 4-of-5 (c = 2, one
dropout), 4 shares 3-of-4 (c = 1, one dropout). Over Flower the key comes from the ceremony,
so the server's default refuses a key dealt below that threshold; ``colluders=c`` (by name)
accepts a lower one and the computed guarantee, reported with every round, says what it gives up.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from secagg.errors import ConfigurationError
from secagg.guarantee import Guarantee
from secagg.integrations.flower import PaillierGrid, PaillierOptions
from secagg.integrations.flower.keys import read_public_key
from secagg.paillier.parameters import default_threshold

from .flower_harness import TRUSTED_KEYS, Audit, FakeGrid
from .paillier_keys import key_files, material
from .test_integrations_flower_limits import run
from .test_integrations_flower_malformed import PAILLIER_NODES, paillier_apps

pytestmark = pytest.mark.usefixtures("server_identity")


@pytest.mark.parametrize("parties", [3, 4, 5, 7])
def test_the_default_takes_the_library_default_threshold_and_refuses_one_below(parties: int) -> None:
    # Prepare: the library's default t for l key shares, and the key one below it
    t = default_threshold(parties)
    # Execute / Assert: at the default threshold the default options accept the key
    options = PaillierOptions(public_key=material(parties, t).public)
    assert options.contributors == t
    if 2 * (t - 1) <= parties:
        return  # a key one below is no key a dealer deals (2t <= l): refused everywhere
    # ... one below it they refuse it, naming the threshold needed and the opt-in by name
    with pytest.raises(ConfigurationError, match=rf"{t - 1}-of-{parties} key is below the default {t}-of-{parties}"):
        PaillierOptions(public_key=material(parties, t - 1).public)


def test_a_key_below_the_default_is_refused_with_what_accepting_it_gives_up() -> None:
    # Prepare: a 3-of-5 key (the old default) and the 4-of-5 default
    old = material(5, 3).public
    # Execute
    with pytest.raises(ConfigurationError) as refusal:
        PaillierOptions(public_key=old)
    # Assert: the reason names both guarantees and the opt-in
    reason = str(refusal.value)
    assert "default 4-of-5" in reason and "up to 2 colluding" in reason, reason
    assert "colluders=0" in reason and "up to 0 colluding" in reason, reason


def test_the_default_guarantee_at_the_bound_and_one_past_it() -> None:
    # Prepare: the default 4-of-5 key
    public = material(5, 4).public
    default = PaillierOptions(public_key=public)
    # Assert: c = 2 colluders, one dropout among 5 nodes, none among 4
    assert default.guarantee(5) == Guarantee(2, 1, lying_server=True)
    assert default.guarantee(4) == Guarantee(2, 0, lying_server=True)
    # Execute / Assert: declaring the bound c = 2 is accepted, one past it refused (2t > l + c = 8 fails)
    assert PaillierOptions(public_key=public, colluders=2).guarantee(5).colluders == 2
    with pytest.raises(ConfigurationError, match=r"2t > l \+ c = 8"):
        PaillierOptions(public_key=public, colluders=3)


def test_fewer_colluders_are_accepted_by_name_and_the_guarantee_says_so() -> None:
    # Prepare: the old 3-of-5 key
    public = material(5, 3).public
    # Execute: declared by name
    weaker = PaillierOptions(public_key=public, colluders=0)
    # Assert: no colluder tolerated, two dropouts (what the lower threshold buys); c = 1 is one past
    assert weaker.guarantee(5) == Guarantee(0, 2, lying_server=True)
    with pytest.raises(ConfigurationError, match=r"2t > l \+ c = 6"):
        PaillierOptions(public_key=public, colluders=1)


def test_every_paillier_round_reports_and_logs_its_computed_guarantee(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the default 3-of-4 key over the four Paillier test nodes
    public_path, shares = key_files(tmp_path / "ceremony", 4, 3)
    grid = FakeGrid(paillier_apps(shares, Audit()))  # type: ignore[arg-type]
    options = PaillierOptions(public_key=read_public_key(public_path), trusted_keys=TRUSTED_KEYS)
    secure = PaillierGrid(grid, options)
    # Execute
    with caplog.at_level(logging.INFO, logger="secagg.flower"):
        run(secure)
    # Assert: c = 1 colluder, one dropout, in the report and the log
    report = secure.reports[0]
    assert report.skipped_reason is None and report.included == frozenset(PAILLIER_NODES)
    assert report.guarantee == Guarantee(1, 1, lying_server=True) == options.guarantee(4)
    assert f"3-of-4 key, min_contributors 3): {report.guarantee}" in caplog.text, caplog.text


def test_min_contributors_below_the_default_colluders_is_refused_unless_declared_by_name() -> None:
    # Prepare: the default 4-of-5 key (c = 2); min_contributors 4 keeps c = 2, 3 gives c = 1
    public = material(5, 4).public
    # Execute / Assert: at the bound (c = 2 = the default) the default options accept it
    assert PaillierOptions(public_key=public, min_contributors=4).guarantee(5).colluders == 2
    # ... one past it (c = 1) they refuse before any round, naming both guarantees and the opt-in
    with pytest.raises(ConfigurationError) as refusal:
        PaillierOptions(public_key=public, min_contributors=3)
    reason = str(refusal.value)
    assert "up to 1 colluding" in reason and "up to 2 colluding" in reason, reason
    assert "colluders=1" in reason, reason
    # ... and accept it when the weaker guarantee is asked for by name
    assert PaillierOptions(public_key=public, min_contributors=3, colluders=1).guarantee(5).colluders == 1
