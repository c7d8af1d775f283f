"""One hospital whose update cannot be encoded under compression costs only itself.

The rotation (:class:`~fl_core.rotated.RotatedAggregator`) refuses an update whose butterflies
leave binary64, and a hospital's update plus its residual
(:class:`~fl_core.compression.SparseAggregator`) can overflow. Such a hospital is withheld: it
goes silent at UPLOAD, is named with the reason in the round's ``withheld``, its residual is left
as it was, and the others' mean is bit for bit that of the same round without it (same ``rng``
state). If withholding leaves too few for the protocol, the round is skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import numpy as np
import numpy.typing as npt
import pytest

from fl_core import fedavg
from fl_core.aggregators import Aggregator, ClientUpdate, DropoutStage, make_aggregator
from fl_core.compression import CompressionConfig, SparseAggregator
from fl_core.fedavg import FedAvgConfig, run_fedavg
from fl_core.models import LogisticRegression, flatten
from fl_core.rotated import RotatedAggregator
from fl_core.wrapping import WrappingAggregator
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.sparsity import SEED_SIZE, Subset

HOSPITALS = (1, 2, 3, 4, 5)
LENGTH = 24
HUGE = 1.5e308  # finite; two of them overflow binary64
Vector = npt.NDArray[np.float64]
Wrap = Callable[[Aggregator], WrappingAggregator]

WRAPS: dict[str, Wrap] = {
    "rotated": RotatedAggregator,
    "sparse(rotated)": lambda inner: SparseAggregator(RotatedAggregator(inner), CompressionConfig(fraction=0.5)),
    # (without a residual: error feedback under a rotation is refused, tests/fl_core/test_fl_rotation.py)
    "rotated(sparse)": lambda inner: RotatedAggregator(
        SparseAggregator(inner, CompressionConfig(fraction=0.5, error_feedback=False))
    ),
}


def protocol(name: str) -> Aggregator:
    if name == "plain":
        return make_aggregator("plain")
    options = {"random_bytes": InsecureDeterministicRandom(b"withhold")} if name.startswith("secagg") else {}
    return make_aggregator(name, num_clients=len(HOSPITALS), **options)


def updates(
    bad: Mapping[int, Vector] | None = None, without: Collection[int] = (), seed: int = 7
) -> list[ClientUpdate]:
    """Every hospital's benign update (drawn whether or not it takes part), ``bad`` ones replacing theirs."""
    rng = np.random.default_rng(seed)
    benign = {h: rng.normal(0, 0.05, LENGTH) for h in HOSPITALS}
    chosen = {**benign, **(bad or {})}
    return [ClientUpdate(h, chosen[h], 10 + h) for h in HOSPITALS if h not in without]


def sparse_of(aggregator: Aggregator) -> SparseAggregator | None:
    while isinstance(aggregator, WrappingAggregator):
        if isinstance(aggregator, SparseAggregator):
            return aggregator
        aggregator = aggregator.inner
    return None


@pytest.mark.parametrize("name", ["secagg", "plain-quantized", "plain"])
@pytest.mark.parametrize("wrap", sorted(WRAPS))
def test_an_update_whose_rotation_overflows_is_withheld_and_the_others_mean_is_exact(wrap: str, name: str) -> None:
    # Prepare: hospital 3's update is finite, but its rotation leaves binary64
    faulty, reference = WRAPS[wrap](protocol(name)), WRAPS[wrap](protocol(name))
    # Execute: the round with it, and the same round (same rng state) without it
    result = faulty.aggregate(updates({3: np.full(LENGTH, HUGE)}), rng=np.random.default_rng(5))
    alone = reference.aggregate(updates(without={3}), rng=np.random.default_rng(5))
    # Assert: withheld with the reason; the others' mean bit for bit; no residual of it kept
    assert result.mean is not None and alone.mean is not None
    assert result.included == alone.included == frozenset({1, 2, 4, 5})
    np.testing.assert_array_equal(result.mean, alone.mean)
    ((client, reason),) = result.withheld
    assert client == 3 and "overflows binary64" in reason
    sparse, twin = sparse_of(faulty), sparse_of(reference)
    if sparse is not None and twin is not None:
        residual = sparse.residual(3)
        assert residual is None or not np.any(residual)
        for other in (1, 2, 4, 5):
            assert np.array_equal(sparse.residual(other), twin.residual(other))  # type: ignore[arg-type]


def _subset(round_: int, count: int) -> npt.NDArray[np.int64]:
    """The coordinates a SparseAggregator sends in the round whose rng is default_rng(round_)."""
    return Subset.random(np.random.default_rng(round_).bytes(SEED_SIZE), LENGTH, count=count).indices


@pytest.mark.filterwarnings("ignore::secagg.segments.ClippingWarning")  # hospital 3's 1.5e308, clipped
@pytest.mark.parametrize("where", ["sent", "kept"])
@pytest.mark.parametrize("name", ["secagg", "plain-quantized"])
def test_an_update_plus_residual_that_overflows_withholds_the_hospital_and_keeps_its_residual(
    name: str, where: str
) -> None:
    # Prepare: in round 0 hospital 3 keeps HUGE in its residual (outside round 0's subset); in round 1
    # its update adds HUGE where the residual holds it: the overflow lands in what it sends ("sent")
    # or only in what it would keep ("kept": every value it sends is finite)
    count = 6
    first, second = _subset(0, count), _subset(1, count)
    outside_first = np.setdiff1d(np.arange(LENGTH), first)
    assert np.intersect1d(second, outside_first).size and np.setdiff1d(outside_first, second).size
    round0 = np.zeros(LENGTH)
    round0[outside_first] = HUGE
    round1 = np.full(LENGTH, HUGE) if where == "sent" else np.zeros(LENGTH)
    if where == "kept":
        round1[np.setdiff1d(outside_first, second)] = HUGE
    faulty = SparseAggregator(protocol(name), CompressionConfig(coordinates=count))
    reference = SparseAggregator(protocol(name), CompressionConfig(coordinates=count))
    for aggregator in (faulty, reference):
        assert aggregator.aggregate(updates({3: round0}), rng=np.random.default_rng(0)).included == set(HOSPITALS)
    kept = faulty.residual(3)
    assert kept is not None and np.all(np.isfinite(kept))
    kept = kept.copy()
    # Execute: round 1 with hospital 3, and without it; round 2 (benign) with everyone in both
    result = faulty.aggregate(updates({3: round1}, seed=8), rng=np.random.default_rng(1))
    alone = reference.aggregate(updates(without={3}, seed=8), rng=np.random.default_rng(1))
    # Assert: left out, its residual not advanced; the others' mean and residuals bit for bit
    assert result.mean is not None and alone.mean is not None
    assert result.included == alone.included == frozenset({1, 2, 4, 5})
    assert np.array_equal(faulty.residual(3), kept)  # type: ignore[arg-type]
    np.testing.assert_array_equal(result.mean, alone.mean)
    for other in (1, 2, 4, 5):
        assert np.array_equal(faulty.residual(other), reference.residual(other))  # type: ignore[arg-type]
    ((client, reason),) = result.withheld
    assert client == 3 and "residual" in reason and "NaN or infinite" in reason
    # Assert: the next round, with a benign update, it is back, and both runs agree bit for bit
    again = faulty.aggregate(updates(seed=9), rng=np.random.default_rng(2))
    twin = reference.aggregate(updates(seed=9), rng=np.random.default_rng(2))
    assert again.included == twin.included == set(HOSPITALS) and again.withheld == ()
    np.testing.assert_array_equal(again.mean, twin.mean)  # type: ignore[arg-type]


@pytest.mark.parametrize("wrap", sorted(WRAPS))
def test_withholding_more_hospitals_than_the_protocol_survives_skips_the_round_with_the_reason(wrap: str) -> None:
    # Prepare: secagg over 5 hospitals survives one dropout; hospitals 2 and 3 cannot be rotated
    aggregator = WRAPS[wrap](protocol("secagg"))
    bad = {2: np.full(LENGTH, HUGE), 3: np.full(LENGTH, -HUGE)}
    # Execute
    result = aggregator.aggregate(updates(bad), rng=np.random.default_rng(5))
    # Assert: skipped (no mean), both named with the reason in the result and in the skip reason
    assert result.skipped and not result.included
    assert [client for client, _ in result.withheld] == [2, 3]
    assert result.skipped_reason is not None and "withheld" in result.skipped_reason
    assert "client 2: rotation input overflows" in result.skipped_reason and "client 3" in result.skipped_reason
    sparse = sparse_of(aggregator)
    if sparse is not None:  # a skipped round keeps no hospital's residual
        assert all(sparse.residual(h) is None or not np.any(sparse.residual(h)) for h in HOSPITALS)


def test_a_hospital_that_drops_at_join_anyway_is_named_and_keeps_its_stage() -> None:
    # Prepare: hospital 3 cannot be rotated and drops at JOIN anyway (secagg over 5 survives one dropout)
    dropouts = {3: DropoutStage.JOIN}
    faulty, reference = RotatedAggregator(protocol("secagg")), RotatedAggregator(protocol("secagg"))
    # Execute: the same round with hospital 3's update benign (it sends nothing either way)
    result = faulty.aggregate(updates({3: np.full(LENGTH, HUGE)}), dropouts, rng=np.random.default_rng(5))
    benign = reference.aggregate(updates(), dropouts, rng=np.random.default_rng(5))
    # Assert: named; the same session as the benign one (at UPLOAD it would have sent its keys: more bytes)
    assert [client for client, _ in result.withheld] == [3] and benign.withheld == ()
    assert result.included == benign.included == frozenset({1, 2, 4, 5})
    assert result.bytes_per_client == benign.bytes_per_client
    np.testing.assert_array_equal(result.mean, benign.mean)  # type: ignore[arg-type]


def _train(federation: tuple, aggregator: Aggregator, without: int | None = None) -> fedavg.FedAvgResult:  # type: ignore[type-arg]
    clients, x, y = federation
    chosen = [c for c in clients if c.client_id != without]
    model = LogisticRegression(x.shape[1], 2)
    return run_fedavg(model, chosen, aggregator, x, y, FedAvgConfig(rounds=2, learning_rate=0.1, seed=1))


def _compressed() -> Aggregator:
    inner = make_aggregator("secagg+", num_clients=5, random_bytes=InsecureDeterministicRandom(b"fedavg"))
    return SparseAggregator(RotatedAggregator(inner), CompressionConfig(fraction=0.5))


@pytest.mark.parametrize("fault", ["overflows its rotation", "NaN", "wrong length"])
def test_fedavg_with_compression_goes_on_without_a_faulty_hospital_exactly(
    federation: tuple,  # type: ignore[type-arg]
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
) -> None:
    # Prepare: hospital 2's training returns an update the compression cannot encode, or a malformed one
    clients = federation[0]
    real = fedavg._local_update

    def faulty(*args: object) -> Vector:
        update: Vector = real(*args)  # type: ignore[arg-type]
        if args[2] is not clients[2]:
            return update
        if fault == "NaN":
            return np.full_like(update, np.nan)
        return update[:-1] if fault == "wrong length" else np.full_like(update, HUGE)

    reference = _train(federation, _compressed(), without=clients[2].client_id)
    monkeypatch.setattr(fedavg, "_local_update", faulty)
    # Execute
    result = _train(federation, _compressed())
    # Assert: every round goes on without it, named with the reason; the model bit for bit the reference's
    others = tuple(c.client_id for c in clients if c is not clients[2])
    for record in result.rounds:
        assert record.skipped_reason is None and record.included == others
        assert (clients[2].client_id, "UPLOAD") in record.dropouts
        ((client, reason),) = record.rejected
        assert client == clients[2].client_id
        assert {"NaN": "NaN or infinite", "wrong length": "has length"}.get(fault, "overflows binary64") in reason
    assert np.array_equal(flatten(result.params), flatten(reference.params))
