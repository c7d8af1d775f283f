"""The library's Poisson samplers include a patient with probability at most the accounted q.

numpy's uniforms are k / 2^53 (k uniform below 2^53), so ``random() < q`` includes a row with
probability ceil(q 2^53) / 2^53, above q for every q < 1/2 that is not a multiple of 2^-53 (by up
to 2^-53: a relative 1e-10 at q = 1e-6, beyond the account's 1e-12 rounding). Sampling at a
smaller rate than accounted is covered by the bound (a further thinning of the sample is part of
the mechanism), so the samplers compare with floor(q 2^53) / 2^53 instead: exactly that rate.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from fl_core.dp_training import poisson_sample
from secagg.integrations.torch_dp import poisson_mask


class Uniforms:
    """A stand-in Generator whose ``random`` returns the given k / 2^53 in turn."""

    def __init__(self, ks: list[int]) -> None:
        self.values = np.array(ks, dtype=np.float64) * 2.0**-53

    def random(self, size: int) -> npt.NDArray[np.float64]:
        assert size == len(self.values)
        return self.values


@pytest.mark.parametrize("sampler", [poisson_sample, poisson_mask], ids=["fl_core", "torch_dp"])
@pytest.mark.parametrize("q", [0.1, 1e-6, 0.3, 2.0**-60])
def test_a_row_is_included_for_at_most_q_2_53_of_the_uniforms(sampler: object, q: float) -> None:
    # Included iff k < floor(q 2^53): floor(q 2^53) values of k out of 2^53, at most q.
    edge = math.floor(q * 2.0**53)
    ks = [edge, edge + 1] if edge == 0 else [edge - 1, edge, edge + 1]
    mask = sampler(len(ks), q, Uniforms(ks))  # type: ignore[operator]
    assert list(mask) == [k < edge for k in ks]


@pytest.mark.parametrize("sampler", [poisson_sample, poisson_mask], ids=["fl_core", "torch_dp"])
def test_a_rate_of_one_half_or_more_is_exact_already(sampler: object) -> None:
    # q 2^53 is an integer there: the rate is q exactly, as before.
    edge = int(0.75 * 2**53)
    assert list(sampler(2, 0.75, Uniforms([edge - 1, edge]))) == [True, False]  # type: ignore[operator]
