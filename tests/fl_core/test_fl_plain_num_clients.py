"""``make_aggregator("plain", num_clients=n)`` holds ``n`` as every other aggregator does: the most
clients one round may sum. It was taken and ignored, so a round of n + 1 updates, which
``plain-quantized`` and the secure aggregators refuse, was averaged by ``plain``: swapping the
name changed what was accepted. Without ``num_clients`` plain takes any number, as before."""

from __future__ import annotations

import numpy as np
import pytest

from fl_core.aggregators import ClientUpdate, make_aggregator
from secagg.errors import ConfigurationError, ConfigurationTypeError


def _updates(count: int) -> list[ClientUpdate]:
    return [ClientUpdate(client, np.full(3, 0.01 * client), 10) for client in range(1, count + 1)]


@pytest.mark.parametrize("name", ["plain", "plain-quantized"])
def test_a_round_at_num_clients_is_averaged(name: str) -> None:
    # Execute: at the bound
    result = make_aggregator(name, num_clients=3).aggregate(_updates(3), rng=np.random.default_rng(0))

    # Verify
    assert result.mean is not None and result.included == frozenset({1, 2, 3})


@pytest.mark.parametrize("name", ["plain", "plain-quantized"])
def test_a_round_one_past_num_clients_is_refused_alike(name: str) -> None:
    # Execute / Verify: one past the bound, the same error and words from plain as from plain-quantized
    with pytest.raises(ConfigurationError, match=r"^4 clients in the round, but the aggregator was set up for 3$"):
        make_aggregator(name, num_clients=3).aggregate(_updates(4), rng=np.random.default_rng(0))


def test_plain_without_num_clients_takes_any_number_of_updates() -> None:
    # Execute / Verify: no bound given, none applied (plain needs none to stay exact)
    result = make_aggregator("plain").aggregate(_updates(40), rng=np.random.default_rng(0))
    assert result.mean is not None and len(result.included) == 40


@pytest.mark.parametrize("value", [0, -1])
def test_plain_refuses_a_num_clients_no_round_could_meet(value: int) -> None:
    # Execute / Verify: refused when built, as a round bound below one is no bound
    with pytest.raises(ConfigurationError, match="num_clients"):
        make_aggregator("plain", num_clients=value)


def test_plain_refuses_a_wrong_typed_num_clients() -> None:
    with pytest.raises(ConfigurationTypeError, match="num_clients"):
        make_aggregator("plain", num_clients=3.0)  # type: ignore[arg-type]
