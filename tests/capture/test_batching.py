"""The writer's turn plan and group commit: pure, fed queue sizes and ages, milliseconds each."""

from __future__ import annotations

import pytest

from cryptolab.capture.batching import plan_turn


def test_batching_writes_to_the_database_only_when_up_and_the_journal_is_empty() -> None:
    assert plan_turn(queued=10, journal_rows=0, db_up=True, max_queue_rows=100).write_to == "database"
    t = plan_turn(queued=10, journal_rows=5, db_up=True, max_queue_rows=100)
    assert t.replay_journal and t.write_to == "journal"
    down = plan_turn(queued=10, journal_rows=0, db_up=False, max_queue_rows=100)
    assert not down.replay_journal and down.write_to == "journal" and down.spill == 0


def test_batching_spills_the_oldest_half_when_memory_passes_its_bound() -> None:
    assert plan_turn(queued=101, journal_rows=0, db_up=True, max_queue_rows=100).spill == 51
    assert plan_turn(queued=100, journal_rows=0, db_up=True, max_queue_rows=100).spill == 0


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
