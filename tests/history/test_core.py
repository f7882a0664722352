"""History end to end against the local exchange (dumps + REST over 127.0.0.1) and a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cryptolab.errors import CryptolabError, DataError
from cryptolab.history import fetch_history

ROOT = Path(__file__).resolve().parents[2]


def _today() -> date:
    return datetime.now(timezone.utc).date()


pytestmark = pytest.mark.usefixtures("not_at_midnight")  # plans by UTC day


def _stored(dsn: str, symbol: str, exchange: str = "simulator") -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as c:
        return c.execute(
            "SELECT trade_id, price, qty, is_buyer_maker, "
            "(extract(epoch FROM trade_time) * 1000000)::bigint FROM trades "
            "WHERE exchange = %s AND symbol = %s ORDER BY trade_id", (exchange, symbol)).fetchall()


def _expected(ex: Any, symbol: str, upto_us: int | None = None) -> list[tuple[Any, ...]]:
    return [(t.trade_id, t.price, t.qty, t.is_buyer_maker, t.trade_time_us)
            for t in ex.trade_log(symbol, "MICROSECOND") if upto_us is None or t.trade_time_us < upto_us]


def _same(stored: list[tuple[Any, ...]], expected: list[tuple[Any, ...]], rest_from_us: int) -> None:
    """Equal to the exchange's log: ids, price, qty, side and µs times exactly (REST is asked
    for µs with X-MBX-TIME-UNIT, the dumps' unit since 2025)."""
    assert [r[0] for r in stored] == [r[0] for r in expected]
    for s, e in zip(stored, expected):
        assert (s[1], s[2], s[3]) == (e[1], e[2], e[3]), (s, e)
        assert isinstance(s[1], Decimal)
        assert s[4] == e[4], (s, e)


def _midnight_us(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()) * 1_000_000


def test_two_days_two_symbols_dumps_and_rest_with_faults(dsn: str, exchange: Any, tmp_path: Path) -> None:
    ex = exchange(rate=20.0, history_days=2, history_rate=1.0, weight_budget=100_000)
    # dump faults: a truncated body (resumed), a wrong checksum (retried), a 5xx (retried), a slow file
    ex.inject("dump_truncate", n=2)
    ex.inject("dump_checksum", n=1)
    ex.inject("dump_500", n=2)
    ex.inject("dump_slow", n=1, seconds=0.5)
    today = _today()
    start = today - timedelta(days=2)
    res = fetch_history(["btcusdt", "ethusdt"], start, dsn=dsn, dumps=ex.http_url, rest=ex.http_url,
                        cache=tmp_path / "cache", workers=3)
    assert res.exchange == "simulator"
    assert res.files_loaded == 4 and res.bulk_files == 4
    assert res.rest_stored > 0 and res.stored > 0
    counts = ex.fault_counts
    for k in ("dump_truncate", "dump_checksum", "dump_500", "dump_slow"):
        assert counts.get(k), (k, counts)
    t_rest = _midnight_us(today)
    for sym in ("BTCUSDT", "ETHUSDT"):
        stored = _stored(dsn, sym)
        expected = _expected(ex, sym)[: len(stored)]
        assert len(stored) > 1000
        assert stored[-1][0] >= expected[-1][0]
        _same(stored, expected, t_rest)
        # ids contiguous from the first trade of the history to the last stored
        ids = [r[0] for r in stored]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        assert ids[0] == ex.trade_log(sym)[0].trade_id
    # bars_1s agree with the trades
    with psycopg.connect(dsn) as c:
        bad = c.execute(
            "SELECT count(*) FROM (SELECT exchange, symbol, date_trunc('second', trade_time) ts, count(*) n, "
            "sum(qty) v, (array_agg(price ORDER BY trade_id))[1] o, (array_agg(price ORDER BY trade_id "
            "DESC))[1] c, max(price) h, min(price) l, sum(qty * price * price) pq2, sum(price * qty) FILTER "
            "(WHERE NOT is_buyer_maker) tbq, min(trade_id) f FROM trades GROUP BY 1, 2, 3) t FULL JOIN "
            "bars_1s b USING (exchange, symbol, ts) WHERE (b.trade_count, b.volume, b.open, b.close, b.high, "
            "b.low, b.price_sq_volume, b.first_trade_id) IS DISTINCT FROM (t.n, t.v, t.o, t.c, t.h, t.l, "
            "t.pq2, t.f) OR b.taker_buy_quote IS DISTINCT FROM coalesce(t.tbq, 0)"
        ).fetchone()
        assert bad == (0,)
        before = c.execute("SELECT count(*) FROM trades").fetchone()
    # a re-run stores nothing new (files skipped, REST overlap deduplicated)
    again = fetch_history(
        ["BTCUSDT", "ETHUSDT"], start, dsn=dsn, dumps=ex.http_url, rest=ex.http_url, cache=tmp_path / "cache"
    )
    assert again.files_skipped == 4 and again.stored == 0
    with psycopg.connect(dsn) as c:
        after = c.execute("SELECT count(*) FROM trades").fetchone()
        assert after is not None and before is not None
        assert after[0] - before[0] == again.rest_stored  # only trades printed since the first run


def test_404_inside_the_range_is_filled_by_rest(dsn: str, exchange: Any, tmp_path: Path) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=3, history_rate=0.5)
    ex.inject("dump_404", n=1)  # the first zip asked for (workers=1: the first day) is missing
    today = _today()
    res = fetch_history(
        "BTCUSDT",
        today - timedelta(days=3),
        today - timedelta(days=1),
        dsn=dsn,
        dumps=ex.http_url,
        rest=ex.http_url,
        cache=tmp_path / "c",
        workers=1,
    )
    assert len(res.files_missing) == 1 and res.rest_stored > 0
    end = _midnight_us(today)
    stored = _stored(dsn, "BTCUSDT")
    _same(
        stored, _expected(ex, "BTCUSDT", end), 0 if not res.holes else _midnight_us(today - timedelta(days=3))
    )
    # nothing of today: --to was yesterday
    assert stored[-1][4] < end


def test_bad_input_is_one_clear_error(dsn: str, exchange: Any, tmp_path: Path) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=1, history_rate=0.5)
    today = _today()
    kw: dict[str, Any] = dict(dsn=dsn, dumps=ex.http_url, rest=ex.http_url, cache=tmp_path / "c")
    with pytest.raises(DataError, match="after --to"):
        fetch_history("BTCUSDT", today, today - timedelta(days=1), **kw)
    with pytest.raises(CryptolabError, match="(?i)unknown symbol"):
        fetch_history("NOPEUSDT", today - timedelta(days=1), **kw)
    with pytest.raises(DataError, match="not a date"):
        fetch_history("BTCUSDT", "2025-13-01", **kw)
    # checksum mismatch twice: the file is named, nothing of it stored
    ex.inject("dump_checksum", n=2)
    with pytest.raises(DataError, match=rf"BTCUSDT-trades-{today - timedelta(days=1)}\.zip.*does not match"):
        fetch_history("BTCUSDT", today - timedelta(days=1), today - timedelta(days=1), **kw)
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM trades").fetchone() == (0,)
    # before the symbol traded: the exchange's history starts yesterday
    with pytest.raises(DataError, match=f"no trades before {today - timedelta(days=1)}"):
        fetch_history("BTCUSDT", today - timedelta(days=4), today - timedelta(days=1), **kw)


def test_cli_kill_during_download_then_rerun_ends_equal(dsn: str, exchange: Any, tmp_path: Path) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=2, history_rate=2.0)
    ex.inject("dump_slow", n=2, seconds=20)
    today = _today()
    start = today - timedelta(days=2)
    cache = tmp_path / "cache"
    cmd = [
        sys.executable,
        "-m",
        "cryptolab",
        "history",
        "BTCUSDT",
        "--from",
        str(start),
        "--to",
        str(today - timedelta(days=1)),
        "--dumps",
        ex.http_url,
        "--rest",
        ex.http_url,
        "--cache",
        str(cache),
        "--dsn",
        dsn,
        "--workers",
        "2",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(p.stat().st_size > 0 for p in cache.rglob("*.part")):
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=10)
    parts = list(cache.rglob("*.part"))
    assert parts, "the kill should have left a partial download"
    assert not list(cache.rglob("*.zip")), "a partial file is never taken for whole"
    out = subprocess.run(cmd + ["--no-progress"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "stored" in out.stdout
    end = _midnight_us(today)
    _same(_stored(dsn, "BTCUSDT"), _expected(ex, "BTCUSDT", end), end)
    # and the CLI's bad input: one line, exit 1
    bad = subprocess.run(
        [*cmd[:5], "--from", str(today), "--to", str(start), "--dsn", dsn],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_a_range_before_the_symbol_traded_says_so(dsn: str, exchange: Any, tmp_path: Path) -> None:
    ex = exchange(symbols=["btcusdt"], rate=5.0, history_days=1, history_rate=0.5)
    today = _today()
    with pytest.raises(
        DataError, match=f"no trades from {today - timedelta(days=5)} to {today - timedelta(days=3)}"
    ):
        fetch_history(
            "BTCUSDT",
            today - timedelta(days=5),
            today - timedelta(days=3),
            dsn=dsn,
            dumps=ex.http_url,
            rest=ex.http_url,
            cache=tmp_path,
        )
