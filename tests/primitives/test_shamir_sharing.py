"""Shamir t-of-n sharing (secagg.primitives.shamir): reconstruction from every
t-subset, secrecy of t-1 shares, rejection of bad indices, detection of a
corrupted share, the share byte format, and determinism."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import AuthenticationError, ConfigurationError, DecodeError, SecAggError
from secagg.primitives import shamir
from secagg.primitives.randomness import InsecureDeterministicRandom
from secagg.primitives.shamir import MAX_INDEX, PRIME, Share

SECRET = bytes(range(1, 33))
SHARE_BYTES = 4 + shamir.VALUE_SIZE


def lagrange_at(points: list[tuple[int, int]], x: int) -> int:
    """The value at ``x`` of the unique polynomial of degree < len(points) through
    ``points`` over GF(PRIME); written here independently of the library."""
    total = 0
    for i, (xi, yi) in enumerate(points):
        numerator, denominator = 1, 1
        for j, (xj, _) in enumerate(points):
            if i != j:
                numerator = numerator * (x - xj) % PRIME
                denominator = denominator * (xi - xj) % PRIME
        total = (total + yi * numerator * pow(denominator, PRIME - 2, PRIME)) % PRIME
    return total


def test_prime_is_the_documented_constant() -> None:
    # Assert: 2^256 + 297 (the smallest prime above 2^256; primality is the
    # library's claim, the value and the size bound are checked here).
    assert PRIME == 2**256 + 297
    assert PRIME > 2 ** (8 * shamir.SECRET_SIZE)
    assert pow(3, PRIME - 1, PRIME) == 1  # Fermat witness, consistent with primality


@pytest.mark.parametrize(("n", "t"), [(1, 1), (3, 1), (3, 3), (5, 3), (6, 4), (7, 2)])
def test_every_threshold_subset_reconstructs(n: int, t: int) -> None:
    # Prepare
    shares = shamir.split(SECRET, t, list(range(1, n + 1)), InsecureDeterministicRandom(n * 10 + t))

    # Execute
    recovered = {shamir.combine(list(subset), t) for size in range(t, n + 1)
                 for subset in itertools.combinations(shares, size)}

    # Assert
    assert recovered == {SECRET}


@given(secret=st.binary(min_size=32, max_size=32), t=st.integers(1, 6), extra=st.integers(0, 3),
       indices=st.sets(st.integers(1, MAX_INDEX), min_size=9, max_size=9), seed=st.integers(0, 2**32))
def test_random_secrets_and_indices_round_trip(secret: bytes, t: int, extra: int, indices: set[int],
                                               seed: int) -> None:
    # Prepare
    chosen = sorted(indices)[: t + extra]
    shares = shamir.split(secret, t, chosen, InsecureDeterministicRandom(seed))

    # Execute
    recovered = shamir.combine(list(reversed(shares)), t)

    # Assert
    assert [share.index for share in shares] == chosen
    assert recovered == secret


def test_extreme_secrets_round_trip() -> None:
    for secret in (bytes(32), b"\xff" * 32):
        # Prepare
        shares = shamir.split(secret, 3, [1, 2, 3, 4], InsecureDeterministicRandom(7))

        # Execute / Assert
        assert shamir.combine(shares, 3) == secret


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3), (6, 4)])
def test_fewer_than_threshold_shares_are_refused(n: int, t: int) -> None:
    # Prepare
    shares = shamir.split(SECRET, t, list(range(1, n + 1)), InsecureDeterministicRandom(1))

    # Execute / Assert
    for subset in itertools.combinations(shares, t - 1):
        with pytest.raises(ConfigurationError):
            shamir.combine(list(subset), t)


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3), (6, 4)])
def test_threshold_minus_one_shares_are_consistent_with_any_secret(n: int, t: int) -> None:
    # Prepare: t-1 real shares of SECRET and an arbitrary other candidate secret.
    shares = shamir.split(SECRET, t, list(range(1, n + 1)), InsecureDeterministicRandom(2))
    known = list(shares[: t - 1])
    candidate = b"\xa5" * 32
    points = [(0, int.from_bytes(candidate, "big"))] + [(s.index, s.value) for s in known]

    # Execute: the polynomial of degree t-1 through (0, candidate) and the known
    # shares exists, so a t-th share completes the known ones to either secret.
    forged_tth = Share(n + 1, lagrange_at(points, n + 1))
    honest_tth = shares[t - 1]

    # Assert
    assert shamir.combine([*known, forged_tth], t) == candidate
    assert shamir.combine([*known, honest_tth], t) == SECRET
    assert [lagrange_at(points, s.index) for s in known] == [s.value for s in known]


@pytest.mark.parametrize("indices", [[1, 2, 2], [5, 5], [3, 1, 3, 4]])
def test_split_refuses_duplicate_indices(indices: list[int]) -> None:
    # Execute / Assert
    with pytest.raises(ConfigurationError):
        shamir.split(SECRET, 2, indices)


@pytest.mark.parametrize("indices", [[0, 1, 2], [1, -1, 2], [1, 2, MAX_INDEX + 1]])
def test_split_refuses_out_of_range_indices(indices: list[int]) -> None:
    # Execute / Assert: index 0 would hand out the secret itself.
    with pytest.raises(SecAggError):
        shamir.split(SECRET, 2, indices)


def test_split_accepts_the_largest_index() -> None:
    # Execute
    shares = shamir.split(SECRET, 2, [1, MAX_INDEX], InsecureDeterministicRandom(3))

    # Assert
    assert shamir.combine(shares, 2) == SECRET


@pytest.mark.parametrize(
    ("secret", "threshold", "count"),
    [
        pytest.param(bytes(31), 2, 3, id="short-secret"),
        pytest.param(bytes(33), 2, 3, id="long-secret"),
        pytest.param(SECRET, 0, 3, id="threshold-zero"),
        pytest.param(SECRET, 4, 3, id="threshold-above-n"),
    ],
)
def test_split_refuses_bad_arguments(secret: bytes, threshold: int, count: int) -> None:
    # Execute / Assert
    with pytest.raises(ConfigurationError):
        shamir.split(secret, threshold, list(range(1, count + 1)))


def test_combine_refuses_duplicate_indices() -> None:
    # Prepare
    shares = shamir.split(SECRET, 2, [1, 2, 3], InsecureDeterministicRandom(4))

    # Execute / Assert
    with pytest.raises(ConfigurationError):
        shamir.combine([shares[0], shares[1], shares[0]], 2)


@pytest.mark.parametrize(("index", "value"), [(0, 1), (-1, 1), (MAX_INDEX + 1, 1), (1, -1), (1, PRIME)])
def test_share_refuses_out_of_range_fields(index: int, value: int) -> None:
    # Execute / Assert
    with pytest.raises(DecodeError):
        Share(index, value)


@pytest.mark.parametrize(("n", "t"), [(4, 3), (5, 3), (6, 2)])
def test_a_corrupted_share_among_more_than_threshold_is_detected(n: int, t: int) -> None:
    # Prepare
    shares = shamir.split(SECRET, t, list(range(1, n + 1)), InsecureDeterministicRandom(5))

    for position in range(n):
        corrupted = list(shares)
        corrupted[position] = Share(shares[position].index, (shares[position].value + 1) % PRIME)

        # Execute / Assert: whether the bad share is in the basis or an extra.
        with pytest.raises(AuthenticationError):
            shamir.combine(corrupted, t)


def test_share_bytes_round_trip_and_layout() -> None:
    # Prepare
    share = Share(0x01020304, PRIME - 1)

    # Execute
    encoded = share.to_bytes()

    # Assert
    assert len(encoded) == SHARE_BYTES
    assert encoded[:4] == bytes([1, 2, 3, 4])
    assert int.from_bytes(encoded[4:], "big") == PRIME - 1
    assert Share.from_bytes(encoded) == share


@given(index=st.integers(1, MAX_INDEX), value=st.integers(0, PRIME - 1))
def test_share_bytes_round_trip_property(index: int, value: int) -> None:
    # Execute
    decoded = Share.from_bytes(Share(index, value).to_bytes())

    # Assert
    assert (decoded.index, decoded.value) == (index, value)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(bytes(SHARE_BYTES - 1), id="short"),
        pytest.param(bytes(SHARE_BYTES + 1), id="long"),
        pytest.param(bytes(4) + (1).to_bytes(33, "big"), id="index-zero"),
        pytest.param((1).to_bytes(4, "big") + PRIME.to_bytes(33, "big"), id="value-equals-prime"),
        pytest.param((1).to_bytes(4, "big") + b"\xff" * 33, id="value-above-prime"),
    ],
)
def test_malformed_share_bytes_raise_decode_error(data: bytes) -> None:
    # Execute / Assert
    with pytest.raises(DecodeError):
        Share.from_bytes(data)


@given(data=st.binary(min_size=0, max_size=2 * SHARE_BYTES))
def test_arbitrary_share_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    # Execute
    try:
        share = Share.from_bytes(data)
    except DecodeError:
        return

    # Assert
    assert share.to_bytes() == data


def test_split_is_deterministic_with_deterministic_randomness() -> None:
    # Execute
    first = shamir.split(SECRET, 3, [1, 2, 3, 4], InsecureDeterministicRandom(b"seed"))
    second = shamir.split(SECRET, 3, [1, 2, 3, 4], InsecureDeterministicRandom(b"seed"))
    other = shamir.split(SECRET, 3, [1, 2, 3, 4], InsecureDeterministicRandom(b"other"))

    # Assert
    assert [s.to_bytes() for s in first] == [s.to_bytes() for s in second]
    assert [s.to_bytes() for s in first] != [s.to_bytes() for s in other]


def test_share_repr_hides_the_value() -> None:
    # Prepare
    share = Share(3, 123456789)

    # Execute
    text = repr(share)

    # Assert
    assert "123456789" not in text
    assert "index=3" in text
