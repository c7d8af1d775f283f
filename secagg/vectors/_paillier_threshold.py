"""Vectors for threshold Paillier (spec sections 13.5-13.8): dealing, key shares, partial decryption,
combination and proofs of correct decryption. INSECURE 128-bit test keys (see :mod:`._paillier_common`)."""

from __future__ import annotations

from collections.abc import Sequence

from secagg import wire
from secagg.errors import AuthenticationError
from secagg.paillier.ceremony import (
    deal_threshold_key_from_primes,
    single_key_from_primes,
)
from secagg.paillier.encryption import Encryptor
from secagg.paillier.keys import KeyShare, PrivateKey, ThresholdPublicKey, insecure_key_sizes_for_testing
from secagg.paillier.proofs import DecryptionProof, batch, batch_seed, prove, verify
from secagg.paillier.threshold import combine_partials, lagrange_exponents, partial_decrypt, single_key_partial_decrypt
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, VectorError, from_hex, test_case, vector_file
from secagg.vectors._paillier_common import _big, _primes, _unbig, _unwords, _words
from secagg.vectors._random import RecordingRandom, ReplayedRandom
from secagg.vectors._suite import deterministic, register

__all__ = ["generate_threshold"]


# --- paillier_threshold.json -------------------------------------------------------------

THRESHOLD_NOTES = {
    "SingleKey": "The single-key mode: t = l = 1, the key holder knows p and q.",
    "AllParties": "Every party answers; the t of lowest index are combined.",
    "OtherSubset": "A subset other than the lowest indices is combined.",
    "BelowThreshold": "Fewer than t partial decryptions: refused (step: combine, ThresholdError).",
    "ForgedPartial": "One partial decryption was altered: the combination is not 1 mod n (step: combine, "
    "AuthenticationError), and its proof does not verify.",
    "BadProof": "A proof whose challenge or response was altered, or made for another aggregate: refused "
    "(step: verify proof, AuthenticationError).",
    "NotSafePrimes": "Threshold dealing from primes that are not safe primes: refused (ConfigurationError).",
    "ForgedShare": "A key share that does not match its verification key: refused (AuthenticationError).",
}


def _deal_group(label: str, t: int, parties: int) -> tuple[Json, ThresholdPublicKey, list[KeyShare]]:
    with insecure_key_sizes_for_testing():
        p, q = _primes("paillier/key")
        source = RecordingRandom(deterministic(label))
        material = deal_threshold_key_from_primes(p, q, num_parties=parties, threshold=t, random_bytes=source,
                                                  insecure_for_testing=True)
    public, shares = material.public, list(material.shares)
    test = test_case(f"{t}-of-{parties} key", [], "valid", p=_big(p), q=_big(q), threshold=t, numParties=parties,
                     randomness=[d.hex() for d in source.take()], n=_big(public.key.n),
                     verificationBase=_big(public.verification_base),
                     secrets=[_big(s.secret) for s in shares],
                     verificationKeys=[_big(v) for v in public.verification_keys],
                     publicKey=wire.encode(public).hex(), keyShares=[wire.encode(s).hex() for s in shares])
    return test, public, shares


def _partial_tests(public: ThresholdPublicKey, secrets: Sequence[KeyShare | PrivateKey], label: str) -> list[Json]:
    key = public.key
    width = key.ciphertext_bytes
    with insecure_key_sizes_for_testing():
        encryptor = Encryptor(key, random_bytes=deterministic(f"{label}/encrypt"))
        messages = [int.from_bytes(deterministic(f"{label}/m/{j}")(8), "big") for j in range(4)]
        ciphertexts = encryptor.encrypt(messages)
    partials = {}
    for secret in secrets:
        if isinstance(secret, PrivateKey):
            partials[1] = single_key_partial_decrypt(secret, ciphertexts)
        else:
            partials[secret.index] = partial_decrypt(secret, ciphertexts)
    t = public.threshold
    subsets = [sorted(partials)[:t]]
    if len(partials) > t:
        subsets.append(sorted(partials)[-t:])
    tests = []
    for number, subset in enumerate(subsets):
        chosen = {i: partials[i] for i in subset}
        tests.append(test_case(
            f"combine parties {subset}", ["SingleKey"] if public.single_key else
            (["AllParties"] if number == 0 else ["OtherSubset"]), "valid", ciphertexts=_words(ciphertexts, width),
            partials=[{"party": i, "values": _words(v, width)} for i, v in sorted(partials.items())], combine=subset,
            exponents=[str(lagrange_exponents(subset, public.delta)[i]) for i in subset],
            plaintexts=_words(combine_partials(public, chosen), key.plaintext_bytes)))
    if t > 1:
        below = sorted(partials)[: t - 1]
        tests.append(test_case(f"only parties {below}", ["BelowThreshold"], "invalid",
                               ciphertexts=_words(ciphertexts, width),
                               partials=[{"party": i, "values": _words(partials[i], width)} for i in below],
                               combine=below, error="ThresholdError"))
    forged = {i: list(v) for i, v in partials.items()}
    first = sorted(forged)[0]
    forged[first][1] = forged[first][1] * 2 % key.nsquare
    subset = sorted(forged)[:t]
    tests.append(test_case(f"party {first}'s second value times 2", ["ForgedPartial"], "invalid",
                           ciphertexts=_words(ciphertexts, width),
                           partials=[{"party": i, "values": _words(forged[i], width)} for i in subset],
                           combine=subset, error="AuthenticationError"))
    return tests


def _proof_tests(public: ThresholdPublicKey, shares: Sequence[KeyShare], label: str) -> list[Json]:
    key = public.key
    width = key.ciphertext_bytes
    source = deterministic(label)
    session, digest = source(32), source(32)
    with insecure_key_sizes_for_testing():
        aggregate = Encryptor(key, random_bytes=source).encrypt([3, 5, 7])
    tests = []
    for share in shares[:2]:
        values = partial_decrypt(share, aggregate)
        data = b"".join(int(v).to_bytes(width, "big") for v in values)
        seed = batch_seed(session, digest, share.index, data)
        batched, batched_partial = batch(public, aggregate, seed), batch(public, values, seed)
        recorder = RecordingRandom(source)
        proof = prove(public, share.index, share.proof_secret, session + digest, batched, recorder)
        fields = {"party": share.index, "sessionId": session.hex(), "aggregateDigest": digest.hex(),
                  "aggregate": _words(aggregate, width), "partial": _words(values, width)}
        tests.append(test_case(f"party {share.index}", [], "valid", **fields, batchSeed=seed.hex(),
                               batched=_big(batched), batchedPartial=_big(batched_partial),
                               randomness=recorder.take()[0].hex(), challenge=proof.challenge.hex(),
                               response=_big(proof.response)))
        if share.index == shares[0].index:
            bad = [
                ("challenge altered", bytes([proof.challenge[0] ^ 1]) + proof.challenge[1:], proof.response, fields),
                ("response + 1", proof.challenge, proof.response + 1, fields),
                ("proof presented for another aggregate digest", proof.challenge, proof.response,
                 {**fields, "aggregateDigest": bytes(32).hex()}),
            ]
            for comment, challenge, response, bad_fields in bad:
                tests.append(test_case(comment, ["BadProof"], "invalid", **bad_fields, challenge=challenge.hex(),
                                       response=_big(response), error="AuthenticationError"))
    return tests


def generate_threshold() -> Json:
    """paillier_threshold.json: dealing, partial decryption, proofs, combination."""
    deal_2of3, public, shares = _deal_group("paillier/deal/2of3", 2, 3)
    deal_3of4, public4, shares4 = _deal_group("paillier/deal/3of4", 3, 4)
    with insecure_key_sizes_for_testing():
        p, q = _primes("paillier/key")
        single = single_key_from_primes(p, q, random_bytes=deterministic("paillier/single"), insecure_for_testing=True)
        bad_primes = [test_case("p - 2 is not a safe prime", ["NotSafePrimes"], "invalid", p=_big(p - 2), q=_big(q),
                                threshold=2, numParties=3, randomness=[], error="ConfigurationError")]
    forged_share = test_case("party 2's secret + 1", ["ForgedShare"], "invalid",
                             publicKey=wire.encode(public).hex(), index=2, secret=_big(shares[1].secret + 1),
                             error="AuthenticationError")
    return vector_file(
        algorithm="secagg-paillier-threshold",
        schema="paillier_threshold_test_schema.json",
        header=[
            "Threshold Paillier (docs/spec.md, sections 13.5-13.8): dealing from safe primes with recorded",
            "randomness, partial decryptions c^(2 Delta s_i) mod n^2, batched proofs of correct decryption, and",
            "Shoup's combination over the t parties of lowest index. Integers are hex big-endian (values of",
            "vectors fixed width; exponents of the combination as decimal strings, they may be negative).",
            "INSECURE 128-bit test keys.",
        ],
        notes=THRESHOLD_NOTES,
        groups=[
            {"type": "ThresholdDealTest", "tests": [deal_2of3, deal_3of4, *bad_primes]},
            {"type": "KeyShareTest", "tests": [
                test_case("party 2's share", [], "valid", publicKey=wire.encode(public).hex(), index=2,
                          secret=_big(shares[1].secret)), forged_share]},
            {"type": "PartialDecryptionTest", "publicKey": wire.encode(public).hex(),
             "keyShares": [wire.encode(s).hex() for s in shares],
             "tests": _partial_tests(public, shares, "paillier/partial/2of3")},
            {"type": "PartialDecryptionTest", "publicKey": wire.encode(public4).hex(),
             "keyShares": [wire.encode(s).hex() for s in shares4],
             "tests": _partial_tests(public4, shares4, "paillier/partial/3of4")},
            {"type": "PartialDecryptionTest", "publicKey": wire.encode(single.public).hex(),
             "keyShares": [wire.encode(single.private).hex()],
             "tests": _partial_tests(single.public, [single.private], "paillier/partial/single")},
            {"type": "DecryptionProofTest", "publicKey": wire.encode(public).hex(),
             "keyShares": [wire.encode(s).hex() for s in shares],
             "tests": _proof_tests(public, shares, "paillier/proof")},
        ],
    )


@register("ThresholdDealTest")
def check_deal(group: Json, test: Json) -> None:
    """Deal shares from the primes with the recorded draws; compare every value and encoding."""
    del group
    p, q, t, parties = _unbig(test["p"]), _unbig(test["q"]), int(test["threshold"]), int(test["numParties"])
    source = ReplayedRandom([from_hex(d) for d in test["randomness"]], "dealer")
    with insecure_key_sizes_for_testing():
        if not is_valid(test):
            expect_error(test, lambda: deal_threshold_key_from_primes(
                p, q, num_parties=parties, threshold=t, random_bytes=source, insecure_for_testing=True), "deal")
            return
        material = deal_threshold_key_from_primes(p, q, num_parties=parties, threshold=t, random_bytes=source,
                                                  insecure_for_testing=True)
    source.finish()
    public = material.public
    equal("n", _big(public.key.n), test["n"])
    equal("verificationBase", _big(public.verification_base), test["verificationBase"])
    equal("secrets", [_big(s.secret) for s in material.shares], test["secrets"])
    equal("verificationKeys", [_big(v) for v in public.verification_keys], test["verificationKeys"])
    equal("publicKey", wire.encode(public).hex(), test["publicKey"])
    equal("keyShares", [wire.encode(s).hex() for s in material.shares], test["keyShares"])


@register("KeyShareTest")
def check_key_share(group: Json, test: Json) -> None:
    """Build a key share; it must match its verification key."""
    del group
    with insecure_key_sizes_for_testing():
        public = wire.decode(from_hex(test["publicKey"]), ThresholdPublicKey)
        index, secret = int(test["index"]), _unbig(test["secret"])
        if not is_valid(test):
            expect_error(test, lambda: KeyShare(public, index, secret), "KeyShare")
            return
        KeyShare(public, index, secret)


def _secrets(group: Json) -> tuple[ThresholdPublicKey, dict[int, KeyShare | PrivateKey]]:
    public = wire.decode(from_hex(group["publicKey"]), ThresholdPublicKey)
    secrets: dict[int, KeyShare | PrivateKey] = {}
    for encoded in group["keyShares"]:
        secret = wire.decode_any(from_hex(encoded))
        if isinstance(secret, KeyShare):
            secrets[secret.index] = secret
        elif isinstance(secret, PrivateKey):
            secrets[1] = secret
        else:
            raise VectorError(f"{type(secret).__name__} is not key material")
    return public, secrets


@register("PartialDecryptionTest")
def check_partial(group: Json, test: Json) -> None:
    """Each party's partial decryption, then the combination of the chosen parties."""
    with insecure_key_sizes_for_testing():
        public, secrets = _secrets(group)
        ciphertexts = _unwords(test["ciphertexts"])
        width = public.key.ciphertext_bytes
        given = {int(item["party"]): _unwords(item["values"]) for item in test["partials"]}
        chosen = {party: given[party] for party in test["combine"]}
        if not is_valid(test):
            expect_error(test, lambda: combine_partials(public, chosen), "combine")
            return
        for party, values in given.items():
            secret = secrets[party]
            mine = (single_key_partial_decrypt(secret, ciphertexts) if isinstance(secret, PrivateKey)
                    else partial_decrypt(secret, ciphertexts))
            equal(f"partial decryption of party {party}", _words(mine, width), _words(values, width))
        equal("exponents", [str(e) for e in lagrange_exponents(list(test["combine"]), public.delta).values()],
              test["exponents"])
        equal("plaintexts", _words(combine_partials(public, chosen), public.key.plaintext_bytes), test["plaintexts"])


@register("DecryptionProofTest")
def check_proof(group: Json, test: Json) -> None:
    """Batch the vectors, rebuild the proof from the recorded randomness, verify it."""
    with insecure_key_sizes_for_testing():
        public, secrets = _secrets(group)
    party = int(test["party"])
    session, digest = from_hex(test["sessionId"]), from_hex(test["aggregateDigest"])
    width = public.key.ciphertext_bytes
    aggregate, values = _unwords(test["aggregate"]), _unwords(test["partial"])
    data = b"".join(v.to_bytes(width, "big") for v in values)
    seed = batch_seed(session, digest, party, data)
    batched, batched_partial = batch(public, aggregate, seed), batch(public, values, seed)
    proof = DecryptionProof(from_hex(test["challenge"]), _unbig(test["response"]))

    def check() -> None:
        if not verify(public, party, session + digest, batched, batched_partial, proof):
            raise AuthenticationError(f"proof of party {party} does not verify")

    if not is_valid(test):
        expect_error(test, check, "verify proof")
        return
    equal("batchSeed", seed.hex(), test["batchSeed"])
    equal("batched", (_big(batched), _big(batched_partial)), (test["batched"], test["batchedPartial"]))
    secret = secrets[party]
    rebuilt = prove(public, party, secret.proof_secret, session + digest, batched,
                    ReplayedRandom([from_hex(test["randomness"])], f"party {party}"))
    equal("proof", (rebuilt.challenge.hex(), _big(rebuilt.response)), (test["challenge"], test["response"]))
    check()
