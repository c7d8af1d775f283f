"""Flower's SecAgg+ work (1.41 and 1.42), composed from its own primitives as Flower composes them.

The client side follows ``flwr/client/mod/secure_aggregation/secaggplus_mod.py``
(``_setup``, ``_share_keys``, ``_collect_masked_vectors``, ``_unmask``); the
server side follows ``SecAggPlusWorkflow.collect_masked_vectors_stage`` and
``unmask_stage`` in ``flwr/server/workflow/secure_aggregation/secaggplus_workflow.py``.
Only the cryptographic and numeric work is timed: Flower's message records,
serialisation and transport are left out, which favours Flower.

What Flower uses, and what that means for the comparison:

- key agreement: ECDH on NIST P-384 (``generate_key_pairs``), HKDF-SHA256 with
  no salt and no info; private keys travel as PKCS#8 PEM (about 300 bytes), and
  that PEM is what gets Shamir-shared;
- Shamir: pycryptodome's ``Shamir`` over GF(2^128), one polynomial per
  16-byte chunk of the PKCS#7-padded secret (3 chunks for a 32-byte seed, 20
  for the PEM key), ``num_shares = k + 1`` shares (a node keeps one);
- share encryption: Fernet (AES-128-CBC + HMAC-SHA256, base64);
- masks: ``pseudo_rand_gen`` XORs the 32-byte seed down to **32 bits** and
  seeds numpy's Mersenne Twister (``RandomState``) with it, drawing int64 values
  in [0, 2^32 - 2]. A mask seed therefore has 32 bits of entropy: anyone
  holding a masked vector can try all 2^32 seeds. That is not a cryptographic
  PRG, so "mask generation" compares our AES-128-CTR keystream with a
  generator that does not protect the update;
- vectors are int64 (8 bytes per coordinate on the wire for values mod 2^32).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
from typing import Any

from .work import CLIP, Work, time_median, update_vector

__all__ = ["FLOWER_VERSIONS", "available", "measure_flower", "version"]

FLOWER_VERSIONS = ("1.41.0", "1.42.0")
"""The Flower releases the composition follows (the ``bench`` extra allows both): no file
under Flower's secure_aggregation mod, workflow or primitives changed between them. The
peer's rows name the installed release (:func:`version`)."""

QUANTIZATION_RANGE = 1 << 22
MODULUS_RANGE = 1 << 32
MAX_WEIGHT = 1000.0


def available() -> bool:
    """True if Flower is installed."""
    return importlib.util.find_spec("flwr") is not None


def version() -> str:
    """The installed Flower version."""
    return importlib.metadata.version("flwr")


def measure_flower(work: Work, repeats: int) -> tuple[dict[str, float], dict[str, int]]:
    """Seconds of each component with Flower's primitives, and the bytes one client
    uploads (payloads only: public keys, share ciphertexts, masked vector, unmask shares)."""
    common = importlib.import_module("flwr.common")
    bytes_to_ndarray, ndarray_to_bytes = common.bytes_to_ndarray, common.ndarray_to_bytes
    shamir = importlib.import_module("flwr.common.secure_aggregation.crypto.shamir")
    combine_shares, create_shares = shamir.combine_shares, shamir.create_shares
    symmetric = importlib.import_module("flwr.common.secure_aggregation.crypto.symmetric_encryption")
    decrypt, encrypt, generate_shared_key = symmetric.decrypt, symmetric.encrypt, symmetric.generate_shared_key
    arithmetic = importlib.import_module("flwr.common.secure_aggregation.ndarrays_arithmetic")
    factor_combine, parameters_multiply = arithmetic.factor_combine, arithmetic.parameters_multiply
    parameters_addition, parameters_subtraction = arithmetic.parameters_addition, arithmetic.parameters_subtraction
    parameters_mod = arithmetic.parameters_mod
    quantize = importlib.import_module("flwr.common.secure_aggregation.quantization").quantize
    utils = importlib.import_module("flwr.common.secure_aggregation.secaggplus_utils")
    pseudo_rand_gen = utils.pseudo_rand_gen
    concat, separate = utils.share_keys_plaintext_concat, utils.share_keys_plaintext_separate
    asymmetric = importlib.import_module("flwr.supercore.primitives.asymmetric")
    bytes_to_private_key, bytes_to_public_key = asymmetric.bytes_to_private_key, asymmetric.bytes_to_public_key
    generate_key_pairs = asymmetric.generate_key_pairs
    private_key_to_bytes, public_key_to_bytes = asymmetric.private_key_to_bytes, asymmetric.public_key_to_bytes

    k, t, me = work.degree, work.threshold, 1

    def key_pair() -> tuple[bytes, bytes]:
        private, public = generate_key_pairs()
        return private_key_to_bytes(private), public_key_to_bytes(public)

    peers = [(2 + i, key_pair()[1], key_pair()[1]) for i in range(k)]  # (node id, pk1, pk2)
    sk1, pk1 = key_pair()
    sk2, pk2 = key_pair()
    rd_seed = os.urandom(32)

    def key_agreement() -> tuple[dict[int, bytes], dict[int, bytes]]:
        key_pair(), key_pair()  # _setup: two fresh key pairs, serialised
        box_keys = {  # _share_keys: one Fernet key per neighbour
            nid: generate_shared_key(bytes_to_private_key(sk2), bytes_to_public_key(peer_pk2))
            for nid, _, peer_pk2 in peers
        }
        mask_keys = {  # _collect_masked_vectors: one mask seed per neighbour
            nid: generate_shared_key(bytes_to_private_key(sk1), bytes_to_public_key(peer_pk1))
            for nid, peer_pk1, _ in peers
        }
        return box_keys, mask_keys

    box_keys, mask_keys = key_agreement()

    def share() -> tuple[list[bytes], list[bytes]]:
        return create_shares(rd_seed, t, k + 1), create_shares(sk1, t, k + 1)

    b_shares, sk1_shares = share()
    ciphertexts: list[bytes] = []

    def share_encryption() -> None:
        ciphertexts.clear()
        for index, (nid, _, _) in enumerate(peers, start=1):
            plaintext = concat(me, nid, b_shares[index], sk1_shares[index])
            ciphertexts.append(encrypt(box_keys[nid], plaintext))
        for (nid, _, _), ciphertext in zip(peers, ciphertexts, strict=True):
            separate(decrypt(box_keys[nid], ciphertext))

    share_encryption()
    update = [update_vector(work.dim)]

    def quantization() -> list[Any]:
        q_ratio = round(100 / MAX_WEIGHT * QUANTIZATION_RANGE)
        parameters = parameters_multiply(update, q_ratio / QUANTIZATION_RANGE)
        return list(factor_combine(q_ratio, quantize(parameters, CLIP, QUANTIZATION_RANGE)))

    quantized = quantization()
    shapes = [a.shape for a in quantized]
    masked: list[Any] = []

    def masks() -> None:
        vector = parameters_addition(quantized, pseudo_rand_gen(rd_seed, MODULUS_RANGE, shapes))
        for nid, _, _ in peers:
            pairwise = pseudo_rand_gen(mask_keys[nid], MODULUS_RANGE, shapes)
            vector = (parameters_addition if me > nid else parameters_subtraction)(vector, pairwise)
        masked[:] = parameters_mod(vector, MODULUS_RANGE)

    masks()

    def reconstruct() -> None:
        for _ in range(work.survivors):
            combine_shares(b_shares[:t])
        for _ in range(work.dropped):
            combine_shares(sk1_shares[:t])

    def remove_masks() -> None:
        total = masked
        for _ in range(work.clients - 1):
            total = parameters_addition(total, masked)
        total = parameters_mod(total, MODULUS_RANGE)
        for _ in range(work.survivors):
            total = parameters_subtraction(total, pseudo_rand_gen(rd_seed, MODULUS_RANGE, shapes))
        for _ in range(work.dropped):
            for nid, peer_pk1, _ in peers:
                shared = generate_shared_key(bytes_to_private_key(sk1), bytes_to_public_key(peer_pk1))
                pairwise = pseudo_rand_gen(shared, MODULUS_RANGE, shapes)
                total = (parameters_addition if me > nid else parameters_subtraction)(total, pairwise)
        parameters_mod(total, MODULUS_RANGE)

    def masked_input_step() -> list[bytes]:
        # _collect_masked_vectors: open the boxes, quantize, add the self-mask and one
        # pairwise mask per neighbour (each with its key agreement), reduce, serialise.
        for (nid, _, _), ciphertext in zip(peers, ciphertexts, strict=True):
            separate(decrypt(box_keys[nid], ciphertext))
        parameters = quantization()
        vector = parameters_addition(parameters, pseudo_rand_gen(rd_seed, MODULUS_RANGE, shapes))
        for nid, peer_pk1, _ in peers:
            shared = generate_shared_key(bytes_to_private_key(sk1), bytes_to_public_key(peer_pk1))
            pairwise = pseudo_rand_gen(shared, MODULUS_RANGE, shapes)
            vector = (parameters_addition if me > nid else parameters_subtraction)(vector, pairwise)
        return [ndarray_to_bytes(a) for a in parameters_mod(vector, MODULUS_RANGE)]

    serialised = masked_input_step()

    def decode_inputs() -> None:
        for _ in range(work.clients):
            [bytes_to_ndarray(b) for b in serialised]

    heavy = max(1, repeats // 3) if work.dim >= 1_000_000 else repeats
    seconds = {
        "key agreement": time_median(key_agreement, repeats),
        "Shamir share": time_median(share, repeats),
        "share encryption": time_median(share_encryption, repeats),
        "quantization": time_median(quantization, heavy),
        "mask generation": time_median(masks, heavy),
        "Shamir reconstruct": time_median(reconstruct, max(1, repeats // 3)),
        "mask removal": time_median(remove_masks, 1),
        "masked-input step": time_median(masked_input_step, heavy),
        "decode masked inputs": time_median(decode_inputs, 1),
    }
    uploaded = {
        "public_keys": len(pk1) + len(pk2),
        "share_ciphertexts": sum(len(c) for c in ciphertexts),
        "masked_vector": sum(len(b) for b in serialised),
        # _unmask: one share per neighbour (seed shares of survivors: the smaller kind) and their node ids.
        "unmask_shares": k * (len(b_shares[0]) + 8),
    }
    return seconds, uploaded
