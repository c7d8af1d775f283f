"""A misspelt ``make_aggregator`` option is refused with the library's error, listing every option
the aggregation takes: its quantization options too (the list used to name the protocol's only,
so ``clipp=`` read as if ``clip`` were not taken), and for ``paillier`` as for masking (it raised
Python's TypeError from the aggregator's constructor)."""

from __future__ import annotations

import pytest

from fl_core.aggregators import make_aggregator
from secagg.errors import ConfigurationError


@pytest.mark.parametrize("name", ["secagg", "secagg+", "paillier"])
def test_a_misspelt_option_is_a_configuration_error_listing_every_option_taken(name: str) -> None:
    # Execute: refused before any key exists (paillier would otherwise deal one)
    with pytest.raises(ConfigurationError) as refused:
        make_aggregator(name, num_clients=4, clipp=2.0)

    # Verify: names the misspelt option and lists the quantization options beside the protocol's
    message = str(refused.value)
    assert f"aggregation {name!r} does not take ['clipp']" in message, message
    for option in ("clip", "bits", "ring_bits", "max_samples_per_client", "clipping", "run_id"):
        assert f"'{option}'" in message, (option, message)
