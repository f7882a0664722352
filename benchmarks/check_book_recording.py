"""By hand: a raw Binance stream recording (depth + bookTicker, REST snapshot inline) against
`book_top`, at every update id the book and the bookTicker share.

    python benchmarks/check_book_recording.py ../shared/data/binance/hftbacktest_spot_btcusdt_2024080{8,9}.gz

Each line is `<local receive time, ns> <raw JSON>`. The rows are decoded with
`cryptolab.binance.depth`, followed in file order by a synced book as the capture follows them
(`book.sync.with_tops`: the top after every diff applied) and stored with `BookWriter` in a
scratch database; `book_top` (reading the stored tops, then again rebuilt from the levels with
the tops removed) is joined to the stored quotes on the update id. Not a test: the suite cannot read
`../shared` (users of the project do not have it).
"""

from __future__ import annotations

import gzip
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from _common import scratch_database

import cryptolab.analysis as an
from cryptolab.binance.depth import decode_diff, decode_quote, snapshot_from_rest
from cryptolab.book import BookSnapshot, BookTop, DepthDiff, Quote
from cryptolab.book.sync import with_tops
from cryptolab.storage import db
from cryptolab.storage.book import BookWriter


def read(paths: list[str], symbol: str) -> list[Any]:
    rows: list[Any] = []
    for path in paths:
        with gzip.open(path, "rb") as fh:
            for line in fh:
                ns, _, raw = line.rstrip(b"\n").partition(b" ")
                at = int(ns) // 1000
                if raw.startswith(b'{"lastUpdateId"'):
                    rows.append(
                        snapshot_from_rest(
                            orjson.loads(raw), symbol, exchange="binance", received_at_us=at, source="replay"
                        )
                    )
                elif b"@depth" in raw[:40]:
                    rows.append(decode_diff(raw, exchange="binance", source="replay", received_at_us=at))
                elif b"@bookTicker" in raw[:40]:
                    rows.append(decode_quote(raw, exchange="binance", source="replay", received_at_us=at))
    return rows


def main() -> None:
    paths = sys.argv[1:]
    if not paths:
        raise SystemExit(__doc__)
    rows = read(paths, "BTCUSDT")
    snaps = [r for r in rows if isinstance(r, BookSnapshot)]
    diffs = sorted((r for r in rows if isinstance(r, DepthDiff)), key=lambda d: d.last_id)
    quotes = sorted((r for r in rows if isinstance(r, Quote)), key=lambda q: q.update_id)
    print(
        f"{len(snaps)} snapshot(s), {len(diffs):,} diffs, {len(quotes):,} quotes, "
        f"{len(rows) - len(snaps) - len(diffs) - len(quotes)} dead letters"
    )
    first = min(d.event_time_us for d in diffs) - 3_600_000_000
    last = max(max(d.event_time_us for d in diffs), max(q.received_at_us for q in quotes)) + 3_600_000_000
    futures = any(d.prev_id is not None for d in diffs)
    followed = [
        r for r in with_tops(rows, futures=futures) if not isinstance(r, (Quote, DepthDiff, BookSnapshot))
    ]
    tops = [r for r in followed if isinstance(r, BookTop)]
    with scratch_database("cryptolab_check_book_recording") as dsn, db.connect(dsn) as conn:
        w = BookWriter(conn)
        for part in (snaps, diffs, quotes, followed):
            w.store(part)
        conn.commit()
        epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
        t0, t1 = epoch + timedelta(microseconds=first), epoch + timedelta(microseconds=last)
        q = an.quotes("BTCUSDT", t0, t1, conn=conn).unique(subset="update_id", keep="first")
        for how in (f"reading {len(tops):,} stored tops", "rebuilt from the levels"):
            tick = time.perf_counter()
            top = an.book_top("BTCUSDT", t0, t1, conn=conn)
            took = time.perf_counter() - tick
            joined = top.join(q, on="update_id", suffix="_q")
            same = joined.filter(
                (joined["bid_price"] == joined["bid_price_q"])
                & (joined["bid_qty"] == joined["bid_qty_q"])
                & (joined["ask_price"] == joined["ask_price_q"])
                & (joined["ask_qty"] == joined["ask_qty_q"])
            )
            print(
                f"book_top ({how}): {top.height:,} updates in {took:.2f} s; shared update ids with the "
                f"bookTicker: {joined.height:,}, equal: {same.height:,}"
            )
            conn.execute("TRUNCATE book_tops")
            conn.commit()


if __name__ == "__main__":
    main()
