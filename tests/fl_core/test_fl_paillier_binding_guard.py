"""Binding guard, fl_core Paillier: every option of the Paillier aggregator, every field of its
quantizer and every argument of a round that shapes a hospital's upload reaches the round's
session parameters (:meth:`PaillierAggregator.round_parameters`), and a split of it between two
hospitals fails the session for the hospital that holds the other value: its upload is refused
as another session's, and the others' sum is exact.

Introspected like tests/fl_core/test_fl_masking_binding_guard.py: an option, field or argument
added later fails :func:`test_every_option_field_and_argument_is_listed` until :data:`SPLITS`
says how to vary it, or why it shapes nothing (with a test that shows it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from fl_core.aggregators.base import ClientUpdate
from fl_core.aggregators.binding import check_models, model_digest
from fl_core.aggregators.paillier import PaillierAggregator
from fl_core.aggregators.quantizer import WeightedQuantizer
from fl_core.dp import DPQuantizer
from secagg import wire
from secagg.clipping import AdaptiveClip, ClipPolicy, FixedClip
from secagg.encoding import QuantizationConfig
from secagg.errors import SecAggError
from secagg.paillier import (
    Client,
    DecryptingParty,
    Server,
    SessionParameters,
    ThresholdKeyMaterial,
    deal_threshold_key_from_primes,
    insecure_key_sizes_for_testing,
)
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.segments import ClippingReport, Segment, SegmentTable
from tests.fl_core.dp_guard_plan import HOSPITALS, LENGTH, PLAN, dp_quantizer
from tests.masking.binding_guard import assert_listed, field_names, parameter_names
from tests.paillier.helpers import SAFE_PRIMES, threshold_material

pytestmark = pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")

TARGET = 1
"""The hospital that holds the other value in every split."""
QUANTIZATION = QuantizationConfig(0.5, 16, len(HOSPITALS), 32, max_weight=100)
RUN_ID = 7
"""The run every guard aggregator is in (the default, one drawn from ``secrets``, differs per aggregator)."""


@pytest.fixture(autouse=True)
def _small_keys() -> Iterator[None]:
    with insecure_key_sizes_for_testing():
        yield


def aggregator(quantizer: WeightedQuantizer | None = None, **options: Any) -> PaillierAggregator:
    """A 3-of-5 aggregator over a 256-bit key in run :data:`RUN_ID` (unless ``options`` name
    another); every one makes the same identity keys (one deterministic source), as the same
    hospitals would hold."""
    threshold = options.pop("threshold", 3)
    material = options.pop("key_material", None) or threshold_material(256, len(HOSPITALS), threshold)
    return PaillierAggregator(
        quantizer or WeightedQuantizer(QUANTIZATION), insecure_small_key=True, key_material=material,
        threshold=threshold, random_bytes=InsecureDeterministicRandom(b"hospitals"),
        run_id=options.pop("run_id", RUN_ID), **options,
    )  # fmt: skip


def round_parameters(
    agg: PaillierAggregator,
    *,
    length: int = LENGTH,
    segments: SegmentTable | None = None,
    server_round: int = 1,
    model_digest: bytes | None = None,
) -> SessionParameters:
    """The session parameters ``agg`` binds for a round of :data:`HOSPITALS` (as ``aggregate``
    computes them; the model digest as :func:`fl_core.aggregators.binding.check_models` gives it)."""
    table = agg.quantizer.check_table(agg.schedule.table(length, segments))
    return agg.round_parameters(HOSPITALS, length, table, server_round, check_models((), model_digest).digest)


Pair = tuple[PaillierAggregator, SessionParameters, SessionParameters]
Split = Callable[[], Pair] | str


def aggregators(base: Callable[[], PaillierAggregator], other: Callable[[], PaillierAggregator]) -> Callable[[], Pair]:
    """The round parameters of the aggregators ``base()`` and ``other()`` (made when the split runs)."""

    def split() -> Pair:
        agg = base()
        return agg, round_parameters(agg), round_parameters(other())

    return split


def options(**changes: Any) -> Callable[[], Pair]:
    return aggregators(aggregator, lambda: aggregator(**changes))


def quantization(**changes: Any) -> Callable[[], Pair]:
    return aggregators(aggregator, lambda: aggregator(WeightedQuantizer(dataclasses.replace(QUANTIZATION, **changes))))


def arguments(**changes: Any) -> Callable[[], Pair]:
    def split() -> Pair:
        agg = aggregator()
        return agg, round_parameters(agg), round_parameters(agg, **changes)

    return split


def declared_round(agg: PaillierAggregator, digest: bytes) -> SessionParameters:
    """The round's parameters when every hospital declares the model ``digest`` and the server gives none."""
    updates = [ClientUpdate(h, np.zeros(LENGTH), 1, model_digest=digest) for h in HOSPITALS]
    return round_parameters(agg, model_digest=check_models(updates, None).digest)


def declared(first: bytes, second: bytes) -> Callable[[], Pair]:
    def split() -> Pair:
        agg = aggregator()
        return agg, declared_round(agg, first), declared_round(agg, second)

    return split


def next_round_clip(*policies: str | ClipPolicy) -> Callable[[], Pair]:
    """The round-2 parameters under two clipping policies, after one round in which half the
    coordinates were clipped (adaptive moves the clip by its target and learning rate, fixed keeps it)."""

    def split() -> Pair:
        rounds = []
        for policy in policies:
            agg = aggregator(clipping=policy)
            table = agg.schedule.table(LENGTH)
            agg.schedule.observe(ClippingReport(table, (3 * len(HOSPITALS),), len(HOSPITALS)))
            rounds.append((agg, round_parameters(agg, server_round=2)))
        return rounds[0][0], rounds[0][1], rounds[1][1]

    return split


def another_dealing() -> ThresholdKeyMaterial:
    """A 3-of-5 key over the same primes as the base, dealt with other randomness (same modulus)."""
    p, q = SAFE_PRIMES[256]
    return deal_threshold_key_from_primes(p, q, num_parties=5, threshold=3, random_bytes=InsecureDeterministicRandom(8))


SPLITS: dict[str, Split] = {
    # PaillierAggregator(...) options
    "quantizer": "every field of WeightedQuantizer and of its QuantizationConfig: the quantizer.* entries",
    "key_bits": aggregators(aggregator, lambda: aggregator(key_bits=384, key_material=threshold_material(384, 5, 3))),
    "insecure_small_key": "the key-size policy only: the key it admits is bound (key_bits, key_material)",
    "threshold": options(threshold=4),  # a 4-of-5 key
    "min_contributors": options(min_contributors=4),
    "colluders": "sizes the default threshold and min_contributors only, both bound (test_...)",
    "obfuscation": "how a hospital draws its encryption randomness: the same plaintexts (test_...)",
    "workers": "processes for the arithmetic: no value to agree on",
    "constant_time": "how a hospital exponentiates with its share: the same partial decryption (test_...)",
    "random_bytes": "the source of secrets (key ceremony, encryption, proofs); the identity keys it makes are bound",
    "key_material": aggregators(aggregator, lambda: aggregator(key_material=another_dealing())),
    "clipping": next_round_clip("adaptive", "fixed"),
    "clipping.target": next_round_clip(AdaptiveClip(), AdaptiveClip(target=0.2)),
    "clipping.learning_rate": next_round_clip(AdaptiveClip(), AdaptiveClip(learning_rate=0.5)),
    "run_id": options(run_id=RUN_ID + 1),
    # WeightedQuantizer fields, and its QuantizationConfig's
    "quantizer.parameters": aggregators(
        aggregator, lambda: aggregator(WeightedQuantizer(QUANTIZATION, (("config/lr", 0.5),)))
    ),
    "quantizer.config": "every field of QuantizationConfig: the quantizer.config.* entries",
    "quantizer.config.clip": quantization(clip=0.25),
    "quantizer.config.bits": quantization(bits=12),
    # the hospitals of the key (its shares) and the packing layout's headroom
    "quantizer.config.num_clients": aggregators(
        aggregator,
        lambda: aggregator(
            WeightedQuantizer(dataclasses.replace(QUANTIZATION, num_clients=6)),
            threshold=4,
            key_material=threshold_material(256, 6, 4),
        ),
    ),
    "quantizer.config.ring_bits": quantization(ring_bits=64),
    "quantizer.config.max_weight": quantization(max_weight=50),
    # DPQuantizer's own fields (its plan's fields each: tests/masking/test_binding_guard_encoding.py)
    "dp.plan": aggregators(
        lambda: aggregator(dp_quantizer()),
        lambda: aggregator(dp_quantizer(plan=dataclasses.replace(PLAN, variance=Fraction(5)))),
    ),
    "dp.tail_bound": "the decoder's overflow bound only (tests/fl_core/test_fl_masking_binding_guard.py)",
    "dp.noise_source": "the hospital's own noise randomness: no value to agree on",
    "dp.drawn_noise": "the round's noise drawn before the charge (one use each): randomness, no value to agree on",
    "dp.max_patients": "a refusal before encoding (tests/fl_core/test_fl_masking_binding_guard.py)",
    # aggregate(...) arguments, and the round the aggregator is at
    "updates": arguments(length=LENGTH + 1),  # the update's length; its values are the contribution itself
    # ClientUpdate fields
    "update.client_id": "who the hospital is: the roster and its identity key are bound (session parameters)",
    "update.vector": "the contribution itself; its length is the updates entry",
    "update.num_samples": "the contribution's weight, summed; its public bound is quantizer.config.max_weight",
    "update.dp_digest": "the DP configuration a contribution was computed under: a DP aggregator refuses one "
    "declaring another before the session (tests/fl_core/test_fl_dp_binding.py); the plan is bound (dp.plan)",
    "update.model_digest": declared(bytes(32), bytes(range(32))),
    "dropouts": "which hospitals drop, and when: the protocol's own business, not a setup value",
    "rng": "the rounding randomness (non-secret, per hospital): no value to agree on",
    "segments": arguments(segments=SegmentTable((Segment("a", 3), Segment("b", 3)))),
    "round": arguments(server_round=2),
    "model_digest": lambda: (
        (agg := aggregator()),
        round_parameters(agg, model_digest=model_digest([np.zeros(LENGTH)])),
        round_parameters(agg, model_digest=model_digest([np.ones(LENGTH)])),
    ),
}


def test_every_option_field_and_argument_is_listed() -> None:
    listed = parameter_names(PaillierAggregator.__init__) | parameter_names(PaillierAggregator.aggregate)
    listed |= field_names(WeightedQuantizer, "quantizer.") | field_names(QuantizationConfig, "quantizer.config.")
    listed |= field_names(ClientUpdate, "update.")
    listed |= field_names(AdaptiveClip, "clipping.") | field_names(FixedClip, "clipping.")
    listed |= field_names(DPQuantizer, "dp.", without=field_names(WeightedQuantizer))
    assert_listed(listed | {"round"}, SPLITS)


def vector(params: SessionParameters, client: int) -> np.ndarray:
    """A distinct upload of ``params``' length, well inside its packing layout's range."""
    return np.arange(params.vector_length, dtype=np.int64) * 3 - 5 * client


def run_split(agg: PaillierAggregator, base: SessionParameters, other: SessionParameters) -> tuple[list[str], Any]:
    """Hospital :data:`TARGET` uploads under ``other``, the others and the server under ``base``;
    then ``agg``'s share holders but the target decrypt, in share order, until t answered.
    Returns the refusals (library errors, as the round's report carries them) and the sum."""
    agg.hospitals.assign(HOSPITALS)
    server, refusals, digests = Server(base), [], {}
    for client in HOSPITALS:
        params = other if client == TARGET else base
        message = Client(params, client, agg.hospitals.identity(client)).upload(vector(params, client))
        try:
            server.receive_upload(wire.encode(message))
            digests[client] = message.digest
        except SecAggError as exc:
            refusals.append(str(exc))
    for client in HOSPITALS[1 : 1 + base.public.threshold]:
        index = agg.hospitals.share_index(client)
        party = DecryptingParty(base, agg.material.shares[index - 1], own_upload=digests[client])
        server.receive_partial(wire.encode(party.respond(wire.encode(server.decryption_request(index)))))
    return refusals, server.finish()


CASES = sorted(name for name, split in SPLITS.items() if not isinstance(split, str))


@pytest.mark.parametrize("value", CASES)
def test_a_split_between_two_hospitals_fails_the_round(value: str) -> None:
    # Prepare: the base aggregator's round parameters and the other value's
    split = SPLITS[value]
    assert callable(split)
    agg, base, other = split()
    assert other.session_id != base.session_id, f"{value} does not reach the session id"
    # Execute: hospital 1 under the other value, the others and the server under the base
    refusals, total = run_split(agg, base, other)
    # Assert: hospital 1 is refused as another session's, saying so; the sum is exactly the others'
    assert refusals == [f"server: upload of client {TARGET} belongs to another session"]
    np.testing.assert_array_equal(total, np.sum([vector(base, c) for c in HOSPITALS[1:]], axis=0))


def test_the_control_round_includes_everyone() -> None:
    agg = aggregator()
    refusals, total = run_split(agg, round_parameters(agg), round_parameters(agg))
    assert refusals == []
    np.testing.assert_array_equal(total, np.sum([vector(round_parameters(agg), c) for c in HOSPITALS], axis=0))


@pytest.mark.parametrize(
    "changes",
    [{"colluders": 0}, {"obfuscation": "djn"}, {"constant_time": False}],
    ids=["colluders", "obfuscation", "constant_time"],
)
def test_options_that_shape_no_agreed_value_give_the_same_session(changes: dict[str, Any]) -> None:
    # colluders only sizes the default t and min_contributors: with both as the base's, the same
    # session; obfuscation and constant_time change how a hospital computes, not what it sends
    # (tests/paillier/test_paillier_binding_guard.py shows the plaintexts are the same)
    assert round_parameters(aggregator(**changes)).session_id == round_parameters(aggregator()).session_id
