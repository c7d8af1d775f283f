"""DemoConfig's --rotate refusal names the reason that applies, as the command line's does.

The command line (secagg/_cli_demo_checks.py) was corrected to say "the quantized aggregations,
not --aggregation plain (it sums floats)" and "not with --dp-epsilon" separately; DemoConfig, the
same check for callers of the Python API, still said "applies to the quantized secure
aggregations without --dp-epsilon" for both: a plain run was told of a --dp-epsilon it did not
give, and plain-quantized, which takes --rotate, is not a secure aggregation."""

from __future__ import annotations

import pytest

from fl_core.demo import DemoConfig
from secagg.errors import ConfigurationError


def test_rotate_with_plain_names_plain_not_dp() -> None:
    with pytest.raises(ConfigurationError) as refused:
        DemoConfig(aggregation="plain", rotate=True)
    message = str(refused.value)
    assert "--aggregation plain" in message and "sums floats" in message
    assert "--dp-epsilon" not in message and "secure" not in message


def test_rotate_with_dp_names_dp_not_plain() -> None:
    with pytest.raises(ConfigurationError) as refused:
        DemoConfig(aggregation="secagg+", rotate=True, dp_epsilon=3.0)
    message = str(refused.value)
    assert "--dp-epsilon" in message and "DP sensitivity" in message
    assert "plain" not in message and "secure" not in message


def test_rotate_with_plain_quantized_is_accepted() -> None:
    DemoConfig(aggregation="plain-quantized", rotate=True)  # the control: plain-quantized takes --rotate
