"""A party that sent no upload keeps its one answer across restarts by default.

``own_upload=NO_OWN_UPLOAD`` gives up the check that a sum holds the party's own upload, and with it
the upload record that fails a restarted hospital closed: such a party's only memory of its one
answer per session is its journal. So it takes one, ``journal=AnswerJournal(folder)``, or says by
name that its answer lives in this object only, ``journal=IN_MEMORY_ONLY`` (a party built once per
session, e.g. ``run_session``'s single key holder): leaving ``journal`` out, or None, is refused.
A hospital that names its own upload needs no journal (a restart without its upload record
answers nothing).

The journal also syncs its folder before the answer leaves when it *finds* the entry (written by a
process that died before syncing the folder, or by a concurrent process that has not synced it
yet): else a crash of the machine could drop the entry after the answer left.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

import pytest

import secagg.paillier as paillier
from secagg.errors import ConfigurationError, ReplayError
from secagg.paillier import NO_OWN_UPLOAD, AnswerJournal, DecryptingParty
from secagg.paillier.messages import aggregate_digest

from .helpers import threshold_material
from .test_paillier_answer_journal import EVERY, HOLDER, PARAMS, UPLOADS, WITHOUT_VICTIM, _folder, _request

SHARES = threshold_material(256, 7, 5).shares


@pytest.mark.parametrize("journal", ["left out", None])
def test_no_own_upload_without_a_journal_is_refused_naming_the_opt_out(journal: object) -> None:
    with pytest.raises(ConfigurationError, match="IN_MEMORY_ONLY") as refusal:
        if journal == "left out":
            DecryptingParty(PARAMS, SHARES[HOLDER - 1], own_upload=NO_OWN_UPLOAD)
        else:
            DecryptingParty(PARAMS, SHARES[HOLDER - 1], own_upload=NO_OWN_UPLOAD, journal=None)
    assert "AnswerJournal" in str(refusal.value)


def test_in_memory_only_by_name_answers_and_forgets_when_rebuilt() -> None:
    """What the opt-out gives up: a party built again for the session answers a second sum."""
    def build() -> DecryptingParty:
        return DecryptingParty(
            PARAMS, SHARES[HOLDER - 1], own_upload=NO_OWN_UPLOAD, journal=paillier.IN_MEMORY_ONLY  # type: ignore[attr-defined]
        )

    party = build()
    party.respond(_request(HOLDER, EVERY))
    with pytest.raises(ReplayError):  # the same object remembers
        party.respond(_request(HOLDER, WITHOUT_VICTIM))
    assert build().respond(_request(HOLDER, WITHOUT_VICTIM)).party == HOLDER  # a rebuilt one has forgotten


def test_a_hospital_naming_its_own_upload_needs_no_journal() -> None:
    party = DecryptingParty(PARAMS, SHARES[0], own_upload=UPLOADS[1].digest)
    assert party.respond(_request(1, EVERY)).party == 1
    also = DecryptingParty(PARAMS, SHARES[0], own_upload=UPLOADS[1].digest, journal=paillier.IN_MEMORY_ONLY)  # type: ignore[attr-defined]
    assert also.respond(_request(1, EVERY)).party == 1


def _failing_folder_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        if stat.S_ISDIR(os.fstat(descriptor).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)


def test_an_entry_found_written_is_synced_before_the_same_answer_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry was written by a process that died before syncing the folder: the retry syncs it."""
    folder = _folder(tmp_path)
    digest = aggregate_digest(PARAMS.session_id, _request(HOLDER, EVERY).uploads)
    AnswerJournal(folder).record(PARAMS.session_id, HOLDER, digest)
    _failing_folder_sync(monkeypatch)
    party = DecryptingParty(PARAMS, SHARES[HOLDER - 1], own_upload=NO_OWN_UPLOAD, journal=AnswerJournal(folder))
    with pytest.raises(ConfigurationError, match="cannot be synced"):
        party.respond(_request(HOLDER, EVERY))


def test_an_entry_a_concurrent_process_wrote_is_synced_before_the_same_answer_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process wins the O_EXCL race with the same digest and has not synced the folder yet."""
    folder = _folder(tmp_path)
    digest = aggregate_digest(PARAMS.session_id, _request(HOLDER, EVERY).uploads)
    real_link = os.link
    raced: list[bool] = []

    def lose_the_race(source: str, target: str, *args: object, **kwargs: object) -> None:
        if not raced:
            raced.append(True)
            AnswerJournal(folder).record(PARAMS.session_id, HOLDER, digest)  # the other process's entry
            _failing_folder_sync(monkeypatch)  # ... whose folder sync has not happened yet
        real_link(source, target, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", lose_the_race)
    party = DecryptingParty(PARAMS, SHARES[HOLDER - 1], own_upload=NO_OWN_UPLOAD, journal=AnswerJournal(folder))
    with pytest.raises(ConfigurationError, match="cannot be synced"):
        party.respond(_request(HOLDER, EVERY))


def test_an_entry_another_process_answered_on_is_never_removed_by_a_failing_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes get the same request: the first links the entry, the second reads it and answers,
    then the first fails (its temporary name cannot be removed). The entry must stay: removing it (as
    the key-file writer removes what it wrote) would let a third request of another sum be answered."""
    folder = _folder(tmp_path)
    digest = aggregate_digest(PARAMS.session_id, _request(HOLDER, EVERY).uploads)
    real_unlink = os.unlink
    second: list[bool] = []

    def unlink(path: str, *args: object, **kwargs: object) -> None:
        if os.path.basename(os.fspath(path)).startswith(".") and not second:  # the first's temporary name
            second.append(True)
            AnswerJournal(folder).record(PARAMS.session_id, HOLDER, digest)  # the second process: answers
            raise OSError(errno.EIO, "Input/output error")
        real_unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "unlink", unlink)
    with contextlib.suppress(ConfigurationError):  # it may refuse its own answer; the entry is what matters
        AnswerJournal(folder).record(PARAMS.session_id, HOLDER, digest)  # the first process
    monkeypatch.undo()
    assert second
    assert AnswerJournal(folder).answered(PARAMS.session_id, HOLDER) == digest
    party = DecryptingParty(PARAMS, SHARES[HOLDER - 1], own_upload=NO_OWN_UPLOAD, journal=AnswerJournal(folder))
    with pytest.raises(ReplayError):
        party.respond(_request(HOLDER, WITHOUT_VICTIM))


def test_an_entry_is_written_where_the_file_system_has_no_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    monkeypatch.setattr(os, "link", no_link)
    folder = _folder(tmp_path)
    party = DecryptingParty(PARAMS, SHARES[HOLDER - 1], own_upload=NO_OWN_UPLOAD, journal=AnswerJournal(folder))
    party.respond(_request(HOLDER, EVERY))
    (entry,) = folder.iterdir()  # no temporary name left
    assert entry.name.endswith(f".{HOLDER}.answer") and entry.stat().st_mode & 0o777 == 0o600
    monkeypatch.undo()
    with pytest.raises(ReplayError):
        DecryptingParty(
            PARAMS, SHARES[HOLDER - 1], own_upload=NO_OWN_UPLOAD, journal=AnswerJournal(folder)
        ).respond(_request(HOLDER, WITHOUT_VICTIM))


def test_a_failed_entry_write_answers_nothing_and_is_the_librarys_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def full_disk(descriptor: int) -> None:
        if not stat.S_ISDIR(os.fstat(descriptor).st_mode):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", full_disk)
    folder = _folder(tmp_path)
    party = DecryptingParty(PARAMS, SHARES[HOLDER - 1], own_upload=NO_OWN_UPLOAD, journal=AnswerJournal(folder))
    with pytest.raises(ConfigurationError, match="nothing is answered"):
        party.respond(_request(HOLDER, EVERY))
    assert list(folder.iterdir()) == []  # the temporary file removed, no entry
