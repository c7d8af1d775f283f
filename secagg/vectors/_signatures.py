"""Vectors for Ed25519 signatures over the protocol's payloads (AdvertiseKeys, ConsistencyCheck).

Spec section (docs/spec.md): 10 (signature payloads).
"""

from __future__ import annotations

from secagg.masking.session import advertise_payload, consistency_payload
from secagg.primitives.signing import SigningKey, verify
from secagg.vectors._check import equal, expect_error, is_valid
from secagg.vectors._format import Json, from_hex, test_case, vector_file
from secagg.vectors._random import ReplayedRandom
from secagg.vectors._suite import Suite, deterministic, register

__all__ = ["SUITES"]


# --- signatures.json -------------------------------------------------------------------------

SIGNATURE_NOTES = {
    "Rfc8032": "The identity key is RFC 8032 section 7.1 TEST 1's.",
    "ModifiedSignature": "One bit of the signature flipped (step: verify, AuthenticationError).",
    "OtherContext": "A signature made over another round context or survivor list (step: verify, "
    "AuthenticationError): the model-inconsistency attack active mode stops.",
    "OtherSigner": "A signature by another client's identity key (step: verify, AuthenticationError).",
    "WrongLength": "A signature that is not 64 bytes (AuthenticationError) or a public key that is not "
    "32 bytes (DecodeError).",
}
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")


def _signature_test(comment: str, flags: list[str], result: str, key: SigningKey, payload: bytes,
                    signature: bytes, fields: Json, error: str | None = None) -> Json:
    extra: Json = {"seed": key.seed.hex(), "publicKey": key.public.hex(), **fields, "payload": payload.hex(),
                   "signature": signature.hex()}
    if error is not None:
        extra["error"] = error
    return test_case(comment, flags, result, **extra)


def generate_signatures() -> Json:
    """signatures.json: Ed25519 signatures over the AdvertiseKeys and ConsistencyCheck payloads."""
    source = deterministic("signatures")
    rfc_key = SigningKey.generate(ReplayedRandom([RFC8032_SEED]))
    key, other_key = SigningKey.generate(source), SigningKey.generate(source)
    digest, context, other_context = source(32), source(32), bytes(32)
    enc, mask = source(32), source(32)

    def advertise_fields(ctx: bytes) -> Json:
        return {"configDigest": digest.hex(), "context": ctx.hex(), "client": 4, "encryptionKey": enc.hex(),
                "maskKey": mask.hex()}

    payload = advertise_payload(digest, context, 4, enc, mask)
    signature = key.sign(payload)
    advertise = [
        _signature_test("client 4 signs its keys", [], "valid", key, payload, signature, advertise_fields(context)),
        _signature_test("RFC 8032 TEST 1 key", ["Rfc8032"], "valid", rfc_key, payload, rfc_key.sign(payload),
                        advertise_fields(context)),
        _signature_test("signature flipped", ["ModifiedSignature"], "invalid", key, payload,
                        signature[:5] + bytes([signature[5] ^ 4]) + signature[6:], advertise_fields(context),
                        "AuthenticationError"),
        _signature_test("signed for the zero context, presented with another", ["OtherContext"], "invalid", key,
                        payload, key.sign(advertise_payload(digest, other_context, 4, enc, mask)),
                        advertise_fields(context), "AuthenticationError"),
        _signature_test("signed by client 5's key", ["OtherSigner"], "invalid", key, payload,
                        other_key.sign(payload), advertise_fields(context), "AuthenticationError"),
        _signature_test("63-byte signature", ["WrongLength"], "invalid", key, payload, signature[:63],
                        advertise_fields(context), "AuthenticationError"),
    ]
    session = source(32)
    survivors = [1, 2, 4, 6]
    payload = consistency_payload(session, survivors)
    signature = key.sign(payload)
    fields = {"sessionId": session.hex(), "survivors": survivors}
    consistency = [
        _signature_test("client 4 signs the survivor list", [], "valid", key, payload, signature, fields),
        _signature_test("signature over survivors [1, 2, 4]", ["OtherContext"], "invalid", key, payload,
                        key.sign(consistency_payload(session, [1, 2, 4])), fields, "AuthenticationError"),
        _signature_test("signature flipped", ["ModifiedSignature"], "invalid", key, payload,
                        bytes([signature[0] ^ 1]) + signature[1:], fields, "AuthenticationError"),
    ]
    bad_key = test_case("31-byte public key", ["WrongLength"], "invalid", seed=key.seed.hex(),
                        publicKey=key.public[:31].hex(), **fields, payload=payload.hex(), signature=signature.hex(),
                        error="DecodeError")
    consistency.append(bad_key)
    return vector_file(
        algorithm="secagg-ed25519-payloads",
        schema="signatures_test_schema.json",
        header=[
            "Active mode: Ed25519 (RFC 8032) signatures by the clients' identity keys (docs/spec.md, section 10).",
            "AdvertiseKeys payload = 'secagg/v1/advertise' || configDigest || context || u32be(client) ||",
            "encryptionKey || maskKey. ConsistencyCheck payload = 'secagg/v1/consistency' || sessionId ||",
            "u32be(count) || u32be(id) for each survivor in increasing order. 'seed' is the 32-byte private key.",
        ],
        notes=SIGNATURE_NOTES,
        groups=[{"type": "AdvertiseSignatureTest", "tests": advertise},
                {"type": "ConsistencySignatureTest", "tests": consistency}],
    )


def _check_signature(test: Json, payload: bytes) -> None:
    public, signature = from_hex(test["publicKey"]), from_hex(test["signature"])
    if not is_valid(test):
        equal("payload", payload.hex(), test["payload"])
        expect_error(test, lambda: verify(public, signature, payload), "verify")
        return
    equal("payload", payload.hex(), test["payload"])
    key = SigningKey.generate(ReplayedRandom([from_hex(test["seed"])]))
    equal("publicKey", key.public.hex(), test["publicKey"])
    equal("signature", key.sign(payload).hex(), test["signature"])
    verify(public, signature, payload)


@register("AdvertiseSignatureTest")
def check_advertise_signature(group: Json, test: Json) -> None:
    """Rebuild the AdvertiseKeys payload; sign (Ed25519 is deterministic) and verify."""
    del group
    payload = advertise_payload(from_hex(test["configDigest"]), from_hex(test["context"]), int(test["client"]),
                                from_hex(test["encryptionKey"]), from_hex(test["maskKey"]))
    _check_signature(test, payload)


@register("ConsistencySignatureTest")
def check_consistency_signature(group: Json, test: Json) -> None:
    """Rebuild the ConsistencyCheck payload; sign and verify."""
    del group
    _check_signature(test, consistency_payload(from_hex(test["sessionId"]), [int(i) for i in test["survivors"]]))


SUITES = [
    Suite("signatures.json", "signatures_test_schema.json", generate_signatures),
]
