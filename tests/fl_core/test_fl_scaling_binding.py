"""Binding, fl_core feature scaling: how a hospital scales its features shapes what it sends.

The noised moments release (:func:`fl_core.dp_moments.release_moments`) sums each hospital's
``(sum u, sum u^2)`` with ``u`` its features mapped by the declared public ranges onto ``[-1, 1]``,
and the server maps the released sums back with the same ranges; every training round then sums
gradients computed at features standardised with the round's scaler (the pooled moments, the
noised release or the public ranges alone). A hospital holding another version of the ranges (its
data dictionary's), or another scaler, sends as many values under the same protocol, DP and
quantization parameters: unbound, its contribution was summed with the others' in other units.
These tests split the scaling between hospital 1 and the others and assert that the session
refuses hospital 1 at setup (tests/masking/split_session.py), and that the same round under one
scaling includes everyone. The release's own settings (:func:`~fl_core.dp_moments.moments_dp_config`'s
arguments: its epsilon share, delta, feature count, h and clip share) are split too: each reaches
the DP plan the release binds.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from fl_core import demo, public_scaling
from fl_core.aggregators import make_aggregator
from fl_core.aggregators.base import Aggregator, ClientUpdate
from fl_core.aggregators.binding import NO_MODEL
from fl_core.aggregators.masking import MaskingAggregator
from fl_core.data import ClientData, Standardiser
from fl_core.demo_config import DemoConfig
from fl_core.demo_prepare import prepare_demo
from fl_core.dp import DPAggregator
from fl_core.dp_build import make_dp_aggregator
from fl_core.dp_moments import moments_dp_config, release_moments
from fl_core.public_scaling import PUBLIC_FEATURE_RANGES
from fl_core.rotated import RotatedAggregator
from fl_core.wrapping import innermost
from secagg.errors import ConfigurationError
from secagg.masking import ACTIVE, MaskingConfig
from secagg.primitives.randomness import InsecureDeterministicRandom
from tests.masking.split_session import assert_honest_completes, assert_split_fails, bound_config, split_session

HOSPITALS = (1, 2, 3, 4, 5)
DATASET = "breast-cancer"
FEATURES = len(PUBLIC_FEATURE_RANGES[DATASET])


@pytest.fixture
def other_ranges(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Another version of the data dictionary: the first feature's declared high doubled (a same-length
    table, as a revised dictionary would be); the original is restored after the test."""
    ranges = PUBLIC_FEATURE_RANGES[DATASET]
    revised = ((ranges[0][0], 2 * ranges[0][1]), *ranges[1:])
    monkeypatch.setitem(public_scaling.PUBLIC_FEATURE_RANGES, DATASET, revised)
    yield


def _clients() -> list[ClientData]:
    rng = np.random.default_rng(0)
    high = np.array([h for _, h in PUBLIC_FEATURE_RANGES[DATASET]])
    return [
        ClientData(h, rng.uniform(0.2, 0.6, size=(20, FEATURES)) * high, rng.integers(0, 2, size=20)) for h in HOSPITALS
    ]


MOMENTS = {"epsilon": 1.0, "delta": 1e-5, "num_features": FEATURES, "min_honest": 2, "clip_share": 1.0}
"""The moments release's settings (:func:`moments_dp_config`'s arguments)."""


def _release_config(**settings: Any) -> tuple[MaskingConfig, dict[int, Any]]:
    """The masking config the moments release binds, over the five hospitals, in one named run
    (every hospital's identity keys from one deterministic source, as the same hospitals would hold),
    under :data:`MOMENTS` with ``settings`` changed."""
    dp = moments_dp_config(**{**MOMENTS, **settings})
    aggregator = make_dp_aggregator(
        "secagg", dp, num_clients=len(HOSPITALS), dimension=2 * FEATURES, max_samples_per_client=64,
        mode=ACTIVE, run_id=7, random_bytes=InsecureDeterministicRandom(b"hospitals"),
    )  # fmt: skip
    inner = aggregator.inner
    assert isinstance(inner, MaskingAggregator)
    return bound_config(
        inner, lambda: release_moments(DATASET, _clients(), aggregator, 0.2, np.random.default_rng(1)), HOSPITALS
    )


def test_a_hospital_scaling_its_moments_with_other_public_ranges_is_refused(request: pytest.FixtureRequest) -> None:
    # Prepare: the round the others bind, then the one a hospital with the revised dictionary binds
    base, keys = _release_config()
    request.getfixturevalue("other_ranges")
    other, _ = _release_config()
    # Execute / Assert: hospital 1 under the revised ranges is refused at setup; the others' sum is exact
    assert other.digest() != base.digest(), "the moments release does not bind the public ranges"
    assert_split_fails(split_session(base, other, signing_keys=keys), base)
    assert_honest_completes(base, signing_keys=keys)


OTHER_MOMENTS = {"epsilon": 2.0, "delta": 1e-6, "num_features": FEATURES - 1, "min_honest": 1, "clip_share": 0.6}


def test_every_moments_setting_has_another_value_to_split() -> None:
    assert set(inspect.signature(moments_dp_config).parameters) == set(MOMENTS) == set(OTHER_MOMENTS)


@pytest.mark.parametrize("setting", sorted(OTHER_MOMENTS))
def test_a_hospital_under_another_moments_setting_is_refused(setting: str) -> None:
    # Prepare: the release the others bind, and the one a hospital with one other setting binds
    # (the demo's dp_moments_share is the release's epsilon; its moments_clip_share the clip_share)
    base, keys = _release_config()
    other, _ = _release_config(**{setting: OTHER_MOMENTS[setting]})
    # Execute / Assert
    assert other.digest() != base.digest()
    assert_split_fails(split_session(base, other, signing_keys=keys), base)


SETUPS = {
    "public-ranges": DemoConfig(dp_epsilon=1.0, rounds=2, dp_scaling="public-ranges", aggregation="secagg"),
    "noised-moments": DemoConfig(dp_epsilon=1.0, rounds=2, dp_scaling="noised-moments", aggregation="secagg"),
    "pooled-moments": DemoConfig(rounds=2, aggregation="secagg"),
}


@pytest.fixture
def other_pooled_scaler(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A hospital standardising with another pooled scaler (every centre moved by one)."""
    pooled = demo.federated_standardiser

    def moved(*args: Any, **kwargs: Any) -> Standardiser:
        scaler = pooled(*args, **kwargs)
        return Standardiser(scaler.mean + 1.0, scaler.std)

    monkeypatch.setattr(demo, "federated_standardiser", moved)
    yield


OTHER = {"public-ranges": "other_ranges", "noised-moments": "other_ranges", "pooled-moments": "other_pooled_scaler"}


def _protocol(aggregator: Aggregator) -> MaskingAggregator:
    """The masking aggregator that runs the training rounds (under DP, under any wrapper)."""
    protocol = innermost(aggregator.inner if isinstance(aggregator, DPAggregator) else aggregator)
    assert isinstance(protocol, MaskingAggregator)
    return protocol


@pytest.mark.parametrize("scaling", sorted(SETUPS))
def test_a_hospital_training_at_features_scaled_otherwise_is_refused(
    scaling: str, request: pytest.FixtureRequest
) -> None:
    # Prepare: the demo's training rounds, round 1's bound config
    config = SETUPS[scaling]
    prepared = prepare_demo(config)
    protocol = _protocol(demo._setup(config, prepared.raw, config.aggregation)[1])
    table = protocol.quantizer.check_table(protocol.schedule.table(prepared.dimension))
    base = protocol.round_config(HOSPITALS, prepared.dimension, table, 1, NO_MODEL)
    keys = protocol.session_identities(HOSPITALS)[1]
    assert keys is not None
    # the same setup by a hospital holding another scaler, bound in the same run with the same keys
    # (each setup draws its own run id and identity keys; the scaling is what is split)
    request.getfixturevalue(OTHER[scaling])
    revised = _protocol(demo._setup(config, prepared.raw, config.aggregation)[1])
    descriptor = revised.quantizer.descriptor(1, table, model_digest=NO_MODEL, run_id=protocol.run_id)
    other = dataclasses.replace(base, descriptor=descriptor)
    # Execute / Assert: hospital 1 under the other scaler is refused at setup; the others' sum is exact
    assert other.digest() != base.digest(), f"the {scaling} training rounds do not bind the scaling"
    assert_split_fails(split_session(base, other, signing_keys=keys), base)
    assert_honest_completes(base, signing_keys=keys)


SCALER = Standardiser(np.array([1.0, 2.0]), np.array([0.5, 4.0]))


def test_an_unknown_scaling_kind_or_a_scaler_that_is_none_is_refused() -> None:
    from fl_core.contribution_binding import scaling_parameters  # noqa: PLC0415 (the module this test checks)

    with pytest.raises(ConfigurationError, match="scaling kind must be one of"):
        scaling_parameters("raw", SCALER)
    with pytest.raises(ConfigurationError, match="expected a Standardiser"):
        scaling_parameters("public-ranges", None)  # type: ignore[arg-type]


def test_the_scaling_survives_a_wrappers_own_binding_and_a_dp_aggregator_keeps_one_quantizer() -> None:
    from fl_core.contribution_binding import SCALING_PREFIX, bind_scaling  # noqa: PLC0415

    # Prepare: a rotation around secagg, and a DP aggregator over secagg
    rotated = RotatedAggregator(make_aggregator("secagg", num_clients=5, clipping="fixed"))
    dp = make_dp_aggregator("secagg", moments_dp_config(1.0, 1e-5, 2, 2), num_clients=5, dimension=4)
    updates = [ClientUpdate(h, np.full(4, 0.01 * h), 10) for h in HOSPITALS]
    # Execute: bind, then run one round each (the rotation binds its own entries per round)
    for aggregator in (rotated, dp):
        bind_scaling(aggregator, "pooled-moments", SCALER)
        assert aggregator.aggregate(updates, {}, rng=np.random.default_rng(0)).mean is not None
    # Assert: both prefixes bound; the DP aggregator and its protocol still hold one quantizer
    names = {name for name, _ in rotated.quantizer.parameters}
    assert {SCALING_PREFIX + "kind", SCALING_PREFIX + "digest"} <= names
    assert any(name.startswith("secagg.rotation.") for name in names)
    assert dp.quantizer is dp.inner.quantizer  # type: ignore[attr-defined]
    assert dict(dp.quantizer.parameters)[SCALING_PREFIX + "kind"] == "pooled-moments"
