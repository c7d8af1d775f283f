"""run_session's dropouts are checked before any round runs: a dropout for a client that is not in
the session, or a stage that is not a Round, is the caller's mistake and is refused with the
library's own error, never ignored (the run would then silently simulate something other than
what was asked) nor left to a foreign exception."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from secagg.errors import ConfigurationError, ConfigurationTypeError
from secagg.masking import MaskingConfig, Round, make_identities, run_session
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.signing import SigningKey

N = 5


def _setup() -> tuple[MaskingConfig, dict[int, SigningKey], dict[int, npt.NDArray[np.uint32]]]:
    keys, public = make_identities(N, InsecureDeterministicRandom(1))
    config = MaskingConfig.secagg(N, 4, identity_keys=public)
    inputs = {c: np.full(4, c, dtype=np.uint32) for c in range(1, N + 1)}
    return config, dict(keys), inputs


@pytest.mark.parametrize("client", [0, N + 1, 9, -1])
def test_a_dropout_for_a_client_outside_the_session_is_refused(client: int) -> None:
    config, keys, inputs = _setup()
    with pytest.raises(ConfigurationError, match=rf"dropouts name client {client}, not in 1\.\.{N}"):
        run_session(config, inputs, dropouts={client: Round.MASKED_INPUT}, identities=keys)


@pytest.mark.parametrize("stage", ["upload", 2, None])
def test_a_dropout_stage_that_is_not_a_round_is_a_type_error_of_the_library(stage: object) -> None:
    config, keys, inputs = _setup()
    with pytest.raises(ConfigurationTypeError, match="dropouts: client 1's stage must be a Round"):
        run_session(config, inputs, dropouts={1: stage}, identities=keys)  # type: ignore[dict-item]


def test_a_dropout_inside_the_session_still_runs() -> None:
    config, keys, inputs = _setup()
    result = run_session(config, inputs, dropouts={2: Round.MASKED_INPUT}, identities=keys)
    assert result.included == frozenset({1, 3, 4, 5})
    assert (result.aggregate == 1 + 3 + 4 + 5).all()
