"""Analyses from aggregate trades (agg_trades, issue 9): the same exact answers as the raw trades
they were built from, counts from last_trade_id - first_trade_id + 1, ids inside an aggregate
never gaps, a hole between aggregates a gap of exactly the missing ids, and every analysis saying
which kind of data it read (`kind="auto"`: raw trades first)."""

from __future__ import annotations

import logging
import random
import subprocess
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from cryptolab import analysis as an
from cryptolab.errors import DataError
from cryptolab.model import Trade, datetime_to_us, us_to_datetime
from cryptolab.storage import db, embedded
from cryptolab.storage.db import SQL_DIR

UTC = timezone.utc
START = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
END = datetime(2024, 3, 4, 10, 4, tzinfo=UTC)
BOTH = "BOTHUSDT"  # raw trades and the aggregates built from them
SECOND = 1_000_000


def build_trades(symbol: str, seed: int = 3) -> list[Trade]:
    """Raw trades in runs that share time, price and side (what Binance aggregates), ids from 1001."""
    rnd = random.Random(seed)
    out: list[Trade] = []
    t = datetime_to_us(START) + 250_000
    price = 4_200_000  # 42000.00 in cents
    tid = 1000
    while t < datetime_to_us(END) - 5 * SECOND:
        t += (
            rnd.choice((0, 1, 2, 3, 250, 600)) * 1000 if rnd.random() < 0.9 else 7 * SECOND
        )  # quiet seconds too
        price += rnd.choice((-2, -1, 0, 1, 2))
        side = rnd.random() < 0.45
        for _ in range(rnd.choice((1, 1, 2, 3, 5))):  # one taker order filling several makers
            tid += 1
            qty = (
                Decimal(rnd.randint(1, 99_999_999)).scaleb(-8)
                if rnd.random() < 0.1
                else Decimal(rnd.randint(1, 300_000)).scaleb(-5)
            )
            out.append(
                Trade(
                    "binance",
                    symbol,
                    tid,
                    Decimal(price).scaleb(-2),
                    qty,
                    side,
                    t,
                    t + 900,
                    t + 5000,
                    "backfill",
                )
            )
    return out


Agg = tuple[int, Decimal, Decimal, int, int, int, bool]


def aggregate(trades: list[Trade]) -> list[Agg]:
    """Binance's aggregation: consecutive trades with the same time, price and side are one
    aggregate (agg_id, price, qty, first_trade_id, last_trade_id, time_us, is_buyer_maker)."""
    aggs: list[list[Any]] = []
    for tr in trades:
        last = aggs[-1] if aggs else None
        if (
            last
            and (last[1], last[5], last[6]) == (tr.price, tr.trade_time_us, tr.is_buyer_maker)
            and last[4] + 1 == tr.trade_id
        ):
            last[2] += tr.qty
            last[4] = tr.trade_id
        else:
            aggs.append(
                [
                    500 + len(aggs),
                    tr.price,
                    tr.qty,
                    tr.trade_id,
                    tr.trade_id,
                    tr.trade_time_us,
                    tr.is_buyer_maker,
                ]
            )
    return [(int(a[0]), a[1], a[2], int(a[3]), int(a[4]), int(a[5]), bool(a[6])) for a in aggs]


def insert_aggs(conn: psycopg.Connection, symbol: str, aggs: list[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO agg_trades (exchange, symbol, agg_id, price, qty, first_trade_id, last_trade_id, "
            "trade_time, is_buyer_maker, source) "
            "VALUES ('binance', %s, %s, %s, %s, %s, %s, %s, %s, 'backfill')",
            [(symbol, a[0], a[1], a[2], a[3], a[4], us_to_datetime(a[5]), a[6]) for a in aggs],
        )
    conn.commit()


TRADES = build_trades(BOTH)
AGGS = aggregate(TRADES)


def only(symbol: str) -> list[Trade]:
    return [t._replace(symbol=symbol) for t in TRADES]


@pytest.fixture
def aconn(dsn: str) -> Iterator[psycopg.Connection]:
    """BOTHUSDT: raw trades and their aggregates; AGGUSDT: the same aggregates only."""
    from cryptolab.storage.writer import TradeWriter

    c = db.connect(dsn)
    assert TradeWriter(c).write(TRADES).inserted == len(TRADES)
    c.commit()
    insert_aggs(c, BOTH, AGGS)
    insert_aggs(c, "AGGUSDT", AGGS)
    yield c
    c.close()


def rows(frame: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = frame.to_dicts()  # Decimal == Decimal compares values, whatever the scale
    return out


def test_the_data_is_what_the_tests_rely_on() -> None:
    assert len(AGGS) < len(TRADES) * 3 // 4  # many aggregates cover several trades
    assert sum(a[4] - a[3] + 1 for a in AGGS) == len(TRADES)
    assert len({a[5] // (60 * SECOND) for a in AGGS}) >= 4  # several minutes


@pytest.mark.parametrize("interval", ["1m", "15s", "1s"])
def test_ohlcv_from_aggregates_equals_raw_trades(aconn: psycopg.Connection, interval: str) -> None:
    raw = an.ohlcv(BOTH, START, END, interval, kind="trades", conn=aconn)
    agg = an.ohlcv(BOTH, START, END, interval, kind="aggTrades", conn=aconn)
    assert raw["trades"].sum() == len(TRADES) and raw.height == agg.height
    assert rows(agg) == rows(raw)
    assert str(agg["volume"].dtype).startswith("Decimal") and str(agg["quote_volume"].dtype).startswith(
        "Decimal"
    )
    # the aggregates-only symbol, kind auto: the same
    assert rows(an.ohlcv("AGGUSDT", START, END, interval, conn=aconn)) == rows(raw)


def test_ohlcv_exact_against_python(aconn: psycopg.Connection) -> None:
    got = {
        r["open_time"]: r for r in rows(an.ohlcv("aggusdt", START, END, "1m", kind="aggTrades", conn=aconn))
    }
    for minute in range(4):
        t0 = datetime_to_us(START) + minute * 60 * SECOND
        mine = [t for t in TRADES if t0 <= t.trade_time_us < t0 + 60 * SECOND]
        r = got[us_to_datetime(t0)]
        assert r["trades"] == len(mine)  # Σ(last − first + 1)
        assert r["volume"] == sum(t.qty for t in mine)
        assert r["quote_volume"] == sum(t.price * t.qty for t in mine)
        assert r["taker_buy_volume"] == sum(t.qty for t in mine if not t.is_buyer_maker)
        assert (r["open"], r["close"]) == (mine[0].price, mine[-1].price)
        assert (r["high"], r["low"]) == (max(t.price for t in mine), min(t.price for t in mine))
        assert (r["first_trade_id"], r["last_trade_id"]) == (mine[0].trade_id, mine[-1].trade_id)


def test_tps_and_stats_from_aggregates_equal_raw_trades(aconn: psycopg.Connection) -> None:
    raw = an.tps(BOTH, START, END, kind="trades", conn=aconn)
    agg = an.tps(BOTH, START, END, kind="aggTrades", conn=aconn)
    assert raw.height == 240 and rows(agg) == rows(raw)
    assert (raw["trades"] == 0).sum() > 10  # quiet seconds are zeros in both
    assert rows(an.tps("AGGUSDT", START, END, conn=aconn)) == rows(raw)
    stats = an.tps_stats(BOTH, START, END, kind="aggTrades", conn=aconn)
    assert rows(stats) == rows(an.tps_stats(BOTH, START, END, kind="trades", conn=aconn))
    assert stats["trades"][0] == len(TRADES) and stats["max_tps"][0] > 1
    # a range that does not start or end on a whole second, as the 1 s bars read it
    a, b = START + timedelta(seconds=20, milliseconds=300), END - timedelta(seconds=70, milliseconds=400)
    assert rows(an.tps(BOTH, a, b, kind="aggTrades", conn=aconn)) == rows(
        an.tps(BOTH, a, b, kind="trades", conn=aconn)
    )
    assert rows(an.ohlcv(BOTH, a, b, "1m", kind="aggTrades", conn=aconn)) == rows(
        an.ohlcv(BOTH, a, b, "1m", kind="trades", conn=aconn)
    )


def test_cvd_from_aggregates_equals_raw_trades(aconn: psycopg.Connection) -> None:
    raw = an.cvd(BOTH, START, END, "30s", kind="trades", conn=aconn)
    agg = an.cvd(BOTH, START, END, "30s", kind="aggTrades", conn=aconn)
    assert rows(agg) == rows(raw)
    buy = sum(t.qty for t in TRADES if not t.is_buyer_maker)
    sell = sum(t.qty for t in TRADES if t.is_buyer_maker)
    assert agg["cvd"][-1] == buy - sell and agg["trades"].sum() == len(TRADES)
    assert rows(an.cvd("AGGUSDT", START, END, "30s", conn=aconn)) == rows(raw)
    with pytest.raises(DataError, match="tick_rule"):
        an.cvd(BOTH, START, END, "30s", kind="aggTrades", tick_rule=True, conn=aconn)


def test_ids_inside_aggregates_are_not_gaps(aconn: psycopg.Connection) -> None:
    assert an.gaps(BOTH, START, END, kind="trades", conn=aconn).height == 0
    assert an.gaps(BOTH, START, END, kind="aggTrades", conn=aconn).height == 0
    assert an.gaps("AGGUSDT", START, END, conn=aconn).height == 0


def test_a_hole_between_aggregates_is_a_gap_of_exactly_the_missing_ids(aconn: psycopg.Connection) -> None:
    wide = [a for a in AGGS if a[4] > a[3]]
    hole, hole2 = wide[len(wide) // 3], wide[2 * len(wide) // 3]
    with aconn.cursor() as cur:
        cur.execute(
            "DELETE FROM agg_trades WHERE symbol = 'AGGUSDT' AND agg_id = ANY(%s)", ([hole[0], hole2[0]],)
        )
    aconn.commit()
    got = rows(an.gaps("AGGUSDT", START, END, conn=aconn))
    want: list[dict[str, Any]] = []
    for h in (hole, hole2):
        before = next(a for a in AGGS if a[4] == h[3] - 1)
        after = next(a for a in AGGS if a[3] == h[4] + 1)
        want.append(
            {
                "first_missing_id": h[3],
                "last_missing_id": h[4],
                "missing": h[4] - h[3] + 1,
                "time_before": us_to_datetime(before[5]),
                "time_after": us_to_datetime(after[5]),
            }
        )
    assert [{k: g[k] for k in want[0]} for g in got] == want
    assert got[0]["duration"] == want[0]["time_after"] - want[0]["time_before"]
    # a range starting right after the hole still sees it (the last aggregate before start counts)
    after = next(a for a in AGGS if a[3] == hole[4] + 1)
    assert after[5] > next(a for a in AGGS if a[4] == hole[3] - 1)[5]
    from_after = rows(an.gaps("AGGUSDT", us_to_datetime(after[5]), END, conn=aconn))
    assert from_after[0]["first_missing_id"] == hole[3]
    # and the trade counts of the aggregates-only symbol are short by exactly those ids
    assert an.tps_stats("AGGUSDT", START, END, conn=aconn)["trades"][0] == len(TRADES) - sum(
        h[4] - h[3] + 1 for h in (hole, hole2)
    )


def test_auto_picks_trades_when_both_exist_and_says_which(
    aconn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    assert an.data_kind(BOTH, START, END, conn=aconn) == "trades"
    assert an.data_kind("AGGUSDT", START, END, conn=aconn) == "aggTrades"
    assert an.data_kind(BOTH, START, END, kind="aggTrades", conn=aconn) == "aggTrades"
    # a range with aggregates only (they were loaded for a later day): auto falls back to them
    with aconn.cursor() as cur:
        cur.execute(
            "INSERT INTO agg_trades (exchange, symbol, agg_id, price, qty, first_trade_id, last_trade_id, "
            "trade_time, is_buyer_maker, source) VALUES ('binance', %s, 99000, 1.5, 2.25, 90000, 90003, %s, "
            "false, 'backfill')",
            (BOTH, END + timedelta(days=1, seconds=5)),
        )
    aconn.commit()
    later = (END + timedelta(days=1), END + timedelta(days=1, minutes=1))
    assert an.data_kind(BOTH, *later, conn=aconn) == "aggTrades"
    assert an.tps_stats(BOTH, *later, conn=aconn)["trades"][0] == 4  # 90003 − 90000 + 1
    # which kind was read is said once per market and kind: fresh symbols for this check
    from cryptolab.storage.writer import TradeWriter

    assert TradeWriter(aconn).write(only("SAYBOTHUSDT")).inserted == len(TRADES)
    aconn.commit()
    insert_aggs(aconn, "SAYBOTHUSDT", AGGS)
    insert_aggs(aconn, "SAYAGGUSDT", AGGS)
    with (
        caplog.at_level(logging.INFO, logger="cryptolab.analysis"),
        warnings.catch_warnings(record=True) as seen,
    ):
        warnings.simplefilter("always")
        auto = an.ohlcv("SAYBOTHUSDT", START, END, "1m", conn=aconn)
        fallback = an.ohlcv("SAYAGGUSDT", START, END, "1m", conn=aconn)
    assert rows(auto) == rows(an.ohlcv(BOTH, START, END, "1m", kind="trades", conn=aconn)) == rows(fallback)
    said = [str(w.message) for w in seen if issubclass(w.category, UserWarning)]
    assert any("aggregate trades" in s and "SAYAGGUSDT" in s for s in said), said  # the fallback warns
    assert not any("SAYBOTHUSDT" in s for s in said)  # raw trades, the default: a log line, not a warning
    logged = [r.getMessage() for r in caplog.records]
    assert any(
        "reading raw trades of SAYBOTHUSDT" in m and "aggregate trades are stored" in m for m in logged
    ), logged
    with pytest.raises(DataError, match="kind"):
        an.ohlcv(BOTH, START, END, kind="klines", conn=aconn)  # type: ignore[arg-type]


def test_aggregates_only_symbol_resolves_and_loads(aconn: psycopg.Connection) -> None:
    # no symbol / no range given: aggregates count as stored data when the kind allows them
    frame = an.load_agg_trades("AGGUSDT", conn=aconn)
    assert frame.height == len(AGGS) and frame["trade_count"].sum() == len(TRADES)
    assert frame["agg_id"].to_list() == [a[0] for a in AGGS]
    assert frame["qty"].to_list() == [a[2] for a in AGGS] and str(frame["price"].dtype).startswith("Decimal")
    assert an.tps_stats("AGGUSDT", conn=aconn)["trades"][0] == len(TRADES)  # default range: the stored one
    # no symbol given: the one with the newest raw trade, even when newer aggregates of another
    # are stored (every analysis defaults to the same market); aggregates only when no raw trades are
    from cryptolab.analysis.scope import resolve_span

    insert_aggs(
        aconn,
        "NEWERUSDT",
        [(1, Decimal("2.5"), Decimal("1"), 7, 9, datetime_to_us(END) + 3600 * SECOND, True)],
    )
    assert resolve_span(aconn, None, None, None, kind="auto").symbol == BOTH
    assert resolve_span(aconn, None, None, None, kind="aggTrades").symbol == "NEWERUSDT"
    with aconn.cursor() as cur:
        cur.execute("DELETE FROM agg_trades WHERE symbol = %s", (BOTH,))
    aconn.commit()
    assert an.load_agg_trades(BOTH, conn=aconn).height == 0  # raw trades, no aggregates: empty
    with pytest.raises(DataError, match="unknown symbol 'NOSUCHUSDT'"):
        an.load_agg_trades("NOSUCHUSDT", conn=aconn)
    # an analysis that only reads raw trades says that aggregates are what is stored
    with pytest.raises(DataError, match="only aggregate trades are stored"):
        an.vwap("AGGUSDT", START, END, conn=aconn)


def test_agg_module_runs_in_psql_and_agrees(aconn: psycopg.Connection, dsn: str) -> None:
    r = subprocess.run(
        [
            str(embedded.bin_dir() / "psql"),
            dsn,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "symbol=aggusdt",
            "-v",
            f"start={START.isoformat()}",
            "-v",
            f"end={END.isoformat()}",
            "-v",
            "interval=1m",
            "--csv",
            "-f",
            str(SQL_DIR / "agg_trades.sql"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = lines.index(
        "open_time,open,high,low,close,volume,quote_volume,taker_buy_volume,taker_buy_quote,"
        "trades,first_trade_id,last_trade_id"
    )
    py = rows(an.ohlcv("AGGUSDT", START, END, "1m", conn=aconn))
    for line, row in zip(lines[header + 1 : header + 5], py):
        cells = line.split(",")
        assert (
            Decimal(cells[1]) == row["open"]
            and Decimal(cells[5]) == row["volume"]
            and int(cells[9]) == row["trades"]
        )
