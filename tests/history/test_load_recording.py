"""`cryptolab load` of raw stream recordings with depth and bookTicker: the stored book is the
recorded one."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cryptolab.book import BookSnapshot, BookSync, DepthDiff, DiffResult
from cryptolab.cli import main as cli
from tests.history.recording_gen import SYMBOL, Recording, make_recording


def write(rec: Recording, tmp_path: Path, split: int) -> tuple[Path, Path]:
    """The recording as two files split at a line, like a recorder's midnight split: gz, then plain."""
    a, b = tmp_path / "rec_1.gz", tmp_path / "rec_2.txt"
    with gzip.open(a, "wt") as fh:
        fh.write("\n".join(rec.lines[:split]) + "\n")
    b.write_text("\n".join(rec.lines[split:]) + "\n")
    return a, b


def replay_from_storage(dsn: str, exchange: str, rec: Recording) -> tuple[int, BookSync]:
    """Rebuild the book from the stored snapshots and diffs alone, checking its top at every update id."""
    with psycopg.connect(dsn) as c:
        snaps = c.execute(
            "SELECT last_update_id, bid_price::text[], bid_qty::text[], ask_price::text[], ask_qty::text[], "
            "(extract(epoch FROM received_at) * 1e6)::bigint FROM book_snapshots "
            "WHERE exchange = %s AND symbol = %s",
            (exchange, SYMBOL),
        ).fetchall()
        diffs = c.execute(
            "SELECT first_update_id, last_update_id, prev_update_id, bid_price::text[], bid_qty::text[], "
            "ask_price::text[], ask_qty::text[], (extract(epoch FROM received_at) * 1e6)::bigint, "
            "(extract(epoch FROM event_time) * 1e6)::bigint FROM book_diffs "
            "WHERE exchange = %s AND symbol = %s",
            (exchange, SYMBOL),
        ).fetchall()
    rows: list[tuple[int, int, Any]] = []
    for s in snaps:
        rows.append(
            (
                s[5],
                1,
                BookSnapshot(exchange, SYMBOL, s[0], list(zip(s[1], s[2])), list(zip(s[3], s[4])), s[5]),
            )
        )
    for d in diffs:
        rows.append(
            (
                d[7],
                0,
                DepthDiff(
                    exchange,
                    SYMBOL,
                    d[0],
                    d[1],
                    d[8],
                    list(zip(d[3], d[4])),
                    list(zip(d[5], d[6])),
                    d[7],
                    d[2],
                ),
            )
        )
    sync = BookSync(exchange, SYMBOL, futures=exchange == "binance-usdm")
    checked = 0
    for t, _, row in sorted(rows, key=lambda r: (r[0], r[1])):
        if isinstance(row, BookSnapshot):
            sync.on_snapshot(row, t)
        elif sync.on_diff(row, t) is DiffResult.APPLIED:
            assert (sync.book.best_bid(), sync.book.best_ask()) == rec.tops[row.last_id], row.last_id
            checked += 1
    return checked, sync


def counts(dsn: str) -> tuple[int, ...]:
    with psycopg.connect(dsn) as c:
        row = c.execute(
            "SELECT (SELECT count(*) FROM trades), (SELECT count(*) FROM book_diffs), "
            "(SELECT count(*) FROM quotes), (SELECT count(*) FROM book_snapshots), "
            "(SELECT count(*) FROM book_gaps), (SELECT count(*) FROM dead_letters)"
        ).fetchone()
    assert row is not None
    return tuple(int(x) for x in row)


def test_a_spot_recording_in_two_files_loads_to_the_book_it_recorded_once(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = make_recording(300, seed=11)
    a, b = write(rec, tmp_path, len(rec.lines) // 2)
    assert cli.main(["load", str(b), str(a), "--no-progress"]) == 0  # any order: one recording
    out = capsys.readouterr().out
    assert f"loaded {rec.trades:,} trades from 2 file(s): {rec.trades:,} new" in out
    assert (
        f"recording (binance, 2 file(s)): {rec.diffs:,} depth diffs ({rec.diffs:,} new) carrying "
        f"{rec.level_updates:,} level updates, {rec.quotes:,} quotes ({rec.quotes:,} new), 1 snapshots, "
        "0 book gaps (0 healed), 0 dead letters"
    ) in out
    # the diffs buffered before the snapshot are the normal start, not a gap
    assert counts(dsn) == (rec.trades, rec.diffs, rec.quotes, 1, 0, 0)
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT DISTINCT source, exchange FROM book_diffs").fetchall() == [
            ("replay", "binance")
        ]
        assert c.execute("SELECT DISTINCT source FROM trades").fetchall() == [("replay",)]
        days = c.execute("SELECT count(DISTINCT event_time::date) FROM book_diffs").fetchone()
    assert days == (2,)  # across midnight: two day partitions
    checked, sync = replay_from_storage(dsn, "binance", rec)
    assert checked == rec.diffs - 4  # every diff after the snapshot's (3 buffered + the one it ends)
    for side in ("bid", "ask"):
        assert sync.book.levels(side) == rec.final.levels(side)
    # again: nothing is stored twice
    assert cli.main(["load", str(a), str(b), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"{rec.trades:,} already stored" in out and f"({0:,} new) carrying" in out
    assert counts(dsn) == (rec.trades, rec.diffs, rec.quotes, 1, 0, 0)


def test_a_futures_recording_records_its_gap_healed_and_its_bad_lines_as_dead_letters(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = make_recording(200, futures=True, seed=5, drop_at=80, heal_after=15, bad_lines=True)
    a, b = write(rec, tmp_path, len(rec.lines) // 3)
    assert cli.main(["load", str(a), str(b), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "recording (binance-usdm, 2 file(s))" in out and "2 dead letters" in out and "2 snapshots" in out
    assert "1 book gaps (1 healed)" in out
    assert counts(dsn) == (rec.trades, rec.diffs, rec.quotes, 2, 1, 2)
    [(after, before)] = rec.dropped
    with psycopg.connect(dsn) as c:
        gap = c.execute(
            "SELECT exchange, reason, after_update_id, before_update_id, snapshot_update_id IS NOT NULL, "
            "healed_at >= detected_at FROM book_gaps"
        ).fetchone()
        dead = c.execute("SELECT exchange, source, reason FROM dead_letters ORDER BY id").fetchall()
    assert gap is not None and gap[:4] == ("binance-usdm", "gap", after, before) and gap[4] and gap[5]
    assert [d[:2] for d in dead] == [("binance-usdm", "replay")] * 2
    assert "bad bid level" in dead[0][2] and "invalid JSON" in dead[1][2]
    checked, sync = replay_from_storage(dsn, "binance-usdm", rec)
    assert checked > rec.diffs // 2
    for side in ("bid", "ask"):
        assert sync.book.levels(side) == rec.final.levels(side)
    # loading it again adds nothing: not a trade, a diff, a gap nor a dead letter
    assert cli.main(["load", str(b), str(a), "--no-progress"]) == 0
    assert counts(dsn) == (rec.trades, rec.diffs, rec.quotes, 2, 1, 2)


def test_the_market_flag_names_the_exchange_of_a_recording(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = make_recording(40, futures=True, seed=3)
    path = tmp_path / "rec.txt"
    path.write_text("\n".join(rec.lines) + "\n")
    assert (
        cli.main(["load", str(path), "--market", "spot", "--no-progress"]) == 0
    )  # what the frames say is overruled
    assert "recording (binance, 1 file(s))" in capsys.readouterr().out
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT DISTINCT exchange FROM quotes").fetchall() == [("binance",)]


def test_a_damaged_file_of_a_recording_stores_nothing_of_it_and_keeps_the_files_before(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = make_recording(200, seed=4)
    a, b = write(rec, tmp_path, len(rec.lines) // 2)
    whole = gzip.compress(b.read_bytes())
    cut = tmp_path / "rec_2.gz"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    assert cli.main(["load", str(a), str(cut), "--batch", "50", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "rec_2.gz" in err and "truncated" in err
    assert "nothing of this file was stored; the 1 file(s) before it were loaded" in err
    first = make_recording(200, seed=4)  # the same lines: what the first file holds
    with psycopg.connect(dsn) as c:
        (last,) = c.execute("SELECT max(last_update_id) FROM book_diffs").fetchone()
        (n,) = c.execute("SELECT count(*) FROM book_diffs").fetchone()
    in_first = [line for line in first.lines[: len(first.lines) // 2] if "depthUpdate" in line]
    assert n == len(in_first) and last == json.loads(in_first[-1].split(" ", 1)[1])["data"]["u"]
