"""Every public entry point of secagg.paillier checks its arguments: a wrong type or value raises
ConfigurationError (ConfigurationTypeError for a type) naming the argument, before any work,
never a foreign TypeError/AttributeError or a later, misleading protocol error; bytes-like
arguments (memoryview, bytearray) are taken as bytes (secagg._validate conventions)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fl_core.aggregators import WeightedQuantizer
from fl_core.aggregators.paillier import PaillierAggregator
from secagg import wire
from secagg.errors import ConfigurationError, ConfigurationTypeError
from secagg.paillier import (
    IN_MEMORY_ONLY,
    NO_OWN_UPLOAD,
    Client,
    DecryptingParty,
    DecryptionRequest,
    EncryptedVector,
    Encryptor,
    PaillierConfig,
    Server,
    SessionParameters,
    SlotLayout,
    add_ciphertext_vectors,
    deal_single_key,
    deal_threshold_key,
    deal_threshold_key_from_primes,
    generate_safe_primes,
    protect,
    read_protected_file,
    run_session,
    single_key_from_primes,
    write_protected_file,
)
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import IDENTITIES, SAFE_PRIMES, identity_keys, threshold_material

MATERIAL = threshold_material(256, 3, 2)
PARAMS = SessionParameters(
    public=MATERIAL.public, layout=SlotLayout(16, 3, 256), vector_length=5, roster=(1, 2, 3),
    min_contributors=2, identity_keys=identity_keys((1, 2, 3)), context=bytes(32),
)
NO_UPLOAD: dict[str, Any] = {"own_upload": NO_OWN_UPLOAD, "journal": IN_MEMORY_ONLY}  # a party that sent none
KEY = MATERIAL.public.key
P, Q = SAFE_PRIMES[256]
PASSPHRASE = "a long enough passphrase"
CONFIG = PaillierConfig(num_clients=3, vector_length=5, key_bits=256, allow_insecure_key_bits_for_testing=True)
INPUTS = {k: np.arange(5) for k in (1, 2, 3)}
IDS = {k: IDENTITIES[k] for k in (1, 2, 3)}


def _uploads() -> dict[int, bytes]:
    return {
        k: wire.encode(Client(PARAMS, k, IDENTITIES[k], random_bytes=InsecureDeterministicRandom(k)).upload(INPUTS[k]))
        for k in (1, 2, 3)
    }


CALLS: dict[str, tuple[Callable[[], object], str]] = {
    # name: (the call, the argument its error must name)
    "Client random_bytes": (lambda: Client(PARAMS, 1, IDENTITIES[1], random_bytes="x"), "random_bytes"),  # type: ignore[arg-type]
    "Client workers": (lambda: Client(PARAMS, 1, IDENTITIES[1], workers=2), "workers"),  # type: ignore[arg-type]
    "Client encryptor": (lambda: Client(PARAMS, 1, IDENTITIES[1], encryptor="x"), "encryptor"),  # type: ignore[arg-type]
    "Client empty encryptor": (lambda: Client(PARAMS, 1, IDENTITIES[1], encryptor=b""), "encryptor"),  # type: ignore[arg-type]
    "Client identity": (lambda: Client(PARAMS, 1, "key"), "identity"),  # type: ignore[arg-type]
    "Client.upload ragged": (lambda: Client(PARAMS, 1, IDENTITIES[1]).upload([[1], [1, 2]]), "vector"),
    "Server workers": (lambda: Server(PARAMS, workers=None), "workers"),  # type: ignore[arg-type]
    "Server.receive_upload": (lambda: Server(PARAMS).receive_upload(3), "upload"),  # type: ignore[arg-type]
    "Server.receive_partial": (lambda: Server(PARAMS).receive_partial("x"), "partial"),  # type: ignore[arg-type]
    "DecryptingParty.respond": (
        lambda: DecryptingParty(PARAMS, MATERIAL.shares[0], **NO_UPLOAD).respond(None), "request"  # type: ignore[arg-type]
    ),
    "DecryptingParty own_upload type": (
        lambda: DecryptingParty(PARAMS, MATERIAL.shares[0], own_upload="digest"), "own_upload"  # type: ignore[arg-type]
    ),
    "DecryptingParty own_upload short memoryview": (
        lambda: DecryptingParty(PARAMS, MATERIAL.shares[0], own_upload=memoryview(bytes(31))), "own_upload"  # type: ignore[arg-type]
    ),
    "DecryptingParty random_bytes": (
        lambda: DecryptingParty(PARAMS, MATERIAL.shares[0], random_bytes=None, **NO_UPLOAD),  # type: ignore[arg-type]
        "random_bytes",
    ),
    "DecryptingParty workers": (
        lambda: DecryptingParty(PARAMS, MATERIAL.shares[0], workers=1, **NO_UPLOAD), "workers"  # type: ignore[arg-type]
    ),
    "DecryptingParty constant_time": (
        lambda: DecryptingParty(PARAMS, MATERIAL.shares[0], constant_time="no", **NO_UPLOAD),  # type: ignore[arg-type]
        "constant_time",
    ),
    "Encryptor random_bytes": (lambda: Encryptor(KEY, random_bytes=1), "random_bytes"),  # type: ignore[arg-type]
    "Encryptor workers": (lambda: Encryptor(KEY, workers="x"), "workers"),  # type: ignore[arg-type]
    "add_ciphertext_vectors workers": (lambda: add_ciphertext_vectors(KEY, [[2], [3]], 1), "workers"),  # type: ignore[arg-type]
    "add_ciphertext_vectors not an int": (lambda: add_ciphertext_vectors(KEY, [[None]]), "ciphertext"),
    "add_ciphertext_vectors zero": (lambda: add_ciphertext_vectors(KEY, [[2], [0]]), "ciphertext"),
    "add_ciphertext_vectors n^2": (lambda: add_ciphertext_vectors(KEY, [[KEY.nsquare]]), "ciphertext"),
    "parse_ciphertexts": (lambda: KEY.parse_ciphertexts(None, "test"), "ciphertext data"),  # type: ignore[arg-type]
    "DecryptionRequest uploads": (lambda: DecryptionRequest(bytes(32), 1, None), "uploads"),  # type: ignore[arg-type]
    "PaillierConfig constant_time": (lambda: PaillierConfig(3, 5, constant_time="yes"), "constant_time"),  # type: ignore[arg-type]
    "PaillierConfig insecure flag": (
        lambda: PaillierConfig(3, 5, key_bits=256, allow_insecure_key_bits_for_testing="no"),  # type: ignore[arg-type]
        "allow_insecure_key_bits_for_testing",
    ),
    "run_session key_material": (lambda: run_session(CONFIG, INPUTS, key_material=b"k"), "key_material"),  # type: ignore[arg-type]
    "run_session identities": (lambda: run_session(CONFIG, INPUTS, key_material=MATERIAL, identities=3), "identities"),  # type: ignore[arg-type]
    "run_session identity key": (
        lambda: run_session(CONFIG, INPUTS, key_material=MATERIAL, identities={**IDS, 2: "k"}), "identities"  # type: ignore[dict-item]
    ),
    "run_session random_bytes": (
        lambda: run_session(CONFIG, INPUTS, key_material=MATERIAL, identities=IDS, random_bytes=None), "random_bytes"  # type: ignore[arg-type]
    ),
    "run_session workers": (
        lambda: run_session(CONFIG, INPUTS, key_material=MATERIAL, identities=IDS, workers=1), "workers"  # type: ignore[arg-type]
    ),
    "deal_threshold_key random_bytes": (
        lambda: deal_threshold_key(
            256, num_parties=3, threshold=2, random_bytes=None, insecure_for_testing=True  # type: ignore[arg-type]
        ),
        "random_bytes",
    ),
    "deal_threshold_key workers": (
        lambda: deal_threshold_key(256, num_parties=3, threshold=2, workers=2, insecure_for_testing=True),  # type: ignore[arg-type]
        "workers",
    ),
    "deal_threshold_key insecure flag": (
        lambda: deal_threshold_key(256, num_parties=3, threshold=2, insecure_for_testing="no"),  # type: ignore[arg-type]
        "insecure_for_testing",
    ),
    "deal_threshold_key_from_primes random_bytes": (
        lambda: deal_threshold_key_from_primes(
            P, Q, num_parties=3, threshold=2, random_bytes=b"", insecure_for_testing=True  # type: ignore[arg-type]
        ),
        "random_bytes",
    ),
    "deal_threshold_key_from_primes insecure flag": (
        lambda: deal_threshold_key_from_primes(P, Q, num_parties=3, threshold=2, insecure_for_testing=1),  # type: ignore[arg-type]
        "insecure_for_testing",
    ),
    "deal_single_key random_bytes": (
        lambda: deal_single_key(256, random_bytes=None, insecure_for_testing=True),  # type: ignore[arg-type]
        "random_bytes",
    ),
    "deal_single_key insecure flag": (
        lambda: deal_single_key(256, insecure_for_testing="yes"), "insecure_for_testing"  # type: ignore[arg-type]
    ),
    "single_key_from_primes random_bytes": (
        lambda: single_key_from_primes(P, Q, random_bytes=3, insecure_for_testing=True),  # type: ignore[arg-type]
        "random_bytes",
    ),
    "single_key_from_primes insecure flag": (
        lambda: single_key_from_primes(P, Q, insecure_for_testing="no"), "insecure_for_testing"  # type: ignore[arg-type]
    ),
    "generate_safe_primes random_bytes": (lambda: generate_safe_primes(64, random_bytes=None), "random_bytes"),  # type: ignore[arg-type]
    "generate_safe_primes workers": (lambda: generate_safe_primes(64, workers=None), "workers"),  # type: ignore[arg-type]
    "protect random_bytes": (
        lambda: protect(
            MATERIAL.shares[0], PASSPHRASE, scrypt_log_n=10, allow_weak_kdf_for_testing=True, random_bytes=None  # type: ignore[arg-type]
        ),
        "random_bytes",
    ),
    "protect weak flag": (
        lambda: protect(MATERIAL.shares[0], PASSPHRASE, scrypt_log_n=10, allow_weak_kdf_for_testing="no"),  # type: ignore[arg-type]
        "allow_weak_kdf_for_testing",
    ),
    "read_protected_file path": (lambda: read_protected_file(3, PASSPHRASE), "path"),  # type: ignore[arg-type]
    "write_protected_file path": (
        lambda: write_protected_file(
            None, MATERIAL.shares[0], PASSPHRASE, scrypt_log_n=10, allow_weak_kdf_for_testing=True  # type: ignore[arg-type]
        ),
        "path",
    ),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_bad_argument_raises_a_configuration_error_naming_it(name: str) -> None:
    call, argument = CALLS[name]
    with pytest.raises(ConfigurationError, match=argument):
        call()


def test_a_wrong_type_is_a_configuration_type_error() -> None:
    with pytest.raises(ConfigurationTypeError, match="own_upload"):
        DecryptingParty(PARAMS, MATERIAL.shares[0], own_upload=12)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", [bytearray, lambda digest: memoryview(bytearray(digest))])
def test_own_upload_as_a_writable_buffer_is_taken_as_its_bytes(kind: Callable[[bytes], object]) -> None:
    # Prepare: hospital 1 hands its own upload's digest over in a buffer it keeps (unhashable)
    uploads = _uploads()
    server = Server(PARAMS)
    for data in uploads.values():
        server.receive_upload(data)
    own = wire.decode(uploads[1], EncryptedVector).digest
    party = DecryptingParty(PARAMS, MATERIAL.shares[0], own_upload=kind(own))  # type: ignore[arg-type]
    # Execute / Assert: its own upload is recognised; the answer verifies
    server.receive_partial(party.respond(server.decryption_request(1)))


def test_messages_as_memoryviews_are_taken_as_their_bytes() -> None:
    # Prepare
    uploads = _uploads()
    server = Server(PARAMS)
    # Execute: every message crosses as a memoryview (e.g. a slice of a receive buffer)
    for data in uploads.values():
        server.receive_upload(memoryview(data))
    answers = []
    for index in (1, 2):
        party = DecryptingParty(PARAMS, MATERIAL.shares[index - 1], own_upload=NO_OWN_UPLOAD, journal=IN_MEMORY_ONLY)
        answers.append(party.respond(memoryview(wire.encode(server.decryption_request(index)))))
    for answer in answers:
        server.receive_partial(memoryview(wire.encode(answer)))
    # Assert
    np.testing.assert_array_equal(server.finish(), 3 * np.arange(5))


def test_a_protected_file_path_may_be_a_path_object(tmp_path: Path) -> None:
    target = tmp_path / "share.key"
    write_protected_file(target, MATERIAL.shares[0], PASSPHRASE, scrypt_log_n=10, allow_weak_kdf_for_testing=True)
    assert read_protected_file(str(target), PASSPHRASE) == MATERIAL.shares[0]


@pytest.mark.parametrize(
    ("option", "value"), [("insecure_small_key", "no"), ("constant_time", 1), ("random_bytes", None)]
)
def test_the_paillier_aggregator_checks_its_switches_and_randomness_first(option: str, value: object) -> None:
    # insecure_small_key="no" counted as set (a NOT secure key); constant_time=1 failed every
    # hospital's partial decryption later, in the round
    quantizer = WeightedQuantizer.create(3)
    with pytest.raises(ConfigurationTypeError, match=option):
        PaillierAggregator(quantizer, key_material=MATERIAL, **{option: value})  # type: ignore[arg-type]


def test_a_decrypting_party_must_say_which_upload_is_its_own_or_none_by_name() -> None:
    # Leaving own_upload out would silently skip the check that a sum holds the party's upload;
    # a party that sent none says so by name
    with pytest.raises(TypeError, match="own_upload"):
        DecryptingParty(PARAMS, MATERIAL.shares[0])  # type: ignore[call-arg]
    assert DecryptingParty(PARAMS, MATERIAL.shares[0], own_upload=NO_OWN_UPLOAD, journal=IN_MEMORY_ONLY).index == 1


def test_none_as_own_upload_is_refused_it_would_turn_the_own_upload_check_off() -> None:
    # None (e.g. digests.get(party) for a party missing from a mapping) used to be taken as "sent
    # none" and turned off the check that the sum holds the party's upload: such a party decrypted
    # any sum of min_contributors uploads, its own left out
    with pytest.raises(ConfigurationTypeError, match="own_upload"):
        DecryptingParty(PARAMS, MATERIAL.shares[0], own_upload=None)  # type: ignore[arg-type]
