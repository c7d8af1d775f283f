"""The arguments of :func:`~secagg.integrations.torch_dp.run_dp_round` that are the caller's own,
checked before any contribution is computed and before the round is charged (a refusal after it
would spend a round's budget for nothing): the step's learning rate and denominator, the hospitals'
triples and their declared sizes. Split from :mod:`secagg.integrations.torch_dp`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from secagg._validate import require_finite, require_int
from secagg.errors import ConfigurationError, ConfigurationTypeError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["check_step", "declared_sizes_of", "hospital_triples", "positive_denominator"]


def positive_denominator(denominator: object) -> float:
    """``denominator`` as a positive finite float; ConfigurationError otherwise (before any division)."""
    value = require_finite("denominator", denominator, 0.0)
    if not value > 0:
        raise ConfigurationError(f"the denominator must be positive, got {denominator}")
    return value


def hospital_triples(hospitals: object) -> list[tuple[int, Tensor, Tensor]]:
    """``hospitals`` as a list of ``(id, inputs, targets)``; ConfigurationTypeError saying what to pass
    for anything else (the caller's own argument: raised for everyone, before anything is computed)."""
    if not isinstance(hospitals, Sequence) or isinstance(hospitals, str | bytes):
        raise ConfigurationTypeError(
            f"hospitals must be a list of (id, inputs, targets), one per hospital, got {type(hospitals).__name__}"
        )
    triples = []
    for entry in hospitals:
        if not isinstance(entry, Sequence) or isinstance(entry, str | bytes) or len(entry) != 3:
            raise ConfigurationTypeError(
                f"each hospital must be an (id, inputs, targets) triple, got a {type(entry).__name__}"
                + (f" of {len(entry)} items" if isinstance(entry, Sequence) else "")
            )
        client, inputs, targets = entry
        triples.append((client, inputs, targets))
    return triples


def declared_sizes_of(hospitals: Sequence[tuple[int, Tensor, Tensor]], declared: Mapping[int, int]) -> dict[int, int]:
    """The declared sizes, each an integer >= 0, with one >= 1 for every hospital of the round
    (ConfigurationError otherwise, before the round is charged): a hospital declaring 0 patients
    could leave the released sum's denominator, q times the included hospitals' sizes, at 0."""
    in_round = [client for client, _, _ in hospitals]
    missing = sorted(set(in_round) - set(declared))
    if missing:
        raise ConfigurationError(f"declared_sizes has no size for hospitals {missing}")
    sizes = {client: require_int("declared size", size, 0) for client, size in declared.items()}
    empty = [client for client in in_round if sizes[client] == 0]
    if empty:
        raise ConfigurationError(
            f"hospital {empty[0]!r} has a declared size of 0: a hospital without patients adds only noise to the "
            "sum and could leave the step's denominator at 0; leave it out of the round"
        )
    return sizes


def check_step(learning_rate: object, denominator: object, declared_sizes: object) -> None:
    """:func:`run_dp_round`'s step arguments, checked before the round is charged (a refusal after it
    would spend a round's budget for nothing): a finite learning rate and exactly one of a positive
    finite denominator and ``declared_sizes``."""
    if (denominator is None) == (declared_sizes is None):
        raise ConfigurationError("run_dp_round takes exactly one of denominator and declared_sizes")
    require_finite("learning_rate", learning_rate)
    if denominator is not None:
        positive_denominator(denominator)
