"""Uploads are signed by enrolled hospitals; degenerate thresholds are refused in every API (issue 12).

The attack: a server asks for the decryption of [victim's upload, a server-made
encryption of zeros under an absent hospital's id]. Every share holder used to
answer; with one colluding holder the server decrypted the victim's update.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from secagg import wire
from secagg.errors import AuthenticationError, ConfigurationError, ProtocolError
from secagg.paillier import (
    IN_MEMORY_ONLY,
    NO_OWN_UPLOAD,
    Client,
    DecryptingParty,
    PaillierConfig,
    Server,
    SessionParameters,
    SlotLayout,
    ThresholdKeyMaterial,
    ThresholdPublicKey,
)
from secagg.paillier.messages import DecryptionRequest, EncryptedVector, upload_payload
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey

from .helpers import IDENTITIES, identity_keys, proven_data

LENGTH = 8


def _params(material: ThresholdKeyMaterial) -> SessionParameters:
    roster = (1, 2, 3, 4, 5)
    return SessionParameters(
        public=material.public, layout=SlotLayout(16, 5, material.public.key.key_bits), vector_length=LENGTH,
        roster=roster, min_contributors=2, identity_keys=identity_keys(roster), context=bytes(32),
    )


def _zeros_as(params: SessionParameters, client: int, signer: SigningKey) -> EncryptedVector:
    """The server's forgery: an encryption of zeros in ``client``'s name, signed by ``signer``."""
    data = proven_data(params, client, [0] * params.num_ciphertexts)  # the server knows its zeros: it can prove them
    payload = upload_payload(params.session_id, client, LENGTH, data)
    return EncryptedVector(params.session_id, client, LENGTH, data, signer.sign(payload))


@pytest.mark.parametrize("holder", [1, 2], ids=["the victim itself", "a holder that did not upload"])
def test_a_forged_upload_in_an_absent_hospitals_name_is_refused(
    material_3_of_5: ThresholdKeyMaterial, holder: int
) -> None:
    # Prepare: hospital 1 (the victim) uploads; the server forges hospital 4's upload with its own key
    params = _params(material_3_of_5)
    victim = Client(params, 1, IDENTITIES[1], random_bytes=InsecureDeterministicRandom(1)).upload(np.arange(LENGTH))
    forged = _zeros_as(params, 4, SigningKey.generate(InsecureDeterministicRandom(b"server")))
    request = DecryptionRequest(session_id=params.session_id, recipient=holder, uploads=(victim, forged))
    own = victim.digest if holder == 1 else NO_OWN_UPLOAD
    party = DecryptingParty(params, material_3_of_5.shares[holder - 1], own_upload=own, journal=IN_MEMORY_ONLY)
    # Execute / Assert: no share holder answers, so no colluder can complete the decryption
    with pytest.raises(AuthenticationError, match="client 4 carries no valid signature"):
        party.respond(request)
    with pytest.raises(AuthenticationError):
        Server(params).receive_upload(forged)


def test_an_upload_signed_by_another_enrolled_hospital_is_refused(material_3_of_5: ThresholdKeyMaterial) -> None:
    # A colluding hospital 5 signs an upload in hospital 4's name.
    params = _params(material_3_of_5)
    forged = _zeros_as(params, 4, IDENTITIES[5])
    with pytest.raises(AuthenticationError):
        Server(params).receive_upload(wire.encode(forged))


def test_honest_signed_uploads_are_accepted(material_3_of_5: ThresholdKeyMaterial) -> None:
    params = _params(material_3_of_5)
    server = Server(params)
    for k in (1, 2):
        server.receive_upload(Client(params, k, IDENTITIES[k]).upload(np.full(LENGTH, k)))
    assert server.included == frozenset({1, 2})


def test_a_client_cannot_sign_with_a_key_not_enrolled_for_it(material_3_of_5: ThresholdKeyMaterial) -> None:
    with pytest.raises(ConfigurationError, match="not the one enrolled"):
        Client(_params(material_3_of_5), 1, IDENTITIES[2])


def test_enrolled_keys_must_be_distinct(material_3_of_5: ThresholdKeyMaterial) -> None:
    with pytest.raises(ConfigurationError, match="distinct"):
        SessionParameters(
            public=material_3_of_5.public, layout=SlotLayout(16, 5, 256), vector_length=LENGTH, roster=(1, 2),
            min_contributors=2, identity_keys=(IDENTITIES[1].public, IDENTITIES[1].public), context=bytes(32),
        )


def test_an_enrolled_key_of_small_order_is_refused(material_3_of_5: ThresholdKeyMaterial) -> None:
    # The identity point (anyone signs for it: R = identity, S = 0), and the same point as y = p + 1,
    # which the distinct check alone took as a second key (tests/masking/test_identity_key_encodings.py)
    identity, alias = (1).to_bytes(32, "little"), ((1 << 255) - 18).to_bytes(32, "little")
    for keys in ((IDENTITIES[1].public, identity), (identity, alias)):
        with pytest.raises(ConfigurationError, match="identity key of roster client"):
            SessionParameters(
                public=material_3_of_5.public, layout=SlotLayout(16, 5, 256), vector_length=LENGTH, roster=(1, 2),
                min_contributors=2, identity_keys=keys, context=bytes(32),
            )


# --- degenerate thresholds, in every API ----------------------------------------------------------


def test_paillier_config_refuses_degenerate_thresholds() -> None:
    for options in ({"threshold": 1}, {"min_contributors": 1}, {"colluders": 2, "min_contributors": 3},
                    {"colluders": 3, "threshold": 3}):
        with pytest.raises(ConfigurationError):
            PaillierConfig(num_clients=5, vector_length=4, key_bits=256, allow_insecure_key_bits_for_testing=True,
                           **options)  # type: ignore[arg-type]


def test_session_parameters_refuse_a_single_contributor_and_a_1_of_l_key(
    material_3_of_5: ThresholdKeyMaterial, public_1_of_3: ThresholdPublicKey
) -> None:
    with pytest.raises(ConfigurationError, match="min_contributors"):
        SessionParameters(public=material_3_of_5.public, layout=SlotLayout(16, 5, 256), vector_length=LENGTH,
                          roster=(1, 2), min_contributors=1, identity_keys=identity_keys((1, 2)), context=bytes(32))
    with pytest.raises(ConfigurationError, match="t >= 2"):
        SessionParameters(public=public_1_of_3, layout=SlotLayout(16, 3, 256), vector_length=LENGTH,
                          roster=(1, 2), min_contributors=2, identity_keys=identity_keys((1, 2)), context=bytes(32))


@pytest.mark.parametrize("options", [{"threshold": 1}, {"min_contributors": 1}])
def test_fl_core_paillier_aggregator_refuses_degenerate_thresholds(options: dict[str, int]) -> None:
    with pytest.raises(ConfigurationError):
        make_aggregator("paillier", num_clients=5, insecure_small_key=True, **options)


def test_the_value_range_is_bound_in_the_session_id(material_3_of_5: ThresholdKeyMaterial) -> None:
    # Prepare: the same session with the bit range [-2^15, 2^15 - 1] and the bounded range
    # [-32767, 32767] (both 16 value bits, same slot width): only offset and value_max differ
    params = _params(material_3_of_5)
    bounded = dataclasses.replace(params, layout=SlotLayout.bounded(32767, 5, material_3_of_5.public.key.key_bits))
    assert (bounded.layout.value_bits, bounded.layout.width) == (params.layout.value_bits, params.layout.width)
    upload = Client(bounded, 1, IDENTITIES[1]).upload(np.full(LENGTH, -32767))
    # Execute / Assert: distinct session ids; the bit-range server refuses the bounded upload
    assert bounded.session_id != params.session_id
    with pytest.raises(ProtocolError, match="another session"):
        Server(params).receive_upload(upload)


def test_min_contributors_is_bound_in_the_session_id(material_3_of_5: ThresholdKeyMaterial) -> None:
    """A server shows hospital 1 min_contributors = 4 and the share holders 2: hospital 1's upload
    must not be accepted, or decrypted, in a sum of two (with one colluding hospital's)."""
    # Prepare
    params = _params(material_3_of_5)
    strict = dataclasses.replace(params, min_contributors=4)
    victim = Client(strict, 1, IDENTITIES[1]).upload(np.arange(LENGTH))
    colluder = Client(params, 2, IDENTITIES[2]).upload(np.zeros(LENGTH, dtype=np.int64))
    request = DecryptionRequest(session_id=params.session_id, recipient=3, uploads=(victim, colluder))
    # Execute / Assert
    with pytest.raises(ProtocolError, match="another session"):
        Server(params).receive_upload(victim)
    with pytest.raises(ProtocolError, match="another session"):
        DecryptingParty(
            params, material_3_of_5.shares[2], own_upload=NO_OWN_UPLOAD, journal=IN_MEMORY_ONLY
        ).respond(request)
    assert strict.session_id != params.session_id


def test_a_signed_upload_of_an_earlier_session_relabelled_is_refused(material_3_of_5: ThresholdKeyMaterial) -> None:
    """The server replays hospital 1's signed upload of an earlier round (another context) with
    the session id field rewritten to this round's: the signature covers the session id."""
    # Prepare
    params = _params(material_3_of_5)
    earlier = dataclasses.replace(params, context=bytes([1]) * 32)
    old = Client(earlier, 1, IDENTITIES[1]).upload(np.arange(LENGTH))
    relabelled = dataclasses.replace(old, session_id=params.session_id)
    fresh = Client(params, 2, IDENTITIES[2]).upload(np.zeros(LENGTH, dtype=np.int64))
    request = DecryptionRequest(session_id=params.session_id, recipient=2, uploads=(relabelled, fresh))
    # Execute / Assert
    with pytest.raises(AuthenticationError, match="client 1 carries no valid signature"):
        Server(params).receive_upload(wire.encode(relabelled))
    with pytest.raises(AuthenticationError, match="client 1 carries no valid signature"):
        DecryptingParty(params, material_3_of_5.shares[1], own_upload=fresh.digest).respond(request)
    Server(params).receive_upload(Client(params, 1, IDENTITIES[1]).upload(np.arange(LENGTH)))  # control
