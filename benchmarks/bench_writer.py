"""Writer throughput: cryptolab's TradeWriter vs plain COPY vs one INSERT+commit per row.

    python benchmarks/bench_writer.py [N]        (default N = 1,000,000)

All three write the same synthetic trades into the same `trades` table in one run.
Plain COPY is the ceiling (no dedupe, no bars_1s); per-row INSERT+commit is the seed's
way and is measured on a 20,000-row slice (it would take many minutes on 1M).
"""

from __future__ import annotations

import sys
import time

from _common import insert_per_row, plain_copy, scratch_database, synthetic_trades

from cryptolab.model import us_to_datetime
from cryptolab.storage import db
from cryptolab.storage.writer import TradeWriter

BATCH = 20_000
PER_ROW_SAMPLE = 20_000


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    trades = synthetic_trades(n)
    with scratch_database("cryptolab_bench_writer") as dsn, db.connect(dsn) as conn:
        w = TradeWriter(conn)
        w.write(trades[:1])  # partitions, staging table
        conn.execute("TRUNCATE trades, bars_1s")
        conn.commit()

        t0 = time.perf_counter()
        for i in range(0, n, BATCH):
            w.write(trades[i : i + BATCH])
        t_writer = time.perf_counter() - t0
        stored = conn.execute("SELECT count(*) FROM trades").fetchone()[0]
        assert stored == n, stored
        conn.execute("TRUNCATE trades, bars_1s")
        conn.commit()

        t0 = time.perf_counter()  # the client-side conversion is part of plain COPY's cost
        rows = [
            (
                t.exchange,
                t.symbol,
                t.trade_id,
                t.price,
                t.qty,
                t.is_buyer_maker,
                us_to_datetime(t.trade_time_us),
                us_to_datetime(t.event_time_us),
                us_to_datetime(t.received_at_us),
                t.source,
            )
            for t in trades
        ]
        t_copy = time.perf_counter() - t0 + plain_copy(conn, rows)
        conn.execute("TRUNCATE trades, bars_1s")
        conn.commit()

        sample = rows[:PER_ROW_SAMPLE]
        t_row = insert_per_row(conn, sample)

    r_writer, r_copy, r_row = n / t_writer, n / t_copy, len(sample) / t_row
    print(f"trades: {n:,} (per-row INSERT measured on {len(sample):,})")
    print(f"{'method':38} {'rows/s':>12} {'vs COPY':>9} {'vs per-row':>11}")
    for name, r in (
        ("TradeWriter (COPY+dedupe+bars_1s)", r_writer),
        ("plain COPY (no dedupe, no bars)", r_copy),
        ("INSERT+commit per row (seed)", r_row),
    ):
        print(f"{name:38} {r:12,.0f} {r / r_copy:9.2f} {r / r_row:11.1f}")


if __name__ == "__main__":
    main()
