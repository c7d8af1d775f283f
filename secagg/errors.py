"""The library's exception hierarchy.

Every error that secagg raises on bad input, unsafe configuration or a protocol
violation is a :class:`SecAggError`. Callers that handle untrusted bytes can catch
that one class and be sure that nothing else (``IndexError``, ``KeyError``,
``struct.error``, a dependency's ``ValueError``) escapes from decoding or protocol
code. ``assert`` is used only for internal invariants, never for input checks.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "DecodeError",
    "EncodeError",
    "OverflowDetectedError",
    "ProtocolError",
    "ReplayError",
    "SecAggError",
    "ThresholdError",
    "UnsafeRequestError",
    "install_hint",
]


def install_hint(extra: str) -> str:
    """How to install one of secagg's extras, for error messages.

    secagg is not on the package index: it is installed from a clone of its
    repository (or from a wheel built there with ``python -m pip wheel . -w dist``).
    """
    return f"pip install -e '.[{extra}]' from the root of a secagg clone (secagg is not on the package index)"


class SecAggError(Exception):
    """Base class of every error raised by secagg."""


class ConfigurationError(SecAggError):
    """A configuration is invalid or unsafe and was refused at setup.

    Raised before any secret is generated: an overflowing quantization, a key that
    is too short, a threshold that is unsafe for the chosen mode.
    """


class EncodeError(SecAggError):
    """A value cannot be represented in the wire format (out of range, too long)."""


class DecodeError(SecAggError):
    """Bytes are not a valid encoding: truncated, trailing data, bad tag or version,
    out-of-range field, non-canonical encoding."""


class AuthenticationError(SecAggError):
    """A ciphertext, signature or share failed authentication or verification."""


class ProtocolError(SecAggError):
    """A protocol message is well formed but not acceptable in the current state:
    wrong session, round, sender or recipient, or inconsistent content."""


class ReplayError(ProtocolError):
    """A message was received twice, or a party sent twice in one round."""


class UnsafeRequestError(ProtocolError):
    """The server asked for something an honest client must never reveal, such as
    both the mask-key share and the self-mask share of one peer."""


class ThresholdError(ProtocolError):
    """Fewer parties than the threshold remain; the session aborts without
    revealing anything the requester does not already hold."""


class OverflowDetectedError(SecAggError):
    """An aggregate left the range its encoding can represent (a ring or a packed
    slot wrapped), so the decoded value would be wrong."""
