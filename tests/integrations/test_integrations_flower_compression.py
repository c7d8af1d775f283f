"""Shared-seed partial updates and rotation over Flower (issue 16), masking and Paillier, through FakeGrid.

Every message goes through Flower's own serialisation and every node's ``context.state``
survives between messages only as records, as in a deployment. Checked here: the secure
aggregate equals the plain sum of the nodes' compressed encodings (bit for bit), the server
decodes it back to full length (rotation undone), the residual is kept across rounds and
added later (a node that missed a round keeps it), a split of the subset or the rotation
between nodes fails the round, and every refusal names what it refuses.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from secagg import wire
from secagg.descriptor import decode_parameters, encode_parameters
from secagg.dp import DPConfig
from secagg.encoding import from_ring
from secagg.errors import ConfigurationError, DecodeError, ProtocolError
from secagg.integrations.flower import (
    NodePolicy,
    PaillierGrid,
    PaillierOptions,
    SecAggGrid,
    SecAggOptions,
    make_paillier_mod,
    make_secagg_mod,
)
from secagg.integrations.flower._records import read_stage
from secagg.integrations.flower.clipping import decode_segmented, layout_table, parse_table
from secagg.integrations.flower.compression import (
    RESIDUAL_KEY,
    ROTATED,
    RoundCompression,
    check_compressed_model,
    check_entries,
    check_options,
    keep_residual,
    node_update,
    stored_residual,
)
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import ENCRYPT, SETUP, PaillierSetup, RoundSetup, flatten_arrays
from secagg.ring import RingVector

from .flower_harness import TRUSTED_KEYS, Audit, FakeGrid, identity_files
from .paillier_keys import PASSPHRASE, key_files
from .test_integrations_flower_split_setup import _replace_payload, lying_server

NODES = (1_000_000_007, 2**63 + 11, 42, 9_999_999_999, 2**64 - 1)
WEIGHTS = dict(zip(NODES, (30, 55, 12, 80, 41), strict=True))
SIZE = 12 + 4 + 1
CLIP = 2.0
"""Every float array's clip: above any change plus residual here (the step counter too, once FedAvg
has averaged it into a float array), so nothing is clipped."""


pytestmark = pytest.mark.usefixtures("server_identity")


def model() -> ArrayRecord:
    """float64 weights and bias (float coordinates) and an int64 step counter (an exact integer segment)."""
    return ArrayRecord({"w": Array(np.linspace(-1, 1, 12).reshape(3, 4)), "b": Array(np.zeros(4)),
                        "steps": Array(np.array([5], dtype=np.int64))})  # fmt: skip


def delta_of(node: int, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Node ``node``'s fixed change of array ``name`` (the same every round): at most 0.3, steps + 1."""
    if name == "steps":
        return np.full(shape, 1, dtype=np.int64)
    count = int(np.prod(shape))
    offset = 0 if name == "w" else 12
    return (0.3 * np.sin((np.arange(count) + offset) * 0.7 + node % 1000)).reshape(shape)


def full_delta(node: int) -> np.ndarray:
    return np.concatenate([delta_of(node, n, a.numpy().shape).reshape(-1).astype(np.float64)
                           for n, a in model().items()])  # fmt: skip


def app(node: int, audit: Audit | None = None, *, share: Path | None = None, failing: frozenset[int] = frozenset(),
        **mod_options: object) -> ClientApp:  # fmt: skip
    """A node whose training adds :func:`delta_of` to each array (fails in the rounds ``failing``)."""
    rng = np.random.default_rng(node)
    if share is None:
        options = {"policy": NodePolicy(allow_semi_honest=True), **mod_options}
        mod = make_secagg_mod(audit=audit, rng=rng, **options)  # type: ignore[arg-type]
    else:
        key_file, trusted = identity_files(node)
        options = {"policy": NodePolicy(min_colluders=0), **mod_options}  # the 3-of-5 key (c = 0): by name
        mod = make_paillier_mod(key_share_file=share, passphrase=PASSPHRASE, identity_key_file=key_file,  # type: ignore[arg-type]
                                trusted_keys_file=trusted, audit=audit, rng=rng, **options)  # fmt: skip
    client = ClientApp(mods=[mod])

    @client.train()
    def train(message: Message, context: Context) -> Message:
        if int(message.content["config"]["server-round"]) in failing:
            raise RuntimeError(f"node {node}: training crashed")
        arrays = message.content["arrays"]
        updated = {name: Array(a.numpy() + delta_of(node, name, a.numpy().shape)) for name, a in arrays.items()}
        metrics = MetricRecord({"num-examples": WEIGHTS[node]})
        return Message(RecordDict({"arrays": ArrayRecord(updated), "metrics": metrics}), reply_to=message)

    return client


def masking_grid(audit: Audit | None = None, failing: dict[int, frozenset[int]] | None = None,
                 **options: object) -> tuple[FakeGrid, SecAggGrid]:  # fmt: skip
    failing = failing or {}
    grid = FakeGrid({node: app(node, audit, failing=failing.get(node, frozenset())) for node in NODES})
    settings = {"mode": "semi-honest", "stage_timeout": 5.0, "clipping": "fixed", "clip": CLIP, **options}
    return grid, SecAggGrid(grid, SecAggOptions(**settings))  # type: ignore[arg-type]


def paillier_grid(tmp_path: Path, audit: Audit | None = None, **options: object) -> tuple[FakeGrid, PaillierGrid]:
    public_path, shares = key_files(tmp_path / "ceremony", len(NODES), 3)
    grid = FakeGrid({node: app(node, audit, share=share) for node, share in zip(NODES, shares, strict=True)})
    secure = PaillierGrid(grid, PaillierOptions(public_key=read_public_key(public_path), stage_timeout=5.0,
                                                trusted_keys=TRUSTED_KEYS, clipping="fixed", clip=CLIP,
                                                colluders=0,  # a 3-of-5 key, below the default 4-of-5: by name
                                                **options))  # type: ignore[arg-type]  # fmt: skip
    return grid, secure


def run(secure: SecAggGrid | PaillierGrid, rounds: int = 1) -> ArrayRecord:
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=3, min_available_nodes=3)
    return strategy.start(grid=secure, initial_arrays=model(), num_rounds=rounds,
                          train_config=ConfigRecord({"lr": 0.1})).arrays  # fmt: skip


def setups(grid: FakeGrid, stage: str = SETUP) -> dict[int, RoundSetup | PaillierSetup]:
    """The setup each round sent (to its first node), by round."""
    kind = RoundSetup if stage == SETUP else PaillierSetup
    found: dict[int, RoundSetup | PaillierSetup] = {}
    for message in grid.sent:
        name, payload = read_stage(message.content)
        if name == stage:
            found.setdefault(int(message.metadata.group_id), wire.decode(payload, kind))
    return found


def layout():  # type: ignore[no-untyped-def]
    return flatten_arrays([("arrays", name, a.numpy()) for name, a in model().items()])


def ring_sum(vectors: list[RingVector]) -> RingVector:
    return functools.reduce(np.add, vectors)  # uint32 / uint64 arithmetic wraps: the ring sum


def residual_of(grid: FakeGrid, node: int) -> np.ndarray:
    record = grid.states[node][RESIDUAL_KEY]
    return np.frombuffer(record["residual"], dtype="<f8")


# --- exactness, masking and Paillier --------------------------------------------------------


@pytest.mark.slow  # a heavy Flower round: CI runs it in the slow suite, beside the default suite
@pytest.mark.parametrize(("sparsity", "rotate"), [(0.5, False), (None, True), (0.5, True), (("arrays/b",), False)],
                         ids=["half", "rotated", "half-rotated", "layer-b"])  # fmt: skip
def test_a_compressed_masking_round_sums_exactly_the_compressed_encodings(sparsity: object, rotate: bool) -> None:
    # Prepare
    audit = Audit()
    grid, secure = masking_grid(audit, sparsity=sparsity, rotate=rotate)
    # Execute
    final = run(secure)
    # Assert: the unmasked aggregate is the ring sum of the nodes' compressed encodings
    report, setup = secure.reports[0], setups(grid)[1]
    assert report.included == frozenset(NODES)
    records = audit.of_round(1)
    assert np.array_equal(report.aggregate, ring_sum([records[n].encoded for n in NODES]))
    # The setup binds the round's subset and rotation in its descriptor
    base, arrays_layout = layout()
    compression = RoundCompression.read(setup.compression, arrays_layout)
    assert compression is not None and (compression.subset is not None) == (sparsity is not None)
    assert (compression.rotation is not None) == rotate
    bound = decode_parameters(setup.descriptor(77).parameters)
    assert {k: v for k, v in bound.items() if k.startswith("secagg.")} == decode_parameters(setup.compression)
    table = parse_table(setup.segments)
    assert setup.masking.vector_length == table.size + len(table.segments) + 1
    if rotate:  # one rotated segment, then the integer array if it is sent
        assert table.segments[0].name == ROTATED and all(s.integer for s in table.segments[1:])
    else:
        assert table.size == compression.sent
    # The new model is global + the decoded, expanded mean of that sum
    quantization = setup.quantization
    mean, weight_total, _ = decode_segmented(from_ring(report.aggregate, quantization), table, quantization, 5)
    expanded = compression.expand(mean, arrays_layout)
    got = np.concatenate([final[name].numpy().reshape(-1).astype(np.float64) for name in ("w", "b", "steps")])
    np.testing.assert_allclose(got[:16], (base + expanded)[:16], atol=1e-12)
    assert weight_total == sum(WEIGHTS.values())
    # ... and close to the weighted mean of the sent coordinates (quantization error only)
    weighted = sum(WEIGHTS[n] * full_delta(n) for n in NODES) / weight_total
    sent = np.ones(SIZE, dtype=bool) if compression.subset is None else np.isin(np.arange(SIZE),
                                                                                compression.subset.indices)  # fmt: skip
    np.testing.assert_allclose(expanded[sent], weighted[sent], atol=1e-3)
    assert np.all(expanded[~sent] == 0.0)
    if sent[-1]:
        assert got[-1] == 6  # the integer step counter stays exact, rotated round or not


@pytest.mark.slow  # a heavy Flower round: CI runs it in the slow suite, beside the default suite
def test_a_compressed_paillier_round_decrypts_exactly_the_compressed_encodings(tmp_path: Path) -> None:
    # Prepare: half the coordinates, rotated
    audit = Audit()
    grid, secure = paillier_grid(tmp_path, audit, sparsity=0.5, rotate=True)
    # Execute
    final = run(secure)
    # Assert: the decrypted sum is the integer sum of the compressed encodings
    report, setup = secure.reports[0], setups(grid, ENCRYPT)[1]
    assert report.included == frozenset(NODES)
    plain = np.sum([a.encoded for a in audit.of_round(1).values()], axis=0)
    assert np.array_equal(report.aggregate, plain)
    base, arrays_layout = layout()
    compression = RoundCompression.read(setup.compression, arrays_layout)
    assert compression is not None and compression.subset is not None and compression.rotation is not None
    assert compression.subset.count == 9 and setup.vector_length == len(plain)
    assert "secagg.rotation.seed" in decode_parameters(setup.descriptor(77).parameters)
    table = parse_table(setup.segments)
    mean, weight_total, _ = decode_segmented(plain, table, setup.quantization, len(NODES))
    expanded = compression.expand(mean, arrays_layout)
    got = np.concatenate([final[name].numpy().reshape(-1).astype(np.float64) for name in ("w", "b", "steps")])
    np.testing.assert_allclose(got, base + expanded, atol=1e-12)
    weighted = sum(WEIGHTS[n] * full_delta(n) for n in NODES) / weight_total
    np.testing.assert_allclose(expanded[compression.subset.indices], weighted[compression.subset.indices], atol=1e-3)
    # Every node kept the rest as its residual
    for node in NODES:
        kept = residual_of(grid, node)
        assert np.all(kept[compression.subset.indices] == 0.0)
        outside = np.setdiff1d(np.arange(SIZE), compression.subset.indices)
        expected = full_delta(node)
        expected[-1] = 0.0  # the int64 step counter keeps no residual (spec 15.8), drawn or not
        np.testing.assert_allclose(kept[outside], expected[outside], atol=1e-12)


# --- error feedback across rounds -----------------------------------------------------------


def test_the_residual_is_kept_across_rounds_added_later_and_kept_by_a_node_that_missed_a_round() -> None:
    # Prepare: half the coordinates per round; node 42's training fails in round 2
    audit = Audit()
    grid, secure = masking_grid(audit, failing={42: frozenset({2})}, sparsity=0.5)
    # Execute
    run(secure, rounds=2)
    # Assert
    first, second = setups(grid)[1], setups(grid)[2]
    _, arrays_layout = layout()
    s1 = RoundCompression.read(first.compression, arrays_layout).subset  # type: ignore[union-attr]
    s2 = RoundCompression.read(second.compression, arrays_layout).subset  # type: ignore[union-attr]
    assert s1 is not None and s2 is not None and first.compression != second.compression
    assert secure.reports[1].included == frozenset(NODES) - {42} and secure.reports[1].dropped[42] == "masked-input"
    for node in NODES:
        delta = full_delta(node)
        after_first = np.where(np.isin(np.arange(SIZE), s1.indices), 0.0, delta)
        after_first[-1] = 0.0  # the counter is int64 in round 1 (FedAvg makes it float64): no residual
        if node == 42:  # it missed round 2: its residual is the one round 1 left
            np.testing.assert_allclose(residual_of(grid, node), after_first, atol=1e-12)
            continue
        corrected = delta + after_first
        expected = np.where(np.isin(np.arange(SIZE), s2.indices), 0.0, corrected)
        np.testing.assert_allclose(residual_of(grid, node), expected, atol=1e-12)
        # Round 2 sent (delta + round 1's residual) on S2: twice the delta where S1 had left it out
        encoded = from_ring(audit.of_round(2)[node].encoded, second.quantization)
        table = parse_table(second.segments)
        sent = encoded[: table.size].astype(np.float64) / (WEIGHTS[node] * second.quantization.qmax / CLIP)
        scale_step = CLIP / second.quantization.qmax
        float_sent = s2.indices < 16  # the integer counter is scaled by 1, not qmax / clip
        np.testing.assert_allclose(sent[float_sent], corrected[s2.indices][float_sent], atol=scale_step)


@pytest.mark.parametrize(("protocol", "options"), [("masking", {}), ("masking", {"rotate": True}), ("paillier", {})],
                         ids=["masking", "masking-rotated", "paillier"])  # fmt: skip
def test_a_round_that_sends_every_coordinate_spends_the_stored_residual(
    protocol: str, options: dict[str, object], tmp_path: Path
) -> None:
    # Prepare: every node holds a residual an earlier round left (a run whose server sent subsets
    # before); this round has no subset, so each node's contribution holds its update plus all of it
    audit = Audit()
    grid, secure = masking_grid(audit, **options) if protocol == "masking" else paillier_grid(tmp_path, audit)
    _, arrays_layout = layout()
    held = np.where(np.arange(SIZE) % 2 == 0, 0.0, 0.01)
    held[-1] = 1.0  # the step counter's: a whole number, as an integer array's residual is
    for node in NODES:
        state = RecordDict()
        keep_residual(state, arrays_layout, held)
        grid.states[node] = state
    # Execute
    run(secure)
    # Assert: every node sent, and none keeps the residual it sent (it would be added, and sent, again
    # in every later round)
    assert secure.reports[0].included == frozenset(NODES)
    assert all(RESIDUAL_KEY not in grid.states[node] for node in NODES)
    if not options:  # ... and did send it: its float coordinates are update plus residual, within a step
        setup = setups(grid, SETUP if protocol == "masking" else ENCRYPT)[1]
        quantization, step = setup.quantization, CLIP / setup.quantization.qmax
        for node in NODES:
            encoded = audit.of_round(1)[node].encoded
            values = from_ring(encoded, quantization) if protocol == "masking" else np.asarray(encoded)
            sent = values[:16].astype(np.float64) / (WEIGHTS[node] / step)
            np.testing.assert_allclose(sent, (full_delta(node) + held)[:16], atol=step)


# --- a split between nodes fails the round ---------------------------------------------------


def _resplit(data: bytes, change: str) -> bytes:
    """Other compression entries: another subset seed, another count, another rotation seed, no rotation."""
    entries = decode_parameters(data)
    if change == "subset-seed":
        entries["secagg.sparsity.seed"] = bytes(32)
    elif change == "count":
        entries["secagg.sparsity.count"] = int(entries["secagg.sparsity.count"]) - 1  # type: ignore[call-overload]
    elif change == "rotation-seed":
        entries["secagg.rotation.seed"] = bytes(32)
    else:
        entries = {k: v for k, v in entries.items() if not k.startswith("secagg.rotation.")}
    return encode_parameters(entries)


@pytest.mark.parametrize("change", ["subset-seed", "count", "rotation-seed", "rotation-dropped"])
@pytest.mark.parametrize("rebind", [False, True], ids=["record-left", "record-rebound"])
def test_a_split_subset_or_rotation_over_masking_never_aggregates(change: str, rebind: bool) -> None:
    # Prepare: every node but the target gets other compression entries (and, rebound, a record binding them)
    audit = Audit()
    grid, secure = masking_grid(audit, sparsity=0.5, rotate=True)

    def rewrite(message: Message) -> None:
        stage, payload = read_stage(message.content)
        if stage != SETUP:
            return
        setup = wire.decode(payload, RoundSetup)
        split = dataclasses.replace(setup, compression=_resplit(setup.compression, change))
        if rebind:
            config = dataclasses.replace(split.masking_config, descriptor=split.descriptor(77).digest())
            split = dataclasses.replace(split, masking=config.record())
        _replace_payload(message, SETUP, wire.encode(split))

    lying_server(grid, rewrite)
    # Execute
    run(secure)
    # Assert: no aggregate; record left, the others refuse at setup; rebound, they are in another session
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None
    if not rebind:
        assert all("binds another setup" in report.errors[node] for node in NODES[1:])


def test_a_split_subset_in_a_paillier_round_is_another_session(tmp_path: Path) -> None:
    # Prepare: the others' PaillierSetup names another subset seed
    grid, secure = paillier_grid(tmp_path, sparsity=0.5)

    def rewrite(message: Message) -> None:
        stage, payload = read_stage(message.content)
        if stage == ENCRYPT:
            setup = wire.decode(payload, PaillierSetup)
            split = dataclasses.replace(setup, compression=_resplit(setup.compression, "subset-seed"))
            _replace_payload(message, ENCRYPT, wire.encode(split))

    lying_server(grid, rewrite)
    # Execute
    run(secure)
    # Assert: they refuse, or upload to another session; nothing is decrypted
    report = secure.reports[0]
    assert report.aggregate is None and report.skipped_reason is not None
    # (a subset whose arrays hold other counts than the table's is refused even before encrypting)
    refusals = ("another session", "clip table does not describe this model's arrays as compressed")
    assert all(any(r in report.errors[node] for r in refusals) for node in NODES[1:])


def test_a_node_refuses_compression_entries_that_are_not_a_subset_or_a_rotation() -> None:
    # Prepare: a consistent (rebound) setup whose compression also carries a training value
    grid, secure = masking_grid(sparsity=0.5)

    def rewrite(message: Message) -> None:
        stage, payload = read_stage(message.content)
        if stage == SETUP:
            setup = wire.decode(payload, RoundSetup)
            entries = {**decode_parameters(setup.compression), "other/lr": 0.0}
            split = dataclasses.replace(setup, compression=encode_parameters(entries))
            config = dataclasses.replace(split.masking_config, descriptor=split.descriptor(77).digest())
            _replace_payload(message, SETUP, wire.encode(dataclasses.replace(split, masking=config.record())))

    lying_server(grid, rewrite)
    # Execute
    run(secure)
    # Assert
    report = secure.reports[0]
    assert report.aggregate is None
    assert all("names other than the subset's and the rotation's" in report.errors[n] for n in NODES[1:])


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{"sparsity": 0.5}, {"rotate": True}])
def test_compression_with_dp_is_refused_naming_the_options(options: dict[str, object]) -> None:
    pytest.importorskip("dp_accounting")
    dp = DPConfig(epsilon=2.0, delta=1e-5, rounds=2, l2_clip=1.0)
    with pytest.raises(ConfigurationError, match=r"sparsity= and rotate= do not apply with dp="):
        SecAggOptions(mode="semi-honest", dp=dp, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(("sparsity", "message"), [(0.0, "fraction"), (1.5, "fraction"), (True, "sparsity must be"),
                                                   ("arrays/w", "the string"), ((), "sparsity must be"),
                                                   (["arrays/w", 3], "sparsity must be")])  # fmt: skip
def test_unfit_sparsity_options_are_refused(sparsity: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SecAggOptions(mode="semi-honest", sparsity=sparsity)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="rotate must be"):
        check_options(None, 1, False)


def test_a_layer_the_model_lacks_is_refused_before_anything_is_sent() -> None:
    # Prepare
    grid, secure = masking_grid(sparsity=("arrays/w", "arrays/missing"))
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"\['arrays/missing'\] are not in the layout"):
        run(secure)
    assert grid.sent == []


def test_rotating_a_round_that_sends_no_float_coordinate_is_refused() -> None:
    grid, secure = masking_grid(sparsity=("arrays/steps",), rotate=True)
    with pytest.raises(ConfigurationError, match="hold no float coordinate"):
        run(secure)
    assert grid.sent == []


def test_a_dp_setup_with_compression_is_refused() -> None:
    grid, secure = masking_grid(sparsity=0.5)
    run(secure)
    setup = setups(grid)[1]
    assert isinstance(setup, RoundSetup)
    with pytest.raises(ConfigurationError, match="no segment table and no compression"):
        dataclasses.replace(setup, segments=b"", dp=encode_parameters({"secagg.dp.epsilon": 1.0}))


def test_compression_bytes_are_read_canonically_and_for_this_model_only() -> None:
    # Prepare
    _, arrays_layout = layout()
    drawn = RoundCompression.draw(arrays_layout, 0.5, True, random_bytes=lambda n: bytes(range(n)))
    assert drawn is not None
    data = drawn.parameters()
    # Execute / Assert: the bytes read back to the same compression
    assert RoundCompression.read(data, arrays_layout).parameters() == data  # type: ignore[union-attr]
    # Another model (one more coordinate) is refused; so are mistyped and unknown entries
    other = flatten_arrays([("arrays", "w", np.zeros(SIZE + 1))])[1]
    with pytest.raises(ProtocolError, match="for 17 values"):
        RoundCompression.read(data, other)
    entries = decode_parameters(data)
    with pytest.raises(DecodeError, match="mistyped"):
        RoundCompression.read(encode_parameters({**entries, "secagg.sparsity.seed": "x"}), arrays_layout)
    with pytest.raises(DecodeError, match="unknown subset selection"):
        RoundCompression.read(encode_parameters({**entries, "secagg.sparsity.selection": "v9"}), arrays_layout)
    with pytest.raises(ProtocolError, match="the rotation is for"):
        RoundCompression.read(encode_parameters({**entries, "secagg.rotation.dimension": 3}), arrays_layout)


def test_a_malformed_stored_residual_is_refused_and_another_models_is_dropped() -> None:
    # Prepare
    _, arrays_layout = layout()
    state = RecordDict()
    keep_residual(state, arrays_layout, np.arange(SIZE, dtype=np.float64))
    # Execute / Assert: it reads back; another layout starts from zero; a truncated one is refused
    np.testing.assert_array_equal(stored_residual(state, arrays_layout), np.arange(SIZE))  # type: ignore[arg-type]
    other = flatten_arrays([("arrays", "w", np.zeros(SIZE))])[1]
    assert stored_residual(state, other) is None
    state[RESIDUAL_KEY] = ConfigRecord({"layout": state[RESIDUAL_KEY]["layout"], "residual": b"\x00" * 8})
    with pytest.raises(ProtocolError, match="holds 8 bytes"):
        stored_residual(state, arrays_layout)
    keep_residual(state, arrays_layout, np.zeros(SIZE))
    assert RESIDUAL_KEY not in state


def _entries(**changes: object) -> bytes:
    """Compression bytes of a half subset with a rotation for the test model, with entries changed (None: removed)."""
    _, arrays_layout = layout()
    drawn = RoundCompression.draw(arrays_layout, 0.5, True, random_bytes=lambda n: bytes(range(n)))
    assert drawn is not None
    entries = decode_parameters(drawn.parameters())
    for name, value in changes.items():
        key = name.replace("__", ".")
        if value is None:
            del entries[key]
        else:
            entries[key] = value  # type: ignore[assignment]
    return encode_parameters(entries)


@pytest.mark.parametrize(("data", "error", "message"), [
    (_entries(secagg__rotation__seed=7), DecodeError, "rotation's seed, dimension or block"),
    (_entries(secagg__rotation__transform="other/v1"), DecodeError, "not a rotation's"),
    (_entries(secagg__rotation__block=3), DecodeError, "power of two"),
    (_entries(secagg__sparsity__count=0), DecodeError, "count must be"),
    (_entries(secagg__sparsity__seed=None), DecodeError, "seed, dimension or count"),
    (encode_parameters({"secagg.sparsity.selection": "layers/v1", "secagg.sparsity.layers": "arrays/w\narrays/z",
                        "secagg.sparsity.dimension": SIZE, "secagg.sparsity.count": 13,
                        "secagg.sparsity.indices": bytes(32)}), ProtocolError, "do not fit this model"),
    (encode_parameters({"secagg.sparsity.selection": "layers/v1", "secagg.sparsity.layers": "arrays/w",
                        "secagg.sparsity.dimension": SIZE, "secagg.sparsity.count": 12,
                        "secagg.sparsity.indices": bytes(32)}), ProtocolError, "does not describe this model"),
    (encode_parameters({}), DecodeError, "names other than"),
], ids=["rotation-seed-type", "transform", "block", "count", "no-seed", "unknown-layer", "layer-digest",
        "empty"])  # fmt: skip
def test_a_node_refuses_compression_entries_it_cannot_rebuild_for_its_model(
    data: bytes, error: type[Exception], message: str
) -> None:
    _, arrays_layout = layout()
    with pytest.raises(error, match=message):
        RoundCompression.read(data, arrays_layout) if data else check_entries(data)


def test_a_table_or_vector_length_other_than_the_compressions_is_refused() -> None:
    # Prepare
    _, arrays_layout = layout()
    compression = RoundCompression.draw(arrays_layout, 0.5, True, random_bytes=lambda n: bytes(range(n)))
    assert compression is not None
    table = compression.table(layout_table(arrays_layout, {"arrays/w": 1.0, "arrays/b": 1.0}))
    length = table.size + len(table.segments) + 1
    # Execute / Assert: the right table passes; an uncompressed one, or another session length, is refused
    check_compressed_model(table, arrays_layout, compression, length)
    with pytest.raises(ProtocolError, match="as compressed"):
        check_compressed_model(layout_table(arrays_layout, {"arrays/w": 1.0, "arrays/b": 1.0}), arrays_layout,
                               compression, length)  # fmt: skip
    with pytest.raises(ProtocolError, match=f"the session is for {length + 1} values"):
        check_compressed_model(table, arrays_layout, compression, length + 1)


def test_a_stored_residual_of_the_wrong_kind_is_refused() -> None:
    _, arrays_layout = layout()
    state = RecordDict()
    state[RESIDUAL_KEY] = ArrayRecord()
    with pytest.raises(ProtocolError, match="not a ConfigRecord"):
        stored_residual(state, arrays_layout)
    state[RESIDUAL_KEY] = ConfigRecord({"residual": b""})
    with pytest.raises(ProtocolError, match="incomplete"):
        stored_residual(state, arrays_layout)


@pytest.mark.parametrize(("bad", "stored"), [(np.nan, 0.0), (np.inf, 0.0), (1.5e308, 1.5e308)],
                         ids=["nan", "inf", "overflow"])  # fmt: skip
def test_a_non_finite_update_plus_residual_is_refused_and_the_residual_kept(bad: float, stored: float) -> None:
    # Prepare: a half subset; the bad value at a coordinate the round does not send, where it would
    # go into the residual unseen and be refused in whichever later round sends it (every such round)
    _, arrays_layout = layout()
    compression = RoundCompression.draw(arrays_layout, 0.5, False, random_bytes=lambda n: bytes(range(n)))
    assert compression is not None and compression.subset is not None
    unsent = int(np.setdiff1d(np.arange(12), compression.subset.indices)[0])  # a float coordinate of "w"
    residual = np.full(SIZE, 0.25)
    residual[unsent] = stored
    state = RecordDict()
    keep_residual(state, arrays_layout, residual)
    delta = full_delta(NODES[0])
    delta[unsent] = bad
    # Execute / Assert: refused as an uncompressed update would be; the stored residual unchanged
    with pytest.raises(ConfigurationError, match="NaN or infinite"):
        node_update(compression.parameters(), delta, arrays_layout, state)
    np.testing.assert_array_equal(stored_residual(state, arrays_layout), residual)  # type: ignore[arg-type]


def test_a_rotation_block_beyond_one_block_of_the_model_is_refused_before_anything_is_allocated() -> None:
    # Prepare: the round's rotation entries with a block far beyond the next power of two of the float
    # coordinates sent (9 here, one block of 16): a hostile server's way to make a small model's node rotate, encode and
    # mask 2^31 values (16 GiB of doubles), with a clip table and a session length to match
    _, arrays_layout = layout()
    data = _entries(secagg__rotation__block=1 << 31)
    honest = RoundCompression.read(_entries(), arrays_layout)
    assert honest is not None and honest.rotation is not None and honest.rotation.padded_dimension == 16
    # Execute / Assert: refused while reading the entries, naming the block
    with pytest.raises(ProtocolError, match="block"):
        RoundCompression.read(data, arrays_layout)


def test_a_stored_residual_holding_nan_is_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: a residual stored before nodes refused a non-finite update plus residual (or edited)
    _, arrays_layout = layout()
    state = RecordDict()
    keep_residual(state, arrays_layout, np.full(SIZE, 0.5))
    bad = np.full(SIZE, 0.5)
    bad[3] = np.nan
    state[RESIDUAL_KEY] = ConfigRecord({"layout": state[RESIDUAL_KEY]["layout"], "residual": bad.tobytes()})
    # Execute / Assert: dropped (the node starts from zero, as for another model's) rather than
    # refusing every later round; the warning says so
    with caplog.at_level("WARNING", logger="secagg.flower"):
        assert stored_residual(state, arrays_layout) is None
    assert "NaN or infinite" in caplog.text
