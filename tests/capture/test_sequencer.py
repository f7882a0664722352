"""The sequencer and gap policy: ids in, missing ranges and backfill plans out; no database, no socket."""

from __future__ import annotations

from cryptolab.capture.sequencer import GapPolicy, Sequencer


def ranges(seq: Sequencer) -> list[tuple[int, int]]:
    return [(r.lo, r.hi) for r in seq.missing]


def test_consecutive_ids_open_no_range() -> None:
    seq = Sequencer("BTCUSDT", None)
    assert all(seq.see(i, 0.0) for i in range(10, 20))
    assert seq.last_id == 19 and ranges(seq) == []


def test_a_jump_opens_a_range_and_late_ids_carve_it() -> None:
    seq = Sequencer("BTCUSDT", 100)
    assert seq.see(105, 1.0)
    assert ranges(seq) == [(101, 104)]
    assert seq.see(103, 1.1)  # late, out of order: accepted once
    assert ranges(seq) == [(101, 102), (104, 104)]
    assert not seq.see(103, 1.2)  # the same id again is a duplicate
    assert seq.see(101, 1.3) and seq.see(104, 1.3) and seq.see(102, 1.3)
    assert ranges(seq) == [] and seq.missing_ids() == 0


def test_an_id_at_or_below_last_that_was_never_missing_is_a_duplicate() -> None:
    seq = Sequencer("BTCUSDT", 50)
    assert not seq.see(50, 0.0) and not seq.see(7, 0.0)


def test_carve_range_splits_and_trims() -> None:
    seq = Sequencer("X", None, [(10, 20), (30, 40)])
    seq.carve_range(15, 32)
    assert ranges(seq) == [(10, 14), (33, 40)]
    seq.carve_range(0, 100)
    assert ranges(seq) == []


def test_missing_is_a_read_only_view() -> None:
    seq = Sequencer("X", 1)
    seq.see(5, 0.0)
    view = seq.missing
    assert isinstance(view, tuple)
    seq.see(3, 0.0)
    assert [(r.lo, r.hi) for r in view] == [(2, 4)]  # the old snapshot, not edited in place by callers
    assert ranges(seq) == [(2, 2), (4, 4)]


def test_advance_to_opens_the_range_up_to_the_exchanges_latest_id() -> None:
    seq = Sequencer("X", 10)
    assert seq.advance_to(15, 2.0) and seq.last_id == 15 and ranges(seq) == [(11, 15)]
    assert not seq.advance_to(12, 2.0)
    assert not Sequencer("X", None).advance_to(5, 0.0)


def test_gap_policy_waits_for_the_grace_then_backfills() -> None:
    seq = Sequencer("X", 0)
    seq.see(5, 10.0)
    policy = GapPolicy(grace=1.0, max_backfill=100)
    assert policy.plan(seq, 10.5).action == "wait"
    plan = policy.plan(seq, 11.0)
    assert (plan.action, plan.lo, plan.hi, plan.first_attempt, plan.give_up) == ("backfill", 1, 4, True, None)
    again = policy.plan(seq, 11.1)
    assert again.action == "backfill" and not again.first_attempt


def test_gap_policy_final_pass_ignores_the_grace() -> None:
    seq = Sequencer("X", 0)
    seq.see(3, 10.0)
    assert GapPolicy(grace=60).plan(seq, 10.0, final=True).action == "backfill"
    assert GapPolicy(grace=60).plan(Sequencer("X", 0), 10.0, final=True).action == "wait"


def test_gap_policy_gives_up_the_oldest_part_of_a_huge_range() -> None:
    seq = Sequencer("X", 0)
    seq.see(1001, 0.0)  # ids 1..1000 missing
    plan = GapPolicy(grace=0, max_backfill=300).plan(seq, 5.0)
    assert plan.give_up is not None
    assert (plan.give_up.lo, plan.give_up.hi, plan.give_up.status) == (1, 700, "unrecoverable")
    assert (plan.lo, plan.hi) == (701, 1000) and ranges(seq) == [(701, 1000)]


def test_take_open_hands_back_what_is_left_as_open_events() -> None:
    seq = Sequencer("X", 0)
    seq.see(4, 0.0)
    seq.see(9, 0.0)
    events = seq.take_open("stop")
    assert [(e.lo, e.hi, e.status) for e in events] == [(1, 3, "open"), (5, 8, "open")]
    assert ranges(seq) == []


def test_due_in_is_the_wait_until_the_first_missing_range_is_due() -> None:
    policy = GapPolicy(grace=1.0)
    quiet, holed, late = Sequencer("A", 10), Sequencer("B", 10), Sequencer("C", 10)
    assert policy.due_in([quiet], 5.0) is None
    holed.see(15, now=10.0)  # 11..14 missing since t=10
    wait = policy.due_in([quiet, holed], 10.4)
    assert wait is not None and abs(wait - 0.6) < 1e-9
    late.see(20, now=3.0)
    assert policy.due_in([quiet, holed, late], 10.4) == 0.0


def test_a_sequencer_says_when_a_range_opens_and_only_then() -> None:
    seq, opened = Sequencer("A", 10), []
    seq.on_open = lambda: opened.append(seq.last_id)
    seq.see(11, 0.0)
    seq.see(12, 0.0)
    assert opened == []
    seq.see(15, 0.0)  # 13..14 missing
    seq.see(13, 0.0)  # a late id: carved, nothing new
    assert opened == [15]
    assert seq.advance_to(20, 0.0)
    assert opened == [15, 20]
