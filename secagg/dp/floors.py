"""The honest floor of a secure sum: how many honest noise shares every sum a (lying) server can
release holds, and so the largest h (``DPConfig.min_honest``) a configuration supports.

Distributed DP sizes each contributor's noise share for h honest contributors
(:class:`~secagg.dp.calibration.NoisePlan`). The noise a released sum carries is that of the
honest contributions *in that sum*, so h must not exceed the fewest honest inputs of any sum the
server can obtain, with the colluders the protocol's guarantee tolerates on its side:

- masking (:func:`unmasked_sums`, :func:`masking_floor`): ``m - c`` with ``m = t`` inputs on the
  complete graph (own seed share counted), ``t + 1`` on a Harary graph, and ``c`` the colluders of
  the configuration (its guarantee's on the complete graph, the corrupt neighbours on a Harary one);
- threshold Paillier (:func:`decrypted_sums`, :func:`decryption_floor`): ``min_contributors - c``,
  the fewest uploads a key-share holder decrypts a sum of, less the colluders its guarantee tolerates.

This is the one rule both deployments use: a Flower node checks it before it trains
(:mod:`secagg.integrations.flower.dp` re-exports these functions) and the Flower server sizes h by
it; fl_core's :class:`~fl_core.dp.DPAggregator` refuses a plan above the full roster's floor and
skips, uncharged, a round whose session has a lower one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secagg.errors import ConfigurationError
from secagg.guarantee import Guarantee
from secagg.masking import MaskingConfig

if TYPE_CHECKING:  # the Paillier package is optional for masking-only users
    from secagg.dp.calibration import NoisePlan
    from secagg.paillier import ThresholdPublicKey

__all__ = [
    "check_decrypted_sums",
    "check_unmasked_sums",
    "decrypted_shortfall",
    "decrypted_sums",
    "decryption_floor",
    "masking_floor",
    "unmasked_shortfall",
    "unmasked_sums",
]


def unmasked_sums(masking: MaskingConfig) -> Guarantee:
    """The guarantee h is computed from in a masking round: the fewest inputs a sum the server can
    unmask holds (``m``) and the most colluders among them (``c``), as ``Guarantee(c, n - m)``, so
    that ``h = n - c - (n - m) = m - c``.

    - Complete graph (SecAgg): ``m = t``. A client unmasks only for a survivor list of at least t
      clients (itself included), and t of them suffice: each survivor's self-mask seed has t
      holders among them, the survivor's own share included (:attr:`MaskingConfig.self_share`).
      ``c`` is the colluders of :attr:`MaskingConfig.guarantee` (computed from t, n and the mode),
      so ``m - c = n - c - d`` with the guarantee's ``d = n - t``.
    - Harary graph (SecAgg+): ``m = t + 1``. There is no self-held share: every survivor's seed
      needs t shares from neighbours answering at Unmasking, and only survivors answer, so a
      released sum holds a survivor and t of its neighbours, however many of the others dropped
      (the declared d bounds what the round survives, not what it may release). ``c`` is
      :attr:`MaskingConfig.corrupt_neighbours` (fewer than t colluders in a neighbourhood, except
      with probability 2^-40): an honest survivor in the sum has at least ``t - c`` honest
      neighbours there too, so a sum holds ``t + 1 - c`` honest inputs or none.
    """
    n, t, guarantee = masking.num_clients, masking.threshold, masking.guarantee
    if masking.self_share:
        return Guarantee(guarantee.colluders, n - t, guarantee.lying_server)
    return Guarantee(
        masking.corrupt_neighbours, n - t - 1, guarantee.lying_server,
        privacy_failure_bits=guarantee.privacy_failure_bits,
    )  # fmt: skip


def masking_floor(masking: MaskingConfig) -> int:
    """The largest h ``masking`` supports: ``m - c``, the honest inputs in the smallest sum its
    server can unmask (:func:`unmasked_sums`; 0 or less: no h at all)."""
    sums = unmasked_sums(masking)
    return masking.num_clients - sums.dropouts - sums.colluders


def unmasked_shortfall(honest: int, masking: MaskingConfig) -> str | None:
    """Why sums ``masking`` lets the server unmask may hold fewer than ``honest`` honest noise
    shares (naming t, m, c and the floor ``m - c``), or None if every one holds at least that many."""
    sums = unmasked_sums(masking)
    fewest = masking.num_clients - sums.dropouts
    if fewest - sums.colluders >= honest:
        return None
    graph = "own seed share counted" if masking.self_share else "a survivor and t of its neighbours"
    return (
        f"the round ({masking.graph} graph, {masking.mode}, n = {masking.num_clients}, t = {masking.threshold}) "
        f"unmasks sums of {fewest} inputs ({graph}), up to c = {sums.colluders} of them colluders': "
        f"{fewest - sums.colluders} honest (the floor m - c), fewer than the h = {honest} honest ones its noise "
        "is sized for; under-noised setup refused"
    )


def check_unmasked_sums(plan: NoisePlan, masking: MaskingConfig) -> None:
    """ConfigurationError unless every sum a masking round's server can unmask holds the plan's h
    honest noise shares: ``m - c >= h`` with ``m`` and ``c`` as :func:`unmasked_sums` derives them
    from the round's own configuration (threshold, graph, mode). A masking node checks it before it
    trains or sends anything."""
    shortfall = unmasked_shortfall(plan.honest, masking)
    if shortfall is not None:
        raise ConfigurationError(shortfall)


def decrypted_sums(public: ThresholdPublicKey, num_nodes: int, min_contributors: int) -> Guarantee:
    """The guarantee h is computed from in a Paillier round: its colluders (as
    :func:`~secagg.paillier.protocol.paillier_guarantee`) and, as dropouts, the uploads a
    decrypted sum may lack (``num_nodes - min_contributors``: key-share holders decrypt
    sums of at least ``min_contributors`` uploads), so ``h = min_contributors - c``."""
    return _decrypted_sums(public.num_parties, public.threshold, num_nodes, min_contributors)


def _decrypted_sums(num_parties: int, threshold: int, num_nodes: int, min_contributors: int) -> Guarantee:
    from secagg.paillier.parameters import threshold_guarantee  # noqa: PLC0415 (optional package)

    colluders = threshold_guarantee(num_parties, threshold, num_nodes, min_contributors).colluders
    return Guarantee(colluders, num_nodes - min_contributors, lying_server=True)


def decryption_floor(num_parties: int, threshold: int, num_nodes: int, min_contributors: int) -> int:
    """The largest h a Paillier round supports, from the key's shape (``num_parties`` shares,
    ``threshold`` needed) before any ceremony: ``min_contributors - c`` (:func:`decrypted_sums`)."""
    return min_contributors - _decrypted_sums(num_parties, threshold, num_nodes, min_contributors).colluders


def decrypted_shortfall(honest: int, min_contributors: int, guarantee: Guarantee) -> str | None:
    """Why a Paillier round's smallest decrypted sum (``min_contributors`` uploads, up to
    ``guarantee.colluders`` of them colluders') may hold fewer than ``honest`` honest uploads, or None."""
    floor = min_contributors - guarantee.colluders
    if floor >= honest:
        return None
    return (
        f"the round decrypts sums of {min_contributors} uploads, up to c = {guarantee.colluders} of them "
        f"colluders': {floor} honest (the floor), fewer than the h = {honest} honest ones its noise is sized "
        "for; under-noised setup refused"
    )


def check_decrypted_sums(plan: NoisePlan, min_contributors: int, guarantee: Guarantee) -> None:
    """ConfigurationError unless a Paillier round's smallest decrypted sum (``min_contributors``
    uploads, up to ``guarantee.colluders`` of them colluders') holds the plan's h honest uploads."""
    shortfall = decrypted_shortfall(plan.honest, min_contributors, guarantee)
    if shortfall is not None:
        raise ConfigurationError(shortfall)
