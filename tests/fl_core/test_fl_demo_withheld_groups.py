"""The demo's round line groups identical withheld reasons and caps how many it prints.

:func:`fl_core.demo_output.row` listed every withheld (rejected) hospital with its reason, so one
round of the demo's 100 hospitals could print 100 reasons on one line. It now prints each reason
once with how many hospitals gave it (the most frequent first, a single hospital named), at most
:data:`~fl_core.demo_output.MAX_REASON_GROUPS` of them, then how many more reasons; the round's
record keeps every (hospital, reason).
"""

from __future__ import annotations

from fl_core.demo_output import MAX_REASON_GROUPS, row, withheld_note
from fl_core.fedavg import RoundRecord


def _record(rejected: tuple[tuple[int, str], ...]) -> RoundRecord:
    clients = tuple(range(100))
    return RoundRecord(
        round=3, accuracy=0.9, loss=0.3, aggregation_s=0.01, bytes_per_client=100.0, sampled=clients,
        dropouts=(), included=clients[len(rejected):], rejected=rejected,
    )  # fmt: skip


def test_identical_reasons_are_counted_once_and_a_single_hospital_is_named() -> None:
    # Prepare: hospitals 0..2 share a reason, hospital 7 has its own
    rejected = ((0, "NaN values"), (1, "NaN values"), (2, "NaN values"), (7, "too long"))
    # Execute
    line = row(_record(rejected))
    # Assert: each reason once, with its count; the single one names its hospital
    assert "withheld 3 hospitals: NaN values; hospital 7: too long" in line, line
    assert line.count("NaN values") == 1, line


def test_at_most_the_cap_of_groups_is_printed_then_how_many_more_reasons() -> None:
    # Prepare: 100 hospitals, 8 distinct reasons (reason k given by k + 1 hospitals, the rest by reason 7)
    rejected = []
    client = 0
    for k in range(8):
        for _ in range(k + 1 if k < 7 else 100 - 28):
            rejected.append((client, f"reason {k}"))
            client += 1
    # Execute
    note = withheld_note(tuple(rejected))
    line = row(_record(tuple(rejected)))
    # Assert: the most frequent first, MAX_REASON_GROUPS groups, then the rest counted
    assert MAX_REASON_GROUPS == 5
    assert note.startswith("withheld 72 hospitals: reason 7; 7 hospitals: reason 6; "), note
    assert sum(f"reason {k}" in note for k in range(8)) == MAX_REASON_GROUPS, note
    assert note.endswith("and 3 more reasons (6 hospitals)"), note
    assert note in line and len(line) < 250, line


def test_the_cap_itself_prints_every_group_and_no_more_reasons() -> None:
    # The bound: exactly MAX_REASON_GROUPS reasons are all printed, one past it is counted
    at_cap = tuple((client, f"reason {client}") for client in range(MAX_REASON_GROUPS))
    past = tuple((client, f"reason {client}") for client in range(MAX_REASON_GROUPS + 1))
    assert "more reason" not in withheld_note(at_cap)
    assert withheld_note(past).endswith("and 1 more reason (1 hospital)"), withheld_note(past)


def test_a_hospital_listed_twice_for_a_reason_is_counted_once() -> None:
    # Prepare: hospital 4 is in the record twice with one reason (withheld, then named by the
    # aggregator's errors too), hospital 5 once
    rejected = ((4, "NaN values"), (4, "NaN values"), (5, "too long"))
    # Execute
    note = withheld_note(rejected)
    # Assert: how many hospitals gave each reason, not how many entries: one names its hospital
    assert note == "withheld hospital 4: NaN values; hospital 5: too long", note
    # ... and the reasons past the cap count their hospitals once, one giving two of them
    past = (*((client, f"reason {client}") for client in range(MAX_REASON_GROUPS)), (9, "last"), (9, "other"))
    assert withheld_note(past).endswith("and 2 more reasons (1 hospital)"), withheld_note(past)
