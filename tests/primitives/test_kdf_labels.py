"""HKDF-SHA256 and the labelled info strings (secagg.primitives.kdf). The RFC 5869
vectors live in test_known_answers.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import ConfigurationError
from secagg.primitives import kdf

SECRET = bytes(range(32))
SESSION = b"session-0001"
party_ids = st.integers(0, (1 << 32) - 1)


def test_info_string_layout_is_exact() -> None:
    # Execute
    info = kdf.info_string(b"mask", 0x01020304, 7)

    # Assert
    assert info == b"secagg/v1/mask/" + b"\x00\x00\x00\x07" + b"\x01\x02\x03\x04"


@given(a=party_ids, b=party_ids)
def test_info_string_ignores_party_order(a: int, b: int) -> None:
    # Execute / Assert
    assert kdf.info_string(b"mask", a, b) == kdf.info_string(b"mask", b, a)


@given(a=party_ids, b=party_ids)
def test_pair_key_is_symmetric(a: int, b: int) -> None:
    # Execute / Assert
    assert kdf.derive_pair_key(SECRET, SESSION, b"mask", a, b) == kdf.derive_pair_key(SECRET, SESSION, b"mask", b, a)


def test_pair_key_is_hkdf_with_session_salt_and_info_string() -> None:
    # Execute
    derived = kdf.derive_pair_key(SECRET, SESSION, b"share-key", 9, 2, length=48)

    # Assert
    assert derived == kdf.hkdf_sha256(SECRET, SESSION, kdf.info_string(b"share-key", 2, 9), 48)
    assert len(derived) == 48


def test_purposes_sessions_and_pairs_give_different_keys() -> None:
    # Execute
    keys = [
        kdf.derive_pair_key(SECRET, SESSION, b"mask", 1, 2),
        kdf.derive_pair_key(SECRET, SESSION, b"share-key", 1, 2),
        kdf.derive_pair_key(SECRET, b"session-0002", b"mask", 1, 2),
        kdf.derive_pair_key(SECRET, SESSION, b"mask", 1, 3),
        kdf.derive_pair_key(bytes(32), SESSION, b"mask", 1, 2),
    ]

    # Assert
    assert len(set(keys)) == len(keys)


@given(p=st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b":" not in b),
       q=st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b":" not in b),
       a=party_ids, b=party_ids, c=party_ids, d=party_ids)
def test_info_strings_are_injective(p: bytes, q: bytes, a: int, b: int, c: int, d: int) -> None:
    # Execute
    same_info = kdf.info_string(p, a, b) == kdf.info_string(q, c, d)

    # Assert: equal strings only for the same purpose and the same unordered pair.
    assert same_info == (p == q and sorted((a, b)) == sorted((c, d)))


@pytest.mark.parametrize("purpose", [b"", b"/", b"a/b", b"mask/", b"prg:mask"])
def test_invalid_purpose_labels_are_refused(purpose: bytes) -> None:
    # Execute / Assert
    with pytest.raises(ConfigurationError):
        kdf.info_string(purpose, 1, 2)


@pytest.mark.parametrize(("a", "b"), [(-1, 2), (1, 1 << 32), (-5, 1 << 40)])
def test_party_ids_outside_u32_are_refused(a: int, b: int) -> None:
    # Execute / Assert
    with pytest.raises(ConfigurationError):
        kdf.info_string(b"mask", a, b)


@pytest.mark.parametrize("length", [0, -1, kdf.MAX_OUTPUT + 1])
def test_hkdf_refuses_lengths_outside_the_rfc_range(length: int) -> None:
    # Execute / Assert
    with pytest.raises(ConfigurationError):
        kdf.hkdf_sha256(SECRET, SESSION, b"info", length)


def test_hkdf_accepts_the_largest_length() -> None:
    # Execute
    output = kdf.hkdf_sha256(SECRET, SESSION, b"info", kdf.MAX_OUTPUT)

    # Assert
    assert len(output) == 255 * 32
    assert output[:32] == kdf.hkdf_sha256(SECRET, SESSION, b"info", 32)
