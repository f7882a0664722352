"""What an idle capture costs the database: transactions per second while no trade arrives.

A quiet symbol still has a lease to renew, a member heartbeat and a run heartbeat; they
should cost about one transaction per renewal, not one per statement. Measured from
PostgreSQL's own counter (pg_stat_database.xact_commit) of the capture's database, with a
real capture, a real local exchange whose market is paused, and a real PostgreSQL.
"""

from __future__ import annotations

import time

import psycopg

from cryptolab.capture import Capture
from tests.e2e.test_capture import wait_until


def committed(dsn: str) -> int:
    """Transactions committed in the database so far (the read itself counts one, on its close)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SELECT pg_stat_force_next_flush()")
        row = c.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_an_idle_capture_commits_about_once_per_lease_renewal(dsn: str, exchange) -> None:
    ex = exchange(symbols=["btcusdt"], rate=50)
    ex.pause_market()
    cap = Capture(
        ["btcusdt"], source=ex.ws_url, dsn=dsn, heartbeat_seconds=5.0, lease_renew_seconds=1.0
    ).start()
    try:
        wait_until(lambda: cap.status().symbols != (), 20, "the capture to own its symbol")
        # start-up done (resume points, the run's row, first ticks) and counted: a backend that goes
        # idle reports its counts to pg_stat_database up to 10 s later
        time.sleep(12.0)
        x0, t0 = committed(dsn), time.monotonic()
        time.sleep(15.0)
        x1, t1 = committed(dsn), time.monotonic()
    finally:
        cap.stop()
    # the reads above commit a few transactions of their own
    per_s = (x1 - x0 - 3) / (t1 - t0)
    # one transaction a lease renewal (every second), carrying the member's heartbeat, the look at
    # the others and, every 5 s, the run's heartbeat: 1.0 a second measured; before, the renewal's
    # statements committed apart and the run's heartbeat on its own (3.2 a second measured)
    assert per_s <= 1.3, f"an idle capture commits {per_s:.2f} transactions a second"
