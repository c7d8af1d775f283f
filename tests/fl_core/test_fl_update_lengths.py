"""An update of another length costs only its hospital, and the length is decided by authority.

A hospital refused for its model (another ``model_digest``) or its DP configuration (another
``dp_digest``) is refused for that reason whatever its length: its length never decides the
round's. The round's length is what an authority says (a DP aggregator's configured dimension,
the segment table the server gives, the hospitals that declare the round's model); a hospital of
another length is refused with the reason (``AggregationResult.refused``, at ``JOIN``) and the
others' mean is bit for bit the round's without it. Lengths that still disagree with nothing to
say which is right raise ConfigurationError for the round, blaming neither side.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from fl_core.aggregators import AggregationResult, Aggregator, ClientUpdate, DropoutStage, make_aggregator
from fl_core.aggregators.binding import model_digest
from fl_core.aggregators.paillier import PaillierAggregator
from fl_core.aggregators.quantizer import WeightedQuantizer
from fl_core.compression import CompressionConfig, SparseAggregator
from fl_core.dp import DPAggregator
from fl_core.rotated import RotatedAggregator
from secagg.dp import DPConfig, SeededRandomSource
from secagg.errors import ConfigurationError
from secagg.paillier import insecure_key_sizes_for_testing
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.segments import Segment, SegmentTable
from tests.paillier.helpers import threshold_material

HOSPITALS = (1, 2, 3, 4, 5)
LENGTH = 8
OTHER = 11  # e.g. a PyTorch hospital that built its update with buffers=False, or with them
ROUND_MODEL = model_digest([np.linspace(-1.0, 1.0, LENGTH)])
STALE_MODEL = model_digest([np.linspace(-1.0, 1.0, OTHER)])


def secure(name: str) -> Aggregator:
    return make_aggregator(name, num_clients=len(HOSPITALS), random_bytes=InsecureDeterministicRandom(b"length"))


def paillier() -> Aggregator:
    quantizer = WeightedQuantizer.create(len(HOSPITALS))
    with pytest.warns(UserWarning, match="NOT secure"):
        return PaillierAggregator(quantizer, insecure_small_key=True, key_material=threshold_material(256, 5, 4))


AGGREGATORS: dict[str, Callable[[], Aggregator]] = {
    "plain": lambda: make_aggregator("plain"),
    "plain-quantized": lambda: make_aggregator("plain-quantized", num_clients=len(HOSPITALS)),
    "secagg": lambda: secure("secagg"),
    "secagg+": lambda: secure("secagg+"),
    "paillier": paillier,
    "rotated(secagg)": lambda: RotatedAggregator(secure("secagg")),
    "sparse(secagg)": lambda: SparseAggregator(secure("secagg"), CompressionConfig(fraction=0.5)),
    "sparse(plain)": lambda: SparseAggregator(make_aggregator("plain"), CompressionConfig(fraction=0.5)),
}


@pytest.fixture(autouse=True)
def _small_keys_allowed() -> Iterator[None]:
    with insecure_key_sizes_for_testing():
        yield


def updates(
    lengths: Mapping[int, int] | None = None,
    digests: Mapping[int, bytes | None] | None = None,
    without: Collection[int] = (),
) -> list[ClientUpdate]:
    """Every hospital's update (``LENGTH`` long unless ``lengths`` says), declaring the model
    ``digests`` gives it (none by default)."""
    vectors = {h: np.random.default_rng([11, h]).uniform(-0.1, 0.1, (lengths or {}).get(h, LENGTH)) for h in HOSPITALS}
    return [
        ClientUpdate(h, vectors[h], 10 + h, model_digest=(digests or {}).get(h)) for h in HOSPITALS if h not in without
    ]


def same_round(name: str, faulty: list[ClientUpdate], honest: list[ClientUpdate], **options: Any) -> tuple[
    AggregationResult, AggregationResult
]:  # fmt: skip
    """The round with the faulty hospital and the same round (same rng state) without it."""
    result = AGGREGATORS[name]().aggregate(faulty, rng=np.random.default_rng(5), **options)
    alone = AGGREGATORS[name]().aggregate(honest, rng=np.random.default_rng(5), **options)
    return result, alone


def assert_without(result: AggregationResult, alone: AggregationResult, hospital: int) -> None:
    assert result.mean is not None and alone.mean is not None
    assert result.included == alone.included == frozenset(HOSPITALS) - {hospital}
    np.testing.assert_array_equal(result.mean, alone.mean)
    assert result.withheld == ()


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
@pytest.mark.parametrize("hospital", [1, 3])
@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_a_hospital_of_another_model_is_refused_for_it_whatever_its_length(name: str, hospital: int) -> None:
    # Prepare: the hospital trained from another (longer) model and says so; the others declare nothing
    faulty = updates({hospital: OTHER}, {hospital: STALE_MODEL})
    # Execute
    result, alone = same_round(name, faulty, updates(without={hospital}), model_digest=ROUND_MODEL)
    # Assert: refused for its model (not its length); the others' mean is the round's without it
    assert_without(result, alone, hospital)
    ((client, reason),) = result.refused
    assert client == hospital and "another model" in reason and STALE_MODEL.hex()[:16] in reason


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
@pytest.mark.parametrize("hospital", [1, 3])
@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_a_hospital_of_another_length_than_the_declared_models_is_refused_with_the_reason(
    name: str, hospital: int
) -> None:
    # Prepare: the others declare the round's model; the faulty hospital declares none and sends 11 values
    declared = {h: ROUND_MODEL for h in HOSPITALS if h != hospital}
    faulty = updates({hospital: OTHER}, declared)
    # Execute
    result, alone = same_round(name, faulty, updates(digests=declared, without={hospital}), model_digest=ROUND_MODEL)
    # Assert: refused for its length, by the declaring hospitals' authority; the others go on exactly
    assert_without(result, alone, hospital)
    ((client, reason),) = result.refused
    assert client == hospital and f"{OTHER} values" in reason and f"the round's model has {LENGTH}" in reason


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
@pytest.mark.parametrize("name", ["plain-quantized", "secagg", "secagg+", "paillier", "sparse(secagg)"])
def test_the_servers_segment_table_decides_the_length(name: str) -> None:
    # Prepare: nobody declares a model; the server's segment table covers LENGTH coordinates
    table = SegmentTable((Segment("weights", LENGTH - 2), Segment("bias", 2)))
    faulty = updates({1: OTHER})
    # Execute
    result, alone = same_round(name, faulty, updates(without={1}), segments=table)
    # Assert: hospital 1 (first, so the old code took its length as the round's) is refused, named
    assert_without(result, alone, 1)
    ((client, reason),) = result.refused
    assert client == 1 and f"{OTHER} values" in reason and f"the segments cover {LENGTH}" in reason


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
@pytest.mark.parametrize("hospital", [1, 3])
@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_lengths_nothing_decides_raise_without_blaming_one_side(name: str, hospital: int) -> None:
    # Prepare: nobody declares a model, no table: 11 values from one hospital, 8 from the others
    faulty = updates({hospital: OTHER})
    # Execute / Assert: undecidable, for the round; the message names both lengths and what to pass
    with pytest.raises(ConfigurationError) as caught:
        AGGREGATORS[name]().aggregate(faulty, rng=np.random.default_rng(5))
    message = str(caught.value)
    assert "like client" not in message and "expected" not in message
    assert f"{LENGTH} values" in message and f"{OTHER} values" in message and "model_digest" in message
    others = ", ".join(str(h) for h in HOSPITALS if h != hospital)
    assert f"({LENGTH} values: clients {others}; {OTHER} values: client {hospital})" in message  # by length


# --- DP: the configured dimension decides ------------------------------------------------------


def dp_aggregator(name: str) -> DPAggregator:
    config = DPConfig(epsilon=3.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=2)
    options = {"random_bytes": InsecureDeterministicRandom(b"dp")} if name.startswith("secagg") else {}
    aggregator = make_aggregator(
        name, num_clients=5, dp=config, dimension=LENGTH, max_samples_per_client=100,
        noise_source=SeededRandomSource(bytes(32)), **options,
    )  # fmt: skip
    assert isinstance(aggregator, DPAggregator)
    return aggregator


@pytest.mark.parametrize("hospital", [1, 3])
@pytest.mark.parametrize("name", ["plain-quantized", "secagg"])
def test_dp_a_hospital_of_another_dimension_is_refused_and_the_round_charged_once(name: str, hospital: int) -> None:
    # Prepare: nobody declares a model; the DP aggregator is configured for LENGTH coordinates
    faulty, reference = dp_aggregator(name), dp_aggregator(name)
    # Execute: the round with it, and the same round (same noise draws) in which it never joins
    result = faulty.aggregate(updates({hospital: OTHER}), rng=np.random.default_rng(5))
    dropped = reference.aggregate(updates(), {hospital: DropoutStage.JOIN}, rng=np.random.default_rng(5))
    # Assert: refused with the reason, released without it bit for bit, charged once
    assert result.mean is not None and dropped.mean is not None
    assert result.included == dropped.included == frozenset(HOSPITALS) - {hospital}
    np.testing.assert_array_equal(result.mean, dropped.mean)
    ((client, reason),) = result.refused
    assert client == hospital and f"{OTHER} values" in reason and f"configured for {LENGTH}" in reason
    assert faulty.accountant.num_releases == reference.accountant.num_releases == 1


def test_dp_a_hospital_of_another_dp_configuration_is_refused_for_it_whatever_its_length() -> None:
    # Prepare: hospital 1 computed under another DP configuration, with another dimension
    faulty, reference = dp_aggregator("plain-quantized"), dp_aggregator("plain-quantized")
    bad = [
        ClientUpdate(u.client_id, u.vector, u.num_samples, dp_digest=bytes([9]) * 32) if u.client_id == 1 else u
        for u in updates({1: OTHER})
    ]
    # Execute
    result = faulty.aggregate(bad, rng=np.random.default_rng(5))
    dropped = reference.aggregate(updates(), {1: DropoutStage.JOIN}, rng=np.random.default_rng(5))
    # Assert: refused for its DP configuration only
    assert result.mean is not None and dropped.mean is not None
    np.testing.assert_array_equal(result.mean, dropped.mean)
    ((client, reason),) = result.refused
    assert client == 1 and "another DP configuration" in reason and "values" not in reason


def test_the_encoding_withholds_an_update_of_another_length_than_the_rounds() -> None:
    # Prepare: a direct caller of encode_round (no table: the first update's length is the round's)
    quantizer = WeightedQuantizer.create(len(HOSPITALS))
    round_updates = updates({3: OTHER})
    # Execute
    encoded = quantizer.encode_round(round_updates, {}, np.random.default_rng(5))
    # Assert: hospital 3 is withheld (silent at UPLOAD, a stand-in of the round's shape), never encoded as sent
    assert encoded.withheld == ((3, f"its update has {OTHER} values, the round's {LENGTH}"),)
    assert encoded.stages == {3: DropoutStage.UPLOAD}
    assert {len(encoding) for encoding in encoded.encodings.values()} == {quantizer.encoded_length(LENGTH)}


# --- a hospital's own declaration gives its length no authority over the others ----------------


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
@pytest.mark.parametrize("hospital", [1, 3])
@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_a_hospital_declaring_the_rounds_model_with_another_length_costs_only_itself(name: str, hospital: int) -> None:
    # Prepare: every hospital declares the round's model (as run_fedavg's do); the faulty one (the digest is
    # no secret: the server sent it the model) declares it too but sends 11 values
    declared = dict.fromkeys(HOSPITALS, ROUND_MODEL)
    faulty = updates({hospital: OTHER}, declared)
    # Execute
    result, alone = same_round(name, faulty, updates(digests=declared, without={hospital}), model_digest=ROUND_MODEL)
    # Assert: refused for its length (more than half of the declaring hospitals send LENGTH); the others go on
    assert_without(result, alone, hospital)
    ((client, reason),) = result.refused
    assert client == hospital and f"{OTHER} values" in reason and f"the round's model has {LENGTH}" in reason


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
@pytest.mark.parametrize("hospital", [1, 3])
@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_a_lone_declaring_hospital_does_not_get_the_others_refused(name: str, hospital: int) -> None:
    # Prepare: only the faulty hospital declares the round's model, with 11 values; the 4 others declare
    # nothing (taken as trained from the round's model) and send LENGTH
    faulty = updates({hospital: OTHER}, {hospital: ROUND_MODEL})
    # Execute / Assert: its length is not the round's because it alone says so: nothing decides, for the round,
    # and no other hospital is refused (the old code refused the 4 others; plain released its update alone)
    with pytest.raises(ConfigurationError) as caught:
        AGGREGATORS[name]().aggregate(faulty, rng=np.random.default_rng(5), model_digest=ROUND_MODEL)
    message = str(caught.value)
    assert f"{LENGTH} values" in message and f"{OTHER} values" in message and "model_digest" in message


def test_the_servers_one_segment_table_decides_a_rotated_rounds_length() -> None:
    # Prepare: a rotated round takes one flat float segment; the server's covers LENGTH coordinates and
    # nobody declares a model; hospital 1 (first) sends 11 values
    table = SegmentTable((Segment("weights", LENGTH),))
    faulty = updates({1: OTHER})
    # Execute: the table is the authority, as for every other aggregator (the rotated wrapper ignored it
    # and raised for the round: nothing decided between 8 and 11)
    result, alone = same_round("rotated(secagg)", faulty, updates(without={1}), segments=table)
    # Assert: hospital 1 is refused, named, the others' mean is the round's without it
    assert_without(result, alone, 1)
    ((client, reason),) = result.refused
    assert client == 1 and f"{OTHER} values" in reason and f"the segments cover {LENGTH}" in reason


def test_a_rotated_round_whose_hospitals_all_miss_the_tables_length_is_refused() -> None:
    # Prepare: every hospital sends 11 values, the server's one-segment table covers LENGTH
    table = SegmentTable((Segment("weights", LENGTH),))
    # Execute / Assert: refused for the round (the wrapper rotated 11 values under an 8-value table)
    with pytest.raises(ConfigurationError, match=f"the segments cover {LENGTH}"):
        AGGREGATORS["rotated(secagg)"]().aggregate(
            updates(dict.fromkeys(HOSPITALS, OTHER)), rng=np.random.default_rng(5), segments=table
        )


# --- Edges of the authority (mutation audit: each test fails on one mutant of check_lengths) -----


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
@pytest.mark.parametrize("name", ["plain-quantized", "secagg", "sparse(secagg)"])
def test_a_segment_table_no_hospital_matches_raises_for_the_round(name: str) -> None:
    # Prepare: the server's table covers LENGTH coordinates; every hospital sends OTHER values
    table = SegmentTable((Segment("weights", LENGTH),))
    # Execute / Assert: refused for the round (the server's table or every hospital is wrong), naming both
    with pytest.raises(ConfigurationError, match=f"cover {LENGTH} coordinates, but no hospital's update has that"):
        AGGREGATORS[name]().aggregate(
            updates(dict.fromkeys(HOSPITALS, OTHER)), rng=np.random.default_rng(5), segments=table
        )


# --- a refused hospital is reported once: its update is never encoded ---------------------------


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
@pytest.mark.parametrize("why", ["model", "length"])
@pytest.mark.parametrize("name", sorted(AGGREGATORS))
def test_a_refused_hospital_is_not_also_withheld_for_what_it_would_have_sent(name: str, why: str) -> None:
    # Prepare: hospital 3 is refused (another model, or another length) and also declares more samples
    # than the public bound: its update never joins, so the bound is never its reason
    declared = dict.fromkeys(HOSPITALS, ROUND_MODEL) | ({3: STALE_MODEL} if why == "model" else {})
    faulty = [
        ClientUpdate(u.client_id, u.vector, 10**9, model_digest=u.model_digest) if u.client_id == 3 else u
        for u in updates({3: OTHER} if why == "length" else {}, declared)
    ]
    # Execute
    result, alone = same_round(name, faulty, updates(digests=declared, without={3}), model_digest=ROUND_MODEL)
    # Assert: refused once, with its one reason; not withheld (the old code encoded its update and
    # withheld it as well, "1000000000 samples exceeds the declared bound")
    assert_without(result, alone, 3)
    assert [client for client, _ in result.refused] == [3]


@pytest.mark.parametrize("name", ["plain-quantized", "secagg"])
def test_dp_a_refused_hospital_is_not_also_withheld(name: str) -> None:
    # Prepare: hospital 3 sends another dimension and more samples than max_samples_per_client
    faulty, reference = dp_aggregator(name), dp_aggregator(name)
    bad = [ClientUpdate(u.client_id, u.vector, 10**9) if u.client_id == 3 else u for u in updates({3: OTHER})]
    # Execute
    result = faulty.aggregate(bad, rng=np.random.default_rng(5))
    dropped = reference.aggregate(updates(), {3: DropoutStage.JOIN}, rng=np.random.default_rng(5))
    # Assert: refused for its length only, the release is the round's without it
    assert result.mean is not None and dropped.mean is not None
    np.testing.assert_array_equal(result.mean, dropped.mean)
    assert [client for client, _ in result.refused] == [3] and result.withheld == ()


def test_a_dp_dimension_no_hospital_matches_raises_for_the_round() -> None:
    # Prepare: the DP aggregator is configured for LENGTH coordinates; every hospital sends OTHER
    aggregator = dp_aggregator("plain-quantized")
    # Execute / Assert: refused for the round before any charge
    with pytest.raises(ConfigurationError, match=f"configured for {LENGTH} coordinates, but no hospital's"):
        aggregator.aggregate(updates(dict.fromkeys(HOSPITALS, OTHER)), rng=np.random.default_rng(5))
    assert aggregator.accountant.num_releases == 0


@pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")
@pytest.mark.parametrize("name", ["plain-quantized", "secagg", "sparse(secagg)"])
def test_every_hospital_refused_for_its_model_is_no_length_error_under_a_table(name: str) -> None:
    # Prepare: every hospital trained from another model (and sends its length); the table is the round's
    table = SegmentTable((Segment("weights", LENGTH),))
    stale = updates(dict.fromkeys(HOSPITALS, OTHER), dict.fromkeys(HOSPITALS, STALE_MODEL))
    # Execute
    result = AGGREGATORS[name]().aggregate(
        stale, rng=np.random.default_rng(5), segments=table, model_digest=ROUND_MODEL
    )
    # Assert: each refused for its model alone; the round is skipped, not raised for a length nobody left sends
    assert result.mean is None
    assert [client for client, _ in result.refused] == list(HOSPITALS)
    assert all("another model" in reason and "values" not in reason for _, reason in result.refused)


def test_a_rotated_round_never_rotates_a_refused_hospitals_update() -> None:
    # Prepare: hospital 1 trained from another model and sends values whose rotation overflows binary64
    huge = [
        ClientUpdate(1, np.full(LENGTH, 1e308), 11, model_digest=STALE_MODEL) if u.client_id == 1 else u
        for u in updates()
    ]
    # Execute
    result, alone = same_round("rotated(secagg)", huge, updates(without={1}), model_digest=ROUND_MODEL)
    # Assert: refused for its model only (a stand-in handed on), never withheld for an overflow of its values
    assert_without(result, alone, 1)
    ((client, reason),) = result.refused
    assert client == 1 and "another model" in reason


def sparse_with_feedback() -> SparseAggregator:
    return SparseAggregator(make_aggregator("plain"), CompressionConfig(fraction=0.5, error_feedback=True))


def test_a_refused_hospitals_old_residual_of_another_dimension_does_not_stop_the_round() -> None:
    # Prepare: hospital 1 alone ran a round at OTHER coordinates (its residual has OTHER); it comes back
    # still on that model while the others declare the round's (LENGTH)
    aggregator = sparse_with_feedback()
    aggregator.aggregate(updates(dict.fromkeys(HOSPITALS, OTHER), without={2, 3, 4, 5}), rng=np.random.default_rng(4))
    declared = {h: ROUND_MODEL for h in HOSPITALS if h != 1} | {1: STALE_MODEL}
    # Execute
    result = aggregator.aggregate(
        updates({1: OTHER}, declared), rng=np.random.default_rng(5), model_digest=ROUND_MODEL
    )
    # Assert: hospital 1 is refused for its model; its old residual is no reason to stop the others' round
    assert result.mean is not None and result.included == frozenset(HOSPITALS) - {1}
    ((client, reason),) = result.refused
    assert client == 1 and "another model" in reason


def test_a_refused_hospital_gets_no_residual_from_the_round() -> None:
    # Prepare: hospital 1 is refused for its model in a round at LENGTH coordinates
    aggregator = sparse_with_feedback()
    declared = {h: ROUND_MODEL for h in HOSPITALS if h != 1} | {1: STALE_MODEL}
    aggregator.aggregate(updates(digests=declared), rng=np.random.default_rng(5), model_digest=ROUND_MODEL)
    # Execute: it then rounds alone with a new hospital at OTHER coordinates (its first residual)
    later = [ClientUpdate(h, np.full(OTHER, 0.01 * h), 10) for h in (1, 6)]
    result = aggregator.aggregate(later, rng=np.random.default_rng(6))
    # Assert: nothing of the round it was refused in was kept for it: no residual of LENGTH to refuse
    assert result.mean is not None and result.included == frozenset({1, 6})


def test_the_encoding_with_a_table_takes_the_tables_length_not_the_first_updates() -> None:
    # Prepare: a direct caller of encode_round with the round's table; hospital 1 (first) sends OTHER values
    quantizer = WeightedQuantizer.create(len(HOSPITALS))
    table = quantizer.check_table(SegmentTable((Segment("weights", LENGTH, clip=1.0),)))
    # Execute
    encoded = quantizer.encode_round(updates({1: OTHER}), {}, np.random.default_rng(5), table)
    # Assert: hospital 1 is withheld, the others encoded at the table's length
    assert encoded.withheld == ((1, f"its update has {OTHER} values, the round's {LENGTH}"),)
    assert {len(encoding) for encoding in encoded.encodings.values()} == {quantizer.encoded_length(LENGTH, table)}
