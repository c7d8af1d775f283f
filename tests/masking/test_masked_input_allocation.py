"""A masked input of the wrong shape is refused before its vector is unpacked.

A hostile hospital's MaskedInput may declare another ring width than the session's
(8 bits where the session has 32) and as many values as its bytes hold at that width
(four times the session's vector length): unpacking it would allocate a uint32 word
per byte sent, where an honest masked input in Z_(2^32) is a view of the message. The
server reads the declared width and count from the message's fixed prefix and refuses
a mismatch first (spec 12.8, round 2): the hostile message costs only its
sender, with the same reason as before, and nothing of its size is allocated.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg import bitpack, wire
from secagg.errors import SecAggError
from secagg.masking import MaskingConfig
from secagg.masking.messages import MaskedInput, masked_input_header
from secagg.masking.server import ServerPhase
from secagg.ring import PackedVector

from .harness import StepRun, advance_to, assert_exact

BAD = 2


def _widened(data: bytes, bits: int) -> bytes:
    """``data``'s MaskedInput with a vector of ``bits``-bit values, as many as its packed bytes hold
    at that width (what a hostile sender declares: the message is no larger)."""
    message = wire.decode(data, MaskedInput)
    length = 8 * bitpack.packed_size(message.vector.values.shape[0], message.vector.bits) // bits
    values = np.random.default_rng(bits).integers(0, 1 << bits, length, dtype=np.uint64)
    values = values.astype(np.uint32) if bits <= 32 else values
    return wire.encode(MaskedInput(message.sender, message.session_id, PackedVector(bits, values)))


def _record_unpacks(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """From now on, every ``bitpack.unpack`` call's (length, bits), in order, in the returned list."""
    unpacked: list[tuple[int, int]] = []
    original = bitpack.unpack

    def recording(data: bytes, length: int, bits: int) -> npt.NDArray[Any]:
        unpacked.append((length, bits))
        return original(data, length, bits)

    monkeypatch.setattr(bitpack, "unpack", recording)
    return unpacked


@pytest.mark.parametrize(("ring_bits", "declared"), [(32, 8), (12, 8), (64, 9)])
def test_a_masked_input_of_another_width_is_refused_unread(
    monkeypatch: pytest.MonkeyPatch, ring_bits: int, declared: int
) -> None:
    # Prepare: a session up to its masked inputs; client BAD's declares another ring width
    config = MaskingConfig(num_clients=5, threshold=3, vector_length=40, ring_bits=ring_bits, mode="semi-honest")
    run = StepRun(config, seed=11)
    advance_to(run, ServerPhase.COLLECT_MASKED)
    uploads = dict(run.uploads)
    uploads[BAD] = _widened(uploads[BAD], declared)
    unpacked = _record_unpacks(monkeypatch)
    # Execute
    run.to_server(uploads)
    # Assert: refused with the shape the session expects, its vector never unpacked
    assert all(bits == ring_bits for _, bits in unpacked), unpacked
    if ring_bits in (32, 64):
        assert unpacked == []  # word rings: every vector a view of its message
    reasons = dict(run.server.rejected)
    assert reasons[BAD] == f"MaskedInput: expected 40 elements of Z_(2^{ring_bits})"
    monkeypatch.undo()
    run.to_clients()
    result = run.finish()
    assert_exact(config, result.aggregate, run.inputs, [c for c in run.inputs if c != BAD])


@pytest.mark.parametrize("container", [bytearray, memoryview])
def test_a_masked_input_of_another_width_in_another_bytes_like_is_refused_unread(
    monkeypatch: pytest.MonkeyPatch, container: type[bytearray] | type[memoryview]
) -> None:
    # Prepare: the decoder takes a bytearray or memoryview as it takes bytes; so must the header
    config = MaskingConfig(num_clients=5, threshold=3, vector_length=40, ring_bits=12, mode="semi-honest")
    run = StepRun(config, seed=14)
    advance_to(run, ServerPhase.COLLECT_MASKED)
    uploads: dict[int, Any] = dict(run.uploads)
    uploads[BAD] = container(_widened(uploads[BAD], 8))
    unpacked = _record_unpacks(monkeypatch)
    # Execute
    run.to_server(uploads)
    # Assert: refused for its shape, its 8-bit vector (four times the values) never unpacked
    assert all(bits == 12 for _, bits in unpacked), unpacked
    assert dict(run.server.rejected)[BAD] == "MaskedInput: expected 40 elements of Z_(2^12)"


def test_a_truncated_prefix_is_left_to_the_decoder() -> None:
    # Prepare: a masked input cut inside its session id, before its vector's width and count
    config = MaskingConfig(num_clients=5, threshold=3, vector_length=4, mode="semi-honest")
    run = StepRun(config, seed=12)
    advance_to(run, ServerPhase.COLLECT_MASKED)
    uploads = dict(run.uploads)
    uploads[BAD] = uploads[BAD][:40]
    # Execute
    run.to_server(uploads)
    # Assert: the decoder's own reason, as before
    reason = dict(run.server.rejected)[BAD]
    assert reason.startswith("MaskedInput: truncated input"), reason
    assert run.server.phase != ServerPhase.COLLECT_MASKED


@settings(max_examples=300, deadline=None)
@given(
    bits=st.integers(8, 64),
    length=st.integers(0, 20),
    cut=st.integers(0, 200),
    flip=st.tuples(st.integers(0, 200), st.integers(0, 7)) | st.none(),
    extra=st.binary(max_size=2),
)
def test_the_header_is_read_exactly_when_the_message_decodes(
    bits: int, length: int, cut: int, flip: tuple[int, int] | None, extra: bytes
) -> None:
    # Prepare: a MaskedInput, then cut, a bit flipped (width, count, padding, envelope...) or bytes added
    values = np.random.default_rng(length).integers(0, 1 << bits, length, dtype=np.uint64)
    vector = PackedVector(bits, values.astype(np.uint32) if bits <= 32 else values)
    data = bytearray(wire.encode(MaskedInput(3, bytes(range(32)), vector)))
    if flip is not None and flip[0] < len(data):
        data[flip[0]] ^= 1 << flip[1]
    data = data[: max(0, len(data) - cut % 3)] + extra
    # Execute
    header = masked_input_header(bytes(data))
    try:
        message = wire.decode(bytes(data), MaskedInput)
    except SecAggError:
        message = None
    # Assert: the header exists exactly when the message decodes, with its fields
    assert (header is None) == (message is None)
    if header is not None and message is not None:
        assert (header.sender, header.session_id) == (message.sender, message.session_id)
        assert (header.bits, header.length) == (message.vector.bits, len(message.vector))


_PREFIX = wire.MAGIC + bytes((wire.VERSION,)) + MaskedInput.TAG.to_bytes(2, "big")


@settings(max_examples=400, deadline=None)
@given(
    envelope=st.just(_PREFIX) | st.sampled_from([_PREFIX[:-1] + b"\x06", b"SB\x01\x01\x05", _PREFIX[:4] + b"\x02"]),
    sender=st.binary(min_size=4, max_size=4),
    bits=st.sampled_from([0, 7, 8, 12, 32, 63, 64, 65, 255]) | st.integers(0, 255),
    count=st.integers(0, 40) | st.sampled_from([1 << 30, (1 << 30) + 1, (1 << 32) - 1]),
    body=st.binary(max_size=330),
    fit=st.sampled_from([0, -1, 1, None]),
    cut=st.none() | st.integers(0, 400),
    container=st.sampled_from([bytes, bytearray, memoryview]),
)
def test_the_header_is_read_exactly_when_any_bytes_decode(
    envelope: bytes,
    sender: bytes,
    bits: int,
    count: int,
    body: bytes,
    fit: int | None,
    cut: int | None,
    container: type[bytes] | type[bytearray] | type[memoryview],
) -> None:
    # Prepare: arbitrary width, count and body after any envelope; the body of the size the width and
    # count declare (``fit`` 0: padding bits as drawn), a byte short or over, or as drawn; cut anywhere,
    # in any bytes-like type
    if fit is not None and 1 <= bits <= 64 and count <= 40:
        size = max(0, bitpack.packed_size(count, bits) + fit)
        body = (body * (size // max(1, len(body)) + 1))[:size] if body else bytes(size)
    data = envelope + sender + bytes(range(32)) + bytes((bits,)) + count.to_bytes(4, "big") + body
    if cut is not None:
        data = data[:cut]
    # Execute
    header = masked_input_header(container(data))  # type: ignore[arg-type]
    try:
        message = wire.decode(container(data), MaskedInput)  # type: ignore[arg-type]
    except SecAggError:
        message = None
    # Assert
    assert (header is None) == (message is None), (len(data), bits, count)
    if header is not None and message is not None:
        assert (header.sender, header.session_id) == (message.sender, message.session_id)
        assert (header.bits, header.length) == (message.vector.bits, len(message.vector))


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(1, 64), count=st.integers(0, 40), pad=st.just(0) | st.integers(0, 255))
def test_a_body_of_the_declared_size_decodes_unless_its_padding_is_set(bits: int, count: int, pad: int) -> None:
    # Prepare: a body of exactly the size the width (in range or not) and count declare, its last byte arbitrary
    size = bitpack.packed_size(count, bits)
    body = bytes(max(0, size - 1)) + (bytes((pad,)) if size else b"")
    data = _PREFIX + bytes(4) + bytes(32) + bytes((bits,)) + count.to_bytes(4, "big") + body
    # Execute
    header = masked_input_header(data)
    try:
        message = wire.decode(data, MaskedInput)
    except SecAggError:
        message = None
    # Assert
    assert (header is None) == (message is None), (bits, count, pad)


def test_a_misshaped_input_failing_an_acceptance_check_is_refused_for_that_check_first() -> None:
    # Prepare: client 2's masked input has another width and claims client 4 as its sender
    config = MaskingConfig(num_clients=5, threshold=3, vector_length=40, mode="semi-honest")
    run = StepRun(config, seed=13)
    advance_to(run, ServerPhase.COLLECT_MASKED)
    uploads = dict(run.uploads)
    widened = wire.decode(_widened(uploads[BAD], 8), MaskedInput)
    uploads[BAD] = wire.encode(MaskedInput(4, widened.session_id, widened.vector))
    uploads[3] = _widened(uploads[3], 8)
    # Execute
    run.to_server(uploads)
    # Assert: the acceptance rejection (pass 1) before the shape's (pass 2), as spec 12.8 orders them
    assert run.server.rejected == (
        (BAD, "MaskedInput: message claims sender 4"),
        (3, "MaskedInput: expected 40 elements of Z_(2^32)"),
    )
