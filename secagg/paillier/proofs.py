"""Zero-knowledge proofs of correct partial decryption, batched over a whole vector.

Shoup's proof (EUROCRYPT 2000, sec. 2.2; Damgard-Jurik PKC 2001, sec. 5 with
s = 1) shows that a partial decryption ``c_i = c^(2x)`` uses the same secret
``x = Delta * s_i`` as the public verification key ``v_i = v^x``: a
non-interactive proof that ``log_(c^4)(c_i^2) = log_v(v_i)``, made
non-interactive with SHA-256 (Fiat-Shamir, random-oracle model).

One proof covers every word of an aggregate vector (small-exponent batch
verification, Bellare-Garay-Rabin, EUROCRYPT 1998): after the party has fixed
its partial decryptions, 128-bit weights w_j are derived from a hash of them,
and the party proves the relation for ``C = prod c_j^(w_j)`` and
``C_i = prod c_ij^(w_j)``. If some ``c_ij^2 != c_j^(4x)``, the batched relation
still holds only with probability about 2^-128: after squaring, the
discrepancies live in the subgroup of squares of Z*_(n^2), whose order nm has
only large prime factors (p, q, p', q'), so a random 128-bit weight does not
cancel them. The squarings (c^4, c_i^2) remove the elements of order 2, as in
Shoup's scheme.

Construction, with ``hat_c = C^4``, ``hat_ci = C_i^2`` (all mod n^2)::

    prover: r uniform in [0, 2^R), R = |Delta| + |n^2| + 128 + 128 bits
            a = hat_c^r, b = v^r
            e = first 16 bytes of SHA-256(label || session || aggregate digest ||
                u16 party || n || v || v_i || hat_c || hat_ci || a || b)
            z = r + e * x                      (an integer, not reduced)
    verifier: a = hat_c^z * hat_ci^(-e), b = v^z * v_i^(-e), recompute e and compare.

Integers in the hash are u16-length-prefixed big-endian (the wire format's
BigUInt). z hides e * x statistically (128 bits of slack). The batch weights
are the AES-CTR expansion (:mod:`secagg.primitives.prg`) of
SHA-256(batch label || session || aggregate digest || u16 party || SHA-256(partial data)).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gmpy2

from secagg.errors import ConfigurationError
from secagg.paillier._compute import IN_PROCESS, Workers, chunked, ints_to_blob, multiexp_chunk
from secagg.paillier.keys import DEFAULT_CONSTANT_TIME, MAX_SQUARE_BYTES, ThresholdPublicKey
from secagg.primitives import prg
from secagg.primitives.randomness import RandomBytes, system_random
from secagg.ring import RING64
from secagg.wire import BigUInt, FixedBytes, WireStruct, wire_field

__all__ = [
    "CHALLENGE_BYTES",
    "WEIGHT_BYTES",
    "DecryptionProof",
    "batch",
    "batch_seed",
    "batch_weights",
    "prove",
    "verify",
]

CHALLENGE_BYTES = 16
"""128-bit Fiat-Shamir challenges."""

WEIGHT_BYTES = 16
"""128-bit batch weights."""

STATISTICAL_BITS = 128
"""Slack that makes z = r + e*x statistically independent of x."""

PROOF_LABEL = b"secagg/v1/paillier-decryption-proof"
BATCH_LABEL = b"secagg/v1/paillier-batch-weights"
WEIGHT_PRG_LABEL = b"paillier-batch-weights"
MULTIEXP_CHUNK = 512
MAX_RESPONSE_BYTES = MAX_SQUARE_BYTES + 256


@dataclass(frozen=True)
class DecryptionProof(WireStruct):
    """A batched proof of correct partial decryption: challenge e and response z."""

    challenge: bytes = wire_field(FixedBytes(CHALLENGE_BYTES))
    response: int = wire_field(BigUInt(MAX_RESPONSE_BYTES))

    def __post_init__(self) -> None:
        if not isinstance(self.challenge, bytes) or len(self.challenge) != CHALLENGE_BYTES:
            raise ConfigurationError(f"proof challenge must be {CHALLENGE_BYTES} bytes")
        if isinstance(self.response, bool) or not isinstance(self.response, int) or self.response < 0:
            raise ConfigurationError("proof response must be a non-negative int")


def _encode_int(value: Any) -> bytes:
    raw = int(value).to_bytes((int(value).bit_length() + 7) // 8, "big")
    return len(raw).to_bytes(2, "big") + raw


def batch_seed(session_id: bytes, aggregate_digest: bytes, party: int, partial_data: bytes) -> bytes:
    """The 32-byte seed of party ``party``'s batch weights, fixed only after its partial data are."""
    return hashlib.sha256(
        BATCH_LABEL + session_id + aggregate_digest + party.to_bytes(2, "big") + hashlib.sha256(partial_data).digest()
    ).digest()


def _weights(seed: bytes, count: int) -> bytes:
    size = count * WEIGHT_BYTES
    return prg.expand(seed, WEIGHT_PRG_LABEL, (size + 7) // 8, RING64).tobytes()[:size]


def batch_weights(seed: bytes, count: int) -> list[int]:
    """The ``count`` 128-bit weights :func:`batch` expands from ``seed``, as integers."""
    weights = _weights(seed, count)
    return [int.from_bytes(weights[i : i + WEIGHT_BYTES], "big") for i in range(0, len(weights), WEIGHT_BYTES)]


def batch(
    public: ThresholdPublicKey, values: Sequence[Any], seed: bytes, workers: Workers = IN_PROCESS
) -> Any:
    """``prod_j values_j^(w_j) mod n^2`` with the weights expanded from ``seed``."""
    nsquare = public.key.nsquare
    width = public.key.ciphertext_bytes
    weights = _weights(seed, len(values))
    tasks = [
        (nsquare, ints_to_blob(values[start:stop], width), weights[start * WEIGHT_BYTES : stop * WEIGHT_BYTES],
         WEIGHT_BYTES)
        for start, stop in chunked(len(values), MULTIEXP_CHUNK)
    ]
    product = gmpy2.mpz(1)
    for result in workers.map(multiexp_chunk, tasks):
        product = product * int.from_bytes(result, "big") % nsquare
    return product


def _challenge(
    public: ThresholdPublicKey, party: int, context: bytes, hat_c: Any, hat_ci: Any, a: Any, b: Any
) -> bytes:
    digest = hashlib.sha256(PROOF_LABEL + context + party.to_bytes(2, "big"))
    for value in (public.key.n, public.verification_base, public.verification_key(party), hat_c, hat_ci, a, b):
        digest.update(_encode_int(value))
    return digest.digest()[:CHALLENGE_BYTES]


def _randomness_bits(public: ThresholdPublicKey) -> int:
    return public.delta.bit_length() + public.key.nsquare.bit_length() + 8 * CHALLENGE_BYTES + STATISTICAL_BITS


def prove(
    public: ThresholdPublicKey,
    party: int,
    secret: int,
    context: bytes,
    batched: Any,
    random_bytes: RandomBytes = system_random,
    *,
    constant_time: bool = DEFAULT_CONSTANT_TIME,
) -> DecryptionProof:
    """Proof that party ``party`` raised the batched aggregate ``batched`` (C) to ``2 * secret``.

    ``secret`` is x = Delta * s_i (for the single key: d); ``context`` is
    session id || aggregate digest. By default (``constant_time``,
    :data:`~secagg.paillier.keys.DEFAULT_CONSTANT_TIME`) the powers of x and of the nonce r use
    GMP's side-channel-silent exponentiation; ``constant_time=False`` the sliding window (timing
    and cache side channels on x and r).
    """
    nsquare = gmpy2.mpz(public.key.nsquare)
    power = gmpy2.powmod_sec if constant_time else gmpy2.powmod
    hat_c = gmpy2.powmod(batched, 4, nsquare)
    hat_ci = power(hat_c, secret, nsquare)
    bits = _randomness_bits(public)
    r = int.from_bytes(random_bytes((bits + 7) // 8), "big") >> (-bits % 8)
    a = power(hat_c, r, nsquare)
    b = power(public.verification_base, r, nsquare)
    challenge = _challenge(public, party, context, hat_c, hat_ci, a, b)
    return DecryptionProof(challenge=challenge, response=r + int.from_bytes(challenge, "big") * secret)


def verify(
    public: ThresholdPublicKey, party: int, context: bytes, batched: Any, batched_partial: Any, proof: DecryptionProof
) -> bool:
    """True iff ``proof`` shows log_(C^4)(C_i^2) = log_v(v_party) for C = ``batched``, C_i = ``batched_partial``."""
    nsquare = gmpy2.mpz(public.key.nsquare)
    if proof.response.bit_length() > _randomness_bits(public) + 1:
        return False
    e = int.from_bytes(proof.challenge, "big")
    hat_c = gmpy2.powmod(batched, 4, nsquare)
    hat_ci = gmpy2.powmod(batched_partial, 2, nsquare)
    # Inverses exist: both values lie in Z*_(n^2) (checked on receipt / by construction).
    a = gmpy2.powmod(hat_c, proof.response, nsquare) * gmpy2.powmod(hat_ci, -e, nsquare) % nsquare
    verification_key = public.verification_key(party)
    b = gmpy2.powmod(public.verification_base, proof.response, nsquare) * gmpy2.powmod(
        verification_key, -e, nsquare
    ) % nsquare
    return hmac.compare_digest(_challenge(public, party, context, hat_c, hat_ci, a, b), proof.challenge)
