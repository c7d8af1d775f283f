"""The three roles of a packed-Paillier session: client, server, decrypting party.

One session sums the vectors of the clients that upload::

    client k                server                         decrypting party i
    --------                ------                         ------------------
    pack, encrypt  --EncryptedVector-->  check, store
                            close uploads; multiply
                            --DecryptionRequest(uploads)--> check every upload,
                                                            multiply them itself,
                                                            c^(2 Delta s_i)
                            <--PartialDecryption-----------
                            combine any t, unpack, check overflow

Binding (why a party cannot be made to decrypt one client's update): a party
answers at most one aggregate per session, and only the product of uploads
that (a) carry this session's id, (b) come from distinct clients of the
session's roster, each signed with that client's enrolled Ed25519 identity key
(:func:`~secagg.paillier.messages.upload_payload`), (c) are at least
``min_contributors`` in number, (d) have the session's vector length and
ciphertext count, each ciphertext in Z*_(n^2), (e) include its own upload
unchanged if it uploaded one (a party that sent none passes :data:`NO_OWN_UPLOAD` by name, never
None, and gives up this rule), and (f) each prove that their sender knows their
plaintexts (:mod:`secagg.paillier.plaintext_proofs`: no upload made from others'
uploads, which could cancel all but one hospital's). It recomputes the
product itself instead of trusting a sum sent by the server. A second request
for a different aggregate in the same session is refused (ReplayError): two
answered aggregates differing in one upload would reveal that upload.

Each partial decryption carries a batched zero-knowledge proof that it used
the party's key share (:mod:`secagg.paillier.proofs`); the server checks it on
receipt, so a lying party is identified and its answer dropped.

A server cannot forge uploads in other clients' names: it holds no identity
key, and the enrolled keys are part of the session id. Everything that shapes
the uploads (the application's :class:`~secagg.descriptor.SessionDescriptor`
digest, the layout, the roster and its keys) is in the session id too, so
uploads made under different setups never meet in one aggregate.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from secagg import wire
from secagg._validate import require_bytes, require_instance, require_int
from secagg.errors import (
    AuthenticationError,
    ConfigurationError,
    ConfigurationTypeError,
    DecodeError,
    ProtocolError,
    ReplayError,
    ThresholdError,
)
from secagg.paillier._arguments import require_flag, require_random_bytes, require_workers
from secagg.paillier._compute import IN_PROCESS, Workers
from secagg.paillier.encryption import Encryptor, Obfuscation, add_ciphertext_vectors
from secagg.paillier.keys import DEFAULT_CONSTANT_TIME, KeyShare, PrivateKey
from secagg.paillier.messages import (
    DIGEST_SIZE,
    DecryptionRequest,
    EncryptedVector,
    PartialDecryption,
    aggregate_digest,
    upload_payload,
)
from secagg.paillier.packing import pack, unpack
from secagg.paillier.parameters import SessionParameters, check_upload, paillier_guarantee
from secagg.paillier.plaintext_proofs import knowledge_seed, prove_knowledge
from secagg.paillier.proofs import batch, batch_seed, prove, verify
from secagg.paillier.threshold import combine_partials, partial_decrypt, single_key_partial_decrypt
from secagg.primitives.randomness import RandomBytes, system_random
from secagg.primitives.signing import SigningKey

__all__ = [
    "NO_OWN_UPLOAD", "Client", "DecryptingParty", "NoOwnUpload", "Server", "SessionParameters", "paillier_guarantee",
]

IntArray = npt.NDArray[np.int64]
M = TypeVar("M", bound=wire.Message)


class Client:
    """A client (hospital) that packs and encrypts its vector for one or more sessions.

    The :class:`Encryptor` (and its precomputed obfuscators) can outlive a
    session: pass the same one to the next session's client.
    """

    def __init__(
        self,
        params: SessionParameters,
        client_id: int,
        identity: SigningKey,
        *,
        encryptor: Encryptor | None = None,
        obfuscation: Obfuscation = Obfuscation.TEXTBOOK,
        random_bytes: RandomBytes = system_random,
        workers: Workers = IN_PROCESS,
    ) -> None:
        """Client ``client_id`` of the session ``params`` (must be in the roster), signing
        its upload with ``identity`` (the key enrolled for it in ``params``)."""
        require_instance("params", params, SessionParameters)
        client_id = require_int("client id", client_id)
        require_instance("identity", identity, SigningKey)
        random_bytes, workers = require_random_bytes(random_bytes), require_workers(workers)
        if encryptor is not None:
            require_instance("encryptor", encryptor, Encryptor)
        if client_id not in params.roster:
            raise ConfigurationError(f"client {client_id} is not in the session's roster")
        if identity.public != params.identity_key(client_id):
            raise ConfigurationError(f"client {client_id}: its identity key is not the one enrolled in the session")
        self.identity = identity
        self.params = params
        self.client_id = client_id
        self._random_bytes = random_bytes
        self.encryptor = encryptor if encryptor is not None else Encryptor(
            params.public.key, obfuscation=obfuscation, random_bytes=random_bytes, workers=workers
        )
        if self.encryptor.key != params.public.key:
            raise ConfigurationError(f"client {client_id}: encryptor is for another key")
        self.upload_digest: bytes | None = None

    def upload(self, values: npt.ArrayLike) -> EncryptedVector:
        """Pack and encrypt ``values`` (signed ints in the layout's range, ``vector_length`` of them)."""
        try:
            array = np.asarray(values)
        except (TypeError, ValueError) as exc:  # ragged nesting, objects numpy cannot hold
            raise ConfigurationError(f"client {self.client_id}: vector is not an array of integers: {exc}") from exc
        if array.ndim != 1 or array.shape[0] != self.params.vector_length:
            raise ConfigurationError(
                f"client {self.client_id}: vector must be one-dimensional of length {self.params.vector_length}"
            )
        if self.upload_digest is not None:
            raise ReplayError(f"client {self.client_id} already uploaded in this session")
        ciphertexts, witness = self.encryptor.encrypt_with_witness(pack(array, self.params.layout))
        words = b"".join(int(c).to_bytes(self.params.public.key.ciphertext_bytes, "big") for c in ciphertexts)
        session, length = self.params.session_id, self.params.vector_length
        seed = knowledge_seed(session, self.client_id, length, words)
        data = words + prove_knowledge(
            self.params.public, seed, ciphertexts, witness, self._random_bytes, self.encryptor.workers
        )
        message = EncryptedVector(
            session_id=session,
            client=self.client_id,
            length=length,
            ciphertexts=data,
            signature=self.identity.sign(upload_payload(session, self.client_id, length, data)),
        )
        self.upload_digest = message.digest
        return message


class Server:
    """Collects uploads, asks the decrypting parties, combines t answers, decodes.

    The server holds no secret: it learns the sum of the included vectors and
    nothing else (as long as fewer than t parties collude with it).
    """

    def __init__(self, params: SessionParameters, *, workers: Workers = IN_PROCESS) -> None:
        """A server for the session ``params``."""
        require_instance("params", params, SessionParameters)
        self.params = params
        self.workers = require_workers(workers)
        self._uploads: dict[int, EncryptedVector] = {}
        self._ciphertexts: dict[int, list[Any]] = {}
        self._digest: bytes | None = None
        self._aggregate: list[Any] | None = None
        self._partials: dict[int, list[Any]] = {}

    @property
    def closed(self) -> bool:
        """True once the uploads are frozen (after the first decryption request)."""
        return self._digest is not None

    @property
    def included(self) -> frozenset[int]:
        """Clients whose uploads are (or, before closing, would be) in the sum."""
        return frozenset(self._uploads)

    def receive_upload(self, upload: EncryptedVector | bytes) -> None:
        """Accept one client's upload (bytes-like or decoded). Raises ProtocolError (wrong
        session, client, length; after closing), ReplayError (second upload), DecodeError,
        AuthenticationError (no valid signature of the client), ConfigurationTypeError (neither
        bytes nor an EncryptedVector). A refused upload leaves no trace: the caller drops it."""
        message = _message("upload", upload, EncryptedVector)
        if self.closed:
            raise ProtocolError(f"server: upload of client {message.client} arrived after closing")
        ciphertexts = check_upload(self.params, message, "server")
        if message.client in self._uploads:
            raise ReplayError(f"server: client {message.client} uploaded twice")
        self._uploads[message.client] = message
        self._ciphertexts[message.client] = ciphertexts

    def _close(self) -> bytes:
        if self._digest is None:
            if len(self._uploads) < self.params.min_contributors:
                raise ThresholdError(
                    f"server: {len(self._uploads)} uploads; at least {self.params.min_contributors} are needed"
                )
            self._digest = aggregate_digest(self.params.session_id, list(self._uploads.values()))
        return self._digest

    def decryption_request(self, party: int) -> DecryptionRequest:
        """The request to decrypting party ``party``; the first call closes the uploads."""
        self.params.public.verification_key(party)
        self._close()
        return DecryptionRequest(
            session_id=self.params.session_id,
            recipient=party,
            uploads=tuple(self._uploads[client] for client in sorted(self._uploads)),
        )

    def receive_partial(self, partial: PartialDecryption | bytes) -> None:
        """Accept a party's partial decryption after checking its proof.

        Raises ProtocolError (wrong session, aggregate or party, before any
        request), ReplayError (second answer), DecodeError (malformed values),
        AuthenticationError (the proof fails: the party is named and its answer dropped),
        ConfigurationTypeError (neither bytes nor a PartialDecryption). A refused answer leaves
        no trace: another party's can still be received.
        """
        message = _message("partial", partial, PartialDecryption)
        if self._digest is None:
            raise ProtocolError(f"server: partial decryption from party {message.party} before any request")
        if message.session_id != self.params.session_id:
            raise ProtocolError(f"server: partial decryption from party {message.party} belongs to another session")
        if not 1 <= message.party <= self.params.public.num_parties:
            raise ProtocolError(f"server: party {message.party} is not a decrypting party of this key")
        if message.aggregate_digest != self._digest:
            raise ProtocolError(f"server: partial decryption from party {message.party} is of another aggregate")
        if message.party in self._partials:
            raise ReplayError(f"server: party {message.party} answered twice")
        who = f"server: partial decryption from party {message.party}"
        if len(message.values) != self.params.aggregate_data_bytes:
            raise DecodeError(f"{who} has {len(message.values)} bytes, expected {self.params.aggregate_data_bytes}")
        values = self.params.public.key.parse_ciphertexts(message.values, who)
        aggregate = self.aggregate_ciphertexts()
        seed = batch_seed(self.params.session_id, self._digest, message.party, message.values)
        context = self.params.session_id + self._digest
        batched = batch(self.params.public, aggregate, seed, self.workers)
        batched_partial = batch(self.params.public, values, seed, self.workers)
        if not verify(self.params.public, message.party, context, batched, batched_partial, message.proof):
            raise AuthenticationError(f"{who}: its proof of correct decryption does not verify")
        self._partials[message.party] = values

    def aggregate_ciphertexts(self) -> list[Any]:
        """The encrypted sum of the included uploads (closes the uploads; computed once)."""
        self._close()
        if self._aggregate is None:
            self._aggregate = add_ciphertext_vectors(
                self.params.public.key, [self._ciphertexts[c] for c in sorted(self._ciphertexts)], self.workers
            )
        return self._aggregate

    def finish(self) -> IntArray:
        """The exact integer sum of the included vectors.

        Raises ThresholdError with fewer than t partial decryptions,
        AuthenticationError if they do not combine, OverflowDetectedError if the
        decrypted sum is impossible for the number of included uploads.
        """
        self._close()
        plaintexts = combine_partials(self.params.public, self._partials, self.workers)
        return unpack(plaintexts, self.params.layout, self.params.vector_length, len(self._uploads))


class NoOwnUpload(enum.Enum):
    """The type of :data:`NO_OWN_UPLOAD`, its one value."""

    NO_OWN_UPLOAD = "no own upload"


NO_OWN_UPLOAD = NoOwnUpload.NO_OWN_UPLOAD
"""``DecryptingParty(own_upload=NO_OWN_UPLOAD)``: the party sent no upload in the session (a
single-key holder, a key-share holder with no data). It gives up binding rule (e): the party
decrypts any sum of at least ``min_contributors`` uploads, with no check that its own is in it. The stated
c still holds: one aggregate per session, 2t > l + c over all l shares, min_contributors >= c + 2 (docs/paillier.md),
while its caller keeps that one answer across restarts (no upload record fails it closed)."""


class DecryptingParty:
    """A hospital holding a key share (or, in single-key mode, the key holder).

    Answers :class:`DecryptionRequest` messages under the binding rules of the
    module docstring; keeps which aggregate it answered in this session, in this object
    only: one built again for the session has forgotten it (docs/paillier.md).
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
        attacker (docs/paillier.md, "Other limits"). ConfigurationError (naming the argument) for a wrong
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
        if isinstance(secret, KeyShare):
            self.index = secret.index
        elif isinstance(secret, PrivateKey):
            self.index = 1
        else:
            raise ConfigurationTypeError(f"secret must be a KeyShare or a PrivateKey, got {type(secret).__name__}")
        if secret.public != params.public:
            raise ConfigurationError(f"party {self.index}: its key material is for another key")
        self.params = params
        self.workers = workers
        self._random_bytes = random_bytes
        self._constant_time = constant_time
        self._secret = secret
        self._own_upload = own
        self._answer: PartialDecryption | None = None

    def respond(self, request: DecryptionRequest | bytes) -> PartialDecryption:
        """The partial decryption of the request's aggregate, after every binding check.

        Raises ProtocolError (wrong session or recipient, upload from outside the
        roster or another session, too few uploads, own upload missing or
        altered), ReplayError (duplicate upload, or a second different aggregate
        in this session), DecodeError (malformed upload), ConfigurationTypeError
        (neither bytes nor a DecryptionRequest).
        """
        message = _message("request", request, DecryptionRequest)
        who = f"party {self.index}"
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
        vectors = [check_upload(self.params, upload, who) for upload in message.uploads]
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



def _message(name: str, value: object, kind: type[M]) -> M:
    """``value`` if it is a ``kind`` message, else its decoding if it is bytes-like (untrusted:
    DecodeError if malformed); ConfigurationTypeError naming ``name`` for anything else."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return wire.decode(bytes(value), kind)
    return require_instance(name, value, kind)
