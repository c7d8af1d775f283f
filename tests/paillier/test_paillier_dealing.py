"""Dealing refuses the key shapes every session refuses (2t <= l), before any prime search.

Sessions refuse a t-of-l key with 2t <= l: a lying server could have two disjoint groups
of holders decrypt two sums that differ in one upload (docs/paillier.md, "The split of
the decrypting parties"). A dealer that still dealt such a key let a hospital run a whole
key ceremony and learn only at the first round that its key is unusable.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

from secagg.errors import ConfigurationError
from secagg.integrations.flower.keys import write_key_files
from secagg.paillier import (
    SessionParameters,
    SlotLayout,
    deal_threshold_key,
    deal_threshold_key_from_primes,
)
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import SAFE_PRIMES, identity_keys, unsafe_threshold_material

UNSAFE = [(parties, t) for parties in range(2, 9) for t in range(1, parties // 2 + 1)]
"""Every t-of-l shape with 2t <= l for l = 2..8 (2-of-4, 3-of-6, 1-of-3, ...)."""


def _accepted_by_sessions(num_parties: int, threshold: int) -> bool:
    material = deal_threshold_key_from_primes(
        *SAFE_PRIMES[128], num_parties=num_parties, threshold=threshold, random_bytes=InsecureDeterministicRandom(3)
    )
    roster = tuple(range(1, max(num_parties, 2) + 1))
    SessionParameters(
        public=material.public, layout=SlotLayout(8, len(roster), 128), vector_length=1, roster=roster,
        min_contributors=2, identity_keys=identity_keys(roster), context=bytes(32),
    )
    return True


@pytest.mark.parametrize(("num_parties", "threshold"), UNSAFE)
def test_dealing_from_primes_refuses_a_shape_every_session_refuses(num_parties: int, threshold: int) -> None:
    least = num_parties // 2 + 1
    with pytest.raises(ConfigurationError, match=rf"2t > l.*least safe threshold for l = {num_parties} is {least}"):
        deal_threshold_key_from_primes(*SAFE_PRIMES[256], num_parties=num_parties, threshold=threshold)


@pytest.mark.parametrize(("num_parties", "threshold"), [(4, 2), (6, 3), (10, 5), (3, 1)])
def test_dealing_refuses_an_unsafe_shape_before_searching_for_primes(num_parties: int, threshold: int) -> None:
    # The refusal comes first: a dealer is not kept waiting minutes for a 3072-bit prime search
    searched = mock.patch("secagg.paillier.ceremony.generate_safe_primes", side_effect=AssertionError("searched"))
    with searched, pytest.raises(ConfigurationError, match=rf"2t > l.*is {num_parties // 2 + 1}"):
        deal_threshold_key(192, num_parties=num_parties, threshold=threshold, insecure_for_testing=True)


@pytest.mark.parametrize("num_parties", range(1, 11))
def test_a_key_is_dealt_iff_every_session_accepts_its_shape(num_parties: int) -> None:
    # The dealer and SessionParameters agree on every shape: no dealt key is unusable
    for threshold in range(1, num_parties + 1):
        dealt = True
        try:
            _accepted_by_sessions(num_parties, threshold)
        except ConfigurationError as exc:
            dealt = "least safe threshold" not in str(exc)  # refused at dealing, not by the session
            assert not dealt or "2t > l" in str(exc)
        assert dealt == (2 * threshold > num_parties), (num_parties, threshold)


def test_the_least_safe_threshold_named_in_the_error_is_dealt_and_used() -> None:
    with pytest.raises(ConfigurationError) as refused:
        deal_threshold_key_from_primes(*SAFE_PRIMES[128], num_parties=6, threshold=3)
    least = int(str(refused.value).rsplit("is ", 1)[1].split()[0].rstrip(".;:,"))
    assert least == 4 and _accepted_by_sessions(6, least)


def test_the_dealer_s_last_step_refuses_unsafe_material(tmp_path: Path) -> None:
    # Material that did not come from the checked dealer (here the tests' private path) is not written out
    material = unsafe_threshold_material(256, 4, 2)
    with pytest.raises(ConfigurationError, match=r"2t > l.*least safe threshold for l = 4 is 3"):
        write_key_files(material, tmp_path, ["a hospital passphrase"] * 4)
    assert list(tmp_path.iterdir()) == []


def test_the_testing_path_builds_only_unsafe_shapes() -> None:
    # The private helper exists to show refusals; it is not a way around the check for a usable key
    with pytest.raises(AssertionError):
        unsafe_threshold_material(256, 5, 3)


def test_the_dealer_s_last_step_writes_nothing_when_one_passphrase_is_refused(tmp_path: Path) -> None:
    # A refusal halfway used to leave the public key and the earlier shares on disk: files of a
    # ceremony the dealer was told had failed, which a retry then refused to overwrite.
    material = deal_threshold_key_from_primes(*SAFE_PRIMES[128], num_parties=3, threshold=2)
    passphrases = ["a hospital passphrase", "too short", "a hospital passphrase"]
    with pytest.raises(ConfigurationError, match="at least 12"):
        write_key_files(material, tmp_path, passphrases, scrypt_log_n=15)
    assert list(tmp_path.iterdir()) == []


def test_the_dealer_s_last_step_writes_nothing_when_one_file_exists(tmp_path: Path) -> None:
    material = deal_threshold_key_from_primes(*SAFE_PRIMES[128], num_parties=3, threshold=2)
    (tmp_path / "key-share-3.bin").write_bytes(b"an earlier ceremony's share")
    with pytest.raises(ConfigurationError, match="refusing to overwrite"):
        write_key_files(material, tmp_path, ["a hospital passphrase"] * 3, scrypt_log_n=15)
    assert [path.name for path in tmp_path.iterdir()] == ["key-share-3.bin"]
    assert (tmp_path / "key-share-3.bin").read_bytes() == b"an earlier ceremony's share"


def test_the_dealer_s_last_step_writes_nothing_when_a_write_fails_halfway(tmp_path: Path) -> None:
    # A disk that fills up while the second file is written (ENOSPC): a library error, and neither
    # the files written before nor the partial one are left on disk.
    import errno  # noqa: PLC0415
    import os  # noqa: PLC0415

    material = deal_threshold_key_from_primes(*SAFE_PRIMES[128], num_parties=3, threshold=2)
    real_fdopen = os.fdopen
    opened: list[int] = []

    class _Full:
        def __init__(self, handle: object) -> None:
            self.handle = handle

        def __enter__(self) -> _Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()  # type: ignore[attr-defined]

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(descriptor: int, mode: str = "r") -> object:
        opened.append(descriptor)
        handle = real_fdopen(descriptor, mode)
        return _Full(handle) if len(opened) == 2 else handle

    with mock.patch("secagg.paillier.storage.os.fdopen", fdopen), pytest.raises(ConfigurationError, match="space"):
        write_key_files(material, tmp_path, ["a hospital passphrase"] * 3, scrypt_log_n=15)
    assert list(tmp_path.iterdir()) == []
