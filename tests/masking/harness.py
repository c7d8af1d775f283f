"""Shared machinery for the masking tests.

- :class:`StepRun` drives honest clients and the server one half-round at a
  time through the pure state machines, so a test can stop anywhere, rewrite a
  message (a lying server or a network attacker) and look at everything each
  client ever sent.
- :func:`predict` is an oracle independent of the library: from a dropout
  schedule and the communication graph it says which clients the aggregate must
  include, or that the session must end in ThresholdError.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

from secagg import wire
from secagg.masking import (
    ACTIVE,
    ZERO_CONTEXT,
    ClientPhase,
    ClientState,
    MaskingConfig,
    Round,
    ServerPhase,
    ServerResult,
    client_start,
    client_step,
    make_identities,
    server_start,
    server_step,
)
from secagg.masking.messages import ShareEntry, UnmaskResponse
from secagg.masking.session import graph_neighbours, session_id
from secagg.primitives import shamir
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey

M = TypeVar("M", bound=wire.Message)
Neighbours = Callable[[int], frozenset[int]]
NEVER = len(Round)  # a "dropout round" after the last one: the client never drops


def client_ids(config: MaskingConfig) -> range:
    """The roster ids 1..n."""
    return range(1, config.num_clients + 1)


def random_inputs(config: MaskingConfig, seed: int) -> dict[int, np.ndarray]:
    """Uniform ring vectors for every client (non-secret randomness: numpy Generator)."""
    generator = np.random.default_rng(seed)
    return {
        client: generator.integers(0, config.ring.modulus, size=config.vector_length, dtype=config.ring.dtype)
        for client in client_ids(config)
    }


def ring_sum(config: MaskingConfig, inputs: Mapping[int, np.ndarray], clients: Iterable[int]) -> np.ndarray:
    """The exact ring sum of the inputs of ``clients`` (the oracle's aggregate)."""
    total = np.zeros(config.vector_length, dtype=object)
    for client in clients:
        total = total + inputs[client].astype(object)  # Python ints: an independent computation
    return (total % config.ring.modulus).astype(config.ring.dtype)


def assert_exact(
    config: MaskingConfig, aggregate: np.ndarray, inputs: Mapping[int, np.ndarray], clients: Iterable[int]
) -> None:
    """The aggregate equals the ring sum of the clients' inputs, bit for bit."""
    expected = ring_sum(config, inputs, clients)
    assert aggregate.dtype == config.ring.dtype
    assert aggregate.tobytes() == expected.tobytes()


def active_setup(
    num_clients: int, threshold: int, vector_length: int = 4, *, seed: int = 99, **kwargs: Any
) -> tuple[MaskingConfig, dict[int, SigningKey]]:
    """An active-mode config with fresh (deterministic) identity keys."""
    identities, public = make_identities(num_clients, InsecureDeterministicRandom(seed))
    config = MaskingConfig(
        num_clients=num_clients,
        threshold=threshold,
        vector_length=vector_length,
        mode=ACTIVE,
        identity_keys=public,
        **kwargs,
    )
    return config, identities


def edit(data: bytes, cls: type[M], **changes: Any) -> bytes:
    """Decode a message, replace some fields, re-encode it (what a lying server does)."""
    return wire.encode(dataclasses.replace(wire.decode(data, cls), **changes))


def flip_bit(data: bytes, index: int, bit: int = 0) -> bytes:
    """``data`` with one bit flipped."""
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


def truncate_4_and_lie_about_1s_seed(round_: Round, direction: str, client: int, data: bytes) -> bytes:
    """A tamper hook for a session of 4 with t = 3: at Unmasking client 4's response is truncated
    (rejected) and client 2 reveals a wrong share of client 1's self-mask seed, which is then left
    with exactly t shares, no t of which reconstruct its commitment (AuthenticationError)."""
    if (round_, direction) != (Round.UNMASKING, "up"):
        return data
    if client == 4:
        return data[:-3]
    if client == 2:
        response = wire.decode(data, UnmaskResponse)
        lie = tuple(
            ShareEntry(e.owner, ((int.from_bytes(e.share, "big") + 1) % shamir.PRIME).to_bytes(len(e.share), "big"))
            if e.owner == 1 else e
            for e in response.self_mask_shares
        )
        return wire.encode(dataclasses.replace(response, self_mask_shares=lie))
    return data


def revealed(messages: Iterable[bytes]) -> tuple[set[int], set[int]]:
    """Owners whose self-mask share / mask-key share appear in any UnmaskResponse."""
    self_owners: set[int] = set()
    key_owners: set[int] = set()
    for data in messages:
        message = wire.decode_any(data)
        if isinstance(message, UnmaskResponse):
            self_owners |= {entry.owner for entry in message.self_mask_shares}
            key_owners |= {entry.owner for entry in message.mask_key_shares}
    return self_owners, key_owners


def unmask_responses(messages: Iterable[bytes]) -> list[UnmaskResponse]:
    """The UnmaskResponse messages among ``messages``."""
    return [m for m in (wire.decode_any(d) for d in messages) if isinstance(m, UnmaskResponse)]


class StepRun:
    """n honest clients and the server, advanced one half-round at a time.

    ``uploads``: client messages not yet given to the server. ``pending``: server
    messages not yet given to the clients. ``sent[c]``: every message client c
    ever produced, to check what left it. With ``reparse`` every client state is
    serialised and parsed again before each step (a transport that stores it).
    """

    def __init__(
        self,
        config: MaskingConfig,
        *,
        seed: int = 0,
        identities: Mapping[int, SigningKey] | None = None,
        context: bytes = ZERO_CONTEXT,
        client_contexts: Mapping[int, bytes] | None = None,
        inputs: Mapping[int, np.ndarray] | None = None,
        reparse: bool = False,
    ) -> None:
        self.config = config
        self.random = InsecureDeterministicRandom(seed)
        self.identities = dict(identities or {})
        self.inputs = dict(inputs) if inputs is not None else random_inputs(config, seed)
        self.reparse = reparse
        self.states: dict[int, ClientState] = {}
        self.sent: dict[int, list[bytes]] = {client: [] for client in client_ids(config)}
        self.uploads: dict[int, bytes] = {}
        self.pending: dict[int, bytes] = {}
        contexts = client_contexts or {}
        for client in client_ids(config):
            state, message = client_start(
                config,
                client,
                context=contexts.get(client, context),
                identity=self.identities.get(client),
                random_bytes=self.random,
            )
            self.states[client] = state
            self.uploads[client] = message
            self.sent[client].append(message)
        self.server = server_start(config, context=context)

    def step(self, client: int, data: bytes) -> bytes:
        """Give one server message to one client; record and return its reply."""
        state = self.states[client]
        if self.reparse:
            state = ClientState.from_bytes(state.to_bytes())
        new_state, reply = client_step(
            state,
            data,
            input_vector=self.inputs[client],
            identity=self.identities.get(client),
            random_bytes=self.random,
        )
        self.states[client] = new_state
        self.sent[client].append(reply)
        return reply

    def to_server(self, uploads: Mapping[int, bytes] | None = None) -> None:
        """The server consumes ``uploads`` (default: every pending upload)."""
        self.server, self.pending = server_step(self.server, self.uploads if uploads is None else uploads)
        self.uploads = {}

    def to_clients(self, skip: Iterable[int] = ()) -> None:
        """Every client with a pending message (except ``skip``) processes it."""
        skipped = set(skip)
        for client, data in sorted(self.pending.items()):
            if client not in skipped:
                self.uploads[client] = self.step(client, data)
        self.pending = {}

    def run_until(self, phase: ClientPhase) -> None:
        """Run honestly until ``pending`` holds the messages clients expect in ``phase``."""
        while True:
            if self.server.phase == ServerPhase.DONE:
                raise AssertionError(f"the session finished before any client reached {phase.name}")
            self.to_server()
            if any(self.states[client].phase == phase for client in self.pending):
                return
            self.to_clients()

    def finish(self) -> ServerResult:
        """Run honestly to the end and return the server's result."""
        while self.server.phase != ServerPhase.DONE:
            if self.pending:
                self.to_clients()
            self.to_server()
        assert self.server.result is not None
        return self.server.result

    def session(self) -> bytes:
        """The session id (known once the roster was sent)."""
        return self.server.session

    def neighbours(self, client: int) -> tuple[int, ...]:
        """``client``'s neighbours on this session's graph."""
        return graph_neighbours(self.config, self.server.session, client)


def advance_to(run: StepRun, phase: ServerPhase) -> None:
    """Run honestly until the uploads for server ``phase`` are ready."""
    while run.server.phase != phase:
        run.to_server()
        run.to_clients()


def session_neighbours(config: MaskingConfig, context: bytes) -> Neighbours:
    """The graph of the session bound to ``context``, recomputed from public
    values exactly as the parties do (for Harary: a context-dependent graph)."""
    session = session_id(config, context)
    return lambda client: frozenset(graph_neighbours(config, session, client))


def predict(
    config: MaskingConfig, dropouts: Mapping[int, Round], neighbours: Neighbours, *, strict: bool = False
) -> frozenset[int] | None:
    """The clients the aggregate must include, or None if the session must abort.

    Follows the paper's rules, not the library's code: client c stops sending
    from round ``dropouts[c]`` on. Round 0 needs t + 1 advertised keys; a client
    shares only if >= t of its neighbours advertised, and round 1 needs t + 1
    sharers; a client sends a masked input only if >= t neighbours shared, and
    t masked inputs are needed (and t consistency signatures in active mode).
    Each survivor's self-mask needs t responding neighbours; each sharer that
    dropped afterwards needs t responding neighbours for its mask key, but only
    if some survivor masked with it (``strict``: always, as a server that
    reconstructs every dropped key would require).

    On the complete graph each client also holds a share of its own self-mask
    seed (spec 12.8): every "t + 1" and "t neighbours" above becomes t and t - 1
    neighbours, and a survivor's self-mask counts its own share if it responds.
    """
    t = config.threshold
    own = int(config.graph == "complete")

    def stays(client: int, round_: Round) -> bool:
        return dropouts.get(client, NEVER) > round_

    advertised = {c for c in client_ids(config) if stays(c, Round.ADVERTISE_KEYS)}
    if len(advertised) < t + 1 - own:
        return None
    shared = {c for c in advertised if stays(c, Round.SHARE_KEYS) and len(neighbours(c) & advertised) >= t - own}
    if len(shared) < t + 1 - own:
        return None
    survivors = {c for c in shared if stays(c, Round.MASKED_INPUT) and len(neighbours(c) & shared) >= t - own}
    if len(survivors) < t:
        return None
    if config.mode == ACTIVE and len({c for c in survivors if stays(c, Round.CONSISTENCY_CHECK)}) < t:
        return None
    # A client that stops at ConsistencyCheck (in either mode) sends nothing after it.
    responders = {c for c in survivors if stays(c, Round.CONSISTENCY_CHECK) and stays(c, Round.UNMASKING)}
    for owner in survivors:
        if len(neighbours(owner) & responders) + (own and owner in responders) < t:
            return None
    for owner in shared - survivors:
        if (strict or neighbours(owner) & survivors) and len(neighbours(owner) & responders) < t:
            return None
    return frozenset(survivors)
