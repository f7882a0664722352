"""Rebuilding order books from stored rows — the decisions and the arithmetic, without I/O.

* **Runs** (`plan_runs`): where the stored diffs rebuild a book. A run starts at a snapshot whose
  first following diff straddles it (spot: `U ≤ lastUpdateId + 1 < … ≤ u`; futures:
  `U ≤ lastUpdateId ≤ u`) and lasts while the diffs are continuous (spot: each diff's `U ≤`
  the previous `u + 1`; futures: its `pu` = the previous `u`) and no book came out crossed
  (a `crossed` gap's `after_update_id` is the diff that crossed it: that state is not truth).
* **Ticks**: decimal strings become exact int64 integers of 10^-scale, scale being the largest
  number of fraction digits the data has (`scale_of`, `to_ticks`), and back (`ticks_to_decimal`).
* **Tops** (`best_levels`): the best level after every diff of a run, vectorised. Every level
  update opens a *segment* — the level's quantity from that diff until the next update of the
  same price. The best bid after diff k is the highest price among the live segments covering
  k: a range-maximum "paint" done with a sparse table (two power-of-two blocks per segment,
  `np.maximum.at`, then one pass per table level down), in chunks of 2^16 diffs; its quantity
  is found by one `searchsorted` over the segments sorted by (price, start). Integers only:
  exact, and ~50× faster than applying each diff to dicts.
* **State** (`final_levels`): the book at the end of a list of updates (the last write per
  price wins; quantity 0 removes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Run", "continuous", "plan_runs", "scale_of", "to_ticks", "ticks_to_decimal", "best_levels",
           "final_levels", "range_max", "NONE"]

NONE = np.iinfo(np.int64).min
"""The tick value of 'no level' (an empty side)."""

_CHUNK = 1 << 16
_MAX_DIGITS = 18  # int64 holds every 18-digit integer


@dataclass(frozen=True)
class Run:
    """A stretch the book is rebuilt through: snapshot `snapshot` (an index into the snapshots
    given to `plan_runs`), then diffs `first` … `last` (indices, inclusive; `last < first`
    when no diff follows it: the book is known at the snapshot's id only)."""

    snapshot: int
    first: int
    last: int

    @property
    def diffs(self) -> int:
        return max(0, self.last - self.first + 1)


def continuous(
    first_ids: np.ndarray, last_ids: np.ndarray, prev_ids: np.ndarray | None, futures: bool
) -> np.ndarray:
    """cont[i]: diff i continues diff i−1 (spot: U ≤ previous u + 1; futures: pu = previous u);
    cont[0] is False. The diffs are in last-update-id order."""
    n = len(last_ids)
    cont = np.zeros(n, dtype=bool)
    if n > 1:
        if futures:
            assert prev_ids is not None
            cont[1:] = prev_ids[1:] == last_ids[:-1]
        else:
            cont[1:] = first_ids[1:] <= last_ids[:-1] + 1
    return cont


def plan_runs(
    first_ids: np.ndarray,
    last_ids: np.ndarray,
    prev_ids: np.ndarray | None,
    snapshot_ids: Sequence[int],
    crossed_after: Sequence[int],
    futures: bool,
) -> list[Run]:
    """The runs the diffs (in last-id order) rebuild from the snapshots (ascending ids), not
    overlapping: a snapshot met while an earlier run still goes on is not needed and skipped.
    A diff whose last id is a crossed gap's `after_update_id` ends its run before it (and a
    snapshot with that id starts none)."""
    n = len(last_ids)
    cont = continuous(first_ids, last_ids, prev_ids, futures)
    bad = (
        np.isin(last_ids, np.asarray(list(crossed_after), dtype=np.int64))
        if crossed_after
        else np.zeros(n, bool)
    )
    # a diff ends its chain when the next one does not continue it or is bad (or it is the last)
    ends_here = np.ones(n, dtype=bool)
    if n > 1:
        ends_here[:-1] = ~cont[1:] | bad[1:]
    ends = np.flatnonzero(ends_here)
    poisoned = set(int(x) for x in crossed_after)
    runs: list[Run] = []
    covered = -1  # the last diff index a run already reaches
    for j, s in enumerate(snapshot_ids):
        if s in poisoned:
            continue
        i = int(np.searchsorted(last_ids, s, side="left" if futures else "right"))
        if i < n and i <= covered:
            continue  # an earlier run goes through this snapshot's id: it changes nothing
        if i >= n:
            runs.append(Run(j, i, i - 1))
            continue
        straddles = first_ids[i] <= s <= last_ids[i] if futures else first_ids[i] <= s + 1
        if not straddles or bad[i]:
            runs.append(Run(j, i, i - 1))
            continue
        end = int(ends[np.searchsorted(ends, i)])
        runs.append(Run(j, i, end))
        covered = end
    return runs


# ---------------------------------------------------------------- exact integers


def scale_of(*columns: Any) -> int:
    """The largest number of fraction digits among polars String series (0 when none)."""
    import polars as pl

    best = 0
    for s in columns:
        if len(s) == 0:
            continue
        dot = s.str.find(".", literal=True)
        frac = (s.str.len_bytes().cast(pl.Int64) - dot.cast(pl.Int64) - 1).max()
        if frac is not None:
            best = max(best, int(frac))
    return best


def to_ticks(s: Any, scale: int) -> np.ndarray:
    """Plain decimal strings (a polars String series, no sign or exponent) → exact int64 units
    of 10^-scale. ValueError when a value has more digits than int64 holds (the caller then
    takes the Decimal path)."""
    import polars as pl

    if len(s) == 0:
        return np.zeros(0, dtype=np.int64)
    if scale:  # the usual case (Binance pads to 8 decimals): every value has `scale` of them
        probe = (
            pl.select(
                (s.str.len_bytes().cast(pl.Int64) - s.str.find(".", literal=True).cast(pl.Int64) - 1).alias(
                    "f"
                ),
                s.str.len_bytes().alias("n"),
            )
            .select(
                pl.col("f").min().alias("a"),
                pl.col("f").null_count().alias("b"),
                pl.col("n").max().alias("c"),
            )
            .row(0)
        )
        if probe[0] == scale and probe[1] == 0 and probe[2] <= _MAX_DIGITS + 1:
            fast: np.ndarray = s.str.replace(".", "", literal=True).cast(pl.Int64, strict=True).to_numpy()
            return fast.astype(np.int64, copy=False)
    parts = s.str.split_exact(".", 1).struct.unnest()
    whole, frac = parts.columns[0], parts.columns[1]
    longest = parts.select(pl.col(whole).str.len_bytes().max()).item()
    if longest is None or int(longest) + scale > _MAX_DIGITS:
        raise ValueError("a value does not fit 18 digits at this scale")
    frame = parts.select(
        pl.col(whole).cast(pl.Int64, strict=True).alias("w"),
        pl.col(frac).fill_null("").str.pad_end(scale, "0").str.slice(0, scale).alias("f"),
    )
    w: np.ndarray = frame["w"].to_numpy().astype(np.int64)
    if scale == 0:
        return w
    f: np.ndarray = frame["f"].cast(pl.Int64, strict=True).to_numpy().astype(np.int64)
    out: np.ndarray = w * (10**scale) + f
    return out


def ticks_to_decimal(name: str, ticks: np.ndarray, scale: int, valid: np.ndarray | None = None) -> Any:
    """int64 units of 10^-scale → an exact pl.Decimal(38, scale) series (null where not `valid`)."""
    import polars as pl

    t = pl.Series(name, ticks, dtype=pl.Int64)
    if valid is not None:
        t = t.set(pl.Series(~valid), None)
    if scale == 0:
        return t.cast(pl.Decimal(38, 0))
    neg = t < 0
    digits = t.abs().cast(pl.String).str.pad_start(scale + 1, "0")
    text = pl.select(
        pl.when(neg).then(pl.lit("-")).otherwise(pl.lit(""))
        + digits.str.slice(0, digits.str.len_bytes() - scale)
        + pl.lit(".")
        + digits.str.slice(-scale)
    ).to_series()
    return text.str.to_decimal(scale=scale).rename(name)


# ---------------------------------------------------------------- the best level after every diff


def range_max(a: np.ndarray, b: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    """out[k] = max(v[i] for segments i with a[i] ≤ k < b[i]), NONE where none covers k."""
    out = np.full(n, NONE, dtype=np.int64)
    if n == 0 or len(a) == 0:
        return out
    # each segment cut into its pieces per chunk (most lie in one), grouped by chunk
    first, last = a // _CHUNK, (b - 1) // _CHUNK
    multi = np.flatnonzero(last > first)
    count = (last - first + 1)[multi]
    extra = np.repeat(multi, count)  # the segments over several chunks, once per chunk
    extra_chunk = np.repeat(first[multi], count) + (
        np.arange(len(extra)) - np.repeat(np.cumsum(count) - count, count)
    )
    single = np.flatnonzero(last == first)
    seg = np.concatenate([single, extra])
    chunk = np.concatenate([first[single], extra_chunk])
    order = np.argsort(chunk.astype(np.int16 if n <= _CHUNK * 32_000 else np.int32), kind="stable")  # radix
    seg, chunk = seg[order], chunk[order]
    bounds = np.searchsorted(chunk, np.arange(0, (n - 1) // _CHUNK + 2))
    for ci in range(len(bounds) - 1):
        lo_i, hi_i = bounds[ci], bounds[ci + 1]
        if lo_i == hi_i:
            continue
        c0 = ci * _CHUNK
        c1 = min(n, c0 + _CHUNK)
        sel = seg[lo_i:hi_i]
        aa = np.maximum(a[sel], c0) - c0
        bb = np.minimum(b[sel], c1) - c0
        vv = v[sel]
        m = c1 - c0
        j = (np.frexp((bb - aa).astype(np.float64))[1] - 1).astype(np.int64)  # floor(log2(length)), exact
        levels = int(j.max()) + 1
        table = np.full((levels, m), NONE, dtype=np.int64)
        flat = table.reshape(-1)
        np.maximum.at(flat, j * m + aa, vv)
        np.maximum.at(flat, j * m + bb - (np.int64(1) << j), vv)
        for lvl in range(levels - 1, 0, -1):
            half = 1 << (lvl - 1)
            width = m - (1 << lvl) + 1
            if width <= 0:
                continue
            row = table[lvl, :width]
            np.maximum(table[lvl - 1, :width], row, out=table[lvl - 1, :width])
            np.maximum(table[lvl - 1, half : half + width], row, out=table[lvl - 1, half : half + width])
        out[c0:c1] = table[0]
    return out


def best_levels(
    k: np.ndarray, price: np.ndarray, qty: np.ndarray, n: int, *, highest: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The best (price, qty) ticks after each of n diffs of a run (NONE where the side is empty).

    `k`, `price`, `qty`: every level update of the run in order — the snapshot's levels first
    with k = 0, then each diff's with k = its index in the run (0 … n−1). `highest`: bids."""
    size = len(k)
    best_p = np.full(n, NONE, dtype=np.int64)
    best_q = np.zeros(n, dtype=np.int64)
    if size == 0 or n == 0:
        return best_p, best_q
    rank, uniq = _ranks(price)
    ps, ks, idx = _sorted_updates(rank, k, n)
    keep = np.ones(len(ps), dtype=bool)
    keep[:-1] = ~((ps[1:] == ps[:-1]) & (ks[1:] == ks[:-1]))  # within one diff, the last write wins
    ps, ks, idx = ps[keep], ks[keep], idx[keep]
    ends = np.full(len(ps), n, dtype=np.int64)
    same = ps[1:] == ps[:-1]
    ends[:-1] = np.where(same, ks[1:], n)
    alive = (qty > 0)[idx]
    pa, ka, ea, ia = ps[alive], ks[alive], ends[alive], idx[alive]
    if len(pa) == 0:
        return best_p, best_q
    top = range_max(ka, ea, pa if highest else -pa, n)  # over price ranks: the same order as prices
    has = top != NONE
    states = np.flatnonzero(has)
    r = top[states] if highest else -top[states]
    best_p[states] = uniq[r]
    # its quantity: the live segment of that price that started last at or before k
    width = np.int64(n + 1)
    pos = np.searchsorted(pa * width + ka, r * width + states, side="right") - 1
    best_q[states] = qty[ia[pos]]
    return best_p, best_q


def _ranks(price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense ranks of the prices (0 = lowest) and the distinct prices, ascending."""
    lo, hi = int(price.min()), int(price.max())
    off = price - lo
    step = int(np.gcd.reduce(off)) if hi > lo else 1  # the price grid's step (0.01 at scale 8: 10^6)
    if step > 1:
        off = off // step
    if (hi - lo) // max(step, 1) < 1 << 26:  # a table over the price grid: O(n), no sort
        present = np.zeros((hi - lo) // max(step, 1) + 1, dtype=bool)
        present[off] = True
        uniq = np.flatnonzero(present).astype(np.int64) * max(step, 1) + lo
        ranks = (np.cumsum(present) - 1).astype(np.int64)
        return ranks[off], uniq
    uniq, inverse = np.unique(price, return_inverse=True)
    return inverse.astype(np.int64), uniq.astype(np.int64)


def _sorted_updates(rank: np.ndarray, k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rank, k, position) of the updates sorted by rank, then position (= time order)."""
    size = len(rank)
    ibits = max(1, size.bit_length())
    kbits = max(1, n.bit_length())
    if int(rank.max()).bit_length() + kbits + ibits <= 63:  # one packed int64 key: a plain value sort
        key = (rank << np.int64(kbits + ibits)) | (k << np.int64(ibits)) | np.arange(size, dtype=np.int64)
        key.sort()
        idx = key & np.int64((1 << ibits) - 1)
        ks = (key >> np.int64(ibits)) & np.int64((1 << kbits) - 1)
        return key >> np.int64(kbits + ibits), ks, idx
    order = np.argsort(rank, kind="stable")
    return rank[order], k[order], order.astype(np.int64)


def final_levels(price: np.ndarray, qty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The levels (price, qty ticks, ascending price) left after applying the updates in order."""
    if len(price) == 0:
        return price, qty
    order = np.argsort(price, kind="stable")
    ps, qs = price[order], qty[order]
    last = np.ones(len(ps), dtype=bool)
    last[:-1] = ps[1:] != ps[:-1]
    ps, qs = ps[last], qs[last]
    live = qs > 0
    return ps[live], qs[live]
