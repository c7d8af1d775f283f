"""Paillier's default threshold: the active masking default's (colluders, dropouts) trade-off.

Before, the default t was l // 2 + 1, which for an odd number of hospitals tolerates no
colluding hospital (5 hospitals: 3-of-5, c = 0) while masking's active default at the same
size tolerates two (t = 4). The default now takes the most colluders c (up to a third) whose
threshold (l + c) // 2 + 1 still leaves masking's default dropout target (one dropout below
20 hospitals, 40% from 20 on), as :func:`secagg.masking.parameters.default_colluders` does.
Each default shape is attacked at its computed bound and one past it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from fl_core import demo
from fl_core.aggregators import ClientUpdate, DropoutStage, WeightedQuantizer, make_aggregator
from fl_core.aggregators.paillier import PaillierAggregator, paillier_shape
from fl_core.dp_build import supported_honest
from secagg.cli import build_parser
from secagg.cli import main as cli_main
from secagg.errors import ConfigurationError, ThresholdError
from secagg.masking.parameters import complete_guarantee, complete_threshold, default_colluders
from secagg.paillier import PaillierConfig, Stage, run_session
from secagg.primitives.randomness import InsecureDeterministicRandom

from .helpers import threshold_material
from .test_paillier_guarantee import LENGTH, _attack_succeeds, _params

INSECURE = pytest.mark.filterwarnings("ignore:paillier. insecure_small_key")


def _config(hospitals: int, **options: int) -> PaillierConfig:
    return PaillierConfig(num_clients=hospitals, vector_length=LENGTH, key_bits=256,
                          allow_insecure_key_bits_for_testing=True, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("hospitals", range(2, 61))
def test_the_default_trades_colluders_for_dropouts_as_active_masking_does(hospitals: int) -> None:
    # Expected: masking's active complete-graph default at the same size (c declared, its t, its guarantee)
    declared = default_colluders(hospitals, True)
    t = complete_threshold(hospitals, declared, True)
    expected = complete_guarantee(hospitals, t, True)
    config = _config(hospitals)
    assert config.decryption_threshold == t
    assert (config.guarantee.colluders, config.guarantee.dropouts) == expected
    # fl_core's aggregator fills in the same defaults before any key exists
    assert paillier_shape(hospitals, None, None) == (config.decryption_threshold, config.contributors_needed)
    if hospitals >= 4:
        assert config.guarantee.colluders >= 1
    if hospitals >= 3:
        assert config.guarantee.dropouts >= 1


def test_five_hospitals_by_default_tolerate_two_colluders_and_one_dropout() -> None:
    config = _config(5)
    assert (config.decryption_threshold, config.contributors_needed) == (4, 4)
    assert (config.guarantee.colluders, config.guarantee.dropouts) == (2, 1)
    assert "2 colluding" in str(config.guarantee)
    # Three hospitals keep c = 0 and one dropout, as masking does: c = 1 needs 3-of-3 (no dropout)
    assert (_config(3).guarantee.colluders, _config(3).guarantee.dropouts) == (0, 1)
    assert (_config(3, colluders=1).guarantee.colluders, _config(3, colluders=1).guarantee.dropouts) == (1, 0)


@pytest.mark.parametrize("hospitals", [3, 4, 5, 6, 7])
def test_the_default_guarantee_holds_at_its_bound_and_breaks_one_past_it(hospitals: int) -> None:
    config = _config(hospitals)
    material = threshold_material(256, hospitals, config.decryption_threshold)
    params = _params(material, config.contributors_needed)
    c = params.guarantee.colluders
    assert params.guarantee == config.guarantee
    # At the bound: c colluders and the lying server find no split that reveals the victim's upload
    assert not _attack_succeeds(material, params, c)
    # One past it: c + 1 colluders split the holders, or fill a sum of min_contributors but one
    assert _attack_succeeds(material, params, c + 1) or c + 1 > config.contributors_needed - 2


@pytest.mark.parametrize("hospitals", [3, 5, 7])
def test_the_default_completes_with_its_dropouts_and_fails_one_past(hospitals: int) -> None:
    config = _config(hospitals)
    material = threshold_material(256, hospitals, config.decryption_threshold)
    d = config.guarantee.dropouts
    inputs = {k: np.arange(LENGTH, dtype=np.int64) * k - 3 for k in range(1, hospitals + 1)}
    # At the bound: d hospitals never upload nor decrypt; the others' exact sum comes out
    dropped = dict.fromkeys(range(1, d + 1), Stage.UPLOAD)
    result = run_session(config, inputs, dropped, key_material=material)
    np.testing.assert_array_equal(result.aggregate, np.sum([inputs[k] for k in range(d + 1, hospitals + 1)], axis=0))
    # One past it: no sum, the library's error
    with pytest.raises(ThresholdError):
        run_session(config, inputs, dict.fromkeys(range(1, d + 2), Stage.UPLOAD), key_material=material)


def _aggregator(hospitals: int, **options: int) -> PaillierAggregator:
    quantizer = WeightedQuantizer.create(hospitals, clip=0.5, bits=16)
    t, _ = paillier_shape(hospitals, options.get("threshold"), options.get("min_contributors"),
                          options.get("colluders"))
    return PaillierAggregator(quantizer, insecure_small_key=True, key_material=threshold_material(256, hospitals, t),
                              random_bytes=InsecureDeterministicRandom(5), **options)  # type: ignore[arg-type]


@INSECURE
def test_the_aggregator_default_survives_its_dropouts_and_skips_one_past() -> None:
    aggregator = _aggregator(5)
    assert (aggregator.threshold, aggregator.min_contributors) == (4, 4)
    assert (aggregator.guarantee.colluders, aggregator.guarantee.dropouts) == (2, 1)
    rng = np.random.default_rng(0)
    updates = [ClientUpdate(c, rng.uniform(-0.4, 0.4, size=8), 10 + c) for c in range(5)]
    done = aggregator.aggregate(updates, {0: DropoutStage.UPLOAD}, rng=np.random.default_rng(1))
    assert not done.skipped and done.included == frozenset({1, 2, 3, 4})
    past = aggregator.aggregate(updates, {0: DropoutStage.UPLOAD, 1: DropoutStage.FINALIZE},
                                rng=np.random.default_rng(1))
    assert past.skipped and "4 partial decryptions are needed" in str(past.skipped_reason)


@INSECURE
def test_the_aggregator_takes_declared_colluders_and_sizes_its_threshold() -> None:
    # 6 hospitals declare 2 colluders: t = (6 + 2) // 2 + 1 = 5, min_contributors 5; computed c = 3 >= 2
    aggregator = _aggregator(6, colluders=2)
    assert (aggregator.threshold, aggregator.min_contributors) == (5, 5)
    assert aggregator.guarantee.colluders == 3 and aggregator.guarantee.dropouts == 1
    # The declaration reaches the DP floor computed before any key exists (min_contributors - c)
    assert supported_honest("paillier", 6, colluders=2) == 5 - 3


@INSECURE
@pytest.mark.parametrize(("options", "message"), [
    ({"colluders": 2, "threshold": 4}, r"2t > l \+ c"),            # 4-of-6 with two colluders: two groups decrypt
    ({"colluders": 2, "min_contributors": 3}, r"min_contributors 3 is unsafe against 2 colluders"),
    ({"colluders": 5}, r"colluders"),                                # more than 6 hospitals can protect against
    ({"colluders": -1}, r"colluders"),
])
def test_the_aggregator_refuses_colluders_its_shape_cannot_hold(options: dict[str, int], message: str) -> None:
    quantizer = WeightedQuantizer.create(6, clip=0.5, bits=16)
    with pytest.raises(ConfigurationError, match=message):
        PaillierAggregator(quantizer, insecure_small_key=True, **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=message):
        make_aggregator("paillier", num_clients=6, insecure_small_key=True, **options)


@pytest.mark.parametrize(("hospitals", "colluders", "threshold"), [(5, None, 4), (5, 1, 4), (5, 3, 5), (7, 1, 5)])
def test_the_demo_passes_declared_colluders_to_the_paillier_aggregator(
    hospitals: int, colluders: int | None, threshold: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo's --colluders C reaches the aggregator, which sizes t = (hospitals + C) // 2 + 1
    argv = ["demo", "--aggregation", "paillier", "--hospitals", str(hospitals)]
    args = build_parser().parse_args(argv + ([] if colluders is None else ["--colluders", str(colluders)]))
    config = demo._from_args(args)
    assert config.colluders == colluders
    seen: dict[str, object] = {}
    monkeypatch.setattr(demo, "make_aggregator", lambda name, **options: seen.update(options))
    demo._aggregator("paillier", config)
    assert seen.get("colluders") == colluders
    assert paillier_shape(hospitals, None, None, colluders)[0] == threshold


def test_the_demo_configuration_refuses_colluders_it_cannot_hold() -> None:
    with pytest.raises(ConfigurationError, match="paillier only"):
        demo.DemoConfig(aggregation="secagg", colluders=1)
    with pytest.raises(ConfigurationError, match=r"colluders must be in 0\.\.3"):
        demo.DemoConfig(aggregation="paillier", hospitals=5, colluders=4)


def _example(text: str, pattern: str) -> tuple[int, int, int, int]:
    """The (hospitals, t, l, colluders) of the one default example ``pattern`` finds in ``text``."""
    found = re.findall(pattern, " ".join(text.split()))
    assert len(found) == 1, f"{pattern!r}: {found}"
    return tuple(int(value) for value in found[0])  # type: ignore[return-value]


def test_the_default_example_the_help_and_the_docs_print_is_the_computed_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `secagg demo --help` and docs/fedavg.md's option table spell out the --colluders default for
    # one federation: its t-of-l key and the colluders (and dropouts) it tolerates, as computed
    with pytest.raises(SystemExit):
        cli_main(["demo", "--help"])
    printed = _example(capsys.readouterr().out, r"(\d+) hospitals (\d+)-of-(\d+), (\d+) colluders tolerated")
    docs = (Path(__file__).resolve().parents[2] / "docs" / "fedavg.md").read_text(encoding="utf-8")
    documented = _example(docs, r"(\d+) hospitals: (\d+)-of-(\d+), (\d+) colluders, one dropout")
    for hospitals, threshold, parties, colluders in (printed, documented):
        config = _config(hospitals)
        assert (parties, threshold) == (hospitals, config.decryption_threshold)
        assert config.guarantee.colluders == colluders
        assert config.guarantee.dropouts == 1  # "leave one dropout"


def _docs(name: str) -> str:
    return (Path(__file__).resolve().parents[2] / "docs" / name).read_text(encoding="utf-8")


def test_the_default_threshold_table_in_the_docs_is_the_computed_one() -> None:
    # docs/paillier.md, "The default threshold": per hospital count, the default t and its guarantee
    lines = _docs("paillier.md").splitlines()
    start = lines.index("| hospitals | default t | c (colluders) | d (dropouts) |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([int(cell) for cell in line.strip("|").split("|")])
    assert len(rows) >= 5
    for hospitals, threshold, colluders, dropouts in rows:
        config = _config(hospitals)
        computed = [hospitals, config.decryption_threshold, config.guarantee.colluders, config.guarantee.dropouts]
        assert [hospitals, threshold, colluders, dropouts] == computed


def test_the_worked_paillier_examples_in_the_docs_are_the_computed_ones() -> None:
    # The figures docs/paillier.md, docs/integrations.md and docs/privacy.md spell out in prose
    four, five = _config(4), _config(5)
    old = _config(5, threshold=3)  # the old default l // 2 + 1
    pair = f"(3-of-4: c = {four.guarantee.colluders}; 4-of-5: c = {five.guarantee.colluders}"
    assert (four.decryption_threshold, five.decryption_threshold) == (3, 4)
    floors = [supported_honest("paillier", n) for n in (5, 10, 20)]
    old_floors = [supported_honest("paillier", n, threshold=n // 2 + 1) for n in (5, 10, 20)]
    survived = ["no", "one", "two", "three"][old.guarantee.dropouts]
    expected = {
        "paillier.md": [pair, f"(5 hospitals: 3-of-5, c = {old.guarantee.colluders}, {survived} dropouts)"],
        "integrations.md": [pair],
        "privacy.md": [f"as active masking: 5 hospitals {floors[0]}, 10: {floors[1]}, 20: {floors[2]} (with the old "
                       f"default t = n // 2 + 1: {old_floors[0]}, {old_floors[1]} and {old_floors[2]})"],
    }
    for name, phrases in expected.items():
        text = " ".join(_docs(name).split())
        for phrase in phrases:
            assert phrase in text, f"docs/{name}: {phrase!r}"
