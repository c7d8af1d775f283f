"""A Flower node refuses an active round setup whose (k, t) fails the adversarial-cut term.

The node rebuilds the masking configuration from the server's record
(:meth:`RoundSetup.bound_masking_config`, i.e. :meth:`MaskingConfig.from_record`), so a lying
server can propose any (k, t). At n = 206 (gamma = 0.05, delta = 0, active) the derivation gives
k = 12, t = 12; the same record with t = 11 meets t > corrupt neighbours, 2t > k + c and t <= t2
(the rules before spec 12.6 step 2.5), but a lying server's cut of the ring then has a union bound
of 2^-35.3, not below 2^-41. The node answers that setup with the library's refusal, naming the
cut, before it looks at any identity key (it has none in the roster here), and the derived record
binds this setup and rebuilds.
"""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("flwr")

from secagg.encoding import QuantizationConfig
from secagg.integrations.flower._records import stage_content
from secagg.integrations.flower.clipping import encoded_length, layout_table
from secagg.integrations.flower.protocol import SETUP, RoundSetup, arrays_digest, flatten_arrays
from secagg.masking import ACTIVE, MaskingConfig
from secagg.primitives.signing import placeholder_public_keys
from secagg.wire import encode

from .flower_harness import RUN_ID, identity_files, initial_arrays, make_app
from .test_integrations_flower import client_context, train_message

pytestmark = pytest.mark.usefixtures("server_identity")

NODES = tuple(range(1, 207))  # n = 206: the first n where the cut term raises t at delta = 0
NODE = 7  # a node with a test identity (flower_harness.KNOWN_NODES)


def _derived_setup() -> RoundSetup:
    vector, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in initial_arrays().items()])
    table = layout_table(layout, dict.fromkeys(layout_table(layout).clips, 0.5))
    keys = placeholder_public_keys(len(NODES))  # stand-ins: the refusal comes before any key is read
    config = MaskingConfig.secagg_plus(
        len(NODES), encoded_length(table), ring_bits=64, mode=ACTIVE, corrupt_fraction=0.05, dropout_fraction=0.0,
        identity_keys=keys,
    )  # fmt: skip
    assert (config.graph, config.degree, config.threshold) == ("harary", 12, 12)
    quantization = QuantizationConfig(0.5, 16, len(NODES), ring_bits=64, max_weight=4096)
    return RoundSetup.create(
        1, NODES, config, quantization, "num-examples", arrays_digest(vector, layout), RUN_ID, segments=table.describe()
    )


def test_a_node_refuses_a_setup_whose_threshold_fails_the_cut_term_and_rebuilds_the_derived_one() -> None:
    # Prepare: the derived setup (k = 12, t = 12), and the same record with t = 11
    derived = _derived_setup()
    lowered = dataclasses.replace(derived, masking=dataclasses.replace(derived.masking, threshold=11))
    key_file, trusted_file = identity_files(NODE)
    app = make_app(NODE, 10, identity_key_file=key_file, trusted_keys_file=trusted_file)

    # Execute
    reply = app(train_message(NODE, stage_content(SETUP, encode(lowered))), client_context(NODE))

    # Assert: an error reply naming the cut and its figure; the derived record binds and rebuilds
    assert reply.has_error()
    assert "threshold 11 is too low for harary degree 12 against a lying server's cut" in reply.error.reason
    assert "2^-35.3" in reply.error.reason and "2^-41" in reply.error.reason, reply.error.reason
    rebuilt = derived.bound_masking_config(RUN_ID)
    assert (rebuilt.degree, rebuilt.threshold) == (12, 12)
