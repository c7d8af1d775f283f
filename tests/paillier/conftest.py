"""Fixtures of the Paillier tests.

Keys below 2048 bits are refused by the library unless the caller is inside
``insecure_key_sizes_for_testing()``; an autouse fixture enters it for every
test here except those marked ``production_policy``, which check the refusal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from secagg.paillier import SingleKeyMaterial, ThresholdKeyMaterial, ThresholdPublicKey, insecure_key_sizes_for_testing

from .helpers import single_material, threshold_material


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "production_policy: run without the insecure key-size switch")


@pytest.fixture(autouse=True)
def _small_keys_allowed(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("production_policy"):
        yield
        return
    with insecure_key_sizes_for_testing():
        yield


@pytest.fixture
def material_3_of_5() -> ThresholdKeyMaterial:
    """A 3-of-5 threshold key of 256 bits."""
    return threshold_material(256, 5, 3)


@pytest.fixture
def single_256() -> SingleKeyMaterial:
    """A single-key-mode key of 256 bits."""
    return single_material(256)


@pytest.fixture
def public_1_of_3() -> ThresholdPublicKey:
    """The public key of a degenerate 1-of-3 key of 256 bits (every holder decrypts alone): refused
    by sessions, by the dealer and by the key type itself (its three verification keys are equal),
    so forged here past the constructor from a 2-of-3 key, for tests of the other refusals."""
    public = threshold_material(256, 3, 2).public
    forged = object.__new__(ThresholdPublicKey)
    for field in dataclasses.fields(ThresholdPublicKey):
        object.__setattr__(forged, field.name, getattr(public, field.name))
    object.__setattr__(forged, "threshold", 1)
    return forged
