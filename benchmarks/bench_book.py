"""The order book's storage: bytes per million level updates, and the book writer's speed.

    python benchmarks/bench_book.py [--diffs 100000]

Stores the same synthetic BTCUSDT-shaped diffs (~46 levels each, `_common.synthetic_diffs`) two
ways in one scratch database and prints, for each, the bytes per million level updates
(`pg_total_relation_size`, table + indexes + TOAST) and the writer's level updates per second:

* `book_diffs` as cryptolab stores it: one row per diff, levels as numeric[] (BookWriter, COPY);
* one row per level (exchange, symbol, update id, side, price, qty, event time), the other
  layout the issue asked to weigh, loaded with a plain COPY and the same primary key style.

The capture's end-to-end book ingest (depth + bookTicker at full speed against a bare client)
is `bench_book_ingest.py`.
"""

from __future__ import annotations

import argparse
import os
import time

import psycopg
from _common import scratch_database, synthetic_diffs

from cryptolab.model import us_to_datetime
from cryptolab.storage.book import BookWriter

_PER_LEVEL_DDL = """
CREATE TABLE book_levels (
    exchange text NOT NULL, symbol text NOT NULL, update_id bigint NOT NULL, side "char" NOT NULL,
    price numeric NOT NULL, qty numeric NOT NULL, event_time timestamptz NOT NULL, received_at timestamptz,
    PRIMARY KEY (exchange, symbol, update_id, side, price)
)"""


def _size(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "WHERE c.oid = %s::regclass OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = "
        "%s::regclass)",
        (table, table),
    ).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--diffs", type=int, default=100_000)
    args = ap.parse_args()
    diffs = synthetic_diffs(args.diffs)
    levels = sum(len(d.bids) + len(d.asks) for d in diffs)
    print(
        f"{len(diffs):,} diffs, {levels:,} level updates ({levels / len(diffs):.1f} a diff); "
        f"load {os.getloadavg()[0]:.2f}"
    )
    with scratch_database("cryptolab_bench_book") as dsn, psycopg.connect(dsn, autocommit=True) as conn:
        w = BookWriter(conn)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(diffs), 2000):
            w.store(diffs[i : i + 2000])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        conn.execute("VACUUM ANALYZE book_diffs")
        arrays = _size(conn, "book_diffs")
        print(
            f"book_diffs (row per diff, numeric[]): {arrays / levels * 1e6 / 2**20:,.1f} MiB per million "
            f"level updates ({arrays / levels:.1f} B each); writer {levels / wall:,.0f} level updates/s, "
            f"{cpu / levels * 1e6:.2f} µs CPU each in this process"
        )
        conn.execute(_PER_LEVEL_DDL)
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY book_levels FROM STDIN") as copy:
            for d in diffs:
                et, rt = us_to_datetime(d.event_time_us), us_to_datetime(d.received_at_us or d.event_time_us)
                for side, lv in (("b", d.bids), ("a", d.asks)):
                    seen = set()
                    for p, q in lv:
                        if p not in seen:
                            seen.add(p)
                            copy.write_row((d.exchange, d.symbol, d.last_id, side, p, q, et, rt))
        wall = time.perf_counter() - t0
        conn.execute("VACUUM ANALYZE book_levels")
        per_level = _size(conn, "book_levels")
        print(
            f"book_levels (row per level):          {per_level / levels * 1e6 / 2**20:,.1f} MiB per million "
            f"level updates ({per_level / levels:.1f} B each); plain COPY {levels / wall:,.0f} level "
            "updates/s"
        )
        print(f"row per diff takes {per_level / arrays:.1f}× fewer bytes than row per level")


if __name__ == "__main__":
    main()
