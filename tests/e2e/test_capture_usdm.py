"""USD-M futures captured live from the local exchange's futures market, beside its spot, with
faults on: aggregates equal the exchange's log exactly (trade ids that skip are no gap), every
mark price and liquidation sent is stored once, open interest as REST said it, the futures book
follows `pu` and heals what was dropped; a database outage loses nothing (the journal)."""

from __future__ import annotations

import os
import time
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from cryptolab.capture import Capture
from cryptolab.errors import ConfigError, SourceError
from cryptolab.exchange.tradelog import fmt8
from cryptolab.storage import embedded
from tests.e2e.test_capture import FAST, assert_exact, printed_total, stored_count, wait_until

USDM = "simulator-usdm"
ALL_STREAMS = ("aggTrade", "markPrice", "forceOrder", "depth", "bookTicker")


def q(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    try:
        with psycopg.connect(dsn) as c:
            c.execute("SET TIME ZONE 'UTC'")
            return c.execute(sql, args).fetchall()
    except psycopg.OperationalError:
        return []


def us(col: str) -> str:
    return f"(extract(epoch FROM {col}) * 1000000)::bigint"


def stored_aggs(dsn: str, sym: str) -> list[tuple[Any, ...]]:
    return q(
        dsn,
        f"SELECT agg_id, price, qty, first_trade_id, last_trade_id, {us('trade_time')}, is_buyer_maker "
        "FROM agg_trades WHERE exchange = %s AND symbol = %s ORDER BY agg_id",
        USDM,
        sym,
    )


def assert_aggs_exact(dsn: str, ex: Any, sym: str) -> None:
    log = ex.usdm_log("agg", sym)
    want = [
        (a.agg_id, a.price, a.qty, a.first_trade_id, a.last_trade_id, a.trade_time_us, a.is_buyer_maker)
        for a in log
    ]
    got = stored_aggs(dsn, sym)
    assert len(got) == len(want), f"{sym}: stored {len(got)} aggregates, the exchange printed {len(want)}"
    assert got == want
    trades = sum(last - first + 1 for _, _, _, first, last, _, _ in got)
    assert trades == sum(a.last_trade_id - a.first_trade_id + 1 for a in log)
    skips = sum(1 for a, b in zip(log, log[1:]) if b.first_trade_id > a.last_trade_id + 1)
    assert skips > 0, "the exchange skipped no trade id: the test proves nothing about false gaps"
    lost = q(
        dsn,
        "SELECT first_missing_id, last_missing_id, reason FROM capture_gaps WHERE exchange = %s AND symbol = "
        "%s AND status <> 'filled'",
        USDM,
        sym,
    )
    assert not lost, f"false or unhealed gaps: {lost}"


def assert_marks_once(dsn: str, ex: Any, sym: str) -> int:
    rows = q(
        dsn,
        f"SELECT {us('event_time')}, mark_price, index_price, est_settle_price, funding_rate, "
        f"{us('next_funding_time')} FROM mark_prices WHERE exchange = %s AND symbol = %s ORDER BY 1",
        USDM,
        sym,
    )
    assert rows, "no mark price stored"
    sent = [
        (
            m.event_time_us,
            m.mark_price,
            m.index_price,
            m.est_settle_price,
            m.funding_rate,
            m.next_funding_time_us,
        )
        for m in ex.usdm_log("mark", sym)
    ]
    window = [m for m in sent if rows[0][0] <= m[0] <= rows[-1][0]]
    assert rows == window  # every update sent while capturing, each once, exact
    liqs = q(
        dsn,
        f"SELECT {us('trade_time')}, side, price, avg_price, qty, filled_qty, status FROM liquidations "
        "WHERE exchange = %s AND symbol = %s ORDER BY 1",
        USDM,
        sym,
    )
    sent_l = [
        (x.trade_time_us, x.side, x.price, x.avg_price, x.qty, x.filled_qty, x.status)
        for x in ex.usdm_log("liquidation", sym)
        if rows[0][0] <= (x.event_time_us or 0) <= rows[-1][0]
    ]
    assert liqs == sent_l
    return len(rows)


def assert_open_interest(dsn: str, ex: Any, sym: str) -> None:
    rows = q(
        dsn,
        f"SELECT {us('ts')}, open_interest FROM open_interest WHERE exchange = %s AND symbol = %s",
        USDM,
        sym,
    )
    assert rows, "no open interest polled"
    said = {(o.time_us, o.open_interest) for o in ex.usdm_log("open_interest", sym)}
    assert set(rows) <= said


def assert_book_follows_pu(dsn: str, ex: Any, sym: str, cap_status: Any) -> None:
    published = {(d.first_id, d.last_id): d for d in ex.usdm_log("depth", sym)}
    rows = q(
        dsn,
        "SELECT first_update_id, last_update_id, bid_price::text[], bid_qty::text[], ask_price::text[], "
        "ask_qty::text[] FROM book_diffs WHERE exchange = %s AND symbol = %s ORDER BY last_update_id",
        USDM,
        sym,
    )
    assert rows
    for first, last, bp, bq, ap, aq in rows:
        d = published[(first, last)]
        assert [(Decimal(p), Decimal(x)) for p, x in zip(bp, bq)] == [
            (Decimal(fmt8(p)), Decimal(fmt8(x))) for p, x in d.bids
        ]
        assert [(Decimal(p), Decimal(x)) for p, x in zip(ap, aq)] == [
            (Decimal(fmt8(p)), Decimal(fmt8(x))) for p, x in d.asks
        ]
    gaps = q(
        dsn, "SELECT reason, snapshot_update_id FROM book_gaps WHERE exchange = %s AND symbol = %s", USDM, sym
    )
    assert any(r == "gap" and s is not None for r, s in gaps), (
        f"the dropped diff was not seen and healed: {gaps}"
    )
    assert cap_status.book[sym]["synced"]


def test_perp_and_spot_captured_together_with_faults_are_exact(exchange: Any, dsn: str) -> None:
    ex = exchange(symbols=["btcusdt"], rate=150.0, markets=["spot", "usdm"])
    spot = Capture(["btcusdt"], source=ex.ws_url, dsn=dsn, from_ids={"BTCUSDT": 1}, **FAST).start()
    perp = Capture(
        ["btcusdt"],
        source=ex.fws_url,
        dsn=dsn,
        market="usdm",
        streams=ALL_STREAMS,
        from_ids={"BTCUSDT": 0},
        open_interest_interval=0.5,
        **FAST,
    ).start()
    assert perp.exchange == USDM and spot.exchange == "simulator"
    time.sleep(1.5)
    ex.inject("gap", market="usdm", n=7)  # aggTrade messages dropped: REST by fromId heals them
    ex.inject("depth_drop", market="usdm", n=1)  # a futures diff dropped: pu breaks, the book re-syncs
    ex.inject("snapshot_stale", market="usdm", n=1)
    ex.inject("gap", n=5)  # and a spot trade gap at the same time
    time.sleep(2.0)
    ex.inject("gap", market="usdm", n=3)
    time.sleep(2.0)
    ex.stop_market()
    n = len(ex.usdm_log("agg", "btcusdt"))
    wait_until(lambda: len(stored_aggs(dsn, "BTCUSDT")) >= n, 30, f"{n} aggregates stored")
    wait_until(
        lambda: stored_count(dsn, ["btcusdt"]) >= printed_total(ex, ["btcusdt"]), 30, "spot trades stored"
    )
    time.sleep(1.2)  # one more mark price after the market stopped
    st = perp.stop()
    spot.stop()
    assert st.backfilled >= 10 and st.gaps_filled >= 2 and st.gaps_lost == 0
    assert_aggs_exact(dsn, ex, "BTCUSDT")
    assert st.futures["mark_prices"] == assert_marks_once(dsn, ex, "BTCUSDT")
    assert_open_interest(dsn, ex, "BTCUSDT")
    assert_book_follows_pu(dsn, ex, "BTCUSDT", st)
    assert_exact(dsn, ex, ["btcusdt"])  # the spot beside it, whole
    assert "futures:" in st.summary() and "at most one per symbol per second" in st.summary()


def test_futures_reconnects_lose_no_aggregate_and_store_nothing_twice(exchange: Any, dsn: str) -> None:
    ex = exchange(symbols=["btcusdt", "ethusdt"], rate=200.0, markets="spot,usdm")
    cap = Capture(
        ["btcusdt", "ethusdt"],
        source=ex.fws_url,
        dsn=dsn,
        market="usdm",
        from_ids={"BTCUSDT": 0, "ETHUSDT": 0},
        **FAST,
    ).start()
    time.sleep(1.5)
    assert ex.inject("malformed", market="usdm", variant="bad_json") >= 1  # a broken frame: a dead letter
    assert ex.inject("reset", market="usdm") >= 1
    time.sleep(1.5)
    ex.inject("stall", market="usdm", seconds=3)
    time.sleep(4.5)
    ex.stop_market()
    for sym in ("BTCUSDT", "ETHUSDT"):
        n = len(ex.usdm_log("agg", sym))
        wait_until(lambda sym=sym, n=n: len(stored_aggs(dsn, sym)) >= n, 30, f"{sym}: {n} aggregates")
    st = cap.stop()
    assert st.reconnects >= 2
    assert st.dead_letters >= 1
    assert (
        q(
            dsn,
            "SELECT count(*) FROM dead_letters WHERE exchange = %s AND reason LIKE 'invalid JSON%%'",
            USDM,
        )[0][0]
        >= 1
    )
    for sym in ("BTCUSDT", "ETHUSDT"):
        assert_aggs_exact(dsn, ex, sym)
        sent = {m.event_time_us: m for m in ex.usdm_log("mark", sym)}
        rows = q(dsn, f"SELECT {us('event_time')}, mark_price FROM mark_prices WHERE symbol = %s", sym)
        assert rows and all(
            sent[t].mark_price == p for t, p in rows
        )  # what was stored was sent, once (the key)


needs_embedded = pytest.mark.skipif(
    bool(os.environ.get("CRYPTOLAB_TEST_DSN")),
    reason="restarts the server: only with the embedded test server",
)


@needs_embedded
def test_database_outage_during_a_futures_capture_loses_nothing(exchange: Any, dsn: str) -> None:
    ex = exchange(symbols=["btcusdt"], rate=150.0, markets=["spot", "usdm"])
    cap = Capture(
        ["btcusdt"],
        source=ex.fws_url,
        dsn=dsn,
        market="usdm",
        from_ids={"BTCUSDT": 0},
        open_interest_interval=0.5,
        **FAST,
    ).start()
    time.sleep(1.5)
    embedded.stop()
    wait_until(lambda: not cap.status().database_up, 10, "the capture to notice the database is down")
    time.sleep(2.5)
    assert cap.status().journal_rows > 0
    embedded.start()
    ex.stop_market()
    n = len(ex.usdm_log("agg", "BTCUSDT"))
    wait_until(lambda: len(stored_aggs(dsn, "BTCUSDT")) >= n, 30, f"{n} aggregates stored after the outage")
    time.sleep(1.2)
    st = cap.stop()
    assert st.journal_rows == 0 and st.database_up
    assert_aggs_exact(dsn, ex, "BTCUSDT")
    assert_marks_once(dsn, ex, "BTCUSDT")  # the marks of the outage came back from the journal
    assert_open_interest(dsn, ex, "BTCUSDT")


def test_bad_futures_input_is_one_clear_line(exchange: Any, dsn: str) -> None:
    ex = exchange(symbols=["btcusdt"], markets=["spot", "usdm"])
    with pytest.raises(SourceError, match="not a USD-M futures contract.*spot-only symbol"):
        Capture(["dogeusdt"], source=ex.fws_url, dsn=dsn, market="usdm", start_timeout=3).start()
    with pytest.raises(ConfigError, match="no raw trade stream"):
        Capture(["btcusdt"], source=ex.fws_url, dsn=dsn, market="usdm", streams=("trade", "depth"))
    with pytest.raises(ConfigError, match="futures stream.*--market usdm"):
        Capture(["btcusdt"], source=ex.ws_url, dsn=dsn, streams=("markPrice",))
    with pytest.raises(SourceError, match=r"a USD-M futures contract\? add --market usdm"):
        Capture(["nosuchusdt"], source=ex.ws_url, dsn=dsn, start_timeout=3).start()  # the reverse, on spot
    ex.usdm_delist("btcusdt")
    with pytest.raises(SourceError, match=r"BTCUSDT \(SETTLING\): the contract is not trading \(delisted"):
        Capture(["btcusdt"], source=ex.fws_url, dsn=dsn, market="usdm", start_timeout=3).start()
    with pytest.raises(SourceError, match="--market usdm captures from binance"):
        Capture(["btcusdt"], source="simulator", dsn=dsn, market="usdm", start_timeout=3).start()


def test_cli_captures_a_perp_from_the_exchanges_futures_url(
    exchange: Any, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptolab.cli import main as cli

    ex = exchange(symbols=["btcusdt"], rate=100.0, markets=["spot", "usdm"])
    assert (
        cli.main(
            [
                "capture",
                "--market",
                "usdm",
                "--symbols",
                "btcusdt",
                "--source",
                ex.fws_url,
                "--seconds",
                "2.5",
                "--streams",
                "aggTrade,markPrice,forceOrder",
                "--open-interest-interval",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "as exchange 'simulator-usdm'" in out and "futures:" in out
    assert q(dsn, "SELECT count(*) FROM agg_trades WHERE exchange = %s", USDM)[0][0] > 0
    assert q(dsn, "SELECT count(*) FROM mark_prices WHERE exchange = %s", USDM)[0][0] >= 1
    assert q(dsn, "SELECT count(*) FROM open_interest WHERE exchange = %s", USDM)[0][0] >= 1
