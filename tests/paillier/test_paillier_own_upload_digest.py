"""A simulated hospital decrypts only a sum holding its own upload: the check cannot be skipped.

:class:`~fl_core.aggregators.paillier_hospitals.SimulatedHospitals` hands each decrypting hospital
the digest of its own accepted upload, and :class:`~secagg.paillier.DecryptingParty` refuses a
decryption request whose uploads do not include it. The digest used to be looked up with
``own_uploads.get(client)``: a hospital missing from the mapping got ``own_upload=None``, which
turns the check off, and decrypted whatever sum it was asked. A hospital with no accepted upload
of its own now refuses to decrypt (named, with the reason, in the round's errors) and the next
hospital is asked, as a real node without an upload in the session refuses.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pytest

from fl_core.aggregators import ClientUpdate, WeightedQuantizer
from fl_core.aggregators.paillier import PaillierAggregator
from fl_core.aggregators.paillier_hospitals import SimulatedHospitals
from secagg.paillier import Server, SessionParameters
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import threshold_material

pytestmark = pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")

SIZES = (30, 5, 120, 64, 9)


def _updates() -> list[ClientUpdate]:
    rng = np.random.default_rng(0)
    return [ClientUpdate(client, rng.uniform(-0.45, 0.45, size=12), size) for client, size in enumerate(SIZES)]


def _aggregator() -> PaillierAggregator:
    quantizer = WeightedQuantizer.create(5, clip=0.5, bits=16)
    return PaillierAggregator(
        quantizer, insecure_small_key=True, key_material=threshold_material(256, 5, 4),
        random_bytes=InsecureDeterministicRandom(3), threshold=4, clipping="fixed",
    )


@pytest.mark.parametrize("missing", [None, 0, 3])
def test_a_hospital_without_its_own_upload_digest_refuses_to_decrypt(
    monkeypatch: pytest.MonkeyPatch, missing: int | None
) -> None:
    # Prepare: every hospital uploads and is accepted; the digests handed to the decryption step
    # lose hospital ``missing``'s entry (None: the honest bookkeeping, every entry kept)
    aggregator = _aggregator()
    honest_upload = SimulatedHospitals.upload

    def upload(
        self: SimulatedHospitals, params: SessionParameters, server: Server, values: Mapping[int, npt.NDArray[np.int64]]
    ) -> tuple[dict[int, bytes], dict[int, str], int]:
        digests, errors, sent = honest_upload(self, params, server, values)
        digests.pop(missing, None)  # type: ignore[arg-type]
        return digests, errors, sent

    monkeypatch.setattr(SimulatedHospitals, "upload", upload)
    # Execute
    result = aggregator.aggregate(_updates(), {}, rng=np.random.default_rng(7))
    # Assert: every upload is summed; the hospital without its digest does not decrypt (its refusal
    # is named), the others give the t = 4 answers, and the round completes
    assert result.mean is not None and result.included == frozenset(range(5)), result.skipped_reason
    if missing is None:
        assert result.errors == {}
        return
    assert set(result.errors) == {missing}, result.errors
    assert "its own upload" in result.errors[missing], result.errors[missing]
