"""Two groups of t decrypting parties, two aggregates that differ in one upload.

Each party answers one aggregate per session and only one containing its own
upload, but nothing ties one party's aggregate to another's: two groups of t
parties that share only colluders can each decrypt a different aggregate, and
the difference of "with hospital 1" and "without" is hospital 1's update. The
key shape must therefore satisfy 2t > l + c (spec 13.9), as the masking
survivor split does (2t > n + c): a 3-of-6 key is refused (no colluder needed),
and the default five-hospital configuration (t = 3) guarantees c = 0, not 1.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import ConfigurationError, SecAggError
from secagg.paillier import (
    IN_MEMORY_ONLY,
    NO_OWN_UPLOAD,
    Client,
    DecryptingParty,
    PaillierConfig,
    Server,
    SessionParameters,
    SlotLayout,
    ThresholdKeyMaterial,
)
from secagg.paillier.messages import DecryptionRequest, EncryptedVector
from secagg.paillier.packing import unpack
from secagg.paillier.parameters import threshold_guarantee
from secagg.paillier.threshold import combine_partials
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import IDENTITIES, identity_keys, threshold_material, unsafe_threshold_material

LENGTH = 4


def _material(num_parties: int, threshold: int) -> ThresholdKeyMaterial:
    """The dealt t-of-l key, or, for a shape the dealer refuses (2t <= l), the tests' private path."""
    if 2 * threshold <= num_parties:
        return unsafe_threshold_material(256, num_parties, threshold)
    return threshold_material(256, num_parties, threshold)


def _decrypt(params: SessionParameters, parties: dict[int, DecryptingParty],
             uploads: tuple[EncryptedVector, ...]) -> np.ndarray | None:
    """What the server gets from ``parties`` for the sum of ``uploads`` (None if refused)."""
    server = Server(params)
    for upload in uploads:
        server.receive_upload(upload)
    partials = {}
    for index, party in parties.items():
        try:
            partial = party.respond(DecryptionRequest(params.session_id, index, uploads))
        except SecAggError:
            continue
        partials[index] = params.public.key.parse_ciphertexts(partial.values, "test")
    if len(partials) < params.public.threshold:
        return None
    plaintexts = combine_partials(params.public, dict(list(partials.items())[: params.public.threshold]))
    return unpack(plaintexts, params.layout, params.vector_length, len(uploads))


def _difference_attack(
    params: SessionParameters, threshold: int, first: tuple[int, ...], second: tuple[int, ...], colluder: int | None
) -> bool:
    """Hospitals 1..4 upload; parties ``first`` (+ the colluder) decrypt uploads 1..4, parties
    ``second`` (+ the colluder, answering again) decrypt 2..4. True if that gives hospital 1's update."""
    material = _material(len(params.roster), threshold)
    inputs = {k: np.arange(LENGTH, dtype=np.int64) * k + 7 * k for k in params.roster}
    uploads = {
        k: Client(params, k, IDENTITIES[k], random_bytes=InsecureDeterministicRandom(k)).upload(inputs[k])
        for k in (1, 2, 3, 4)
    }

    def party(k: int) -> DecryptingParty:
        own = uploads[k].digest if k in uploads else NO_OWN_UPLOAD
        return DecryptingParty(params, material.shares[k - 1], own_upload=own, journal=IN_MEMORY_ONLY)

    extra = () if colluder is None else (colluder,)
    with_1 = _decrypt(params, {k: party(k) for k in (*first, *extra)}, tuple(uploads[k] for k in (1, 2, 3, 4)))
    without_1 = _decrypt(params, {k: party(k) for k in (*second, *extra)}, tuple(uploads[k] for k in (2, 3, 4)))
    return with_1 is not None and without_1 is not None and np.array_equal(with_1 - without_1, inputs[1])


def _params(num_parties: int, threshold: int, min_contributors: int) -> SessionParameters:
    roster = tuple(range(1, num_parties + 1))
    return SessionParameters(
        public=_material(num_parties, threshold).public, layout=SlotLayout(16, num_parties, 256),
        vector_length=LENGTH, roster=roster, min_contributors=min_contributors, identity_keys=identity_keys(roster),
        context=bytes(32),
    )


def _guarantee(config: PaillierConfig) -> int:
    return threshold_guarantee(
        config.num_parties, config.decryption_threshold, config.num_clients, config.contributors_needed
    ).colluders


def test_a_3_of_5_configuration_guarantees_no_colluder_the_split_needs() -> None:
    """n = 5, t = 3, min_contributors = 3 (the default before it followed masking's trade-off):
    one colluding hospital (5) answering both aggregates leaks hospital 1's update, so the
    guarantee must not claim c = 1."""
    config = PaillierConfig(num_clients=5, vector_length=LENGTH, key_bits=256, threshold=3,
                            allow_insecure_key_bits_for_testing=True)
    assert (config.decryption_threshold, config.contributors_needed) == (3, 3)
    params = _params(5, 3, 3)
    leaked = _difference_attack(params, 3, first=(1, 2), second=(3, 4), colluder=5)
    assert not (leaked and params.guarantee.colluders >= 1), "hospital 1's update leaked inside the guarantee"
    assert params.guarantee.colluders == 0 and _guarantee(config) == 0


def test_a_key_two_disjoint_groups_can_use_is_refused() -> None:
    """A 3-of-6 key: parties {1, 2, 5} and {3, 4, 6} are disjoint; no colluder is needed."""
    try:
        params = _params(6, 3, 3)
    except ConfigurationError as exc:
        assert "2t > l + c" in str(exc)
        return
    assert not _difference_attack(params, 3, first=(1, 2, 5), second=(3, 4, 6), colluder=None), (
        "a lying server alone learnt hospital 1's update"
    )


@pytest.mark.parametrize(("num_clients", "colluders", "threshold"), [(5, 1, 4), (6, 0, 4), (6, 2, 5), (7, 1, 5)])
def test_the_default_threshold_keeps_two_groups_apart(num_clients: int, colluders: int, threshold: int) -> None:
    config = PaillierConfig(num_clients=num_clients, vector_length=LENGTH, key_bits=256, colluders=colluders,
                            allow_insecure_key_bits_for_testing=True)
    assert config.decryption_threshold == threshold
    assert _guarantee(config) >= colluders


@pytest.mark.parametrize(("num_clients", "threshold", "colluders"), [(6, 3, 0), (5, 3, 1), (7, 4, 1)])
def test_a_threshold_two_groups_can_split_is_refused(num_clients: int, threshold: int, colluders: int) -> None:
    with pytest.raises(ConfigurationError, match="2t > l"):
        PaillierConfig(num_clients=num_clients, vector_length=LENGTH, key_bits=256, threshold=threshold,
                       colluders=colluders, allow_insecure_key_bits_for_testing=True)
