"""Every honest share box is exactly ``SEALED_BUNDLE_SIZE`` bytes, in every configuration.

The server rejects a sender at ShareKeys if one of its boxes is longer (docs/spec.md 12.8, round
2). That is safe only if no honest box can ever be longer: the sealed ShareBundle has fixed-size
fields only (u32 sender and recipient, two 33-byte share values) plus the AEAD's nonce and tag, so
its size depends on no configuration parameter. Pinned at the extremes: the largest field
values, and one honest client's boxes at the largest n the configuration allows (a Harary graph)
and at the largest threshold of a complete graph.
"""

from __future__ import annotations

import pytest

from secagg import wire
from secagg.masking import SEMI_HONEST, MaskingConfig
from secagg.masking.client import client_start, client_step
from secagg.masking.config import MAX_CLIENTS
from secagg.masking.messages import (
    SEALED_BUNDLE_SIZE,
    AdvertiseKeys,
    EncryptedShares,
    KeyRoster,
    RosterEntry,
    ShareBundle,
)
from secagg.masking.session import graph_neighbours
from secagg.primitives import aead, shamir
from secagg.primitives.randomness import InsecureDeterministicRandom

CONTEXT = bytes(range(32))


def test_the_largest_bundle_seals_to_the_size_the_server_accepts() -> None:
    largest = ShareBundle(2**32 - 1, 2**32 - 1, (shamir.PRIME - 1).to_bytes(33, "big"), b"\xff" * 33)
    smallest = ShareBundle(0, 0, bytes(33), bytes(33))
    assert len(wire.encode(largest)) == len(wire.encode(smallest)) == SEALED_BUNDLE_SIZE - aead.OVERHEAD == 79
    sealed = aead.seal(bytes(32), wire.encode(largest), b"", InsecureDeterministicRandom(1))
    assert len(sealed) == SEALED_BUNDLE_SIZE == 107


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(MaskingConfig.secagg_plus(MAX_CLIENTS, 1, mode=SEMI_HONEST), id="harary, largest n"),
        pytest.param(MaskingConfig(num_clients=300, threshold=299, vector_length=1, mode=SEMI_HONEST),
                     id="complete, largest t"),
    ],
)
def test_an_honest_clients_boxes_are_all_exactly_a_sealed_bundle(config: MaskingConfig) -> None:
    client = config.num_clients  # the largest id
    state, _ = client_start(config, client, context=CONTEXT, random_bytes=InsecureDeterministicRandom(1))
    entries = []
    for peer in graph_neighbours(config, state.session, client):
        _, advertised = client_start(config, peer, context=CONTEXT, random_bytes=InsecureDeterministicRandom(peer))
        keys = wire.decode(advertised, AdvertiseKeys)
        entries.append(RosterEntry(peer, keys.encryption_key, keys.mask_key, b""))
    # Execute
    _, sent = client_step(state, wire.encode(KeyRoster(client, tuple(entries))),
                          random_bytes=InsecureDeterministicRandom(2))
    # Assert
    boxes = wire.decode(sent, EncryptedShares).boxes
    assert len(boxes) == config.degree
    assert {len(box.sealed) for box in boxes} == {SEALED_BUNDLE_SIZE}
