"""The archive on a disk: exact round trip, atomic publish, verified drops, one history for every analysis.

Real PostgreSQL (fresh database per test), real files in tmp dirs; nothing is mocked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from cryptolab import analysis as an
from cryptolab.archive import (
    ArchiveError,
    archive,
    attach,
    day_path,
    detach,
    open_store,
    read_archived_trades,
)
from cryptolab.model import Trade
from cryptolab.storage import db
from cryptolab.storage.parquet.layout import contract_schema
from tests.analysis.test_data import END, MARKET, OTHER, START, SYMBOL, write_market

UTC = timezone.utc
TODAY = date(2024, 8, 10)
DAY1, DAY2 = date(2024, 8, 8), date(2024, 8, 9)
ALL_COLUMNS = ("exchange", "symbol", "trade_id", "trade_time", "price", "qty", "quote_qty", "is_buyer_maker",
               "event_time", "received_at", "ingested_at", "source")


def _partitions(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as c:
        return {
            r[0]
            for r in c.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'trades'::regclass"
            )
        }


ODD = [  # (price, qty): display scales 0…8, the widest values the contract holds, the smallest lot
    (Decimal("60000.00000000"), Decimal("0.00000001")),
    (Decimal("1"), Decimal("12345678.12345678")),
    (Decimal("9999990000.12345678"), Decimal("0.5")),
    (Decimal("0.00000001"), Decimal("1000000000")),
    (Decimal("123.4"), Decimal("7.25")),
    (Decimal("0.5"), Decimal("99999999999.99999999")),
]


def _odd_trades(day: date, n: int = 400, symbol: str = "ODDUSDT") -> list[Trade]:
    first_id = 10_000 + (day - date(2024, 1, 1)).days * 100_000  # ids grow day by day, as on an exchange
    base = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000
    out = []
    for i in range(n):
        p, q = ODD[i % len(ODD)]
        t = base + i * 200_000_003 % 86_400_000_000  # spread over the day, µs precision
        out.append(
            Trade(
                "binance",
                symbol,
                first_id + i,
                p + i,
                q,
                i % 3 == 0,
                t,
                t + 7 if i % 4 else None,
                t + 11 if i % 5 else None,
                "backfill" if i % 2 else "live",
            )
        )
    return out


def _write(dsn: str, trades: list[Trade]) -> None:
    from cryptolab.storage.writer import TradeWriter

    with db.connect(dsn) as c:
        TradeWriter(c).write(trades)


def test_round_trip_is_exact_to_the_digit_and_microsecond(dsn: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    _write(dsn, _odd_trades(DAY1))
    rep = archive(to=str(tmp_path / "a"), today=TODAY)
    assert [(r.symbol, r.day, r.status) for r in rep.exported] == [("ODDUSDT", DAY1, "exported")]
    path = tmp_path / "a" / day_path("binance", "ODDUSDT", DAY1)
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == contract_schema()  # one schema for every file of the dataset
    assert table.column("trade_id").to_pylist() == sorted(table.column("trade_id").to_pylist())
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    with psycopg.connect(dsn) as c:
        rows = c.execute(
            "SELECT trade_id, price, qty, quote_qty, trade_time, event_time, received_at, "
            "is_buyer_maker, source FROM trades ORDER BY trade_id"
        ).fetchall()
    got = list(
        zip(
            *(
                table.column(n).to_pylist()
                for n in (
                    "trade_id",
                    "price",
                    "qty",
                    "quote_qty",
                    "trade_time",
                    "event_time",
                    "received_at",
                    "is_buyer_maker",
                    "source",
                )
            )
        )
    )
    assert len(got) == len(rows) == 400
    for g, r in zip(got, rows):
        assert g == r  # Decimal equality (value-exact), datetimes to the µs, nulls kept
    # cryptolab reads the display scale back too: a day in the database and in the archive give the same frame
    assert rep.exported[0].stats.sum_quote == sum((r[1] * r[2] for r in rows), Decimal(0))


def test_duckdb_reads_the_archive_with_exact_counts_and_sums(dsn: str, tmp_path: Path) -> None:
    import duckdb

    _write(dsn, _odd_trades(DAY1) + _odd_trades(DAY2, 250))
    root = tmp_path / "a"
    archive(to=str(root), today=TODAY)
    got = duckdb.sql(
        f"SELECT symbol, date, count(*), min(trade_id), max(trade_id), sum(qty), sum(quote_qty) "
        f"FROM read_parquet('{root}/trades/**/*.parquet', hive_partitioning = true) "
        "GROUP BY ALL ORDER BY date"
    ).fetchall()
    with psycopg.connect(dsn) as c:
        want = c.execute(
            "SELECT symbol, (trade_time AT TIME ZONE 'UTC')::date, count(*), min(trade_id), "
            "max(trade_id), sum(qty), sum(price * qty) FROM trades GROUP BY 1, 2 ORDER BY 2"
        ).fetchall()
    assert [(s, d, n, a, b) for s, d, n, a, b, _, _ in got] == [
        (s, d, n, a, b) for s, d, n, a, b, _, _ in want
    ]
    for g, w in zip(got, want):
        assert Decimal(str(g[5])) == w[5] and Decimal(str(g[6])) == w[6]
    # polars and pyarrow, as docs/archive.md shows
    lf = pl.scan_parquet(f"{root}/trades/**/*.parquet", hive_partitioning=True)
    assert lf.select(pl.len()).collect().item() == 650
    import pyarrow.dataset as pads

    assert pads.dataset(root / "trades", format="parquet", partitioning="hive").count_rows() == 650


# ------------------------------------------------------------------ atomic publish, faults
def test_a_crash_leaves_nothing_visible_and_a_rerun_finishes(dsn: str, tmp_path: Path) -> None:
    _write(dsn, _odd_trades(DAY1))
    root = tmp_path / "a"
    # what a crash mid-write leaves: a partial file under .staging, never under trades/
    (root / ".staging").mkdir(parents=True)
    (root / ".staging" / "deadbeef-trades-ODDUSDT-2024-08-08.parquet").write_bytes(b"PAR1 partial")
    assert not list((root).glob("trades/**/*.parquet"))
    rep = archive(to=str(root), today=TODAY, drop=True)
    assert rep.cleaned == 1 and not list((root / ".staging").iterdir())
    assert rep.dropped == [DAY1]
    # a crash after publishing but before bookkeeping: the file is found identical and recorded
    _write(dsn, _odd_trades(DAY2, 50))
    archive(to=str(root), today=TODAY)
    with psycopg.connect(dsn) as c:
        c.execute("DELETE FROM archive_days WHERE day = %s", (DAY2,))
    rep = archive(to=str(root), today=TODAY, drop=True)
    assert [(r.day, r.status) for r in rep.exported] == [(DAY2, "present")] and rep.dropped == [DAY2]


def test_a_killed_export_is_finished_by_the_next_run(dsn: str, tmp_path: Path) -> None:
    """SIGKILL a real `cryptolab archive` while it works; the re-run completes, nothing half-visible."""
    import signal
    import time

    _write(dsn, [t for d in range(8) for t in _odd_trades(DAY1 - timedelta(days=d), 3000)])
    root = tmp_path / "a"
    env = {**os.environ, "CRYPTOLAB_DSN": dsn}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cryptolab", "archive", "--to", str(root), "--before", "2024-08-09"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # one day published
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "ODDUSDT" in first
    published = list(root.glob("trades/**/*.parquet"))
    assert 1 <= len(published) <= 8, (first, proc.stdout.read())
    import pyarrow.parquet as pq

    for f in published:  # whatever is visible is whole
        assert pq.read_metadata(f).num_rows == 3000
    rep = archive(to=str(root), before=DAY2, today=TODAY, drop=True)
    assert len(list(root.glob("trades/**/*.parquet"))) == 8 and len(rep.dropped) == 8
    assert not list((root / ".staging").glob("*")) if (root / ".staging").exists() else True


def test_nothing_is_dropped_when_the_archive_and_database_disagree(dsn: str, tmp_path: Path) -> None:
    _write(dsn, _odd_trades(DAY1))
    root = tmp_path / "a"
    archive(to=str(root), today=TODAY)
    with psycopg.connect(dsn) as c:  # the database changes after the export (a late correction)
        c.execute("UPDATE trades SET qty = qty + 1 WHERE trade_id = (SELECT min(trade_id) + 4 FROM trades)")
    with pytest.raises(ArchiveError, match="does not match the database.*Σqty.*nothing deleted"):
        archive(to=str(root), today=TODAY, drop=True)
    assert "trades_20240808" in _partitions(dsn)
    with pytest.raises(ArchiveError, match="already archived.*different content.*nothing was deleted"):
        _export_again(dsn, root)
    assert "trades_20240808" in _partitions(dsn)
    rep = archive(to=str(root), today=TODAY, drop=True, replace=True)  # rewrite from the database, then drop
    assert [r.status for r in rep.exported] == ["replaced"] and rep.dropped == [DAY1]
    assert "trades_20240808" not in _partitions(dsn)


def _export_again(dsn: str, root: Path) -> None:
    from cryptolab.archive.export import export_day

    with db.connect(dsn, autocommit=True) as c:
        export_day(c, open_store(str(root)), "binance", "ODDUSDT", DAY1)


def test_a_damaged_file_stops_the_drop(dsn: str, tmp_path: Path) -> None:
    _write(dsn, _odd_trades(DAY1))
    root = tmp_path / "a"
    archive(to=str(root), today=TODAY)
    f = root / day_path("binance", "ODDUSDT", DAY1)
    size = f.stat().st_size
    f.write_bytes(f.read_bytes()[: size // 2])  # truncated behind our back
    rep = archive(to=str(root), today=TODAY, drop=True)
    assert rep.dropped == [] and [why for _g, why in rep.plan.conflicts] == [
        f"{f} is damaged: {size // 2:,} bytes, {size:,} were published; "
        "`cryptolab archive --replace` rewrites it from the database"
    ]
    assert "trades_20240808" in _partitions(dsn)


def test_bad_locations_give_one_clear_line_and_delete_nothing(dsn: str, tmp_path: Path) -> None:
    _write(dsn, _odd_trades(DAY1, 20))
    env = {**os.environ, "CRYPTOLAB_DSN": dsn}
    afile = tmp_path / "file"
    afile.write_text("x")
    for to, words in (
        ("s4://bucket/x", "unknown scheme"),
        ("s3:///nobucket", "no valid bucket"),
        (str(afile), "is a file"),
        ("/proc/no/such/place", "failed"),
    ):
        r = subprocess.run(
            [sys.executable, "-m", "cryptolab", "archive", "--to", to, "--drop"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2, (to, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, (to, r.stderr)
        assert "Traceback" not in r.stderr
    assert "trades_20240808" in _partitions(dsn)


def test_no_space_left_is_one_clear_message(dsn: str, tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    from cryptolab.storage.parquet.store import ArchiveStore

    store = open_store(str(tmp_path / "a"))
    os.makedirs(tmp_path / "a" / ".staging", exist_ok=True)
    os.symlink("/dev/full", tmp_path / "a" / ".staging" / "full.parquet")
    assert isinstance(store, ArchiveStore)
    with pytest.raises(ArchiveError, match="no space left.*nothing was deleted"):
        store.put(".staging/full.parquet", b"x" * 10_000)


# ------------------------------------------------------------------ one history
def _snapshot(dsn: str) -> dict[str, Any]:
    """Every public analysis function on ranges inside and across the two days, both symbols."""
    skip = {
        "INTERVALS",
        "fetch_klines",
        "clock_skew",
        "reconcile_or_skip",
        "stored_symbols",
        "load_trades",
        # the order book's readers: no book data here (archived book days: tests/archive/test_book_readers.py)
        "book_at",
        "book_top",
        "quotes",
        "book_gaps",
        "book_markets",
        "book_stats",
        "trade_costs",
        "effective_spread",
        "quote_stats",
    }
    ranges = [
        (START, END),
        (START + timedelta(minutes=2), START + timedelta(minutes=9)),
        (datetime(2024, 8, 9, 0, 1, tzinfo=UTC), END),
        (datetime(2024, 8, 9, tzinfo=UTC), END),
    ]  # day 2 only, its previous trade on day 1
    out: dict[str, Any] = {}
    c = db.connect(dsn, autocommit=True)  # a reused connection: left as found after each call
    try:
        for name in an.__all__:
            if name in skip:
                continue
            fn = getattr(an, name)
            if fn.__module__.rsplit(".", 1)[-1] in ("futures", "book", "book_stats", "microstructure"):
                continue  # they read futures and book tables, not trades (their archive tests are their own)
            for sym in (SYMBOL, OTHER):
                for i, (a, b) in enumerate(ranges):
                    out[f"{name}/{sym}/{i}"] = fn(sym, a, b, conn=c)
                    assert c.execute("SELECT to_regclass('pg_temp.trades')").fetchone() == (None,), name
        tx = db.connect(dsn)  # a connection with transactions: left idle, as found
        try:
            out["gaps_tx"] = an.gaps(SYMBOL, START, END, conn=tx)
            out["cvd_tx"] = an.cvd(SYMBOL, START, END, "1m", tick_rule=True, conn=tx, as_="pandas").to_dict()
            assert tx.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert tx.execute("SELECT to_regclass('pg_temp.trades')").fetchone() == (None,)
        finally:
            tx.close()
        out["cvd_tick"] = an.cvd(SYMBOL, START, END, "1m", tick_rule=True)
        out["vwap_bands"] = an.vwap(SYMBOL, START, END, "1m", bands=True)
        out["stored_symbols"] = an.stored_symbols()
        for sym in (SYMBOL, OTHER):
            for engine in ("adbc", "copy"):
                out[f"load/{sym}/{engine}"] = an.load_trades(
                    sym, START, END, columns=ALL_COLUMNS, engine=engine
                )
                out[f"load_all/{sym}/{engine}"] = an.load_trades(sym, engine=engine)
                out[f"load_part/{sym}/{engine}"] = an.load_trades(
                    sym, ranges[1][0], ranges[2][0], engine=engine
                )
    finally:
        c.close()
    return out


def _same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys()
    for k in before:
        a, b = before[k], after[k]
        if isinstance(a, pl.DataFrame):
            try:
                assert_frame_equal(a, b, check_exact=True)
            except AssertionError as exc:
                raise AssertionError(f"{k}: {exc}\n{a}\n{b}") from None
        else:
            assert a == b, k


def test_every_analysis_gives_the_same_answer_before_and_after_archive_and_drop(
    dsn: str, tmp_path: Path
) -> None:
    write_market(dsn, MARKET)
    before = _snapshot(dsn)
    assert before[f"load/{SYMBOL}/adbc"].height == len(MARKET.trades(SYMBOL))
    root = tmp_path / "arch"
    rep = archive(to=str(root), before=DAY2, drop=True, today=TODAY)  # day 1 leaves PostgreSQL
    assert rep.dropped == [DAY1] and "trades_20240808" not in _partitions(dsn)
    with psycopg.connect(dsn) as c:
        kept = c.execute(
            "SELECT symbol, check_name, status FROM archive_quality WHERE day = %s ORDER BY 1, 2", (DAY1,)
        ).fetchall()
        assert {s for s, _, _ in kept} == {SYMBOL, OTHER} and ("TESTUSDT", "id gaps") in [
            (s, n) for s, n, _ in kept
        ]
        assert (
            c.execute("SELECT count(*) FROM bars_1s WHERE ts < '2024-08-09'").fetchone()[0] > 0
        )  # bars stay
    _same(before, _snapshot(dsn))  # half from the archive, half from the database
    rep = archive(to=str(root), drop=True, today=TODAY)  # day 2 too
    assert rep.dropped == [DAY2]
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM trades").fetchone() == (0,)
    _same(before, _snapshot(dsn))  # all from the archive


def test_attach_shadows_trades_for_one_session_only(dsn: str, tmp_path: Path) -> None:
    write_market(dsn, MARKET)
    archive(to=str(tmp_path / "a"), drop=True, today=TODAY)
    with db.connect(dsn, autocommit=True) as c, db.connect(dsn, autocommit=True) as other:
        assert attach(c, "binance", SYMBOL, START, END)
        n = c.execute("SELECT count(*) FROM trades").fetchone()
        assert n == (len(MARKET.trades(SYMBOL)),)
        assert other.execute("SELECT count(*) FROM trades").fetchone() == (0,)
        detach(c)
        assert c.execute("SELECT count(*) FROM trades").fetchone() == (0,)
    frame = read_archived_trades("binance", SYMBOL, START, END)
    assert frame.height == len(MARKET.trades(SYMBOL))
    assert frame["price"].to_list() == [t.price for t in MARKET.trades(SYMBOL)]


def test_cli_dry_run_then_retention(dsn: str, tmp_path: Path) -> None:
    _write(dsn, _odd_trades(DAY1, 30) + _odd_trades(DAY2, 30))
    env = {**os.environ, "CRYPTOLAB_DSN": dsn, "CRYPTOLAB_ARCHIVE": str(tmp_path / "env-archive")}
    r = subprocess.run(
        [sys.executable, "-m", "cryptolab", "archive", "--keep-days", "30", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "would export binance ODDUSDT 2024-08-08" in r.stdout and "would drop" in r.stdout
    assert {"trades_20240808", "trades_20240809"} <= _partitions(dsn) and not (
        tmp_path / "env-archive"
    ).exists()
    r = subprocess.run(
        [sys.executable, "-m", "cryptolab", "archive", "--keep-days", "30"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "2 day(s) written (60 rows" in r.stdout and "2 partition(s) dropped" in r.stdout, r.stdout
    assert not {"trades_20240808", "trades_20240809"} & _partitions(dsn)
    assert len(list((tmp_path / "env-archive").glob("trades/**/*.parquet"))) == 2


def test_a_busy_partition_is_not_dropped_and_the_rerun_drops_it(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cryptolab.archive.job as job

    monkeypatch.setattr(job, "_LOCK_WAIT", "300ms")
    _write(dsn, _odd_trades(DAY1, 40))
    root = tmp_path / "a"
    with psycopg.connect(dsn) as reader:  # a long query holds the day's partition
        reader.execute("SELECT count(*) FROM trades_20240808")
        with pytest.raises(ArchiveError, match="busy.*nothing deleted"):
            archive(to=str(root), today=TODAY, drop=True)
        assert "trades_20240808" in _partitions(dsn)
        with psycopg.connect(dsn) as c:
            assert c.execute("SELECT count(*) FROM archive_days WHERE dropped_at IS NOT NULL").fetchone() == (
                0,
            )
        reader.rollback()
    assert archive(to=str(root), today=TODAY, drop=True).dropped == [DAY1]


def test_a_missing_archived_file_is_an_error_not_a_shorter_answer(dsn: str, tmp_path: Path) -> None:
    write_market(dsn, MARKET)
    root = tmp_path / "a"
    archive(to=str(root), before=DAY2, drop=True, today=TODAY)
    moved = tmp_path / "moved"
    (root / "trades").rename(moved)
    with pytest.raises(ArchiveError, match="file is missing: restore it"):
        an.load_trades(SYMBOL, START, END)
    with pytest.raises(ArchiveError, match="file is missing"):
        an.gaps(SYMBOL, START, END)
    assert an.ohlcv(SYMBOL, START, END, "1m").height == 15  # bars need no archive
    moved.rename(root / "trades")
    assert an.load_trades(SYMBOL, START, END).height == len(MARKET.trades(SYMBOL))


def test_late_rows_for_a_dropped_day_are_seen_once_and_reported(dsn: str, tmp_path: Path) -> None:
    trades = _odd_trades(DAY1, 50)
    _write(dsn, trades)
    root = tmp_path / "a"
    archive(to=str(root), today=TODAY, drop=True)
    new = trades[-1]._replace(trade_id=trades[-1].trade_id + 1, trade_time_us=trades[-1].trade_time_us + 5)
    _write(dsn, trades[10:12] + [new])  # two repeats of archived trades and one new: the partition comes back
    frame = an.load_trades("ODDUSDT", DAY1, DAY2, columns=ALL_COLUMNS)
    assert frame.height == 51 and frame["trade_id"].is_unique().all() and frame["trade_id"].is_sorted()
    t0, t1 = (datetime(d.year, d.month, d.day, tzinfo=UTC) for d in (DAY1, DAY2))
    with db.connect(dsn, autocommit=True) as c:
        assert attach(c, "binance", "ODDUSDT", t0, t1)
        assert c.execute("SELECT count(*), count(DISTINCT trade_id) FROM trades").fetchone() == (51, 51)
        detach(c)
    assert an.source_counts("ODDUSDT", t0, t1)["trades"].sum() == 51
    rep = archive(to=str(root), today=TODAY, drop=True)
    assert rep.plan.conflicts and rep.dropped == [] and "trades_20240808" in _partitions(dsn)


def test_the_documented_first_name_of_read_archived_trades_still_imports() -> None:
    from cryptolab.archive import read_trades

    assert read_trades is read_archived_trades
