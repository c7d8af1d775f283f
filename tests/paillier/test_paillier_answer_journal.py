"""A decrypting party's answer journal: its one answer per session survives a restart.

``DecryptingParty`` keeps the aggregate it answered in the object only; one rebuilt for the session
(a restarted outside holder, a single key holder, a service that builds a party per request) has
forgotten it and answers a second sum, which at the stated c leaks an update
(test_paillier_outside_holder.py, the last test). Given an :class:`AnswerJournal`, the party writes
(session id, party, aggregate digest) to a 0600 file, synced, before the partial decryption
leaves, and a party built again on that journal refuses any other aggregate of the session, while
answering the same one again. A journal entry it cannot trust (corrupt, truncated, another
session's, too large, a link, readable by others) is the library's error: the party answers nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from secagg.errors import ConfigurationError, ConfigurationTypeError, DecodeError, ReplayError, SecAggError
from secagg.paillier import (
    IN_MEMORY_ONLY,
    NO_OWN_UPLOAD,
    AnswerJournal,
    Client,
    DecryptingParty,
    SessionParameters,
    SlotLayout,
    _decrypting_party,
)
from secagg.paillier.messages import DecryptionRequest, EncryptedVector
from secagg.paillier.packing import unpack
from secagg.paillier.threshold import combine_partials
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import IDENTITIES, identity_keys, threshold_material

LENGTH = 4
ROSTER = (1, 2, 3, 4, 5, 6)
HOLDER = 7  # holds share 7 of the 5-of-7 key, sends no upload: an outside holder
EVERY, WITHOUT_VICTIM = ROSTER, (2, 3, 4, 5, 6)


def _session() -> tuple[SessionParameters, dict[int, EncryptedVector], dict[int, Any]]:
    material = threshold_material(256, 7, 5)
    params = SessionParameters(
        public=material.public, layout=SlotLayout(16, len(ROSTER), 256), vector_length=LENGTH, roster=ROSTER,
        min_contributors=4, identity_keys=identity_keys(ROSTER), context=bytes(32),
    )
    inputs = {k: np.arange(LENGTH, dtype=np.int64) * (k + 3) - 7 * k for k in ROSTER}
    uploads = {
        k: Client(params, k, IDENTITIES[k], random_bytes=InsecureDeterministicRandom(50 + k)).upload(inputs[k])
        for k in ROSTER
    }
    return params, uploads, inputs


PARAMS, UPLOADS, INPUTS = _session()


def _party(holder: int, journal: AnswerJournal | None = None) -> DecryptingParty:
    honest = holder in (1, 2, 3, 4)  # 5 and 6 collude; 7 holds a share, no upload
    own = UPLOADS[holder].digest if honest else NO_OWN_UPLOAD
    share = threshold_material(256, 7, 5).shares[holder - 1]
    return DecryptingParty(PARAMS, share, own_upload=own, journal=IN_MEMORY_ONLY if journal is None else journal)


def _request(holder: int, subset: tuple[int, ...]) -> DecryptionRequest:
    return DecryptionRequest(PARAMS.session_id, holder, tuple(UPLOADS[k] for k in subset))


def _partials(party: DecryptingParty, subset: tuple[int, ...]) -> list[Any]:
    return PARAMS.public.key.parse_ciphertexts(party.respond(_request(party.index, subset)).values, "test")


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "journal"
    folder.mkdir(mode=0o700)
    return folder


def _entry(folder: Path) -> Path:
    (entry,) = folder.iterdir()
    return entry


def test_a_holder_rebuilt_on_its_journal_refuses_a_second_sum_and_the_update_stays_hidden(tmp_path: Path) -> None:
    """The last test of test_paillier_outside_holder.py with the journal: holder 7, rebuilt (a restart)
    on the same journal folder, refuses the sum without hospital 1, so that sum gets 4 answers of t = 5."""
    folder = _folder(tmp_path)
    first = {h: _partials(_party(h), EVERY) for h in (1, 2, 5, 6)}
    first[HOLDER] = _partials(_party(HOLDER, AnswerJournal(folder)), EVERY)
    total = unpack(combine_partials(PARAMS.public, first), PARAMS.layout, LENGTH, len(EVERY))
    assert np.array_equal(total, sum(INPUTS.values()))
    rebuilt = _party(HOLDER, AnswerJournal(folder))  # a new process: nothing in memory
    with pytest.raises(ReplayError, match="already answered a different aggregate"):
        rebuilt.respond(_request(HOLDER, WITHOUT_VICTIM))
    second = {h: _partials(_party(h), WITHOUT_VICTIM) for h in (3, 4, 5, 6)}
    assert len(second) < PARAMS.public.threshold  # the second sum is never decrypted


def test_a_rebuilt_holder_answers_the_same_sum_again(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    first = _party(HOLDER, AnswerJournal(folder)).respond(_request(HOLDER, EVERY))
    again = _party(HOLDER, AnswerJournal(folder)).respond(_request(HOLDER, EVERY))
    assert (again.aggregate_digest, again.values) == (first.aggregate_digest, first.values)


def test_the_entry_is_written_synced_and_0600_before_the_answer_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the journal write and before the answer: the session stays locked to that sum."""
    folder = _folder(tmp_path)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda descriptor: (synced.append(descriptor), real_fsync(descriptor))[1])

    def crash(*args: object, **kwargs: object) -> None:
        assert synced and len(list(folder.iterdir())) == 1  # written and synced first
        raise KeyboardInterrupt  # the process dies here

    monkeypatch.setattr(_decrypting_party, "partial_decrypt", crash)
    with pytest.raises(KeyboardInterrupt):
        _party(HOLDER, AnswerJournal(folder)).respond(_request(HOLDER, EVERY))
    monkeypatch.undo()
    assert _entry(folder).stat().st_mode & 0o777 == 0o600
    with pytest.raises(ReplayError, match="already answered a different aggregate"):
        _party(HOLDER, AnswerJournal(folder)).respond(_request(HOLDER, WITHOUT_VICTIM))
    assert _party(HOLDER, AnswerJournal(folder)).respond(_request(HOLDER, EVERY)).party == HOLDER


def test_a_refused_request_writes_no_entry(tmp_path: Path) -> None:
    """Too few uploads: refused before the journal, which stays free for the session's real sum."""
    folder = _folder(tmp_path)
    with pytest.raises(SecAggError, match="at least 4 are required"):
        _party(HOLDER, AnswerJournal(folder)).respond(_request(HOLDER, (1, 2, 3)))
    assert list(folder.iterdir()) == []
    _party(HOLDER, AnswerJournal(folder)).respond(_request(HOLDER, WITHOUT_VICTIM))


def test_parties_sharing_a_folder_keep_their_own_entries(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    _party(HOLDER, AnswerJournal(folder)).respond(_request(HOLDER, EVERY))
    _party(5, AnswerJournal(folder)).respond(_request(5, WITHOUT_VICTIM))  # party 5's own entry
    assert len(list(folder.iterdir())) == 2


def _truncate(entry: Path, folder: Path) -> None:
    entry.write_bytes(entry.read_bytes()[:-1])


def _flip(entry: Path, folder: Path) -> None:
    data = bytearray(entry.read_bytes())
    data[-40] ^= 1  # a bit of the digest: the checksum no longer matches
    entry.write_bytes(bytes(data))


def _grow(entry: Path, folder: Path) -> None:
    entry.write_bytes(entry.read_bytes() + bytes(1 << 20))


def _empty(entry: Path, folder: Path) -> None:
    entry.write_bytes(b"")


def _foreign(entry: Path, folder: Path) -> None:
    """Party 5's entry (well formed, checksum and all) copied over party 7's."""
    _party(5, AnswerJournal(folder)).respond(_request(5, EVERY))
    (other,) = (e for e in folder.iterdir() if e != entry)
    entry.write_bytes(other.read_bytes())


def _pickle(entry: Path, folder: Path) -> None:
    entry.write_bytes(b"\x80\x04\x95" + bytes(200))


def _link(entry: Path, folder: Path) -> None:
    target = folder / "elsewhere"
    target.write_bytes(entry.read_bytes())
    target.chmod(0o600)
    entry.unlink()
    entry.symlink_to(target)


def _readable(entry: Path, folder: Path) -> None:
    entry.chmod(0o644)


def _a_folder(entry: Path, folder: Path) -> None:
    entry.unlink()
    entry.mkdir()


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (_truncate, DecodeError), (_flip, DecodeError), (_grow, DecodeError), (_empty, DecodeError),
        (_foreign, DecodeError), (_pickle, DecodeError), (_link, ConfigurationError),
        (_readable, ConfigurationError), (_a_folder, ConfigurationError),
    ],
)
def test_an_entry_it_cannot_trust_fails_closed(damage: Any, error: type[SecAggError], tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    _party(HOLDER, AnswerJournal(folder)).respond(_request(HOLDER, EVERY))
    damage(_entry(folder), folder)
    for subset in (EVERY, WITHOUT_VICTIM):  # neither the recorded sum nor another is answered
        with pytest.raises(error):
            _party(HOLDER, AnswerJournal(folder)).respond(_request(HOLDER, subset))


def test_a_folder_others_may_write_or_none_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    folder.chmod(0o777)
    with pytest.raises(ConfigurationError, match="chmod go-w"):
        AnswerJournal(folder)
    with pytest.raises(ConfigurationError, match="does not exist"):
        AnswerJournal(tmp_path / "missing")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ConfigurationError, match="not a folder"):
        AnswerJournal(tmp_path / "file")


def test_a_folder_opened_to_others_after_construction_is_refused_at_the_answer(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    party = _party(HOLDER, AnswerJournal(folder))
    folder.chmod(0o777)
    with pytest.raises(ConfigurationError, match="chmod go-w"):
        party.respond(_request(HOLDER, EVERY))


def test_a_journal_folder_removed_after_construction_answers_nothing(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    party = _party(HOLDER, AnswerJournal(folder))
    folder.rmdir()
    with pytest.raises(ConfigurationError):
        party.respond(_request(HOLDER, EVERY))


def test_wrong_types_are_refused_by_name(tmp_path: Path) -> None:
    share = threshold_material(256, 7, 5).shares[HOLDER - 1]
    with pytest.raises(ConfigurationTypeError, match="journal"):
        DecryptingParty(PARAMS, share, own_upload=NO_OWN_UPLOAD, journal=str(tmp_path))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationTypeError):
        AnswerJournal(3)  # type: ignore[arg-type]
    journal = AnswerJournal(_folder(tmp_path))
    with pytest.raises(ConfigurationError):
        journal.record(b"short", HOLDER, bytes(32))
    with pytest.raises(ConfigurationError):
        journal.record(PARAMS.session_id, HOLDER, bytes(31))
