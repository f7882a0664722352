"""Backpressure's decision (`read_paused`): stop above a quarter of `max_queue_rows`, go on at an
eighth, never while the database is down."""

from __future__ import annotations

import pytest

from cryptolab.capture.pressure import pause_above, read_paused, resume_at


def test_reading_stops_above_a_quarter_of_the_queue_limit() -> None:
    assert pause_above(1000) == 250 and resume_at(1000) == 125
    assert not read_paused(queued=250, paused=False, db_up=True, max_queue_rows=1000)
    assert read_paused(queued=251, paused=False, db_up=True, max_queue_rows=1000)


def test_a_paused_capture_goes_on_reading_only_at_an_eighth() -> None:
    # hysteresis: between the marks the state stays as it is (no flapping at one mark)
    for queued in (126, 200, 250, 251, 10_000):
        assert read_paused(queued=queued, paused=True, db_up=True, max_queue_rows=1000)
    for queued in (0, 1, 125):
        assert not read_paused(queued=queued, paused=True, db_up=True, max_queue_rows=1000)
    assert not read_paused(queued=200, paused=False, db_up=True, max_queue_rows=1000)


@pytest.mark.parametrize("paused", [False, True])
@pytest.mark.parametrize("queued", [0, 300, 10**9])
def test_while_the_database_is_down_reading_never_stops(paused: bool, queued: int) -> None:
    # the journal takes the rows then, as without backpressure: an outage loses nothing
    assert not read_paused(queued=queued, paused=paused, db_up=False, max_queue_rows=1000)


def test_a_tiny_queue_limit_still_resumes_once_drained() -> None:
    # max_queue_rows < 8: both marks are 0, an empty queue reads again
    assert read_paused(queued=1, paused=False, db_up=True, max_queue_rows=3)
    assert read_paused(queued=1, paused=True, db_up=True, max_queue_rows=3)
    assert not read_paused(queued=0, paused=True, db_up=True, max_queue_rows=3)
