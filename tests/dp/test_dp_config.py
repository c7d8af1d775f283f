"""DPConfig validation and its binding into the session descriptor."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from fractions import Fraction

import pytest

from secagg.descriptor import SessionDescriptor, encode_parameters
from secagg.dp import DPConfig, NoisePlan, calibrate
from secagg.dp.calibration import preceding_digest
from secagg.errors import ConfigurationError, ConfigurationTypeError

BASE = DPConfig(epsilon=3.0, delta=1e-5, rounds=20, l2_clip=1.0, min_honest=4)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epsilon", 0.0),
        ("epsilon", -1.0),
        ("epsilon", math.inf),
        ("epsilon", math.nan),
        ("delta", 0.0),
        ("delta", 1.0),
        ("delta", 1.5),
        ("rounds", 0),
        ("l2_clip", 0.0),
        ("l2_clip", -0.5),
        ("sampling_rate", 0.0),
        ("sampling_rate", 1.5),
        ("sampling_rate", math.nan),
        ("min_honest", 0),
        ("mechanism", "gaussian"),
    ],
)
def test_refuses_bad_values(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError):
        dataclasses.replace(BASE, **{field: value})


@pytest.mark.parametrize(("field", "value"), [("rounds", 2.0), ("rounds", True), ("epsilon", "3"), ("min_honest", 1.0)])
def test_refuses_wrong_types(field: str, value: object) -> None:
    with pytest.raises(ConfigurationTypeError):
        dataclasses.replace(BASE, **{field: value})


def test_parameters_are_prefixed_and_encodable() -> None:
    plan = calibrate(BASE, num_clients=5, scale=1024.0, dimension=100)
    params = BASE.descriptor_parameters(plan)
    assert all(name.startswith("secagg.dp.") for name in params)
    assert Fraction(params["secagg.dp.variance_num"], params["secagg.dp.variance_den"]) == plan.variance  # type: ignore[arg-type]
    assert encode_parameters(params) == BASE.canonical_bytes(plan)
    assert len(BASE.digest(plan)) == 32


def test_plan_of_another_config_is_refused() -> None:
    plan = calibrate(BASE, num_clients=5, scale=1024.0, dimension=100)
    with pytest.raises(ConfigurationError):
        dataclasses.replace(BASE, epsilon=2.0).descriptor_parameters(plan)


def _digest(params: dict[str, object]) -> bytes:
    return SessionDescriptor.create(None, parameters=params).digest()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epsilon", 3.0000001),
        ("delta", 1e-6),
        ("rounds", 21),
        ("l2_clip", 1.5),
        ("sampling_rate", 0.5),
        ("min_honest", 3),
        ("min_honest", None),
    ],
)
def test_a_split_of_any_dp_value_changes_the_descriptor_digest(field: str, value: object) -> None:
    # Prepare: the server tells client A the declared config, client B a changed one.
    other = dataclasses.replace(BASE, **{field: value})
    # Execute
    digest_a = _digest(dict(BASE.descriptor_parameters()))
    digest_b = _digest(dict(other.descriptor_parameters()))
    # Assert: different sessions.
    assert digest_a != digest_b


def test_a_split_of_the_noise_variance_changes_the_descriptor_digest() -> None:
    plan = calibrate(BASE, num_clients=5, scale=1024.0, dimension=100)
    lowered = dataclasses.replace(plan, variance=plan.variance / 2)
    digest_a = _digest(dict(BASE.descriptor_parameters(plan)))
    digest_b = _digest(dict(BASE.descriptor_parameters(lowered)))
    assert digest_a != digest_b
    assert digest_a != _digest(dict(BASE.descriptor_parameters()))


def test_known_answer_digests_of_docs_spec() -> None:
    # docs/spec.md, section 16.1.
    config = DPConfig(epsilon=3.0, delta=1e-5, rounds=20, l2_clip=1.0, min_honest=4)
    assert config.digest().hex() == "64c31374674b5448ec2b2e8b6430ebb3565d908e6c81adefca2da4185a35764e"
    plan = NoisePlan(config=config, variance=Fraction(11817344), num_clients=5, dimension=31, scale=1024.0)
    assert config.digest(plan).hex() == "52ed4991225957d5c37f95dff817616d41eb50f5363cd790c5aef8c53ed03197"


def _moments_plan(variance: int) -> NoisePlan:
    config = DPConfig(epsilon=0.6, delta=1e-5, rounds=1, l2_clip=7.75, min_honest=4)
    return NoisePlan(config=config, variance=Fraction(variance), num_clients=5, dimension=60, scale=64.0)


def test_a_split_of_the_preceding_release_changes_the_descriptor_digest() -> None:
    # Two hospitals told the same training plan but a different release before it (or none,
    # or another count) are in different sessions: the release shapes the training noise.
    plan = calibrate(BASE, num_clients=5, scale=1024.0, dimension=100)
    digests = {
        _digest(dict(BASE.descriptor_parameters(dataclasses.replace(plan, preceding=preceding))))
        for preceding in ((), ((_moments_plan(1000), 1),), ((_moments_plan(1001), 1),), ((_moments_plan(1000), 2),))
    }
    assert len(digests) == 4
    assert "secagg.dp.preceding" not in BASE.descriptor_parameters(plan)


def test_known_answer_digest_with_a_preceding_release() -> None:
    # docs/spec.md, section 16.1.
    config = DPConfig(epsilon=3.0, delta=1e-5, rounds=20, l2_clip=1.0, min_honest=4)
    plan = NoisePlan(
        config=config, variance=Fraction(11817344), num_clients=5, dimension=31, scale=1024.0,
        preceding=((_moments_plan(1000), 1),),
    )  # fmt: skip
    release = _moments_plan(1000)
    assert release.config.digest(release).hex() == "9f05d470428a478ed9d1d9cb0cc9cf1e3b5541937e2840e0c10416c614273a7d"
    written_out = hashlib.sha256(b"secagg/v1/dp-preceding" + release.config.digest(release) + (1).to_bytes(8, "big"))
    assert preceding_digest(plan.preceding) == written_out.digest()
    assert written_out.hexdigest() == "e63074f4993d98ad29a677f302485ce12596b8df36cbe57e502d7fbec8238901"
    assert config.digest(plan).hex() == "2a9e31ffff7256209629fc622e99eca07b9c5eab910c886576f856a88ebb5596"


def test_preceding_releases_are_validated() -> None:
    plan = calibrate(BASE, num_clients=5, scale=1024.0, dimension=100)
    nested = dataclasses.replace(_moments_plan(1000), preceding=((_moments_plan(1000), 1),))
    for bad in ([(_moments_plan(1000), 1)], ((_moments_plan(1000), 0),), ((plan.config, 1),), ((nested, 1),)):
        with pytest.raises(ConfigurationError):
            dataclasses.replace(plan, preceding=bad)
