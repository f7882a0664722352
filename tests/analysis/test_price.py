"""Price analyses against plain-Python Decimal references on the hand-built market."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal, localcontext

import polars as pl
import pytest

from cryptolab import analysis as an
from cryptolab.errors import DataError
from cryptolab.model import datetime_to_us, us_to_datetime
from tests.analysis.test_data import (  # noqa: F401  (fixtures)
    END,
    END_US,
    MARKET,
    OTHER,
    SECOND,
    START,
    START_US,
    SYMBOL,
    UTC,
    assert_rows,
    bucket,
    grid,
    market_dsn,
    mconn,
    ref_moving_averages,
    ref_ohlcv,
    ref_volume_profile,
    ref_vwap,
)

OHLCV_KEYS = ["open_time", "open", "high", "low", "close", "volume", "quote_volume", "taker_buy_volume",
              "taker_buy_quote", "trades", "first_trade_id", "last_trade_id"]


@pytest.mark.parametrize(
    "interval,iv_s", [("1s", 1), ("5s", 5), ("1m", 60), ("15m", 900), ("1h", 3600), ("1d", 86400)]
)
def test_ohlcv_matches_reference_at_every_interval(mconn, interval: str, iv_s: int) -> None:
    got = an.ohlcv(SYMBOL, START, END, interval, conn=mconn)
    want = ref_ohlcv(MARKET.by_symbol[SYMBOL], START_US, END_US, iv_s * SECOND)
    assert_rows(got.to_dicts(), want, OHLCV_KEYS)
    assert got["volume"].dtype == pl.Decimal(38, 8)  # exact, never float


def test_ohlcv_shows_empty_minutes_and_keeps_symbols_apart(mconn) -> None:
    got = an.ohlcv(SYMBOL, START, END, "1m", conn=mconn)
    assert got.height == 15
    empty = got.filter(pl.col("trades") == 0)
    assert empty.height >= 1 and empty["open"].null_count() == empty.height
    assert (empty["volume"] == 0).all()
    other = an.ohlcv(OTHER.lower(), START, END, "1m", conn=mconn)
    assert int(other["trades"].sum()) == len(MARKET.by_symbol[OTHER])


def test_ohlcv_accepts_iso_strings_and_pandas(mconn) -> None:
    got = an.ohlcv(
        SYMBOL, "2024-08-08T23:55:00Z", "2024-08-09T00:10:00+00:00", "5m", conn=mconn, as_="pandas"
    )
    want = ref_ohlcv(MARKET.by_symbol[SYMBOL], START_US, END_US, 300 * SECOND)
    assert list(got["trades"]) == [w["trades"] for w in want]
    assert isinstance(got["close"].iloc[0], Decimal)


def test_ohlcv_unaligned_start_starts_with_a_partial_bucket(mconn) -> None:
    s = START + timedelta(seconds=90)
    got = an.ohlcv(SYMBOL, s, END, "1m", conn=mconn)
    want = ref_ohlcv(MARKET.by_symbol[SYMBOL], datetime_to_us(s), END_US, 60 * SECOND)
    assert got["open_time"][0] == START + timedelta(minutes=1)
    assert_rows(got.to_dicts(), want, OHLCV_KEYS)


def test_moving_averages_match_reference(mconn) -> None:
    got = an.moving_averages(SYMBOL, START, END, "15s", window=5, span=7, conn=mconn)
    want = ref_moving_averages(MARKET.by_symbol[SYMBOL], START_US, END_US, 15 * SECOND, 5, 7)
    assert_rows(got.to_dicts(), want, ["open_time", "close", "price", "sma", "ema"])
    assert got["sma"].null_count() >= 4  # warm-up
    assert set(an.sma(SYMBOL, START, END, "15s", window=5, conn=mconn).columns) == {
        "open_time",
        "close",
        "price",
        "sma",
    }
    assert an.ema(SYMBOL, START, END, "15s", span=7, conn=mconn)["ema"].to_list() == [w["ema"] for w in want]


def _check_vwap(got: pl.DataFrame, want: list[dict], bands: bool) -> None:
    rows = got.to_dicts()
    assert len(rows) == len(want)
    for g, w in zip(rows, want):
        assert g["open_time"] == w["open_time"]
        assert g["cum_volume"] == w["cum_volume"] and g["cum_quote_volume"] == w["cum_quote_volume"]
        assert g["vwap"] == w["vwap"], (g["open_time"], g["vwap"], w["vwap"])
        if bands and w["sigma"] is not None:
            with localcontext() as c:
                c.prec = 80
                assert abs(g["sigma"] - w["sigma"]) <= Decimal("1e-12"), (g["sigma"], w["sigma"])
                assert g["upper_2"] == g["vwap"] + 2 * g["sigma"] and g["lower_1"] == g["vwap"] - g["sigma"]
        elif not bands:
            assert g["sigma"] is None


@pytest.mark.parametrize("bands", [False, True])
def test_session_vwap_resets_at_midnight(mconn, bands: bool) -> None:
    # start after the session began: the VWAP still counts from 00:00 (and from 23:55's session)
    s = START + timedelta(minutes=2)
    got = an.vwap(SYMBOL, s, END, "1m", mode="session", bands=bands, conn=mconn)
    trades = MARKET.by_symbol[SYMBOL]
    day = 86_400 * SECOND

    def window(b: int) -> tuple[int, int]:
        return bucket(b, day), b + 60 * SECOND

    want = ref_vwap(trades, grid(datetime_to_us(s), END_US, 60 * SECOND), 60 * SECOND, window)
    _check_vwap(got, want, bands)
    midnight = datetime(2024, 8, 9, tzinfo=UTC)
    first_after = got.filter(pl.col("open_time") == midnight).to_dicts()[0]
    sel = [
        t
        for t in trades
        if datetime_to_us(midnight) <= t.trade_time_us < datetime_to_us(midnight) + 60 * SECOND
    ]
    assert first_after["cum_volume"] == sum(t.qty for t in sel)  # reset: only the new session's trades


def test_session_vwap_with_custom_session_start(mconn) -> None:
    got = an.vwap(SYMBOL, START, END, "1m", mode="session", session_start="00:05", conn=mconn)
    trades = MARKET.by_symbol[SYMBOL]
    off = 5 * 60 * SECOND
    day = 86_400 * SECOND

    def window(b: int) -> tuple[int, int]:
        return bucket(b - off, day) + off, b + 60 * SECOND

    _check_vwap(got, ref_vwap(trades, grid(START_US, END_US, 60 * SECOND), 60 * SECOND, window), False)


@pytest.mark.parametrize("bands", [False, True])
def test_anchored_vwap(mconn, bands: bool) -> None:
    anchor = START + timedelta(minutes=3, seconds=20)
    got = an.vwap(SYMBOL, START, END, "1m", mode="anchored", anchor=anchor, bands=bands, conn=mconn)
    a = datetime_to_us(anchor)

    def window(b: int) -> tuple[int, int]:
        return a, b + 60 * SECOND

    want = ref_vwap(MARKET.by_symbol[SYMBOL], grid(START_US, END_US, 60 * SECOND), 60 * SECOND, window)
    for w in want:  # intervals that end before the anchor have no VWAP
        if datetime_to_us(w["open_time"]) + 60 * SECOND <= a:
            w["vwap"] = None
    _check_vwap(got, want, bands)
    assert got["vwap"][0] is None and got["vwap"][4] is not None


@pytest.mark.parametrize("window", ["3m", 3])
def test_rolling_vwap(mconn, window) -> None:
    got = an.vwap(
        SYMBOL, START + timedelta(minutes=1), END, "1m", mode="rolling", window=window, bands=True, conn=mconn
    )

    def win(b: int) -> tuple[int, int]:
        return b + 60 * SECOND - 180 * SECOND, b + 60 * SECOND

    want = ref_vwap(
        MARKET.by_symbol[SYMBOL], grid(START_US + 60 * SECOND, END_US, 60 * SECOND), 60 * SECOND, win
    )
    _check_vwap(got, want, True)


def test_volume_profile_matches_reference(mconn) -> None:
    trades = MARKET.trades()
    got = an.volume_profile(SYMBOL, START, END, bins=40, conn=mconn)
    ref = ref_volume_profile(trades, bins=40)
    assert got["tick"][0] == ref["tick"] == Decimal("0.01")
    assert got["bin_size"][0] == ref["bin_size"]
    assert_rows(
        got.to_dicts(),
        ref["rows"],
        [
            "price_low",
            "price_high",
            "volume",
            "buy_volume",
            "sell_volume",
            "trades",
            "volume_share",
            "is_poc",
            "in_value_area",
            "node",
        ],
    )
    assert got["is_poc"].sum() == 1
    va = got.filter(pl.col("in_value_area"))
    with localcontext() as c:
        c.prec = 80
        assert sum(va["volume"].to_list()) >= Decimal("0.7") * sum(got["volume"].to_list())
    assert sum(got["trades"].to_list()) == len(trades)


def test_volume_profile_with_a_bin_size(mconn) -> None:
    trades = MARKET.trades()
    got = an.volume_profile(SYMBOL, START, END, bin_size="0.25", value_area="0.5", conn=mconn)
    ref = ref_volume_profile(trades, bin_size=Decimal("0.25"), va=Decimal("0.5"))
    assert_rows(
        got.to_dicts(), ref["rows"], ["price_low", "price_high", "volume", "is_poc", "in_value_area", "node"]
    )


def test_pivots_match_reference(mconn) -> None:
    k = 2
    got = an.pivots(SYMBOL, START, END, "30s", pivot_bars=k, conn=mconn)
    bars = [b for b in ref_ohlcv(MARKET.by_symbol[SYMBOL], START_US, END_US, 30 * SECOND) if b["trades"]]
    want = []
    for i in range(k, len(bars) - k):
        before, after = bars[i - k : i], bars[i + 1 : i + 1 + k]
        if bars[i]["high"] > max(b["high"] for b in before) and bars[i]["high"] >= max(
            b["high"] for b in after
        ):
            want.append((bars[i]["open_time"], "high", bars[i]["high"]))
        if bars[i]["low"] < min(b["low"] for b in before) and bars[i]["low"] <= min(b["low"] for b in after):
            want.append((bars[i]["open_time"], "low", bars[i]["low"]))
    assert [(r["open_time"], r["kind"], r["price"]) for r in got.to_dicts()] == sorted(
        want, key=lambda x: (x[0], x[1])
    )
    assert len(want) >= 4


def test_support_resistance_levels(mconn) -> None:
    lv = an.support_resistance(SYMBOL, START, END, "30s", bins=40, pivot_bars=2, conn=mconn)
    kinds = set(lv["kind"].to_list())
    assert {"poc", "vah", "val"} <= kinds and kinds & {"swing_high", "swing_low"}
    prof = an.volume_profile(SYMBOL, START, END, bins=40, conn=mconn)
    poc = prof.filter(pl.col("is_poc")).to_dicts()[0]
    assert lv.filter(pl.col("kind") == "poc")["price"][0] == (poc["price_low"] + poc["price_high"]) / 2
    assert lv["price"].is_sorted()


def test_bad_price_arguments(mconn) -> None:
    with pytest.raises(DataError, match="unknown symbol 'NOPEUSDT'.*TESTUSDT"):
        an.ohlcv("NOPEUSDT", START, END, conn=mconn)
    with pytest.raises(DataError, match="is after end"):
        an.ohlcv(SYMBOL, END, START, conn=mconn)
    for bad in ("1x", "0m", "m", "1M", "", "1 m", "1.5m"):
        with pytest.raises(DataError, match="not an interval"):
            an.ohlcv(SYMBOL, START, END, bad, conn=mconn)
    with pytest.raises(DataError, match="not a time"):
        an.ohlcv(SYMBOL, "yesterday", END, conn=mconn)
    with pytest.raises(DataError, match="rows"):
        an.ohlcv(SYMBOL, datetime(2000, 1, 1, tzinfo=UTC), END, "1s", conn=mconn)
    with pytest.raises(DataError, match="VWAP mode"):
        an.vwap(SYMBOL, START, END, mode="twap", conn=mconn)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="multiple"):
        an.vwap(SYMBOL, START, END, "1m", mode="rolling", window="90s", conn=mconn)
    with pytest.raises(DataError, match="needs window"):
        an.vwap(SYMBOL, START, END, mode="rolling", conn=mconn)
    with pytest.raises(DataError, match="time of day"):
        an.vwap(SYMBOL, START, END, mode="session", session_start="25:00", conn=mconn)
    with pytest.raises(DataError, match="exact"):
        an.volume_profile(SYMBOL, START, END, bin_size=0.5, conn=mconn)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="million bins"):
        an.volume_profile(SYMBOL, START, END, bin_size="0.00000001", conn=mconn)
    with pytest.raises(DataError, match="window"):
        an.moving_averages(SYMBOL, START, END, window=0, conn=mconn)
    with pytest.raises(DataError, match="symbol"):
        an.ohlcv("BTC USDT; drop table trades", START, END, conn=mconn)
    # the connection is still usable: no SQL error leaked and no transaction left open
    assert mconn.execute("SELECT 1").fetchone() == (1,)


def test_empty_range_gives_empty_frames_with_columns(mconn) -> None:
    got = an.ohlcv(SYMBOL, START, START, "1m", conn=mconn)
    assert got.height == 0 and got.columns[:3] == ["open_time", "open", "high"]
    prof = an.volume_profile(SYMBOL, START, START, conn=mconn)
    assert prof.height == 0 and "price_low" in prof.columns
    v = an.vwap(SYMBOL, START, START, conn=mconn)
    assert v.height == 0 and "vwap" in v.columns
    quiet = an.ohlcv(
        SYMBOL,
        datetime(2024, 8, 8, 12, tzinfo=UTC),
        datetime(2024, 8, 8, 12, 5, tzinfo=UTC),
        "1m",
        conn=mconn,
    )
    assert quiet.height == 5 and int(quiet["trades"].sum()) == 0


def test_default_range_is_the_last_stored_hour(mconn) -> None:
    got = an.ohlcv(SYMBOL, interval="1m", conn=mconn)
    last = max(t.trade_time_us for t in MARKET.by_symbol[SYMBOL])
    assert got["open_time"][-1] == us_to_datetime(bucket(last, 60 * SECOND))
    assert int(got["trades"].sum()) == len(MARKET.by_symbol[SYMBOL])


def test_uses_env_dsn_without_conn(market_dsn) -> None:
    got = an.ohlcv(SYMBOL, START, END, "15m")
    assert int(got["trades"].sum()) == len(MARKET.trades())


def test_live_bars_carry_delta_cvd_and_anchored_vwap(mconn) -> None:
    s = START + timedelta(minutes=4)
    got = an.live_bars(SYMBOL, s, END, conn=mconn).to_dicts()
    trades = [t for t in MARKET.by_symbol[SYMBOL] if datetime_to_us(s) <= t.trade_time_us < END_US]
    secs = sorted({t.trade_time_us // SECOND * SECOND for t in trades})
    assert [g["ts"] for g in got] == [us_to_datetime(x) for x in secs]  # stored seconds only
    with localcontext() as c:
        c.prec = 80
        cvd = vol = quote = Decimal(0)
        for g, sec in zip(got, secs):
            ts = sorted(
                (t for t in trades if t.trade_time_us // SECOND * SECOND == sec), key=lambda t: t.trade_id
            )
            delta = sum((t.qty if not t.is_buyer_maker else -t.qty for t in ts), Decimal(0))
            cvd += delta
            vol += sum(t.qty for t in ts)
            quote += sum(t.price * t.qty for t in ts)
            assert (g["open"], g["close"], g["trades"]) == (ts[0].price, ts[-1].price, len(ts))
            assert g["delta"] == delta and g["cvd"] == cvd
            assert g["vwap"] == (quote / vol).quantize(Decimal("1e-20"), rounding="ROUND_HALF_UP")
