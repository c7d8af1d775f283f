"""The learning side of a DP round: Poisson sampling, clipped per-example gradients, the step.

One DP round is one noised gradient step (DP-FedSGD with distributed noise):

- each hospital includes each of its patients independently with probability q
  (``DPConfig.sampling_rate``; every patient when it is None) — Poisson sampling, what
  the accountant's amplification bound assumes (:mod:`secagg.dp.subsampling`);
- the sample is a secret of the hospital, as its noise is: the amplification bound holds only
  if nobody else knows who was sampled, so it is read from a :class:`~secagg.dp.RandomSource`
  (:func:`secagg.dp.poisson_mask`; the simulation passes the DP noise source: the OS CSPRNG
  unless a test seeds it), never from a numpy Generator nor the run's seed;
- it sums the sampled patients' loss gradients at the **global** model, each clipped to
  L2 norm ``l2_clip`` (:func:`dp_contribution`; vectorised, no loop over patients);
- the server steps ``w <- w - learning_rate * noised_sum / B`` with a **public** denominator
  ``B = q * (sum of the declared sizes of the hospitals in the released sum)``
  (:func:`public_denominator`): the expected batch size of that sum, so the number of
  sampled patients (which depends on who is in the data) is never sent nor used.

Which hospitals count: those whose noised contributions the released sum holds (the
aggregator's ``included``), not every hospital sampled for the round. A hospital that
drops out contributes no patient, so counting its declared size would shrink the step by
its share (a bias toward zero, not a privacy loss). Counting only the included ones keeps
the guarantee: B is a function of the declared sizes (public by assumption) and of who
took part, which the server learns from the protocol itself (``included`` is in every
round's report), so dividing by it is post-processing of what is already released; no
count of sampled patients enters it.

Why one step and not several local epochs: a patient's influence on a multi-step local
update is not bounded by the per-example clip (their gradient moves the parameters at
which every later gradient is taken), so only a single step at the global model has the
sensitivity ``l2_clip`` the noise is calibrated for. Local data sizes are treated as public,
as in McMahan et al. (ICLR 2018); declare rounded sizes if they are not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fl_core.data import ClientData
from fl_core.models import DPModel, FloatArray, Params, flatten
from secagg.dp import DPConfig, RandomSource, poisson_mask
from secagg.errors import ConfigurationError

__all__ = ["dp_contribution", "public_denominator"]


def dp_contribution(
    model: DPModel, params: Params, data: ClientData, dp: DPConfig, source: RandomSource | None = None
) -> FloatArray:
    """A hospital's float contribution to a DP round: the sum over its Poisson-sampled
    patients of their gradients at ``params``, each clipped to ``dp.l2_clip`` (flattened).

    One patient changes it by at most ``dp.l2_clip`` in L2 (added or removed). ``source`` is
    the hospital's secret sampling randomness (:func:`secagg.dp.poisson_mask`; the OS CSPRNG
    when None; a numpy Generator is refused).
    """
    mask = poisson_mask(data.num_samples, dp.sampling_rate, source)
    if not mask.any():
        return np.zeros(sum(int(p.size) for p in params))
    return flatten(model.clipped_gradient_sum(params, data.features[mask], data.labels[mask], dp.l2_clip))


def public_denominator(declared_sizes: Sequence[int], dp: DPConfig) -> float:
    """``q * sum(declared_sizes)``: the expected number of sampled patients (``q = 1`` without sampling).

    ``declared_sizes``: the declared sizes of the hospitals whose contributions are in the
    released sum (dropped hospitals excluded; module docstring)."""
    total = sum(declared_sizes)
    if total < 1:
        raise ConfigurationError("the declared hospital sizes must add up to at least one patient")
    rate = 1.0 if dp.sampling_rate is None else dp.sampling_rate
    return rate * total
