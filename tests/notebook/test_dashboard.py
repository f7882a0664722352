"""The dashboard's refresh step, headless, against a real PostgreSQL.

Trades go in through the real writer; one `refresh()` must then show the newest trade
in the tiles and the tape, and the exact session VWAP / CVD of what is stored,
checked against a plain-Python Decimal computation.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal, localcontext

import psycopg
import pytest

from cryptolab.model import Trade, datetime_to_us
from cryptolab.notebook.dashboard import Dashboard
from cryptolab.notebook.snapshot import WINDOWS
from cryptolab.storage.writer import TradeWriter

T0 = datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc)


def make_trades(n: int, start: datetime, *, symbol: str = "BTCUSDT", first_id: int = 1, seed: int = 1,
                span_s: float = 600.0, price: str = "65000.00") -> list[Trade]:
    """n trades spread over span_s seconds from start: a random walk on a 0.01 tick."""
    rnd = random.Random(seed)
    p = Decimal(price)
    base = datetime_to_us(start)
    out = []
    for i in range(n):
        p = max(Decimal("0.01"), p + Decimal(rnd.randint(-30, 30)) / 100)
        qty = Decimal(rnd.randint(1, 200_000)) / 100_000
        t_us = base + int(i * span_s * 1e6 / n)
        out.append(
            Trade(
                "binance",
                symbol,
                first_id + i,
                p,
                qty,
                rnd.random() < 0.5,
                t_us,
                t_us + 5,
                t_us + 900,
                "simulator",
            )
        )
    return out


def write(conn: psycopg.Connection, trades: list[Trade]) -> None:
    TradeWriter(conn).write(trades)


def expected_session(trades: list[Trade], day: datetime) -> tuple[Decimal, Decimal, Decimal]:
    """Σq, Σp·q and CVD of one UTC day, exactly (60 digits: no silent rounding)."""
    lo, hi = datetime_to_us(day), datetime_to_us(day + timedelta(days=1))
    with localcontext() as ctx:
        ctx.prec = 60
        vol = sum((t.qty for t in trades if lo <= t.trade_time_us < hi), Decimal(0))
        quote = sum((t.price * t.qty for t in trades if lo <= t.trade_time_us < hi), Decimal(0))
        cvd = sum(
            ((-t.qty if t.is_buyer_maker else t.qty) for t in trades if lo <= t.trade_time_us < hi),
            Decimal(0),
        )
    return vol, quote, cvd


def test_refresh_shows_newest_trade_and_exact_session_figures(conn: psycopg.Connection, dsn: str) -> None:
    trades = make_trades(3000, T0)
    write(conn, trades)
    dash = Dashboard(["btcusdt"], dsn=dsn, window="1h")
    dash.widget  # widgets built as in a notebook
    snap = dash.refresh()

    newest = max(trades, key=lambda t: t.trade_id)
    assert snap.last is not None and snap.last["trade_id"] == newest.trade_id
    assert snap.last["price"] == newest.price
    assert Decimal(dash.kpis["last"].value) == newest.price
    assert dash.kpis["last"].widget.value == dash.kpis["last"].html()
    assert dash.tape.newest_id == newest.trade_id
    assert [t["trade_id"] for t in dash.tape.trades] == list(range(newest.trade_id, newest.trade_id - 18, -1))
    assert format(newest.price.normalize(), "f") in dash.tape.widget.value
    # rows coloured by aggressor side: is_buyer_maker true = taker sold
    side = "sell" if newest.is_buyer_maker else "buy"
    assert f'data-side="{side}"' in dash.tape.html().split("<tbody>")[1].split("</tr>")[0]

    vol, quote, cvd = expected_session(trades, T0.replace(hour=0))
    assert snap.session_volume == vol and snap.session_quote_volume == quote
    assert snap.session_cvd == cvd
    with localcontext() as ctx:
        ctx.prec = 60
        assert abs(snap.session_vwap - quote / vol) < Decimal("1e-20")
    first_price = min(trades, key=lambda t: t.trade_id).price
    assert snap.session_open == first_price and snap.change == newest.price - first_price

    # every trade of the window is in exactly one candle; one candle checked in full
    assert sum(c["trade_count"] for c in snap.candles) == len(trades)
    c = snap.candles[3]
    lo, hi = datetime_to_us(c["ts"]), datetime_to_us(c["ts"] + snap.step)
    inside = sorted((t for t in trades if lo <= t.trade_time_us < hi), key=lambda t: t.trade_id)
    assert (c["open"], c["close"]) == (inside[0].price, inside[-1].price)
    assert (c["high"], c["low"]) == (max(t.price for t in inside), min(t.price for t in inside))
    assert dash.chart.png.startswith(b"\x89PNG")
    widget = dash.chart.widget  # an interactive ipympl canvas, or the PNG image without ipympl
    assert type(widget).__name__ == "Canvas" or bytes(widget.value) == dash.chart.png
    assert snap.volatility is not None and snap.volatility > 0
    last_s = datetime_to_us(snap.as_of)  # the newest stored second: tps counts the last 10 seconds
    recent = sum(1 for t in trades if last_s - 9_000_000 <= t.trade_time_us < last_s + 1_000_000)
    assert snap.trades_per_s == pytest.approx(recent / 10)


def test_new_trades_change_the_next_refresh(conn: psycopg.Connection, dsn: str) -> None:
    trades = make_trades(500, T0, span_s=120)
    write(conn, trades)
    dash = Dashboard(["BTCUSDT"], dsn=dsn, window="5m")
    first = dash.refresh()
    png1 = dash.chart.png
    more = make_trades(200, T0 + timedelta(seconds=121), first_id=501, seed=2, span_s=30, price="65100.00")
    write(conn, more)
    second = dash.refresh()
    assert first.last["trade_id"] == 500 and second.last["trade_id"] == 700
    assert dash.tape.newest_id == 700
    assert Decimal(dash.kpis["last"].value) == more[-1].price
    assert dash.chart.png != png1
    dash.close()


def test_session_vwap_and_cvd_restart_at_midnight(conn: psycopg.Connection, dsn: str) -> None:
    midnight = datetime(2024, 3, 6, tzinfo=timezone.utc)
    trades = make_trades(1200, midnight - timedelta(minutes=10), span_s=1200)  # 23:50 → 00:10
    write(conn, trades)
    dash = Dashboard(["BTCUSDT"], dsn=dsn, window="1h")
    snap = dash.refresh()
    vol, quote, cvd = expected_session(trades, midnight)
    assert snap.session_cvd == cvd and snap.session_volume == vol
    after = [t for t in trades if t.trade_time_us >= datetime_to_us(midnight)]
    assert snap.session_open == after[0].price
    # the last candle before midnight carries the previous day's cumulative CVD
    before = [c for c in snap.candles if c["ts"] < midnight]
    _, _, cvd_prev = expected_session(trades, midnight - timedelta(days=1))
    assert before[-1]["cvd"] == cvd_prev


def test_empty_database_and_unknown_window(dsn: str) -> None:
    dash = Dashboard(["ETHUSDT"], dsn=dsn)
    snap = dash.refresh()
    assert snap.last is None and snap.candles == []
    assert "no trades" in dash.kpis["last"].html()
    assert dash.chart.png.startswith(b"\x89PNG")
    from cryptolab.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown window"):
        Dashboard(["ETHUSDT"], dsn=dsn, window="7m")
    assert set(WINDOWS) >= {"1m", "15m", "1h"}


def test_background_refresh_follows_new_trades(conn: psycopg.Connection, dsn: str) -> None:
    """The timer thread keeps the tape current while this (main) thread does other work."""
    write(conn, make_trades(100, T0, span_s=10))
    dash = Dashboard(["BTCUSDT"], dsn=dsn, window="1m", interval=0.1)
    dash.view.start()
    try:
        write(conn, make_trades(50, T0 + timedelta(seconds=11), first_id=101, seed=3, span_s=5))
        deadline = time.monotonic() + 10
        while dash.tape.newest_id != 150 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dash.tape.newest_id == 150
    finally:
        dash.close()
    assert not dash.view.ticker.running
    assert dash.view.ticker.ticks >= 1 and dash.view.ticker.last_error is None


def test_cached_ticks_equal_a_fresh_read(conn: psycopg.Connection, dsn: str) -> None:
    """The dashboard keeps closed candles and the session prefix between ticks; what it
    shows must equal reading everything afresh, as new trades arrive."""
    from cryptolab.notebook.snapshot import read_snapshot

    write(conn, make_trades(4000, T0, span_s=1800))  # 10:00 → 10:30
    dash = Dashboard(["BTCUSDT"], dsn=dsn, window="15m")
    dash.refresh()
    assert dash.cache.candles and dash.cache.prefix  # warm
    next_id = 4001
    for k in range(3):  # new seconds, a new candle, then past the next 15-minute checkpoint
        more = make_trades(
            300, T0 + timedelta(seconds=1801 + 400 * k), first_id=next_id, seed=10 + k, span_s=300
        )
        write(conn, more)
        next_id += 300
        cached = dash.refresh()
        with psycopg.connect(dsn) as fresh_conn:
            fresh = read_snapshot(fresh_conn, "BTCUSDT", "15m")
        assert cached.candles == fresh.candles
        assert (cached.session_vwap, cached.session_cvd, cached.session_volume) == (
            fresh.session_vwap,
            fresh.session_cvd,
            fresh.session_volume,
        )
        assert cached.last == fresh.last and cached.volatility == fresh.volatility
    dash.close()


def test_tick_against_a_capture_from_the_local_exchange(dsn: str) -> None:
    """The dashboard's own Start-capture path, against the local exchange over real
    sockets; after one tick the tiles and the tape show the exchange's newest trade."""
    from cryptolab.exchange.local import LocalExchange

    with LocalExchange(symbols=["btcusdt", "ethusdt"], rate=100, seed=5) as ex:
        dash = Dashboard(["BTCUSDT", "ETHUSDT"], source=ex.ws_url, dsn=dsn, window="1m")
        dash.widget  # as in the notebook: buttons, status line
        dash.start_capture()
        try:
            time.sleep(3)
            assert "capturing BTCUSDT, ETHUSDT" in dash._capture_status.value
            ex.stop_market()
            log = ex.trade_log("btcusdt")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                snap = dash.refresh()
                if snap.last is not None and snap.last["trade_id"] == log[-1].trade_id:
                    break
                time.sleep(0.2)
            newest = max(log, key=lambda t: t.trade_id)
            assert snap.last["trade_id"] == newest.trade_id and snap.last["price"] == newest.price
            assert Decimal(dash.kpis["last"].value) == newest.price
            assert dash.tape.newest_id == newest.trade_id
            assert dash.kpis["lag"].value.endswith("ms")  # the capture's receive → commit lag
            dash.symbol = "ETHUSDT"
            eth_newest = max(t.trade_id for t in ex.trade_log("ethusdt"))
            deadline = time.monotonic() + 20
            while (eth := dash.refresh()).last is None or eth.last["trade_id"] != eth_newest:
                assert time.monotonic() < deadline, "ETHUSDT's newest trade never showed"
                time.sleep(0.2)
            assert dash.tape.newest_id == eth_newest
        finally:
            dash.close()
    assert not dash.capture.status().running
    assert "stopped" in dash._capture_status.value


def test_showing_again_replaces_the_live_dashboard(conn: psycopg.Connection, dsn: str) -> None:
    """Re-running the notebook cell: the earlier dashboard stops (timer and capture)."""
    write(conn, make_trades(200, T0, span_s=60))
    first = Dashboard(["BTCUSDT"], dsn=dsn, window="1m", interval=0.2)
    first.show(live=True)
    assert first.view.ticker.running and first.snapshot is not None
    second = Dashboard(["BTCUSDT"], dsn=dsn, window="5m", interval=0.2)
    second.show(live=True)
    try:
        assert not first.view.ticker.running and second.view.ticker.running
    finally:
        second.close()
    static = Dashboard(["BTCUSDT"], dsn=dsn)
    static.show(live=False)  # papermill: one render, no thread
    assert not static.view.ticker.running and static.chart.png.startswith(b"\x89PNG")


def test_a_capture_error_stays_until_the_user_acts(dsn: str) -> None:
    """'cannot reach …' must not be replaced by 'capture stopped' at the next refresh."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dash = Dashboard(["btcusdt"], dsn=dsn, source=f"ws://127.0.0.1:{port}", exchange="binance")
    dash.widget  # the status line exists
    dash._guard(dash.start_capture)
    end = time.monotonic() + 30
    while dash.error is None and time.monotonic() < end:
        dash.refresh()
        time.sleep(0.2)
    assert dash.error, dash._capture_status.value
    shown = dash._capture_status.value
    assert 'data-error="1"' in shown
    for _ in range(5):  # refreshes do not hide it
        dash.refresh()
        time.sleep(0.1)
    assert dash._capture_status.value == shown
    dash._act(dash.stop_capture)  # the user acts: the error is acknowledged
    assert dash.error is None and 'data-error=""' in dash._capture_status.value
    dash.close()


def test_little_data_gets_finer_candles_and_the_price_axis_holds_the_bands(
    conn: psycopg.Connection, dsn: str
) -> None:
    """30 s of data in a 15 min window: 1 s candles from the first trade on, not three
    10 s candles squeezed to the right; VWAP and its ±2σ band inside the price axis."""
    trades = make_trades(600, T0, span_s=30.0)
    write(conn, trades)
    conn.commit()
    dash = Dashboard(None, dsn=dsn, window="15m")  # symbols and exchange from the data
    assert dash.symbols == ["BTCUSDT"] and dash.exchange == "binance"
    snap = dash.refresh()
    assert snap.step == timedelta(seconds=1) and len(snap.candles) >= 29
    assert snap.candles[0]["ts"] == T0  # the chart starts at the first trade
    lo, hi = dash.chart.figure.axes[0].get_ylim()
    bands = [float(c["vwap"]) + k * c["sigma"] for c in snap.candles for k in (-2, 2)]
    assert lo <= min(bands) and hi >= max(bands)
    dash.close()


def test_tiles_do_not_describe_a_capture_that_is_not_running(conn: psycopg.Connection, dsn: str) -> None:
    six_min_ago = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=6, seconds=30)
    write(conn, make_trades(600, six_min_ago, span_s=30.0))  # a busy half minute, 6 minutes ago; no capture
    dash = Dashboard(["btcusdt"], dsn=dsn, window="15m")
    snap = dash.refresh()
    assert snap.trades_per_s > 10  # the snapshot keeps what the data says about its last 10 s ...
    tps, lag = dash.kpis["tps"].state, dash.kpis["lag"].state
    assert tps.value == "–" and "newest 6 min ago" in tps.sub  # ... the tiles do not call it a rate of now
    assert lag.value == "–" and "no capture running" in lag.sub and "6 min ago" in lag.sub
    fresh = datetime.now(timezone.utc) - timedelta(seconds=3)
    write(
        conn, make_trades(20, fresh, first_id=10_000, span_s=2.0)
    )  # trades stored just now (a capture elsewhere)
    dash.refresh()
    assert dash.kpis["tps"].value != "–" and dash.kpis["lag"].value.endswith("ms")


def test_another_symbol_or_window_lets_go_of_the_zoom(conn: psycopg.Connection, dsn: str) -> None:
    pytest.importorskip("ipympl")
    write(conn, make_trades(600, T0) + make_trades(600, T0, symbol="ETHUSDT", price="3000.00", seed=2))
    dash = Dashboard(["btcusdt", "ethusdt"], dsn=dsn, window="15m")
    dash.widget  # the interactive chart, as in a notebook
    dash.refresh()
    ax = dash.chart.figure.axes[0]
    ax.set_ylim(65000.0, 65001.0)  # the user zooms into BTCUSDT's prices
    dash.refresh()
    assert tuple(dash.chart.figure.axes[0].get_ylim()) == (
        65000.0,
        65001.0,
    )  # kept while nothing else changes
    dash._set(symbol="ETHUSDT")  # the symbol picker
    lo, hi = dash.chart.figure.axes[0].get_ylim()
    assert lo < 3000 < hi  # ETHUSDT's own prices, not BTCUSDT's axis
    dash.chart.figure.axes[0].set_xlim(0.0, 1.0)
    dash._set(window="1h")  # the window picker
    assert tuple(dash.chart.figure.axes[0].get_xlim()) != (0.0, 1.0)
