"""Benchmark the archive: export speed, bytes per million trades, and reading back vs PostgreSQL.

    .venv/bin/python benchmarks/bench_archive.py                    # 3M trades over 3 days
    .venv/bin/python benchmarks/bench_archive.py --trades 10000000 --days 4

In one run, on a scratch database `cryptolab_bench_archive` (CRYPTOLAB_DSN's server or the
embedded one) and a scratch archive directory:
1. N Binance-like trades (8-decimal prices and quantities, µs times) over D closed UTC days,
   with their 1 s bars, made server-side in bulk;
2. PostgreSQL's bytes per million trades (partitions: table + TOAST + indexes) vs the
   archive's Parquet bytes per million;
3. `cryptolab archive` speed (rows/s: read over ADBC, encode, stage, read back, verify, publish);
4. `load_trades` of all N trades from PostgreSQL, then the same call after
   `cryptolab archive --drop` (from the archive), and `archive.read_archived_trades` / a bare
   `pl.scan_parquet` of the files (ratio to PostgreSQL);
5. one day's 1 m OHLCV (from bars: stays in PostgreSQL) and volume profile (raw trades: from
   the archive through the session's TEMP table) before vs after the drop.
Exactness is checked on the way: the frames read back equal the ones read from PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import build_bars, scratch_database

from cryptolab.storage import db

SYMBOL = "BTCUSDT"
FIRST_DAY = date(2024, 8, 5)


def generate(dsn: str, n: int, days: int) -> None:
    per_day = n // days
    with db.connect(dsn, autocommit=True) as c:
        for d in range(days):
            day = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=timezone.utc) + timedelta(
                days=d
            )
            c.execute("SELECT cryptolab_ensure_partitions(%s, %s)", (day, day))
            t0 = time.perf_counter()
            c.execute(
                """
                INSERT INTO trades (exchange, symbol, trade_id, price, qty, is_buyer_maker,
                                    trade_time, event_time, received_at, source)
                SELECT 'binance', %(sym)s, %(first)s + i,
                       round((60000 + 600 * sin(i / 50000.0) + random() * 5)::numeric, 2)::numeric(20, 8),
                       round((0.00001 + power(random(), 4) * 2)::numeric, 5)::numeric(20, 8),
                       random() < 0.5,
                       %(day)s + (i * %(step)s) * interval '1 microsecond',
                       %(day)s + (i * %(step)s + 1000 + (random() * 2000)::int) * interval '1 microsecond',
                       %(day)s + (i * %(step)s + 6000 + (random() * 4000)::int) * interval '1 microsecond',
                       'live'
                FROM generate_series(0::bigint, %(count)s::bigint - 1) AS i
                """,
                {
                    "sym": SYMBOL,
                    "first": 1 + d * per_day,
                    "day": day,
                    "step": 86_400_000_000 // per_day,
                    "count": per_day,
                },
            )
            print(f"  {day.date()}: {per_day:,} trades in {time.perf_counter() - t0:.1f} s", flush=True)
        build_bars(c)


def pg_bytes(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits i "
            "WHERE i.inhparent = 'trades'::regclass"
        ).fetchone()
    return int(row[0]) if row else 0


def best(fn: Any, repeat: int) -> tuple[float, Any]:
    out, times = None, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trades", type=int, default=3_000_000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    import polars as pl
    from polars.testing import assert_frame_equal

    from cryptolab import analysis as an
    from cryptolab.archive import archive, read_archived_trades

    today = FIRST_DAY + timedelta(days=args.days + 1)
    root = Path(tempfile.mkdtemp(prefix="cryptolab-bench-archive-"))
    cols = ("trade_id", "trade_time", "price", "qty", "is_buyer_maker")
    try:
        with scratch_database("cryptolab_bench_archive") as dsn:
            os.environ["CRYPTOLAB_DSN"] = dsn
            print(f"generating {args.trades:,} trades over {args.days} days …", flush=True)
            generate(dsn, args.trades, args.days)
            n = args.trades // args.days * args.days
            pg = pg_bytes(dsn)

            mib = 1024 * 1024
            print(f"\n{n:,} trades, {args.days} days, archive at {root} (zstd Parquet)", flush=True)
            t_db, frame_db = best(lambda: an.load_trades(SYMBOL, columns=cols), args.repeat)
            assert frame_db.height == n, (frame_db.height, n)
            day0 = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=timezone.utc)
            day = (day0, day0 + timedelta(days=1))
            t_ohlcv_db, ohlcv_db = best(lambda: an.ohlcv(SYMBOL, *day, "1m"), args.repeat)
            t_vp_db, vp_db = best(lambda: an.volume_profile(SYMBOL, *day), args.repeat)

            t0 = time.perf_counter()
            rep = archive(to=str(root), today=today)
            t_export = time.perf_counter() - t0
            parquet = sum(f.stat().st_size for f in root.rglob("*.parquet"))
            print(
                f"  PostgreSQL partitions (table+index) {pg / mib:9.1f} MiB  = {pg / n * 1e6 / mib:7.1f} MiB "
                "per 1M trades"
            )
            print(
                f"  Parquet archive                     {parquet / mib:9.1f} MiB  = "
                f"{parquet / n * 1e6 / mib:7.1f} MiB per 1M trades   ({pg / parquet:.1f}x smaller)"
            )
            print(
                f"  archive (export+verify+publish)     {t_export:9.2f} s    = {rep.rows / t_export:,.0f} "
                "rows/s",
                flush=True,
            )
            t0 = time.perf_counter()
            rep2 = archive(to=str(root), today=today, drop=True)
            t_drop = time.perf_counter() - t0
            assert len(rep2.dropped) == args.days, rep2.dropped
            print(f"  verify + quality report + drop      {t_drop:9.2f} s", flush=True)

            t_read, frame_read = best(
                lambda: read_archived_trades("binance", SYMBOL, columns=cols), args.repeat
            )
            assert_frame_equal(frame_read, frame_db, check_exact=True)
            t_scan, frame_scan = best(
                lambda: pl.scan_parquet(f"{root}/trades/**/*.parquet").select(cols).collect(), args.repeat
            )
            assert frame_scan.height == n
            print(f"  load_trades all, from PostgreSQL    {t_db:9.3f} s")
            print(f"  archive.read_archived_trades (polars) {t_read:9.3f} s    ({t_db / t_read:.1f}x faster)")
            print(
                f"  pl.scan_parquet(...).collect()      {t_scan:9.3f} s    ({t_db / t_scan:.1f}x faster)",
                flush=True,
            )
            t_arch, frame_arch = best(lambda: an.load_trades(SYMBOL, columns=cols), args.repeat)
            assert_frame_equal(frame_arch, frame_db, check_exact=True)
            print(
                f"  load_trades all, from the archive   {t_arch:9.3f} s    ({t_db / t_arch:.1f}x faster)",
                flush=True,
            )
            t_ohlcv_ar, ohlcv_ar = best(lambda: an.ohlcv(SYMBOL, *day, "1m"), args.repeat)
            t_vp_ar, vp_ar = best(lambda: an.volume_profile(SYMBOL, *day), args.repeat)
            assert_frame_equal(ohlcv_ar, ohlcv_db, check_exact=True)
            assert_frame_equal(vp_ar, vp_db, check_exact=True)
            print(
                f"  one day's ohlcv 1m   DB {t_ohlcv_db * 1000:8.1f} ms   after drop "
                f"{t_ohlcv_ar * 1000:8.1f} ms (bars stay in PostgreSQL)"
            )
            print(
                f"  one day's volume_profile DB {t_vp_db:7.2f} s   after drop {t_vp_ar:7.2f} s (archive -> "
                "TEMP trades)"
            )
            print("  exact: every frame read back equals the one read from PostgreSQL")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
