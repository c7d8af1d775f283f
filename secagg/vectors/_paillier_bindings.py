"""Vectors for what binds a Paillier session and how its keys are kept.

- ``paillier_session.json``: Paillier session ids, signed uploads and their acceptance (spec 13.9);
- ``paillier_storage.json``: a key share sealed under a passphrase, the KDF floor and ceiling (spec 13.10),
  and single-key dealing (spec 13.5).
"""

from __future__ import annotations

import dataclasses

from secagg import wire
from secagg.paillier.ceremony import deal_threshold_key_from_primes, single_key_from_primes
from secagg.paillier.keys import KeyShare, PrivateKey, ThresholdPublicKey, insecure_key_sizes_for_testing
from secagg.paillier.messages import DecryptionRequest, EncryptedVector, PartialDecryption, upload_payload
from secagg.paillier.packing import SlotLayout
from secagg.paillier.protocol import Client, DecryptingParty, Server, SessionParameters
from secagg.paillier.storage import protect, unprotect
from secagg.primitives.signing import SigningKey
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, from_hex, test_case, vector_file
from secagg.vectors._paillier import _big, _primes
from secagg.vectors._random import RecordingRandom, ReplayedRandom
from secagg.vectors._suite import Suite, deterministic, register

__all__ = ["SUITES"]


# --- paillier_session.json --------------------------------------------------------------------

SESSION_NOTES = {
    "SessionId": "The session id of these parameters (spec 13.9), identity keys and descriptor included.",
    "SignedUpload": "Uploads signed over upload_payload with deterministic Ed25519 identity seeds; the "
    "server accepts them and decrypting party 1 answers their product.",
    "Unsigned": "An upload whose signature is 64 zero bytes (step: server, AuthenticationError).",
    "WrongSigner": "Client 1's upload signed with client 2's identity key (step: server, AuthenticationError).",
    "OutsideRoster": "An upload from client 9, not on the roster (step: server, ProtocolError).",
    "SecondUpload": "A second upload from one client (step: server, ReplayError).",
    "TooFew": "A request with fewer than min_contributors uploads (step: party, ProtocolError).",
    "OwnMissing": "A request without the party's own upload (step: party, ProtocolError).",
    "Repeated": "A request that repeats a client's upload (step: party, ReplayError).",
    "PartyUnsigned": "A request whose second upload carries no valid signature: the decrypting party refuses "
    "it even though its own upload is present (step: party, AuthenticationError).",
    "PartyWrongSigner": "A request with an upload signed by another enrolled hospital than its client "
    "(step: party, AuthenticationError).",
    "Unsorted": "A request whose uploads are not in client order: accepted; the digest sorts them.",
    "BoundedRange": "The same session with the layout's value_bound 127 (values in [-127, 127], offset 127): "
    "another session id, since the id binds the layout's offset and value_max.",
    "CopiedProof": "Client 2's ciphertext words followed by client 1's proof of plaintext knowledge, signed by "
    "client 2: the proof's weights and challenge bind the client and its words (step: server, "
    "AuthenticationError).",
    "CancellingUpload": "Client 3 uploads its ciphertexts divided by client 2's (Enc(m_3 - m_2): the sum of the "
    "three would be client 1's update plus m_3), signed, with its own proof for its honest vector; the "
    "decrypting party refuses it (step: party, AuthenticationError).",
    "ProofOutOfRange": "Client 2's upload with z1 (or z2) of its proof raised by n, re-signed: the verification "
    "equation still holds (g has order n; (z2 + n)^n = z2^n mod n^2), only the range checks 0 <= z1 < n, "
    "0 < z2 < n refuse it (step: server, AuthenticationError).",
}
SESSION_ROSTER = (1, 2, 3)


def _paillier_material() -> tuple[ThresholdPublicKey, tuple[KeyShare, ...]]:
    with insecure_key_sizes_for_testing():
        p, q = _primes("paillier/key")
        material = deal_threshold_key_from_primes(p, q, num_parties=3, threshold=2,
                                                  random_bytes=deterministic("bindings/paillier/deal"),
                                                  insecure_for_testing=True)
    return material.public, material.shares


def _key_from_seed(seed: bytes) -> SigningKey:
    def source(size: int) -> bytes:
        del size
        return seed

    return SigningKey.generate(source)


def _session_params(group: Json) -> SessionParameters:
    public = wire.decode(from_hex(group["publicKey"]), ThresholdPublicKey)
    seeds = [from_hex(seed) for seed in group["identitySeeds"]]
    return SessionParameters(
        public=public, layout=SlotLayout(group["valueBits"], group["layoutClients"], public.key.key_bits,
                                         value_bound=group.get("valueBound")),
        vector_length=group["vectorLength"], roster=tuple(group["roster"]), min_contributors=group["minContributors"],
        identity_keys=tuple(_key_from_seed(seed).public for seed in seeds),
        context=from_hex(group["context"]), descriptor=from_hex(group["descriptor"]))


def generate_paillier_session() -> Json:
    """paillier_session.json: session ids, signed uploads, acceptance and refusals."""
    public, shares = _paillier_material()
    draw = deterministic("bindings/paillier/session")
    identities = {c: SigningKey.generate(draw) for c in SESSION_ROSTER}
    group: Json = {"type": "PaillierSessionTest", "publicKey": wire.encode(public).hex(),
                   "keyShare1": wire.encode(shares[0]).hex(), "valueBits": 8, "layoutClients": 3, "vectorLength": 4,
                   "roster": list(SESSION_ROSTER), "minContributors": 2,
                   "identitySeeds": [identities[c].seed.hex() for c in SESSION_ROSTER],
                   "context": draw(32).hex(), "descriptor": draw(32).hex()}
    with insecure_key_sizes_for_testing():
        params = _session_params(group)
        uploads = {}
        for client in SESSION_ROSTER:
            sender = Client(params, client, identities[client], random_bytes=deterministic(f"bindings/upload/{client}"))
            uploads[client] = sender.upload([client, -client, 0, 127])
        stranger = SigningKey.generate(draw)
        outside = EncryptedVector(params.session_id, 9, 4, uploads[1].ciphertexts,
                                  stranger.sign(upload_payload(params.session_id, 9, 4, uploads[1].ciphertexts)))
    enc = {c: wire.encode(u).hex() for c, u in uploads.items()}
    unsigned = dataclasses.replace(uploads[1], signature=bytes(64))
    wrong = dataclasses.replace(uploads[1], signature=identities[2].sign(uploads[1].payload))
    tests = [test_case("three signed uploads, party 1 answers", ["SessionId", "SignedUpload"], "valid", step="party",
                       uploads=[enc[1], enc[2], enc[3]], ownUpload=enc[1], sessionId=params.session_id.hex(),
                       payloads=[uploads[c].payload.hex() for c in SESSION_ROSTER],
                       aggregateDigest=_aggregate(group, [enc[1], enc[2], enc[3]], enc[1])),
             test_case("uploads in the order 3, 1", ["SignedUpload", "Unsorted"], "valid", step="party",
                       uploads=[enc[3], enc[1]], ownUpload=enc[1], sessionId=params.session_id.hex(),
                       aggregateDigest=_aggregate(group, [enc[3], enc[1]], enc[1])),
             test_case("unsigned upload", ["Unsigned"], "invalid", step="server",
                       uploads=[enc[2], wire.encode(unsigned).hex()], error="AuthenticationError"),
             test_case("client 1's upload signed by client 2", ["WrongSigner"], "invalid", step="server",
                       uploads=[wire.encode(wrong).hex()], error="AuthenticationError"),
             test_case("upload from client 9", ["OutsideRoster"], "invalid", step="server",
                       uploads=[wire.encode(outside).hex()], error="ProtocolError"),
             test_case("client 2 uploads twice", ["SecondUpload"], "invalid", step="server",
                       uploads=[enc[2], enc[2]], error="ReplayError"),
             test_case("one upload, min_contributors 2", ["TooFew"], "invalid", step="party", uploads=[enc[1]],
                       ownUpload=enc[1], error="ProtocolError"),
             test_case("party 1's own upload left out", ["OwnMissing"], "invalid", step="party",
                       uploads=[enc[2], enc[3]], ownUpload=enc[1], error="ProtocolError"),
             test_case("client 2's upload twice", ["Repeated"], "invalid", step="party",
                       uploads=[enc[1], enc[2], enc[2]], ownUpload=enc[1], error="ReplayError"),
             test_case("the server's own upload in client 3's name, unsigned", ["PartyUnsigned"], "invalid",
                       step="party", uploads=[enc[1], wire.encode(dataclasses.replace(uploads[3], signature=bytes(64)))
                                              .hex()], ownUpload=enc[1], error="AuthenticationError"),
             test_case("client 3's upload signed by client 2", ["PartyWrongSigner"], "invalid", step="party",
                       uploads=[enc[1], wire.encode(dataclasses.replace(
                           uploads[3], signature=identities[2].sign(uploads[3].payload))).hex()],
                       ownUpload=enc[1], error="AuthenticationError"),
             *_proof_cases(params, uploads, identities, enc)]
    group["tests"] = tests
    bounded = _bounded_session(group, identities)
    return vector_file(
        algorithm="secagg-paillier-session",
        schema="paillier_session_test_schema.json",
        header=["Paillier session binding (docs/spec.md, section 13.9): the session id over the key fingerprint,",
                "layout, length, min_contributors, context, descriptor and the roster's identity keys; uploads",
                "signed over upload_payload; what the server and a decrypting party accept and refuse.",
                "128-bit insecure test key (2-of-3); party 1 holds keyShare1 and uploaded as client 1."],
        notes=SESSION_NOTES,
        groups=[group, bounded],
    )


def _resigned(upload: EncryptedVector, data: bytes, identity: SigningKey) -> str:
    """``upload`` with ciphertext data ``data``, signed by ``identity``, encoded in hex."""
    payload = upload_payload(upload.session_id, upload.client, upload.length, data)
    return wire.encode(dataclasses.replace(upload, ciphertexts=data, signature=identity.sign(payload))).hex()


def _proof_cases(params: SessionParameters, uploads: dict[int, EncryptedVector],
                 identities: dict[int, SigningKey], enc: dict[int, str]) -> list[Json]:
    """Uploads whose signature verifies but whose proof of plaintext knowledge does not (spec 13.9)."""
    key = params.public.key
    split, width = params.aggregate_data_bytes, key.ciphertext_bytes
    words = {c: uploads[c].ciphertexts[:split] for c in SESSION_ROSTER}
    proofs = {c: uploads[c].ciphertexts[split:] for c in SESSION_ROSTER}
    copied = _resigned(uploads[2], words[2] + proofs[1], identities[2])
    own, other = (key.parse_ciphertexts(words[c], "vector") for c in (3, 2))
    quotient = b"".join((int(c) * pow(int(d), -1, key.nsquare) % key.nsquare).to_bytes(width, "big")
                        for c, d in zip(own, other, strict=True))
    cancelling = _resigned(uploads[3], quotient + proofs[3], identities[3])
    raised = {}
    for position, name in ((1, "z1"), (2, "z2")):
        proof = bytearray(proofs[2])
        value = int.from_bytes(proof[position * width : (position + 1) * width], "big") + key.n
        proof[position * width : (position + 1) * width] = value.to_bytes(width, "big")
        raised[name] = _resigned(uploads[2], words[2] + bytes(proof), identities[2])
    return [test_case("client 2's words with client 1's proof, signed by client 2", ["CopiedProof"], "invalid",
                      step="server", uploads=[enc[1], copied], error="AuthenticationError"),
            test_case("client 3 cancels client 2's upload (its own proof, signed)", ["CancellingUpload"], "invalid",
                      step="party", uploads=[enc[1], enc[2], cancelling], ownUpload=enc[1],
                      error="AuthenticationError"),
            *(test_case(f"client 2's proof with {name} + n, re-signed", ["ProofOutOfRange"], "invalid",
                        step="server", uploads=[raised[name]], error="AuthenticationError") for name in raised)]


def _bounded_session(base: Json, identities: dict[int, SigningKey]) -> Json:
    """The first group's session with value_bound 127: three signed uploads, party 1 answers."""
    group: Json = {key: value for key, value in base.items() if key != "tests"}
    group["valueBound"] = 127
    with insecure_key_sizes_for_testing():
        params = _session_params(group)
        uploads = {client: Client(params, client, identities[client],
                                  random_bytes=deterministic(f"bindings/upload/bounded/{client}"))
                   .upload([client, -client, -127, 127]) for client in SESSION_ROSTER}
    enc = [wire.encode(uploads[c]).hex() for c in SESSION_ROSTER]
    group["tests"] = [test_case("value_bound 127: three signed uploads, party 1 answers",
                                ["SessionId", "SignedUpload", "BoundedRange"], "valid", step="party", uploads=enc,
                                ownUpload=enc[0], sessionId=params.session_id.hex(),
                                payloads=[uploads[c].payload.hex() for c in SESSION_ROSTER],
                                aggregateDigest=_aggregate(group, enc, enc[0]))]
    return group


def _aggregate(group: Json, uploads: list[str], own: str) -> str:
    with insecure_key_sizes_for_testing():
        return _party_answer(group, uploads, own).aggregate_digest.hex()


def _party_answer(group: Json, uploads: list[str], own: str) -> PartialDecryption:
    params = _session_params(group)
    share = wire.decode(from_hex(group["keyShare1"]), KeyShare)
    own_digest = wire.decode(from_hex(own), EncryptedVector).digest
    party = DecryptingParty(params, share, own_upload=own_digest, random_bytes=deterministic("bindings/proof"))
    request = DecryptionRequest(params.session_id, 1, tuple(wire.decode(from_hex(u), EncryptedVector) for u in uploads))
    return party.respond(wire.encode(request))


@register("PaillierSessionTest")
def check_paillier_session(group: Json, test: Json) -> None:
    """Recompute the session id and payloads; replay the uploads into a server or a party."""
    with insecure_key_sizes_for_testing():
        params = _session_params(group)
        if "sessionId" in test:
            equal("session id", params.session_id.hex(), test["sessionId"])
        for index, payload in enumerate(test.get("payloads", [])):
            upload = wire.decode(from_hex(test["uploads"][index]), EncryptedVector)
            equal("upload payload", upload.payload.hex(), payload)
            seed = from_hex(group["identitySeeds"][params.roster.index(upload.client)])
            equal("signature", _key_from_seed(seed).sign(from_hex(payload)).hex(),
                  upload.signature.hex())
        if test["step"] == "server":
            server = Server(params)

            def receive() -> None:
                for data in test["uploads"]:
                    server.receive_upload(from_hex(data))

            if is_valid(test):
                receive()
            else:
                expect_error(test, receive, "server")
            return
        if not is_valid(test):
            expect_error(test, lambda: _party_answer(group, test["uploads"], test["ownUpload"]), "party")
            return
        server = Server(params)
        for data in test["uploads"]:
            server.receive_upload(from_hex(data))
        answer = _party_answer(group, test["uploads"], test["ownUpload"])
        equal("aggregate digest", answer.aggregate_digest.hex(), test["aggregateDigest"])


# --- paillier_storage.json --------------------------------------------------------------------

STORAGE_NOTES = {
    "Sealed": "A key share sealed with scrypt (log_n, r, p), the recorded salt (16 bytes) and AES-GCM nonce "
    "(12 bytes), drawn in that order.",
    "UnicodePassphrase": "A text passphrase: UTF-8 into scrypt, its length counted in code points.",
    "WrongPassphrase": "Opened with another passphrase (step: unprotect, AuthenticationError).",
    "ShortPassphrase": "A passphrase under 12 characters (step: protect, ConfigurationError).",
    "BelowFloor": "scrypt cost under the writing floor log_n 15, r 8 (step: protect, ConfigurationError).",
    "AboveCeiling": "128 r 2^log_n p above 2^28 bytes: refused when writing (step: protect, ConfigurationError) "
    "and when reading (step: unprotect, DecodeError, before any scrypt).",
    "SingleKey": "Single-key dealing from primes p < q: the draws of v (spec 13.5), the public and private key.",
    "BadPrimes": "Equal or composite primes (step: single_key_from_primes, ConfigurationError).",
}


def generate_storage() -> Json:
    """paillier_storage.json: a sealed key share, KDF floor and ceiling, single-key dealing."""
    _, shares = _paillier_material()
    share = wire.encode(shares[0]).hex()
    tests = []
    with insecure_key_sizes_for_testing():
        for comment, flags, passphrase, log_n, r, p in (
            ("ASCII passphrase, scrypt 2^15, r 8, p 1 (the floor)", ["Sealed"], "correct horse battery", 15, 8, 1),
            ("12 code points (16 UTF-8 bytes), scrypt 2^15, r 8, p 2", ["Sealed", "UnicodePassphrase"],
             "pässwörd-ünï", 15, 8, 2),
        ):
            source = RecordingRandom(deterministic(f"bindings/storage/{p}"))
            sealed = protect(shares[0], passphrase, scrypt_log_n=log_n, scrypt_r=r, scrypt_p=p, random_bytes=source)
            salt, nonce = source.take()
            tests.append(test_case(comment, flags, "valid", step="protect", passphrase=passphrase, scryptLogN=log_n,
                                   scryptR=r, scryptP=p, salt=salt.hex(), nonce=nonce.hex(), keyShare=share,
                                   protected=sealed.hex()))
    first = tests[0]
    tests.append(test_case("wrong passphrase", ["WrongPassphrase"], "invalid", step="unprotect",
                           passphrase="correct horse battery!", protected=first["protected"],  # noqa: S106 (a published test passphrase)
                           error="AuthenticationError"))
    header = from_hex(first["protected"])
    tests.append(test_case("header log_n 19, r 8 (512 MiB)", ["AboveCeiling"], "invalid", step="unprotect",
                           passphrase="correct horse battery", protected=(header[:5] + b"\x13" + header[6:]).hex(),  # noqa: S106 (a published test passphrase)
                           error="DecodeError"))
    for comment, flags, passphrase, log_n, r, p in (
        ("11 characters", ["ShortPassphrase"], "abcdefghijk", 15, 8, 1),
        ("11 code points, 13 bytes", ["ShortPassphrase", "UnicodePassphrase"], "äbcdéfghijk", 15, 8, 1),
        ("log_n 14, r 8", ["BelowFloor"], "correct horse battery", 14, 8, 1),
        ("log_n 15, r 7", ["BelowFloor"], "correct horse battery", 15, 7, 1),
        ("log_n 19, r 8, p 1", ["AboveCeiling"], "correct horse battery", 19, 8, 1),
    ):
        tests.append(test_case(comment, flags, "invalid", step="protect", passphrase=passphrase, scryptLogN=log_n,
                               scryptR=r, scryptP=p, keyShare=share, error="ConfigurationError"))
    with insecure_key_sizes_for_testing():
        p_, q_ = _primes("bindings/single")
        source = RecordingRandom(deterministic("bindings/single/deal"))
        single = single_key_from_primes(p_, q_, random_bytes=source, insecure_for_testing=True)
    deal = [test_case("single key from two 64-bit primes", ["SingleKey"], "valid", p=_big(p_), q=_big(q_),
                      randomness=[d.hex() for d in source.take()], publicKey=wire.encode(single.public).hex(),
                      privateKey=wire.encode(single.private).hex()),
            test_case("p = q", ["BadPrimes"], "invalid", p=_big(p_), q=_big(p_), error="ConfigurationError"),
            test_case("q composite", ["BadPrimes"], "invalid", p=_big(p_), q=_big(q_ * 3), error="ConfigurationError")]
    return vector_file(
        algorithm="secagg-paillier-storage",
        schema="paillier_storage_test_schema.json",
        header=["Key storage (docs/spec.md, section 13.10): a ProtectedSecret sealing a 128-bit test key share",
                "under a passphrase with recorded salt and nonce; the writing floor and the reading ceiling.",
                "Single-key dealing from given primes (section 13.5, 128-bit insecure test key)."],
        notes=STORAGE_NOTES,
        groups=[{"type": "ProtectedSecretTest", "tests": tests}, {"type": "SingleKeyDealTest", "tests": deal}],
    )


@register("ProtectedSecretTest")
def check_protected(group: Json, test: Json) -> None:
    """Seal with the recorded salt and nonce and open again; or require the refusal."""
    del group
    with insecure_key_sizes_for_testing():
        if test["step"] == "unprotect":
            expect_error(test, lambda: unprotect(from_hex(test["protected"]), test["passphrase"]), "unprotect")
            return
        share = wire.decode(from_hex(test["keyShare"]), KeyShare)
        log_n, r, p = test["scryptLogN"], test["scryptR"], test["scryptP"]
        if not is_valid(test):
            expect_error(test, lambda: protect(share, test["passphrase"], scrypt_log_n=log_n, scrypt_r=r, scrypt_p=p,
                                               random_bytes=deterministic("unused")), "protect")
            return
        source = ReplayedRandom([from_hex(test["salt"]), from_hex(test["nonce"])], "protect")
        sealed = protect(share, test["passphrase"], scrypt_log_n=log_n, scrypt_r=r, scrypt_p=p, random_bytes=source)
        source.finish()
        equal("protected secret", sealed.hex(), test["protected"])
        equal("opened", wire.encode(unprotect(sealed, test["passphrase"])).hex(), test["keyShare"])


@register("SingleKeyDealTest")
def check_single_deal(group: Json, test: Json) -> None:
    """Deal the single key from p, q and the recorded draws of v."""
    del group
    p, q = int.from_bytes(from_hex(test["p"]), "big"), int.from_bytes(from_hex(test["q"]), "big")
    with insecure_key_sizes_for_testing():
        if not is_valid(test):
            expect_error(test, lambda: single_key_from_primes(p, q, random_bytes=deterministic("unused"),
                                                              insecure_for_testing=True), "deal")
            return
        source = ReplayedRandom([from_hex(d) for d in test["randomness"]], "dealer")
        material = single_key_from_primes(p, q, random_bytes=source, insecure_for_testing=True)
        source.finish()
        equal("public key", wire.encode(material.public).hex(), test["publicKey"])
        equal("private key", wire.encode(material.private).hex(), test["privateKey"])
        equal("decoded", wire.decode(from_hex(test["privateKey"]), PrivateKey), material.private)


SUITES = [
    Suite("paillier_session.json", "paillier_session_test_schema.json", generate_paillier_session),
    Suite("paillier_storage.json", "paillier_storage_test_schema.json", generate_storage),
]
