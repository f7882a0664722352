"""Quality checks against the defects planted in the hand-built market."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, localcontext

import polars as pl
import psycopg
import pytest

from cryptolab import analysis as an
from cryptolab.errors import DataError
from cryptolab.model import Trade, us_to_datetime
from cryptolab.storage.writer import TradeWriter
from tests.analysis.test_data import (  # noqa: F401  (fixtures)
    BACKWARDS_ID,
    BAD_NETWORK_ID,
    BAD_PUSH_ID,
    END,
    END_US,
    GAP_IDS,
    HALT_AFTER_ID,
    MARKET,
    OUTLIER_ID,
    SECOND,
    START,
    START_US,
    SYMBOL,
    market_dsn,
    mconn,
    pdisc,
    q,
    write_market,
)


def test_gaps_are_reported_as_missing_ranges(mconn) -> None:
    got = an.gaps(SYMBOL, START, END, conn=mconn).to_dicts()
    by_id = {t.trade_id: t for t in MARKET.trades()}
    assert len(got) == 1
    g = got[0]
    assert (g["first_missing_id"], g["last_missing_id"], g["missing"]) == (
        min(GAP_IDS),
        max(GAP_IDS),
        len(GAP_IDS),
    )
    assert g["time_before"] == us_to_datetime(by_id[min(GAP_IDS) - 1].trade_time_us)
    assert g["time_after"] == us_to_datetime(by_id[max(GAP_IDS) + 1].trade_time_us)
    assert g["recorded_status"] is None  # no capture recorded it


def test_halts_are_not_gaps(mconn) -> None:
    got = an.halts(SYMBOL, START, END, min_halt="60s", conn=mconn).to_dicts()
    by_id = {t.trade_id: t for t in MARKET.trades()}
    assert [(h["last_id_before"], h["first_id_after"]) for h in got] == [(HALT_AFTER_ID, HALT_AFTER_ID + 1)]
    assert got[0]["duration"] == timedelta(
        microseconds=by_id[HALT_AFTER_ID + 1].trade_time_us - by_id[HALT_AFTER_ID].trade_time_us
    )
    # a lower threshold finds every silence between consecutive ids, as the reference does
    ts = MARKET.trades()
    want = [
        (a.trade_id, b.trade_id)
        for a, b in zip(ts, ts[1:])
        if b.trade_id == a.trade_id + 1 and b.trade_time_us - a.trade_time_us >= 1_500_000
    ]
    got2 = an.halts(SYMBOL, START, END, min_halt=Decimal("1.5"), conn=mconn)
    assert [(h["last_id_before"], h["first_id_after"]) for h in got2.to_dicts()] == want


def test_time_backwards(mconn) -> None:
    got = an.time_backwards(SYMBOL, START, END, conn=mconn).to_dicts()
    by_id = {t.trade_id: t for t in MARKET.trades()}
    assert [r["trade_id"] for r in got] == [BACKWARDS_ID]
    want = by_id[BACKWARDS_ID - 1].trade_time_us - by_id[BACKWARDS_ID].trade_time_us
    assert got[0]["backwards_by"] == timedelta(microseconds=want)


def test_timestamp_checks(mconn) -> None:
    got = {
        r["rule"]: r for r in an.timestamp_checks(SYMBOL, START, END, max_skew="1s", conn=mconn).to_dicts()
    }
    n = len(MARKET.trades())
    push = got["trade_time <= event_time"]
    assert (push["checked"], push["violations"], push["example_trade_id"]) == (n, 1, BAD_PUSH_ID)
    assert push["worst"] == timedelta(milliseconds=1)
    net = got["event_time <= received_at"]
    assert (net["violations"], net["example_trade_id"], net["worst"]) == (
        1,
        BAD_NETWORK_ID,
        timedelta(seconds=2.5),
    )
    assert got["received_at <= ingested_at"]["violations"] == 0
    # with 3 s of allowed skew the network one is tolerated
    loose = {
        r["rule"]: r
        for r in an.timestamp_checks(SYMBOL, START, END, max_skew=timedelta(seconds=3), conn=mconn).to_dicts()
    }
    assert loose["event_time <= received_at"]["violations"] == 0


def test_nulls_and_sources(mconn) -> None:
    nulls = an.null_counts(SYMBOL, START, END, conn=mconn)
    assert nulls["nulls"].sum() == 0 and set(nulls["rows"].to_list()) == {len(MARKET.trades())}
    src = an.source_counts(SYMBOL, START, END, conn=mconn).to_dicts()
    assert [(s["source"], s["trades"]) for s in src] == [("live", len(MARKET.trades()))]


def test_price_outliers_match_reference(mconn) -> None:
    got = an.price_outliers(SYMBOL, START, END, window=60, threshold="0.01", conn=mconn).to_dicts()
    trades = MARKET.by_symbol[SYMBOL]
    closes: dict[int, tuple[int, Decimal]] = {}
    for t in trades:  # close of each second = last trade by id
        s = t.trade_time_us // SECOND * SECOND
        if s not in closes or t.trade_id > closes[s][0]:
            closes[s] = (t.trade_id, t.price)
    want = []
    k = Decimal("0.01")
    with localcontext() as c:
        c.prec = 80
        for t in sorted(MARKET.trades(), key=lambda x: x.trade_id):
            s = t.trade_time_us // SECOND * SECOND
            prev = [p for ts, (_, p) in closes.items() if s - 60 * SECOND <= ts < s]
            med = pdisc(prev, 0.5)
            if med is not None and abs(t.price - med) > med * k:
                want.append((t.trade_id, t.price, med, q((t.price - med) / med, 12)))
    assert [(r["trade_id"], r["price"], r["median"], r["deviation"]) for r in got] == want
    assert OUTLIER_ID in [r["trade_id"] for r in got]


def test_dead_letters_by_reason(mconn) -> None:
    got = {
        (r["reason"], r["symbol"]): r["messages"]
        for r in an.dead_letter_counts(SYMBOL, START, END, conn=mconn).to_dicts()
    }
    assert got == {("missing_field", SYMBOL): 2, ("bad_json", None): 1}  # the other symbol's is not ours


def test_bars_agree_with_trades_until_someone_edits_trades(dsn: str) -> None:
    write_market(dsn, MARKET)
    with psycopg.connect(dsn) as c:
        assert an.bars_consistency(SYMBOL, START, END, conn=c).height == 0
        t = MARKET.trades()[100]
        c.execute("DELETE FROM trades WHERE symbol = %s AND trade_id = %s", (SYMBOL, t.trade_id))
        c.commit()
        got = an.bars_consistency(SYMBOL, START, END, conn=c).to_dicts()
    assert [(r["ts"], r["problem"], r["bar_trades"] - r["trades"]) for r in got] == [
        (us_to_datetime(t.trade_time_us // SECOND * SECOND), "bar differs", 1)
    ]


def test_duplicates_across_sources(dsn: str) -> None:
    with psycopg.connect(dsn) as c:
        w = TradeWriter(c)
        base = START_US + 10 * SECOND
        live = [
            Trade(
                "binance",
                SYMBOL,
                i,
                Decimal("100.5"),
                Decimal("1"),
                False,
                base + i * 1000,
                None,
                None,
                "live",
            )
            for i in range(1, 6)
        ]
        w.write(live)
        # the writer stores an id once (a conflicting copy is refused): copies stored by other means
        # (an older version, a plain INSERT in psql) — id 2 with a different T, id 3 that disagrees
        for t in (
            live[1]._replace(trade_time_us=live[1].trade_time_us + 5000),
            live[2]._replace(trade_time_us=live[2].trade_time_us + 5, price=Decimal("100.6")),
        ):
            c.execute(
                "INSERT INTO trades "
                "(exchange, symbol, trade_id, price, qty, is_buyer_maker, trade_time, source) "
                "VALUES (%s, %s, %s, %s, %s, %s, "
                "timestamptz 'epoch' + %s * interval '1 microsecond', 'backfill')",
                (t.exchange, t.symbol, t.trade_id, t.price, t.qty, t.is_buyer_maker, t.trade_time_us),
            )
        w.write([live[3]._replace(source="backfill")])  # same trade: not stored twice
        got = an.duplicates(SYMBOL, START, END, conn=c).to_dicts()
        rep = {r["check"]: r for r in an.quality_report(SYMBOL, START, END, conn=c).to_dicts()}
    assert [(r["trade_id"], r["copies"], r["sources"], r["same_content"]) for r in got] == [
        (2, 2, "live,backfill", True),
        (3, 2, "live,backfill", False),
    ]
    assert rep["duplicates"]["status"] == "fail" and rep["duplicates"]["count"] == 2
    assert rep["nulls"]["status"] == "info"  # event/received times are null for these rows


def test_quality_report_summarises_every_check(mconn) -> None:
    rep = an.quality_report(SYMBOL, START, END, min_halt="60s", conn=mconn)
    assert rep.columns == ["check", "status", "count", "detail"]
    r = {x["check"]: x for x in rep.to_dicts()}
    assert r["id gaps"]["status"] == "fail" and r["id gaps"]["count"] == len(GAP_IDS)
    assert r["halts"]["status"] == "info" and r["halts"]["count"] == 1
    assert r["time backwards"]["count"] == 1
    assert r["timestamp order"]["count"] == 2
    assert r["price outliers"]["status"] == "warn"
    assert r["dead letters"]["count"] == 3
    assert r["duplicates"]["status"] == "ok"
    assert r["bars vs trades"]["status"] == "ok"
    assert r["sources"]["count"] == len(MARKET.trades())
    pd = an.quality_report(SYMBOL, START, END, conn=mconn, as_="pandas")
    assert list(pd.columns) == ["check", "status", "count", "detail"]


def test_capture_runs_with_their_gaps(dsn: str) -> None:
    write_market(dsn, MARKET)
    with psycopg.connect(dsn) as c:
        run_id = c.execute(
            "INSERT INTO capture_runs "
            "(exchange, symbols, endpoint, started_at, stopped_at, status, reconnects) "
            "VALUES ('binance', ARRAY['testusdt'], 'ws://127.0.0.1:1', %s, %s, 'stopped', 2) "
            "RETURNING run_id",
            (START, END),
        ).fetchone()[0]
        c.execute(
            "INSERT INTO capture_gaps (run_id, exchange, symbol, first_missing_id, last_missing_id, status) "
            "VALUES (%s, 'binance', %s, %s, %s, 'unrecoverable')",
            (run_id, SYMBOL, min(GAP_IDS), max(GAP_IDS)),
        )
        c.commit()
        runs = an.capture_runs(SYMBOL, START, END, conn=c).to_dicts()
        gaps = an.gaps(SYMBOL, START, END, conn=c).to_dicts()
    assert [
        (r["run_id"], r["reconnects"], r["gaps_recorded"], r["gaps_unrecoverable"], r["ids_not_recovered"])
        for r in runs
    ] == [(run_id, 2, 1, 1, len(GAP_IDS))]
    assert gaps[0]["recorded_status"] == "unrecoverable"


def test_bad_quality_arguments(mconn) -> None:
    with pytest.raises(DataError, match="min_halt"):
        an.halts(SYMBOL, START, END, min_halt="0s", conn=mconn)
    with pytest.raises(DataError, match="not a duration"):
        an.halts(SYMBOL, START, END, min_halt="soon", conn=mconn)
    with pytest.raises(DataError, match="threshold"):
        an.price_outliers(SYMBOL, START, END, threshold="x", conn=mconn)
    with pytest.raises(DataError, match="unknown symbol"):
        an.quality_report("NOSUCH", START, END, conn=mconn)
    assert an.gaps(SYMBOL, START, START, conn=mconn).height == 0
    # unknown symbols are fine where nothing needs to be stored
    assert an.dead_letter_counts("NOSUCH", START, END, conn=mconn).height == 1  # the unattributed one
    _ = (pl, END_US)
