"""The archive on object storage: a real S3-compatible server (moto's server mode) on 127.0.0.1.

The server is started by the test itself; cryptolab reaches it only through the usual AWS_*
environment variables. Nothing is mocked: every byte goes over HTTP to 127.0.0.1.
"""

from __future__ import annotations

import importlib
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from cryptolab import analysis as an
from cryptolab.archive import ArchiveError, archive, attach, detach, read_archived_trades
from cryptolab.storage import db
from tests.analysis.test_data import END, MARKET, START, SYMBOL, write_market
from tests.archive.test_job import DAY1, TODAY, _odd_trades, _partitions, _write

moto_server = importlib.import_module("moto.server")  # moto[server]: a test dependency, required


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    assert host == "127.0.0.1"
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    """A fresh bucket; AWS_* point at the local server (test credentials, never real ones)."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    bucket = "cl-" + "".join(ch for ch in request.node.name.lower() if ch.isalnum())[:40]
    client.create_bucket(Bucket=bucket)
    client.bucket = bucket
    return client


def _keys(client: Any, prefix: str = "") -> list[str]:
    out = client.list_objects_v2(Bucket=client.bucket, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in out)


def test_archive_to_s3_then_drop_and_read_back_as_one_history(dsn: str, s3: Any) -> None:
    write_market(dsn, MARKET)
    url = f"s3://{s3.bucket}/lab/archive"
    before_frame = an.load_trades(
        SYMBOL, START, END, columns=("trade_id", "trade_time", "price", "qty", "quote_qty")
    )
    before_ohlcv = an.ohlcv(SYMBOL, START, END, "1m")
    before_gaps = an.gaps(SYMBOL, START, END)
    rep = archive(to=url, drop=True, today=TODAY)
    assert sorted(rep.dropped) == [date(2024, 8, 8), date(2024, 8, 9)]
    keys = _keys(s3)
    assert (
        "lab/archive/trades/exchange=binance/symbol=TESTUSDT/date=2024-08-08/trades-TESTUSDT-2024-08-08.parquet"
        in keys
    )
    assert not [k for k in keys if "/.staging/" in k and not k.endswith("/")]  # nothing half-written left
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM trades").fetchone() == (0,)
        assert c.execute("SELECT DISTINCT location FROM archive_days").fetchall() == [(url,)]
    # the archive alone, through cryptolab
    got = read_archived_trades(
        "binance", SYMBOL, START, END, columns=("trade_id", "trade_time", "price", "qty", "quote_qty")
    )
    assert_frame_equal(got, before_frame, check_exact=True)
    # the SQL modules through the session's TEMP trades
    with db.connect(dsn, autocommit=True) as c:
        assert attach(c, "binance", SYMBOL, START, END)
        assert c.execute("SELECT count(*) FROM trades").fetchone() == (before_frame.height,)
        detach(c)
    assert_frame_equal(an.ohlcv(SYMBOL, START, END, "1m"), before_ohlcv, check_exact=True)
    assert_frame_equal(an.gaps(SYMBOL, START, END), before_gaps, check_exact=True)
    # and without cryptolab: polars straight from the bucket (object_store), pyarrow's dataset
    import os

    opts = {
        "aws_endpoint_url": os.environ["AWS_ENDPOINT_URL"],
        "aws_allow_http": "true",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "aws_region": "us-east-1",
    }
    n = (
        pl.scan_parquet(f"{url}/trades/**/*.parquet", hive_partitioning=True, storage_options=opts)
        .filter(pl.col("symbol") == SYMBOL)
        .select(pl.len())
        .collect()
        .item()
    )
    assert n == before_frame.height
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"], region="us-east-1")
    dset = pads.dataset(
        f"{s3.bucket}/lab/archive/trades", filesystem=fs, format="parquet", partitioning="hive"
    )
    assert dset.count_rows() == len(MARKET.stored)


def test_rerun_against_s3_is_idempotent_and_cleans_staging(dsn: str, s3: Any) -> None:
    _write(dsn, _odd_trades(DAY1, 300))
    url = f"s3://{s3.bucket}/a"
    s3.put_object(Bucket=s3.bucket, Key="a/.staging/0123-trades-ODDUSDT-2024-08-08.parquet", Body=b"PAR1 cut")
    rep = archive(to=url, today=TODAY)
    assert rep.cleaned == 1 and [r.status for r in rep.exported] == ["exported"]
    rep = archive(to=url, today=TODAY, drop=True)
    assert rep.exported == [] and rep.dropped == [DAY1]
    assert not [k for k in _keys(s3, "a/.staging/") if not k.endswith("/")]


def test_store_faults_give_one_clear_message_and_delete_nothing(
    dsn: str, s3: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _write(dsn, _odd_trades(DAY1, 50))
    with pytest.raises(ArchiveError, match="bucket does not exist"):
        archive(to=f"s3://no-such-bucket-{s3.bucket}/x", today=TODAY, drop=True)
    # a store that refuses writes (a bucket policy denying PutObject, enforced by the server)
    import json

    s3.put_bucket_policy(
        Bucket=s3.bucket,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:PutObject",
                        "Resource": f"arn:aws:s3:::{s3.bucket}/*",
                    }
                ],
            }
        ),
    )
    with pytest.raises(ArchiveError, match="refused the request.*[Nn]othing was deleted"):
        archive(to=f"s3://{s3.bucket}/x", today=TODAY, drop=True)
    s3.delete_bucket_policy(Bucket=s3.bucket)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{dead}")
    with pytest.raises(ArchiveError, match="unreachable|failed") as err:
        archive(to=f"s3://{s3.bucket}/x", today=TODAY, drop=True)
    assert "\n" not in str(err.value) and "nothing was deleted" in str(err.value).lower()
    # the same through the CLI: one line on stderr, exit 2
    r = subprocess.run(
        [sys.executable, "-m", "cryptolab", "archive", "--to", f"s3://{s3.bucket}/x", "--drop"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "CRYPTOLAB_DSN": dsn},
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "trades_20240808" in _partitions(dsn)
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM archive_days").fetchone() == (0,)
