"""A lying server's roster that lists one hospital's identity key at two protocol ids.

In active mode the configuration record the server sends every client names the identity key
of each protocol id (the record is in the session id; every client checks its own key at its own
id). A record that names one enrolled hospital's key twice gives that hospital two slots: a
session a client counts as n contributors then holds fewer distinct hospitals (at n = 3, the
client and one other hospital, which knows both of its inputs and so reads the client's input
off the "sum"), and one colluding hospital counts twice towards every threshold. Every client
refuses such a record, whatever adapter it runs under (:func:`secagg.masking.config_checks.check_identities`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from secagg.errors import ConfigurationError
from secagg.masking import ACTIVE, ZERO_CONTEXT, MaskingConfig, client_start, make_identities
from secagg.primitives.randomness import InsecureDeterministicRandom

from .harness import StepRun, ring_sum

N = 3
IDENTITIES, KEYS = make_identities(N, InsecureDeterministicRandom(b"identity-roster"))
TWICE = (KEYS[0], KEYS[1], KEYS[1])
"""Hospital 2's key at protocol ids 2 and 3: two of the three slots are one hospital."""


def honest_config() -> MaskingConfig:
    return MaskingConfig(num_clients=N, threshold=2, vector_length=4, mode=ACTIVE, identity_keys=KEYS)


def test_a_config_naming_one_identity_key_twice_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="twice"):
        dataclasses.replace(honest_config(), identity_keys=TWICE)


def test_a_client_refuses_a_server_record_naming_one_identity_key_twice() -> None:
    # The record a lying server sends client 1: the honest one with hospital 2's key in slot 3 too.
    record = dataclasses.replace(honest_config().record(), identity_keys=TWICE)
    with pytest.raises(ConfigurationError, match="twice"):
        client_start(MaskingConfig.from_record(record), 1, context=ZERO_CONTEXT, identity=IDENTITIES[1])


def test_the_honest_roster_still_runs_to_the_exact_sum() -> None:
    run = StepRun(honest_config(), identities=IDENTITIES)
    result = run.finish()
    assert np.array_equal(result.aggregate, ring_sum(run.config, run.inputs, range(1, N + 1)))
