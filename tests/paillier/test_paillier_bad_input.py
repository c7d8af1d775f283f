"""Serialisation and bad input: round trips, truncation, forgery, out-of-range ciphertexts,
wrong keys and passphrase-protected shares. Only the library's errors may escape."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from secagg import wire
from secagg.errors import AuthenticationError, ConfigurationError, DecodeError, ProtocolError, SecAggError
from secagg.paillier import (
    IN_MEMORY_ONLY,
    NO_OWN_UPLOAD,
    Client,
    DecryptingParty,
    DecryptionRequest,
    KeyShare,
    PrivateKey,
    PublicKey,
    Server,
    SessionParameters,
    SlotLayout,
    ThresholdKeyMaterial,
    ThresholdPublicKey,
    insecure_key_sizes_for_testing,
    protect,
    read_protected_file,
    storage,
    unprotect,
    write_protected_file,
)
from secagg.paillier.storage import ProtectedSecret
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import IDENTITIES, SAFE_PRIMES, identity_keys, signed_upload, single_material, threshold_material

FAST_SCRYPT = 10  # log2(N) for tests; production default is 17


def _params(material: ThresholdKeyMaterial, length: int = 12) -> SessionParameters:
    return SessionParameters(
        public=material.public, layout=SlotLayout(16, 3, material.public.key.key_bits), vector_length=length,
        roster=(1, 2, 3), min_contributors=2, identity_keys=identity_keys((1, 2, 3)), context=bytes(32),
    )


def _messages(material: ThresholdKeyMaterial) -> list[wire.Message]:
    params = _params(material)
    upload = Client(params, 1, IDENTITIES[1], random_bytes=InsecureDeterministicRandom(1)).upload(np.arange(12))
    other = Client(params, 2, IDENTITIES[2], random_bytes=InsecureDeterministicRandom(2)).upload(-np.arange(12))
    request = DecryptionRequest(session_id=params.session_id, recipient=1, uploads=(upload, other))
    party = DecryptingParty(params, material.shares[0], own_upload=NO_OWN_UPLOAD, journal=IN_MEMORY_ONLY)
    answer = party.respond(request)
    single = single_material(256)
    return [
        material.public.key, material.public, material.shares[0], single.private, upload, request, answer,
    ]


def test_every_message_round_trips_canonically(material_3_of_5: ThresholdKeyMaterial) -> None:
    for message in _messages(material_3_of_5):
        data = wire.encode(message)
        decoded = wire.decode(data, type(message))
        assert decoded == message
        assert wire.encode(decoded) == data


def test_tags_are_in_the_paillier_range(material_3_of_5: ThresholdKeyMaterial) -> None:
    tags = [type(m).TAG for m in _messages(material_3_of_5)] + [ProtectedSecret.TAG]
    assert all(0x0400 <= tag <= 0x04FF for tag in tags)
    assert len(set(tags)) == len(tags)


def test_truncated_and_extended_encodings_raise_decode_error(material_3_of_5: ThresholdKeyMaterial) -> None:
    # Every prefix of every message (sampled), and one trailing byte, must be refused.
    for message in _messages(material_3_of_5):
        data = wire.encode(message)
        cuts = sorted({*range(0, min(len(data), 80)), *range(0, len(data), max(1, len(data) // 50))})
        for cut in cuts:
            with pytest.raises(DecodeError):
                wire.decode(data[:cut], type(message))
        with pytest.raises(DecodeError):
            wire.decode(data + b"\x00", type(message))


def test_random_bit_flips_raise_only_library_errors(material_3_of_5: ThresholdKeyMaterial) -> None:
    # Prepare: flip single bits all over each encoding
    rng = np.random.default_rng(0)
    for message in _messages(material_3_of_5):
        data = bytearray(wire.encode(message))
        for position in rng.integers(0, len(data), size=40):
            forged = bytearray(data)
            forged[position] ^= 1 << int(rng.integers(0, 8))
            # Execute / Assert: either a library error or a valid (different) message, never a crash
            with contextlib.suppress(SecAggError):
                wire.decode(bytes(forged), type(message))


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [("upload", "client", 1 << 32), ("upload", "length", 1 << 32), ("request", "recipient", 1 << 16),
     ("answer", "party", 1 << 16)],
)
def test_message_fields_beyond_their_wire_width_are_refused_when_built(
    material_3_of_5: ThresholdKeyMaterial, kind: str, field: str, value: int
) -> None:
    # Prepare: messages built in memory (by a transport adapter) carry ids past their u32/u16 fields
    _, _, _, _, upload, request, answer = _messages(material_3_of_5)
    message = {"upload": upload, "request": request, "answer": answer}[kind]
    # Execute / Assert: refused at construction, not later by an OverflowError while hashing
    with pytest.raises(ConfigurationError, match=field):
        dataclasses.replace(message, **{field: value})


def test_a_request_holding_an_upload_of_a_client_id_beyond_u32_raises_only_library_errors(
    material_3_of_5: ThresholdKeyMaterial,
) -> None:
    # Prepare
    params = _params(material_3_of_5)
    _, _, _, _, upload, request, _ = _messages(material_3_of_5)
    party = DecryptingParty(params, material_3_of_5.shares[0], own_upload=NO_OWN_UPLOAD, journal=IN_MEMORY_ONLY)
    # Execute / Assert
    with pytest.raises(SecAggError):
        forged = dataclasses.replace(upload, client=1 << 32)
        party.respond(dataclasses.replace(request, uploads=(forged, *request.uploads[1:])))


def test_forged_share_is_refused(material_3_of_5: ThresholdKeyMaterial) -> None:
    # Prepare: the secret of share 1 plus one, re-encoded
    share = material_3_of_5.shares[0]
    forged_body = bytearray(wire.encode(share))
    forged_body[-1] ^= 1
    # Execute / Assert
    with pytest.raises(DecodeError, match="does not match its verification key"):
        wire.decode(bytes(forged_body), KeyShare)
    with pytest.raises(AuthenticationError):
        KeyShare(share.public, share.index, share.secret + 1)


def test_share_for_another_index_is_refused(material_3_of_5: ThresholdKeyMaterial) -> None:
    share = material_3_of_5.shares[0]
    with pytest.raises(AuthenticationError):
        KeyShare(share.public, 2, share.secret)
    with pytest.raises(ConfigurationError):
        KeyShare(share.public, 6, share.secret)


def test_private_key_with_wrong_factors_is_refused() -> None:
    private = single_material(256).private
    with pytest.raises(AuthenticationError):
        PrivateKey(private.public, private.p, private.q + 2)


@pytest.mark.parametrize("bad", ["zero", "n_squared", "above", "multiple_of_p"])
def test_ciphertexts_outside_the_unit_group_are_refused(material_3_of_5: ThresholdKeyMaterial, bad: str) -> None:
    # Prepare: replace ciphertext 0 of an honest upload
    params = _params(material_3_of_5)
    key = material_3_of_5.public.key
    p = SAFE_PRIMES[256][0]
    upload = Client(params, 1, IDENTITIES[1]).upload(np.arange(12))
    value = {"zero": 0, "n_squared": key.nsquare, "above": key.nsquare + 5, "multiple_of_p": p * 12345}[bad]
    width = key.ciphertext_bytes
    if value.bit_length() > 8 * width:
        pytest.skip("does not fit the word")
    forged = signed_upload(
        session_id=upload.session_id, client=1, length=12,
        ciphertexts=value.to_bytes(width, "big") + upload.ciphertexts[width:],
    )
    # Execute / Assert: the server and a decrypting party refuse it
    with pytest.raises(DecodeError, match="ciphertext 0"):
        Server(params).receive_upload(wire.encode(forged))
    other = Client(params, 2, IDENTITIES[2]).upload(np.arange(12))
    request = DecryptionRequest(session_id=params.session_id, recipient=2, uploads=(forged, other))
    with pytest.raises(DecodeError, match="ciphertext 0"):
        DecryptingParty(
            params, material_3_of_5.shares[1], own_upload=NO_OWN_UPLOAD, journal=IN_MEMORY_ONLY
        ).respond(request)


def test_partial_decryption_outside_the_unit_group_is_refused(material_3_of_5: ThresholdKeyMaterial) -> None:
    params = _params(material_3_of_5)
    server = Server(params)
    for k in (1, 2):
        server.receive_upload(Client(params, k, IDENTITIES[k]).upload(np.arange(12)))
    party = DecryptingParty(params, material_3_of_5.shares[0], own_upload=NO_OWN_UPLOAD, journal=IN_MEMORY_ONLY)
    answer = party.respond(server.decryption_request(1))
    width = material_3_of_5.public.key.ciphertext_bytes
    forged = dataclasses.replace(answer, values=bytes(width) + answer.values[width:])
    with pytest.raises(DecodeError, match="ciphertext 0"):
        server.receive_partial(forged)


def test_upload_under_another_key_is_refused(material_3_of_5: ThresholdKeyMaterial) -> None:
    # Prepare: a session under a different key of the same size
    params = _params(material_3_of_5)
    stranger = _params(threshold_material(256, 3, 2))
    upload = Client(stranger, 1, IDENTITIES[1]).upload(np.arange(12))
    # Execute / Assert: its session id differs (the key fingerprint is in it)
    with pytest.raises(ProtocolError, match="another session"):
        Server(params).receive_upload(upload)
    with pytest.raises(ConfigurationError, match="another key"):
        DecryptingParty(
            params, threshold_material(256, 3, 2).shares[0], own_upload=NO_OWN_UPLOAD, journal=IN_MEMORY_ONLY
        )


def test_upload_with_the_wrong_number_of_ciphertexts_is_refused(material_3_of_5: ThresholdKeyMaterial) -> None:
    params = _params(material_3_of_5)
    upload = Client(params, 1, IDENTITIES[1]).upload(np.arange(12))
    short = signed_upload(session_id=upload.session_id, client=1, length=12, ciphertexts=upload.ciphertexts[:-1])
    with pytest.raises(DecodeError, match="bytes of ciphertexts"):
        Server(params).receive_upload(short)
    wrong_length = signed_upload(session_id=upload.session_id, client=1, length=13, ciphertexts=upload.ciphertexts)
    with pytest.raises(ProtocolError, match="13 values"):
        Server(params).receive_upload(wrong_length)


def test_bytes_of_another_message_type_are_refused(material_3_of_5: ThresholdKeyMaterial) -> None:
    params = _params(material_3_of_5)
    with pytest.raises(DecodeError, match="expected a EncryptedVector"):
        Server(params).receive_upload(wire.encode(material_3_of_5.public))


@pytest.mark.production_policy
def test_small_keys_do_not_decode_in_production() -> None:
    # Prepare: encodings made while small keys were allowed
    with insecure_key_sizes_for_testing():
        material = threshold_material(512, 3, 2)
        key_bytes, share_bytes = wire.encode(material.public.key), wire.encode(material.shares[0])
    # Execute / Assert
    with pytest.raises(DecodeError, match="below the minimum"):
        wire.decode(key_bytes, PublicKey)
    with pytest.raises(DecodeError, match="below the minimum"):
        wire.decode(share_bytes, KeyShare)


def test_threshold_key_with_inconsistent_fields_is_refused(material_3_of_5: ThresholdKeyMaterial) -> None:
    public = material_3_of_5.public
    with pytest.raises(ConfigurationError):
        ThresholdPublicKey(public.key, 4, 3, public.verification_base, public.verification_keys[:3])
    with pytest.raises(ConfigurationError):
        ThresholdPublicKey(public.key, 3, 5, public.verification_base, public.verification_keys[:4])
    with pytest.raises(ConfigurationError):
        ThresholdPublicKey(public.key, 3, 5, 1, public.verification_keys)
    with pytest.raises(ConfigurationError):
        ThresholdPublicKey(public.key, 3, 5, public.key.n, public.verification_keys)


# A prime of 130 bits: n = 3 * P is an odd non-square of 132 bits that shares the factor 3 with Delta = 3! = 6.
PRIME_130 = 2**130 - 5


def test_threshold_key_whose_modulus_shares_a_factor_with_delta_is_refused() -> None:
    # Prepare: combining partials divides by 4 * Delta^2 mod n, impossible when gcd(n, Delta) != 1.
    # PublicKey itself refuses prime factors below 2^16 (so decoding names that first); the key is
    # forged past it to show ThresholdPublicKey's own check, which holds for any PublicKey.
    key = object.__new__(PublicKey)
    object.__setattr__(key, "n", 3 * PRIME_130)
    fields = {"key": key, "threshold": 2, "num_parties": 3, "verification_base": 4, "verification_keys": (16, 64, 256)}
    forged = object.__new__(ThresholdPublicKey)
    for name, value in fields.items():
        object.__setattr__(forged, name, value)
    data = wire.encode(forged)
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="Delta"):
        ThresholdPublicKey(**fields)  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match=r"Delta|small prime factor"):
        wire.decode(data, ThresholdPublicKey)


# --- Passphrase-protected key shares -------------------------------------------------------------

PASSPHRASE = "correct horse battery staple"
WEAK = {"scrypt_log_n": FAST_SCRYPT, "allow_weak_kdf_for_testing": True}  # tests only: fast scrypt


def test_protected_share_round_trips(material_3_of_5: ThresholdKeyMaterial) -> None:
    share = material_3_of_5.shares[2]
    sealed = protect(share, PASSPHRASE, **WEAK)
    assert unprotect(sealed, PASSPHRASE) == share
    assert share.secret.to_bytes((share.secret.bit_length() + 7) // 8, "big") not in sealed


def test_wrong_passphrase_and_tampering_are_detected(material_3_of_5: ThresholdKeyMaterial) -> None:
    # Prepare
    sealed = protect(material_3_of_5.shares[0], PASSPHRASE, **WEAK)
    # Execute / Assert
    with pytest.raises(AuthenticationError):
        unprotect(sealed, PASSPHRASE.upper())
    tampered = bytearray(sealed)
    tampered[-5] ^= 0x01
    with pytest.raises(AuthenticationError):
        unprotect(bytes(tampered), PASSPHRASE)
    weakened = bytearray(sealed)
    weakened[5] = FAST_SCRYPT + 1  # the scrypt cost byte is authenticated
    with pytest.raises(AuthenticationError):
        unprotect(bytes(weakened), PASSPHRASE)
    with pytest.raises(DecodeError):
        unprotect(sealed[:40], PASSPHRASE)


def test_hostile_scrypt_parameters_are_refused() -> None:
    with pytest.raises(DecodeError, match="scrypt"):
        wire.decode(wire.encode(ProtectedSecret(10, 8, 1, bytes(16), b"")).replace(b"\x0a\x08\x01", b"\x1f\x08\x01"),
                    ProtectedSecret)


def with_header(sealed: bytes, log_n: int, r: int, p: int) -> bytes:
    """``sealed`` (a ProtectedSecret's encoding) with other scrypt parameters in its header."""
    header = bytes([FAST_SCRYPT, 8, 1])
    assert sealed[5:8] == header
    return sealed[:5] + bytes([log_n, r, p]) + sealed[8:]


@pytest.mark.parametrize(("log_n", "r", "p"), [(22, 32, 16), (19, 8, 1), (18, 8, 2), (18, 16, 1), (10, 255, 255)])
def test_scrypt_header_above_the_memory_ceiling_is_refused_before_scrypt_runs(
    material_3_of_5: ThresholdKeyMaterial, monkeypatch: pytest.MonkeyPatch, log_n: int, r: int, p: int
) -> None:
    """128 * r * N * p above 256 MiB: DecodeError, never scrypt (2^22, 32, 16 used to raise MemoryError)."""
    # Prepare
    hostile = with_header(protect(material_3_of_5.shares[0], PASSPHRASE, **WEAK), log_n, r, p)

    def no_scrypt(*args: object, **kwargs: object) -> None:
        raise AssertionError("scrypt ran on a hostile header")

    monkeypatch.setattr(storage, "Scrypt", no_scrypt)
    # Execute / Assert
    with pytest.raises(DecodeError, match="scrypt"):
        unprotect(hostile, PASSPHRASE)


@pytest.mark.parametrize(("log_n", "r", "p"), [(18, 8, 1), (21, 1, 1), (17, 8, 2)])
def test_scrypt_header_at_the_memory_ceiling_decodes(log_n: int, r: int, p: int) -> None:
    header = ProtectedSecret(log_n, r, p, bytes(16), b"")
    assert wire.decode(wire.encode(header), ProtectedSecret) == header
    assert header.scrypt_memory <= storage.MAX_SCRYPT_MEMORY == 256 << 20


@pytest.mark.parametrize(
    ("log_n", "r", "p"), [(10, 8, 1), (14, 8, 1), (15, 4, 1), (15, 8, 0), (19, 8, 1), (17, 8, 3)]
)
def test_new_key_file_below_the_cost_floor_or_above_the_ceiling_is_refused(
    material_3_of_5: ThresholdKeyMaterial, tmp_path: Path, log_n: int, r: int, p: int
) -> None:
    # Prepare
    path = tmp_path / "share.key"
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="scrypt"):
        protect(material_3_of_5.shares[0], PASSPHRASE, scrypt_log_n=log_n, scrypt_r=r, scrypt_p=p)
    with pytest.raises(ConfigurationError, match="scrypt"):
        write_protected_file(path, material_3_of_5.shares[0], PASSPHRASE, scrypt_log_n=log_n, scrypt_r=r, scrypt_p=p)
    assert not path.exists()


def test_the_cost_floor_itself_is_accepted(material_3_of_5: ThresholdKeyMaterial) -> None:
    sealed = protect(material_3_of_5.shares[0], PASSPHRASE, scrypt_log_n=storage.MIN_WRITE_SCRYPT_LOG_N)
    assert sealed[5:8] == bytes([15, 8, 1])
    assert unprotect(sealed, PASSPHRASE) == material_3_of_5.shares[0]


def test_weak_kdf_switch_still_refuses_costs_no_file_may_declare(material_3_of_5: ThresholdKeyMaterial) -> None:
    with pytest.raises(ConfigurationError, match="scrypt"):
        protect(material_3_of_5.shares[0], PASSPHRASE, scrypt_log_n=9, allow_weak_kdf_for_testing=True)


@pytest.mark.parametrize("passphrase", ["a", "s3cret", "elevenchars", b"elevenbytes", "é" * 11])
def test_short_passphrase_is_refused_when_writing(
    material_3_of_5: ThresholdKeyMaterial, tmp_path: Path, passphrase: str | bytes
) -> None:
    path = tmp_path / "share.key"
    with pytest.raises(ConfigurationError, match="at least 12"):
        protect(material_3_of_5.shares[0], passphrase, **WEAK)
    with pytest.raises(ConfigurationError, match="at least 12"):
        write_protected_file(path, material_3_of_5.shares[0], passphrase, **WEAK)
    assert not path.exists()


def test_twelve_character_passphrase_is_accepted(material_3_of_5: ThresholdKeyMaterial) -> None:
    sealed = protect(material_3_of_5.shares[0], "twelve chars", **WEAK)
    assert unprotect(sealed, "twelve chars") == material_3_of_5.shares[0]


def test_protected_file_is_private_and_not_overwritten(tmp_path: Path) -> None:
    # Prepare
    private = single_material(256).private
    path = tmp_path / "keyholder.key"
    # Execute
    write_protected_file(path, private, PASSPHRASE, **WEAK)
    # Assert
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_protected_file(path, PASSPHRASE) == private
    with pytest.raises(ConfigurationError, match="overwrite"):
        write_protected_file(path, private, PASSPHRASE, **WEAK)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610, 0o601])
def test_protected_file_that_group_or_others_may_access_is_refused(tmp_path: Path, mode: int) -> None:
    # Prepare
    private = single_material(256).private
    path = tmp_path / "keyholder.key"
    write_protected_file(path, private, PASSPHRASE, **WEAK)
    path.chmod(mode)
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="group or others"):
        read_protected_file(path, PASSPHRASE)
    with pytest.raises(ConfigurationError, match="group or others"):
        storage.read_private_file(path, "key file")
    path.chmod(0o400)
    assert read_protected_file(path, PASSPHRASE) == private


def test_missing_protected_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        read_protected_file(tmp_path / "absent.key", PASSPHRASE)


def test_only_secrets_can_be_protected(material_3_of_5: ThresholdKeyMaterial) -> None:
    with pytest.raises(ConfigurationError):
        protect(material_3_of_5.public, PASSPHRASE, **WEAK)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        protect(material_3_of_5.shares[0], "", **WEAK)
