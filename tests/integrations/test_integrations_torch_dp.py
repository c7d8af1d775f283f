"""PyTorch with distributed DP: torch.func per-sample gradients, clipped, noised in the secure sum."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fl_core.aggregators import make_aggregator
from fl_core.aggregators.base import DropoutStage
from fl_core.dp import DPAggregator
from fl_core.models import LogisticRegression
from secagg.dp import DPConfig, poisson_mask
from secagg.errors import ConfigurationError

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

from .torch_dp_checks import assert_refused_before_any_charge, five_hospitals  # noqa: E402


def _loss(output: object, target: object) -> object:
    return torch.nn.functional.cross_entropy(output, target)


def _linear(features: int = 4, classes: int = 3) -> object:
    torch.manual_seed(0)
    return torch.nn.Linear(features, classes).double()


def test_clipped_gradient_sum_matches_the_numpy_model_and_loops() -> None:
    # Prepare: a torch Linear layer is fl_core's LogisticRegression with W transposed.
    rng = np.random.default_rng(0)
    x, y = 3 * rng.normal(size=(8, 4)), rng.integers(0, 3, size=8)
    model = _linear()
    weight, bias = model.weight.detach().numpy().T.copy(), model.bias.detach().numpy().copy()

    # Execute
    ours = torch_dp.clipped_gradient_sum(model, _loss, torch.from_numpy(x), torch.from_numpy(y), 0.3)
    numpy_sum = LogisticRegression(4, 3).clipped_gradient_sum([weight, bias], x, y, 0.3)

    # Assert: same clipped sum (torch orders weight as (classes, features)).
    torch_weight, torch_bias = ours[:12].reshape(3, 4), ours[12:]
    np.testing.assert_allclose(torch_weight.T, numpy_sum[0], atol=1e-10)
    np.testing.assert_allclose(torch_bias, numpy_sum[1], atol=1e-10)
    # And each example's clipped gradient has norm <= clip (checked one by one, here only).
    for i in range(8):
        single = torch_dp.clipped_gradient_sum(
            model, _loss, torch.from_numpy(x[i : i + 1]), torch.from_numpy(y[i : i + 1]), 0.3
        )
        assert np.linalg.norm(single) <= 0.3 + 1e-12


def test_a_torch_model_trains_with_dp_through_the_secure_sum() -> None:
    # Prepare: 5 hospitals, two separable classes.
    rng = np.random.default_rng(1)
    direction = np.array([2.0, -1.0, 0.5, 1.0])

    def draw(count: int) -> tuple[object, object]:
        labels = rng.integers(0, 2, size=count)
        features = rng.normal(size=(count, 4)) + np.outer(2 * labels - 1, direction)
        return torch.from_numpy(features), torch.from_numpy(labels)

    hospitals = [(i, *draw(40)) for i in range(1, 6)]
    test_x, test_y = draw(300)
    model = _linear(4, 2)
    # h = 2: secagg's floor at 5 hospitals (t - c = 4 - 2); h = 4 is refused over a secure sum
    dp = DPConfig(epsilon=8.0, delta=1e-5, rounds=8, l2_clip=1.0, min_honest=2)
    aggregator = make_aggregator("secagg", num_clients=5, dp=dp, dimension=10, max_samples_per_client=64)
    assert isinstance(aggregator, DPAggregator)

    # Execute
    for _ in range(8):
        result = torch_dp.run_dp_round(
            model, hospitals, _loss, aggregator, learning_rate=2.0, denominator=200.0, rng=rng
        )
        assert result.mean is not None

    # Assert
    accuracy = float((model(test_x).argmax(dim=1) == test_y).double().mean())
    assert accuracy > 0.9
    assert aggregator.spent()[0] <= 8.0 + 1e-9
    refused = torch_dp.run_dp_round(model, hospitals, _loss, aggregator, learning_rate=2.0, denominator=200.0, rng=rng)
    assert refused.mean is None and "privacy budget" in (refused.skipped_reason or "")


def test_run_dp_round_refuses_an_aggregator_without_dp() -> None:
    with pytest.raises(ConfigurationError, match="DP aggregator"):
        torch_dp.run_dp_round(
            _linear(), [], _loss, make_aggregator("plain"), learning_rate=1.0, denominator=1.0,
            rng=np.random.default_rng(0),
        )  # fmt: skip
    with pytest.raises(ConfigurationError, match="parameters"):
        torch_dp.apply_dp_step(_linear(), np.zeros(3), 1.0, 1.0)


@pytest.mark.parametrize(
    ("learning_rate", "denominator", "noised"),
    [
        (float("nan"), 10.0, 0.5),  # every parameter became NaN
        (float("inf"), 10.0, 0.5),  # every parameter became -inf
        (0.1, float("inf"), 0.5),  # the step became 0: a silent no-op round
        (0.1, 10.0, float("nan")),
    ],
)
def test_apply_dp_step_refuses_a_non_finite_setting_instead_of_writing_nan(
    learning_rate: float, denominator: float, noised: float
) -> None:
    # Prepare
    model = torch.nn.Linear(3, 1)
    before = [p.detach().clone() for p in model.parameters()]
    # Execute / Assert
    with pytest.raises(ConfigurationError):
        torch_dp.apply_dp_step(model, np.full(4, noised), denominator, learning_rate)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_apply_dp_step_refuses_a_step_a_narrow_parameter_cannot_hold() -> None:
    # Prepare: a float16 weight near its largest value; the step would overflow it to -inf
    model = torch.nn.Linear(1, 1, bias=False).to(torch.float16)
    with torch.no_grad():
        model.weight.fill_(-60000.0)
    # Execute / Assert: refused, the weight untouched
    with pytest.raises(ConfigurationError, match="does not fit"):
        torch_dp.apply_dp_step(model, np.array([10000.0]), 1.0, 1.0)
    assert float(model.weight) == -60000.0
    # Assert: a list instead of an array is refused by the library too
    with pytest.raises(ConfigurationError):
        torch_dp.apply_dp_step(model, [1.0], 1.0, 1.0)  # type: ignore[arg-type]


def test_a_complex_parameter_is_refused_not_stripped_of_its_imaginary_part() -> None:
    # Prepare: .to(float64) dropped the gradients' imaginary parts with only a UserWarning
    model = torch.nn.Linear(2, 1, dtype=torch.complex64)
    inputs, targets = torch.ones(3, 2, dtype=torch.complex64), torch.zeros(3)

    def loss(output: object, target: object) -> object:
        return (output.abs() ** 2).sum()  # type: ignore[attr-defined]

    # Execute / Assert
    with pytest.raises(ConfigurationError, match="complex"):
        torch_dp.clipped_gradient_sum(model, loss, inputs, targets, 1.0)
    with pytest.raises(ConfigurationError, match="complex"):
        torch_dp.apply_dp_step(model, np.zeros(4), 1.0, 1.0)


_DP_ALL_ROWS = DPConfig(epsilon=8.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2, sampling_rate=1.0)


def _bad_dp_calls() -> dict[str, Any]:
    model = _linear()
    inputs, targets = torch.randn(4, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    return {
        "l2_clip a string": lambda: torch_dp.clipped_gradient_sum(model, _loss, inputs, targets, "1"),
        "l2_clip None": lambda: torch_dp.clipped_gradient_sum(model, _loss, inputs, targets, None),
        "model None": lambda: torch_dp.clipped_gradient_sum(None, _loss, inputs, targets, 1.0),
        "inputs numpy": lambda: torch_dp.clipped_gradient_sum(model, _loss, inputs.numpy(), targets, 1.0),
        "NaN inputs": lambda: torch_dp.clipped_gradient_sum(model, _loss, inputs * float("nan"), targets, 1.0),
        "rate a string": lambda: poisson_mask(3, "x"),
        "rate above 1": lambda: poisson_mask(3, 2.0),  # was every row, silently
        "apply to None": lambda: torch_dp.apply_dp_step(None, np.zeros(15), 1.0, 1.0),
        # one target fewer than inputs: vmap's ValueError, or the sample mask's IndexError
        "targets short, sum": lambda: torch_dp.clipped_gradient_sum(model, _loss, inputs, targets[:3], 1.0),
        "targets short, update": lambda: torch_dp.dp_update(1, model, _loss, inputs, targets[:3], _DP_ALL_ROWS),
        "targets long, update": lambda: torch_dp.dp_update(1, model, _loss, inputs[:3], targets, _DP_ALL_ROWS),
        # hospitals not a sequence of (id, inputs, targets): TypeError or ValueError from unpacking
        "hospitals None": lambda: _dp_round_of(model, None),
        "hospitals a set": lambda: _dp_round_of(model, {1, 2}),
        "a hospital of two items": lambda: _dp_round_of(model, [(1, inputs, targets), (2, inputs)]),
        # a loss that is not callable: TypeError inside vmap (in a round, every hospital withheld)
        "loss None, sum": lambda: torch_dp.clipped_gradient_sum(model, None, inputs, targets, 1.0),
        "loss None, round": lambda: _dp_round_of(model, [(h, inputs, targets) for h in (1, 2, 3)], loss=None),
    }


def _dp_round_of(model: object, hospitals: Any, loss: Any = _loss) -> object:
    aggregator = make_aggregator("plain-quantized", num_clients=3, dp=_DP_ALL_ROWS, dimension=15)
    return torch_dp.run_dp_round(
        model, hospitals, loss, aggregator, learning_rate=0.1, denominator=1.0, rng=np.random.default_rng(0)
    )


@pytest.mark.parametrize("case", sorted(_bad_dp_calls()))
def test_a_malformed_dp_call_is_refused_with_a_library_error(case: str) -> None:
    # Execute / Assert: these raised TypeError, AttributeError or torch's ValueError, or passed
    with pytest.raises(ConfigurationError):
        _bad_dp_calls()[case]()


def test_run_dp_round_divides_by_the_included_hospitals_declared_sizes() -> None:
    # Hospital 3 drops before uploading: the step divides by q * (sizes of 1, 2, 4, 5) only.
    rng = np.random.default_rng(2)
    sizes = {1: 30, 2: 20, 3: 50, 4: 10, 5: 40}
    hospitals = [
        (i, torch.from_numpy(rng.normal(size=(n, 4))), torch.from_numpy(rng.integers(0, 3, size=n)))
        for i, n in sizes.items()
    ]
    dp = DPConfig(epsilon=8.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=3, sampling_rate=0.5)
    aggregator = make_aggregator("plain-quantized", num_clients=5, dp=dp, dimension=15, max_samples_per_client=64)
    model = _linear()
    before = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()
    dropouts = {3: DropoutStage.UPLOAD}

    result = torch_dp.run_dp_round(
        model, hospitals, _loss, aggregator, learning_rate=1.5, declared_sizes=sizes, rng=rng, dropouts=dropouts
    )

    assert result.mean is not None and result.included == frozenset({1, 2, 4, 5})
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()
    np.testing.assert_allclose(after, before - 1.5 * result.mean / (0.5 * 100), rtol=1e-12, atol=1e-15)
    for wrong in ({"denominator": 1.0, "declared_sizes": sizes}, {}, {"declared_sizes": {1: 30}}):
        with pytest.raises(ConfigurationError, match=r"denominator|declared_sizes"):
            torch_dp.run_dp_round(model, hospitals, _loss, aggregator, learning_rate=1.0, rng=rng, **wrong)


# --- one faulty hospital costs only itself ----------------------------------------------------


class _BrokenLinear(torch.nn.Linear):  # type: ignore[misc]
    """A hospital's copy whose parameters cannot be read (a foreign error, not the library's)."""

    def named_parameters(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA error: device-side assert triggered")


def _dp_round(trained_from: dict[int, Any], min_honest: int, dropouts: dict[int, DropoutStage] | None = None) -> Any:
    from secagg.dp import SeededRandomSource  # noqa: PLC0415

    rng = np.random.default_rng(4)
    hospitals = [
        (i, torch.from_numpy(rng.normal(size=(20, 4))), torch.from_numpy(rng.integers(0, 3, size=20)))
        for i in range(1, 5)
    ]
    dp = DPConfig(epsilon=8.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=min_honest)
    aggregator = make_aggregator(
        "plain-quantized", num_clients=4, dp=dp, dimension=15, max_samples_per_client=64,
        noise_source=SeededRandomSource(bytes(32)),
    )  # fmt: skip
    model = _linear()
    result = torch_dp.run_dp_round(
        model, hospitals, _loss, aggregator, learning_rate=1.0, denominator=80.0, rng=rng,
        dropouts=dropouts, trained_from=trained_from,
    )  # fmt: skip
    return result, aggregator, torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()


def test_a_hospital_whose_copy_raises_a_foreign_error_is_withheld_before_the_charge() -> None:
    # Prepare: hospital 2's copy of the model raises RuntimeError when its parameters are read
    # (before: that RuntimeError ended the DP round for everyone)
    torch.manual_seed(0)
    broken = _BrokenLinear(4, 3).double()
    # Execute: the round with it, and the same round in which it drops at UPLOAD
    result, aggregator, after = _dp_round({2: broken}, 3)
    dropped, reference, expected = _dp_round({}, 3, {2: DropoutStage.UPLOAD})
    # Assert: released without it, bit for bit; charged once, as the reference
    ((client, reason),) = result.withheld
    assert client == 2 and "raised RuntimeError (its message is not reported)" in reason
    assert "CUDA error" not in reason  # a foreign text stays on the hospital's side
    assert result.included == dropped.included == frozenset({1, 3, 4})
    assert result.mean is not None and dropped.mean is not None
    np.testing.assert_array_equal(result.mean, dropped.mean)
    np.testing.assert_array_equal(after, expected)
    assert aggregator.spent() == reference.spent() and aggregator.accountant.num_releases == 1


def test_hospitals_withheld_below_h_skip_the_dp_round_uncharged() -> None:
    # Prepare: h = 3 of 4; two hospitals' copies raise: 2 contributors remain
    torch.manual_seed(0)
    broken = _BrokenLinear(4, 3).double()
    # Execute
    result, aggregator, after = _dp_round({1: broken, 3: broken}, 3)
    # Assert: skipped with both named, nothing charged, the model untouched
    assert result.mean is None and [client for client, _ in result.withheld] == [1, 3]
    assert "RuntimeError" in (result.skipped_reason or "")
    assert aggregator.accountant.num_releases == 0 and aggregator.spent()[0] == 0.0
    torch.manual_seed(0)
    np.testing.assert_array_equal(after, torch.cat([p.detach().reshape(-1) for p in _linear().parameters()]).numpy())



def _dp_aggregator(dimension: int) -> DPAggregator:
    dp = DPConfig(epsilon=3.0, delta=1e-5, rounds=2, l2_clip=1.0, min_honest=2)
    aggregator = make_aggregator("secagg", num_clients=5, dp=dp, dimension=dimension, max_samples_per_client=64)
    assert isinstance(aggregator, DPAggregator)
    return aggregator


def test_batchnorm_in_training_mode_is_refused_saying_what_to_use_instead() -> None:
    """BatchNorm in training mode normalises with the batch's statistics, so an example has no
    gradient of its own. It failed inside torch.func with a RuntimeError about an in-place
    operation on a captured tensor, and run_dp_round withheld every hospital with that message
    and skipped every round; now the global model is refused at once, naming the layer and
    the replacement the docs give (GroupNorm, LayerNorm)."""
    # Prepare
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2)).double()
    hospitals = five_hospitals()
    aggregator = _dp_aggregator(sum(p.numel() for p in model.parameters()))
    # Execute / Assert: refused before anything is computed or charged
    assert_refused_before_any_charge(
        model, hospitals, _loss, aggregator, r"'1' \(BatchNorm1d\).*GroupNorm or LayerNorm"
    )


def _instance_norm(track: bool) -> object:
    torch.manual_seed(0)
    norm = torch.nn.InstanceNorm1d(3, affine=True, track_running_stats=track)
    return torch.nn.Sequential(torch.nn.Unflatten(1, (1, 4)), torch.nn.Conv1d(1, 3, 2), norm, torch.nn.Flatten(),
                               torch.nn.Linear(9, 3)).double()  # fmt: skip


def test_instance_norm_tracking_running_statistics_in_training_mode_is_refused_saying_what_to_do() -> None:
    """InstanceNorm normalises each example alone, but with ``track_running_stats`` in training mode
    it updates its running statistics in place, which vmap refuses: every hospital failed with
    torch's RuntimeError ("Batch norm got a batched tensor ..."), withheld, every round skipped."""
    # Prepare
    model = _instance_norm(track=True)
    hospitals = five_hospitals()
    aggregator = _dp_aggregator(sum(p.numel() for p in model.parameters()))
    # Execute / Assert: refused before anything is computed or charged, naming the layer and the fix
    assert_refused_before_any_charge(
        model, hospitals, _loss, aggregator, r"'2' \(InstanceNorm1d\).*track_running_stats=False"
    )


@pytest.mark.parametrize("setting", ["untracked", "eval"])
def test_instance_norm_without_running_statistics_to_update_is_computed(setting: str) -> None:
    # The control: no running statistics, or in eval mode (they are read, not updated)
    model = _instance_norm(track=setting == "eval")
    if setting == "eval":
        model.eval()
    hospitals = five_hospitals()
    summed = torch_dp.clipped_gradient_sum(model, _loss, hospitals[0][1], hospitals[0][2], 1.0)
    assert summed.shape == (sum(p.numel() for p in model.parameters()),) and np.isfinite(summed).all()


def test_an_aggregator_of_another_dimension_is_refused_naming_the_model_s_count() -> None:
    """The aggregator's ``dimension`` must be the model's number of trainable values; a wrong one
    (or one that counts a frozen parameter) was refused only as "a DP contribution has 562
    coordinates, got 82", which does not say which number is the model's or what to pass."""
    # Prepare: a model with 8 + 3 + 3 = 14 values, 11 of them trainable
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Linear(2, 1)).double()
    model[1].weight.requires_grad_(False)
    hospitals = [(h, x, y.double().reshape(-1, 1)) for h, x, y in five_hospitals()]
    aggregator = _dp_aggregator(13)

    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"dimension=13.*11 trainable.*dimension=11"):
        torch_dp.run_dp_round(
            model, hospitals, torch.nn.functional.mse_loss, aggregator, learning_rate=1.0,
            declared_sizes={h: 12 for h in range(1, 6)}, rng=np.random.default_rng(0),
        )  # fmt: skip
    assert aggregator.spent()[0] == 0.0


class _Bag(torch.nn.Module):  # type: ignore[misc]
    """Four words per example, embedded and averaged, then a Linear layer."""

    def __init__(self, embedding: Any) -> None:
        super().__init__()
        self.embedding, self.linear = embedding, torch.nn.Linear(4, 3)

    def forward(self, words: Any) -> Any:
        out = self.embedding(words)
        return self.linear(out if out.ndim == 2 else out.mean(1))


@pytest.mark.parametrize("kind", ["Embedding", "EmbeddingBag"])
def test_an_embedding_with_max_norm_is_refused_before_it_rewrites_the_model(kind: str) -> None:
    """An embedding with ``max_norm`` rescales the rows it looks up in place, inside its forward: since
    the parameters were mapped per example (expanded views of the parameters' memory) vmap let it, so
    the first hospital's computation rewrote the global model, and every later hospital was refused
    as "trained from another model" (a bag of 4 words: a round with none included)."""
    # Prepare
    torch.manual_seed(0)
    model = _Bag(getattr(torch.nn, kind)(10, 4, max_norm=1.0)).eval()
    words, labels = torch.randint(0, 10, (5, 4)), torch.randint(0, 3, (5,))
    hospitals = [(h, words, labels) for h in range(1, 6)]
    aggregator = _dp_aggregator(sum(p.numel() for p in model.parameters()))
    # Execute / Assert: refused before anything is computed or charged, naming the layer and the fix
    assert_refused_before_any_charge(
        model, hospitals, _loss, aggregator, rf"'embedding' \({kind}\).*max_norm=None"
    )


class _ClampsItsWeight(torch.nn.Module):  # type: ignore[misc]
    """A Linear layer whose forward clamps its weight in place (a constraint kept by hand)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x: Any) -> Any:
        with torch.no_grad():
            self.linear.weight.clamp_(-0.1, 0.1)
        return self.linear(x)


def test_a_forward_pass_that_writes_into_a_parameter_is_refused_and_the_parameter_put_back() -> None:
    """The gradients were computed at the values the forward pass wrote, not at the model given, and
    the caller's model (the global one, in run_dp_round) kept the write, silently."""
    # Prepare
    torch.manual_seed(0)
    model = _ClampsItsWeight()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inputs, targets = torch.randn(3, 4), torch.tensor([0, 1, 2])
    # Execute / Assert
    with pytest.raises(ConfigurationError, match=r"wrote into parameter 'linear.weight'"):
        torch_dp.clipped_gradient_sum(model, _loss, inputs, targets, 1.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
