"""PyTorch DP: a hospital whose data makes its contribution fail is withheld in the library's words.

The round's report (``result.withheld``, ``result.skipped_reason``) goes to the server and the
coordinator. A foreign exception's text (torch's RuntimeError, a loss function's own error) can
carry that hospital's tensor shapes and values, so the reason names the stage that failed and
the exception's type only; the full text is logged at DEBUG on the hospital's side
(logger ``secagg.integrations.torch_dp``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from secagg.dp import DPConfig, SeededRandomSource

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

SECRET = "patient 4711 creatinine 98.6125"


def _loss(output: Any, target: Any) -> Any:
    if target.dtype == torch.int32:  # hospital 2's labels: its loss fails, naming a patient's value
        raise RuntimeError(f"label check failed for {SECRET}")
    return torch.nn.functional.cross_entropy(output, target)


def _round(hospitals: list[tuple[int, Any, Any]], min_honest: int = 2) -> Any:
    dp = DPConfig(epsilon=8.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=min_honest)
    aggregator = make_aggregator(
        "plain-quantized", num_clients=len(hospitals), dp=dp, dimension=15, max_samples_per_client=64,
        noise_source=SeededRandomSource(bytes(32)),
    )  # fmt: skip
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).double()
    return torch_dp.run_dp_round(
        model, hospitals, _loss, aggregator, learning_rate=1.0, denominator=60.0, rng=np.random.default_rng(4)
    )


def _hospitals() -> list[tuple[int, Any, Any]]:
    rng = np.random.default_rng(5)
    return [
        (k, torch.from_numpy(rng.normal(size=(20, 4))), torch.from_numpy(rng.integers(0, 3, size=20)))
        for k in range(1, 5)
    ]


def _report(result: Any) -> str:
    return " ".join([repr(result.withheld), str(result.skipped_reason), repr(result)])


def test_a_foreign_error_s_text_stays_out_of_the_round_s_report(caplog: pytest.LogCaptureFixture) -> None:
    """Before: the reason was "its contribution cannot be computed: reading it raised
    RuntimeError: label check failed for patient 4711 creatinine 98.6125", sent to the server.
    The loss now fails on the first example, before the per-sample computation: the library's
    refusal names the loss and the target's dtype, torch's error chained and logged, not reported."""
    # Prepare: hospital 2's loss raises with a patient's value in its message
    hospitals = _hospitals()
    client, inputs, targets = hospitals[1]
    hospitals[1] = (client, inputs, targets.to(torch.int32))
    # Execute
    with caplog.at_level(logging.DEBUG, logger="secagg.integrations.torch_dp"):
        result = _round(hospitals)
    # Assert: withheld alone, the stage and the type named, the text only in the hospital's log
    ((withheld, reason),) = result.withheld
    assert withheld == 2 and result.included == {1, 3, 4}
    assert "loss_fn raised RuntimeError on the batch's first example" in reason and "torch.int32" in reason
    assert "4711" not in _report(result) and "98.6125" not in _report(result)
    assert SECRET in caplog.text and "hospital 2" in caplog.text


def test_torch_s_own_shape_text_stays_out_of_the_report_and_the_stage_is_named() -> None:
    """Torch's messages carry the hospital's tensor shapes ('mat1 and mat2 shapes cannot be
    multiplied (20x5 and 4x3)', 'The shape of the mask [20] ... indexed tensor [13]'): the reason
    names the stage (its sample, its gradients) and the type. Before, both texts were the reasons.
    Fewer labels than rows is now the library's own refusal, whose words name no count; so is a
    width the model cannot take, naming one example's shape (no row count) and the layer."""
    # Prepare: hospital 1 has 5 features, hospital 3 fewer labels than rows; h = 2 still met
    hospitals = _hospitals()
    rng = np.random.default_rng(6)
    hospitals[0] = (1, torch.from_numpy(rng.normal(size=(20, 5))), hospitals[0][2])
    hospitals[2] = (3, hospitals[2][1], hospitals[2][2][:13])
    # Execute
    result = _round(hospitals)
    # Assert
    reasons = dict(result.withheld)
    assert sorted(reasons) == [1, 3] and result.included == {2, 4}
    assert "forward pass raised RuntimeError" in reasons[1] and "shape (1, 5)" in reasons[1]
    assert "in_features=4" in reasons[1] and "(its message is not reported)" not in reasons[1]
    assert "different batch sizes" in reasons[3]  # the library's words (torch's IndexError before)
    report = _report(result)
    assert "20x5" not in report and "4x3" not in report and "[13]" not in report and "13" not in reasons[3]


def test_a_library_error_keeps_its_own_words() -> None:
    """A library error is the library's own wording (no data in it): kept as the reason, as before."""
    # Prepare: hospital 4's inputs are NaN: its gradients are refused by the library
    hospitals = _hospitals()
    hospitals[3] = (4, torch.ones(20, 4, dtype=torch.float64) * float("nan"), hospitals[3][2])
    # Execute
    result = _round(hospitals)
    # Assert
    ((withheld, reason),) = result.withheld
    assert withheld == 4 and "a per-sample gradient is NaN or infinite" in reason


class _UnreadableCopy(torch.nn.Linear):  # type: ignore[misc]
    """A hospital's copy of the model whose state dict cannot be read (a broken checkpoint)."""

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        raise KeyError(f"checkpoint entry for {SECRET}")


def test_a_copy_that_cannot_be_read_is_named_by_that_stage() -> None:
    # Prepare: hospital 3 trained from a copy whose state dict raises
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).double()
    copy = _UnreadableCopy(4, 3).double()
    dp = DPConfig(epsilon=8.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2)
    aggregator = make_aggregator(
        "plain-quantized", num_clients=4, dp=dp, dimension=15, max_samples_per_client=64,
        noise_source=SeededRandomSource(bytes(32)),
    )  # fmt: skip
    # Execute
    result = torch_dp.run_dp_round(
        model, _hospitals(), _loss, aggregator, learning_rate=1.0, denominator=60.0,
        rng=np.random.default_rng(4), trained_from={3: copy},
    )  # fmt: skip
    # Assert: withheld naming the stage that failed (reading its copy), not the one before it
    ((withheld, reason),) = result.withheld
    assert withheld == 3 and "reading its copy of the model raised KeyError" in reason
    assert "4711" not in _report(result)


def _out_of_memory(output: Any, target: Any) -> Any:
    raise MemoryError("out of memory")


def test_a_memory_error_ends_the_round_and_withholds_nobody() -> None:
    # Prepare: the aggregating party runs out of memory computing a hospital's contribution
    hospitals = _hospitals()
    dp = DPConfig(epsilon=8.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2)
    aggregator = make_aggregator(
        "plain-quantized", num_clients=4, dp=dp, dimension=15, max_samples_per_client=64,
        noise_source=SeededRandomSource(bytes(32)),
    )  # fmt: skip
    # Execute / Assert: its own resources, not a hospital's fault: the MemoryError leaves the round
    with pytest.raises(MemoryError):
        torch_dp.run_dp_round(
            torch.nn.Linear(4, 3).double(), hospitals, _out_of_memory, aggregator, learning_rate=1.0,
            denominator=60.0, rng=np.random.default_rng(4),
        )  # fmt: skip
