"""Flower Paillier slots follow the narrow-ring bits (issue 16): the bounded range with B = max_weight * qmax.

An end-to-end round with every node at +B and at -B on every coordinate decodes exactly;
the slot is exactly one bit above the smallest ring of the round's quantization, the same
for the server and the nodes; a value beyond B and a count or a B that does not fit are
refused. Real 2048-bit threshold keys (tests/integrations/paillier_keys.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg

from secagg import wire
from secagg.encoding import QuantizationConfig, smallest_ring_bits
from secagg.errors import ConfigurationError, EncodeError
from secagg.integrations.flower import NodePolicy, PaillierGrid, PaillierOptions, make_paillier_mod
from secagg.integrations.flower._records import read_stage
from secagg.integrations.flower.clipping import check_table
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import ENCRYPT, PaillierSetup, packed_value_bits, paillier_layout
from secagg.paillier import Client, SlotLayout
from secagg.segments import ClippingWarning, SegmentTable

from .flower_harness import (
    TRUSTED_KEYS,
    Audit,
    FakeGrid,
    identity_files,
    initial_arrays,
    node_identity_key,
)
from .paillier_keys import PASSPHRASE, key_files, material

NODES = (1_000_000_007, 2**63 + 11, 42, 9_999_999_999, 2**64 - 1)
W, BITS, CLIP = 5000, 16, 0.5
QMAX = (1 << (BITS - 1)) - 1
B = W * QMAX


pytestmark = pytest.mark.usefixtures("server_identity")


def extreme_app(node: int, share: Path, sign: int, audit: Audit) -> ClientApp:
    """A node of weight W whose every coordinate encodes to ``sign * B``: float arrays move by
    ``sign * 4 clip`` (clipped to ``sign * qmax``), the integer array by ``sign * qmax``."""
    key_file, trusted_file = identity_files(node)
    mod = make_paillier_mod(key_share_file=share, passphrase=PASSPHRASE, identity_key_file=key_file,
                            trusted_keys_file=trusted_file, audit=audit, rng=np.random.default_rng(node),
                            policy=NodePolicy(min_colluders=0))  # the 3-of-5 key (c = 0): by name
    client = ClientApp(mods=[mod])

    @client.train()
    def train(message: Message, context: Context) -> Message:
        arrays = message.content["arrays"]
        moves = {"w": 4 * CLIP, "b": 4 * CLIP, "steps": QMAX}
        updated = {name: Array((a.numpy() + sign * moves[name]).astype(a.numpy().dtype)) for name, a in arrays.items()}
        metrics = MetricRecord({"num-examples": W})
        return Message(RecordDict({"arrays": ArrayRecord(updated), "metrics": metrics}), reply_to=message)

    return client


@pytest.mark.parametrize("sign", [1, -1])
def test_every_node_at_plus_or_minus_b_decodes_exactly(tmp_path: Path, sign: int) -> None:
    # Prepare: 5 nodes of weight W = 5000, every coordinate at sign * B = sign * W * qmax
    public_path, shares = key_files(tmp_path / "ceremony", len(NODES), 3)
    audit = Audit()
    grid = FakeGrid({node: extreme_app(node, share, sign, audit) for node, share in zip(NODES, shares, strict=True)})
    secure = PaillierGrid(grid, PaillierOptions(public_key=read_public_key(public_path), clip=CLIP, bits=BITS,
                                                max_weight=W, clipping="fixed", stage_timeout=5.0,
                                                trusted_keys=TRUSTED_KEYS, colluders=0))  # 3-of-5, by name
    strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2)
    # Execute
    with pytest.warns(ClippingWarning):
        final = strategy.start(grid=secure, initial_arrays=initial_arrays(), num_rounds=1).arrays
    # Assert: each node encoded +-B on all 17 coordinates (counts 12, 4, 0; weight W), and the sum is exact
    report = secure.reports[0]
    assert report.skipped_reason is None and report.included == frozenset(NODES)
    encodings = audit.of_round(1)
    for record in encodings.values():
        assert record.encoded.tolist() == [sign * B] * 17 + [12, 4, 0, W]
    n = len(NODES)
    assert report.aggregate is not None
    assert report.aggregate.tolist() == [sign * n * B] * 17 + [12 * n, 4 * n, 0, n * W]
    assert report.weight_total == n * W
    # The setup's layout is the bounded one at B, in slots one bit above the round's smallest ring
    setup = wire.decode(read_stage(next(m for m in grid.sent if read_stage(m.content)[0] == ENCRYPT).content)[1],
                        PaillierSetup)  # fmt: skip
    layout = setup.layout(2048)
    assert (layout.offset, layout.value_max) == (B, B)
    assert layout.width == smallest_ring_bits(BITS, n, W) + 1 == 32
    # The mean is exactly +-clip on the float arrays and +-qmax on the integer array
    base = {k: v.numpy() for k, v in initial_arrays().items()}
    np.testing.assert_array_equal(final["w"].numpy(), base["w"] + np.float32(sign * CLIP))
    np.testing.assert_array_equal(final["b"].numpy(), base["b"] + sign * CLIP)
    assert final["steps"].numpy().tolist() == [5 + sign * QMAX]


def _setup(quantization: QuantizationConfig, nodes: int) -> PaillierSetup:
    ids = tuple(range(1, nodes + 1))
    return PaillierSetup.create(1, ids, material(4, 3).public, 2, quantization, 20, "num-examples", bytes(32),
                                [node_identity_key(i).public for i in ids])


@pytest.mark.parametrize(("bits", "weight", "nodes"), [(16, 5000, 10), (16, 100, 10), (12, 300, 17), (16, 1, 10),
                                                      (8, 1, 10), (16, 4096, 4)])
def test_slots_are_one_bit_above_the_smallest_ring_for_server_and_nodes(bits: int, weight: int, nodes: int) -> None:
    # Prepare
    public = material(4, 3).public
    options = PaillierOptions(public_key=public, bits=bits, max_weight=weight)
    quantization = options.quantization(nodes)
    # Execute: the server's check before a round, and the layout a node derives from the setup
    server = options.layout(nodes)
    node = _setup(quantization, nodes).session_parameters(public, bytes(32), 77).layout
    # Assert
    bound = weight * ((1 << (bits - 1)) - 1)
    assert server == node == SlotLayout.bounded(bound, nodes, 2048)
    assert node.width == smallest_ring_bits(bits, nodes, weight) + 1 == (2 * nodes * bound).bit_length() + 1
    assert node.value_bits == packed_value_bits(quantization)


def test_bytes_per_value_of_a_weighted_round() -> None:
    # 16-bit values, max_weight 5000, 10 nodes, 2048-bit key (512-byte ciphertexts): 34 -> 33 bits
    quantization = QuantizationConfig(CLIP, 16, 10, ring_bits=64, max_weight=5000)
    before = SlotLayout(packed_value_bits(quantization), 10, 2048)
    after = paillier_layout(quantization, 10, 2048)
    assert (before.width, before.slots_per_plaintext, round(512 / before.slots_per_plaintext, 2)) == (34, 60, 8.53)
    assert (after.width, after.slots_per_plaintext, round(512 / after.slots_per_plaintext, 2)) == (33, 62, 8.26)
    assert smallest_ring_bits(16, 10, 5000) == 32


def test_a_dp_round_packs_values_up_to_qmax() -> None:
    # The DP encoding (secagg.dp.encoding.size_encoding) has max_weight 1: B = qmax, offset qmax (not 2^(bits-1))
    quantization = QuantizationConfig(CLIP, BITS, 10, ring_bits=64, max_weight=1)
    layout = paillier_layout(quantization, 10, 2048)
    assert layout.width == smallest_ring_bits(BITS, 10) + 1 == 21
    assert (layout.offset, layout.value_max, layout.value_min) == (quantization.qmax, quantization.qmax,
                                                                  -quantization.qmax)


def test_a_node_refuses_a_value_beyond_the_slot() -> None:
    # Prepare: the session a node derives from a weighted setup of 4 nodes
    public = material(4, 3).public
    quantization = QuantizationConfig(CLIP, BITS, 4, ring_bits=64, max_weight=W)
    params = _setup(quantization, 4).session_parameters(public, bytes(32), 77)
    extremes = np.array([B, -B] * 10, dtype=np.int64)
    # Execute / Assert: +-B encrypt; B + 1 and -B - 1 are refused before anything is encrypted
    Client(params, 1, node_identity_key(1)).upload(extremes)
    for beyond in (B + 1, -B - 1):
        values = extremes.copy()
        values[3] = beyond
        with pytest.raises(EncodeError, match="values must lie in"):
            Client(params, 1, node_identity_key(1)).upload(values)


def test_counts_and_bounds_that_do_not_fit_a_slot_are_refused() -> None:
    # A clipped count reaches the segment's length: a segment longer than B is refused by the node's table check
    quantization = QuantizationConfig(CLIP, 4, 4, ring_bits=64, max_weight=1)  # B = qmax = 7
    assert check_table(SegmentTable.flat(7, CLIP), quantization)
    with pytest.raises(ConfigurationError, match="could overflow the encoding"):
        check_table(SegmentTable.flat(8, CLIP), quantization)
    # A B of more than 47 bits (48 value bits) refuses the layout, at the server and in a setup
    wide = QuantizationConfig(CLIP, 40, 4, ring_bits=64, max_weight=1 << 12)
    with pytest.raises(ConfigurationError, match="above the packing limit of 48"):
        paillier_layout(wide, 4, 2048)
    with pytest.raises(ConfigurationError, match="above the packing limit of 48"):
        _setup(wide, 4)
