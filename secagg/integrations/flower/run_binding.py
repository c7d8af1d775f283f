"""Binding the Flower run config into a secure round.

Flower serves each node its own copy of the run config (``context.run_config``: the app's
defaults fused with the run's overrides, the same for every node of an honest run) and the
ServerApp its own; nothing bound them, so a coordinator could serve one node another run
config than the others (``learning-rate = 0``, another ``protocol``, ...). With
``SecAggOptions(run_config=context.run_config)`` or ``PaillierOptions(run_config=...)`` the
server puts the digest of its run config (:func:`run_config_digest`) into every training
message as the ConfigRecord :data:`RUN_CONFIG_RECORD` (:func:`bind_run_config`), so it is
bound with the rest of the training content (``RoundSetup.parameters``,
``PaillierSetup``'s parameters): a node shown another digest is in another session. Each
node then compares the bound digest with the digest of its own ``context.run_config`` at
setup, before it trains, and refuses a mismatch (:func:`check_run_config`); a node whose
policy says ``require_run_config`` refuses a round that binds none. The node config
(``context.node_config``) is per node by design and never bound.

The digest covers every entry's name, type and value (``secagg.descriptor`` encoding, entries
sorted by name): ``2`` and ``2.0`` differ, as do two configs one of which has an extra key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from secagg.descriptor import Parameter, decode_parameters, encode_parameters
from secagg.errors import ConfigurationError

if TYPE_CHECKING:
    from flwr.app import Message

__all__ = [
    "RUN_CONFIG_KEY",
    "RUN_CONFIG_RECORD",
    "bind_run_config",
    "check_run_config",
    "check_run_config_option",
    "run_config_digest",
]

RUN_CONFIG_RECORD = "secagg.run"
"""The ConfigRecord the server adds to every training message: the run config's digest."""
RUN_CONFIG_KEY = "config-digest"
"""Its one entry."""
_LABEL = b"secagg/v1/flower-run-config"
_BOUND = f"{RUN_CONFIG_RECORD}/{RUN_CONFIG_KEY}"


def run_config_digest(run_config: Mapping[str, Parameter]) -> bytes:
    """SHA-256 of ``"secagg/v1/flower-run-config"`` and every entry of ``run_config`` sorted by
    UTF-8 name, each as :func:`~secagg.descriptor.encode_parameters` encodes it (name, type,
    value). ConfigurationError if an entry is not a scalar (a list cannot be bound)."""
    digest = hashlib.sha256(_LABEL)
    # Each entry encoded first: a name that is not a string or not UTF-8 is refused (ConfigurationError).
    entries = {name: encode_parameters({name: value}) for name, value in run_config.items()}
    for name in sorted(entries, key=lambda key: key.encode("utf-8")):
        digest.update(entries[name])
    return digest.digest()


def check_run_config_option(run_config: object) -> Mapping[str, Parameter] | None:
    """The options' check: ``run_config`` None or a mapping of scalars (ConfigurationError);
    returns a read-only copy, so that what every round binds is the run config as the options
    were given it, whatever the ServerApp later does to its own mapping."""
    if run_config is None:
        return None
    if not isinstance(run_config, Mapping):
        raise ConfigurationError(
            f"run_config must be the ServerApp's context.run_config, got {type(run_config).__name__}"
        )
    snapshot: Mapping[str, Parameter] = MappingProxyType(dict(run_config))
    run_config_digest(snapshot)
    return snapshot


def bind_run_config(messages: Iterable[Message], digest: bytes) -> None:
    """Give every message a content holding its strategy's records and ``{RUN_CONFIG_KEY: digest}``
    under :data:`RUN_CONFIG_RECORD` (a new RecordDict: a strategy may share one content between
    its messages and rounds); ConfigurationError, before anything is sent, if a strategy's content
    already holds that name."""
    from flwr.app import ConfigRecord, RecordDict  # noqa: PLC0415 (the server's side needs flwr; the checks do not)

    batch = list(messages)
    for message in batch:
        if RUN_CONFIG_RECORD in message.content:
            raise ConfigurationError(
                f"the strategy's training content holds a {RUN_CONFIG_RECORD!r} record: the name is the secure "
                "round's (the bound run config digest)"
            )
    for message in batch:
        content = RecordDict()
        for key, record in message.content.items():
            content[key] = record
        content[RUN_CONFIG_RECORD] = ConfigRecord({RUN_CONFIG_KEY: digest})
        message.content = content


def check_run_config(parameters: bytes, run_config: Mapping[str, Parameter], required: bool) -> None:
    """ConfigurationError unless the setup's bound training ``parameters`` carry the digest of
    this node's own ``run_config``; with none bound, only if ``required`` (the node's policy)."""
    bound = decode_parameters(parameters).get(_BOUND)
    if bound is None:
        if required:
            raise ConfigurationError(
                "policy: the round binds no run config, and this node requires it (require_run_config): the "
                "server must pass SecAggOptions/PaillierOptions(run_config=context.run_config)"
            )
        return
    own = run_config_digest(run_config)
    if bound != own:
        shown = bound.hex()[:16] if isinstance(bound, bytes) else repr(bound)[:32]
        raise ConfigurationError(
            f"this node's run config (digest {own.hex()[:16]}...) is not the one the server bound ({shown}...): "
            "the coordinator served this node another run config; refused before training"
        )
