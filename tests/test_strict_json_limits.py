"""Strict JSON bounds an integer's digits itself, before it is converted.

Python converts a decimal string of d digits to an int in time superlinear in d, and
only its ``int_max_str_digits`` setting (4300 by default, 0 = off, process-wide and
set by any code of the process) stops a vector file of 8 MiB of one number. The
reader refuses more digits than the widest integer the files hold (2^64 - 1: 20
digits) with the library's DecodeError, whatever that setting is.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from secagg._strict_json import MAX_INT_DIGITS, strict_loads
from secagg.errors import DecodeError
from secagg.vectors import load_vectors


@pytest.fixture(params=[0, 4300], ids=["digit-limit-off", "digit-limit-default"])
def digit_limit(request: pytest.FixtureRequest) -> Iterator[None]:
    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(request.param)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(previous)


def test_the_widest_integer_the_files_hold_is_read_at_the_bound() -> None:
    # Prepare / Execute / Assert: 2^64 - 1 and -(2^63), 20 and 19 digits
    assert len(str((1 << 64) - 1)) == MAX_INT_DIGITS
    assert strict_loads(f'[{(1 << 64) - 1}, {-(1 << 63)}]') == [(1 << 64) - 1, -(1 << 63)]


@pytest.mark.usefixtures("digit_limit")
@pytest.mark.parametrize("digits", [MAX_INT_DIGITS + 1, 5000, 100_000])
def test_an_integer_of_more_digits_is_refused_before_it_is_converted(digits: int) -> None:
    # Prepare: one past the bound, past Python's default limit, and far past it
    text = '{"x": [-' + "9" * digits + "]}"
    # Execute / Assert
    with pytest.raises(DecodeError, match=f"{digits} digits"):
        strict_loads(text)


@pytest.mark.usefixtures("digit_limit")
def test_a_vector_file_of_one_long_number_is_refused_with_the_librarys_error(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "prg.json").write_bytes(b'{"numberOfTests": ' + b"7" * 200_000 + b"}")
    # Execute / Assert
    with pytest.raises(DecodeError, match=r"prg\.json.*200000 digits"):
        load_vectors("prg.json", tmp_path)


@pytest.mark.parametrize("text", ["1e-400", "-2.5e-330", "0.000001e-320", "1" + "0" * 10 + "e-340"])
def test_a_nonzero_number_below_binary64_is_refused_not_read_as_zero(text: str) -> None:
    # Prepare / Execute / Assert: as 1e999 is not read as an infinity, 1e-400 is not read as 0.0
    with pytest.raises(DecodeError, match="below binary64"):
        strict_loads(f'{{"x": {text}}}')


@pytest.mark.parametrize("text", ["0.0", "-0.0", "0e-400", "0.000e5", "5e-324", "2.2250738585072014e-308"])
def test_zero_and_the_smallest_binary64_numbers_are_read(text: str) -> None:
    # Prepare / Execute / Assert: a zero in any form, and the least subnormal, are numbers of binary64
    assert strict_loads(f"[{text}]") == [float(text)]
