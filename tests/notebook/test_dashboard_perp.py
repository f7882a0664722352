"""The dashboard's perp beside its spot (`Dashboard(perp=True)`), headless, against a real PostgreSQL.

Spot trades and the perp's aggregates and mark prices go in through the real writers (and,
in the last test, a real capture of the local exchange's spot and perp); a refresh must then
show, per spot candle, the perp's last price, the last mark price and the basis in bps,
recomputed here independently, exact; without futures rows the panel says what to capture.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg

from cryptolab.markets import AggTrade, MarkPrice
from cryptolab.model import datetime_to_us
from cryptolab.notebook.dashboard import Dashboard
from cryptolab.storage.futures import write_agg_trades, write_mark_prices
from tests.notebook.test_dashboard import T0, make_trades, write


def perp_aggs(n: int, start: datetime, *, first_id: int = 0, span_s: float = 600.0,
              price: str = "65020.00") -> list[AggTrade]:
    out, p, base = [], Decimal(price), datetime_to_us(start)
    for i in range(n):
        p += Decimal((i * 7919) % 61 - 30) / 100
        t = base + int(i * span_s * 1e6 / n)
        out.append(
            AggTrade(
                "binance-usdm",
                "BTCUSDT",
                first_id + i,
                p,
                Decimal("0.01"),
                10 * i,
                10 * i + 2,
                t,
                i % 3 == 0,
                source="live",
            )
        )
    return out


def marks(start: datetime, seconds: int) -> list[MarkPrice]:
    base = datetime_to_us(start)
    return [
        MarkPrice(
            "binance-usdm",
            "BTCUSDT",
            base + s * 1_000_000,
            Decimal("65010.5") + Decimal(s) / 100,
            Decimal("65000.1"),
            None,
            Decimal("0.0001"),
            None,
        )
        for s in range(seconds)
    ]


def write_perp(conn: psycopg.Connection, aggs: list[AggTrade], mps: list[MarkPrice]) -> None:
    with conn.transaction():
        write_agg_trades(conn, aggs)
        write_mark_prices(conn, mps)


def test_perp_is_drawn_beside_spot_with_the_exact_basis(conn: psycopg.Connection, dsn: str) -> None:
    spot = make_trades(3000, T0)
    write(conn, spot)
    aggs = perp_aggs(900, T0 + timedelta(seconds=3), span_s=590)
    mps = marks(T0, 600)
    write_perp(conn, aggs, mps)
    dash = Dashboard(["btcusdt"], dsn=dsn, window="1h", perp=True)
    snap = dash.refresh()
    view = dash.perp_view
    assert view is not None and view.note is None and view.exchange == "binance-usdm"
    # independently: each minute's last spot trade, last perp aggregate, last mark price
    last_spot: dict[datetime, Decimal] = {}
    for t in spot:
        last_spot[bin_of_step(t.trade_time_us, snap.step)] = t.price
    last_perp = {bin_of_step(a.trade_time_us, snap.step): a.price for a in aggs}
    last_mark = {bin_of_step(m.event_time_us, snap.step): m.mark_price for m in mps}
    assert view.ts == [c["ts"] for c in snap.candles] and len(view.ts) >= 10
    for ts, perp, mark, sp, bps in zip(view.ts, view.perp, view.mark, view.spot, view.basis_bps):
        assert sp == last_spot[ts] and perp == last_perp[ts] and mark == last_mark[ts]
        want = ((perp - sp) * 10000 / sp).quantize(
            Decimal("0.01")
        )  # default 28 digits: ample for 2 places here
        assert bps == want
    assert view.last_basis_bps == view.basis_bps[-1]
    # drawn: the perp and its mark on the price axes, the basis on its own axes
    fig = dash.chart.figure
    assert len(fig.axes) == 3
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert "perp binance-usdm" in labels and "mark price" in labels
    assert (
        fig.axes[-1].get_ylabel().startswith("basis (bps)")
        and str(view.last_basis_bps) in fig.axes[-1].get_ylabel()
    )
    dash.close()
    # off by default: the dashboard reads no perp and draws no basis
    plain = Dashboard(["btcusdt"], dsn=dsn, window="1h")
    plain.refresh()
    assert plain.perp_view is None and len(plain.chart.figure.axes) == 2
    plain.close()


def test_without_futures_data_the_panel_says_what_to_capture(conn: psycopg.Connection, dsn: str) -> None:
    write(conn, make_trades(500, T0))
    dash = Dashboard(["btcusdt"], dsn=dsn, window="1h", perp=True)
    dash.refresh()
    view = dash.perp_view
    assert view is not None and not view.ts
    assert view.note is not None and "cryptolab capture --market usdm --symbols btcusdt" in view.note
    texts = [t.get_text() for t in dash.chart.figure.axes[-1].texts]
    assert any("--market usdm" in t for t in texts)
    dash.close()


def test_background_refresh_follows_the_perp(conn: psycopg.Connection, dsn: str) -> None:
    write(conn, make_trades(600, T0, span_s=120))
    write_perp(conn, perp_aggs(100, T0, span_s=100), marks(T0, 100))
    dash = Dashboard(["BTCUSDT"], dsn=dsn, window="15m", interval=0.1, perp=True)
    dash.perp_panel.every = 0.0
    dash.view.start()
    try:
        newest = perp_aggs(1, T0 + timedelta(seconds=110), first_id=100, price="65111.11")
        write_perp(conn, newest, [])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            v = dash.perp_view
            if v is not None and newest[0].price in v.perp:
                break
            time.sleep(0.05)
        v = dash.perp_view
        assert v is not None and newest[0].price in v.perp
        assert v.basis_bps[v.perp.index(newest[0].price)] is not None
    finally:
        dash.close()
    assert dash.view.ticker.last_error is None


def test_perp_beside_spot_from_a_capture_of_the_local_exchange(dsn: str, exchange: Any) -> None:
    from cryptolab.capture import Capture
    from tests.e2e.test_capture import FAST

    ex = exchange(symbols=["btcusdt"], rate=60.0, markets=["spot", "usdm"])
    spot = Capture(["btcusdt"], source=ex.ws_url, dsn=dsn, **FAST).start()
    perp = Capture(["btcusdt"], source=ex.fws_url, dsn=dsn, market="usdm", **FAST).start()
    try:
        time.sleep(4)
    finally:
        ex.stop_market()
        time.sleep(1)
        perp.stop()
        spot.stop()
    dash = Dashboard(["btcusdt"], dsn=dsn, exchange="simulator", window="1m", perp=True)
    snap = dash.refresh()
    view = dash.perp_view
    assert view is not None and view.exchange == "simulator-usdm" and view.note is None
    aggs = ex.usdm_log("agg", "btcusdt")
    with psycopg.connect(dsn) as c:
        stored = c.execute(
            "SELECT agg_id FROM agg_trades WHERE exchange = 'simulator-usdm' ORDER BY agg_id"
        ).fetchall()
    seen = {r[0] for r in stored}
    last = {}
    for a in aggs:
        if a.agg_id in seen:
            last[bin_of_step(a.trade_time_us, snap.step)] = a.price
    drawn = {ts: p for ts, p in zip(view.ts, view.perp) if p is not None}
    assert drawn and drawn == {ts: last[ts] for ts in drawn}
    for p, sp, bps in zip(view.perp, view.spot, view.basis_bps):
        if p is not None and sp is not None:
            assert bps == ((p - sp) * 10000 / sp).quantize(Decimal("0.01"))
            assert abs(bps) < 100  # the synthetic perp sits a few bps off its spot
    dash.close()


def bin_of_step(us: int, step: timedelta) -> datetime:
    s = int(step.total_seconds() * 1_000_000)
    return datetime.fromtimestamp(us // s * s / 1_000_000, timezone.utc)
