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

import errno
import os
import stat
from pathlib import Path

import pytest

import secagg.paillier as paillier
from secagg.errors import ConfigurationError, ReplayError
from secagg.paillier import NO_OWN_UPLOAD, AnswerJournal, DecryptingParty, answer_journal
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
    real_write = answer_journal.write_new_file

    def lose_the_race(path: str, what: str, data: bytes) -> None:
        real_write(path, what, data)  # the other process's entry
        _failing_folder_sync(monkeypatch)
        raise ConfigurationError(f"refusing to overwrite {path}")

    monkeypatch.setattr(answer_journal, "write_new_file", lose_the_race)
    party = DecryptingParty(PARAMS, SHARES[HOLDER - 1], own_upload=NO_OWN_UPLOAD, journal=AnswerJournal(folder))
    with pytest.raises(ConfigurationError, match="cannot be synced"):
        party.respond(_request(HOLDER, EVERY))
