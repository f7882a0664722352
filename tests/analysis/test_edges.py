"""Answers that stay right at the edges of a range: halts overlapping it, the tick rule's previous
trade, latency of loaded recordings, empty ranges, psql after an archive drop, psql defaults.

Real PostgreSQL (a fresh database per test, `dsn`), real psql; nothing is mocked.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest

from cryptolab import analysis as an
from cryptolab.model import Trade, datetime_to_us
from cryptolab.storage import db
from cryptolab.storage.db import SQL_DIR
from tests.storage.test_sql_psql import psql

UTC = timezone.utc
HALT_FROM = datetime(2023, 3, 24, 11, 27, 23, tzinfo=UTC)  # the real BTCUSDT halt of 2023-03-24
HALT_TO = datetime(2023, 3, 24, 14, 0, 0, tzinfo=UTC)


def _write(dsn: str, trades: list[Trade]) -> None:
    from cryptolab.storage.writer import TradeWriter

    with db.connect(dsn) as c:
        TradeWriter(c).write(trades)


def _at(t: datetime, i: int, tid: int, price: str = "60000.10000000", maker: bool = False,
        symbol: str = "BTCUSDT", **kw: object) -> Trade:
    return Trade("binance", symbol, tid, Decimal(price), Decimal("0.00100000"), maker,
                 datetime_to_us(t) + i * 500_000, **kw)  # type: ignore[arg-type]


def _halt_market() -> list[Trade]:
    """Trades every 0.5 s from 10:50 up to the halt, then from 14:00 to 14:20, ids consecutive."""
    out: list[Trade] = []
    tid = 1000
    t0 = datetime(2023, 3, 24, 10, 50, tzinfo=UTC)
    n_before = int((HALT_FROM - t0).total_seconds() * 2) + 1
    for i in range(n_before):
        out.append(_at(t0, i, tid))
        tid += 1
    for i in range(20 * 60 * 2):
        out.append(_at(HALT_TO, i, tid))
        tid += 1
    return out


def _halts(a: str, b: str) -> list[tuple[datetime, datetime, bool, bool]]:
    got = an.halts("BTCUSDT", f"2023-03-24T{a}Z", f"2023-03-24T{b}Z", min_halt="30s")
    return [(h["halt_start"], h["halt_end"], h["extends_before"], h["extends_after"]) for h in got.to_dicts()]


def _halt_ranges() -> dict[str, list[tuple[datetime, datetime, bool, bool]]]:
    return {ab: _halts(*ab.split("/")) for ab in
            ("11:00/13:00", "13:00/13:30", "12:00/15:00", "11:00/15:00", "10:50/11:20", "14:05/14:10")}


def test_every_halt_overlapping_the_range_is_reported_and_flagged(dsn: str) -> None:
    _write(dsn, _halt_market())
    got = _halt_ranges()
    assert got["11:00/13:00"] == [(HALT_FROM, HALT_TO, False, True)]  # ends inside the halt
    assert got["13:00/13:30"] == [(HALT_FROM, HALT_TO, True, True)]  # wholly inside
    assert got["12:00/15:00"] == [(HALT_FROM, HALT_TO, True, False)]  # starts inside
    assert got["11:00/15:00"] == [(HALT_FROM, HALT_TO, False, False)]  # contains it
    assert got["10:50/11:20"] == [] and got["14:05/14:10"] == []  # before and after: none
    for a, b in (("11:00", "13:00"), ("13:00", "13:30")):
        rep = an.quality_report("BTCUSDT", f"2023-03-24T{a}Z", f"2023-03-24T{b}Z")
        row = rep.filter(pl.col("check") == "halts").row(0, named=True)
        assert row["count"] == 1 and "extending past the range" in row["detail"], row


def test_halts_overlapping_the_range_are_the_same_after_archive_and_drop(dsn: str, tmp_path: Path) -> None:
    from cryptolab.archive import archive

    _write(dsn, _halt_market())
    before = _halt_ranges()
    rep = archive(to=str(tmp_path / "arch"), drop=True, today=date(2023, 3, 26))
    assert rep.dropped == [date(2023, 3, 24)]
    assert _halt_ranges() == before


def test_tick_rule_takes_the_previous_trade_only_when_its_id_is_adjacent(dsn: str) -> None:
    old = datetime(2023, 1, 2, tzinfo=UTC)
    day = datetime(2024, 5, 6, 12, tzinfo=UTC)
    far = [_at(old, 0, 1000, "10.0")]  # 16 months and many ids earlier, far below
    near = [_at(day, 0, 5000, "20.0"), _at(day, 1, 5001, "20.0"), _at(day, 2, 5002, "19.0")]
    _write(dsn, far + near)
    got = an.cvd("BTCUSDT", day, day + timedelta(minutes=1), "1m", tick_rule=True).row(0, named=True)
    # 5000 has no stored trade 4999: unknown, and 5001 (same price) stays unknown; 5002 is a down-tick
    assert (got["classified"], got["tick_delta"]) == (1, Decimal("-0.001"))
    _write(dsn, [_at(day, -1, 4999, "19.5")])  # now the adjacent trade is stored, before start
    got = an.cvd("BTCUSDT", day, day + timedelta(minutes=1), "1m", tick_rule=True).row(0, named=True)
    assert (got["classified"], got["tick_delta"]) == (3, Decimal("0.001"))  # up, up (same price), down


def test_latency_does_not_apply_to_a_loaded_stream_recording(dsn: str, make_dumps: Any) -> None:
    from cryptolab.history.load import load_files

    files, trades = make_dumps(n=100, symbol="ETHUSDT", seed=9)
    load_files([files["stream_gz"]], progress=False)  # recorded 2025-01-01, ingested today
    stats = an.latency_stats("ETHUSDT", interval="1d")
    assert stats["trades"].sum() == 100 and stats["streamed"].sum() == 0 and stats["history"].sum() == 100
    assert (
        stats["pipeline_p50"].null_count() == stats.height and stats["total_p99"].null_count() == stats.height
    )
    latest = an.latest_trades("ETHUSDT", limit=10)
    assert (
        latest.height == 10 and latest["pipeline"].null_count() == 10 and latest["network"].null_count() == 10
    )
    assert (
        an.clock_offset("ETHUSDT")["streamed"][0] == 100
    )  # the recorded E and receive times still tell the clock


def _two_days() -> list[Trade]:
    """BTCUSDT every 0.5 s from 2024-05-06 23:50 to 2024-05-07 00:10, ids consecutive, prices moving."""
    t0 = datetime(2024, 5, 6, 23, 50, tzinfo=UTC)
    return [
        _at(t0, i, 7000 + i, f"{60000 + (i * 7919) % 97}.{i % 100:02d}000000", maker=i % 3 == 0)
        for i in range(20 * 60 * 2)
    ]


_KLINES_FROM_TRADES = """
INSERT INTO klines (exchange, symbol, interval, open_time, close_time, open, high, low, close, volume,
                    quote_volume, trade_count, taker_buy_volume, taker_buy_quote, fetched_at)
SELECT 'binance', 'BTCUSDT', '1m', m, m + interval '59.999 seconds',
       (array_agg(price ORDER BY trade_id))[1], max(price), min(price),
       (array_agg(price ORDER BY trade_id DESC))[1],
       sum(qty), round(sum(price * qty), 8), count(*),
       coalesce(sum(qty) FILTER (WHERE NOT is_buyer_maker), 0),
       round(coalesce(sum(price * qty) FILTER (WHERE NOT is_buyer_maker), 0), 8), now()
FROM (SELECT date_trunc('minute', trade_time) AS m, * FROM trades) t GROUP BY m
"""


def _psql_rows(
    dsn: str, module: str, name_header: str, *variables: str, until: str = ""
) -> list[dict[str, str]]:
    """The rows of the query whose CSV header starts with `name_header`, from psql (up to the next
    query's header: a line starting with `until`, or else one whose first cell is not a number)."""
    r = psql(dsn, SQL_DIR / module, *variables, csv=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(name_header))
    head = lines[i].split(",")
    out = []
    for line in lines[i + 1 :]:
        cells = line.split(",")
        if len(cells) != len(head) or (line.startswith(until) if until else not cells[0][:1].isdigit()):
            break
        out.append(dict(zip(head, cells)))
    return out


def test_psql_modules_say_archived_days_are_archived_instead_of_false_alarms(
    dsn: str, tmp_path: Path
) -> None:
    from cryptolab.archive import archive

    _write(dsn, _two_days())
    with psycopg.connect(dsn) as c:
        c.execute(_KLINES_FROM_TRADES)
    rng = ("symbol=BTCUSDT", "start=2024-05-06T23:50Z", "end=2024-05-07T00:10Z")

    def both() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        rec = _psql_rows(dsn, "volume_stored.sql", "open_time,status,trades,kline_trades", *rng)
        bars = _psql_rows(dsn, "quality_check.sql", "ts,problem,bar_trades", *rng)
        return rec, bars

    rec, bars = both()
    assert len(rec) == 20 and {r["status"] for r in rec} == {"match"} and bars == []
    rep = archive(to=str(tmp_path / "arch"), before=date(2024, 5, 7), drop=True, today=date(2024, 5, 8))
    assert rep.dropped == [date(2024, 5, 6)]
    rec, bars = both()
    assert [r["status"] for r in rec] == ["archived"] * 10 + ["match"] * 10  # never 'mismatch'
    assert len(bars) == 1 and bars[0]["problem"].startswith("archived: ") and "was ok" in bars[0]["problem"]
    assert int(bars[0]["bar_trades"]) == 10 * 60 * 2
    r = psql(dsn, SQL_DIR / "latency.sql", *rng)  # any module: says up front which days it cannot see
    assert r.returncode == 0 and "note: raw trades of BTCUSDT on 2024-05-06 are archived" in r.stdout, (
        r.stdout[:500]
    )
    r = psql(
        dsn, SQL_DIR / "latency.sql", "symbol=BTCUSDT", "start=2024-05-07T00:00Z", "end=2024-05-07T00:10Z"
    )
    assert r.returncode == 0 and "are archived" not in r.stdout  # a range of kept days: no note
    # the API reads the archived day back: everything matches, nothing to report
    assert set(an.reconcile_klines("BTCUSDT", "2024-05-06T23:50Z", "2024-05-07T00:10Z")["status"]) == {
        "match"
    }
    assert an.bars_consistency("BTCUSDT", "2024-05-06T23:50Z", "2024-05-07T00:10Z").height == 0


@pytest.mark.parametrize(
    "module",
    ["price_analysis.sql", "traffic_analysis.sql", "volume_stored.sql", "quality_check.sql", "latency.sql"],
)
def test_psql_defaults_follow_the_data_like_the_api(dsn: str, module: str) -> None:
    # what the demo stores: exchange 'simulator', 90 s of ETHUSDT, nothing for binance / BTCUSDT
    t0 = datetime(2024, 5, 6, 12, 0, 10, tzinfo=UTC)
    _write(
        dsn,
        [
            Trade(
                "simulator",
                "ETHUSDT",
                1 + i,
                Decimal("3000.10"),
                Decimal("0.5"),
                i % 2 == 0,
                datetime_to_us(t0) + i * 300_000,
                source="simulator",
            )
            for i in range(300)
        ],
    )
    head = {
        "price_analysis.sql": "open_time,open,high,low,close,volume",
        "traffic_analysis.sql": "seconds,active_seconds,trades",
        "volume_stored.sql": "open_time,trades,buy_volume",
        "quality_check.sql": "source,trades,first_trade_id",
        "latency.sql": "open_time,trades,streamed",
    }[module]
    rows = _psql_rows(dsn, module, head, until="trade_id,copies" if module == "quality_check.sql" else "")
    trades = sum(int(r["trades"]) for r in rows)
    if module == "traffic_analysis.sql":  # tps_stats: one row over the range the API chose too
        api = an.tps_stats()
        assert int(rows[0]["seconds"]) == api["seconds"][0] == 90
    assert trades == 300


def test_an_empty_range_keeps_the_decimal_scales_of_a_full_one(dsn: str) -> None:
    _write(dsn, _two_days())
    full = (datetime(2024, 5, 6, 23, 55, tzinfo=UTC), datetime(2024, 5, 7, 0, 5, tzinfo=UTC))
    empty = (datetime(2024, 5, 6, 20, 0, tzinfo=UTC), datetime(2024, 5, 6, 20, 10, tzinfo=UTC))  # no trades
    calls = {
        "ohlcv": lambda a, b: an.ohlcv("BTCUSDT", a, b, "1m"),
        "cvd": lambda a, b: an.cvd("BTCUSDT", a, b, "1m"),
        "cvd_tick": lambda a, b: an.cvd("BTCUSDT", a, b, "1m", tick_rule=True),
        "tps": lambda a, b: an.tps("BTCUSDT", a, b),
        "vwap": lambda a, b: an.vwap("BTCUSDT", a, b, "1m"),
        "daily": lambda a, b: an.daily_totals("BTCUSDT", a, b),
        "live_bars": lambda a, b: an.live_bars("BTCUSDT", a, b),
    }
    for what, call in calls.items():
        f, e = call(*full), call(*empty)
        assert f.schema == e.schema, (what, f.schema, e.schema)
        both = pl.concat([f, e])  # no cast needed
        assert both.height == f.height + e.height
    assert an.ohlcv("BTCUSDT", *empty, "1m").schema["volume"] == pl.Decimal(38, 8)


def test_psql_aggregate_defaults_follow_the_stored_aggregates(dsn: str, make_dumps: Any) -> None:
    from cryptolab.history.load import load_files

    files, trades = make_dumps(n=120, symbol="SOLUSDT", seed=4)  # aggregates only, not BTCUSDT
    load_files([files["agg_ms_csv"]], progress=False)
    rows = _psql_rows(dsn, "agg_trades.sql", "open_time,open,high,low,close,volume")
    assert sum(int(r["trades"]) for r in rows) == 120  # every trade the aggregates cover, found by themselves
