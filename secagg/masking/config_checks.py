"""The safety rules a masking configuration must meet, checked at setup.

Each rule takes a :class:`~secagg.masking.config.MaskingConfig` whose fields are
already in range and raises :class:`~secagg.errors.ConfigurationError` with a
message that says what would be safe: the degree of a Harary graph (its shape and the
connectivity of its honest survivors), the threshold
against colluders and a lying server, the dropouts the threshold tolerates, and
the identity keys of active mode.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from secagg.errors import ConfigurationError
from secagg.masking.config_record import ACTIVE, COMPLETE, HARARY, SEMI_HONEST
from secagg.masking.parameters import (
    CONNECTIVITY_LOG_BOUND,
    CUT_LOG_BOUND,
    SECURITY_PARAMETER,
    cut_log_probability,
    disconnection_log_probability,
    dropout_count,
    surviving_neighbour_quantile,
)
from secagg.primitives.signing import PUBLIC_KEY_SIZE, public_key_problem

if TYPE_CHECKING:
    from secagg.masking.config import MaskingConfig

__all__ = ["check_cut", "check_degree", "check_dropouts", "check_identities", "check_threshold"]


def check_degree(config: MaskingConfig) -> None:
    """A Harary graph's degree is even, in 2..n-1, and dense enough that the declared bad nodes
    (``floor(gamma n) + floor(delta n)``) disconnect its honest survivors with probability below
    2^-41, the connectivity term the printed 2^-40 rests on (spec 12.6, step 2.1): a sparser graph
    would let the server read the sum of each part it falls into, more than the one sum."""
    k, n = config.degree, config.num_clients
    if config.graph != HARARY:
        return
    if not (2 <= k <= n - 1 and k % 2 == 0):
        raise ConfigurationError(f"harary degree must be even and in 2..n-1 = {n - 1}, got {k}")
    log_probability = disconnection_log_probability(n, k, config.corrupt_fraction, config.dropout_fraction)
    if log_probability >= CONNECTIVITY_LOG_BOUND:
        bad = dropout_count(n, config.corrupt_fraction) + dropout_count(n, config.dropout_fraction)
        exponent = _refused_exponent(log_probability)
        raise ConfigurationError(
            f"harary degree {k} is too sparse for its privacy bound: {bad} bad clients (floor(gamma n) colluding + "
            f"floor(delta n) dropped) disconnect its honest survivors with probability up to "
            f"2^{exponent:.1f}, not below 2^-{SECURITY_PARAMETER + 1}, so the server could read "
            "the sum of each part; use a larger degree (MaskingConfig.secagg_plus derives one)"
        )



def _refused_exponent(log_probability: float) -> float:
    """A refused term's base-2 exponent as printed, rounded up to 0.1, toward the safe side: a term
    refused for lying just above 2^-41 must not print as 2^-41.0 (+ 0.0: no "-0.0")."""
    return math.ceil(log_probability / math.log(2) * 10) / 10 + 0.0


def check_threshold(config: MaskingConfig) -> None:
    """t in 2..k, above the colluders a neighbourhood may hold, and (active mode) above a lying
    server's split of the share holders."""
    k, t = config.degree, config.threshold
    if not 2 <= t <= k:
        raise ConfigurationError(
            f"threshold must be in 2..{k} (the degree): t = 1 would let any one neighbour "
            f"reveal a client's secrets, got t = {t}"
        )
    corrupt = config.corrupt_neighbours
    if config.self_share and t <= corrupt + 1:
        # A session may complete with t inputs: t - 1 colluders among them give the last one away.
        raise ConfigurationError(
            f"threshold {t} is unsafe: a session can complete with t = {t} inputs, so {corrupt} colluding "
            f"clients (corrupt_fraction {config.corrupt_fraction}) leave fewer than two honest inputs in "
            f"the sum; use t >= {corrupt + 2}"
        )
    if t <= corrupt:
        raise ConfigurationError(
            f"threshold {t} is unsafe: {corrupt} corrupt neighbours (corrupt_fraction "
            f"{config.corrupt_fraction}) could reconstruct a client's secrets; use t >= {corrupt + 1}"
        )
    # Active mode: a lying server tells one group of a client's share holders that
    # it survived and the rest that it dropped; each group plus the c colluders
    # must stay below t, or the server collects t shares of both secrets. The
    # holders are the other n - 1 clients (complete) or the k neighbours; on the
    # complete graph the "survived" side also gets the client's own seed share.
    holders = config.holders + int(config.self_share)
    if config.mode == ACTIVE and 2 * t <= holders + corrupt:
        name = "n" if config.graph == COMPLETE else "k"
        raise ConfigurationError(
            f"threshold {t} is unsafe in active mode against a lying server plus {corrupt} colluders: "
            f"need 2t > {name} + colluders = {holders + corrupt}, i.e. t >= {(holders + corrupt) // 2 + 1}"
        )
    if config.mode == ACTIVE and config.graph == HARARY:
        check_cut(config)


def check_cut(config: MaskingConfig) -> None:
    """Active mode, Harary graph: a lying server that cuts the ring at two windows of k/2 clients,
    each with at least t - k/2 of the floor(gamma n) colluders, releases an arc's sum; the union
    bound on such a cut must be below 2^-41 (spec 12.6, step 2.5), the term the printed 2^-40 adds
    to the corrupt-neighbour one in active mode."""
    n, k, t = config.num_clients, config.degree, config.threshold
    log_probability = cut_log_probability(n, k, t, config.corrupt_fraction)
    if log_probability >= CUT_LOG_BOUND:
        colluders = dropout_count(n, config.corrupt_fraction)
        exponent = _refused_exponent(log_probability)
        raise ConfigurationError(
            f"threshold {t} is too low for harary degree {k} against a lying server's cut: {colluders} colluders "
            f"(floor(gamma n)) put t - k/2 = {t - k // 2} in each of two windows of k/2 = {k // 2} clients with "
            f"probability up to 2^{exponent:.1f}, not below 2^-{SECURITY_PARAMETER + 1}, "
            "so the server could release the sum of an arc of the ring; use a larger threshold or degree "
            "(MaskingConfig.secagg_plus derives them)"
        )


def check_dropouts(config: MaskingConfig) -> None:
    """t tolerates the declared dropouts: n - t on the complete graph, the surviving-neighbour
    quantile on a Harary graph."""
    declared = dropout_count(config.num_clients, config.dropout_fraction)
    if config.graph == COMPLETE and declared > config.num_clients - config.threshold:
        raise ConfigurationError(
            f"threshold {config.threshold} tolerates {config.num_clients - config.threshold} dropouts, "
            f"fewer than the {declared} declared (dropout_fraction {config.dropout_fraction})"
        )
    if config.graph == HARARY:
        surviving = surviving_neighbour_quantile(config.num_clients, config.degree, config.dropout_fraction)
        if config.threshold > surviving:
            raise ConfigurationError(
                f"threshold {config.threshold} exceeds the {surviving} neighbours that survive "
                f"{declared} dropouts with probability 1 - 2^-20/n"
            )


def check_identities(config: MaskingConfig) -> None:
    """Active mode: one Ed25519 identity key per client, canonical and not of small order, no key twice;
    semi-honest mode: none."""
    if config.mode == SEMI_HONEST and config.identity_keys:
        raise ConfigurationError("identity_keys are only used in active mode")
    if config.mode == ACTIVE:
        if len(config.identity_keys) != config.num_clients:
            raise ConfigurationError(
                f"active mode needs one Ed25519 identity key per client ({config.num_clients}), "
                f"got {len(config.identity_keys)} (semi-honest mode, which does not resist a server that "
                "lies about dropouts, only by name: mode='semi-honest')"
            )
        if any(len(key) != PUBLIC_KEY_SIZE for key in config.identity_keys):
            raise ConfigurationError(f"identity keys must be {PUBLIC_KEY_SIZE}-byte Ed25519 public keys")
        first: dict[bytes, int] = {}
        for client, key in enumerate(config.identity_keys, start=1):
            # First, so that bytes compare as points below (one point has one accepted encoding)
            if (problem := public_key_problem(key)) is not None:
                raise ConfigurationError(f"the identity key of client {client} {problem}")
            if key in first:
                # One party in two slots: fewer distinct contributors than n, a colluder counted twice.
                raise ConfigurationError(
                    f"the identity key of client {client} is listed twice (also for client {first[key]}): one party "
                    "would hold two protocol ids, so a session of n clients would hold fewer than n distinct ones"
                )
            first[key] = client
