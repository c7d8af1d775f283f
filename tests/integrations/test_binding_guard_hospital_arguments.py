"""Binding guard, hospital-side arguments: the keyword arguments a hospital passes to the public
functions that build what it sends, which no dataclass-field guard sees.

The other binding guards introspect dataclass fields (configs, messages, options) and the
arguments of the protocol's own entry points (``client_start``, Paillier's ``Client``, the fl_core
aggregators). A hospital also shapes its contribution through plain keyword arguments of the
adapters (``hospital_update(buffers=...)``, ``trainable_only``, ``local_weights``, ``dp_update(dp=...,
loss_name=...)``), of the fl_core helpers that compute a hospital's values, and of the Flower mod
factories. This table lists every one of them (introspected with ``inspect.signature``: one added
later fails :func:`test_every_hospital_side_argument_is_listed` until it is listed), each either
split here (hospital 1 under another value, the other hospitals and the server under the default:
hospital 1 alone is refused with the reason and the mean is the others' alone, never a sum that
mixes the two) or with the reason it shapes nothing the round decodes, or where its split runs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported
keras = pytest.importorskip("keras")
pytest.importorskip("flwr")

from fl_core.aggregators import make_aggregator  # noqa: E402
from fl_core.aggregators.base import AggregationResult, ClientUpdate  # noqa: E402
from fl_core.dp_moments import moments_contribution  # noqa: E402
from fl_core.dp_training import dp_contribution  # noqa: E402
from fl_core.fedavg import local_sgd  # noqa: E402
from secagg import encoding, segments  # noqa: E402
from secagg.dp import DPConfig, SeededRandomSource  # noqa: E402
from secagg.dp.encoding import noised_encoding  # noqa: E402
from secagg.integrations import keras as keras_adapter  # noqa: E402
from secagg.integrations import torch as torch_adapter  # noqa: E402
from secagg.integrations import torch_dp  # noqa: E402
from secagg.integrations.flower import make_paillier_mod, make_secagg_mod  # noqa: E402
from tests.masking.binding_guard import assert_listed, parameter_names, split_cases  # noqa: E402

from .torch_modules import torch_model  # noqa: E402

HOSPITALS = (1, 2, 3, 4, 5)
TARGET = 1
"""The hospital that holds the other value."""
DP = DPConfig(epsilon=8.0, delta=1e-5, rounds=4, l2_clip=1.0, min_honest=2)

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "torch.hospital_update": torch_adapter.hospital_update,
    "torch.model_digest": torch_adapter.model_digest,
    "torch.aggregate_models": torch_adapter.aggregate_models,
    "keras.hospital_update": keras_adapter.hospital_update,
    "keras.model_digest": keras_adapter.model_digest,
    "keras.aggregate_models": keras_adapter.aggregate_models,
    "torch_dp.dp_update": torch_dp.dp_update,
    "torch_dp.dp_contribution": torch_dp.dp_contribution,
    "torch_dp.dp_model_digest": torch_dp.dp_model_digest,
    "fl_core.dp_contribution": dp_contribution,
    "fl_core.moments_contribution": moments_contribution,
    "fl_core.local_sgd": local_sgd,
    "flower.make_secagg_mod": make_secagg_mod,
    "flower.make_paillier_mod": make_paillier_mod,
    "encoding.quantize": encoding.quantize,
    "encoding.quantize_to_integers": encoding.quantize_to_integers,
    "encoding.to_ring": encoding.to_ring,
    "segments.quantize_segments": segments.quantize_segments,
    "dp.noised_encoding": noised_encoding,
}
"""The public functions a hospital calls to build (or declare) what it sends, and the adapters'
``aggregate_models``, which build every hospital's update of a round under one set of options."""


# --- the splits: each returns the round's updates (hospital 1 under the other value when
# ``other``), the digest the server binds, and the aggregator the round runs through.

Round = tuple[list[ClientUpdate], bytes, Any]


def _keras_model(step: float = 0.0) -> Any:
    """Dense -> BatchNormalization (named ``norm``), every weight moved by ``step``."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization(name="norm")])
    model.set_weights([w + np.float32(step) for w in model.get_weights()])
    return model


def _torch_buffers(other: bool) -> Round:
    global_model = torch_model()
    updates = [
        torch_adapter.hospital_update(
            h, global_model, torch_model(0.05 * h), num_samples=10, buffers=not (other and h == TARGET)
        )
        for h in HOSPITALS
    ]
    return updates, torch_adapter.model_digest(global_model), make_aggregator("secagg", num_clients=len(HOSPITALS))


def _keras_split(option: str) -> Callable[[bool], Round]:
    """The server and every hospital but 1 under ``trainable_only=True``; hospital 1 without it
    (``trainable_only``) or keeping the batch-norm statistics local (``local_weights``)."""
    local = ("norm/moving_mean", "norm/moving_variance")

    def split(other: bool) -> Round:
        global_model = _keras_model()
        updates = []
        for h in HOSPITALS:
            odd = other and h == TARGET
            options: dict[str, Any] = {"trainable_only": not odd} if option == "trainable_only" else {
                "trainable_only": True, "local_weights": local if odd else ()
            }  # fmt: skip
            updates.append(
                keras_adapter.hospital_update(h, global_model, _keras_model(0.05 * h), num_samples=10, **options)
            )
        digest = keras_adapter.model_digest(global_model, trainable_only=True)
        return updates, digest, make_aggregator("secagg", num_clients=len(HOSPITALS))

    return split


def _loss(output: Any, target: Any) -> Any:
    return torch.nn.functional.mse_loss(output, target)


def _dp_split(option: str) -> Callable[[bool], Round]:
    """A DP round at a linear model: hospital 1 clips under another ``l2_clip`` (``dp``) or declares
    another loss than the round binds (``loss_name``)."""

    def split(other: bool) -> Round:
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 2).double()
        aggregator = make_aggregator(
            "secagg", num_clients=len(HOSPITALS), dp=DP, dimension=6, max_samples_per_client=64,
            noise_source=SeededRandomSource(bytes(32)),
        )  # fmt: skip
        rng = np.random.default_rng(3)
        updates = []
        for h in HOSPITALS:
            odd = other and h == TARGET
            dp = dataclasses.replace(DP, l2_clip=100.0) if odd and option == "dp" else DP
            loss_name = "huber" if odd and option == "loss_name" else "mse"
            inputs, targets = (torch.from_numpy(rng.normal(size=(20, 2))) for _ in range(2))
            sample = SeededRandomSource(bytes(32))
            updates.append(torch_dp.dp_update(h, model, _loss, inputs, targets, dp, sample, loss_name=loss_name))
        return updates, torch_dp.dp_model_digest(model, loss_name="mse"), aggregator

    return split


WHO = "who the hospital is: a round's ids are distinct (check_round), no value to agree on"
SERVER_SIDE = "the server's counterpart of the hospital_update option of that name: split there"
RANDOMNESS = "the hospital's own randomness (rounding or sampling, secret or not): no value to agree on"
ITS_DATA = "the hospital's own data or trained model: the contribution itself (its layout is bound: model_digest)"
IN_PROCESS = (
    "computed for every hospital inside fl_core's own round (run_fedavg, release_moments) from the one bound "
    "value; no hospital passes its own"
)
SPLITS: dict[str, Callable[[bool], Round] | str] = {
    # PyTorch adapter
    "torch.hospital_update.client_id": WHO,
    "torch.hospital_update.received": "the model it trained from: its digest is declared and checked "
    "(tests/integrations/test_integrations_torch_model_binding.py)",
    "torch.hospital_update.local": ITS_DATA,
    "torch.hospital_update.num_samples": "its weight, summed securely; its public bound (max_weight) is bound",
    "torch.hospital_update.buffers": _torch_buffers,
    "torch.model_digest.model": "the global model: bound (tests/integrations/test_integrations_torch_model_binding.py)",
    "torch.model_digest.buffers": SERVER_SIDE,
    # Keras adapter
    "keras.hospital_update.client_id": WHO,
    "keras.hospital_update.received": "the model it trained from: its digest is declared and checked",
    "keras.hospital_update.local": ITS_DATA,
    "keras.hospital_update.num_samples": "its weight, summed securely; its public bound (max_weight) is bound",
    "keras.hospital_update.trainable_only": _keras_split("trainable_only"),
    "keras.hospital_update.local_weights": _keras_split("local_weights"),
    "keras.model_digest.model": "the global model: bound "
    "(tests/integrations/test_integrations_adapter_split_layout.py)",
    "keras.model_digest.trainable_only": SERVER_SIDE,
    "keras.model_digest.local_weights": SERVER_SIDE,
    # PyTorch DP
    "torch_dp.dp_update.client_id": WHO,
    "torch_dp.dp_update.model": "the global model: dp_model_digest, declared and checked "
    "(tests/integrations/test_integrations_torch_dp_binding.py)",
    "torch_dp.dp_update.loss_fn": "a callable has no value to hash: bound by the name the round declares (loss_name)",
    "torch_dp.dp_update.inputs": ITS_DATA,
    "torch_dp.dp_update.targets": ITS_DATA,
    "torch_dp.dp_update.dp": _dp_split("dp"),
    "torch_dp.dp_update.source": RANDOMNESS,
    "torch_dp.dp_update.loss_name": _dp_split("loss_name"),
    "torch_dp.dp_contribution.model": "the float contribution alone, declared by dp_update (the entries above)",
    "torch_dp.dp_contribution.loss_fn": "the float contribution alone, declared by dp_update (the entries above)",
    "torch_dp.dp_contribution.inputs": ITS_DATA,
    "torch_dp.dp_contribution.targets": ITS_DATA,
    "torch_dp.dp_contribution.dp": "the float contribution alone; dp_update declares dp.digest() (its dp entry)",
    "torch_dp.dp_contribution.source": RANDOMNESS,
    "torch_dp.dp_model_digest.model": "the global model's DP digest "
    "(tests/integrations/test_integrations_torch_dp_binding.py)",
    "torch_dp.dp_model_digest.loss_name": "the server's counterpart of dp_update's loss_name: split there",
    # fl_core's hospital-side computations
    "fl_core.dp_contribution.model": IN_PROCESS,
    "fl_core.dp_contribution.params": IN_PROCESS,
    "fl_core.dp_contribution.data": ITS_DATA,
    "fl_core.dp_contribution.dp": IN_PROCESS,
    "fl_core.dp_contribution.source": RANDOMNESS,
    "fl_core.moments_contribution.dataset": IN_PROCESS + " (its public ranges bound: bind_scaling)",
    "fl_core.moments_contribution.features": ITS_DATA,
    "fl_core.moments_contribution.l2_clip": IN_PROCESS + " (the DP aggregator's l2_clip)",
    "fl_core.local_sgd.model": IN_PROCESS + " (its settings bound: tests/fl_core/test_fl_fedavg_model_binding.py)",
    "fl_core.local_sgd.params": IN_PROCESS + " (the global model: its digest is declared)",
    "fl_core.local_sgd.data": ITS_DATA,
    "fl_core.local_sgd.epochs": IN_PROCESS + " (bound: tests/fl_core/test_fl_fedavg_training_binding.py)",
    "fl_core.local_sgd.batch_size": IN_PROCESS + " (bound: tests/fl_core/test_fl_fedavg_training_binding.py)",
    "fl_core.local_sgd.learning_rate": IN_PROCESS + " (bound: tests/fl_core/test_fl_fedavg_training_binding.py)",
    "fl_core.local_sgd.rng": RANDOMNESS,
}
# The adapters' aggregate_models: one call builds every hospital's update under the same options
# and binds the global model's digest; a hospital's own value of an option is hospital_update's.
ONE_VALUE = "one value for every hospital of the call and the digest it binds; a hospital's own is hospital_update's"
for _adapter, _options in (("torch", ("buffers",)), ("keras", ("trainable_only", "local_weights"))):
    SPLITS |= {
        f"{_adapter}.aggregate_models.global_model": "the round's model: its digest is bound (model_digest)",
        f"{_adapter}.aggregate_models.local_models": ITS_DATA,
        f"{_adapter}.aggregate_models.aggregator": "the protocol: its options split in "
        "tests/fl_core/test_fl_*binding_guard.py",
        f"{_adapter}.aggregate_models.num_samples": "the hospitals' weights, summed securely; their bound is bound",
        f"{_adapter}.aggregate_models.rng": RANDOMNESS,
        f"{_adapter}.aggregate_models.client_ids": WHO,
        f"{_adapter}.aggregate_models.dropouts": "which hospitals drop, and when: the protocol's own business",
        f"{_adapter}.aggregate_models.clips": "the per-tensor clips: the round's segment table, bound "
        "(tests/masking/test_binding_guard_encoding.py)",
        f"{_adapter}.aggregate_models.discovery": "the range-discovery round: RangeDiscovery's fields split in "
        "tests/masking/test_binding_guard_encoding.py; the clips it finds are bound as clips",
        f"{_adapter}.aggregate_models.trained_from": "the copy each hospital trained from: its digest is declared "
        "and checked (the adapters' model binding tests)",
    } | {f"{_adapter}.aggregate_models.{option}": ONE_VALUE for option in _options}
# The encoding helpers: every value that shapes an encoding is a field of the dataclass they take,
# each split by tests/masking/test_binding_guard_encoding.py (and the configs' own guards).
QUANTIZATION = "every field of QuantizationConfig: split in tests/masking/test_binding_guard_encoding.py"
SPLITS |= {
    "encoding.quantize.values": ITS_DATA,
    "encoding.quantize.config": QUANTIZATION,
    "encoding.quantize.rng": RANDOMNESS,
    "encoding.quantize_to_integers.values": ITS_DATA,
    "encoding.quantize_to_integers.config": QUANTIZATION,
    "encoding.quantize_to_integers.rng": RANDOMNESS,
    "encoding.to_ring.integers": ITS_DATA,
    "encoding.to_ring.config": QUANTIZATION,
    "segments.quantize_segments.values": ITS_DATA,
    "segments.quantize_segments.table": "every field of SegmentTable and Segment: split in "
    "tests/masking/test_binding_guard_encoding.py",
    "segments.quantize_segments.bits": "its callers pass the bound config's bits (fl_core's WeightedQuantizer, "
    "Flower's encode_segmented): quantizer.config.bits",
    "segments.quantize_segments.rng": RANDOMNESS,
    "dp.noised_encoding.plan": "every field of NoisePlan and DPConfig: split in "
    "tests/masking/test_binding_guard_encoding.py",
    "dp.noised_encoding.quantization": QUANTIZATION,
    "dp.noised_encoding.contribution": ITS_DATA,
    "dp.noised_encoding.rounding_rng": RANDOMNESS,
    "dp.noised_encoding.source": RANDOMNESS,
    "dp.noised_encoding.noise": "the hospital's own noise drawn beforehand: randomness, no value to agree on",
}
# The Flower mods: a node builds its contribution from the round's setup alone, every field of which
# is bound (tests/integrations/test_integrations_flower_setup_fields.py); none of the factories'
# arguments enters the encoding, the layout or the decoding.
_MOD_REASONS = {
    "policy": "what the node accepts: a refusal before it trains, never another encoding",
    "allow_plain_train": "messages outside a secure round: no secure contribution",
    "allow_plain_evaluate": "messages outside a secure round: no secure contribution",
    "allow_plain_query": "messages outside a secure round: no secure contribution",
    "rng": RANDOMNESS,
    "audit": "a local callback after the contribution is computed",
    "random_bytes": "the node's own secrets (keys, masks, encryption randomness): no value to agree on",
    "identity_key_file": "the node's own key; the round's identity keys are bound",
    "trusted_keys_file": "the node's check of the round's keys; the keys the round uses are bound",
    "noise_source": "the node's own DP noise randomness: no value to agree on",
    "dp_state_file": "where the node keeps its own budget: no value it sends",
}
_PAILLIER_REASONS = {
    "key_share_file": "the node's own share; the public key it belongs to is bound (session parameters)",
    "passphrase": "unlocks the node's own share",
    "obfuscation": "how the node draws its encryption randomness: the same plaintexts "
    "(tests/paillier/test_paillier_binding_guard.py)",
    "constant_time": "how the node exponentiates: the same partial decryption "
    "(tests/paillier/test_paillier_session.py)",
}
SPLITS |= {f"flower.make_secagg_mod.{name}": reason for name, reason in _MOD_REASONS.items()}
SPLITS |= {f"flower.make_paillier_mod.{name}": reason for name, reason in (_MOD_REASONS | _PAILLIER_REASONS).items()}


def test_every_hospital_side_argument_is_listed() -> None:
    introspected = set().union(*(parameter_names(f, f"{name}.") for name, f in FUNCTIONS.items()))
    assert_listed(introspected, SPLITS, "the hospital-side arguments")


def _run(name: str, other: bool) -> tuple[list[ClientUpdate], AggregationResult]:
    split = SPLITS[name]
    assert callable(split), f"{name} is a reason, not a split"
    updates, digest, aggregator = split(other)
    result = aggregator.aggregate(updates, rng=np.random.default_rng(0), model_digest=digest)
    return updates, result


def _mean(updates: list[ClientUpdate]) -> np.ndarray:
    return np.mean([u.vector for u in updates], axis=0)


@pytest.mark.parametrize("name", split_cases(SPLITS))
def test_an_argument_split_between_two_hospitals_refuses_the_odd_one_only(name: str) -> None:
    # Execute: hospital 1 under the other value, the others and the server under the default
    updates, result = _run(name, other=True)
    # Assert: hospital 1 alone is refused, with a reason naming what differs; the others' round goes on
    assert [client for client, _ in result.refused] == [TARGET], result.refused
    assert "another" in dict(result.refused)[TARGET]
    assert result.included == frozenset(HOSPITALS) - {TARGET} and result.mean is not None
    if not name.startswith("torch_dp."):  # a DP mean holds noise; its refusal is the check
        np.testing.assert_allclose(result.mean, _mean(updates[1:]), atol=1e-3)


@pytest.mark.parametrize("name", split_cases(SPLITS))
def test_the_control_round_includes_every_hospital(name: str) -> None:
    updates, result = _run(name, other=False)
    assert result.refused == () and result.included == frozenset(HOSPITALS) and result.mean is not None
    if not name.startswith("torch_dp."):
        np.testing.assert_allclose(result.mean, _mean(updates), atol=1e-3)
