"""How the accountant writes its state file: through the library's one atomic writer
(:func:`secagg._files.write_regular_file`), with what a budget record needs of it: mode 0600
whatever the umask or the previous file's mode, data and folder synced (a folder that cannot be
synced is an error, not skipped), a link at the path refused and never replaced, a failed write
leaving the previous record whole."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

import secagg.dp.accountant as accountant_module
from secagg.dp import DPConfig, NoisePlan, PrivacyAccountant, calibrate
from secagg.errors import ConfigurationError
from tests.disk_full import disk_full_at

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits and links")

CONFIG = DPConfig(epsilon=3.0, delta=1e-5, rounds=5, l2_clip=1.0, min_honest=4)


@pytest.fixture(scope="module")
def plan() -> NoisePlan:
    return calibrate(CONFIG, num_clients=5, scale=1024.0, dimension=31)


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_a_new_and_a_rewritten_state_file_are_0600_whatever_the_umask_or_previous_mode(
    plan: NoisePlan, tmp_path: Path, mask: int
) -> None:
    # Prepare
    os.umask(mask)
    path = tmp_path / "budget.json"
    # Execute: a new file; then one an operator made readable by others (allowed: a budget is no secret)
    first = PrivacyAccountant(plan, path)
    created = stat.S_IMODE(path.stat().st_mode)
    path.chmod(0o644)
    first.record_round(1)
    # Assert: a budget record is the owner's alone, as the lock file is; no temporary file left
    assert created == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [".budget.json.lock", "budget.json"]


def test_a_link_planted_at_the_state_file_after_its_check_is_refused_and_not_replaced(
    plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a local user who may write the folder swaps the record for a link to a file of theirs
    # between the accountant's re-read and its write (no accountant lock stops a process that takes none)
    path = tmp_path / "budget.json"
    accountant = PrivacyAccountant(plan, path)
    decoy = tmp_path / "decoy.json"
    decoy.write_bytes(path.read_bytes())
    real_read = accountant_module.read_state

    def read_then_swap(target: Path) -> dict[str, object] | None:
        state = real_read(target)
        target.unlink()
        target.symlink_to(decoy)
        return state

    monkeypatch.setattr(accountant_module, "read_state", read_then_swap)
    # Execute / Assert: refused before anything is released; the link and its target left as they are
    with pytest.raises(ConfigurationError, match="not a regular file"):
        accountant.record_round(1)
    assert path.is_symlink() and accountant.num_releases == 0
    assert decoy.read_bytes() == path.read_bytes()


def test_a_full_disk_leaves_the_previous_record_whole_and_the_round_unrecorded(
    plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: one round recorded; the disk fills before the next record replaces it
    path = tmp_path / "budget.json"
    accountant = PrivacyAccountant(plan, path)
    accountant.record_round(1)
    before = path.read_bytes()
    disk_full_at(monkeypatch, "budget.json")
    # Execute / Assert: the library's error naming the file; the count on disk and in memory unchanged
    with pytest.raises(ConfigurationError, match=r"cannot write the accountant's state file .*budget\.json"):
        accountant.record_round(2)
    assert path.read_bytes() == before and accountant.num_releases == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".budget.json.lock", "budget.json"]


def _folders_cannot_be_synced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Syncing a folder fails (an I/O error); syncing a file still works."""
    real = os.fsync

    def fsync(descriptor: int) -> None:
        if stat.S_ISDIR(os.fstat(descriptor).st_mode):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("server_round", [1, 7])
def test_a_folder_that_cannot_be_synced_fails_the_charge_and_counts_the_round_as_the_file_does(
    plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_round: int
) -> None:
    # Prepare: syncing a folder fails: the new record's name may not survive a crash, and a count
    # rolled back by a crash would let released rounds be spent again. The record was already
    # renamed into place when the sync fails, so the file holds the round. The first charged
    # round is round 1, or round 7 (earlier rounds skipped).
    path = tmp_path / "budget.json"
    accountant = PrivacyAccountant(plan, path)
    _folders_cannot_be_synced(monkeypatch)
    # Execute / Assert: the round is refused (its release must not rest on a record that may vanish),
    # named by its server round (the one the operator must not release, not the number of releases),
    # and the accountant counts it as its file does (an over-count, never fewer than the file says)
    with pytest.raises(ConfigurationError, match=rf"cannot be synced.*Round {server_round} is counted as released"):
        accountant.record_round(server_round)
    assert (accountant.num_releases, accountant.last_round) == (1, server_round)
    assert PrivacyAccountant(plan, path).num_releases == 1


def test_after_a_failed_folder_sync_the_accountant_goes_on_once_the_folder_syncs_again(
    plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: one charge whose folder sync failed (a transient I/O error), then the sync works again
    path = tmp_path / "budget.json"
    accountant = PrivacyAccountant(plan, path)
    with monkeypatch.context() as patch:
        _folders_cannot_be_synced(patch)
        with pytest.raises(ConfigurationError, match="cannot be synced"):
            accountant.record_round(1)
    # Execute: the next round (not refused as if another accountant had charged the file)
    spent = accountant.record_round(2)
    # Assert: both rounds counted, in memory and on disk
    assert spent.num_releases == 2 and accountant.last_round == 2
    assert PrivacyAccountant(plan, path).num_releases == 2


def test_a_state_file_this_process_may_not_write_is_left_alone_and_the_round_refused(
    plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a record the user may no longer write (os.access says so, as for a read-only file, or
    # one an operator froze): replacing it by a rename would bypass its permissions
    path = tmp_path / "budget.json"
    accountant = PrivacyAccountant(plan, path)
    before = path.read_bytes()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda target, mode, **kw: mode != os.W_OK and real_access(target, mode, **kw))
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="permission denied"):
        accountant.record_round(1)
    assert path.read_bytes() == before and accountant.num_releases == 0


def test_while_the_folder_cannot_be_synced_no_further_round_is_charged(
    plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a folder that can never be synced (a file system without folder sync): the first
    # charge's record is in place, counted; a server going on round after round must not burn
    # its budget for rounds it never releases
    path = tmp_path / "budget.json"
    accountant = PrivacyAccountant(plan, path)
    with monkeypatch.context() as patch:
        _folders_cannot_be_synced(patch)
        with pytest.raises(ConfigurationError, match="Round 1 is counted"):
            accountant.record_round(1)
        # Execute / Assert: refused before anything is written, saying nothing was charged
        for server_round in (2, 3):
            with pytest.raises(ConfigurationError, match=r"cannot be synced.*nothing is charged"):
                accountant.record_round(server_round)
        assert accountant.num_releases == 1 and PrivacyAccountant(plan, path).num_releases == 1
    # Once the folder syncs again, the next round is charged
    assert accountant.record_round(4).num_releases == 2
    assert PrivacyAccountant(plan, path).num_releases == 2
