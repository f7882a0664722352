"""The dashboard's order-book panel: the latest rebuilt book and spread / mid over the candles'
window, read in the dashboard's tick (the background thread when live)."""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg

import cryptolab.analysis as an
from cryptolab.analysis.book_synth import seed_book_from_trades
from cryptolab.notebook import Dashboard
from tests.notebook.test_dashboard import T0, make_trades, write


def test_the_book_panel_shows_the_latest_book_and_the_spread_over_the_candles(conn: psycopg.Connection,
                                                                              dsn: str) -> None:
    trades = make_trades(600, T0, span_s=300)
    write(conn, trades)
    assert seed_book_from_trades(conn, "binance", "BTCUSDT", T0, T0.replace(hour=11)) > 1000
    dash = Dashboard(["BTCUSDT"], dsn=dsn, window="15m")
    dash.widget
    dash.refresh()
    view = dash.book
    assert view is not None and view.note == ""
    want = an.book_at("BTCUSDT", None, 20, exchange="binance", conn=conn)
    assert view.book is not None and view.book.equals(want)  # the newest book, by the reader
    snap = dash.snapshot
    assert snap is not None and snap.as_of is not None
    q = an.quotes(
        "BTCUSDT", snap.candles[0]["ts"], snap.as_of + timedelta(seconds=1), exchange="binance", conn=conn
    )
    assert (
        view.top is not None and view.top.height == q.height > 2000
    )  # the stored quotes of the candles' window
    assert len(dash.chart.figure.axes) == 4  # price, spread/mid (+ its mid axis), CVD
    assert dash.depth.png.startswith(b"\x89PNG") and dash.depth.figure.axes[0].get_title(
        loc="left"
    ).startswith("BTCUSDT book @")
    # a tick inside the panel's period re-uses the read; after it, the book is read again
    assert dash.book_panel.read(dash._connection(), "binance", "BTCUSDT", T0, T0) is view
    dash.book_panel.every = 0.0
    time.sleep(0.01)
    dash.refresh()
    assert dash.book is not view and dash.book.update_id == view.update_id


def test_without_depth_data_the_panel_says_what_to_capture(conn: psycopg.Connection, dsn: str) -> None:
    write(conn, make_trades(200, T0, span_s=60))
    dash = Dashboard(["BTCUSDT"], dsn=dsn, window="15m")
    dash.refresh()
    assert dash.book is not None and dash.book.book is None
    assert "no depth data" in dash.book.note and "--streams trade,depth,bookTicker" in dash.book.note
    assert len(dash.chart.figure.axes) == 2  # the chart as before: price and CVD
    assert dash.depth.png.startswith(b"\x89PNG")
