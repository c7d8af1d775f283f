"""Active mode of the masking adapter: identity keys from files, trusted lists, the consistency check."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Context, Message, MessageType, RecordDict
from flwr.serverapp.strategy import FedAvg

from secagg import wire
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError
from secagg.integrations.flower import SecAggGrid, SecAggOptions
from secagg.integrations.flower._node_errors import IDENTITY_FILES
from secagg.integrations.flower._records import read_stage, stage_content
from secagg.integrations.flower.keys import read_identity_key, write_trusted_keys
from secagg.integrations.flower.protocol import CONSISTENCY_CHECK, IDENTIFY, SETUP
from secagg.masking import ACTIVE
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey

from .flower_harness import Audit, FakeGrid, initial_arrays, make_app
from .paillier_keys import identity_files
from .test_integrations_flower import setup_for

NODES = (1_000_000_007, 2**63 + 11, 42, 9_999_999_999, 2**64 - 1)
WEIGHTS = dict(zip(NODES, (30, 55, 12, 80, 41), strict=True))


pytestmark = pytest.mark.usefixtures("server_identity")


def active_apps(paths: list[Path], trusted: Path, audit: Audit | None = None) -> dict[int, object]:
    return {
        node: make_app(node, WEIGHTS[node], audit, identity_key_file=path, trusted_keys_file=trusted)
        for node, path in zip(NODES, paths, strict=True)
    }


def stages(grid: FakeGrid) -> list[str]:
    return [read_stage(m.content)[0] for m in grid.sent if m.metadata.message_type == MessageType.TRAIN]


@pytest.mark.parametrize("protocol", ["secagg", "secagg+"])
def test_an_active_round_is_exact_and_runs_the_consistency_check(tmp_path: Path, protocol: str) -> None:
    # Prepare: five nodes with identity key files and the federation's trusted list
    paths, trusted, publics = identity_files(tmp_path, len(NODES))
    audit = Audit()
    grid = FakeGrid(active_apps(paths, trusted, audit))
    secure = SecAggGrid(grid, SecAggOptions(protocol=protocol, mode=ACTIVE, trusted_keys=frozenset(publics)))
    # Execute
    FedAvg(fraction_evaluate=0.0, min_available_nodes=5).start(grid=secure, initial_arrays=initial_arrays(),
                                                              num_rounds=2)
    # Assert: exact sums; identities announced once; every round signs the survivor set
    quantization = QuantizationConfig(0.5, 16, len(NODES), max_weight=4096)
    for report in secure.reports:
        encodings = audit.of_round(report.server_round)
        assert report.included == frozenset(NODES) and not report.dropped
        plain_sum = quantization.ring.sum([a.encoded for a in encodings.values()], report.aggregate.shape[0])
        assert np.array_equal(report.aggregate, plain_sum)
    sent = stages(grid)
    assert sent.count(IDENTIFY) == len(NODES) and sent.count(CONSISTENCY_CHECK) == 2 * len(NODES)
    assert sorted(secure.identities.values()) == sorted(publics)


def test_a_forged_identity_key_in_the_setup_is_refused_by_every_node(tmp_path: Path) -> None:
    # Prepare: a lying server maps node 42 to a key of its own making
    paths, trusted, publics = identity_files(tmp_path, len(NODES))
    grid = FakeGrid(active_apps(paths, trusted))
    secure = SecAggGrid(grid, SecAggOptions(protocol="secagg", mode=ACTIVE, trusted_keys=frozenset(publics)))
    secure.identities.update({node: read_identity_key(path).public for node, path in zip(NODES, paths, strict=True)})
    secure.identities[42] = SigningKey.generate(InsecureDeterministicRandom(b"forged")).public
    # Execute
    FedAvg(fraction_evaluate=0.0, min_available_nodes=5).start(grid=secure, initial_arrays=initial_arrays(),
                                                              num_rounds=1)
    # Assert: nobody advertised keys, so the round is skipped; each node said why
    report = secure.reports[0]
    assert report.aggregate is None and set(report.dropped.values()) == {SETUP}
    assert all("not on the federation's trusted list" in report.errors[node] for node in NODES)
    assert 42 not in secure.identities  # asked again next round


def test_an_untrusted_node_is_left_out_and_the_round_completes(tmp_path: Path) -> None:
    # Prepare: the last node's key is on nobody's list (nor the server's)
    paths, trusted, publics = identity_files(tmp_path, len(NODES), trusted=len(NODES) - 1)
    audit = Audit()
    grid = FakeGrid(active_apps(paths, trusted, audit))
    options = SecAggOptions(protocol="secagg", mode=ACTIVE, trusted_keys=frozenset(publics[:-1]))
    secure = SecAggGrid(grid, options)
    # Execute
    FedAvg(fraction_evaluate=0.0, min_available_nodes=5).start(grid=secure, initial_arrays=initial_arrays(),
                                                              num_rounds=1)
    # Assert
    report = secure.reports[0]
    outsider = NODES[-1]
    assert report.dropped == {outsider: IDENTIFY} and "outside the trusted list" in report.errors[outsider]
    assert report.included == frozenset(NODES[:-1])
    quantization = QuantizationConfig(0.5, 16, len(NODES) - 1, max_weight=4096)
    encodings = [a.encoded for n, a in audit.of_round(1).items() if n in report.included]
    assert np.array_equal(report.aggregate, quantization.ring.sum(encodings, report.aggregate.shape[0]))


def test_an_active_grid_needs_the_federations_keys() -> None:
    # Prepare: a server that does not know the federation's identity keys could not tell a stray key
    # from a listed one, and every honest node would refuse each round such a node is sampled in
    grid = FakeGrid({})
    # Execute / Assert: refused before any round, saying what to pass and where the list comes from
    for options in (None, SecAggOptions(), SecAggOptions(protocol="secagg", mode=ACTIVE)):
        with pytest.raises(ConfigurationError) as refused:
            SecAggGrid(grid, options)
        for hint in ("trusted_keys", "read_trusted_keys", "secagg keys trust", "federation.keys"):
            assert hint in str(refused.value)
    SecAggGrid(grid, SecAggOptions(mode="semi-honest"))  # no identities in semi-honest rounds


def test_a_hospital_with_a_stale_list_leaves_itself_out_and_the_report_says_whose_key(tmp_path: Path) -> None:
    # Prepare: the server and four nodes trust all five keys; the first node's list lacks the last key
    paths, trusted, publics = identity_files(tmp_path, len(NODES))
    stale = tmp_path / "stale.keys"
    write_trusted_keys(stale, publics[:-1])
    apps = active_apps(paths, trusted)
    apps[NODES[0]] = make_app(NODES[0], WEIGHTS[NODES[0]], identity_key_file=paths[0], trusted_keys_file=stale)
    secure = SecAggGrid(FakeGrid(apps), SecAggOptions(protocol="secagg", mode=ACTIVE, trusted_keys=frozenset(publics)))
    # Execute
    FedAvg(fraction_evaluate=0.0, min_available_nodes=5).start(grid=secure, initial_arrays=initial_arrays(),
                                                              num_rounds=2)
    # Assert: the server does not act on one node's unverifiable word: the listed node stays in, and the
    # stale node leaves itself out of each round at setup, its reason naming the node whose key it refused
    stale_node, listed = NODES[0], NODES[-1]
    for report in secure.reports:
        assert report.aggregate is not None and report.included == frozenset(NODES[1:])
        assert report.dropped == {stale_node: SETUP}
        assert f"(node {listed}) is not on the federation's trusted list" in report.errors[stale_node]


def test_a_node_with_an_identity_refuses_a_semi_honest_round_and_bad_key_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a semi-honest setup; an identity file others may read
    paths, trusted, _ = identity_files(tmp_path, 3)
    app = make_app(1, 10, identity_key_file=paths[0], trusted_keys_file=trusted)
    paths[1].chmod(0o644)
    loose = make_app(1, 10, identity_key_file=paths[1], trusted_keys_file=trusted)
    setup = stage_content(SETUP, wire.encode(setup_for((1, 2, 3))))
    context = Context(77, 1, {}, RecordDict(), {})
    # Execute
    downgrade = app(Message(setup, dst_node_id=1, message_type=MessageType.TRAIN), context)
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        exposed = loose(Message(setup, dst_node_id=1, message_type=MessageType.TRAIN), context)
    # Assert: the key file's words stay on the node (its log); the server gets the code
    assert "semi-honest" in downgrade.error.reason
    assert IDENTITY_FILES in exposed.error.reason and "accessible to group or others" in caplog.text


def test_active_options_are_validated() -> None:
    # Prepare / Execute / Assert
    with pytest.raises(ConfigurationError, match="mode must be"):
        SecAggOptions(mode="paranoid")
    with pytest.raises(ConfigurationError, match="trusted_keys"):
        SecAggOptions(mode="semi-honest", trusted_keys=frozenset({bytes(32)}))
    with pytest.raises(ConfigurationError, match="unsafe in active mode"):
        SecAggOptions(protocol="secagg", mode=ACTIVE, threshold=2, max_nodes=5)


@pytest.mark.parametrize("missing", ["both", "trusted"])
def test_a_node_without_its_key_files_is_left_out_saying_what_to_set(
    tmp_path: Path, missing: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: four nodes with their identities; the fifth has no key files (or no trusted list)
    paths, trusted, publics = identity_files(tmp_path, len(NODES))
    apps = active_apps(paths, trusted)
    lacking = NODES[-1]
    files = {} if missing == "both" else {"identity_key_file": paths[-1]}
    apps[lacking] = make_app(lacking, WEIGHTS[lacking], **files)  # type: ignore[arg-type]
    grid = FakeGrid(apps)
    secure = SecAggGrid(grid, SecAggOptions(mode=ACTIVE, trusted_keys=frozenset(publics)))
    # Execute
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3).start(
            grid=secure, initial_arrays=initial_arrays(), num_rounds=1
        )
    # Assert: the others aggregate; the node's reason names the node-config keys to set (an identity
    # file without its trusted list: in the node's log, the server gets the code)
    report = secure.reports[0]
    assert report.included == frozenset(NODES[:-1])
    reason = report.errors[lacking] if missing == "both" else caplog.text
    assert "'trusted-keys-file'" in reason and "node config" in reason, reason
    if missing == "both":
        assert "'identity-key-file'" in reason and "secagg keys new" in reason, reason


def test_a_node_given_a_public_key_as_its_identity_is_left_out_saying_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the fifth node's identity-key-file names a file holding its public key (an owner-only .pub)
    paths, trusted, publics = identity_files(tmp_path, len(NODES))
    apps = active_apps(paths, trusted)
    lacking = NODES[-1]
    public_file = tmp_path / "identity-4.key.pub"
    public_file.write_text(publics[-1].hex() + "\n")
    public_file.chmod(0o600)
    apps[lacking] = make_app(lacking, WEIGHTS[lacking], identity_key_file=public_file, trusted_keys_file=trusted)
    grid = FakeGrid(apps)
    secure = SecAggGrid(grid, SecAggOptions(mode=ACTIVE, trusted_keys=frozenset(publics)))
    # Execute
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3).start(
            grid=secure, initial_arrays=initial_arrays(), num_rounds=1
        )
    # Assert: the others aggregate; the node's own log says its identity file holds a listed public key
    report = secure.reports[0]
    assert report.included == frozenset(NODES[:-1])
    assert IDENTITY_FILES in report.errors[lacking], report.errors[lacking]
    assert "holds a public key on the trusted list" in caplog.text
