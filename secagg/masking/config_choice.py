"""How the masking constructors choose a configuration's parameters.

:meth:`MaskingConfig.secagg <secagg.masking.config.MaskingConfig.secagg>` and
:meth:`MaskingConfig.secagg_plus <secagg.masking.config.MaskingConfig.secagg_plus>`
are these functions, bound as class methods. They live apart from the config
itself because they answer a different question: not "is this configuration
safe?" (the config and :mod:`secagg.masking.config_checks` refuse what is not)
but "which threshold, colluder count, graph and dropout assumption should a
federation of n clients use?", from the defaults and the caller's explicit
assumptions (:mod:`secagg.masking.parameters` holds the arithmetic).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secagg._validate import require_finite, require_int
from secagg.descriptor import NO_DESCRIPTOR
from secagg.errors import ConfigurationError
from secagg.masking.config_record import ACTIVE, COMPLETE, HARARY, MAX_CLIENTS
from secagg.masking.parameters import (
    COMPLETE_GRAPH_MAX_CLIENTS,
    complete_guarantee,
    complete_threshold,
    corrupt_count,
    default_colluders,
    derive_secagg_plus,
    dropout_count,
    planned_dropouts,
)

if TYPE_CHECKING:
    from secagg.masking.config import MaskingConfig

__all__ = ["choose_mode", "secagg_config", "secagg_plus_config"]


def choose_mode(mode: str | None, identity_keys: tuple[bytes, ...]) -> str:
    """The mode a constructor builds: ``mode`` if named, else active, the safe default.

    Active mode needs the clients' identity keys; without them ConfigurationError says
    to pass them or to ask for semi-honest mode by name, never a silent fallback to the
    mode that does not resist a server lying about dropouts."""
    if mode is not None:
        return mode
    if identity_keys:
        return ACTIVE
    raise ConfigurationError(
        "active mode (the default: private against a server that lies about dropouts) needs the clients' "
        "identity_keys; pass them, or ask for mode='semi-honest' by name (private only against an "
        "honest-but-curious server)"
    )



def secagg_config(
    cls: type[MaskingConfig],
    num_clients: int,
    vector_length: int,
    *,
    threshold: int | None = None,
    ring_bits: int = 32,
    mode: str | None = None,
    identity_keys: tuple[bytes, ...] = (),
    corrupt_fraction: float | None = None,
    dropout_fraction: float = 0.0,
    dropout_per_round: float | None = None,
    descriptor: bytes = NO_DESCRIPTOR,
) -> MaskingConfig:
    """SecAgg on the complete graph.

    Default corrupt_fraction (with an explicit ``threshold``, at most the c it protects against):
    ``c / n`` with c = :func:`~secagg.masking.parameters.default_colluders`
    (the most colluders, up to floor((n - 1)/3), that still leave the default
    dropout tolerance, the ``dropout_per_round`` one, or the larger of the default
    and an explicit ``dropout_fraction``). Default threshold: the smallest safe one for c,
    ``max(2, c + 2)`` in semi-honest mode and ``max(2, c + 2, floor((n + c)/2) + 1)``
    in active mode (:func:`~secagg.masking.parameters.complete_threshold`).

    ``dropout_per_round`` p (instead of the session-wide ``dropout_fraction``)
    declares ``ceil(4 p n)`` dropouts over the session (p of the clients at
    each of the four stages, :data:`~secagg.masking.parameters.DROPOUT_STAGES`):
    the default c is chosen to tolerate them and the configuration is refused
    if its threshold does not.

    Mode: active (the default, which needs ``identity_keys``); semi-honest only by
    name, ``mode="semi-honest"`` (:func:`choose_mode`).
    """
    mode = choose_mode(mode, identity_keys)
    num_clients = require_int("num_clients", num_clients, 3, MAX_CLIENTS)
    dropout_fraction = require_finite("dropout_fraction", dropout_fraction)
    planned: int | None = None
    if dropout_per_round is not None:
        if dropout_fraction:
            raise ConfigurationError("give dropout_per_round or the session-wide dropout_fraction, not both")
        planned = planned_dropouts(num_clients, dropout_per_round)
        dropout_fraction = planned / num_clients
        if dropout_fraction >= 1.0:
            raise ConfigurationError(f"dropout_per_round {dropout_per_round} plans for all {num_clients} clients")
    elif dropout_fraction:
        # An explicit session-wide assumption: c keeps it, and never less than the default tolerance.
        planned = max(dropout_count(num_clients, dropout_fraction), planned_dropouts(num_clients))
    if corrupt_fraction is None:
        colluders = default_colluders(num_clients, mode == ACTIVE, planned)
        if threshold is not None:  # an explicit t declares no more colluders than it protects against
            supported = complete_guarantee(num_clients, require_int("threshold", threshold), mode == ACTIVE)[0]
            colluders = max(0, min(colluders, supported))
        corrupt_fraction = colluders / num_clients
    corrupt_fraction = require_finite("corrupt_fraction", corrupt_fraction)
    if threshold is None:
        corrupt = corrupt_count(num_clients, corrupt_fraction)
        threshold = complete_threshold(num_clients, corrupt, mode == ACTIVE)
    return cls(
        num_clients=num_clients,
        threshold=threshold,
        vector_length=vector_length,
        graph=COMPLETE,
        ring_bits=ring_bits,
        mode=mode,
        identity_keys=identity_keys,
        corrupt_fraction=corrupt_fraction,
        dropout_fraction=dropout_fraction,
        descriptor=descriptor,
    )

def secagg_plus_config(
    cls: type[MaskingConfig],
    num_clients: int,
    vector_length: int,
    *,
    corrupt_fraction: float | None = None,
    dropout_fraction: float | None = None,
    dropout_per_round: float | None = None,
    complete_up_to: int = COMPLETE_GRAPH_MAX_CLIENTS,
    ring_bits: int = 32,
    mode: str | None = None,
    identity_keys: tuple[bytes, ...] = (),
    descriptor: bytes = NO_DESCRIPTOR,
) -> MaskingConfig:
    """The parameter choice for a federation of n clients: SecAgg on the complete
    graph up to ``complete_up_to`` clients (default
    :data:`~secagg.masking.parameters.COMPLETE_GRAPH_MAX_CLIENTS` = 100), SecAgg+
    on a Harary graph with k and t derived from n and the fractions beyond.

    Dropouts: ``dropout_per_round`` p is the fraction lost at *each* of the four
    stages (:data:`~secagg.masking.parameters.DROPOUT_STAGES`), planning for
    ``D = ceil(4 p n)`` over the session; ``dropout_fraction`` is the session-wide
    fraction instead (D = floor(delta n)). With neither, D is
    :func:`~secagg.masking.parameters.default_dropout_target`: one dropout below 20
    clients, 10% of n at each stage (ceil(0.4 n)) from 20 on.

    Complete graph: corrupt_fraction defaults to the most colluders that keep D
    (:func:`secagg_config`); the configuration is refused if an explicit dropout
    assumption cannot be met, while the default one is met as far as the
    threshold allows (n = 3: t = 2, one dropout, c = 0).
    Harary graph: corrupt_fraction defaults to 0.05, and ConfigurationError is
    raised if no (k, t) reaches 2^-40 security and 2^-20 failure probability;
    where no sparse graph qualifies this is the complete graph, as in production
    SecAgg+. ``complete_up_to=0`` asks for SecAgg+ at every n.

    Mode: active (the default, which needs ``identity_keys``); semi-honest only by
    name, ``mode="semi-honest"`` (:func:`choose_mode`).
    """
    mode = choose_mode(mode, identity_keys)
    num_clients = require_int("num_clients", num_clients, 3, MAX_CLIENTS)
    if corrupt_fraction is not None:
        corrupt_fraction = require_finite("corrupt_fraction", corrupt_fraction)
    if dropout_fraction is not None:
        dropout_fraction = require_finite("dropout_fraction", dropout_fraction)
    if dropout_fraction is not None and dropout_per_round is not None:
        raise ConfigurationError("give dropout_per_round or the session-wide dropout_fraction, not both")
    explicit = dropout_fraction is not None or dropout_per_round is not None
    if dropout_fraction is None:
        dropout_fraction = min(planned_dropouts(num_clients, dropout_per_round), num_clients - 1) / num_clients
    if num_clients <= complete_up_to:
        if not explicit:
            # The default assumption, as far as the threshold allows: the guarantee
            # (n - t on the complete graph) says what is met.
            return cls.secagg(
                num_clients, vector_length, ring_bits=ring_bits, mode=mode, identity_keys=identity_keys,
                corrupt_fraction=corrupt_fraction, descriptor=descriptor,
            )
        if corrupt_fraction is None:
            target = dropout_count(num_clients, dropout_fraction)
            corrupt_fraction = default_colluders(num_clients, mode == ACTIVE, target) / num_clients
        return cls.secagg(
            num_clients, vector_length, ring_bits=ring_bits, mode=mode, identity_keys=identity_keys,
            corrupt_fraction=corrupt_fraction, dropout_fraction=dropout_fraction, descriptor=descriptor,
        )
    if corrupt_fraction is None:
        corrupt_fraction = 0.05
    params = derive_secagg_plus(num_clients, corrupt_fraction, dropout_fraction, active=mode == ACTIVE)
    graph = COMPLETE if params.complete else HARARY
    return cls(
        num_clients=num_clients,
        threshold=params.threshold,
        vector_length=vector_length,
        graph=graph,
        degree=params.degree if graph == HARARY else 0,
        ring_bits=ring_bits,
        mode=mode,
        identity_keys=identity_keys,
        corrupt_fraction=corrupt_fraction,
        dropout_fraction=dropout_fraction,
        descriptor=descriptor,
    )
