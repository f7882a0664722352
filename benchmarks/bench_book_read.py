"""book_top against a plain Python replay of the same stored rows, in one run.

    python benchmarks/bench_book_read.py [HOURS]      (default 24: one day, ~860k diffs)

Builds HOURS of a BTCUSDT-rate book in a scratch database (a diff every 100 ms with ~46 level
updates, a 1000-level snapshot per side, followed by a synced book as the capture follows it —
`book.sync.with_tops` — and written with BookWriter: diffs, snapshot and the top after every
diff, as the capture stores them), then times

* `cryptolab.analysis.book_top` over the whole range: as stored (it reads `book_tops`), and again
  with `book_tops` emptied (it rebuilds the book from the levels: exact Decimal columns either way);
* the plain replay: the same diffs read with psycopg (numeric[] → lists of Decimal, streamed
  from a server-side cursor), each applied to two dicts, max/min of the keys for the top.

Both results are compared at every update (they must be equal) and the ratio printed.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from _common import scratch_database

from cryptolab.analysis import book_top
from cryptolab.analysis.book_rows import read_diffs
from cryptolab.analysis.book_synth import synthetic_book
from cryptolab.book.sync import with_tops
from cryptolab.storage import db
from cryptolab.storage.book import BookWriter

START_US = 1_735_689_600_000_000  # 2025-01-01 00:00 UTC
BATCH = 20_000


def _ts(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)


def build(conn: object, hours: float) -> tuple[int, int]:
    w = BookWriter(conn)  # type: ignore[arg-type]
    end = START_US + int(hours * 3600e6)
    batch: list[object] = []
    diffs = levels = 0
    rows = synthetic_book("binance", "BTCUSDT", START_US, end, quotes=False, snapshot_levels=1000, seed=1)
    for row in with_tops(rows):
        batch.append(row)
        if hasattr(row, "bids") and hasattr(row, "first_id"):
            diffs += 1
            levels += len(row.bids) + len(row.asks)  # type: ignore[attr-defined]
        if len(batch) >= BATCH:
            w.store(batch)  # type: ignore[arg-type]
            conn.commit()  # type: ignore[attr-defined]
            batch = []
    if batch:
        w.store(batch)  # type: ignore[arg-type]
        conn.commit()  # type: ignore[attr-defined]
    return diffs, levels


_DIFFS = (
    "SELECT last_update_id, bid_price, bid_qty, ask_price, ask_qty FROM book_diffs "
    "WHERE last_update_id > %s ORDER BY last_update_id"
)


def plain_read(dsn: str) -> int:
    """The plain replay's read alone (the same rows, streamed and dropped): its share of the time."""
    n = 0
    with db.connect(dsn) as conn, conn.cursor(name="read") as cur:
        cur.itersize = 5000
        cur.execute(_DIFFS, (0,))
        for _ in cur:
            n += 1
    return n


def plain_replay(dsn: str) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal]]:
    """What a user would write: read the rows, apply each diff to dicts, max/min for the top."""
    out = []
    with db.connect(dsn) as conn:
        snap = conn.execute(
            "SELECT last_update_id, bid_price, bid_qty, ask_price, ask_qty FROM book_snapshots "
            "ORDER BY last_update_id LIMIT 1"
        ).fetchone()
        assert snap is not None
        sid = snap[0]
        bids = {p: q for p, q in zip(snap[1], snap[2]) if q}
        asks = {p: q for p, q in zip(snap[3], snap[4]) if q}
        with conn.cursor(name="replay") as cur:
            cur.itersize = 5000
            cur.execute(_DIFFS, (sid,))
            for uid, bp, bq, ap, aq in cur:
                for p, q in zip(bp, bq):
                    if q:
                        bids[p] = q
                    else:
                        bids.pop(p, None)
                for p, q in zip(ap, aq):
                    if q:
                        asks[p] = q
                    else:
                        asks.pop(p, None)
                b, a = max(bids), min(asks)
                out.append((uid, b, bids[b], a, asks[a]))
    return out


def main() -> None:
    hours = float(sys.argv[1]) if len(sys.argv) > 1 else 24.0
    with scratch_database("cryptolab_bench_book_read") as dsn, db.connect(dsn) as conn:
        t0 = time.perf_counter()
        diffs, levels = build(conn, hours)
        t_build = time.perf_counter() - t0
        print(
            f"book: {hours:g} h, {diffs:,} diffs, {levels:,} level updates ({levels / diffs:.1f} per diff), "
            f"built and stored in {t_build:.0f} s",
            flush=True,
        )

        span = (_ts(START_US), _ts(START_US + int(hours * 3600e6) + 1))
        tops = conn.execute("SELECT count(*) FROM book_tops").fetchone()[0]  # type: ignore[index]
        size = {
            t: conn.execute(  # type: ignore[index]
                "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = "
                "%s::regclass",
                (t,),
            ).fetchone()[0]
            for t in ("book_diffs", "book_tops")
        }
        print(
            f"stored: book_diffs {size['book_diffs'] / 2**20:,.0f} MiB, book_tops "
            f"{size['book_tops'] / 2**20:,.1f} MiB (+{size['book_tops'] / levels:.1f} B per level update, "
            f"{size['book_tops'] / diffs:.0f} B per diff)",
            flush=True,
        )
        t0 = time.perf_counter()
        top = book_top("BTCUSDT", *span, conn=conn)
        t_top = time.perf_counter() - t0
        print(
            f"book_top:     {t_top:8.2f} s  ({top.height / t_top:,.0f} updates/s, "
            f"{levels / t_top / 1e6:.1f} M level updates/s; reads the {tops:,} stored tops)",
            flush=True,
        )
        conn.execute("TRUNCATE book_tops")
        conn.commit()
        t0 = time.perf_counter()
        rebuilt = book_top("BTCUSDT", *span, conn=conn)
        t_rebuilt = time.perf_counter() - t0
        print(
            f"  rebuilt:    {t_rebuilt:8.2f} s  (no tops stored: the book rebuilt from its levels; "
            f"the same frame: {rebuilt.equals(top)})",
            flush=True,
        )

        t0 = time.perf_counter()
        plain = plain_replay(dsn)
        t_plain = time.perf_counter() - t0
        print(f"plain replay: {t_plain:8.2f} s  ({len(plain) / t_plain:,.0f} updates/s)", flush=True)

        # where the time goes: the reads alone (the server turns every NUMERIC into text either way)
        t0 = time.perf_counter()
        plain_read(dsn)
        t_plain_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        diffs_read = read_diffs(conn, "binance", "BTCUSDT", 0, None, None, bulk=True)
        t_top_read = time.perf_counter() - t0
        print(
            f"  of which reading the levels: rebuilt {t_top_read:.2f} s (ADBC), plain {t_plain_read:.2f} s "
            f"(psycopg); the rebuild alone: {t_rebuilt - t_top_read:.2f} s, plain "
            f"{t_plain - t_plain_read:.2f} s "
            f"({(t_plain - t_plain_read) / max(t_rebuilt - t_top_read, 1e-9):.1f}x)",
            flush=True,
        )
        del diffs_read

    assert top.height == len(plain), (top.height, len(plain))
    cols = [top[c].to_list() for c in ("update_id", "bid_price", "bid_qty", "ask_price", "ask_qty")]
    bad = sum(1 for i, row in enumerate(plain) if tuple(c[i] for c in cols) != row)
    print(f"equal at every update: {bad == 0} ({len(plain):,} updates, {bad} differ)")
    print(
        f"book_top is {t_plain / t_top:.1f}x the plain replay (target >= 10x); "
        f"rebuilt from the levels {t_plain / t_rebuilt:.1f}x"
    )


if __name__ == "__main__":
    main()
