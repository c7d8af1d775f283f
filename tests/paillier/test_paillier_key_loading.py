"""A threshold public key from untrusted bytes is checked for everything a public key can show.

A key file (the federation's public key, or the public part of a sealed key share) is
written by the dealer, but read by nodes and servers that must not trust its bytes: a
modulus with a small prime factor is factored at once, a verification base that is not a
square (or is -1) makes the decryption proofs vacuous, and a 2-of-5 key lets two disjoint
groups of holders decrypt two sums that differ in one upload. Each refusal is the
library's own error, from the key's wire decoding or from the loaders.
"""

from __future__ import annotations

import os
from pathlib import Path

import gmpy2
import pytest

from secagg import wire
from secagg.errors import AuthenticationError, ConfigurationError, DecodeError, SecAggError
from secagg.integrations.flower.keys import load_key_share, read_public_key, write_key_files, write_public_key
from secagg.paillier import PublicKey, ThresholdPublicKey
from secagg.paillier.storage import protect, read_protected_file, unprotect, write_protected_file

from .helpers import single_material, threshold_material, unsafe_threshold_material

PASSPHRASE = "correct horse battery staple"


def _forged(public: ThresholdPublicKey, **changes: object) -> bytes:
    """The wire encoding of ``public`` with ``changes`` (n, threshold, num_parties, verification_base,
    verification_keys), written without any of the constructors' checks, as a hostile dealer would."""
    fields = {
        "n": public.key.n, "threshold": public.threshold, "num_parties": public.num_parties,
        "verification_base": public.verification_base, "verification_keys": public.verification_keys,
        **changes,
    }
    key = object.__new__(PublicKey)
    object.__setattr__(key, "n", fields["n"])
    forged = object.__new__(ThresholdPublicKey)
    for name, value in (("key", key), ("threshold", fields["threshold"]), ("num_parties", fields["num_parties"]),
                        ("verification_base", fields["verification_base"]),
                        ("verification_keys", tuple(fields["verification_keys"]))):  # type: ignore[arg-type]
        object.__setattr__(forged, name, value)
    return wire.encode(forged)


def _non_residue(n: int) -> int:
    """The least a > 1 with Jacobi symbol (a / n) = -1: no square mod n (nor mod n^2)."""
    return next(a for a in range(2, 1000) if gmpy2.jacobi(a, n) == -1)


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "public-key.bin"
    path.write_bytes(data)
    os.chmod(path, 0o600)
    return path


def test_a_genuine_key_loads_and_round_trips(tmp_path: Path) -> None:
    # Control: what every refusal below changes, accepted as dealt (threshold and single-key mode)
    for public in (threshold_material(256, 3, 2).public, single_material(256).public):
        assert wire.decode(_forged(public), ThresholdPublicKey) == public
    path = tmp_path / "key.bin"
    write_public_key(path, threshold_material(256, 5, 4).public)
    assert read_public_key(path) == threshold_material(256, 5, 4).public


def _small_factor_key(factor: int) -> bytes:
    public = threshold_material(256, 3, 2).public
    n = factor * public.key.n  # odd, not a square, in the size range: only its factors are wrong
    keys = [pow(4, 2 + i, n * n) for i in range(3)]
    return _forged(public, n=n, verification_base=4, verification_keys=keys)


@pytest.mark.parametrize("factor", [3, 5, 65521])
def test_a_modulus_with_a_small_prime_factor_is_refused(factor: int) -> None:
    with pytest.raises(DecodeError, match="small prime factor"):
        wire.decode(_small_factor_key(factor), ThresholdPublicKey)
    with pytest.raises(SecAggError, match="small prime factor"):
        PublicKey(factor * threshold_material(256, 3, 2).public.key.n)


def _with_base(base_of_n: str) -> bytes:
    public = threshold_material(256, 3, 2).public
    n, nsquare = public.key.n, public.key.nsquare
    base = {"non-square": _non_residue(n), "minus one": nsquare - 1}[base_of_n]
    return _forged(public, verification_base=base)


@pytest.mark.parametrize(("base", "message"), [("non-square", "not a square"), ("minus one", "-1")])
def test_a_verification_base_that_cannot_be_a_random_square_is_refused(base: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        wire.decode(_with_base(base), ThresholdPublicKey)


@pytest.mark.parametrize(("change", "message"), [
    ("one", "party 2.*1 or -1"),
    ("minus one", "party 2.*1 or -1"),
    ("non-square", "party 2.*not a square"),
    ("duplicate", "parties 1 and 2 .*same verification key"),
])
def test_a_verification_key_no_honest_share_gives_is_refused(change: str, message: str) -> None:
    public = threshold_material(256, 3, 2).public
    n, nsquare = public.key.n, public.key.nsquare
    keys = list(public.verification_keys)
    keys[1] = {"one": 1, "minus one": nsquare - 1, "non-square": _non_residue(n), "duplicate": keys[0]}[change]
    with pytest.raises(DecodeError, match=message):
        wire.decode(_forged(public, verification_keys=keys), ThresholdPublicKey)


def test_a_public_key_file_of_a_minority_threshold_is_refused(tmp_path: Path) -> None:
    # 2-of-5: {1, 2} and {3, 4} each reach t; every session would refuse it, and now the loader does
    path = _write(tmp_path, wire.encode(unsafe_threshold_material(256, 5, 2).public))
    with pytest.raises(DecodeError, match=r"2-of-5.*2t > l"):
        read_public_key(path)


def test_a_key_share_of_a_minority_threshold_key_is_refused_when_unsealed(tmp_path: Path) -> None:
    share = unsafe_threshold_material(256, 4, 2).shares[0]
    sealed = protect(share, PASSPHRASE, scrypt_log_n=10, allow_weak_kdf_for_testing=True)
    with pytest.raises(DecodeError, match=r"2-of-4.*2t > l"):
        unprotect(sealed, PASSPHRASE)
    path = tmp_path / "key-share-1.bin"
    write_protected_file(path, share, PASSPHRASE, scrypt_log_n=10, allow_weak_kdf_for_testing=True)
    with pytest.raises(DecodeError, match=r"2t > l"):
        load_key_share(path, PASSPHRASE)


def test_a_1_of_l_key_is_refused_by_the_key_type() -> None:
    # t = 1: the sharing polynomial is constant, every share is the whole secret, so every
    # verification key is the same; refused when dealt through the private path and when decoded
    with pytest.raises(SecAggError, match=r"same verification key.*1-of-l"):
        unsafe_threshold_material(256, 3, 1)
    public = threshold_material(256, 3, 2).public
    same = [public.verification_keys[0]] * 3
    with pytest.raises(DecodeError, match=r"same verification key.*1-of-l"):
        wire.decode(_forged(public, threshold=1, verification_keys=same), ThresholdPublicKey)


def test_a_share_of_a_majority_key_still_unseals() -> None:
    # Control for the refusal above: the same path with a 3-of-4 key
    share = threshold_material(256, 4, 3).shares[2]
    sealed = protect(share, PASSPHRASE, scrypt_log_n=10, allow_weak_kdf_for_testing=True)
    assert unprotect(sealed, PASSPHRASE) == share


@pytest.mark.production_policy
def test_a_key_below_the_size_floor_is_refused_at_load(tmp_path: Path) -> None:
    # Outside the tests' switch the 2048-bit floor applies to bytes as to keys built in memory
    data = wire.encode(threshold_material(256, 3, 2).public)
    with pytest.raises(DecodeError, match="below the minimum of 2048 bits"):
        wire.decode(data, ThresholdPublicKey)
    with pytest.raises(DecodeError, match="below the minimum of 2048 bits"):
        read_public_key(_write(tmp_path, data))


@pytest.mark.parametrize(("n_of", "message"), [("even", "odd non-square"), ("square", "odd non-square")])
def test_an_even_or_square_modulus_is_refused_at_load(n_of: str, message: str) -> None:
    public = threshold_material(256, 3, 2).public
    p = threshold_material(256, 3, 2).public.key.n  # stands in for an odd 256-bit number
    n = {"even": p + 1, "square": gmpy2.next_prime(1 << 127) ** 2}[n_of]
    with pytest.raises(DecodeError, match=message):
        wire.decode(_forged(public, n=int(n), verification_base=4, verification_keys=[16, 64, 256]),
                    ThresholdPublicKey)


@pytest.mark.parametrize("reader", ["load_key_share", "read_protected_file"])
def test_a_wrong_passphrase_is_named_with_the_file(tmp_path: Path, reader: str) -> None:
    # Prepare: a sealed 3-of-4 share, opened with another passphrase (a hospital's commonest mistake)
    share = threshold_material(256, 4, 3).shares[0]
    path = tmp_path / "key-share-1.bin"
    write_protected_file(path, share, PASSPHRASE, scrypt_log_n=10, allow_weak_kdf_for_testing=True)
    load = {"load_key_share": load_key_share, "read_protected_file": read_protected_file}[reader]
    # Execute / Assert: the library's AuthenticationError, naming the file and the likely cause
    with pytest.raises(AuthenticationError, match=r"key-share-1\.bin.*wrong passphrase") as refusal:
        load(path, "another passphrase")
    assert "sealed box failed authentication" not in str(refusal.value)
    # Control: the right passphrase opens it
    assert load(path, PASSPHRASE) == share


def test_swapped_public_key_and_key_share_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    # Prepare: a dealer's output; the node's operator swaps the two paths
    material = threshold_material(256, 4, 3)
    public_path = _write(tmp_path, wire.encode(material.public))
    share_path = tmp_path / "key-share-1.bin"
    write_protected_file(share_path, material.shares[0], PASSPHRASE, scrypt_log_n=10, allow_weak_kdf_for_testing=True)
    # Execute / Assert: each refusal names the file given and what it holds instead
    with pytest.raises(DecodeError, match=r"key-share-1\.bin.*sealed key"):
        read_public_key(share_path)
    with pytest.raises(DecodeError, match=r"public-key\.bin.*public key"):
        load_key_share(public_path, PASSPHRASE)


def test_key_files_written_into_a_missing_folder_are_refused_naming_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "no-such-folder"
    with pytest.raises(ConfigurationError, match=r"no-such-folder.*does not exist") as refusal:
        write_key_files(threshold_material(256, 4, 3), folder, [PASSPHRASE] * 4, scrypt_log_n=15)
    assert "PosixPath" not in str(refusal.value)
