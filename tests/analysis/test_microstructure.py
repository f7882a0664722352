"""Book statistics on a small book whose every figure is worked out by hand below."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import psycopg
import pytest

from cryptolab import analysis as an
from cryptolab.book import BookSnapshot, DepthDiff, Quote
from cryptolab.errors import DataError
from cryptolab.model import Trade
from cryptolab.storage.book import BookWriter
from cryptolab.storage.writer import TradeWriter
from tests.storage.test_sql_psql import psql

T0 = 1_723_161_255_000_000  # a whole second
S = 1_000_000


def _ts(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)


def _diff(uid: int, t: int, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> DepthDiff:
    return DepthDiff("binance", "BTCUSDT", uid, uid, T0 + t, bids, asks, T0 + t + 1000)


def _quote(uid: int, t: int, b: str, bq: str, a: str, aq: str) -> Quote:
    return Quote("binance", "BTCUSDT", uid, b, bq, a, aq, T0 + t + 2000)


@pytest.fixture
def small(conn: psycopg.Connection) -> None:
    """bids 100.00×2, 99.99×1, 99.90×5 / asks 100.02×1, 100.03×3, 100.20×4 at id 100, then:
    0.1 s bid 100.01×1 · 0.5 s ask 100.02 gone · 1.2 s bid 100.01 gone, 100.00×4 · 1.7 s ask 100.02×2."""
    snap = BookSnapshot("binance", "BTCUSDT", 100, [("100.00", "2"), ("99.99", "1"), ("99.90", "5")],
                        [("100.02", "1"), ("100.03", "3"), ("100.20", "4")], T0)
    rows = [snap,
            _diff(101, S // 10, [("100.01", "1")], []),
            _diff(102, S // 2, [], [("100.02", "0")]),
            _diff(103, 12 * S // 10, [("100.01", "0"), ("100.00", "4")], []),
            _diff(104, 17 * S // 10, [], [("100.02", "2")]),
            _quote(101, S // 10, "100.01", "1", "100.02", "1"),
            _quote(102, S // 2, "100.01", "1", "100.03", "3"),
            _quote(103, 12 * S // 10, "100.00", "4", "100.03", "3"),
            _quote(104, 17 * S // 10, "100.00", "4", "100.02", "2")]
    trades = [
        Trade(
            "binance",
            "BTCUSDT",
            1,
            D("100.02"),
            D("0.5"),
            False,
            T0 + 3 * S // 10,
            None,
            T0 + 3 * S // 10 + 1000,
        ),
        Trade(
            "binance",
            "BTCUSDT",
            2,
            D("100.01"),
            D("1.5"),
            True,
            T0 + 12 * S // 10,
            None,
            T0 + 12 * S // 10 + 1000,
        ),
    ]
    BookWriter(conn).store(rows)
    TradeWriter(conn).write(trades)
    conn.commit()


def test_book_stats_per_second_equal_the_hand_computed_figures(small: None, conn: psycopg.Connection) -> None:
    got = an.book_stats("BTCUSDT", _ts(T0), _ts(T0 + 2 * S), "1s", depth_bps=(1, 10), conn=conn)
    assert got["open_time"].to_list() == [_ts(T0), _ts(T0 + S)]
    a, b = got.to_dicts()
    assert (a["updates"], a["update_id"], a["bid_price"], a["bid_qty"], a["ask_price"], a["ask_qty"]) == (
        2,
        102,
        D("100.01"),
        D(1),
        D("100.03"),
        D(3),
    )
    assert (a["mid"], a["spread"], a["microprice"]) == (D("100.02"), D("0.02"), D("100.015"))
    assert a["spread_bps"] == pytest.approx(0.02 / 100.02 * 1e4) and a["imbalance"] == pytest.approx(-0.5)
    # within 1 bps of 100.02: bids ≥ 100.009998 (100.01×1), asks ≤ 100.030002 (100.03×3)
    assert (a["bid_depth_1bps"], a["ask_depth_1bps"]) == (D(1), D(3))
    # within 10 bps: bids ≥ 99.91998 (1 + 2 + 1), asks ≤ 100.120002 (3)
    assert (a["bid_depth_10bps"], a["ask_depth_10bps"]) == (D(4), D(3))
    assert a["depth_imbalance_10bps"] == pytest.approx(1 / 7)
    # OFI: the first update of a run counts 0; 0.5 s: bid unchanged (+1 −1), ask up (+1) → 1
    assert a["ofi"] == D(1) and a["mid_change"] is None
    assert (b["updates"], b["bid_price"], b["bid_qty"], b["ask_price"], b["ask_qty"]) == (
        2,
        D("100.00"),
        D(4),
        D("100.02"),
        D(2),
    )
    assert (b["mid"], b["microprice"]) == (D("100.01"), D("100.013333333333"))  # 600.08 / 6
    assert b["imbalance"] == pytest.approx(1 / 3)
    assert (b["bid_depth_1bps"], b["ask_depth_1bps"], b["bid_depth_10bps"], b["ask_depth_10bps"]) == (
        D(4),
        D(2),
        D(5),
        D(5),
    )
    # 1.2 s: bid down (−1), ask same (−3 +3) → −1; 1.7 s: bid same (+4 −4), ask down (−2) → −2
    assert b["ofi"] == D(-3)
    assert b["mid_change"] == D("-0.01") and b["return_bps"] == pytest.approx(-0.01 / 100.02 * 1e4)


def test_trade_costs_use_the_book_just_before_each_trade(small: None, conn: psycopg.Connection) -> None:
    got = an.trade_costs("BTCUSDT", _ts(T0), _ts(T0 + 2 * S), horizon="1s", conn=conn).to_dicts()
    buy, sell = got
    # the buy at 0.3 s meets 100.01 / 100.02 (mid 100.015); 1 s later 100.00 / 100.03 (mid 100.015)
    assert (buy["side"], buy["mid"], buy["spread"], buy["effective_spread"]) == (
        1,
        D("100.015"),
        D("0.01"),
        D("0.01"),
    )
    assert buy["effective_spread_bps"] == pytest.approx(0.01 / 100.015 * 1e4)
    assert buy["mid_after"] == D("100.015") and buy["impact_bps"] == pytest.approx(0)
    # the sell at 1.2 s (the same time as an update: strictly before it) meets mid 100.02; after: 100.01
    assert (sell["side"], sell["mid"], sell["effective_spread"], sell["mid_after"]) == (
        -1,
        D("100.02"),
        D("0.02"),
        D("100.01"),
    )
    assert sell["impact_bps"] == pytest.approx(0.01 / 100.02 * 1e4)
    assert sell["realized_spread_bps"] == pytest.approx(0)
    per = an.effective_spread("BTCUSDT", _ts(T0), _ts(T0 + 2 * S), "1s", conn=conn).to_dicts()
    assert [r["trades"] for r in per] == [1, 1]
    assert per[1]["vw_effective_spread_bps"] == pytest.approx(0.02 / 100.02 * 1e4)
    # against the quotes on receive time (the SQL module): the same quotes prevail here
    q = an.effective_spread(
        "BTCUSDT", _ts(T0), _ts(T0 + 2 * S), "1s", reference="quotes", conn=conn
    ).to_dicts()
    for x, y in zip(q, per):
        for c in ("effective_spread_bps", "impact_bps", "realized_spread_bps"):
            assert x[c] == pytest.approx(y[c]), c


def test_a_horizon_means_the_same_in_any_unit_of_the_duration_grammar(
    small: None, conn: psycopg.Connection
) -> None:
    span = ("BTCUSDT", _ts(T0), _ts(T0 + 2 * S), "1s")
    for reference in ("book", "quotes"):
        want = an.effective_spread(*span, horizon="1s", reference=reference, conn=conn)
        for same in ("1000ms", "1.0s"):
            got = an.effective_spread(*span, horizon=same, reference=reference, conn=conn)
            assert got.equals(want), (reference, same)
        shorter = an.effective_spread(*span, horizon="500ms", reference=reference, conn=conn)
        assert not shorter.equals(want), reference  # the horizon is read, not ignored


def test_quote_stats_in_python_and_in_psql_equal_the_hand_computed_figures(
    small: None, dsn: str, conn: psycopg.Connection
) -> None:
    got = an.quote_stats("BTCUSDT", _ts(T0), _ts(T0 + 2 * S), "1s", conn=conn).to_dicts()
    a = got[0]
    assert (a["quotes"], a["update_id"], a["mid"], a["spread"], a["microprice"]) == (
        2,
        102,
        D("100.02"),
        D("0.02"),
        D("100.015"),
    )
    assert (a["min_spread"], a["max_spread"], a["avg_spread"]) == (D("0.01"), D("0.02"), D("0.015"))
    assert a["avg_spread_bps"] == pytest.approx((0.01 / 100.015 + 0.02 / 100.02) / 2 * 1e4)
    assert a["avg_imbalance"] == pytest.approx(-0.25)
    from cryptolab.storage.db import SQL_DIR

    r = psql(
        dsn,
        SQL_DIR / "book.sql",
        "symbol=btcusdt",
        f"start={_ts(T0).isoformat()}",
        f"end={_ts(T0 + 2 * S).isoformat()}",
        "interval=1s",
        csv=True,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    head = next(i for i, x in enumerate(lines) if x.startswith("open_time,quotes,update_id"))
    cells = dict(zip(lines[head].split(","), lines[head + 1].split(",")))
    assert (D(cells["mid"]), D(cells["microprice"]), D(cells["avg_spread"]), cells["quotes"]) == (
        D("100.02"),
        D("100.015"),
        D("0.015"),
        "2",
    )


def test_bad_statistics_arguments_are_refused_before_any_query(small: None, conn: psycopg.Connection) -> None:
    with pytest.raises(DataError, match="depth_bps"):
        an.book_stats("BTCUSDT", depth_bps=(10, 10), conn=conn)
    with pytest.raises(DataError, match="interval"):
        an.book_stats("BTCUSDT", interval="7s", conn=conn)
    with pytest.raises(DataError, match="reference"):
        an.effective_spread("BTCUSDT", reference="tape", conn=conn)


def test_depth_and_ofi_per_second_equal_an_independent_replay(conn: psycopg.Connection) -> None:
    from cryptolab.analysis.book_synth import synthetic_book
    from cryptolab.book import OrderBook

    rows = list(
        synthetic_book("binance", "BTCUSDT", T0, T0 + 30 * S, snapshot_levels=80, seed=3, quotes=False)
    )
    BookWriter(conn).store(rows)
    conn.commit()
    got = an.book_stats("BTCUSDT", _ts(T0), _ts(T0 + 31 * S), "1s", depth_bps=(1, "2.5"), conn=conn)
    book = OrderBook()
    snap = rows[0]
    assert isinstance(snap, BookSnapshot)
    book.load(snap.bids, snap.asks, snap.last_update_id)
    want: dict[datetime, tuple[D, ...]] = {}
    prev: tuple[D, D, D, D] | None = None
    ofi = D(0)
    for d in rows[1:]:
        assert isinstance(d, DepthDiff)
        book.apply(d.bids, d.asks, d.last_id)
        (b, bq), (a, aq) = book.best_bid(), book.best_ask()  # type: ignore[misc]
        if prev is not None:
            pb, pbq, pa, paq = prev
            ofi += (
                (bq if b >= pb else 0)
                - (pbq if b <= pb else 0)
                - (aq if a <= pa else 0)
                + (paq if a >= pa else 0)
            )
        prev = (b, bq, a, aq)
        second = _ts(d.event_time_us - d.event_time_us % S)
        mid = (b + a) / 2
        depth = []
        for x in (D(1), D("2.5")):
            depth.append(sum((q for p, q in book.levels("bid") if p >= mid * (1 - x / 10_000)), D(0)))
            depth.append(sum((q for p, q in book.levels("ask") if p <= mid * (1 + x / 10_000)), D(0)))
        want[second] = (*depth, ofi)
    assert got.height == len(want) >= 29
    running = D(0)
    for r in got.iter_rows(named=True):
        running += r["ofi"]
        assert (
            r["bid_depth_1bps"],
            r["ask_depth_1bps"],
            r["bid_depth_2_5bps"],
            r["ask_depth_2_5bps"],
            running,
        ) == want[r["open_time"]], r["open_time"]
