"""The guarantee of each round, computed for the clients it runs with, and the weakest of several.

A secure aggregator's :attr:`guarantee` states what a *full* round (all ``num_clients`` of its
quantizer) guarantees. A round over fewer clients (FedAvg samples ``ceil(C * K)`` of K, or a caller
hands :meth:`aggregate` a subset) runs a session of its own n, with the threshold the protocol picks
for that n, and its computed guarantee can be weaker: 8 hospitals under active SecAgg tolerate 3
colluders (t = 6), a session of 6 only 1 (t = 4). So the guarantee is computed per round and never
assumed from the full roster's:

- each secure aggregator computes the guarantee of a session of ``num_clients`` clients
  (``round_guarantee``: :meth:`fl_core.aggregators.masking.MaskingAggregator.round_guarantee`,
  :meth:`fl_core.aggregators.paillier.PaillierAggregator.round_guarantee`), and every result states
  that of the session it ran (:attr:`fl_core.aggregators.base.AggregationResult.guarantee`);
- :func:`fl_core.fedavg.run_fedavg` records it in each round's record and the run states the
  weakest it recorded (:attr:`fl_core.fedavg.FedAvgResult.guarantee`, :func:`weakest`);
- :func:`sampled_guarantee` states it before a run, from the count FedAvg samples.

A Paillier round's d is at most n - t, since only its own hospitals decrypt its sum (computed by
the protocol, :func:`secagg.paillier.parameters.threshold_guarantee`, which
:func:`fl_core.aggregators.paillier_layout.round_guarantee` calls), and a round too small ever to be
decrypted has no guarantee (``round_guarantee`` refuses it; :func:`fl_core.fedavg.run_fedavg` refuses a
``client_fraction`` whose rounds are that small before any training, as masking's below three clients).

Dropouts before the protocol (a hospital silent from the first message, or refused for its model)
do not make a round's session smaller: they are its dropouts, counted against the guarantee's d.
No declared floor is applied here: a fraction of colluders (masking's ``corrupt_fraction``) scales
with n by construction, and Paillier's declared ``colluders`` bounds every round that releases a sum
(a round releases a sum only with ``min_contributors`` uploads, which with t fixes its c).
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from typing import Protocol, runtime_checkable

from secagg._validate import require_int
from secagg.errors import ConfigurationError, ConfigurationTypeError
from secagg.guarantee import Guarantee

__all__ = [
    "RoundGuaranteed",
    "client_fraction",
    "round_guarantee",
    "sampled_count", "sampled_guarantee",
    "state_guarantee",
    "weakest",
]

LOGGER = logging.getLogger("fl_core.guarantees")

_MAX_WRAPPERS = 16  # a chain of wrappers deeper than this is refused (a cycle, not a pipeline)


@runtime_checkable
class RoundGuaranteed(Protocol):
    """A secure sum that computes the guarantee of a session of ``num_clients`` clients
    (ConfigurationError if it runs no session of that size)."""

    def round_guarantee(self, num_clients: int) -> Guarantee: ...


def round_guarantee(aggregator: object, num_clients: int) -> Guarantee | None:
    """What a round of ``aggregator`` over ``num_clients`` clients guarantees, computed by the protocol
    for that n: the first :class:`RoundGuaranteed` through its wrappers (``inner``: DP, compression,
    rotation), or None if there is none (``plain``, ``plain-quantized``: no secure sum). Raises
    ConfigurationError if the aggregator runs no session of ``num_clients`` clients."""
    current = aggregator
    for _ in range(_MAX_WRAPPERS):
        if isinstance(current, RoundGuaranteed):
            return current.round_guarantee(num_clients)
        current = getattr(current, "inner", None)
        if current is None:
            return None
    raise ConfigurationError(f"more than {_MAX_WRAPPERS} aggregators wrapped one in another")


def client_fraction(fraction: object) -> Fraction:
    """``fraction``, a ``client_fraction`` C in (0, 1], exactly as it prints (``str``): a float or
    numpy float as its shortest decimal (``np.float32(0.14)`` as 0.14, not 0.14000000596...), a
    ``Fraction`` or ``Decimal`` as itself. ConfigurationTypeError for anything but a real number
    (a string, None, a bool), ConfigurationError for one outside (0, 1] (NaN included)."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real | Decimal):
        raise ConfigurationTypeError(f"client_fraction must be a number in (0, 1], got {type(fraction).__name__}")
    try:
        value = Fraction(str(fraction))
    except (ValueError, ZeroDivisionError):  # nan, inf
        value = None
    if value is None or not 0 < value <= 1:
        raise ConfigurationError(f"client_fraction must be in (0, 1], got {fraction}")
    return value


def sampled_count(num_clients: int, fraction: float) -> int:
    """How many of ``num_clients`` clients a FedAvg round samples at ``client_fraction`` ``fraction``:
    ``max(1, ceil(fraction * num_clients))``, every round, with ``fraction`` read exactly as it
    prints (:func:`client_fraction`): the float product would make C = 0.14 of 50 clients
    7.000000000000001, so 8 clients, one more than asked for."""
    require_int("num_clients", num_clients, 1)
    return max(1, math.ceil(client_fraction(fraction) * num_clients))


def sampled_guarantee(aggregator: object, num_clients: int, fraction: float) -> Guarantee | None:
    """What every round of a FedAvg run of ``aggregator`` over ``num_clients`` clients at
    ``client_fraction`` ``fraction`` guarantees: that of a session of :func:`sampled_count` clients
    (:func:`round_guarantee`), which can be weaker than the full roster's."""
    return round_guarantee(aggregator, sampled_count(num_clients, fraction))


def state_guarantee(aggregator: object, num_clients: int, fraction: float) -> Guarantee | None:
    """:func:`sampled_guarantee`, checked before a FedAvg run (ConfigurationError if the aggregator runs
    no session of the sampled count, e.g. fewer than three clients for masking); with ``fraction`` < 1
    it is logged, as a warning if a round of all ``num_clients`` would guarantee otherwise (more)."""
    sampled = sampled_guarantee(aggregator, num_clients, fraction)
    if sampled is None or sampled_count(num_clients, fraction) == num_clients:
        return sampled
    try:
        full: Guarantee | None = round_guarantee(aggregator, num_clients)
    except ConfigurationError:  # sized for the sampled rounds only: no full round to compare with
        full = None
    log = LOGGER.info if full in (None, sampled) else LOGGER.warning
    log(
        "each round samples %d of %d clients: its session guarantees %s%s", sampled_count(num_clients, fraction),
        num_clients, sampled, "" if full in (None, sampled) else f" (a round of all {num_clients}: {full})",
    )  # fmt: skip
    return sampled


def weakest(guarantees: Iterable[Guarantee | None]) -> Guarantee | None:
    """The statement that holds for every one of ``guarantees`` (Nones skipped; None if none is left):
    the fewest colluders and dropouts, against a lying server only if all hold against one, the
    largest failure probability (the smallest positive exponent; 0 is exact), every trusted party and
    every reason a statement does not hold."""
    given = [g for g in guarantees if g is not None]
    if not given:
        return None

    def bits(values: Iterable[int]) -> int:
        positive = [v for v in values if v > 0]
        return min(positive) if positive else 0

    def joined(values: Iterable[str]) -> str:
        return "; ".join(dict.fromkeys(v for v in values if v))

    return replace(
        given[0],
        colluders=min(g.colluders for g in given),
        dropouts=min(g.dropouts for g in given),
        lying_server=all(g.lying_server for g in given),
        privacy_failure_bits=bits(g.privacy_failure_bits for g in given),
        completion_failure_bits=bits(g.completion_failure_bits for g in given),
        trusted=joined(g.trusted for g in given),
        insecure=joined(g.insecure for g in given),
    )
