"""USD-M futures history: what the futures dumps hold and where it goes, and REST by time.

The loading itself is the spot path's (`store.HistoryStore`: one transaction per file with its
`history_files` row, checksums, resume, exactly once); this module says what differs:

* the columns of each futures dump (`COLUMNS`: a header line in every file, millisecond
  times; trades without `is_best_match`, aggTrades too) and the scratch columns they fill;
* the kinds only futures have: `markPriceKlines` → `mark_klines`, `fundingRate` →
  `funding_rates` (the settlement's second: Binance stamps some a few ms late), `metrics` →
  `open_interest` (with the long/short ratios of the file);
* REST for the days no dump holds, by time: `/fapi/v1/fundingRate`, `/fapi/v1/markPriceKlines`,
  `/futures/data/openInterestHist` (the last 30 days only: older days without a metrics dump
  stay empty and are said);
* the `exchange` the rows are stored under (`usdm_exchange`): "binance-usdm", or
  "simulator-usdm" when the source is the local exchange's synthetic market.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from ..binance.rest import RestClient
from ..binance.usdm_rest import OI_HIST_DAYS, UsdmRestClient
from ..errors import DataError, SourceError
from ..markets import exchange_for
from ..model import DEFAULT_EXCHANGE, now_us

__all__ = ["COLUMNS", "COPY_COLUMNS", "SCRATCH", "TABLE", "STATS", "MERGE", "TIME_KINDS", "usdm_exchange",
           "rest_rows"]

_KLINE_COLS = ("open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
               "taker_buy_volume", "taker_buy_quote_volume", "ignore")
COLUMNS: dict[str, tuple[str, ...]] = {
    "trades": ("id", "price", "qty", "quote_qty", "time", "is_buyer_maker"),
    "aggTrades": (
        "agg_trade_id",
        "price",
        "quantity",
        "first_trade_id",
        "last_trade_id",
        "transact_time",
        "is_buyer_maker",
    ),
    "klines": _KLINE_COLS,
    "markPriceKlines": _KLINE_COLS,
    "fundingRate": ("calc_time", "funding_interval_hours", "last_funding_rate"),
    "metrics": (
        "create_time",
        "symbol",
        "sum_open_interest",
        "sum_open_interest_value",
        "count_toptrader_long_short_ratio",
        "sum_toptrader_long_short_ratio",
        "count_long_short_ratio",
        "sum_taker_long_short_vol_ratio",
    ),
}
"""The columns of each futures dump, in file order (the files carry them as a header line)."""

COPY_COLUMNS: dict[str, str] = {
    "trades": "(id, price, qty, quote_qty, t, m)",
    "aggTrades": "(a, price, qty, f, l, t, m)",
    "fundingRate": "(t, hours, rate)",
}
"""The scratch columns a futures file fills where it has fewer than the scratch table."""

SCRATCH = {
    "markPriceKlines": "CREATE TEMP TABLE IF NOT EXISTS _hist_mark (open_t bigint, o numeric, h numeric, "
    "lo numeric, c numeric, v text, close_t bigint, qv text, n text, tbv text, tbq text, ign text)",
    "fundingRate": "CREATE TEMP TABLE IF NOT EXISTS _hist_funding (t bigint, hours integer, rate numeric, "
    "mark numeric)",
    "metrics": "CREATE TEMP TABLE IF NOT EXISTS _hist_metrics (ct timestamp, sym text, oi numeric, "
    "oiv numeric, ctt numeric, stt numeric, cls numeric, stk numeric)",
}
TABLE = {"markPriceKlines": "_hist_mark", "fundingRate": "_hist_funding", "metrics": "_hist_metrics"}
STATS = {
    "markPriceKlines": ("NULL::bigint", "open_t"),
    "fundingRate": ("NULL::bigint", "t"),
    "metrics": ("NULL::bigint", "(extract(epoch FROM ct) * 1000)::bigint"),
}
"""(id, time) expressions of each scratch table for the file's stats (time in ms)."""
TIME_KINDS = ("markPriceKlines", "fundingRate", "metrics")
"""Kinds fetched from REST by time (not by id)."""


def _ts(col: str) -> str:
    return (
        f"(timestamptz 'epoch' + (CASE WHEN {col} >= 100000000000000 THEN {col} ELSE {col} * 1000 END)"
        " * interval '1 microsecond')"
    )


MERGE = {
    "markPriceKlines": f"""
WITH ins AS (
    INSERT INTO mark_klines AS k (exchange, symbol, interval, open_time, close_time, open, high, low, close)
    SELECT DISTINCT ON (open_t) %(ex)s, %(sym)s, %(iv)s, {_ts("open_t")}, {_ts("close_t")}, o, h, lo, c
    FROM _hist_mark ORDER BY open_t
    ON CONFLICT (exchange, symbol, interval, open_time) DO UPDATE SET
        close_time = EXCLUDED.close_time, open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
        close = EXCLUDED.close, fetched_at = clock_timestamp()
    WHERE (k.close_time, k.open, k.high, k.low, k.close)
      IS DISTINCT FROM (EXCLUDED.close_time, EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) FROM ins
""",
    "fundingRate": f"""
WITH ins AS (
    INSERT INTO funding_rates AS f (exchange, symbol, funding_time, funding_rate, mark_price, interval_hours,
                                    source)
    SELECT DISTINCT ON (1, 2, 3) %(ex)s, %(sym)s, date_trunc('second', {_ts("t")}), rate, mark, hours, %(src)s
    FROM _hist_funding ORDER BY 1, 2, 3, mark NULLS LAST
    ON CONFLICT (exchange, symbol, funding_time) DO UPDATE SET
        mark_price = coalesce(f.mark_price, EXCLUDED.mark_price),
        interval_hours = coalesce(f.interval_hours, EXCLUDED.interval_hours)
    WHERE (f.mark_price IS NULL AND EXCLUDED.mark_price IS NOT NULL)
       OR (f.interval_hours IS NULL AND EXCLUDED.interval_hours IS NOT NULL)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) FROM ins
""",
    "metrics": """
WITH ins AS (
    INSERT INTO open_interest AS o (exchange, symbol, ts, open_interest, open_interest_value,
                                    toptrader_ls_ratio_count, toptrader_ls_ratio_sum, ls_ratio_count,
                                    taker_ls_vol_ratio, source)
    SELECT DISTINCT ON (ct) %(ex)s, %(sym)s, ct AT TIME ZONE 'UTC', oi, oiv, ctt, stt, cls, stk, %(src)s
    FROM _hist_metrics WHERE oi IS NOT NULL ORDER BY ct, oiv NULLS LAST
    ON CONFLICT (exchange, symbol, ts) DO UPDATE SET
        open_interest_value = coalesce(o.open_interest_value, EXCLUDED.open_interest_value),
        toptrader_ls_ratio_count = coalesce(o.toptrader_ls_ratio_count, EXCLUDED.toptrader_ls_ratio_count),
        toptrader_ls_ratio_sum = coalesce(o.toptrader_ls_ratio_sum, EXCLUDED.toptrader_ls_ratio_sum),
        ls_ratio_count = coalesce(o.ls_ratio_count, EXCLUDED.ls_ratio_count),
        taker_ls_vol_ratio = coalesce(o.taker_ls_vol_ratio, EXCLUDED.taker_ls_vol_ratio)
    WHERE (o.open_interest_value, o.toptrader_ls_ratio_count, o.toptrader_ls_ratio_sum, o.ls_ratio_count,
           o.taker_ls_vol_ratio) IS DISTINCT FROM
          (coalesce(o.open_interest_value, EXCLUDED.open_interest_value),
           coalesce(o.toptrader_ls_ratio_count, EXCLUDED.toptrader_ls_ratio_count),
           coalesce(o.toptrader_ls_ratio_sum, EXCLUDED.toptrader_ls_ratio_sum),
           coalesce(o.ls_ratio_count, EXCLUDED.ls_ratio_count),
           coalesce(o.taker_ls_vol_ratio, EXCLUDED.taker_ls_vol_ratio))
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) FROM ins
""",
}
"""Scratch table → its table, idempotent; each returns how many rows were new."""


async def usdm_exchange(rest_url: str, symbols: list[str], need_rest: bool) -> str:
    """The `exchange` futures rows are stored under: "binance-usdm", or "simulator-usdm" for the
    local exchange's synthetic market. A symbol the futures market does not list is refused (a
    spot-only symbol asked on futures). A source without `/fapi` (the local exchange's dump tree
    alone) is asked through its spot exchangeInfo whether it is synthetic."""
    rest = UsdmRestClient(rest_url)
    try:
        info, stored = await rest.usdm_market(symbols)
    except SourceError as exc:
        if need_rest:
            raise
        fallback = await _spot_base(rest_url, symbols, exc)
        return exchange_for("usdm", fallback)
    finally:
        await rest.close()
    missing = [s for s in symbols if s not in info.symbols]
    if missing:
        raise DataError(
            f"{', '.join(missing)} is not a USD-M futures symbol at {rest_url} (it trades on spot only, "
            f"or is not listed: /fapi/v1/exchangeInfo lists {len(info.symbols)} contracts) — "
            "drop --market usdm for spot"
        )
    return stored


async def _spot_base(rest_url: str, symbols: list[str], why: SourceError) -> str:
    """Without /fapi: the base name from the spot exchangeInfo at the same URL (the local exchange
    says whether its market is synthetic); a symbol it does not list is refused."""
    async with RestClient(rest_url) as spot:
        try:
            info = await spot.market_info(symbols)
        except SourceError as exc:
            if "unknown symbol" in str(exc):
                raise DataError(f"{exc} (and {rest_url} answers no /fapi: {why})") from None
            return DEFAULT_EXCHANGE
    missing = [s for s in symbols if s not in info.symbols]
    if missing:
        raise DataError(f"unknown symbol {', '.join(missing)} at {rest_url}: check the spelling")
    return info.stored_as if info.local else DEFAULT_EXCHANGE


_EPOCH = datetime(1970, 1, 1)


def _ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()) * 1000


async def rest_rows(
    rest: Any, kind: str, sym: str, interval: str, first: date, end_us: int | None, say: Any
) -> list[tuple[Any, ...]]:
    """REST rows of a futures-only kind from `first` up to `end_us` (now when None), in the scratch
    table's column order."""
    start_ms = _ms(first)
    stop_ms = (end_us if end_us is not None else now_us()) // 1000
    if kind == "metrics":
        oldest = now_us() // 1000 - OI_HIST_DAYS * 86_400_000 + 60_000
        if start_ms < oldest:
            say(
                f"history: {sym}: openInterestHist reaches back {OI_HIST_DAYS} days only: open interest "
                f"before {datetime.fromtimestamp(oldest / 1000, timezone.utc):%Y-%m-%d %H:%M} UTC has no "
                "source but the metrics dumps"
            )
            start_ms = oldest
    out: list[tuple[Any, ...]] = []
    while start_ms < stop_ms:
        page = await _page(rest, kind, sym, interval, start_ms, stop_ms - 1)
        if not page:
            break
        rows, last = _rows_of(kind, sym, page)
        out.extend(rows)
        if last < start_ms or len(page) < _LIMIT[kind]:
            break
        start_ms = last + 1
    return out


_LIMIT = {"markPriceKlines": 1000, "fundingRate": 1000, "metrics": 500}


async def _page(rest: Any, kind: str, sym: str, interval: str, start_ms: int, end_ms: int) -> list[Any]:
    if kind == "fundingRate":
        page: list[Any] = await rest.funding_rate(sym, start_ms=start_ms, end_ms=end_ms, limit=1000)
    elif kind == "markPriceKlines":
        page = await rest.mark_price_klines(sym, interval, start_ms=start_ms, end_ms=end_ms, limit=1000)
    else:
        page = await rest.open_interest_hist(sym, "5m", start_ms=start_ms, end_ms=end_ms, limit=500)
    return page


def _rows_of(kind: str, sym: str, page: list[Any]) -> tuple[list[tuple[Any, ...]], int]:
    rows: list[tuple[Any, ...]] = []
    if kind == "fundingRate":
        for r in page:
            mark = r.get("markPrice") or None
            rows.append(
                (int(r["fundingTime"]), None, r["fundingRate"], mark if mark and Decimal(mark) != 0 else None)
            )
        return rows, int(page[-1]["fundingTime"])
    if kind == "markPriceKlines":
        now_ms = now_us() // 1000
        for k in page:
            if int(k[6]) < now_ms:  # a kline still open is not history yet
                rows.append(
                    (
                        int(k[0]),
                        k[1],
                        k[2],
                        k[3],
                        k[4],
                        str(k[5]),
                        int(k[6]),
                        str(k[7]),
                        str(k[8]),
                        str(k[9]),
                        str(k[10]),
                        str(k[11]),
                    )
                )
        return rows, int(page[-1][0])
    for r in page:
        t = _EPOCH + timedelta(milliseconds=int(r["timestamp"]))
        rows.append((t, sym, r["sumOpenInterest"], r["sumOpenInterestValue"], None, None, None, None))
    return rows, int(page[-1]["timestamp"])
