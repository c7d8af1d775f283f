"""The defaults of the weighted encoding every secure aggregator shares (re-exported by
:mod:`fl_core.aggregators.base`): clip, bits per value, ring and the bound on a client's weight."""

from __future__ import annotations

__all__ = ["DEFAULT_BITS", "DEFAULT_CLIP", "DEFAULT_MAX_SAMPLES_PER_CLIENT", "DEFAULT_RING_BITS"]

DEFAULT_CLIP = 0.5
"""Default clip range: update coordinates are clipped to [-0.5, 0.5] before quantization.

FedAvg sends model *updates* (local model minus global model), not models. In
the demo (seed 0) no coordinate reaches it: the largest is 0.42 in round 1 and
below 0.1 by round 10. A larger coordinate would be clipped, which acts as a
trust region on the step rather than as an error."""

DEFAULT_BITS = 16
"""Default bits per quantized value (sign included): one step is clip / 32767."""

DEFAULT_RING_BITS = 32
"""Default ring Z_(2^32): 4 bytes per coordinate on the wire."""

DEFAULT_MAX_SAMPLES_PER_CLIENT = 4096
"""Default public bound on one client's sample count (its integer weight).

With the other defaults up to 16 clients fit Z_(2^32): 16 * 4096 * 32767 <= 2^31 - 1.
Larger federations or bounds move to Z_(2^64) automatically unless ``ring_bits`` is
given (:func:`secagg.encoding.smallest_ring_bits`)."""
