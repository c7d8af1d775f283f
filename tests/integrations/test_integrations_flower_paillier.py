"""Paillier over Flower: exact rounds over an in-process grid, dropouts, refusals, key files.

Real 2048-bit threshold keys (dealt from fixed safe primes, tests/integrations/paillier_keys.py);
each node loads its own sealed key share from a file; the server holds only the public key.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp.strategy import FedAvg

from secagg import wire
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError
from secagg.integrations.flower import NodePolicy, PaillierGrid, PaillierOptions
from secagg.integrations.flower._node_errors import KEY_SHARE
from secagg.integrations.flower._records import read_stage, stage_content
from secagg.integrations.flower.clipping import decode_segmented, encoded_length, layout_table
from secagg.integrations.flower.keys import load_key_share, read_public_key, write_identity_key
from secagg.integrations.flower.protocol import (
    DECRYPT,
    ENCRYPT,
    IDENTIFY,
    PaillierSetup,
    arrays_digest,
    flatten_arrays,
    round_context,
    unflatten_arrays,
)
from secagg.paillier import (
    PartialDecryption,
    ThresholdPublicKey,
    deal_threshold_key_from_primes,
    generate_safe_primes,
    insecure_key_sizes_for_testing,
)
from secagg.paillier.messages import DecryptionRequest
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey
from secagg.segments import SegmentTable

from .flower_harness import (
    TRUSTED_KEYS,
    Audit,
    FakeGrid,
    identity_files,
    initial_arrays,
    make_app,
    node_identity_key,
)
from .paillier_keys import P_1024, PASSPHRASE, Q_1024, key_files, material, unsafe_material

NODES = (1_000_000_007, 2**63 + 11, 42, 9_999_999_999)
WEIGHTS = dict(zip(NODES, (30, 55, 12, 80), strict=True))
FAST_TIMEOUT = {"stage_timeout": 0.3, "poll_interval": 0.05}


pytestmark = pytest.mark.usefixtures("server_identity")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A 3-of-4 key: the public-key file and share files 1..4 (node NODES[i] holds share i + 1)."""
    return key_files(tmp_path / "ceremony", 4, 3)


def paillier_apps(shares: list[Path], audit: Audit | None = None, **options: object) -> dict[int, object]:
    return {
        node: make_app(node, WEIGHTS[node], audit, paillier=True, key_share_file=share, passphrase=PASSPHRASE,
                       **options)
        for node, share in zip(NODES, shares, strict=True)
    }


def run_fedavg(grid: PaillierGrid, rounds: int) -> ArrayRecord:
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2)
    return strategy.start(grid=grid, initial_arrays=initial_arrays(), num_rounds=rounds).arrays


def expected_after(
    before: ArrayRecord, sums: np.ndarray, table: SegmentTable, quantization: QuantizationConfig, count: int
) -> dict:
    mean, _, _ = decode_segmented(sums, table, quantization, count)
    base, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in before.items()])
    arrays = unflatten_arrays(base + mean, layout)
    return {s.name: np.asarray(a * 1.0) for s, a in zip(layout.specs, arrays, strict=True)}


@pytest.mark.slow  # a heavy Flower round: CI runs it in the slow suite, beside the default suite
def test_paillier_rounds_equal_the_plain_quantized_sum(keys: tuple[Path, list[Path]]) -> None:
    # Prepare: four nodes, each with its own sealed key share; the server has the public key only
    public_path, shares = keys
    audit = Audit()
    grid = FakeGrid(paillier_apps(shares, audit))
    secure = PaillierGrid(grid, PaillierOptions(trusted_keys=TRUSTED_KEYS, public_key=read_public_key(public_path)))
    # Execute
    final = run_fedavg(secure, rounds=2)
    # Assert: each round's decrypted sum is exactly the int64 sum of the nodes' own encodings
    quantization = QuantizationConfig(0.5, 16, len(NODES), ring_bits=64, max_weight=4096)
    arrays = initial_arrays()
    for report in secure.reports:
        encodings = audit.of_round(report.server_round)
        assert report.included == frozenset(NODES) == frozenset(encodings) and not report.dropped
        plain = np.sum([a.encoded for a in encodings.values()], axis=0)
        assert np.array_equal(report.aggregate, plain)
        assert report.weight_total == sum(WEIGHTS.values())
        assert report.clipping is not None and report.clipped_fraction == 0.0
        expected = expected_after(arrays, plain, report.clipping.table, quantization, len(NODES))
        arrays = ArrayRecord({k: Array(v) for k, v in expected.items()})
    for name, array in arrays.items():
        assert final[name].numpy().tobytes() == array.numpy().tobytes(), name
    stages = [read_stage(m.content)[0] for m in grid.sent]
    assert stages.count(ENCRYPT) == 2 * len(NODES) and stages.count(DECRYPT) == 2 * len(NODES)


def test_a_node_whose_identity_key_is_on_no_list_is_left_out_at_identify(
    keys: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    # Prepare: the last node holds a key share but signs with an identity key on nobody's list
    public_path, shares = keys
    stray = tmp_path / "stray.key"
    write_identity_key(stray, SigningKey.generate(InsecureDeterministicRandom(b"stray")))
    audit = Audit()
    apps = paillier_apps(shares, audit)
    outsider = NODES[-1]
    apps[outsider] = make_app(outsider, WEIGHTS[outsider], audit, paillier=True, key_share_file=shares[-1],
                              passphrase=PASSPHRASE, identity_key_file=stray,
                              trusted_keys_file=identity_files(outsider)[1])
    secure = PaillierGrid(FakeGrid(apps), PaillierOptions(public_key=read_public_key(public_path),
                                                          trusted_keys=TRUSTED_KEYS))
    # Execute
    run_fedavg(secure, rounds=1)
    # Assert: the other three upload and decrypt (3-of-4); the stray node is out at identify, its key named
    report = secure.reports[0]
    assert report.dropped == {outsider: IDENTIFY} and "outside the trusted list" in report.errors[outsider]
    assert report.included == frozenset(NODES[:-1]) and report.aggregate is not None
    assert np.array_equal(report.aggregate, np.sum([a.encoded for a in audit.of_round(1).values()], axis=0))


@pytest.mark.parametrize("lost", ["before upload", "after upload"])
def test_a_node_lost_before_upload_is_left_out_and_one_lost_after_still_counts(
    keys: tuple[Path, list[Path]], lost: str
) -> None:
    # Prepare: node 42's training fails, or node 2^63+11 uploads, then goes silent in decrypt
    # (a 3-of-4 key survives one lost node: 2t > l keeps two disjoint groups from both decrypting)
    public_path, shares = keys
    audit = Audit()
    before = lost == "before upload"
    apps = {
        node: make_app(node, WEIGHTS[node], audit, failing_rounds=(1,) if before and node == 42 else (),
                       paillier=True, key_share_file=share, passphrase=PASSPHRASE)
        for node, share in zip(NODES, shares, strict=True)
    }
    grid = FakeGrid(apps, silent=set() if before else {(2**63 + 11, DECRYPT)})
    options = PaillierOptions(public_key=read_public_key(public_path), trusted_keys=TRUSTED_KEYS, **FAST_TIMEOUT)
    secure = PaillierGrid(grid, options)
    # Execute
    run_fedavg(secure, rounds=1)
    # Assert
    report = secure.reports[0]
    assert report.dropped == ({42: ENCRYPT} if before else {2**63 + 11: DECRYPT})
    assert report.included == frozenset(NODES) - ({42} if before else set())
    plain = np.sum([a.encoded for n, a in audit.of_round(1).items() if n in report.included], axis=0)
    assert np.array_equal(report.aggregate, plain)
    assert report.weight_total == sum(WEIGHTS.values()) - (WEIGHTS[42] if before else 0)


def test_too_few_decrypting_nodes_skip_the_round_with_the_reason(tmp_path: Path) -> None:
    # Prepare: a 3-of-4 key; two nodes upload and then go silent
    public_path, shares = key_files(tmp_path, 4, 3)
    grid = FakeGrid(paillier_apps(shares), silent={(NODES[0], DECRYPT), (NODES[1], DECRYPT)})
    options = PaillierOptions(public_key=read_public_key(public_path), trusted_keys=TRUSTED_KEYS, **FAST_TIMEOUT)
    secure = PaillierGrid(grid, options)
    strategy = FedAvg(fraction_evaluate=0.0, min_available_nodes=4)
    # Execute
    replies = secure.send_and_receive(strategy.configure_train(1, initial_arrays(), ConfigRecord(), secure))
    # Assert: no reply (the strategy keeps its model), and the report says why
    assert list(replies) == []
    report = secure.reports[0]
    assert report.aggregate is None and report.included == frozenset()
    assert report.skipped_reason is not None and "3 are needed" in report.skipped_reason


def test_too_few_uploads_skip_the_round_before_any_decryption(keys: tuple[Path, list[Path]]) -> None:
    # Prepare: min_contributors 4, one node silent in encrypt
    public_path, shares = keys
    grid = FakeGrid(paillier_apps(shares), silent={(42, ENCRYPT)})
    options = PaillierOptions(public_key=read_public_key(public_path), min_contributors=4, trusted_keys=TRUSTED_KEYS,
                              **FAST_TIMEOUT)
    secure = PaillierGrid(grid, options)
    # Execute
    run_fedavg(secure, rounds=1)
    # Assert: nobody was asked to decrypt
    assert "3 nodes uploaded; at least 4" in str(secure.reports[0].skipped_reason)
    assert DECRYPT not in [read_stage(m.content)[0] for m in grid.sent]


def test_a_forged_partial_decryption_is_caught_by_its_proof(keys: tuple[Path, list[Path]]) -> None:
    # Prepare: node 42's partial decryption is altered in transit
    public_path, shares = keys
    audit = Audit()
    grid = FakeGrid(paillier_apps(shares, audit))
    secure = PaillierGrid(grid, PaillierOptions(trusted_keys=TRUSTED_KEYS, public_key=read_public_key(public_path)))
    original = grid.send_and_receive

    def forge(messages, *, timeout=None):  # type: ignore[no-untyped-def]
        replies = list(original(messages, timeout=timeout))
        for index, reply in enumerate(replies):
            if reply.metadata.src_node_id == 42 and not reply.has_error() and read_stage(reply.content)[0] == DECRYPT:
                partial = wire.decode(read_stage(reply.content)[1], PartialDecryption)
                values = bytearray(partial.values)
                values[-1] ^= 1
                forged = PartialDecryption(partial.session_id, partial.party, partial.aggregate_digest,
                                           bytes(values), partial.proof)
                replacement = Message(stage_content(DECRYPT, wire.encode(forged)), reply_to=messages[0])
                replacement.metadata.__dict__["_src_node_id"] = 42
                replies[index] = replacement
        return replies

    grid.send_and_receive = forge  # type: ignore[method-assign]
    # Execute
    run_fedavg(secure, rounds=1)
    # Assert: 42's answer is refused by name; the others decrypt the exact sum
    report = secure.reports[0]
    assert report.dropped == {42: DECRYPT} and "proof of correct decryption does not verify" in report.errors[42]
    plain = np.sum([a.encoded for a in audit.of_round(1).values()], axis=0)
    assert report.included == frozenset(NODES) and np.array_equal(report.aggregate, plain)


def test_unsafe_settings_are_refused_before_anything_is_sent(tmp_path: Path) -> None:
    # Prepare: a 1-of-3 key, a 2-of-4 key, a 1024-bit key made inside the test switch, and a 3-of-4 key
    with pytest.raises(ConfigurationError, match="same verification key"):
        unsafe_material(3, 1)  # a 1-of-3 key's shares are all equal: the key type itself refuses it now
    one_of_three = object.__new__(ThresholdPublicKey)  # so forged past it, for PaillierOptions' own check
    for field in dataclasses.fields(ThresholdPublicKey):
        object.__setattr__(one_of_three, field.name, getattr(material(3, 2).public, field.name))
    object.__setattr__(one_of_three, "threshold", 1)
    two_of_four = unsafe_material(4, 2).public  # refused by the dealer: the tests' private path
    with insecure_key_sizes_for_testing():
        small = deal_threshold_key_from_primes(
            *_small_primes(), num_parties=3, threshold=2, insecure_for_testing=True
        ).public
    public = material(4, 3).public
    few = FakeGrid({node: make_app(node, 1, paillier=True) for node in NODES[:1]})
    # Execute / Assert
    with pytest.raises(ConfigurationError, match="threshold must be at least 2"):
        PaillierOptions(public_key=one_of_three)
    with pytest.raises(ConfigurationError, match=r"two disjoint groups.*2t > l \+ c = 4"):
        PaillierOptions(public_key=two_of_four)  # {1, 2} and {3, 4} would decrypt two sums differing in one upload
    PaillierOptions(public_key=public, colluders=1)  # 3-of-4: 2t = 6 > l + c = 5
    with pytest.raises(ConfigurationError, match=r"2t > l \+ c = 6"):
        PaillierOptions(public_key=public, colluders=2)
    with pytest.raises(ConfigurationError, match="below the minimum of 2048"):
        PaillierOptions(public_key=small)
    with pytest.raises(ConfigurationError, match="could overflow"):
        PaillierOptions(public_key=public, bits=48, max_weight=1 << 20)
    with pytest.raises(ConfigurationError, match="above the packing limit of 48"):
        PaillierOptions(public_key=public, bits=40, max_weight=1 << 12)
    # A round sampling too few nodes is skipped with the reason before anything is sent (the run goes on).
    secure = PaillierGrid(few, PaillierOptions(public_key=public, trusted_keys=TRUSTED_KEYS))
    FedAvg(fraction_evaluate=0.0, min_train_nodes=1, min_available_nodes=1).start(
        grid=secure, initial_arrays=initial_arrays(), num_rounds=1,
    )
    (report,) = secure.reports
    assert report.skipped_reason is not None and "at least 3 nodes" in report.skipped_reason, report.skipped_reason
    assert few.sent == []


def _small_primes() -> tuple[int, int]:
    p, q = generate_safe_primes(512, 2, random_bytes=InsecureDeterministicRandom(1024))
    return p, q


def setup_for(public_fingerprint_key: object, nodes: tuple[int, ...] = NODES, min_contributors: int = 3) -> bytes:
    vector, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in initial_arrays().items()])
    quantization = QuantizationConfig(0.5, 16, len(nodes), ring_bits=64, max_weight=4096)
    table = layout_table(layout).with_clips({"arrays/w": 0.5, "arrays/b": 0.5})
    setup = PaillierSetup.create(1, nodes, public_fingerprint_key, min_contributors, quantization,  # type: ignore[arg-type]
                                 encoded_length(table), "num-examples", arrays_digest(vector, layout),
                                 [node_identity_key(n).public for n in nodes], segments=table.describe())
    return wire.encode(setup)


def encrypt_message(node: int, setup: bytes) -> Message:
    content = RecordDict({"arrays": initial_arrays(), "config": ConfigRecord({"server-round": 1})})
    return Message(stage_content(ENCRYPT, setup, content), dst_node_id=node, message_type=MessageType.TRAIN)


def test_the_node_refuses_another_key_a_low_floor_and_a_wrong_passphrase(
    keys: tuple[Path, list[Path]], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a setup for another 3-of-4 key, one below the node's min_contributors, a wrong passphrase
    _, shares = keys
    other = deal_threshold_key_from_primes(Q_1024, P_1024, num_parties=4, threshold=3).public
    own = material(4, 3).public
    node = NODES[0]

    def reply(app: object, setup: bytes) -> Message:
        return app(encrypt_message(node, setup), Context(77, node, {}, RecordDict(), {}))  # type: ignore[operator]

    app = make_app(node, 10, paillier=True, key_share_file=shares[0], passphrase=PASSPHRASE,
                   policy=NodePolicy(min_contributors=3, min_colluders=0))  # c = 0 accepted by name
    wrong = make_app(node, 10, paillier=True, key_share_file=shares[0], passphrase="wrong")
    # Execute
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        replies = [reply(app, setup_for(other, min_contributors=3)), reply(app, setup_for(own, min_contributors=2)),
                   reply(wrong, setup_for(own))]
    # Assert: the wrong passphrase is the node's own failure: the server gets its code, the log the words
    reasons = [r.error.reason for r in replies]
    assert "another Paillier key" in reasons[0]
    assert "min_contributors 2, this node requires 3" in reasons[1]
    assert KEY_SHARE in reasons[2] and "wrong passphrase" not in reasons[2]
    assert "wrong passphrase" in caplog.text and "key-share file" in caplog.text


def test_the_node_decrypts_one_aggregate_per_session_even_across_restarts(keys: tuple[Path, list[Path]]) -> None:
    # Prepare: one honest round, then the server asks node NODES[0] again for a sum without node 42
    public_path, shares = keys
    grid = FakeGrid(paillier_apps(shares))
    secure = PaillierGrid(grid, PaillierOptions(trusted_keys=TRUSTED_KEYS, public_key=read_public_key(public_path)))
    run_fedavg(secure, rounds=1)
    request_message = next(m for m in grid.sent if m.metadata.dst_node_id == NODES[0]
                           and read_stage(m.content)[0] == DECRYPT)
    request = wire.decode(read_stage(request_message.content)[1], DecryptionRequest)
    smaller = DecryptionRequest(request.session_id, request.recipient,
                                tuple(u for u in request.uploads if u.client != 1 + sorted(NODES).index(42)))
    # Execute: the smaller sum, then the same encrypt again (state as the node's records left it)
    encrypt = next(m for m in grid.sent if m.metadata.dst_node_id == NODES[0] and read_stage(m.content)[0] == ENCRYPT)
    replay = Message(stage_content(DECRYPT, wire.encode(smaller)), dst_node_id=NODES[0], message_type=MessageType.TRAIN)
    refused = list(grid.send_and_receive([replay]))
    again = list(grid.send_and_receive([encrypt]))
    # Assert: a second upload in the same session and a different aggregate are both refused
    assert again[0].has_error() and "already uploaded" in again[0].error.reason
    assert refused[0].has_error() and "already decrypted a different aggregate" in refused[0].error.reason


def test_key_files_round_trip_and_the_share_stays_sealed(keys: tuple[Path, list[Path]]) -> None:
    # Prepare
    public_path, shares = keys
    # Execute
    public = read_public_key(public_path)
    share = load_key_share(shares[2], PASSPHRASE)
    # Assert
    assert public == material(4, 3).public and share.index == 3 and share.public == public
    assert (shares[2].stat().st_mode & 0o777) == 0o600
    assert str(share.secret) not in shares[2].read_bytes().decode("latin-1")
    assert round_context(1, 1, bytes(32)) != round_context(1, 2, bytes(32))


def test_a_node_that_requires_dp_refuses_a_paillier_round(keys: tuple[Path, list[Path]]) -> None:
    # Prepare: this round carries no DP (PaillierOptions without dp); this hospital's policy requires it
    _, shares = keys
    node = NODES[0]
    app = make_app(node, 10, paillier=True, key_share_file=shares[0], passphrase=PASSPHRASE,
                   policy=NodePolicy(require_dp=True))
    # Execute
    reply = app(encrypt_message(node, setup_for(material(4, 3).public)), Context(77, node, {}, RecordDict(), {}))  # type: ignore[operator]
    # Assert: refused before anything derived from its data leaves
    assert reply.has_error() and "requires differential privacy" in reply.error.reason


def test_the_node_refuses_a_passphrase_file_others_can_read(
    keys: tuple[Path, list[Path]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the passphrase comes from the node config's passphrase file, once 0644, once 0600
    _, shares = keys
    own = material(4, 3).public
    node = NODES[0]
    app = make_app(node, 10, paillier=True, key_share_file=shares[0])
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")

    def reply(mode: int) -> Message:
        passphrase_file.chmod(mode)
        context = Context(77, node, {"key-share-passphrase-file": str(passphrase_file)}, RecordDict(), {})
        return app(encrypt_message(node, setup_for(own)), context)  # type: ignore[operator, no-any-return]

    # Execute
    with caplog.at_level(logging.ERROR, logger="secagg.flower"):
        loose, private = reply(0o644), reply(0o600)
    # Assert: the secret file is checked when read, as the key share itself is (the words in the
    # node's log, the code to the server); the 0600 file opens the share and the node goes on to its
    # next check (this bare message's training content)
    assert loose.has_error() and KEY_SHARE in loose.error.reason
    assert "accessible to group or others" in caplog.text
    assert "training configuration" in private.error.reason


def test_the_node_refuses_a_passphrase_piped_to_it(
    keys: tuple[Path, list[Path]], caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: the passphrase in a pipe, as `--node-config 'key-share-passphrase-file="/dev/fd/63"'`
    # with a shell's <(...) would give it. The node reads the passphrase again for every message
    # (the share is never cached), so a pipe would serve one message and leave the next with nothing:
    # it is refused as every non-regular file is (docs/integrations.md).
    _, shares = keys
    node = NODES[0]
    app = make_app(node, 10, paillier=True, key_share_file=shares[0])
    read_end, write_end = os.pipe()
    os.write(write_end, (PASSPHRASE + "\n").encode())
    os.close(write_end)
    context = Context(77, node, {"key-share-passphrase-file": f"/dev/fd/{read_end}"}, RecordDict(), {})
    # Execute
    try:
        with caplog.at_level(logging.ERROR, logger="secagg.flower"):
            reply = app(encrypt_message(node, setup_for(material(4, 3).public)), context)  # type: ignore[operator]
    finally:
        os.close(read_end)
    # Assert
    assert reply.has_error() and KEY_SHARE in reply.error.reason
    assert "passphrase file" in caplog.text and "not a regular file" in caplog.text
