"""PyTorch DP: a step that cannot be taken is refused before the round is charged.

``run_dp_round`` takes the step ``w <- w - learning_rate * noised_sum / denominator`` after the
round: its learning rate and (given) denominator were checked only then, by ``apply_dp_step``, so a
NaN or string learning rate, or a zero or negative denominator, was refused after the aggregator
had drawn the noise and charged the round to the budget (a zero denominator as a raw
ZeroDivisionError): the caller's typo spent a round's epsilon and left the model unchanged. They are
now refused with a ConfigurationError before any hospital's contribution is computed.

So is an ``rng`` that is no ``numpy.random.Generator`` (a legacy ``RandomState``): it was refused
only by the aggregator, after every hospital's Poisson sample and per-example gradients had been
computed; it is now refused first, by the check every other ``rng`` goes through.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from secagg.dp import DPConfig
from secagg.errors import ConfigurationError, ConfigurationTypeError

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

DP = DPConfig(epsilon=8.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=2)


def _aggregator() -> Any:
    return make_aggregator("plain-quantized", num_clients=3, dp=DP, dimension=10, max_samples_per_client=64)


def _round(aggregator: Any, rng: Any = None, **step: Any) -> Any:
    """A three-hospital DP round of a Linear(4, 2) through ``aggregator`` with the step arguments
    ``step`` and ``rng`` (a seeded Generator if None); returns the model."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2).double()
    data = np.random.default_rng(0)
    hospitals = [
        (h, torch.from_numpy(data.normal(size=(20, 4))), torch.from_numpy(data.integers(0, 2, size=20)))
        for h in (1, 2, 3)
    ]
    torch_dp.run_dp_round(
        model,
        hospitals,
        torch.nn.functional.cross_entropy,
        aggregator,
        rng=np.random.default_rng(1) if rng is None else rng,
        **step,
    )
    return model


BAD_STEPS = {
    "learning rate NaN": {"learning_rate": float("nan"), "denominator": 10.0},
    "learning rate infinite": {"learning_rate": float("inf"), "denominator": 10.0},
    "learning rate a string": {"learning_rate": "0.1", "denominator": 10.0},
    "denominator zero": {"learning_rate": 0.1, "denominator": 0.0},
    "denominator negative": {"learning_rate": 0.1, "denominator": -5.0},
    "denominator NaN": {"learning_rate": 0.1, "denominator": float("nan")},
    # every denominator of q * (declared sizes of those included) would be 0 (refused after the charge before)
    "declared sizes zero": {"learning_rate": 0.1, "declared_sizes": {1: 0, 2: 0, 3: 0}},
    "one declared size zero": {"learning_rate": 0.1, "declared_sizes": {1: 0, 2: 20, 3: 20}},
}


@pytest.mark.parametrize("case", list(BAD_STEPS))
def test_a_step_that_cannot_be_taken_is_refused_before_the_round_is_charged(case: str, monkeypatch: Any) -> None:
    # Prepare: record every contribution computed
    computed: list[object] = []
    original = torch_dp.clipped_gradient_sum
    monkeypatch.setattr(torch_dp, "clipped_gradient_sum", lambda *a: computed.append(a) or original(*a))
    aggregator = _aggregator()
    # Execute / Assert: the library's error, nothing computed, nothing charged
    with pytest.raises(ConfigurationError, match=r"learning_rate|denominator|declared size"):
        _round(aggregator, **BAD_STEPS[case])
    assert computed == []
    assert aggregator.spent() == _aggregator().spent()  # as before any round


BAD_RNGS = {
    "legacy RandomState": lambda: np.random.RandomState(1),
    "a bit generator": lambda: np.random.PCG64(1),
    "the random module": lambda: __import__("random"),
}


@pytest.mark.parametrize("case", list(BAD_RNGS))
def test_an_rng_that_is_no_generator_is_refused_before_any_contribution_is_computed(
    case: str, monkeypatch: Any
) -> None:
    # Prepare: record every contribution computed and every Poisson sample drawn
    computed: list[object] = []
    original = torch_dp.clipped_gradient_sum
    monkeypatch.setattr(torch_dp, "clipped_gradient_sum", lambda *a: computed.append(a) or original(*a))
    sampled: list[object] = []
    original_mask = torch_dp.poisson_mask
    monkeypatch.setattr(torch_dp, "poisson_mask", lambda *a, **k: sampled.append(a) or original_mask(*a, **k))
    aggregator = _aggregator()
    # Execute / Assert: the shared check's error and wording, nothing computed or sampled, nothing charged
    with pytest.raises(ConfigurationTypeError, match=r"^rng must be a numpy\.random\.Generator"):
        _round(aggregator, BAD_RNGS[case](), learning_rate=0.1, denominator=10.0)
    assert computed == []
    assert sampled == []
    assert aggregator.spent() == _aggregator().spent()


def test_a_step_that_can_be_taken_is_charged_and_taken() -> None:
    # The control: a finite learning rate and a positive denominator
    aggregator = _aggregator()
    model = _round(aggregator, learning_rate=0.1, denominator=10.0)
    assert aggregator.spent()[0] > 0
    torch.manual_seed(0)
    assert not torch.equal(model.weight, torch.nn.Linear(4, 2).double().weight)


def test_apply_dp_step_refuses_a_zero_denominator_with_the_library_s_error() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2).double()
    before = model.weight.detach().clone()
    with pytest.raises(ConfigurationError, match="denominator"):
        torch_dp.apply_dp_step(model, np.ones(10), 0.0, 0.1)
    assert torch.equal(model.weight.detach(), before)
