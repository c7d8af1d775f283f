"""fl_core's training entry points refuse an ``rng`` that is no ``numpy.random.Generator``, as the
splits (fl_core.data) and the aggregators do: ``local_sgd`` took a legacy ``RandomState`` (it has
``permutation``) and raised AttributeError for a ``random.Random``; the models' ``init`` took
anything (LogisticRegression ignores its rng) or a ``RandomState`` (MLP). Refused before a draw,
with the shared check's ConfigurationTypeError.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fl_core.data import ClientData
from fl_core.fedavg import local_sgd
from fl_core.models import MLP, LogisticRegression
from secagg.errors import ConfigurationTypeError

NOT_GENERATORS: dict[str, Callable[[], Any]] = {
    "legacy RandomState": lambda: np.random.RandomState(0),
    "random.Random": lambda: random.Random(0),
    "None": lambda: None,
}
NO_GENERATOR = r"^rng must be a numpy\.random\.Generator \(numpy\.random\.default_rng\(\)\), got "
DATA = ClientData(1, np.arange(12.0).reshape(6, 2) / 10, np.array([0, 1, 0, 1, 0, 1]))


def _local_sgd(rng: Any) -> object:
    model = LogisticRegression(2)
    params = model.init(np.random.default_rng(0))
    return local_sgd(model, params, DATA, epochs=1, batch_size=2, learning_rate=0.1, rng=rng)


ENTRY_POINTS: dict[str, Callable[[Any], object]] = {
    "local_sgd": _local_sgd,
    "LogisticRegression.init": lambda rng: LogisticRegression(2).init(rng),
    "MLP.init": lambda rng: MLP(2, 2, hidden=3).init(rng),
}


@pytest.mark.parametrize("rng", list(NOT_GENERATORS))
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_training_entry_point_refuses_an_rng_that_is_no_generator(entry: str, rng: str) -> None:
    with pytest.raises(ConfigurationTypeError, match=NO_GENERATOR):
        ENTRY_POINTS[entry](NOT_GENERATORS[rng]())


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_control_a_generator_is_taken(entry: str) -> None:
    assert ENTRY_POINTS[entry](np.random.default_rng(0)) is not None
