"""History joined to live, exactly once: dumps + REST + a live capture of the same symbols; a load
over trades a capture stored (ms times) stores each trade once; a kill during a load leaves the
day out, and a re-run ends equal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

from cryptolab.history import fetch_history

ROOT = Path(__file__).resolve().parents[2]


def _today() -> date:
    return datetime.now(timezone.utc).date()


def _us(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()) * 1_000_000


def _ids(dsn: str, sym: str) -> list[int]:
    with psycopg.connect(dsn) as c:
        return [
            r[0] for r in c.execute("SELECT trade_id FROM trades WHERE symbol = %s ORDER BY trade_id", (sym,))
        ]


def test_history_then_live_capture_one_gap_free_sequence(dsn: str, exchange: Any, tmp_path: Path) -> None:
    from cryptolab.capture import Capture

    ex = exchange(rate=40.0, history_days=2, history_rate=1.0, weight_budget=100_000)
    ex.inject("dump_truncate", n=1)
    ex.inject("dump_500", n=1)
    start = _today() - timedelta(days=2)
    res = fetch_history(
        ["BTCUSDT", "ETHUSDT"],
        start,
        dsn=dsn,
        dumps=ex.http_url,
        rest=ex.http_url,
        cache=tmp_path / "c",
        workers=2,
    )
    assert res.files_loaded == 4
    with Capture(["btcusdt", "ethusdt"], source=ex.ws_url, dsn=dsn) as cap:
        time.sleep(3.0)
        # history again while the capture runs: overlaps it (REST of today), stores nothing twice
        fetch_history(
            ["BTCUSDT", "ETHUSDT"], start, dsn=dsn, dumps=ex.http_url, rest=ex.http_url, cache=tmp_path / "c"
        )
        time.sleep(1.0)
    assert cap.exchange == "simulator"
    for sym in ("BTCUSDT", "ETHUSDT"):
        ids = _ids(dsn, sym)
        log = ex.trade_log(sym)
        assert ids[0] == log[0].trade_id
        assert ids == list(range(ids[0], ids[0] + len(ids))), "one id sequence, no gap, no id twice"
        assert ids[-1] > res.last_ids.get(sym, 0)
        assert len(ids) > 80_000  # two days at 0.5 trades/s per symbol, today so far, and live
        assert ids[-1] >= log[-1].trade_id - 200  # the capture reached the live edge


def test_dump_over_live_rows_in_ms_stores_each_trade_once(dsn: str, exchange: Any, tmp_path: Path) -> None:
    from cryptolab.storage import db
    from cryptolab.storage.writer import TradeWriter

    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=1, history_rate=1.0)
    day = _today() - timedelta(days=1)
    lo, hi = _us(day), _us(day + timedelta(days=1))
    ms = [t for t in ex.trade_log("BTCUSDT") if lo <= t.trade_time_us < hi]  # as a live capture stores them
    with db.connect(dsn) as conn:
        TradeWriter(conn).write([t._replace(exchange="simulator", source="live") for t in ms[1000:3000]])
        conn.commit()
    res = fetch_history("BTCUSDT", day, day, dsn=dsn, dumps=ex.http_url, rest=ex.http_url, cache=tmp_path)
    assert res.bulk_files == 0 and res.stored == len(ms) - 2000  # the idempotent path: the day had rows
    ids = _ids(dsn, "BTCUSDT")
    assert ids == [t.trade_id for t in ms]
    with psycopg.connect(dsn) as c:
        bars = c.execute("SELECT sum(trade_count), sum(volume) FROM bars_1s").fetchone()
    assert bars == (len(ms), sum(t.qty for t in ms))


def test_kill_during_a_load_then_rerun_ends_equal(dsn: str, exchange: Any, tmp_path: Path) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=2, history_rate=2.0)
    today = _today()
    first, last = today - timedelta(days=2), today - timedelta(days=1)
    cmd = [
        sys.executable,
        "-m",
        "cryptolab",
        "history",
        "BTCUSDT",
        "--from",
        str(first),
        "--to",
        str(last),
        "--dumps",
        ex.http_url,
        "--rest",
        ex.http_url,
        "--cache",
        str(tmp_path),
        "--dsn",
        dsn,
        "--workers",
        "1",
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed_in_insert = False
    with psycopg.connect(dsn, autocommit=True) as c:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            row = c.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'active' AND pid <> pg_backend_pid() AND query LIKE '%%INSERT INTO trades%%'"
            ).fetchone()
            if row and row[0]:
                proc.kill()
                killed_in_insert = True
                break
            time.sleep(0.005)
        proc.communicate(timeout=10)
        if killed_in_insert:
            time.sleep(0.5)  # the server notices the dead client and rolls its transaction back
            loaded = c.execute("SELECT count(*) FROM history_files").fetchone()
            per_day = dict(
                c.execute(
                    "SELECT (trade_time AT TIME ZONE 'UTC')::date, count(*) FROM trades GROUP BY 1"
                ).fetchall()
            )
            days_in = {r[0] for r in c.execute("SELECT first_day FROM history_files").fetchall()}
            assert loaded is not None and set(per_day) == days_in  # a day is in or out
    assert killed_in_insert, "the load finished before it could be killed"
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lo, hi = _us(first), _us(today)
    want = [t.trade_id for t in ex.trade_log("BTCUSDT") if lo <= t.trade_time_us < hi]
    assert _ids(dsn, "BTCUSDT") == want


def test_backfill_until_the_first_live_id(dsn: str, exchange: Any, tmp_path: Path) -> None:
    """The capture's join: history from a day up to (not including) the stream's first id."""
    import asyncio

    from cryptolab.history import backfill_until

    ex = exchange(symbols=["btcusdt"], rate=20.0, history_days=1, history_rate=1.0)
    time.sleep(1.0)
    log = ex.trade_log("BTCUSDT")
    first_live = log[-50].trade_id  # as if the stream's first trade were this one
    since = _today() - timedelta(days=1)
    res = asyncio.run(
        backfill_until(
            "BTCUSDT",
            first_live,
            since,
            exchange="simulator",
            rest=ex.http_url,
            dumps=ex.http_url,
            dsn=dsn,
            cache=tmp_path,
        )
    )
    assert res.last_ids == {"BTCUSDT": first_live - 1}
    lo = _us(since)
    assert _ids(dsn, "BTCUSDT") == [
        t.trade_id for t in log if t.trade_time_us >= lo and t.trade_id < first_live
    ]
