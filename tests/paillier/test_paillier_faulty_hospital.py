"""One faulty hospital costs only itself: fl_core's Paillier aggregator drops a bad upload or a bad
partial decryption with the reason in the round's result and goes on with the others, or skips
the round with the reason; it never raises for everyone and never returns a wrong sum.

Faults are injected by replacing the aggregator's Client / DecryptingParty with subclasses that
corrupt one hospital's message (a faulty hospital signs whatever it sends: it holds its key).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from fl_core.aggregators import ClientUpdate, DropoutStage, WeightedQuantizer
from fl_core.aggregators import paillier_hospitals as hospitals_module  # where the hospitals upload and decrypt
from fl_core.aggregators.paillier import PaillierAggregator
from fl_core.aggregators.plain import QuantizedPlainAggregator
from secagg import wire
from secagg.errors import ProtocolError, SecAggError
from secagg.paillier import (
    Client,
    DecryptingParty,
    DecryptionRequest,
    EncryptedVector,
    PartialDecryption,
    Server,
    SessionParameters,
    SlotLayout,
)
from secagg.paillier.messages import upload_payload
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import IDENTITIES, identity_keys, proven_data, threshold_material

pytestmark = pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")

VICTIM = 1
"""The faulty hospital (client id 1, key share 2)."""

SIZES = (30, 5, 120, 64, 9)


def _updates() -> list[ClientUpdate]:
    rng = np.random.default_rng(0)
    return [ClientUpdate(client, rng.uniform(-0.45, 0.45, size=12), size) for client, size in enumerate(SIZES)]


def _aggregator(threshold: int = 4) -> PaillierAggregator:
    quantizer = WeightedQuantizer.create(5, clip=0.5, bits=16)
    return PaillierAggregator(
        quantizer, insecure_small_key=True, key_material=threshold_material(256, 5, threshold),
        random_bytes=InsecureDeterministicRandom(3), threshold=threshold, clipping="fixed",
    )


def _reference(dropouts: dict[int, DropoutStage]) -> npt.NDArray[np.float64]:
    quantizer = WeightedQuantizer.create(5, clip=0.5, bits=16)
    result = QuantizedPlainAggregator(quantizer).aggregate(_updates(), dropouts, rng=np.random.default_rng(7))
    assert result.mean is not None
    return result.mean


def _resigned(client: Client, message: EncryptedVector, **changes: Any) -> EncryptedVector:
    """``message`` with ``changes``, signed again by the (faulty) hospital itself."""
    changed = dataclasses.replace(message, **changes)
    payload = upload_payload(changed.session_id, changed.client, changed.length, changed.ciphertexts)
    return dataclasses.replace(changed, signature=client.identity.sign(payload))


def _word(client: Client, value: int) -> bytes:
    return value.to_bytes(client.params.public.key.ciphertext_bytes, "big")


UploadFault = Callable[[Client, EncryptedVector], EncryptedVector]

UPLOAD_FAULTS: dict[str, UploadFault] = {
    "ciphertext zero": lambda c, m: _resigned(
        c, m, ciphertexts=_word(c, 0) + m.ciphertexts[len(_word(c, 0)) :]
    ),
    "ciphertext n^2": lambda c, m: _resigned(
        c, m, ciphertexts=_word(c, c.params.public.key.nsquare) + m.ciphertexts[len(_word(c, 0)) :]
    ),
    "ciphertext sharing a factor with n": lambda c, m: _resigned(
        c, m, ciphertexts=_word(c, c.params.public.key.n) + m.ciphertexts[len(_word(c, 0)) :]
    ),
    "one ciphertext short": lambda c, m: _resigned(c, m, ciphertexts=m.ciphertexts[: -len(_word(c, 0))]),
    "one ciphertext more": lambda c, m: _resigned(c, m, ciphertexts=m.ciphertexts + m.ciphertexts[: len(_word(c, 0))]),
    "wrong vector length": lambda c, m: _resigned(c, m, length=m.length + 1),
    "signature that does not verify": lambda c, m: dataclasses.replace(m, signature=bytes(64)),
}


def _faulty_clients(fault: UploadFault) -> type[Client]:
    class FaultyClient(Client):
        def upload(self, values: npt.ArrayLike) -> EncryptedVector:
            message = super().upload(values)
            return fault(self, message) if self.client_id == VICTIM else message

    return FaultyClient


def _assert_victim_dropped(result: Any) -> None:
    assert result.mean is not None, result.skipped_reason
    assert result.included == frozenset(c for c in range(5) if c != VICTIM)
    assert set(result.errors) == {VICTIM}
    assert f"client {VICTIM}" in result.errors[VICTIM]
    # Exactly the mean of the others: the bad upload is in no sum
    np.testing.assert_array_equal(result.mean, _reference({VICTIM: DropoutStage.UPLOAD}))


@pytest.mark.parametrize("name", sorted(UPLOAD_FAULTS))
def test_a_bad_upload_is_dropped_with_its_reason_and_the_round_goes_on(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Prepare: hospital 1 sends a corrupted (but self-signed, where it can) upload
    monkeypatch.setattr(hospitals_module, "Client", _faulty_clients(UPLOAD_FAULTS[name]))
    # Execute
    result = _aggregator().aggregate(_updates(), {}, rng=np.random.default_rng(7))
    # Assert
    _assert_victim_dropped(result)


def test_a_malformed_upload_is_dropped_and_the_round_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: hospital 1's upload arrives truncated on the wire
    class TruncatingWire:
        decode = staticmethod(wire.decode)

        @staticmethod
        def encode(message: wire.Message) -> bytes:
            data = wire.encode(message)
            if isinstance(message, EncryptedVector) and message.client == VICTIM:
                return data[:-7]
            return data

    monkeypatch.setattr(hospitals_module, "wire", TruncatingWire)
    # Execute
    result = _aggregator().aggregate(_updates(), {}, rng=np.random.default_rng(7))
    # Assert
    assert result.mean is not None, result.skipped_reason
    assert result.included == frozenset({0, 2, 3, 4})
    assert set(result.errors) == {VICTIM}
    np.testing.assert_array_equal(result.mean, _reference({VICTIM: DropoutStage.UPLOAD}))


def test_an_upload_replayed_from_another_round_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: round 1 is honest; in round 2 hospital 1 replays its round-1 upload (another session)
    recorded: dict[str, EncryptedVector] = {}

    def replay(client: Client, message: EncryptedVector) -> EncryptedVector:
        return recorded.setdefault("first", message)

    monkeypatch.setattr(hospitals_module, "Client", _faulty_clients(replay))
    aggregator = _aggregator()
    first = aggregator.aggregate(_updates(), {}, rng=np.random.default_rng(7))
    assert first.mean is not None and not first.errors
    # Execute
    result = aggregator.aggregate(_updates(), {}, rng=np.random.default_rng(7))
    # Assert
    _assert_victim_dropped(result)
    assert "another session" in result.errors[VICTIM]


def test_a_dropped_upload_below_min_contributors_skips_the_round_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: 4-of-5 key, min_contributors 4; hospital 4 drops, hospital 1's upload is bad
    monkeypatch.setattr(hospitals_module, "Client", _faulty_clients(UPLOAD_FAULTS["one ciphertext short"]))
    # Execute
    result = _aggregator().aggregate(_updates(), {4: DropoutStage.UPLOAD}, rng=np.random.default_rng(7))
    # Assert: skipped, not raised; the reason and the dropped hospital are reported
    assert result.skipped
    assert "3 uploads" in str(result.skipped_reason) and "at least 4" in str(result.skipped_reason)
    assert set(result.errors) == {VICTIM}


PartialFault = Callable[[DecryptingParty, PartialDecryption], PartialDecryption]


def _shift_first_word(party: DecryptingParty, answer: PartialDecryption) -> PartialDecryption:
    key = party.params.public.key
    width = key.ciphertext_bytes
    value = int.from_bytes(answer.values[:width], "big") * (1 + key.n) % key.nsquare
    return dataclasses.replace(answer, values=value.to_bytes(width, "big") + answer.values[width:])


def _refuse(party: DecryptingParty, answer: PartialDecryption) -> PartialDecryption:
    raise ProtocolError(f"party {party.index}: refusing")


PARTIAL_FAULTS: dict[str, PartialFault] = {
    "shifted partial": _shift_first_word,
    "tampered proof": lambda p, a: dataclasses.replace(
        a, proof=dataclasses.replace(a.proof, response=a.proof.response + 1)
    ),
    "partial one word short": lambda p, a: dataclasses.replace(
        a, values=a.values[: -p.params.public.key.ciphertext_bytes]
    ),
    "partial of another aggregate": lambda p, a: dataclasses.replace(a, aggregate_digest=bytes(32)),
    "partial as another party": lambda p, a: dataclasses.replace(a, party=5),
    "party refuses": _refuse,
}


def _faulty_parties(fault: PartialFault, victims: frozenset[int] = frozenset({VICTIM + 1})) -> type[DecryptingParty]:
    class FaultyParty(DecryptingParty):
        def respond(self, request: DecryptionRequest | bytes) -> PartialDecryption:
            answer = super().respond(request)
            return fault(self, answer) if self.index in victims else answer

    return FaultyParty


@pytest.mark.parametrize("name", sorted(PARTIAL_FAULTS))
def test_a_bad_partial_decryption_is_dropped_and_another_hospital_decrypts(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Prepare: 3-of-5; hospital 1 (share 2, asked second) answers wrongly
    monkeypatch.setattr(hospitals_module, "DecryptingParty", _faulty_parties(PARTIAL_FAULTS[name]))
    # Execute
    result = _aggregator(threshold=3).aggregate(_updates(), {}, rng=np.random.default_rng(7))
    # Assert: its upload is still in the (exact) sum; its answer is dropped with the reason
    assert result.mean is not None, result.skipped_reason
    assert result.included == frozenset(range(5))
    assert set(result.errors) == {VICTIM}
    np.testing.assert_array_equal(result.mean, _reference({}))


def test_too_many_bad_partials_skip_the_round_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: 4-of-5; hospitals 1 and 3 (shares 2 and 4) lie: only three good answers remain
    monkeypatch.setattr(
        hospitals_module, "DecryptingParty", _faulty_parties(_shift_first_word, frozenset({2, 4}))
    )
    # Execute
    result = _aggregator().aggregate(_updates(), {}, rng=np.random.default_rng(7))
    # Assert
    assert result.skipped
    assert "3 partial decryptions" in str(result.skipped_reason) and "4 are needed" in str(result.skipped_reason)
    assert set(result.errors) == {1, 3}


def test_an_upload_that_overflows_its_slots_skips_the_round_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: hospital 1 bypasses packing and encrypts a plaintext whose first slot has its guard
    # bit set: no one can see it before decryption; the decoded sum is refused, not returned
    def overflow(client: Client, message: EncryptedVector) -> EncryptedVector:
        layout = client.params.layout
        plaintexts = [1 << (layout.width - 1)] + [0] * (client.params.num_ciphertexts - 1)
        return _resigned(client, message, ciphertexts=proven_data(client.params, client.client_id, plaintexts))

    monkeypatch.setattr(hospitals_module, "Client", _faulty_clients(overflow))
    # Execute
    result = _aggregator().aggregate(_updates(), {}, rng=np.random.default_rng(7))
    # Assert
    assert result.skipped
    assert "guard bit" in str(result.skipped_reason)


# --- The protocol's server: a rejected message leaves no trace ------------------------------------


def test_the_server_refuses_each_bad_upload_and_still_accepts_the_genuine_one() -> None:
    # Prepare: three hospitals, 2-of-3; every kind of bad upload of hospital 1 arrives first
    material = threshold_material(256, 3, 2)
    params = SessionParameters(
        public=material.public, layout=SlotLayout(16, 3, 256), vector_length=20, roster=(1, 2, 3),
        min_contributors=2, identity_keys=identity_keys((1, 2, 3)), context=bytes(32),
    )
    other = dataclasses.replace(params, context=b"\x01" * 32)
    clients = {k: Client(params, k, IDENTITIES[k], random_bytes=InsecureDeterministicRandom(k)) for k in (1, 2, 3)}
    uploads = {k: clients[k].upload(np.full(20, k)) for k in (1, 2, 3)}
    replayed = Client(other, 1, IDENTITIES[1], random_bytes=InsecureDeterministicRandom(9)).upload(np.full(20, 9))
    server = Server(params)
    bad = [fault(clients[1], uploads[1]) for fault in UPLOAD_FAULTS.values()]
    bad += [replayed, wire.encode(uploads[1])[:-7]]
    # Execute / Assert: each is refused with a library error naming the upload
    for message in bad:
        with pytest.raises(SecAggError):
            server.receive_upload(message)
    assert server.included == frozenset()
    for k in (1, 2, 3):
        server.receive_upload(wire.encode(uploads[k]))
    for index in (1, 2):
        party = DecryptingParty(params, material.shares[index - 1], own_upload=uploads[index].digest)
        server.receive_partial(party.respond(server.decryption_request(index)))
    np.testing.assert_array_equal(server.finish(), np.full(20, 6))


def test_the_digests_handed_to_decryption_are_those_of_accepted_uploads_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Mutation audit: SimulatedHospitals.upload returned a refused upload's digest as accepted (the
    # aggregator's live list happened to leave that hospital out, so no round test saw it)
    monkeypatch.setattr(hospitals_module, "Client", _faulty_clients(UPLOAD_FAULTS["signature that does not verify"]))
    returned: list[tuple[dict[int, bytes], dict[int, str], int]] = []
    upload = hospitals_module.SimulatedHospitals.upload

    def spy(self: hospitals_module.SimulatedHospitals, *args: Any) -> tuple[dict[int, bytes], dict[int, str], int]:
        returned.append(upload(self, *args))
        return returned[-1]

    monkeypatch.setattr(hospitals_module.SimulatedHospitals, "upload", spy)
    result = _aggregator().aggregate(_updates(), {}, rng=np.random.default_rng(7))
    ((digests, errors, _),) = returned
    assert set(errors) == {VICTIM} and VICTIM not in digests
    assert set(digests) == set(result.included)
