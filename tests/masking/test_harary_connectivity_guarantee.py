"""A Harary configuration's printed privacy bound rests on its connectivity term: checked at setup.

On a Harary graph the guarantee line says "except with probability < 2^-40"; docs/masking.md and
spec 12.6 rest that number on three terms, the first being that the honest survivors stay connected
(a union bound over ``floor(gamma n) + floor(delta n)`` bad nodes, below 2^-41). Pair masks cancel
only along edges, so a graph the bad nodes cut in two lets the server read the sum of each part,
more than the one sum the session releases. :func:`~secagg.masking.parameters.derive_secagg_plus`
picks the first degree whose term is below 2^-41; a configuration built directly, or rebuilt from a
record a (lying) server proposes, must meet the same term or be refused, never print a 2^-40 that
was not computed.

n = 200, no colluders declared, 10% dropouts (B = 20 bad nodes): degree 16 (the derived one) has
the term at 2^-50.8 and is accepted with the printed bound; degree 14, one even degree below it, has
it at 2^-40.6 (above 2^-41: B one smaller, or the bound 2^-40, would pass it) and is refused.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from secagg.errors import ConfigurationError
from secagg.masking import HARARY, SEMI_HONEST, MaskingConfig
from secagg.masking.parameters import (
    CONNECTIVITY_LOG_BOUND,
    SECURITY_PARAMETER,
    derive_secagg_plus,
    disconnection_log_probability,
    planned_dropouts,
)

N, GAMMA, DELTA = 200, 0.0, 0.1
DERIVED = derive_secagg_plus(N, GAMMA, DELTA, active=False)


def _config(degree: int) -> MaskingConfig:
    return MaskingConfig(
        num_clients=N, threshold=2, vector_length=1, graph=HARARY, degree=degree, mode=SEMI_HONEST,
        corrupt_fraction=GAMMA, dropout_fraction=DELTA,
    )  # fmt: skip


def test_the_derived_degree_is_accepted_with_the_printed_bound() -> None:
    # At the bound: the degree the derivation picks (its connectivity term below 2^-41)
    assert (DERIVED.degree, DERIVED.threshold, DERIVED.complete) == (16, 2, False)
    config = _config(DERIVED.degree)
    assert config.guarantee.privacy_failure_bits == SECURITY_PARAMETER
    assert config.guarantee.dropouts == 20
    assert "2^-40" in str(config.guarantee)


def test_one_degree_below_the_connectivity_bound_is_refused_not_printed_at_2_to_the_minus_40() -> None:
    # One past it: degree 14 meets t > corrupt neighbours and t <= the surviving-neighbour quantile,
    # but 20 bad nodes disconnect its honest survivors with probability above 2^-41
    with pytest.raises(ConfigurationError, match=r"degree 14 .*disconnect.*2\^-41"):
        _config(DERIVED.degree - 2)


def test_a_record_a_server_proposes_with_a_sparser_graph_is_refused() -> None:
    # A lying server sends the derived configuration's record with the degree lowered by one step:
    # a node rebuilding it must refuse it, not accept and print the 2^-40 the record does not have
    record = _config(DERIVED.degree).record()
    assert MaskingConfig.from_record(record) == _config(DERIVED.degree)
    with pytest.raises(ConfigurationError, match="disconnect"):
        MaskingConfig.from_record(dataclasses.replace(record, degree=DERIVED.degree - 2))


@pytest.mark.parametrize(("corrupt", "accepted"), [(0.0, True), (0.05, False)])
def test_the_declared_colluders_count_among_the_bad_nodes(corrupt: float, accepted: bool) -> None:
    # n = 101, 10% dropouts, degree 14, t = 6 (every threshold rule met): with no colluders declared
    # B = 10 < 14 bad nodes cannot cut the graph; with 5% (floor(5.05) = 5 more, B = 15) the term is
    # 2^-39.5, not below 2^-41 (the derivation picks 16 there), so the same degree is refused
    def build() -> MaskingConfig:
        return MaskingConfig(
            num_clients=101, threshold=6, vector_length=1, graph=HARARY, degree=14, mode=SEMI_HONEST,
            corrupt_fraction=corrupt, dropout_fraction=0.1,
        )  # fmt: skip

    assert derive_secagg_plus(101, 0.05, 0.1, active=False).degree == 16
    if accepted:
        assert build().guarantee.colluders == 0
    else:
        with pytest.raises(ConfigurationError, match=r"degree 14 .*15 bad clients.*2\^-39\.5"):
            build()


def test_the_derived_degrees_term_lies_far_below_the_bound_a_node_checks() -> None:
    # A node applies the rule to the degree a server derived, possibly with another lgamma (spec 12.6:
    # CPython's differs from glibc's by up to 3 ulp). Spec 12.6 states the margin for gamma = 0.05 and
    # the default dropouts: at least 0.055 in ln, n = 3..2000; its smallest, 0.0552, is at n = 80
    # (semi-honest, k = 30), included here with a sample of larger n in both modes
    margins = {}
    for n in (80, 101, 150, 400):
        for active in (False, True):
            dropout = min(planned_dropouts(n), n - 1) / n
            params = derive_secagg_plus(n, 0.05, dropout, active=active)
            if not params.complete:
                log_p = disconnection_log_probability(n, params.degree, 0.05, dropout)
                margins[n, active] = CONNECTIVITY_LOG_BOUND - log_p
    assert min(margins.values()) >= 0.055
    assert min(margins, key=margins.__getitem__) == (80, False) and margins[80, False] < 0.056


def test_a_term_just_above_2_to_the_minus_41_prints_above_it_not_at_2_to_the_minus_41() -> None:
    # At the edge: n = 114, degree 18, 23 bad clients (no colluders, delta = 23/114) have the term at
    # 2^-40.9998, refused; rounded to nearest it would print "2^-41.0, not below 2^-41" (a refused
    # value printed as the bound it failed). Rounded up, toward the safe side, it prints 2^-40.9
    n, degree, bad = 114, 18, 23
    log2_term = disconnection_log_probability(n, degree, 0.0, bad / n) / math.log(2)
    assert -41.0 < log2_term < -40.999
    with pytest.raises(ConfigurationError) as refusal:
        MaskingConfig(
            num_clients=n, threshold=2, vector_length=1, graph=HARARY, degree=degree, mode=SEMI_HONEST,
            corrupt_fraction=0.0, dropout_fraction=bad / n,
        )  # fmt: skip
    message = str(refusal.value)
    assert f"{bad} bad clients" in message and "probability up to 2^-40.9, not below 2^-41" in message, message


@pytest.mark.parametrize(("n", "degree", "bad"), [(114, 18, 23), (148, 14, 17), (200, 14, 20), (101, 14, 15)])
def test_the_printed_exponent_is_never_below_the_term(n: int, degree: int, bad: int) -> None:
    # Every refused term prints rounded up to 0.1: at or above the true exponent, so above 2^-41
    log2_term = disconnection_log_probability(n, degree, 0.0, bad / n) / math.log(2)
    with pytest.raises(ConfigurationError) as refusal:
        MaskingConfig(
            num_clients=n, threshold=2, vector_length=1, graph=HARARY, degree=degree, mode=SEMI_HONEST,
            corrupt_fraction=0.0, dropout_fraction=bad / n,
        )  # fmt: skip
    printed = float(str(refusal.value).split("probability up to 2^", 1)[1].split(",", 1)[0])
    assert log2_term <= printed < log2_term + 0.1 and printed > -41.0
