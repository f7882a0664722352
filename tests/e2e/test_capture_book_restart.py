"""kill -9 of a book capture and a restart: the book is rebuilt from storage plus a new snapshot,
the hole the dead capture left is recorded and healed, and nothing it acknowledged is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import psycopg

from cryptolab.book import OrderBook
from tests.e2e.test_capture import FAST, wait_until
from tests.e2e.test_capture_book import levels, rebuild, stored_diffs, stored_snapshots


def _capture(ex: Any, dsn: str) -> subprocess.Popen[str]:
    opts = [f"--option={k}={v}" for k, v in FAST.items()]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cryptolab",
            "capture",
            "--symbols",
            "btcusdt",
            "--source",
            ex.ws_url,
            "--quiet",
            "--streams",
            "trade,depth,bookTicker",
            "--depth-snapshot",
            "5000",
            *opts,
        ],
        env={**os.environ, "CRYPTOLAB_DSN": dsn},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        row = c.execute("SELECT count(*) FROM book_diffs").fetchone()
    return int(row[0]) if row else 0


def test_a_killed_book_capture_restarts_from_storage_and_a_new_snapshot(exchange: Any, dsn: str) -> None:
    ex = exchange(symbols=["btcusdt"], rate=100.0)
    first = _capture(ex, dsn)
    try:
        wait_until(lambda: _count(dsn) >= 20, 30, "the first capture to store diffs")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    with psycopg.connect(dsn) as c:
        row = c.execute("SELECT max(last_update_id) FROM book_diffs").fetchone()
    assert row is not None
    last_before = int(row[0])
    time.sleep(1.5)  # diffs published while no capture runs: a hole that must show
    second = _capture(ex, dsn)
    try:
        wait_until(lambda: _count(dsn) >= 60, 30, "the restarted capture to store diffs")
        time.sleep(1.0)
        second.send_signal(signal.SIGTERM)
        out, err = second.communicate(timeout=30)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, err
    assert "diffs published while not capturing" in out  # the summary says the hole
    published = {d.last_id: d for d in ex.depth_log("btcusdt")}
    with psycopg.connect(dsn) as conn:
        diffs = stored_diffs(conn, "BTCUSDT")
        snaps = stored_snapshots(conn, "BTCUSDT")
        gaps = conn.execute(
            "SELECT reason, after_update_id, before_update_id, snapshot_update_id FROM book_gaps "
            "WHERE symbol = 'BTCUSDT'"
        ).fetchall()
    # everything stored is what the exchange published, once
    assert len({d.last_id for d in diffs}) == len(diffs)
    for d in diffs:
        assert (d.first_id, d.bids, d.asks) == (
            published[d.last_id].first_id,
            published[d.last_id].bids,
            published[d.last_id].asks,
        )
    # the hole the dead capture left: recorded from the last diff stored before the kill, healed
    restart = [g for g in gaps if g[0] == "restart"]
    assert len(restart) == 1 and restart[0][1] == last_before and restart[0][3] is not None, gaps
    lost = [
        u for u in published if last_before < u < diffs[-1].last_id and u not in {d.last_id for d in diffs}
    ]
    assert lost and all(restart[0][1] < u and restart[0][2] > published[u].first_id for u in lost)
    # after the restart's snapshot the book rebuilt from storage is the exchange's own, id for id
    books = rebuild([s for s in snaps if s.last_update_id >= restart[0][3]], diffs)
    assert len(books) >= 20
    for theirs in ex.books("btcusdt", sorted(books)):
        mine = OrderBook()
        mine.load(theirs.bids, theirs.asks, theirs.last_update_id)
        assert levels(books[theirs.last_update_id]) == levels(mine), theirs.last_update_id
