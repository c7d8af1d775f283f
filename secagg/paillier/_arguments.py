"""Argument checks shared by the public entry points of :mod:`secagg.paillier`.

Thin wrappers over :mod:`secagg._validate` for the arguments most entry points take: the
randomness source, the worker pool, on/off flags, file paths and the protocol roles' messages.
Each returns the checked value or raises :class:`~secagg.errors.ConfigurationTypeError` naming
the argument, before any work is done (a flag such as ``insecure_for_testing="no"`` would
otherwise count as set); a message given as bytes is decoded (DecodeError if malformed).
"""

from __future__ import annotations

import os
from typing import TypeVar, cast

from secagg import wire
from secagg._validate import require_callable, require_instance
from secagg.errors import ConfigurationTypeError
from secagg.paillier._compute import Workers
from secagg.primitives.randomness import RandomBytes

__all__ = ["require_flag", "require_message", "require_path", "require_random_bytes", "require_workers"]

M = TypeVar("M", bound=wire.Message)


def require_flag(name: str, value: object) -> bool:
    """``value`` if it is a ``bool`` (not merely truthy)."""
    return require_instance(name, value, bool)


def require_workers(value: object, name: str = "workers") -> Workers:
    """``value`` if it is a :class:`~secagg.paillier.Workers` pool."""
    return require_instance(name, value, Workers)


def require_random_bytes(value: object, name: str = "random_bytes") -> RandomBytes:
    """``value`` if it can be called as a randomness source ``random_bytes(size) -> bytes``."""
    return cast(RandomBytes, require_callable(name, value))


def require_path(value: object, name: str = "path") -> str | os.PathLike[str]:
    """``value`` if it is a file path (``str`` or ``os.PathLike``)."""
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigurationTypeError(f"{name} must be a str or os.PathLike file path, got {type(value).__name__}")
    return value


def require_message(name: str, value: object, kind: type[M]) -> M:
    """``value`` if it is a ``kind`` message, else its decoding if it is bytes-like (untrusted:
    DecodeError if malformed); ConfigurationTypeError naming ``name`` for anything else."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return wire.decode(bytes(value), kind)
    return require_instance(name, value, kind)
