"""The dashboard's order-book panel: the latest book (depth chart) and spread / mid over the
candles' window, read with the book readers (`book_at`, `quotes`, else `book_top`) from the
dashboard's background thread, at most every `every` seconds (a rebuild costs more than a
tick's bar query).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ..errors import DataError

__all__ = ["BookView", "BookPanel", "read_book_view"]


@dataclass
class BookView:
    """What the panel shows: `book` (book_at rows: side, level, price, qty, update_id) or None,
    `top` (ts, mid, spread as floats for the chart) or None, and `note` when something is missing."""

    symbol: str
    book: Any = None
    top: Any = None
    update_id: int | None = None
    note: str = ""


def read_book_view(conn: psycopg.Connection, exchange: str, symbol: str, start: datetime, end: datetime, *,
                   depth: int = 20) -> BookView:
    """The latest rebuilt book and the spread / mid of [start, end): from the stored quotes when
    there are any, else from the rebuilt book's top."""
    import polars as pl

    from ..analysis.book import BookBreakError, book_at, book_top, quotes

    view = BookView(symbol)
    try:
        view.book = book_at(symbol, None, depth, exchange=exchange, conn=conn)
        view.update_id = int(view.book["update_id"][0]) if view.book.height else None
    except BookBreakError as exc:
        view.note = str(exc)
    except DataError as exc:
        view.note = str(exc)
        return view  # no depth data for this symbol at all
    f64 = pl.Float64
    try:
        q = quotes(symbol, start, end, exchange=exchange, conn=conn)
        if q.height:
            view.top = q.select(
                pl.col("received_at").alias("ts"),
                ((pl.col("bid_price").cast(f64) + pl.col("ask_price").cast(f64)) / 2).alias("mid"),
                (pl.col("ask_price").cast(f64) - pl.col("bid_price").cast(f64)).alias("spread"),
            )
    except DataError:
        pass  # no quotes stored: the rebuilt top below
    if view.top is None:
        top = book_top(symbol, start, end, exchange=exchange, conn=conn)
        view.top = top.select("ts", pl.col("mid").cast(f64), pl.col("spread").cast(f64))
    return view


class BookPanel:
    """Keeps the last `BookView` of a symbol and re-reads it at most every `every` seconds."""

    def __init__(self, every: float = 5.0, depth: int = 20) -> None:
        self.every = every
        self.depth = depth
        self.view: BookView | None = None
        self._at = 0.0

    def read(
        self, conn: psycopg.Connection, exchange: str, symbol: str, start: datetime, end: datetime
    ) -> BookView:
        fresh = (
            self.view is not None and self.view.symbol == symbol and time.monotonic() - self._at < self.every
        )
        if fresh:
            assert self.view is not None
            return self.view
        self.view = read_book_view(conn, exchange, symbol, start, end, depth=self.depth)
        self._at = time.monotonic()
        return self.view
