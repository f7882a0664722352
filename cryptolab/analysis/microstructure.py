"""Microstructure statistics of the stored book (formulas in docs/book_analysis.md).

* `book_stats` — per interval, from the rebuilt book (exchange time): the last state's top,
  spread (exact, bps), mid, microprice, top imbalance, depth within X bps per side, order-flow
  imbalance (Cont–Kukanov–Stoikov) and the mid's change.
* `trade_costs` — per trade, against the book prevailing just before it (the last update with
  event time < the trade time): effective spread, and price impact / realized spread after
  `horizon`.
* `effective_spread` — `trade_costs` summed up per interval (or, with reference="quotes", the
  SQL module's version against the stored bookTicker on receive times).
* `quote_stats` — per interval from the stored quotes (sql/book.sql `quote_stats`).

Prices, quantities, spreads, depths and OFI stay exact (`pl.Decimal`); ratios (bps, imbalance)
are float64. Arguments as everywhere in `cryptolab.analysis`; `interval` is one of `INTERVALS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import psycopg

from ..durations import duration_text
from ..errors import DataError
from .args import (
    MAX_ROWS,
    AsType,
    DecimalLike,
    DurationLike,
    Frame,
    TimeLike,
    as_frame,
    parse_decimal,
    parse_interval,
    parse_window,
)
from .book import BookSpan, _span
from .book_archive import archived_book, cover_time
from .book_rebuild import Rebuilt, empty_top, load_book
from .book_replay import NONE, _ranks, _sorted_updates, ticks_to_decimal
from .execute import run
from .reader import load_trades
from .scope import connection

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

__all__ = ["book_stats", "trade_costs", "effective_spread", "quote_stats", "ofi", "depth_within"]

_MODULE = "book"
_MICRO = Decimal("1E-12")


def _polars_every(interval: str) -> str:
    return interval[:-1] + {"s": "s", "m": "m", "h": "h", "d": "d", "w": "w"}[interval[-1]]


def _bps_list(depth_bps: Any) -> list[Decimal]:
    values = [depth_bps] if isinstance(depth_bps, (int, str, Decimal)) else list(depth_bps)
    out = [parse_decimal(v, "depth_bps") for v in values]
    if not out or len(set(out)) != len(out) or any(v >= 10_000 for v in out):
        raise DataError(
            f"depth_bps must be distinct basis points below 10000 (e.g. (5, 10, 25)), not {depth_bps!r}"
        )
    return out


def _name(bps: Decimal) -> str:
    return format(bps.normalize(), "f").replace(".", "_") + "bps"


def ofi(top: Any) -> Any:
    """The order-flow imbalance e_n of each book update against the previous one of the same run
    (Cont, Kukanov & Stoikov 2014), exact: e_n = 1[b_n ≥ b_{n−1}]·B_n − 1[b_n ≤ b_{n−1}]·B_{n−1}
    − 1[a_n ≤ a_{n−1}]·A_n + 1[a_n ≥ a_{n−1}]·A_{n−1} (b/a best bid/ask price, B/A their
    quantities); 0 for a run's first update. `top`: book_top rows with `run`."""
    import polars as pl

    b, bq, a, aq = pl.col("bid_price"), pl.col("bid_qty"), pl.col("ask_price"), pl.col("ask_qty")
    pb, pbq, pa, paq = (c.shift(1).over("run") for c in (b, bq, a, aq))
    zero = pl.lit(0).cast(top.schema["bid_qty"])
    e = (
        pl.when(b >= pb).then(bq).otherwise(zero)
        - pl.when(b <= pb).then(pbq).otherwise(zero)
        - pl.when(a <= pa).then(aq).otherwise(zero)
        + pl.when(a >= pa).then(paq).otherwise(zero)
    )
    return top.with_columns(pl.when(pb.is_null() | pa.is_null()).then(zero).otherwise(e).alias("ofi"))


def depth_within(rb: Rebuilt, top: Any, samples: np.ndarray, bps: Sequence[Decimal]) -> dict[str, np.ndarray]:
    """Quantity ticks on each side within X bps of the mid at the given rows of `top` (indices,
    ascending): bid levels with price ≥ mid·(1 − X/10⁴), ask levels ≤ mid·(1 + X/10⁴)."""
    out = {f"{s}_{_name(x)}": np.zeros(len(samples), dtype=np.int64) for x in bps for s in ("bid", "ask")}
    if not len(samples) or rb.ticks is None:
        return out
    runs = top["run"].to_numpy()[samples]
    first_row = np.searchsorted(top["run"].to_numpy(), np.arange(len(rb.runs)))
    bid = _ticks_of(top["bid_price"], rb.price_scale)[samples]
    ask = _ticks_of(top["ask_price"], rb.price_scale)[samples]
    for ri in np.unique(runs):
        r = rb.runs[int(ri)]
        at = np.flatnonzero(runs == ri)
        k_s = samples[at] - first_row[ri]  # the state index inside the run
        two_mid = bid[at] + ask[at]
        for side in ("bid", "ask"):
            k, p, q = rb.updates(r, side)
            rank, uniq = _ranks(p)
            for x in bps:
                num, den = x.as_integer_ratio()
                if side == "bid":  # price·20000·den ≥ 2mid·(10000·den − num)
                    thr = -((-two_mid * (10_000 * den - num)) // (20_000 * den))
                    lo = np.searchsorted(uniq, thr, side="left")
                    hi = np.full(len(at), len(uniq))
                else:
                    thr = (two_mid * (10_000 * den + num)) // (20_000 * den)
                    lo = np.zeros(len(at), dtype=np.int64)
                    hi = np.searchsorted(uniq, thr, side="right")
                out[f"{side}_{_name(x)}"][at] = _band_sums(k, rank, q, len(uniq), k_s, lo, hi)
    return out


def _ticks_of(series: Any, scale: int) -> np.ndarray:
    """A pl.Decimal(38, s ≤ scale) series as int64 ticks of 10^-scale (nulls → NONE)."""
    import polars as pl

    s = series.cast(pl.Decimal(38, scale))
    text = s.cast(pl.String).str.replace(".", "", literal=True)
    vals: np.ndarray = text.cast(pl.Int64).fill_null(NONE).to_numpy()
    return vals


def _band_sums(
    k: np.ndarray,
    rank: np.ndarray,
    qty: np.ndarray,
    width: int,
    k_s: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> np.ndarray:
    """Σ qty of the live levels with rank in [lo, hi) at each state k_s (ascending): the updates
    applied in order to a dense grid of ranks, the band summed at each sample."""
    grid = np.zeros(width, dtype=np.int64)
    # the last write per rank between two samples (within a batch) is the one that counts
    batch = np.searchsorted(k_s, k, side="left")
    # sorted by (rank, time): within a rank the batches follow in order, so the last of each
    # (rank, batch) is the one whose successor has another rank or batch
    rs, _, order = _sorted_updates(rank, k, int(k.max()) + 1 if len(k) else 1)
    bb = batch[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (rs[1:] != rs[:-1]) | (bb[1:] != bb[:-1])
    keep = np.zeros(len(k), dtype=bool)
    keep[order[last]] = True
    ends = np.searchsorted(k, k_s, side="right")
    out = np.zeros(len(k_s), dtype=np.int64)
    start = 0
    for i, end in enumerate(ends):
        if end > start:
            sel = keep[start:end]
            grid[rank[start:end][sel]] = qty[start:end][sel]
            start = end
        out[i] = grid[lo[i] : hi[i]].sum()
    return out


@overload
def book_stats(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
               interval: str = ..., *, depth_bps: DecimalLike | Sequence[DecimalLike] = ...,
               exchange: str | None = ..., conn: psycopg.Connection | None = ...,
               as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def book_stats(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
               interval: str = ..., *, depth_bps: DecimalLike | Sequence[DecimalLike] = ...,
               exchange: str | None = ..., conn: psycopg.Connection | None = ...,
               as_: Literal["pandas"]) -> pd.DataFrame: ...


def book_stats(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str = "1s",
    *,
    depth_bps: DecimalLike | Sequence[DecimalLike] = (10,),
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """The book per `interval` (on the diffs' event time), intervals with at least one update.

    Columns: open_time; updates (book updates in the interval); update_id, bid_price, bid_qty,
    ask_price, ask_qty (the last state in it); mid, spread (exact); spread_bps; microprice
    ((bid·ask_qty + ask·bid_qty)/(bid_qty + ask_qty), 12 decimals); imbalance ((bid_qty −
    ask_qty)/(bid_qty + ask_qty)); per X in `depth_bps`: bid_depth_Xbps, ask_depth_Xbps (exact
    quantity of the levels within X bps of the mid) and depth_imbalance_Xbps; ofi (Σ of the
    updates' order-flow imbalance, exact); mid_change (mid − the previous row's mid, exact) and
    return_bps (mid_change / previous mid · 10⁴)."""
    import polars as pl

    iv, step = parse_interval(interval)
    bps = _bps_list(depth_bps)
    with connection(conn) as c, archived_book(c):
        span = _span(c, symbol, start, end, exchange)
        if (span.end - span.start) / step > MAX_ROWS:
            raise DataError(
                f"{span.start.isoformat()} … {span.end.isoformat()} at interval {iv} is too many rows: "
                "use a larger interval or a shorter range"
            )
        rb = load_book(c, span)
    if rb is None:
        frame = _stats_frame(
            empty_top("polars").with_columns(pl.lit(0, dtype=pl.Int64).alias("run")), None, bps, iv, span
        )
    else:
        frame = _stats_frame(rb.top(), rb, bps, iv, span)
    return as_frame(frame, as_)


def _stats_frame(top: Any, rb: Rebuilt | None, bps: list[Decimal], iv: str, span: BookSpan) -> Any:
    import polars as pl

    full = top
    top = ofi(top).with_columns(pl.col("ts").dt.truncate(_polars_every(iv)).alias("open_time"))
    t0 = pl.lit(span.start).cast(pl.Datetime("us", "UTC"))
    top = top.with_row_index("row").filter(pl.col("ts") >= t0)
    last = top.group_by("open_time", maintain_order=True).agg(
        pl.len().cast(pl.Int64).alias("updates"),
        pl.col("row").last(),
        pl.col("update_id").last(),
        pl.col("bid_price").last(),
        pl.col("bid_qty").last(),
        pl.col("ask_price").last(),
        pl.col("ask_qty").last(),
        pl.col("mid").last(),
        pl.col("spread").last(),
        pl.col("ofi").sum(),
    )
    micro = [
        _microprice(b, bq, a, aq)
        for b, bq, a, aq in last.select("bid_price", "bid_qty", "ask_price", "ask_qty").iter_rows()
    ]
    depth_cols = []
    if rb is not None and last.height:
        sums = depth_within(rb, full, last["row"].to_numpy().astype(np.int64), bps)
        qs = rb.qty_scale
        for x in bps:
            b, a = sums[f"bid_{_name(x)}"], sums[f"ask_{_name(x)}"]
            tot = (b + a).astype(np.float64)
            depth_cols += [
                ticks_to_decimal(f"bid_depth_{_name(x)}", b, qs),
                ticks_to_decimal(f"ask_depth_{_name(x)}", a, qs),
                pl.Series(
                    f"depth_imbalance_{_name(x)}",
                    np.where(tot > 0, (b - a) / np.where(tot > 0, tot, 1), np.nan),
                ),
            ]
    else:
        for x in bps:
            depth_cols += [
                pl.Series(f"bid_depth_{_name(x)}", [], dtype=pl.Decimal(38, 8)),
                pl.Series(f"ask_depth_{_name(x)}", [], dtype=pl.Decimal(38, 8)),
                pl.Series(f"depth_imbalance_{_name(x)}", [], dtype=pl.Float64),
            ]
    f64 = pl.Float64
    out = last.with_columns(
        pl.Series("microprice", [None if m is None else format(m, "f") for m in micro], dtype=pl.String)
        .str.to_decimal(scale=12)
        .alias("microprice")
        if last.height
        else pl.lit(None, dtype=pl.Decimal(38, 12)).alias("microprice"),
        (pl.col("spread").cast(f64) / pl.col("mid").cast(f64) * 10_000).alias("spread_bps"),
        (
            (pl.col("bid_qty").cast(f64) - pl.col("ask_qty").cast(f64))
            / (pl.col("bid_qty").cast(f64) + pl.col("ask_qty").cast(f64))
        ).alias("imbalance"),
        (pl.col("mid") - pl.col("mid").shift(1)).alias("mid_change"),
    ).with_columns(
        (pl.col("mid_change").cast(f64) / pl.col("mid").shift(1).cast(f64) * 10_000).alias("return_bps")
    )
    out = (
        out.with_columns(depth_cols)
        if depth_cols and out.height
        else out.with_columns([pl.lit(None, dtype=col.dtype).alias(col.name) for col in depth_cols])
    )
    cols = [
        "open_time",
        "updates",
        "update_id",
        "bid_price",
        "bid_qty",
        "ask_price",
        "ask_qty",
        "mid",
        "spread",
        "spread_bps",
        "microprice",
        "imbalance",
    ]
    for x in bps:
        cols += [f"bid_depth_{_name(x)}", f"ask_depth_{_name(x)}", f"depth_imbalance_{_name(x)}"]
    return out.select(cols + ["ofi", "mid_change", "return_bps"])


def _microprice(
    b: Decimal | None, bq: Decimal | None, a: Decimal | None, aq: Decimal | None
) -> Decimal | None:
    if b is None or a is None or bq is None or aq is None or not bq + aq:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        return ((b * aq + a * bq) / (bq + aq)).quantize(_MICRO, rounding=ROUND_HALF_UP)


@overload
def trade_costs(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                horizon: DurationLike = ..., exchange: str | None = ...,
                conn: psycopg.Connection | None = ..., as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def trade_costs(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                horizon: DurationLike = ..., exchange: str | None = ...,
                conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def trade_costs(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    horizon: DurationLike = "1s",
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Every trade in [start, end) against the book prevailing just before it (the last book
    update with event time < trade time) and the book `horizon` later.

    Columns: trade_id, trade_time, price, qty, side (+1 taker buy, −1 taker sell), mid, spread
    (prevailing, exact), effective_spread (2·side·(price − mid), exact), effective_spread_bps
    (/ mid · 10⁴), mid_after (the mid at trade_time + horizon), impact_bps (side·(mid_after −
    mid)/mid · 10⁴), realized_spread_bps (2·side·(price − mid_after)/mid · 10⁴). Trades before the
    first rebuilt book have null quotes."""
    import polars as pl

    h = parse_window(horizon, name="horizon")
    with connection(conn) as c, archived_book(c):
        span = _span(c, symbol, start, end, exchange)
        wide = BookSpan(span.exchange, span.symbol, span.start, span.end + h)
        rb = load_book(c, wide)
        trades = load_trades(span.symbol, span.start, span.end, exchange=span.exchange, engine="copy", conn=c)
    top = (rb.top() if rb is not None else empty_top("polars")).select("ts", "mid", "spread").sort("ts")
    f64 = pl.Float64
    t = trades.with_columns(
        pl.when(pl.col("is_buyer_maker")).then(-1).otherwise(1).cast(pl.Int64).alias("side"),
        (pl.col("trade_time") + pl.duration(microseconds=int(h / timedelta(microseconds=1)))).alias("after"),
    ).sort("trade_time")
    t = t.join_asof(top, left_on="trade_time", right_on="ts", strategy="backward", allow_exact_matches=False)
    t = t.join_asof(
        top.select(pl.col("ts").alias("ts_after"), pl.col("mid").alias("mid_after")),
        left_on="after",
        right_on="ts_after",
        strategy="backward",
    )
    m = pl.col("mid").cast(f64)
    out = (
        t.with_columns(
            (pl.col("price") - pl.col("mid")).alias("_dev"),
        )
        .with_columns(
            pl.when(pl.col("side") > 0)
            .then(pl.col("_dev") * 2)
            .otherwise(pl.col("_dev") * -2)
            .alias("effective_spread"),
        )
        .with_columns(
            (pl.col("effective_spread").cast(f64) / m * 10_000).alias("effective_spread_bps"),
            (pl.col("side") * (pl.col("mid_after").cast(f64) - m) / m * 10_000).alias("impact_bps"),
            (
                2 * pl.col("side") * (pl.col("price").cast(f64) - pl.col("mid_after").cast(f64)) / m * 10_000
            ).alias("realized_spread_bps"),
        )
        .select(
            "trade_id",
            "trade_time",
            "price",
            "qty",
            "side",
            "mid",
            "spread",
            "effective_spread",
            "effective_spread_bps",
            "mid_after",
            "impact_bps",
            "realized_spread_bps",
        )
        .sort("trade_id")
    )
    return out.to_pandas() if as_ == "pandas" else out


@overload
def effective_spread(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                     interval: str = ..., *, horizon: DurationLike = ..., reference: str = ...,
                     exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                     as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def effective_spread(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                     interval: str = ..., *, horizon: DurationLike = ..., reference: str = ...,
                     exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                     as_: Literal["pandas"]) -> pd.DataFrame: ...


def effective_spread(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str = "1m",
    *,
    horizon: DurationLike = "1s",
    reference: str = "book",
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Trade costs per `interval`: open_time, trades (with a prevailing quote), volume,
    effective_spread_bps (mean), vw_effective_spread_bps (qty-weighted), impact_bps and
    realized_spread_bps (means after `horizon`). reference="book": against the rebuilt book on
    exchange time (`trade_costs`); "quotes": against the stored bookTicker on receive time
    (sql/book.sql `effective_spread`, runs in psql too)."""
    import polars as pl

    iv, _ = parse_interval(interval)
    h = parse_window(horizon, name="horizon")
    if reference not in ("book", "quotes"):
        raise DataError(f"reference must be 'book' or 'quotes', not {reference!r}")
    if reference == "quotes":
        with connection(conn) as c, archived_book(c):
            span = _span(c, symbol, start, end, exchange, what="quotes")
            cover_time(
                c,
                "quotes",
                span.exchange,
                span.symbol,
                span.start - timedelta(minutes=1),
                span.end + h,
            )
            return run(
                c,
                _MODULE,
                "effective_spread",
                span.values(interval=iv, horizon=duration_text(h)),
                as_,
                keep_scales=False,
            )
    costs = trade_costs(symbol, start, end, horizon=horizon, exchange=exchange, conn=conn)
    f64 = pl.Float64
    out = (
        costs.filter(pl.col("mid").is_not_null())
        .with_columns(pl.col("trade_time").dt.truncate(_polars_every(iv)).alias("open_time"))
        .group_by("open_time", maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("trades"),
            pl.col("qty").sum().alias("volume"),
            pl.col("effective_spread_bps").mean(),
            (
                (pl.col("effective_spread_bps") * pl.col("qty").cast(f64)).sum()
                / pl.col("qty").cast(f64).sum()
            ).alias("vw_effective_spread_bps"),
            pl.col("impact_bps").mean(),
            pl.col("realized_spread_bps").mean(),
        )
        .sort("open_time")
    )
    return out.to_pandas() if as_ == "pandas" else out


@overload
def quote_stats(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                interval: str = ..., *, exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def quote_stats(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                interval: str = ..., *, exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                as_: Literal["pandas"]) -> pd.DataFrame: ...


def quote_stats(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    interval: str = "1m",
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Per `interval` from the stored quotes (sql/book.sql `quote_stats`): open_time, quotes, the
    last quote (update_id, bid/ask price and qty, mid, spread, spread_bps, microprice to 12
    decimals), min/max/avg spread (exact), avg_spread_bps and avg_imbalance."""
    iv, _ = parse_interval(interval)
    with connection(conn) as c, archived_book(c):
        span = _span(c, symbol, start, end, exchange, what="quotes")
        cover_time(c, "quotes", span.exchange, span.symbol, span.start, span.end)
        return run(c, _MODULE, "quote_stats", span.values(interval=iv), as_, keep_scales=False)
