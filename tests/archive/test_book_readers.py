"""The book readers answer the same before and after a book day is archived and dropped."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest

from cryptolab import analysis as an
from cryptolab.analysis.book import BookBreakError
from cryptolab.analysis.book_archive import first_archived_before
from cryptolab.analysis.book_synth import synthetic_book
from cryptolab.archive import archive
from cryptolab.book import BookGap, BookSnapshot, DepthDiff
from cryptolab.model import Trade
from cryptolab.storage.book import BookWriter
from cryptolab.storage.parquet.book_session import detach_book
from cryptolab.storage.writer import TradeWriter

EX, SYM = "binance", "BTCUSDT"
DAY1, DAY2, TODAY = date(2024, 8, 8), date(2024, 8, 9), date(2024, 8, 11)


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=timezone.utc)  # type: ignore[misc]


def us(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000


MIDNIGHT = utc(2024, 8, 9)


def store_two_days(conn: psycopg.Connection) -> dict[str, Any]:
    """A book from 23:40 on day 1 to 00:20 on day 2 (one snapshot, on day 1; diffs lost at 00:05),
    then a second book healed by a snapshot on day 2 (00:30–00:40) and a third (02:00–02:05); quotes
    with every diff."""
    a = list(
        synthetic_book(
            EX,
            SYM,
            us(utc(2024, 8, 8, 23, 40)),
            us(utc(2024, 8, 9, 0, 20)),
            every_us=1_000_000,
            levels=12,
            snapshot_levels=60,
            seed=11,
            source="live",
        )
    )
    a_diffs = [r for r in a if type(r) is DepthDiff]
    b = list(
        synthetic_book(
            EX,
            SYM,
            us(utc(2024, 8, 9, 0, 30)),
            us(utc(2024, 8, 9, 0, 40)),
            every_us=1_000_000,
            levels=12,
            snapshot_levels=60,
            seed=12,
            first_id=a_diffs[-1].last_id + 5_000,
            source="live",
        )
    )
    b_snap = next(r for r in b if type(r) is BookSnapshot)
    b_diffs = [r for r in b if type(r) is DepthDiff]
    c = list(
        synthetic_book(
            EX,
            SYM,
            us(utc(2024, 8, 9, 2)),
            us(utc(2024, 8, 9, 2, 5)),
            every_us=1_000_000,
            levels=12,
            snapshot_levels=60,
            seed=13,
            first_id=b_diffs[-1].last_id + 5_000,
            source="live",
        )
    )
    c_snap = next(r for r in c if type(r) is BookSnapshot)
    c_diffs = [r for r in c if type(r) is DepthDiff]
    w = BookWriter(conn)
    lost = a_diffs[1500:1505]  # 00:05 on day 2: the book breaks until the snapshot of the second book
    w.store([r for r in a + b + c if r not in lost])
    w.store(
        [
            BookGap(
                EX,
                SYM,
                "gap",
                a_diffs[1499].last_id,
                a_diffs[1505].first_id,
                a_diffs[1505].event_time_us,
                b_snap.last_update_id,
                b_snap.received_at_us,
            ),
            BookGap(
                EX,
                SYM,
                "restart",
                a_diffs[-1].last_id,
                b_diffs[0].first_id,
                b_diffs[0].event_time_us,
                b_snap.last_update_id,
                b_snap.received_at_us,
            ),
            BookGap(
                EX,
                SYM,
                "restart",
                b_diffs[-1].last_id,
                c_diffs[0].first_id,
                c_diffs[0].event_time_us,
                c_snap.last_update_id,
                c_snap.received_at_us,
            ),
        ]
    )
    # trades every 3 s through the first book (they are archived and dropped with their days too)
    t_start = us(utc(2024, 8, 8, 23, 40, 1))
    TradeWriter(conn).write(
        [
            Trade(
                EX,
                SYM,
                n,
                Decimal("61800.00") + Decimal(n % 7) / 100,
                Decimal("0.0015") * (n % 5 + 1),
                n % 2 == 0,
                t_start + 3_000_000 * n,
                None,
                t_start + 3_000_000 * n + 4_000,
            )
            for n in range(1, 790)
        ]
    )
    conn.commit()
    a_snap = next(r for r in a if type(r) is BookSnapshot)
    return {"a_snap": a_snap, "a_diffs": a_diffs, "b_snap": b_snap, "b_diffs": b_diffs}


def answers(book: dict[str, Any], conn: psycopg.Connection | None = None) -> dict[str, Any]:
    """Every reader's answer over the two days (frames, or the error's message)."""
    a, b = book["a_diffs"], book["b_diffs"]
    calls: dict[str, Callable[[], Any]] = {}
    ids = [
        book["a_snap"].last_update_id,
        a[0].last_id,
        a[1000].first_id,
        a[1199].last_id,
        a[1200].last_id,
        a[-1].last_id,
        book["b_snap"].last_update_id,
        b[3].last_id,
        b[-1].last_id,
    ]
    for i in ids:
        calls[f"book_at {i}"] = lambda i=i: an.book_at(SYM, i, depth=25, conn=conn)
    for t in (
        utc(2024, 8, 8, 23, 59, 59),
        MIDNIGHT,
        utc(2024, 8, 9, 0, 0, 0, 500_000),
        utc(2024, 8, 9, 0, 35),
        utc(2024, 8, 9, 12),
    ):
        calls[f"book_at {t}"] = lambda t=t: an.book_at(SYM, t, depth=25, conn=conn)
    calls["book_at newest"] = lambda: an.book_at(SYM, conn=conn)
    calls["book_at in the gap"] = lambda: an.book_at(SYM, a[1600].last_id, conn=conn)
    calls["book_at before the first snapshot"] = lambda: an.book_at(
        SYM, book["a_snap"].last_update_id - 1, conn=conn
    )
    ranges = [
        (utc(2024, 8, 8, 23), utc(2024, 8, 9, 1)),
        (MIDNIGHT, utc(2024, 8, 9, 0, 10)),
        (utc(2024, 8, 8, 23, 50), utc(2024, 8, 9, 0, 5)),
        (utc(2024, 8, 9, 0, 15), utc(2024, 8, 9, 0, 35)),
    ]
    for t0, t1 in ranges:
        calls[f"book_top {t0}"] = lambda t0=t0, t1=t1: an.book_top(SYM, t0, t1, conn=conn)
        calls[f"quotes {t0}"] = lambda t0=t0, t1=t1: an.quotes(SYM, t0, t1, conn=conn)
        calls[f"book_stats {t0}"] = lambda t0=t0, t1=t1: an.book_stats(
            SYM, t0, t1, "1m", depth_bps=(1, 5), conn=conn
        )
        calls[f"quote_stats {t0}"] = lambda t0=t0, t1=t1: an.quote_stats(SYM, t0, t1, "5m", conn=conn)
    for t0, t1 in ranges[:3]:
        calls[f"trade_costs {t0}"] = lambda t0=t0, t1=t1: an.trade_costs(SYM, t0, t1, horizon="5s", conn=conn)
        calls[f"effective_spread {t0}"] = lambda t0=t0, t1=t1: an.effective_spread(
            SYM, t0, t1, "5m", conn=conn
        )
        calls[f"effective_spread quotes {t0}"] = lambda t0=t0, t1=t1: an.effective_spread(
            SYM, t0, t1, "5m", reference="quotes", conn=conn
        )
    calls["book_top default"] = lambda: an.book_top(conn=conn)  # the last hour: 01:05–02:05 on day 2
    calls["quotes default"] = lambda: an.quotes(conn=conn)
    calls["book_top from 00:30"] = lambda: an.book_top(SYM, utc(2024, 8, 9, 0, 30), conn=conn)
    calls["quote_stats until 00:10"] = lambda: an.quote_stats(
        SYM, end=utc(2024, 8, 9, 0, 10), interval="1m", conn=conn
    )
    calls["book_gaps"] = lambda: an.book_gaps(SYM, conn=conn)
    calls["book_markets"] = lambda: an.book_markets(conn=conn)
    calls["book_markets quotes"] = lambda: an.book_markets(what="quotes", conn=conn)
    out: dict[str, Any] = {}
    for name, call in calls.items():
        try:
            out[name] = call()
        except BookBreakError as exc:
            out[name] = f"BookBreakError: {exc} ({exc.after_id}, {exc.snapshot_id})"
    return out


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    for name, w in want.items():
        g = got[name]
        if isinstance(w, pl.DataFrame):
            assert isinstance(g, pl.DataFrame) and g.schema == w.schema and g.equals(w), name
        else:
            assert g == w, name


def temp_relations(conn: psycopg.Connection) -> list[str]:
    got = conn.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema() ORDER BY 1"
    ).fetchall()
    assert not {"book_diffs", "quotes", "book_snapshots"} & {r[0] for r in got}
    return [r[0] for r in got]


def rows(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as c:
        got = c.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert got is not None
    return int(got[0])


def test_the_book_readers_answer_the_same_after_each_book_day_is_archived_and_dropped(
    dsn: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    book = store_two_days(conn)
    before = answers(book)
    assert (
        before["book_top " + str(MIDNIGHT)].height >= 300
    )  # a diff a second from the snapshot on day 1 to the break
    assert before["book_at in the gap"].startswith("BookBreakError")
    assert before["book_gaps"].height == 3 and before["book_at newest"].height == 40
    assert before["trade_costs " + str(MIDNIGHT)]["mid"].null_count() == 0
    assert before["effective_spread quotes " + str(MIDNIGHT)].height == 2
    n_diffs = rows(dsn, "book_diffs")
    root = str(tmp_path / "archive")
    # day 1 goes: the snapshot the day-2 book starts from lives only in the archive now
    archive(to=root, today=TODAY, before=DAY2, drop=True)
    assert 0 < rows(dsn, "book_diffs") < n_diffs and rows(dsn, "book_snapshots") == 2
    assert 0 < rows(dsn, "trades") < 789
    assert_same(answers(book), before)
    # the default range (the last hour) starts after day 1: its first diff is known to lie before, unread
    assert first_archived_before(conn, "book_diffs", EX, SYM, utc(2024, 8, 9, 1, 5))
    assert not first_archived_before(conn, "book_diffs", EX, SYM, utc(2024, 8, 8, 23, 59))
    detach_book(conn)
    # the same on one connection used throughout: and it is left as found (no views, no archived rows)
    found = temp_relations(conn)
    assert_same(answers(book, conn), before)
    assert temp_relations(conn) == found
    assert conn.execute("SELECT count(*) FROM book_diffs").fetchone() == (rows(dsn, "book_diffs"),)
    conn.commit()  # (a transaction left open would hold the partitions the next drop takes)
    # day 2 goes too: nothing of the book is left in PostgreSQL but the gap
    archive(to=root, today=TODAY, drop=True)
    assert rows(dsn, "book_diffs") == rows(dsn, "quotes") == rows(dsn, "book_snapshots") == 0
    assert rows(dsn, "book_gaps") == 3 and rows(dsn, "trades") == 0
    assert_same(answers(book), before)
    assert_same(answers(book, conn), before)
    assert temp_relations(conn) == found


def test_a_day_stored_again_after_its_drop_is_read_once(
    dsn: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    book = store_two_days(conn)
    before = answers(book)
    archive(to=str(tmp_path / "archive"), today=TODAY, drop=True)
    # a late write puts some of day 2's diffs, quotes and its snapshot back (the capture's journal, say)
    b = book["b_diffs"][:50]
    BookWriter(conn).store([book["b_snap"], *b])
    conn.commit()
    assert rows(dsn, "book_diffs") == 50
    assert_same(answers(book), before)


@pytest.mark.parametrize("kind", ["book_diffs", "book_snapshots"])
def test_a_missing_archived_book_file_is_named_by_the_readers(
    dsn: str, conn: psycopg.Connection, tmp_path: Path, kind: str
) -> None:
    from cryptolab.errors import CryptolabError
    from cryptolab.storage.parquet.book import book_path

    store_two_days(conn)
    root = tmp_path / "archive"
    archive(to=str(root), today=TODAY, drop=True)
    (root / book_path(kind, EX, SYM, DAY1)).unlink()
    with pytest.raises(CryptolabError, match="file is missing: restore it there"):
        an.book_top(SYM, utc(2024, 8, 8, 23, 50), utc(2024, 8, 9, 0, 5))
