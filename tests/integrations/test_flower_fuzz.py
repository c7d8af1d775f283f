"""Fuzz the Flower adapter's record readers and both node mods with arbitrary records and bytes.

Whatever a party sends, ``read_stage`` and ``model_arrays`` raise only
SecAggError, and the masking and Paillier mods answer a training message with
a reply (an error reply for anything malformed), never an exception. The
example count follows the hypothesis profile (tests/conftest.py: ``default``
keeps this file to a few seconds; ``HYPOTHESIS_PROFILE=ci`` runs more).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.common.constant import SType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from secagg import wire
from secagg.encoding import QuantizationConfig
from secagg.errors import SecAggError
from secagg.integrations.flower import make_paillier_mod, make_secagg_mod
from secagg.integrations.flower._records import PAYLOAD_RECORD, STAGE_RECORD, model_arrays, read_stage
from secagg.integrations.flower.clipping import encoded_length, layout_table
from secagg.integrations.flower.keys import read_public_key
from secagg.integrations.flower.protocol import STAGES, PaillierSetup, RoundSetup, arrays_digest, flatten_arrays
from secagg.masking import MaskingConfig
from secagg.segments import SegmentTable

from .flower_harness import (
    RUN_ID,
    identity_files,
    initial_arrays,
    node_identity_key,
)
from .paillier_keys import PASSPHRASE, key_files

NODE = 42
NODES = (7, 42, 99, 1000)
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


pytestmark = pytest.mark.usefixtures("server_identity")


# --- bytes that look more or less like a .npy array ------------------------------------------


def npy(header: str, body: bytes, version: tuple[int, int]) -> bytes:
    encoded = header.encode("latin1", "replace")
    width = 2 if version == (1, 0) else 4
    return b"\x93NUMPY" + bytes(version) + (len(encoded) % (1 << 8 * width)).to_bytes(width, "little") + encoded + body


def saved(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def archived(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, payload=array)
    return buffer.getvalue()


any_dtype = st.one_of(hnp.scalar_dtypes(), hnp.byte_string_dtypes(), hnp.unicode_string_dtypes(),
                      hnp.array_dtypes(max_size=2))
valid_arrays = hnp.arrays(any_dtype, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
headers = st.one_of(
    st.text(max_size=120),
    st.builds(
        "{{'descr': {}, 'fortran_order': {}, 'shape': {}, }}".format,
        st.sampled_from(["'<u1'", "'|O'", "'<f8'", "'|V0'", "[('a', '<u1', (3,))]", "5", "'<U9999999999'", "((("]),
        st.sampled_from(["False", "True", "'x'"]),
        st.one_of(st.tuples(st.integers(-2, 2**62)).map(repr), st.sampled_from(["()", "(2, 3)", "((", "(1.5,)"])),
    ),
)


@st.composite
def mutated(draw: st.DrawFn, data: st.SearchStrategy[bytes]) -> bytes:
    """``data`` truncated, extended or with one byte changed."""
    raw = bytearray(draw(data))
    action = draw(st.sampled_from(["keep", "truncate", "extend", "flip"]))
    if action == "truncate" and raw:
        del raw[draw(st.integers(0, len(raw) - 1)) :]
    elif action == "extend":
        raw += draw(st.binary(min_size=1, max_size=16))
    elif action == "flip" and raw:
        raw[draw(st.integers(0, len(raw) - 1))] ^= draw(st.integers(1, 255))
    return bytes(raw)


array_bytes = st.one_of(
    st.binary(max_size=256),
    st.binary(max_size=64).map(lambda tail: b"PK\x03\x04" + tail),
    st.binary(max_size=64).map(lambda tail: b"\x93NUMPY" + tail),
    st.builds(npy, headers, st.binary(max_size=64), st.sampled_from([(1, 0), (2, 0), (3, 0), (0, 9)])),
    mutated(valid_arrays.map(saved)),
    valid_arrays.map(archived),
)


@st.composite
def arrays(draw: st.DrawFn) -> Array:
    """A well-formed Array of any dtype and shape, or one whose bytes and metadata are anything."""
    if draw(st.booleans()):
        return Array(draw(valid_arrays))
    stype = draw(st.sampled_from([SType.NUMPY, SType.NUMPY, "torch.tensor", ""]))
    shape = draw(st.lists(st.integers(0, 9), max_size=3).map(tuple))
    return Array(dtype=draw(st.sampled_from(["uint8", "int32", "object", "??"])), shape=shape, stype=stype,
                 data=draw(array_bytes))


names = st.sampled_from(["payload", "w", "b", "extra"])
config_values = st.one_of(st.sampled_from(STAGES), st.text(max_size=12), st.integers(-5, 5), st.binary(max_size=8),
                          st.booleans())
records = st.one_of(
    st.dictionaries(names, arrays(), max_size=3).map(ArrayRecord),
    st.dictionaries(st.sampled_from(["stage", "server-round", "x"]), config_values, max_size=2).map(ConfigRecord),
    st.dictionaries(st.sampled_from(["num-examples", "loss"]), st.integers(0, 9), max_size=2).map(MetricRecord),
)
record_dicts = st.dictionaries(
    st.sampled_from([STAGE_RECORD, PAYLOAD_RECORD, "arrays", "config", "metrics"]), records, max_size=4
).map(RecordDict)


# --- the readers --------------------------------------------------------------------------


@FUZZ
@given(record_dicts)
def test_the_record_readers_raise_only_secagg_errors(content: RecordDict) -> None:
    for reader in (read_stage, model_arrays):
        with contextlib.suppress(SecAggError):
            reader(content)


@FUZZ
@given(st.sampled_from(STAGES), arrays())
def test_read_stage_of_any_payload_array_is_its_bytes_or_a_secagg_error(stage: str, payload: Array) -> None:
    content = RecordDict(
        {STAGE_RECORD: ConfigRecord({"stage": stage}), PAYLOAD_RECORD: ArrayRecord({"payload": payload})}
    )
    try:
        read_back = read_stage(content)
    except SecAggError:
        return
    assert read_back[0] == stage and isinstance(read_back[1], bytes)


# --- the mods -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key_share(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    public, shares = key_files(tmp_path_factory.mktemp("fuzz-ceremony"), 4, 3)
    return public, shares[1]  # NODE holds share 2


def model_digest() -> bytes:
    vector, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in initial_arrays().items()])
    return arrays_digest(vector, layout)


def setups(public: Path) -> list[bytes]:
    """A valid setup of each kind for NODE, for the fuzzer to mutate."""
    quantization = QuantizationConfig(0.5, 16, len(NODES), max_weight=4096)
    masking = MaskingConfig.secagg(num_clients=len(NODES), vector_length=18, mode="semi-honest")
    _, layout = flatten_arrays([("arrays", k, v.numpy()) for k, v in initial_arrays().items()])
    clips = layout_table(layout).with_clips({"arrays/w": 0.5, "arrays/b": 0.5})
    paillier = PaillierSetup.create(1, NODES, read_public_key(public), 2,
                                    QuantizationConfig(0.5, 16, len(NODES), ring_bits=64, max_weight=4096),
                                    encoded_length(clips), "num-examples", model_digest(),
                                    [node_identity_key(n).public for n in NODES], segments=clips.describe())
    table = SegmentTable.flat(16, 0.5).describe()
    return [wire.encode(RoundSetup.create(1, NODES, masking, quantization, "num-examples", model_digest(), RUN_ID,
                                          segments=table)),
            wire.encode(paillier)]


def train_handler(message: Message, context: Context) -> Message:
    """The app's handler, if a fuzzed message ever reached it: answers like a real one."""
    reply = RecordDict({"arrays": initial_arrays(), "metrics": MetricRecord({"num-examples": 3})})
    return Message(reply, reply_to=message)


def check_mods_answer(content: RecordDict, key_share: tuple[Path, Path]) -> None:
    share = key_share[1]
    for mod in (make_secagg_mod(), make_paillier_mod(key_share_file=share, passphrase=PASSPHRASE,
                          identity_key_file=identity_files(NODE)[0], trusted_keys_file=identity_files(NODE)[1])):
        message = Message(content, dst_node_id=NODE, message_type=MessageType.TRAIN)
        reply = mod(message, Context(77, NODE, {}, RecordDict(), {}), train_handler)
        assert isinstance(reply, Message)
        if reply.has_error():
            assert reply.error.reason.startswith("secagg: ")


@FUZZ
@given(content=record_dicts)
def test_the_mods_answer_any_records_with_a_reply(content: RecordDict, key_share: tuple[Path, Path]) -> None:
    check_mods_answer(content, key_share)


@FUZZ
@given(data=st.data())
def test_the_mods_answer_any_stage_payload_with_a_reply(data: st.DataObject, key_share: tuple[Path, Path]) -> None:
    # Stage records for any stage whose payload is mutated setup bytes or any array, beside the
    # model's arrays (which may be malformed too).
    stage = data.draw(st.sampled_from(STAGES))
    payload = data.draw(st.one_of(
        mutated(st.sampled_from(setups(key_share[0]))).map(lambda raw: Array(np.frombuffer(raw, dtype=np.uint8))),
        arrays(),
    ))
    any_model = st.dictionaries(names, arrays(), max_size=2).map(ArrayRecord)
    model = data.draw(st.one_of(st.just(initial_arrays()), any_model))
    content = RecordDict({
        STAGE_RECORD: ConfigRecord({"stage": stage}),
        PAYLOAD_RECORD: ArrayRecord({"payload": payload}),
        "arrays": model,
        "config": ConfigRecord({"server-round": 1}),
    })
    check_mods_answer(content, key_share)
