"""The decrypting party of a packed-Paillier session: a key-share holder answering one aggregate.

:class:`DecryptingParty` answers a :class:`~secagg.paillier.messages.DecryptionRequest` only
under the binding rules (a) to (f) of :mod:`secagg.paillier.protocol` (the session's own
uploads, signed, from distinct clients of its roster, at least ``min_contributors`` of them,
well formed, its own upload among them unless it passed :data:`NO_OWN_UPLOAD` by name, each
with its proof of plaintext knowledge), recomputes the product of the uploads itself, and
answers at most one aggregate per session, with a proof of correct decryption
(:mod:`secagg.paillier.proofs`). Re-exported by :mod:`secagg.paillier.protocol` and
:mod:`secagg.paillier`.
"""

from __future__ import annotations

import enum
import threading

from secagg._validate import require_bytes, require_instance
from secagg.errors import ConfigurationError, ConfigurationTypeError, ProtocolError, ReplayError
from secagg.paillier._arguments import require_flag, require_message, require_random_bytes, require_workers
from secagg.paillier._compute import IN_PROCESS, Workers
from secagg.paillier.answer_journal import IN_MEMORY_ONLY, AnswerJournal, InMemoryOnly
from secagg.paillier.encryption import add_ciphertext_vectors
from secagg.paillier.keys import DEFAULT_CONSTANT_TIME, KeyShare, PrivateKey
from secagg.paillier.messages import DIGEST_SIZE, DecryptionRequest, PartialDecryption, aggregate_digest
from secagg.paillier.parameters import SessionParameters, check_upload
from secagg.paillier.proofs import batch, batch_seed, prove
from secagg.paillier.threshold import partial_decrypt, single_key_partial_decrypt
from secagg.primitives.randomness import RandomBytes, system_random

__all__ = ["NO_OWN_UPLOAD", "DecryptingParty", "NoOwnUpload"]


class NoOwnUpload(enum.Enum):
    """The type of :data:`NO_OWN_UPLOAD`, its one value."""

    NO_OWN_UPLOAD = "no own upload"


NO_OWN_UPLOAD = NoOwnUpload.NO_OWN_UPLOAD
"""``DecryptingParty(own_upload=NO_OWN_UPLOAD)``: the party sent no upload in the session (a
single-key holder, a key-share holder with no data). It gives up binding rule (e): the party
decrypts any sum of at least ``min_contributors`` uploads, with no check that its own is in it. The stated
c still holds: one aggregate per session, 2t > l + c over all l shares, min_contributors >= c + 2 (docs/paillier.md),
while that one answer is kept across restarts (no upload record fails it closed): such a party takes
``journal=AnswerJournal(folder)`` (:class:`~secagg.paillier.answer_journal.AnswerJournal`), or
``journal=IN_MEMORY_ONLY`` by name (:data:`~secagg.paillier.answer_journal.IN_MEMORY_ONLY`: this object is the
only party built for its key share in the session); without either it is refused."""


class DecryptingParty:
    """A hospital holding a key share (or, in single-key mode, the key holder).

    Answers :class:`DecryptionRequest` messages under the binding rules of
    :mod:`secagg.paillier.protocol`; keeps which aggregate it answered in this session in this object,
    and, given a ``journal``, on disk: without one, a party built again for the session has forgotten
    it (docs/paillier.md, "The answer journal").
    """

    def __init__(
        self,
        params: SessionParameters,
        secret: KeyShare | PrivateKey,
        *,
        own_upload: bytes | NoOwnUpload,
        random_bytes: RandomBytes = system_random,
        workers: Workers = IN_PROCESS,
        constant_time: bool = DEFAULT_CONSTANT_TIME,
        journal: AnswerJournal | InMemoryOnly | None = None,
    ) -> None:
        """Party of the session ``params`` with ``secret``; ``own_upload`` is the digest of
        the upload this hospital sent in the session, or :data:`NO_OWN_UPLOAD`, by name, if it
        sent none (then no request is checked for it: the party would decrypt a sum without its
        own upload), so a caller cannot leave the check out by omission, nor by a None (a
        digest looked up with ``.get`` and missing: ConfigurationTypeError);
        ``random_bytes`` feeds the proof's commitment; ``constant_time`` (default
        :data:`~secagg.paillier.keys.DEFAULT_CONSTANT_TIME`, True) exponentiates with the secret
        by GMP's side-channel-silent ``powmod_sec``; ``constant_time=False`` opts out (faster:
        about 1.4x for a share's partial decryption at 2048 bits, 1.15x for the single key) and gives
        up that protection: timing and cache side channels on the secret are open to a co-located
        attacker (docs/paillier.md, "Other limits"). ``journal``: an
        :class:`~secagg.paillier.answer_journal.AnswerJournal` where the party records the aggregate it
        answers in the session (synced before the answer is returned) and finds the one it answered
        before a restart. A party that names its own upload may leave it out (None, the default: the answer
        is kept in this object only, and a restart without its upload record answers nothing); one with
        :data:`NO_OWN_UPLOAD` must give a journal, or :data:`~secagg.paillier.answer_journal.IN_MEMORY_ONLY`
        by name (the answer kept in this object only: one built again for the session answers a second
        aggregate), else ConfigurationError. ConfigurationError (naming the argument) for a wrong
        type or an ``own_upload`` other than a 32-byte digest; bytes-like values (bytearray,
        memoryview) are taken as bytes."""
        require_instance("params", params, SessionParameters)
        if own_upload is None:
            raise ConfigurationTypeError(
                "own_upload must be the 32-byte digest of this party's upload, or NO_OWN_UPLOAD, by name, if it sent "
                "none: None would turn off the check that a sum holds its own upload"
            )
        own = None if own_upload is NO_OWN_UPLOAD else require_bytes("own_upload", own_upload, DIGEST_SIZE)
        random_bytes, workers = require_random_bytes(random_bytes), require_workers(workers)
        constant_time = require_flag("constant_time", constant_time)
        if journal is not None and journal is not IN_MEMORY_ONLY:
            require_instance("journal", journal, AnswerJournal)
        if isinstance(secret, KeyShare):
            self.index = secret.index
        elif isinstance(secret, PrivateKey):
            self.index = 1
        else:
            raise ConfigurationTypeError(f"secret must be a KeyShare or a PrivateKey, got {type(secret).__name__}")
        if secret.public != params.public:
            raise ConfigurationError(f"party {self.index}: its key material is for another key")
        if journal is None and own is None:
            raise ConfigurationError(
                f"party {self.index} sent no upload (NO_OWN_UPLOAD), so no upload record fails it closed after a "
                "restart: its one answer per session must be kept on disk, journal=AnswerJournal(folder); or pass "
                "journal=IN_MEMORY_ONLY, by name, if this object is the only party ever built for this key share in "
                "the session (one built again would answer a second aggregate: docs/paillier.md, "
                '"The answer journal")'
            )
        self.params = params
        self.workers = workers
        self._random_bytes = random_bytes
        self._constant_time = constant_time
        self._secret = secret
        self._own_upload = own
        self._answer: PartialDecryption | None = None
        self._busy = threading.Lock()  # one request at a time: the answer is checked before the work, set after it
        self.journal = None if journal is IN_MEMORY_ONLY else journal

    def respond(self, request: DecryptionRequest | bytes) -> PartialDecryption:
        """The partial decryption of the request's aggregate, after every binding check.

        One request at a time: one that arrives (from another thread) while this object answers
        another is refused, never waited on nor answered alongside it.

        Raises ProtocolError (wrong session or recipient, upload from outside the
        roster or another session, too few uploads, own upload missing or
        altered, another request being answered by this object), ReplayError (duplicate upload, or
        a second different aggregate in this session, in this object or in its journal), DecodeError
        (malformed upload, or a journal entry it cannot trust), ConfigurationTypeError (neither bytes nor a
        DecryptionRequest), ConfigurationError (a journal entry or folder it cannot trust or write:
        nothing is answered).
        """
        message = require_message("request", request, DecryptionRequest)
        who = f"party {self.index}"
        if not self._busy.acquire(blocking=False):  # never waited on: two at once could answer two aggregates
            raise ProtocolError(f"{who}: another request is being answered by this party; send this one again after it")
        try:
            return self._respond(message, who)
        finally:
            self._busy.release()

    def _respond(self, message: DecryptionRequest, who: str) -> PartialDecryption:
        if message.session_id != self.params.session_id:
            raise ProtocolError(f"{who}: decryption request belongs to another session")
        if message.recipient != self.index:
            raise ProtocolError(f"{who}: decryption request is addressed to party {message.recipient}")
        clients = [upload.client for upload in message.uploads]
        if len(set(clients)) != len(clients):
            raise ReplayError(f"{who}: decryption request repeats an upload of client(s) {sorted(clients)}")
        if len(clients) < self.params.min_contributors:
            raise ProtocolError(
                f"{who}: refusing to decrypt a sum of {len(clients)} uploads; "
                f"at least {self.params.min_contributors} are required"
            )
        if self._own_upload is not None and self._own_upload not in {u.digest for u in message.uploads}:
            raise ProtocolError(f"{who}: its own upload is missing from, or altered in, the aggregate")
        digest = aggregate_digest(self.params.session_id, message.uploads)
        if self._answer is not None:
            if self._answer.aggregate_digest == digest:
                return self._answer
            raise ReplayError(f"{who}: already answered a different aggregate in this session")
        if self.journal is not None:  # refused before any work: another aggregate is recorded
            recorded = self.journal.answered(self.params.session_id, self.index)
            if recorded is not None and recorded != digest:
                raise ReplayError(
                    f"{who}: already answered a different aggregate in this session (its answer journal records it)"
                )
        vectors = [check_upload(self.params, upload, who) for upload in message.uploads]
        if self.journal is not None:  # written and synced before anything of the answer exists
            self.journal.record(self.params.session_id, self.index, digest)
        aggregate = add_ciphertext_vectors(self.params.public.key, vectors, self.workers)
        if isinstance(self._secret, KeyShare):
            values = partial_decrypt(self._secret, aggregate, self.workers, constant_time=self._constant_time)
        else:
            values = single_key_partial_decrypt(
                self._secret, aggregate, self.workers, constant_time=self._constant_time
            )
        width = self.params.public.key.ciphertext_bytes
        data = b"".join(int(v).to_bytes(width, "big") for v in values)
        public = self.params.public
        batched = batch(public, aggregate, batch_seed(self.params.session_id, digest, self.index, data), self.workers)
        proof = prove(
            public, self.index, self._secret.proof_secret, self.params.session_id + digest, batched,
            self._random_bytes, constant_time=self._constant_time,
        )
        self._answer = PartialDecryption(
            session_id=self.params.session_id, party=self.index, aggregate_digest=digest, values=data, proof=proof
        )
        return self._answer
