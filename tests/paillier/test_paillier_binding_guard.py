"""Binding guard, Paillier protocol level: every field of :class:`~secagg.paillier.SessionParameters`
and of its :class:`~secagg.paillier.SlotLayout`, split between one hospital and the rest, fails the
session for that hospital: its upload is refused by the server as another session's (with the
reason), a share holder under the other value refuses to decrypt, and the others' sum is exact.

The fields are introspected (``dataclasses.fields``): one added later fails
:func:`test_every_field_and_argument_is_listed` until :data:`SPLITS` says how to vary it, or why it
shapes nothing (with a test that shows it). The arguments of :class:`~secagg.paillier.Client` and
:class:`~secagg.paillier.DecryptingParty` that are not the session are listed too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from secagg import wire
from secagg.errors import ProtocolError, SecAggError
from secagg.paillier import (
    IN_MEMORY_ONLY,
    NO_OWN_UPLOAD,
    Client,
    DecryptingParty,
    Obfuscation,
    Server,
    SessionParameters,
    SlotLayout,
    ThresholdKeyMaterial,
)
from secagg.primitives.randomness import InsecureDeterministicRandom
from tests.masking.binding_guard import assert_listed, field_names, parameter_names

from .helpers import IDENTITIES, identity_keys, threshold_material

ROSTER = (1, 2, 3, 4, 5)
LENGTH = 6
TARGET = 1
"""The hospital that holds the other value of a client-side split."""
PARTY = 2
"""The share holder that holds the other value of a party-side split."""


def material(key_bits: int = 256, threshold: int = 3) -> ThresholdKeyMaterial:
    return threshold_material(key_bits, len(ROSTER), threshold)


def base() -> SessionParameters:
    public = material().public
    return SessionParameters(
        public=public, layout=SlotLayout(16, len(ROSTER), public.key.key_bits), vector_length=LENGTH,
        roster=ROSTER, min_contributors=2, identity_keys=identity_keys(ROSTER), context=bytes(32),
        descriptor=bytes(range(32)),
    )  # fmt: skip


def replace(**changes: object) -> Callable[[SessionParameters], SessionParameters]:
    return lambda params: dataclasses.replace(params, **changes)


def layout(**changes: object) -> Callable[[SessionParameters], SessionParameters]:
    return lambda params: dataclasses.replace(params, layout=dataclasses.replace(params.layout, **changes))


def _other_identity(params: SessionParameters) -> SessionParameters:
    keys = list(params.identity_keys)
    keys[2] = IDENTITIES[9].public  # the server tells hospital 1 another key for hospital 3
    return dataclasses.replace(params, identity_keys=tuple(keys))


def _other_key_size(params: SessionParameters) -> SessionParameters:
    public = material(384).public
    return dataclasses.replace(params, public=public, layout=SlotLayout(16, len(ROSTER), 384))


# Every field: how the server gives one party another value (params -> other params), or why it shapes nothing.
SPLITS: dict[str, Callable[[SessionParameters], SessionParameters] | str] = {
    "public": replace(public=material(threshold=4).public),  # the same modulus, another dealing (4-of-5)
    "layout": "every field of SlotLayout: the layout.* entries",
    "layout.value_bits": layout(value_bits=12),
    "layout.num_clients": layout(num_clients=len(ROSTER) + 1),
    "layout.key_bits": _other_key_size,  # a layout's key size is the key's (the public key changes with it)
    "layout.slot_bits": lambda p: dataclasses.replace(p, layout=SlotLayout(16, len(ROSTER), 256, p.layout.width + 1)),
    "layout.value_bound": replace(layout=SlotLayout.bounded(32767, len(ROSTER), 256)),  # same bits and width
    "vector_length": replace(vector_length=LENGTH + 1),
    "roster": replace(roster=(1, 2, 3, 4, 6), identity_keys=identity_keys((1, 2, 3, 4, 6))),
    "min_contributors": replace(min_contributors=4),
    "identity_keys": _other_identity,
    "context": replace(context=bytes([1]) * 32),
    "descriptor": replace(descriptor=bytes(32)),
}
CLIENT_ARGUMENTS: dict[str, str] = {
    "params": "the session: every SPLITS entry",
    "client_id": "who the hospital is: its enrolled identity key signs the upload (test_paillier_signed_uploads.py)",
    "identity": "the hospital's own signing key; the enrolled public keys are bound (identity_keys)",
    "encryptor": "the hospital's own encryption randomness for the bound key (one for another key is refused)",
    "obfuscation": "how the hospital draws its randomness: the plaintext and the sum are the same (test_...)",
    "random_bytes": "the hospital's own secret randomness: no value to agree on",
    "workers": "processes for the arithmetic: no value to agree on",
    "secret": "the party's own key share; the key it belongs to is bound (public)",
    "own_upload": "the party's own upload digest, checked against the request",
    "constant_time": "how the party exponentiates: the same partial decryption (test_paillier_session.py)",
    "journal": "where the party records its one answer per session: local, shapes no answer "
    "(test_paillier_answer_journal.py: the same sum gets the same partial decryption)",
}


def test_every_field_and_argument_is_listed() -> None:
    assert_listed(field_names(SessionParameters) | field_names(SlotLayout, "layout."), SPLITS)
    arguments = parameter_names(Client.__init__) | parameter_names(DecryptingParty.__init__)
    assert_listed(arguments, CLIENT_ARGUMENTS, "the client and party arguments")


def vector(params: SessionParameters, client: int) -> np.ndarray:
    return np.arange(params.vector_length, dtype=np.int64) * 3 - 5 * client


def run(server_params: SessionParameters, params_of: dict[int, SessionParameters]) -> tuple[list[str], np.ndarray]:
    """A session whose server and share holders run under ``server_params`` but for the hospitals
    ``params_of`` names; every hospital uploads, then the share holders 2..5 are asked in turn until
    t answered. Returns the refusals (library errors, as the server's report would carry them) and
    the decrypted sum."""
    shares = material().shares
    server, refusals, digests = Server(server_params), [], {}
    for client in ROSTER:
        params = params_of.get(client, server_params)
        upload = Client(params, client, IDENTITIES[client], random_bytes=InsecureDeterministicRandom(client))
        message = upload.upload(vector(params, client))
        try:
            server.receive_upload(wire.encode(message))
            digests[client] = message.digest
        except SecAggError as exc:
            refusals.append(f"upload of {client}: {exc}")
    answered = 0
    for party in ROSTER[1:]:
        if answered == server_params.public.threshold:
            break
        params = params_of.get(party, server_params)
        try:
            secret = shares[party - 1]
            own = digests.get(party, NO_OWN_UPLOAD)
            decryptor = DecryptingParty(params, secret, own_upload=own, journal=IN_MEMORY_ONLY)
            server.receive_partial(wire.encode(decryptor.respond(wire.encode(server.decryption_request(party)))))
            answered += 1
        except SecAggError as exc:
            refusals.append(f"party {party}: {exc}")
    return refusals, server.finish()


def expected_sum(params: SessionParameters, clients: tuple[int, ...]) -> np.ndarray:
    return np.sum([vector(params, c) for c in clients], axis=0)


CASES = sorted(name for name, split in SPLITS.items() if not isinstance(split, str))


@pytest.mark.parametrize("field", CASES)
def test_a_hospital_under_another_value_is_refused_and_the_others_sum_is_exact(field: str) -> None:
    # Prepare: hospital 1 under the other value, the server and the other hospitals under the base
    split = SPLITS[field]
    assert callable(split)
    params = base()
    other = split(params)
    assert other.session_id != params.session_id, f"{field} does not reach the session id"
    # Execute
    refusals, total = run(params, {TARGET: other})
    # Assert: hospital 1's upload is refused as another session's, no party decrypts it, the sum is the others'
    assert refusals == [f"upload of {TARGET}: server: upload of client {TARGET} belongs to another session"]
    np.testing.assert_array_equal(total, expected_sum(params, ROSTER[1:]))


@pytest.mark.parametrize("field", [f for f in CASES if f not in ("public", "layout.key_bits")])
def test_a_share_holder_under_another_value_refuses_to_decrypt(field: str) -> None:
    # Prepare: share holder 2 under the other value (its own share fits only the base key: the key splits
    # are the previous test's); it uploads under the base, as the server showed every hospital
    split = SPLITS[field]
    assert callable(split)
    params = base()
    other = split(params)
    shares = material().shares
    uploads = [Client(params, c, IDENTITIES[c]).upload(vector(params, c)) for c in ROSTER]
    server = Server(params)
    for upload in uploads:
        server.receive_upload(upload)
    # Execute / Assert: it refuses the request as another session's, not answering
    party = DecryptingParty(other, shares[PARTY - 1], own_upload=uploads[PARTY - 1].digest)
    with pytest.raises(ProtocolError, match="another session"):
        party.respond(server.decryption_request(PARTY))


def test_the_control_session_includes_everyone() -> None:
    refusals, total = run(base(), {})
    assert refusals == []
    np.testing.assert_array_equal(total, expected_sum(base(), ROSTER))


def test_obfuscation_shapes_no_agreed_value() -> None:
    # DJN and textbook randomness give ciphertexts of the same plaintexts: one hospital using the other is no split
    params = base()
    server = Server(params)
    uploads = {
        c: Client(params, c, IDENTITIES[c], obfuscation=Obfuscation.DJN if c == TARGET else Obfuscation.TEXTBOOK)
        .upload(vector(params, c))
        for c in ROSTER
    }
    for upload in uploads.values():
        server.receive_upload(upload)
    for party in (2, 3, 4):
        answer = DecryptingParty(params, material().shares[party - 1], own_upload=uploads[party].digest)
        server.receive_partial(answer.respond(server.decryption_request(party)))
    np.testing.assert_array_equal(server.finish(), expected_sum(params, ROSTER))
