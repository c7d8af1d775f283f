"""Secure range discovery: the clip of every tensor from a securely summed magnitude histogram,
in one aggregate_models call (issue 14, item 2: "the BatchNorm case gives the weighted mean
within one quantization step")."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from fl_core.aggregators import ClientUpdate, DropoutStage, make_aggregator  # noqa: E402
from secagg.errors import OverflowDetectedError  # noqa: E402
from secagg.integrations import keras as keras_adapter  # noqa: E402
from secagg.integrations._ranges import discover_clips  # noqa: E402
from secagg.integrations.torch import aggregate_models  # noqa: E402
from secagg.ranges import RangeDiscovery  # noqa: E402
from secagg.segments import ClippingWarning, Segment, SegmentTable  # noqa: E402
from tests.masking import test_session_binding as binding  # noqa: E402

from .paillier_keys import material  # noqa: E402
from .test_integrations_torch_clipping import HOSPITALS, _batchnorm_states, _weighted_mean  # noqa: E402


def test_batchnorm_with_20_hospitals_is_the_weighted_mean_within_a_step_in_one_call() -> None:
    # Prepare: BatchNorm1d state dicts of 20 hospitals (running_var update ~7.7), no clips given
    global_state, locals_, counts = _batchnorm_states()
    aggregator = make_aggregator("secagg", num_clients=HOSPITALS)
    # Execute: ONE call, no ClippingWarning allowed
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClippingWarning)
        outcome = aggregate_models(global_state, locals_, aggregator, num_samples=counts, rng=np.random.default_rng(1))
    # Assert: nothing clipped, every tensor within one step of its discovered clip, the counter exact
    assert outcome.state_dict is not None and outcome.result.clipping is not None
    assert outcome.result.clipped_fraction == 0.0
    assert outcome.state_dict["num_batches_tracked"].dtype == torch.int64
    assert int(outcome.state_dict["num_batches_tracked"]) == 20
    clips = outcome.result.clipping.table.clips
    assert clips["running_var"] == 16.0 and clips["running_mean"] == 4.0  # update magnitudes < 8.9, < 3
    qmax = aggregator.quantizer.config.qmax
    for name in ("weight", "bias", "running_mean", "running_var"):
        clip = clips[name]
        assert clip is not None
        got = outcome.state_dict[name].double().numpy()
        np.testing.assert_allclose(got, _weighted_mean(locals_, counts, name), rtol=1e-6, atol=clip / qmax)
    # the discovery round was a round of its own (its own descriptor), before the aggregation, reported
    assert aggregator._rounds == 2
    assert outcome.discovery is not None and outcome.discovery.bytes_per_client > 0
    assert outcome.discovery.included == outcome.result.included


@pytest.mark.parametrize("largest", [1.8, 1e3, 1e-4])
def test_a_mean_of_values_up_to_largest_comes_back_within_a_step_in_one_call(largest: float) -> None:
    # Prepare: three hospitals whose updates reach `largest` (global model at zero)
    rng = np.random.default_rng(3)
    values = [rng.uniform(-largest, largest, 64) for _ in range(3)]
    for v in values:
        v[0] = largest
    global_state = {"w": torch.zeros(64, dtype=torch.float64)}
    locals_ = [{"w": torch.from_numpy(v)} for v in values]
    counts = [5, 17, 9]
    aggregator = make_aggregator("secagg", num_clients=3)
    # Execute
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClippingWarning)
        outcome = aggregate_models(global_state, locals_, aggregator, num_samples=counts, rng=np.random.default_rng(0))
    # Assert: the clip is the power of two just above the largest magnitude; within one step
    assert outcome.state_dict is not None and outcome.result.clipping is not None
    clip = outcome.result.clipping.table.clips["w"]
    assert clip == 2.0 ** (math.floor(math.log2(largest)) + 1)
    step = clip / aggregator.quantizer.config.qmax
    assert step <= 2 * largest / aggregator.quantizer.config.qmax  # precision follows the values
    expected = np.array(counts, dtype=np.float64) @ np.stack(values) / sum(counts)
    np.testing.assert_allclose(outcome.state_dict["w"].numpy(), expected, rtol=0, atol=step)


@pytest.mark.parametrize("name", ["plain-quantized", "secagg", "secagg+", "paillier"])
def test_the_histogram_summed_through_the_aggregator_equals_the_plain_histogram(name: str) -> None:
    # Prepare: four hospitals, two float segments with very different scales and an integer one
    table = SegmentTable((Segment("small", 50), Segment("large", 30), Segment("steps", 2, integer=True)))
    rng = np.random.default_rng(7)
    updates = [
        ClientUpdate(k, np.concatenate([rng.normal(0, 1e-3, 50), rng.normal(0, 300, 30), [1.0, 2.0]]), 10 + k)
        for k in range(4)
    ]
    updates[1].vector[:5] = 0.0
    options = {"key_material": material(4, 3)} if name == "paillier" else {}
    aggregator = make_aggregator(name, num_clients=4, **options)
    discovery = RangeDiscovery()
    # Execute
    found = discover_clips(aggregator, updates, table)
    # Assert: the secure sum is the plain sum of the hospitals' histograms, bucket for bucket
    assert found is not None
    clips, result = found
    assert result.mean is not None and result.included == frozenset(range(4))
    summed = discovery.decode(result.mean * 4, table, 16, 4)
    for index, segment in enumerate(("small", "large")):
        part = slice(0, 50) if index == 0 else slice(50, 80)
        plain = sum(discovery.histogram(u.vector[part]) for u in updates)
        assert np.array_equal(summed[segment], plain)
        largest = max(float(np.abs(u.vector[part]).max()) for u in updates)
        assert clips[segment] / 2 <= largest < clips[segment]
    assert set(clips) == {"small", "large"}


def test_bucket_boundaries_are_exact_powers_of_two() -> None:
    discovery = RangeDiscovery(min_exponent=-2, max_exponent=2)  # buckets: <1/4, [1/4,1/2), .., [2,4), >=4
    values = [0.0, -0.0, 0.2, 0.25, np.nextafter(0.5, 0), 0.5, -1.0, 3.999, 4.0, 1e300, -np.inf]
    assert discovery.histogram(values).tolist() == [3, 2, 1, 1, 1, 3]
    assert discovery.clip([3, 0, 0, 0, 0, 0]) == 0.25  # only the bucket below: the smallest clip
    assert discovery.clip([0, 0, 1, 5, 0, 0]) == 2.0
    assert discovery.clip([1, 0, 0, 0, 0, 2]) == 4.0  # above the range: the largest clip (and clipped)
    # coverage below one lets the top tail be clipped: 1 of 1000 in [2, 4) is left out at 0.999
    assert RangeDiscovery(-2, 2, coverage=0.999).clip([0, 0, 999, 0, 1, 0]) == 1.0
    assert RangeDiscovery(-2, 2).clip([0, 0, 999, 0, 1, 0]) == 4.0


def test_counts_beyond_one_coordinate_travel_as_digits_and_come_back_exact() -> None:
    # Prepare: 8-bit quantization (qmax 127) and a segment of 1000 zeros: its count needs two digits
    table = SegmentTable((Segment("z", 1000),))
    discovery = RangeDiscovery()
    encoded = discovery.encode(np.zeros(1000), table, 8)
    assert discovery.digits(1000, 8) == 2 and encoded.max() <= 127
    # Execute: the sum of 3 hospitals' digits
    summed = discovery.decode(3 * encoded, table, 8, 3)
    # Assert
    assert int(summed["z"][0]) == 3000 and int(summed["z"].sum()) == 3000


def test_a_split_of_the_discovery_parameters_changes_the_round_descriptor() -> None:
    # Prepare: the true discovery, and a server that tells some hospitals other buckets
    quantizer = make_aggregator("secagg", num_clients=5).quantizer  # type: ignore[attr-defined]
    segments = SegmentTable((Segment("kernel", 40), Segment("bias", 4)))
    true = RangeDiscovery()
    splits = [
        dataclasses.replace(true, min_exponent=-10),
        dataclasses.replace(true, max_exponent=4),
    ]
    # Execute / Assert: every split is another descriptor (so another session); so is the aggregation's
    digest = quantizer.descriptor(1, true.table(segments, 16))
    for split in splits:
        assert quantizer.descriptor(1, split.table(segments, 16)) != digest
    assert quantizer.descriptor(1, true.table(segments, 8)) != digest
    assert quantizer.descriptor(1, segments.with_clips({"kernel": 1.0, "bias": 1.0})) != digest


def test_a_split_discovery_round_never_mixes_the_hospitals() -> None:
    # Prepare: the target (client 1) gets the true discovery descriptor, the others a split one
    segments = SegmentTable((Segment("kernel", 4), Segment("bias", 2)))
    quantizer = make_aggregator("secagg", num_clients=binding.N).quantizer  # type: ignore[attr-defined]
    true = quantizer.descriptor(1, RangeDiscovery().table(segments, 16))
    split = quantizer.descriptor(1, RangeDiscovery(max_exponent=0).table(segments, 16))
    configs = {1: binding._config(binding.SEMI_HONEST, true)}
    configs |= {c: binding._config(binding.SEMI_HONEST, split) for c in range(2, binding.N + 1)}
    # Execute: the server runs the others' session
    outcome = binding._run(configs, binding._config(binding.SEMI_HONEST, split))
    # Assert: the target's histogram is never in the others' sum
    assert outcome is None or 1 not in outcome[0]


def test_discovery_is_off_with_clips_or_false_and_fills_only_open_tensors_when_asked() -> None:
    global_state, locals_, counts = _batchnorm_states()
    # clips given: no discovery round, the given clips only
    given_clips = make_aggregator("plain-quantized", num_clients=HOSPITALS)
    outcome = aggregate_models(
        global_state, locals_, given_clips, num_samples=counts, rng=np.random.default_rng(0),
        clips={"running_mean": 4.0, "running_var": 16.0},
    )
    assert outcome.result.clipping is not None and outcome.result.clipping.table.clips["weight"] == 0.5
    assert outcome.discovery is None
    # discovery=True with some clips: the others are discovered
    mixed = make_aggregator("plain-quantized", num_clients=HOSPITALS)
    outcome = aggregate_models(
        global_state, locals_, mixed, num_samples=counts, rng=np.random.default_rng(0),
        clips={"running_var": 32.0}, discovery=True,
    )
    assert outcome.result.clipping is not None
    assert outcome.result.clipping.table.clips["running_var"] == 32.0
    assert outcome.result.clipping.table.clips["running_mean"] == 4.0
    # only the open tensors' histograms are summed (and revealed)
    assert outcome.discovery is not None and outcome.discovery.clipping is not None
    assert outcome.discovery.clipping.table.names[1:] == ("weight", "bias", "running_mean")
    # plain: nothing is clipped, nothing to discover
    plain = aggregate_models(global_state, locals_, make_aggregator("plain"), num_samples=counts,
                             rng=np.random.default_rng(0))
    assert plain.result.clipping is None and plain.discovery is None


def test_a_skipped_discovery_round_skips_the_aggregation() -> None:
    global_state, locals_, counts = _batchnorm_states()
    aggregator = make_aggregator("secagg", num_clients=HOSPITALS)
    dropouts = dict.fromkeys(range(15), DropoutStage.SETUP)
    outcome = aggregate_models(
        global_state, locals_, aggregator, num_samples=counts, rng=np.random.default_rng(0), dropouts=dropouts
    )
    assert outcome.state_dict is None and outcome.result.skipped


def test_keras_weight_lists_discover_their_ranges_in_one_call() -> None:
    rng = np.random.default_rng(5)
    global_weights = [np.zeros((3, 2), dtype=np.float32), np.zeros(2, dtype=np.float32)]
    locals_ = [[rng.uniform(-40, 40, (3, 2)).astype(np.float32), rng.uniform(-1e-3, 1e-3, 2).astype(np.float32)]
               for _ in range(4)]
    counts = [3, 1, 4, 1]
    aggregator = make_aggregator("secagg", num_clients=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClippingWarning)
        outcome = keras_adapter.aggregate_models(
            global_weights, locals_, aggregator, num_samples=counts, rng=np.random.default_rng(0)
        )
    assert outcome.weights is not None and outcome.result.clipping is not None
    qmax = aggregator.quantizer.config.qmax
    for index, (name, clip) in enumerate(outcome.result.clipping.table.clips.items()):
        assert clip is not None, name
        expected = np.array(counts, dtype=np.float64) @ np.stack([w[index].astype(np.float64).ravel()
                                                                  for w in locals_]) / sum(counts)
        np.testing.assert_allclose(outcome.weights[index].ravel(), expected, rtol=1e-6, atol=clip / qmax)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    exponents=st.lists(st.floats(-6.0, 6.0), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_per_tensor_scales_from_1e_minus_6_to_1e6_come_back_within_a_step(
    exponents: list[float], seed: int
) -> None:
    # Prepare: one float64 tensor per scale 10^e, three hospitals
    rng = np.random.default_rng(seed)
    names = [f"t{i}" for i in range(len(exponents))]
    global_state = {n: torch.zeros(5, dtype=torch.float64) for n in names}
    locals_ = [
        {n: torch.from_numpy(rng.uniform(-1, 1, 5) * 10.0**e) for n, e in zip(names, exponents, strict=True)}
        for _ in range(3)
    ]
    counts = [int(c) for c in rng.integers(1, 50, 3)]
    aggregator = make_aggregator("plain-quantized", num_clients=3)
    # Execute
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClippingWarning)
        outcome = aggregate_models(global_state, locals_, aggregator, num_samples=counts, rng=np.random.default_rng(0))
    # Assert: per tensor, within one step of its clip, and that clip at most twice the largest magnitude
    assert outcome.state_dict is not None and outcome.result.clipping is not None
    qmax = aggregator.quantizer.config.qmax
    for name in names:
        stacked = np.stack([s[name].numpy() for s in locals_])
        clip = outcome.result.clipping.table.clips[name]
        assert clip is not None and clip <= 2 * np.abs(stacked).max()
        expected = np.array(counts, dtype=np.float64) @ stacked / sum(counts)
        np.testing.assert_allclose(outcome.state_dict[name].numpy(), expected, rtol=0, atol=clip / qmax)


def test_an_impossible_histogram_sum_is_detected_not_used() -> None:
    table = SegmentTable((Segment("w", 10),))
    discovery = RangeDiscovery()
    total = 2 * discovery.encode(np.ones(10), table, 16)
    with pytest.raises(OverflowDetectedError, match="header sums to 2, not 3"):
        discovery.decode(total, table, 16, 3)
    forged = total.copy()
    forged[5] += 2**40  # far beyond what two hospitals' digits can sum to
    with pytest.raises(OverflowDetectedError, match="'w': the range histogram is impossible"):
        discovery.decode(forged, table, 16, 2)


def test_range_discovery_goes_around_a_sparse_wrapper_and_leaves_its_residuals_alone() -> None:
    # Prepare: through a SparseAggregator the histogram was subsampled ("impossible" histogram,
    # OverflowDetectedError) and, with error feedback, each hospital's residual kept histogram
    # counts; 67 coordinates is exactly one tensor's histogram (1 + 66 buckets), so a later round
    # would have added those counts to the hospitals' updates without a word.
    from fl_core.compression import CompressionConfig, SparseAggregator  # noqa: PLC0415

    rng = np.random.default_rng(5)
    global_state = {"w": torch.zeros(67, dtype=torch.float64)}
    locals_ = [{"w": torch.from_numpy(rng.normal(size=67) * 3.0)} for _ in range(3)]
    counts = [3, 5, 7]

    def sparse() -> SparseAggregator:
        config = CompressionConfig(fraction=0.5, error_feedback=True)
        return SparseAggregator(make_aggregator("plain-quantized", num_clients=3), config)

    discovering, reference = sparse(), sparse()
    # Execute: discovery (the default), then the same round with the discovered clips given
    outcome = aggregate_models(global_state, locals_, discovering, num_samples=counts, rng=np.random.default_rng(1),
                               client_ids=[0, 1, 2])  # fmt: skip  # residuals are kept per id: stable ids
    assert outcome.result.clipping is not None and outcome.discovery is not None
    clips = {"w": outcome.result.clipping.table.clips["w"]}
    expected = aggregate_models(
        global_state, locals_, reference, num_samples=counts, rng=np.random.default_rng(1), clips=clips,
        client_ids=[0, 1, 2],
    )
    # Assert: the same round and the same residuals as without a discovery round
    assert outcome.state_dict is not None and expected.state_dict is not None
    assert torch.equal(outcome.state_dict["w"], expected.state_dict["w"])
    for hospital in range(3):
        mine, theirs = discovering.residual(hospital), reference.residual(hospital)
        assert mine is not None and theirs is not None and np.array_equal(mine, theirs)
