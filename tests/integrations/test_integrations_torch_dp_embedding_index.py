"""PyTorch DP: an Embedding index outside the table is refused, never another example's row.

:func:`clipped_gradient_sum` gives each example its own expanded view of the parameters inside
``torch.func.vmap``. torch's batching rule for ``embedding`` with a batched weight flattens the
views into one table of ``rows * num_embeddings`` rows and offsets each example's indices, without
checking them against its own table: an index past the vocabulary (``num_embeddings`` or more) or a
negative one read a row of ANOTHER example's view, and its gradient was that example's, without a
word. The per-example clip then bounded the wrong vectors: one example's contribution sat in
another's gradient (its own was missing it), so removing one example could move the sum by more
than the clip. Only the last row's index past the end of the whole flattened table raised.

The up-front dry run on the batch's first example hid it for the first row only (torch's own
``embedding`` checks the index there); since the dry run runs only when the computation fails, a
first row past the vocabulary was silent too. A hospital whose vocabulary is larger than the model's
is a plain data fault. Now every parameter outside a recurrent layer is given to vmap unbatched (one
table for all examples, torch's own per-sample-gradient recipe), where torch's embedding checks every
index, whether a module or ``F.embedding`` on a bare parameter looks it up.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from secagg.errors import ConfigurationError

torch = pytest.importorskip("torch")
torch_dp = pytest.importorskip("secagg.integrations.torch_dp")

from .torch_dp_checks import dp_aggregator  # noqa: E402

F = torch.nn.functional
VOCABULARY = 5


class _Bag(torch.nn.Module):  # type: ignore[misc]
    """Two tokens per example, embedded, averaged, scored for 2 classes; the table tied to the
    scoring layer's weight or not."""

    def __init__(self, tied: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = torch.nn.Embedding(VOCABULARY, 3).double()
        self.score = torch.nn.Linear(3, VOCABULARY if tied else 2).double()
        if tied:
            self.score.weight = self.embedding.weight

    def forward(self, x: Any) -> Any:
        return self.score(self.embedding(x).mean(dim=1))


class _Functional(torch.nn.Module):  # type: ignore[misc]
    """The same lookup written as ``F.embedding`` on a bare parameter (no Embedding module to see)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.Parameter(torch.randn(VOCABULARY, 3, dtype=torch.float64))
        self.score = torch.nn.Linear(3, 2).double()

    def forward(self, x: Any) -> Any:
        return self.score(F.embedding(x, self.table).mean(dim=1))


def _tokens(rows: int = 12, seed: int = 3) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.integers(0, VOCABULARY, size=(rows, 2)))
    return x, torch.from_numpy(rng.integers(0, 2, size=rows))


OUTSIDE = {
    "past the vocabulary, first row": (0, VOCABULARY),
    "far past the vocabulary, first row": (0, VOCABULARY + 4),
    "past the vocabulary, a middle row": (6, VOCABULARY),
    "negative, a middle row": (6, -1),
}


@pytest.mark.parametrize("module", [_Bag, _Functional])
@pytest.mark.parametrize("case", sorted(OUTSIDE))
def test_an_index_outside_the_table_is_refused_not_read_from_another_example(case: str, module: Any) -> None:
    """Before: each returned a clipped sum (the index read another example's row of the expanded
    weight, its gradient landed in that example's); the old up-front dry run refused the first-row
    cases only."""
    # Prepare: one token of one row outside the table of 5
    row, index = OUTSIDE[case]
    model, (x, y) = module(), _tokens()
    x[row, 0] = index
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # Execute / Assert: a library error; the model as it was
    with pytest.raises(ConfigurationError):
        torch_dp.clipped_gradient_sum(model, F.cross_entropy, x, y, 1.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _looped(model: Any, x: Any, y: Any, clip: float) -> Any:
    """The clipped sum by plain autograd, one example at a time."""
    total = None
    for i in range(x.shape[0]):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        g = g * min(1.0, clip / float(g.norm()))
        total = g if total is None else total + g
    assert total is not None
    return total.detach().numpy()


@pytest.mark.parametrize("make", [_Bag, lambda: _Bag(tied=True), _Functional])
def test_each_example_s_embedding_gradient_is_its_own(make: Any) -> None:
    """The fix keeps the gradients: the clipped sum equals one-at-a-time autograd (a clip that binds),
    the table tied to the scoring layer or not, looked up by a module or by ``F.embedding``."""
    # Prepare
    x, y = _tokens()
    # Execute
    summed = torch_dp.clipped_gradient_sum(make(), F.cross_entropy, x, y, 0.05)
    # Assert
    np.testing.assert_allclose(summed, _looped(make(), x, y, 0.05), rtol=1e-10, atol=1e-12)


def test_a_hospital_with_a_larger_vocabulary_is_withheld_alone() -> None:
    """Before: hospital 3 (tokens up to 7, for a table of 5; its last row in range) was included, its
    examples' gradients mixed with each other's."""
    # Prepare: five hospitals; hospital 3's tokens run past the table except in its last row
    hospitals = [(h, *_tokens(seed=h)) for h in range(1, 6)]
    x = hospitals[2][1]
    x[:-1, 0] = VOCABULARY + 2
    aggregator = dp_aggregator(sum(int(p.numel()) for p in _Bag().parameters()))
    # Execute
    result = torch_dp.run_dp_round(
        _Bag(), hospitals, F.cross_entropy, aggregator, learning_rate=1.0,
        declared_sizes={h: 12 for h in range(1, 6)}, rng=np.random.default_rng(0),
    )  # fmt: skip
    # Assert: withheld alone, the others' round released and charged once
    assert [client for client, _ in result.withheld] == [3]
    assert result.included == {1, 2, 4, 5} and aggregator.accountant.num_releases == 1
