"""One timed Paillier session, the measurement behind ``secagg bench paillier``.

:func:`run_config` runs steps 2 to 6 of :mod:`secagg.paillier.benchmark`'s list
(encryption, aggregation, partial decryption, combination, the references) on
dealt key material; :data:`NOTES` says what each metric measures.
"""

from __future__ import annotations

import secrets
import statistics
import time
from typing import Any

import numpy as np

from secagg import wire
from secagg.paillier._compute import Workers
from secagg.paillier.benchmark_references import measure_floor, measure_naive_phe, measure_signing
from secagg.paillier.ceremony import ThresholdKeyMaterial
from secagg.paillier.encryption import Obfuscation
from secagg.paillier.keys import ThresholdPublicKey
from secagg.paillier.messages import EncryptedVector
from secagg.paillier.packing import SlotLayout
from secagg.paillier.protocol import Client, DecryptingParty, Server, SessionParameters
from secagg.primitives.signing import SigningKey

__all__ = ["NOTES", "run_config"]

NOTES = {
    "sign_upload_s": "one client: SHA-256 of its ciphertexts + one Ed25519 signature (median of 5)",
    "verify_100_uploads_s": "one party verifying 100 signed uploads of this size, each from its own hospital "
    "(hashing included; median of 5)",
    "sign_over_encrypt": "sign_upload_s / encrypt_s: what signing adds to a client's upload",
    "verify_100_over_partial_decrypt": "verify_100_uploads_s / partial_decrypt_s (of this run's n uploads): "
    "what checking 100 signatures costs against the decryption it guards",
    "encrypt_s": "wall time per client (mean): pack + encrypt (incl. obfuscators and DJN table) + proof of "
    "plaintext knowledge + wire encode",
    "aggregate_s": "server: check every upload (Z*_(n^2), proof of plaintext knowledge) and multiply them; each "
    "party repeats this inside "
    "partial_decrypt_s as its binding check",
    "partial_decrypt_s": "per decrypting party (mean over the t parties used): check uploads, recompute the sum, "
    "c^(2 Delta s_i) for every aggregate ciphertext",
    "partial_decrypt_s_includes": "the batched zero-knowledge proof of correct decryption (one per party)",
    "decrypt_s": "server: check t partial decryptions and verify their proofs, combine, unpack, overflow checks",
    "naive_phe_encrypt_s": "phe PaillierPublicKey.encrypt (one EncryptedNumber per value) timed on "
    "naive_phe_sample values and scaled linearly to dim",
    "floor_encrypt_s": "num_ciphertexts x median time of one gmpy2.powmod(r, n, n^2) on one core, same run",
    "ciphertext_bytes_per_value": "bytes of one client's EncryptedVector wire message / dim",
    "max_party_s": "largest wall time of any single party in its role (client, server, decrypting party)",
}


def run_config(
    material: ThresholdKeyMaterial,
    *,
    clients: int,
    dim: int,
    value_bits: int,
    obfuscation: Obfuscation,
    workers: Workers,
    naive_sample: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Run one session with timings; returns the ``metrics`` dict."""
    public: ThresholdPublicKey = material.public
    key = public.key
    layout = SlotLayout(value_bits, clients, key.key_bits)
    identities = {k: SigningKey.generate() for k in range(1, clients + 1)}
    params = SessionParameters(
        public=public, layout=layout, vector_length=dim, roster=tuple(range(1, clients + 1)),
        min_contributors=min(clients, max(2, public.threshold)),
        identity_keys=tuple(identities[k].public for k in range(1, clients + 1)), context=secrets.token_bytes(32),
    )
    low, high = layout.value_min, layout.value_max
    inputs = {k: rng.integers(low, high, size=dim, endpoint=True, dtype=np.int64) for k in range(1, clients + 1)}

    encrypt_times, uploads, digests = [], {}, {}
    for k, vector in inputs.items():
        started = time.perf_counter()
        client = Client(params, k, identities[k], obfuscation=obfuscation, workers=workers)
        uploads[k] = wire.encode(client.upload(vector))
        encrypt_times.append(time.perf_counter() - started)
        assert client.upload_digest is not None  # set by upload()
        digests[k] = client.upload_digest

    server = Server(params, workers=workers)
    started = time.perf_counter()
    for data in uploads.values():
        server.receive_upload(data)
    server.aggregate_ciphertexts()
    aggregate_s = time.perf_counter() - started

    partial_times, answers, request_bytes = [], [], 0
    for party in range(1, public.threshold + 1):
        request = wire.encode(server.decryption_request(party))
        request_bytes = len(request)
        started = time.perf_counter()
        decryptor = DecryptingParty(params, material.shares[party - 1], own_upload=digests[party], workers=workers)
        answers.append(wire.encode(decryptor.respond(request)))
        partial_times.append(time.perf_counter() - started)

    started = time.perf_counter()
    for answer in answers:
        server.receive_partial(answer)
    aggregate = server.finish()
    decrypt_s = time.perf_counter() - started

    started = time.perf_counter()
    plain = np.sum(np.stack(list(inputs.values())), axis=0)
    plain_sum_s = time.perf_counter() - started

    signing = measure_signing(wire.decode(uploads[1], EncryptedVector).ciphertexts, params.session_id)
    sample = inputs[1][: min(dim, naive_sample)]
    naive_per_value = measure_naive_phe(key, sample)
    floor_one = measure_floor(key)
    encrypt_s = statistics.fmean(encrypt_times)
    partial_s = statistics.fmean(partial_times)
    upload_bytes = len(uploads[1])
    return {
        "encrypt_s": encrypt_s,
        "encrypt_max_s": max(encrypt_times),
        "aggregate_s": aggregate_s,
        "partial_decrypt_s": partial_s,
        "partial_decrypt_max_s": max(partial_times),
        "decrypt_s": decrypt_s,
        "naive_phe_encrypt_s": naive_per_value * dim,
        "naive_phe_sample": len(sample),
        "naive_phe_scaled": True,
        "floor_encrypt_s": floor_one * params.num_ciphertexts,
        "floor_powmod_s": floor_one,
        "plain_sum_s": plain_sum_s,
        "num_ciphertexts": params.num_ciphertexts,
        "slots_per_ciphertext": layout.slots_per_plaintext,
        "slot_bits": layout.width,
        "ciphertext_bytes_per_value": upload_bytes / dim,
        "upload_bytes": upload_bytes,
        "request_bytes_per_party": request_bytes,
        "partial_bytes_per_party": len(answers[0]),
        "exact": bool(np.array_equal(aggregate, plain)),
        "max_party_s": max(*encrypt_times, aggregate_s, *partial_times, decrypt_s),
        "ratio_naive_over_encrypt": naive_per_value * dim / encrypt_s,
        "ratio_encrypt_over_floor": encrypt_s / (floor_one * params.num_ciphertexts),
        **signing,
        "sign_over_encrypt": signing["sign_upload_s"] / encrypt_s,
        "verify_100_over_partial_decrypt": signing["verify_100_uploads_s"] / partial_s,
    }
