"""Binding guard, fl_core: every option of the masking aggregator, every field of its quantizer
and every argument of a round that shapes a hospital's encoding reaches the round's bound
config (:meth:`MaskingAggregator.round_config`), and a split of it between two hospitals fails
the masking session for the hospital that holds the other value.

The options and arguments are introspected (``inspect.signature``) and the quantizer's and a
client update's fields too (``dataclasses.fields``): one added later fails
:func:`test_every_option_field_and_argument_is_listed` until :data:`SPLITS` says how to vary it,
or why it shapes nothing (with a test that shows it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from fl_core.aggregators.base import ClientUpdate
from fl_core.aggregators.binding import check_models, model_digest
from fl_core.aggregators.masking import MaskingAggregator
from fl_core.aggregators.quantizer import WeightedQuantizer
from fl_core.dp import DPQuantizer
from secagg.clipping import AdaptiveClip, ClipPolicy, FixedClip
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError
from secagg.masking import ACTIVE, COMPLETE, HARARY, SEMI_HONEST, MaskingConfig
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.segments import ClippingReport, Segment, SegmentTable
from tests.fl_core.dp_guard_plan import HOSPITALS, LENGTH, PLAN, dp_quantizer
from tests.masking.binding_guard import (
    Split,
    assert_listed,
    assert_table_split_fails,
    field_names,
    parameter_names,
    split_cases,
)

MODES = (SEMI_HONEST, ACTIVE)
QUANTIZATION = QuantizationConfig(0.5, 16, len(HOSPITALS), 32, max_weight=100)
RUN_ID = 7
"""The run every guard aggregator is in (the default, one drawn from ``secrets``, differs per aggregator)."""


def aggregator(base_mode: str, quantizer: WeightedQuantizer | None = None, **options: Any) -> MaskingAggregator:
    """An aggregator in ``base_mode`` (unless ``options`` name another) and in run :data:`RUN_ID`
    (unless they name another); every one makes the same identity keys (one deterministic
    source), as the same hospitals would hold."""
    return MaskingAggregator(
        quantizer or WeightedQuantizer(QUANTIZATION), mode=options.pop("mode", base_mode),
        random_bytes=InsecureDeterministicRandom(b"hospitals"), run_id=options.pop("run_id", RUN_ID), **options,
    )  # fmt: skip


SIGNING_KEYS = aggregator(ACTIVE).session_identities(HOSPITALS)[1]
assert SIGNING_KEYS is not None


def round_config(
    agg: MaskingAggregator,
    *,
    length: int = LENGTH,
    segments: SegmentTable | None = None,
    server_round: int = 1,
    model_digest: bytes | None = None,
) -> MaskingConfig:
    """The config ``agg`` binds for a round of :data:`HOSPITALS` (as ``aggregate`` computes it; the
    model digest as :func:`fl_core.aggregators.binding.check_models` gives it: the reference, or none)."""
    table = agg.quantizer.check_table(agg.schedule.table(length, segments))
    return agg.round_config(HOSPITALS, length, table, server_round, check_models((), model_digest).digest)


def options(name: str, *candidates: Any) -> Callable[[str], tuple[MaskingConfig, MaskingConfig]]:
    """The round configs of the default aggregator and of one with the first of ``candidates``
    for option ``name`` that is valid and gives another round (which one depends on the mode)."""

    def split(mode: str) -> tuple[MaskingConfig, MaskingConfig]:
        base = round_config(aggregator(mode))
        for value in candidates:
            try:
                other = round_config(aggregator(mode, **{name: value}))
            except ConfigurationError:
                continue
            if other.digest() != base.digest():  # an operative change (the record)
                return base, other
        raise AssertionError(f"no candidate {name} gives another valid round in {mode} mode")

    return split


def quantization(**changes: Any) -> Callable[[str], tuple[MaskingConfig, MaskingConfig]]:
    other = WeightedQuantizer(dataclasses.replace(QUANTIZATION, **changes))
    return lambda mode: (round_config(aggregator(mode)), round_config(aggregator(mode, other)))


def declared_round(mode: str, digest: bytes) -> MaskingConfig:
    """The round config when every hospital declares the model ``digest`` and the server gives none
    (the round's model is then the one more than half declare)."""
    updates = [ClientUpdate(h, np.zeros(LENGTH), 1, model_digest=digest) for h in HOSPITALS]
    return round_config(aggregator(mode), model_digest=check_models(updates, None).digest)


def arguments(**changes: Any) -> Callable[[str], tuple[MaskingConfig, MaskingConfig]]:
    return lambda mode: (round_config(aggregator(mode)), round_config(aggregator(mode), **changes))


def dp(**changes: Any) -> Callable[[str], tuple[MaskingConfig, MaskingConfig]]:
    def split(mode: str) -> tuple[MaskingConfig, MaskingConfig]:
        pair = (dp_quantizer(), dp_quantizer(**changes))
        return round_config(aggregator(mode, pair[0])), round_config(aggregator(mode, pair[1]))

    return split


def next_round_clip(*policies: str | ClipPolicy) -> Callable[[str], tuple[MaskingConfig, MaskingConfig]]:
    """The round-2 configs under two clipping policies. A policy shapes the clips of the rounds
    after the first: after one round in which half the coordinates were clipped, adaptive moves
    the clip (by its target and learning rate) and fixed keeps it."""

    def split(mode: str) -> tuple[MaskingConfig, MaskingConfig]:
        configs = []
        for policy in policies:
            agg = aggregator(mode, clipping=policy)
            table = agg.schedule.table(LENGTH)
            agg.schedule.observe(ClippingReport(table, (3 * len(HOSPITALS),), len(HOSPITALS)))
            configs.append(round_config(agg, server_round=2))
        return configs[0], configs[1]

    return split


SPLITS: dict[str, Split] = {
    # MaskingAggregator(...) options
    "quantizer": "every field of WeightedQuantizer and of its QuantizationConfig: the quantizer.* entries",
    "graph": "the same session up to 100 hospitals (both are the complete graph), bound beyond (test_graph_...)",
    "corrupt_fraction": options("corrupt_fraction", 0.0, 0.2, 0.4),
    "dropout_fraction": options("dropout_fraction", 0.2, 0.4, 0.6),
    "dropout_per_round": options("dropout_per_round", 0.05, 0.1, 0.15),
    "random_bytes": "the source of secrets (identity keys, masks); the identity keys it makes are bound",
    "clipping": next_round_clip("adaptive", "fixed"),
    "clipping.target": next_round_clip(AdaptiveClip(), AdaptiveClip(target=0.2)),
    "clipping.learning_rate": next_round_clip(AdaptiveClip(), AdaptiveClip(learning_rate=0.5)),
    "mode": lambda mode: (round_config(aggregator(mode)), round_config(aggregator(mode, mode=_other(mode)))),
    "run_id": options("run_id", RUN_ID + 1),
    # WeightedQuantizer fields, and its QuantizationConfig's
    "quantizer.parameters": lambda mode: (
        round_config(aggregator(mode)),
        round_config(aggregator(mode, WeightedQuantizer(QUANTIZATION, (("config/lr", 0.5),)))),
    ),
    "quantizer.config": "every field of QuantizationConfig: the quantizer.config.* entries",
    "quantizer.config.clip": quantization(clip=0.25),
    "quantizer.config.bits": quantization(bits=12),
    "quantizer.config.num_clients": "bounds the round's size only; no encoding depends on it (test_...)",
    "quantizer.config.ring_bits": quantization(ring_bits=64),
    "quantizer.config.max_weight": quantization(max_weight=50),
    # DPQuantizer's own fields (its plan's fields each: tests/masking/test_binding_guard_encoding.py)
    "dp.plan": dp(plan=dataclasses.replace(PLAN, variance=Fraction(5))),
    "dp.tail_bound": "the decoder's overflow bound only; no encoding depends on it (test_...)",
    "dp.noise_source": "the hospital's own noise randomness: no value to agree on",
    "dp.drawn_noise": "the round's noise drawn before the charge (one use each): randomness, no value to agree on",
    "dp.max_patients": "a refusal before encoding; the range it sized (qmax) is bound (test_...max_patients...)",
    # aggregate(...) arguments, and the round the aggregator is at
    "updates": arguments(length=LENGTH + 1),  # the update's length; its values are the contribution itself
    # ClientUpdate fields
    "update.client_id": "who the hospital is: session ids 1..m follow the ids, its identity key is bound (mode)",
    "update.vector": "the contribution itself; its length is the updates entry",
    "update.num_samples": "the contribution's weight, summed securely; its public bound is quantizer.config.max_weight",
    "update.dp_digest": "the DP configuration a contribution was computed under: a DP aggregator refuses one "
    "declaring another before the session (tests/fl_core/test_fl_dp_binding.py); the plan is bound (dp.plan)",
    "update.model_digest": lambda mode: (declared_round(mode, bytes(32)), declared_round(mode, bytes(range(32)))),
    "dropouts": "which hospitals drop, and when: the protocol's own business, not a setup value",
    "rng": "the rounding randomness (non-secret, per hospital): no value to agree on",
    "segments": arguments(segments=SegmentTable((Segment("a", 3), Segment("b", 3)))),
    "round": arguments(server_round=2),
    # the model the round trains from: the server's reference, or the one most hospitals declare
    "model_digest": lambda mode: (
        round_config(aggregator(mode), model_digest=model_digest([np.zeros(LENGTH)])),
        round_config(aggregator(mode), model_digest=model_digest([np.ones(LENGTH)])),
    ),
}


def _other(mode: str) -> str:
    return SEMI_HONEST if mode == ACTIVE else ACTIVE


def test_every_option_field_and_argument_is_listed() -> None:
    listed = parameter_names(MaskingAggregator.__init__) | parameter_names(MaskingAggregator.aggregate)
    listed |= field_names(WeightedQuantizer, "quantizer.") | field_names(QuantizationConfig, "quantizer.config.")
    listed |= field_names(ClientUpdate, "update.")
    listed |= field_names(AdaptiveClip, "clipping.") | field_names(FixedClip, "clipping.")
    listed |= field_names(DPQuantizer, "dp.", without=field_names(WeightedQuantizer))
    assert_listed(listed | {"round"}, SPLITS)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value", split_cases(SPLITS))
def test_a_split_between_two_hospitals_fails_the_round(value: str, mode: str) -> None:
    # Execute / Assert: hospital 1 under the other value, the others and the server under the base
    # aggregator's round config; then the control round under the base alone
    assert_table_split_fails(SPLITS, value, mode, signing_keys=SIGNING_KEYS)


@pytest.mark.parametrize("mode", MODES)
def test_graph_is_the_same_session_up_to_100_hospitals_and_bound_beyond(mode: str) -> None:
    small = [round_config(aggregator(mode, graph=graph)) for graph in (COMPLETE, HARARY)]
    assert small[0] == small[1]
    quantizer = WeightedQuantizer.create(101)
    large = [aggregator(mode, quantizer, graph=graph).masking_config(101, 1) for graph in (COMPLETE, HARARY)]
    assert large[0].graph == COMPLETE and large[1].graph == HARARY
    assert large[0].digest() != large[1].digest()


def test_the_quantizers_num_clients_does_not_change_the_round() -> None:
    wider = WeightedQuantizer(dataclasses.replace(QUANTIZATION, num_clients=8))
    assert round_config(aggregator(ACTIVE)) == round_config(aggregator(ACTIVE, wider))


def test_the_dp_tail_bound_and_noise_source_shape_no_agreed_value() -> None:
    # The tail bound only decides when the decoder reports an overflow: encodings do not depend on it
    update = ClientUpdate(1, np.linspace(-1.0, 1.0, LENGTH), 1)
    encodings = [
        q.encode_integers(update, np.random.default_rng(0)) for q in (dp_quantizer(), dp_quantizer(tail_bound=7))
    ]
    np.testing.assert_array_equal(*encodings)
    assert round_config(aggregator(ACTIVE, dp_quantizer())) == round_config(
        aggregator(ACTIVE, dp_quantizer(tail_bound=7))
    )


def test_the_dp_max_patients_bound_refuses_before_encoding_and_shapes_no_agreed_value() -> None:
    # max_patients only refuses a hospital declaring more patients than the range was sized for;
    # the range itself is quantizer.config's, bound above. Encodings and the round do not depend on it.
    update = ClientUpdate(1, np.linspace(-1.0, 1.0, LENGTH), 1)
    encodings = [
        q.encode_integers(update, np.random.default_rng(0)) for q in (dp_quantizer(), dp_quantizer(max_patients=3))
    ]
    np.testing.assert_array_equal(*encodings)
    assert round_config(aggregator(ACTIVE, dp_quantizer())) == round_config(
        aggregator(ACTIVE, dp_quantizer(max_patients=3))
    )
