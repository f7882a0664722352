"""Quality: are the stored trades complete, unique, ordered and sane?

Runs the queries of `sql/quality_check.sql`; arguments and result types as in
`cryptolab.analysis.scope` and `.frames`. `quality_report` runs every check and sums them up in one
frame; the other functions return each check's detail. An id gap (`gaps`) is a loss; a
halt (`halts`) is a long silence with consecutive ids, and is not.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, overload

import psycopg

from ..durations import parse_duration
from ..errors import DataError
from .args import AGG_MODULE, AsType, DecimalLike, Frame, Kind, SecondsLike, TimeLike, parse_decimal
from .execute import run
from .scope import connection, resolve_span

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

__all__ = [
    "source_counts",
    "duplicates",
    "null_counts",
    "timestamp_checks",
    "time_backwards",
    "gaps",
    "halts",
    "price_outliers",
    "dead_letter_counts",
    "capture_runs",
    "bars_consistency",
    "quality_report",
]

_MODULE = "quality_check"


def _duration(value: Any, name: str) -> timedelta:
    """A timedelta, a number of seconds (int, Decimal, '0.5') or a duration ('500ms', '30s', '1m')."""
    return parse_duration(value, name=name, zero=True, error=DataError)


def _check(
    conn: psycopg.Connection | None,
    name: str,
    symbol: str | None,
    start: Any,
    end: Any,
    exchange: str | None,
    as_: AsType,
    require_stored: bool = True,
    **extra: Any,
) -> Frame:
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange, require_stored=require_stored)
        return run(c, _MODULE, name, span.values(**extra), as_)


@overload
def source_counts(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                  exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                  as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def source_counts(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                  exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                  as_: Literal["pandas"]) -> pd.DataFrame: ...


def source_counts(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Stored trades per source: source, trades, first/last_trade_id, first/last_time."""
    return _check(conn, "source_counts", symbol, start, end, exchange, as_)


@overload
def duplicates(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
               exchange: str | None = ..., conn: psycopg.Connection | None = ...,
               as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def duplicates(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
               exchange: str | None = ..., conn: psycopg.Connection | None = ...,
               as_: Literal["pandas"]) -> pd.DataFrame: ...


def duplicates(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Trade ids stored more than once: trade_id, copies, sources, first/last_time, same_content."""
    return _check(conn, "duplicates", symbol, start, end, exchange, as_)


@overload
def null_counts(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def null_counts(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                as_: Literal["pandas"]) -> pd.DataFrame: ...


def null_counts(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Nulls per column of the stored trades: column_name, nulls, rows."""
    return _check(conn, "nulls", symbol, start, end, exchange, as_)


@overload
def timestamp_checks(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                     max_skew: SecondsLike = ..., exchange: str | None = ...,
                     conn: psycopg.Connection | None = ...,
                     as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def timestamp_checks(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                     max_skew: SecondsLike = ..., exchange: str | None = ...,
                     conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def timestamp_checks(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    max_skew: SecondsLike = timedelta(seconds=1),
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """T <= E <= received <= ingested, `max_skew` allowed between different clocks.

    Columns: rule, checked, violations, worst (duration), example_trade_id, allowed_skew.
    """
    skew = _duration(max_skew, "max_skew")
    return _check(conn, "timestamp_checks", symbol, start, end, exchange, as_, max_skew=skew)


@overload
def time_backwards(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                   exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                   as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def time_backwards(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                   exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                   as_: Literal["pandas"]) -> pd.DataFrame: ...


def time_backwards(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Trades stamped before the previous id: trade_id, trade_time, prev_trade_id, prev_trade_time,
    backwards_by."""
    return _check(conn, "time_backwards", symbol, start, end, exchange, as_)


@overload
def gaps(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
         exchange: str | None = ..., kind: Kind = ..., conn: psycopg.Connection | None = ...,
         as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def gaps(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
         exchange: str | None = ..., kind: Kind = ..., conn: psycopg.Connection | None = ...,
         as_: Literal["pandas"]) -> pd.DataFrame: ...


def gaps(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    kind: Kind = "auto",
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Missing id ranges (losses): first_missing_id, last_missing_id, missing, time_before,
    time_after, duration, recorded_status (what capture_gaps says: filled/unrecoverable/open, or null).

    `kind` (see `data_kind`): from aggregate trades, the ids no aggregate covers (an aggregate
    starting above every earlier one's last_trade_id + 1); ids inside an aggregate are never gaps."""
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange, kind=kind)
        return run(c, AGG_MODULE if span.kind == "aggTrades" else _MODULE, "gaps", span.values(), as_)


@overload
def halts(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
          min_halt: SecondsLike = ..., exchange: str | None = ..., conn: psycopg.Connection | None = ...,
          as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def halts(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
          min_halt: SecondsLike = ..., exchange: str | None = ..., conn: psycopg.Connection | None = ...,
          as_: Literal["pandas"]) -> pd.DataFrame: ...


def halts(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    min_halt: SecondsLike = timedelta(seconds=30),
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Silences of at least `min_halt` between consecutive ids (not a loss): every halt that
    overlaps [start, end), also one that began before start, ends after end, or spans the range.

    Columns: last_id_before, first_id_after, halt_start, halt_end, duration, extends_before
    (the halt began before start), extends_after (it ends at or after end).
    """
    gap = _duration(min_halt, "min_halt")
    if gap <= timedelta(0):
        raise DataError("min_halt must be positive, e.g. '30s'")
    return _check(conn, "halts", symbol, start, end, exchange, as_, min_halt=gap)


@overload
def price_outliers(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                   window: int = ..., threshold: DecimalLike = ..., exchange: str | None = ...,
                   conn: psycopg.Connection | None = ..., as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def price_outliers(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                   window: int = ..., threshold: DecimalLike = ..., exchange: str | None = ...,
                   conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def price_outliers(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    window: int = 60,
    threshold: DecimalLike = "0.01",
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Trades priced more than `threshold` (relative) away from the median 1 s close of the
    `window` seconds before. Columns: trade_id, trade_time, price, median, deviation (Decimal), source."""
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 86_400:
        raise DataError(f"window is a number of seconds from 1 to 86400, not {window!r}")
    k = parse_decimal(threshold, "threshold")
    return _check(
        conn, "price_outliers", symbol, start, end, exchange, as_, outlier_window=window, outlier_threshold=k
    )


@overload
def dead_letter_counts(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                       *, exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                       as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def dead_letter_counts(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ...,
                       *, exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                       as_: Literal["pandas"]) -> pd.DataFrame: ...


def dead_letter_counts(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Dead letters by reason (the symbol's, and those without a symbol), by received time.

    Columns: reason, symbol, messages, bytes, first_at, last_at.
    """
    return _check(conn, "dead_letters", symbol, start, end, exchange, as_, require_stored=False)


@overload
def capture_runs(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                 exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                 as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def capture_runs(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                 exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                 as_: Literal["pandas"]) -> pd.DataFrame: ...


def capture_runs(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Capture sessions covering the symbol in the range, with counters and recorded gaps."""
    return _check(conn, "capture_runs", symbol, start, end, exchange, as_, require_stored=False)


@overload
def bars_consistency(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                     exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                     as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def bars_consistency(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                     exchange: str | None = ..., conn: psycopg.Connection | None = ...,
                     as_: Literal["pandas"]) -> pd.DataFrame: ...


def bars_consistency(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Seconds whose 1 s bar differs from its trades: ts, problem, bar_/trades, bar_/volume,
    bar_/quote_volume."""
    return _check(conn, "bars_consistency", symbol, start, end, exchange, as_)


@overload
def quality_report(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                   max_skew: SecondsLike = ..., min_halt: SecondsLike = ..., outlier_window: int = ...,
                   outlier_threshold: DecimalLike = ..., exchange: str | None = ...,
                   conn: psycopg.Connection | None = ..., as_: Literal["polars"] = ...) -> pl.DataFrame: ...


@overload
def quality_report(symbol: str | None = ..., start: TimeLike | None = ..., end: TimeLike | None = ..., *,
                   max_skew: SecondsLike = ..., min_halt: SecondsLike = ..., outlier_window: int = ...,
                   outlier_threshold: DecimalLike = ..., exchange: str | None = ...,
                   conn: psycopg.Connection | None = ..., as_: Literal["pandas"]) -> pd.DataFrame: ...


def quality_report(
    symbol: str | None = None,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    *,
    max_skew: SecondsLike = timedelta(seconds=1),
    min_halt: SecondsLike = timedelta(seconds=30),
    outlier_window: int = 60,
    outlier_threshold: DecimalLike = "0.01",
    exchange: str | None = None,
    conn: psycopg.Connection | None = None,
    as_: AsType = "polars",
) -> Frame:
    """Every check in one frame: check, status ('ok', 'warn', 'fail', 'info'), count, detail.

    fail: duplicates with different content, id gaps, bars that disagree with trades, nulls
    where none may be; warn: identical duplicates, timestamp order broken beyond `max_skew`,
    time going backwards, price outliers, dead letters; info: halts, capture runs, sources.
    """
    import polars as pl

    skew = _duration(max_skew, "max_skew")
    halt = _duration(min_halt, "min_halt")
    rows: list[tuple[str, str, int, str]] = []
    with connection(conn) as c:
        span = resolve_span(c, symbol, start, end, exchange)

        def q(name: str, **extra: Any) -> Any:
            return run(c, _MODULE, name, span.values(**extra))

        src = q("source_counts")
        total = int(src["trades"].sum()) if src.height else 0
        rows.append(
            (
                "sources",
                "info",
                total,
                ", ".join(f"{r['source']}: {r['trades']}" for r in src.to_dicts()) or "no trades in range",
            )
        )

        dup = q("duplicates")
        differ = dup.filter(~pl.col("same_content")).height if dup.height else 0
        rows.append(
            (
                "duplicates",
                "fail" if differ else "warn" if dup.height else "ok",
                dup.height,
                f"{differ} with different content" if dup.height else "each trade id stored once",
            )
        )

        nulls = q("nulls")
        hard = nulls.filter(
            ~pl.col("column_name").is_in(["event_time", "received_at"]) & (pl.col("nulls") > 0)
        )
        soft = nulls.filter(
            pl.col("column_name").is_in(["event_time", "received_at"]) & (pl.col("nulls") > 0)
        )
        detail = "; ".join(
            f"{r['column_name']}: {r['nulls']}" for r in nulls.filter(pl.col("nulls") > 0).to_dicts()
        )
        rows.append(
            (
                "nulls",
                "fail" if hard.height else "info" if soft.height else "ok",
                int(nulls["nulls"].sum()),
                detail or "no nulls",
            )
        )

        ts = q("timestamp_checks", max_skew=skew)
        bad = int(ts["violations"].sum())
        rows.append(
            (
                "timestamp order",
                "warn" if bad else "ok",
                bad,
                "; ".join(f"{r['rule']}: {r['violations']} of {r['checked']}" for r in ts.to_dicts()),
            )
        )

        back = q("time_backwards")
        rows.append(
            (
                "time backwards",
                "warn" if back.height else "ok",
                back.height,
                f"first at id {back['trade_id'][0]}" if back.height else "trade times follow ids",
            )
        )

        g = q("gaps")
        missing = int(g["missing"].sum()) if g.height else 0
        rows.append(
            (
                "id gaps",
                "fail" if g.height else "ok",
                missing,
                f"{g.height} gaps, {missing} ids missing" if g.height else "no missing ids",
            )
        )

        h = q("halts", min_halt=halt)
        past = h.filter(pl.col("extends_before") | pl.col("extends_after")).height if h.height else 0
        rows.append(
            (
                "halts",
                "info",
                h.height,
                f"{h.height} silences of {halt} or more with consecutive ids"
                + (f" ({past} extending past the range)" if past else "")
                if h.height
                else "none",
            )
        )

        out = q(
            "price_outliers",
            outlier_window=outlier_window,
            outlier_threshold=parse_decimal(outlier_threshold, "outlier_threshold"),
        )
        rows.append(
            (
                "price outliers",
                "warn" if out.height else "ok",
                out.height,
                f"beyond {outlier_threshold} of the {outlier_window}s median",
            )
        )

        dl = q("dead_letters")
        n_dl = int(dl["messages"].sum()) if dl.height else 0
        rows.append(
            (
                "dead letters",
                "warn" if n_dl else "ok",
                n_dl,
                "; ".join(f"{r['reason']}: {r['messages']}" for r in dl.to_dicts()) or "none",
            )
        )

        runs = q("capture_runs")
        rows.append(
            (
                "capture runs",
                "info",
                runs.height,
                f"reconnects {int(runs['reconnects'].sum())}, "
                f"gaps recorded {int(runs['gaps_recorded'].sum())}"
                if runs.height
                else "no capture run recorded (loaded or written directly)",
            )
        )

        bars = q("bars_consistency")
        rows.append(
            (
                "bars vs trades",
                "fail" if bars.height else "ok",
                bars.height,
                f"first at {bars['ts'][0]}" if bars.height else "every 1 s bar equals its trades",
            )
        )
    frame = pl.DataFrame(
        rows,
        schema={"check": pl.String, "status": pl.String, "count": pl.Int64, "detail": pl.String},
        orient="row",
    )
    return frame.to_pandas() if as_ == "pandas" else frame
