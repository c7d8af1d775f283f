"""A Flower node refuses a round setup whose Harary graph is too sparse for the 2^-40 it would print.

A node rebuilds the masking configuration from the record the server sends
(:meth:`RoundSetup.bound_masking_config`), so a lying server can propose any degree. At n = 101
(5% colluders, 10% dropouts: B = 5 + 10 = 15 bad nodes, semi-honest) the derived graph has degree
16, whose disconnection term is 0 (k > B); degree 14 with t = 6 meets every threshold rule (the old
code accepted it) but its honest survivors are disconnected with probability up to 2^-39.5, not
below 2^-41. The node answers that setup with the library's refusal as its error reply, naming the
reason, and accepts the derived one (the bound) from the same node and policy.
"""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("flwr")

from secagg.encoding import QuantizationConfig
from secagg.integrations.flower import NodePolicy
from secagg.integrations.flower._records import stage_content
from secagg.integrations.flower.clipping import encoded_length, layout_table
from secagg.integrations.flower.protocol import SETUP, RoundSetup, arrays_digest, flatten_arrays
from secagg.masking import MaskingConfig
from secagg.wire import encode

from .flower_harness import RUN_ID, initial_arrays, make_app
from .test_integrations_flower import client_context, train_message

pytestmark = pytest.mark.usefixtures("server_identity")

NODES = tuple(range(1, 102))  # n = 101: above the complete-graph cut-off, a Harary graph
FRACTIONS = {"corrupt_fraction": 0.05, "dropout_fraction": 0.1}


def _derived_setup() -> RoundSetup:
    vector, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in initial_arrays().items()])
    table = layout_table(layout, dict.fromkeys(layout_table(layout).clips, 0.5))
    config = MaskingConfig.secagg_plus(
        len(NODES), encoded_length(table), ring_bits=64, mode="semi-honest", **FRACTIONS  # type: ignore[arg-type]
    )
    assert (config.graph, config.degree, config.threshold) == ("harary", 16, 6)
    quantization = QuantizationConfig(0.5, 16, len(NODES), ring_bits=64, max_weight=4096)
    return RoundSetup.create(1, NODES, config, quantization, "num-examples", arrays_digest(vector, layout), RUN_ID,
                             segments=table.describe())


def _reply(setup: RoundSetup) -> tuple[bool, str]:
    app = make_app(1, 10, policy=NodePolicy(allow_semi_honest=True))
    reply = app(train_message(1, stage_content(SETUP, encode(setup))), client_context(1))
    return reply.has_error(), reply.error.reason if reply.has_error() else ""


def test_a_node_accepts_the_derived_degree_and_refuses_one_step_sparser_with_the_reason() -> None:
    # Prepare: the derived (degree 16) setup, and the same record with the degree lowered to 14
    derived = _derived_setup()
    sparser = dataclasses.replace(derived, masking=dataclasses.replace(derived.masking, degree=14))
    # Execute
    accepted, accepted_reason = _reply(derived)
    refused, reason = _reply(sparser)
    # Assert: at the bound the setup is taken; one step past it, an error reply naming the term
    assert not accepted, accepted_reason
    assert refused and "harary degree 14 is too sparse" in reason and "2^-41" in reason, reason
