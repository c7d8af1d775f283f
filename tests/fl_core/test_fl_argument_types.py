"""fl_core's public entry points refuse a wrong-typed argument with the library's error.

``make_aggregator("secagg", num_clients="4")`` raised Python's own ``TypeError`` ("'<=' not
supported between instances of 'str' and 'int'") from deep in the quantizer, and an aggregator's
``aggregate(..., rng=0)`` an ``AttributeError`` ("'int' object has no attribute 'integers'"),
or nothing at all for ``plain``, which never draws from it. Every such argument now raises
:class:`~secagg.errors.ConfigurationTypeError` (a ``ConfigurationError`` and a ``TypeError``)
naming it, through the shared checks of :mod:`secagg._validate`; a bool is no integer.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest

from fl_core import ClientUpdate, FedAvgConfig, LogisticRegression, make_aggregator, run_fedavg
from fl_core.aggregators import QuantizedPlainAggregator, WeightedQuantizer
from fl_core.compression import CompressionConfig, SparseAggregator
from fl_core.data import ClientData
from fl_core.rotated import RotatedAggregator
from secagg.errors import ConfigurationError, ConfigurationTypeError
from secagg.primitives.randomness import InsecureDeterministicRandom

UPDATES = [ClientUpdate(client, np.zeros(3), 1) for client in range(3)]
CLIENTS = [ClientData(client, np.zeros((4, 3)), np.zeros(4, dtype=np.int64)) for client in range(3)]
TEST_X, TEST_Y = np.zeros((2, 3)), np.zeros(2, dtype=np.int64)


def _fedavg(**changed: object) -> object:
    arguments: dict[str, object] = {
        "model": LogisticRegression(num_features=3), "clients": CLIENTS, "aggregator": make_aggregator("plain"),
        "test_features": TEST_X, "test_labels": TEST_Y, "config": FedAvgConfig(rounds=1),
    }  # fmt: skip
    arguments.update(changed)
    return run_fedavg(**arguments)  # type: ignore[arg-type]


CALLS: dict[str, tuple[str, Callable[[], object]]] = {
    "num_clients str": ("num_clients", lambda: make_aggregator("secagg", num_clients="4")),
    "num_clients str, plain-quantized": ("num_clients", lambda: make_aggregator("plain-quantized", num_clients="4")),
    "num_clients str, paillier": ("num_clients", lambda: make_aggregator("paillier", num_clients="4")),
    "num_clients str, plain": ("num_clients", lambda: make_aggregator("plain", num_clients="4")),
    "num_clients bool": ("num_clients", lambda: make_aggregator("secagg", num_clients=True)),
    "name int": ("name", lambda: make_aggregator(3)),  # type: ignore[arg-type]
    "dimension str": ("dimension", lambda: make_aggregator("plain", dimension="3")),
    "max_samples_per_client str": (
        "max_samples_per_client", lambda: make_aggregator("secagg", num_clients=4, max_samples_per_client="9")
    ),
    "WeightedQuantizer.create num_clients str": ("num_clients", lambda: WeightedQuantizer.create("4")),  # type: ignore[arg-type]
    "QuantizedPlainAggregator quantizer str": ("quantizer", lambda: QuantizedPlainAggregator("q")),  # type: ignore[arg-type]
    "plain rng=0": ("rng", lambda: make_aggregator("plain").aggregate(UPDATES, rng=0)),  # type: ignore[arg-type]
    "plain-quantized rng=0": (
        "rng", lambda: make_aggregator("plain-quantized", num_clients=4).aggregate(UPDATES, rng=0)  # type: ignore[arg-type]
    ),
    "secagg rng=0": (
        "rng",
        lambda: make_aggregator("secagg", num_clients=4, random_bytes=InsecureDeterministicRandom(1)).aggregate(
            UPDATES, rng=0  # type: ignore[arg-type]
        ),
    ),
    "dropouts list": (
        "dropouts", lambda: make_aggregator("plain").aggregate(UPDATES, [1], rng=np.random.default_rng(0))  # type: ignore[arg-type]
    ),
    "run_fedavg clients int": ("clients", lambda: _fedavg(clients=5)),
    "run_fedavg config dict": ("config", lambda: _fedavg(config={})),
    "run_fedavg aggregator str": ("aggregator", lambda: _fedavg(aggregator="plain")),
    "FedAvgConfig learning_rate str": ("learning_rate", lambda: FedAvgConfig(learning_rate="0.1")),  # type: ignore[arg-type]
    "FedAvgConfig dropout str": ("dropout", lambda: FedAvgConfig(dropout="0.1")),  # type: ignore[arg-type]
    "FedAvgConfig tolerance str": ("tolerance", lambda: FedAvgConfig(tolerance="0.1")),  # type: ignore[arg-type]
    "FedAvgConfig server_momentum str": ("server_momentum", lambda: FedAvgConfig(server_momentum="0.1")),  # type: ignore[arg-type]
    "secagg random_bytes int": ("random_bytes", lambda: make_aggregator("secagg", num_clients=4, random_bytes=3)),
    "RotatedAggregator inner str": ("inner", lambda: RotatedAggregator("x")),  # type: ignore[arg-type]
    "SparseAggregator inner str": (
        "inner", lambda: SparseAggregator("x", CompressionConfig(bytes_per_parameter=1.0))  # type: ignore[arg-type]
    ),
    "LogisticRegression num_features str": ("num_features", lambda: LogisticRegression(num_features="3")),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", sorted(CALLS))
def test_a_wrong_typed_argument_is_the_librarys_type_error_naming_it(case: str) -> None:
    # Prepare
    name, call = CALLS[case]
    # Execute
    with pytest.raises(ConfigurationTypeError) as refused:
        call()
    # Verify: the argument named
    assert name in str(refused.value), refused.value


def test_right_typed_arguments_still_build_and_aggregate() -> None:
    # Execute / Verify: numpy integers are integers; a plain round with a Generator runs
    aggregator = make_aggregator("plain-quantized", num_clients=np.int64(4))
    assert aggregator.aggregate(UPDATES, {}, rng=np.random.default_rng(0)).mean is not None
    assert make_aggregator("plain").aggregate(UPDATES, rng=np.random.default_rng(0)).mean is not None


def test_a_numpy_integer_ring_is_an_integer_as_every_other_count_is() -> None:
    # Execute: ring_bits from a numpy computation (np.int64), as num_clients and bits already are
    aggregator = make_aggregator("plain-quantized", num_clients=np.int64(4), bits=np.int32(16), ring_bits=np.int64(64))

    # Verify: the ring as asked, held as a plain int
    ring_bits = aggregator.quantizer.config.ring_bits  # type: ignore[attr-defined]
    assert ring_bits == 64 and type(ring_bits) is int


@pytest.mark.parametrize("ring_bits", [True, 64.0, b"64", np.array([64, 32])])
def test_a_ring_that_is_no_integer_nor_a_ring_name_is_the_librarys_type_error(ring_bits: object) -> None:
    # Execute / Verify: a bool, a float or bytes for ring_bits is a wrong type, named
    with pytest.raises(ConfigurationTypeError, match="ring_bits"):
        make_aggregator("plain-quantized", num_clients=4, ring_bits=ring_bits)


@pytest.mark.parametrize("name", ["plain", "plain-quantized", "secagg"])
def test_a_legacy_random_state_is_refused_alike_by_every_aggregator(name: str) -> None:
    # Prepare: a legacy RandomState, not the numpy Generator the aggregators draw round seeds from
    options: dict[str, object] = {} if name == "plain" else {"num_clients": 4}
    if name == "secagg":
        options["random_bytes"] = InsecureDeterministicRandom(1)
    aggregator = make_aggregator(name, **options)  # type: ignore[arg-type]

    # Execute / Verify: the library's type error naming rng, from plain as from the secure ones
    # (interchangeable: plain must not accept what secagg would refuse), never an AttributeError
    with pytest.raises(ConfigurationTypeError, match="rng"):
        aggregator.aggregate(UPDATES, rng=np.random.RandomState(0))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["learning_rate", "dropout", "tolerance", "server_momentum"])
def test_fedavg_config_takes_any_real_number_and_holds_it_as_a_float(name: str) -> None:
    # Execute: a Fraction and a numpy float are real numbers (client_fraction already took them)
    for value in (Fraction(1, 10), np.float64(0.1)):
        config = FedAvgConfig(**{name: value})  # type: ignore[arg-type]

        # Verify: held as the float it equals (local SGD multiplies arrays by it)
        held = getattr(config, name)
        assert held == 0.1 and type(held) is float, (name, value, held)


def test_a_fraction_learning_rate_trains_as_its_float_does() -> None:
    # Execute: one round with learning_rate 1/10, and with 0.1
    exact = _fedavg(config=FedAvgConfig(rounds=1, learning_rate=Fraction(1, 10)))
    rounded = _fedavg(config=FedAvgConfig(rounds=1, learning_rate=0.1))

    # Verify: the same model, in float parameters (not an object array of Fractions)
    for mine, theirs in zip(exact.params, rounded.params, strict=True):  # type: ignore[attr-defined]
        assert mine.dtype == np.float64 and np.array_equal(mine, theirs)


@pytest.mark.parametrize("name", ["dropout", "tolerance", "server_momentum"])
def test_a_negative_fraction_that_rounds_to_zero_is_refused_not_held_as_zero(name: str) -> None:
    # Prepare: a negative real whose nearest float is -0.0 (its range starts at 0, inclusive)
    below = Fraction(-1, 10**400)

    # Execute / Verify: refused for the value given, not held as the zero it rounds to
    with pytest.raises(ConfigurationError, match=name):
        FedAvgConfig(**{name: below})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "value"),
    [("learning_rate", Fraction(1, 10**400)), ("learning_rate", 10**400), ("dropout", Fraction(10**400 - 1, 10**400))],
)
def test_a_real_whose_float_leaves_the_range_is_refused(name: str, value: object) -> None:
    # Execute / Verify: a positive learning rate that underflows to 0.0 or overflows the float range,
    # a dropout below 1 that rounds to 1.0: refused, never run as another value
    with pytest.raises(ConfigurationError, match=name):
        FedAvgConfig(**{name: value})  # type: ignore[arg-type]
