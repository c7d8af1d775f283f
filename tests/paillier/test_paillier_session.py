"""Sessions end to end: exactness for random configurations, dropouts, and session binding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from secagg import wire
from secagg.errors import (
    AuthenticationError,
    ConfigurationError,
    DecodeError,
    OverflowDetectedError,
    ProtocolError,
    ReplayError,
    ThresholdError,
)
from secagg.paillier import (
    Client,
    DecryptingParty,
    DecryptionRequest,
    EncryptedVector,
    Mode,
    Obfuscation,
    PaillierConfig,
    Server,
    SessionParameters,
    SlotLayout,
    Stage,
    ThresholdKeyMaterial,
    Workers,
    run_session,
)
from secagg.paillier import session as session_module
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import IDENTITIES, identity_keys, proven_data, signed_upload, single_material, threshold_material


def _inputs(config: PaillierConfig, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    low, high = config.layout.value_min, config.layout.value_max
    inputs = {}
    for k in range(1, config.num_clients + 1):
        vector = rng.integers(low, high, size=config.vector_length, endpoint=True, dtype=np.int64)
        vector[rng.random(config.vector_length) < 0.1] = low
        vector[rng.random(config.vector_length) < 0.1] = high
        inputs[k] = vector
    return inputs


def _material(config: PaillierConfig) -> object:
    if config.mode is Mode.SINGLE_KEY:
        return single_material(config.key_bits)
    return threshold_material(config.key_bits, config.num_parties, config.decryption_threshold)


@settings(max_examples=25)  # each example runs a full session; the ci profile cannot afford 300 of them
@given(
    mode=st.sampled_from(list(Mode)),
    obfuscation=st.sampled_from(list(Obfuscation)),
    key_bits=st.sampled_from([128, 256, 384, 512]),
    clients=st.integers(2, 6),  # one hospital has no one to hide among (refused)
    value_bits=st.integers(2, 24),
    length=st.integers(1, 120),
    data=st.data(),
)
def test_aggregate_is_the_exact_sum_or_the_session_says_why_not(
    mode: Mode, obfuscation: Obfuscation, key_bits: int, clients: int, value_bits: int, length: int, data: st.DataObject
) -> None:
    # Prepare
    # t > clients / 2: a minority threshold lets two disjoint groups decrypt two sums (refused)
    threshold = data.draw(st.integers(max(2, clients // 2 + 1), max(2, clients))) if mode is Mode.THRESHOLD else None
    config = PaillierConfig(
        num_clients=clients, vector_length=length, value_bits=value_bits, key_bits=key_bits, mode=mode,
        threshold=threshold, obfuscation=obfuscation, allow_insecure_key_bits_for_testing=True,
    )
    dropouts = data.draw(st.dictionaries(st.integers(1, clients), st.sampled_from(list(Stage))))
    inputs = _inputs(config, data.draw(st.integers(0, 2**32 - 1)))
    uploaders = [k for k in range(1, clients + 1) if dropouts.get(k) is not Stage.UPLOAD]
    live_parties = config.num_parties - (len(dropouts) if mode is Mode.THRESHOLD else 0)
    # Execute / Assert
    if len(uploaders) < config.contributors_needed or live_parties < config.decryption_threshold:
        event("too few uploads or parties: ThresholdError")
        with pytest.raises(ThresholdError):
            run_session(config, inputs, dropouts, key_material=_material(config))  # type: ignore[arg-type]
        return
    event("exact sum")
    result = run_session(
        config, inputs, dropouts, key_material=_material(config), random_bytes=InsecureDeterministicRandom(1)  # type: ignore[arg-type]
    )
    assert result.included == frozenset(uploaders)
    np.testing.assert_array_equal(result.aggregate, np.sum([inputs[k] for k in uploaders], axis=0))
    assert len(result.decrypting_parties) == config.decryption_threshold


def test_hospitals_dropping_after_upload_do_not_stop_decryption() -> None:
    # Prepare: 7 hospitals, t = 4; three upload and then go silent
    config = PaillierConfig(num_clients=7, vector_length=50, key_bits=256, threshold=4,
                            allow_insecure_key_bits_for_testing=True)
    inputs = _inputs(config, 1)
    dropouts = {1: Stage.DECRYPT, 2: Stage.DECRYPT, 4: Stage.DECRYPT}
    # Execute
    result = run_session(config, inputs, dropouts, key_material=threshold_material(256, 7, 4))
    # Assert: every vector counts; parties 3, 5, 6, 7 decrypted
    assert result.included == frozenset(range(1, 8))
    assert result.decrypting_parties == frozenset({3, 5, 6, 7})
    np.testing.assert_array_equal(result.aggregate, np.sum(list(inputs.values()), axis=0))


def test_fewer_than_t_live_parties_raise_threshold_error() -> None:
    config = PaillierConfig(num_clients=5, vector_length=10, key_bits=256, threshold=3,
                            allow_insecure_key_bits_for_testing=True)
    dropouts = {1: Stage.DECRYPT, 2: Stage.DECRYPT, 3: Stage.UPLOAD}
    with pytest.raises(ThresholdError, match="3 are needed"):
        run_session(config, _inputs(config, 2), dropouts, key_material=threshold_material(256, 5, 3))


def test_too_few_uploads_raise_threshold_error() -> None:
    config = PaillierConfig(num_clients=5, vector_length=10, key_bits=256, threshold=3,
                            allow_insecure_key_bits_for_testing=True)
    dropouts = {1: Stage.UPLOAD, 2: Stage.UPLOAD, 3: Stage.UPLOAD}
    with pytest.raises(ThresholdError, match="at least 3"):
        run_session(config, _inputs(config, 3), dropouts, key_material=threshold_material(256, 5, 3))


def test_key_material_must_fit_the_configuration() -> None:
    config = PaillierConfig(num_clients=5, vector_length=10, key_bits=256, threshold=4,
                            allow_insecure_key_bits_for_testing=True)
    with pytest.raises(ConfigurationError, match="3-of-5"):
        run_session(config, _inputs(config, 4), key_material=threshold_material(256, 5, 3))
    with pytest.raises(ConfigurationError, match="threshold mode"):
        run_session(config, _inputs(config, 4), key_material=single_material(256))


def test_session_with_its_own_ceremony_and_two_worker_processes() -> None:
    # Prepare: the ceremony runs inside run_session; kernels run in a spawn pool
    config = PaillierConfig(num_clients=3, vector_length=400, value_bits=20, key_bits=384, threshold=2,
                            obfuscation=Obfuscation.DJN, allow_insecure_key_bits_for_testing=True)
    inputs = _inputs(config, 5)
    # Execute
    with Workers(2) as workers:
        result = run_session(config, inputs, random_bytes=InsecureDeterministicRandom(2), workers=workers)
    # Assert
    np.testing.assert_array_equal(result.aggregate, np.sum(list(inputs.values()), axis=0))
    assert result.bytes_per_client_upload > 0


def test_two_sessions_over_one_key_and_roster_get_distinct_session_ids_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: the same key, identities and configuration twice, no context given
    seen: list[bytes] = []

    class RecordingServer(Server):
        def __init__(self, params: SessionParameters, **kwargs: Workers) -> None:
            seen.append(params.session_id)
            super().__init__(params, **kwargs)

    monkeypatch.setattr(session_module, "Server", RecordingServer)
    config = PaillierConfig(num_clients=3, vector_length=4, key_bits=256, allow_insecure_key_bits_for_testing=True)
    material = threshold_material(256, 3, 2)
    inputs = {k: np.arange(4) for k in (1, 2, 3)}
    # Execute
    for _ in range(2):
        run_session(config, inputs, key_material=material, identities={k: IDENTITIES[k] for k in (1, 2, 3)})
    # Assert: uploads and partial decryptions of the first session are not valid in the second
    assert len(seen) == 2 and seen[0] != seen[1]


# --- Session binding: what a decrypting party refuses --------------------------------------------


class Scenario:
    """Three hospitals and a 2-of-3 key; hospital 1 uploaded and holds share 1."""

    def __init__(self, material: ThresholdKeyMaterial, context: bytes = bytes(32)) -> None:
        self.material = material
        self.params = SessionParameters(
            public=material.public, layout=SlotLayout(16, 3, 256), vector_length=20,
            roster=(1, 2, 3), min_contributors=2, identity_keys=identity_keys((1, 2, 3)),
            context=context,
        )
        self.uploads = {
            k: Client(self.params, k, IDENTITIES[k], random_bytes=InsecureDeterministicRandom(k)).upload(np.full(20, k))
            for k in (1, 2, 3)
        }
        self.server = Server(self.params)
        for upload in self.uploads.values():
            self.server.receive_upload(wire.encode(upload))

    def party(self, index: int = 1) -> DecryptingParty:
        return DecryptingParty(
            self.params, self.material.shares[index - 1], own_upload=self.uploads[index].digest
        )

    def request(self, uploads: tuple[EncryptedVector, ...], recipient: int = 1) -> DecryptionRequest:
        return DecryptionRequest(session_id=self.params.session_id, recipient=recipient, uploads=uploads)


@pytest.fixture
def scenario() -> Scenario:
    return Scenario(threshold_material(256, 3, 2))


def test_honest_request_is_answered_and_combines(scenario: Scenario) -> None:
    # Execute
    for index in (1, 3):
        answer = scenario.party(index).respond(wire.encode(scenario.server.decryption_request(index)))
        scenario.server.receive_partial(wire.encode(answer))
    # Assert
    np.testing.assert_array_equal(scenario.server.finish(), np.full(20, 6))


def test_party_refuses_a_single_clients_upload(scenario: Scenario) -> None:
    with pytest.raises(ProtocolError, match="at least 2 are required"):
        scenario.party(2).respond(scenario.request((scenario.uploads[1],), recipient=2))


def test_party_refuses_a_second_different_aggregate(scenario: Scenario) -> None:
    # Prepare: the party answers the full aggregate first
    party = scenario.party(1)
    full = scenario.request((scenario.uploads[1], scenario.uploads[2], scenario.uploads[3]))
    first = party.respond(full)
    # Execute / Assert: the same request is answered identically, a different one refused
    assert party.respond(full) == first
    with pytest.raises(ReplayError, match="different aggregate"):
        party.respond(scenario.request((scenario.uploads[1], scenario.uploads[2])))


def test_party_refuses_requests_of_another_session(scenario: Scenario) -> None:
    other = Scenario(scenario.material, context=b"\x01" * 32)
    with pytest.raises(ProtocolError, match="another session"):
        scenario.party(1).respond(other.request((other.uploads[1], other.uploads[2])))
    mixed = scenario.request((scenario.uploads[1], other.uploads[2]))
    with pytest.raises(ProtocolError, match="another session"):
        scenario.party(1).respond(mixed)


def test_party_refuses_a_request_for_someone_else(scenario: Scenario) -> None:
    with pytest.raises(ProtocolError, match="addressed to party 2"):
        scenario.party(1).respond(scenario.request((scenario.uploads[1], scenario.uploads[2]), recipient=2))


def test_party_refuses_an_aggregate_without_its_own_upload(scenario: Scenario) -> None:
    with pytest.raises(ProtocolError, match="own upload"):
        scenario.party(1).respond(scenario.request((scenario.uploads[2], scenario.uploads[3])))


def test_party_refuses_an_altered_own_upload(scenario: Scenario) -> None:
    forger = Client(scenario.params, 1, IDENTITIES[1], random_bytes=InsecureDeterministicRandom(99))
    forged = forger.upload(np.zeros(20, dtype=np.int64))
    with pytest.raises(ProtocolError, match="own upload"):
        scenario.party(1).respond(scenario.request((forged, scenario.uploads[2])))


def test_party_refuses_duplicated_uploads(scenario: Scenario) -> None:
    with pytest.raises(ReplayError):
        scenario.party(2).respond(scenario.request((scenario.uploads[1], scenario.uploads[1]), recipient=2))


def test_party_refuses_an_upload_from_outside_the_roster(scenario: Scenario) -> None:
    upload = scenario.uploads[3]
    stranger = signed_upload(
        session_id=upload.session_id, client=9, length=upload.length, ciphertexts=upload.ciphertexts
    )
    with pytest.raises(ProtocolError, match="not in the session's roster"):
        scenario.party(1).respond(scenario.request((scenario.uploads[1], stranger)))


def test_server_refuses_replays_and_late_or_foreign_messages(scenario: Scenario) -> None:
    # Duplicate upload
    with pytest.raises(ReplayError):
        scenario.server.receive_upload(scenario.uploads[1])
    # Partial before any request
    fresh = Server(scenario.params)
    answer = scenario.party(1).respond(scenario.request((scenario.uploads[1], scenario.uploads[2])))
    with pytest.raises(ProtocolError, match="before any request"):
        fresh.receive_partial(answer)
    # Partial of another aggregate (the server holds all three uploads)
    scenario.server.decryption_request(1)
    with pytest.raises(ProtocolError, match="another aggregate"):
        scenario.server.receive_partial(answer)
    # Upload after closing
    with pytest.raises(ProtocolError, match="after closing"):
        scenario.server.receive_upload(scenario.uploads[2])


def test_server_refuses_a_party_answering_twice(scenario: Scenario) -> None:
    answer = scenario.party(1).respond(scenario.server.decryption_request(1))
    scenario.server.receive_partial(answer)
    with pytest.raises(ReplayError):
        scenario.server.receive_partial(answer)


def test_server_refuses_partials_of_the_wrong_size(scenario: Scenario) -> None:
    answer = scenario.party(1).respond(scenario.server.decryption_request(1))
    short = dataclasses.replace(answer, values=answer.values[:-1])
    with pytest.raises(DecodeError):
        scenario.server.receive_partial(short)


def test_fewer_than_t_partials_give_no_result(scenario: Scenario) -> None:
    answer = scenario.party(1).respond(scenario.server.decryption_request(1))
    scenario.server.receive_partial(answer)
    with pytest.raises(ThresholdError):
        scenario.server.finish()


# --- Proofs of correct partial decryption: a lying party is caught and named ---------------------


def _shifted(scenario: Scenario, answer_values: bytes, word: int) -> bytes:
    """The answer with word ``word`` multiplied by (1 + n): still 1 mod n after combining,
    but it would shift the decrypted plaintext: only the proof can catch it."""
    key = scenario.params.public.key
    width = key.ciphertext_bytes
    value = int.from_bytes(answer_values[word * width : (word + 1) * width], "big")
    value = value * (1 + key.n) % key.nsquare
    return answer_values[: word * width] + value.to_bytes(width, "big") + answer_values[(word + 1) * width :]


def test_a_shifted_partial_fails_its_proof_and_others_still_decrypt(scenario: Scenario) -> None:
    # Prepare: party 1 tampers with its last word after proving; parties 2 and 3 are honest
    answer = scenario.party(1).respond(scenario.server.decryption_request(1))
    lie = dataclasses.replace(answer, values=_shifted(scenario, answer.values, 0))
    # Execute / Assert: the proof names party 1; the honest pair still decrypts
    with pytest.raises(AuthenticationError, match="party 1: its proof"):
        scenario.server.receive_partial(lie)
    for index in (2, 3):
        scenario.server.receive_partial(scenario.party(index).respond(scenario.server.decryption_request(index)))
    np.testing.assert_array_equal(scenario.server.finish(), np.full(20, 6))


def test_a_proof_made_with_another_share_fails(scenario: Scenario) -> None:
    # Prepare: party 2's honest answer relabelled as party 3's
    answer = scenario.party(2).respond(scenario.server.decryption_request(2))
    relabelled = dataclasses.replace(answer, party=3)
    # Execute / Assert
    with pytest.raises(AuthenticationError, match="party 3"):
        scenario.server.receive_partial(relabelled)


def test_constant_time_party_answers_identically_and_proves(scenario: Scenario) -> None:
    # Prepare: two parties with the same share and proof randomness, one constant time (the
    # default), one opted out
    request = scenario.server.decryption_request(1)
    own = scenario.uploads[1].digest
    fast = DecryptingParty(
        scenario.params, scenario.material.shares[0], own_upload=own, random_bytes=InsecureDeterministicRandom(5),
        constant_time=False,
    )  # fmt: skip
    silent = DecryptingParty(
        scenario.params, scenario.material.shares[0], own_upload=own, random_bytes=InsecureDeterministicRandom(5)
    )
    # Execute
    answer = silent.respond(request)
    # Assert
    assert answer == fast.respond(request)
    scenario.server.receive_partial(answer)


def test_a_tampered_proof_fails(scenario: Scenario) -> None:
    answer = scenario.party(1).respond(scenario.server.decryption_request(1))
    bad_response = dataclasses.replace(answer.proof, response=answer.proof.response + 1)
    bad_challenge = dataclasses.replace(answer.proof, challenge=bytes(16))
    for proof in (bad_response, bad_challenge):
        with pytest.raises(AuthenticationError):
            scenario.server.receive_partial(dataclasses.replace(answer, proof=proof))


def test_a_forced_overflow_in_an_encrypted_upload_is_detected_after_decryption(scenario: Scenario) -> None:
    # Prepare: a fresh server; client 3 bypasses packing and encrypts a plaintext whose
    # first slot holds 2^(w-1) + 5: the sum sets that slot's guard bit without carrying
    # (a deliberate carry would just encode other in-range values: see docs, threat model)
    params = scenario.params
    server = Server(params)
    for k in (1, 2):
        server.receive_upload(scenario.uploads[k])
    layout = params.layout
    plaintexts = [(1 << (layout.width - 1)) + 5] + [0] * (params.num_ciphertexts - 1)
    forged = signed_upload(
        session_id=params.session_id, client=3, length=params.vector_length,
        ciphertexts=proven_data(params, 3, plaintexts),  # it knows its plaintexts: its proof is valid
    )
    server.receive_upload(forged)
    # Execute
    for index in (1, 2):
        party = DecryptingParty(params, scenario.material.shares[index - 1], own_upload=scenario.uploads[index].digest)
        server.receive_partial(party.respond(server.decryption_request(index)))
    # Assert
    with pytest.raises(OverflowDetectedError):
        server.finish()


def test_session_parameters_have_no_default_context() -> None:
    # A default context (it was 32 zero bytes) gave every session under one key and roster one id
    fields = {f.name: f for f in dataclasses.fields(SessionParameters)}

    # Assert: the caller must name the session
    assert fields["context"].default is dataclasses.MISSING


def test_party_refuses_a_second_aggregate_that_differs_only_in_one_uploads_content(scenario: Scenario) -> None:
    """Hospital 3 (colluding) signs a second upload in the same session; the two aggregates
    have the same clients. The aggregate digest covers every upload's content: the second
    aggregate is a different one, refused, not answered with the first one's partial."""
    # Prepare
    party = scenario.party(1)
    first = party.respond(scenario.request((scenario.uploads[1], scenario.uploads[3])))
    resigned = Client(scenario.params, 3, IDENTITIES[3], random_bytes=InsecureDeterministicRandom(33)).upload(
        np.full(20, 7)
    )
    assert resigned.digest != scenario.uploads[3].digest
    # Execute / Assert
    with pytest.raises(ReplayError, match="different aggregate"):
        party.respond(scenario.request((scenario.uploads[1], resigned)))
    assert party.respond(scenario.request((scenario.uploads[1], scenario.uploads[3]))) == first


def test_a_client_signs_one_upload_per_session(scenario: Scenario) -> None:
    """A second signed upload of one hospital in one session would let a server put one of them in
    each of two aggregates: the client refuses to make it."""
    client = Client(scenario.params, 2, IDENTITIES[2], random_bytes=InsecureDeterministicRandom(22))
    first = client.upload(np.full(20, 2))
    # Execute / Assert
    with pytest.raises(ReplayError, match="already uploaded"):
        client.upload(np.full(20, 2))
    assert client.upload_digest == first.digest
