"""The library's exception hierarchy.

Every error that secagg raises on bad input, unsafe configuration or a protocol
violation is a :class:`SecAggError`. Callers that handle untrusted bytes can catch
that one class and be sure that nothing else (``IndexError``, ``KeyError``,
``struct.error``, a dependency's ``ValueError``) escapes from decoding or protocol
code. ``assert`` is used only for internal invariants, never for input checks.

Hierarchy (every class is a :class:`SecAggError`)::

    SecAggError
    ├── ConfigurationError (also ValueError): a bad or unsafe argument or setting
    │   ├── ConfigurationTypeError (also TypeError): an argument of the wrong type
    │   ├── StateLockedError: a state file is in use by another process (its lock is held)
    │   └── SecretFileLinkWarning (also UserWarning): a secret file with a second name (a
    │       warning, issued with :func:`warnings.warn`; a refusal where it is made an error)
    ├── EncodeError, DecodeError, AuthenticationError, OverflowDetectedError
    ├── BudgetExceededError: a release would exceed the declared privacy budget
    └── ProtocolError
        └── ReplayError, UnsafeRequestError, ThresholdError
                                              └── InsufficientNoiseError

``ConfigurationError`` derives from ``ValueError`` and ``ConfigurationTypeError``
from ``TypeError`` as well, so a caller may catch either the library's class or
the Python convention's: ``except ValueError`` and ``except TypeError`` keep
working around calls that get a wrong value or type.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BudgetExceededError",
    "ConfigurationError",
    "ConfigurationTypeError",
    "DecodeError",
    "EncodeError",
    "InsufficientNoiseError",
    "OverflowDetectedError",
    "ProtocolError",
    "ReplayError",
    "SecAggError",
    "SecretFileLinkWarning",
    "StateLockedError",
    "ThresholdError",
    "UnsafeRequestError",
]


class SecAggError(Exception):
    """Base class of every error raised by secagg."""


class ConfigurationError(SecAggError, ValueError):
    """A configuration or argument is invalid or unsafe and was refused at setup.

    Raised before any secret is generated or any buffer allocated: an overflowing
    quantization, a key that is too short, a threshold that is unsafe for the
    chosen mode, a size above its documented maximum, NaN where a number belongs.
    Also a ``ValueError``, as Python convention expects for a bad value.
    """


class ConfigurationTypeError(ConfigurationError, TypeError):
    """An argument has the wrong type: a float or ``bool`` where an integer
    belongs, ``None`` or ``str`` where bytes belong. Also a ``TypeError``."""


class StateLockedError(ConfigurationError):
    """A state file (the privacy accountant's) is in use: another accountant, in this process or
    another live one, holds its lock, or (on platforms without ``fcntl``) its lock file exists.
    Nothing was read or written; retry once the other is done (a leftover lock file: remove it
    once no accountant runs on the file)."""


class SecretFileLinkWarning(ConfigurationError, UserWarning):  # noqa: N818  (a warning first, named as one)
    """A secret file read (an identity key, a key share, a protected private key, a passphrase file)
    has another name (a hard link) elsewhere.

    Issued with :func:`warnings.warn`, the file read all the same: every name of a file is the same
    file, with this one's owner and mode (checked), so no other user may read the secret through
    another name; but deleting this name leaves the secret on disk under the others. Made an error
    (``warnings.simplefilter("error", SecretFileLinkWarning)``), the read raises it before any byte
    of the file is read: then it is the library's refusal, a :class:`ConfigurationError`, which every
    caller handles as one (a node's handler drops the round and replies with the reason). Also
    exported by :mod:`secagg.paillier.storage`.
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


class InsufficientNoiseError(ThresholdError):
    """Fewer honest contributors than the differential-privacy calibration assumes:
    their noise shares would not add up to the calibrated total, so the round must be
    skipped, never released under-noised."""


class BudgetExceededError(SecAggError):
    """Releasing one more aggregate would exceed the declared (epsilon, delta) privacy
    budget; the round is refused and nothing is recorded as spent."""
