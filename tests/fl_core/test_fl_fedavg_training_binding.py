"""Binding, fl_core FedAvg: the local training every hospital runs shapes what it sends.

Without DP a hospital's update is its model after ``local_epochs`` epochs of minibatch SGD
(``batch_size``, ``learning_rate``) minus the global model. A hospital that trained with another
value sends an update of the same length under the same quantization and model digest; the Flower
adapter binds its training parameters into the secure round, and :func:`fl_core.fedavg.run_fedavg`
did not. These tests split every :class:`~fl_core.fedavg.FedAvgConfig` field that shapes a
hospital's update between hospital 1 and the others and assert that the session refuses hospital 1
at setup (tests/masking/split_session.py); the other fields are the server's own, each with the
reason (introspected: a field added later fails until it is listed).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fl_core.aggregators.masking import MaskingAggregator
from fl_core.aggregators.quantizer import WeightedQuantizer
from fl_core.fedavg import FedAvgConfig
from fl_core.models import LogisticRegression
from secagg.errors import ConfigurationError
from secagg.masking import MaskingConfig
from tests.fl_core.fedavg_runs import bound_round
from tests.masking.split_session import assert_honest_completes, assert_split_fails, split_session

HOSPITALS = (1, 2, 3, 4, 5)
BASE = FedAvgConfig(rounds=1, local_epochs=1, batch_size=8, learning_rate=0.05)

LOCAL = {"local_epochs": 2, "batch_size": 4, "learning_rate": 0.2}
"""The fields every hospital trains with, and another value of each."""

SERVER = {
    "rounds": "how many rounds the server runs; each round's number is bound (test_fl_masking_binding_guard.py)",
    "client_fraction": "which hospitals the server samples: who takes part, not what one sends",
    "dropout": "the simulation's dropouts: the protocol's own business",
    "tolerance": "when the server stops (its own test loss)",
    "patience": "when the server stops (its own test loss)",
    "seed": "the simulation's randomness: no value to agree on",
    "server_optimizer": "the server's step on a DP round's released mean (post-processing; refused without DP)",
    "server_momentum": "the server's step on a DP round's released mean (post-processing; refused without DP)",
}


def test_every_fedavg_field_is_bound_or_the_servers_own() -> None:
    fields = {f.name for f in dataclasses.fields(FedAvgConfig)}
    assert fields == set(LOCAL) | set(SERVER)


def _bound(config: FedAvgConfig) -> tuple[MaskingConfig, dict[int, Any]]:
    return bound_round(LogisticRegression(3, 2), config)


@pytest.mark.parametrize("field", sorted(LOCAL))
def test_a_hospital_training_with_another_local_setting_is_refused(field: str) -> None:
    # Prepare: the round the others bind, and the one a hospital training with one other value binds
    base, keys = _bound(BASE)
    other, _ = _bound(dataclasses.replace(BASE, **{field: LOCAL[field]}))
    # Execute / Assert: hospital 1 is refused at setup; the others' sum is exact
    assert other.digest() != base.digest(), f"run_fedavg does not bind {field}"
    assert_split_fails(split_session(base, other, signing_keys=keys), base)


def test_hospitals_training_alike_are_all_included() -> None:
    base, keys = _bound(BASE)
    assert _bound(BASE)[0] == base
    assert_honest_completes(base, signing_keys=keys)


def test_binding_an_entry_outside_its_prefix_is_refused_and_binds_nothing() -> None:
    from fl_core.aggregators.binding import bind_entries  # noqa: PLC0415 (the helper this test checks)

    aggregator = MaskingAggregator(WeightedQuantizer.create(len(HOSPITALS)), run_id=7)
    with pytest.raises(ConfigurationError, match=r"must start with 'fl_core\.training\.'"):
        bind_entries(aggregator, "fl_core.training.", {"secagg.dp.epsilon": 1.0})
    assert aggregator.quantizer.parameters == ()
