"""Captures through the one-call append (`cryptolab_append_trades` in the database): the
capture scenarios that touch the writer most — grouped commits, reconnect overlaps, repeated
and reordered frames, a database restart, `kill -9` — store every printed trade exactly once."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.e2e import test_capture as tc
from tests.e2e import test_capture_faults as tf
from tests.storage.test_append_function import install_append_function


def _install(dsn: str) -> None:
    with psycopg.connect(dsn) as c:
        install_append_function(c)
        name = c.execute("SELECT current_database()").fetchone()
        assert name is not None
        c.execute(f'ALTER DATABASE "{name[0]}" SET track_functions = \'pl\'')
        c.commit()


def _calls(dsn: str) -> int:
    """Calls of the one-call append counted by PostgreSQL (reported by backends as they end)."""
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_user_functions"
            " WHERE funcname = 'cryptolab_append_trades'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_quiet_market_is_appended_in_one_call_per_group(dsn: str, exchange) -> None:
    _install(dsn)
    tc.test_a_quiet_market_is_committed_in_groups_through_the_append_path(dsn, exchange)
    tc.wait_until(lambda: _calls(dsn) >= 5, 15, "the capture's backend to report its calls")


def test_forced_disconnects_through_the_one_call_append(dsn: str, exchange) -> None:
    _install(dsn)
    tc.test_forced_disconnects(dsn, exchange)


def test_duplicated_and_reordered_frames_through_the_one_call_append(dsn: str, exchange) -> None:
    _install(dsn)
    tc.test_duplicated_and_reordered_frames(dsn, exchange)


@tc.needs_embedded
def test_database_restart_mid_run_through_the_one_call_append(dsn: str, exchange) -> None:
    _install(dsn)
    tc.test_database_restart_mid_run(dsn, exchange)


def test_kill_9_and_restart_through_the_one_call_append(dsn: str, exchange) -> None:
    _install(dsn)
    tc.test_kill_9_and_restart(dsn, exchange)


def test_rejected_rows_are_dead_letters_through_the_one_call_append(dsn: str, tmp_path: Path) -> None:
    _install(dsn)
    tf.test_rows_the_database_rejects_are_dead_letters_not_an_outage(dsn, tmp_path)


def test_a_book_capture_through_every_book_fault_through_the_one_call_append(exchange, dsn: str) -> None:
    """Trades and book rows in one transaction: the call inside it, the book's COPYs after."""
    from tests.e2e import test_capture_book as tb

    _install(dsn)
    tb.test_book_capture_through_every_book_fault_is_exact_and_heals(exchange, dsn)
    tc.wait_until(lambda: _calls(dsn) >= 1, 15, "the capture's backend to report its calls")


def test_perp_and_spot_with_faults_through_the_one_call_append(exchange, dsn: str) -> None:
    from tests.e2e import test_capture_usdm as tu

    _install(dsn)
    tu.test_perp_and_spot_captured_together_with_faults_are_exact(exchange, dsn)
