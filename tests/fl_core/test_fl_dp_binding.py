"""A DP round binds everything that shapes its contributions, or refuses what it cannot bind.

The attack the session descriptor stops: a value that changes what a hospital sends but is
not in the session's descriptor can differ between hospitals (or from what the server
claims) without failing the session. The rotation and the shared-seed subset of
:mod:`fl_core.rotated` and :mod:`fl_core.compression` are bound by writing their entries
into the aggregator's quantizer; a DP aggregator's quantizer must not drop them, and a
DP aggregator must not run under them at all (as the Flower adapter and the demo refuse:
the residual would carry patient data past the accountant, and the rotation's padding
changes the sensitivity's rounding term the noise was calibrated for).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from fl_core.aggregators.base import Aggregator, ClientUpdate
from fl_core.compression import CompressionConfig, SparseAggregator
from fl_core.demo_config import DemoConfig
from fl_core.dp import DPAggregator, DPQuantizer
from fl_core.rotated import RotatedAggregator
from secagg.descriptor import Parameter
from secagg.dp import DPConfig, SeededRandomSource
from secagg.errors import ConfigurationError
from secagg.rotation import Rotation
from secagg.sparsity import Subset

DIMENSION = 16
WRAPPERS: dict[str, Callable[[Aggregator], object]] = {
    "rotated": RotatedAggregator,
    "sparse": lambda inner: SparseAggregator(inner, CompressionConfig(fraction=0.5)),
}


def _dp_aggregator(name: str = "secagg") -> DPAggregator:
    config = DPConfig(epsilon=3.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=2)
    aggregator = make_aggregator(
        name, num_clients=5, dp=config, dimension=DIMENSION, max_samples_per_client=100,
        noise_source=SeededRandomSource(bytes(32)),
    )  # fmt: skip
    assert isinstance(aggregator, DPAggregator)
    return aggregator


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
@pytest.mark.parametrize("name", ["plain-quantized", "secagg"])
def test_a_dp_aggregator_refuses_to_run_under_a_rotation_or_a_subset(wrapper: str, name: str) -> None:
    # Before: the wrapper ran, and its seed went into a copy of the quantizer the protocol never
    # used (and the DP descriptor ignored it anyway): the round's rotation or subset was unbound.
    with pytest.raises(ConfigurationError, match="DP"):
        WRAPPERS[wrapper](_dp_aggregator(name))


def test_a_dp_aggregator_refuses_a_wrapped_inner_aggregator() -> None:
    # The other way round: DP noise over a rotating inner aggregator is refused too.
    dp = _dp_aggregator("plain-quantized")
    with pytest.raises(ConfigurationError, match=r"rotat|compress|wrap"):
        DPAggregator(RotatedAggregator(dp.inner), dp.quantizer, dp.accountant)


@pytest.mark.parametrize(
    "entries",
    [
        Rotation(bytes(range(32)), DIMENSION).descriptor_parameters(),
        Subset.random(bytes(range(32)), DIMENSION, count=8).descriptor_parameters(),
        {"config/lr": 0.1},
    ],
    ids=["rotation", "subset", "training parameter"],
)
def test_the_dp_descriptor_binds_the_quantizers_bound_entries(entries: dict[str, Parameter]) -> None:
    # A DPQuantizer is a WeightedQuantizer: its ``parameters`` are bound into every round's
    # descriptor, as the base class promises; two quantizers that differ only there differ.
    quantizer = _dp_aggregator().quantizer
    assert isinstance(quantizer, DPQuantizer)
    bound = dataclasses.replace(quantizer, parameters=tuple(sorted(entries.items())))
    assert bound.descriptor(1) != quantizer.descriptor(1)
    assert dataclasses.replace(quantizer, parameters=()).descriptor(1) == quantizer.descriptor(1)


def test_a_bound_entry_cannot_shadow_a_dp_parameter() -> None:
    quantizer = _dp_aggregator().quantizer
    shadow = dataclasses.replace(quantizer, parameters=(("secagg.dp.epsilon", 100.0),))
    with pytest.raises(ConfigurationError, match=r"secagg\.dp\.epsilon"):
        shadow.descriptor(1)


def test_an_unwrapped_dp_round_still_runs() -> None:
    rng = np.random.default_rng(0)
    updates = [ClientUpdate(c, 0.01 * rng.normal(size=DIMENSION), 10) for c in range(1, 6)]
    result = _dp_aggregator().aggregate(updates, {}, rng=np.random.default_rng(1))
    assert result.mean is not None and result.included == frozenset(range(1, 6))


@pytest.mark.parametrize("option", [{"sparsity": 0.5}, {"rotate": True}, {"bytes_per_parameter": 1.0}])
def test_the_demo_refuses_compression_with_dp_instead_of_ignoring_it(option: dict[str, object]) -> None:
    # Before: DemoConfig(dp_epsilon=..., sparsity=...) was accepted and the DP run sent every
    # coordinate anyway (the DP setup never builds the SparseAggregator): an option silently dropped.
    with pytest.raises(ConfigurationError, match="dp"):
        DemoConfig(aggregation="secagg", dp_epsilon=1.0, **option)  # type: ignore[arg-type]


def test_a_hospital_declaring_another_dp_configuration_is_refused_and_the_round_goes_on() -> None:
    # A contribution's clip and sampling rate are the hospital's (torch_dp.dp_update declares the
    # DPConfig it used): one computed under a clip 100 times the declared one was summed unnoticed
    aggregator = _dp_aggregator()
    other = dataclasses.replace(aggregator.config, l2_clip=100.0).digest()
    updates = [
        ClientUpdate(h, np.full(DIMENSION, 0.01), 10, dp_digest=other if h == 1 else aggregator.config.digest())
        for h in range(1, 6)
    ]
    # Execute
    result = aggregator.aggregate(updates, rng=np.random.default_rng(0))
    # Assert: hospital 1 refused by name, before the charge; the others' noised sum released
    assert [client for client, _ in result.refused] == [1]
    assert "another DP configuration" in result.refused[0][1]
    assert result.mean is not None and result.included == frozenset(range(2, 6))


def test_a_dp_update_declaring_none_is_taken_under_the_rounds_dp_configuration() -> None:
    # Undeclared (None): a hand-built update is summed as before
    aggregator = _dp_aggregator()
    updates = [ClientUpdate(h, np.full(DIMENSION, 0.01), 10) for h in range(1, 6)]
    result = aggregator.aggregate(updates, rng=np.random.default_rng(0))
    assert result.refused == () and result.included == frozenset(range(1, 6))


def test_a_hospital_refused_for_its_model_and_its_dp_configuration_is_told_both() -> None:
    # Mutation audit: the DP refusal's reason was written over the model refusal's (one reason
    # lost); a hospital told only one would fix it and be refused again for the other
    aggregator = _dp_aggregator()
    round_model, other_model = bytes(range(32)), bytes(32)
    other_dp = dataclasses.replace(aggregator.config, l2_clip=100.0).digest()
    updates = [
        ClientUpdate(h, np.full(DIMENSION, 0.01), 10, model_digest=other_model if h == 1 else round_model,
                     dp_digest=other_dp if h == 1 else aggregator.config.digest())
        for h in range(1, 6)
    ]  # fmt: skip
    result = aggregator.aggregate(updates, rng=np.random.default_rng(0), model_digest=round_model)
    assert [client for client, _ in result.refused] == [1]
    reason = result.refused[0][1]
    assert "another DP configuration" in reason and "model" in reason.split("another DP configuration")[0], reason


def test_noise_drawn_before_the_charge_goes_into_one_encoding_only() -> None:
    # Mutation audit: encode_integers takes the drawn noise once (pop): read without removing it,
    # a second encoding of the same hospital would carry the very same noise
    quantizer = _dp_aggregator().quantizer
    assert isinstance(quantizer, DPQuantizer)
    update = ClientUpdate(1, np.full(DIMENSION, 0.01), 10)
    quantizer.drawn_noise[1] = np.zeros(DIMENSION, dtype=np.int64)
    quantizer.encode_integers(update, np.random.default_rng(0))
    assert 1 not in quantizer.drawn_noise
