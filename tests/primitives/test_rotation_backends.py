"""The rotation's two backends (secagg.rotation.backend): numba and numpy give the same bits; the switch.

The compiled kernel (secagg._rotation_numba) must follow the spec's order of
binary64 operations exactly, so every comparison here is of the raw bytes
(``tobytes``: it tells -0.0 from 0.0, which a padded coordinate with its sign
bit set becomes, and which then changes later sums' signs of zero).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg import rotation
from secagg.errors import ConfigurationError
from secagg.rotation import BACKEND_VARIABLE, Rotation, backend, normalisation, signs
from secagg.vectors import load_vectors
from secagg.vectors._suite import CHECKERS

SEED = bytes(range(32))
HAS_NUMBA = importlib.util.find_spec("numba") is not None
needs_numba = pytest.mark.skipif(not HAS_NUMBA, reason="numba is not installed (the 'fast' extra)")
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def _backend(name: str) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(BACKEND_VARIABLE, name)
        yield


def _both(rot: Rotation, x: np.ndarray) -> dict[str, tuple[bytes, bytes]]:
    """Forward and inverse bytes under each backend (the inverse of the numpy forward, so the inputs agree)."""
    with _backend("numpy"):
        y = rot.forward(x)
    results = {}
    for name in ("numpy", "numba"):
        with _backend(name):
            assert backend() == name
            results[name] = (rot.forward(x).tobytes(), rot.inverse(y).tobytes())
    return results


def _vector(d: int, seed: int) -> np.ndarray:
    """Normal doubles with about a third exact zeros (signed zeros show up after the sign flip)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=d) * 10.0 ** rng.integers(-3, 4)
    x[rng.random(d) < 0.3] = 0.0
    return x


@st.composite
def shapes(draw: st.DrawFn) -> tuple[int, int | None]:
    """(d, block): blocks 1..2^18 on both sides of the kernel's cache piece (2^16), odd and even log2, or None."""
    log_block = draw(st.integers(0, 18))
    block = 1 << log_block
    d = draw(st.integers(1, min(3 * block, 1 << 18)))
    return d, draw(st.sampled_from([None, block]))


@needs_numba
@given(shape=shapes(), seed=st.integers(0, 2**32 - 1))
def test_numba_and_numpy_give_bit_identical_forward_and_inverse(shape: tuple[int, int | None], seed: int) -> None:
    # Prepare
    d, block = shape
    rot = Rotation(SEED, d, block)

    # Execute
    results = _both(rot, _vector(d, seed))

    # Assert
    assert results["numba"] == results["numpy"]


@needs_numba
@pytest.mark.parametrize(
    ("d", "block"),
    [
        (1, None), (2, 1), (7, 1), (3, 2), (5, 4), (9, 8), (8, 16), (100, 32), (1000, 64),
        (1 << 16, None), ((1 << 16) + 1, 1 << 16), (1 << 17, None), (3 << 16, 1 << 17), (1 << 18, 1 << 17),
        (300_000, None), (5 << 17, 1 << 19), (1_000_000, None),
    ],
)  # fmt: skip
def test_numba_matches_numpy_on_edge_shapes(d: int, block: int | None) -> None:
    # Prepare: tiny blocks (no 8-point kernel), one or several pieces of 2^16, radix-2 tails (odd log2)
    rot = Rotation(SEED, d, block)

    # Execute
    results = _both(rot, _vector(d, d))

    # Assert
    assert results["numba"] == results["numpy"]


@needs_numba
@pytest.mark.parametrize("d", [1, 3, 8, 100, 5000, 1 << 17])
def test_numba_forward_is_the_spec_stage_by_stage(d: int) -> None:
    # Prepare: an independent reference, the spec's steps one at a time (padding, signs, h = 1, 2, ..., scale)
    rot = Rotation(SEED, d)
    size = rot.padded_dimension
    x = _vector(d, d + 1)
    expected = np.concatenate([x, np.zeros(size - d)]) * signs(SEED, size)
    h = 1
    while h < size:
        view = expected.reshape(-1, 2, h)
        a, b = view[:, 0, :].copy(), view[:, 1, :].copy()
        view[:, 0, :], view[:, 1, :] = a + b, a - b
        h *= 2
    expected = expected * normalisation(size)

    # Execute
    with _backend("numba"):
        y = rot.forward(x)

    # Assert
    assert y.tobytes() == expected.tobytes()


@needs_numba
def test_numba_inverse_takes_strided_and_read_only_input_and_leaves_it() -> None:
    # Prepare
    rot = Rotation(SEED, 1000, 64)
    with _backend("numpy"):
        y = rot.forward(_vector(1000, 3))
        expected = rot.inverse(y).tobytes()
    strided = np.repeat(y, 2)[::2]
    frozen = y.copy()
    frozen.flags.writeable = False

    # Execute
    with _backend("numba"):
        from_strided, from_frozen = rot.inverse(strided), rot.inverse(frozen)

    # Assert
    assert from_strided.tobytes() == expected
    assert from_frozen.tobytes() == expected
    assert frozen.tobytes() == y.tobytes()


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_rotation_vectors_verify_under_each_backend(name: str) -> None:
    # Prepare
    if name == "numba" and not HAS_NUMBA:
        pytest.skip("numba is not installed (the 'fast' extra)")
    document = load_vectors("rotation.json")
    group = document["testGroups"][0]

    # Execute / Assert: the checker raises on any disagreement with the committed bytes
    with _backend(name):
        assert backend() == name
        for test in group["tests"]:
            CHECKERS[group["type"]](group, test)


def test_numpy_can_be_forced() -> None:
    # Execute
    with _backend("numpy"):
        chosen = backend()

    # Assert
    assert chosen == "numpy"


@needs_numba
@pytest.mark.parametrize("value", ["", "auto", "AUTO", " numba "])
def test_auto_and_numba_pick_numba_where_it_imports(value: str) -> None:
    # Execute
    with _backend(value):
        chosen = backend()

    # Assert
    assert chosen == "numba"


def test_without_numba_auto_falls_back_and_a_forced_numba_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: what _numba_module records when the import fails
    monkeypatch.setattr(rotation, "_compiled", [None])

    # Execute
    with _backend("auto"):
        chosen = backend()
        forward = Rotation(SEED, 10).forward(np.arange(10.0))

    # Assert
    assert chosen == "numpy"
    assert forward.shape == (16,)
    with _backend("numba"), pytest.raises(ConfigurationError, match=r"fast"):
        backend()


@pytest.mark.parametrize("value", ["cuda", "numba,numpy", "0"])
def test_an_unknown_backend_is_refused(value: str) -> None:
    # Execute / Assert
    with _backend(value), pytest.raises(ConfigurationError, match=BACKEND_VARIABLE):
        Rotation(SEED, 10).forward(np.zeros(10))


def _python(code: str, **env: str) -> str:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_secagg_neither_imports_numba_nor_compiles() -> None:
    # Execute
    out = _python("import sys, secagg, secagg.rotation; print('numba' in sys.modules)")

    # Assert
    assert out == "False"


def test_the_numpy_backend_never_imports_numba() -> None:
    # Execute
    out = _python(
        "import sys, numpy as np; from secagg.rotation import Rotation, backend; "
        "r = Rotation(bytes(32), 100); r.inverse(r.forward(np.ones(100))); print(backend(), 'numba' in sys.modules)",
        **{BACKEND_VARIABLE: "numpy"},
    )

    # Assert
    assert out == "numpy False"


@needs_numba
def test_numba_runs_where_no_cache_directory_is_writable() -> None:
    # Prepare: numba finds no cache locator (a read-only install and no writable user cache), so
    # njit(cache=True) raises "cannot cache function ...: no locator available"; the backend compiles uncached
    code = (
        "import numba.core.caching as caching; caching.CacheImpl._locator_classes = []; "
        "import numpy as np; from secagg.rotation import Rotation, backend; r = Rotation(bytes(32), 100); "
        "print(backend(), r.forward(np.ones(100)).tobytes().hex())"
    )

    # Execute
    out = _python(code, NUMBA_CACHE_DIR="", **{BACKEND_VARIABLE: "numba"})

    # Assert
    with _backend("numpy"):
        expected = Rotation(bytes(32), 100).forward(np.ones(100)).tobytes().hex()
    assert out == f"numba {expected}"


@needs_numba
@pytest.mark.parametrize("block", [None, 1, 4, 8, 1 << 17])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_numba_refuses_what_numpy_refuses(block: int | None, bad: float) -> None:
    # Prepare: the kernel checks finiteness on its first pass (sums of 8 inputs), then the input itself
    d = 150_000
    rot = Rotation(SEED, d, block)
    x = _vector(d, 7)
    x[d - 3] = bad
    y = np.full(rot.padded_dimension, 1.0)
    y[5] = bad

    # Execute / Assert
    for name in ("numpy", "numba"):
        with _backend(name):
            with pytest.raises(ConfigurationError, match="NaN or infinite"):
                rot.forward(x)
            with pytest.raises(ConfigurationError, match="NaN or infinite"):
                rot.inverse(y)


OVERFLOWS = [
    (5, None, 1e308),  # one block of 8: the kernel's first pass sees the infinite sums of 8
    (3, 1, 1.5e308),  # blocks of 1: no butterfly, the scale 1.0 keeps every value finite: rotated
    (40, 64, 1e307),  # sums of 8 stay finite (8e307), the stages h = 8, 16, 32 overflow: no flag from the kernel
    (150_000, 1 << 17, 1.5e308),
]


@needs_numba
@pytest.mark.parametrize(("d", "block", "value"), OVERFLOWS)
def test_an_overflow_of_finite_values_is_refused_by_both_backends(d: int, block: int | None, value: float) -> None:
    # Prepare: finite inputs whose butterflies leave binary64; an infinite or NaN "rotation" would reach
    # a caller that sums floats (exact or refused: refused, naming the overflow)
    rot = Rotation(SEED, d, block)
    x = value * signs(SEED, d)  # the signed inputs all equal: their sums grow with every stage
    y = np.full(rot.padded_dimension, value)

    # Execute / Assert
    for name in ("numpy", "numba"):
        with _backend(name):
            if rot.block_size == 1:
                assert np.all(np.isfinite(rot.forward(x))) and np.all(np.isfinite(rot.inverse(y)))
                continue
            with pytest.raises(ConfigurationError, match="overflows"):
                rot.forward(x)
            with pytest.raises(ConfigurationError, match="overflows"):
                rot.inverse(y)


extreme = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),  # the whole binary64 range: subnormals, -0.0, near 1.8e308
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e308, -1e308, 1.7976931348623157e308]),
)


@needs_numba
@given(
    x=st.integers(1, 70).flatmap(lambda d: st.lists(extreme, min_size=d, max_size=d)),
    log_block=st.one_of(st.none(), st.integers(0, 7)),
)
def test_both_backends_agree_on_extreme_values_bit_for_bit_or_refuse_alike(
    x: list[float], log_block: int | None
) -> None:
    # Prepare: odd and non-power-of-two d, blocks 1..128 or one block; values from subnormal to near overflow
    rot = Rotation(SEED, len(x), None if log_block is None else 1 << log_block)
    y = np.resize(np.array(x), rot.padded_dimension)  # a rotated-length vector of the same values

    # Execute: forward and inverse under each backend, the bytes or the refusal's message
    outcomes = {}
    for name in ("numpy", "numba"):
        with _backend(name):
            results = []
            for call, value in ((rot.forward, x), (rot.inverse, y)):
                try:
                    results.append(call(value).tobytes())
                except ConfigurationError as exc:
                    results.append(str(exc))
            outcomes[name] = results

    # Assert
    assert outcomes["numba"] == outcomes["numpy"]
