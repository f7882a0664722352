"""Import data.binance.vision dumps and stream recordings into the database.

`cryptolab load FILE…` reads trades / aggTrades dumps (zip, gz or csv) and raw stream
recordings (gz or plain; see `cryptolab.binance.dumps`) and stores them (`source='replay'`):

* a **trades dump** goes the history loader's way (`cryptolab.history.store`): its CSV is
  `COPY`ed into a scratch table and moved into `trades` by one `INSERT … SELECT` — with no
  per-row dedupe when its days hold no trade of the symbol yet (the bulk path), else
  leaving out what is already stored (also a trade a capture stored in ms) — and
  `bars_1s` built by one aggregate;
* an **aggTrades dump** goes to `agg_trades`, one row per aggregate with its first and
  last trade id (an aggregate is not a trade: counts are last − first + 1);
* a **recording** goes through the trade writer in batches of ~50k rows (COPY, dedupe,
  `bars_1s` folded in), and its depth diffs, quotes and snapshots into the book tables with the
  book followed (`load_recording.py`; the files given together are one recording; docs/book_recordings.md).

Loading a file twice stores it once. One truth per trade id: a trade already stored (also
in ms where the file holds µs, or the other way round) is not stored again; ids that live in
the archive (a day archived and dropped) are not stored again either, and the summary says
how many; a file whose trades contradict the stored trades of the same ids (another
symbol's file under this name, edited prices) is a conflict: refused, named, nothing stored.

A file is all in or all out: its batches share one transaction that commits when the
file's last row is stored. A damaged, truncated or malformed file (or a database error
half-way) rolls back everything of that file and stops with one line saying so; the
files before it stay loaded. A progress bar shows the bytes read and the rows stored.
This is the fast path for historical analysis: no exchange, no network.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from ..binance.dumps import DumpReader, check_symbol
from ..errors import CryptolabError, DataError
from ..model import Trade
from .load_recording import RecordingResult

__all__ = ["load_files", "LoadResult"]


BATCH_ROWS = 50_000


@dataclass
class LoadResult:
    """What a load did."""

    files: int = 0
    rows: int = 0
    inserted: int = 0
    skipped_lines: int = 0
    seconds: float = 0.0
    aggregates: int = 0
    aggregates_inserted: int = 0
    archived: int = 0
    """Trades not stored because their ids live in the archive (days archived and dropped)."""
    recordings: list[RecordingResult] = field(default_factory=list)
    """What the stream recordings among the files stored beyond trades (book rows, dead letters):
    one per market (the files of one market are one recording)."""

    @property
    def duplicates(self) -> int:
        return self.rows - self.inserted


def _batches(rows: Iterable[Trade], size: int) -> Iterable[list[Trade]]:
    batch: list[Trade] = []
    for r in rows:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def load_files(
    paths: Sequence[str | Path],
    *,
    dsn: str | None = None,
    symbol: str | None = None,
    batch_rows: int = BATCH_ROWS,
    progress: bool = True,
    market: str | None = None,
) -> LoadResult:
    """Store every trade of the files (see the module doc); return the counts.

    Stream recordings among them are one recording (history/load_recording.py): their book
    rows (diffs, quotes, snapshots, gaps) are stored too; `market` (`binance` or
    `binance-usdm`) overrides what their messages tell."""
    from tqdm import tqdm

    from ..storage import db
    from .plan import DumpFile
    from .store import HistoryStore

    if batch_rows < 1:
        raise DataError("--batch must be at least 1 row")
    if symbol is not None:
        symbol = check_symbol(symbol)
    readers = [DumpReader(Path(p), symbol=symbol, source="replay") for p in paths]  # checks every file first
    total = sum(r.size for r in readers)
    result = LoadResult()
    t0 = time.perf_counter()
    real_dsn = db.resolve_dsn(dsn)
    conn = db.connect(real_dsn, autocommit=True)
    store: HistoryStore | None = None
    bar = tqdm(total=total, unit="B", unit_scale=True, disable=not progress, file=sys.stderr, desc="loading")
    recordings = [r for r in readers if r.kind == "stream"]
    try:
        for reader in readers:
            if reader.kind == "stream":
                if reader is recordings[0]:
                    _recording(conn, recordings, symbol, market, batch_rows, bar, result)
                continue
            bar.set_description(reader.path.name[:40])
            rows = inserted = seen = archived = 0
            try:
                if reader.kind in ("trades", "aggTrades"):
                    # a dump: the history loader's COPY + INSERT…SELECT path (bulk when the days are empty)
                    if store is None:
                        store = HistoryStore(conn, "binance", source="replay", dsn=real_dsn)
                    assert reader.symbol is not None
                    f = DumpFile(reader.symbol, reader.kind, "", "daily", date.min, date.max)
                    res = store.load_file(f, reader.path, url=str(reader.path), sha256=None, record=False)
                    if reader.kind == "aggTrades":
                        result.aggregates += res.rows
                        result.aggregates_inserted += res.stored
                    else:
                        rows, inserted = res.rows, res.stored
                        result.archived += res.archived
                    bar.update(reader.size)
                    seen = reader.size
            except CryptolabError as exc:
                raise _refused(exc, reader.path, result) from None
            bar.update(reader.size - seen)
            result.rows += rows
            result.inserted += inserted
            result.archived += archived
            result.files += 1
            result.skipped_lines += reader.skipped
    finally:
        bar.close()
        if store is not None:
            store.close()
        conn.close()
    result.seconds = time.perf_counter() - t0
    return result


def _refused(exc: CryptolabError, path: Path, result: LoadResult) -> CryptolabError:
    """One line: what is wrong with the file, that nothing of it was stored, and what was."""
    before = f"; the {result.files} file(s) before it were loaded" if result.files else ""
    msg = str(exc) if str(path.name) in str(exc) else f"{path}: {exc}"
    if "nothing of this file was stored" in msg or "nothing of it was stored" in msg:
        msg = msg.split(" — nothing of")[0].split("; nothing of")[0]
    cls = type(exc) if type(exc).__module__ == CryptolabError.__module__ else CryptolabError
    return cls(f"{msg} — nothing of this file was stored{before}")


def _recording(
    conn: Any,
    readers: Sequence[DumpReader],
    symbol: str | None,
    market: str | None,
    batch_rows: int,
    bar: Any,
    result: LoadResult,
) -> None:
    """The stream recordings among the files, as one recording (trades and book)."""
    from .load_recording import load_recordings

    seen: dict[Path, int] = {}
    done = result.files

    def progress(path: Path, read: int, part: RecordingResult) -> None:
        bar.set_description(path.name[:40])
        bar.update(read - seen.get(path, 0))
        seen[path] = read
        bar.set_postfix(trades=f"{result.rows + part.trades:,}", diffs=f"{part.diffs:,}", refresh=False)

    failing = readers[0].path
    try:
        got = load_recordings(
            conn,
            [r.path for r in readers],
            symbol=symbol,
            market=market,
            batch_rows=batch_rows,
            progress=progress,
        )
    except CryptolabError as exc:
        text = str(exc)
        failing = next((r.path for r in readers if str(r.path) in text or r.path.name in text), failing)
        result.files += getattr(exc, "files_loaded", 0)  # files of the recording committed before it
        raise _refused(exc, failing, result) from None
    finally:
        for r in readers:
            bar.update(r.size - seen.get(r.path, 0))
    assert done == result.files
    for res in got:
        result.files += res.files
        result.rows += res.trades
        result.inserted += res.trades_inserted
        result.archived += res.archived
        result.skipped_lines += res.skipped
        result.recordings.append(res)
