"""`book_top` read from the tops stored at ingest instead of rebuilding the book.

The capture and the recording loader keep a synced book and store its top after every diff they
apply (`book_tops`, schema version 10). Any valid rebuild of the same ids gives the same top, so
where the stored tops cover every diff of every run the stored rows rebuild (`plan_runs`: the
same runs, the same crossed books honoured), `book_top` is one read of ~5 values per update
instead of ~45 level updates per diff; anywhere they do not (rows stored before version 10, a
writer restarted in the middle of a run, archived days) the caller rebuilds as before. Only the
diffs' ids are read here, never their levels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg

from .book_rebuild import BookPlan, book_runs
from .book_replay import scale_of, ticks_to_decimal, to_ticks
from .book_rows import read_diffs, read_tops

__all__ = ["stored_top"]


def stored_top(c: psycopg.Connection, plan: BookPlan) -> Any | None:
    """book_top's frame (with `run`) from `book_tops`, or None when they do not cover every diff
    the plan's runs rebuild (or a value is beyond int64: the exact replay handles those)."""
    import polars as pl

    span = plan.span
    ids = read_diffs(
        c, span.exchange, span.symbol, plan.first, plan.last, span.end, inclusive=True, bulk=plan.bulk,
        levels=False,
    )
    runs = book_runs(ids, plan.snaps, plan.crossed)
    if not runs:
        return None
    idx = np.concatenate([np.arange(r.first, r.last + 1) for r in runs])
    last = ids.frame["last_id"].to_numpy()
    want = last[idx]
    tops = read_tops(c, span.exchange, span.symbol, int(want[0]), int(want[-1]), bulk=plan.bulk)
    have = tops["update_id"].to_numpy()
    pos = np.searchsorted(have, want)
    if (
        len(have) == 0
        or pos[-1] >= len(have)
        or not np.array_equal(have[np.minimum(pos, len(have) - 1)], want)
    ):
        return None
    picked = tops[pos]
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
    event_us = ids.frame["event_us"].to_numpy()[idx]
    run_no = np.concatenate([np.full(r.diffs, i, dtype=np.int64) for i, r in enumerate(runs)])
    return pl.DataFrame(
        [
            pl.Series("update_id", want, dtype=pl.Int64),
            pl.Series("ts", event_us, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            ticks_to_decimal("bid_price", bp, ps, hb),
            ticks_to_decimal("bid_qty", bq, qs, hb),
            ticks_to_decimal("ask_price", ap, ps, ha),
            ticks_to_decimal("ask_qty", aq, qs, ha),
            ticks_to_decimal("spread", np.where(both, ap - bp, 0), ps, both),
            ticks_to_decimal("mid", np.where(both, (ap + bp) * 5, 0), ps + 1, both),
            pl.Series("run", run_no, dtype=pl.Int64),
        ]
    )
