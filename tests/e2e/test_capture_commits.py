"""What a capture that stores data costs the database in transactions: the lease renewal, the
member's heartbeat and the run's heartbeat ride in the data's transactions, so a busy capture
commits about once per data commit, not once more per renewal. Counted from PostgreSQL's own
counter (pg_stat_database.xact_commit), with a real capture, a real local exchange and a real
PostgreSQL."""

from __future__ import annotations

import time

from cryptolab.capture import Capture
from tests.e2e.test_capture import wait_until
from tests.e2e.test_capture_idle import committed


def test_a_storing_capture_renews_its_lease_inside_its_data_commits(dsn: str, exchange) -> None:
    ex = exchange(symbols=["btcusdt"], rate=60)
    cap = Capture(
        ["btcusdt"],
        source=ex.ws_url,
        dsn=dsn,
        heartbeat_seconds=2.0,
        lease_renew_seconds=1.0,
        commit_window=0.25,
    ).start()
    try:
        wait_until(lambda: cap.status().rows_stored > 100, 20, "the capture to store trades")
        time.sleep(3.0)
        cluster = cap._cluster
        assert cluster is not None
        a0, r0 = cluster.alone, cluster.rode
        x0, c0, t0 = committed(dsn), cap.status().commits, time.monotonic()
        time.sleep(12.0)
        x1, c1, t1 = committed(dsn), cap.status().commits, time.monotonic()
        a1, r1 = cluster.alone, cluster.rode
    finally:
        cap.stop()
    data = c1 - c0
    # the reads above commit a few transactions of their own; a backend reports its counts at
    # most once a second, so a window's edges blur by about a second of commits
    # a renewal no data commit took within RIDE_WAIT (a loaded machine) commits on its own, by design
    alone = a1 - a0
    extra = (x1 - x0 - 3 - data - alone) / (t1 - t0)
    assert data / (t1 - t0) >= 2.0, f"{data} data commits in {t1 - t0:.1f} s"
    # before: every renewal (each second) and the run's heartbeat committed on their own: ~1.0/s more
    assert r1 - r0 >= 8 and alone <= (r1 - r0) // 2, f"{r1 - r0} renewals rode, {alone} ran alone"
    # the database-wide counter also sees other sessions of a full suite run: the renewals' own
    # counts above are the proof; this bound only catches a capture committing far more than them
    assert extra <= 1.5, f"{extra:.2f} transactions a second besides {data / (t1 - t0):.2f} data commits"
