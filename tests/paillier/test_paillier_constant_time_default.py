"""A decrypting party raises its secret in constant time unless told otherwise, by name.

gmpy2's ``powmod`` uses sliding windows: an attacker co-located with a decrypting party could
learn bits of its secret exponent through timing or cache side channels. Every place that
exponentiates with a key share, d or a proof nonce (``partial_decrypt``,
``single_key_partial_decrypt``, ``proofs.prove``, ``DecryptingParty``, ``PaillierConfig``)
uses GMP's ``powmod_sec`` by default (``DEFAULT_CONSTANT_TIME``); ``constant_time=False``
opts out by name and gives that up. The answers are the same either way
(test_paillier_threshold.py, test_paillier_session.py). fl_core's aggregator:
tests/fl_core/test_fl_paillier_constant_time.py; the Flower mod:
tests/integrations/test_integrations_flower_paillier_constant_time.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg import wire
from secagg.paillier import (
    DecryptingParty,
    KeyShare,
    Mode,
    PaillierConfig,
    PrivateKey,
    SingleKeyMaterial,
    ThresholdKeyMaterial,
    deal_threshold_key_from_primes,
    run_session,
    single_key_from_primes,
)
from secagg.paillier.proofs import prove
from secagg.paillier.threshold import partial_decrypt, single_key_partial_decrypt
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import SAFE_PRIMES, Exponentiations, single_material, threshold_material
from .test_paillier_session import Scenario
from .test_paillier_threshold import PLAINTEXTS, _encrypt

OPT_OUT = [pytest.param({}, id="default"), pytest.param({"constant_time": False}, id="constant_time=False")]


@pytest.mark.parametrize("options", OPT_OUT)
def test_partial_decryption_with_a_share(
    options: dict[str, bool], material_3_of_5: ThresholdKeyMaterial, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    ciphertexts = _encrypt(material_3_of_5, PLAINTEXTS)
    share = material_3_of_5.shares[0]
    powers = Exponentiations(monkeypatch)
    # Execute
    partial_decrypt(share, ciphertexts, **options)
    # Assert: the share's exponent in constant time by default; the opt-out uses the sliding window
    if options:
        powers.assert_sliding_only()
    else:
        powers.assert_silent(share.exponent)


@pytest.mark.parametrize("options", OPT_OUT)
def test_partial_decryption_with_the_single_key(
    options: dict[str, bool], single_256: SingleKeyMaterial, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    ciphertexts = _encrypt(single_256, PLAINTEXTS)
    powers = Exponentiations(monkeypatch)
    # Execute
    single_key_partial_decrypt(single_256.private, ciphertexts, **options)
    # Assert: CRT decryption in constant time by default (c^(p-1) mod p^2, c^(q-1) mod q^2);
    # the opt-out is phe's CRT decryption
    if options:
        powers.assert_sliding_only()
    else:
        powers.assert_silent(single_256.private.p - 1, single_256.private.q - 1)


@pytest.mark.parametrize("options", OPT_OUT)
def test_the_proof_of_decryption(
    options: dict[str, bool], material_3_of_5: ThresholdKeyMaterial, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    share = material_3_of_5.shares[0]
    batched = _encrypt(material_3_of_5, PLAINTEXTS[:1])[0]
    powers = Exponentiations(monkeypatch)
    # Execute
    prove(material_3_of_5.public, share.index, share.proof_secret, bytes(64), batched, **options)
    # Assert: x = Delta * s_i in constant time by default
    if options:
        powers.assert_sliding_only()
    else:
        powers.assert_silent(share.proof_secret)


@pytest.mark.parametrize("options", OPT_OUT)
def test_a_decrypting_party(options: dict[str, bool], monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: party 1 of a 2-of-3 session
    scenario = Scenario(threshold_material(256, 3, 2))
    share = scenario.material.shares[0]
    party = DecryptingParty(
        scenario.params, share, own_upload=scenario.uploads[1].digest, random_bytes=InsecureDeterministicRandom(5),
        **options,
    )  # fmt: skip
    request = scenario.server.decryption_request(1)
    powers = Exponentiations(monkeypatch)
    # Execute
    answer = party.respond(request)
    # Assert: both the partial decryption and the proof in constant time by default; the answer verifies
    if options:
        powers.assert_sliding_only()
    else:
        powers.assert_silent(share.exponent, share.proof_secret)
    scenario.server.receive_partial(answer)


@pytest.mark.parametrize("single", [False, True], ids=["threshold", "single-key"])
@pytest.mark.parametrize("options", OPT_OUT)
def test_a_session(options: dict[str, bool], single: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: 3 hospitals, a 2-of-3 key (or a single key holder)
    config = PaillierConfig(
        3, 4, key_bits=256, mode=Mode.SINGLE_KEY if single else Mode.THRESHOLD, threshold=None if single else 2,
        allow_insecure_key_bits_for_testing=True, **options,
    )  # fmt: skip
    material = single_material(256) if single else threshold_material(256, 3, 2)
    inputs = {c: np.full(4, c) for c in (1, 2, 3)}
    powers = Exponentiations(monkeypatch)
    # Execute
    result = run_session(config, inputs, key_material=material)
    # Assert: the config says which, the sum is exact, and the parties used what it says
    np.testing.assert_array_equal(result.aggregate, np.full(4, 6))
    if options:
        powers.assert_sliding_only()
    elif single:
        assert isinstance(material, SingleKeyMaterial)
        powers.assert_silent(material.private.p - 1, material.private.q - 1, material.private.proof_secret)
    else:
        assert isinstance(material, ThresholdKeyMaterial)
        used = [s for s in material.shares if s.exponent in powers.silent]
        assert len(used) >= 2, "fewer than t parties decrypted in constant time"
        powers.assert_silent(*(s.exponent for s in used), *(s.proof_secret for s in used))
    assert config.constant_time is not bool(options)


def test_a_share_is_checked_against_its_verification_key_in_constant_time(
    material_3_of_5: ThresholdKeyMaterial, single_256: SingleKeyMaterial, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the share and the single key as they arrive from a key file (bytes)
    share, private = material_3_of_5.shares[0], single_256.private
    share_bytes, private_bytes = wire.encode(share), wire.encode(private)
    powers = Exponentiations(monkeypatch)
    # Execute: decoding checks v^(Delta * s_i) = v_i (v^d for the single key), on every load
    assert wire.decode(share_bytes, KeyShare) == share
    assert wire.decode(private_bytes, PrivateKey) == private
    # Assert: that check raises the secret in constant time too, whatever a party's option says
    powers.assert_silent(share.proof_secret, private.exponent_d)


def test_the_dealer_raises_the_shares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    p, q = SAFE_PRIMES[256]
    powers = Exponentiations(monkeypatch)
    # Execute: the dealer computes every v_i = v^(Delta * s_i), and v^d for the single key
    material = deal_threshold_key_from_primes(
        p, q, num_parties=3, threshold=2, random_bytes=InsecureDeterministicRandom(9)
    )
    single = single_key_from_primes(p, q, random_bytes=InsecureDeterministicRandom(9))
    # Assert
    powers.assert_silent(*(s.proof_secret for s in material.shares), single.private.exponent_d)
