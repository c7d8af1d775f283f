"""The batched decryption proof binds every public value of its transcript (docs/spec.md 13.7).

Coverage of existing refusals (these pass on the code as it was): a proof verified
against any other session, aggregate digest, party index, verification key,
aggregate or response is refused; an order-2 factor on the partials is squared
away by the proof and by the combination alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from secagg.paillier import Encryptor, ThresholdKeyMaterial
from secagg.paillier.proofs import DecryptionProof, batch, batch_seed, prove, verify
from secagg.paillier.threshold import combine_partials, partial_decrypt
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import SAFE_PRIMES

SESSION, DIGEST = bytes(range(32)), bytes(range(32, 64))


def _proof(material: ThresholdKeyMaterial) -> tuple[list[Any], list[Any], Any, Any, DecryptionProof]:
    public, share = material.public, material.shares[0]
    ciphertexts = Encryptor(public.key, random_bytes=InsecureDeterministicRandom(1)).encrypt([5, 7, 9])
    values = partial_decrypt(share, ciphertexts)
    data = b"".join(int(v).to_bytes(public.key.ciphertext_bytes, "big") for v in values)
    seed = batch_seed(SESSION, DIGEST, 1, data)
    batched, batched_partial = batch(public, ciphertexts, seed), batch(public, values, seed)
    proof = prove(public, 1, share.proof_secret, SESSION + DIGEST, batched, InsecureDeterministicRandom(2))
    return ciphertexts, values, batched, batched_partial, proof


@pytest.mark.parametrize(
    "change", ["session", "digest", "party", "verification_key", "aggregate", "response", "long_response"]
)
def test_a_proof_verifies_only_for_its_own_transcript(material_3_of_5: ThresholdKeyMaterial, change: str) -> None:
    # Prepare
    public = material_3_of_5.public
    _, _, batched, batched_partial, proof = _proof(material_3_of_5)
    assert verify(public, 1, SESSION + DIGEST, batched, batched_partial, proof)
    keys = public.verification_keys
    swapped = dataclasses.replace(public, verification_keys=(keys[1], keys[0], *keys[2:]))
    party, context, key, aggregate, forged = 1, SESSION + DIGEST, public, batched, proof
    if change == "session":
        context = bytes(32) + DIGEST
    elif change == "digest":
        context = SESSION + bytes(32)
    elif change == "party":
        party = 2
    elif change == "verification_key":  # party 2 enrolled with party 1's key: the index is hashed
        party, key = 2, swapped
    elif change == "aggregate":
        aggregate = batched * batched % public.key.nsquare
    elif change == "response":
        forged = dataclasses.replace(proof, response=proof.response + 1)
    else:
        forged = dataclasses.replace(proof, response=proof.response + (1 << 4096))
    # Execute / Assert
    assert not verify(key, party, context, aggregate, batched_partial, forged)


def test_an_order_two_factor_on_a_partial_changes_neither_proof_nor_plaintext(
    material_3_of_5: ThresholdKeyMaterial,
) -> None:
    # Prepare: -1 has order 2; the proof squares the partials and the combination uses even exponents
    public = material_3_of_5.public
    nsquare = public.key.nsquare
    ciphertexts, values, batched, batched_partial, proof = _proof(material_3_of_5)
    negated = [(-v) % nsquare for v in values]
    # Execute
    others = {share.index: partial_decrypt(share, ciphertexts) for share in material_3_of_5.shares[1:3]}
    plaintexts = combine_partials(public, {1: negated, **others})
    # Assert
    assert verify(public, 1, SESSION + DIGEST, batched, (-batched_partial) % nsquare, proof)
    assert plaintexts == [5, 7, 9]


def test_a_response_past_the_bound_is_refused_though_it_satisfies_the_equations(
    material_3_of_5: ThresholdKeyMaterial,
) -> None:
    """The response plus a multiple of the group's exponent n * lambda(n) (known to whoever knows
    the factors) gives the same commitments, so the challenge matches; only the bound on the
    response's size refuses it (a party could otherwise make the server exponentiate by huge
    numbers)."""
    # Prepare
    p, q = SAFE_PRIMES[256]
    public = material_3_of_5.public
    assert public.key.n == p * q
    _, _, batched, batched_partial, proof = _proof(material_3_of_5)
    exponent = public.key.n * (p - 1) * (q - 1)
    bound = public.delta.bit_length() + public.key.nsquare.bit_length() + 8 * len(proof.challenge) + 128
    forged = dataclasses.replace(proof, response=proof.response + (exponent << bound))
    hat_c = pow(int(batched), 4, public.key.nsquare)
    assert pow(hat_c, forged.response, public.key.nsquare) == pow(hat_c, proof.response, public.key.nsquare)
    # Execute / Assert
    assert verify(public, 1, SESSION + DIGEST, batched, batched_partial, proof)
    assert not verify(public, 1, SESSION + DIGEST, batched, batched_partial, forged)
