"""Benchmark the archive's types on the engines that read it: per-minute VWAP in Spark, DuckDB,
polars, pyarrow.

    .venv/bin/python benchmarks/bench_archive_engines.py                       # 1.5M and 12M trades
    .venv/bin/python benchmarks/bench_archive_engines.py --sizes 1500000 --no-spark

In one run, for each size N (BTCUSDT-like trades over N/3M days: 2-decimal prices, 5-decimal
quantities, µs times — real products have 7 decimals), the same rows are written twice:

* v1, the archive before the contract: decimal128(38,8) price and qty, decimal128(38,16) quote_qty;
* v2, the contract (cryptolab.storage.parquet.layout): decimal(18,8) price (stored as INT64), decimal(19,8)
  qty, decimal(38,16) quote_qty — with `cryptolab.archive.export.encode`, as `cryptolab archive` does.

It prints the bytes per million trades, then per engine and layout the time of the per-minute
query (count, Σqty, Σquote_qty, Σ(price·qty), Σquote_qty/Σqty; warm: the best of 2 after a first
run), and whether each figure equals the exact answer (pyarrow's decimal128 sums of the v2
rows, VWAP = that ratio rounded half-up to 8 decimals, as PostgreSQL's round(…, 8)). Spark runs
local[2] on 127.0.0.1 with its default settings; its session start is timed apart.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cryptolab.archive.export import encode
from cryptolab.storage.parquet.layout import contract_schema

PER_DAY = 3_000_000
DAY0_US = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z


def _dec(unscaled: np.ndarray, typ: pa.DataType) -> pa.Array:
    """decimal128 array from non-negative int64 unscaled values (little-endian 128-bit words)."""
    words = np.zeros((len(unscaled), 2), dtype="<i8")
    words[:, 0] = unscaled
    return pa.Array.from_buffers(typ, len(unscaled), [None, pa.py_buffer(words.tobytes())])


def make_day(n: int, day: int, first_id: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    t0 = DAY0_US + day * 86_400_000_000
    times = t0 + np.sort(rng.integers(0, 86_400_000_000, n))
    cents = 9_400_000 + np.cumsum(rng.integers(-3, 4, n))  # 94000.00 ± a random walk, in cents
    price_u = cents * 1_000_000  # scale 8
    qty_u = rng.integers(1, 200_000, n) * 1_000  # 5 decimals, as scale 8
    price = _dec(price_u, pa.decimal128(18, 8))
    qty = _dec(qty_u, pa.decimal128(19, 8))
    quote = pc.multiply(price, qty)  # decimal128(38, 16), exact
    n_ = len(times)
    return pa.table(
        {
            "trade_id": pa.array(np.arange(first_id, first_id + n_, dtype=np.int64)),
            "trade_time": pa.array(times, pa.timestamp("us", tz="UTC")),
            "price": price,
            "qty": qty,
            "quote_qty": quote,
            "is_buyer_maker": pa.array(rng.random(n_) < 0.5),
            "event_time": pa.array(times + 900, pa.timestamp("us", tz="UTC")),
            "received_at": pa.array(times + 7000, pa.timestamp("us", tz="UTC")),
            "ingested_at": pa.array(times + 9000, pa.timestamp("us", tz="UTC")),
            "source": pa.array(["backfill"] * n_),
            "price_scale": pa.array(np.full(n_, 2, dtype=np.int8)),
            "qty_scale": pa.array(np.full(n_, 5, dtype=np.int8)),
        }
    )


def v1(table: pa.Table) -> pa.Table:
    """The same rows as the archive wrote them before the contract."""
    fields = [
        pa.field(f.name, pa.decimal128(38, 16 if f.name == "quote_qty" else 8))
        if pa.types.is_decimal(f.type)
        else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def encode_v1(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression="zstd",
        compression_level=1,
        row_group_size=1_048_576,
        use_dictionary=["source", "price", "is_buyer_maker", "price_scale", "qty_scale"],
        write_statistics=True,
        coerce_timestamps="us",
        store_schema=True,
    )
    return bytes(sink.getvalue().to_pybytes())


def write_dataset(root: Path, days: list[pa.Table], layout: str) -> int:
    total = 0
    for i, t in enumerate(days):
        d = f"2025-01-{i + 1:02d}"
        path = (
            root
            / layout
            / "trades"
            / "exchange=binance"
            / "symbol=BTCUSDT"
            / f"date={d}"
            / f"trades-{d}.parquet"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        data = encode(t.cast(contract_schema())) if layout == "v2" else encode_v1(v1(t))
        path.write_bytes(data)
        total += len(data)
    return total


def vwap8(q: Decimal, v: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 80
        return (q / v).quantize(Decimal("1e-8"), ROUND_HALF_UP)


def oracle(days: list[pa.Table]) -> dict[int, tuple[int, Decimal, Decimal]]:
    """{minute (epoch s): (count, Σqty, Σquote_qty)} exactly (decimal128 sums)."""
    out: dict[int, tuple[int, Decimal, Decimal]] = {}
    for t in days:
        minute = pc.divide(pc.cast(t.column("trade_time"), pa.int64()), 60_000_000)
        g = (
            pa.table({"m": minute, "qty": t.column("qty"), "q": t.column("quote_qty")})
            .group_by("m")
            .aggregate([("m", "count"), ("qty", "sum"), ("q", "sum")])
        )
        for m, c, sq, sv in zip(
            g.column("m").to_pylist(),
            g.column("m_count").to_pylist(),
            g.column("qty_sum").to_pylist(),
            g.column("q_sum").to_pylist(),
        ):
            out[int(m) * 60] = (int(c), sq, sv)
    return out


def check(rows: list[tuple[Any, ...]], want: dict[int, tuple[int, Decimal, Decimal]]) -> str:
    """rows: (minute, count, Σqty, Σquote, Σ(price·qty), vwap) → 'sums exact, product exact,
    vwap exact' or what not."""
    if len(rows) != len(want):
        return f"{len(rows)} minutes, {len(want)} expected"
    bad_sum = bad_prod = bad_vwap = 0
    vwap_kind = "decimal"
    for m, c, sv, sq, sp, vw in rows:
        wc, wv, wq = want[int(m)]
        if (c, Decimal(sv), Decimal(sq)) != (wc, wv, wq):
            bad_sum += 1
        if Decimal(sp) != wq:
            bad_prod += 1
        if isinstance(vw, float):
            vwap_kind = "DOUBLE"
            vw = Decimal(vw).quantize(Decimal("1e-8"), ROUND_HALF_UP)
        if Decimal(vw).quantize(Decimal("1e-8"), ROUND_HALF_UP) != vwap8(wq, wv):
            bad_vwap += 1
    n = len(rows)
    parts = [
        "sums exact" if not bad_sum else f"sums differ in {bad_sum}/{n}",
        "Σ(price·qty) exact" if not bad_prod else f"Σ(price·qty) differs in {bad_prod}/{n}",
        (f"vwap exact ({vwap_kind})" if not bad_vwap else f"vwap ({vwap_kind}) differs in {bad_vwap}/{n}"),
    ]
    return ", ".join(parts)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    fn()  # warm: caches, JIT, file system
    best, out = float("inf"), None
    for _ in range(2):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


SQL = (
    "SELECT {minute} AS minute, count(*) AS n, sum(qty) AS sv, sum(quote_qty) AS sq, sum(price * qty) AS sp, "
    "sum(quote_qty) / sum(qty) AS vwap FROM {src} GROUP BY date, minute ORDER BY minute"
)


def run_duckdb(dset: Path) -> list[tuple[Any, ...]]:
    import duckdb

    return duckdb.sql(
        SQL.format(
            minute="epoch(date_trunc('minute', trade_time))::bigint",
            src=f"read_parquet('{dset}/**/*.parquet', hive_partitioning = true)",
        )
    ).fetchall()


def run_polars(dset: Path) -> list[tuple[Any, ...]]:
    import polars as pl

    lf = pl.scan_parquet(f"{dset}/**/*.parquet", hive_partitioning=True)
    out = (
        lf.group_by("date", minute=pl.col("trade_time").dt.truncate("1m").dt.epoch("s"))
        .agg(
            n=pl.len(),
            sv=pl.col("qty").sum(),
            sq=pl.col("quote_qty").sum(),
            sp=(pl.col("price") * pl.col("qty")).sum(),
        )
        .with_columns(vwap=pl.col("sq") / pl.col("sv"))
        .sort("minute")
        .collect()
    )
    return list(out.select("minute", "n", "sv", "sq", "sp", "vwap").iter_rows())


def run_pyarrow(dset: Path) -> list[tuple[Any, ...]]:
    import pyarrow.dataset as pads

    t = pads.dataset(dset, format="parquet", partitioning="hive").to_table(
        columns=["trade_time", "price", "qty", "quote_qty"]
    )
    minute = pc.multiply(pc.divide(pc.cast(t.column("trade_time"), pa.int64()), 60_000_000), 60)
    prod = pc.multiply(t.column("price"), t.column("qty"))  # v1: decimal(38,8)·(38,8) does not fit 38 digits
    g = (
        pa.table({"m": minute, "qty": t.column("qty"), "q": t.column("quote_qty"), "p": prod})
        .group_by("m")
        .aggregate([("m", "count"), ("qty", "sum"), ("q", "sum"), ("p", "sum")])
        .sort_by("m")
    )
    cols = [g.column(c).to_pylist() for c in ("m", "m_count", "qty_sum", "q_sum", "p_sum")]
    with localcontext() as ctx:  # pyarrow cannot divide these decimals (precision > 38): the ratio in Python
        ctx.prec = 80
        return [(m, c, sv, sq, sp, sq / sv) for m, c, sv, sq, sp in zip(*cols)]


def spark_session() -> tuple[float, Any]:
    os.environ.update(SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    from pyspark.sql import SparkSession

    t0 = time.perf_counter()
    s = (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.memory", "3g")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    s.sparkContext.setLogLevel("ERROR")
    s.range(1).count()
    return time.perf_counter() - t0, s


def run_spark(spark: Any, dset: Path) -> list[tuple[Any, ...]]:
    spark.read.parquet(str(dset)).createOrReplaceTempView("t")
    rows = spark.sql(SQL.format(minute="unix_seconds(date_trunc('MINUTE', trade_time))", src="t")).collect()
    return [tuple(r) for r in rows]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_500_000, 12_000_000])
    ap.add_argument("--no-spark", action="store_true")
    args = ap.parse_args(argv)
    spark = None
    if not args.no_spark:
        start, spark = spark_session()
        print(f"Spark {spark.version} session start (local[2]): {start:.1f} s", flush=True)
    root = Path(tempfile.mkdtemp(prefix="cryptolab-bench-engines-"))
    try:
        for n in args.sizes:
            ndays = max(1, round(n / PER_DAY))
            days = [make_day(n // ndays, d, 1 + d * (n // ndays), d) for d in range(ndays)]
            rows = sum(t.num_rows for t in days)
            size = {layout: write_dataset(root / str(n), days, layout) for layout in ("v1", "v2")}
            want = oracle(days)
            mib = 1024 * 1024
            print(f"\n{rows:,} trades over {ndays} day(s), {len(want):,} minutes", flush=True)
            print(
                f"  bytes per 1M trades: v1 {size['v1'] / rows * 1e6 / mib:.2f} MiB, v2 "
                f"{size['v2'] / rows * 1e6 / mib:.2f} MiB (v2/v1 = {size['v2'] / size['v1']:.3f})",
                flush=True,
            )
            engines: list[tuple[str, Callable[[Path], list[tuple[Any, ...]]]]] = [
                ("duckdb", run_duckdb),
                ("polars", run_polars),
                ("pyarrow", run_pyarrow),
            ]
            if spark is not None:
                engines.insert(0, ("spark", lambda d: run_spark(spark, d)))
            for name, fn in engines:
                res = {}
                for layout in ("v1", "v2"):
                    dset = root / str(n) / layout / "trades"
                    try:
                        secs, got = timed(lambda fn=fn, dset=dset: fn(dset))  # type: ignore[misc]
                        res[layout] = (secs, check(got, want))
                    except Exception as exc:  # an engine refusing a layout is a result too
                        res[layout] = (float("nan"), "fails: " + " ".join(str(exc).split())[:100])
                ratio = (
                    res["v2"][0] / res["v1"][0]
                    if res["v1"][0] == res["v1"][0] and res["v1"][0] > 0
                    else float("nan")
                )
                for layout in ("v1", "v2"):
                    secs, verdict = res[layout]
                    print(f"  {name:8s} {layout}  {secs:7.3f} s   {verdict}", flush=True)
                print(f"  {name:8s} v2/v1 time = {ratio:.2f}", flush=True)
            shutil.rmtree(root / str(n), ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if spark is not None:
            spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
