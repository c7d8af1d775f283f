"""A state file may be bound to its holder (a Flower node's identity public key): a file
written by one holder is refused to another, naming both, and left as it is. A file with no
holder (the server's, fl_core's, a node without an identity key) is taken over by the first
holder that charges it: the count goes on, never restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("dp_accounting")

from secagg.dp import DPConfig, NoisePlan, PrivacyAccountant, calibrate
from secagg.errors import ConfigurationError, DecodeError

CONFIG = DPConfig(epsilon=3.0, delta=1e-5, rounds=5, l2_clip=1.0, min_honest=2)
ALICE, BOB = bytes(range(32)), bytes(range(1, 33))


@pytest.fixture(scope="module")
def plan() -> NoisePlan:
    return calibrate(CONFIG, num_clients=3, scale=1024.0, dimension=7)


def test_a_file_bound_to_one_holder_is_refused_to_another_and_to_none(plan: NoisePlan, tmp_path: Path) -> None:
    # Prepare: Alice's file, one charge
    path = tmp_path / "budget.json"
    PrivacyAccountant(plan, path, holder=ALICE).record_round(1)
    before = path.read_bytes()
    assert json.loads(before)["holder"] == ALICE.hex()
    # Execute / Assert: Bob, and an accountant with no holder, are refused, naming both holders
    for other in (BOB, None):
        with pytest.raises(ConfigurationError) as refusal:
            PrivacyAccountant(plan, path, holder=other)
        message = str(refusal.value)
        assert ALICE.hex()[:16] in message and str(path) in message, message
        assert (BOB.hex()[:16] if other else "no holder") in message, message
    assert path.read_bytes() == before
    assert PrivacyAccountant(plan, path, holder=ALICE).num_releases == 1


def test_a_file_without_a_holder_is_taken_over_and_its_count_goes_on(plan: NoisePlan, tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    PrivacyAccountant(plan, path).record_round(1)
    assert json.loads(path.read_text())["holder"] is None
    alice = PrivacyAccountant(plan, path, holder=ALICE)
    assert alice.num_releases == 1
    alice.record_round(2)
    assert json.loads(path.read_text())["holder"] == ALICE.hex()
    with pytest.raises(ConfigurationError, match="holder"):
        PrivacyAccountant(plan, path, holder=BOB)


@pytest.mark.parametrize("holder", ["AB" * 32, "ab" * 65, "", "xy", 7, ["ab"]])
def test_a_malformed_holder_is_refused(plan: NoisePlan, tmp_path: Path, holder: object) -> None:
    path = tmp_path / "budget.json"
    PrivacyAccountant(plan, path, holder=ALICE).record_round(1)
    state = json.loads(path.read_text())
    state["holder"] = holder
    path.write_text(json.dumps(state))
    with pytest.raises(DecodeError, match="holder"):
        PrivacyAccountant(plan, path, holder=ALICE)


@pytest.mark.parametrize("holder", [b"", b"x" * 65, "ab", bytearray(b"ab")])
def test_a_holder_that_is_not_1_to_64_bytes_is_refused(plan: NoisePlan, holder: object) -> None:
    with pytest.raises(ConfigurationError):
        PrivacyAccountant(plan, holder=holder)  # type: ignore[arg-type]
