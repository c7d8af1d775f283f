"""The optimiser probe's variants (:mod:`benchmarks.dp_optimizer_probe`): what each changes.

One :class:`OptVariant` per named change of the DP recipe's server step, feature clipping,
moments share, releases per round and the recipe probe's scaling and feature subsets; the probe
runs them by name (``--variants NAME ...``) against the recipe on the same noise.
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["ANTISYMMETRIC_PREFIX", "COMBINED_WITH", "OPTIMIZERS", "VARIANTS", "OptVariant"]

OPTIMIZERS = ("heavy-ball", "nesterov", "normalised", "adam", "adagrad")


@dataclasses.dataclass(frozen=True)
class OptVariant:
    """A server optimiser with its step, and optional feature clipping / moments share."""

    name: str
    optimizer: str = "heavy-ball"
    learning_rate: float = 4.0
    momentum: float = 0.5
    beta2: float = 0.99
    tau: float = 1e-3
    feature_clip: float | None = None
    grad_clip: bool = True
    moments_share: float | None = None
    noise_floor: float | None = None
    first_step: float = 1.0
    ema: float | None = None
    exact_newton_ridge: float | None = None
    features: str = "none"  # as dp_recipe_probe.Variant: "mean+worst", "worst", ...
    scaling: str = "release"  # as dp_recipe_probe.Variant: "two-stage", "exact" (leaks)
    releases: int = 1  # noised releases (secure sums) per FL round, the server stepping after each
    warm_start: float | None = None  # alpha: start from alpha x the exact diagonal-LDA model (leaks)
    feature_clamp: float | None = None  # every scaled feature clamped to [-c, c] (a per-record map, public c)
    antisymmetric: bool = False  # the released gradient projected onto the two logits' antisymmetric part


def _release_steps(k: int) -> tuple[tuple[str, float, float, float | None], ...]:
    """(name suffix, step, momentum, EMA) tried with ``k`` releases per round: the recipe's step, its
    ``1 / sqrt(k)`` and ``1 / k`` shares, the ``1 / k`` step with momentum ``1 - 1 / (2 k)`` (the recipe's
    step per unit of smoothed gradient, 4 / (1 - 0.5)), and EMAs of the iterates."""
    root, share = 4.0 / math.sqrt(k), 4.0 / k
    return (
        ("", 4.0, 0.5, None), (f" lr {root:.3g}", root, 0.5, None), (f" lr {share:.3g}", share, 0.5, None),
        (f" lr {share:.3g} m{1.0 - share / 8.0:.3g}", share, 1.0 - share / 8.0, None), (" ema0.5", 4.0, 0.5, 0.5),
        (f" lr {root:.3g} ema{1.0 - 0.5 / k:.3g}", root, 0.5, 1.0 - 0.5 / k),
    )  # fmt: skip


_ADAM_FLOOR = OptVariant(
    "adam 0.05 b1 0 noise-corrected 1", optimizer="adam", learning_rate=0.05, momentum=0.0, noise_floor=1.0
)
_COMBINABLE = (
    OptVariant("recipe"),
    OptVariant("ema0.5", ema=0.5),
    OptVariant("lr6", learning_rate=6.0),
    OptVariant("lr6 ema0.5", learning_rate=6.0, ema=0.5),
    _ADAM_FLOOR,
    dataclasses.replace(_ADAM_FLOOR, name=f"{_ADAM_FLOOR.name} ema0.5", ema=0.5),
    dataclasses.replace(_ADAM_FLOOR, name="adam 0.05 b1 0 noise-corrected 0.25", noise_floor=0.25),
    *(
        dataclasses.replace(_ADAM_FLOOR, name=f"adam {lr:g} b1 0 noise-corrected 1", learning_rate=lr)
        for lr in (0.03, 0.1)
    ),
    OptVariant("adagrad 0.3 noise-corrected 1", optimizer="adagrad", learning_rate=0.3, momentum=0.0, noise_floor=1.0),
)
_ANTISYMMETRIC_STEPS = (
    OptVariant("lr5", learning_rate=5.0),
    OptVariant("lr8", learning_rate=8.0),
    OptVariant("lr6 ema0.7", learning_rate=6.0, ema=0.7),
    dataclasses.replace(_ADAM_FLOOR, name="adam 0.07 b1 0 noise-corrected 1", learning_rate=0.07),
    dataclasses.replace(_ADAM_FLOOR, name="adam 0.07 b1 0 noise-corrected 1 ema0.5", learning_rate=0.07, ema=0.5),
)
COMBINED_WITH: dict[str, tuple[str, str]] = {  # prefix: (scaling, features)
    "two-stage": ("two-stage", "none"),
    "mean+worst": ("release", "mean+worst"),
    "two-stage mean+worst": ("two-stage", "mean+worst"),
    "worst": ("release", "worst"),
    "exact scaling (leaks)": ("exact", "none"),
    "sqrt": ("release", "sqrt"),
    "sqrt area": ("release", "sqrt-area"),
}
ANTISYMMETRIC_PREFIX = "antisym"
"""Prefix of the variants whose released gradient is projected onto its antisymmetric part (post-processing):
``"antisym"``, ``"antisym lr6"``, ``"antisym mean+worst adam 0.05 b1 0 noise-corrected 1"``, ..."""
"""The recipe probe's scaling and feature changes (names as there), each combined with every server step
of ``_COMBINABLE``: ``"two-stage adam 0.05 b1 0 noise-corrected 1 ema0.5"``, ``"mean+worst ema0.5"``, ..."""

VARIANTS = (
    OptVariant("recipe"),
    *(OptVariant(f"exact LDA start (leaks) {alpha:g}", warm_start=alpha) for alpha in (0.1, 0.15, 0.25, 0.5)),
    OptVariant("nesterov", optimizer="nesterov"),
    OptVariant("nesterov lr3", optimizer="nesterov", learning_rate=3.0),
    OptVariant("nesterov m0.7 lr3", optimizer="nesterov", learning_rate=3.0, momentum=0.7),
    OptVariant("adam 0.1", optimizer="adam", learning_rate=0.1, momentum=0.9),
    OptVariant("adam 0.05", optimizer="adam", learning_rate=0.05, momentum=0.9),
    OptVariant("adam 0.1 b1 0.5", optimizer="adam", learning_rate=0.1, momentum=0.5),
    OptVariant("adam 0.1 tau 0.01", optimizer="adam", learning_rate=0.1, momentum=0.9, tau=0.01),
    OptVariant("adagrad 0.1", optimizer="adagrad", learning_rate=0.1, momentum=0.0),
    OptVariant("adagrad 0.3", optimizer="adagrad", learning_rate=0.3, momentum=0.0),
    OptVariant("adagrad 0.3 m0.5", optimizer="adagrad", learning_rate=0.3, momentum=0.5),
    *(
        OptVariant(f"adagrad {lr:g} m{m:g}", optimizer="adagrad", learning_rate=lr, momentum=m)
        for lr in (0.2, 0.5)
        for m in (0.0, 0.5)
    ),
    *(
        OptVariant(f"adam {lr:g} b1 {b:g}", optimizer="adam", learning_rate=lr, momentum=b)
        for lr in (0.05, 0.2)
        for b in (0.0, 0.5)
    ),
    OptVariant("adam 0.1 b1 0", optimizer="adam", learning_rate=0.1, momentum=0.0),
    *(
        OptVariant(
            f"adagrad {lr:g} noise-corrected {c:g}", optimizer="adagrad", learning_rate=lr, momentum=0.0, noise_floor=c
        )
        for lr in (0.3, 0.5)
        for c in (0.25, 1.0)
    ),
    *(
        OptVariant(
            f"adam {lr:g} b1 0 noise-corrected {c:g}", optimizer="adam", learning_rate=lr, momentum=0.0, noise_floor=c
        )
        for lr in (0.05, 0.1)
        for c in (0.25, 1.0)
    ),
    *(
        OptVariant(f"fclip {b:g} lr {lr:g}", feature_clip=b, grad_clip=False, learning_rate=lr)
        for b in (2.0, 3.0, 4.0)
        for lr in (20.0, 40.0, 80.0)
    ),
    *(OptVariant(f"fclip {b:g} + grad clip", feature_clip=b) for b in (3.0, 4.0, 6.0)),
    *(OptVariant(f"normalised {lr:g}", optimizer="normalised", learning_rate=lr) for lr in (0.25, 0.5, 1.0)),
    OptVariant("normalised 0.5 m0.8", optimizer="normalised", learning_rate=0.5, momentum=0.8),
    OptVariant("normalised 0.3 m0.8", optimizer="normalised", learning_rate=0.3, momentum=0.8),
    OptVariant("recipe ema0.5", ema=0.5),
    OptVariant(
        "adam 0.05 b1 0 noise-corrected 1 ema0.5",
        optimizer="adam",
        learning_rate=0.05,
        momentum=0.0,
        noise_floor=1.0,
        ema=0.5,
    ),
    OptVariant(
        "adagrad 0.3 noise-corrected 1 ema0.5",
        optimizer="adagrad",
        learning_rate=0.3,
        momentum=0.0,
        noise_floor=1.0,
        ema=0.5,
    ),
    OptVariant("normalised 0.5 ema0.5", optimizer="normalised", learning_rate=0.5, ema=0.5),
    *(
        OptVariant(f"exact QU preconditioner (leaks) ridge {r:g} lr {lr:g}", exact_newton_ridge=r, learning_rate=lr)
        for r in (0.03, 0.3)
        for lr in (0.25, 1.0, 4.0)
    ),
    *(
        OptVariant(f"exact QU preconditioner (leaks) ridge {r:g} lr {lr:g}", exact_newton_ridge=r, learning_rate=lr)
        for r, lr in ((0.3, 8.0), (1.0, 4.0), (1.0, 8.0), (1.0, 16.0))
    ),
    *(  # combinations of the individually best changes, judged per epsilon (docs/benchmarks.md)
        dataclasses.replace(
            base, name=f"{prefix} {base.name}".removesuffix(" recipe"), scaling=scaling, features=features
        )
        for prefix, (scaling, features) in COMBINED_WITH.items()
        for base in _COMBINABLE
    ),
    *(  # the two logits' gradients are exact negatives: the released gradient's antisymmetric part, free
        dataclasses.replace(
            base, name=" ".join(f"{ANTISYMMETRIC_PREFIX} {prefix} {base.name}".removesuffix(" recipe").split()),
            scaling=scaling, features=features, antisymmetric=True,
        )
        for prefix, (scaling, features) in {"": ("release", "none"), **COMBINED_WITH}.items()
        for base in (*_COMBINABLE, *_ANTISYMMETRIC_STEPS)
    ),
    *(OptVariant(f"clamp {c:g}", feature_clamp=c) for c in (1.0, 1.5, 2.0, 3.0)),
    *(
        OptVariant(f"clamp {c:g} adam 0.05 b1 0 noise-corrected 1", optimizer="adam", learning_rate=0.05,
                   momentum=0.0, noise_floor=1.0, feature_clamp=c)
        for c in (1.5, 2.0)
    ),
    *(  # the square-rooted areas and the clamp together (chosen after each alone, on the reporting seeds)
        dataclasses.replace(base, name=f"sqrt area clamp 1.5 {base.name}".removesuffix(" recipe"),
                            features="sqrt-area", feature_clamp=1.5)
        for base in _COMBINABLE[:2] + _COMBINABLE[4:6]
    ),
    OptVariant("first step x2", first_step=2.0),
    OptVariant("first step x4", first_step=4.0),
    OptVariant("moments 0.1", moments_share=0.1),
    OptVariant("moments 0.05", moments_share=0.05),
    OptVariant("moments 0.3", moments_share=0.3),
    *(  # several releases per round: rounds x K releases, the noise calibrated for all of them
        OptVariant(f"{k} releases/round{suffix}", learning_rate=lr, momentum=m, ema=ema, releases=k)
        for k in (2, 3, 5, 10)
        for suffix, lr, m, ema in _release_steps(k)
    ),
)
