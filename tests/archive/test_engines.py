"""Spark and DuckDB read the archive exactly, with their default settings and the recipes of docs/archive.md.

Real Spark (pyspark from PyPI, Debian's OpenJDK 17: `make test` installs Java like Chromium for
the browser test), `local[2]`, bound to 127.0.0.1, no UI, nothing downloaded. The driver's JVM
runs in America/New_York on purpose: the recipe groups by the `date` partition, which is the UTC
day whatever the session's time zone, while `to_date(trade_time)` is not. Every figure is
compared with what PostgreSQL computes over the same rows before they are dropped. On S3 (the
moto server on 127.0.0.1) Spark reads through cryptolab's Python data source (pyspark ships no
s3a jars) and DuckDB through a pyarrow dataset (its httpfs extension would be downloaded).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cryptolab.archive import archive
from cryptolab.model import Trade
from tests.archive.test_job import _write

pytestmark = [pytest.mark.slow]

UTC = timezone.utc
TODAY = date(2024, 8, 10)
ZONE = "America/New_York"


def _need(msg: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(msg)  # CI must really run it
    pytest.skip(msg)  # a developer machine without Java: everything else still runs


@pytest.fixture(scope="module")
def aws_env() -> Iterator[str]:
    """A local S3-compatible server and AWS_* pointing at it, set before Spark starts (its Python workers
    inherit the environment of the moment the JVM starts)."""
    import importlib
    import logging

    moto_server = importlib.import_module("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in [*env, "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"]}
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(k, None)
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def spark(aws_env: str) -> Iterator[Any]:
    if shutil.which("java") is None:
        _need("the Spark test needs Java (Debian's openjdk-17-jre-headless): `make test` installs it as root")
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        _need("the Spark test needs pyspark (the dev extra: pip install -e '.[dev]')")
    saved = {k: os.environ.get(k) for k in ("SPARK_LOCAL_IP", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    os.environ.update(
        SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable
    )
    session = (
        SparkSession.builder.master("local[2]")
        .appName("cryptolab-archive-test")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", f"-Duser.timezone={ZONE}")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _day_trades(
    symbol: str,
    day: date,
    n: int,
    first_id: int,
    price0: str,
    price_dp: int,
    qty_dp: int,
    ms: bool,
    seed: int,
) -> list[Trade]:
    """n trades spread over the UTC day, a random walk; price with price_dp decimals, qty with qty_dp."""
    import random

    rnd = random.Random(seed)
    base = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000
    price = Decimal(price0)
    tick, lot = Decimal(1).scaleb(-price_dp), Decimal(1).scaleb(-qty_dp)
    out = []
    for i in range(n):
        t = base + (i * 86_400_000_000) // n + rnd.randrange(0, 86_400_000_000 // n)
        if ms:
            t -= t % 1000
        price = max(tick, price + tick * rnd.randint(-30, 30))
        qty = lot * rnd.randint(1, 10 ** min(qty_dp + 1, 12))
        out.append(
            Trade("binance", symbol, first_id + i, price, qty, rnd.random() < 0.5, t, None, None, "backfill")
        )
    return out


@pytest.fixture(scope="module")
def archived(
    tmp_path_factory: pytest.TempPathFactory, server_dsn: str, template_db: str
) -> Iterator[tuple[Path, Any]]:
    """BTCUSDT on two days (µs times, 2-decimal prices, 5-decimal quantities: 7-decimal products),
    ETHUSDT on one (ms times), PEPEUSDT with the contract's extremes (8-decimal prices, 11-digit
    quantities) — archived, and PostgreSQL's own answers computed before the drop."""
    name = "cl_spark_archive"
    with psycopg.connect(server_dsn, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    dsn = psycopg.conninfo.make_conninfo(server_dsn, dbname=name)
    trades = (
        _day_trades("BTCUSDT", date(2024, 8, 8), 6000, 1_000_000, "60000.00", 2, 5, False, 1)
        + _day_trades("BTCUSDT", date(2024, 8, 9), 6000, 1_006_000, "61000.00", 2, 5, False, 2)
        + _day_trades("ETHUSDT", date(2024, 8, 7), 4000, 500_000, "2500.00", 2, 4, True, 3)
        + _day_trades("PEPEUSDT", date(2024, 8, 9), 2000, 70_000, "0.00001234", 8, 0, False, 4)
    )
    for t in trades[-5:]:  # the widest quantity the contract holds
        trades.append(t._replace(trade_id=t.trade_id + 10_000, qty=Decimal("99999999999.99999999")))
    _write(dsn, trades)
    with psycopg.connect(dsn) as c:
        want: dict[str, Any] = {
            "days": c.execute(
                "SELECT symbol, (trade_time AT TIME ZONE 'UTC')::date, count(*), sum(qty), "
                "sum(quote_qty), sum(price * qty) FROM trades GROUP BY 1, 2 ORDER BY 1, 2"
            ).fetchall(),
            "vwap": c.execute(
                "SELECT symbol, (extract(epoch FROM date_trunc('minute', trade_time)))::bigint, count(*), "
                "sum(qty), sum(quote_qty), round(sum(quote_qty) / sum(qty), 8) FROM trades "
                "GROUP BY 1, 2 ORDER BY 1, 2"
            ).fetchall(),
        }
    root = tmp_path_factory.mktemp("spark") / "archive"
    os.environ["CRYPTOLAB_DSN"] = dsn
    try:
        rep = archive(to=str(root), today=TODAY, drop=True)
    finally:
        os.environ.pop("CRYPTOLAB_DSN", None)
    assert len(rep.dropped) == 3
    yield root, want
    with psycopg.connect(server_dsn, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')


def _read(spark: Any, root: Path) -> Any:
    """docs/archive.md's recipe: the days the manifest lists, partition columns from the paths."""
    manifest = json.loads((root / "manifest.json").read_text())
    paths = [f"{root}/{d['path']}" for d in manifest["days"] if d["table"] == "trades"]
    return spark.read.option("basePath", f"{root}/trades").parquet(*paths)


def test_spark_day_totals_equal_postgresql_exactly(spark: Any, archived: tuple[Path, Any]) -> None:
    root, want = archived
    _read(spark, root).createOrReplaceTempView("trades")
    got = spark.sql(
        "SELECT symbol, date, count(*), sum(qty), sum(quote_qty), sum(price * qty) FROM trades "
        "GROUP BY symbol, date ORDER BY symbol, date"
    ).collect()
    assert [tuple(r) for r in got] == want["days"]  # Decimal == Decimal: every digit
    types = (
        spark.sql("SELECT price * qty AS notional FROM trades").dtypes
        + spark.sql("SELECT sum(quote_qty) / sum(qty) AS vwap FROM trades").dtypes
    )
    assert types == [("notional", "decimal(38,16)"), ("vwap", "decimal(38,8)")]  # no rounding of the product


def test_spark_per_minute_vwap_equals_postgresql_exactly(spark: Any, archived: tuple[Path, Any]) -> None:
    root, want = archived
    _read(spark, root).createOrReplaceTempView("trades")
    got = spark.sql(
        "SELECT symbol, unix_seconds(date_trunc('MINUTE', trade_time)) AS minute, count(*), sum(qty), "
        "sum(quote_qty), sum(quote_qty) / sum(qty) AS vwap FROM trades "
        "GROUP BY symbol, date, minute ORDER BY symbol, minute"
    ).collect()
    assert len(got) == len(want["vwap"]) > 4000
    assert [tuple(r) for r in got] == want["vwap"]


def test_group_by_the_date_partition_in_any_session_time_zone(spark: Any, archived: tuple[Path, Any]) -> None:
    """In a New York session `to_date(trade_time)` is the New York day; the `date` partition is
    the UTC day."""
    root, want = archived
    assert spark.conf.get("spark.sql.session.timeZone") == ZONE
    _read(spark, root).createOrReplaceTempView("trades")
    by_partition = spark.sql(
        "SELECT symbol, date, count(*) FROM trades GROUP BY 1, 2 ORDER BY 1, 2"
    ).collect()
    assert [tuple(r) for r in by_partition] == [w[:3] for w in want["days"]]
    moved = spark.sql("SELECT count(*) FROM trades WHERE to_date(trade_time) <> date").collect()[0][0]
    assert moved > 0  # the trades before 04:00 UTC: the previous day in New York — why the recipe uses `date`
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    try:
        assert spark.sql("SELECT count(*) FROM trades WHERE to_date(trade_time) <> date").collect()[0][0] == 0
    finally:
        spark.conf.set("spark.sql.session.timeZone", ZONE)


def test_a_file_outside_the_manifest_is_not_read_by_the_recipe(
    spark: Any, archived: tuple[Path, Any], tmp_path: Path
) -> None:
    """A half-written or stray day under trades/ (not listed): the recipe reads only what the
    manifest lists."""
    root, want = archived
    stray = root / "trades/exchange=binance/symbol=BTCUSDT/date=2024-08-10/trades-BTCUSDT-2024-08-10.parquet"
    stray.parent.mkdir(parents=True)
    shutil.copy(next(root.glob("trades/exchange=binance/symbol=BTCUSDT/date=2024-08-08/*.parquet")), stray)
    try:
        n = _read(spark, root).count()
        assert n == sum(w[2] for w in want["days"])
        assert spark.read.parquet(f"{root}/trades").count() == n + 6000  # a plain scan would see it
    finally:
        shutil.rmtree(stray.parent)


# ------------------------------------------------------------------ DuckDB, and both engines on S3
def _vwap8(sum_quote: Decimal, sum_qty: Decimal) -> Decimal:
    """Σquote_qty / Σqty rounded half-up to 8 decimals, exactly (DuckDB divides decimals as DOUBLE)."""
    with localcontext() as ctx:
        ctx.prec = 80
        return (sum_quote / sum_qty).quantize(Decimal("1e-8"), ROUND_HALF_UP)


def test_duckdb_per_minute_sums_and_vwap_equal_postgresql_exactly(archived: tuple[Path, Any]) -> None:
    """docs/archive.md's DuckDB recipe on a disk: the files the manifest lists; exact DECIMAL sums."""
    import duckdb

    root, want = archived
    manifest = json.loads((root / "manifest.json").read_text())
    files = [f"{root}/{d['path']}" for d in manifest["days"] if d["table"] == "trades"]
    got = duckdb.sql(
        "SELECT symbol, epoch(date_trunc('minute', trade_time))::bigint AS minute, count(*), sum(qty), "
        "sum(quote_qty) FROM read_parquet($files, hive_partitioning = true) GROUP BY symbol, date, minute "
        "ORDER BY symbol, minute",
        params={"files": files},
    ).fetchall()
    assert [g[:5] for g in got] == [w[:5] for w in want["vwap"]]
    assert [_vwap8(g[4], g[3]) for g in got] == [w[5] for w in want["vwap"]]


def test_polars_day_totals_equal_postgresql_exactly(archived: tuple[Path, Any]) -> None:
    """docs/archive.md's polars recipe: the listed files, hive partitions, exact Decimal sums. polars
    multiplies decimals at the operands' scale (8): the notional must come from quote_qty."""
    import polars as pl

    root, want = archived
    files = [f"{root}/{d['path']}" for d in json.loads((root / "manifest.json").read_text())["days"]]
    got = (
        pl.scan_parquet(files, hive_partitioning=True)
        .group_by("symbol", "date")
        .agg(
            pl.len(), pl.col("qty").sum(), pl.col("quote_qty").sum(), (pl.col("price") * pl.col("qty")).sum()
        )
        .sort("symbol", "date")
        .collect()
    )
    rows = list(got.iter_rows())
    assert [r[:5] for r in rows] == [w[:5] for w in want["days"]]
    assert [r[5] == w[5] for r, w in zip(rows, want["days"])] == [
        True,
        True,
        True,
        False,
    ]  # PEPE: 10+ decimals


def test_spark_and_duckdb_read_the_archive_on_s3_exactly(spark: Any, aws_env: str, dsn: str) -> None:
    import boto3
    import duckdb
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    from cryptolab.storage.parquet.spark import register

    boto3.client("s3", endpoint_url=aws_env, region_name="us-east-1").create_bucket(Bucket="lab")
    _write(
        dsn,
        _day_trades("BTCUSDT", date(2024, 8, 8), 3000, 1, "60000.00", 2, 5, False, 9)
        + _day_trades("BTCUSDT", date(2024, 8, 9), 2000, 3001, "60100.00", 2, 5, False, 10),
    )
    with psycopg.connect(dsn) as c:
        want = c.execute(
            "SELECT (trade_time AT TIME ZONE 'UTC')::date, count(*), sum(qty), sum(quote_qty), "
            "round(sum(quote_qty) / sum(qty), 8) FROM trades GROUP BY 1 ORDER BY 1"
        ).fetchall()
    archive(to="s3://lab/cryptolab", today=TODAY, drop=True)
    # Spark: cryptolab's data source (no jars), checked against the manifest file by file
    register(spark)
    spark.read.format("cryptolab_archive").load("s3://lab/cryptolab").createOrReplaceTempView("s3_trades")
    got = spark.sql(
        "SELECT date, count(*), sum(qty), sum(quote_qty), sum(quote_qty) / sum(qty) FROM s3_trades "
        "GROUP BY date ORDER BY date"
    ).collect()
    assert [tuple(r) for r in got] == want
    # DuckDB: a pyarrow dataset over the listed files, scanned by DuckDB (filters and columns pushed down)
    s3 = pafs.S3FileSystem(endpoint_override=aws_env, region="us-east-1")
    with s3.open_input_file("lab/cryptolab/manifest.json") as f:
        manifest = json.loads(f.read())
    trades = pads.dataset(
        [f"lab/cryptolab/{d['path']}" for d in manifest["days"]],
        filesystem=s3,
        format="parquet",
        partitioning="hive",
        partition_base_dir="lab/cryptolab/trades",
    )
    con = duckdb.connect()
    con.register("trades", trades)
    got2 = con.sql(
        "SELECT date::date, count(*), sum(qty), sum(quote_qty) FROM trades GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert [(*g, _vwap8(g[3], g[2])) for g in got2] == want
