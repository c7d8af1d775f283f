"""What depends on several ``secagg demo`` options (:mod:`secagg.cli`), checked after parsing and
before any work: the problem as one message naming the options as typed, or None.

Kept free of fl_core (the command line stays light): the few rules it mirrors say which
library check they stand for, and tests/fl_core checks them against the library.
"""

from __future__ import annotations

import argparse
import math

from secagg._cli_options import MIN_HOSPITALS, SECAGG_PLUS_ACTIVE_DROPOUT_BELOW, SECAGG_PLUS_MAX_DROPOUT

__all__ = ["check_demo"]


def _check_dropout(args: argparse.Namespace) -> str | None:
    """A ``--dropout`` the demo's SecAgg+ cannot be sized for in the run's mode, or None."""
    if args.aggregation != "secagg+":
        return None
    active = (getattr(args, "masking_mode", None) or "active") == "active"  # None: not given, the default
    if active and args.dropout >= SECAGG_PLUS_ACTIVE_DROPOUT_BELOW:
        return (
            f"argument --dropout: --aggregation secagg+ in active mode (the default) is sized for below "
            f"{SECAGG_PLUS_ACTIVE_DROPOUT_BELOW} (a lying server must not split the hospitals into two groups "
            f"that each reach the threshold), got {args.dropout:g}; --aggregation secagg takes more (skipping "
            "the rounds that fall short), --masking-mode semi-honest up to 0.85 without that protection"
        )
    if args.dropout > SECAGG_PLUS_MAX_DROPOUT:
        return (
            f"argument --dropout: --aggregation secagg+ is sized for at most {SECAGG_PLUS_MAX_DROPOUT} "
            f"(with 5% corrupt hospitals), got {args.dropout:g}; --aggregation secagg takes more"
        )
    # The dropouts the fraction declares, floor(dropout * n) as secagg.masking.parameters.dropout_count
    # counts them, must leave a threshold of 2 (the smallest): at most n - 2 of the n hospitals.
    hospitals = args.hospitals
    if math.floor((args.dropout + 1e-14) * hospitals) > hospitals - 2:
        return (
            f"argument --dropout: --aggregation secagg+ with --hospitals {hospitals} is sized for at most "
            f"{hospitals - 2} dropout{'s' if hospitals > 3 else ''} a round (a threshold of at least 2), so "
            f"--dropout below {hospitals - 1}/{hospitals}, got {args.dropout:g}; use more hospitals, or "
            "--aggregation secagg (which skips the rounds that fall short)"
        )
    return None


def _check_colluders(args: argparse.Namespace) -> str | None:
    """A ``--colluders`` the demo's Paillier aggregator refuses, or None."""
    colluders = getattr(args, "colluders", None)
    if colluders is None:
        return None
    if args.aggregation != "paillier":
        return "argument --colluders: applies to --aggregation paillier only"
    if colluders > args.hospitals - 2:
        # fl_core.aggregators.paillier.PaillierAggregator: min_contributors >= c + 2 of the hospitals
        return (
            f"argument --colluders: --hospitals {args.hospitals} protect against at most {args.hospitals - 2} "
            f"(a decrypted sum must hold two honest uploads besides the colluders'), got {colluders}"
        )
    return None


def _check_partition(args: argparse.Namespace) -> str | None:
    """``--alpha`` without the Dirichlet split it shapes, or None."""
    if getattr(args, "alpha", None) is not None and args.partition != "dirichlet":
        return "argument --alpha: applies to --partition dirichlet only (the label skew's concentration)"
    return None


def _check_applies(args: argparse.Namespace) -> str | None:
    """An option given for an aggregation it does not apply to, or None."""
    if args.insecure_small_key and args.aggregation != "paillier":
        return "argument --insecure-small-key: applies to --aggregation paillier only"
    mode = getattr(args, "masking_mode", None)  # None: not given (active for secagg/secagg+)
    if mode is not None and args.aggregation not in ("secagg", "secagg+"):
        return f"argument --masking-mode {mode}: applies to --aggregation secagg and secagg+ only"
    # The encoding's options: plain sums floats, and DP sets its own bits, ring and clip (fl_core.dp_presets).
    given = [
        flag
        for flag, on in (
            ("--bits", args.bits is not None),
            ("--ring-bits", args.ring_bits is not None),  # None: not given (word)
            ("--max-samples-per-client", args.max_samples_per_client is not None),
            ("--clipping", args.clipping is not None),
        )
        if on
    ]
    if given and args.aggregation == "plain":
        return f"argument {given[0]}: applies to the quantized aggregations, not --aggregation plain (it sums floats)"
    with_dp = args.dp_epsilon is not None
    set_by_dp = [flag for flag in given if flag != "--max-samples-per-client"]
    if with_dp and set_by_dp:
        return f"argument {set_by_dp[0]}: not with --dp-epsilon (its settings per data set pick the encoding)"
    for flag, value in (("--dp-delta", args.dp_delta), ("--dp-scaling", args.dp_scaling)):
        if value is not None and not with_dp:
            return f"argument {flag}: applies with --dp-epsilon only"
    return None


def check_demo(args: argparse.Namespace) -> str | None:
    """What depends on several demo options: the problem, naming the option as typed, or None."""
    fewest = MIN_HOSPITALS[args.aggregation]
    if args.hospitals < fewest:
        reason = " (a secure sum of two would reveal each update to the other)" if fewest > 1 else ""
        return (
            f"argument --hospitals: --aggregation {args.aggregation} needs at least {fewest} "
            f"hospital{'s' if fewest > 1 else ''}{reason}, got {args.hospitals}"
        )
    problem = _check_dropout(args) or _check_applies(args) or _check_partition(args) or _check_colluders(args)
    with_dp = getattr(args, "dp_epsilon", None) is not None
    if problem is None and with_dp and args.aggregation == "plain":
        problem = (
            "argument --dp-epsilon: the noise is added to the integer encoding; use an aggregation other than plain"
        )
    if problem is None and getattr(args, "rotate", False) and args.aggregation == "plain":
        problem = "argument --rotate: applies to the quantized aggregations, not --aggregation plain (it sums floats)"
    if problem is None and getattr(args, "rotate", False) and with_dp:
        problem = (
            "argument --rotate: not with --dp-epsilon (a rotation would change the DP sensitivity's rounding term)"
        )
    if problem is None:
        problem = _check_budget(args, with_dp)
    if problem is None and not (with_dp or args.aggregation == "plain" or args.bytes_per_parameter is not None):
        problem = _check_ring(args)  # the encoding the options set (DP and a byte budget pick their own)
    return problem


def _check_ring(args: argparse.Namespace) -> str | None:
    """The quantization's no-wrap invariant (secagg.encoding.QuantizationConfig): hospitals x the largest
    weight x the largest quantized value must fit Z_(2^b)'s positive half; a width given as a number is
    checked as given, ``word`` and ``smallest`` against the widest ring, Z_(2^64)."""
    bits = args.bits or 16  # fl_core.aggregators.base.DEFAULT_BITS, DEFAULT_MAX_SAMPLES_PER_CLIENT
    weight = args.max_samples_per_client or 4096
    total = args.hospitals * weight * ((1 << (bits - 1)) - 1)
    ring_bits = args.ring_bits or "word"
    ring = int(ring_bits) if ring_bits.isdigit() else 64
    if total <= (1 << (ring - 1)) - 1:
        return None
    overflow = (
        f"Z_(2^{ring}) could overflow: {args.hospitals} hospitals x {weight} samples (--max-samples-per-client) "
        f"x {(1 << (bits - 1)) - 1} (--bits {bits}) exceeds {(1 << (ring - 1)) - 1}"
    )
    if total.bit_length() + 1 <= 64:
        return f"argument --ring-bits: {overflow}; the smallest safe ring is {total.bit_length() + 1}"
    fits = [b for b in range(2, bits) if args.hospitals * weight * ((1 << (b - 1)) - 1) <= (1 << 63) - 1]
    flag = "--bits" if args.bits is not None else "--max-samples-per-client"
    return f"argument {flag}: {overflow}" + (f"; at most --bits {fits[-1]} fits" if fits else "")


def _check_budget(args: argparse.Namespace, with_dp: bool) -> str | None:
    """--bytes-per-parameter picks the bits, ring and rotation: none of them beside it, nor DP or plain."""
    if getattr(args, "bytes_per_parameter", None) is None:
        return None
    given = [
        flag
        for flag, on in (
            ("--bits", args.bits is not None),
            ("--ring-bits", args.ring_bits is not None),  # None: not given (word)
            ("--rotate", args.rotate),
            ("--dp-epsilon", with_dp),
            ("--aggregation plain", args.aggregation == "plain"),
        )
        if on
    ]
    if not given:
        return None
    return (
        "argument --bytes-per-parameter: picks the bits, ring and rotation of a quantized aggregation "
        f"without DP itself; not with {', '.join(given)}"
    )
