"""The capture's pure parts, fed ids and clocks: no database, no socket, milliseconds each."""

from __future__ import annotations

import itertools

import pytest

from cryptolab.capture.backoff import ConnectBudget, backoff
from cryptolab.capture.batching import plan_turn
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


def test_backoff_grows_within_its_cap_and_never_below_a_quarter_base() -> None:
    top = list(itertools.islice(backoff(0.25, 4.0, rand=lambda: 1.0), 8))
    assert top == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    low = list(itertools.islice(backoff(0.25, 4.0, rand=lambda: 0.0), 3))
    assert low == [0.0625] * 3


def test_connect_budget_refuses_past_its_limit_until_the_window_moves() -> None:
    now = [0.0]
    budget = ConnectBudget(3, window=300, clock=lambda: now[0])
    assert [budget.take() for _ in range(4)] == [True, True, True, False]
    assert 299 < budget.wait_time() <= 300.01
    now[0] = 300.5
    assert budget.wait_time() == 0 and budget.take()


def test_batching_writes_to_the_database_only_when_up_and_the_journal_is_empty() -> None:
    assert plan_turn(queued=10, journal_rows=0, db_up=True, max_queue_rows=100).write_to == "database"
    t = plan_turn(queued=10, journal_rows=5, db_up=True, max_queue_rows=100)
    assert t.replay_journal and t.write_to == "journal"
    down = plan_turn(queued=10, journal_rows=0, db_up=False, max_queue_rows=100)
    assert not down.replay_journal and down.write_to == "journal" and down.spill == 0


def test_batching_spills_the_oldest_half_when_memory_passes_its_bound() -> None:
    assert plan_turn(queued=101, journal_rows=0, db_up=True, max_queue_rows=100).spill == 51
    assert plan_turn(queued=100, journal_rows=0, db_up=True, max_queue_rows=100).spill == 0


def test_dir_of_the_package_lists_the_public_api() -> None:
    import cryptolab

    names = dir(cryptolab)
    public = {"Capture", "CaptureOptions", "CaptureStatus", "CryptolabError", "connect", "settings"}
    assert public <= set(names)
    assert not [n for n in names if n.startswith("_") and n != "__version__"]
    assert all(getattr(cryptolab, n) is not None for n in names)


def test_group_commit_waits_for_the_window_or_a_full_group() -> None:
    from cryptolab.capture.batching import commit_wait

    assert (
        commit_wait(queued=0, oldest_age=0.0, window=0.2, enough_rows=250) is None
    )  # nothing: wait for a row
    assert commit_wait(queued=3, oldest_age=0.05, window=0.2, enough_rows=250) == pytest.approx(0.15)
    assert commit_wait(queued=3, oldest_age=0.2, window=0.2, enough_rows=250) == 0.0  # the oldest is due
    assert (
        commit_wait(queued=250, oldest_age=0.0, window=0.2, enough_rows=250) == 0.0
    )  # a full group goes now
    assert commit_wait(queued=1, oldest_age=0.0, window=0.0, enough_rows=250) == 0.0  # window 0: at once
