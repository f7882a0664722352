"""A synthetic order book, pure and deterministic: a snapshot, depth diffs and quotes shaped like
Binance's BTCUSDT `@depth@100ms` and `@bookTicker`, optionally following stored trades.

For tests and the benchmarks (the demo and the reports read books the capture stored): the rows
go into PostgreSQL through `storage.book.BookWriter` like captured ones. The book is never
crossed; each diff changes ~`levels` price levels (most near the top, a few far out, ~35 % of
them removals), the snapshot holds `snapshot_levels` per side. Prices are on a grid of
10^-`price_decimals` and, like Binance's, written with 8 decimals ("61837.63000000"),
quantities with 8 decimals. With `trades` (time µs, price, is_buyer_maker), the book's top
follows them: after a buy at p the best ask is p, after a sell the best bid is p.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal

import psycopg

from ..book.model import BookRow, BookSnapshot, DepthDiff, Level, Quote

__all__ = ["synthetic_book", "seed_book_from_trades"]

_QTY_UNIT = 100_000_000


def _price_text(ticks: int, decimals: int) -> str:
    """Ticks of 10^-decimals as Binance writes prices: 8 decimals."""
    whole, frac = divmod(ticks, 10 ** decimals)
    return f"{whole}.{frac:0{decimals}d}{'0' * (8 - decimals)}" if decimals else f"{whole}.00000000"


def _qty_text(units: int) -> str:
    return f"{units // _QTY_UNIT}.{units % _QTY_UNIT:08d}"


class _Book:
    """The generator's own book: integer ticks → integer quantity units (1e-8)."""

    def __init__(self, rng: random.Random, center: int, snapshot_levels: int) -> None:
        self.rng = rng
        self.center = center  # bids ≤ center < asks
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        for d in range(snapshot_levels):
            self.bids[center - d] = self.size()
            self.asks[center + 1 + d] = self.size()

    def size(self) -> int:
        r = self.rng.random()
        return 1 + int(r * r * r * 5 * _QTY_UNIT) if r > 0.02 else self.rng.randint(1, 999)

    def recenter(self, c: int, out_b: dict[int, int], out_a: dict[int, int]) -> None:
        """Move the top to `c`: levels now on the wrong side are removed."""
        old = self.center
        self.center = c
        for p in range(c + 1, old + 1):  # bids above the new center
            if p in self.bids:
                del self.bids[p]
                out_b[p] = 0
        for p in range(old + 1, c + 1):  # asks at or below the new center
            if p in self.asks:
                del self.asks[p]
                out_a[p] = 0

    def touch(self, out_b: dict[int, int], out_a: dict[int, int], n: int, far: int) -> None:
        rng, c = self.rng, self.center
        for _ in range(n):
            bid = rng.random() < 0.5
            r = rng.random()
            d = int(r * r * r * r * far) if rng.random() < 0.9 else rng.randint(0, far * 4)
            p = c - d if bid else c + 1 + d
            side, out = (self.bids, out_b) if bid else (self.asks, out_a)
            if p in side and rng.random() < 0.35 and d > 0:
                del side[p]
                out[p] = 0
            else:
                q = self.size()
                side[p] = q
                out[p] = q

    def top(self) -> tuple[int, int, int, int]:
        c, bids, asks = self.center, self.bids, self.asks
        b = next((p for p in range(c, c - 2000, -1) if p in bids), None) or max(bids)
        a = next((p for p in range(c + 1, c + 2001) if p in asks), None) or min(asks)
        return b, bids[b], a, asks[a]


def synthetic_book(
    exchange: str,
    symbol: str,
    start_us: int,
    end_us: int,
    *,
    trades: Sequence[tuple[int, Decimal, bool]] = (),
    price: Decimal = Decimal("61800"),
    price_decimals: int = 2,
    every_us: int = 100_000,
    levels: int = 46,
    snapshot_levels: int = 1000,
    first_id: int = 50_093_239_189,
    quotes: bool = True,
    seed: int = 1,
    source: str = "simulator",
) -> Iterator[BookRow]:
    """The rows of a book from `start_us` to `end_us`: one snapshot, then a diff every
    `every_us` (update ids consecutive across diffs, a few ids per diff) and, with `quotes`,
    one quote per diff at its last update id (the top after it)."""
    rng = random.Random(seed)
    scale = 10 ** price_decimals
    if trades:
        price = trades[0][1]
    center = int(price * scale)
    book = _Book(rng, center, snapshot_levels)
    far = max(20, snapshot_levels // 4)
    uid = first_id

    def levels_of(side: dict[int, int]) -> list[Level]:
        return [(_price_text(p, price_decimals), _qty_text(q)) for p, q in side.items()]

    snap_bids = sorted(book.bids.items(), reverse=True)
    snap_asks = sorted(book.asks.items())
    yield BookSnapshot(
        exchange, symbol, uid, levels_of(dict(snap_bids)), levels_of(dict(snap_asks)), start_us, None, source
    )
    ti = 0
    t = start_us + every_us
    while t < end_us:
        out_b: dict[int, int] = {}
        out_a: dict[int, int] = {}
        c = book.center
        if trades:
            while ti < len(trades) and trades[ti][0] < t:
                tt, p, maker = trades[ti]
                ticks = int(p * scale)
                c = ticks if maker else ticks - 1  # a sell hit the bid at p; a buy lifted the ask at p
                ti += 1
        else:
            c += rng.choice((-2, -1, 0, 0, 0, 0, 1, 2)) if rng.random() < 0.3 else 0
        if c != book.center:
            book.recenter(c, out_b, out_a)
        book.touch(
            out_b, out_a, max(1, (levels * 4) // 3 - len(out_b) - len(out_a) + rng.randint(-10, 10)), far
        )
        if trades:  # the traded prices stay the top
            for side, out, lvl in ((book.bids, out_b, book.center), (book.asks, out_a, book.center + 1)):
                if lvl not in side:
                    side[lvl] = book.size()
                    out[lvl] = side[lvl]
        first = uid + 1
        uid += len(out_b) + len(out_a) + rng.randint(0, 5)
        yield DepthDiff(
            exchange, symbol, first, uid, t, levels_of(out_b), levels_of(out_a), t + 1_500, None, source
        )
        if quotes:
            b, bq, a, aq = book.top()
            yield Quote(
                exchange,
                symbol,
                uid,
                _price_text(b, price_decimals),
                _qty_text(bq),
                _price_text(a, price_decimals),
                _qty_text(aq),
                t + 2_000,
                None,
                source,
            )
        t += every_us


def seed_book_from_trades(
    conn: psycopg.Connection,
    exchange: str,
    symbol: str,
    start: datetime,
    end: datetime,
    *,
    seed: int = 1,
    snapshot_levels: int = 200,
) -> int:
    """Store a synthetic book (source 'simulator') following the stored trades of [start, end),
    unless the symbol has book data already; returns the diffs written (0: none needed or no
    trades). For tests that need a book beside stored trades without capturing one."""
    from ..storage.book import BookWriter

    sym = symbol.upper()
    if (
        conn.execute(
            "SELECT 1 FROM book_snapshots WHERE exchange = %s AND symbol = %s LIMIT 1", (exchange, sym)
        ).fetchone()
        is not None
    ):
        return 0
    rows = conn.execute(
        "SELECT (extract(epoch FROM trade_time) * 1000000)::bigint, price, is_buyer_maker FROM trades "
        "WHERE exchange = %s AND symbol = %s AND trade_time >= %s AND trade_time < %s "
        "ORDER BY trade_id",
        (exchange, sym, start, end),
    ).fetchall()
    if not rows:
        return 0
    trades = [(int(t), Decimal(p), bool(m)) for t, p, m in rows]
    decimals = max(max(0, -int(p.normalize().as_tuple().exponent)) for _, p, _ in trades)
    first, last = min(t for t, _, _ in trades), max(t for t, _, _ in trades)
    book = list(
        synthetic_book(
            exchange,
            sym,
            first - 1_000_000,
            last + 1_000_000,
            trades=sorted(trades),
            price_decimals=min(decimals, 8),
            snapshot_levels=snapshot_levels,
            seed=seed,
        )
    )
    BookWriter(conn).store(book)
    conn.commit()
    return sum(1 for r in book if type(r) is DepthDiff)
