"""The pure core of the book readers: runs through continuous diffs, exact ticks, the best level
after every diff against a plain dict replay."""

from __future__ import annotations

import random
from decimal import Decimal

import numpy as np
import polars as pl

from cryptolab.analysis.book_replay import (
    NONE,
    Run,
    best_levels,
    final_levels,
    plan_runs,
    range_max,
    scale_of,
    ticks_to_decimal,
    to_ticks,
)


def _naive(snap: dict[int, int], diffs: list[list[tuple[int, int]]], highest: bool) -> list[tuple[int, int]]:
    book = dict(snap)
    out = []
    for levels in diffs:
        for p, q in levels:
            if q:
                book[p] = q
            else:
                book.pop(p, None)
        if book:
            b = max(book) if highest else min(book)
            out.append((b, book[b]))
        else:
            out.append((int(NONE), 0))
    return out


def test_the_best_level_after_every_diff_equals_a_plain_replay() -> None:
    rng = random.Random(5)
    for _ in range(400):
        step = rng.choice([1, 10**6])  # prices on a grid (0.01 at scale 8) or not
        snap = {rng.randint(0, 30) * step + 7: rng.randint(1, 5) for _ in range(rng.randint(0, 8))}
        n = rng.randint(1, 40)
        diffs = [
            [(rng.randint(0, 30) * step + 7, rng.choice([0, 0, 1, 2, 3])) for _ in range(rng.randint(0, 5))]
            for _ in range(n)
        ]
        k = [0] * len(snap) + [i for i, lv in enumerate(diffs) for _ in lv]
        p = list(snap) + [x for lv in diffs for x, _ in lv]
        q = list(snap.values()) + [y for lv in diffs for _, y in lv]
        for highest in (True, False):
            bp, bq = best_levels(
                np.array(k, dtype=np.int64),
                np.array(p, dtype=np.int64),
                np.array(q, dtype=np.int64),
                n,
                highest=highest,
            )
            assert list(zip(bp.tolist(), bq.tolist())) == _naive(snap, diffs, highest)


def test_range_max_paints_the_highest_covering_segment() -> None:
    rng = np.random.default_rng(3)
    n = 200_000  # more than one chunk
    a = rng.integers(0, n, 3000)
    b = np.minimum(n, a + rng.integers(1, 90_000, 3000))
    v = rng.integers(-1000, 1000, 3000)
    got = range_max(a, b, v, n)
    for k in (0, 1, 65_535, 65_536, 131_071, 150_000, n - 1):
        cover = v[(a <= k) & (k < b)]
        assert got[k] == (cover.max() if len(cover) else NONE)


def test_runs_follow_continuity_and_stop_at_a_crossed_book() -> None:
    first = np.array([95, 103, 106, 120, 125, 130, 141, 150])
    last = np.array([102, 105, 110, 124, 129, 140, 149, 155])
    # spot: 120 > 110 + 1 is a break; the snapshot at 119 heals it; 140 crossed the book
    runs = plan_runs(first, last, None, [100, 119, 145, 149], [140], False)
    assert runs == [Run(0, 0, 2), Run(1, 3, 4), Run(2, 6, 7)]  # 149: inside the run from 145
    # a snapshot inside a run changes nothing; one whose next diff does not straddle it holds at its id only
    assert plan_runs(first, last, None, [100, 104], [], False) == [Run(0, 0, 2)]
    assert plan_runs(first, last, None, [112], [], False) == [Run(0, 3, 2)]
    # futures: pu must equal the previous u; the straddle is U ≤ id ≤ u
    prev = np.array([94, 102, 105, 110, 124, 128, 140, 149])
    assert plan_runs(first, last, prev, [100], [], True) == [Run(0, 0, 4)]


def test_ticks_are_exact_and_come_back_as_the_same_decimals() -> None:
    s = pl.Series(["61837.63000000", "0.00000001", "5", "61700.1", "0.00000000"])
    scale = scale_of(s)
    t = to_ticks(s, scale)
    assert scale == 8 and t.tolist() == [6_183_763_000_000, 1, 500_000_000, 6_170_010_000_000, 0]
    back = ticks_to_decimal("x", t, scale, np.array([True, True, True, True, False]))
    assert back.to_list() == [Decimal("61837.63"), Decimal("1E-8"), Decimal(5), Decimal("61700.1"), None]
    assert back.dtype == pl.Decimal(38, 8)


def test_the_final_levels_keep_the_last_write_per_price() -> None:
    p, q = final_levels(np.array([5, 3, 5, 4, 3]), np.array([1, 2, 0, 7, 9]))
    assert p.tolist() == [3, 4] and q.tolist() == [9, 7]
