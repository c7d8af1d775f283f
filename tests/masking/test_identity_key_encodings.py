"""Identity keys that are one point under two encodings, or that anyone can sign for, are refused.

The no-key-twice check of an active-mode configuration compares the keys' bytes. Ed25519 public
keys are not canonicalised anywhere (the trusted list, the roster and every check compare bytes),
and ``cryptography`` takes any 32 bytes: so one point under two encodings would pass the check as
two keys. Two encodings of one point exist only for a y coordinate of 2^255 - 19 or more
(non-canonical, y - p being the same point) or for x = 0 with the sign bit set (the points of
y = 1 and y = p - 1); and the keys of small order (the identity, order 2, 4 and 8) are keys every
party can sign for (R = identity, S = 0 verifies whenever the hash is a multiple of the order).
A lying server listing the identity point at two protocol ids under its two encodings gave one
party two slots past the check, and a server listing a small-order key signs for that slot
itself. Refused (:func:`secagg.primitives.signing.public_key_problem`) in the masking config,
hence ``MaskingConfig.from_record`` and every client, and in a node's identity announcement.
"""

from __future__ import annotations

import dataclasses

import pytest

from secagg.errors import AuthenticationError, ConfigurationError
from secagg.integrations.flower._identity import IdentityAnnouncement, identity_payload
from secagg.masking import ACTIVE, MaskingConfig, make_identities
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import placeholder_public_keys, public_key_problem, verify

P = (1 << 255) - 19
SIGN = 1 << 255
ORDER_8_Y = 0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7


def encoding(y: int, sign: int = 0) -> bytes:
    return (y | (SIGN if sign else 0)).to_bytes(32, "little")


SMALL_ORDER = {
    "identity": encoding(1),
    "identity, x = 0 with the sign bit": encoding(1, 1),
    "order 2": encoding(P - 1),
    "order 2, x = 0 with the sign bit": encoding(P - 1, 1),
    "order 4": encoding(0),
    "order 4, other x": encoding(0, 1),
    "order 8": encoding(ORDER_8_Y),
    "order 8, other x": encoding(ORDER_8_Y, 1),
    "order 8, y = p - b": encoding(P - ORDER_8_Y),
    "order 8, y = p - b, other x": encoding(P - ORDER_8_Y, 1),
}
NON_CANONICAL = {
    "identity as y = p + 1": encoding(P + 1),
    "order 4 as y = p": encoding(P),
    "y = p + 2": encoding(P + 2),
    "y = 2^255 - 1": encoding(SIGN - 1),
}
FORGED = encoding(1) + bytes(32)
"""R = the identity, S = 0: valid for key A and message m whenever [H(R, A, m)] A is the identity."""

IDENTITIES, KEYS = make_identities(3, InsecureDeterministicRandom(b"identity-key-encodings"))


def config(keys: tuple[bytes, ...]) -> MaskingConfig:
    return MaskingConfig(num_clients=3, threshold=2, vector_length=4, mode=ACTIVE, identity_keys=keys)


@pytest.mark.parametrize("name", list(SMALL_ORDER))
def test_control_anyone_signs_for_a_small_order_key(name: str) -> None:
    # Why they are refused: the forged signature verifies for some of the first 64 messages
    signed = []
    for counter in range(64):
        try:
            verify(SMALL_ORDER[name], FORGED, counter.to_bytes(2, "big"))
        except AuthenticationError:
            continue
        signed.append(counter)
    assert signed, name


def test_the_identity_point_under_its_two_encodings_is_refused_as_two_slots() -> None:
    # The duplicate check compares bytes: the two encodings of one point must not pass as two keys
    assert encoding(1) != encoding(1, 1)
    with pytest.raises(ConfigurationError, match="client 2"):
        config((KEYS[0], encoding(1), encoding(1, 1)))


@pytest.mark.parametrize("name", list(SMALL_ORDER) + list(NON_CANONICAL))
def test_a_config_listing_a_weak_or_non_canonical_key_is_refused(name: str) -> None:
    key = {**SMALL_ORDER, **NON_CANONICAL}[name]
    with pytest.raises(ConfigurationError, match="identity key of client 3"):
        config((KEYS[0], KEYS[1], key))


def test_a_client_refuses_a_server_record_with_a_small_order_key() -> None:
    record = dataclasses.replace(config(KEYS).record(), identity_keys=(KEYS[0], KEYS[1], encoding(1)))
    with pytest.raises(ConfigurationError, match="small order"):
        MaskingConfig.from_record(record)


def test_control_real_keys_pass() -> None:
    assert config(KEYS).identity_keys == KEYS


@pytest.mark.parametrize("name", list(SMALL_ORDER))
def test_a_node_announcing_a_small_order_key_is_refused(name: str) -> None:
    # A forged announcement of a small-order key (anyone can make one): the server must not keep it
    key = SMALL_ORDER[name]
    run_id = next(
        run for run in range(256)
        if _verifies(key, identity_payload(run, 7, key))
    )  # fmt: skip
    announcement = IdentityAnnouncement(node_id=7, public_key=key, signature=FORGED)
    with pytest.raises(AuthenticationError, match="small order"):
        announcement.verify(run_id, 7)


def _verifies(key: bytes, payload: bytes) -> bool:
    try:
        verify(key, FORGED, payload)
    except AuthenticationError:
        return False
    return True


def test_the_stand_in_keys_of_a_large_federation_are_accepted() -> None:
    # Stand-ins validate an active-mode setting before real keys exist; u32(i) big-endian made
    # client 128's the order-4 point (y = 0 with the sign bit), so 128 nodes and more were refused
    from fl_core.aggregators.masking import supported_honest  # noqa: PLC0415
    from secagg.integrations.flower import SecAggOptions  # noqa: PLC0415

    assert supported_honest("harary", 200) >= 1
    assert SecAggOptions(protocol="secagg+").masking(200, 10).num_clients == 200
    assert len(set(placeholder_public_keys(1000))) == 1000
    assert not [key for key in placeholder_public_keys(1 << 16) if public_key_problem(key) is not None]
