"""The privacy accountant: refusal before the budget is exceeded, a state file that survives
a restart, and strict loading of that file."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
import math
import os
import stat
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import dp_accounting
import pytest
from dp_accounting.rdp import rdp_privacy_accountant

from secagg.dp import DPConfig, NoisePlan, PrivacyAccountant, calibrate
from secagg.dp.subsampling import ORDERS
from secagg.errors import (
    BudgetExceededError,
    ConfigurationError,
    DecodeError,
    InsufficientNoiseError,
    ReplayError,
    SecAggError,
)
from tests.dp import zhu_wang

CONFIG = DPConfig(epsilon=3.0, delta=1e-5, rounds=5, l2_clip=1.0, min_honest=4)


@pytest.fixture(scope="module")
def plan() -> NoisePlan:
    return calibrate(CONFIG, num_clients=5, scale=1024.0, dimension=31)


def test_spends_the_planned_rounds_then_refuses(plan: NoisePlan) -> None:
    accountant = PrivacyAccountant(plan)
    assert accountant.spent() == (0.0, 1e-5)
    for expected in range(1, 6):
        assert not accountant.would_exceed()
        spent = accountant.record_round()
        assert spent.num_releases == expected
    assert accountant.spent()[0] <= 3.0
    assert accountant.would_exceed()
    with pytest.raises(BudgetExceededError):
        accountant.record_round()
    assert accountant.num_releases == 5  # the refused round is not recorded


def test_spent_matches_dp_accounting_computed_independently(plan: NoisePlan) -> None:
    accountant = PrivacyAccountant(plan)
    for _ in range(3):
        accountant.record_round()
    rho = (1024.0 + 31**0.5) ** 2 / (2 * 4 * float(plan.variance))
    reference = dp_accounting.rdp.RdpAccountant()
    reference.compose(dp_accounting.ZCDpEvent(rho), 3)
    assert accountant.get_epsilon() == pytest.approx(reference.get_epsilon(1e-5), rel=1e-9)
    assert accountant.get_delta(2.0) == pytest.approx(reference.get_delta(2.0), rel=1e-6)
    assert accountant.get_privacy_spent(1e-6).epsilon == pytest.approx(reference.get_epsilon(1e-6), rel=1e-9)
    assert accountant.would_exceed(2, max_epsilon=accountant.spent()[0])
    assert not accountant.would_exceed(2)


def test_spent_with_the_tau_term_and_with_sampling_matches_dp_accounting_computed_independently() -> None:
    # tau > 0 (small sigma^2, h = 3, d = 100): both bounds of Proposition 14, the smaller epsilon.
    config = DPConfig(epsilon=1000.0, delta=1e-5, rounds=5, l2_clip=0.01, min_honest=3)
    tau_plan = NoisePlan(config=config, variance=Fraction(3, 4), num_clients=3, dimension=100, scale=1.0)
    tau = 10 * sum(math.exp(-2 * math.pi**2 * 0.75 * k / (k + 1)) for k in (1, 2))
    scaled = (0.01 + 10.0) / math.sqrt(3 * 0.75)
    # Sampled (q = 0.1): Zhu and Wang's bound on both zCDP curves (tests/dp/zhu_wang.py).
    sampled = dataclasses.replace(CONFIG, sampling_rate=0.1)
    sampled_plan = NoisePlan(config=sampled, variance=Fraction(1 << 19), num_clients=5, dimension=31, scale=1024.0)
    sampled_tau = 10 * sum(math.exp(-2 * math.pi**2 * (1 << 19) * k / (k + 1)) for k in (1, 2, 3))
    sampled_scaled = (1024.0 + math.sqrt(31)) / math.sqrt(4 * (1 << 19))
    pairs = [(sampled_scaled**2 / 2, sampled_tau * 31), ((sampled_scaled + sampled_tau * math.sqrt(31)) ** 2 / 2, 0.0)]
    cases = [
        (tau_plan, [dp_accounting.ZCDpEvent(rho=scaled**2 / 2, xi=tau * 100),
                    dp_accounting.ZCDpEvent(rho=(scaled + tau * 10.0) ** 2 / 2)]),
        (sampled_plan, []),
    ]  # fmt: skip
    for plan, events in cases:
        accountant = PrivacyAccountant(plan)
        accountant.load_state_dict({**accountant.state_dict(), "released": 3})  # three rounds charged
        # The Renyi account of the mechanism (the refusal residual aside: tests/dp/test_dp_tail.py).
        residual = (1 + math.exp(3.0)) * 3 * plan.num_clients * plan.dimension * 2.0**-64
        delta = plan.config.delta - residual if plan is sampled_plan else plan.config.delta
        references = []
        for event in events:
            reference = dp_accounting.rdp.RdpAccountant()
            reference.compose(event, 3)
            references.append(reference.get_epsilon(delta))
        if not events:
            curve = [3 * zhu_wang.rdp(pairs, 0.1, order) for order in ORDERS]
            references.append(rdp_privacy_accountant.compute_epsilon(ORDERS, curve, delta)[0])
        mechanism = min(float(a.get_epsilon(delta)) for a in plan.composed_accountants(3))
        assert tau > 0 and mechanism == pytest.approx(min(references), rel=1e-6)
        if plan is sampled_plan:  # within its budget: the accountant reports it at delta - residual
            assert accountant.get_epsilon() == pytest.approx(min(references), rel=1e-6)
        else:  # epsilon ~122: (1 + e^122) x beta alone exceeds delta, no epsilon holds at it
            assert accountant.get_epsilon() == math.inf


def test_refuses_an_under_noised_round_and_a_replayed_round(plan: NoisePlan) -> None:
    accountant = PrivacyAccountant(plan)
    with pytest.raises(InsufficientNoiseError):
        accountant.record_round(1, num_contributors=4, colluders=1)
    accountant.record_round(1, num_contributors=5, colluders=1)
    with pytest.raises(ReplayError):
        accountant.record_round(1)
    assert accountant.num_releases == 1


def test_state_survives_a_restart_with_mode_0600(plan: NoisePlan, tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    first = PrivacyAccountant(plan, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first.record_round(1)
    first.record_round(2)
    # Restart: a new process would build the same plan and reopen the file.
    second = PrivacyAccountant(plan, path)
    assert second.num_releases == 2
    assert second.last_round == 2
    assert second.spent() == first.spent()
    with pytest.raises(ReplayError):
        second.record_round(2)
    second.record_round(3)
    second.record_round(4)
    second.record_round(5)
    with pytest.raises(BudgetExceededError):
        PrivacyAccountant(plan, path).record_round(6)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # no temporary file left; the lock file stays (tests/dp/test_dp_accountant_lock.py)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".budget.json.lock", "budget.json"]


def test_two_accountants_on_one_state_file_cannot_both_charge_from_the_same_count(
    plan: NoisePlan, tmp_path: Path
) -> None:
    # Two servers (or two aggregators) open one file: each held its own count and wrote
    # count + 1, so two released rounds left "released": 1 on disk (the budget re-opened).
    path = tmp_path / "budget.json"
    first, second = PrivacyAccountant(plan, path), PrivacyAccountant(plan, path)
    first.record_round()
    with pytest.raises(ConfigurationError, match="changed under"):
        second.record_round()
    assert json.loads(path.read_text())["released"] == 1 and second.num_releases == 0
    first.record_round()  # the one that wrote the file keeps charging it
    assert PrivacyAccountant(plan, path).num_releases == 2


def test_a_state_file_rolled_back_during_the_run_is_refused(plan: NoisePlan, tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    accountant = PrivacyAccountant(plan, path)
    accountant.record_round(1)
    saved = path.read_bytes()
    accountant.record_round(2)
    path.write_bytes(saved)  # rolled back to "released": 1 while the server runs
    with pytest.raises(ConfigurationError, match="changed under"):
        accountant.record_round(3)
    assert json.loads(path.read_text())["released"] == 1  # nothing written over the rolled-back file
    path.unlink()  # a deleted state file is a change too: nothing re-creates it at 0 silently
    with pytest.raises(ConfigurationError, match="changed under"):
        accountant.record_round(3)


def test_a_file_for_another_budget_or_plan_is_refused(plan: NoisePlan, tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    PrivacyAccountant(plan, path).record_round()
    other = calibrate(dataclasses.replace(CONFIG, epsilon=4.0), num_clients=5, scale=1024.0, dimension=31)
    with pytest.raises(ConfigurationError, match="budget"):
        PrivacyAccountant(other, path)
    lowered = dataclasses.replace(plan, variance=plan.variance / 2)
    with pytest.raises(ConfigurationError, match="another"):
        PrivacyAccountant(lowered, path)


def _valid_state(plan: NoisePlan) -> dict[str, object]:
    accountant = PrivacyAccountant(plan)
    accountant.record_round(7)
    return accountant.state_dict()


def _mutations(plan: NoisePlan) -> list[tuple[str, object]]:
    state = _valid_state(plan)
    cases: list[tuple[str, object]] = []

    def changed(key: str, value: object) -> dict[str, object]:
        return {**state, key: value}

    cases += [
        ("missing field", {k: v for k, v in state.items() if k != "released"}),
        ("extra field", {**state, "spent": 0.0}),
        ("format", changed("format", "flwr")),
        ("version", changed("version", 3)),
        ("version bool", changed("version", True)),
        ("method", changed("accounting_method", "pld")),
        ("budget not an object", changed("budget", [3.0, 1e-5])),
        ("budget extra", changed("budget", {"epsilon": 3.0, "delta": 1e-5, "x": 1})),
        ("budget string", changed("budget", {"epsilon": "3.0", "delta": 1e-5})),
        ("budget int", changed("budget", {"epsilon": 3, "delta": 1e-5})),
        ("digest short", changed("plan_digest", "ab")),
        ("digest upper", changed("plan_digest", str(state["plan_digest"]).upper())),
        ("digest type", changed("plan_digest", 12)),
        ("released negative", changed("released", -1)),
        ("released float", changed("released", 1.0)),
        ("released bool", changed("released", True)),
        ("released huge", changed("released", 10**30)),
        ("last round string", changed("last_round", "7")),
        ("top-level list", [state]),
    ]
    return cases


@pytest.mark.parametrize("index", range(19))
def test_malformed_state_raises_library_errors(plan: NoisePlan, tmp_path: Path, index: int) -> None:
    _name, state = _mutations(plan)[index]
    path = tmp_path / "budget.json"
    path.write_text(json.dumps(state))
    path.chmod(0o600)
    with pytest.raises(SecAggError):
        PrivacyAccountant(plan, path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"\xff\xfe",
        b"null",
        b'{"released": NaN}',
        b'{"a": 1, "a": 2}',
        b'{"released": 1e999}',
        b"[" * 100_000,
        b" " * (1 << 17),
    ],
)
def test_corrupted_state_file_raises_decode_error(plan: NoisePlan, tmp_path: Path, content: bytes) -> None:
    # strict JSON, as the vector files: no repeated name, no NaN, no number beyond binary64 (1e999)
    path = tmp_path / "budget.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(DecodeError):
        PrivacyAccountant(plan, path)


def test_state_file_writable_by_others_or_not_a_file_is_refused(plan: NoisePlan, tmp_path: Path) -> None:
    path = tmp_path / "budget.json"
    PrivacyAccountant(plan, path)
    path.chmod(0o666)
    with pytest.raises(ConfigurationError, match="writable"):
        PrivacyAccountant(plan, path)
    with pytest.raises(ConfigurationError):
        PrivacyAccountant(plan, tmp_path)
    link = tmp_path / "link.json"
    path.chmod(0o600)
    os.symlink(path, link)
    with pytest.raises(ConfigurationError):
        PrivacyAccountant(plan, link)


def test_a_fifo_as_state_file_is_refused_without_blocking(plan: NoisePlan, tmp_path: Path) -> None:
    # Prepare: a named pipe where the state file belongs (opening it for reading waits for a writer)
    fifo = tmp_path / "budget.json"
    os.mkfifo(fifo, 0o600)
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            PrivacyAccountant(plan, fifo)
            outcome.append(None)
        except BaseException as exc:  # reported to the test thread
            outcome.append(exc)

    # Execute
    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(10)
    blocked = thread.is_alive()
    if blocked:  # release the blocked open so the thread ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
    # Assert
    assert not blocked, "opening the state file blocked on a FIFO"
    assert isinstance(outcome[0], ConfigurationError) and "not a regular file" in str(outcome[0])


def test_mirrors_flowers_rdp_accountant_interface() -> None:
    if importlib.util.find_spec("flwr") is None:
        pytest.skip("flwr is not installed")
    from flwr.supercore.privacy_accounting import PrivacySpent as FlowerSpent  # noqa: PLC0415
    from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant  # noqa: PLC0415

    from secagg.dp import PrivacySpent  # noqa: PLC0415

    shared = ["config", "num_releases", "get_epsilon", "get_delta", "get_privacy_spent", "would_exceed"]
    shared += ["state_dict", "load_state_dict"]
    for name in shared:
        assert hasattr(RdpAccountant, name), name
        assert hasattr(PrivacyAccountant, name), name
    assert [f.name for f in dataclasses.fields(PrivacySpent)] == [f.name for f in dataclasses.fields(FlowerSpent)]
    assert list(inspect.signature(PrivacyAccountant.would_exceed).parameters)[2] == "max_epsilon"


def test_secagg_imports_without_dp_accounting() -> None:
    code = (
        "import sys; sys.modules['dp_accounting'] = None\n"
        "import secagg, secagg.dp\n"
        "from secagg.errors import ConfigurationError\n"
        "config = secagg.dp.DPConfig(epsilon=1.0, delta=1e-5, rounds=1, l2_clip=1.0)\n"
        "try:\n"
        "    secagg.dp.calibrate(config, num_clients=2, scale=1.0, dimension=1)\n"
        "except ConfigurationError as exc:\n"
        "    assert 'pip install' in str(exc) and \"[dp]\" in str(exc), exc\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_would_exceed_is_strict_at_the_limit(plan: NoisePlan) -> None:
    # A round that spends exactly the limit is within it; a limit one float below is exceeded.
    accountant = PrivacyAccountant(plan)
    exact = plan.spent_after(1)[0]
    assert not accountant.would_exceed(1, max_epsilon=exact)
    assert accountant.would_exceed(1, max_epsilon=math.nextafter(exact, 0.0))
    assert accountant.num_releases == 0  # asking changes nothing


def test_a_file_for_another_budget_or_plan_names_the_file_and_what_to_do(plan: NoisePlan, tmp_path: Path) -> None:
    # Prepare: a state file charged under one budget; a restart under another budget, then another plan
    path = tmp_path / "budget.json"
    PrivacyAccountant(plan, path).record_round()
    other = calibrate(dataclasses.replace(CONFIG, epsilon=4.0), num_clients=5, scale=1024.0, dimension=31)
    lowered = dataclasses.replace(plan, variance=plan.variance / 2)
    for changed in (other, lowered):
        # Execute / Assert: the refusal names the file and both ways on (its budget, or a new file)
        with pytest.raises(ConfigurationError) as refusal:
            PrivacyAccountant(changed, path)
        assert str(path) in str(refusal.value)
        assert "new state file" in str(refusal.value)


def test_a_state_file_in_a_missing_folder_is_refused_naming_the_folder(plan: NoisePlan, tmp_path: Path) -> None:
    # Prepare: a path whose folder does not exist (a typo in dp_state_file)
    path = tmp_path / "no-such-folder" / "budget.json"
    # Execute / Assert: the refusal says the folder is missing, not to remove a lock that is not there
    with pytest.raises(ConfigurationError, match="no-such-folder") as refusal:
        PrivacyAccountant(plan, path)
    assert "does not exist" in str(refusal.value) and "remove it" not in str(refusal.value)
    assert not path.parent.exists()
