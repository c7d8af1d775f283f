"""PyTorch DP: a token id looked up next to, or inside, a recurrent layer is checked for every example.

:func:`clipped_gradient_sum` gives vmap every parameter outside a recurrent layer unbatched (one
table for all examples, where torch's embedding checks every index), but a recurrent layer's
parameters batched: each example its own expanded view. An embedding lookup INTO such a parameter
(an Embedding whose weight is tied to an LSTM's input weights, or ``F.embedding`` on the LSTM's
weight in a custom forward) went through torch's batching rule for a batched weight, which flattens
the views into one table and offsets each example's indices without checking them: an index past
the table (or a negative one) at a later row read a row of ANOTHER example's view, its gradient
landing in that example's, and the clipped sum came back without a word (so one example could move
the sum by more than the clip). Now every embedding lookup in a model with a recurrent layer is
checked against the table first (a read with torch's ``index_select``, which checks every index per
example); an Embedding of its own next to an LSTM, even nested in one custom module with it, was
and stays unbatched and checked by torch's embedding (pinned here too).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from .torch_recurrent import (
    assert_the_clipped_sum_is_one_at_a_time_autograd_s,
    outside,
    refusal_leaving_the_model,
    tokens,
    torch,
    torch_dp,
)

F = torch.nn.functional
# torch's, for the bags: embedding_bag has no batching rule and vmap loops over the examples instead
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop because we have not yet implemented")
HIDDEN, FEATURES = 2, 3
TABLE = 4 * HIDDEN  # the rows of an LSTM's input weights (4 gates), the vocabulary of a tied table


class _Encoder(torch.nn.Module):  # type: ignore[misc]
    """An Embedding and an LSTM in one custom module; the table its own, tied to the LSTM's input
    weights, or the LSTM's input weights looked up by ``F.embedding`` (no Embedding module)."""

    def __init__(self, lookup: str) -> None:
        super().__init__()
        self.lookup = lookup
        self.embedding = torch.nn.Embedding(TABLE, FEATURES)
        self.bag = torch.nn.EmbeddingBag(TABLE, FEATURES, mode="sum")
        self.lstm = torch.nn.LSTM(FEATURES, HIDDEN, batch_first=True)
        if lookup == "tied":
            self.embedding.weight = self.lstm.weight_ih_l0
        if lookup == "tied bag":
            self.bag.weight = self.lstm.weight_ih_l0

    def forward(self, x: Any) -> Any:
        weight, bags = self.lstm.weight_ih_l0, x.reshape(-1, 1)  # one token a bag: one row each
        if self.lookup == "functional":
            embedded = F.embedding(x, weight)
        elif self.lookup == "functional bag":
            embedded = F.embedding_bag(bags, weight, mode="sum").reshape(*x.shape, FEATURES)
        elif self.lookup == "tied bag":
            embedded = self.bag(bags).reshape(*x.shape, FEATURES)
        else:
            embedded = self.embedding(x)
        return self.lstm(embedded)[0][:, -1]


class _Text(torch.nn.Module):  # type: ignore[misc]
    def __init__(self, lookup: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder, self.score = _Encoder(lookup), torch.nn.Linear(HIDDEN, 2)
        self.double()

    def forward(self, x: Any) -> Any:
        return self.score(self.encoder(x))


# The bags (an EmbeddingBag tied to the LSTM's weight, F.embedding_bag on it) are pins: torch's
# embedding_bag checks every index of every example itself (it passed on the code before too).
LOOKUPS = ["own table", "tied", "functional", "tied bag", "functional bag"]


def _tokens() -> tuple[Any, Any]:
    return tokens(TABLE, 6)


OUTSIDE = outside(TABLE)


@pytest.mark.parametrize("lookup", LOOKUPS)
@pytest.mark.parametrize("case", sorted(OUTSIDE))
def test_an_index_outside_the_table_is_refused_next_to_or_inside_a_recurrent_layer(case: str, lookup: str) -> None:
    """Before: for the tied table and ``F.embedding`` on the LSTM's weight, the middle-row cases
    returned a clipped sum (another example's row read); the own table was refused already."""
    # Prepare: one token of one row outside the table of 8
    row, index = OUTSIDE[case]
    model, (x, y) = _Text(lookup), _tokens()
    x[row, 1] = index
    # Execute / Assert: a library error, torch's chained; the model as it was
    assert refusal_leaving_the_model(model, x, y).__cause__ is not None


@pytest.mark.parametrize("lookup", LOOKUPS)
def test_in_range_tokens_keep_each_example_s_own_gradient(lookup: str) -> None:
    """The check changes no gradient: the clipped sum (a clip that binds) equals one-at-a-time autograd."""
    assert_the_clipped_sum_is_one_at_a_time_autograd_s(partial(_Text, lookup), *_tokens())


@pytest.mark.parametrize("lookup", ["tied", "functional"])
def test_the_check_leaves_the_clipped_sum_bit_for_bit(lookup: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows the check reads are discarded: the sum is the one computed without it, to the bit."""
    import contextlib  # noqa: PLC0415

    from secagg.integrations import _torch_per_example  # noqa: PLC0415

    # Prepare
    x, y = _tokens()
    checked = torch_dp.clipped_gradient_sum(_Text(lookup), F.cross_entropy, x, y, 0.05)
    monkeypatch.setattr(_torch_per_example, "checked_lookups", lambda torch: contextlib.nullcontext())
    # Execute
    unchecked = torch_dp.clipped_gradient_sum(_Text(lookup), F.cross_entropy, x, y, 0.05)
    # Assert
    assert checked.tobytes() == unchecked.tobytes()
