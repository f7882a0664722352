"""History loading: cryptolab's bulk path vs the database's own bulk path, and a synthetic history end to end.

    python benchmarks/bench_history.py [--trades 1000000] [--big] [--days 2] [--rate 10] [--no-load]

1. One day dump of N trades (data.binance.vision's trades format, zipped) is loaded in the
   same run by
   * the database's own bulk path: `COPY` of the (unzipped) CSV into a scratch table, then
     one `INSERT … SELECT` into `trades` (no bars_1s, no bookkeeping) — the ceiling;
   * cryptolab history's bulk path (`HistoryStore.load_file`: unzip → COPY → INSERT … SELECT,
     bars_1s by one aggregate, history_files row, one transaction);
   * `cryptolab load` (the trade writer, for reference; skip with --no-load).
   `--big` adds a 10M-trade dump.
2. A synthetic history end to end: a local exchange (own process) with `--days` whole days
   at `--rate` trades/s, fetched by `fetch_history` (download, verify, load, REST for today):
   time, rows/s, and disk used per million trades (trades + bars_1s).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
import zipfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import psycopg
from _common import scratch_database

from cryptolab.history.plan import DumpFile
from cryptolab.history.store import WORK_MEM, HistoryStore
from cryptolab.storage import db

DAY = date(2025, 1, 15)


def make_dump(n: int, folder: Path) -> tuple[Path, Path]:
    """A zipped one-day trades dump of n trades (µs times) and its unzipped CSV."""
    rng = random.Random(7)
    start = int(datetime(DAY.year, DAY.month, DAY.day, tzinfo=timezone.utc).timestamp()) * 1_000_000
    step = 86_400_000_000 // n
    price = 9_500_000_000_000
    name = f"BTCUSDT-trades-{DAY}"
    csv_path = folder / f"{name}.csv"
    with csv_path.open("w") as out:
        buf = io.StringIO()
        t = start
        for i in range(1, n + 1):
            t += rng.randint(0, 2 * step - 1) if i > 1 else 0
            t = min(t, start + 86_400_000_000 - 1)
            price += rng.randint(-300, 300) * 1_000_000
            q = rng.randint(1, 5_000_000)
            p = price
            buf.write(
                f"{i},{p // 10**8}.{p % 10**8:08d},{q // 10**8}.{q % 10**8:08d},"
                f"{(p * q) // 10**16}.{((p * q) // 10**8) % 10**8:08d},{t},"
                f"{'True' if rng.random() < 0.5 else 'False'},True\n"
            )
            if i % 100_000 == 0:
                out.write(buf.getvalue())
                buf = io.StringIO()
        out.write(buf.getvalue())
    zip_path = folder / f"{name}.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(csv_path, csv_path.name)
    return zip_path, csv_path


def reset(conn: psycopg.Connection) -> None:
    conn.execute("TRUNCATE trades, bars_1s, history_files")


def db_bulk(conn: psycopg.Connection, csv_path: Path) -> float:
    """The database's own bulk path into the same table: COPY into a scratch table + INSERT … SELECT."""
    t0 = time.perf_counter()
    conn.execute(f"SET work_mem = '{WORK_MEM}'")  # the same session settings as cryptolab's loader
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS _ref (id bigint, price numeric, qty numeric, quote_qty numeric, "
        "t bigint, m boolean, best boolean)"
    )
    conn.execute("TRUNCATE _ref")
    with conn.cursor().copy("COPY _ref FROM STDIN (FORMAT csv)") as cp, csv_path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            cp.write(chunk)
    with conn.transaction():
        conn.execute(
            "INSERT INTO trades (exchange, symbol, trade_id, price, qty, is_buyer_maker, trade_time, source) "
            "SELECT 'binance', 'BTCUSDT', id, price, qty, m, timestamptz 'epoch' + t * interval '1 "
            "microsecond', 'backfill' FROM _ref"
        )
    conn.execute("TRUNCATE _ref")
    return time.perf_counter() - t0


def ours(conn: psycopg.Connection, zip_path: Path, dsn: str | None) -> tuple[float, str]:
    t0 = time.perf_counter()
    store = HistoryStore(conn, "binance", dsn=dsn)
    f = DumpFile("BTCUSDT", "trades", "", "daily", DAY, DAY)
    try:
        res = store.load_file(f, zip_path, url=str(zip_path), sha256=None)
    finally:
        store.close()
    return time.perf_counter() - t0, res.mode


def old_load(dsn: str, zip_path: Path) -> float:
    """`cryptolab load` before issue 9: DumpReader rows through the TradeWriter, one transaction."""
    from cryptolab.binance.dumps import DumpReader
    from cryptolab.storage.writer import TradeWriter

    t0 = time.perf_counter()
    with db.connect(dsn) as conn:
        w = TradeWriter(conn)
        batch = []
        with conn.transaction():
            for t in DumpReader(zip_path, source="replay"):
                batch.append(t)
                if len(batch) >= 50_000:
                    w.write(batch)
                    w.clear_stage()
                    batch = []
            if batch:
                w.write(batch)
    return time.perf_counter() - t0


def part_1(dsn: str, n: int, folder: Path, with_load: bool) -> None:
    print(f"\n== one-day dump of {n:,} trades ==", flush=True)
    t0 = time.perf_counter()
    zip_path, csv_path = make_dump(n, folder)
    print(
        f"made {zip_path.name}: {zip_path.stat().st_size / 1e6:.1f} MB zipped, "
        f"{csv_path.stat().st_size / 1e6:.1f} MB CSV ({time.perf_counter() - t0:.1f} s)"
    )
    with db.connect(dsn, autocommit=True) as conn, db.connect(dsn, autocommit=True) as ref:
        ref.execute(f"SET temp_buffers = '{WORK_MEM}'")
        conn.execute(
            "SELECT cryptolab_ensure_partitions(%s::date::timestamptz, %s::date::timestamptz)", (DAY, DAY)
        )
        rows: list[tuple[str, float]] = []
        for _ in range(2):  # alternate, keep the better of two of each (warm cache, same table)
            reset(conn)
            rows.append(("db", db_bulk(ref, csv_path)))
            assert conn.execute("SELECT count(*) FROM trades").fetchone() == (n,)
            for key, two in (("ours", dsn), ("ours1", None)):
                reset(conn)
                t, mode = ours(conn, zip_path, two)
                assert mode == "bulk", mode
                assert conn.execute("SELECT count(*) FROM trades").fetchone() == (n,)
                rows.append((key, t))
        t_db = min(t for k, t in rows if k == "db")
        t_ours = min(t for k, t in rows if k == "ours")
        t_one = min(t for k, t in rows if k == "ours1")
        bars = conn.execute("SELECT count(*), sum(trade_count) FROM bars_1s").fetchone()
        assert bars is not None and bars[1] == n
        reset(conn)
    print(f"{'path':58} {'seconds':>8} {'trades/s':>11} {'vs db':>6}")
    print(
        f"{'database bulk: COPY csv → scratch + INSERT…SELECT (no bars)':58} {t_db:8.2f} {n / t_db:11,.0f} "
        f"{1.0:6.2f}"
    )
    print(
        f"{'cryptolab history bulk: unzip+COPY+INSERT…SELECT ‖ bars_1s':58} {t_ours:8.2f} "
        f"{n / t_ours:11,.0f} {t_db / t_ours:6.2f}"
    )
    print(
        f"{'  the same on one connection (bars_1s after the insert)':58} {t_one:8.2f} {n / t_one:11,.0f} "
        f"{t_db / t_one:6.2f}"
    )
    if with_load:
        from cryptolab.history.load import load_files

        t0 = time.perf_counter()
        res = load_files([zip_path], dsn=dsn, progress=False)
        t_load = time.perf_counter() - t0
        assert res.inserted == n
        print(
            f"{'cryptolab load (now this bulk path, end to end)':58} {t_load:8.2f} {n / t_load:11,.0f} "
            f"{t_db / t_load:6.2f}"
        )
        with db.connect(dsn, autocommit=True) as conn:
            reset(conn)
        t_old = old_load(dsn, zip_path)
        print(
            f"{'before: parse in Python + trade writer (COPY, dedupe, bars)':58} {t_old:8.2f} "
            f"{n / t_old:11,.0f} {t_db / t_old:6.2f}"
        )
        with db.connect(dsn, autocommit=True) as conn:
            reset(conn)
    zip_path.unlink()
    csv_path.unlink()


def part_2(dsn: str, days: int, rate: float, folder: Path, workers: int) -> None:
    from cryptolab.exchange import LocalExchange
    from cryptolab.history import fetch_history

    print(
        f"\n== synthetic history end to end: {days} whole day(s) + today so far at {rate:g} trades/s ==",
        flush=True,
    )
    t0 = time.perf_counter()
    with LocalExchange(
        symbols=["btcusdt"],
        rate=5,
        seed=1,
        history_days=days,
        history_rate=rate,
        weight_budget=10**7,
        process=True,
    ) as ex:
        print(
            f"local exchange up with its past: {ex.printed('BTCUSDT'):,} trades "
            f"({time.perf_counter() - t0:.1f} s)"
        )
        today = datetime.now(timezone.utc).date()
        res = fetch_history(
            "BTCUSDT",
            today - timedelta(days=days),
            dsn=dsn,
            dumps=ex.http_url,
            rest=ex.http_url,
            cache=folder / "cache",
            workers=workers,
        )
    with db.connect(dsn) as conn:
        n, size = conn.execute(
            "SELECT (SELECT count(*) FROM trades), (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class "
            "c JOIN pg_inherits i ON i.inhrelid = c.oid WHERE i.inhparent = 'trades'::regclass) + "
            "pg_total_relation_size('bars_1s')"
        ).fetchone() or (0, 0)
    total = res.rows + res.rest_rows
    print(res.summary())
    print(
        f"end to end: {res.seconds:.1f} s for {total:,} trades = {total / res.seconds:,.0f} trades/s "
        f"({res.rows:,} from {res.files_loaded} dump(s), {res.rest_rows:,} from REST); "
        f"disk: {float(size) / 1e6:,.1f} MB = {float(size) / max(1, int(n)):,.1f} MB per million trades "
        "(trades + bars_1s)"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trades", type=int, default=1_000_000)
    ap.add_argument("--big", action="store_true", help="also a 10M-trade dump")
    ap.add_argument("--no-load", action="store_true", help="skip the `cryptolab load` reference")
    ap.add_argument(
        "--days", type=int, default=2, help="whole days of synthetic history (a month: --days 30)"
    )
    ap.add_argument(
        "--rate",
        type=float,
        default=10.0,
        help="synthetic history trades/s (a busy symbol: ~29 = 2.5M trades a day)",
    )
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-history-") as tmp,
        scratch_database("cryptolab_bench_history") as dsn,
    ):
        folder = Path(tmp)
        part_1(dsn, args.trades, folder, not args.no_load)
        if args.big:
            part_1(dsn, 10_000_000, folder, False)
        part_2(dsn, args.days, args.rate, folder, args.workers)
    print(f"\n(cores: {os.cpu_count()}; python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
