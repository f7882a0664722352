"""`Capture(since=…)` / `cryptolab capture --since`: history joined to the live stream with no gap.

The local exchange has a deterministic past of two days whose ids run on into its live
stream; it serves that past as dumps and REST, like Binance. Real sockets, real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from cryptolab.capture import Capture
from tests.e2e.test_capture import FAST, wait_until

pytestmark = pytest.mark.usefixtures("not_at_midnight")  # plans by UTC day


def stored_ids(dsn: str, symbol: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as c:
        return c.execute(
            "SELECT trade_id, price, qty, is_buyer_maker FROM trades WHERE symbol = %s ORDER BY trade_id",
            (symbol,),
        ).fetchall()


def test_since_joins_history_and_live_with_the_id_sequence_whole(dsn: str, exchange) -> None:
    ex = exchange(
        symbols=["btcusdt", "ethusdt"], rate=40.0, history_days=2, history_rate=1.0, weight_budget=100_000
    )
    since = (datetime.now(timezone.utc).date() - timedelta(days=2)).isoformat()
    cap = Capture(["btcusdt", "ethusdt"], source=ex.ws_url, since=since, **FAST).start()
    try:
        wait_until(
            lambda: (
                all(v.startswith("history joined") for v in cap.status().history.values())
                and len(cap.status().history) == 2
            ),
            120,
            "the history to be joined",
        )
        time.sleep(1.5)  # live trades after the join
        ex.stop_market()
        for sym in ("BTCUSDT", "ETHUSDT"):
            total = len(ex.trade_log(sym))
            wait_until(
                lambda sym=sym, total=total: len(stored_ids(dsn, sym)) >= total, 60, f"all {sym} trades"
            )
    finally:
        st = cap.stop()
    assert not st.failed and st.gaps_lost == 0
    for sym in ("BTCUSDT", "ETHUSDT"):
        log = ex.trade_log(sym)
        rows = stored_ids(dsn, sym)
        assert rows == [
            (t.trade_id, t.price, t.qty, t.is_buyer_maker) for t in log
        ]  # history + live, exactly
        assert [r[0] for r in rows] == list(range(log[0].trade_id, log[-1].trade_id + 1))
        edge = int(st.history[sym].rsplit(" ", 1)[-1])  # "history joined: … up to id N"
        with psycopg.connect(dsn) as c:
            after = c.execute(
                "SELECT count(*) FROM trades WHERE symbol = %s AND trade_id > %s "
                "AND source IN ('live', 'backfill')",
                (sym, edge),
            ).fetchone()[0]
        # two days of history, and a tail captured after the join (from the stream, or from REST
        # when a loaded machine let the gap grace pass before the frames arrived)
        assert after > 0 and len(rows) > 1000 and rows[-1][0] > edge
    # the quality analysis over the whole range reports no gap
    from cryptolab import analysis as an

    start = datetime.now(timezone.utc) - timedelta(days=3)
    gaps = an.gaps("BTCUSDT", start, datetime.now(timezone.utc) + timedelta(minutes=1), exchange="simulator")
    assert gaps.height == 0


def test_cli_since_is_offered_and_checked(dsn: str, exchange) -> None:
    ex = exchange(symbols=["btcusdt"], rate=20.0, history_days=1, history_rate=0.5)
    env = {**os.environ, "CRYPTOLAB_DSN": dsn}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cryptolab",
            "capture",
            "--symbols",
            "btcusdt",
            "--source",
            ex.ws_url,
            "--since",
            "not-a-date",
            "--seconds",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "date" in (r.stderr + r.stdout).lower()
