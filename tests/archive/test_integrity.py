"""The archive describes and checks itself: one contract, a manifest written last, damage named.

Real PostgreSQL, real files; damage is done to the bytes on disk, as a bad disk or a careless
copy would.
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import psycopg
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from cryptolab.archive import ArchiveError, archive, day_path, read_archived_trades
from cryptolab.model import Trade
from cryptolab.storage.parquet.layout import FORMAT_VERSION, MANIFEST, contract_schema
from tests.archive.test_job import DAY1, DAY2, TODAY, _odd_trades, _partitions, _write

SYM = "ODDUSDT"


def _cli(dsn: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cryptolab", "archive", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "CRYPTOLAB_DSN": dsn},
    )


def _trades(day: date, prices: list[str], first_id: int, symbol: str = "MIXUSDT") -> list[Trade]:
    base = int(datetime(day.year, day.month, day.day, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000
    return [
        Trade(
            "binance",
            symbol,
            first_id + i,
            Decimal(p),
            Decimal("0.001"),
            i % 2 == 0,
            base + i * 1000,
            None,
            None,
            "backfill",
        )
        for i, p in enumerate(prices)
    ]


def test_days_with_more_decimals_are_refused_and_every_reader_sees_one_exact_schema(
    dsn: str, tmp_path: Path
) -> None:
    """The issue's case: a day with 8-decimal prices next to one with more. Before the contract each
    got its own scale; Spark, polars and pyarrow refused the pair and DuckDB rounded silently."""
    _write(
        dsn,
        _trades(DAY1, ["0.01542234", "0.01542000", "0.2"], 100) + _trades(DAY2, ["0.015422345", "0.01"], 200),
    )  # DAY2: 9 decimals
    root = tmp_path / "a"
    with pytest.raises(
        ArchiveError, match=r"MIXUSDT 2024-08-09: price 0\.015422345 \(trade 200\) does not fit"
    ):
        archive(to=str(root), today=TODAY, drop=True)
    assert "trades_20240809" in _partitions(dsn)
    files = sorted(root.glob("trades/**/*.parquet"))
    assert [f.parent.name for f in files] == ["date=2024-08-08"]  # DAY1 written (before DAY2 was refused)
    # a second day that fits: every reader sees one schema and exact sums
    with psycopg.connect(dsn) as c:
        c.execute("DELETE FROM trades WHERE trade_time >= '2024-08-09'")
    _write(dsn, _trades(DAY2, ["0.01542234", "123456.5"], 200))
    archive(to=str(root), today=TODAY)
    schemas = {pq.read_schema(f).remove_metadata() for f in root.glob("trades/**/*.parquet")}
    assert schemas == {contract_schema()}
    want = Decimal("0.01542234") * 2 + Decimal("0.01542000") + Decimal("0.2") + Decimal("123456.5")
    got = duckdb.sql(
        f"SELECT sum(price) FROM read_parquet('{root}/trades/**/*.parquet', hive_partitioning = true)"
    ).fetchall()
    assert got == [(want,)]
    assert (
        pl.scan_parquet(f"{root}/trades/**/*.parquet", hive_partitioning=True)
        .select(pl.col("price").sum())
        .collect()
        .item()
        == want
    )
    table = pads.dataset(root / "trades", format="parquet", partitioning="hive").to_table()
    assert sum(table.column("price").to_pylist()) == want


# ------------------------------------------------------------------ the manifest
def test_the_manifest_lists_every_published_day_with_its_checksum(dsn: str, tmp_path: Path) -> None:
    import hashlib

    _write(dsn, _odd_trades(DAY1, 300) + _odd_trades(DAY2, 200))
    root = tmp_path / "a"
    archive(to=str(root), today=TODAY)
    doc = json.loads((root / MANIFEST).read_text())
    assert doc["tables"]["trades"]["schema_version"] == FORMAT_VERSION
    assert [c["name"] for c in doc["tables"]["trades"]["columns"]] == contract_schema().names
    days = {d["date"]: d for d in doc["days"]}
    assert sorted(days) == ["2024-08-08", "2024-08-09"]
    for d in days.values():
        data = (root / d["path"]).read_bytes()
        assert d["sha256"] == hashlib.sha256(data).hexdigest() and d["bytes"] == len(data)
        assert d["rows"] == pq.read_metadata(root / d["path"]).num_rows
    assert days["2024-08-08"]["rows"] == 300 and days["2024-08-09"]["rows"] == 200
    with psycopg.connect(dsn) as c:
        sums = c.execute(
            "SELECT sum(qty), sum(price * qty) FROM trades WHERE trade_time < '2024-08-09'"
        ).fetchone()
    assert sums is not None
    assert (Decimal(days["2024-08-08"]["sum_qty"]), Decimal(days["2024-08-08"]["sum_quote_qty"])) == sums
    assert not list((root / ".staging").glob("*"))  # written whole, moved into place


def test_a_day_published_but_not_yet_in_the_manifest_is_added_by_the_next_run(
    dsn: str, tmp_path: Path
) -> None:
    _write(dsn, _odd_trades(DAY1, 100) + _odd_trades(DAY2, 100))
    root = tmp_path / "a"
    archive(to=str(root), today=TODAY)
    m = root / MANIFEST
    doc = json.loads(m.read_text())
    other = {**doc["days"][0], "exchange": "elsewhere", "path": "trades/exchange=elsewhere/x.parquet"}
    doc["days"] = [doc["days"][0], other]  # a crash before the manifest listed DAY2; another writer's day
    m.write_text(json.dumps(doc))
    archive(to=str(root), today=TODAY)
    again = json.loads(m.read_text())
    assert [(d["exchange"], d["date"]) for d in again["days"]] == [
        ("binance", "2024-08-08"),
        ("binance", "2024-08-09"),
        ("elsewhere", "2024-08-08"),
    ]


# ------------------------------------------------------------------ damage is named, never read
def _drop_one_day(dsn: str, root: Path, n: int = 3000) -> Path:
    _write(dsn, _odd_trades(DAY1, n))
    archive(to=str(root), today=TODAY, drop=True)
    return root / day_path("binance", SYM, DAY1)


def test_every_flipped_byte_is_caught_and_the_file_named(dsn: str, tmp_path: Path) -> None:
    f = _drop_one_day(dsn, tmp_path / "a")
    good = f.read_bytes()
    want = read_archived_trades("binance", SYM)
    rnd = random.Random(24)
    for _ in range(24):
        pos = rnd.randrange(len(good))
        bad = bytearray(good)
        bad[pos] ^= 1 << rnd.randrange(8)
        f.write_bytes(bytes(bad))
        with pytest.raises(ArchiveError, match=f"{f}.*damaged") as err:
            read_archived_trades("binance", SYM)
        assert "\n" not in str(err.value)
    f.write_bytes(good)
    assert read_archived_trades("binance", SYM).equals(want)


def test_a_valid_file_with_half_the_rows_or_a_cut_footer_is_named(dsn: str, tmp_path: Path) -> None:
    f = _drop_one_day(dsn, tmp_path / "a")
    good = f.read_bytes()
    table = pq.read_table(f)
    pq.write_table(table.slice(0, table.num_rows // 2), f)  # whole and valid, but not what was published
    with pytest.raises(ArchiveError, match=f"{f} is damaged"):
        read_archived_trades("binance", SYM)
    f.write_bytes(good[:-20] + b"\0" * 12 + good[-8:])  # footer damage
    with pytest.raises(ArchiveError, match=f"{f} is damaged"):
        read_archived_trades("binance", SYM)
    f.write_bytes(good)
    assert read_archived_trades("binance", SYM).height == 3000


def test_verify_checks_every_file_and_names_the_damaged_ones(dsn: str, tmp_path: Path) -> None:
    root = tmp_path / "a"
    _write(dsn, _odd_trades(DAY1, 500) + _odd_trades(DAY2, 400))
    archive(to=str(root), today=TODAY, drop=True)
    r = _cli(dsn, "--verify", "--to", str(root))
    assert r.returncode == 0 and "2 day(s) checked, 0 problem(s)" in r.stdout, (r.stdout, r.stderr)
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM archive_days WHERE verified_at IS NOT NULL").fetchone() == (2,)
    f1, f2 = (root / day_path("binance", SYM, d) for d in (DAY1, DAY2))
    data = bytearray(f1.read_bytes())
    data[len(data) // 3] ^= 0x10
    f1.write_bytes(bytes(data))
    f2.rename(tmp_path / "away.parquet")
    stray = root / "trades/exchange=binance/symbol=ODDUSDT/date=2024-08-07/x.parquet"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(f1.read_bytes())
    r = _cli(dsn, "--verify", "--to", str(root))
    assert r.returncode == 1 and "2 day(s) checked, 3 problem(s)" in r.stdout, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert any(str(f1) in line and "damaged" in line for line in lines), lines
    assert any(str(f2) in line and "missing" in line for line in lines), lines
    assert any(str(stray) in line and "not recorded" in line for line in lines), lines
    r = _cli(dsn, "--verify", "--drop")
    assert r.returncode == 2 and "--verify only checks" in r.stderr


def test_a_plain_run_reports_a_damaged_file_of_a_day_still_in_the_database(dsn: str, tmp_path: Path) -> None:
    root = tmp_path / "a"
    _write(dsn, _odd_trades(DAY1, 500))
    archive(to=str(root), today=TODAY)
    f = root / day_path("binance", SYM, DAY1)
    f.write_bytes(f.read_bytes()[:-100])
    r = _cli(dsn, "--to", str(root), "--drop")
    assert r.returncode == 1 and f"{f} is damaged" in r.stdout + r.stderr, (r.stdout, r.stderr)
    assert "trades_20240808" in _partitions(dsn)
    r = _cli(dsn, "--to", str(root), "--drop", "--replace")
    assert r.returncode == 0 and "1 partition(s) dropped" in r.stdout, (r.stdout, r.stderr)


def test_verify_records_the_checksum_of_a_day_archived_before_checksums(dsn: str, tmp_path: Path) -> None:
    root = tmp_path / "a"
    _drop_one_day(dsn, root, 200)
    with psycopg.connect(dsn) as c:
        digest = c.execute("SELECT sha256 FROM archive_days").fetchone()
        c.execute("UPDATE archive_days SET sha256 = NULL")
    (root / MANIFEST).unlink()
    r = _cli(dsn, "--verify", "--to", str(root))
    assert r.returncode == 0 and "1 checksum(s) recorded" in r.stdout and "manifest rewritten" in r.stdout, (
        r.stdout
    )
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT sha256 FROM archive_days").fetchone() == digest
    assert json.loads((root / MANIFEST).read_text())["days"][0]["sha256"] == digest[0]


# ------------------------------------------------------------------ operability, permissions
def test_an_archive_on_disk_is_private_to_its_owner(dsn: str, tmp_path: Path) -> None:
    root = tmp_path / "new" / "archive"
    _write(dsn, _odd_trades(DAY1, 50))
    os.umask(0o022)
    archive(to=str(root), today=TODAY)
    paths = [root, *root.rglob("*")]
    assert len(paths) > 5
    for p in paths:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))


def _advisory_holders(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as c:
        return [
            r[0]
            for r in c.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND objid = hashtext('cryptolab_archive')::oid"
            )
        ]


def test_a_killed_archive_never_leaves_its_query_holding_the_lock(dsn: str, tmp_path: Path) -> None:
    """SIGKILL `cryptolab archive --drop` while its query waits; its server session must go within seconds."""
    _write(dsn, _odd_trades(DAY1, 200))
    root = tmp_path / "a"
    with psycopg.connect(dsn) as blocker:
        blocker.execute("LOCK TABLE archive_quality IN ACCESS EXCLUSIVE MODE")  # the quality step will wait
        proc = subprocess.Popen(
            [sys.executable, "-m", "cryptolab", "archive", "--to", str(root), "--drop"],
            env={**os.environ, "CRYPTOLAB_DSN": dsn},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            end = time.monotonic() + 60
            waiting: list[int] = []
            while time.monotonic() < end and not waiting:
                with psycopg.connect(dsn) as c:
                    # the session waiting for archive_quality (pg_locks: the query text may be cut before
                    # the name)
                    waiting = [
                        r[0]
                        for r in c.execute(
                            "SELECT pid FROM pg_locks WHERE NOT granted "
                            "AND relation = 'archive_quality'::regclass"
                        )
                    ]
                time.sleep(0.1)
            assert waiting and _advisory_holders(dsn) == waiting
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        end = time.monotonic() + 10
        while time.monotonic() < end and _advisory_holders(dsn):
            time.sleep(0.2)
        assert _advisory_holders(dsn) == []  # gone while the blocker still holds its lock
        blocker.rollback()
    assert archive(to=str(root), today=TODAY, drop=True).dropped == [DAY1]


def test_the_quality_report_runs_on_an_analysed_partition(dsn: str, tmp_path: Path) -> None:
    """A bulk load leaves a partition without statistics; the drop's quality report analyses it first."""
    from cryptolab.archive.job import _analyze_if_stale

    _write(dsn, _odd_trades(DAY2, 300))
    query = "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'trades_20240809'"
    with psycopg.connect(dsn, autocommit=True) as c:
        assert c.execute(query).fetchone() == (False,)
        _analyze_if_stale(c, "public.trades_20240809")
        assert c.execute(query).fetchone() == (True,)
        c.execute("SELECT pg_stat_force_next_flush()")
        first = c.execute(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'trades_20240809'"
        ).fetchone()
        _analyze_if_stale(c, "public.trades_20240809")  # fresh statistics: not analysed again
        assert (
            c.execute(
                "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'trades_20240809'"
            ).fetchone()
            == first
        )
