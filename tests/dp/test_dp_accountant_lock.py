"""The accountant's state file under concurrent use: an exclusive lock across each
read-check-write, so two accountants (two objects, two processes) never both charge
from one count, and a clear library error for the one that finds the file in use.

The interleavings are forced by a hook in ``os.replace`` (the last step of every
write): while one accountant is between its check and its write, the other runs.
No test waits on a clock."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import secagg.dp._state_file as state_file
from secagg.dp import DPConfig, NoisePlan, PrivacyAccountant, calibrate
from secagg.errors import ConfigurationError, DecodeError, SecAggError, StateLockedError

CONFIG = DPConfig(epsilon=3.0, delta=1e-5, rounds=5, l2_clip=1.0, min_honest=4)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def plan() -> NoisePlan:
    return calibrate(CONFIG, num_clients=5, scale=1024.0, dimension=31)


@pytest.fixture(params=["flock", "exclusive-file"])
def lock_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both locks: fcntl.flock (POSIX) and the O_EXCL lock file of platforms without fcntl."""
    if request.param == "exclusive-file":
        monkeypatch.setattr(state_file, "_FCNTL", None)
    yield request.param


def _during_next_replace(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> list[BaseException]:
    """Run ``action`` once, inside the next ``os.replace`` (between an accountant's check and
    its write); what it raises is collected, not propagated."""
    real_replace, raised, pending = os.replace, [], [action]

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if pending:
            try:
                pending.pop()()
            except BaseException as exc:  # reported to the test
                raised.append(exc)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return raised


def _released_on_disk(path: Path) -> int:
    released = json.loads(path.read_text())["released"]
    assert isinstance(released, int)
    return released


def test_a_second_accountant_charging_while_the_first_writes_is_refused_not_lost(
    plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lock_kind: str
) -> None:
    # Prepare: two accountants on one file (two aggregators of one server, say)
    path = tmp_path / "budget.json"
    first, second = PrivacyAccountant(plan, path), PrivacyAccountant(plan, path)
    recorded: list[int] = []
    raised = _during_next_replace(monkeypatch, lambda: recorded.append(second.record_round().num_releases))
    # Execute: the second charges after the first checked the file, before it wrote it
    first.record_round()
    # Assert: the second was refused by the lock (unlocked, both charged and the file said 1)
    assert recorded == [], "both accountants recorded a release from the same count"
    assert len(raised) == 1 and isinstance(raised[0], StateLockedError), raised
    assert isinstance(raised[0], ConfigurationError) and "in use" in str(raised[0])
    assert _released_on_disk(path) == 1 == first.num_releases and second.num_releases == 0


def test_an_accountant_created_while_another_creates_the_file_cannot_overwrite_its_charges(
    plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lock_kind: str
) -> None:
    # Prepare: no state file yet; a second accountant starts and charges while the first creates it
    path = tmp_path / "budget.json"
    charged: list[int] = []

    def second_run() -> None:
        charged.append(PrivacyAccountant(plan, path).record_round().num_releases)

    raised = _during_next_replace(monkeypatch, second_run)
    # Execute
    first = PrivacyAccountant(plan, path)
    # Assert: unlocked, the first wrote "released": 0 over the second's charge (budget re-opened)
    assert charged == [], "a charge was made and then overwritten by the creation of the file"
    assert len(raised) == 1 and isinstance(raised[0], StateLockedError), raised
    assert _released_on_disk(path) == 0 == first.num_releases
    first.record_round()
    assert PrivacyAccountant(plan, path).num_releases == 1


def test_the_lock_is_released_after_each_charge_and_after_a_refusal(
    plan: NoisePlan, tmp_path: Path, lock_kind: str
) -> None:
    path = tmp_path / "budget.json"
    first = PrivacyAccountant(plan, path)
    first.record_round(1)
    with pytest.raises(SecAggError):
        first.record_round(1)  # a replay, refused inside the lock
    first.record_round(2)
    second = PrivacyAccountant(plan, path)  # a restart: the lock is free
    second.record_round(3)
    assert _released_on_disk(path) == 3
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    if lock_kind == "flock":  # the lock file stays (unlinking a flock file would race); 0600
        assert leftovers == [".budget.json.lock", "budget.json"]
        assert stat.S_IMODE((tmp_path / ".budget.json.lock").stat().st_mode) == 0o600
    else:  # the exclusive lock file is removed when released
        assert leftovers == ["budget.json"]


_CHILD = """
import os, sys
from pathlib import Path
from secagg.dp import DPConfig, PrivacyAccountant, calibrate
config = DPConfig(epsilon=3.0, delta=1e-5, rounds=5, l2_clip=1.0, min_honest=4)
plan = calibrate(config, num_clients=5, scale=1024.0, dimension=31)
accountant = PrivacyAccountant(plan, Path(sys.argv[1]))
real_replace = os.replace
def replace(src, dst):
    print("writing", flush=True)  # checked the file, about to write it
    if sys.stdin.readline().strip() == "die":
        os._exit(9)  # crashes holding the lock
    real_replace(src, dst)
os.replace = replace
print("recorded", accountant.record_round().num_releases, flush=True)
"""


def _child(path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )  # fmt: skip


def test_two_processes_on_one_state_file_one_is_refused_naming_the_holder(plan: NoisePlan, tmp_path: Path) -> None:
    # Prepare: this process's accountant, and another process blocked between its check and its write
    path = tmp_path / "budget.json"
    here = PrivacyAccountant(plan, path)
    child = _child(path)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "writing"
        # Execute: this process charges while the other holds the file
        with pytest.raises(StateLockedError) as refused:
            here.record_round()
        child.stdin.write("go\n")
        child.stdin.flush()
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # Assert: one release recorded, by the other process, whose pid the refusal names
    assert str(child.pid) in str(refused.value)
    assert out.strip() == "recorded 1" and child.returncode == 0
    assert here.num_releases == 0 and _released_on_disk(path) == 1


def test_a_lock_left_by_a_crashed_process_does_not_block_the_file(plan: NoisePlan, tmp_path: Path) -> None:
    # Prepare: another process dies holding the lock (between its check and its write)
    path = tmp_path / "budget.json"
    PrivacyAccountant(plan, path)
    child = _child(path)
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline().strip() == "writing"
    child.communicate("die\n", timeout=60)
    assert child.returncode == 9
    # Execute / Assert: flock died with it; its write never happened
    accountant = PrivacyAccountant(plan, path)
    assert accountant.record_round().num_releases == 1 and _released_on_disk(path) == 1


def test_without_fcntl_a_leftover_lock_file_is_refused_naming_it(
    plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a platform without fcntl; a crashed process left its exclusive lock file
    monkeypatch.setattr(state_file, "_FCNTL", None)
    path = tmp_path / "budget.json"
    accountant = PrivacyAccountant(plan, path)
    lock = tmp_path / ".budget.json.lock"
    lock.write_text("4242\n")
    # Execute / Assert: refused, naming the file and what to do; nothing charged
    with pytest.raises(StateLockedError, match=r"\.budget\.json\.lock.*4242.*remove it"):
        accountant.record_round()
    assert _released_on_disk(path) == 0 and accountant.num_releases == 0
    lock.unlink()
    assert accountant.record_round().num_releases == 1


def test_a_symlink_or_folder_at_the_lock_path_is_refused_and_its_target_untouched(
    plan: NoisePlan, tmp_path: Path, lock_kind: str
) -> None:
    path = tmp_path / "budget.json"
    accountant = PrivacyAccountant(plan, path)
    target = tmp_path / "precious.txt"
    target.write_text("keep\n")
    lock = tmp_path / ".budget.json.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(target)
    with pytest.raises(ConfigurationError, match="lock"):
        accountant.record_round()
    assert target.read_text() == "keep\n" and _released_on_disk(path) == 0
    lock.unlink()
    lock.mkdir()
    with pytest.raises(ConfigurationError, match="lock"):
        accountant.record_round()
    assert _released_on_disk(path) == 0


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: "",  # emptied
        lambda text: "not json",
        lambda text: text.replace('"released": 1', '"released": "1"'),  # wrong type
        lambda text: text.replace('"released": 1', '"released": 1.0'),  # equal to 1 in Python
        lambda text: text.replace('"released": 1', '"released": true'),  # so is true
    ],
    ids=["truncated", "empty", "not-json", "string-count", "float-count", "bool-count"],
)
def test_a_state_file_damaged_during_the_run_is_refused_and_never_overwritten(
    plan: NoisePlan, tmp_path: Path, damage: Callable[[str], str]
) -> None:
    path = tmp_path / "budget.json"
    accountant = PrivacyAccountant(plan, path)
    accountant.record_round()
    damaged = damage(path.read_text())
    path.write_text(damaged)
    with pytest.raises(DecodeError, match="accountant"):
        accountant.record_round()
    assert path.read_text() == damaged and accountant.num_releases == 1
    with pytest.raises(DecodeError):
        PrivacyAccountant(plan, path)
    assert path.read_text() == damaged


def test_a_state_file_the_system_cannot_lock_is_refused_with_the_librarys_error_nothing_written(
    plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: one charge on file, then a file system without flock support (NFS without a lock
    # daemon: ENOLCK). A raw OSError escaped the accountant, past the node's mod and the server.
    path = tmp_path / "accountant.json"
    accountant = PrivacyAccountant(plan, path)
    accountant.record_round(1)
    before = path.read_bytes()

    def flock(descriptor: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    assert state_file._FCNTL is not None
    fake = types.SimpleNamespace(flock=flock, LOCK_EX=state_file._FCNTL.LOCK_EX, LOCK_NB=state_file._FCNTL.LOCK_NB)
    monkeypatch.setattr(state_file, "_FCNTL", fake)
    # Execute / Assert: the library's error naming the file and the cause; the file unchanged
    with pytest.raises(ConfigurationError, match=r"accountant\.json.*cannot be locked.*No locks available"):
        accountant.record_round(2)
    assert path.read_bytes() == before


def test_a_held_lock_whose_holder_cannot_be_read_is_still_the_locked_refusal(
    plan: NoisePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the lock held, and the lock file's recorded holder unreadable (an I/O error): the
    # refusal read it with os.pread inside its own error handler, so a bare OSError escaped instead
    path = tmp_path / "accountant.json"
    accountant = PrivacyAccountant(plan, path)

    def pread(descriptor: int, length: int, offset: int) -> bytes:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    # Execute / Assert
    with state_file.locked(path):
        monkeypatch.setattr(os, "pread", pread)
        with pytest.raises(StateLockedError, match="its holder is unknown"):
            accountant.record_round(1)
    assert accountant.num_releases == 0
