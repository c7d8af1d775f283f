"""The threshold-Paillier guarantee, attacked at its bound and one past it.

The attack: a lying server asks one group of key-share holders to decrypt the sum of
all uploads and a disjoint group to decrypt the same sum without the victim's upload.
Each honest holder answers one aggregate per session and finds its own upload in the
one it is shown; colluding holders (the server holds their shares) answer both. The
difference of the two decrypted sums is the victim's upload. Both groups reach t iff
``2t <= l + c`` (l share holders, c of them colluding), so the computed guarantee is
``c = min(t - 1, min_contributors - 2, 2t - l - 1)`` and a key with ``2t <= l`` is refused.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_core.aggregators import make_aggregator
from secagg.errors import ConfigurationError, ThresholdError
from secagg.paillier import (
    Client,
    DecryptingParty,
    Mode,
    PaillierConfig,
    Server,
    SessionParameters,
    SlotLayout,
    Stage,
    ThresholdKeyMaterial,
    run_session,
)
from secagg.paillier.parameters import threshold_guarantee
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import IDENTITIES, identity_keys, single_material, threshold_material, unsafe_threshold_material

LENGTH = 6
VICTIM = 1


def _params(material: ThresholdKeyMaterial, min_contributors: int) -> SessionParameters:
    roster = tuple(range(1, material.public.num_parties + 1))
    return SessionParameters(
        public=material.public, layout=SlotLayout(16, len(roster), material.public.key.key_bits),
        vector_length=LENGTH, roster=roster, min_contributors=min_contributors, identity_keys=identity_keys(roster),
        context=bytes(32),
    )


def split_decryption(
    material: ThresholdKeyMaterial, params: SessionParameters, colluders: frozenset[int], group_a: frozenset[int]
) -> tuple[np.ndarray | None, np.ndarray]:
    """Every hospital uploads; the server shows ``group_a`` (and the victim) all uploads and
    every other honest holder all uploads but the victim's; colluders answer both. Returns
    (the difference of the two decrypted sums, or None if a side got fewer than t answers;
    the victim's real upload)."""
    roster = params.roster
    inputs = {k: np.arange(LENGTH, dtype=np.int64) * (k + 3) - 7 * k for k in roster}
    uploads = {
        k: Client(params, k, IDENTITIES[k], random_bytes=InsecureDeterministicRandom(k)).upload(inputs[k])
        for k in roster
    }
    full, without = Server(params), Server(params)
    for k, upload in uploads.items():
        full.receive_upload(upload)
        if k != VICTIM:
            without.receive_upload(upload)
    answered = {"full": 0, "without": 0}
    for k in roster:
        sides = ("full", "without") if k in colluders else ("full" if k in group_a | {VICTIM} else "without",)
        for side in sides:
            server = full if side == "full" else without
            party = DecryptingParty(params, material.shares[k - 1], own_upload=uploads[k].digest)
            server.receive_partial(party.respond(server.decryption_request(k)))
            answered[side] += 1
    t = params.public.threshold
    if min(answered.values()) < t:
        return None, inputs[VICTIM]
    return full.finish() - without.finish(), inputs[VICTIM]


def _attack_succeeds(material: ThresholdKeyMaterial, params: SessionParameters, count: int) -> bool:
    """Some split with ``count`` colluders (not the victim) gives the server the victim's upload."""
    parties = params.roster
    colluders = frozenset(parties[len(parties) - count:])
    honest = [k for k in parties if k != VICTIM and k not in colluders]
    for size in range(len(honest) + 1):
        recovered, truth = split_decryption(material, params, colluders, frozenset(honest[:size]))
        if recovered is not None:
            np.testing.assert_array_equal(recovered, truth)  # the server really has the victim's upload
            return True
    return False


def test_a_key_whose_two_disjoint_groups_reach_t_is_refused() -> None:
    # 2-of-5 without any colluder: {1, 2} decrypt the full sum, {3, 4} the sum without 1. The
    # dealer refuses the shape too (tests/paillier/test_paillier_dealing.py): built by the private path
    material = unsafe_threshold_material(256, 5, 2)
    with mock.patch("secagg.paillier.parameters.check_decryption_majority", create=True):
        assert _attack_succeeds(material, _params(material, 3), 0)
    with pytest.raises(ConfigurationError, match=r"2t > l"):
        _params(material, 3)


@pytest.mark.parametrize(("parties", "threshold", "min_contributors"), [(3, 2, 2), (4, 3, 3), (5, 3, 3), (5, 4, 4),
                                                                        (6, 4, 4), (7, 5, 5)])
def test_the_paillier_guarantee_holds_at_its_bound_and_breaks_one_past_it(
    parties: int, threshold: int, min_contributors: int
) -> None:
    material = threshold_material(256, parties, threshold)
    params = _params(material, min_contributors)
    c = params.guarantee.colluders
    assert c >= 0 and params.guarantee.lying_server
    # At the bound: no split gives the server the victim's upload
    assert not _attack_succeeds(material, params, c)
    # One past it: the split succeeds, or c + 1 colluders fill a sum of min_contributors but one
    assert _attack_succeeds(material, params, c + 1) or c + 1 > min_contributors - 2


def test_a_3_of_5_key_protects_against_no_colluder_in_the_split() -> None:
    # PaillierConfig's default for 5 hospitals was t = 3, min_contributors = 3. It once printed c = 1,
    # but one colluding holder plus two honest ones on each side reaches t = 3 twice. (The default is
    # now 4-of-5, c = 2: tests/paillier/test_paillier_default_threshold.py.)
    config = PaillierConfig(num_clients=5, vector_length=LENGTH, key_bits=256, threshold=3,
                            allow_insecure_key_bits_for_testing=True)
    material = threshold_material(256, 5, config.decryption_threshold)
    params = _params(material, config.contributors_needed)
    assert _attack_succeeds(material, params, 1)
    assert params.guarantee.colluders == 0
    with pytest.raises(ConfigurationError, match=r"2t > l \+ c"):
        PaillierConfig(num_clients=5, vector_length=LENGTH, key_bits=256, colluders=1, threshold=3,
                       allow_insecure_key_bits_for_testing=True)
    # Declaring the colluder instead sizes the default threshold for it: t = 4, and the split fails.
    declared = PaillierConfig(num_clients=5, vector_length=LENGTH, key_bits=256, colluders=1,
                              allow_insecure_key_bits_for_testing=True)
    assert declared.decryption_threshold == 4


@settings(max_examples=200, deadline=None)
@given(parties=st.integers(2, 40), data=st.data())
def test_computed_colluders_never_allow_two_disjoint_groups(parties: int, data: st.DataObject) -> None:
    # The counting argument behind the attack, for every shape: honest holders split into two
    # groups, each plus the c colluders must not reach t on both sides.
    threshold = data.draw(st.integers(2, parties))
    contributors = data.draw(st.integers(2, parties))
    if 2 * threshold <= parties:
        # refused (see test_a_key_whose_two_disjoint_groups_reach_t_is_refused): it has no guarantee
        with pytest.raises(ConfigurationError, match=r"need 2t > l \+ c"):
            threshold_guarantee(parties, threshold, parties, contributors)
        return
    c = threshold_guarantee(parties, threshold, parties, contributors).colluders
    assert 0 <= c <= min(threshold - 1, contributors - 2)
    honest = parties - c
    assert not any(a + c >= threshold and honest - a + c >= threshold for a in range(1, honest + 1))
    # c + 1 colluders break it, or the sum-size / share-count bound does
    more = c + 1
    assert more > contributors - 2 or more > threshold - 1 or any(
        a + more >= threshold and parties - more - a + more >= threshold for a in range(1, parties - more + 1)
    )


@pytest.mark.parametrize("options", [{"threshold": 2}, {"threshold": 3, "num_clients": 6}])
def test_fl_core_refuses_a_minority_threshold_before_its_ceremony(options: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError, match=r"2t > l"):
        make_aggregator("paillier", **{"num_clients": 5, "insecure_small_key": True, **options})


PAILLIER_SHAPES = [
    *((Mode.THRESHOLD, n, t, m)
      for n in range(2, 7) for t in range(max(2, n // 2 + 1), n + 1) for m in range(2, n + 1)),
    *((Mode.SINGLE_KEY, n, 1, m) for n in range(2, 7) for m in range(2, n + 1)),
]


@settings(max_examples=40, deadline=None)
@given(shape=st.sampled_from(PAILLIER_SHAPES), data=st.data())
def test_d_dropouts_complete_exactly_and_d_plus_one_raise_threshold_error(
    shape: tuple[Mode, int, int, int], data: st.DataObject
) -> None:
    # The guarantee's d = min(n - min_contributors, l - t) (n - min_contributors in single-key mode)
    mode, n, t, m = shape
    single = mode is Mode.SINGLE_KEY
    config = PaillierConfig(num_clients=n, vector_length=LENGTH, key_bits=256, mode=mode, min_contributors=m,
                            threshold=None if single else t, allow_insecure_key_bits_for_testing=True)
    material = single_material(256) if single else threshold_material(256, n, t)
    d = threshold_guarantee(config.num_parties, config.decryption_threshold, n, m).dropouts
    inputs = {k: np.arange(LENGTH, dtype=np.int64) - k for k in range(1, n + 1)}
    # At the bound: any d hospitals, each at either stage
    dropped = data.draw(st.lists(st.integers(1, n), min_size=d, max_size=d, unique=True))
    dropouts = {k: data.draw(st.sampled_from(list(Stage))) for k in dropped}
    result = run_session(config, inputs, dropouts, key_material=material)
    uploaded = [k for k in inputs if dropouts.get(k) is not Stage.UPLOAD]
    np.testing.assert_array_equal(result.aggregate, np.sum([inputs[k] for k in uploaded], axis=0))
    # One past it: d + 1 hospitals that never upload (nor decrypt): the library's error, no sum
    past = dict.fromkeys(data.draw(st.lists(st.integers(1, n), min_size=d + 1, max_size=d + 1, unique=True)),
                         Stage.UPLOAD)
    with pytest.raises(ThresholdError):
        run_session(config, inputs, past, key_material=material)


def test_the_single_key_guarantee_names_the_key_holder_it_trusts() -> None:
    # Single-key mode: one key holder decrypts anything it is given, so the line must say it is trusted
    material = single_material(256)
    params = SessionParameters(
        public=material.public, layout=SlotLayout(16, 3, 256), vector_length=LENGTH, roster=(1, 2, 3),
        min_contributors=3, identity_keys=identity_keys((1, 2, 3)), context=bytes(32),
    )
    line = str(params.guarantee)
    assert params.guarantee.colluders == 1 and "key holder" in line and "not collude" in line
    assert "key holder" not in str(_params(threshold_material(256, 3, 2), 2).guarantee)


def test_a_guarantee_on_a_key_below_the_2048_bit_floor_says_it_is_not_secure() -> None:
    # Test keys (and fl_core's insecure_small_key demo key) are accepted only by name; the line the
    # demo prints as "protection" must not read like a real guarantee on them
    line = str(_params(threshold_material(256, 3, 2), 2).guarantee)
    assert line.startswith("NOT SECURE") and "256-bit" in line
    with pytest.warns(UserWarning, match="insecure_small_key"):
        aggregator = make_aggregator("paillier", num_clients=3, insecure_small_key=True, key_bits=512)
    assert str(aggregator.guarantee).startswith("NOT SECURE")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("n", "colluders", "mode"), [
    (3, None, Mode.THRESHOLD), (4, None, Mode.THRESHOLD), (5, None, Mode.THRESHOLD), (5, 1, Mode.THRESHOLD),
    (6, 2, Mode.THRESHOLD), (7, None, Mode.THRESHOLD), (4, None, Mode.SINGLE_KEY), (5, 2, Mode.SINGLE_KEY),
])
def test_a_configuration_states_before_its_ceremony_the_guarantee_its_sessions_print(
    n: int, colluders: int | None, mode: Mode
) -> None:
    # PaillierConfig's docstring promises a computed guarantee; it must be the line its sessions print,
    # with the declared colluders inside it, so nothing is claimed before the ceremony that a round does not hold
    config = PaillierConfig(num_clients=n, vector_length=LENGTH, key_bits=256, mode=mode, colluders=colluders,
                            allow_insecure_key_bits_for_testing=True)
    material = single_material(256) if mode is Mode.SINGLE_KEY else threshold_material(
        256, n, config.decryption_threshold)
    roster = tuple(range(1, n + 1))
    params = SessionParameters(public=material.public, layout=config.layout, vector_length=LENGTH, roster=roster,
                               min_contributors=config.contributors_needed, identity_keys=identity_keys(roster),
                               context=bytes(32))
    assert config.guarantee == params.guarantee
    assert config.guarantee.colluders >= (colluders or 0)


def test_threshold_mode_is_the_default_and_single_key_is_taken_by_name_saying_whom_it_trusts() -> None:
    # Safe mode by default: no party can decrypt alone, and the guarantee holds against a lying server
    default = PaillierConfig(num_clients=4, vector_length=LENGTH, key_bits=256,
                             allow_insecure_key_bits_for_testing=True)
    assert default.mode is Mode.THRESHOLD and default.decryption_threshold >= 2
    assert default.guarantee.trusted == "" and default.guarantee.lying_server
    assert "assumes" not in str(default.guarantee)
    # The weaker mode only by name, and its line says what it gives up: a key holder it must trust
    single = PaillierConfig(num_clients=4, vector_length=LENGTH, key_bits=256, mode=Mode.SINGLE_KEY,
                            allow_insecure_key_bits_for_testing=True)
    assert single.decryption_threshold == 1 and "key holder" in single.guarantee.trusted
    assert "does not collude with the server" in str(single.guarantee)
