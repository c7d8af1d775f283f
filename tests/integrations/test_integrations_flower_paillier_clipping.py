"""Per-array clipping in Paillier rounds over Flower (issue 14 item 2), in-process through FakeGrid.

One segment per array, each node's clipped counts inside the encrypted sum, the clipped
fraction in the report with a ClippingWarning, the adaptive clip by default, integer arrays
exact, a split clip table never aggregated, a node's max_clip floor. Real 2048-bit threshold
keys dealt from fixed primes (tests/integrations/paillier_keys.py), as the other Paillier tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from secagg import wire
from secagg.errors import ConfigurationError
from secagg.integrations.flower import NodePolicy, PaillierGrid, PaillierOptions, make_paillier_mod
from secagg.integrations.flower._records import read_stage
from secagg.integrations.flower.clipping import decode_segmented, parse_table
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import ENCRYPT, PaillierSetup
from secagg.segments import SEGMENTS_LABEL, ClippingWarning

from .flower_harness import (
    TRUSTED_KEYS,
    Audit,
    FakeGrid,
    identity_files,
    initial_arrays,
)
from .paillier_keys import PASSPHRASE, key_files
from .test_integrations_flower_split_setup import TARGET, _replace_payload, lying_server

NODES = (1_000_000_007, 2**63 + 11, 42, 9_999_999_999, 2**64 - 1)
WEIGHTS = dict(zip(NODES, (30, 55, 12, 80, 41), strict=True))


pytestmark = pytest.mark.usefixtures("server_identity")


def big_w(name: str, array: np.ndarray) -> np.ndarray:
    """``w`` moves by 2 (beyond the default clip 0.5), ``b`` by 0.1, ``steps`` by 3 (an integer)."""
    return {"w": np.full(array.shape, 2.0), "b": np.full(array.shape, 0.1), "steps": np.full(array.shape, 3)}[name]


def app(node: int, share: Path, audit: Audit | None = None, **mod_options: object) -> ClientApp:
    key_file, trusted_file = identity_files(node)
    mod = make_paillier_mod(key_share_file=share, passphrase=PASSPHRASE, identity_key_file=key_file,  # type: ignore[arg-type]
                            trusted_keys_file=trusted_file, audit=audit, rng=np.random.default_rng(node),
                            **mod_options)  # fmt: skip
    client = ClientApp(mods=[mod])

    @client.train()
    def train(message: Message, context: Context) -> Message:
        arrays = message.content["arrays"]
        updated = {name: Array((a.numpy() + big_w(name, a.numpy())).astype(a.numpy().dtype))
                   for name, a in arrays.items()}  # fmt: skip
        metrics = MetricRecord({"num-examples": WEIGHTS[node]})
        return Message(RecordDict({"arrays": ArrayRecord(updated), "metrics": metrics}), reply_to=message)

    return client


def paillier_grid(
    tmp_path: Path, audit: Audit | None = None, policy: NodePolicy | None = None, **options: object
) -> tuple[FakeGrid, PaillierGrid]:
    public_path, shares = key_files(tmp_path / "ceremony", len(NODES), 3)
    # The nodes accept the 3-of-5 key's c = 0 by name too.
    extra = {"policy": NodePolicy(min_colluders=0) if policy is None else policy}
    grid = FakeGrid({node: app(node, share, audit, **extra) for node, share in zip(NODES, shares, strict=True)})
    # A 3-of-5 key, below the default 4-of-5: accepted by name (colluders=0: two dropouts, no colluder).
    secure = PaillierGrid(grid, PaillierOptions(public_key=read_public_key(public_path), stage_timeout=5.0,
                                                trusted_keys=TRUSTED_KEYS, colluders=0, **options))  # type: ignore[arg-type]
    return grid, secure


def run(secure: PaillierGrid, rounds: int = 1) -> ArrayRecord:
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2)
    return strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=rounds,
                          train_config=ConfigRecord({"lr": 0.1})).arrays  # fmt: skip


def test_the_clipped_fraction_is_reported_with_a_warning_and_integer_arrays_are_exact(tmp_path: Path) -> None:
    # Prepare: a fixed clip 0.5; every node moves w by 2, b by 0.1, the integer buffer by 3
    audit = Audit()
    grid, secure = paillier_grid(tmp_path, audit, clipping="fixed")
    # Execute
    with pytest.warns(ClippingWarning, match="arrays/w"):
        final = run(secure)
    # Assert: the counts came through the encrypted sum (the decrypted aggregate is the sum of the encodings)
    report = secure.reports[0]
    assert report.included == frozenset(NODES) and report.clipping is not None
    assert report.clipping.fractions() == {"arrays/w": 1.0, "arrays/b": 0.0, "arrays/steps": 0.0}
    assert report.clipped_fraction == pytest.approx(12 / 17)
    plain = np.sum([a.encoded for a in audit.of_round(1).values()], axis=0)
    assert np.array_equal(report.aggregate, plain)
    assert plain[17:20].tolist() == [12 * len(NODES), 0, 0] and plain[-1] == sum(WEIGHTS.values())
    # w was clipped to 0.5; b and the integer buffer are exact (steps: 5 + 3, as an integer)
    np.testing.assert_allclose(final["w"].numpy(), np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4) + 0.5,
                               atol=1e-4)  # fmt: skip
    np.testing.assert_allclose(final["b"].numpy(), 0.1, atol=1e-4)
    assert final["steps"].numpy().tolist() == [8]
    # The setup carried the clip table, and its digest is the descriptor's layout digest
    setup = wire.decode(read_stage(next(m for m in grid.sent if read_stage(m.content)[0] == ENCRYPT).content)[1],
                        PaillierSetup)  # fmt: skip
    table = parse_table(setup.segments)
    assert table == report.clipping.table and setup.vector_length == 17 + 3 + 1
    assert setup.descriptor(77).layout_digest == hashlib.sha256(SEGMENTS_LABEL + setup.segments).digest()
    with pytest.warns(ClippingWarning):
        mean, weight_total, _ = decode_segmented(plain, table, setup.quantization, len(NODES))
    assert weight_total == sum(WEIGHTS.values()) and mean[-1] == 3.0


@pytest.mark.slow  # a heavy Flower round: CI runs it in the slow suite, beside the default suite
def test_the_adaptive_clip_is_the_default_and_follows_the_encrypted_counts(tmp_path: Path) -> None:
    # Prepare: default options (adaptive), w clipped every round at first
    _, secure = paillier_grid(tmp_path)
    # Execute
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingWarning)
        run(secure, rounds=3)
    # Assert: w's clip grows from the summed counts, b's (never clipped) shrinks slowly
    clips = [r.clipping.table.clips for r in secure.reports if r.clipping is not None]
    assert len(clips) == 3
    assert clips[0]["arrays/w"] == 0.5 and clips[1]["arrays/w"] > 1.3 and clips[2]["arrays/w"] > clips[1]["arrays/w"]
    assert clips[1]["arrays/b"] < 0.5
    assert secure.reports[2].clipped_fraction < secure.reports[0].clipped_fraction


def test_a_named_starting_clip_holds_for_its_array(tmp_path: Path) -> None:
    _, secure = paillier_grid(tmp_path, clipping="fixed", clips={"arrays/w": 4.0})
    final = run(secure)
    report = secure.reports[0]
    assert report.clipping is not None and report.clipping.table.clips["arrays/w"] == 4.0
    assert report.clipped_fraction == 0.0
    np.testing.assert_allclose(final["w"].numpy(), np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4) + 2.0,
                               atol=1e-3)  # fmt: skip


def test_a_split_clip_table_never_yields_an_aggregate(tmp_path: Path) -> None:
    # Prepare: every node but the target is told w's clip is 1e300 (its w contribution ~ 0)
    audit = Audit()
    grid, secure = paillier_grid(tmp_path, audit, clipping="fixed")

    def rewrite(message: Message) -> None:
        stage, payload = read_stage(message.content)
        if stage == ENCRYPT:
            setup = wire.decode(payload, PaillierSetup)
            table = parse_table(setup.segments).with_clips({"arrays/w": 1e300})
            _replace_payload(message, ENCRYPT, wire.encode(dataclasses.replace(setup, segments=table.describe())))

    lying_server(grid, rewrite)
    # Execute
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ClippingWarning)
        run(secure)
    # Assert: the others' uploads are for another session (the table is in the session id); nothing decrypted
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None and report.clipping is None
    assert all("another session" in report.errors[node] for node in NODES if node != TARGET), report.errors


def test_a_node_refuses_a_clip_above_its_policy_before_training(tmp_path: Path) -> None:
    audit = Audit()
    _, secure = paillier_grid(tmp_path, audit, policy=NodePolicy(max_clip=0.1, min_colluders=0))
    run(secure)
    report = secure.reports[0]
    assert report.aggregate is None and not audit.records
    assert all("exceeds this node's maximum 0.1" in report.errors[node] for node in NODES), report.errors


def test_clipping_options_are_validated_before_any_round(tmp_path: Path) -> None:
    public_path, _ = key_files(tmp_path / "ceremony", len(NODES), 3)
    with pytest.raises(ConfigurationError, match="unknown clipping"):
        PaillierOptions(public_key=read_public_key(public_path), clipping="sometimes")
