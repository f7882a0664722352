"""`cryptolab load` of raw stream recordings: trades, depth diffs, quotes and snapshots into storage.

The files given together are one recording (a recorder splits a continuous recording at
midnight): they are read in the order of their first receive stamp, and one `RecordingBook`
follows the book across them, so the diffs of the second file continue the first file's book
and only a real loss is a gap. Each file is one transaction (all in or all out, like dumps):
trades go through the trade writer (`source='replay'`, each id stored once, archived ids left
out), book rows through the book writer in the same transaction (a diff or quote already
stored is not stored again), malformed lines into `dead_letters` (once: a line already there
from an earlier load of the same file is not stored again). The decisions are in
`history/recording.py`; this module reads files and writes batches.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

import psycopg

from ..book.model import BookGap, BookRow, BookSnapshot, BookTop, DepthDiff, Quote
from ..errors import CryptolabError, DataError
from ..model import DeadLetter, Trade
from .recording import RawSnapshot, RecordingBook, Skipped, decode_line, market_of, split_line

__all__ = ["RecordingResult", "load_recording", "load_recordings", "first_stamp"]

_MARKET_LINES = 10_000
"""Lines read from the start of the first file to tell the market (when `--market` is not given)."""


@dataclass
class RecordingResult:
    """What loading one recording (one or several files) did."""

    exchange: str = ""
    files: int = 0
    trades: int = 0
    trades_inserted: int = 0
    archived: int = 0
    book_archived: int = 0
    """Book rows not stored because their day was archived and dropped (they live in the archive)."""
    diffs: int = 0
    diffs_inserted: int = 0
    level_updates: int = 0
    quotes: int = 0
    quotes_inserted: int = 0
    snapshots: int = 0
    gaps: int = 0
    healed: int = 0
    dead_letters: int = 0
    skipped: int = 0
    unsynced: list[str] = field(default_factory=list)


class _Lines:
    """A recording's lines as bytes (gzip or plain), counting the bytes read from disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._raw: IO[bytes] = path.open("rb")
        gz = self._raw.read(2) == b"\x1f\x8b"
        self._raw.seek(0)
        self._fh: IO[bytes] = gzip.GzipFile(fileobj=self._raw, mode="rb") if gz else self._raw  # type: ignore[assignment]

    @property
    def bytes_read(self) -> int:
        return self._raw.tell()

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._fh
        except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
            what = (
                "is truncated (the compressed data ends early)" if isinstance(exc, EOFError) else "is damaged"
            )
            raise DataError(f"{self.path}: {what} ({' '.join(str(exc).split())[:120]})") from None

    def close(self) -> None:
        self._fh.close()
        self._raw.close()


def first_stamp(path: Path) -> int:
    """The first receive stamp of a recording (µs; 0 when its first lines carry none)."""
    lines = _Lines(path)
    try:
        for line in islice(lines, 100):
            us, _ = split_line(line)
            if us is not None:
                return us
    except DataError:
        return 0
    finally:
        lines.close()
    return 0


def _market(path: Path) -> str:
    lines = _Lines(path)
    try:
        return market_of(islice(lines, _MARKET_LINES))
    except DataError:
        return market_of(())
    finally:
        lines.close()


_SEEN_DEAD = """
SELECT received_at, md5(payload) FROM dead_letters
WHERE source = %s AND received_at >= %s AND received_at <= %s"""


def _new_dead(conn: psycopg.Connection, dead: list[DeadLetter]) -> list[DeadLetter]:
    """The dead letters of a batch not already stored by an earlier load of the same lines."""
    import hashlib

    from ..model import us_to_datetime
    from ..storage.writer import dead_letter_text

    if not dead:
        return dead
    times = [d.received_at_us or 0 for d in dead]
    seen = {
        (r[0], r[1])
        for r in conn.execute(
            _SEEN_DEAD, (dead[0].source, us_to_datetime(min(times)), us_to_datetime(max(times)))
        ).fetchall()
    }
    out, batch = [], set()
    for d in dead:
        key = (
            us_to_datetime(d.received_at_us or 0),
            hashlib.md5(dead_letter_text(d.payload).encode(), usedforsecurity=False).hexdigest(),
        )
        if key not in seen and key not in batch:
            batch.add(key)
            out.append(d)
    return out


_US_PER_DAY = 86_400_000_000
_DROPPED = """
SELECT kind, exchange, symbol, day - date '1970-01-01' FROM archive_book_days
WHERE dropped_at IS NOT NULL AND kind IN ('book_diffs', 'quotes', 'book_snapshots') AND exchange = %s"""


def _dropped_days(conn: psycopg.Connection, exchange: str) -> frozenset[tuple[str, str, int]]:
    """(kind, symbol, epoch day) of the book days archived and dropped: their rows are not stored again."""
    if conn.execute("SELECT to_regclass('archive_book_days') IS NOT NULL").fetchone() != (True,):
        return frozenset()
    return frozenset(
        (str(r[0]), str(r[2]), int(r[3])) for r in conn.execute(_DROPPED, (exchange,)).fetchall()
    )


class _Batch:
    def __init__(self, dropped: frozenset[tuple[str, str, int]] = frozenset()) -> None:
        self.trades: list[Trade] = []
        self.book: list[BookRow] = []
        self.dead: list[DeadLetter] = []
        self.dropped = dropped
        self.archived = 0

    def add(self, r: BookRow) -> None:
        """A book row, unless its day lives in the archive only (archived and dropped)."""
        if self.dropped:
            key: tuple[str, str, int] | None = None
            if isinstance(r, (DepthDiff, BookTop)):  # a top goes with its diff
                key = ("book_diffs", r.symbol, r.event_time_us // _US_PER_DAY)
            elif isinstance(r, Quote):
                key = ("quotes", r.symbol, r.received_at_us // _US_PER_DAY)
            elif isinstance(r, BookSnapshot):
                key = ("book_snapshots", r.symbol, r.received_at_us // _US_PER_DAY)
            if key is not None and key in self.dropped:
                self.archived += 1
                return
        self.book.append(r)

    def __len__(self) -> int:
        return len(self.trades) + len(self.book) + len(self.dead)


def _write(conn: psycopg.Connection, writer: Any, b: _Batch, res: RecordingResult) -> None:
    dead = _new_dead(conn, b.dead)
    w = writer.write(b.trades, dead, book=b.book)
    writer.clear_stage()
    res.trades += len(b.trades)
    res.trades_inserted += w.inserted
    res.archived += w.archived
    res.dead_letters += len(dead)
    res.book_archived += b.archived
    if w.book is not None:
        res.diffs_inserted += w.book.diffs
        res.quotes_inserted += w.book.quotes


def _take(row: object, follow: RecordingBook, b: _Batch, res: RecordingResult, want: str | None) -> None:
    """Route one decoded line into the batch (and the book)."""
    kind = type(row)
    if kind is Trade:
        if want is None or row.symbol == want:  # type: ignore[attr-defined]
            b.trades.append(row)  # type: ignore[arg-type]
        return
    if kind is DepthDiff:
        d: DepthDiff = row  # type: ignore[assignment]
        if want is not None and d.symbol != want:
            return
        res.diffs += 1
        res.level_updates += len(d.bids) + len(d.asks)
        _book(follow.diff(d), b)
        return
    if kind is Quote:
        if want is None or row.symbol == want:  # type: ignore[attr-defined]
            res.quotes += 1
            b.add(row)  # type: ignore[arg-type]
        return
    if kind is RawSnapshot:
        _book(follow.snapshot(row), b)  # type: ignore[arg-type]
        return
    if kind is DeadLetter:
        b.dead.append(row)  # type: ignore[arg-type]
        return
    assert kind is Skipped, kind
    res.skipped += 1


def _book(rows: Sequence[BookRow | DeadLetter], b: _Batch) -> None:
    for r in rows:
        if isinstance(r, (BookSnapshot, BookGap, BookTop, DepthDiff, Quote)):
            b.add(r)
        else:
            b.dead.append(r)


def load_recordings(
    conn: psycopg.Connection,
    paths: Sequence[Path],
    *,
    symbol: str | None = None,
    market: str | None = None,
    batch_rows: int = 50_000,
    progress: Callable[[Path, int, RecordingResult], None] = lambda p, n, r: None,
) -> list[RecordingResult]:
    """Files of one market are one recording; files of spot and of futures given together are two."""
    groups: dict[str, list[Path]] = {}
    for p in paths:
        groups.setdefault(market or _market(p), []).append(p)
    out: list[RecordingResult] = []
    for m, files in groups.items():
        try:
            out.append(
                load_recording(conn, files, symbol=symbol, market=m, batch_rows=batch_rows, progress=progress)
            )
        except CryptolabError as exc:
            exc.files_loaded = getattr(exc, "files_loaded", 0) + sum(r.files for r in out)  # type: ignore[attr-defined]
            raise
    return out


def load_recording(
    conn: psycopg.Connection,
    paths: Sequence[Path],
    *,
    symbol: str | None = None,
    market: str | None = None,
    batch_rows: int = 50_000,
    progress: Callable[[Path, int, RecordingResult], None] = lambda p, n, r: None,
) -> RecordingResult:
    """Store the recording held by `paths` (one continuous recording; see the module doc).

    `conn` in autocommit mode; each file commits on its own. `market`: `binance` or
    `binance-usdm` (default: told by the first file's messages). Raises `DataError` naming a
    damaged file (nothing of that file stored; the files before it stay loaded)."""
    from ..storage.writer import TradeWriter

    files = sorted(paths, key=first_stamp)
    exchange = market or _market(files[0])
    res = RecordingResult(exchange=exchange)
    follow = RecordingBook(exchange, symbol)
    dropped = _dropped_days(conn, exchange)
    for path in files:
        before = (follow.gaps, follow.snapshots, follow.healed)
        part = RecordingResult(exchange=exchange)
        writer = TradeWriter(conn)  # fresh per file: a rolled-back file takes its partitions along
        lines = _Lines(path)
        try:
            _file(
                conn,
                writer,
                lines,
                path,
                follow,
                exchange,
                symbol,
                dropped,
                batch_rows,
                progress,
                part,
                last=path is files[-1],
            )
        except CryptolabError as exc:
            exc.files_loaded = res.files  # type: ignore[attr-defined]  # committed before it: said in the message
            raise
        finally:
            lines.close()
        part.gaps, part.snapshots = follow.gaps - before[0], follow.snapshots - before[1]
        part.healed = follow.healed - before[2]
        _add(res, part)
    res.unsynced = follow.unsynced()
    res.skipped += follow.unplaced
    return res


def _file(
    conn: psycopg.Connection,
    writer: Any,
    lines: _Lines,
    path: Path,
    follow: RecordingBook,
    exchange: str,
    symbol: str | None,
    dropped: frozenset[tuple[str, str, int]],
    batch_rows: int,
    progress: Callable[[Path, int, RecordingResult], None],
    part: RecordingResult,
    *,
    last: bool,
) -> None:
    """One file of the recording, in one transaction."""
    with conn.transaction():
        b = _Batch(dropped)
        last_us = 0
        for line in lines:
            row = decode_line(line, exchange=exchange, default_us=last_us)
            stamp = getattr(row, "received_at_us", None)
            if isinstance(stamp, int):
                last_us = stamp
            _take(row, follow, b, part, symbol)
            if len(b) >= batch_rows:
                _write(conn, writer, b, part)
                b = _Batch(dropped)
                progress(path, lines.bytes_read, part)
        if last:
            follow.finish()
        if len(b):
            _write(conn, writer, b, part)
    progress(path, lines.bytes_read, part)


def _add(total: RecordingResult, part: RecordingResult) -> None:
    total.files += 1
    for name in (
        "trades",
        "trades_inserted",
        "archived",
        "diffs",
        "diffs_inserted",
        "level_updates",
        "quotes",
        "quotes_inserted",
        "snapshots",
        "gaps",
        "healed",
        "dead_letters",
        "skipped",
        "book_archived",
    ):
        setattr(total, name, getattr(total, name) + getattr(part, name))
