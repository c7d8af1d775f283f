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

from typing import Any

import numpy as np
import numpy.typing as npt

from secagg._validate import require_instance, require_int
from secagg.errors import (
    AuthenticationError,
    ConfigurationError,
    DecodeError,
    ProtocolError,
    ReplayError,
    ThresholdError,
)
from secagg.paillier._arguments import require_message, require_random_bytes, require_workers
from secagg.paillier._compute import IN_PROCESS, Workers
from secagg.paillier._decrypting_party import NO_OWN_UPLOAD, DecryptingParty, NoOwnUpload
from secagg.paillier.encryption import Encryptor, Obfuscation, add_ciphertext_vectors
from secagg.paillier.messages import (
    DecryptionRequest,
    EncryptedVector,
    PartialDecryption,
    aggregate_digest,
    upload_payload,
)
from secagg.paillier.packing import pack, unpack
from secagg.paillier.parameters import SessionParameters, check_upload, paillier_guarantee
from secagg.paillier.plaintext_proofs import knowledge_seed, prove_knowledge
from secagg.paillier.proofs import batch, batch_seed, verify
from secagg.paillier.threshold import combine_partials
from secagg.primitives.randomness import RandomBytes, system_random
from secagg.primitives.signing import SigningKey

__all__ = [
    "NO_OWN_UPLOAD", "Client", "DecryptingParty", "NoOwnUpload", "Server", "SessionParameters", "paillier_guarantee",
]

IntArray = npt.NDArray[np.int64]


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
        message = require_message("upload", upload, EncryptedVector)
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
        message = require_message("partial", partial, PartialDecryption)
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
