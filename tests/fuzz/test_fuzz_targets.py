"""Every decoder and stage entry point, on random bytes and structure-aware mutations.

The property (DESIGN.md, "Bad input never crashes with a foreign exception"):
nothing but :class:`~secagg.errors.SecAggError` escapes, checked with
``isinstance`` so library errors may also derive from built-in types. Server
steps must moreover complete the round when the honest clients alone satisfy
the threshold, with the malicious message recorded in ``state.rejected``
(see :mod:`.targets`). Examples per test follow the hypothesis profile
(tests/conftest.py); the long coverage-guided run is test_fuzz_atheris.py.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secagg import wire
from secagg.errors import SecAggError
from secagg.masking import ServerPhase

from . import corpus
from .mutation import mutate, spans
from .targets import TARGETS, run, server_round

FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Stage targets are slower than decoders: fewer examples each keeps the default run short.
# The mutation stream is a seeded random.Random: a failing example prints its seed.
SEEDS = st.integers(min_value=0, max_value=2**64 - 1)
STAGE = settings(FUZZ, max_examples=max(10, settings.default.max_examples // 2))

DECODERS = sorted(name for name in TARGETS if name.startswith("decode"))
STAGES = sorted(name for name in TARGETS if not name.startswith("decode"))


def test_every_registered_message_type_has_a_decoder_target_and_seeds() -> None:
    corpus.flower_messages()
    # Other test modules register probe types of their own; the library's are in secagg.
    names = {cls.__name__ for cls in wire.message_types() if cls.__module__.startswith("secagg.")}
    assert {f"decode:{name}" for name in names} <= set(TARGETS)
    for name in names:
        assert TARGETS[f"decode:{name}"].seeds(), f"no valid {name} to mutate"


def test_valid_seeds_pass_every_target() -> None:
    """The unmutated seeds run through each target; only protocol refusals may be raised."""
    for target in TARGETS.values():
        for seed in target.seeds()[:2]:
            run(target, seed)


@pytest.mark.parametrize("name", ["decode_any", *STAGES])  # decode(data, T) starts as decode_any
@FUZZ
@given(data=st.binary(max_size=512))
def test_random_bytes(name: str, data: bytes) -> None:
    run(TARGETS[name], data)


@pytest.mark.parametrize("name", DECODERS)
@FUZZ
@given(seed=SEEDS)
def test_mutated_encodings_decode_or_raise_decode_errors(name: str, seed: int) -> None:
    target = TARGETS[name]
    rng = random.Random(seed)
    run(target, mutate(rng.choice(target.seeds()), rng, target.donors()))


@pytest.mark.parametrize("name", STAGES)
@STAGE
@given(seed=SEEDS)
def test_mutated_messages_at_every_stage(name: str, seed: int) -> None:
    target = TARGETS[name]
    rng = random.Random(seed)
    run(target, mutate(rng.choice(target.seeds()), rng, target.donors()))


@pytest.mark.parametrize("config", corpus.MASKING_CONFIGS)
@STAGE
@given(seed=SEEDS, sender=st.sampled_from([0, corpus.BAD, 99, 2**32]))
def test_a_stranger_or_a_client_sending_any_message_costs_only_itself(config: str, seed: int, sender: int) -> None:
    """Any client message (or a mutation of it), under any transport id, in every server phase."""
    rng = random.Random(seed)
    record = corpus.masking_recording(config)
    phases = [p for p in ServerPhase if p in record.server_states]
    phase = rng.choice(phases)
    donors = record.messages()
    data = rng.choice(donors)
    if rng.random() < 0.7:
        data = mutate(data, rng, donors)
    server_round(config, phase, data, sender)


def test_spans_cover_every_seed_exactly() -> None:
    """The mutation engine locates every field of every valid encoding."""
    for seed in corpus.all_seeds():
        located = spans(seed)
        assert located[-1].end == len(seed), type(wire.decode_any(seed)).__name__
        assert all(a.end == b.start for a, b in itertools.pairwise(located))


def test_run_lets_only_library_errors_pass() -> None:
    def foreign(data: bytes) -> None:
        raise IndexError("boom")

    def own(data: bytes) -> None:
        raise SecAggError("refused")

    target = TARGETS["decode_any"]
    run(type(target)("own", own, target.seeds), b"")
    with pytest.raises(IndexError):
        run(type(target)("foreign", foreign, target.seeds), b"")
