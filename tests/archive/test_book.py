"""Book days in the archive: exported with the trade days, verified before the drop, read back exactly."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest

from cryptolab.archive import ArchiveError, archive, read_book_diffs, read_book_snapshots, read_quotes
from cryptolab.book import BookSnapshot, DepthDiff, Quote
from cryptolab.cli import main as cli
from cryptolab.storage.parquet.book import KINDS, book_path, parse_book_path
from tests.archive.test_s3 import s3, s3_endpoint  # noqa: F401  (fixtures)
from tests.history.recording_gen import SYMBOL, make_recording

TODAY = date(2024, 8, 10)
DAY1, DAY2 = date(2024, 8, 8), date(2024, 8, 9)
T0, T1 = datetime(2024, 8, 8, tzinfo=timezone.utc), datetime(2024, 8, 10, tzinfo=timezone.utc)
TABLES = ("book_diffs", "quotes", "book_snapshots", "book_gaps")


def load(dsn: str, tmp_path: Path) -> None:
    """A spot recording across midnight with a gap healed by a second snapshot, loaded by `cryptolab load`."""
    rec = make_recording(300, seed=21, drop_at=100, heal_after=10, step_us=500_000)
    path = tmp_path / "rec.txt"
    path.write_text("\n".join(rec.lines) + "\n")
    assert cli.main(["load", str(path), "--no-progress"]) == 0


def stored(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every book row as the database gives it (exact Decimal arrays), in id order."""
    with psycopg.connect(dsn) as c:
        return {
            "book_diffs": c.execute(
                "SELECT exchange, symbol, first_update_id, last_update_id, prev_update_id, event_time, "
                "received_at, bid_price, bid_qty, ask_price, ask_qty, source FROM book_diffs ORDER BY "
                "last_update_id"
            ).fetchall(),
            "quotes": c.execute(
                "SELECT exchange, symbol, update_id, received_at, event_time, bid_price, bid_qty, "
                "ask_price, ask_qty, source FROM quotes ORDER BY update_id"
            ).fetchall(),
            "book_snapshots": c.execute(
                "SELECT exchange, symbol, last_update_id, received_at, event_time, bid_price, bid_qty, "
                "ask_price, ask_qty, source FROM book_snapshots ORDER BY last_update_id"
            ).fetchall(),
            "book_gaps": c.execute(
                "SELECT exchange, symbol, reason, after_update_id FROM book_gaps"
            ).fetchall(),
        }


def text_rows(dsn: str) -> tuple[list[DepthDiff], list[Quote], list[BookSnapshot]]:
    """The stored diffs, quotes and snapshots as the book's own rows, with PostgreSQL's exact text."""

    def us(col: str) -> str:
        return f"(extract(epoch FROM {col}) * 1000000)::bigint"

    with psycopg.connect(dsn) as c:
        diffs = [
            DepthDiff(
                r[0], r[1], r[2], r[3], r[5], list(zip(r[7], r[8])), list(zip(r[9], r[10])), r[6], r[4], r[11]
            )
            for r in c.execute(
                f"SELECT exchange, symbol, first_update_id, last_update_id, prev_update_id, "
                f"{us('event_time')}, {us('received_at')}, bid_price::text[], bid_qty::text[], "
                "ask_price::text[], ask_qty::text[], source FROM book_diffs "
                "ORDER BY last_update_id"
            )
        ]
        quotes = [
            Quote(*r)
            for r in c.execute(
                "SELECT exchange, symbol, update_id, bid_price::text, bid_qty::text, ask_price::text, "
                f"ask_qty::text, {us('received_at')}, {us('event_time')}, source FROM quotes ORDER BY "
                "update_id"
            )
        ]
        snaps = [
            BookSnapshot(r[0], r[1], r[2], list(zip(r[3], r[4])), list(zip(r[5], r[6])), r[7], r[8], r[9])
            for r in c.execute(
                f"SELECT exchange, symbol, last_update_id, bid_price::text[], bid_qty::text[], "
                f"ask_price::text[], ask_qty::text[], {us('received_at')}, {us('event_time')}, "
                "source FROM book_snapshots ORDER BY last_update_id"
            )
        ]
    return diffs, quotes, snaps


def book_partitions(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as c:
        return {
            r[0]
            for r in c.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent IN ('book_diffs'::regclass, 'quotes'::regclass, 'book_tops'::regclass)"
            )
        }


def frame_rows(frame: pl.DataFrame) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in frame.iter_rows()]


def test_book_days_are_archived_verified_dropped_and_read_back_exactly(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(dsn, tmp_path)
    before = stored(dsn)
    diffs, quotes, snaps = text_rows(dsn)
    assert len(before["book_snapshots"]) == 2 and len(before["book_gaps"]) == 1
    assert {r[5].date() for r in before["book_diffs"]} == {DAY1, DAY2}
    root = tmp_path / "archive"
    # 1. archive without dropping: every book table's closed days are files, recorded, in the manifest
    rep = archive(to=str(root), today=TODAY)
    assert rep.book is not None and {(e.kind, e.status) for e in rep.book.exported} == {
        (k, "exported") for k in TABLES
    }
    with psycopg.connect(dsn) as c:
        recorded = c.execute("SELECT kind, day, rows FROM archive_book_days ORDER BY kind, day").fetchall()
    by_kind_day = {(k, d): n for k, d, n in recorded}
    assert sum(n for (k, _), n in by_kind_day.items() if k == "book_diffs") == len(before["book_diffs"])
    assert sum(n for (k, _), n in by_kind_day.items() if k == "quotes") == len(before["quotes"])
    for kind, day in by_kind_day:
        assert (root / book_path(kind, "binance", SYMBOL, day)).is_file()
        assert parse_book_path(book_path(kind, "binance", SYMBOL, day)) == (kind, "binance", SYMBOL, day)
    manifest = json.loads((root / "manifest.json").read_text())
    assert {d["table"] for d in manifest["book_days"]} == set(TABLES)
    assert manifest["tables"]["book_diffs"]["columns"][5]["arrow"] == "list<string>"
    assert read_book_diffs("binance", SYMBOL, T0, T1) is None  # nothing dropped yet: the database has it all
    assert stored(dsn) == before
    # the loader stored the book's top after every diff too (derived: it goes with its day's diffs)
    assert {p for p in book_partitions(dsn) if p.startswith("book_tops_")} == {
        f"book_tops_{d:%Y%m%d}" for d in (DAY1, DAY2)
    }
    # 2. again with --drop: nothing re-written, the partitions and the snapshot rows go, the gaps stay
    rep = archive(to=str(root), today=TODAY, drop=True)
    assert rep.book is not None and not [e for e in rep.book.exported if e.status != "present"]
    assert sorted(rep.book.dropped) == sorted(
        [
            (k, d)
            for k in ("book_diffs", "quotes", "book_snapshots")
            for d in (DAY1, DAY2)
            if (k, d) in by_kind_day
        ]
    )
    assert book_partitions(dsn) == set()
    after = stored(dsn)
    assert (
        after["book_diffs"] == after["quotes"] == after["book_snapshots"] == []
        and after["book_gaps"] == before["book_gaps"]
    )
    # 3. read back: the same rows, to the digit (frames) and to the character (rows)
    frame = read_book_diffs("binance", SYMBOL, T0, T1)
    assert frame is not None and frame.columns == ["exchange", "symbol", *KINDS["book_diffs"].names]
    assert frame_rows(frame) == before["book_diffs"]
    assert frame.schema["bid_price"] == pl.List(pl.Decimal(38, 8))
    assert frame_rows(read_quotes("binance", SYMBOL, T0, T1)) == before["quotes"]
    assert frame_rows(read_book_snapshots("binance", SYMBOL)) == before["book_snapshots"]
    assert read_book_diffs("binance", SYMBOL, T0, T1, rows=True) == diffs
    assert read_quotes("binance", SYMBOL, rows=True) == quotes
    assert read_book_snapshots("binance", SYMBOL, rows=True) == snaps
    # a range inside one day reads only its rows
    noon = datetime(2024, 8, 9, 0, 0, 30, tzinfo=timezone.utc)
    part = read_book_diffs("binance", SYMBOL, noon, T1, rows=True)
    assert part == [d for d in diffs if d.event_time_us >= int(noon.timestamp() * 1e6)] and 0 < len(
        part
    ) < len(diffs)
    price = next(d.bids[0][0] for d in part if d.bids)
    assert isinstance(price, str) and Decimal(price).as_tuple().exponent == -8
    # loading the recording again stores nothing of the archived days (they live in the archive)
    capsys.readouterr()
    load(dsn, tmp_path)
    assert "book rows of days archived and dropped not stored again" in capsys.readouterr().out
    assert stored(dsn) == after and book_partitions(dsn) == set()


def test_a_damaged_book_file_is_caught_before_the_drop_and_on_every_read(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(dsn, tmp_path)
    before = stored(dsn)
    root = tmp_path / "archive"
    archive(to=str(root), today=TODAY)
    victim = root / book_path("book_diffs", "binance", SYMBOL, DAY2)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40  # one flipped bit, same size
    victim.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="damaged") as err:
        archive(to=str(root), today=TODAY, drop=True)
    assert str(victim) in str(err.value) and "nothing deleted" in str(err.value)
    day2 = [r for r in before["book_diffs"] if r[5].date() == DAY2]
    assert stored(dsn)["book_diffs"] == day2 and day2  # the good day went, the damaged day's rows stay
    assert cli.main(["archive", "--verify", "--to", str(root)]) == 1
    assert str(victim) in capsys.readouterr().err
    # rewritten from the database, then dropped; a file damaged after the drop is named on read
    archive(to=str(root), today=TODAY, replace=True)
    archive(to=str(root), today=TODAY, drop=True)
    assert stored(dsn)["book_diffs"] == []
    data = bytearray(victim.read_bytes())
    data[100] ^= 0x01
    victim.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="damaged") as err:
        read_book_diffs("binance", SYMBOL, T0, T1)
    assert str(victim) in str(err.value)
    assert read_quotes("binance", SYMBOL, T0, T1) is not None  # the other tables' files are fine


def test_book_days_go_to_s3_and_come_back(
    dsn: str, tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    load(dsn, tmp_path)
    before = stored(dsn)
    url = f"s3://{s3.bucket}/lab"
    capsys.readouterr()
    assert cli.main(["archive", "--to", url, "--drop"]) == 0  # today is long after 2024: every day is closed
    out = capsys.readouterr().out
    assert "book days: 6 file(s) written" in out and "5 day(s) dropped" in out  # gaps: copied, never dropped
    assert book_partitions(dsn) == set()
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3.bucket)["Contents"]}
    assert f"lab/{book_path('quotes', 'binance', SYMBOL, DAY1)}" in keys
    assert frame_rows(read_book_diffs("binance", SYMBOL)) == before["book_diffs"]
    assert frame_rows(read_quotes("binance", SYMBOL)) == before["quotes"]
    assert cli.main(["archive", "--verify", "--to", url]) == 0


def test_a_dry_run_names_the_book_days_it_would_archive_and_drop(dsn: str, tmp_path: Path) -> None:
    load(dsn, tmp_path)
    said: list[str] = []
    archive(to=str(tmp_path / "archive"), today=TODAY, drop=True, dry_run=True, say=said.append)
    assert f"would export book_diffs of binance {SYMBOL} {DAY1}" in said
    assert f"would drop quotes of {DAY2} after verification" in said
    assert not any("would drop book_gaps" in line for line in said)  # gaps stay in PostgreSQL
    assert not (tmp_path / "archive" / "book_diffs").exists() and book_partitions(dsn)
