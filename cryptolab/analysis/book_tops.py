"""`book_top` read from the tops stored at ingest instead of rebuilding the book.

The capture and the recording loader keep a synced book and store its top after every diff they
apply (`book_tops`, schema version 10). Any valid rebuild of the same ids gives the same top, so
where the stored tops cover every diff of every run the stored rows rebuild (`plan_runs`: the
same runs, the same crossed books honoured), `book_top` is one read of ~5 values per update
instead of ~45 level updates per diff. A run they do not cover (rows stored before version 10, a
diff re-ordered on the wire, archived days) is rebuilt from its own diffs' levels, as before;
the other runs still read their tops.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg

from .book_rebuild import BookPlan, Rebuilt, book_runs
from .book_replay import Run, scale_of, ticks_to_decimal, to_ticks
from .book_rows import read_diffs, read_tops

__all__ = ["stored_top"]


def stored_top(c: psycopg.Connection, plan: BookPlan) -> Any | None:
    """book_top's frame (with `run`): the runs the stored tops cover read from `book_tops`, the
    others rebuilt from their own diffs' levels; None when no run is covered at all (the caller
    rebuilds everything as one) or a stored value is beyond int64 (the exact replay handles it)."""
    import polars as pl

    span = plan.span
    ids = read_diffs(
        c, span.exchange, span.symbol, plan.first, plan.last, span.end, inclusive=True, bulk=plan.bulk,
        levels=False,
    )
    runs = book_runs(ids, plan.snaps, plan.crossed)
    if not runs:
        return None
    last = ids.frame["last_id"].to_numpy()
    lo, hi = int(last[runs[0].first]), int(last[runs[-1].last])
    tops = read_tops(c, span.exchange, span.symbol, lo, hi, bulk=plan.bulk)
    have = tops["update_id"].to_numpy()
    covered: list[tuple[int, Run, np.ndarray]] = []
    missing: list[tuple[int, Run, np.ndarray]] = []
    for i, r in enumerate(runs):
        want = last[r.first : r.last + 1]
        pos = np.searchsorted(have, want)
        ok = (
            len(have) > 0
            and pos[-1] < len(have)
            and np.array_equal(have[np.minimum(pos, len(have) - 1)], want)
        )
        (covered if ok else missing).append((i, r, pos))
    if not covered:
        return None
    frame = _from_tops(tops, ids.frame, plan, covered)
    if frame is None:
        return None
    parts = [frame]
    for i, r, _ in missing:
        part = _rebuilt_run(c, plan, int(last[r.first]), int(last[r.last]))
        if part is None:
            return None
        parts.append(part.with_columns(pl.lit(i, dtype=pl.Int64).alias("run")))
    if len(parts) == 1:
        return frame
    return _same_scales(parts).sort("update_id")


def _from_tops(tops: Any, ids: Any, plan: BookPlan, covered: list[tuple[int, Run, np.ndarray]]) -> Any | None:
    """The frame of the covered runs from their stored tops (exact ticks → Decimal columns)."""
    import polars as pl

    idx = np.concatenate([np.arange(r.first, r.last + 1) for _, r, _ in covered])
    picked = tops[np.concatenate([pos for _, _, pos in covered])]
    snap_ps = scale_of(*[x.bids[0] for x in plan.snaps], *[x.asks[0] for x in plan.snaps])
    snap_qs = scale_of(*[x.bids[1] for x in plan.snaps], *[x.asks[1] for x in plan.snaps])
    ps = max(snap_ps, scale_of(picked["bid_price"].drop_nulls(), picked["ask_price"].drop_nulls()))
    qs = max(snap_qs, scale_of(picked["bid_qty"].drop_nulls(), picked["ask_qty"].drop_nulls()))
    try:
        bp, bq, ap, aq = (
            to_ticks(picked[n].fill_null("0"), s)
            for n, s in (("bid_price", ps), ("bid_qty", qs), ("ask_price", ps), ("ask_qty", qs))
        )
    except ValueError:
        return None
    hb, ha = picked["bid_price"].is_not_null().to_numpy(), picked["ask_price"].is_not_null().to_numpy()
    both = hb & ha
    run_no = np.concatenate([np.full(r.diffs, i, dtype=np.int64) for i, r, _ in covered])
    return pl.DataFrame(
        [
            pl.Series("update_id", ids["last_id"].to_numpy()[idx], dtype=pl.Int64),
            pl.Series("ts", ids["event_us"].to_numpy()[idx], dtype=pl.Int64)
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC"),
            ticks_to_decimal("bid_price", bp, ps, hb),
            ticks_to_decimal("bid_qty", bq, qs, hb),
            ticks_to_decimal("ask_price", ap, ps, ha),
            ticks_to_decimal("ask_qty", aq, qs, ha),
            ticks_to_decimal("spread", np.where(both, ap - bp, 0), ps, both),
            ticks_to_decimal("mid", np.where(both, (ap + bp) * 5, 0), ps + 1, both),
            pl.Series("run", run_no, dtype=pl.Int64),
        ]
    )


def _rebuilt_run(c: psycopg.Connection, plan: BookPlan, first_id: int, last_id: int) -> Any | None:
    """One run rebuilt from its own diffs (last ids first_id … last_id) and the snapshots; None
    when they do not make exactly that run again."""
    span = plan.span
    diffs = read_diffs(c, span.exchange, span.symbol, first_id, last_id, span.end, inclusive=True)
    rb = Rebuilt(diffs, plan.snaps, plan.crossed)
    if len(rb.runs) != 1 or rb.runs[0].diffs != diffs.frame.height:
        return None
    return rb.top().drop("run")


def _same_scales(parts: list[Any]) -> Any:
    """Frames of one book_top stacked, every Decimal column at the largest scale any part has."""
    import polars as pl

    scales: dict[str, int] = {}
    for f in parts:
        for name, dtype in f.schema.items():
            if isinstance(dtype, pl.Decimal):
                scales[name] = max(scales.get(name, 0), dtype.scale or 0)
    return pl.concat(
        [f.with_columns(pl.col(n).cast(pl.Decimal(38, s)) for n, s in scales.items()) for f in parts]
    )
