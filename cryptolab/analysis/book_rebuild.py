"""The stored book rebuilt: `load_book` reads what rebuilds a span (the latest snapshot before
it, the snapshots and diffs through it, the crossed books), `Rebuilt` holds it — its runs, exact
ticks, and the top after every diff (vectorised on int64 ticks; an exact Decimal replay for
values beyond int64). `book_top` and the statistics in `microstructure` sit on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import psycopg

from ..book.state import OrderBook
from ..storage.parquet.book_session import book_attached
from .args import AsType, Frame
from .book_archive import (
    cover_ids,
    cover_last,
    cover_time,
)
from .book_replay import NONE, Run, best_levels, plan_runs, scale_of, ticks_to_decimal, to_ticks
from .book_rows import (
    BookSpan,
    StoredDiffs,
    StoredSnapshot,
    crossed_after,
    fixed_scale_ticks,
    read_diffs,
    read_snapshots,
    scalar,
)

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "TOP_COLUMNS",
    "BookPlan",
    "plan_book",
    "load_book",
    "rebuild",
    "book_runs",
    "Rebuilt",
    "empty_top",
]


TOP_COLUMNS = ("update_id", "ts", "bid_price", "bid_qty", "ask_price", "ask_qty", "spread", "mid")


@dataclass
class BookPlan:
    """What rebuilds the book through `span`: the snapshots from the latest one before its first
    diff (`snaps`), the diff ids `first` … `last` to read, the crossed books recorded, and whether
    the read is big enough for the bulk path (`bulk`)."""

    span: BookSpan
    snaps: list[StoredSnapshot]
    first: int
    last: int
    crossed: list[int]
    bulk: bool


def plan_book(c: psycopg.Connection, span: BookSpan) -> BookPlan | None:
    """The `BookPlan` of `span` (archived days attached as needed); None when the span holds no
    diff or no snapshot precedes any of them."""
    exch, sym = span.exchange, span.symbol
    cover_time(c, "book_diffs", exch, sym, span.start, span.end)
    ids = c.execute(
        "SELECT min(last_update_id), max(last_update_id) FROM book_diffs WHERE exchange = %s AND "
        "symbol = %s AND event_time >= %s AND event_time < %s",
        (exch, sym, span.start, span.end),
    ).fetchone()
    if ids is None or ids[0] is None:
        return None
    lo, hi = int(ids[0]), int(ids[1])
    cover_last(c, "book_snapshots", exch, sym, below=lo)
    s0 = scalar(
        c,
        "SELECT max(last_update_id) FROM book_snapshots WHERE exchange = %s AND symbol = %s AND "
        "last_update_id < %s",
        (exch, sym, lo),
    )
    cover_ids(c, "book_snapshots", exch, sym, s0, hi)
    snaps = read_snapshots(c, exch, sym, s0, hi)
    if not snaps:
        return None
    s_first = snaps[0].update_id
    cover_ids(c, "book_diffs", exch, sym, s_first, hi)
    # archived days live in this session only: no reads on other connections (ADBC) then
    bulk = hi - s_first > 200_000 and not book_attached(c)
    return BookPlan(span, snaps, s_first, hi, crossed_after(c, exch, sym, s_first, hi), bulk)


def load_book(c: psycopg.Connection, span: BookSpan) -> Rebuilt | None:
    """The rows that rebuild the book through `span`: the latest snapshot before its first diff,
    the snapshots and diffs up to its last one, the crossed books recorded; None when the span
    holds no diff or no snapshot precedes any of them."""
    plan = plan_book(c, span)
    return None if plan is None else rebuild(c, plan)


def rebuild(c: psycopg.Connection, plan: BookPlan) -> Rebuilt:
    """Read the plan's diffs (levels and all) and rebuild the book through them."""
    span = plan.span
    diffs = read_diffs(
        c, span.exchange, span.symbol, plan.first, plan.last, span.end, inclusive=True, bulk=plan.bulk
    )
    return Rebuilt(diffs, plan.snaps, plan.crossed)


def book_runs(diffs: StoredDiffs, snaps: list[StoredSnapshot], crossed: list[int]) -> list[Run]:
    """The runs (`book_replay.plan_runs`) the stored diffs rebuild from the snapshots, each with a diff."""
    f = diffs.frame
    runs = plan_runs(
        f["first_id"].to_numpy(),
        f["last_id"].to_numpy(),
        f["prev_id"].to_numpy() if diffs.futures else None,
        [s.update_id for s in snaps],
        crossed,
        diffs.futures,
    )
    return [r for r in runs if r.diffs]


@overload
def empty_top(as_: Literal["polars"]) -> pl.DataFrame: ...


@overload
def empty_top(as_: AsType) -> Frame: ...


def empty_top(as_: AsType) -> Frame:
    import polars as pl

    d = pl.Decimal(38, 8)
    frame = pl.DataFrame(
        schema={
            "update_id": pl.Int64,
            "ts": pl.Datetime("us", "UTC"),
            "bid_price": d,
            "bid_qty": d,
            "ask_price": d,
            "ask_qty": d,
            "spread": d,
            "mid": pl.Decimal(38, 9),
        }
    )
    return frame.to_pandas() if as_ == "pandas" else frame


class Rebuilt:
    """Stored rows that rebuild a book (pure from here on): its runs, exact ticks, tops, levels."""

    def __init__(self, diffs: StoredDiffs, snaps: list[StoredSnapshot], crossed: list[int]) -> None:
        self.diffs, self.snaps, self.crossed = diffs, snaps, crossed
        f = diffs.frame
        self.futures = diffs.futures
        self.last = f["last_id"].to_numpy()
        self.runs = book_runs(diffs, snaps, crossed)
        self.ticks: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        fast = fixed_scale_ticks(diffs.raw)
        snap_ps = scale_of(*[x.bids[0] for x in snaps], *[x.asks[0] for x in snaps])
        snap_qs = scale_of(*[x.bids[1] for x in snaps], *[x.asks[1] for x in snaps])
        if fast is not None:  # every diff level has the same number of decimals (Binance: 8)
            (ps, qs), ticks = fast
            self.price_scale, self.qty_scale = max(ps, snap_ps), max(qs, snap_qs)
            up_p, up_q = 10 ** (self.price_scale - ps), 10 ** (self.qty_scale - qs)
            self.ticks = {
                s: (d, p * up_p if up_p > 1 else p, q * up_q if up_q > 1 else q)
                for s, (d, p, q) in ticks.items()
            }
            return
        sides = ("bid", "ask")
        self.price_scale = max(snap_ps, scale_of(*[diffs.sides[s]["price"] for s in sides]))
        self.qty_scale = max(snap_qs, scale_of(*[diffs.sides[s]["qty"] for s in sides]))
        try:
            self.ticks = {
                s: (
                    diffs.sides[s]["d"].to_numpy(),
                    to_ticks(diffs.sides[s]["price"], self.price_scale),
                    to_ticks(diffs.sides[s]["qty"], self.qty_scale),
                )
                for s in sides
            }
        except ValueError:  # more than 18 digits: the exact Decimal replay (slow, rare)
            self.ticks = None

    def updates(self, r: Run, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every level update of run `r` on `side` in order: (k, price, qty) ticks, the
        snapshot's levels first with k = 0, then diff r.first + k's."""
        assert self.ticks is not None
        snap = self.snaps[r.snapshot]
        levels = snap.bids if side == "bid" else snap.asks
        d, p, q = self.ticks[side]
        a, b = np.searchsorted(d, r.first), np.searchsorted(d, r.last, side="right")
        sp, sq = to_ticks(levels[0], self.price_scale), to_ticks(levels[1], self.qty_scale)
        k = np.concatenate([np.zeros(len(sp), dtype=np.int64), d[a:b] - r.first])
        return k, np.concatenate([sp, p[a:b]]), np.concatenate([sq, q[a:b]])

    def top(self) -> Any:
        """The top after every diff the runs rebuild: the book_top frame plus `run` (its index)."""
        import polars as pl

        if self.ticks is None:
            return _top_decimal(self.diffs, self.snaps, self.runs)
        ps, qs = self.price_scale, self.qty_scale
        rows: list[np.ndarray] = []
        run_no: list[np.ndarray] = []
        best: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {"bid": [], "ask": []}
        from concurrent.futures import ThreadPoolExecutor

        def side_best(r: Run, side: str) -> tuple[np.ndarray, np.ndarray]:
            k, p, q = self.updates(r, side)
            return best_levels(k, p, q, r.diffs, highest=side == "bid")

        with ThreadPoolExecutor(2) as pool:  # numpy's sorts and ufuncs release the GIL: both sides at once
            for i, r in enumerate(self.runs):
                bid, ask = pool.submit(side_best, r, "bid"), pool.submit(side_best, r, "ask")
                best["bid"].append(bid.result())
                best["ask"].append(ask.result())
                rows.append(np.arange(r.first, r.last + 1))
                run_no.append(np.full(r.diffs, i, dtype=np.int64))
        if not rows:
            return empty_top("polars").with_columns(pl.lit(0, dtype=pl.Int64).alias("run"))
        idx = np.concatenate(rows)
        bp = np.concatenate([x[0] for x in best["bid"]])
        bq = np.concatenate([x[1] for x in best["bid"]])
        ap = np.concatenate([x[0] for x in best["ask"]])
        aq = np.concatenate([x[1] for x in best["ask"]])
        hb, ha = bp != NONE, ap != NONE
        both = hb & ha
        event_us = self.diffs.frame["event_us"].to_numpy()[idx]
        return pl.DataFrame(
            [
                pl.Series("update_id", self.last[idx], dtype=pl.Int64),
                pl.Series("ts", event_us, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
                ticks_to_decimal("bid_price", np.where(hb, bp, 0), ps, hb),
                ticks_to_decimal("bid_qty", bq, qs, hb),
                ticks_to_decimal("ask_price", np.where(ha, ap, 0), ps, ha),
                ticks_to_decimal("ask_qty", aq, qs, ha),
                ticks_to_decimal("spread", np.where(both, ap - bp, 0), ps, both),
                ticks_to_decimal("mid", np.where(both, (ap + bp) * 5, 0), ps + 1, both),
                pl.Series("run", np.concatenate(run_no), dtype=pl.Int64),
            ]
        )


def _top_decimal(diffs: StoredDiffs, snaps: list[StoredSnapshot], runs: list[Run]) -> Any:
    """book_top's frame by applying each diff to an exact Decimal book (values beyond int64)."""
    import polars as pl

    from .frames import decimal_series

    f = diffs.frame
    per = {s: diffs.sides[s].group_by("d", maintain_order=True).agg("price", "qty") for s in ("bid", "ask")}
    lv = {s: {int(d): list(zip(p, q)) for d, p, q in per[s].iter_rows()} for s in per}
    out: list[tuple[Any, ...]] = []
    run_no: list[int] = []
    for no, r in enumerate(runs):
        snap = snaps[r.snapshot]
        book = OrderBook()
        book.load(zip(snap.bids[0], snap.bids[1]), zip(snap.asks[0], snap.asks[1]), snap.update_id)
        for i in range(r.first, r.last + 1):
            book.apply(lv["bid"].get(i, []), lv["ask"].get(i, []), int(f["last_id"][i]))
            b, a = book.best_bid(), book.best_ask()
            spread = mid = None
            if b and a:
                spread, mid = a[0] - b[0], (a[0] + b[0]) / 2
            out.append(
                (
                    int(f["last_id"][i]),
                    int(f["event_us"][i]),
                    b and b[0],
                    b and b[1],
                    a and a[0],
                    a and a[1],
                    spread,
                    mid,
                )
            )
            run_no.append(no)
    cols = list(zip(*out)) if out else [()] * 8

    def dec(name: str, vals: Any) -> Any:
        return decimal_series(name, [None if v is None else format(v, "f") for v in vals])

    return pl.DataFrame(
        [
            pl.Series("update_id", cols[0], dtype=pl.Int64),
            pl.Series("ts", cols[1], dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            *(dec(n, cols[i]) for i, n in enumerate(TOP_COLUMNS[2:], start=2)),
            pl.Series("run", run_no, dtype=pl.Int64),
        ]
    )
