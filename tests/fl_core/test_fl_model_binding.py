"""The model and the run are bound into every fl_core session.

A hospital declares the digest of the global model it trained from
(``ClientUpdate.model_digest``, :func:`fl_core.aggregators.binding.model_digest`); an
aggregator refuses, as a dropout with a reason in the round's result, every hospital
whose declared model is not the round's, and binds the round's model digest and its
own run id into the session descriptor (and into Paillier's round context), so two
runs or two aggregator instances never share a session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

import fl_core.aggregators.paillier as paillier_module
from fl_core import FedAvgConfig, LogisticRegression, flatten, run_fedavg
from fl_core.aggregators import AggregationResult, ClientUpdate, DropoutStage, WeightedQuantizer, make_aggregator
from fl_core.aggregators.binding import model_digest
from fl_core.aggregators.masking import MaskingAggregator
from fl_core.aggregators.paillier import PaillierAggregator
from fl_core.aggregators.plain import QuantizedPlainAggregator
from fl_core.data import ClientData
from fl_core.dp import DPAggregator
from secagg.dp import DPConfig
from secagg.dp.sampler import SeededRandomSource
from secagg.errors import ConfigurationError
from secagg.masking import SEMI_HONEST
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.segments import SegmentTable
from tests.paillier.helpers import threshold_material

GLOBAL = [np.linspace(-1.0, 1.0, 12).reshape(6, 2), np.zeros(2)]
ROUND_MODEL = model_digest(GLOBAL)
STALE_MODEL = model_digest([GLOBAL[0] * 0.5, GLOBAL[1]])
LENGTH = 14


def declared(
    stale: frozenset[int] | set[int] = frozenset(), sizes: tuple[int, ...] = (30, 5, 120, 64, 9)
) -> list[ClientUpdate]:
    """One update per hospital 0..4, each declaring the round's model but ``stale`` ones."""
    rng = np.random.default_rng(0)
    return [
        ClientUpdate(k, rng.uniform(-0.4, 0.4, LENGTH), n, model_digest=STALE_MODEL if k in stale else ROUND_MODEL)
        for k, n in enumerate(sizes)
    ]


def paillier(**options: Any) -> PaillierAggregator:
    return PaillierAggregator(
        WeightedQuantizer.create(5), insecure_small_key=True, key_material=threshold_material(512, 5, 4),
        random_bytes=InsecureDeterministicRandom(3), **options,
    )  # fmt: skip


def secure(name: str) -> Any:
    if name == "paillier":
        return paillier()
    if name.startswith("plain"):
        return make_aggregator(name, num_clients=5)
    return make_aggregator(name, num_clients=5, random_bytes=InsecureDeterministicRandom(1))


def test_model_digest_depends_on_every_value_shape_and_dtype() -> None:
    # Execute
    same = model_digest([p.copy() for p in GLOBAL])
    others = {
        model_digest([GLOBAL[0], GLOBAL[1] + 1e-12]),
        model_digest([GLOBAL[0].reshape(2, 6), GLOBAL[1]]),
        model_digest([GLOBAL[0].astype(np.float32), GLOBAL[1]]),
        model_digest([flatten(GLOBAL)]),
        model_digest(GLOBAL[::-1]),
    }
    # Assert
    assert same == ROUND_MODEL and len(ROUND_MODEL) == 32
    assert len(others) == 5 and ROUND_MODEL not in others


def test_model_digest_refuses_what_is_not_a_model() -> None:
    with pytest.raises(ConfigurationError):
        model_digest([np.array(["a", "b"])])
    with pytest.raises(ConfigurationError):
        model_digest("weights")  # type: ignore[arg-type]


@pytest.mark.parametrize("digest", [b"", bytes(31), bytes(33), "00" * 32])
def test_a_client_update_refuses_a_model_digest_that_is_not_32_bytes(digest: Any) -> None:
    with pytest.raises(ConfigurationError, match="model_digest"):
        ClientUpdate(1, np.zeros(3), 1, model_digest=digest)


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
@pytest.mark.parametrize("name", ["plain", "plain-quantized", "secagg", "secagg+", "paillier"])
def test_a_hospital_that_trained_from_another_model_is_refused_and_costs_only_itself(name: str) -> None:
    # Prepare: hospital 2 trained from a stale global model
    updates = declared(stale=frozenset({2}))
    honest = [u for u in updates if u.client_id != 2]
    reference = make_aggregator("plain-quantized", num_clients=5)
    # Execute
    result = secure(name).aggregate(updates, rng=np.random.default_rng(4), model_digest=ROUND_MODEL)
    expected = reference.aggregate(honest, rng=np.random.default_rng(4))
    # Assert: the round goes on with the other four; hospital 2 is refused with a reason
    assert result.mean is not None and expected.mean is not None
    assert result.included == frozenset({0, 1, 3, 4})
    assert [client for client, _ in result.refused] == [2]
    assert "model" in result.refused[0][1] and STALE_MODEL.hex()[:16] in result.refused[0][1]
    if name == "plain":
        np.testing.assert_allclose(result.mean, expected.mean, atol=WeightedQuantizer.create(5).config.step)
    else:
        np.testing.assert_array_equal(result.mean, expected.mean)


def test_without_a_reference_the_model_most_hospitals_declare_is_the_rounds() -> None:
    # Prepare: hospitals 1 and 3 declare another model than the other three
    updates = declared(stale=frozenset({1, 3}))
    # Execute
    result = make_aggregator("plain-quantized", num_clients=5).aggregate(updates, rng=np.random.default_rng(0))
    # Assert
    assert result.included == frozenset({0, 2, 4})
    assert [client for client, _ in result.refused] == [1, 3]


def test_without_a_reference_and_no_majority_model_the_round_is_skipped_with_the_reason() -> None:
    # Prepare: three models among four declaring hospitals, none held by more than half
    updates = declared(stale=frozenset({1, 3}))
    updates[4] = ClientUpdate(4, updates[4].vector, 9, model_digest=bytes(range(32)))
    updates[0] = ClientUpdate(0, updates[0].vector, 30)  # declares nothing
    # Execute
    result = make_aggregator("secagg", num_clients=5).aggregate(updates, rng=np.random.default_rng(0))
    # Assert
    assert result.mean is None and result.skipped_reason is not None
    assert "model" in result.skipped_reason and "model_digest=" in result.skipped_reason


def test_hospitals_that_declare_no_model_are_taken_as_trained_from_the_rounds() -> None:
    updates = [ClientUpdate(u.client_id, u.vector, u.num_samples) for u in declared()]
    result = make_aggregator("plain-quantized", num_clients=5).aggregate(
        updates, rng=np.random.default_rng(0), model_digest=ROUND_MODEL
    )
    assert result.included == frozenset(range(5)) and result.refused == ()


def test_a_reference_that_is_not_32_bytes_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="model_digest"):
        make_aggregator("plain-quantized", num_clients=5).aggregate(
            declared(), rng=np.random.default_rng(0), model_digest=bytes(8)
        )


def round_config(agg: MaskingAggregator, **kwargs: Any) -> bytes:
    table = agg.quantizer.check_table(agg.schedule.table(LENGTH))
    return agg.round_config((1, 2, 3, 4, 5), LENGTH, table, 1, **kwargs).digest()


def test_two_masking_aggregators_never_share_a_round_session() -> None:
    # Prepare: the same quantizer, the same (deterministic) secrets, semi-honest: no identity keys
    quantizer = WeightedQuantizer.create(5)
    twins = [
        MaskingAggregator(quantizer, mode=SEMI_HONEST, random_bytes=InsecureDeterministicRandom(1)) for _ in range(2)
    ]
    # Execute
    configs = [round_config(agg) for agg in twins]
    # Assert: each instance is its own run
    assert configs[0] != configs[1]
    assert twins[0].run_id != twins[1].run_id


def test_a_run_id_given_by_the_caller_is_bound_and_checked() -> None:
    quantizer = WeightedQuantizer.create(5)
    runs = [MaskingAggregator(quantizer, mode=SEMI_HONEST, run_id=run) for run in (7, 7, 8)]
    configs = [round_config(agg) for agg in runs]
    assert configs[0] == configs[1] != configs[2]
    for bad in (-1, 1 << 64, True, 1.0):
        with pytest.raises(ConfigurationError, match="run_id"):
            MaskingAggregator(quantizer, run_id=bad)


def test_the_rounds_model_is_bound_into_the_masking_session() -> None:
    agg = MaskingAggregator(WeightedQuantizer.create(5), mode=SEMI_HONEST, run_id=7)
    assert round_config(agg, model_digest=ROUND_MODEL) != round_config(agg, model_digest=STALE_MODEL)
    assert round_config(agg, model_digest=ROUND_MODEL) != round_config(agg)


class Recorded:
    """Captures every SessionParameters the Paillier aggregator builds."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.params: list[Any] = []
        original = paillier_module.SessionParameters

        def record(*args: Any, **kwargs: Any) -> Any:
            made = original(*args, **kwargs)
            self.params.append(made)
            return made

        monkeypatch.setattr(paillier_module, "SessionParameters", record)


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
def test_two_paillier_aggregators_never_share_a_round_context(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: two aggregators over the same key (two runs of one federation)
    recorded = Recorded(monkeypatch)
    # Execute: round 1 of each
    for agg in (paillier(), paillier()):
        agg.aggregate(declared(), rng=np.random.default_rng(0), model_digest=ROUND_MODEL)
    # Assert
    first, second = recorded.params
    assert first.context != second.context
    assert first.descriptor != second.descriptor


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
def test_the_paillier_round_context_binds_the_run_and_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = Recorded(monkeypatch)
    for model in (ROUND_MODEL, STALE_MODEL):
        agg = paillier(run_id=5)
        updates = [ClientUpdate(u.client_id, u.vector, u.num_samples, model_digest=model) for u in declared()]
        agg.aggregate(updates, rng=np.random.default_rng(0), model_digest=model)
    paillier(run_id=5).aggregate(declared(), rng=np.random.default_rng(0), model_digest=ROUND_MODEL)
    first, second, again = recorded.params
    assert first.context != second.context and first.descriptor != second.descriptor
    assert first.context == again.context


class Substituting:
    """Stands in for a server that gave hospital 2 another model: its update declares it."""

    name = "substituting"

    def __init__(self) -> None:
        self.inner = QuantizedPlainAggregator(WeightedQuantizer.create(5))
        self.seen: list[tuple[bytes | None, list[bytes | None]]] = []

    def aggregate(
        self,
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage] | None = None,
        *,
        rng: np.random.Generator,
        segments: SegmentTable | None = None,
        model_digest: bytes | None = None,
    ) -> AggregationResult:
        self.seen.append((model_digest, [u.model_digest for u in updates]))
        changed = [
            ClientUpdate(u.client_id, u.vector, u.num_samples, model_digest=STALE_MODEL) if u.client_id == 2 else u
            for u in updates
        ]
        return self.inner.aggregate(changed, dropouts, rng=rng, segments=segments, model_digest=model_digest)


def test_fedavg_binds_the_global_model_and_reports_a_refused_hospital(
    federation: tuple[list[ClientData], np.ndarray, np.ndarray],
) -> None:
    # Prepare
    clients, test_x, test_y = federation
    model = LogisticRegression(test_x.shape[1])
    start = model.init(np.random.default_rng(0))
    aggregator = Substituting()
    # Execute
    result = run_fedavg(
        model, clients, aggregator, test_x, test_y, FedAvgConfig(rounds=2, seed=1), initial_params=start
    )
    # Assert: every hospital declares the model it received, the server passes the same digest
    reference, declared_digests = aggregator.seen[0]
    assert reference == model_digest(start)
    assert declared_digests == [reference] * len(clients)
    assert aggregator.seen[1][0] != reference  # round 2 trains from the new model
    for record in result.rounds:
        assert 2 not in record.included and (2, "JOIN") in record.dropouts
        assert [client for client, _ in record.rejected] == [2]


def dp_aggregator() -> DPAggregator:
    aggregator = make_aggregator(
        "plain-quantized", num_clients=5, dimension=LENGTH, max_samples_per_client=100,
        dp=DPConfig(epsilon=3.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=4),
        noise_source=SeededRandomSource(bytes(32)),
    )  # fmt: skip
    assert isinstance(aggregator, DPAggregator)
    return aggregator


def test_a_dp_round_refuses_a_stale_hospital_before_it_is_charged() -> None:
    # Prepare: h = 4 of 5; one stale hospital leaves 4 contributors, two leave 3
    aggregator = dp_aggregator()
    # Execute
    sizes = (10,) * 5
    one = aggregator.aggregate(declared({2}, sizes), rng=np.random.default_rng(0), model_digest=ROUND_MODEL)
    two = aggregator.aggregate(declared({1, 2}, sizes), rng=np.random.default_rng(0), model_digest=ROUND_MODEL)
    # Assert: released without hospital 2; then skipped (not charged, never an error), both refusals reported
    assert one.mean is not None and one.included == frozenset({0, 1, 3, 4})
    assert [client for client, _ in one.refused] == [2]
    assert two.mean is None and "must be skipped" in (two.skipped_reason or "")
    assert [client for client, _ in two.refused] == [1, 2]
    assert aggregator.accountant.num_releases == 1


class DroppingOneUpload:
    """Stands in for an aggregator that dropped hospital 3's message (as Paillier does with an upload
    that fails its checks): the sum goes on without it and ``errors`` names it."""

    name = "dropping"

    def __init__(self) -> None:
        self.inner = QuantizedPlainAggregator(WeightedQuantizer.create(5))

    def aggregate(
        self,
        updates: Sequence[ClientUpdate],
        dropouts: Mapping[int, DropoutStage] | None = None,
        *,
        rng: np.random.Generator,
        segments: SegmentTable | None = None,
        model_digest: bytes | None = None,
    ) -> AggregationResult:
        kept = [u for u in updates if u.client_id != 3]
        result = self.inner.aggregate(kept, dropouts, rng=rng, segments=segments, model_digest=model_digest)
        return replace(result, errors={3: "upload dropped: bad ciphertext"})


def test_fedavg_records_the_messages_an_aggregator_dropped(
    federation: tuple[list[ClientData], np.ndarray, np.ndarray],
) -> None:
    # Prepare
    clients, test_x, test_y = federation
    model = LogisticRegression(test_x.shape[1])
    # Execute
    result = run_fedavg(model, clients, DroppingOneUpload(), test_x, test_y, FedAvgConfig(rounds=2, seed=1))
    # Assert: each round's record names hospital 3 with the aggregator's reason
    for record in result.rounds:
        assert 3 not in record.included
        assert (3, "upload dropped: bad ciphertext") in record.rejected
