"""A decrypting party's answer journal: its one answer per session, kept across restarts.

A :class:`~secagg.paillier.DecryptingParty` answers at most one aggregate per session, but keeps that
answer in the object only. Given an :class:`AnswerJournal` (``DecryptingParty(..., journal=...)``),
it records (session id, party, aggregate digest) in the journal's folder *before* its partial
decryption leaves, and a party built again on the same folder (a restarted holder, a service that
builds one per request) refuses any other aggregate of that session
(:class:`~secagg.errors.ReplayError`) while answering the same one again (an idempotent retry).

One file per (session, party), ``<session id in hex>.<party>.answer``, written once and never
replaced: created mode 0600 as the key-file writer creates a key (:func:`_write_entry`: ``O_EXCL``,
never through a link, synced before its name exists, into a folder every reader accepts) but, unlike a
key, never removed once under its name, even by a write that then fails (another process may have
read it and answered); then the folder synced, also when the entry was found already written (a
failure is a ConfigurationError: the answer does not leave). An entry is read back through
:func:`secagg._files.read_regular_file` (a regular file, not a link, of this user or root, 0600, its
folders writable by their owner only, read bounded to its fixed size) and parsed strictly: a fixed
label, the session id, the party, the digest and a SHA-256 checksum of them, all of a fixed length.
An entry that is truncated, too large, damaged, another session's or party's (copied over), or any
other file under its name is a :class:`~secagg.errors.DecodeError`; one at a link, a folder, readable by others
or reached through a folder others may write is a :class:`~secagg.errors.ConfigurationError`.
Either way the party answers nothing for that session (fail closed) until an operator looks at it:
deleting an entry gives the server a second answer of that session, so never do so for a session
that may still be asked (docs/paillier.md, "A share holder outside the roster").
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import os
import stat

from secagg import _files
from secagg._file_kinds import _shown
from secagg._new_files import _link_or_create, _write_synced
from secagg._validate import require_bytes, require_int
from secagg.errors import ConfigurationError, ConfigurationTypeError, DecodeError, ReplayError
from secagg.paillier.messages import DIGEST_SIZE, SESSION_ID_SIZE

__all__ = ["ENTRY_SIZE", "IN_MEMORY_ONLY", "AnswerJournal", "InMemoryOnly"]

_LABEL = b"secagg/v1/paillier-answer-journal\n"
_PARTY_SIZE = 4
_BODY_SIZE = len(_LABEL) + SESSION_ID_SIZE + _PARTY_SIZE + DIGEST_SIZE
ENTRY_SIZE = _BODY_SIZE + hashlib.sha256().digest_size
"""The exact size of a journal entry, in bytes: label, session id, u32 party, digest, checksum."""
_WHAT = "answer journal entry"
_MODE = 0o600


class InMemoryOnly(enum.Enum):
    """The type of :data:`IN_MEMORY_ONLY`, its one value."""

    IN_MEMORY_ONLY = "in memory only"


IN_MEMORY_ONLY = InMemoryOnly.IN_MEMORY_ONLY
"""``DecryptingParty(..., journal=IN_MEMORY_ONLY)``: the party keeps its one answer per session in the
object only, by name. A party that sent no upload (``own_upload=NO_OWN_UPLOAD``) must pass it or an
:class:`AnswerJournal`: it gives up the answer's survival of a restart, so the caller promises that this
object is the only party ever built for this key share (or key) in the session (as ``run_session``'s
single key holder, built once for its one in-memory session). A party built again for the session
answers a second aggregate: for an outside share holder c is one less, for the single key holder the
server alone decrypts two sums that differ in one upload (docs/paillier.md, "The answer journal")."""


class AnswerJournal:
    """The folder where decrypting parties record the one aggregate they answered in each session.

    ``folder`` must exist, be a folder, and it and every folder above it must be writable by their
    owner only and belong to this user or root (as for key files); checked here (ConfigurationError
    naming the folder and the fix) and again at every read and write. Create it with mode 0700 and
    keep it as long as a session it records may still be asked; several parties (distinct share
    indices) may share one folder.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        if not isinstance(folder, (str, os.PathLike)) or not isinstance(os.fspath(folder), str):
            raise ConfigurationTypeError(
                f"the answer journal's folder must be a str or os.PathLike path, got {type(folder).__name__}"
            )
        text = os.fspath(folder)
        if text == "":
            raise ConfigurationError("no answer journal folder given (an empty path)")
        self.folder = text
        self._check_folder()

    def __repr__(self) -> str:
        return f"AnswerJournal({self.folder!r})"

    def _check_folder(self) -> None:
        """ConfigurationError unless the folder exists, is a folder and passes the folder checks."""
        shown = _shown(self.folder)
        try:
            info = os.stat(self.folder)
        except FileNotFoundError as exc:
            raise ConfigurationError(
                f"the answer journal folder {shown} does not exist; create it (mode 0700)"
            ) from exc
        except (OSError, ValueError) as exc:  # ValueError: a path holding a NUL byte
            raise ConfigurationError(
                f"cannot use the answer journal folder {shown}: {getattr(exc, 'strerror', None) or exc}"
            ) from exc
        if not stat.S_ISDIR(info.st_mode):
            raise ConfigurationError(f"the answer journal folder {shown} is not a folder")
        try:
            # The trailing "." makes the folder itself one of the checked folders, not the "file".
            _files.check_folders(os.path.join(self.folder, os.curdir), "answer journal", shown=shown)
        except OSError as exc:
            raise ConfigurationError(f"cannot check the answer journal folder {shown}: {exc.strerror or exc}") from exc

    def path(self, session_id: bytes, party: int) -> str:
        """The file that holds ``party``'s answer in the session ``session_id``."""
        session_id, party = _checked(session_id, party)
        return os.path.join(self.folder, f"{session_id.hex()}.{party}.answer")

    def answered(self, session_id: bytes, party: int) -> bytes | None:
        """The aggregate digest ``party`` answered in the session, None if the journal holds none;
        DecodeError or ConfigurationError (module docstring) for an entry it cannot trust."""
        session_id, party = _checked(session_id, party)
        path = self.path(session_id, party)
        try:
            data = _files.read_regular_file(
                path, _WHAT, ENTRY_SIZE, forbidden_mode=_files.PRIVATE,
                advice="an answer journal entry is written 0600: find out who changed it",
                follow_symlinks=False, too_large=DecodeError,
            )
        except ConfigurationError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                self._check_folder()  # no entry, but only in a folder that is still there and still private
                return None
            raise
        return _parse(data, session_id, party, _shown(path))

    def record(self, session_id: bytes, party: int, digest: bytes) -> None:
        """Record that ``party`` answers the aggregate ``digest`` in the session, durably (the entry
        and its folder synced) before returning; if it is already recorded, the folder is synced again
        (whoever wrote it may have died, or still be running, before syncing it).
        ReplayError if another digest is recorded for them (by this process or any other);
        ConfigurationError if the entry cannot be written and synced (the answer must not leave)."""
        session_id, party = _checked(session_id, party)
        digest = require_bytes("digest", digest, DIGEST_SIZE)
        recorded = self.answered(session_id, party)  # None only after the folder checks passed
        if recorded is None:
            path = self.path(session_id, party)
            try:
                _write_entry(path, _entry(session_id, party, digest))
                recorded = digest
            except FileExistsError:
                recorded = self.answered(session_id, party)  # another process wrote it meanwhile
                if recorded is None:
                    raise ConfigurationError(
                        f"the {_WHAT} {_shown(path)} appeared and vanished during the write: find out who "
                        "removes entries; nothing is answered"
                    ) from None
            except (OSError, ConfigurationError) as exc:
                raise ConfigurationError(
                    f"cannot write the {_WHAT} {_shown(path)}: {getattr(exc, 'strerror', None) or exc}; "
                    "nothing is answered (an entry left under its name, if any, is kept: it answers nothing for its "
                    "session until an operator looks at it)"
                ) from exc
        if recorded != digest:
            raise ReplayError(
                f"party {party}: already answered a different aggregate in this session "
                f"(the answer journal {_shown(self.folder)} records it)"
            )
        # Synced on every path, the entry found too: its writer (a process that died, or one racing this
        # one) may not have synced the folder yet, and a crash must not drop an entry whose answer left.
        try:
            _files.sync_folder(self.folder, must=True)
        except OSError as exc:
            raise ConfigurationError(
                f"the answer journal folder {_shown(self.folder)} cannot be synced "
                f"({exc.strerror or exc}): the entry may not survive a crash, so nothing is answered"
            ) from exc


def _write_entry(path: str, data: bytes) -> None:
    """Create the entry ``path`` holding ``data``, 0600 and synced, as the key-file writer creates a key
    (:func:`secagg._new_files.write_new_file`: a temporary file beside it, ``O_EXCL``, never through a
    link, its folders checked again once it exists, synced, then hard-linked to ``path``; without hard
    links, ``path`` created ``O_EXCL`` and then written and synced). FileExistsError if anything is
    at ``path``. Unlike a key, an entry once under its name is never removed, even if this call then
    fails: another process may have read it and answered, and a removed entry would let a second
    aggregate be answered; one left truncated fails its session closed. A temporary name left behind
    (its removal failed, or a crash) holds no secret and is never read."""
    if os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, "exists", path)
    descriptor, temporary = _files._new_temporary(os.path.dirname(path), os.path.basename(path), _MODE)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            _files.check_folders(temporary, _WHAT, shown=_shown(path))
            _write_synced(handle, descriptor, data, _MODE)  # exactly 0600 whatever the umask
        _link_or_create(temporary, path, data, _MODE, [])  # the entry, once named, is never removed
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _checked(session_id: bytes, party: int) -> tuple[bytes, int]:
    session_id = require_bytes("session_id", session_id, SESSION_ID_SIZE)
    return session_id, require_int("party", party, 1, (1 << (8 * _PARTY_SIZE)) - 1)


def _entry(session_id: bytes, party: int, digest: bytes) -> bytes:
    body = _LABEL + session_id + party.to_bytes(_PARTY_SIZE, "big") + digest
    return body + hashlib.sha256(body).digest()


def _parse(data: bytes, session_id: bytes, party: int, shown: str) -> bytes:
    """The digest of the entry ``data`` of ``party`` in ``session_id``; DecodeError otherwise."""
    if len(data) != ENTRY_SIZE:
        raise DecodeError(
            f"the {_WHAT} {shown} holds {len(data)} bytes, not {ENTRY_SIZE} (truncated or not an entry); "
            "nothing is answered in its session"
        )
    body, checksum = data[:_BODY_SIZE], data[_BODY_SIZE:]
    if not body.startswith(_LABEL) or hashlib.sha256(body).digest() != checksum:
        raise DecodeError(f"the {_WHAT} {shown} is damaged or not an entry; nothing is answered in its session")
    if body[len(_LABEL) : len(_LABEL) + SESSION_ID_SIZE + _PARTY_SIZE] != session_id + party.to_bytes(
        _PARTY_SIZE, "big"
    ):
        raise DecodeError(
            f"the {_WHAT} {shown} records another session or party (copied over?); nothing is answered in its session"
        )
    return body[-DIGEST_SIZE:]
