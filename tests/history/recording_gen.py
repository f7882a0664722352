"""A small raw stream recording in the real format, from a pure synthetic market whose book is known.

`make_recording(...)` plays a random but consistent L2 market (bids below 100, asks above:
never crossed) and writes what a recorder of Binance's combined stream would: one line per
message, `<local receive ns> <raw JSON>` — `@depth@100ms` diffs (futures: `@depth@0ms` with
`pu`), `@bookTicker` after each diff, `@trade` now and then, and REST snapshots inline as bare
`{"lastUpdateId":…}` lines (a few lines in, after the first diffs, like the real recordings).
It returns the lines and the truth: the book after every update id, to compare the stored book
with. Options drop a diff (a gap in the recording, healed by a later snapshot) and add malformed
lines.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from decimal import Decimal

from cryptolab.book import OrderBook

T0_US = 1_723_161_540_000_000  # 2024-08-08 23:59:00 UTC: the recording crosses midnight
SYMBOL = "BTCUSDT"


@dataclass
class Recording:
    lines: list[str]
    tops: dict[int, tuple[tuple[Decimal, Decimal], tuple[Decimal, Decimal]]] = field(default_factory=dict)
    """update id → ((best bid, qty), (best ask, qty)) of the true book after the diff ending there."""
    final: OrderBook = field(default_factory=OrderBook)
    trades: int = 0
    diffs: int = 0
    level_updates: int = 0
    quotes: int = 0
    dropped: list[tuple[int, int]] = field(default_factory=list)
    """(last id the book was right at, first id of the diff after the dropped one)."""


def _p(x: int) -> str:
    return f"{Decimal(x).scaleb(-2):.8f}"


def _q(x: int) -> str:
    return f"{Decimal(x).scaleb(-5):.8f}"


def _dump(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def make_recording(n_diffs: int = 400, *, futures: bool = False, seed: int = 7, drop_at: int | None = None,
                   heal_after: int = 20, bad_lines: bool = False, step_us: int = 1_000_000) -> Recording:
    rng = random.Random(seed)
    book = OrderBook()
    bids = [(_p(10_000 - i), _q(rng.randint(1, 500_000))) for i in range(1, 30)]
    asks = [(_p(10_000 + i), _q(rng.randint(1, 500_000))) for i in range(1, 30)]
    uid = 5_000_000
    book.load(bids, asks, uid)
    rec = Recording([])
    t = T0_US
    tid = 100_000
    stream = "btcusdt@depth@0ms" if futures else "btcusdt@depth@100ms"
    prev_u = uid - 3
    snapshot_after = 3  # a few diffs are buffered before the first snapshot, like the real recordings
    snaps = {snapshot_after}
    if drop_at is not None:
        snaps.add(drop_at + heal_after)
    right_at = uid

    def line(us: int, obj: object) -> None:
        rec.lines.append(f"{us * 1000 + rng.randint(0, 999)} {_dump(obj)}")

    def snapshot(us: int) -> None:
        body: dict[str, object] = {"lastUpdateId": book.update_id}
        if futures:
            body |= {"E": us // 1000 - 3, "T": us // 1000 - 4}
        body |= {"bids": [[f"{p:f}", f"{q:f}"] for p, q in book.levels("bid")],
                 "asks": [[f"{p:f}", f"{q:f}"] for p, q in book.levels("ask")]}
        line(us, body)

    for i in range(n_diffs):
        t += rng.randint(step_us // 2, step_us * 3 // 2)
        width = rng.randint(1, 6)
        first, last = uid + 1, uid + width
        b = [
            (_p(rng.randint(9_960, 9_999)), _q(rng.choice([0, 0, rng.randint(1, 900_000)])))
            for _ in range(rng.randint(0, 4))
        ]
        a = [
            (_p(rng.randint(10_001, 10_040)), _q(rng.choice([0, 0, rng.randint(1, 900_000)])))
            for _ in range(rng.randint(0, 4))
        ]
        if not b and not a:
            a = [(_p(10_041), _q(7))]
        b = list(dict(b).items())  # one entry per price, like Binance's diffs
        a = list(dict(a).items())
        book.apply(b, a, last)
        uid = last
        data: dict[str, object] = {"e": "depthUpdate", "E": t // 1000}
        if futures:
            data["T"] = t // 1000 - 1
        data |= {"s": SYMBOL, "U": first, "u": last}
        if futures:
            data["pu"] = prev_u
        data |= {"b": [list(x) for x in b], "a": [list(x) for x in a]}
        prev_u = last
        bb, ba = book.best_bid(), book.best_ask()
        assert bb is not None and ba is not None and bb[0] < ba[0]
        rec.tops[last] = (bb, ba)
        if i == drop_at:
            rec.dropped.append((right_at, last + 1))
        else:
            line(t + 900, {"stream": stream, "data": data})
            rec.diffs += 1
            rec.level_updates += len(b) + len(a)
            right_at = last
        q: dict[str, object] = {
            "u": last,
            "s": SYMBOL,
            "b": f"{bb[0]:f}",
            "B": f"{bb[1]:f}",
            "a": f"{ba[0]:f}",
            "A": f"{ba[1]:f}",
        }
        if futures:
            q = {"e": "bookTicker", **q, "T": t // 1000, "E": t // 1000 + 1}
        line(t + 950, {"stream": "btcusdt@bookTicker", "data": q})
        rec.quotes += 1
        if rng.random() < 0.3:
            tid += 1
            trade: dict[str, object] = {
                "e": "trade",
                "E": t // 1000,
                "s": SYMBOL,
                "t": tid,
                "p": f"{ba[0]:f}",
                "q": "0.00100000",
                "T": t // 1000,
                "m": False,
            }
            if futures:
                trade["X"] = "MARKET"
            else:
                trade["M"] = True
            line(t + 960, {"stream": "btcusdt@trade", "data": trade})
            rec.trades += 1
        if i in snaps:
            snapshot(t + 980)
        if bad_lines and i == n_diffs // 2:
            rec.lines.append(
                f"{t * 1000 + 990_000} "
                + _dump({"stream": stream, "data": {**data, "U": last + 1, "u": last + 1, "b": [["x", "1"]]}})
            )
            rec.lines.append(f'{t * 1000 + 991_000} {{"stream":"btcusdt@bookTicker","data":{{"u":1')
    rec.final = book
    return rec
