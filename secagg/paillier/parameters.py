"""The parameters of one packed-Paillier session and the checks every upload passes.

:class:`SessionParameters` is what every party of a session agrees on before it
starts; its :attr:`~SessionParameters.session_id` binds all of it (the key, the
slot layout, the roster and its identity keys, the application's descriptor).
:func:`check_upload` is the upload check shared by the server and every
decrypting party (docs/spec.md, section 13.9). The roles that use them are in
:mod:`secagg.paillier.protocol`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from secagg._validate import check_fields, require_bytes, require_int, require_sequence
from secagg.descriptor import DESCRIPTOR_DIGEST_SIZE, NO_DESCRIPTOR
from secagg.errors import (
    AuthenticationError,
    ConfigurationError,
    DecodeError,
    ProtocolError,
)
from secagg.guarantee import Guarantee
from secagg.masking.parameters import default_dropout_target
from secagg.paillier.keys import MIN_KEY_BITS, ThresholdPublicKey
from secagg.paillier.messages import MAX_CIPHERTEXT_DATA, SESSION_ID_SIZE, EncryptedVector
from secagg.paillier.packing import MAX_VALUES, SlotLayout
from secagg.paillier.plaintext_proofs import PROOF_WORDS, knowledge_seed, verify_knowledge
from secagg.primitives.signing import PUBLIC_KEY_SIZE, public_key_problem
from secagg.primitives.signing import verify as verify_signature

__all__ = [
    "MAX_CLIENT_ID",
    "SESSION_LABEL",
    "SessionParameters",
    "check_dealt_shape",
    "check_declared_colluders",
    "check_decryption_majority",
    "check_upload",
    "default_contributors",
    "default_threshold",
    "paillier_guarantee",
    "threshold_guarantee",
]

SESSION_LABEL = b"secagg/v1/paillier-session"
MAX_CLIENT_ID = (1 << 32) - 1


@dataclass(frozen=True)
class SessionParameters:
    """What every party of one session agrees on before it starts (all public).

    Attributes:
        public: the threshold public key (t = l = 1 for the single-key mode).
        layout: the packing layout; its ``key_bits`` must be the key's size and
            its ``num_clients`` at least the roster's size.
        vector_length: values per client vector.
        roster: ids (u32) of the clients allowed to upload, distinct.
        min_contributors: fewest uploads a party agrees to decrypt the sum of
            (at least 2: one upload would be decrypted alone).
        identity_keys: the enrolled Ed25519 identity public key of each roster
            client, in roster order, distinct: every upload must carry its
            client's signature.
        context: 32 bytes naming the session, required and never repeated under one key and
            roster (e.g. a hash of model, run and round number, or ``secrets.token_bytes(32)``):
            two sessions with one context share a session id, so one's uploads and partial
            decryptions are valid in the other.
        descriptor: the digest of the application's
            :class:`~secagg.descriptor.SessionDescriptor` (quantization, layout,
            model, round, training parameters).
    """

    public: ThresholdPublicKey
    layout: SlotLayout
    vector_length: int
    roster: tuple[int, ...]
    min_contributors: int
    identity_keys: tuple[bytes, ...]
    context: bytes
    descriptor: bytes = NO_DESCRIPTOR

    def __post_init__(self) -> None:
        check_fields(self, ints=("vector_length", "min_contributors"))
        require_int("vector_length", self.vector_length, 1, MAX_VALUES)
        require_sequence("roster", self.roster)
        require_sequence("identity_keys", self.identity_keys)
        require_bytes("session context", self.context)
        if not isinstance(self.public, ThresholdPublicKey) or not isinstance(self.layout, SlotLayout):
            raise ConfigurationError("session parameters need a ThresholdPublicKey and a SlotLayout")
        if self.layout.key_bits != self.public.key.key_bits:
            raise ConfigurationError(
                f"layout is for {self.layout.key_bits}-bit keys but the key has {self.public.key.key_bits} bits"
            )
        if isinstance(self.vector_length, bool) or not isinstance(self.vector_length, int) or self.vector_length < 1:
            raise ConfigurationError(f"vector_length must be a positive int, got {self.vector_length!r}")
        roster = tuple(self.roster)
        if not roster or len(set(roster)) != len(roster):
            raise ConfigurationError("roster must list at least one client, each once")
        if any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= MAX_CLIENT_ID for c in roster):
            raise ConfigurationError("client ids in the roster must be u32 ints")
        if len(roster) > self.layout.num_clients:
            raise ConfigurationError(
                f"roster of {len(roster)} clients exceeds the {self.layout.num_clients} summands the layout allows"
            )
        if not 2 <= self.min_contributors <= len(roster):
            raise ConfigurationError(
                f"min_contributors must be in 2..{len(roster)} (one upload would be decrypted alone), "
                f"got {self.min_contributors}"
            )
        if self.public.num_parties > 1 and self.public.threshold < 2:
            raise ConfigurationError("a threshold key needs t >= 2: with t = 1 any one share holder decrypts alone")
        check_decryption_majority(self.public.num_parties, self.public.threshold)
        if not isinstance(self.context, bytes) or len(self.context) != 32:
            raise ConfigurationError("session context must be 32 bytes")
        if not isinstance(self.descriptor, bytes) or len(self.descriptor) != DESCRIPTOR_DIGEST_SIZE:
            raise ConfigurationError(f"descriptor must be a {DESCRIPTOR_DIGEST_SIZE}-byte digest")
        keys = _checked_identity_keys(roster, tuple(self.identity_keys))
        self._check_upload_size()
        self._check_roster_decrypts(len(roster))
        object.__setattr__(self, "roster", roster)
        object.__setattr__(self, "identity_keys", keys)

    def _check_upload_size(self) -> None:
        """ConfigurationError if an upload (its ciphertexts and proof words) would not fit the wire's
        ciphertext field: refused when the session is made, not after every hospital encrypted."""
        if self.upload_data_bytes > MAX_CIPHERTEXT_DATA:
            raise ConfigurationError(
                f"an upload of {self.vector_length} values takes {self.upload_data_bytes} bytes "
                f"({self.num_ciphertexts} ciphertexts and {PROOF_WORDS} proof words), more than the "
                f"{MAX_CIPHERTEXT_DATA} the wire carries: split the vector"
            )

    def _check_roster_decrypts(self, size: int) -> None:
        """ConfigurationError if a threshold key's session of ``size`` hospitals never decrypts: only
        the roster's hospitals decrypt its sum (each checks that it holds its own upload), fewer than t."""
        public = self.public
        if public.num_parties > 1 and size < public.threshold:
            raise ConfigurationError(
                f"a roster of {size} hospitals never completes under a {public.threshold}-of-{public.num_parties} "
                f"key: only its own hospitals decrypt its sum (each checks that it holds its own upload), and "
                f"t = {public.threshold} partial decryptions are needed"
            )

    def identity_key(self, client: int) -> bytes:
        """The enrolled identity key of roster client ``client``."""
        return self.identity_keys[self.roster.index(client)]

    @property
    def guarantee(self) -> Guarantee:
        """What this session guarantees (:func:`paillier_guarantee`)."""
        return paillier_guarantee(self.public, len(self.roster), self.min_contributors)

    @cached_property
    def session_id(self) -> bytes:
        """SHA-256(``"secagg/v1/paillier-session"`` || key fingerprint || u8 value_bits ||
        u64 offset || u64 value_max || u32 layout clients || u8 slot bits || u32 length ||
        u32 min_contributors || context || descriptor || u32 roster size || per roster client in
        roster order: u32 id || identity key). The offset and value_max fix the value range
        (bit range or ``[-B, B]``, :class:`~secagg.paillier.packing.SlotLayout`)."""
        digest = hashlib.sha256(
            SESSION_LABEL
            + self.public.fingerprint
            + self.layout.value_bits.to_bytes(1, "big")
            + self.layout.offset.to_bytes(8, "big")
            + self.layout.value_max.to_bytes(8, "big")
            + self.layout.num_clients.to_bytes(4, "big")
            + self.layout.width.to_bytes(1, "big")
            + self.vector_length.to_bytes(4, "big")
            + self.min_contributors.to_bytes(4, "big")
            + self.context
            + self.descriptor
            + len(self.roster).to_bytes(4, "big")
        )
        for client, key in zip(self.roster, self.identity_keys, strict=True):
            digest.update(client.to_bytes(4, "big") + key)
        result = digest.digest()
        assert len(result) == SESSION_ID_SIZE
        return result

    @property
    def num_ciphertexts(self) -> int:
        """Ciphertexts per client vector."""
        return self.layout.num_plaintexts(self.vector_length)

    @property
    def upload_data_bytes(self) -> int:
        """Bytes of ciphertext data in one upload: its ciphertexts and the
        :data:`~secagg.paillier.plaintext_proofs.PROOF_WORDS` words of its proof of plaintext knowledge."""
        return (self.num_ciphertexts + PROOF_WORDS) * self.public.key.ciphertext_bytes

    @property
    def aggregate_data_bytes(self) -> int:
        """Bytes of one ciphertext vector without a proof (the aggregate, a partial decryption)."""
        return self.num_ciphertexts * self.public.key.ciphertext_bytes


SINGLE_KEY_HOLDER = "the key holder (it can decrypt every upload)"
"""Who single-key mode trusts, as its guarantee line names it."""


def check_decryption_majority(num_parties: int, threshold: int, colluders: int = 0) -> None:
    """ConfigurationError unless a t-of-l key (l > 1) keeps ``2t > l + c``.

    Each honest share holder answers one aggregate per session, but a lying server can
    show two disjoint groups two aggregates that differ in one upload (all uploads, and
    all but the victim's, which no holder of the second group misses) while the c
    colluding holders answer both: both reach t, and the difference of the two sums is
    the victim's upload, iff ``2t <= l + c`` (docs/threat-model.md, "Packed threshold
    Paillier")."""
    if num_parties > 1 and 2 * threshold <= num_parties + colluders:
        raise ConfigurationError(
            f"threshold {threshold} of {num_parties} is unsafe against a lying server plus {colluders} colluding "
            f"share holders: two disjoint groups would each reach t and decrypt two sums that differ in one "
            f"upload; need 2t > l + c = {num_parties + colluders}, i.e. t >= {(num_parties + colluders) // 2 + 1}"
        )


def default_threshold(num_parties: int, colluders: int | None = None) -> int:
    """The default t of a t-of-l threshold key (l = ``num_parties`` > 1).

    With c = ``colluders`` declared: ``(l + c) // 2 + 1``, the least t with ``2t > l + c``
    (:func:`check_decryption_majority`). Undeclared: the trade-off of the active masking
    default (:func:`secagg.masking.parameters.default_colluders`): the most colluders c, up
    to ``(l - 1) // 3``, whose ``(l + c) // 2 + 1`` still leaves the default dropout target
    (:func:`~secagg.masking.parameters.default_dropout_target`: one dropout below 20
    hospitals, 40% of them from 20 on), so t <= l - target; c = 0 if none does. With
    ``min_contributors = t`` (:func:`default_contributors`) the computed guarantee is then
    masking's at the same l: 5 hospitals, 4-of-5, c = 2, one dropout; 3 hospitals, 2-of-3,
    c = 0, one dropout (c = 1 would need 3-of-3: no dropout at all)."""
    if colluders is not None:
        return (num_parties + colluders) // 2 + 1
    target = default_dropout_target(num_parties)
    best = 0
    for declared in range((num_parties - 1) // 3 + 1):
        if (num_parties + declared) // 2 + 1 <= num_parties - target:
            best = declared
    return (num_parties + best) // 2 + 1


def default_contributors(num_clients: int, threshold: int, colluders: int | None = None) -> int:
    """The default min_contributors: ``min(num_clients, max(2, t, c + 2))`` (c declared, else 0)."""
    return min(num_clients, max(2, threshold, (colluders or 0) + 2))


def check_declared_colluders(
    num_parties: int, threshold: int, min_contributors: int, colluders: int, *, threshold_key: bool = True
) -> None:
    """ConfigurationError unless a configuration holds against its ``colluders`` (declared c):
    ``min_contributors >= c + 2`` (a sum of that many uploads, all but one known to them, would
    reveal the last) and, for a threshold key, ``t >= c + 1`` and ``2t > l + c``."""
    if min_contributors < colluders + 2:
        raise ConfigurationError(
            f"min_contributors {min_contributors} is unsafe against {colluders} colluders: "
            f"a sum of that many uploads, all but one known to them, reveals the last; need >= {colluders + 2}"
        )
    if threshold_key:
        if threshold < colluders + 1:
            raise ConfigurationError(
                f"threshold {threshold} is unsafe against {colluders} colluding share holders; "
                f"need t >= {colluders + 1}"
            )
        check_decryption_majority(num_parties, threshold, colluders)


def check_dealt_shape(num_parties: int, threshold: int) -> None:
    """ConfigurationError unless every session accepts a t-of-l key of this shape (l > 1: ``2t > l``).

    The dealers (:func:`~secagg.paillier.ceremony.deal_threshold_key`,
    :func:`~secagg.paillier.ceremony.deal_threshold_key_from_primes`) and the dealer's last step
    (:func:`secagg.integrations.flower.keys.write_key_files`) call it, so that a key every
    :class:`SessionParameters` refuses (:func:`check_decryption_majority`) is never dealt. The
    error names the least safe threshold, l // 2 + 1 (with c declared colluders a session needs
    (l + c) // 2 + 1)."""
    if num_parties > 1 and 2 * threshold <= num_parties:
        least = num_parties // 2 + 1
        raise ConfigurationError(
            f"refusing to deal a {threshold}-of-{num_parties} threshold key: every session refuses keys with "
            f"2t <= l (a lying server could have two disjoint groups of holders decrypt two sums that differ "
            f"in one upload; docs/paillier.md, 'The split of the decrypting parties'); need 2t > l: the least "
            f"safe threshold for l = {num_parties} is {least} (to keep c declared colluders out too, "
            f"t >= (l + c) // 2 + 1)"
        )


def paillier_guarantee(public: ThresholdPublicKey, num_clients: int, min_contributors: int) -> Guarantee:
    """Private against a lying server plus c = min(t - 1, min_contributors - 2, 2t - l - 1) colluding
    hospitals (min_contributors - 2 in single-key mode, whose key holder must not collude);
    completes while at least min_contributors of ``num_clients`` upload and t share holders among
    them decrypt: d = min(n - min_contributors, min(n, l) - t) (:func:`threshold_guarantee`). On a
    key below :data:`~secagg.paillier.keys.MIN_KEY_BITS` (tests, demos) the line starts with
    "NOT SECURE"."""
    return threshold_guarantee(
        public.num_parties, public.threshold, num_clients, min_contributors, key_bits=public.key.key_bits
    )


def threshold_guarantee(
    num_parties: int, threshold: int, num_clients: int, min_contributors: int, *, key_bits: int | None = None
) -> Guarantee:
    """:func:`paillier_guarantee` from the key's shape alone (``num_parties`` shares, ``threshold``
    needed), so a configuration can be judged before its key ceremony; with ``key_bits`` below
    :data:`~secagg.paillier.keys.MIN_KEY_BITS` the line starts with "NOT SECURE", as the key's does.

    c is bounded three ways: t - 1 (fewer than t shares decrypt nothing), min_contributors - 2 (a
    sum of that many uploads still holds two honest ones) and 2t - l - 1 (the largest c with
    2t > l + c, so two disjoint groups of holders cannot both decrypt,
    :func:`check_decryption_majority`), which a key with ``2t <= l`` cannot keep for any c >= 0:
    ConfigurationError (as :class:`SessionParameters` refuses it; a :class:`~secagg.guarantee.Guarantee`
    never states a negative c).

    d is bounded by the uploads (``num_clients - min_contributors``) and, for a threshold key, by who
    decrypts: ``min(num_clients, num_parties) - t``. A share holder decrypts only a sum that holds its
    own upload (:mod:`secagg.paillier.protocol`, binding rule (e)), so the session's decrypting
    parties are its own hospitals, one share each: a session of n < l hospitals survives n - t
    dropouts, not the l - t the key alone allows. (A share holder outside the roster that passes
    ``NO_OWN_UPLOAD`` could answer too; no driver asks one, and d does not count on it.)
    ConfigurationError for a threshold session of fewer than t hospitals: its hospitals never
    decrypt its sum, so it has no guarantee; likewise, in either mode, for a session of fewer
    hospitals than ``min_contributors`` (no sum is ever decrypted; d would be negative)."""
    colluders = min_contributors - 2
    dropouts = num_clients - min_contributors
    if dropouts < 0:
        raise ConfigurationError(
            f"a Paillier session of {num_clients} hospitals never completes: its sum is decrypted only with "
            f"{min_contributors} uploads (min_contributors)"
        )
    if num_parties > 1:
        check_decryption_majority(num_parties, threshold)
        if num_clients < threshold:
            raise ConfigurationError(
                f"a Paillier session of {num_clients} hospitals never completes under a {threshold}-of-"
                f"{num_parties} key: only its own hospitals decrypt its sum, and t = {threshold} partial "
                "decryptions are needed"
            )
        colluders = min(colluders, threshold - 1, 2 * threshold - num_parties - 1)
        dropouts = min(dropouts, min(num_clients, num_parties) - threshold)
        guarantee = Guarantee(colluders, dropouts, lying_server=True)
    else:
        guarantee = Guarantee(colluders, dropouts, lying_server=True, trusted=SINGLE_KEY_HOLDER)
    if key_bits is not None and key_bits < MIN_KEY_BITS:
        guarantee = replace(guarantee, insecure=f"a {key_bits}-bit key, below the {MIN_KEY_BITS}-bit floor")
    return guarantee


def check_upload(params: SessionParameters, upload: EncryptedVector, who: str) -> list[Any]:
    """The ciphertexts of ``upload`` after every session check; ProtocolError/DecodeError naming ``who``,
    AuthenticationError for a missing signature or proof of plaintext knowledge
    (:mod:`secagg.paillier.plaintext_proofs`)."""
    if not isinstance(upload, EncryptedVector):
        raise ProtocolError(f"{who}: expected an EncryptedVector, got {type(upload).__name__}")
    if upload.session_id != params.session_id:
        raise ProtocolError(f"{who}: upload of client {upload.client} belongs to another session")
    if upload.client not in params.roster:
        raise ProtocolError(f"{who}: client {upload.client} is not in the session's roster")
    if upload.length != params.vector_length:
        raise ProtocolError(
            f"{who}: upload of client {upload.client} has {upload.length} values, expected {params.vector_length}"
        )
    if len(upload.ciphertexts) != params.upload_data_bytes:
        proofless = len(upload.ciphertexts) == params.aggregate_data_bytes
        raise DecodeError(
            f"{who}: upload of client {upload.client} has {len(upload.ciphertexts)} bytes of ciphertexts, "
            f"expected {params.upload_data_bytes}"
            + (" (its ciphertexts with no proof of plaintext knowledge: a sender of an earlier version, "
               "before uploads carried one? upgrade every party)" if proofless else "")
        )
    try:
        verify_signature(params.identity_key(upload.client), upload.signature, upload.payload)
    except (AuthenticationError, DecodeError) as exc:
        raise AuthenticationError(
            f"{who}: upload in the name of client {upload.client} carries no valid signature of its identity key"
        ) from exc
    split = params.aggregate_data_bytes
    words, proof = upload.ciphertexts[:split], upload.ciphertexts[split:]
    ciphertexts = params.public.key.parse_ciphertexts(words, f"{who}: upload of client {upload.client}")
    seed = knowledge_seed(params.session_id, upload.client, upload.length, words)
    if not verify_knowledge(params.public, seed, ciphertexts, proof):
        raise AuthenticationError(
            f"{who}: upload of client {upload.client} carries no valid proof of knowledge of its plaintexts "
            "(a vector made from others' uploads is refused)"
        )
    return ciphertexts


def _checked_identity_keys(roster: tuple[int, ...], keys: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """``keys``, one per roster client, each :func:`~secagg.primitives.signing.public_key_problem`-free
    (so that the distinct check's bytes compare as points), none twice; else ConfigurationError."""
    if len(keys) != len(roster) or any(not isinstance(k, bytes) or len(k) != PUBLIC_KEY_SIZE for k in keys):
        raise ConfigurationError(
            f"identity_keys must hold one {PUBLIC_KEY_SIZE}-byte Ed25519 key per roster client ({len(roster)})"
        )
    for client, key in zip(roster, keys, strict=True):
        if (problem := public_key_problem(key)) is not None:
            raise ConfigurationError(f"the identity key of roster client {client} {problem}")
    if len(set(keys)) != len(keys):
        raise ConfigurationError("identity_keys must be distinct: one enrolled hospital per roster client")
    return keys
