"""Distributed DP in Paillier rounds over Flower (issue 15), in-process through FakeGrid.

The nodes add the noise before encryption (the decrypted aggregate is the sum of what they
encrypted and differs from the noise-free sum), the DP parameters are bound (a split never
yields an aggregate), a node's policy refuses an under-noised setup, no sum holding fewer
than h honest uploads is decrypted, the budget refuses a round. Real 2048-bit threshold keys dealt from
fixed primes (tests/integrations/paillier_keys.py), as the other Paillier tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")
pytest.importorskip("dp_accounting")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from secagg import wire
from secagg.descriptor import decode_parameters, encode_parameters
from secagg.dp import SeededRandomSource
from secagg.errors import ConfigurationError, InsufficientNoiseError
from secagg.integrations.flower import NodePolicy, PaillierGrid, PaillierOptions, make_paillier_mod
from secagg.integrations.flower._records import read_stage
from secagg.integrations.flower.dp import decode_noised, dp_parameters
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import DECRYPT, ENCRYPT, PaillierSetup, flatten_arrays, unflatten_arrays

from .flower_harness import (
    TRUSTED_KEYS,
    Audit,
    FakeGrid,
    identity_files,
    initial_arrays,
)
from .paillier_keys import PASSPHRASE, key_files
from .test_integrations_flower_clipping_dp import DP, per_example_clipped_delta
from .test_integrations_flower_split_setup import TARGET, _replace_payload, lying_server

NODES = (1_000_000_007, 2**63 + 11, 42, 9_999_999_999, 2**64 - 1)
Rewrite = Callable[[Message], None]


pytestmark = pytest.mark.usefixtures("server_identity")


def app(node: int, share: Path, audit: Audit | None, policy: NodePolicy | None) -> ClientApp:
    """A hospital's node: per-example clipped DP training, its own noise source (seeded: a test)."""
    key_file, trusted_file = identity_files(node)
    mod = make_paillier_mod(
        key_share_file=share, passphrase=PASSPHRASE, identity_key_file=key_file, trusted_keys_file=trusted_file,
        audit=audit, rng=np.random.default_rng(node), noise_source=SeededRandomSource(node.to_bytes(32, "big")),
        policy=NodePolicy(min_colluders=0) if policy is None else policy,  # the 3-of-5 key (c = 0): by name
    )  # fmt: skip
    client = ClientApp(mods=[mod])

    @client.train()
    def train(message: Message, context: Context) -> Message:
        arrays = message.content["arrays"]
        updated = {
            name: Array((a.numpy() + per_example_clipped_delta(node, name, a.numpy())).astype(a.numpy().dtype))
            for name, a in arrays.items()
        }
        metrics = MetricRecord({"num-examples": 20})
        return Message(RecordDict({"arrays": ArrayRecord(updated), "metrics": metrics}), reply_to=message)

    return client


def dp_grid(
    tmp_path: Path,
    audit: Audit | None = None,
    policy: NodePolicy | None = None,
    threshold: int = 3,
    *,
    state_files: bool = True,
    **options: object,
) -> tuple[FakeGrid, PaillierGrid]:
    """Five nodes holding the shares of a ``threshold``-of-5 key; a PaillierGrid with ``dp=DP`` by default.
    With ``state_files`` (the default) each node keeps its DP budget in its own file under ``tmp_path``
    (the default policy takes part in DP rounds only so); without, its config names none."""
    public_path, shares = key_files(tmp_path / "ceremony", len(NODES), threshold)
    grid = FakeGrid({node: app(node, share, audit, policy) for node, share in zip(NODES, shares, strict=True)},
                    dp_state_dir=tmp_path if state_files else None)
    # colluders=0: a 3-of-5 key is below the default 4-of-5, accepted by name (no colluder, two dropouts).
    settings: dict[str, object] = {"dp": DP, "stage_timeout": 5.0, "trusted_keys": TRUSTED_KEYS, "colluders": 0,
                                   **options}
    secure = PaillierGrid(grid, PaillierOptions(public_key=read_public_key(public_path), **settings))  # type: ignore[arg-type]
    return grid, secure


def run(secure: PaillierGrid, rounds: int = 1) -> ArrayRecord:
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2)
    return strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=rounds,
                          train_config=ConfigRecord({"lr": 0.1})).arrays  # fmt: skip


def sent_setup(grid: FakeGrid, node: int = TARGET) -> PaillierSetup:
    """The first PaillierSetup the server sent ``node``."""
    message = next(m for m in grid.sent if m.metadata.dst_node_id == node and read_stage(m.content)[0] == ENCRYPT)
    return wire.decode(read_stage(message.content)[1], PaillierSetup)


def stages_sent(grid: FakeGrid) -> list[str]:
    return [read_stage(m.content)[0] for m in grid.sent]


def test_a_dp_round_decrypts_the_noise_the_nodes_added_and_never_the_noise_free_sum(tmp_path: Path) -> None:
    # Prepare: hospitals that require DP, within their own ceilings
    audit = Audit()
    policy = NodePolicy(require_dp=True, max_dp_epsilon=8.0, max_dp_delta=1e-4, min_noise_multiplier=0.1,
                        min_colluders=0)
    grid, secure = dp_grid(tmp_path, audit, policy)
    # Execute
    final = run(secure)
    # Assert: the round ran under DP and the report states the spent epsilon
    report = secure.reports[0]
    assert report.skipped_reason is None and report.clipping is None and report.included == frozenset(NODES)
    assert report.epsilon_spent is not None and 0 < report.epsilon_spent <= DP.epsilon
    assert secure.dp is not None and secure.dp.plan is not None
    plan = secure.dp.plan
    assert plan.honest == 3  # min_contributors 3 (the default for t = 3) less c = min(t - 1, 3 - 2, 2t - l - 1) = 0
    # The setup binds the plan (no clip table, no weight, no clipped count) and min_contributors >= h
    setup = sent_setup(grid)
    assert setup.segments == b"" and setup.dp == dp_parameters(plan) and setup.vector_length == plan.dimension == 17
    assert setup.min_contributors >= plan.honest and setup.max_weight == 1
    with pytest.raises(ConfigurationError, match="no segment table"):
        dataclasses.replace(setup, segments=b"\x00\x00\x00\x00")
    names = decode_parameters(setup.descriptor(77).parameters)
    assert {"secagg.dp.epsilon", "secagg.dp.variance_num", "secagg.dp.min_honest", "config/lr"} <= set(names)
    # The decrypted aggregate is exactly the sum of what the nodes encrypted (their noised integers) ...
    encodings = audit.of_round(1)
    assert set(encodings) == set(NODES)
    total = np.sum([record.encoded for record in encodings.values()], axis=0)
    assert np.array_equal(report.aggregate, total)
    # ... which differs from the noise-free sum of the deltas by far more than the rounding (one step a node)
    base = {k: v.numpy() for k, v in initial_arrays().items()}
    deltas = [
        np.concatenate([((base[k] + per_example_clipped_delta(n, k, base[k])).astype(base[k].dtype) - base[k])
                        .astype(np.float64).ravel() for k in base])
        for n in NODES
    ]  # fmt: skip
    noise_free = np.sum(deltas, axis=0) * plan.scale
    assert np.max(np.abs(report.aggregate - noise_free)) > 10 * len(NODES)
    # The new model is the global one plus the noised sum over the included nodes, divided by their number
    mean, weight = decode_noised(total, plan, setup.quantization, len(NODES))
    assert weight == report.weight_total == len(NODES)
    vector, layout = flatten_arrays([("arrays", k, v) for k, v in base.items()])
    expected = unflatten_arrays(vector + mean, layout)
    for spec, array in zip(layout.specs, expected, strict=True):
        np.testing.assert_allclose(final[spec.name].numpy(), array, rtol=1e-6, atol=1e-6)


def test_h_is_min_contributors_less_the_colluders_and_a_smaller_sum_is_never_decrypted(tmp_path: Path) -> None:
    # Prepare: a 4-of-5 key, min_contributors 4: the guarantee tolerates c = min(t - 1, 4 - 2, 2t - l - 1) = 2
    # colluders, so the smallest decrypted sum holds h = 4 - 2 = 2 honest uploads
    grid, secure = dp_grid(tmp_path, threshold=4, min_contributors=4)
    grid.silent.update((node, ENCRYPT) for node in NODES[3:])  # two nodes time out: three uploads
    # Execute
    run(secure)
    # Assert: the plan is for h = 2 and the setup names min_contributors 4; three uploads are never decrypted
    assert secure.dp is not None and secure.dp.plan is not None and secure.dp.plan.honest == 2
    assert sent_setup(grid).min_contributors == 4
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason == "3 nodes uploaded; at least 4 are needed"
    assert DECRYPT not in stages_sent(grid)
    # ... and a noised sum of fewer than h contributions is refused by the decoder too
    plan = secure.dp.plan
    with pytest.raises(InsufficientNoiseError):
        decode_noised(np.zeros(plan.dimension, dtype=np.int64), plan, sent_setup(grid).quantization, plan.honest - 1)


def test_with_min_contributors_below_t_h_counts_the_decrypted_uploads_not_the_completion_tolerance(
    tmp_path: Path,
) -> None:
    # Prepare: a 3-of-5 key and min_contributors 2: the round completes with up to l - t = 2 dropouts,
    # but a key-share holder decrypts sums of 2 uploads (c = 0), so h is 2, not 5 - 0 - 2 = 3
    _, secure = dp_grid(tmp_path, threshold=3, min_contributors=2)
    # Execute
    run(secure)
    # Assert: the nodes accept the plan the server sized (the same h) and the round completes
    assert secure.dp is not None and secure.dp.plan is not None and secure.dp.plan.honest == 2
    report = secure.reports[0]
    assert report.skipped_reason is None and report.included == frozenset(NODES), report.errors


def test_a_node_refuses_a_setup_whose_smallest_decrypted_sum_holds_fewer_than_h_honest_uploads(
    tmp_path: Path,
) -> None:
    # Prepare: a 3-of-5 key and min_contributors 4: c = min(t - 1, 4 - 2, 2t - l - 1) = 0, h = 4; a lying
    # server tells every node but the target min_contributors = 3 (a sum of 3 uploads: 3 honest noise shares)
    audit = Audit()
    grid, secure = dp_grid(tmp_path, audit, min_contributors=4)

    def rewrite(message: Message) -> None:
        stage, payload = read_stage(message.content)
        if stage == ENCRYPT:
            setup = wire.decode(payload, PaillierSetup)
            _replace_payload(message, ENCRYPT, wire.encode(dataclasses.replace(setup, min_contributors=3)))

    lying_server(grid, rewrite)
    # Execute
    run(secure)
    # Assert: they refuse before training; nothing is decrypted
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None and DECRYPT not in stages_sent(grid)
    others = [node for node in NODES if node != TARGET]
    assert all("fewer than the h = 4 honest ones" in report.errors[node] for node in others), report.errors
    assert set(audit.of_round(1)) <= {TARGET}


def _split(name: str, change: Callable[[int], int]) -> Rewrite:
    """A lying server that changes the DP parameter ``name`` in every node's setup but the target's."""

    def rewrite(message: Message) -> None:
        stage, payload = read_stage(message.content)
        if stage != ENCRYPT:
            return
        setup = wire.decode(payload, PaillierSetup)
        params = decode_parameters(setup.dp)
        params[name] = change(int(params[name]))  # type: ignore[arg-type]
        _replace_payload(message, ENCRYPT, wire.encode(dataclasses.replace(setup, dp=encode_parameters(params))))

    return rewrite


@pytest.mark.parametrize(
    ("rewrite", "match"),
    [
        # more noise for the others: a valid plan, but another session (the DP values are in the session id)
        (_split("secagg.dp.variance_num", lambda v: 2 * v), "another session"),
        # sigma^2 = 1/den: (almost) no noise; the nodes recompute epsilon and refuse
        (_split("secagg.dp.variance_num", lambda v: 1), "under-noised"),
    ],
    ids=["more-noise", "under-noised"],
)
def test_a_split_dp_value_fails_the_session(tmp_path: Path, rewrite: Rewrite, match: str) -> None:
    # Prepare
    audit = Audit()
    grid, secure = dp_grid(tmp_path, audit)
    lying_server(grid, rewrite)
    # Execute
    run(secure)
    # Assert: the session fails for the nodes given other DP values; nothing is decrypted
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None and DECRYPT not in stages_sent(grid)
    assert all(match in report.errors[node] for node in NODES if node != TARGET), report.errors


@pytest.mark.parametrize(
    ("policy", "match"),
    [
        (NodePolicy(min_colluders=0, min_noise_multiplier=1e4), "noise multiplier"),
        (NodePolicy(min_colluders=0, max_dp_epsilon=1.0), "exceeds this node's ceiling 1"),
        (NodePolicy(min_colluders=0, max_dp_delta=1e-6), "delta 1e-05 exceeds this node's ceiling 1e-06"),
        (NodePolicy(min_colluders=0), "keeps no DP budget file (dp-state-file)"),  # and no state file (below)
    ],
    ids=["noise-multiplier", "epsilon", "delta", "no-budget-file"],
)
def test_the_node_policy_refuses_an_under_noised_setup_before_training(
    tmp_path: Path, policy: NodePolicy, match: str
) -> None:
    audit = Audit()
    grid, secure = dp_grid(tmp_path, audit, policy, state_files="dp-state-file" not in match)
    run(secure)
    report = secure.reports[0]
    assert report.aggregate is None and not audit.records and DECRYPT not in stages_sent(grid)
    assert all(match in report.errors[node] for node in NODES), report.errors


def test_a_round_over_the_budget_is_refused_and_the_spend_survives_in_the_state_file(tmp_path: Path) -> None:
    # Prepare: a budget of one round
    state = tmp_path / "accountant.json"
    grid, secure = dp_grid(tmp_path, dp=dataclasses.replace(DP, rounds=1), dp_state_file=str(state))
    # Execute
    run(secure, rounds=2)
    # Assert: the second round is refused before anything is sent to the nodes
    first, second = secure.reports
    assert first.skipped_reason is None and first.epsilon_spent is not None and first.epsilon_spent <= DP.epsilon
    assert second.skipped_reason is not None and "privacy budget" in second.skipped_reason
    assert stages_sent(grid).count(ENCRYPT) == len(NODES)
    assert state.exists()


def test_dp_options_are_validated_before_any_round(tmp_path: Path) -> None:
    public = read_public_key(key_files(tmp_path / "ceremony", len(NODES), 3)[0])
    with pytest.raises(ConfigurationError, match="clips do not apply with dp"):
        PaillierOptions(public_key=public, dp=DP, clips={"arrays/w": 1.0})
    with pytest.raises(ConfigurationError, match="dp must be a DPConfig"):
        PaillierOptions(public_key=public, dp={"epsilon": 1.0})  # type: ignore[arg-type]




def test_a_round_skipped_after_its_charge_reports_the_epsilon_it_spent(tmp_path: Path) -> None:
    # Prepare: a 4-of-5 key with min_contributors 4; two nodes time out at encrypt, after the charge
    grid, secure = dp_grid(tmp_path, threshold=4, min_contributors=4)
    grid.silent.update((node, ENCRYPT) for node in NODES[3:])
    # Execute
    run(secure)
    # Assert: nothing decrypted, but the report says what the charge spent
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None
    assert secure.dp is not None and secure.dp.accountant is not None and secure.dp.accountant.num_releases == 1
    assert report.epsilon_spent is not None and report.epsilon_spent == secure.dp.accountant.spent()[0] > 0
