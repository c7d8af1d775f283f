"""What the server sees: masked inputs that look uniform, and secrets it cannot
recover from fewer than t shares.

The uniformity check is a chi-square goodness-of-fit test on byte histograms of
the masked vectors in the transcript. The critical value comes from scipy when
it is installed; otherwise from the Wilson-Hilferty approximation, which for
255 degrees of freedom is within 0.1 % of the exact quantile: if X ~ chi2(k)
then (X / k)^(1/3) is close to normal with mean 1 - 2/(9k) and variance 2/(9k).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from secagg import wire
from secagg.encoding import QuantizationConfig, quantize
from secagg.errors import ConfigurationError, ThresholdError
from secagg.masking import ClientPhase, MaskingConfig, Round, run_session
from secagg.masking.messages import MaskedInput
from secagg.primitives import shamir
from secagg.primitives.randomness import InsecureDeterministicRandom

from .harness import StepRun, random_inputs

P_VALUE = 1e-6  # per statistic: a false alarm would need a one-in-a-million byte histogram
BINS = 256
Z_FOR_P = 4.753424308822899  # the standard normal quantile of 1 - 1e-6


def chi_square_critical(dof: int, p: float = P_VALUE) -> float:
    """The (1 - p) quantile of chi2(dof): scipy if available, else Wilson-Hilferty."""
    try:
        from scipy.stats import chi2  # noqa: PLC0415 - optional: only this helper needs it
    except ImportError:  # pragma: no cover - scipy is in the dev environment
        assert p == P_VALUE, "the normal quantile below is for P_VALUE only"
        h = 2 / (9 * dof)
        return dof * (1 - h + Z_FOR_P * math.sqrt(h)) ** 3
    return float(chi2.isf(p, dof))


def byte_statistic(vector: np.ndarray, which: str) -> float:
    """Chi-square statistic of the top or low byte of every element against uniform."""
    shift = 8 * vector.dtype.itemsize - 8 if which == "top" else 0
    counts = np.bincount(((vector >> np.array(shift, dtype=vector.dtype)) & 0xFF).astype(np.int64), minlength=BINS)
    expected = vector.shape[0] / BINS
    return float(((counts - expected) ** 2 / expected).sum())


def test_wilson_hilferty_approximation_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    h = 2 / (9 * 255)
    approximation = 255 * (1 - h + Z_FOR_P * math.sqrt(h)) ** 3
    assert approximation == pytest.approx(float(scipy_stats.chi2.isf(P_VALUE, 255)), rel=1e-3)


def masked_vectors(ring_bits: int, inputs: dict[int, np.ndarray], config: MaskingConfig) -> list[np.ndarray]:
    result = run_session(config, inputs, random_bytes=InsecureDeterministicRandom(ring_bits))
    vectors = [wire.decode(e.data, MaskedInput).vector.values
               for e in result.transcript if e.round == Round.MASKED_INPUT]
    assert len(vectors) == config.num_clients
    return vectors


@pytest.mark.parametrize("ring_bits", [32, 64])
@pytest.mark.parametrize("which", ["top", "low"])
def test_masked_inputs_of_zero_vectors_look_uniform(ring_bits: int, which: str) -> None:
    # Prepare: all-zero inputs, so whatever structure is left comes from the masks.
    config = MaskingConfig(num_clients=6, threshold=3, vector_length=8192, ring_bits=ring_bits, mode="semi-honest")
    inputs = {c: config.ring.zeros(config.vector_length) for c in range(1, 7)}
    critical = chi_square_critical(BINS - 1)
    # Execute
    statistics = [byte_statistic(v, which) for v in masked_vectors(ring_bits, inputs, config)]
    # Assert
    assert all(s < critical for s in statistics), (statistics, critical)


@pytest.mark.parametrize("ring_bits", [32, 64])
def test_the_uniformity_statistic_can_fail(ring_bits: int) -> None:
    """The same statistic rejects what an unmasked client would have sent: a
    quantized model update (small values in two's complement) and zeros."""
    # Prepare
    config = MaskingConfig(num_clients=6, threshold=3, vector_length=8192, ring_bits=ring_bits, mode="semi-honest")
    quantization = QuantizationConfig(clip=1.0, bits=16, num_clients=6, ring_bits=ring_bits)
    generator = np.random.default_rng(5)
    update = quantize(generator.normal(0.0, 0.1, config.vector_length), quantization, generator)
    critical = chi_square_critical(BINS - 1)
    # Execute / Assert
    assert byte_statistic(update, "top") > critical
    assert byte_statistic(config.ring.zeros(config.vector_length), "low") > critical


def test_transcript_never_carries_an_input() -> None:
    # Prepare: random inputs long enough that an accidental match is impossible.
    config = MaskingConfig(num_clients=6, threshold=3, vector_length=64, mode="semi-honest")
    inputs = random_inputs(config, 21)
    # Execute: a dropout after masking makes the server unmask a key as well.
    result = run_session(config, inputs, {6: Round.UNMASKING}, random_bytes=InsecureDeterministicRandom(21))
    # Assert: no input (nor any 16-byte piece of one) appears in anything the server received.
    received = b"".join(entry.data for entry in result.transcript)
    for vector in inputs.values():
        raw = vector.tobytes()
        assert all(raw[i : i + 16] not in received for i in range(0, len(raw), 16))


def test_server_cannot_unmask_with_t_minus_one_responders() -> None:
    # Prepare: n = 5, t = 3; clients 1 and 2 drop before masking, so each survivor's
    # self-mask is shared among the other two survivors and client 5, which then drops.
    config = MaskingConfig(num_clients=5, threshold=3, vector_length=4, mode="semi-honest")
    inputs = random_inputs(config, 4)
    dropouts = {1: Round.MASKED_INPUT, 2: Round.MASKED_INPUT, 5: Round.UNMASKING}
    # Execute / Assert
    with pytest.raises(ThresholdError, match=r"^server: .*threshold 3"):
        run_session(config, inputs, dropouts, random_bytes=InsecureDeterministicRandom(4))


def held_shares(run: StepRun, owner: int, which: str) -> list[shamir.Share]:
    """The shares of ``owner``'s secret that the other clients hold."""
    shares = []
    for client, state in sorted(run.states.items()):
        for held in state.held:
            if held.owner == owner:
                value = held.self_mask_share if which == "self" else held.mask_key_share
                shares.append(shamir.Share(client, int.from_bytes(value, "big")))
    return shares


@pytest.mark.parametrize("which", ["self", "key"])
def test_t_minus_one_shares_of_a_real_secret_reveal_nothing_usable(which: str) -> None:
    # Prepare: every client holds its neighbours' shares (n = 5, t = 3).
    run = StepRun(MaskingConfig(num_clients=5, threshold=3, vector_length=4, mode="semi-honest"), seed=6)
    run.run_until(ClientPhase.AWAIT_UNMASK)
    owner = run.states[1]
    secret = owner.self_mask_seed if which == "self" else owner.mask_private
    shares = held_shares(run, 1, which)
    assert [s.index for s in shares] == [2, 3, 4, 5]
    # Execute / Assert: any t shares recover the secret ...
    assert shamir.combine(shares[1:4], 3) == secret
    assert shamir.combine(shares[:3], 3) == secret
    # ... t - 1 shares are refused, and read as a lower-degree sharing they give garbage.
    with pytest.raises(ConfigurationError):
        shamir.combine(shares[:2], 3)
    assert shamir.combine(shares[:2], 2) != secret
    assert shamir.combine(shares[2:], 2) != shamir.combine(shares[:2], 2)
