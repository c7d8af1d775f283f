"""Every field of a Flower setup message is bound, field by field (node ids excepted, on purpose).

The split-setup tests (test_integrations_flower_split_setup.py, ..._clipping_dp.py,
..._compression.py, ..._paillier_dp.py) run the attack end to end for the clip, the
training configuration, the clip table, a DP value and the compression. This file pins the
rule for *every* field of :class:`RoundSetup` and :class:`PaillierSetup`, including those no
end-to-end test splits (bits, max weight, weight key, model digest, round, masking record,
min_contributors, vector length, identity keys, message type): a node given the field changed either
refuses the setup (the library's own error) or derives another session id, so it never
meets the others' masks or uploads. A field added later fails :func:`test_every_field_is_listed`
until its binding is shown here.

The one exemption is ``node_ids``: Flower's node ids are transport labels. A node's protocol
id is its position among them, the roster size is bound (``masking.num_clients``, the
Paillier roster), and in active mode (every Paillier round) the identity key at each
protocol id is bound and checked against the node's own key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from secagg import wire
from secagg.descriptor import encode_parameters
from secagg.dp import DPConfig
from secagg.encoding import QuantizationConfig
from secagg.errors import ConfigurationError, ConfigurationTypeError, ProtocolError, SecAggError
from secagg.integrations.flower._round_binding import MAX_TYPE_BYTES, float_bits, round_context
from secagg.integrations.flower.protocol import PaillierSetup, RoundSetup
from secagg.masking import MaskingConfig
from secagg.masking.session import session_id
from secagg.segments import Segment, SegmentTable
from secagg.sparsity import Subset

from .paillier_keys import material

RUN_ID, N, LENGTH = 77, 5, 9
NODES = (11, 22, 33, 44, 55)
QUANTIZATION = QuantizationConfig(0.5, 16, N, max_weight=100)
DIGEST = bytes(range(32))
TRAINING = encode_parameters({"config/lr": 0.1, "config/local-epochs": 1})
TABLE = SegmentTable((Segment("arrays/w", LENGTH - 2, 0.5),)).describe()
IDENTITY_KEYS = tuple(bytes([i]) * 32 for i in range(1, N + 1))

# Another valid value for every field (applied with dataclasses.replace).
COMMON: dict[str, Any] = {
    "server_round": 4,
    "clip_bits": float_bits(1e300),
    "bits": 8,
    "max_weight": 101,
    "weight_key": b"samples",
    "arrays_digest": bytes(32),
    "parameters": encode_parameters({"config/lr": 0.0, "config/local-epochs": 0}),
    "segments": SegmentTable((Segment("arrays/w", LENGTH - 2, 1e300),)).describe(),
    "compression": encode_parameters(Subset.random(bytes(32), 100, count=10).descriptor_parameters()),
    # Compared with a DP round of another epsilon (a DP round has no clip table): _honest.
    "dp": encode_parameters(DPConfig(epsilon=2.0, delta=1e-5, rounds=3, l2_clip=1.0).descriptor_parameters()),
}
DP = encode_parameters(DPConfig(epsilon=1.0, delta=1e-5, rounds=3, l2_clip=1.0).descriptor_parameters())
ROUND_ONLY: dict[str, Any] = {
    "masking": dataclasses.replace(MaskingConfig.secagg(N, LENGTH, mode="semi-honest"), threshold=4).record(),
}
PAILLIER_ONLY: dict[str, Any] = {
    "key_fingerprint": bytes(32),
    "min_contributors": 4,
    "vector_length": LENGTH + 1,
    "identity_keys": (*IDENTITY_KEYS[:-1], bytes([9]) * 32),
    "message_type": b"train.zero",
}
EXEMPT = {"node_ids"}


def _round_setup(field: str = "") -> RoundSetup:
    """The honest setup the change of ``field`` is compared with (a DP round for ``dp``)."""
    encoding = {"dp": DP} if field == "dp" else {"segments": TABLE}
    return RoundSetup.create(
        3, NODES, MaskingConfig.secagg(N, LENGTH, mode="semi-honest"), QUANTIZATION, "num-examples", DIGEST, RUN_ID,
        TRAINING,
        **encoding,
    )  # fmt: skip


def _paillier_setup(field: str = "") -> PaillierSetup:
    encoding = {"dp": DP} if field == "dp" else {"segments": TABLE}
    return PaillierSetup.create(
        3, NODES, material(N, 3).public, 3, QUANTIZATION, LENGTH, "num-examples", DIGEST, IDENTITY_KEYS, TRAINING,
        **encoding,
    )  # fmt: skip


def _masking_session(setup: RoundSetup, rebind: bool) -> bytes:
    """The session id a node derives from ``setup`` (what its keys, shares and masks are bound to).

    ``rebind``: the server rewrites the masking record to bind the changed fields (a consistent lie)."""
    if rebind:
        config = dataclasses.replace(setup.masking_config, descriptor=setup.descriptor(RUN_ID).digest())
        setup = dataclasses.replace(setup, masking=config.record())
    masking = setup.bound_masking_config(RUN_ID)
    return session_id(masking, round_context(RUN_ID, setup.server_round, setup.arrays_digest))


def _paillier_session(setup: PaillierSetup) -> bytes:
    context = round_context(RUN_ID, setup.server_round, setup.arrays_digest)
    return setup.session_parameters(material(N, 3).public, context, RUN_ID).session_id


def _refused_or_other(derive: Callable[[], bytes], honest: bytes) -> None:
    try:
        other = derive()
    except SecAggError:
        return  # refused with the library's own error
    assert other != honest


def test_every_field_is_listed() -> None:
    round_fields = {f.name for f in dataclasses.fields(RoundSetup)}
    paillier_fields = {f.name for f in dataclasses.fields(PaillierSetup)}
    assert round_fields == set(COMMON) | set(ROUND_ONLY) | EXEMPT
    assert paillier_fields == set(COMMON) | set(PAILLIER_ONLY) | EXEMPT


@pytest.mark.parametrize("rebind", [False, True], ids=["record-left", "record-rebound"])
@pytest.mark.parametrize("field", sorted(set(COMMON) | set(ROUND_ONLY)))
def test_a_changed_masking_setup_field_is_refused_or_another_session(field: str, rebind: bool) -> None:
    honest = _round_setup(field)
    changed = dataclasses.replace(honest, **{field: {**COMMON, **ROUND_ONLY}[field]})

    def derive() -> bytes:
        return _masking_session(changed, rebind)

    _refused_or_other(derive, _masking_session(honest, rebind=False))


@pytest.mark.parametrize("field", sorted(set(COMMON) | set(PAILLIER_ONLY)))
def test_a_changed_paillier_setup_field_is_refused_or_another_session(field: str) -> None:
    honest = _paillier_setup(field)
    changed = dataclasses.replace(honest, **{field: {**COMMON, **PAILLIER_ONLY}[field]})
    _refused_or_other(lambda: _paillier_session(changed), _paillier_session(honest))


def test_the_honest_setups_derive_their_sessions() -> None:
    # The control: unchanged setups are accepted and derive one session id each.
    for field in ("", "dp"):
        assert _masking_session(_round_setup(field), rebind=False) == _masking_session(_round_setup(field), rebind=True)
        assert _paillier_session(_paillier_setup(field)) == _paillier_session(_paillier_setup(field))


@pytest.mark.parametrize("length", [MAX_TYPE_BYTES, MAX_TYPE_BYTES + 1])
def test_a_paillier_setup_names_a_message_type_of_at_most_256_bytes(length: int) -> None:
    # At the bound the setup is built and decodes to the same type; one past it is refused with
    # the library's own error (the server skips such a round), never cut short on the wire
    message_type = "train." + "a" * (length - len("train."))

    def create() -> PaillierSetup:
        return PaillierSetup.create(
            3, NODES, material(N, 3).public, 3, QUANTIZATION, LENGTH, "num-examples", DIGEST, IDENTITY_KEYS,
            TRAINING, TABLE, message_type=message_type,
        )  # fmt: skip

    if length > MAX_TYPE_BYTES:
        with pytest.raises(ConfigurationError, match="message type is at most 256 bytes"):
            create()
        return
    decoded = wire.decode(wire.encode(create()), PaillierSetup)
    assert decoded.type_name == message_type
    decoded.check_message_type(message_type)
    with pytest.raises(ProtocolError, match="message type"):
        decoded.check_message_type("train")


@pytest.mark.parametrize("message_type", [5, b"train", None])
def test_a_paillier_setup_refuses_a_message_type_that_is_not_a_string_as_a_type_error(message_type: Any) -> None:
    # A wrong type is the library's ConfigurationTypeError, as every other argument's
    with pytest.raises(ConfigurationTypeError, match="message type must be a string"):
        PaillierSetup.create(
            3, NODES, material(N, 3).public, 3, QUANTIZATION, LENGTH, "num-examples", DIGEST, IDENTITY_KEYS,
            TRAINING, TABLE, message_type=message_type,
        )  # fmt: skip
