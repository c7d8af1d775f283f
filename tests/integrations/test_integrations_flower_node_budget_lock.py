"""A node whose budget file another process holds fails its contribution promptly, not at the
server's timeout.

The node charges its ``dp-state-file`` under an exclusive ``flock`` of the file's directory. It
waited for that lock without bound: a second process of the node stuck while charging (stopped,
hung on a slow disk) hung this one too, and with it the round, until the server's timeout. It
now tries the lock without blocking, a bounded number of times
(:data:`~secagg.integrations.flower.node_budget.LOCK_ATTEMPTS`, pausing between attempts), then
refuses the contribution with :class:`~secagg.errors.StateLockedError` naming the file and that
another process holds it, nothing charged (as the server skips a round whose state file is
locked). The lock is held here by a second open of the directory (``flock`` locks belong to an
open file, so it is another holder to the node as another process is); no test waits on a clock:
the pauses are recorded, never slept, and a blocking ``flock`` fails the test instead of hanging.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")
fcntl = pytest.importorskip("fcntl")

from flwr.app import Context, RecordDict  # noqa: E402

import secagg.integrations.flower.node_budget as node_budget  # noqa: E402
from secagg.dp import DPConfig, calibrate  # noqa: E402
from secagg.dp.calibration import NoisePlan  # noqa: E402
from secagg.errors import ConfigurationError, ConfigurationTypeError, StateLockedError  # noqa: E402
from secagg.integrations.flower.node_budget import charge_node_budget, check_node_budget  # noqa: E402


@pytest.fixture(scope="module")
def plan() -> NoisePlan:
    config = DPConfig(epsilon=2.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=2)
    return calibrate(config, num_clients=5, scale=256.0, dimension=17)


def context() -> Context:
    return Context(1, 7, {}, RecordDict(), {})


def released(path: Path) -> int:
    count = json.loads(path.read_text())["released"]
    assert isinstance(count, int)
    return count


@pytest.fixture
def never_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blocking ``flock`` of a lock someone else holds fails the test (the old node waited there)."""
    real = fcntl.flock

    def flock(descriptor: int, operation: int) -> None:
        if operation & fcntl.LOCK_EX and not operation & fcntl.LOCK_NB:
            try:
                real(descriptor, operation | fcntl.LOCK_NB)
            except BlockingIOError:
                pytest.fail("the node blocked waiting for a budget-file lock another process holds")
            return
        real(descriptor, operation)

    monkeypatch.setattr(fcntl, "flock", flock)


class HeldLock:
    """The directory lock, held by another open of the directory until :meth:`release`."""

    def __init__(self, directory: Path) -> None:
        self.descriptor: int | None = os.open(directory, os.O_RDONLY)
        fcntl.flock(self.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None


class Pauses:
    """The node's pauses between attempts, handed to the charge (``pause=``): recorded, never slept,
    no global patched; ``then(n)`` runs at the n-th."""

    def __init__(self, then: Callable[[int], None] = lambda _: None) -> None:
        self.seconds: list[float] = []
        self.then = then

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        self.then(len(self.seconds))


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"))


@pytest.mark.usefixtures("never_block")
def test_a_budget_file_another_process_holds_refuses_the_contribution_promptly_nothing_charged(
    tmp_path: Path, plan: NoisePlan
) -> None:
    # Prepare: the node charged once; another process now holds the lock and never lets go
    path = tmp_path / "hospital-0.dp-budget.json"
    charge_node_budget(context(), plan, str(path))
    held = HeldLock(tmp_path)
    pauses = Pauses()
    try:
        # Execute / Assert: the setup check needs no lock; the charge is refused, naming the file,
        # and closes the directory it opened for the lock (no descriptor left per refused charge)
        check_node_budget(context(), plan, str(path))
        before = open_descriptors()
        with pytest.raises(StateLockedError) as info:
            charge_node_budget(context(), plan, str(path), pause=pauses)
        assert open_descriptors() == before
    finally:
        held.release()
    message = str(info.value)
    assert isinstance(info.value, ConfigurationError)
    assert f"dp-state-file {path}" in message and "another process holds" in message, message
    assert "nothing was charged" in message, message
    assert released(path) == 1  # nothing charged
    # A bounded wait: every attempt but the last followed by one pause, none slept here
    assert len(pauses.seconds) == node_budget.LOCK_ATTEMPTS - 1
    assert all(seconds == node_budget.LOCK_PAUSE_S for seconds in pauses.seconds)
    assert node_budget.LOCK_ATTEMPTS * node_budget.LOCK_PAUSE_S <= 10.0  # short, against a server's timeout
    # Released: the next contribution is charged
    charge_node_budget(context(), plan, str(path))
    assert released(path) == 2


@pytest.mark.usefixtures("never_block")
def test_a_lock_released_by_the_last_attempt_is_charged_once(tmp_path: Path, plan: NoisePlan) -> None:
    # Prepare: the other process lets go during the last pause (the bound: one pause later is refused,
    # as above)
    path = tmp_path / "hospital-0.dp-budget.json"
    held = HeldLock(tmp_path)
    last = node_budget.LOCK_ATTEMPTS - 1
    pauses = Pauses(lambda n: held.release() if n == last else None)
    # Execute
    try:
        charge_node_budget(context(), plan, str(path), pause=pauses)
    finally:
        held.release()
    # Assert: charged once, at the last attempt
    assert len(pauses.seconds) == last
    assert released(path) == 1


def test_a_pause_that_cannot_be_called_is_refused_before_anything_is_charged(tmp_path: Path, plan: NoisePlan) -> None:
    path = tmp_path / "hospital-0.dp-budget.json"
    with pytest.raises(ConfigurationTypeError, match="pause must be callable"):
        charge_node_budget(context(), plan, str(path), pause=0.1)  # type: ignore[arg-type]
    assert not path.exists()


def test_a_directory_the_system_cannot_lock_is_refused_with_the_librarys_error_nothing_charged(
    tmp_path: Path, plan: NoisePlan, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a file system without flock support (NFS without a lock daemon: ENOLCK). The node's mod
    # turns only the library's errors into an error reply; a raw OSError escaped it.
    path = tmp_path / "hospital-0.dp-budget.json"

    def flock(descriptor: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", flock)
    before = open_descriptors()
    # Execute / Assert: refused, naming the file and the cause; the directory descriptor is closed
    with pytest.raises(ConfigurationError, match=r"cannot lock the directory of dp-state-file .*No locks available"):
        charge_node_budget(context(), plan, str(path), pause=Pauses())
    assert open_descriptors() == before
    assert not path.exists()  # nothing charged
