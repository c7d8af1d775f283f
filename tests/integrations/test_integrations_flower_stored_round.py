"""A node's stored round, read back at a later stage (masking: the session kept at setup; Paillier:
the upload kept at encrypt), is refused as a ProtocolError when there is none, when a field is
missing, and when the stage arrives in messages of another type than the setup bound; both mods
read it through one helper (:func:`secagg.integrations.flower._records.stored_round`)."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Context, RecordDict

from secagg.errors import ProtocolError
from secagg.integrations.flower import paillier_client
from secagg.integrations.flower._masking_session import STATE_KEY, load_session


def masking(context: Context, message_type: str) -> object:
    return load_session(context, message_type)


def paillier(context: Context, message_type: str) -> object:
    message: Any = SimpleNamespace(metadata=SimpleNamespace(message_type=message_type))  # all it reads
    no: Any = None  # never reached: the stored round is refused first
    return paillier_client._decrypt(message, context, b"", no, no, no)


READERS = {
    "masking": (masking, STATE_KEY, "client", "secure round"),
    "paillier": (paillier, paillier_client.STATE_KEY, "upload", "Paillier round"),
}


def context(record: dict[str, Any] | None, key: str) -> Context:
    state = RecordDict()
    if record is not None:
        state[key] = ConfigRecord(record)
    return Context(1, 7, {}, state, {})


@pytest.mark.parametrize("name", sorted(READERS))
def test_no_stored_round_is_refused(name: str) -> None:
    read, key, _, what = READERS[name]
    with pytest.raises(ProtocolError, match=f"no {what} in progress on this node"):
        read(context(None, key), "train")


@pytest.mark.parametrize("missing", ["setup", "second", "type"])
@pytest.mark.parametrize("name", sorted(READERS))
def test_a_stored_round_missing_a_field_is_refused(name: str, missing: str) -> None:
    read, key, second, _ = READERS[name]
    record: dict[str, Any] = {"setup": b"setup", second: b"state", "type": "train"}
    del record[second if missing == "second" else missing]
    with pytest.raises(ProtocolError, match="incomplete"):
        read(context(record, key), "train")


@pytest.mark.parametrize("name", sorted(READERS))
def test_a_stage_of_another_message_type_than_the_setup_bound_is_refused(name: str) -> None:
    read, key, second, _ = READERS[name]
    record = {"setup": b"setup", second: b"state", "type": "train"}
    expected = re.escape("a 'train.zero' message in a session set up for 'train' messages")
    with pytest.raises(ProtocolError, match=expected):
        read(context(record, key), "train.zero")
