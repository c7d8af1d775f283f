"""The session context is named, never a fixed default.

The context fixes the session id, and in active mode clients sign their keys over it. A
fixed context repeats the session id in every session of one configuration, so a signed
AdvertiseKeys of one session verifies in the next: a server could replay keys whose mask
secret it reconstructed when it declared that client dropped. client_start and
server_start used to default to the all-zero context; now they refuse a call without one.
"""

from __future__ import annotations

import pytest

from secagg.errors import ConfigurationError
from secagg.masking import ZERO_CONTEXT, client_start, server_start, server_step
from secagg.primitives.randomness import InsecureDeterministicRandom

from .harness import active_setup

N = 5


def _advertisements(context: bytes, seed: int) -> dict[int, bytes]:
    config, identities = active_setup(N, 4)
    return {
        client: client_start(
            config, client, context=context, identity=identities[client],
            random_bytes=InsecureDeterministicRandom(seed * 100 + client),
        )[1]
        for client in range(1, N + 1)
    }  # fmt: skip


def test_client_start_and_server_start_refuse_a_call_without_a_context() -> None:
    # Before: both defaulted to the all-zero context and went ahead.
    config, identities = active_setup(N, 4)
    with pytest.raises(ConfigurationError, match="context"):
        client_start(config, 1, identity=identities[1])
    with pytest.raises(ConfigurationError, match="context"):
        server_start(config)


def test_a_repeated_context_lets_one_sessions_signed_keys_verify_in_another() -> None:
    # Why no default: with one context for two sessions (ZERO_CONTEXT, by name), client 1's signed
    # keys of session A are accepted in session B; with a fresh context per session they are refused.
    config, _ = active_setup(N, 4)
    replayed = {**_advertisements(ZERO_CONTEXT, 2), 1: _advertisements(ZERO_CONTEXT, 1)[1]}
    server, _ = server_step(server_start(config, context=ZERO_CONTEXT), replayed)
    assert server.rejected == ()
    first, second = bytes([1]) * 32, bytes([2]) * 32
    replayed = {**_advertisements(second, 2), 1: _advertisements(first, 1)[1]}
    server, _ = server_step(server_start(config, context=second), replayed)
    assert [client for client, _ in server.rejected] == [1]
