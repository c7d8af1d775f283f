"""secagg: secure aggregation for federated learning.

The server learns only the sum of the clients' vectors. Two layers:

- :mod:`secagg.masking` — pairwise masking with dropout recovery (SecAgg,
  Bonawitz et al. 2017) and its sparse-graph variant (SecAgg+, Bell et al. 2020).
- :mod:`secagg.paillier` — packed Paillier encryption with threshold decryption.

Floats enter and leave through :mod:`secagg.encoding`; every error is a
:class:`secagg.errors.SecAggError`; raw primitives live in
:mod:`secagg.primitives` (no protocol checks there).
"""

from __future__ import annotations

from secagg.encoding import QuantizationConfig, dequantize, quantize
from secagg.errors import (
    AuthenticationError,
    BudgetExceededError,
    ConfigurationError,
    ConfigurationTypeError,
    DecodeError,
    EncodeError,
    InsufficientNoiseError,
    OverflowDetectedError,
    ProtocolError,
    ReplayError,
    SecAggError,
    SecretFileLinkWarning,
    StateLockedError,
    ThresholdError,
    UnsafeRequestError,
)
from secagg.ring import RING32, RING64, Ring

__version__ = "0.1.0"

__all__ = [
    "RING32",
    "RING64",
    "AuthenticationError",
    "BudgetExceededError",
    "ConfigurationError",
    "ConfigurationTypeError",
    "DecodeError",
    "EncodeError",
    "InsufficientNoiseError",
    "OverflowDetectedError",
    "ProtocolError",
    "QuantizationConfig",
    "ReplayError",
    "Ring",
    "SecAggError",
    "SecretFileLinkWarning",
    "StateLockedError",
    "ThresholdError",
    "UnsafeRequestError",
    "__version__",
    "dequantize",
    "quantize",
]
