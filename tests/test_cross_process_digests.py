"""Cross-process determinism: what parties compute independently agrees byte for byte.

Hospitals and the server are separate processes: another ``PYTHONHASHSEED``, another import
order, another locale and time zone, other models built before (Keras's automatic names carry a
process-wide counter). Every digest, session id and encoding two parties compute each for
itself must come out the same. This module computes a representative set of them in the test
process and in subprocesses started with other such state, and compares the hex digests (JSON
on stdout, no pickle):

- core (two subprocesses, ``PYTHONHASHSEED`` 0 and 12345, locales C and C.UTF-8, other time zones):
  masking config digest, session id and SecAgg+ neighbour table; session descriptor with
  training parameters; DPConfig digest and a calibrated NoisePlan's digest; fl_core's
  model digest and the quantizer's descriptor; Flower run-config digest, training parameters,
  arrays digest, round context, a round's compression (subset, rotation, segment table); and the
  committed test vectors of the wire encodings, derivations, Paillier session ids and Flower
  messages, verified in the subprocess against their committed bytes;
- a Flower training content serialized (protobuf) in a subprocess and read here: the node's
  training parameters and arrays digest are those the serializing process bound;
- adapters (one subprocess, ``PYTHONHASHSEED`` 12345, other modules imported first and other
  models built first): the PyTorch adapter's layout and model digests, the Keras adapter's
  weight names and model digests (skipped where an extra is missing).

Run as a script (``python tests/test_cross_process_digests.py core|adapters [warm]``) it prints
the JSON; the tests start it so.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

VECTOR_FILES = (
    "descriptor.json",
    "flower_messages.json",
    "masking_config.json",
    "masking_defaults.json",
    "masking_derivations.json",
    "paillier_session.json",
    "sparsity.json",
    "wire_masking.json",
    "wire_paillier.json",
)
"""Committed vectors checked in the subprocesses (the fast ones that bind or encode)."""

Digests = dict[str, Any]


def _available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _keys(count: int) -> tuple[bytes, ...]:
    from secagg.primitives.signing import SigningKey  # noqa: PLC0415

    return tuple(SigningKey.generate(lambda size, i=i: bytes([i + 1]) * size).public for i in range(count))


def _masking() -> Digests:
    from secagg.descriptor import SessionDescriptor  # noqa: PLC0415
    from secagg.encoding import QuantizationConfig  # noqa: PLC0415
    from secagg.masking.config import MaskingConfig  # noqa: PLC0415
    from secagg.masking.session import neighbour_table, session_id  # noqa: PLC0415

    parameters = {"zeta": 1, "alpha": 0.1, "mu/é": "x", "flag": True, "raw": b"\x00\x01", "neg": -0.0}
    descriptor = SessionDescriptor.create(
        QuantizationConfig(2.5, 16, 30, 32, max_weight=100), weight_key="num_samples", layout_digest=bytes(range(32)),
        model_digest=bytes(32), run_id=7, server_round=3, parameters=parameters,
    )
    config = MaskingConfig.secagg_plus(30, 100, identity_keys=_keys(30), descriptor=descriptor.digest())
    session = session_id(config, bytes(range(32)))
    table = neighbour_table(config, session)
    return {
        "descriptor": descriptor.digest().hex(),
        "masking config": config.digest().hex(),
        "masking session": session.hex(),
        "neighbours": sorted([client, list(peers)] for client, peers in table.items()),
    }


def _dp() -> Digests:
    from secagg.dp.config import DPConfig  # noqa: PLC0415

    sampled = DPConfig(epsilon=2.0, delta=1e-6, rounds=5, l2_clip=0.7, sampling_rate=0.05, min_honest=3)
    config = DPConfig(epsilon=2.0, delta=1e-6, rounds=5, l2_clip=0.7, min_honest=3)  # calibrated in ms
    out: Digests = {"dp config": sampled.digest().hex()}
    if _available("dp_accounting"):
        from secagg.dp.encoding import dp_quantization  # noqa: PLC0415

        plan, quantization, tail = dp_quantization(config, num_clients=5, dimension=50, max_samples_per_client=10)
        out["noise plan"] = config.digest(plan).hex()
        out["dp quantization"] = [quantization.clip.hex(), quantization.bits, quantization.ring_bits, tail]
    return out


def _fl_core() -> Digests:
    from fl_core.aggregators.binding import model_digest  # noqa: PLC0415
    from fl_core.aggregators.quantizer import WeightedQuantizer  # noqa: PLC0415
    from secagg.segments import Segment, SegmentTable  # noqa: PLC0415

    weights = [np.arange(12, dtype=np.float32).reshape(3, 4) / 3, np.array([1, -2, 3], dtype=np.int64), np.zeros(0)]
    digest = model_digest(weights)
    table = SegmentTable((Segment("w", 12, 0.5), Segment("counts", 3, None, True)))
    quantizer = dataclasses.replace(
        WeightedQuantizer.create(8, clip=0.25, bits=12), parameters=(("secagg.sparsity.count", 5), ("a", 1.5))
    )
    return {
        "fl_core model": digest.hex(),
        "fl_core descriptor": quantizer.descriptor(4, table, model_digest=digest, run_id=1 << 63).hex(),
        "segments": table.digest().hex(),
    }


def _flower() -> Digests:
    from secagg.integrations.flower.arrays import arrays_digest, flatten_arrays  # noqa: PLC0415
    from secagg.integrations.flower.clipping import layout_table  # noqa: PLC0415
    from secagg.integrations.flower.compression import RoundCompression  # noqa: PLC0415
    from secagg.integrations.flower.protocol import round_context  # noqa: PLC0415
    from secagg.integrations.flower.run_binding import run_config_digest  # noqa: PLC0415

    vector, layout = flatten_arrays([
        ("model", "w", np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6)),
        ("model", "steps", np.array([3, 4], dtype=np.int32)),
        ("head", "b", np.array([1 + 2j], dtype=np.complex64)),
    ])
    digest = arrays_digest(vector, layout)
    counter = iter(range(1, 1 << 16))
    draw = RoundCompression.draw(layout, 0.5, True, random_bytes=lambda size: bytes([next(counter)]) * size)
    assert draw is not None
    out: Digests = {
        "run config": run_config_digest({"lr": 0.01, "epochs": 3, "name": "é", "flag": False, "b": 2.0}).hex(),
        "arrays": digest.hex(),
        "round context": round_context(5, 2, digest).hex(),
        "compression": draw.parameters().hex(),
        "compressed table": draw.table(layout_table(layout, {"model/w": 0.5, "head/b": 1.0})).digest().hex(),
    }
    if _available("flwr"):
        from flwr.common.serde import recorddict_to_proto  # noqa: PLC0415

        content = _training_content()
        out["training content"] = recorddict_to_proto(content).SerializeToString().hex()
        out["training digests"] = _content_digests(content)
    return out


def _training_content() -> Any:
    """A ServerApp's training content: the model's arrays and the training configuration."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict  # noqa: PLC0415

    model = ArrayRecord({"w": Array(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)),
                         "steps": Array(np.array([4, -5], dtype=np.int64))})
    train = ConfigRecord({"lr": 0.1, "epochs": 2, "offset": -3, "name": "é", "flag": True, "tag": b"\x00"})
    return RecordDict({"model": model, "train": train, "extra": ConfigRecord({"zeta": 1.5})})


def _content_digests(content: Any) -> list[str]:
    """What a node binds of a training content: its training parameters and its arrays digest."""
    from secagg.integrations.flower._records import model_arrays, training_parameters  # noqa: PLC0415
    from secagg.integrations.flower.arrays import arrays_digest, flatten_arrays  # noqa: PLC0415

    return [training_parameters(content).hex(), arrays_digest(*flatten_arrays(model_arrays(content))).hex()]


def _vectors() -> Digests:
    from secagg.vectors._run import verify_document  # noqa: PLC0415

    folder = ROOT / "secagg" / "vectors" / "data"
    out: Digests = {}
    for name in VECTOR_FILES:
        report = verify_document(name, json.loads((folder / name).read_text(encoding="utf-8")))
        out[f"vectors {name}"] = [report.passed, report.failures[:3]]
    return out


def core_digests() -> Digests:
    """The digests and encodings that need neither PyTorch nor Keras."""
    return {**_masking(), **_dp(), **_fl_core(), **_flower(), **_vectors()}


def _torch() -> Digests:
    import torch  # noqa: PLC0415

    from secagg.integrations.torch import flatten_model, model_digest  # noqa: PLC0415

    class Net(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.heads = torch.nn.ModuleDict({"z": torch.nn.Linear(3, 2), "a": torch.nn.Linear(3, 2, bias=False)})
            self.body = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU())
            self.low = torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))
            self.register_buffer("steps", torch.zeros(3, dtype=torch.int32))
            self.tied = self.heads["z"]  # one module under two names

    model = Net()
    with torch.no_grad():
        for index, tensor in enumerate(model.state_dict().values()):
            values = torch.arange(tensor.numel(), dtype=torch.float64).reshape(tensor.shape) / 3 - index
            tensor.copy_(values.to(tensor.dtype))
    vector, layout = flatten_model(model)
    return {
        "torch names": [[spec.name, spec.dtype, list(spec.shape)] for spec in layout.specs],
        "torch model": model_digest(model).hex(),
        "torch parameters": model_digest(model, buffers=False).hex(),
        "torch vector": float(vector.sum()).hex(),
        "torch dp model": _torch_dp_digest(),
    }


def _torch_dp_digest() -> str:
    """``dp_model_digest`` of a model whose modules hold settings outside ``extra_repr`` (attention
    heads, an activation function), a non-persistent buffer, plain attributes and a hook."""
    import torch  # noqa: PLC0415

    from secagg.integrations.torch_dp import dp_model_digest  # noqa: PLC0415

    # torch's own classes only: a class's module is bound, and this one's is __main__ in the subprocess
    model = torch.nn.Sequential(
        torch.nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, activation="gelu", batch_first=True),
        torch.nn.MultiheadAttention(4, 2),
    )
    model.register_buffer("scale", torch.full((4,), 0.5), persistent=False)
    model.settings = {"slope": 0.1, "sizes": (3, 4), "name": "dp", "dtype": torch.bfloat16}
    with torch.no_grad():
        for index, tensor in enumerate(model.state_dict().values()):
            tensor.copy_(torch.arange(tensor.numel(), dtype=torch.float64).reshape(tensor.shape) / 7 - index)
    model[0].linear1.register_forward_pre_hook(torch.nn.functional.gelu)  # bound by name, never run here
    return dp_model_digest(model, loss_name="cross_entropy").hex()


def _keras_model(keras: Any) -> Any:
    """A functional model with automatic names of every kind: nested models, a custom layer with
    unnamed weights, recurrent cells, wrappers (Bidirectional, TimeDistributed), attention."""

    class Block(keras.layers.Layer):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.first, self.second = keras.layers.Dense(2), keras.layers.Dense(2)

        def build(self, shape: Any) -> None:
            self.offset = self.add_weight(shape=(2,))
            self.scale = self.add_weight(shape=(2,), name="scale")

        def call(self, x: Any) -> Any:
            return self.second(self.first(x)) * self.scale + self.offset

    inputs = keras.Input((3, 2))
    x = keras.layers.Dense(2)(inputs)
    x = keras.Sequential([keras.layers.Dense(2), keras.layers.Dense(2)])(x)
    x = Block()(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(2, return_sequences=True))(x)
    x = keras.layers.Bidirectional(
        keras.layers.GRU(1, return_sequences=True), backward_layer=keras.layers.GRU(1, return_sequences=True,
                                                                                    go_backwards=True)
    )(x)
    x = keras.layers.TimeDistributed(keras.layers.Dense(2))(x)
    x = keras.layers.RNN([keras.layers.SimpleRNNCell(2), keras.layers.SimpleRNNCell(2)], return_sequences=True)(x)
    inner = keras.Input((3, 2))
    x = keras.Model(inner, keras.layers.Dense(2)(inner))(x)
    x = keras.layers.MultiHeadAttention(1, 2)(x, x)
    x = keras.layers.LayerNormalization()(keras.layers.Dropout(0.1)(x))
    x = keras.layers.BatchNormalization()(keras.layers.Conv1D(2, 2)(x))
    return keras.Model(inputs, x)


def _warm_keras(keras: Any) -> None:
    """Other models and layers built first: every automatic name gets another counter."""
    for _ in range(3):
        inputs = keras.Input((3, 2))
        keras.Model(inputs, keras.layers.Bidirectional(keras.layers.LSTM(1))(keras.layers.Dense(2)(inputs)))
        for layer in ("LSTM", "GRU", "SimpleRNN", "LSTMCell", "GRUCell", "SimpleRNNCell", "Dense"):
            getattr(keras.layers, layer)(1)
        keras.layers.Conv1D(1, 1), keras.layers.MultiHeadAttention(1, 1), keras.layers.LayerNormalization()
        keras.layers.BatchNormalization(), keras.layers.Dropout(0.5), keras.Sequential(), keras.Variable(np.zeros(1))


def _keras(warm: bool) -> Digests:
    os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported
    import keras  # noqa: PLC0415

    from secagg.integrations.keras import flatten_model, model_digest  # noqa: PLC0415

    if warm:
        _warm_keras(keras)
    model = _keras_model(keras)
    model.set_weights([
        (np.arange(w.size, dtype=np.float64).reshape(w.shape) / 5 - index).astype(w.dtype)
        for index, w in enumerate(model.get_weights())
    ])
    return {
        "keras names": list(flatten_model(model)[1].names),
        "keras model": model_digest(model).hex(),
        "keras trainable": model_digest(model, trainable_only=True).hex(),
    }


def adapter_digests(warm: bool) -> Digests:
    """The PyTorch and Keras adapters' digests (each only where its extra is installed)."""
    out: Digests = {}
    if _available("torch"):
        out.update(_torch())
    if _available("keras") and _available("torch"):
        out.update(_keras(warm))
    return out


def _in_subprocess(part: str, env: dict[str, str], *, warm: bool = False) -> Digests:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "torch", **env}
    command = [sys.executable, str(Path(__file__).resolve()), part, *(["warm"] if warm else [])]
    done = subprocess.run(command, env=environment, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: Digests = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _differences(here: Digests, there: Digests) -> list[str]:
    return [key for key in sorted(set(here) | set(there)) if here.get(key) != there.get(key)]


CORE_ENVIRONMENTS = {
    "0": {"PYTHONHASHSEED": "0", "LC_ALL": "C", "TZ": "UTC"},
    "12345": {"PYTHONHASHSEED": "12345", "LC_ALL": "C.UTF-8", "TZ": "Pacific/Chatham"},
}


@functools.cache
def _core_in_subprocess(hash_seed: str) -> Digests:
    """:func:`core_digests` in a fresh process (one launch per hash seed for the whole module)."""
    return _in_subprocess("core", CORE_ENVIRONMENTS[hash_seed])


@pytest.mark.parametrize("hash_seed", sorted(CORE_ENVIRONMENTS))
def test_core_digests_agree_across_processes(hash_seed: str) -> None:
    # Prepare: this process's digests (its own hash seed, whatever the tests before imported)
    here = core_digests()
    # Execute: the same computations in a fresh process with another hash seed, locale, time zone
    there = _core_in_subprocess(hash_seed)
    # Assert: byte for byte, and the committed vectors verify there too
    assert _differences(here, there) == []
    for name in VECTOR_FILES:
        passed, failures = there[f"vectors {name}"]
        assert failures == [] and passed > 0, (name, failures)


def test_a_training_content_serialized_in_another_process_binds_the_same_here() -> None:
    if not _available("flwr"):
        pytest.skip("the Flower extra is not installed")
    from flwr.common.serde import recorddict_from_proto  # noqa: PLC0415
    from flwr.proto.recorddict_pb2 import RecordDict as RecordDictProto  # noqa: PLC0415

    # Prepare: a ServerApp process serializes its training content (and binds its digests)
    there = _core_in_subprocess("12345")
    proto = RecordDictProto()
    proto.ParseFromString(bytes.fromhex(there["training content"]))
    # Execute: this process, a node, reads the content and computes what it binds
    received = _content_digests(recorddict_from_proto(proto))
    # Assert: the node binds what the server bound
    assert received == there["training digests"] == _content_digests(_training_content())


def test_adapter_digests_agree_across_processes() -> None:
    if not _available("torch"):
        pytest.skip("the PyTorch extra is not installed")
    # Prepare: this process's digests (Keras's counters wherever the tests before left them)
    here = adapter_digests(warm=False)
    # Execute: another hash seed, the adapters imported before Keras, other models built first
    there = _in_subprocess("adapters", {"PYTHONHASHSEED": "12345"}, warm=True)
    # Assert: the same weight names, layouts and model digests
    assert "torch model" in here and "torch model" in there
    assert _differences(here, there) == []
    if "keras names" in here:
        assert "bidirectional/forward_lstm/lstm_cell/kernel" in here["keras names"]


def _main(arguments: list[str]) -> None:
    part = arguments[0]
    # Another import order than the tests': the bound modules first, in reverse
    for module in ("secagg.integrations.keras", "secagg.integrations.torch", "fl_core", "secagg.dp", "secagg"):
        if part == "adapters" or "integrations" not in module:
            importlib.import_module(module)
    digests = core_digests() if part == "core" else adapter_digests(warm="warm" in arguments)
    print(json.dumps(digests, sort_keys=True))


if __name__ == "__main__":
    _main(sys.argv[1:])
