"""Which array dtypes the float encoders take: real numbers (bool, integers, floats) are
quantized; complex, object, string, bytes and date/time arrays are refused with a
ConfigurationError naming the dtype, never quantized with a part silently dropped."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from secagg.encoding import QuantizationConfig, quantize, quantize_to_integers
from secagg.errors import ConfigurationError
from secagg.segments import SegmentTable, quantize_segments

CONFIG = QuantizationConfig(num_clients=2, bits=16, clip=4.0)
TABLE = SegmentTable.flat(3, 4.0)

REAL = [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.uint64, np.bool_]
REFUSED = [
    (np.array([1.0 + 2.0j, 0.5, -1.0], dtype=np.complex128), "complex128"),
    (np.array([1.0 + 0.0j, 0.5, -1.0], dtype=np.complex64), "complex64"),
    ([1.0 + 2.0j, 0.5, -1.0], "complex128"),
    (np.array([1.0, 0.5, -1.0], dtype=object), "object"),
    (np.array(["1.0", "0.5", "-1.0"]), "<U4"),
    (np.array([b"1.0", b"0.5", b"-1"]), "|S3"),
    (np.array([1, 2, 3], dtype="timedelta64[s]"), "timedelta64"),
]


def encoders() -> list[tuple[str, Callable[[Any], Any]]]:
    return [
        ("quantize", lambda v: quantize(v, CONFIG, np.random.default_rng(0))),
        ("quantize_to_integers", lambda v: quantize_to_integers(v, CONFIG, np.random.default_rng(0))),
        ("quantize_segments", lambda v: quantize_segments(v, TABLE, 16, np.random.default_rng(0))),
    ]


@pytest.mark.parametrize("dtype", REAL, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("name", "encode"), encoders(), ids=lambda x: x if isinstance(x, str) else "")
def test_real_dtypes_are_quantized_like_float64(name: str, encode: Callable[[Any], Any], dtype: type) -> None:
    values = np.array([1, 0, 1], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = encode(values)
        want = encode(values.astype(np.float64))
    got_array = got[0] if isinstance(got, tuple) else got
    want_array = want[0] if isinstance(want, tuple) else want
    assert np.array_equal(got_array, want_array)


@pytest.mark.parametrize(("values", "dtype"), REFUSED, ids=[d for _, d in REFUSED])
@pytest.mark.parametrize(("name", "encode"), encoders(), ids=lambda x: x if isinstance(x, str) else "")
def test_non_real_dtypes_are_refused_naming_the_dtype(
    name: str, encode: Callable[[Any], Any], values: object, dtype: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ComplexWarning is not a refusal
        with pytest.raises(ConfigurationError) as info:
            encode(values)
    assert dtype in str(info.value)
