"""Live trades wait for their commit as columns, not as one `Trade` per message: while a group
fills, the capture holds no per-trade objects for the garbage collector to walk, and what it
stores is still exactly the exchange's log (real capture, local exchange, real PostgreSQL)."""

from __future__ import annotations

import gc
import time

from cryptolab.capture import Capture
from cryptolab.model import Trade
from tests.e2e.test_capture import ALL, FAST, exchange, finish, wait_until

__all__ = ["exchange"]


def test_queued_live_trades_are_columns_and_are_stored_exactly(dsn: str, exchange) -> None:
    ex = exchange(symbols=["btcusdt"], rate=400)
    time.sleep(2.0)  # ~800 trades printed before it connects: a catch-up from REST, queued as rows
    # a long window and a large group: the rows of the last seconds wait in memory
    opts = {**FAST, "commit_window": 4.0, "commit_rows": 100_000}
    cap = Capture(["btcusdt"], source=ex.ws_url, **opts, **ALL)
    cap.start()
    try:
        wait_until(lambda: cap.status().rows_stored > 0, 20, "a first commit")
        # the catch-up from REST (ids printed before it connected) is queued as rows: once two
        # more turns have committed, none of them is held any more
        c0 = cap.status().commits
        wait_until(lambda: cap.status().commits >= c0 + 2, 30, "two more commits")
        gc.collect()
        before = sum(1 for o in gc.get_objects() if type(o) is Trade)  # other tests' rows, still held
        wait_until(lambda: cap.status().queue_depth >= 400, 20, "a group to fill")
        sink = cap._sink
        assert sink is not None
        queued = cap.status().queue_depth
        gc.collect()
        trades = sum(1 for o in gc.get_objects() if type(o) is Trade) - before
        in_columns, as_rows = sink.queued_columns(), len(sink.trades)
        assert in_columns >= 400 and as_rows == 0, (in_columns, as_rows)
        assert trades < queued // 10, f"{trades} Trade objects alive while {queued} trades wait"
        time.sleep(0.5)
    finally:
        finish(ex, cap, dsn, ["btcusdt"])


def test_large_groups_go_by_binary_copy_and_are_stored_exactly(dsn: str, exchange) -> None:
    """A second's group of 1,500 live trades is ≥ COPY_MIN_ROWS: it goes by binary COPY
    (storage/trade_copy.py), and the trades and bars stored are still the exchange's log."""
    ex = exchange(symbols=["btcusdt"], rate=1_500)
    opts = {**FAST, "commit_window": 1.0, "commit_rows": 100_000}
    cap = Capture(["btcusdt"], source=ex.ws_url, **opts, **ALL).start()
    try:
        wait_until(lambda: cap.status().copied >= 2, 30, "two groups stored by COPY")
    finally:
        st = finish(ex, cap, dsn, ["btcusdt"])
    assert st.copied >= 2 and st.appended >= st.copied and st.gaps_lost == 0
